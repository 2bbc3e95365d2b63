//! Records of what is known of each host: the host with its tenancy, its newest report, its
//! agent instances, receipts, timeline and roll-ups.

use async_trait::async_trait;
use serde::Serialize;

use super::StoreResult;
use crate::clock::UnixMs;
use crate::ids::{CustomerId, HostId, SiteId};

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

/// Roll-up bucket width.
pub const ROLLUP_BUCKET_MS: i64 = 5 * 60 * 1000;

/// What is known of each host, read side: hosts, their latest reports, instances, timeline, receipts and roll-ups.
#[async_trait]
pub trait HostStore: Send + Sync {
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
}
