//! The notification task: on the replica holding the runner lease (as the
//! [`sla_sweep`](super::sla_sweep) task last found), one [`Notifier::tick`] — fan out the
//! outbox, deliver what is due, re-post firing alerts. Its own task, so a slow receiver never
//! delays an escalation. Activated on its period (`sla.sweep_every`) and by the incident
//! evaluator whenever it applies a change that enters the outbox.

use std::sync::Arc;

use super::{BackgroundTask, TaskOutcome};
use crate::lease::SharedFence;
use crate::notify::Notifier;
use crate::store::{Store, StoreError, StoreResult};

#[derive(Debug)]
pub struct Notifications {
    pub store: Arc<dyn Store>,
    pub notifier: Notifier,
    /// The runner lease's fence while this replica holds it.
    pub fence: SharedFence,
}

impl Notifications {
    /// One tick of the notifier, on the lease holder only; false when standing by.
    async fn tick(&self) -> StoreResult<bool> {
        let fence = self.fence.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let Some(fence) = fence else { return Ok(false) };
        let receivers = self.notifier.receiver_names();
        let contracts = crate::sla::Contracts::load(self.store.as_ref(), &receivers).await?;
        match self.notifier.tick(&contracts, &fence).await {
            // The lease moved on while this tick ran: what it had not written is left to the
            // new holder.
            Err(StoreError::Fenced(why)) => {
                tracing::warn!(reason = %why, "lost the runner lease during notification delivery");
                return Ok(false);
            }
            done => done?,
        }
        Ok(true)
    }
}

#[async_trait::async_trait]
impl BackgroundTask for Notifications {
    fn name(&self) -> &'static str {
        "notifications"
    }

    async fn activate(&mut self) -> TaskOutcome {
        match self.tick().await {
            Ok(true) => TaskOutcome::ok("outbox fanned out, due deliveries attempted"),
            Ok(false) => TaskOutcome::ok("not holding the runner lease; standing by"),
            Err(err) => {
                tracing::warn!(error = %err, "notification delivery failed; will retry");
                TaskOutcome::error(err.to_string())
            }
        }
    }
}
