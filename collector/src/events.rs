//! The collector's own telemetry events. Each notable occurrence is one struct whose `emit`
//! writes the structured log line and moves the matching counter together, so logs and metrics
//! never disagree and labels stay fixed and low-cardinality.
//!
//! What a host or client sent reaches a log line only through [`crate::sanitize::for_log`]
//! (names) or [`crate::sanitize::for_log_text`] (messages), as a structured field, so no peer
//! can forge a line or make one long. Rejections a peer can cause at will (a refused report,
//! enrolment, handshake, connection or API token) write one line per source address per
//! [`REJECTION_LOG_INTERVAL_MS`], saying how many were suppressed since the last; their
//! counters count every one.

use std::net::{IpAddr, SocketAddr};
use std::sync::LazyLock;

use crate::classify::FaultLevel;
use crate::clock::UnixMs;
use crate::ids::HostId;
use crate::metrics as m;
use crate::ratelimit::LogThrottle;
use crate::sanitize::{for_log, for_log_text};
use crate::store::{IncidentChange, incident_number};

/// How long after a rejection's log line the same kind of rejection from the same source
/// address is only counted.
pub const REJECTION_LOG_INTERVAL_MS: i64 = 60_000;

/// Source addresses whose rejection lines are throttled one by one; addresses past these share
/// one slot (see [`LogThrottle`]).
const REJECTION_LOG_MAX_SOURCES: usize = 4_096;

/// The `event` label of `vigil_log_lines_suppressed_total`, one per throttled event (`enroll`
/// and `renew` are the refused enrolment calls).
pub const THROTTLED_EVENTS: [&str; 7] = [
    "report_rejected",
    "enroll",
    "renew",
    "tls_handshake_refused",
    "grpc_connection_refused",
    "http_connection_refused",
    "api_token_refused",
];

/// Throttled per event, reason and source address: a source's refusal of one reason never hides
/// another.
static REJECTION_LOG: LazyLock<LogThrottle<(&'static str, &'static str, IpAddr)>> =
    LazyLock::new(|| LogThrottle::new(REJECTION_LOG_INTERVAL_MS, REJECTION_LOG_MAX_SOURCES));

/// Whether a rejection `event` for `reason` from `source` at `now` writes its log line:
/// `Some(suppressed)` (the lines left out since the last one), or `None`, counted as a
/// suppressed line.
fn log_line(
    event: &'static str,
    reason: &'static str,
    source: Option<IpAddr>,
    now: UnixMs,
) -> Option<u64> {
    let key = (event, reason, source.unwrap_or(IpAddr::from([0, 0, 0, 0])));
    let said = REJECTION_LOG.admit(&key, now);
    if said.is_none() {
        metrics::counter!(m::LOG_LINES_SUPPRESSED_TOTAL, "event" => event).increment(1);
    }
    said
}

/// Why a report or stream was refused; the label of `vigil_ingest_reports_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    Malformed,
    TooLarge,
    ProtocolViolation,
    StoreUnavailable,
    /// No client certificate, or one the store does not know.
    Unauthenticated,
    /// A revoked host, or a Hello claiming another host.
    PermissionDenied,
    RateLimited,
    /// More replayed reports on one stream than the host's time away allows.
    ReplayLimited,
    /// A seq resent with other content than the one held (a restored agent state).
    SeqReused,
}

impl RejectReason {
    pub const ALL: [RejectReason; 9] = [
        Self::Malformed,
        Self::TooLarge,
        Self::ProtocolViolation,
        Self::StoreUnavailable,
        Self::Unauthenticated,
        Self::PermissionDenied,
        Self::RateLimited,
        Self::ReplayLimited,
        Self::SeqReused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::TooLarge => "too_large",
            Self::ProtocolViolation => "protocol_violation",
            Self::StoreUnavailable => "store_unavailable",
            Self::Unauthenticated => "unauthenticated",
            Self::PermissionDenied => "permission_denied",
            Self::RateLimited => "rate_limited",
            Self::ReplayLimited => "replay_limited",
            Self::SeqReused => "seq_reused",
        }
    }
}

