//! The API's accept loop, for HTTP and HTTPS alike: every connection is bounded in number and
//! in time, so slow or silent clients cannot hold the collector's descriptors or tasks.
//!
//! At most `max_connections` connections are open at once (the cap [`crate::descriptors`]
//! derived from the descriptor limit); one more is accepted and closed at once, counted, so
//! the kernel's queue never fills with them either. A TLS handshake must finish within
//! [`HANDSHAKE_TIMEOUT`], a request's headers within `header_timeout`, and a connection that
//! moves no bytes for `idle_timeout` is closed ([`crate::watchdog`]). Request timeouts and
//! body limits are the router's ([`super::with_limits`]). On shutdown the loop stops
//! accepting, asks open connections to finish their request, and waits [`DRAIN`] at most.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::events::{ConnectionRefused, Listener};
use crate::watchdog::{Deadline, Watched};

/// A TLS handshake on the API port that takes longer is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest wait at shutdown for open connections to finish their request.
pub const DRAIN: Duration = Duration::from_secs(5);

/// Bounds of the API listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Serves `app` on `listener` (over TLS when `tls` is given) until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: axum::Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = tls.map(TlsAcceptor::from);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, addr) = tokio::select! {
            accepted = crate::descriptors::accept(&listener, crate::events::Listener::Http) => match accepted {
                Some(pair) => pair,
                None => continue,
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            ConnectionRefused { listener: Listener::Http, reason: "connection_limit", message: "" }
                .emit();
            drop(tcp);
            continue;
        };
        let app = app.clone().layer(axum::Extension(ConnectInfo::<SocketAddr>(addr)));
        let acceptor = acceptor.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let tcp = Watched::new(tcp, Deadline::Idle(limits.idle_timeout), Listener::Http);
            match acceptor {
                None => serve_connection(tcp, app, limits, stop, addr).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => serve_connection(tls, app, limits, stop, addr).await,
                        Ok(Err(err)) => {
                            tracing::debug!(peer = %addr, error = %err, "HTTPS handshake failed");
                        }
                        Err(_) => tracing::debug!(peer = %addr, "HTTPS handshake timed out"),
                    }
                }
            }
        });
    }
    // Stop accepting, let open connections finish what they are doing.
    drop(listener);
    let _ = stop_tx.send(true);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(DRAIN, slots.acquire_many(all)).await;
    Ok(())
}

async fn serve_connection<S>(
    stream: S,
    app: axum::Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
    addr: SocketAddr,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let service = TowerToHyperService::new(app);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let ended = tokio::select! {
        ended = connection.as_mut() => ended,
        () = async { drop(stop.wait_for(|stop| *stop).await) } => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(err) = ended {
        let header_timeout =
            err.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_timeout);
        if header_timeout {
            ConnectionRefused { listener: Listener::Http, reason: "header_timeout", message: "" }
                .emit();
        } else {
            tracing::debug!(peer = %addr, error = %err, "HTTP connection ended with an error");
        }
    }
}
