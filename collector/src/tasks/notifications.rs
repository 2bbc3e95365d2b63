//! The notification task: on the replica holding the runner lease (as the
//! [`sla_sweep`](super::sla_sweep) task last found), one [`Notifier::tick`] — fan out the
//! outbox, deliver what is due, re-post firing alerts. Its own task, so a slow receiver never
//! delays an escalation. Activated on its period (`sla.sweep_every`) and by the incident
//! evaluator whenever it applies a change that enters the outbox.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{BackgroundTask, TaskOutcome};
use crate::notify::Notifier;
use crate::store::{Store, StoreResult};

#[derive(Debug)]
pub struct Notifications {
    pub store: Arc<dyn Store>,
    pub notifier: Notifier,
    /// True while this replica holds the runner lease.
    pub holding: Arc<AtomicBool>,
}

impl Notifications {
    /// One tick of the notifier, on the lease holder only; false when standing by.
    async fn tick(&self) -> StoreResult<bool> {
        if !self.holding.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let receivers = self.notifier.receiver_names();
        let contracts = crate::sla::Contracts::load(self.store.as_ref(), &receivers).await?;
        self.notifier.tick(&contracts).await?;
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