#[derive(Debug)]
pub struct ReportRejected<'a> {
    pub reason: RejectReason,
    pub peer: Option<std::net::SocketAddr>,
    pub message: &'a str,
}

impl ReportRejected<'_> {
    pub fn emit(&self, now: UnixMs) {
        if let Some(suppressed) =
            log_line("report_rejected", self.reason.as_str(), self.peer.map(|p| p.ip()), now)
        {
            tracing::warn!(
                reason = self.reason.as_str(),
                peer = ?self.peer,
                detail = %for_log_text(self.message),
                suppressed,
                "report rejected"
            );
        }
        metrics::counter!(m::REPORTS_REJECTED_TOTAL, "reason" => self.reason.as_str()).increment(1);
    }
}

/// Readings of one report not stored because its host is at a series cap. Counted every
/// time; logged on the first of a stream (`first`), so a host over its caps does not flood
/// the log.
#[derive(Debug)]
pub struct SeriesCapped {
    pub host: HostId,
    pub refused: crate::ingest::cardinality::Refused,
    /// The series the host has.
    pub held: usize,
    pub first: bool,
}

impl SeriesCapped {
    pub fn emit(&self) {
        let r = &self.refused;
        if self.first {
            tracing::warn!(
                host = %self.host,
                held = self.held,
                name_too_long = r.name_too_long,
                host_full = r.host_full,
                day_full = r.day_full,
                "roll-up readings not stored: the host is at its series caps"
            );
        }
        for (cap, n) in [
            ("name_too_long", r.name_too_long),
            ("host_full", r.host_full),
            ("day_full", r.day_full),
        ] {
            if n > 0 {
                metrics::counter!(m::ROLLUP_READINGS_REFUSED_TOTAL, "cap" => cap)
                    .increment(u64::from(n));
            }
        }
        metrics::counter!(m::HOST_ROLLUP_READINGS_REFUSED_TOTAL, "host_id" => self.host.to_string())
            .increment(u64::from(r.total()));
    }
}

#[derive(Debug)]
pub struct BatchCommitted {
    pub stored: u64,
    pub duplicates: u64,
    /// Reports neither stored nor duplicates: refused by the store, each alone, or a reused seq
    /// (ingest counts each under its rejection reason, `malformed` or `seq_reused`).
    pub rejected: u64,
    pub seconds: f64,
}

impl BatchCommitted {
    pub fn emit(&self) {
        tracing::debug!(
            stored = self.stored,
            duplicates = self.duplicates,
            rejected = self.rejected,
            seconds = self.seconds,
            "batch committed"
        );
        metrics::counter!(m::REPORTS_TOTAL, "outcome" => "stored").increment(self.stored);
        metrics::counter!(m::REPORTS_TOTAL, "outcome" => "duplicate").increment(self.duplicates);
        metrics::histogram!(m::COMMIT_DURATION_SECONDS).record(self.seconds);
        metrics::histogram!(m::COMMIT_BATCH_REPORTS)
            .record((self.stored + self.duplicates + self.rejected) as f64);
    }
}

/// One delivery attempt of a notification, and what it came to. A delivery entering the dead
/// letter state is logged as an error naming the receiver (the host-less counterpart of a
/// finding); its attempts count as `outcome="failed"`.
#[derive(Debug)]
pub struct NotificationDelivered<'a> {
    pub delivery: &'a crate::store::DeliveryRow,
    pub outcome: &'a crate::store::DeliveryOutcome,
}

impl NotificationDelivered<'_> {
    pub fn emit(&self) {
        use crate::store::DeliveryOutcome;
        let d = self.delivery;
        let outcome = match self.outcome {
            DeliveryOutcome::Delivered => {
                tracing::info!(event = %d.event_id, receiver = %for_log(&d.receiver), attempt = d.attempts + 1, "notification delivered");
                "delivered"
            }
            DeliveryOutcome::Retry { error, .. } => {
                tracing::warn!(event = %d.event_id, receiver = %for_log(&d.receiver), attempt = d.attempts + 1, error = %for_log_text(error), "notification not delivered; will retry");
                "retry"
            }
            DeliveryOutcome::DeadLetter { error, .. }
                if d.state != crate::store::DeliveryState::DeadLetter =>
            {
                tracing::error!(event = %d.event_id, receiver = %for_log(&d.receiver), delivery = d.id.get(), attempt = d.attempts + 1, error = %for_log_text(error), "notification dead-lettered: retried slowly until the receiver takes it or an operator drops it");
                "failed"
            }
            DeliveryOutcome::DeadLetter { error, .. } => {
                tracing::warn!(event = %d.event_id, receiver = %for_log(&d.receiver), delivery = d.id.get(), attempt = d.attempts + 1, error = %for_log_text(error), "dead-lettered notification still not delivered");
                "failed"
            }
        };
        metrics::counter!(m::NOTIFICATIONS_TOTAL, "outcome" => outcome).increment(1);
    }
}

