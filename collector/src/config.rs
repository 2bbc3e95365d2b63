//! The collector's configuration: one typed struct that documents itself. Doc comments on the
//! fields are the reference (`docs/configuration.md`), defaults are named functions, and
//! [`Validate`] checks what types cannot. The example file `packaging/config/collector.example.toml`
//! is generated from [`CollectorConfig::default`] and a test fails when it drifts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vigil_config::{FieldError, Validate, duration};

use crate::classify::{RuleOverride, RuleSet};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct CollectorConfig {
    /// Directory of the collector's own files: the embedded store (SQLite database
    /// `vigil.db`) unless `store.url` names another, the CA, the first admin token, the replica
    /// id.
    pub data_dir: PathBuf,
    pub store: StoreConfig,
    pub grpc: GrpcConfig,
    pub http: HttpConfig,
    pub tls: TlsConfig,
    pub enrollment: EnrollmentConfig,
    pub ingest: IngestConfig,
    pub retention: RetentionConfig,
    pub incidents: IncidentsConfig,
    pub sla: SlaConfig,
    pub notify: NotifyConfig,
    pub metrics: MetricsConfig,
    /// Overrides of the built-in fault rules, by rule id (`[rules."filesystem.usage"]`):
    /// `enabled`, `level`, `open_after`, `clear_after`, `threshold`, `min_free_bytes`, `names`.
    /// The rule ids and their defaults are listed in docs/rules.md.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub rules: BTreeMap<String, RuleOverride>,
    /// Per-customer settings, by customer name (`[customers.acme]`): `min_silence` and `rules`
    /// (the same keys as `[rules]`, applied over them).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub customers: BTreeMap<String, CustomerConfig>,
}

/// `[customers.<name>]`: what differs for one customer.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CustomerConfig {
    /// Overrides `ingest.min_silence` for this customer's hosts.
    #[serde(with = "vigil_config::duration::option", skip_serializing_if = "Option::is_none")]
    pub min_silence: Option<Duration>,
    pub rules: BTreeMap<String, RuleOverride>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct IncidentsConfig {
    /// After the collector starts (or takes over), silence is judged only from this long
    /// later, so a restart or failover opens nothing while agents reconnect.
    #[serde(with = "duration")]
    pub start_grace: Duration,
    /// A host whose agent said goodbye (stop, reboot, upgrade) is "silent" only when it has
    /// not reported for this long after the goodbye.
    #[serde(with = "duration")]
    pub planned_downtime_grace: Duration,
    /// A site outage needs at least this many hosts falling silent...
    pub site_outage_min_hosts: u32,
    /// ...and at least this share of the site's hosts...
    pub site_outage_ratio: f64,
    /// ...within this long of each other. Then one site incident groups the host incidents.
    #[serde(with = "duration")]
    pub site_outage_window: Duration,
    /// A condition that changes state this many times within `flap_window` is flapping: its
    /// incident is held open and marked instead of resolving and reopening.
    pub flap_changes: u32,
    #[serde(with = "duration")]
    pub flap_window: Duration,
    /// A condition returning within this long after its incident resolved reopens that
    /// incident (and counts a recurrence) instead of opening a new one.
    #[serde(with = "duration")]
    pub reopen_within: Duration,
    /// Resolved incidents are closed this long after resolution.
    #[serde(with = "duration")]
    pub close_after: Duration,
    /// Events found in replayed (late) reports raise an incident when their level is this or
    /// more severe (1–4); the others are only recorded on the host's timeline.
    pub late_event_max_level: u8,
    /// How often silence, site outages and closing are judged.
    #[serde(with = "duration")]
    pub sweep_every: Duration,
}

impl Default for IncidentsConfig {
    fn default() -> Self {
        Self {
            start_grace: Duration::from_secs(120),
            planned_downtime_grace: Duration::from_secs(15 * 60),
            site_outage_min_hosts: 3,
            site_outage_ratio: 0.5,
            site_outage_window: Duration::from_secs(120),
            flap_changes: 4,
            flap_window: Duration::from_secs(30 * 60),
            reopen_within: Duration::from_secs(24 * 3600),
            close_after: Duration::from_secs(7 * 86_400),
            late_event_max_level: 3,
            sweep_every: Duration::from_secs(5),
        }
    }
}

