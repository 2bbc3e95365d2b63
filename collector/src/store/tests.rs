//! The store conformance suite: every behaviour of [`Store`] written once and run against each
//! backend through `store_test_suite!` (SQLite now; PostgreSQL joins with its backend).

use super::*;
use crate::classify::{FaultLevel, FindingKind};
use crate::clock::UnixMs;
use crate::ids::{CustomerId, HostId, IncidentId, SiteId};

/// A report of `host`'s `instance` numbered `seq`, collected at `at` and received 5 ms later.
pub fn record(host: HostId, instance: &str, seq: u64, at: UnixMs) -> ReportRecord {
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
        digest: [seq as u8; 32],
        pruned_through_seq: 0,
        series: vec![("cpu.usage_ratio".into(), seq as f64 / 10.0)],
        new_series: Vec::new(),
        series_refused: 0,
        received: std::time::Instant::now(),
    }
}

/// Commits `batch`, every record of which must be accepted.
pub async fn commit(store: &dyn Store, batch: &[ReportRecord]) -> Vec<CommitOutcome> {
    let outcomes = store.commit_reports(batch).await.unwrap();
    outcomes.into_iter().map(|o| o.unwrap()).collect()
}

/// A site `customer/site`, created with its customer when missing.
pub async fn site(store: &dyn Store, customer: &str, site: &str) -> SiteRow {
    if store.find_customer(customer).await.unwrap().is_none() {
        store.create_customer(customer, 0).await.unwrap();
    }
    match store.find_site(customer, site).await.unwrap() {
        Some(row) => row,
        None => store.create_site(customer, site, 0).await.unwrap(),
    }
}

fn cert(host: HostId, fingerprint: &str) -> CertificateRecord {
    CertificateRecord {
        fingerprint: fingerprint.to_owned(),
        host_id: host,
        key_sha256: format!("key-of-{host}"),
        not_before_ms: 0,
        not_after_ms: 1_000_000,
        issued_at_ms: 0,
        reason: "enroll",
    }
}

fn token(site: &SiteRow, secret_sha256: &str, uses: u32, expires_at_ms: UnixMs) -> EnrollmentToken {
    EnrollmentToken {
        id: format!("id-{secret_sha256}"),
        secret_sha256: secret_sha256.to_owned(),
        site_id: site.id,
        uses,
        expires_at_ms,
        created_at_ms: 0,
        created_by: "test".into(),
    }
}

/// A host enrolled into `acme/main` with a fresh single-use token.
pub async fn enrolled(store: &dyn Store, hostname: &str) -> HostId {
    let site = site(store, "acme", "main").await;
    let secret = format!("secret-{}", HostId::new_random());
    store.create_enrollment_token(&token(&site, &secret, 1, i64::MAX)).await.unwrap();
    let host =
        NewHost { id: HostId::new_random(), hostname: hostname.into(), machine_id: "m".into() };
    let fingerprint = format!("fp-{}", host.id);
    store.enroll_host(&secret, &host, &cert(host.id, &fingerprint), 0).await.unwrap().unwrap();
    host.id
}

pub async fn tenancy_names_are_unique_and_sites_need_customers(store: &dyn Store) {
    store.create_customer("acme", 1).await.unwrap();
    assert!(matches!(store.create_customer("acme", 2).await, Err(StoreError::Conflict(_))));
    assert!(matches!(store.create_site("nobody", "main", 2).await, Err(StoreError::NotFound(_))));
    let main = store.create_site("acme", "main", 3).await.unwrap();
    assert!(matches!(store.create_site("acme", "main", 4).await, Err(StoreError::Conflict(_))));
    store.create_customer("globex", 5).await.unwrap();
    // Two customers may both have a site called "main".
    store.create_site("globex", "main", 6).await.unwrap();
    assert_eq!(store.find_site("acme", "main").await.unwrap(), Some(main));
    let customers = store.list_customers().await.unwrap();
    assert_eq!(customers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["acme", "globex"]);
    assert_eq!(customers[0].sites.len(), 1);
}

pub async fn tokens_admit_exactly_their_uses_until_expiry(store: &dyn Store) {
    let site = site(store, "acme", "main").await;
    store.create_enrollment_token(&token(&site, "two-uses", 2, 1_000)).await.unwrap();
    store.create_enrollment_token(&token(&site, "expired", 5, 10)).await.unwrap();
    let new_host = |name: &str| NewHost {
        id: HostId::new_random(),
        hostname: name.into(),
        machine_id: String::new(),
    };
    let (a, b, c) = (new_host("srv01"), new_host("srv01"), new_host("srv02"));
    let row = store.enroll_host("two-uses", &a, &cert(a.id, "fa"), 100).await.unwrap().unwrap();
    assert_eq!((row.customer.as_str(), row.site.as_str()), ("acme", "main"));
    // Same hostname, different identity: two hosts.
    store.enroll_host("two-uses", &b, &cert(b.id, "fb"), 100).await.unwrap().unwrap();
    let used_up = store.enroll_host("two-uses", &c, &cert(c.id, "fc"), 100).await.unwrap();
    assert_eq!(used_up.unwrap_err(), TokenRefusal::UsedUp);
    let expired = store.enroll_host("expired", &c, &cert(c.id, "fc"), 100).await.unwrap();
    assert_eq!(expired.unwrap_err(), TokenRefusal::Expired);
    let unknown = store.enroll_host("nope", &c, &cert(c.id, "fc"), 100).await.unwrap();
    assert_eq!(unknown.unwrap_err(), TokenRefusal::Unknown);
    // Refusals stored nothing.
    assert_eq!(store.list_hosts().await.unwrap().len(), 2);
    assert!(store.certificate("fc").await.unwrap().is_none());
    let tokens = store.list_enrollment_tokens().await.unwrap();
    assert_eq!(tokens.iter().find(|t| t.id == "id-two-uses").unwrap().uses_left, 0);
}

pub async fn certificates_map_to_hosts_until_revoked(store: &dyn Store) {
    let host = enrolled(store, "srv01").await;
    let first = store.certificate(&format!("fp-{host}")).await.unwrap().unwrap();
    assert_eq!((first.host_id, first.host_revoked), (host, false));
    let mut renewed = cert(host, "renewed");
    renewed.reason = "renew";
    store.add_certificate(&renewed).await.unwrap();
    assert_eq!(store.certificate("renewed").await.unwrap().unwrap().host_id, host);
    assert!(store.revoke_host(host, 50).await.unwrap());
    assert!(!store.revoke_host(host, 60).await.unwrap(), "second revoke changes nothing");
    assert!(store.certificate("renewed").await.unwrap().unwrap().host_revoked);
    assert_eq!(store.revoked_hosts().await.unwrap(), [host]);
    assert_eq!(store.get_host(host).await.unwrap().unwrap().revoked_at_ms, Some(50));
    let unknown = store.revoke_host(HostId::new_random(), 0).await;
    assert!(matches!(unknown, Err(StoreError::NotFound(_))));
}

