//! `vigil-agent`: parse arguments, load the config (every key overridable by a flag), then run
//! the agent on one single-threaded runtime with a small bounded pool for blocking reads.
//! `enroll` obtains the client certificate the agent needs before it can run.
//! Exit codes: 0 clean stop, 1 runtime failure, 2 bad config or arguments (or not enrolled).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use vigil_agent::config::{AgentConfig, example_toml};
use vigil_agent::enroll::{self, rfc3339};
use vigil_agent::identity::{IdentityError, TlsPaths};
use vigil_agent::root::HostRoot;
use vigil_agent::run::{self, Collector};
use vigil_config::Strictness;
use vigil_config::cli::{load_or_default, validate_flags};
use vigil_config::sd_notify::Notifier;

const DEFAULT_CONFIG: &str = "/etc/vigil/agent.toml";

/// Vigil's host agent: probes this host's health every interval and streams numbered reports
/// to a collector, keeping every unacknowledged report in an on-disk spool.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Config file (TOML). If the default path does not exist, built-in defaults are used.
    #[arg(long, short, env = "VIGIL_AGENT_CONFIG", default_value = DEFAULT_CONFIG, global = true)]
    config: PathBuf,
    /// Collector address, e.g. https://127.0.0.1:7700, or several replicas separated by commas,
    /// tried in order (overrides `collector`).
    #[arg(long, global = true)]
    collector: Option<String>,
    /// Time between reports, e.g. 10s (overrides `interval`).
    #[arg(long, value_parser = humantime::parse_duration, global = true)]
    interval: Option<Duration>,
    /// State directory: instance id, sequence number, spool, TLS identity (overrides
    /// `state_dir`).
    #[arg(long, global = true)]
    state_dir: Option<PathBuf>,
    /// Read /proc, /sys and /etc under this directory instead of / (overrides `root`).
    #[arg(long, global = true)]
    root: Option<PathBuf>,
    /// Longest one probe may run, e.g. 5s (overrides `probe_timeout`).
    #[arg(long, value_parser = humantime::parse_duration, global = true)]
    probe_timeout: Option<Duration>,
    /// Most unacknowledged reports kept on disk (overrides `spool.max_reports`).
    #[arg(long, global = true)]
    spool_max_reports: Option<usize>,
    /// Most bytes the spool takes on disk (overrides `spool.max_bytes`).
    #[arg(long, global = true)]
    spool_max_bytes: Option<u64>,
    /// First reconnection delay (overrides `backoff.initial`).
    #[arg(long, value_parser = humantime::parse_duration, global = true)]
    backoff_initial: Option<Duration>,
    /// Longest reconnection delay (overrides `backoff.max`).
    #[arg(long, value_parser = humantime::parse_duration, global = true)]
    backoff_max: Option<Duration>,
    /// Collect one report, print it as JSON (proto3 JSON mapping) and exit; sends nothing.
    #[arg(long)]
    once: bool,
    /// When this host is not enrolled yet, wait (checking every 10 s) instead of exiting with
    /// status 2: the service unit uses it, so an installed but unenrolled agent waits quietly,
    /// says once how to enrol, and starts reporting once `vigil-agent enroll` has run.
    #[arg(long)]
    wait_for_enrolment: bool,
    /// Log filter, e.g. `info` or `vigil_agent=debug` (also RUST_LOG).
    #[arg(long, env = "RUST_LOG", default_value = "info", global = true)]
    log: String,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate the config file (and flags) and exit: 0 valid, 2 invalid.
    CheckConfig {
        /// Treat unknown keys as errors instead of warnings.
        #[arg(long)]
        strict: bool,
    },
    /// Print an example config file with every key at its default.
    ExampleConfig,
    /// Enroll this host: make a private key (kept in the state directory, never sent), exchange
    /// a one-time token for a client certificate, and store both. The collector is trusted by
    /// its CA's SHA-256 until its CA certificate is stored.
    Enroll {
        /// One-time enrolment token from `vigilctl tokens create` (default: the
        /// VIGIL_ENROLL_TOKEN environment variable). Prefer the variable or --token-file: a
        /// command line is visible to other users.
        #[arg(long, value_name = "TOKEN", conflicts_with = "token_file")]
        token: Option<String>,
        /// Read the token from this file instead.
        #[arg(long, value_name = "PATH")]
        token_file: Option<PathBuf>,
        /// SHA-256 of the collector's CA certificate, as `vigilctl tokens create` prints it.
        #[arg(long, value_name = "HASH")]
        ca_sha256: String,
        /// Enroll again even if this host already has an identity (new key, new HostId).
        #[arg(long)]
        force: bool,
    },
}