/// `[sla]`: the SLA clocks. Targets, support hours and receivers are per customer, in its
/// contract (`vigilctl customers set`); this is how the collector runs them.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SlaConfig {
    /// How often deadlines are checked (warnings, escalations) and notifications delivered.
    #[serde(with = "duration")]
    pub sweep_every: Duration,
    /// The runner lease: the SLA sweep and notification delivery run on one collector at a
    /// time; another takes over this long after the holder stopped renewing.
    #[serde(with = "duration")]
    pub lease_ttl: Duration,
}

impl Default for SlaConfig {
    fn default() -> Self {
        Self { sweep_every: Duration::from_secs(5), lease_ttl: Duration::from_secs(30) }
    }
}

/// `[metrics]`: the fleet as Prometheus series at `/metrics` (see docs/operators.md).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Most per-host series exported for one host (a typical host has about fifty); more are
    /// dropped and counted in `vigil_host_series_dropped_total`.
    pub max_series_per_host: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { max_series_per_host: crate::exporter::DEFAULT_MAX_SERIES_PER_HOST }
    }
}

/// `[notify]`: where incident changes are sent.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// Receivers used for a support tier whose customer's contract names none.
    pub default_receivers: Vec<String>,
    /// Firing incidents are re-posted to Alertmanager receivers this often, each alert with
    /// `endsAt` four times this far ahead, so Alertmanager resolves them by itself if the
    /// collector goes quiet.
    #[serde(with = "duration")]
    pub alertmanager_repeat: Duration,
    /// A delivery that failed this many times in a row is dead-lettered (retries back off from
    /// 1 s to 5 min until then); so is one the receiver refuses (a 4xx other than 408 and 429).
    /// A dead letter is never given up: it is retried every `dead_letter_retry` until the
    /// receiver takes it, or until an operator drops it (`DELETE /api/v1/notifications/{id}`).
    pub max_attempts: u32,
    /// How often a dead-lettered delivery is tried again.
    #[serde(with = "duration")]
    pub dead_letter_retry: Duration,
    /// Receivers by name (`[notify.receivers.ops]`): `alertmanager = "http://am:9093"`, or
    /// `webhook = "https://…"` with `secret_file` (the HMAC-SHA256 signing secret).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub receivers: BTreeMap<String, ReceiverConfig>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            default_receivers: Vec::new(),
            alertmanager_repeat: Duration::from_secs(60),
            max_attempts: 30,
            dead_letter_retry: Duration::from_secs(600),
            receivers: BTreeMap::new(),
        }
    }
}

/// `[notify.receivers.<name>]`: one Alertmanager or one webhook.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ReceiverConfig {
    /// Alertmanager base URL; alerts go to `<url>/api/v2/alerts`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alertmanager: Option<String>,
    /// Webhook URL; each event is POSTed as signed JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// File holding the webhook's signing secret (kept out of the config itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// Extra labels on every alert to this receiver.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./vigil-data"),
            store: StoreConfig::default(),
            grpc: GrpcConfig::default(),
            http: HttpConfig::default(),
            tls: TlsConfig::default(),
            enrollment: EnrollmentConfig::default(),
            ingest: IngestConfig::default(),
            retention: RetentionConfig::default(),
            incidents: IncidentsConfig::default(),
            sla: SlaConfig::default(),
            notify: NotifyConfig::default(),
            metrics: MetricsConfig::default(),
            rules: BTreeMap::new(),
            customers: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct GrpcConfig {
    /// Address agents connect to (TLS 1.3; reports need a client certificate).
    pub listen: SocketAddr,
    /// Extra DNS names or IP addresses agents use to reach this collector; the server
    /// certificate is valid for these plus `localhost`, `127.0.0.1` and `::1`.
    pub server_names: Vec<String>,
    /// Most simultaneous connections with a client certificate, plus handshakes in progress;
    /// more are closed at once.
    pub max_connections: usize,
    /// A connection that has not finished its TLS handshake by then is dropped.
    #[serde(with = "duration")]
    pub handshake_timeout: Duration,
    /// Most simultaneous connections without a client certificate (enrolment), held apart
    /// from `max_connections` so they never take an enrolled agent's place; more are closed
    /// at once after their handshake.
    pub max_certless_connections: usize,
    /// A connection without a client certificate may make one `Enrollment` call: it is closed
    /// one second after that call is answered, or this long after its handshake, whichever
    /// comes first.
    #[serde(with = "duration")]
    pub certless_timeout: Duration,
    /// A connection with a client certificate that moves no bytes at all, either way, for
    /// this long is closed (an agent sends a report every interval and answers keepalives).
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// The collector pings each connection this often (HTTP/2 keepalive)...
    #[serde(with = "duration")]
    pub keepalive_interval: Duration,
    /// ...and closes it when a ping is not answered within this.
    #[serde(with = "duration")]
    pub keepalive_timeout: Duration,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7700)),
            server_names: Vec::new(),
            max_connections: 10_000,
            handshake_timeout: Duration::from_secs(10),
            max_certless_connections: 64,
            certless_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(5 * 60),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(20),
        }
    }
}

