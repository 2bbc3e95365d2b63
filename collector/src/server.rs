//! Wiring of a running collector: opens the store, starts the committer and the background
//! tasks, binds both listeners (so a taken port fails start-up with a clear error before
//! anything else happens), serves gRPC and HTTP, and stops both gracefully on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::api::{self, AppState};
use crate::clock::{Clock, ManualClock, SharedClock};
use crate::config::CollectorConfig;
use crate::enroll::EnrollmentService;
use crate::incidents::{Evaluator, Policy, silence};
use crate::ingest::revocation::Revocations;
use crate::ingest::{IngestService, commit::CommitQueue};
use crate::maintenance::Maintenance;
use crate::pki::{CaFiles, CertificateAuthority};
use crate::store::{Store, StoreError, postgres::PgStore, sqlite::SqliteStore};
use crate::tasks::{self, Activator, Driver};
use crate::tls;

/// Opens the configured store: PostgreSQL at `store.url`, else SQLite in `data_dir`. An
/// unreachable database is retried with backoff (1 s doubling to 30 s), each failure logged,
/// until it answers; a migration it refuses (a newer schema) fails at once.
pub async fn open_store(config: &CollectorConfig) -> anyhow::Result<Arc<dyn Store>> {
    let Some(url) = &config.store.url else {
        let store = SqliteStore::open(&config.data_dir)
            .await
            .with_context(|| format!("opening the store in {}", config.data_dir.display()))?;
        tracing::info!(data_dir = %config.data_dir.display(), "store open (SQLite, WAL, synchronous=FULL)");
        return Ok(Arc::new(store));
    };
    let shown = config.store.url_for_log().unwrap_or_default();
    let mut wait = std::time::Duration::from_secs(1);
    loop {
        match PgStore::open(url, None).await {
            Ok(store) => {
                tracing::info!(url = %shown, "store open (PostgreSQL)");
                return Ok(Arc::new(store));
            }
            Err(StoreError::Unavailable(why)) => {
                tracing::warn!(
                    url = %shown, error = %why, retry_in = ?wait,
                    "the PostgreSQL store does not answer; retrying"
                );
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_secs(30));
            }
            Err(err) => return Err(err).with_context(|| format!("opening the store at {shown}")),
        }
    }
}

/// What a started collector tells its caller (addresses differ from the config for port 0).
#[derive(Debug, Clone)]
pub struct Bound {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    /// SHA-256 of the CA certificate: what agents pin at enrolment.
    pub ca_sha256: String,
    /// The open store, for the caller's liveness checks (the service watchdog).
    pub store: Arc<dyn Store>,
}

/// Where the first-run admin token is written.
pub fn bootstrap_token_path(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("admin.token")
}

/// On first start (no API tokens at all), creates an admin token and writes it to
/// `<data_dir>/admin.token`, readable by this user only. Its secret is never logged.
async fn bootstrap_admin(
    store: &dyn Store,
    config: &CollectorConfig,
    now: i64,
) -> anyhow::Result<()> {
    if store.count_api_tokens().await? > 0 {
        return Ok(());
    }
    // The file first: a crash before the store knows the token leaves no tokens, so the next
    // start makes a new one, instead of a token nobody holds the secret of.
    let (token, secret_sha256) = crate::admin_token::generate();
    let path = bootstrap_token_path(&config.data_dir);
    vigil_tls::pem::write_file(&path, format!("{token}\n").as_bytes(), 0o600)
        .with_context(|| format!("writing the bootstrap admin token to {}", path.display()))?;
    let source = crate::admin_token::local_source();
    crate::admin_token::create(
        store,
        "bootstrap-admin",
        secret_sha256,
        "local:first-start",
        &source,
        now,
    )
    .await?;
    tracing::info!(
        path = %path.display(),
        "no API tokens yet: created admin token \"bootstrap-admin\"; its secret is in {} \
         (readable by this user only)",
        path.display()
    );
    Ok(())
}

/// The URL agents are told to use in join commands.
fn join_url(config: &CollectorConfig, bound: SocketAddr) -> String {
    let host = match config.grpc.server_names.first() {
        Some(name) => name.clone(),
        None if bound.ip().is_unspecified() => {
            rustix::system::uname().nodename().to_string_lossy().into_owned()
        }
        None => bound.ip().to_string(),
    };
    let host = if host.contains(':') { format!("[{host}]") } else { host };
    format!("https://{host}:{}", bound.port())
}

