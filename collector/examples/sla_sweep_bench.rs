//! How long the SLA sweep takes over a large fleet: opens `--incidents N` (default 10 000)
//! incidents across 100 hosts in a fresh SQLite store (on disk, `synchronous=FULL`, as the
//! collector runs it), then times [`vigil_collector::sla::sweep`] in the three situations that
//! matter, on a manual clock:
//!
//! 1. **first**: every incident is new, so every deadline is computed and stored (the worst
//!    case, e.g. after a contract change for the whole fleet), in consecutive sweeps of at most
//!    `SWEEP_LIMIT` incidents as the runner does it;
//! 2. **quiet**: nothing is due (the steady state between deadlines);
//! 3. **warn**: twelve minutes later every L2 incident reaches 80 % of its response time at
//!    once, so each gets a warning written to its timeline and the outbox.
//!
//! Half the customers' contracts use business hours in Europe/Berlin with holidays, and one
//! maintenance window covers a tenth of the hosts, so calendars and pauses are exercised. The
//! budget is 100 ms per sweep over 10 000 open incidents.
//!
//! With `--database URL` the store is PostgreSQL instead, in a schema of its own that is
//! dropped afterwards.
//!
//! ```text
//! cargo run --release -p vigil-collector --example sla_sweep_bench [-- --incidents N] [--database URL]
//! ```

use std::sync::Arc;
use std::time::Instant;

use vigil_collector::classify::{FaultLevel, FindingKind};
use vigil_collector::clock::{ManualClock, SharedClock};
use vigil_collector::ids::HostId;
use vigil_collector::maintenance::Maintenance;
use vigil_collector::sla::contract::Contract;
use vigil_collector::store::postgres::PgStore;
use vigil_collector::store::sqlite::SqliteStore;
use vigil_collector::store::{
    CertificateRecord, ContractRow, EnrollmentToken, Fingerprint, HostEvaluation, IncidentOp,
    MaintenanceWindowRow, NewHost, Store,
};

const HOSTS: usize = 100;
const T0: i64 = 1_795_000_000_000;