/// `[store]`: where state is kept. Unset, the embedded SQLite store in `data_dir` (nothing to
/// set up); for several replicas, one PostgreSQL database (docs/scale-out.md).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// A PostgreSQL connection URL (`postgres://user@host:5432/vigil`; the password is better
    /// kept in `PGPASSWORD` or `~/.pgpass` than here). Unset: SQLite in `data_dir`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl StoreConfig {
    /// The URL without its password, for logs and messages.
    pub fn url_for_log(&self) -> Option<String> {
        let url = self.url.as_deref()?;
        let Some((scheme, rest)) = url.split_once("://") else { return Some(url.to_owned()) };
        let Some((userinfo, host)) = rest.split_once('@') else { return Some(url.to_owned()) };
        let user = userinfo.split(':').next().unwrap_or_default();
        let hidden = if userinfo.contains(':') { ":***" } else { "" };
        Some(format!("{scheme}://{user}{hidden}@{host}"))
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct TlsConfig {
    /// The CA certificate (PEM). Unset: `<data_dir>/tls/ca.crt`, created on first start.
    /// Replicas share one CA by pointing these at the same files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
    /// The CA private key (PEM, mode 0600 — refused when others can read it).
    /// Unset: `<data_dir>/tls/ca.key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_key: Option<PathBuf>,
    /// Lifetime of agents' client certificates; agents renew at two thirds of it.
    #[serde(with = "duration")]
    pub client_cert_lifetime: Duration,
    /// How long after expiry an agent may still renew with its old key.
    #[serde(with = "duration")]
    pub renewal_grace: Duration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            ca_cert: None,
            ca_key: None,
            client_cert_lifetime: Duration::from_secs(30 * 86_400),
            renewal_grace: Duration::from_secs(14 * 86_400),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct EnrollmentConfig {
    /// Enroll calls allowed per source address per minute (a burst of this many, refilled
    /// evenly); more are answered `RESOURCE_EXHAUSTED`. Renew calls get 100 times as many.
    pub attempts_per_minute: u32,
}

impl Default for EnrollmentConfig {
    fn default() -> Self {
        Self { attempts_per_minute: 10 }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct HttpConfig {
    /// Address of the operator API, `/metrics`, `/healthz` and `/readyz`.
    pub listen: SocketAddr,
    /// Serve `/metrics` without a token (for a Prometheus without credentials). `/healthz`
    /// and `/readyz` are always open: they say nothing about hosts.
    pub open_metrics: bool,
    /// Serve HTTPS instead of HTTP. Without `cert`/`key`, the certificate is issued by the
    /// collector's CA for `localhost`, `127.0.0.1`, `::1` and `grpc.server_names`; clients
    /// trust `<data_dir>/tls/ca.crt` (`vigilctl --ca-cert`).
    pub tls: bool,
    /// Certificate chain (PEM) for HTTPS, e.g. from the vendor's own PKI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// Private key (PEM) for `cert`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// Most simultaneous API connections; more are closed at once. The collector lowers this
    /// to a quarter of its file-descriptor limit (less a reserve), so API clients can never
    /// take the descriptors agents need (docs/security.md).
    pub max_connections: usize,
    /// A request whose headers have not all arrived this long after it began is dropped with
    /// its connection.
    #[serde(with = "duration")]
    pub header_timeout: Duration,
    /// A connection that moves no bytes, either way, for this long is closed (between
    /// keep-alive requests, or a client that stopped reading).
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// A request not answered within this is answered `408 deadline_exceeded` (a streamed
    /// response, like `/metrics`, must start within it).
    #[serde(with = "duration")]
    pub request_timeout: Duration,
    /// Largest request body accepted, in bytes; a larger one is answered `400
    /// invalid_argument`.
    pub max_body_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7701)),
            open_metrics: false,
            tls: false,
            cert: None,
            key: None,
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            max_body_bytes: 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct IngestConfig {
    /// Largest accepted report, in bytes (encoded protobuf). Larger ones are rejected with
    /// gRPC `InvalidArgument`.
    pub max_report_bytes: usize,
    /// Most probe results in one report.
    pub max_probes_per_report: usize,
    /// Most readings (filesystems, interfaces, sensors, ...) in one probe result.
    pub max_readings_per_probe: usize,
    /// Longest string anywhere in a report (names, messages, facts), in bytes.
    pub max_string_bytes: usize,
    /// Live reports one host may send per minute (a burst of this many, refilled evenly);
    /// more end the stream with `RESOURCE_EXHAUSTED`. Replayed reports are not counted here.
    pub live_reports_per_minute: u32,
    /// Replayed reports (a spool draining after an outage) are accepted at most this fast per
    /// stream: the collector paces them, so a backlog drains steadily (how many a stream may
    /// carry at all: `replay_slack_reports`).
    pub replay_reports_per_second: u32,
    /// Replayed reports a stream may carry beyond what the host's time away allows (one per
    /// report interval since its last stored report); more end the stream with
    /// `RESOURCE_EXHAUSTED` and the agent keeps them spooled for its next stream.
    pub replay_slack_reports: u32,
    /// Most distinct roll-up series (`filesystem.used_ratio:/var`, …) stored per host;
    /// readings of further series are counted and not stored.
    pub max_series_per_host: usize,
    /// Most roll-up series one host may add per UTC day.
    pub max_new_series_per_day: usize,
    /// Longest roll-up series name stored, in bytes; longer ones are counted and not stored.
    pub max_series_name_bytes: usize,
    /// Most reports committed together in one transaction (group commit).
    pub max_batch: usize,
    /// A host is "silent" when its last report is older than max(3 × its interval, this).
    #[serde(with = "duration")]
    pub min_silence: Duration,
    /// How often each replica reloads the revoked hosts; a revoked host's open stream ends
    /// within this.
    #[serde(with = "duration")]
    pub revocation_poll: Duration,
}

/// Default of `ingest.replay_slack_reports`: room for the few reports in flight when a stream
/// broke (sent, perhaps stored, not acknowledged) and for rounding.
pub const DEFAULT_REPLAY_SLACK_REPORTS: u32 = 20;
/// Default of `ingest.max_series_per_host`: ten times what a large server reports (two series
/// per filesystem, one per temperature sensor).
pub const DEFAULT_MAX_SERIES_PER_HOST: usize = 2_000;
/// Default of `ingest.max_new_series_per_day`: room for a host rebuilt with new disks in a day.
pub const DEFAULT_MAX_NEW_SERIES_PER_DAY: usize = 500;
/// Default of `ingest.max_series_name_bytes`.
pub const DEFAULT_MAX_SERIES_NAME_BYTES: usize = 256;

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_report_bytes: 1024 * 1024,
            max_probes_per_report: 256,
            max_readings_per_probe: 4096,
            max_string_bytes: 4096,
            live_reports_per_minute: 120,
            replay_reports_per_second: 200,
            replay_slack_reports: DEFAULT_REPLAY_SLACK_REPORTS,
            max_series_per_host: DEFAULT_MAX_SERIES_PER_HOST,
            max_new_series_per_day: DEFAULT_MAX_NEW_SERIES_PER_DAY,
            max_series_name_bytes: DEFAULT_MAX_SERIES_NAME_BYTES,
            max_batch: 512,
            min_silence: Duration::from_secs(60),
            revocation_poll: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct RetentionConfig {
    /// How long a receipt per report (host, instance, seq, times) is kept.
    #[serde(with = "duration")]
    pub receipts: Duration,
    /// How long the 5-minute min/avg/max roll-ups of readings are kept.
    #[serde(with = "duration")]
    pub rollups: Duration,
    /// How often retention is enforced.
    #[serde(with = "duration")]
    pub sweep_every: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            receipts: Duration::from_secs(14 * 86_400),
            rollups: Duration::from_secs(400 * 86_400),
            sweep_every: Duration::from_secs(3600),
        }
    }
}

impl Validate for CollectorConfig {
    fn validate(&self) -> Result<(), FieldError> {
        if let Some(url) = &self.store.url {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(FieldError::new(
                    "store.url",
                    "must be a PostgreSQL URL (postgres://user@host:port/database); leave it \
                     unset for the embedded SQLite store in data_dir",
                ));
            }
            if let Err(err) = crate::store::postgres::targets::Targets::parse(url) {
                return Err(FieldError::new("store.url", format!("not a valid URL: {err}")));
            }
        }
        if self.grpc.max_connections == 0 {
            return Err(FieldError::new("grpc.max_connections", "must be at least 1"));
        }
        for (key, value) in [
            ("grpc.max_certless_connections", self.grpc.max_certless_connections),
            ("http.max_connections", self.http.max_connections),
        ] {
            if value == 0 {
                return Err(FieldError::new(key, "must be at least 1"));
            }
        }
        for (key, value) in [
            ("grpc.handshake_timeout", self.grpc.handshake_timeout),
            ("grpc.certless_timeout", self.grpc.certless_timeout),
            ("grpc.keepalive_interval", self.grpc.keepalive_interval),
            ("grpc.keepalive_timeout", self.grpc.keepalive_timeout),
            ("http.header_timeout", self.http.header_timeout),
            ("http.idle_timeout", self.http.idle_timeout),
            ("http.request_timeout", self.http.request_timeout),
        ] {
            if value.is_zero() {
                return Err(FieldError::new(key, "must be longer than 0s"));
            }
        }
        if self.grpc.idle_timeout <= self.grpc.keepalive_interval {
            return Err(FieldError::new(
                "grpc.idle_timeout",
                "must be longer than grpc.keepalive_interval, or healthy idle agents are cut",
            ));
        }
        if self.http.max_body_bytes < 1024 {
            return Err(FieldError::new("http.max_body_bytes", "must be at least 1024"));
        }
        for name in &self.grpc.server_names {
            if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '/') {
                return Err(FieldError::new(
                    "grpc.server_names",
                    format!("{name:?} is not a DNS name or IP address"),
                ));
            }
        }
        if self.http.cert.is_some() != self.http.key.is_some() {
            let set = if self.http.cert.is_some() { "http.cert" } else { "http.key" };
            return Err(FieldError::new(set, "set both http.cert and http.key, or neither"));
        }
        if self.http.cert.is_some() && !self.http.tls {
            return Err(FieldError::new("http.cert", "needs http.tls = true"));
        }
        if self.tls.ca_cert.is_some() != self.tls.ca_key.is_some() {
            let (set, missing) = if self.tls.ca_cert.is_some() {
                ("tls.ca_cert", "tls.ca_key")
            } else {
                ("tls.ca_key", "tls.ca_cert")
            };
            return Err(FieldError::new(
                set,
                format!("{missing} must be set too: give both CA files, or neither"),
            ));
        }
        if self.tls.client_cert_lifetime < Duration::from_secs(10) {
            return Err(FieldError::new("tls.client_cert_lifetime", "must be at least 10s"));
        }
        if self.enrollment.attempts_per_minute == 0 {
            return Err(FieldError::new("enrollment.attempts_per_minute", "must be at least 1"));
        }
        if self.ingest.revocation_poll.is_zero()
            || self.ingest.revocation_poll > Duration::from_secs(60)
        {
            return Err(FieldError::new("ingest.revocation_poll", "must be between 1ms and 1m"));
        }
        if self.ingest.max_report_bytes < 1024 || self.ingest.max_report_bytes > 64 * 1024 * 1024 {
            return Err(FieldError::new(
                "ingest.max_report_bytes",
                "must be between 1024 and 67108864 (64 MiB)",
            ));
        }
        for (key, value) in [
            ("ingest.max_probes_per_report", self.ingest.max_probes_per_report),
            ("ingest.max_readings_per_probe", self.ingest.max_readings_per_probe),
            ("ingest.max_string_bytes", self.ingest.max_string_bytes),
            ("ingest.live_reports_per_minute", self.ingest.live_reports_per_minute as usize),
            ("ingest.replay_reports_per_second", self.ingest.replay_reports_per_second as usize),
            ("ingest.max_series_per_host", self.ingest.max_series_per_host),
            ("ingest.max_new_series_per_day", self.ingest.max_new_series_per_day),
            ("ingest.max_series_name_bytes", self.ingest.max_series_name_bytes),
        ] {
            if value == 0 {
                return Err(FieldError::new(key, "must be at least 1"));
            }
        }
        if self.ingest.max_batch == 0 || self.ingest.max_batch > 10_000 {
            return Err(FieldError::new("ingest.max_batch", "must be between 1 and 10000"));
        }
        if self.retention.receipts < Duration::from_secs(3600) {
            return Err(FieldError::new("retention.receipts", "must be at least 1h"));
        }
        if self.retention.rollups < Duration::from_secs(86_400) {
            return Err(FieldError::new("retention.rollups", "must be at least 1day"));
        }
        if self.retention.sweep_every < Duration::from_secs(1) {
            return Err(FieldError::new("retention.sweep_every", "must be at least 1s"));
        }
        self.incidents.validate()?;
        self.rule_sets()?;
        self.validate_sla()?;
        Ok(())
    }
}

