//! The agents' TLS listener: every byte on the gRPC port goes through here first.
//!
//! TLS 1.3 only, ALPN `h2`, the server certificate issued by the collector's CA, and client
//! certificates verified against that CA alone (chain, signature, validity). A client
//! certificate is optional at this layer because `Enrollment` is called before an agent has
//! one; [`crate::certless`] lets such a connection make that one call only. The listener bounds
//! what a hostile peer can hold: at most `max_connections` connections with a certificate or
//! still in their handshake, and apart from those at most `max_certless_connections` without a
//! certificate (more are closed at once); a handshake that does not finish within
//! `handshake_timeout` is dropped, a certificate-less connection lives `certless_timeout` at
//! most, and any other connection that moves no bytes for `idle_timeout` is closed
//! ([`crate::watchdog`]). Each accepted connection carries a [`PeerInfo`] (address,
//! client-certificate fingerprint) that tonic hands to every request.

use std::future::Future;
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

use crate::certless::CertlessConn;
use crate::events::{ConnectionRefused, HandshakeFailed, Listener};
use crate::watchdog::{Deadline, Watched};

/// Who is on the other end of a connection, as far as TLS could establish.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub addr: SocketAddr,
    /// SHA-256 (lowercase hex) of the client certificate, when one was presented and verified.
    pub client_cert_sha256: Option<String>,
    /// Set when no client certificate was presented: what the connection may still do.
    pub certless: Option<CertlessConn>,
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
    pub max_certless_connections: usize,
    pub certless_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Limits {
    pub fn from_config(config: &crate::config::GrpcConfig) -> Self {
        Self {
            max_connections: config.max_connections,
            handshake_timeout: config.handshake_timeout,
            max_certless_connections: config.max_certless_connections,
            certless_timeout: config.certless_timeout,
            idle_timeout: config.idle_timeout,
        }
    }
}

/// A handshaken TLS stream, boxed: rustls's connection state is over a kilobyte, and a value
/// held across an `.await` is part of the task's future, which keeps the size of its largest
/// state for the task's whole life; the tasks below hold a pointer to it instead.
type Tls = Box<TlsStream<TcpStream>>;

/// One accepted, handshaken connection; holds its slot (of `max_connections`, or of
/// `max_certless_connections`) until dropped.
pub struct TlsConn {
    stream: Watched<Tls>,
    info: PeerInfo,
    _slot: Slot,
}

enum Slot {
    Enrolled(#[allow(dead_code, reason = "held for its Drop")] OwnedSemaphorePermit),
    Certless(#[allow(dead_code, reason = "held for its Drop")] CertlessSlot),
}

/// A slot of `max_certless_connections`, counted in `vigil_grpc_certless_connections` while
/// held.
struct CertlessSlot {
    _permit: OwnedSemaphorePermit,
}

impl CertlessSlot {
    fn new(permit: OwnedSemaphorePermit) -> Self {
        metrics::gauge!(crate::metrics::CERTLESS_CONNECTIONS).increment(1.0);
        Self { _permit: permit }
    }
}

impl Drop for CertlessSlot {
    fn drop(&mut self) {
        metrics::gauge!(crate::metrics::CERTLESS_CONNECTIONS).decrement(1.0);
    }
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
    let certless_slots = Arc::new(Semaphore::new(limits.max_certless_connections));
    tokio::spawn(async move {
        loop {
            let (tcp, addr) = tokio::select! {
                accepted = crate::descriptors::accept(&listener, crate::events::Listener::Grpc) => match accepted {
                    Some(pair) => pair,
                    None => continue,
                },
                () = tx.closed() => return,
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                ConnectionRefused {
                    listener: Listener::Grpc,
                    reason: "connection_limit",
                    message: "",
                }
                .emit();
                drop(tcp);
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let clock = clock.clone();
            let certless_slots = certless_slots.clone();
            tokio::spawn(async move {
                let stream = match tokio::time::timeout(
                    limits.handshake_timeout,
                    acceptor.accept(tcp),
                )
                .await
                {
                    Ok(Ok(stream)) => Box::new(stream),
                    Ok(Err(err)) => {
                        let error = err.to_string();
                        return HandshakeFailed { peer: addr, error: &error }.emit(clock.now_ms());
                    }
                    Err(_) => {
                        return HandshakeFailed { peer: addr, error: "timed out" }
                            .emit(clock.now_ms());
                    }
                };
                let client_cert_sha256 = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|certs| certs.first())
                    .map(|cert| vigil_tls::sha256_hex(cert));
                let Some(sha256) = client_cert_sha256 else {
                    // Its handshake slot goes back: from now on it holds one of the
                    // certificate-less slots, or nothing. It waits in a task of its own, so
                    // that this one (sized by the handshake) ends now.
                    drop(slot);
                    let Ok(slot) = certless_slots.try_acquire_owned() else {
                        return refuse("certless_limit");
                    };
                    let slot = CertlessSlot::new(slot);
                    tokio::spawn(certless_conn(stream, slot, limits.certless_timeout, tx));
                    return;
                };
                let conn = TlsConn {
                    stream: Watched::new(
                        stream,
                        Deadline::Idle(limits.idle_timeout),
                        Listener::Grpc,
                    ),
                    info: PeerInfo { addr, client_cert_sha256: Some(sha256), certless: None },
                    _slot: Slot::Enrolled(slot),
                };
                let _ = tx.send(Ok(conn)).await;
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Counts and logs a connection closed before it was handed over.
fn refuse(reason: &'static str) {
    ConnectionRefused { listener: Listener::Grpc, reason, message: "" }.emit();
}

/// Hands over a connection without a client certificate once it has sent its first bytes, or
/// drops it when it sent nothing within `timeout`. Until it speaks it costs only its TLS state
/// and this task: the HTTP/2 machinery is not started for a peer that says nothing.
///
/// Up to `max_certless_connections` of these wait at once, so the task is kept small: it
/// holds the boxed stream, its slot and one timer, polls the socket's readiness directly (the
/// future of `readable()` would add a waiter node), reads the peer's address back from the
/// socket once it speaks, and boxes the hand-over, whose state holds the whole connection.
async fn certless_conn(
    mut stream: Tls,
    slot: CertlessSlot,
    timeout: Duration,
    tx: mpsc::Sender<io::Result<TlsConn>>,
) {
    let mut deadline = std::pin::pin!(tokio::time::sleep(timeout));
    // What arrived with the end of the handshake is already inside TLS, not on the socket.
    let buffered = stream
        .get_mut()
        .1
        .process_new_packets()
        .map_or(true, |io| io.plaintext_bytes_to_read() > 0);
    if !buffered {
        let readable = std::future::poll_fn(|cx| {
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            stream.get_ref().0.poll_read_ready(cx).map(|ready| Some(ready.is_ok()))
        });
        match readable.await {
            Some(true) => {}
            Some(false) => return,
            None => return refuse("certless_timeout"),
        }
    }
    let Ok(addr) = stream.get_ref().0.peer_addr() else { return };
    let left = deadline.deadline().saturating_duration_since(tokio::time::Instant::now());
    let certless = CertlessConn::default();
    let stream = Watched::new(stream, Deadline::Fixed(left), Listener::Grpc)
        .with_finish(certless.finish.clone());
    let info = PeerInfo { addr, client_cert_sha256: None, certless: Some(certless) };
    let conn = TlsConn { stream, info, _slot: Slot::Certless(slot) };
    let _ = Box::pin(tx.send(Ok(conn))).await;
}