pub async fn replace_hands_history_to_the_new_identity(store: &dyn Store) {
    let old = enrolled(store, "srv01").await;
    let new = enrolled(store, "srv01").await;
    commit(store, &[record(old, "old-i", 1, 1_000), record(old, "old-i", 2, 2_000)]).await;
    commit(store, &[record(new, "new-i", 1, 3_000)]).await;
    store.replace_host(old, new, 5_000).await.unwrap();
    let receipts = store.receipts(new, None, 10).await.unwrap();
    assert_eq!(receipts.len(), 3);
    assert!(store.receipts(old, None, 10).await.unwrap().is_empty());
    let rollups = store.rollups(new, "cpu.usage_ratio", 0).await.unwrap();
    assert_eq!(rollups.iter().map(|r| r.count).sum::<u64>(), 3);
    assert_eq!(store.latest_report(new).await.unwrap().unwrap().instance, "new-i");
    let old_row = store.get_host(old).await.unwrap().unwrap();
    assert_eq!((old_row.replaced_by, old_row.revoked_at_ms), (Some(new), Some(5_000)));
    assert!(matches!(store.replace_host(new, new, 0).await, Err(StoreError::Conflict(_))));
}

pub async fn api_tokens_and_audit(store: &dyn Store) {
    let customer = store.create_customer("acme", 0).await.unwrap();
    assert_eq!(store.count_api_tokens().await.unwrap(), 0);
    let record = ApiTokenRecord {
        id: "t1".into(),
        name: "acme-staff".into(),
        role: Role::Viewer,
        customer_id: Some(customer.id),
        secret_sha256: "hash".into(),
        created_at_ms: 1,
        created_by: "test".into(),
    };
    store.create_api_token(&record).await.unwrap();
    let row = store.api_token("hash").await.unwrap().unwrap();
    assert_eq!((row.role, row.customer.as_deref()), (Role::Viewer, Some("acme")));
    assert!(store.api_token("other").await.unwrap().is_none());
    assert!(store.revoke_api_token("t1", 2).await.unwrap());
    assert!(store.api_token("hash").await.unwrap().is_none(), "revoked tokens stop at once");
    assert_eq!(store.count_api_tokens().await.unwrap(), 1);
    // The last live fleet-wide admin token cannot be revoked; any other can.
    for id in ["a1", "a2"] {
        let admin = ApiTokenRecord {
            id: id.into(),
            name: format!("admin-{id}"),
            role: Role::Admin,
            customer_id: None,
            secret_sha256: format!("hash-{id}"),
            created_at_ms: 3,
            created_by: "test".into(),
        };
        store.create_api_token(&admin).await.unwrap();
    }
    assert!(store.revoke_api_token("a1", 4).await.unwrap());
    let err = store.revoke_api_token("a2", 5).await.unwrap_err();
    assert!(matches!(err, StoreError::FailedPrecondition(_)), "{err}");
    assert!(err.to_string().contains("last admin token"), "{err}");
    assert!(store.api_token("hash-a2").await.unwrap().is_some(), "the last admin still works");
    assert!(!store.revoke_api_token("a1", 6).await.unwrap(), "revoked already: no change");
    assert!(matches!(store.revoke_api_token("nope", 6).await, Err(StoreError::NotFound(_))));
    for (at, action) in [(10, "a"), (20, "b")] {
        let entry = AuditEntry {
            at_ms: at,
            actor: "token:x".into(),
            action: action.into(),
            target: "t".into(),
            detail: "{}".into(),
            source: "127.0.0.1:1".into(),
        };
        store.record_audit(&entry).await.unwrap();
    }
    let log = store.audit_log(10).await.unwrap();
    assert_eq!(log.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["b", "a"]);
}

pub async fn duplicates_are_acknowledged_and_ignored(store: &dyn Store) {
    let host = enrolled(store, "srv01").await;
    let batch =
        [record(host, "i1", 1, 1_000), record(host, "i1", 2, 2_000), record(host, "i1", 1, 1_000)];
    let outcomes = commit(store, &batch).await;
    assert_eq!(outcomes, [CommitOutcome::Stored, CommitOutcome::Stored, CommitOutcome::Duplicate]);
    let again = commit(store, &batch[..1]).await;
    assert_eq!(again, [CommitOutcome::Duplicate]);
    let receipts = store.receipts(host, None, 100).await.unwrap();
    assert_eq!(receipts.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
    // Rollups saw each report once.
    let rollups = store.rollups(host, "cpu.usage_ratio", 0).await.unwrap();
    assert_eq!(rollups.iter().map(|r| r.count).sum::<u64>(), 2);
}

pub async fn a_poisoned_record_fails_alone(store: &dyn Store) {
    let host = enrolled(store, "srv01").await;
    let mut poisoned = record(host, "i1", 2, 2_000);
    // Past validation (bypassed here) a NaN reaches the roll-ups, which hold no NaN.
    poisoned.series.push(("temperature.celsius:cpu".into(), f64::NAN));
    let batch = [record(host, "i1", 1, 1_000), poisoned, record(host, "i1", 3, 3_000)];
    let outcomes = store.commit_reports(&batch).await.unwrap();
    assert!(matches!(outcomes[0], Ok(CommitOutcome::Stored)), "{outcomes:?}");
    assert!(matches!(outcomes[2], Ok(CommitOutcome::Stored)), "{outcomes:?}");
    let Err(err) = &outcomes[1] else { panic!("the poisoned record was stored: {outcomes:?}") };
    assert!(matches!(err, StoreError::Rejected(_)), "{err:?}");
    assert_eq!(err.code(), ErrorCode::InvalidArgument);
    assert!(err.to_string().contains("report seq 2"), "{err}");
    // Everything of the poisoned record was undone, its receipt too: it is not a duplicate.
    let receipts = store.receipts(host, None, 100).await.unwrap();
    assert_eq!(receipts.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 3]);
    assert!(store.rollups(host, "temperature.celsius:cpu", 0).await.unwrap().is_empty());
    let rollups = store.rollups(host, "cpu.usage_ratio", 0).await.unwrap();
    assert_eq!(rollups.iter().map(|r| r.count).sum::<u64>(), 2);
    assert_eq!(store.latest_report(host).await.unwrap().unwrap().seq, 3);
    // The same seq, healthy this time, is stored as new.
    let again = store.commit_reports(&[record(host, "i1", 2, 2_000)]).await.unwrap();
    assert!(matches!(again[..], [Ok(CommitOutcome::Stored)]), "{again:?}");
}

pub async fn a_reused_seq_with_other_content_is_a_conflict(store: &dyn Store) {
    let host = enrolled(store, "srv01").await;
    commit(store, &[record(host, "i1", 1, 1_000)]).await;
    let mut reused = record(host, "i1", 1, 9_000);
    reused.digest = [0xee; 32];
    reused.encoded = vec![0xee];
    let outcomes = commit(store, &[reused, record(host, "i1", 2, 2_000)]).await;
    assert_eq!(outcomes, [CommitOutcome::Conflict, CommitOutcome::Stored]);
    let receipts = store.receipts(host, None, 100).await.unwrap();
    assert_eq!(receipts.iter().map(|r| r.collected_at_ms).collect::<Vec<_>>(), [1_000, 2_000]);
    let rollups = store.rollups(host, "cpu.usage_ratio", 0).await.unwrap();
    assert_eq!(rollups.iter().map(|r| r.count).sum::<u64>(), 2, "the conflict is not counted");
}