impl CollectorConfig {
    /// The effective rules: the global set and one per customer with overrides.
    pub fn rule_sets(&self) -> Result<crate::incidents::CustomerRules, FieldError> {
        let global = RuleSet::new(&self.rules, None)?;
        let mut customers = BTreeMap::new();
        for (name, customer) in &self.customers {
            if !customer.rules.is_empty() {
                let set = RuleSet::new(&self.rules, Some((name.as_str(), &customer.rules)))?;
                customers.insert(name.clone(), set);
            }
        }
        Ok(crate::incidents::CustomerRules { global, customers })
    }

    /// How long without a report makes a host of `customer` silent (before 3 × interval).
    pub fn min_silence(&self, customer: &str) -> Duration {
        self.customers.get(customer).and_then(|c| c.min_silence).unwrap_or(self.ingest.min_silence)
    }
}

impl CollectorConfig {
    fn validate_sla(&self) -> Result<(), FieldError> {
        if self.sla.sweep_every.is_zero() {
            return Err(FieldError::new("sla.sweep_every", "must be longer than 0s"));
        }
        if self.sla.lease_ttl < self.sla.sweep_every * 2 {
            return Err(FieldError::new(
                "sla.lease_ttl",
                "must be at least twice sla.sweep_every, or the lease lapses between sweeps",
            ));
        }
        if self.notify.alertmanager_repeat < Duration::from_secs(1) {
            return Err(FieldError::new("notify.alertmanager_repeat", "must be at least 1s"));
        }
        if !(1..=10_000).contains(&self.metrics.max_series_per_host) {
            return Err(FieldError::new(
                "metrics.max_series_per_host",
                "must be between 1 and 10000",
            ));
        }
        if self.notify.max_attempts == 0 {
            return Err(FieldError::new("notify.max_attempts", "must be at least 1"));
        }
        if self.notify.dead_letter_retry < Duration::from_secs(1) {
            return Err(FieldError::new("notify.dead_letter_retry", "must be at least 1s"));
        }
        for name in &self.notify.default_receivers {
            if !self.notify.receivers.contains_key(name) {
                return Err(FieldError::new(
                    "notify.default_receivers",
                    format!("unknown receiver {name:?}: define it under [notify.receivers.{name}]"),
                ));
            }
        }
        for (name, r) in &self.notify.receivers {
            let key = format!("notify.receivers.{name}");
            let url = match (&r.alertmanager, &r.webhook) {
                (Some(url), None) => url,
                (None, Some(url)) => {
                    if r.secret_file.is_none() {
                        return Err(FieldError::new(
                            format!("{key}.secret_file"),
                            "a webhook needs a signing secret file",
                        ));
                    }
                    url
                }
                _ => {
                    return Err(FieldError::new(
                        key,
                        "set exactly one of `alertmanager` or `webhook`",
                    ));
                }
            };
            let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
            if !scheme_ok || reqwest::Url::parse(url).is_err() {
                return Err(FieldError::new(
                    key,
                    format!("{url:?} is not an http:// or https:// URL"),
                ));
            }
        }
        Ok(())
    }