/// The incident stage committed the outcome of these reports.
#[derive(Debug)]
pub struct BatchEvaluated<'a> {
    pub records: &'a [crate::store::ReportRecord],
}

impl BatchEvaluated<'_> {
    pub fn emit(&self) {
        let histogram = metrics::histogram!(m::EVALUATION_LATENCY_SECONDS);
        for record in self.records {
            histogram.record(record.received.elapsed().as_secs_f64());
        }
    }
}

/// Evaluating one stored report failed (the store refused its outcome, or a rule panicked on
/// it): that report is skipped, it stays stored, and the next report of its host is evaluated
/// as usual.
#[derive(Debug)]
pub struct EvaluationFailed<'a> {
    pub record: &'a crate::store::ReportRecord,
    pub error: &'a str,
}

impl EvaluationFailed<'_> {
    pub fn emit(&self) {
        let r = self.record;
        tracing::error!(
            host = %r.host_id,
            instance = %for_log(&r.instance),
            seq = r.seq,
            error = %for_log_text(self.error),
            "evaluating a report failed; it is skipped and the next one is evaluated"
        );
        metrics::counter!(m::INCIDENT_EVALUATION_ERRORS_TOTAL).increment(1);
    }
}

#[derive(Debug)]
pub struct StreamOpened<'a> {
    pub host: HostId,
    pub hostname: &'a str,
    pub instance: &'a str,
    pub agent_version: &'a str,
    pub peer: Option<std::net::SocketAddr>,
}

impl StreamOpened<'_> {
    pub fn emit(&self) {
        tracing::info!(
            host = %self.host,
            hostname = %for_log(self.hostname),
            instance = %for_log(self.instance),
            agent_version = %for_log(self.agent_version),
            peer = ?self.peer,
            "agent connected"
        );
        metrics::gauge!(m::STREAMS_OPEN).increment(1.0);
        STREAMS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Agent report streams open in this process, as the `STREAMS_OPEN` gauge counts them; read
/// by the service status line ([`streams_open`]).
static STREAMS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// How many agent report streams are open now.
pub fn streams_open() -> i64 {
    STREAMS.load(std::sync::atomic::Ordering::Relaxed).max(0)
}

#[derive(Debug)]
pub struct StreamClosed<'a> {
    pub host: HostId,
    pub instance: &'a str,
    pub reason: &'a str,
}

impl StreamClosed<'_> {
    pub fn emit(&self) {
        tracing::info!(host = %self.host, instance = %for_log(self.instance), reason = %for_log_text(self.reason), "agent disconnected");
        metrics::gauge!(m::STREAMS_OPEN).decrement(1.0);
        STREAMS.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

#[derive(Debug)]
pub struct HostRegistered<'a> {
    pub host: HostId,
    pub hostname: &'a str,
}

impl HostRegistered<'_> {
    pub fn emit(&self) {
        tracing::info!(host = %self.host, hostname = %for_log(self.hostname), "host registered");
        metrics::counter!(m::HOSTS_REGISTERED_TOTAL).increment(1);
    }
}

/// A TLS handshake on the agents' port failed: plaintext, a foreign or expired certificate,
/// garbage, or too slow.
#[derive(Debug)]
pub struct HandshakeFailed<'a> {
    pub peer: SocketAddr,
    pub error: &'a str,
}

