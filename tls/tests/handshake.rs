//! Real TLS handshakes against a tokio-rustls server on 127.0.0.1 with a CA and certificates
//! made by rcgen for each test: the CA-rooted and the pinned client configurations accept what
//! the wire contract says and refuse the rest, and `connect_channel` gets a working HTTP/2
//! channel (with a client certificate) or a clear error.

use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use vigil_tls::{
    ClientIdentity, TlsError, client_config, connect_channel, pinned_client_config, sha256_hex,
};

const TIMEOUT: Duration = Duration::from_secs(10);

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A leaf certificate with the given SANs and EKUs, and its key.
    fn issue(
        &self,
        sans: &[&str],
        ekus: Vec<ExtendedKeyUsagePurpose>,
    ) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, sans.first().copied().unwrap_or("x"));
        params.extended_key_usages = ekus;
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (cert.der().clone(), key)
    }

    fn server_cert(&self) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        self.issue(&["localhost", "127.0.0.1", "::1"], vec![ExtendedKeyUsagePurpose::ServerAuth])
    }

    fn client_identity(&self, host_id: &str) -> ClientIdentity {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, host_id);
        params.subject_alt_names =
            vec![SanType::URI(format!("urn:vigil:host:{host_id}").try_into().unwrap())];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        ClientIdentity {
            cert_chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }
}

struct Server {
    port: u16,
    /// The client certificate chain of every completed handshake.
    peers: mpsc::UnboundedReceiver<Vec<CertificateDer<'static>>>,
}

/// A TLS 1.3 server on 127.0.0.1 presenting `chain`. With `client_ca`, it requires a client
/// certificate issued by it. After the handshake it answers like an HTTP/2 server that has
/// nothing to say (an empty SETTINGS frame) and holds the connection open.
async fn serve(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_ca: Option<CertificateDer<'static>>,
    alpn_h2: bool,
) -> Server {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            roots.add(ca).unwrap();
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).unwrap();
    if alpn_h2 {
        config.alpn_protocols = vec![b"h2".to_vec()];
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, peers) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let peer = tls.get_ref().1.peer_certificates().map(<[_]>::to_vec);
                let _ = tx.send(peer.unwrap_or_default());
                // HTTP/2 server preface: an empty SETTINGS frame.
                let _ = tls.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await;
                let _ = tls.flush().await;
                let mut buf = [0u8; 4096];
                while matches!(tls.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    Server { port, peers }
}

/// One client handshake with `config` to the server, naming it `name`.
async fn handshake(config: rustls::ClientConfig, port: u16, name: &str) -> Result<(), String> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(name.to_owned()).unwrap();
    tokio::time::timeout(TIMEOUT, connector.connect(name, tcp))
        .await
        .expect("handshake timed out")
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn client_config_trusts_its_ca_only() {
    let ca = Ca::new("vigil test CA");
    let (cert, key) = ca.server_cert();
    let server = serve(vec![cert, ca.der()], key, None, true).await;

    for name in ["localhost", "127.0.0.1"] {
        handshake(client_config(ca.der(), None).unwrap(), server.port, name).await.unwrap();
    }
    let err = handshake(client_config(ca.der(), None).unwrap(), server.port, "other.example")
        .await
        .unwrap_err();
    assert!(err.contains("not valid for name"), "{err}");

    let foreign = Ca::new("someone else's CA");
    let err = handshake(client_config(foreign.der(), None).unwrap(), server.port, "localhost")
        .await
        .unwrap_err();
    assert!(err.contains("invalid peer certificate"), "{err}");
}

#[tokio::test]
async fn pinned_config_trusts_the_pinned_ca_and_hands_it_over() {
    let ca = Ca::new("vigil test CA");
    let (cert, key) = ca.server_cert();
    let server = serve(vec![cert, ca.der()], key, None, true).await;

    let pin = sha256_hex(&ca.der()).to_uppercase();
    let (config, pinned) = pinned_client_config(&pin).unwrap();
    assert_eq!(pinned.ca(), None);
    handshake(config, server.port, "127.0.0.1").await.unwrap();
    assert_eq!(pinned.ca(), Some(ca.der()));
}

#[tokio::test]
async fn pinned_config_refuses_a_wrong_pin() {
    let ca = Ca::new("vigil test CA");
    let (cert, key) = ca.server_cert();
    let server = serve(vec![cert, ca.der()], key, None, true).await;

    let other = Ca::new("someone else's CA");
    let (config, pinned) = pinned_client_config(&sha256_hex(&other.der())).unwrap();
    let err = handshake(config, server.port, "localhost").await.unwrap_err();
    assert!(err.contains("pinned CA SHA-256"), "{err}");
    assert!(err.contains(&sha256_hex(&ca.der())), "lists what was presented: {err}");
    assert_eq!(pinned.ca(), None);
}

#[tokio::test]
async fn pinned_config_refuses_a_client_certificate_posing_as_server() {
    let ca = Ca::new("vigil test CA");
    let (cert, key) =
        ca.issue(&["localhost", "127.0.0.1"], vec![ExtendedKeyUsagePurpose::ClientAuth]);
    let server = serve(vec![cert, ca.der()], key, None, true).await;

    let (config, pinned) = pinned_client_config(&sha256_hex(&ca.der())).unwrap();
    let err = handshake(config, server.port, "localhost").await.unwrap_err();
    assert!(err.contains("extended key usage"), "{err}");
    assert_eq!(pinned.ca(), None);
}