    /// The names of the configured receivers.
    pub fn receiver_names(&self) -> Vec<&str> {
        self.notify.receivers.keys().map(String::as_str).collect()
    }
}

impl IncidentsConfig {
    fn validate(&self) -> Result<(), FieldError> {
        if self.site_outage_min_hosts < 2 {
            return Err(FieldError::new("incidents.site_outage_min_hosts", "must be at least 2"));
        }
        if !(self.site_outage_ratio > 0.0 && self.site_outage_ratio <= 1.0) {
            return Err(FieldError::new(
                "incidents.site_outage_ratio",
                "must be more than 0 and at most 1",
            ));
        }
        if self.flap_changes < 2 {
            return Err(FieldError::new("incidents.flap_changes", "must be at least 2"));
        }
        if !(1..=4).contains(&self.late_event_max_level) {
            return Err(FieldError::new("incidents.late_event_max_level", "must be 1, 2, 3 or 4"));
        }
        for (key, value) in [
            ("incidents.flap_window", self.flap_window),
            ("incidents.site_outage_window", self.site_outage_window),
            ("incidents.sweep_every", self.sweep_every),
        ] {
            if value.is_zero() {
                return Err(FieldError::new(key, "must be longer than 0s"));
            }
        }
        Ok(())
    }
}