impl HandshakeFailed<'_> {
    pub fn emit(&self, now: UnixMs) {
        if let Some(suppressed) = log_line("tls_handshake_refused", "", Some(self.peer.ip()), now) {
            tracing::warn!(peer = %self.peer, error = %for_log_text(self.error), suppressed, "TLS handshake refused");
        }
        metrics::counter!(m::TLS_HANDSHAKE_FAILURES_TOTAL).increment(1);
    }
}

/// Which listener a connection came in on; the `listener` label of
/// `vigil_connections_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Listener {
    Grpc,
    Http,
}

impl Listener {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::Http => "http",
        }
    }
}

/// Every `reason` of `vigil_connections_refused_total`, by listener.
pub const CONNECTION_REFUSALS: [(Listener, &str); 11] = [
    (Listener::Grpc, "accept_failed"),
    (Listener::Grpc, "connection_limit"),
    (Listener::Grpc, "certless_limit"),
    (Listener::Grpc, "certless_timeout"),
    (Listener::Grpc, "one_call"),
    (Listener::Grpc, "certificate_required"),
    (Listener::Grpc, "idle_timeout"),
    (Listener::Http, "accept_failed"),
    (Listener::Http, "connection_limit"),
    (Listener::Http, "header_timeout"),
    (Listener::Http, "idle_timeout"),
];

/// A connection the collector refused or cut, or a call it refused on one: over a cap, past a
/// deadline, or not allowed without a client certificate. Counted every time; logged through
/// the rejection throttle (one line per listener and reason per interval, with the number left
/// out), so a flood of connections cannot flood the log.
#[derive(Debug)]
pub struct ConnectionRefused<'a> {
    pub listener: Listener,
    pub reason: &'static str,
    /// What the peer was told, if anything (logged with the line that gets through).
    pub message: &'a str,
}

impl ConnectionRefused<'_> {
    pub fn emit(&self) {
        metrics::counter!(
            m::CONNECTIONS_REFUSED_TOTAL,
            "listener" => self.listener.as_str(),
            "reason" => self.reason
        )
        .increment(1);
        // Connection handling runs on real time (its deadlines are tokio timers), so the
        // throttle reads the system clock here.
        let now = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
        let event = match self.listener {
            Listener::Grpc => "grpc_connection_refused",
            Listener::Http => "http_connection_refused",
        };
        if let Some(suppressed) = log_line(event, self.reason, None, now) {
            tracing::warn!(
                listener = self.listener.as_str(),
                reason = self.reason,
                suppressed,
                message = %crate::sanitize::for_log_text(self.message),
                "connections refused or cut (see vigil_connections_refused_total)"
            );
        }
    }
}

/// The outcome of one `Enroll` or `Renew` call. Never carries the token.
#[derive(Debug)]
pub struct EnrollmentAttempt<'a> {
    pub call: &'static str,
    pub outcome: &'static str,
    pub peer: Option<std::net::SocketAddr>,
    pub host: Option<HostId>,
    pub message: &'a str,
}

impl EnrollmentAttempt<'_> {
    pub fn emit(&self, now: UnixMs) {
        let host = self.host.map(|h| h.to_string());
        let detail = for_log_text(self.message);
        if self.outcome == "ok" {
            tracing::info!(call = self.call, peer = ?self.peer, host = ?host, detail = %detail, "enrolment call succeeded");
        } else if let Some(suppressed) =
            log_line(self.call, self.outcome, self.peer.map(|p| p.ip()), now)
        {
            if self.call == "renew" {
                tracing::warn!(outcome = self.outcome, peer = ?self.peer, host = ?host, detail = %detail, suppressed, "renew refused");
            } else {
                tracing::warn!(outcome = self.outcome, peer = ?self.peer, host = ?host, detail = %detail, suppressed, "enroll refused");
            }
        }
        metrics::counter!(m::ENROLLMENTS_TOTAL, "call" => self.call, "outcome" => self.outcome)
            .increment(1);
    }
}

#[derive(Debug)]
pub struct ClonedIdentity<'a> {
    pub host: HostId,
    pub instance: &'a str,
    pub other_instance: &'a str,
}

