//! Records of contracts, SLA clocks, the single-runner lease and the notification outbox. The
//! decisions (deadlines, escalation, which receivers, retry times) are made by `crate::sla`
//! and `crate::notify`; the store applies them, each batch in one transaction, so an
//! escalation and its notification are written together or not at all.

use serde::Serialize;

use crate::clock::UnixMs;
use crate::ids::{CustomerId, HostId, SiteId};
use crate::sla::deadlines::IncidentSla;

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

/// A notifiable incident change waiting to be fanned out to receivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub id: i64,
    pub incident_id: i64,
    pub timeline_id: i64,
    pub kind: String,
    pub detail: String,
    pub at_ms: UnixMs,
}

/// One delivery to create when fanning an outbox item out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub event_id: String,
    pub receiver: String,
    pub payload: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeliveryRow {
    pub id: i64,
    pub incident_id: i64,
    pub event_id: String,
    pub receiver: String,
    #[serde(skip)]
    pub payload: String,
    /// `pending` (retried with backoff), `delivered`, `dead_letter` (`notify.max_attempts`
    /// used up or refused by the receiver: still retried every `notify.dead_letter_retry`
    /// until delivered or dropped), `dropped` (given up by an operator), or `failed` (given
    /// up by a collector from before dead letters).
    pub state: String,
    pub attempts: u32,
    pub next_attempt_at_ms: UnixMs,
    pub last_error: Option<String>,
    pub delivered_at_ms: Option<UnixMs>,
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered,
    /// Try again at the given time.
    Retry {
        error: String,
        at_ms: UnixMs,
    },
    /// The attempts are used up, or the receiver refused it: dead-lettered, and tried again
    /// (slowly) at the given time, until delivered or dropped by an operator.
    DeadLetter {
        error: String,
        at_ms: UnixMs,
    },
}

/// The dead-lettered deliveries of one receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetterCount {
    pub receiver: String,
    pub count: u64,
}

/// What the fleet metrics need of one incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentStat {
    pub customer: String,
    pub level: u8,
    /// Open or acknowledged.
    pub active: bool,
    /// When its SLA clocks started (opening or latest reopening).
    pub clock_start_ms: UnixMs,
    pub acknowledged_at_ms: Option<UnixMs>,
    pub resolved_at_ms: Option<UnixMs>,
    pub response_met: Option<bool>,
    pub resolution_met: Option<bool>,
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
