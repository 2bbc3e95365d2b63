//! Records of contracts and SLA clocks. The decisions (deadlines, escalation) are made by
//! `crate::sla`; the store applies them, each batch in one transaction, so an escalation and its
//! notification are written together or not at all.

use async_trait::async_trait;
use serde::Serialize;

use super::StoreResult;
use crate::classify::FaultLevel;
use crate::clock::UnixMs;
use crate::ids::{CustomerId, HostId, IncidentId, SiteId};

/// A customer's stored contract (JSON of `crate::sla::contract::Contract`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ContractRow {
    pub customer_id: CustomerId,
    pub body: String,
    pub updated_at_ms: UnixMs,
    pub updated_by: String,
}

/// An incident the SLA sweep must look at, with where it is (for contracts and maintenance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaRow {
    pub customer_id: CustomerId,
    pub site_id: SiteId,
    pub host_id: Option<HostId>,
    pub rule: String,
    pub sla: IncidentSla,
}

/// SLA deadlines and outcome of one incident, for the API.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct IncidentSlaView {
    pub tier: u8,
    pub response_due_ms: Option<UnixMs>,
    pub resolution_due_ms: Option<UnixMs>,
    pub response_met: Option<bool>,
    pub resolution_met: Option<bool>,
    pub sla_start_ms: UnixMs,
}

/// What the sweep knows about one incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentSla {
    pub id: IncidentId,
    pub level: FaultLevel,
    pub opened_at_ms: UnixMs,
    pub acknowledged_at_ms: Option<UnixMs>,
    pub resolved_at_ms: Option<UnixMs>,
    pub tier: u8,
    /// The level the stored deadlines were computed for.
    pub sla_level: Option<u8>,
    pub response_due_ms: Option<UnixMs>,
    pub resolution_due_ms: Option<UnixMs>,
    pub response_met: Option<bool>,
    pub resolution_met: Option<bool>,
    pub response_warned: bool,
    pub resolution_warned: bool,
}

/// A timeline entry the sweep writes: `kind` is `sla`, `warning` or `escalated`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaEntry {
    pub kind: super::TimelineKind,
    pub detail: String,
}

/// The new SLA state of one incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaUpdate {
    pub id: IncidentId,
    pub tier: u8,
    pub sla_level: u8,
    pub response_due_ms: UnixMs,
    pub resolution_due_ms: UnixMs,
    pub response_met: Option<bool>,
    pub resolution_met: Option<bool>,
    pub response_warned: bool,
    pub resolution_warned: bool,
    /// When to look again; None when nothing is pending any more.
    pub next_check_ms: Option<UnixMs>,
    pub entries: Vec<SlaEntry>,
}

/// Proof of holding a lease: its name, the holder, and the generation it was taken at. The
/// writes only the holder may make (SLA updates and escalations, fan-out, delivery outcomes)
/// carry it, and the store checks it in the same transaction, so a holder that was paused or
/// cut off past its lease, while another took over, has its writes refused instead of
/// escalating twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub lease: String,
    pub holder: String,
    pub generation: i64,
}

/// Contracts, SLA clocks and the single-runner lease.
#[async_trait]
pub trait SlaStore: Send + Sync {
    async fn get_contract(&self, customer: CustomerId) -> StoreResult<Option<ContractRow>>;

    async fn list_contracts(&self) -> StoreResult<Vec<ContractRow>>;

    /// Stores a customer's contract and marks its active incidents for the next SLA sweep.
    async fn set_contract(&self, row: &ContractRow) -> StoreResult<()>;

    /// Marks the active incidents of `customer` (of everyone when None) for the next SLA
    /// sweep, e.g. after a maintenance window changed.
    async fn reset_sla(&self, customer: Option<CustomerId>) -> StoreResult<()>;

    /// Takes or renews the lease `name` for `holder` for `ttl_ms`, unless another holder's
    /// lease is still valid, and returns the [`Fence`] every write of the holder carries;
    /// None while another holds it. The generation goes up each time the lease changes hands.
    /// PostgreSQL judges expiry by its own clock, the one all replicas share; SQLite (one
    /// replica) by `now`.
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: UnixMs,
        ttl_ms: i64,
    ) -> StoreResult<Option<Fence>>;

    async fn sla_due(&self, now: UnixMs, limit: u32) -> StoreResult<Vec<SlaRow>>;

    /// Applies the sweep's decisions in one transaction; each update only if the incident
    /// is still as the sweep saw it. Returns how many were applied. [`StoreError::Fenced`]
    /// (nothing applied) once `fence` is stale.
    async fn apply_sla(
        &self,
        batch: &[(IncidentSla, SlaUpdate)],
        now: UnixMs,
        fence: &Fence,
    ) -> StoreResult<u64>;

    async fn incident_sla(&self, id: IncidentId) -> StoreResult<Option<IncidentSlaView>>;
}
