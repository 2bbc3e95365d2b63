//! The client configuration used once a host knows its collector's CA: standard webpki
//! verification (hostname, EKU serverAuth, validity) with that CA as the only root, TLS 1.3,
//! ALPN `h2`, and the host's client certificate when it has one. Trusting nothing else means a
//! certificate from any public or system CA is refused. [`verify_client_cert`] lets a client
//! check a certificate it was just issued before it stores it.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore};

use crate::{TlsError, provider};

/// A client certificate chain and its private key (the host's identity for mutual TLS).
pub struct ClientIdentity {
    pub cert_chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("ClientIdentity")
            .field("cert_chain", &self.cert_chain.len())
            .finish_non_exhaustive()
    }
}

/// Standard verification with `ca` as the only root (hostname + EKU serverAuth + validity),
/// TLS 1.3, ALPN h2, and `identity` as the client certificate if given.
pub fn client_config(
    ca: CertificateDer<'static>,
    identity: Option<ClientIdentity>,
) -> Result<ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.add(ca).map_err(TlsError::BadCa)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(Arc::new(roots));
    let mut config = match identity {
        Some(id) => {
            builder.with_client_auth_cert(id.cert_chain, id.key).map_err(TlsError::BadIdentity)?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Checks that `cert` is a client certificate (EKU clientAuth) issued by `ca` and valid at
/// `at`, as the collector will when it is presented: a freshly issued certificate is checked
/// with it before it replaces a working one. (A caller whose clock may run behind the
/// collector's passes a moment inside the validity the collector announced, not "now".)
pub fn verify_client_cert(
    ca: CertificateDer<'static>,
    cert: &CertificateDer<'_>,
    at: UnixTime,
) -> Result<(), TlsError> {
    let mut roots = RootCertStore::empty();
    roots.add(ca).map_err(TlsError::BadCa)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    verifier.verify_client_cert(cert, &[], at).map(|_| ()).map_err(TlsError::BadClientCert)
}
