//! Background tasks of the collector. Each is an idempotent reconciler: it looks at stored
//! state, acts, and is safe to run again; it runs on a timer and reads time through the
//! injected clock. Retention of receipts and roll-ups runs on every collector; the runner (SLA
//! sweep, notification fan-out and delivery) only on the holder of the runner lease.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::SharedClock;
use crate::config::RetentionConfig;
use crate::events::RetentionSwept;
use crate::store::{PruneStats, Store, StoreResult};

/// Rows deleted per retention transaction: small enough that an ingest commit waiting for the
/// writer lock waits for one batch, not for the whole sweep.
pub const PRUNE_BATCH_ROWS: u32 = 5_000;

/// One retention pass: deletes what is older than the configured periods, in batches of
/// [`PRUNE_BATCH_ROWS`].
pub async fn sweep_retention(
    store: &dyn Store,
    clock: &SharedClock,
    retention: &RetentionConfig,
) -> StoreResult<PruneStats> {
    let now = clock.now_ms();
    let receipts_before = now - retention.receipts.as_millis() as i64;
    let rollups_before = now - retention.rollups.as_millis() as i64;
    let stats = store.prune(receipts_before, rollups_before, PRUNE_BATCH_ROWS).await?;
    RetentionSwept {
        receipts: stats.receipts,
        rollups: stats.rollups,
        series: stats.series,
        batches: stats.batches,
    }
    .emit();
    Ok(stats)
}

/// Runs [`sweep_retention`] now and then every `retention.sweep_every`, until the runtime stops.
pub fn spawn_retention(store: Arc<dyn Store>, clock: SharedClock, retention: RetentionConfig) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(retention.sweep_every.max(Duration::from_secs(1)));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if let Err(err) = sweep_retention(store.as_ref(), &clock, &retention).await {
                tracing::warn!(error = %err, "retention sweep failed; will retry");
            }
        }
    });
}

/// What the runner needs: the lease, the maintenance windows that pause clocks, the notifier.
#[derive(Debug, Clone)]
pub struct Runner {
    pub store: Arc<dyn Store>,
    pub clock: SharedClock,
    pub lease: crate::lease::Lease,
    pub maintenance: crate::maintenance::Maintenance,
    pub notifier: crate::notify::Notifier,
    /// True while this replica holds the lease (read by `/metrics`).
    pub holding: Arc<std::sync::atomic::AtomicBool>,
}

impl Runner {
    /// One tick of the clocks: take or renew the lease, and if this replica holds it, sweep
    /// the SLA clocks.
    pub async fn tick(&self) -> StoreResult<bool> {
        let held = self.lease.hold().await;
        let holding = matches!(held, Ok(true));
        self.holding.store(holding, std::sync::atomic::Ordering::Relaxed);
        metrics::gauge!(crate::metrics::RUNNER_LEASE_HELD).set(f64::from(u8::from(holding)));
        if !held? {
            return Ok(false);
        }
        let receivers = self.notifier.receiver_names();
        // A full sweep means more is due: the next one follows at once (each is short, so
        // ingest's commits interleave between them).
        loop {
            let stats =
                crate::sla::sweep(self.store.as_ref(), &self.clock, &self.maintenance, &receivers)
                    .await?;
            if stats.looked_at < u64::from(crate::sla::SWEEP_LIMIT) {
                break;
            }
            tokio::task::yield_now().await;
        }
        Ok(true)
    }

    /// One tick of the notifier, on the lease holder only: fan out, deliver, re-post.
    pub async fn notify_tick(&self) -> StoreResult<()> {
        if !self.holding.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        let receivers = self.notifier.receiver_names();
        let contracts = crate::sla::Contracts::load(self.store.as_ref(), &receivers).await?;
        self.notifier.tick(&contracts).await
    }

    /// Runs [`Runner::tick`] and [`Runner::notify_tick`] every `every`, each in its own task
    /// so a slow receiver never delays an escalation, until the runtime stops; logs lease
    /// changes.
    pub fn spawn(self, every: Duration) {
        let notifier = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if let Err(err) = notifier.notify_tick().await {
                    tracing::warn!(error = %err, "notification delivery failed; will retry");
                }
            }
        });
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut holding = None;
            loop {
                ticks.tick().await;
                match self.tick().await {
                    Ok(now_holding) => {
                        if holding != Some(now_holding) {
                            if now_holding {
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
                            holding = Some(now_holding);
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "SLA sweep failed; will retry")
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::{HostStore, ROLLUP_BUCKET_MS, sqlite::SqliteStore};

    #[tokio::test]
    async fn retention_deletes_only_expired_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let day = 86_400_000;
        let host = crate::store::tests::enrolled(&store, "a").await;
        let record = |seq: u64, at: i64| crate::store::tests::record(host, "i", seq, at);
        crate::store::tests::commit(&store, &[record(1, 0), record(2, 20 * day)]).await;
        let clock: SharedClock = Arc::new(ManualClock::new(20 * day + ROLLUP_BUCKET_MS));
        let stats = sweep_retention(&store, &clock, &RetentionConfig::default()).await.unwrap();
        // The 20-day-old receipt is past 14 days; its roll-up is within 400 days.
        assert_eq!((stats.receipts, stats.rollups), (1, 0));
        let receipts = store.receipts(host, None, 10).await.unwrap();
        assert_eq!(receipts.iter().map(|r| r.seq).collect::<Vec<_>>(), [2]);
    }
}