const NOT_ENROLLED: &str = "error: not enrolled: run `vigil-agent enroll --token TOKEN --ca-sha256 \
                            HASH` (an operator prints both with `vigilctl tokens create`)";

/// What `enroll` prints after success: what happens next.
const ENROLLED_NEXT: &str = "next: a running vigil-agent service notices the identity within \
                             10 s and starts reporting; check with `systemctl status \
                             vigil-agent`. If it is not running, start it with `systemctl \
                             enable --now vigil-agent` or run `vigil-agent`.";

/// How often an unenrolled agent under `--wait-for-enrolment` looks for its identity again.
const ENROLMENT_RECHECK: Duration = Duration::from_secs(10);

/// `--wait-for-enrolment` on a host without an identity: says once how to enrol (log and
/// `STATUS=`), tells the service manager it is up (it is doing what it should: waiting), keeps
/// its watchdog fed, and returns true once the identity exists, false on SIGTERM/SIGINT.
async fn wait_until_enrolled(paths: &TlsPaths, notifier: &Notifier) -> bool {
    let how = NOT_ENROLLED.trim_start_matches("error: ");
    tracing::warn!("{how}; waiting, checking again every {}s", ENROLMENT_RECHECK.as_secs());
    notifier.ready(&format!("waiting for enrolment: {}", how.trim_start_matches("not enrolled: ")));
    let mut recheck = tokio::time::interval(ENROLMENT_RECHECK);
    let mut watchdog =
        tokio::time::interval(notifier.watchdog_interval().unwrap_or(Duration::from_secs(3600)));
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        tokio::select! {
            _ = recheck.tick() => match paths.load_meta() {
                Ok(_) => {
                    tracing::info!("enrolled: starting");
                    return true;
                }
                Err(IdentityError::NotEnrolled(_)) => {}
                Err(err) => tracing::warn!("identity not usable yet: {err}"),
            },
            _ = watchdog.tick(), if notifier.watchdog_interval().is_some() => notifier.watchdog(),
            () = &mut shutdown => return false,
        }
    }
}

/// The enrolment token from --token-file, --token or VIGIL_ENROLL_TOKEN, in that order.
fn enroll_token(token: Option<&str>, token_file: Option<&PathBuf>) -> Result<String, String> {
    let token = match (token_file, token) {
        (Some(path), _) => std::fs::read_to_string(path)
            .map_err(|e| format!("--token-file {}: {e}", path.display()))?,
        (None, Some(token)) => token.to_owned(),
        (None, None) => std::env::var("VIGIL_ENROLL_TOKEN").map_err(|_| {
            "no enrolment token: pass --token or --token-file, or set VIGIL_ENROLL_TOKEN".to_owned()
        })?,
    };
    let token = token.trim();
    if token.is_empty() {
        return Err("the enrolment token is empty".to_owned());
    }
    Ok(token.to_owned())
}

fn load(cli: &Cli, strictness: Strictness) -> Result<AgentConfig, ExitCode> {
    let explicit = cli.config.as_os_str() != DEFAULT_CONFIG;
    let mut config: AgentConfig = load_or_default(&cli.config, explicit, strictness)?;
    if let Some(v) = &cli.collector {
        config.collector = v.clone();
    }
    if let Some(v) = cli.interval {
        config.interval = v;
    }
    if let Some(v) = &cli.state_dir {
        config.state_dir = v.clone();
    }
    if let Some(v) = &cli.root {
        config.root = v.clone();
    }
    if let Some(v) = cli.probe_timeout {
        config.probe_timeout = v;
    }
    if let Some(v) = cli.spool_max_reports {
        config.spool.max_reports = v;
    }
    if let Some(v) = cli.spool_max_bytes {
        config.spool.max_bytes = v;
    }
    if let Some(v) = cli.backoff_initial {
        config.backoff.initial = v;
    }
    if let Some(v) = cli.backoff_max {
        config.backoff.max = v;
    }
    // Flags go through the same validation as the file.
    validate_flags(config)
}

