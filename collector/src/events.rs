//! The collector's own telemetry events. Each notable occurrence is one struct whose `emit`
//! writes the structured log line and moves the matching counter together, so logs and metrics
//! never disagree and labels stay fixed and low-cardinality.

use crate::ids::HostId;
use crate::metrics as m;
use crate::store::{IncidentChange, incident_number};

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
    pub fn emit(&self) {
        tracing::warn!(
            reason = self.reason.as_str(),
            peer = ?self.peer,
            message = self.message,
            "report rejected"
        );
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
                tracing::info!(event = %d.event_id, receiver = %d.receiver, attempt = d.attempts + 1, "notification delivered");
                "delivered"
            }
            DeliveryOutcome::Retry { error, .. } => {
                tracing::warn!(event = %d.event_id, receiver = %d.receiver, attempt = d.attempts + 1, error = %error, "notification not delivered; will retry");
                "retry"
            }
            DeliveryOutcome::DeadLetter { error, .. } if d.state != "dead_letter" => {
                tracing::error!(event = %d.event_id, receiver = %d.receiver, delivery = d.id, attempt = d.attempts + 1, error = %error, "notification dead-lettered: retried slowly until the receiver takes it or an operator drops it");
                "failed"
            }
            DeliveryOutcome::DeadLetter { error, .. } => {
                tracing::warn!(event = %d.event_id, receiver = %d.receiver, delivery = d.id, attempt = d.attempts + 1, error = %error, "dead-lettered notification still not delivered");
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
            instance = %r.instance,
            seq = r.seq,
            error = self.error,
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
            hostname = self.hostname,
            instance = self.instance,
            agent_version = self.agent_version,
            peer = ?self.peer,
            "agent connected"
        );
        metrics::gauge!(m::STREAMS_OPEN).increment(1.0);
    }
}

#[derive(Debug)]
pub struct StreamClosed<'a> {
    pub host: HostId,
    pub instance: &'a str,
    pub reason: &'a str,
}

impl StreamClosed<'_> {
    pub fn emit(&self) {
        tracing::info!(host = %self.host, instance = self.instance, reason = self.reason, "agent disconnected");
        metrics::gauge!(m::STREAMS_OPEN).decrement(1.0);
    }
}

#[derive(Debug)]
pub struct HostRegistered<'a> {
    pub host: HostId,
    pub hostname: &'a str,
}

impl HostRegistered<'_> {
    pub fn emit(&self) {
        tracing::info!(host = %self.host, hostname = self.hostname, "host registered");
        metrics::counter!(m::HOSTS_REGISTERED_TOTAL).increment(1);
    }
}

/// A TLS handshake on the agents' port failed: plaintext, a foreign or expired certificate,
/// garbage, or too slow.
#[derive(Debug)]
pub struct HandshakeFailed<'a> {
    pub peer: std::net::SocketAddr,
    pub error: &'a str,
}

impl HandshakeFailed<'_> {
    pub fn emit(&self) {
        tracing::warn!(peer = %self.peer, error = self.error, "TLS handshake refused");
        metrics::counter!(m::TLS_HANDSHAKE_FAILURES_TOTAL).increment(1);
    }
}

/// A connection closed at once because the listener is at `grpc.max_connections`.
#[derive(Debug)]
pub struct ConnectionRefused {
    pub peer: std::net::SocketAddr,
    pub reason: &'static str,
}

impl ConnectionRefused {
    pub fn emit(&self) {
        tracing::warn!(peer = %self.peer, reason = self.reason, "connection refused");
        metrics::counter!(m::CONNECTIONS_REFUSED_TOTAL).increment(1);
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
    pub fn emit(&self) {
        if self.outcome == "ok" {
            tracing::info!(call = self.call, peer = ?self.peer, host = ?self.host.map(|h| h.to_string()), "{}", self.message);
        } else {
            tracing::warn!(call = self.call, outcome = self.outcome, peer = ?self.peer, host = ?self.host.map(|h| h.to_string()), "{} refused: {}", self.call, self.message);
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
            instance = self.instance,
            other_instance = self.other_instance,
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
    /// Transactions the deletions took (each at most `tasks::PRUNE_BATCH_ROWS` rows).
    pub batches: u64,
}

impl RetentionSwept {
    pub fn emit(&self) {
        tracing::info!(
            receipts = self.receipts,
            rollups = self.rollups,
            batches = self.batches,
            "retention sweep done"
        );
        metrics::counter!(m::RETENTION_DELETED_TOTAL, "table" => "report_receipts")
            .increment(self.receipts);
        metrics::counter!(m::RETENTION_DELETED_TOTAL, "table" => "rollups_5m")
            .increment(self.rollups);
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
            level = c.level,
            rule = %c.rule,
            resource = %c.resource,
            "incident {}", c.change
        );
        let level = match c.level {
            1 => "1",
            2 => "2",
            3 => "3",
            _ => "4",
        };
        metrics::counter!(m::INCIDENT_CHANGES_TOTAL, "change" => c.change, "level" => level)
            .increment(1);
    }
}