/// A seq sent twice within one batch (a resend before the first was acknowledged): the
/// second is a duplicate when it is the same report and a conflict when it is not, exactly as
/// in two batches; neither is counted in the roll-ups twice.
pub async fn a_seq_twice_in_one_batch_is_a_duplicate_or_a_conflict(store: &dyn Store) {
    let host = enrolled(store, "srv01").await;
    let mut reused = record(host, "i1", 2, 9_000);
    reused.digest = [0xee; 32];
    reused.encoded = vec![0xee];
    let batch = [
        record(host, "i1", 1, 1_000),
        record(host, "i1", 1, 1_000),
        record(host, "i1", 2, 2_000),
        reused,
    ];
    let outcomes = commit(store, &batch).await;
    use CommitOutcome::*;
    assert_eq!(outcomes, [Stored, Duplicate, Stored, Conflict]);
    let receipts = store.receipts(host, None, 100).await.unwrap();
    assert_eq!(receipts.iter().map(|r| r.collected_at_ms).collect::<Vec<_>>(), [1_000, 2_000]);
    let rollups = store.rollups(host, "cpu.usage_ratio", 0).await.unwrap();
    assert_eq!(rollups.iter().map(|r| r.count).sum::<u64>(), 2);
    assert_eq!(store.latest_report(host).await.unwrap().unwrap().seq, 2);
}

pub async fn a_replay_older_than_the_receipt_window_is_stale_not_stored_twice(store: &dyn Store) {
    let host = enrolled(store, "srv01").await;
    let old: Vec<ReportRecord> =
        (1..=3).map(|seq| record(host, "i1", seq, 1_000 + seq as i64)).collect();
    commit(store, &old).await;
    // Receipts 1 and 2 age out (received at 1 006 and 1 007); 3 is newer than the cutoff.
    store.prune(1_008, 0, 100).await.unwrap();
    assert_eq!(store.receipts(host, Some("i1"), 10).await.unwrap().len(), 1);
    // The stream that replays them saw the watermark when it opened.
    let watermark = pruned_through(&store.instances(host).await.unwrap(), "i1");
    assert_eq!(watermark, 2);
    let again: Vec<ReportRecord> =
        [old[0].clone(), old[1].clone(), old[2].clone(), record(host, "i1", 4, 5_000)]
            .into_iter()
            .map(|r| ReportRecord { pruned_through_seq: watermark, ..r })
            .collect();
    let outcomes = commit(store, &again).await;
    assert_eq!(
        outcomes,
        [
            CommitOutcome::Stale,
            CommitOutcome::Stale,
            CommitOutcome::Duplicate,
            CommitOutcome::Stored
        ]
    );
    let rollups = store.rollups(host, "cpu.usage_ratio", 0).await.unwrap();
    assert_eq!(rollups.iter().map(|r| r.count).sum::<u64>(), 4, "each report counted once");
    let seqs: Vec<u64> =
        store.receipts(host, Some("i1"), 10).await.unwrap().iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [3, 4], "a stale replay leaves no receipt behind");
}

pub async fn new_instance_is_stored_beside_old(store: &dyn Store) {
    let host = enrolled(store, "srv01").await;
    commit(store, &[record(host, "old", 1, 1_000)]).await;
    let outcomes = commit(store, &[record(host, "new", 1, 2_000)]).await;
    assert_eq!(outcomes, [CommitOutcome::Stored]);
    let instances = store.instances(host).await.unwrap();
    assert_eq!(instances.iter().map(|i| i.instance.as_str()).collect::<Vec<_>>(), ["old", "new"]);
    assert_eq!(store.receipts(host, Some("new"), 10).await.unwrap().len(), 1);
}

pub async fn latest_report_is_newest_collected(store: &dyn Store) {
    let host = enrolled(store, "srv01").await;
    commit(store, &[record(host, "i1", 2, 2_000)]).await;
    let mut replayed = record(host, "i1", 1, 1_000);
    replayed.replayed = true;
    commit(store, &[replayed]).await;
    let latest = store.latest_report(host).await.unwrap().unwrap();
    assert_eq!(latest.seq, 2, "a replayed older report must not replace the newer one");
    assert_eq!(latest.encoded, vec![2]);
    let all = store.latest_reports().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].0, host);
}

pub async fn rollups_keep_min_avg_max_per_bucket(store: &dyn Store) {
    let host = enrolled(store, "srv01").await;
    let base = 10 * ROLLUP_BUCKET_MS;
    let batch: Vec<_> =
        [(1, base), (2, base + 1_000), (6, base + 2_000), (9, base + ROLLUP_BUCKET_MS)]
            .iter()
            .map(|&(seq, at)| record(host, "i1", seq, at))
            .collect();
    commit(store, &batch).await;
    let rollups = store.rollups(host, "cpu.usage_ratio", 0).await.unwrap();
    assert_eq!(rollups.len(), 2);
    assert_eq!(rollups[0].bucket_start_ms, base);
    assert_eq!((rollups[0].min, rollups[0].max, rollups[0].count), (0.1, 0.6, 3));
    assert!((rollups[0].avg - 0.3).abs() < 1e-9);
    assert_eq!(rollups[1].count, 1);
}

pub async fn new_series_are_recorded_once_with_when_first_stored(store: &dyn Store) {
    let host = enrolled(store, "srv01").await;
    let first =
        ReportRecord { new_series: vec!["cpu.usage_ratio".into()], ..record(host, "i1", 1, 1_000) };
    // The same series named new again (a second stream of the host) keeps its first time.
    let again = ReportRecord {
        new_series: vec!["cpu.usage_ratio".into(), "x".into()],
        ..record(host, "i1", 2, 9_000)
    };
    commit(store, &[first, again]).await;
    let mut held = store.host_series(host).await.unwrap();
    held.sort();
    assert_eq!(held, [("cpu.usage_ratio".to_owned(), 1_005), ("x".to_owned(), 9_005)]);
    let other = enrolled(store, "srv02").await;
    assert!(store.host_series(other).await.unwrap().is_empty());
}

pub async fn prune_drops_only_old_rows(store: &dyn Store) {
    let host = enrolled(store, "srv01").await;
    let old = record(host, "i1", 1, 1_000);
    let new = record(host, "i1", 2, 100 * ROLLUP_BUCKET_MS);
    commit(store, &[old, new]).await;
    let stats = store.prune(50_000, 50 * ROLLUP_BUCKET_MS, 5_000).await.unwrap();
    assert_eq!(stats, PruneStats { receipts: 1, rollups: 1, series: 0, batches: 2 });
    assert_eq!(store.receipts(host, None, 10).await.unwrap().len(), 1);
    assert_eq!(store.rollups(host, "cpu.usage_ratio", 0).await.unwrap().len(), 1);
}

pub async fn prune_forgets_series_whose_rollups_all_expired(store: &dyn Store) {
    let host = enrolled(store, "srv01").await;
    // "gone" was stored once, long ago; "kept" long ago and again since; "fresh" only lately.
    let old = ReportRecord {
        series: vec![("gone".into(), 1.0), ("kept".into(), 1.0)],
        new_series: vec!["gone".into(), "kept".into()],
        ..record(host, "i1", 1, 1_000)
    };
    let new = ReportRecord {
        series: vec![("kept".into(), 2.0), ("fresh".into(), 2.0)],
        new_series: vec!["fresh".into()],
        ..record(host, "i1", 2, 100 * ROLLUP_BUCKET_MS)
    };
    commit(store, &[old, new]).await;
    let stats = store.prune(0, 50 * ROLLUP_BUCKET_MS, 5_000).await.unwrap();
    assert_eq!((stats.rollups, stats.series), (2, 1), "{stats:?}");
    let mut held: Vec<String> =
        store.host_series(host).await.unwrap().into_iter().map(|(s, _)| s).collect();
    held.sort();
    assert_eq!(held, ["fresh", "kept"]);
    // A sweep with nothing to forget changes nothing.
    let again = store.prune(0, 50 * ROLLUP_BUCKET_MS, 1).await.unwrap();
    assert_eq!((again.rollups, again.series), (0, 0), "{again:?}");
    assert_eq!(store.host_series(host).await.unwrap().len(), 2);
}

