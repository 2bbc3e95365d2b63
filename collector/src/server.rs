//! Wiring of a running collector: opens the store, starts the committer and the background
//! tasks, binds both listeners (so a taken port fails start-up with a clear error before
//! anything else happens), serves gRPC and HTTP, and stops both gracefully on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::api::{self, AppState};
use crate::clock::SharedClock;
use crate::config::CollectorConfig;
use crate::ingest::{IngestService, commit::CommitQueue};
use crate::store::{Store, sqlite::SqliteStore};
use crate::tasks;

/// Addresses actually bound (differs from the config when it asks for port 0).
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
}

/// Starts the collector; `on_ready` is called once both listeners are bound and the store is
/// open, then the server runs until `shutdown` completes.
pub async fn run(
    config: CollectorConfig,
    clock: SharedClock,
    metrics: Option<PrometheusHandle>,
    on_ready: impl FnOnce(Bound),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&config.data_dir)
            .await
            .with_context(|| format!("opening the store in {}", config.data_dir.display()))?,
    );
    tracing::info!(data_dir = %config.data_dir.display(), "store open (SQLite, WAL, synchronous=FULL)");

    let grpc_listener = TcpListener::bind(config.grpc.listen)
        .await
        .with_context(|| format!("binding the gRPC listener on {}", config.grpc.listen))?;
    let http_listener = TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("binding the HTTP listener on {}", config.http.listen))?;
    let bound = Bound { grpc: grpc_listener.local_addr()?, http: http_listener.local_addr()? };

    let queue =
        CommitQueue::spawn(store.clone(), config.ingest.max_batch, 4 * config.ingest.max_batch);
    tasks::spawn_retention(store.clone(), clock.clone(), config.retention.clone());

    let ingest =
        IngestService::new(store.clone(), queue, clock.clone(), config.ingest.max_report_bytes);
    let app = api::router(AppState {
        store: store.clone(),
        clock: clock.clone(),
        min_silence: config.ingest.min_silence,
        metrics,
    });

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let grpc = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .add_service(ingest.into_server())
        .serve_with_incoming_shutdown(TcpListenerStream::new(grpc_listener), wait(stop_rx.clone()));
    let http = axum::serve(http_listener, app).with_graceful_shutdown(wait(stop_rx));

    tracing::info!(grpc = %bound.grpc, http = %bound.http, "collector ready");
    on_ready(bound);
    let (grpc, http) = tokio::join!(grpc, http);
    grpc.context("gRPC server")?;
    http.context("HTTP server")?;
    tracing::info!("collector stopped");
    Ok(())
}
