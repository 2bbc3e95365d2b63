//! Background tasks of the collector. Each is an idempotent reconciler: it looks at stored
//! state, acts, and is safe to run again; it runs on a timer and reads time through the
//! injected clock. Today: retention of receipts and roll-ups.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::SharedClock;
use crate::config::RetentionConfig;
use crate::events::RetentionSwept;
use crate::store::{PruneStats, Store, StoreResult};

/// One retention pass: deletes what is older than the configured periods.
pub async fn sweep_retention(
    store: &dyn Store,
    clock: &SharedClock,
    retention: &RetentionConfig,
) -> StoreResult<PruneStats> {
    let now = clock.now_ms();
    let receipts_before = now - retention.receipts.as_millis() as i64;
    let rollups_before = now - retention.rollups.as_millis() as i64;
    let stats = store.prune(receipts_before, rollups_before).await?;
    RetentionSwept { receipts: stats.receipts, rollups: stats.rollups }.emit();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::{ROLLUP_BUCKET_MS, ReportRecord, sqlite::SqliteStore};

    #[tokio::test]
    async fn retention_deletes_only_expired_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let day = 86_400_000;
        let host = crate::store::tests::enrolled(&store, "a").await;
        let record = |seq: u64, at: i64| ReportRecord {
            host_id: host,
            instance: "i".into(),
            seq,
            collected_at_ms: at,
            received_at_ms: at,
            replayed: false,
            hostname: "a".into(),
            agent_version: "0".into(),
            interval_seconds: 10,
            encoded: vec![],
            series: vec![("cpu.usage_ratio".into(), 0.5)],
        };
        store.commit_reports(&[record(1, 0), record(2, 20 * day)]).await.unwrap();
        let clock: SharedClock = Arc::new(ManualClock::new(20 * day + ROLLUP_BUCKET_MS));
        let stats = sweep_retention(&store, &clock, &RetentionConfig::default()).await.unwrap();
        // The 20-day-old receipt is past 14 days; its roll-up is within 400 days.
        assert_eq!(stats, PruneStats { receipts: 1, rollups: 0 });
        let receipts = store.receipts(host, None, 10).await.unwrap();
        assert_eq!(receipts.iter().map(|r| r.seq).collect::<Vec<_>>(), [2]);
    }
}