/// Commits receipts of `instance` numbered by `seqs`, each received at `at(seq)`, in chunks.
async fn receipts_at(
    store: &dyn Store,
    host: HostId,
    instance: &str,
    seqs: impl IntoIterator<Item = u64>,
    at: impl Fn(u64) -> UnixMs,
) {
    let all: Vec<_> = seqs.into_iter().map(|seq| record(host, instance, seq, at(seq))).collect();
    for chunk in all.chunks(500) {
        commit(store, chunk).await;
    }
}

fn pruned_through(instances: &[InstanceRow], instance: &str) -> u64 {
    instances.iter().find(|i| i.instance == instance).expect("instance").pruned_through_seq
}

pub async fn prune_runs_in_batches_and_keeps_the_highest_pruned_seq(store: &dyn Store) {
    let host = enrolled(store, "srv01").await;
    let cutoff = 1_000_000;
    // "a": 1..=1030 received before the cutoff, 1031..=1040 after.
    receipts_at(
        store,
        host,
        "a",
        1..=1040,
        |seq| if seq <= 1030 { seq as i64 } else { cutoff + 1 },
    )
    .await;
    // "b" replayed out of order: 7 arrived late (after the cutoff), 1..=6 and 8 before it.
    receipts_at(store, host, "b", [1, 2, 3, 4, 5, 6, 8, 7], |seq| match seq {
        7 => cutoff + 10,
        _ => 2_000 + seq as i64,
    })
    .await;
    // "c" has nothing old: its watermark stays 0.
    receipts_at(store, host, "c", 1..=3, |_| cutoff + 20).await;

    let stats = store.prune(cutoff, 0, 100).await.unwrap();
    // 1030 + 7 old receipts at 100 per batch: ten full batches and one of 37; no roll-up is
    // older than 0, which takes one (empty) batch; no series is held.
    assert_eq!(stats, PruneStats { receipts: 1_037, rollups: 0, series: 0, batches: 12 });
    let instances = store.instances(host).await.unwrap();
    assert_eq!(pruned_through(&instances, "a"), 1_030);
    assert_eq!(pruned_through(&instances, "b"), 8, "the highest pruned, not the newest kept");
    assert_eq!(pruned_through(&instances, "c"), 0);
    assert_eq!(store.receipts(host, Some("a"), 100).await.unwrap().len(), 10);
    let b: Vec<u64> =
        store.receipts(host, Some("b"), 100).await.unwrap().iter().map(|r| r.seq).collect();
    assert_eq!(b, [7]);

    // A second pass finds nothing and lowers no watermark.
    let again = store.prune(cutoff, 0, 100).await.unwrap();
    assert_eq!((again.receipts, again.rollups), (0, 0));
    assert_eq!(pruned_through(&store.instances(host).await.unwrap(), "a"), 1_030);
}

