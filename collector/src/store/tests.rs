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
    store
        .commit_reports(&[record(old, "old-i", 1, 1_000), record(old, "old-i", 2, 2_000)])
        .await
        .unwrap();
    store.commit_reports(&[record(new, "new-i", 1, 3_000)]).await.unwrap();
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
    let host = enrolled(store, "srv01").await;
    store.commit_reports(&[record(host, "old", 1, 1_000)]).await.unwrap();
    let outcomes = store.commit_reports(&[record(host, "new", 1, 2_000)]).await.unwrap();
    assert_eq!(outcomes, [CommitOutcome::Stored]);
    let instances = store.instances(host).await.unwrap();
    assert_eq!(instances.iter().map(|i| i.instance.as_str()).collect::<Vec<_>>(), ["old", "new"]);
    assert_eq!(store.receipts(host, Some("new"), 10).await.unwrap().len(), 1);
}

pub async fn latest_report_is_newest_collected(store: &dyn Store) {
    let host = enrolled(store, "srv01").await;
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
    let host = enrolled(store, "srv01").await;
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
    let host = enrolled(store, "srv01").await;
    let old = record(host, "i1", 1, 1_000);
    let new = record(host, "i1", 2, 100 * ROLLUP_BUCKET_MS);
    store.commit_reports(&[old, new]).await.unwrap();
    let stats = store.prune(50_000, 50 * ROLLUP_BUCKET_MS).await.unwrap();
    assert_eq!(stats, PruneStats { receipts: 1, rollups: 1 });
    assert_eq!(store.receipts(host, None, 10).await.unwrap().len(), 1);
    assert_eq!(store.rollups(host, "cpu.usage_ratio", 0).await.unwrap().len(), 1);
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

            case!(tenancy_names_are_unique_and_sites_need_customers);
            case!(tokens_admit_exactly_their_uses_until_expiry);
            case!(certificates_map_to_hosts_until_revoked);
            case!(replace_hands_history_to_the_new_identity);
            case!(api_tokens_and_audit);
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