/// The clock a collector runs on: the system's, or a manual one for end-to-end tests that
/// operators move through the API (`POST /api/v1/test-clock`).
#[derive(Debug, Clone)]
pub enum RunClock {
    System(SharedClock),
    Test(Arc<ManualClock>),
}

impl RunClock {
    fn shared(&self) -> SharedClock {
        match self {
            Self::System(clock) => clock.clone(),
            Self::Test(clock) => clock.clone(),
        }
    }
}

/// Starts the collector; `on_ready` is called once both listeners are bound and the store is
/// open, then the server runs until `shutdown` completes.
pub async fn run(
    config: CollectorConfig,
    run_clock: RunClock,
    metrics: Option<PrometheusHandle>,
    on_ready: impl FnOnce(Bound),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let clock = run_clock.shared();
    let budget = crate::descriptors::plan(&config);
    let test_clock = match &run_clock {
        RunClock::Test(clock) => {
            tracing::warn!(
                now = %crate::clock::rfc3339(clock.now_ms()),
                "RUNNING ON A TEST CLOCK: time moves only through POST /api/v1/test-clock; \
                 never run a production collector like this"
            );
            Some(clock.clone())
        }
        RunClock::System(_) => None,
    };
    let rules =
        config.rule_sets().map_err(|e| anyhow::anyhow!("key `{}`: {}", e.key, e.message))?;
    crate::data_dir::prepare(&config.data_dir).with_context(|| {
        format!("preparing the data directory {} (owner-only, mode 700)", config.data_dir.display())
    })?;
    // Held for the whole run: `vigil-collector restore` refuses a directory a collector uses.
    let _running = crate::backup::hold_running_lock(&config.data_dir)
        .with_context(|| format!("locking the data directory {}", config.data_dir.display()))?;
    let store = open_store(&config).await?;

    let grpc_listener = TcpListener::bind(config.grpc.listen)
        .await
        .with_context(|| format!("binding the gRPC listener on {}", config.grpc.listen))?;
    let http_listener = TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("binding the HTTP listener on {}", config.http.listen))?;
    let grpc_addr = grpc_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;

    let now = clock.now_ms();
    let ca_files = match (&config.tls.ca_cert, &config.tls.ca_key) {
        (Some(cert), Some(key)) => CaFiles { cert: cert.clone(), key: key.clone() },
        _ => CaFiles::in_data_dir(&config.data_dir),
    };
    let provided = config.tls.ca_cert.is_some();
    let (ca, created) = CertificateAuthority::load_or_create(&ca_files, !provided, now)
        .context("loading the collector CA")?;
    if created {
        tracing::info!(cert = %ca_files.cert.display(), key = %ca_files.key.display(), fingerprint = ca.fingerprint(), "created the collector CA");
    } else {
        tracing::info!(cert = %ca_files.cert.display(), fingerprint = ca.fingerprint(), "loaded the collector CA");
    }
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    names.extend(config.grpc.server_names.iter().cloned());
    if !grpc_addr.ip().is_unspecified() && !names.contains(&grpc_addr.ip().to_string()) {
        names.push(grpc_addr.ip().to_string());
    }
    let (chain, key) = ca.issue_server(&names, now).context("issuing the server certificate")?;
    let tls_config = Arc::new(tls::server_config(ca.cert().clone(), chain, key)?);
    let https = if config.http.tls {
        let (chain, key) = match (&config.http.cert, &config.http.key) {
            (Some(cert), Some(key)) => {
                crate::data_dir::check_private_file(key)
                    .map_err(|e| anyhow::anyhow!("key `http.key`: {}: {e}", key.display()))?;
                (vigil_tls::pem::read_certs(cert)?, vigil_tls::pem::read_key(key)?)
            }
            _ => {
                let mut names = names.clone();
                if !http_addr.ip().is_unspecified() && !names.contains(&http_addr.ip().to_string())
                {
                    names.push(http_addr.ip().to_string());
                }
                ca.issue_server(&names, now).context("issuing the HTTPS certificate")?
            }
        };
        Some(Arc::new(api::https::server_config(chain, key)?))
    } else {
        None
    };
    let ca = Arc::new(ca);
    let bound = Bound {
        grpc: grpc_addr,
        http: http_addr,
        ca_sha256: ca.fingerprint().to_owned(),
        store: store.clone(),
    };
    bootstrap_admin(store.as_ref(), &config, now).await?;

    let maintenance = Maintenance::default();
    maintenance.reload(store.as_ref()).await.context("loading maintenance windows")?;
    // Made before the tasks they start, so the stages that ask for a run can be given them.
    let sla_sweep = Activator::new();
    let notifications = Activator::new();
    let revocation_poll = Activator::new();
    let on_outbox = vec![sla_sweep.clone(), notifications.clone()];
    let evaluation = Evaluator::new(
        store.clone(),
        clock.clone(),
        Policy::new(rules, &config.incidents),
        maintenance.clone(),
    )
    .activating_on_outbox(on_outbox.clone())
    .spawn();
    let queue = CommitQueue::spawn(
        store.clone(),
        Some(evaluation),
        config.ingest.max_batch,
        4 * config.ingest.max_batch,
    );

    let holder = crate::lease::replica_id(&config.data_dir)
        .with_context(|| format!("reading or creating {}/replica.id", config.data_dir.display()))?;
    let targets = crate::notify::targets(&config.notify)?;
    let notifier =
        crate::notify::Notifier::new(store.clone(), clock.clone(), targets, &config.notify)?;
    let receivers: Vec<String> = notifier.receiver_names().iter().map(|s| s.to_string()).collect();
    let holding = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let fence = crate::lease::SharedFence::default();
    let host_metrics = crate::exporter::HostMetrics::new(config.metrics.max_series_per_host);

    let mut driver = Driver::new(clock.clone());
    driver.register(
        tasks::retention::Retention {
            store: store.clone(),
            clock: clock.clone(),
            retention: config.retention.clone(),
        },
        config.retention.sweep_every.max(std::time::Duration::from_secs(1)),
        &Activator::new(),
    );
    driver.register(
        silence::SilenceSweeper::new(
            store.clone(),
            clock.clone(),
            Arc::new(config.clone()),
            maintenance.clone(),
            on_outbox,
        ),
        config.incidents.sweep_every,
        &Activator::new(),
    );
    let lease =
        crate::lease::Lease::new(store.clone(), clock.clone(), holder, config.sla.lease_ttl);
    driver.register(
        tasks::sla_sweep::SlaSweep::new(
            store.clone(),
            clock.clone(),
            lease,
            maintenance.clone(),
            receivers.clone(),
            holding.clone(),
            fence.clone(),
        ),
        config.sla.sweep_every,
        &sla_sweep,
    );
    driver.register(
        tasks::notifications::Notifications {
            store: store.clone(),
            notifier,
            fence: fence.clone(),
        },
        config.sla.sweep_every,
        &notifications,
    );
    let (revocations, poll) = Revocations::load(store.clone()).await;
    driver.register(poll, config.ingest.revocation_poll, &revocation_poll);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ingest = IngestService::new(
        store.clone(),
        queue,
        clock.clone(),
        revocations,
        &config.ingest,
        stop_rx.clone(),
    )
    .with_host_metrics(host_metrics.clone());
    let enrollment = EnrollmentService::new(
        store.clone(),
        ca.clone(),
        clock.clone(),
        config.tls.clone(),
        config.enrollment.attempts_per_minute,
    );
    let app = api::router(AppState {
        store: store.clone(),
        clock: clock.clone(),
        min_silence: config.ingest.min_silence,
        metrics,
        open_metrics: config.http.open_metrics,
        join_url: join_url(&config, grpc_addr),
        ca_sha256: ca.fingerprint().to_owned(),
        maintenance,
        test_clock,
        receivers: Arc::new(receivers),
        host_metrics,
        holding,
        tasks: driver.statuses(),
        revocation_poll,
    });
    let app = api::with_limits(app, config.http.max_body_bytes, config.http.request_timeout);
    let limits = tls::Limits::from_config(&config.grpc);
    let http_limits = api::listener::Limits {
        max_connections: budget.http_connections,
        header_timeout: config.http.header_timeout,
        idle_timeout: config.http.idle_timeout,
    };

    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let grpc = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(config.grpc.keepalive_interval))
        .http2_keepalive_timeout(Some(config.grpc.keepalive_timeout))
        .layer(crate::certless::CertlessLayer)
        .add_service(ingest.into_server())
        .add_service(enrollment.into_server())
        .serve_with_incoming_shutdown(
            tls::incoming(grpc_listener, tls_config, limits, clock.clone()),
            wait(stop_rx.clone()),
        );
    let http = api::listener::serve(http_listener, https, app, http_limits, wait(stop_rx));

    tracing::info!(grpc = %bound.grpc, http = %bound.http, https = config.http.tls, "collector ready");
    on_ready(bound.clone());
    let (grpc, http) = tokio::join!(grpc, http);
    grpc.context("gRPC server")?;
    http.context("HTTP server")?;
    tracing::info!("collector stopped");
    Ok(())
}