pub async fn prune_lets_commits_in_between_batches(store: &dyn Store) {
    let host = enrolled(store, "srv01").await;
    let old = 4_000;
    receipts_at(store, host, "old", 1..=old, |seq| seq as i64).await;
    let cutoff = 1_000_000;
    let (stats, landed) = tokio::join!(store.prune(cutoff, 0, 20), async {
        // Once the first batch has committed (its watermark is visible to readers)...
        loop {
            let instances = store.instances(host).await.unwrap();
            if pruned_through(&instances, "old") > 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        // ...a commit waits for one batch at most, not for the whole prune.
        let outcomes = commit(store, &[record(host, "live", 1, cutoff + 5)]).await;
        assert_eq!(outcomes, [CommitOutcome::Stored]);
        pruned_through(&store.instances(host).await.unwrap(), "old")
    });
    let stats = stats.unwrap();
    assert_eq!(stats.receipts, old);
    assert!(stats.batches > 100, "{stats:?}");
    assert!(
        landed > 0 && landed < old,
        "the commit landed after {landed} of {old} receipts were pruned: not between batches"
    );
    assert_eq!(pruned_through(&store.instances(host).await.unwrap(), "old"), old);
    assert_eq!(store.receipts(host, Some("live"), 10).await.unwrap().len(), 1);
}

pub async fn events_dedupe_and_goodbye(store: &dyn Store) {
    let host = enrolled(store, "srv01").await;
    assert!(store.record_event(host, "cloned_identity", "a|b", "two", 5).await.unwrap());
    assert!(!store.record_event(host, "cloned_identity", "a|b", "two", 6).await.unwrap());
    assert_eq!(store.events(host, 10).await.unwrap().len(), 1);
    store.record_goodbye(host, "reboot", 7).await.unwrap();
    let row = store.get_host(host).await.unwrap().unwrap();
    assert_eq!(row.goodbye_reason.as_deref(), Some("reboot"));
    // A new report clears the goodbye.
    commit(store, &[record(host, "i1", 1, 10)]).await;
    let row = store.get_host(host).await.unwrap().unwrap();
    assert_eq!(row.goodbye_reason, None);
    assert_eq!(row.last_seen_ms, Some(15));
    assert!(store.get_host(HostId::new_random()).await.unwrap().is_none());
}

fn fingerprint(
    store_host: HostId,
    customer: CustomerId,
    site: SiteId,
    rule: &str,
    resource: &str,
) -> Fingerprint {
    Fingerprint {
        customer_id: customer,
        site_id: site,
        host_id: Some(store_host),
        rule: rule.into(),
        resource: resource.into(),
    }
}

fn raise(fp: &Fingerprint, level: FaultLevel, summary: &str) -> IncidentOp {
    IncidentOp::Raise {
        fingerprint: fp.clone(),
        level,
        summary: summary.into(),
        kind: FindingKind::State,
        parent: None,
        groups: Vec::new(),
        group_host: false,
        detail: None,
    }
}

async fn apply(store: &dyn Store, ops: Vec<IncidentOp>, now: UnixMs) -> Vec<IncidentChange> {
    let batch = [HostEvaluation { state: None, ops, host_events: Vec::new() }];
    store.apply_evaluations(&batch, 86_400_000, now).await.unwrap()
}

/// A host of acme/main and a fingerprint on it.
async fn incident_host(store: &dyn Store) -> (HostId, Fingerprint) {
    let host = enrolled(store, "srv01").await;
    let row = store.get_host(host).await.unwrap().unwrap();
    let fp = fingerprint(host, row.customer_id, row.site_id, "raid.degraded", "md0");
    (host, fp)
}

pub async fn incidents_are_one_per_fingerprint_and_reopen_within_the_window(store: &dyn Store) {
    let (_, fp) = incident_host(store).await;
    let changes = apply(store, vec![raise(&fp, FaultLevel::L2, "md0 degraded")], 1_000).await;
    assert_eq!(changes.iter().map(|c| c.change).collect::<Vec<_>>(), ["opened"]);
    let id = changes[0].incident_id;
    // Raised again: same incident; a new level is recorded on the timeline.
    apply(store, vec![raise(&fp, FaultLevel::L2, "md0 degraded")], 2_000).await;
    let changes = apply(store, vec![raise(&fp, FaultLevel::L1, "md0 failed")], 3_000).await;
    assert_eq!((changes[0].incident_id, changes[0].change), (id, "level"));
    let all = store.list_incidents(&IncidentFilter::default()).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(
        (all[0].level, all[0].summary.as_str(), all[0].number.as_str()),
        (FaultLevel::L1, "md0 failed", incident_number(id).as_str())
    );

    let resolve = IncidentOp::Resolve { fingerprint: fp.clone(), reason: "cleared".into() };
    apply(store, vec![resolve.clone()], 4_000).await;
    let changes = apply(store, vec![raise(&fp, FaultLevel::L2, "md0 degraded")], 5_000).await;
    assert_eq!((changes[0].incident_id, changes[0].change), (id, "reopened"));
    let row = store.get_incident(id).await.unwrap().unwrap();
    assert_eq!((row.state, row.recurrences, row.resolved_at_ms), (IncidentState::Open, 1, None));

    // Resolved longer ago than the window: a new incident.
    apply(store, vec![resolve], 6_000).await;
    let later = 6_000 + 86_400_000 + 1;
    let changes = apply(store, vec![raise(&fp, FaultLevel::L2, "md0 degraded")], later).await;
    assert_eq!(changes[0].change, "opened");
    assert_ne!(changes[0].incident_id, id);
    let kinds: Vec<&str> =
        store.incident_timeline(id).await.unwrap().into_iter().map(|t| t.kind.as_str()).collect();
    assert_eq!(kinds, ["opened", "level", "resolved", "reopened", "resolved"]);
}

pub async fn people_work_incidents_through_their_states(store: &dyn Store) {
    let (_, fp) = incident_host(store).await;
    let id =
        apply(store, vec![raise(&fp, FaultLevel::L2, "md0 degraded")], 1_000).await[0].incident_id;
    let row =
        store.work_incident(id, &IncidentAction::Acknowledge, "token:ann", 2_000).await.unwrap();
    assert_eq!(
        (row.state, row.acknowledged_by.as_deref()),
        (IncidentState::Acknowledged, Some("token:ann"))
    );
    let again = store.work_incident(id, &IncidentAction::Acknowledge, "token:bob", 2_500).await;
    assert!(matches!(again, Err(StoreError::Conflict(m)) if m.contains("token:ann")));
    store
        .work_incident(id, &IncidentAction::Assign("bob".into()), "token:ann", 3_000)
        .await
        .unwrap();
    store
        .work_incident(id, &IncidentAction::Note("ordered a disk".into()), "token:bob", 3_500)
        .await
        .unwrap();
    let row = store
        .work_incident(id, &IncidentAction::Resolve("replaced sdb".into()), "token:bob", 4_000)
        .await
        .unwrap();
    assert_eq!(row.state, IncidentState::Resolved);
    assert_eq!(row.resolution_note.as_deref(), Some("replaced sdb"));
    assert!(matches!(
        store.work_incident(id, &IncidentAction::Resolve("x".into()), "token:bob", 4_500).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store
            .work_incident(
                IncidentId::new(999_999),
                &IncidentAction::Acknowledge,
                "token:bob",
                4_500
            )
            .await,
        Err(StoreError::NotFound(_))
    ));
    // A note is still welcome after resolution; closing comes later.
    store
        .work_incident(id, &IncidentAction::Note("invoiced".into()), "token:bob", 5_000)
        .await
        .unwrap();
    assert_eq!(store.close_resolved(4_000, 6_000).await.unwrap(), 0);
    assert_eq!(store.close_resolved(4_001, 6_000).await.unwrap(), 1);
    let row = store.get_incident(id).await.unwrap().unwrap();
    assert_eq!((row.state, row.closed_at_ms), (IncidentState::Closed, Some(6_000)));
    let timeline = store.incident_timeline(id).await.unwrap();
    let kinds: Vec<&str> = timeline.iter().map(|t| t.kind.as_str()).collect();
    assert_eq!(kinds, ["opened", "acknowledged", "assigned", "note", "resolved", "note", "closed"]);
    assert_eq!(timeline[4].detail, "replaced sdb");
    assert_eq!(timeline[4].actor, "token:bob");
}

pub async fn grouping_files_children_and_resolving_releases_them(store: &dyn Store) {
    let (host, raid) = incident_host(store).await;
    let disk =
        Fingerprint { rule: "smart.failing".into(), resource: "/dev/sda".into(), ..raid.clone() };
    let other =
        Fingerprint { rule: "filesystem.full".into(), resource: "/".into(), ..raid.clone() };
    let disk_id =
        apply(store, vec![raise(&disk, FaultLevel::L1, "sda failing")], 1_000).await[0].incident_id;
    let other_id =
        apply(store, vec![raise(&other, FaultLevel::L2, "/ full")], 1_000).await[0].incident_id;
    let mut raid_op = raise(&raid, FaultLevel::L2, "md0 degraded");
    if let IncidentOp::Raise { groups, .. } = &mut raid_op {
        groups.push("/dev/sda".into());
    }
    let raid_id = apply(store, vec![raid_op], 2_000).await[0].incident_id;
    let parent = |id| async move { store.get_incident(id).await.unwrap().unwrap().parent_id };
    assert_eq!(parent(disk_id).await, Some(raid_id));
    assert_eq!(parent(other_id).await, None);
    let filed = store
        .list_incidents(&IncidentFilter { parent_id: Some(raid_id), ..IncidentFilter::default() })
        .await
        .unwrap();
    assert_eq!(filed.iter().map(|i| i.id).collect::<Vec<_>>(), [disk_id]);

    // A silent host files everything else of the host under its silence incident...
    let silent =
        Fingerprint { rule: "host.silent".into(), resource: "host".into(), ..raid.clone() };
    let mut silent_op = raise(&silent, FaultLevel::L1, "no reports");
    if let IncidentOp::Raise { group_host, .. } = &mut silent_op {
        *group_host = true;
    }
    let silent_id = apply(store, vec![silent_op], 3_000).await[0].incident_id;
    assert_eq!(parent(other_id).await, Some(silent_id));
    assert_eq!(parent(raid_id).await, Some(silent_id));
    assert_eq!(parent(disk_id).await, Some(raid_id), "already filed stays where it is");
    // ...and releases them when it resolves.
    apply(store, vec![IncidentOp::Resolve { fingerprint: silent, reason: "back".into() }], 4_000)
        .await;
    assert_eq!(parent(other_id).await, None);
    assert_eq!(parent(raid_id).await, None);

    // A site incident groups host incidents with explicit Group operations.
    let row = store.get_host(host).await.unwrap().unwrap();
    let site = Fingerprint {
        host_id: None,
        rule: "site.silent".into(),
        resource: "main".into(),
        ..raid.clone()
    };
    let site_id =
        apply(store, vec![raise(&site, FaultLevel::L1, "site down")], 5_000).await[0].incident_id;
    let site_row = store.get_incident(site_id).await.unwrap().unwrap();
    assert_eq!((site_row.host_id, site_row.site_id), (None, row.site_id));
    let changes =
        apply(store, vec![IncidentOp::Group { child: other.clone(), parent: site.clone() }], 6_000)
            .await;
    assert_eq!(changes.iter().map(|c| c.change).collect::<Vec<_>>(), ["grouped"]);
    assert_eq!(parent(other_id).await, Some(site_id));
}

pub async fn classifier_state_and_host_events_are_stored_with_the_batch(store: &dyn Store) {
    let (host, fp) = incident_host(store).await;
    let states = store.eval_states(&[host, HostId::new_random()]).await.unwrap();
    assert_eq!(states.len(), 1, "unknown hosts are skipped");
    assert_eq!((states[0].memory.as_deref(), states[0].customer.as_str()), (None, "acme"));
    let batch = [HostEvaluation {
        state: Some((host, "{\"m\":1}".into(), "{\"c\":2}".into())),
        ops: vec![raise(&fp, FaultLevel::L3, "oom kill")],
        host_events: vec![(host, "while_disconnected".into(), "k1".into(), "oom kill".into())],
    }];
    store.apply_evaluations(&batch, 0, 1_000).await.unwrap();
    store.apply_evaluations(&batch, 0, 2_000).await.unwrap();
    let states = store.eval_states(&[host]).await.unwrap();
    assert_eq!(states[0].memory.as_deref(), Some("{\"m\":1}"));
    assert_eq!(states[0].conditions.as_deref(), Some("{\"c\":2}"));
    let events = store.events(host, 10).await.unwrap();
    assert_eq!(events.iter().filter(|e| e.kind == "while_disconnected").count(), 1, "deduplicated");
}

pub async fn maintenance_windows_round_trip(store: &dyn Store) {
    let host = enrolled(store, "srv01").await;
    let row = store.get_host(host).await.unwrap().unwrap();
    let window = MaintenanceWindowRow {
        id: "w1".into(),
        customer_id: row.customer_id,
        customer: String::new(),
        site_id: Some(row.site_id),
        site: None,
        host_id: Some(host),
        hostname: None,
        rules: vec!["raid.degraded".into()],
        start_local: "2026-11-28T22:00".into(),
        duration_ms: 7_200_000,
        recurrence: "weekly".into(),
        time_zone: "Europe/Berlin".into(),
        until_local: Some("2027-03-01".into()),
        reason: "disk swap".into(),
        created_at_ms: 5,
        created_by: "token:ann".into(),
    };
    store.create_maintenance(&window).await.unwrap();
    let listed = store.list_maintenance().await.unwrap();
    let expected = MaintenanceWindowRow {
        customer: "acme".into(),
        site: Some("main".into()),
        hostname: Some("srv01".into()),
        ..window
    };
    assert_eq!(listed, [expected]);
    assert!(store.delete_maintenance("w1").await.unwrap());
    assert!(!store.delete_maintenance("w1").await.unwrap());
    assert!(store.list_maintenance().await.unwrap().is_empty());
}

/// The wall clock in Unix milliseconds: what PostgreSQL judges a lease by (its own clock),
/// passed to SQLite too so one test holds for both.
fn wall_ms() -> UnixMs {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Takes the runner lease for an hour: the fence the holder's writes carry in these tests.
pub async fn runner_fence(store: &dyn Store) -> Fence {
    store.acquire_lease("runner", "test", wall_ms(), 3_600_000).await.unwrap().expect("free")
}

pub async fn the_lease_has_one_holder_until_it_expires(store: &dyn Store) {
    const TTL: i64 = 1_500;
    let a = store.acquire_lease("runner", "a", wall_ms(), TTL).await.unwrap().expect("free");
    assert_eq!((a.holder.as_str(), a.generation), ("a", 1));
    assert_eq!(store.acquire_lease("runner", "b", wall_ms(), TTL).await.unwrap(), None);
    let renewed = store.acquire_lease("runner", "a", wall_ms(), TTL).await.unwrap();
    assert_eq!(renewed, Some(a.clone()), "a renews at the same generation");
    tokio::time::sleep(std::time::Duration::from_millis(TTL as u64 + 300)).await;
    let b = store.acquire_lease("runner", "b", wall_ms(), TTL).await.unwrap().expect("expired");
    assert_eq!(b.generation, 2, "the lease changed hands");
    assert_eq!(store.acquire_lease("runner", "a", wall_ms(), TTL).await.unwrap(), None);
}

/// A holder paused past its lease while another took it over writes nothing: its SLA
/// updates, fan-out and delivery outcomes are refused by the fence, and the new holder's pass.
pub async fn a_stale_lease_holder_is_fenced_off(store: &dyn Store) {
    const TTL: i64 = 1_000;
    let old = store.acquire_lease("runner", "old", wall_ms(), TTL).await.unwrap().unwrap();
    let (_, fp) = incident_host(store).await;
    let id =
        apply(store, vec![raise(&fp, FaultLevel::L2, "md0 degraded")], 1_000).await[0].incident_id;
    let due = store.sla_due(wall_ms() + 3_600_000, 10).await.unwrap();
    let terms = crate::sla::contract::Terms::new(Default::default(), &[]).unwrap();
    let update = crate::sla::deadlines::evaluate(&due[0].sla, &terms, &[], 1_000);
    tokio::time::sleep(std::time::Duration::from_millis(TTL as u64 + 300)).await;
    let new = store.acquire_lease("runner", "new", wall_ms(), TTL * 60).await.unwrap().unwrap();
    assert!(new.generation > old.generation);

    let batch = [(due[0].sla.clone(), update)];
    let refused = store.apply_sla(&batch, wall_ms(), &old).await;
    assert!(matches!(refused, Err(StoreError::Fenced(_))), "{refused:?}");
    assert_eq!(refused.unwrap_err().code(), ErrorCode::FailedPrecondition);
    let item = store.pending_outbox(10).await.unwrap().remove(0);
    let d = NewDelivery { event_id: "e".into(), receiver: "hook".into(), payload: "{}".into() };
    let refused = store.fan_out(item.id, id, std::slice::from_ref(&d), wall_ms(), &old).await;
    assert!(matches!(refused, Err(StoreError::Fenced(_))), "{refused:?}");
    assert!(store.incident_deliveries(id).await.unwrap().is_empty(), "nothing fanned out");

    assert_eq!(store.apply_sla(&batch, wall_ms(), &new).await.unwrap(), 1);
    store.fan_out(item.id, id, &[d], wall_ms(), &new).await.unwrap();
    let delivery = store.incident_deliveries(id).await.unwrap().remove(0);
    let refused = store.record_delivery(delivery.id, &DeliveryOutcome::Delivered, 1, &old).await;
    assert!(matches!(refused, Err(StoreError::Fenced(_))), "{refused:?}");
    store.record_delivery(delivery.id, &DeliveryOutcome::Delivered, 1, &new).await.unwrap();
    let delivery = store.incident_deliveries(id).await.unwrap().remove(0);
    assert_eq!((delivery.state, delivery.attempts), (DeliveryState::Delivered, 1));
}

pub async fn contracts_round_trip_and_mark_incidents_for_the_sweep(store: &dyn Store) {
    let fence = runner_fence(store).await;
    let (_, fp) = incident_host(store).await;
    let id =
        apply(store, vec![raise(&fp, FaultLevel::L2, "md0 degraded")], 1_000).await[0].incident_id;
    let due = store.sla_due(1_000, 100).await.unwrap();
    assert_eq!(due.iter().map(|r| r.sla.id).collect::<Vec<_>>(), [id], "new: due at once");
    assert_eq!(due[0].sla.opened_at_ms, 1_000);
    // The sweep decides: nothing due before 13 minutes.
    let terms = crate::sla::contract::Terms::new(Default::default(), &[]).unwrap();
    let update = crate::sla::deadlines::evaluate(&due[0].sla, &terms, &[], 1_000);
    assert_eq!(store.apply_sla(&[(due[0].sla.clone(), update)], 1_000, &fence).await.unwrap(), 1);
    assert!(store.sla_due(2_000, 100).await.unwrap().is_empty());
    let view = store.incident_sla(id).await.unwrap().unwrap();
    assert_eq!(view.response_due_ms, Some(1_000 + 15 * 60_000));

    // A new contract marks the customer's incidents for the next sweep.
    assert_eq!(store.get_contract(fp.customer_id).await.unwrap(), None);
    let row = ContractRow {
        customer_id: fp.customer_id,
        body: "{\"time_zone\":\"UTC\"}".into(),
        updated_at_ms: 3_000,
        updated_by: "token:ann".into(),
    };
    store.set_contract(&row).await.unwrap();
    assert_eq!(store.get_contract(fp.customer_id).await.unwrap(), Some(row.clone()));
    assert_eq!(store.list_contracts().await.unwrap(), vec![row]);
    assert_eq!(store.sla_due(3_000, 100).await.unwrap().len(), 1);

    // An update computed from a stale read (acknowledged meanwhile) is not applied.
    let stale = store.sla_due(3_000, 100).await.unwrap().remove(0);
    store.work_incident(id, &IncidentAction::Acknowledge, "token:ann", 3_500).await.unwrap();
    let update = crate::sla::deadlines::evaluate(&stale.sla, &terms, &[], 3_600);
    assert_eq!(store.apply_sla(&[(stale.sla, update)], 3_600, &fence).await.unwrap(), 0);
    let fresh = store.sla_due(3_600, 100).await.unwrap().remove(0);
    assert_eq!(fresh.sla.acknowledged_at_ms, Some(3_500));
}

pub async fn notifiable_changes_enter_the_outbox_and_deliver_in_order(store: &dyn Store) {
    let fence = runner_fence(store).await;
    let (_, fp) = incident_host(store).await;
    let id =
        apply(store, vec![raise(&fp, FaultLevel::L2, "md0 degraded")], 1_000).await[0].incident_id;
    store
        .work_incident(id, &IncidentAction::Note("looking".into()), "token:ann", 1_500)
        .await
        .unwrap();
    store.work_incident(id, &IncidentAction::Acknowledge, "token:ann", 2_000).await.unwrap();
    let items = store.pending_outbox(10).await.unwrap();
    // Notes are not notified; the opening and the acknowledgement are.
    assert_eq!(
        items.iter().map(|i| i.kind.as_str()).collect::<Vec<_>>(),
        ["opened", "acknowledged"]
    );
    for item in &items {
        let d = NewDelivery {
            event_id: format!("{}/{}", incident_number(id), item.timeline_id),
            receiver: "hook".into(),
            payload: "{}".into(),
        };
        store.fan_out(item.id, id, std::slice::from_ref(&d), 3_000, &fence).await.unwrap();
        // Fanning out twice (a crash before the outbox row was marked) adds nothing.
        store.fan_out(item.id, id, &[d], 3_000, &fence).await.unwrap();
    }
    assert!(store.pending_outbox(10).await.unwrap().is_empty());
    assert_eq!(store.notification_backlog().await.unwrap(), (0, 2));
    // Only the first is due: the second waits behind it.
    let due = store.due_deliveries(3_000, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    let first = due[0].id;
    let retry = DeliveryOutcome::Retry { error: "HTTP 503".into(), at_ms: 4_000 };
    store.record_delivery(first, &retry, 3_000, &fence).await.unwrap();
    assert!(store.due_deliveries(3_999, 10).await.unwrap().is_empty());
    store.record_delivery(first, &DeliveryOutcome::Delivered, 4_000, &fence).await.unwrap();
    let due = store.due_deliveries(4_000, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_ne!(due[0].id, first);
    let all = store.incident_deliveries(id).await.unwrap();
    assert_eq!(
        all.iter().map(|d| (d.state.as_str(), d.attempts)).collect::<Vec<_>>(),
        [("delivered", 2), ("pending", 0)]
    );
    assert_eq!(all[0].last_error.as_deref(), Some("HTTP 503"), "the last error stays visible");
}

pub async fn dead_letters_are_retried_in_order_until_delivered_or_dropped(store: &dyn Store) {
    let fence = runner_fence(store).await;
    let (_, fp) = incident_host(store).await;
    let id =
        apply(store, vec![raise(&fp, FaultLevel::L2, "md0 degraded")], 1_000).await[0].incident_id;
    store.work_incident(id, &IncidentAction::Acknowledge, "token:ann", 2_000).await.unwrap();
    for item in store.pending_outbox(10).await.unwrap() {
        let deliveries: Vec<NewDelivery> = ["hook", "gone"]
            .iter()
            .map(|receiver| NewDelivery {
                event_id: format!("{}/{}", incident_number(id), item.timeline_id),
                receiver: (*receiver).into(),
                payload: "{}".into(),
            })
            .collect();
        store.fan_out(item.id, id, &deliveries, 3_000, &fence).await.unwrap();
    }
    // The first event of each receiver is due; both are dead-lettered.
    let due = store.due_deliveries(3_000, 10).await.unwrap();
    assert_eq!(due.iter().map(|d| d.receiver.as_str()).collect::<Vec<_>>(), ["hook", "gone"]);
    for d in &due {
        let dead = DeliveryOutcome::DeadLetter { error: "HTTP 503".into(), at_ms: 10_000 };
        store.record_delivery(d.id, &dead, 3_000, &fence).await.unwrap();
    }
    let counts = store.dead_letter_counts().await.unwrap();
    assert_eq!(
        counts,
        [
            DeadLetterCount { receiver: "gone".into(), count: 1 },
            DeadLetterCount { receiver: "hook".into(), count: 1 }
        ]
    );
    let dead = store.dead_letters(10).await.unwrap();
    assert_eq!(
        dead.iter().map(|d| d.id).collect::<Vec<_>>(),
        due.iter().map(|d| d.id).collect::<Vec<_>>()
    );
    assert!(dead.iter().all(|d| d.state == DeliveryState::DeadLetter && d.attempts == 1));
    // Not due before its slow retry, and the later events wait behind it: order holds.
    assert!(store.due_deliveries(9_999, 10).await.unwrap().is_empty());
    let retried = store.due_deliveries(10_000, 10).await.unwrap();
    assert_eq!(
        retried.iter().map(|d| d.id).collect::<Vec<_>>(),
        dead.iter().map(|d| d.id).collect::<Vec<_>>()
    );

    // The receiver answers: delivered, and its next event comes due.
    let (hook, gone) = (dead[0].id, dead[1].id);
    store.record_delivery(hook, &DeliveryOutcome::Delivered, 10_000, &fence).await.unwrap();
    let next = store.due_deliveries(10_000, 10).await.unwrap();
    assert_eq!(next.len(), 2);
    assert_eq!((next[0].id, next[0].receiver.as_str()), (gone, "gone"));
    assert_eq!(next[1].receiver, "hook");
    assert!(next[1].id > hook);

    // An operator drops the other: never due again, and its receiver's next event goes on.
    assert!(matches!(store.drop_delivery(hook).await, Err(StoreError::Conflict(_))));
    assert!(matches!(
        store.drop_delivery(crate::ids::DeliveryId::new(999_999)).await,
        Err(StoreError::NotFound(_))
    ));
    let dropped = store.drop_delivery(gone).await.unwrap();
    assert_eq!((dropped.id, dropped.state.as_str()), (gone, "dropped"));
    assert!(matches!(store.drop_delivery(gone).await, Err(StoreError::Conflict(_))));
    assert!(store.dead_letter_counts().await.unwrap().is_empty());
    let next = store.due_deliveries(10_000, 10).await.unwrap();
    assert_eq!(next.iter().map(|d| d.receiver.as_str()).collect::<Vec<_>>(), ["hook", "gone"]);
    assert!(next.iter().all(|d| d.state == DeliveryState::Pending && d.id != gone));
}

macro_rules! store_test_suite {
    ($backend:ident, $open:expr) => {
        mod $backend {
            use super::*;

            macro_rules! case {
                ($name:ident) => {
                    #[tokio::test]
                    async fn $name() {
                        let Some((_guard, store)) = $open.await else { return };
                        super::$name(&store).await;
                    }
                };
            }

            case!(tenancy_names_are_unique_and_sites_need_customers);
            case!(tokens_admit_exactly_their_uses_until_expiry);
            case!(certificates_map_to_hosts_until_revoked);
            case!(replace_hands_history_to_the_new_identity);
            case!(api_tokens_and_audit);
            case!(duplicates_are_acknowledged_and_ignored);
            case!(a_poisoned_record_fails_alone);
            case!(a_reused_seq_with_other_content_is_a_conflict);
            case!(a_seq_twice_in_one_batch_is_a_duplicate_or_a_conflict);
            case!(a_replay_older_than_the_receipt_window_is_stale_not_stored_twice);
            case!(new_instance_is_stored_beside_old);
            case!(latest_report_is_newest_collected);
            case!(rollups_keep_min_avg_max_per_bucket);
            case!(new_series_are_recorded_once_with_when_first_stored);
            case!(prune_drops_only_old_rows);
            case!(prune_forgets_series_whose_rollups_all_expired);
            case!(prune_runs_in_batches_and_keeps_the_highest_pruned_seq);
            case!(prune_lets_commits_in_between_batches);
            case!(events_dedupe_and_goodbye);
            case!(incidents_are_one_per_fingerprint_and_reopen_within_the_window);
            case!(people_work_incidents_through_their_states);
            case!(grouping_files_children_and_resolving_releases_them);
            case!(classifier_state_and_host_events_are_stored_with_the_batch);
            case!(maintenance_windows_round_trip);
            case!(the_lease_has_one_holder_until_it_expires);
            case!(a_stale_lease_holder_is_fenced_off);
            case!(contracts_round_trip_and_mark_incidents_for_the_sweep);
            case!(notifiable_changes_enter_the_outbox_and_deliver_in_order);
            case!(dead_letters_are_retried_in_order_until_delivered_or_dropped);
        }
    };
}

async fn open_sqlite() -> (tempfile::TempDir, sqlite::SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite::SqliteStore::open(dir.path()).await.unwrap();
    (dir, store)
}

store_test_suite!(sqlite_backend, async { Some(open_sqlite().await) });

/// A schema of the test database used by one test, dropped when the test ends.
pub(crate) struct TestSchema {
    url: String,
    name: String,
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        // Dropped from a thread of its own: the test's runtime may be shutting down.
        let _ = std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                use sqlx::Connection;
                if let Ok(mut conn) = sqlx::PgConnection::connect(&url).await {
                    let drop = format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE");
                    let _ = sqlx::query(&drop).execute(&mut conn).await;
                }
            });
        })
        .join();
    }
}