#[tokio::test]
async fn pinned_config_checks_the_hostname() {
    let ca = Ca::new("vigil test CA");
    let (cert, key) = ca.server_cert();
    let server = serve(vec![cert, ca.der()], key, None, true).await;

    let (config, _) = pinned_client_config(&sha256_hex(&ca.der())).unwrap();
    let err = handshake(config, server.port, "elsewhere.example").await.unwrap_err();
    assert!(err.contains("not valid for name"), "{err}");
}

#[tokio::test]
async fn channel_with_client_certificate() {
    let ca = Ca::new("vigil test CA");
    let (cert, key) = ca.server_cert();
    let mut server = serve(vec![cert, ca.der()], key, Some(ca.der()), true).await;
    let identity = ca.client_identity("0b6f6a55-3f7e-4a8e-9a53-5b0c8f0e7d11");
    let expected = identity.cert_chain.clone();

    let config = Arc::new(client_config(ca.der(), Some(identity)).unwrap());
    let url = format!("https://127.0.0.1:{}", server.port);
    let _channel = connect_channel(&url, config, TIMEOUT).await.unwrap();
    assert_eq!(server.peers.recv().await.unwrap(), expected);

    let url = format!("https://localhost:{}", server.port);
    let identity = ca.client_identity("0b6f6a55-3f7e-4a8e-9a53-5b0c8f0e7d11");
    let config = Arc::new(client_config(ca.der(), Some(identity)).unwrap());
    connect_channel(&url, config, TIMEOUT).await.unwrap();
}

#[tokio::test]
async fn channel_over_ipv6_loopback() {
    let ca = Ca::new("vigil test CA");
    let (cert, key) = ca.server_cert();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert, ca.der()], key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let Ok(listener) = TcpListener::bind("[::1]:0").await else {
        eprintln!("no IPv6 loopback here; skipped");
        return;
    };
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.unwrap();
        tls.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
        let mut buf = [0u8; 4096];
        while matches!(tls.read(&mut buf).await, Ok(n) if n > 0) {}
    });
    let config = Arc::new(client_config(ca.der(), None).unwrap());
    connect_channel(&format!("https://[::1]:{port}"), config, TIMEOUT).await.unwrap();
}

#[tokio::test]
async fn channel_errors_name_the_url_and_the_cause() {
    let ca = Ca::new("vigil test CA");
    let (cert, key) = ca.server_cert();
    let server = serve(vec![cert.clone(), ca.der()], key.clone_key(), None, true).await;
    let foreign = Ca::new("someone else's CA");

    let url = format!("https://127.0.0.1:{}", server.port);
    let config = Arc::new(client_config(foreign.der(), None).unwrap());
    let err = connect_channel(&url, config, TIMEOUT).await.unwrap_err().to_string();
    assert!(err.starts_with(&format!("cannot connect to {url}: ")), "{err}");
    assert!(err.ends_with("invalid peer certificate: UnknownIssuer (the server's certificate is not issued by the trusted CA)"), "{err}");

    let no_h2 = serve(vec![cert, ca.der()], key, None, false).await;
    let url = format!("https://127.0.0.1:{}", no_h2.port);
    let config = Arc::new(client_config(ca.der(), None).unwrap());
    let err = connect_channel(&url, config.clone(), TIMEOUT).await.unwrap_err().to_string();
    assert!(err.contains("ALPN h2"), "{err}");

    let err = connect_channel("http://127.0.0.1:7700", config.clone(), TIMEOUT).await.unwrap_err();
    assert!(matches!(err, TlsError::Url { .. }), "{err}");

    // Nothing listens on a port just released.
    let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let url = format!("https://127.0.0.1:{port}");
    let err = connect_channel(&url, config, TIMEOUT).await.unwrap_err().to_string();
    assert!(err.contains("refused"), "{err}");
}

#[tokio::test]
async fn bad_identity_is_refused_when_building_the_config() {
    let ca = Ca::new("vigil test CA");
    let identity = ca.client_identity("a");
    let other = ca.client_identity("b");
    let mixed = ClientIdentity { cert_chain: identity.cert_chain, key: other.key };
    let err = client_config(ca.der(), Some(mixed)).unwrap_err().to_string();
    assert!(err.starts_with("the client certificate and key cannot be used"), "{err}");
}

#[test]
fn verify_client_cert_accepts_only_client_certificates_of_the_ca() {
    let ca = Ca::new("vigil test CA");
    let identity = ca.client_identity("0b6f6a55-3f7e-4a8e-9a53-5b0c8f0e7d11");
    vigil_tls::verify_client_cert(ca.der(), &identity.cert_chain[0], UnixTime::now()).unwrap();

    let foreign = Ca::new("someone else's CA");
    let err =
        vigil_tls::verify_client_cert(foreign.der(), &identity.cert_chain[0], UnixTime::now())
            .unwrap_err();
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");

    let (server_cert, _) = ca.server_cert();
    let err = vigil_tls::verify_client_cert(ca.der(), &server_cert, UnixTime::now()).unwrap_err();
    assert!(err.to_string().contains("extended key usage"), "{err}");
}
