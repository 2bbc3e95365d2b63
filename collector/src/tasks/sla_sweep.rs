//! The SLA sweep: takes or renews the runner lease and, on the replica holding it, runs
//! [`crate::sla::sweep`] until nothing due is left. Which replica runs the clocks is decided
//! here (the lease), what the clocks decide is `sla`'s. The lease state is shared with the
//! [`notifications`](super::notifications) task and `/metrics`, which run only on the holder
//! too. Activated on its period (`sla.sweep_every`) and by the incident evaluator whenever it
//! applies a change that enters the outbox.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{BackgroundTask, TaskOutcome};
use crate::clock::SharedClock;
use crate::lease::{Lease, SharedFence};
use crate::maintenance::Maintenance;
use crate::store::{Fence, Store, StoreError, StoreResult};

/// What the sweep needs: the lease, the maintenance windows that pause clocks, and the
/// receiver names contracts may refer to.
#[derive(Debug)]
pub struct SlaSweep {
    pub store: Arc<dyn Store>,
    pub clock: SharedClock,
    pub lease: Lease,
    pub maintenance: Maintenance,
    pub receivers: Vec<String>,
    /// True while this replica holds the lease (read by the notifications task and
    /// `/metrics`).
    pub holding: Arc<AtomicBool>,
    /// The fence of the lease while held (read by the notifications task).
    pub fence: SharedFence,
    /// Whether the lease was held at the last activation that could tell, so that a change
    /// is logged once.
    held_before: Option<bool>,
}

/// What one activation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Swept {
    /// Another replica holds the lease.
    StandingBy,
    /// Holding the lease; this many incidents were looked at.
    Holding { looked_at: u64 },
}

impl SlaSweep {
    pub fn new(
        store: Arc<dyn Store>,
        clock: SharedClock,
        lease: Lease,
        maintenance: Maintenance,
        receivers: Vec<String>,
        holding: Arc<AtomicBool>,
        fence: SharedFence,
    ) -> Self {
        Self { store, clock, lease, maintenance, receivers, holding, fence, held_before: None }
    }

    /// Takes or renews the lease, and if this replica holds it, sweeps the SLA clocks.
    async fn sweep(&self) -> StoreResult<Swept> {
        let held = self.lease.hold().await;
        let fence = held.as_ref().ok().cloned().flatten();
        self.set_fence(fence.clone());
        let Some(fence) = held? else { return Ok(Swept::StandingBy) };
        let receivers: Vec<&str> = self.receivers.iter().map(String::as_str).collect();
        let mut looked_at = 0;
        // A full sweep means more is due: the next one follows at once (each is short, so
        // ingest's commits interleave between them).
        loop {
            let stats = match crate::sla::sweep(
                self.store.as_ref(),
                &self.clock,
                &self.maintenance,
                &receivers,
                &fence,
            )
            .await
            {
                Err(StoreError::Fenced(why)) => {
                    // Paused or cut off past the lease while another replica took it: its
                    // writes were refused; stand by until the lease is ours again.
                    self.set_fence(None);
                    tracing::warn!(reason = %why, "lost the runner lease during an SLA sweep");
                    return Ok(Swept::StandingBy);
                }
                stats => stats?,
            };
            looked_at += stats.looked_at;
            if stats.looked_at < u64::from(crate::sla::SWEEP_LIMIT) {
                break;
            }
            tokio::task::yield_now().await;
        }
        Ok(Swept::Holding { looked_at })
    }

    fn set_fence(&self, fence: Option<Fence>) {
        let holding = fence.is_some();
        *self.fence.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = fence;
        self.holding.store(holding, Ordering::Relaxed);
        metrics::gauge!(crate::metrics::RUNNER_LEASE_HELD).set(f64::from(u8::from(holding)));
    }

    /// Logs the lease changing hands, once per change.
    fn note_lease(&mut self, holding: bool) {
        if self.held_before == Some(holding) {
            return;
        }
        if holding {
            tracing::info!(
                holder = self.lease.holder(),
                "holding the runner lease: SLA clocks and notifications run here"
            );
        } else {
            tracing::info!(
                holder = self.lease.holder(),
                "another collector holds the runner lease; standing by"
            );
        }
        self.held_before = Some(holding);
    }
}

#[async_trait::async_trait]
impl BackgroundTask for SlaSweep {
    fn name(&self) -> &'static str {
        "sla_sweep"
    }

    async fn activate(&mut self) -> TaskOutcome {
        match self.sweep().await {
            Ok(Swept::StandingBy) => {
                self.note_lease(false);
                TaskOutcome::ok("another collector holds the runner lease; standing by")
            }
            Ok(Swept::Holding { looked_at }) => {
                self.note_lease(true);
                TaskOutcome::ok(format!(
                    "holding the runner lease; looked at {looked_at} incidents due for their SLA"
                ))
            }
            Err(err) => {
                tracing::warn!(error = %err, "SLA sweep failed; will retry");
                TaskOutcome::error(err.to_string())
            }
        }
    }
}