/// A PostgreSQL store in a fresh schema of the database at `VIGIL_TEST_DATABASE_URL`, so test
/// runs never disturb each other. Without the variable the test is skipped with a loud
/// message, or fails when `VIGIL_REQUIRE_EXTERNAL=1` (as in CI).
pub(crate) async fn open_postgres() -> Option<(TestSchema, postgres::PgStore)> {
    let Ok(url) = std::env::var("VIGIL_TEST_DATABASE_URL") else {
        assert!(
            std::env::var("VIGIL_REQUIRE_EXTERNAL").as_deref() != Ok("1"),
            "VIGIL_TEST_DATABASE_URL is not set and VIGIL_REQUIRE_EXTERNAL=1: the PostgreSQL \
             store cannot be tested"
        );
        eprintln!(
            "SKIPPED: VIGIL_TEST_DATABASE_URL is not set, so the PostgreSQL store is not tested \
             (e.g. VIGIL_TEST_DATABASE_URL=postgres://postgres@127.0.0.1/test)"
        );
        return None;
    };
    let name = format!("vigil_test_{}", uuid::Uuid::new_v4().simple());
    let store = postgres::PgStore::open(&url, Some(&name)).await.unwrap();
    Some((TestSchema { url, name }, store))
}

store_test_suite!(postgres_backend, open_postgres());

