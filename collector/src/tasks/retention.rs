//! Retention: deletes report receipts and roll-ups older than `retention.receipts` and
//! `retention.rollups`, in small batches so ingest's commits interleave with it. Runs on every
//! collector; it owns no decision beyond the cut-off times, so it lives with the driver.

use std::sync::Arc;

use super::{BackgroundTask, TaskOutcome};
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

/// The retention task: [`sweep_retention`] every `retention.sweep_every`, on every replica
/// (deleting what another replica already deleted finds nothing).
#[derive(Debug)]
pub struct Retention {
    pub store: Arc<dyn Store>,
    pub clock: SharedClock,
    pub retention: RetentionConfig,
}

#[async_trait::async_trait]
impl BackgroundTask for Retention {
    fn name(&self) -> &'static str {
        "retention"
    }

    async fn activate(&mut self) -> TaskOutcome {
        match sweep_retention(self.store.as_ref(), &self.clock, &self.retention).await {
            Ok(stats) => TaskOutcome::ok(format!(
                "deleted {} receipts, {} roll-ups, {} series in {} batches",
                stats.receipts, stats.rollups, stats.series, stats.batches
            )),
            Err(err) => {
                tracing::warn!(error = %err, "retention sweep failed; will retry");
                TaskOutcome::error(err.to_string())
            }
        }
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
