//! Records of the notification outbox: notifiable incident changes waiting to be fanned out, and
//! one delivery per change and receiver. Which receivers and when to retry are decided by
//! `crate::notify`.

use async_trait::async_trait;
use serde::Serialize;

use super::StoreResult;
use super::{Fence, TimelineKind};
use crate::clock::UnixMs;
use crate::ids::{DeliveryId, IncidentId, OutboxId, TimelineId};

/// A notifiable incident change waiting to be fanned out to receivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub id: OutboxId,
    pub incident_id: IncidentId,
    pub timeline_id: TimelineId,
    pub kind: TimelineKind,
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
    pub id: DeliveryId,
    pub incident_id: IncidentId,
    pub event_id: String,
    pub receiver: String,
    #[serde(skip)]
    pub payload: String,
    /// `pending` (retried with backoff), `delivered`, `dead_letter` (`notify.max_attempts`
    /// used up or refused by the receiver: still retried every `notify.dead_letter_retry`
    /// until delivered or dropped), `dropped` (given up by an operator), or `failed` (given
    /// up by a collector from before dead letters).
    pub state: DeliveryState,
    pub attempts: u32,
    pub next_attempt_at_ms: UnixMs,
    pub last_error: Option<String>,
    pub delivered_at_ms: Option<UnixMs>,
}

/// Where a delivery stands. Stored as its snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not delivered yet: retried with backoff.
    Pending,
    Delivered,
    /// `notify.max_attempts` used up or refused by the receiver: still retried every
    /// `notify.dead_letter_retry` until delivered or dropped.
    DeadLetter,
    /// Given up by an operator.
    Dropped,
    /// Given up by a collector from before dead letters.
    Failed,
}

impl DeliveryState {
    pub const ALL: [Self; 5] =
        [Self::Pending, Self::Delivered, Self::DeadLetter, Self::Dropped, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::DeadLetter => "dead_letter",
            Self::Dropped => "dropped",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == text)
    }
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

/// The notification outbox and its deliveries.
#[async_trait]
pub trait NotifyStore: Send + Sync {
    /// Notifiable changes not yet fanned out, oldest first.
    async fn pending_outbox(&self, limit: u32) -> StoreResult<Vec<OutboxItem>>;

    /// Creates the deliveries of an outbox item and marks it fanned out, in one transaction;
    /// [`StoreError::Fenced`](super::StoreError::Fenced) (nothing written) once `fence` is
    /// stale.
    async fn fan_out(
        &self,
        outbox_id: OutboxId,
        incident_id: IncidentId,
        deliveries: &[NewDelivery],
        now: UnixMs,
        fence: &Fence,
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
    async fn drop_delivery(&self, id: DeliveryId) -> StoreResult<DeliveryRow>;

    /// Records one delivery attempt; fenced like [`NotifyStore::fan_out`].
    async fn record_delivery(
        &self,
        id: DeliveryId,
        outcome: &DeliveryOutcome,
        now: UnixMs,
        fence: &Fence,
    ) -> StoreResult<()>;

    async fn incident_deliveries(&self, incident: IncidentId) -> StoreResult<Vec<DeliveryRow>>;

    /// (outbox items not fanned out, deliveries pending).
    async fn notification_backlog(&self) -> StoreResult<(u64, u64)>;
}
