//! The agents' TLS listener: every byte on the gRPC port goes through here first.
//!
//! TLS 1.3 only, ALPN `h2`, the server certificate issued by the collector's CA, and client
//! certificates verified against that CA alone (chain, signature, validity). A client
//! certificate is optional at this layer because `Enrollment` is called before an agent has
//! one; `Ingest` refuses a stream without one. The listener bounds what a hostile peer can hold:
//! at most `max_connections` connections (more are closed at once), and a handshake that does
//! not finish within `handshake_timeout` is dropped. Each accepted connection carries a
//! [`PeerInfo`] (address and client-certificate fingerprint) that tonic hands to every request.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;

/// Who is on the other end of a connection, as far as TLS could establish.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub addr: SocketAddr,
    /// SHA-256 (lowercase hex) of the client certificate, when one was presented and verified.
    pub client_cert_sha256: Option<String>,
}

/// The server side of the agents' TLS.
pub fn server_config(
    ca: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> anyhow::Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Limits of the listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub handshake_timeout: Duration,
}

/// One accepted, handshaken connection; holds its slot of `max_connections` until dropped.
pub struct TlsConn {
    stream: TlsStream<TcpStream>,
    info: PeerInfo,
    _slot: OwnedSemaphorePermit,
}

impl Connected for TlsConn {
    type ConnectInfo = PeerInfo;
    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Accepts TCP connections, runs each handshake in its own task, and yields the finished ones.
pub fn incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    limits: Limits,
    clock: crate::clock::SharedClock,
) -> impl tokio_stream::Stream<Item = io::Result<TlsConn>> {
    let (tx, rx) = mpsc::channel::<io::Result<TlsConn>>(64);
    let acceptor = TlsAcceptor::from(config);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    tokio::spawn(async move {
        loop {
            let (tcp, addr) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        // Out of file descriptors and the like: wait, never spin.
                        tracing::warn!(error = %err, "gRPC accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = tx.closed() => return,
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                crate::events::ConnectionRefused { peer: addr, reason: "connection limit" }
                    .emit(clock.now_ms());
                drop(tcp);
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let clock = clock.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let client_cert_sha256 = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|certs| certs.first())
                            .map(|cert| vigil_tls::sha256_hex(cert));
                        let info = PeerInfo { addr, client_cert_sha256 };
                        let _ = tx.send(Ok(TlsConn { stream, info, _slot: slot })).await;
                    }
                    Ok(Err(err)) => {
                        crate::events::HandshakeFailed { peer: addr, error: &err.to_string() }
                            .emit(clock.now_ms())
                    }
                    Err(_) => crate::events::HandshakeFailed { peer: addr, error: "timed out" }
                        .emit(clock.now_ms()),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
