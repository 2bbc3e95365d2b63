//! The store: the only way any stage of the collector touches state. [`Store`] is a trait so the
//! embedded SQLite backend (the default, nothing to set up) and a PostgreSQL backend (for several
//! replicas) share one contract and one conformance suite (`tests.rs`). Migrations are numbered,
//! append-only files per engine under `migrations/`.

use async_trait::async_trait;
use serde::Serialize;

use crate::clock::UnixMs;
use crate::error::{ErrorCode, HasErrorCode};
use crate::ids::{CustomerId, HostId, SiteId};

mod access;
mod incidents;
mod sla;
pub mod sqlite;
mod sqlite_incidents;
mod sqlite_sla;
#[cfg(test)]
pub(crate) mod tests;

pub use access::*;
pub use incidents::*;
pub use sla::*;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store migration failed: {0}")]
    Migration(String),
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The change is refused in the present state (it would revoke the last admin token).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The store refused this one report (a constraint it breaks, a value it cannot hold):
    /// sending it again fails again. Only ever one record's outcome in
    /// [`Store::commit_reports`]; the rest of the batch is unaffected.
    #[error("report refused by the store: {0}")]
    Rejected(String),
}

impl HasErrorCode for StoreError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Unavailable(_) => ErrorCode::Unavailable,
            Self::Migration(_) | Self::Corrupt(_) => ErrorCode::Internal,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::Conflict(_) => ErrorCode::AlreadyExists,
            Self::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
            Self::Rejected(_) => ErrorCode::InvalidArgument,
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// One validated report, ready to commit.
#[derive(Debug, Clone)]
pub struct ReportRecord {
    pub host_id: HostId,
    pub instance: String,
    pub seq: u64,
    pub collected_at_ms: UnixMs,
    pub received_at_ms: UnixMs,
    pub replayed: bool,
    pub hostname: String,
    pub agent_version: String,
    /// The agent's reporting interval (from its Hello).
    pub interval_seconds: u32,
    /// The report as encoded protobuf, with `replayed` cleared (it says how the report
    /// travelled, not what it is).
    pub encoded: Vec<u8>,
    /// SHA-256 of `encoded`: kept with the receipt, so a resent seq with other content (a
    /// reused seq) is told apart from a true duplicate.
    pub digest: [u8; 32],
    /// The instance's `pruned_through_seq` when its stream opened: a seq at or below it may
    /// be older than the receipt window (see [`CommitOutcome::Stale`]).
    pub pruned_through_seq: u64,
    /// Scalar readings for the 5-minute roll-ups: (series name, value), only of the series
    /// the host may store (see `ingest::cardinality`).
    pub series: Vec<(String, f64)>,
    /// The series of `series` the host did not have: recorded as its series.
    pub new_series: Vec<String>,
    /// Readings of the report not stored because the host is at a series cap.
    pub series_refused: u32,
    /// When the collector received it, on the monotonic clock: the start of the "received →
    /// evaluated" latency (`vigil_incident_evaluation_latency_seconds`). Never stored.
    pub received: std::time::Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    /// First time this (host, instance, seq) was seen: stored.
    Stored,
    /// Already held with the same content: acknowledged and ignored.
    Duplicate,
    /// The seq is held with other content: the instance reused a seq (its state directory was
    /// restored). Not stored and not acknowledged; the agent must start a new instance.
    Conflict,
    /// Older than the receipt window (the seq is at or below what retention pruned for the
    /// instance, and no receipt is left): it may have been stored before, so it is not stored
    /// again. Acknowledged as stale.
    Stale,
}

/// A stored host with what the list view needs.
#[derive(Debug, Clone, Serialize)]
pub struct HostRow {
    pub id: HostId,
    pub customer_id: CustomerId,
    pub customer: String,
    pub site_id: SiteId,
    pub site: String,
    pub hostname: String,
    pub created_at_ms: UnixMs,
    pub last_seen_ms: Option<UnixMs>,
    pub interval_seconds: u32,
    pub agent_version: String,
    pub goodbye_reason: Option<String>,
    pub goodbye_at_ms: Option<UnixMs>,
    pub machine_id: String,
    pub revoked_at_ms: Option<UnixMs>,
    pub replaced_by: Option<HostId>,
}