/// `--incidents N` (default 10 000) and `--database URL` (default: SQLite in a temporary
/// directory).
fn args() -> Result<(usize, Option<String>), String> {
    let mut args = std::env::args().skip(1);
    let (mut incidents, mut database) = (10_000, None);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--incidents", Some(n)) => {
                incidents = n.parse().map_err(|e| format!("--incidents {n}: {e}"))?;
            }
            ("--database", Some(url)) => database = Some(url),
            (other, _) => return Err(format!("unexpected argument {other:?}")),
        }
    }
    Ok((incidents, database))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (incidents, database) = match args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!(
                "sla_sweep_bench: {message}\n\
                 usage: sla_sweep_bench [--incidents N] [--database postgres://…]"
            );
            std::process::exit(2);
        }
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let schema = format!("vigil_bench_{}", std::process::id());
    let store: Arc<dyn Store> = match &database {
        None => Arc::new(SqliteStore::open(dir.path()).await.expect("store")),
        Some(url) => Arc::new(PgStore::open(url, Some(&schema)).await.expect("store")),
    };
    println!("store: {}", if database.is_some() { "PostgreSQL" } else { "SQLite" });
    let clock = Arc::new(ManualClock::new(T0));
    let shared: SharedClock = clock.clone();

    // Two customers: one on the default contract, one on business hours with holidays.
    let mut hosts = Vec::new();
    for (c, customer) in ["default-co", "office-co"].iter().enumerate() {
        store.create_customer(customer, T0).await.unwrap();
        let site = store.create_site(customer, "main", T0).await.unwrap();
        for h in 0..HOSTS / 2 {
            let secret = format!("secret-{c}-{h}");
            let token = EnrollmentToken {
                id: secret.clone(),
                secret_sha256: secret.clone(),
                site_id: site.id,
                uses: 1,
                expires_at_ms: i64::MAX,
                created_at_ms: T0,
                created_by: "bench".into(),
            };
            store.create_enrollment_token(&token).await.unwrap();
            let id = HostId::new_random();
            let host = NewHost { id, hostname: format!("h{c}-{h}"), machine_id: "m".into() };
            let cert = CertificateRecord {
                fingerprint: format!("fp-{id}"),
                host_id: id,
                key_sha256: format!("key-{id}"),
                not_before_ms: 0,
                not_after_ms: i64::MAX,
                issued_at_ms: T0,
                reason: "enroll",
            };
            store.enroll_host(&secret, &host, &cert, T0).await.unwrap().unwrap();
            hosts.push((site.customer_id, site.id, id));
        }
    }
    let office = hosts[HOSTS / 2].0;
    let contract: Contract = serde_json::from_value(serde_json::json!({
        "time_zone": "Europe/Berlin",
        "holidays": ["2026-12-24", "2026-12-25", "2026-12-26", "2027-01-01"],
        "levels": {
            "L3": {"response": "1h", "resolution": "24h", "hours": {"kind": "business_hours", "days": ["mon","tue","wed","thu","fri"], "start": "08:00", "end": "18:00"}},
            "L4": {"response": "4h", "resolution": "72h", "hours": {"kind": "business_hours", "days": ["mon","tue","wed","thu","fri"], "start": "08:00", "end": "18:00"}}
        }
    }))
    .unwrap();
    store
        .set_contract(&ContractRow {
            customer_id: office,
            body: serde_json::to_string(&contract).unwrap(),
            updated_at_ms: T0,
            updated_by: "bench".into(),
        })
        .await
        .unwrap();

    let maintenance = Maintenance::default();
    for (customer, _, host) in hosts.iter().step_by(10) {
        let window = MaintenanceWindowRow {
            id: format!("w-{host}"),
            customer_id: *customer,
            customer: String::new(),
            site_id: None,
            site: None,
            host_id: Some(*host),
            hostname: None,
            rules: Vec::new(),
            start_local: "2026-11-01T02:00".into(),
            duration_ms: 3_600_000,
            recurrence: "daily".into(),
            time_zone: "Europe/Berlin".into(),
            until_local: None,
            reason: "nightly backup".into(),
            created_at_ms: T0,
            created_by: "bench".into(),
        };
        store.create_maintenance(&window).await.unwrap();
    }
    maintenance.reload(store.as_ref()).await.unwrap();

    let levels = [FaultLevel::L1, FaultLevel::L2, FaultLevel::L3, FaultLevel::L4];
    let mut batch = Vec::new();
    for n in 0..incidents {
        let (customer_id, site_id, host) = hosts[n % hosts.len()];
        let level = levels[n % 4];
        batch.push(HostEvaluation {
            state: None,
            ops: vec![IncidentOp::Raise {
                fingerprint: Fingerprint {
                    customer_id,
                    site_id,
                    host_id: Some(host),
                    rule: "filesystem.usage".into(),
                    resource: format!("/srv/{n}"),
                },
                level,
                summary: format!("/srv/{n} 96 % used"),
                kind: FindingKind::State,
                parent: None,
                groups: Vec::new(),
                group_host: false,
                detail: None,
            }],
            host_events: Vec::new(),
        });
    }
    let started = Instant::now();
    for chunk in batch.chunks(1000) {
        store.apply_evaluations(chunk, 86_400_000, T0).await.unwrap();
    }
    println!("opened {incidents} incidents on {HOSTS} hosts in {:?}", started.elapsed());

    // The runner lease, held for the whole run, as the collector's sweep holds it.
    let fence = store
        .acquire_lease("runner", "bench", shared.now_ms(), i64::MAX / 4)
        .await
        .expect("lease")
        .expect("free");
    let mut results = Vec::new();
    for (name, advance_ms) in [("first", 0), ("quiet", 1_000), ("warn", 12 * 60_000)] {
        clock.advance_ms(advance_ms);
        // As the runner does: sweeps follow each other while one was full.
        let started = Instant::now();
        let mut sweeps = Vec::new();
        let mut total = vigil_collector::sla::SweepStats::default();
        loop {
            let one = Instant::now();
            let stats =
                vigil_collector::sla::sweep(store.as_ref(), &shared, &maintenance, &[], &fence)
                    .await
                    .unwrap();
            sweeps.push(one.elapsed());
            total.looked_at += stats.looked_at;
            total.warnings += stats.warnings;
            total.escalations += stats.escalations;
            if stats.looked_at < u64::from(vigil_collector::sla::SWEEP_LIMIT) {
                break;
            }
        }
        let took = started.elapsed();
        let longest = sweeps.iter().max().copied().unwrap_or_default();
        println!(
            "{name:<6} {took:>10.2?} in {} sweep(s), longest {longest:>9.2?}; looked at {:>6}, warnings {:>5}, escalations {:>5}",
            sweeps.len(),
            total.looked_at,
            total.warnings,
            total.escalations
        );
        results.push((name, longest));
    }
    let worst = results.iter().map(|(_, t)| *t).max().unwrap_or_default();
    println!(
        "budget 100 ms per sweep over 10 000 open incidents: longest sweep {worst:.2?} ({})",
        if worst.as_millis() <= 100 { "within" } else { "OVER" }
    );
    if let Some(url) = &database {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&mut conn)
            .await
            .expect("drop the bench schema");
    }
}
