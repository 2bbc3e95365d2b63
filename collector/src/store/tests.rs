//! The store conformance suite: every behaviour of [`Store`] written once and run against each
//! backend through `store_test_suite!` (SQLite now; PostgreSQL joins with its backend).

use super::*;

fn record(host: HostId, instance: &str, seq: u64, at: UnixMs) -> ReportRecord {
    ReportRecord {
        host_id: host,
        instance: instance.to_owned(),
        seq,
        collected_at_ms: at,
        received_at_ms: at + 5,
        replayed: false,
        hostname: "srv01".into(),
        agent_version: "0.1.0".into(),
        interval_seconds: 10,
        encoded: vec![seq as u8],
        series: vec![("cpu.usage_ratio".into(), seq as f64 / 10.0)],
    }
}

pub async fn register_is_idempotent_per_key(store: &dyn Store) {
    let a = store.register_host("machine-id:a", "srv01", 1_000).await.unwrap().0;
    let again = store.register_host("machine-id:a", "srv01", 2_000).await.unwrap().0;
    let b = store.register_host("machine-id:b", "srv01", 3_000).await.unwrap().0;
    assert_eq!(a, again);
    assert_ne!(a, b, "same hostname, different identity: two hosts");
    let hosts = store.list_hosts().await.unwrap();
    assert_eq!(hosts.len(), 2);
    assert!(hosts.iter().all(|h| h.customer == DEFAULT_TENANT && h.site == DEFAULT_TENANT));
}

pub async fn duplicates_are_acknowledged_and_ignored(store: &dyn Store) {
    let host = store.register_host("machine-id:a", "srv01", 0).await.unwrap().0;
    let batch =
        [record(host, "i1", 1, 1_000), record(host, "i1", 2, 2_000), record(host, "i1", 1, 1_000)];
    let outcomes = store.commit_reports(&batch).await.unwrap();
    assert_eq!(outcomes, [CommitOutcome::Stored, CommitOutcome::Stored, CommitOutcome::Duplicate]);
    let again = store.commit_reports(&batch[..1]).await.unwrap();
    assert_eq!(again, [CommitOutcome::Duplicate]);
    let receipts = store.receipts(host, None, 100).await.unwrap();
    assert_eq!(receipts.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
    // Rollups saw each report once.
    let rollups = store.rollups(host, "cpu.usage_ratio", 0).await.unwrap();
    assert_eq!(rollups.iter().map(|r| r.count).sum::<u64>(), 2);
}

pub async fn new_instance_is_stored_beside_old(store: &dyn Store) {
    let host = store.register_host("machine-id:a", "srv01", 0).await.unwrap().0;
    store.commit_reports(&[record(host, "old", 1, 1_000)]).await.unwrap();
    let outcomes = store.commit_reports(&[record(host, "new", 1, 2_000)]).await.unwrap();
    assert_eq!(outcomes, [CommitOutcome::Stored]);
    let instances = store.instances(host).await.unwrap();
    assert_eq!(instances.iter().map(|i| i.instance.as_str()).collect::<Vec<_>>(), ["old", "new"]);
    assert_eq!(store.receipts(host, Some("new"), 10).await.unwrap().len(), 1);
}

pub async fn latest_report_is_newest_collected(store: &dyn Store) {
    let host = store.register_host("machine-id:a", "srv01", 0).await.unwrap().0;
    store.commit_reports(&[record(host, "i1", 2, 2_000)]).await.unwrap();
    let mut replayed = record(host, "i1", 1, 1_000);
    replayed.replayed = true;
    store.commit_reports(&[replayed]).await.unwrap();
    let latest = store.latest_report(host).await.unwrap().unwrap();
    assert_eq!(latest.seq, 2, "a replayed older report must not replace the newer one");
    assert_eq!(latest.encoded, vec![2]);
    let all = store.latest_reports().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].0, host);
}

pub async fn rollups_keep_min_avg_max_per_bucket(store: &dyn Store) {
    let host = store.register_host("machine-id:a", "srv01", 0).await.unwrap().0;
    let base = 10 * ROLLUP_BUCKET_MS;
    let batch: Vec<_> =
        [(1, base), (2, base + 1_000), (6, base + 2_000), (9, base + ROLLUP_BUCKET_MS)]
            .iter()
            .map(|&(seq, at)| record(host, "i1", seq, at))
            .collect();
    store.commit_reports(&batch).await.unwrap();
    let rollups = store.rollups(host, "cpu.usage_ratio", 0).await.unwrap();
    assert_eq!(rollups.len(), 2);
    assert_eq!(rollups[0].bucket_start_ms, base);
    assert_eq!((rollups[0].min, rollups[0].max, rollups[0].count), (0.1, 0.6, 3));
    assert!((rollups[0].avg - 0.3).abs() < 1e-9);
    assert_eq!(rollups[1].count, 1);
}

pub async fn prune_drops_only_old_rows(store: &dyn Store) {
    let host = store.register_host("machine-id:a", "srv01", 0).await.unwrap().0;
    let old = record(host, "i1", 1, 1_000);
    let new = record(host, "i1", 2, 100 * ROLLUP_BUCKET_MS);
    store.commit_reports(&[old, new]).await.unwrap();
    let stats = store.prune(50_000, 50 * ROLLUP_BUCKET_MS).await.unwrap();
    assert_eq!(stats, PruneStats { receipts: 1, rollups: 1 });
    assert_eq!(store.receipts(host, None, 10).await.unwrap().len(), 1);
    assert_eq!(store.rollups(host, "cpu.usage_ratio", 0).await.unwrap().len(), 1);
}

pub async fn events_dedupe_and_goodbye(store: &dyn Store) {
    let host = store.register_host("machine-id:a", "srv01", 0).await.unwrap().0;
    assert!(store.record_event(host, "cloned_identity", "a|b", "two", 5).await.unwrap());
    assert!(!store.record_event(host, "cloned_identity", "a|b", "two", 6).await.unwrap());
    assert_eq!(store.events(host, 10).await.unwrap().len(), 1);
    store.record_goodbye(host, "reboot", 7).await.unwrap();
    let row = store.get_host(host).await.unwrap().unwrap();
    assert_eq!(row.goodbye_reason.as_deref(), Some("reboot"));
    // A new report clears the goodbye.
    store.commit_reports(&[record(host, "i1", 1, 10)]).await.unwrap();
    let row = store.get_host(host).await.unwrap().unwrap();
    assert_eq!(row.goodbye_reason, None);
    assert_eq!(row.last_seen_ms, Some(15));
    assert!(store.get_host(HostId::new_random()).await.unwrap().is_none());
}

macro_rules! store_test_suite {
    ($backend:ident, $open:expr) => {
        mod $backend {
            use super::*;

            macro_rules! case {
                ($name:ident) => {
                    #[tokio::test]
                    async fn $name() {
                        let (_guard, store) = $open.await;
                        super::$name(&store).await;
                    }
                };
            }

            case!(register_is_idempotent_per_key);
            case!(duplicates_are_acknowledged_and_ignored);
            case!(new_instance_is_stored_beside_old);
            case!(latest_report_is_newest_collected);
            case!(rollups_keep_min_avg_max_per_bucket);
            case!(prune_drops_only_old_rows);
            case!(events_dedupe_and_goodbye);
        }
    };
}

async fn open_sqlite() -> (tempfile::TempDir, sqlite::SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite::SqliteStore::open(dir.path()).await.unwrap();
    (dir, store)
}

store_test_suite!(sqlite_backend, open_sqlite());