/// The newest report of a host.
#[derive(Debug, Clone)]
pub struct LatestReport {
    pub instance: String,
    pub seq: u64,
    pub collected_at_ms: UnixMs,
    pub received_at_ms: UnixMs,
    pub encoded: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct InstanceRow {
    pub instance: String,
    pub first_seen_ms: UnixMs,
    pub last_seen_ms: UnixMs,
    pub last_live_ms: Option<UnixMs>,
    pub max_seq: u64,
    /// The highest seq of this instance whose receipt retention deleted (0: none yet).
    pub pruned_through_seq: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Receipt {
    pub instance: String,
    pub seq: u64,
    pub collected_at_ms: UnixMs,
    pub received_at_ms: UnixMs,
    pub replayed: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct HostEvent {
    pub at_ms: UnixMs,
    pub kind: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Rollup {
    pub series: String,
    pub bucket_start_ms: UnixMs,
    pub min: f64,
    pub max: f64,
    pub avg: f64,
    pub count: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PruneStats {
    pub receipts: u64,
    pub rollups: u64,
    /// Entries of `host_series` whose roll-ups have all expired: the series no longer counts
    /// toward its host's cap.
    pub series: u64,
    /// Delete statements run (each one transaction of at most the batch size).
    pub batches: u64,
}

/// Roll-up bucket width.
pub const ROLLUP_BUCKET_MS: i64 = 5 * 60 * 1000;

#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    // ---- tenancy ----
    async fn create_customer(&self, name: &str, now: UnixMs) -> StoreResult<CustomerRow>;
    /// Creates a site of the customer named `customer`; `NotFound` when there is none.
    async fn create_site(&self, customer: &str, name: &str, now: UnixMs) -> StoreResult<SiteRow>;
    /// Customers with their sites, by name.
    async fn list_customers(&self) -> StoreResult<Vec<CustomerRow>>;
    async fn find_site(&self, customer: &str, site: &str) -> StoreResult<Option<SiteRow>>;
    async fn find_customer(&self, name: &str) -> StoreResult<Option<CustomerRow>>;
    /// Moves a host to another site (its history moves with it).
    async fn move_host(&self, host: HostId, site: SiteId) -> StoreResult<()>;

    // ---- enrolment and certificates ----
    async fn create_enrollment_token(&self, token: &EnrollmentToken) -> StoreResult<()>;
    async fn list_enrollment_tokens(&self) -> StoreResult<Vec<EnrollmentTokenRow>>;
    /// In one transaction: checks and uses up one use of the token whose secret hashes to
    /// `secret_sha256`, creates the host in the token's site and records its first certificate.
    /// A refused token changes nothing.
    async fn enroll_host(
        &self,
        secret_sha256: &str,
        host: &NewHost,
        cert: &CertificateRecord,
        now: UnixMs,
    ) -> StoreResult<Result<HostRow, TokenRefusal>>;
    /// The certificate with this fingerprint, with its host's revocation state.
    async fn certificate(&self, fingerprint: &str) -> StoreResult<Option<CertificateRow>>;
    async fn add_certificate(&self, cert: &CertificateRecord) -> StoreResult<()>;
    /// Revokes a host: its certificates stop working. Returns false when it was revoked already.
    async fn revoke_host(&self, host: HostId, now: UnixMs) -> StoreResult<bool>;
    /// Every revoked host (what each replica polls to cut off open streams).
    async fn revoked_hosts(&self) -> StoreResult<Vec<HostId>>;
    /// Hands `old`'s history (receipts, instances, roll-ups, latest report, events) to `new` and
    /// revokes `old`, which keeps a pointer to `new`.
    async fn replace_host(&self, old: HostId, new: HostId, now: UnixMs) -> StoreResult<()>;

    // ---- operator API tokens and audit ----
    async fn create_api_token(&self, token: &ApiTokenRecord) -> StoreResult<()>;
    /// The live (not revoked) token whose secret hashes to `secret_sha256`.
    async fn api_token(&self, secret_sha256: &str) -> StoreResult<Option<ApiTokenRow>>;
    async fn list_api_tokens(&self) -> StoreResult<Vec<ApiTokenRow>>;
    /// Revokes the token (`Ok(false)` when it was revoked already). Refuses with
    /// [`StoreError::FailedPrecondition`] to revoke the last live fleet-wide admin token, in
    /// the same write as the revocation, so two concurrent revocations cannot both pass.
    async fn revoke_api_token(&self, id: &str, now: UnixMs) -> StoreResult<bool>;
    async fn count_api_tokens(&self) -> StoreResult<u64>;
    async fn record_audit(&self, entry: &AuditEntry) -> StoreResult<()>;
    /// Newest first.
    async fn audit_log(&self, limit: u32) -> StoreResult<Vec<AuditEntry>>;

    /// Commits the records in one durable transaction (group commit) and says, per record,
    /// whether it was new. Each record is written under its own savepoint: one the store
    /// refuses (a constraint it breaks, a value it cannot hold) is undone alone and answered
    /// `Err(StoreError::Rejected)`, and every other record is committed. The outer error is the
    /// store failing as a whole (it cannot begin or commit, I/O, locked, disk full): then no
    /// record is committed.
    async fn commit_reports(
        &self,
        records: &[ReportRecord],
    ) -> StoreResult<Vec<StoreResult<CommitOutcome>>>;

    /// Records that an agent said goodbye (`reason`: stop, reboot, upgrade).
    async fn record_goodbye(&self, host: HostId, reason: &str, at: UnixMs) -> StoreResult<()>;

    /// Appends to a host's timeline; recording the same (kind, dedupe_key) again is a no-op.
    /// Returns whether the event was new.
    async fn record_event(
        &self,
        host: HostId,
        kind: &str,
        dedupe_key: &str,
        detail: &str,
        at: UnixMs,
    ) -> StoreResult<bool>;

    async fn list_hosts(&self) -> StoreResult<Vec<HostRow>>;
    async fn get_host(&self, id: HostId) -> StoreResult<Option<HostRow>>;
    async fn latest_report(&self, id: HostId) -> StoreResult<Option<LatestReport>>;
    /// The newest report of every host, keyed by host (for the list view).
    async fn latest_reports(&self) -> StoreResult<Vec<(HostId, LatestReport)>>;
    async fn instances(&self, id: HostId) -> StoreResult<Vec<InstanceRow>>;
    async fn events(&self, id: HostId, limit: u32) -> StoreResult<Vec<HostEvent>>;
    /// Receipts of one host, oldest first, optionally of one instance only.
    async fn receipts(
        &self,
        id: HostId,
        instance: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Receipt>>;
    async fn rollups(&self, id: HostId, series: &str, since: UnixMs) -> StoreResult<Vec<Rollup>>;
    /// The roll-up series the host has, each with when it was first stored.
    async fn host_series(&self, id: HostId) -> StoreResult<Vec<(String, UnixMs)>>;

    /// Deletes receipts received before `receipts_before` and roll-up buckets that started
    /// before `rollups_before`, at most `batch_rows` rows per transaction, letting other
    /// writes (ingest commits) in between. With the receipts of a batch it raises each agent
    /// instance's `pruned_through_seq` to the highest seq deleted. Then forgets each host
    /// series first stored before `rollups_before` that has no roll-up left, so a host's
    /// series cap counts what the store holds.
    async fn prune(
        &self,
        receipts_before: UnixMs,
        rollups_before: UnixMs,
        batch_rows: u32,
    ) -> StoreResult<PruneStats>;

    // ---- classification and incidents ----
    /// The stored classifier state of each of `hosts` that exists, with its tenancy.
    async fn eval_states(&self, hosts: &[HostId]) -> StoreResult<Vec<HostEvalState>>;
    /// Applies a batch of evaluations in one transaction: classifier state, host timeline
    /// entries and incident operations, in order. A resolved incident of the same fingerprint
    /// reopens when raised again within `reopen_within_ms`.
    async fn apply_evaluations(
        &self,
        batch: &[HostEvaluation],
        reopen_within_ms: i64,
        now: UnixMs,
    ) -> StoreResult<Vec<IncidentChange>>;
    /// Newest first.
    async fn list_incidents(&self, filter: &IncidentFilter) -> StoreResult<Vec<IncidentRow>>;
    async fn get_incident(&self, id: i64) -> StoreResult<Option<IncidentRow>>;
    /// Oldest first.
    async fn incident_timeline(&self, id: i64) -> StoreResult<Vec<TimelineEntry>>;
    /// A person works an incident. `NotFound` for an unknown id, `Conflict` when the action
    /// does not fit its state (acknowledging a resolved incident).
    async fn work_incident(
        &self,
        id: i64,
        action: &IncidentAction,
        actor: &str,
        now: UnixMs,
    ) -> StoreResult<IncidentRow>;
    /// Closes incidents resolved before `resolved_before`; returns how many.
    async fn close_resolved(&self, resolved_before: UnixMs, now: UnixMs) -> StoreResult<u64>;

    // ---- maintenance windows ----
    /// Stores a window; the name fields of the row are ignored.
    async fn create_maintenance(&self, window: &MaintenanceWindowRow) -> StoreResult<()>;
    async fn list_maintenance(&self) -> StoreResult<Vec<MaintenanceWindowRow>>;
    /// Returns false when there was no such window.
    async fn delete_maintenance(&self, id: &str) -> StoreResult<bool>;

    // ---- contracts, SLA clocks, lease, notifications ----
    async fn get_contract(&self, customer: CustomerId) -> StoreResult<Option<ContractRow>>;
    async fn list_contracts(&self) -> StoreResult<Vec<ContractRow>>;
    /// Stores a customer's contract and marks its active incidents for the next SLA sweep.
    async fn set_contract(&self, row: &ContractRow) -> StoreResult<()>;
    /// Marks the active incidents of `customer` (of everyone when None) for the next SLA
    /// sweep, e.g. after a maintenance window changed.
    async fn reset_sla(&self, customer: Option<CustomerId>) -> StoreResult<()>;
    /// Takes or renews the lease `name` for `holder` until `now + ttl_ms`, unless another
    /// holder's lease is still valid. True when `holder` holds it.
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: UnixMs,
        ttl_ms: i64,
    ) -> StoreResult<bool>;
    /// Incidents whose SLA state must be looked at by `now`, oldest first.
    async fn sla_due(&self, now: UnixMs, limit: u32) -> StoreResult<Vec<SlaRow>>;
    /// Applies the sweep's decisions in one transaction; each update only if the incident
    /// is still as the sweep saw it. Returns how many were applied.
    async fn apply_sla(
        &self,
        batch: &[(crate::sla::deadlines::IncidentSla, crate::sla::deadlines::SlaUpdate)],
        now: UnixMs,
    ) -> StoreResult<u64>;
    async fn incident_sla(&self, id: i64) -> StoreResult<Option<IncidentSlaView>>;
    /// Notifiable changes not yet fanned out, oldest first.
    async fn pending_outbox(&self, limit: u32) -> StoreResult<Vec<OutboxItem>>;
    /// Creates the deliveries of an outbox item and marks it fanned out, in one transaction.
    async fn fan_out(
        &self,
        outbox_id: i64,
        incident_id: i64,
        deliveries: &[NewDelivery],
        now: UnixMs,
    ) -> StoreResult<()>;
    /// Pending and dead-lettered deliveries due by `now`, oldest first; one waits while an
    /// earlier delivery of the same incident to the same receiver is pending or dead-lettered,
    /// so each receiver gets an incident's events in order.
    async fn due_deliveries(&self, now: UnixMs, limit: u32) -> StoreResult<Vec<DeliveryRow>>;
    /// Dead-lettered deliveries, oldest first.
    async fn dead_letters(&self, limit: u32) -> StoreResult<Vec<DeliveryRow>>;
    /// How many deliveries are dead-lettered, per receiver that has any, by receiver name.
    async fn dead_letter_counts(&self) -> StoreResult<Vec<DeadLetterCount>>;
    /// An operator gives a dead-lettered delivery up: it becomes `dropped`, is never sent,
    /// and no longer holds back the later events of its incident to its receiver. `NotFound`
    /// for an unknown id, `Conflict` when it is not dead-lettered.
    async fn drop_delivery(&self, id: i64) -> StoreResult<DeliveryRow>;
    async fn record_delivery(
        &self,
        id: i64,
        outcome: &DeliveryOutcome,
        now: UnixMs,
    ) -> StoreResult<()>;
    async fn incident_deliveries(&self, incident: i64) -> StoreResult<Vec<DeliveryRow>>;
    /// (outbox items not fanned out, deliveries pending).
    async fn notification_backlog(&self) -> StoreResult<(u64, u64)>;
    /// Every incident, reduced to what the fleet metrics count.
    async fn incident_stats(&self) -> StoreResult<Vec<IncidentStat>>;

    /// Cheap check that the store answers (for `/readyz`).
    async fn ping(&self) -> StoreResult<()>;
}