impl ClonedIdentity<'_> {
    pub fn emit(&self) {
        tracing::warn!(
            host = %self.host,
            instance = %for_log(self.instance),
            other_instance = %for_log(self.other_instance),
            "two agent instances are reporting at once as one host (cloned identity); \
             both are stored"
        );
        metrics::counter!(m::CLONED_IDENTITY_TOTAL).increment(1);
    }
}

#[derive(Debug)]
pub struct RetentionSwept {
    pub receipts: u64,
    pub rollups: u64,
    /// Host series forgotten because their roll-ups all expired.
    pub series: u64,
    /// Transactions the deletions took (each at most `tasks::retention::PRUNE_BATCH_ROWS`
    /// rows).
    pub batches: u64,
}

impl RetentionSwept {
    pub fn emit(&self) {
        tracing::info!(
            receipts = self.receipts,
            rollups = self.rollups,
            series = self.series,
            batches = self.batches,
            "retention sweep done"
        );
        metrics::counter!(m::RETENTION_DELETED_TOTAL, "table" => "report_receipts")
            .increment(self.receipts);
        metrics::counter!(m::RETENTION_DELETED_TOTAL, "table" => "rollups_5m")
            .increment(self.rollups);
        metrics::counter!(m::RETENTION_DELETED_TOTAL, "table" => "host_series")
            .increment(self.series);
    }
}

/// A background task finished one run (see [`crate::tasks`]). The task logs what went wrong
/// itself; this counts the run and records how long it took.
#[derive(Debug)]
pub struct BackgroundTaskRan<'a> {
    pub task: &'static str,
    pub outcome: &'a crate::tasks::TaskOutcome,
    pub took: std::time::Duration,
}

impl BackgroundTaskRan<'_> {
    /// Makes the task's counters exist, at 0, from its registration on.
    pub fn register(task: &'static str) {
        for outcome in ["ok", "error"] {
            metrics::counter!(m::BACKGROUND_TASK_ACTIVATIONS_TOTAL, "task" => task, "outcome" => outcome)
                .absolute(0);
        }
    }

    pub fn emit(&self) {
        tracing::debug!(
            task = self.task,
            outcome = self.outcome.as_str(),
            summary = self.outcome.summary(),
            took_ms = self.took.as_millis() as u64,
            "background task ran"
        );
        metrics::counter!(m::BACKGROUND_TASK_ACTIVATIONS_TOTAL, "task" => self.task, "outcome" => self.outcome.as_str())
            .increment(1);
        metrics::gauge!(m::BACKGROUND_TASK_LAST_DURATION_SECONDS, "task" => self.task)
            .set(self.took.as_secs_f64());
    }
}

/// The collector opened, changed or resolved an incident.
#[derive(Debug)]
pub struct IncidentChanged<'a> {
    pub change: &'a IncidentChange,
}

impl IncidentChanged<'_> {
    pub fn emit(&self) {
        let c = self.change;
        tracing::info!(
            incident = %incident_number(c.incident_id),
            change = c.change,
            level = c.level.as_u8(),
            rule = %for_log(&c.rule),
            resource = %for_log(&c.resource),
            "incident {}", c.change
        );
        let level = match c.level {
            FaultLevel::L1 => "1",
            FaultLevel::L2 => "2",
            FaultLevel::L3 => "3",
            FaultLevel::L4 => "4",
        };
        metrics::counter!(m::INCIDENT_CHANGES_TOTAL, "change" => c.change, "level" => level)
            .increment(1);
    }
}

/// An API request refused for its token: missing (counted only) or unknown or revoked (logged
/// once per source address per interval).
#[derive(Debug)]
pub struct ApiTokenRefused {
    pub source: Option<SocketAddr>,
    /// `missing_token` or `unknown_token`.
    pub reason: &'static str,
}

impl ApiTokenRefused {
    pub fn emit(&self, now: UnixMs) {
        if self.reason != "missing_token"
            && let Some(suppressed) =
                log_line("api_token_refused", self.reason, self.source.map(|s| s.ip()), now)
        {
            tracing::warn!(source = ?self.source, reason = self.reason, suppressed, "API request with an unknown or revoked token");
        }
        metrics::counter!(m::API_UNAUTHENTICATED_TOTAL, "reason" => self.reason).increment(1);
    }
}
