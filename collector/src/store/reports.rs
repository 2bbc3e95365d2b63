//! Records of the ingest stage: a validated report ready to commit, what committing it did, and
//! what a retention pass deleted.

use async_trait::async_trait;
use serde::Serialize;

use super::StoreResult;
use crate::clock::UnixMs;
use crate::ids::HostId;

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

/// What the ingest stage writes: reports (receipts, instances, latest report, roll-ups), goodbyes, host timeline entries, and retention.
#[async_trait]
pub trait ReportStore: Send + Sync {
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
}