/// The example config shipped in `packaging/config/`, generated from the defaults.
pub fn example_toml() -> String {
    let body = toml::to_string_pretty(&CollectorConfig::default()).expect("defaults serialize");
    format!(
        "# vigil-collector configuration (generated from the defaults; see docs/configuration.md).\n\
         # Every key is optional. Durations are written like \"10s\", \"5m\", \"14days\".\n\n{body}"
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use vigil_config::{Strictness, load_str};

    use super::*;

    /// Every key of the example file has a row in docs/configuration.md.
    #[test]
    fn every_key_is_documented() {
        let doc = include_str!("../../docs/configuration.md");
        vigil_config::golden::assert_keys_documented(&example_toml(), doc);
    }

    #[test]
    fn example_file_matches_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../packaging/config/collector.example.toml");
        vigil_config::golden::assert_example_file::<CollectorConfig>(&path, &example_toml());
    }

    #[test]
    fn half_a_provided_ca_is_refused_with_line() {
        let err = load_str::<CollectorConfig>(
            Path::new("c.toml"),
            "[grpc]\nlisten = \"0.0.0.0:7700\"\n[tls]\nca_cert = \"/etc/vigil/ca.crt\"\n",
            Strictness::WarnUnknown,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.toml:4: key `tls.ca_cert`: tls.ca_key must be set too: give both CA files, or neither"
        );
    }

    #[test]
    fn bad_address_names_key() {
        let err = load_str::<CollectorConfig>(
            Path::new("c.toml"),
            "\n[http]\nlisten = \"localhost\"\n",
            Strictness::WarnUnknown,
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("c.toml:3: key `http.listen`: "), "{err}");
    }
}