/// The `--log` / `RUST_LOG` filter: a default level and `target=level` pairs; `info` when the
/// text names an unknown level.
fn log_filter(spec: &str) -> Targets {
    spec.parse::<Targets>().unwrap_or_else(|_| Targets::new().with_default(Level::INFO))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `Targets` takes the same `level` / `target=level` lists as the collector's env filter,
    // without the regex engine behind span and field directives, which costs the agent a
    // third of a megabyte of binary for a feature its operators do not use.
    let filter = log_filter(&cli.log);
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                // A log that cannot be written (stderr on a full disk) must not stop the process: the
                // default reports such a failure with eprintln!, which panics when stderr fails.
                .log_internal_errors(false)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .with(filter)
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
        Some(Command::Enroll { .. }) | None => {}
    }
    let config = match load(&cli, Strictness::WarnUnknown) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let enrolling = match &cli.command {
        Some(Command::Enroll { token, token_file, ca_sha256, force }) => {
            match enroll_token(token.as_deref(), token_file.as_ref()) {
                Ok(token) => Some((token, ca_sha256.clone(), *force)),
                Err(message) => {
                    eprintln!("error: {message}");
                    return ExitCode::from(2);
                }
            }
        }
        _ => None,
    };
    let mut wait_for_enrolment = false;
    if enrolling.is_none() && !cli.once {
        match TlsPaths::new(&config.state_dir).load_meta() {
            Ok(_) => {}
            Err(IdentityError::NotEnrolled(_)) if cli.wait_for_enrolment => {
                wait_for_enrolment = true;
            }
            Err(IdentityError::NotEnrolled(_)) => {
                eprintln!("{NOT_ENROLLED}");
                return ExitCode::from(2);
            }
            Err(err) => {
                eprintln!("error: {err}");
                return ExitCode::FAILURE;
            }
        }
    }

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(4)
        .thread_keep_alive(Duration::from_secs(30))
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };

    if let Some((token, ca_sha256, force)) = enrolling {
        return match runtime.block_on(enroll::enroll(&config, &token, &ca_sha256, force)) {
            Ok(meta) => {
                println!(
                    "enrolled as host {}; certificate valid until {}",
                    meta.host_id,
                    rfc3339(meta.not_after_unix_ms)
                );
                println!("{ENROLLED_NEXT}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("error: {err}");
                ExitCode::from(err.exit_code())
            }
        };
    }
    if cli.once {
        return runtime.block_on(print_once(&config));
    }
    let notifier = Notifier::from_env();
    let mut config = config;
    if wait_for_enrolment {
        let paths = TlsPaths::new(&config.state_dir);
        if !runtime.block_on(wait_until_enrolled(&paths, &notifier)) {
            notifier.stopping("stopping: not enrolled");
            return ExitCode::SUCCESS;
        }
        // Enrolling goes with setting `collector =`: read the config again, so what was
        // edited while the agent waited applies without a restart.
        config = match load(&cli, Strictness::WarnUnknown) {
            Ok(config) => config,
            Err(code) => return code,
        };
    }
    match runtime.block_on(run::run(config, &notifier, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--once`: one report as JSON on stdout. Reads the instance id if the state directory has
/// one, but writes nothing there.
async fn print_once(config: &AgentConfig) -> ExitCode {
    let mut collector = Collector::new(
        HostRoot::new(config.root.clone()),
        config.probe_timeout,
        &config.probes_config(),
    );
    let mut report = collector.collect().await;
    report.agent_instance = std::fs::read_to_string(config.state_dir.join("instance"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    match serde_json::to_string_pretty(&report) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: cannot render report as JSON: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received, stopping"),
        _ = int.recv() => tracing::info!("SIGINT received, stopping"),
    }
}

#[cfg(test)]
mod log_filter_tests {
    use super::*;

    #[test]
    fn default_level_and_target_pairs() {
        let filter = log_filter("warn,vigil_agent=debug");
        assert!(filter.would_enable("vigil_agent::run", &Level::DEBUG));
        assert!(!filter.would_enable("vigil_agent::run", &Level::TRACE));
        assert!(filter.would_enable("h2::codec", &Level::WARN));
        assert!(!filter.would_enable("h2::codec", &Level::INFO));
    }

    #[test]
    fn unknown_level_falls_back_to_info() {
        let filter = log_filter("debug,vigil_agent=loud");
        assert!(filter.would_enable("vigil_agent::run", &Level::INFO));
        assert!(!filter.would_enable("vigil_agent::run", &Level::DEBUG));
    }
}