/// PostgreSQL only: roll-ups are partitioned by time, and retention drops a partition that
/// ended before the cut-off (counting its rows) instead of deleting them one by one.
#[tokio::test]
async fn postgres_retention_drops_expired_rollup_partitions() {
    let Some((_schema, store)) = open_postgres().await else { return };
    const DAY: i64 = 86_400_000;
    let host = enrolled(&store, "srv01").await;
    let now = wall_ms();
    commit(&store, &[record(host, "i1", 1, now - 45 * DAY), record(host, "i1", 2, now)]).await;
    let partition_of = async |at: i64| -> String {
        sqlx::query_scalar(
            "SELECT tableoid::regclass::TEXT FROM rollups_5m WHERE bucket_start_ms <= $1 \
             ORDER BY bucket_start_ms DESC LIMIT 1",
        )
        .bind(at)
        .fetch_one(&store.read)
        .await
        .unwrap()
    };
    let old = partition_of(now - 45 * DAY).await;
    assert!(old.contains("rollups_5m_p"), "the old roll-up is in a time partition: {old}");
    let stats = store.prune(0, now - 10 * DAY, 5_000).await.unwrap();
    assert_eq!(stats.rollups, 1, "{stats:?}");
    // Looked up through this test's search path: other tests' schemas have the same names.
    let gone: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NULL")
        .bind(&old)
        .fetch_one(&store.read)
        .await
        .unwrap();
    assert!(gone, "{old} was dropped");
    let kept = store.rollups(host, "cpu.usage_ratio", 0).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert!(kept[0].bucket_start_ms > now - 10 * DAY);
}

/// SQLite only: a store that cannot write (another process holds the database's write lock)
/// fails the whole batch as unavailable, commits nothing, and no report is blamed for it.
#[tokio::test]
async fn sqlite_a_locked_store_fails_the_whole_batch_as_unavailable() {
    use sqlx::Connection;
    let (dir, store) = open_sqlite().await;
    let host = enrolled(&store, "srv01").await;
    // Wait 50 ms for the lock instead of 10 s.
    sqlx::query("PRAGMA busy_timeout = 50").execute(&mut *store.write.lock().await).await.unwrap();
    let mut other = sqlx::SqliteConnection::connect(&format!(
        "sqlite://{}",
        dir.path().join("vigil.db").display()
    ))
    .await
    .unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut other).await.unwrap();
    let batch = [record(host, "i1", 1, 1_000), record(host, "i1", 2, 2_000)];
    let err = store.commit_reports(&batch).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert_eq!(err.code(), ErrorCode::Unavailable);
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    assert!(store.receipts(host, None, 10).await.unwrap().is_empty());
    // Once the lock is free the same batch commits whole.
    assert_eq!(commit(&store, &batch).await, [CommitOutcome::Stored, CommitOutcome::Stored]);
}
