//! `vigil-collector`: parse arguments, load and validate the config, then run the server.
//! Exit codes: 0 clean stop, 1 runtime failure (store, port), 2 bad config or arguments.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use vigil_collector::config::{CollectorConfig, example_toml};
use vigil_collector::{clock, metrics, server};
use vigil_config::Strictness;
use vigil_config::cli::{load_or_default, validate_flags};
use vigil_config::sd_notify::Notifier;

const DEFAULT_CONFIG: &str = "/etc/vigil/collector.toml";

/// Vigil's collector: receives agent reports over gRPC, stores them durably (embedded SQLite by
/// default) and serves operators over HTTP (/api/v1, /metrics, /healthz, /readyz).
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Config file (TOML). If the default path does not exist, built-in defaults are used.
    #[arg(long, short, env = "VIGIL_COLLECTOR_CONFIG", default_value = DEFAULT_CONFIG, global = true)]
    config: PathBuf,
    /// Directory of the collector's files (and of the embedded store); overrides `data_dir`.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// PostgreSQL URL of the store (postgres://user@host/db); overrides `store.url`.
    #[arg(long, value_name = "URL", env = "VIGIL_DATABASE_URL", global = true)]
    database: Option<String>,
    /// gRPC listen address for agents; overrides `grpc.listen`.
    #[arg(long, value_name = "ADDR")]
    grpc_listen: Option<std::net::SocketAddr>,
    /// HTTP listen address for the API and /metrics; overrides `http.listen`.
    #[arg(long, value_name = "ADDR")]
    http_listen: Option<std::net::SocketAddr>,
    /// FOR TESTS ONLY: run on a manual clock starting at `now`, `now+DURATION` (e.g.
    /// `now+10m`) or an RFC 3339 time; it then moves only through `POST /api/v1/test-clock`.
    /// Certificates are issued on this clock, so agents need it near the real time.
    #[arg(long, value_name = "START", value_parser = parse_clock_start)]
    test_clock: Option<i64>,
    /// Log filter, e.g. `info` or `vigil_collector=debug` (also RUST_LOG).
    #[arg(long, env = "RUST_LOG", default_value = "info", global = true)]
    log: String,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate the config file and exit (0 valid, 2 invalid).
    CheckConfig {
        /// Treat unknown keys as errors instead of warnings.
        #[arg(long)]
        strict: bool,
    },
    /// Print an example config file with every key at its default.
    ExampleConfig,
    /// Make a new fleet-wide admin API token and print it (recovery when no admin token is
    /// left or its secret is lost). Run it on the collector's machine as the service user,
    /// with the collector's data directory (`--data-dir` or the config's `data_dir`); the
    /// collector may be running. The token is recorded in the audit log.
    AdminToken {
        /// Name of the new token, shown in listings and the audit log.
        #[arg(long, default_value = "recovery-admin")]
        name: String,
    },
    /// Take a consistent backup of the store while the collector runs and ingests: one file
    /// holding the store, the CA (certificate and key) and the bootstrap admin token, written
    /// owner-only (it holds the CA key). Run it on the collector's machine as the service
    /// user, with the collector's data directory (`--data-dir` or the config's `data_dir`).
    Backup {
        /// Where to write the backup. An existing file is kept unless --force is given.
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Restore a backup into a data directory (`--data-dir` or the config's `data_dir`); start
    /// the collector on it afterwards. Refused while a collector runs on that directory, and
    /// when it already holds a store unless --force is given. The restored collector is a new
    /// replica (a new replica.id); its agents keep reporting with their certificates.
    Restore {
        /// The backup file, made by `vigil-collector backup`.
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// Replace the store the data directory holds.
        #[arg(long)]
        force: bool,
    },
}

fn load(cli: &Cli, strictness: Strictness) -> Result<CollectorConfig, ExitCode> {
    let explicit = cli.config.as_os_str() != DEFAULT_CONFIG;
    let mut config: CollectorConfig = load_or_default(&cli.config, explicit, strictness)?;
    if let Some(dir) = &cli.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(url) = &cli.database {
        config.store.url = Some(url.clone());
    }
    if let Some(addr) = cli.grpc_listen {
        config.grpc.listen = addr;
    }
    if let Some(addr) = cli.http_listen {
        config.http.listen = addr;
    }
    // Flags go through the same validation as the file.
    validate_flags(config)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // A log that cannot be written (stderr on a full disk) must not stop the process: the
        // default reports such a failure with eprintln!, which panics when stderr fails.
        .log_internal_errors(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    match &cli.command {
        Some(Command::ExampleConfig) => {
            print!("{}", example_toml());
            return ExitCode::SUCCESS;
        }
        Some(Command::CheckConfig { strict }) => {
            let strictness =
                if *strict { Strictness::RejectUnknown } else { Strictness::WarnUnknown };
            return match load(&cli, strictness) {
                Ok(_) => {
                    println!("{}: ok", cli.config.display());
                    ExitCode::SUCCESS
                }
                Err(code) => code,
            };
        }
        Some(Command::AdminToken { .. } | Command::Backup { .. } | Command::Restore { .. })
        | None => {}
    }
    let config = match load(&cli, Strictness::WarnUnknown) {
        Ok(config) => config,
        Err(code) => return code,
    };

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(Command::AdminToken { name }) = &cli.command {
        return match runtime.block_on(admin_token(&config, name)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("error: {err:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::Backup { to, force }) = &cli.command {
        return runtime.block_on(backup(&config, to, *force));
    }
    if let Some(Command::Restore { from, force }) = &cli.command {
        return runtime.block_on(restore(&config, from, *force));
    }
    let notifier = Arc::new(Notifier::from_env());
    let stopping = notifier.clone();
    let shutdown = async move {
        shutdown_signal().await;
        stopping.stopping(&format!("stopping, {}", vigil_collector::service::status_line()));
    };
    let result = runtime.block_on(async {
        let handle = metrics::install()?;
        server::run(
            config,
            match cli.test_clock {
                Some(start) => server::RunClock::Test(Arc::new(clock::ManualClock::new(start))),
                None => server::RunClock::System(Arc::new(clock::SystemClock)),
            },
            Some(handle),
            |bound| {
                // One machine-readable line on stdout for scripts and tests.
                println!(
                    "vigil-collector ready grpc={} http={} ca_sha256={}",
                    bound.grpc, bound.http, bound.ca_sha256
                );
                // The store is open and both listeners are bound: systemd may order
                // dependants after us now.
                notifier.ready(&format!(
                    "serving agents on {}, API on {}; {}",
                    bound.grpc,
                    bound.http,
                    vigil_collector::service::status_line()
                ));
                vigil_collector::service::spawn(notifier.clone(), bound.store.clone());
            },
            shutdown,
        )
        .await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            // A store refused for good (credentials, no such database, a newer schema) is a
            // setting to fix: the configuration exit code, so a supervisor does not loop.
            let setup = err.chain().any(|cause| {
                matches!(
                    cause.downcast_ref::<vigil_collector::store::StoreError>(),
                    Some(
                        vigil_collector::store::StoreError::FailedPrecondition(_)
                            | vigil_collector::store::StoreError::Migration(_)
                    )
                )
            });
            if setup { ExitCode::from(2) } else { ExitCode::FAILURE }
        }
    }
}

/// `admin-token`: opens the store of `config.data_dir` (which must hold one already: this
/// recovers a collector, it does not make one) and prints a new admin token on stdout.
async fn admin_token(config: &CollectorConfig, name: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    let dir = &config.data_dir;
    if config.store.url.is_none() && !dir.join("vigil.db").exists() {
        anyhow::bail!(
            "{} holds no store (no vigil.db): give the collector's data directory with \
             --data-dir or the config's data_dir",
            dir.display()
        );
    }
    vigil_collector::data_dir::prepare(dir)
        .with_context(|| format!("preparing the data directory {}", dir.display()))?;
    let store = server::open_store(config).await?;
    let (token, secret_sha256) = vigil_collector::admin_token::generate();
    let source = vigil_collector::admin_token::local_source();
    let now = clock::Clock::now_ms(&clock::SystemClock);
    vigil_collector::admin_token::create(
        store.as_ref(),
        name,
        secret_sha256,
        "local:admin-token",
        &source,
        now,
    )
    .await
    .context("storing the new admin token")?;
    eprintln!(
        "created admin token {name:?} (recorded in the audit log as local:admin-token, {source}); \
         its secret follows, shown this once:"
    );
    println!("{token}");
    Ok(())
}

/// `backup`: exit 0 with a summary, 1 when the backup could not be written, 2 when the
/// arguments are wrong (no store there, the target exists).
async fn backup(config: &CollectorConfig, to: &Path, force: bool) -> ExitCode {
    use vigil_collector::backup::BackupError;
    if let Some(url) = config.store.url_for_log() {
        eprintln!(
            "error: the store is PostgreSQL ({url}): back it up and restore it with \
             pg_dump and pg_restore (docs/scale-out.md); `backup` handles the embedded SQLite store"
        );
        return ExitCode::from(2);
    }
    let dir = &config.data_dir;
    eprintln!("backing up the store in {} to {} ...", dir.display(), to.display());
    match vigil_collector::backup::backup(dir, to, force).await {
        Ok(done) => {
            eprintln!(
                "backup written: {} ({} bytes, store schema {}, {} hosts, {} stored reports; \
                 carries {}); it holds the CA key: keep it owner-only",
                to.display(),
                done.bytes,
                done.schema_version,
                done.hosts,
                done.reports,
                if done.files.is_empty() {
                    "no data-directory files".to_owned()
                } else {
                    done.files.join(", ")
                },
            );
            ExitCode::SUCCESS
        }
        Err(err @ (BackupError::NoStore(_) | BackupError::TargetExists(_))) => {
            eprintln!("error: {err}");
            ExitCode::from(2)
        }
        Err(err) => {
            eprintln!("error: backup failed, nothing written to {}: {err}", to.display());
            ExitCode::FAILURE
        }
    }
}

/// `restore`: exit 0 with a summary, 1 when it failed while writing, 2 when it was refused
/// (not a backup, too new, a collector running, a store there without --force).
async fn restore(config: &CollectorConfig, from: &Path, force: bool) -> ExitCode {
    use vigil_collector::backup::BackupError;
    if let Some(url) = config.store.url_for_log() {
        eprintln!(
            "error: the store is PostgreSQL ({url}): back it up and restore it with \
             pg_dump and pg_restore (docs/scale-out.md); `restore` handles the embedded SQLite store"
        );
        return ExitCode::from(2);
    }
    let dir = &config.data_dir;
    eprintln!("restoring {} into {} ...", from.display(), dir.display());
    match vigil_collector::backup::restore(from, dir, force).await {
        Ok(done) => {
            eprintln!(
                "restored: store schema {} ({} hosts, {} stored reports){}; start the \
                 collector with --data-dir {} (it migrates an older schema at start)",
                done.schema_version,
                done.hosts,
                done.reports,
                if done.files.is_empty() {
                    String::new()
                } else {
                    format!(", and {}", done.files.join(", "))
                },
                dir.display(),
            );
            ExitCode::SUCCESS
        }
        Err(err @ (BackupError::Io { .. } | BackupError::Sql { .. })) => {
            eprintln!("error: restore failed: {err}");
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(2)
        }
    }
}

fn parse_clock_start(text: &str) -> Result<i64, String> {
    let now = || clock::Clock::now_ms(&clock::SystemClock);
    if text == "now" {
        return Ok(now());
    }
    if let Some(offset) = text.strip_prefix("now+") {
        let by = humantime::parse_duration(offset)
            .map_err(|e| format!("{offset:?} is not a duration like 10m: {e}"))?;
        return Ok(now() + by.as_millis() as i64);
    }
    let t = humantime::parse_rfc3339_weak(text).map_err(|e| {
        format!(
            "{text:?} is not `now`, `now+10m` or an RFC 3339 time like 2026-01-05T09:00:00Z: {e}"
        )
    })?;
    let since = t.duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?;
    Ok(since.as_millis() as i64)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received, stopping"),
        _ = term.recv() => tracing::info!("SIGTERM received, stopping"),
    }
}
