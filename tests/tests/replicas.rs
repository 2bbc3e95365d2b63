//! Several collectors over one PostgreSQL database, with the real binaries and the real
//! PostgreSQL of `VIGIL_TEST_DATABASE_URL`: the runner lease moves to another replica when its
//! holder stops, and a holder that was paused past its lease (SIGSTOP) has its writes refused
//! by the fence when it resumes, so a receiver never hears of one event from two runners'
//! bookkeeping and the new holder's record stands.

use std::path::Path;
use std::time::Duration;

use vigil_e2e::mdstat::{self, DEGRADED};
use vigil_e2e::postgres::TestDatabase;
use vigil_e2e::webhook::Webhook;
use vigil_e2e::{Agent, Collector};

const SECRET: &str = "a-webhook-secret-of-32-characters";

/// One webhook told of every incident; the runner lease lasts 2 s and is renewed every 200 ms.
fn config(dir: &Path, hook: &Webhook) -> String {
    let secret = dir.join("hook.secret");
    vigil_e2e::write_secret(&secret, SECRET);
    format!(
        "[enrollment]\nattempts_per_minute = 100\n\n[ingest]\nmin_silence = \"1day\"\n\n\
         [incidents]\nsweep_every = \"100ms\"\nstart_grace = \"1ms\"\n\n\
         [sla]\nsweep_every = \"200ms\"\nlease_ttl = \"2s\"\n\n\
         [notify]\ndefault_receivers = [\"hook\"]\n\n\
         [notify.receivers.hook]\nwebhook = \"{}\"\nsecret_file = \"{}\"\n\n\
         [rules.\"clock.unsynchronised\"]\nenabled = false\n",
        hook.url,
        secret.display()
    )
}

/// Whether `/metrics` says this replica holds the runner lease.
async fn holds_lease(c: &Collector) -> bool {
    c.get_text("/metrics").await.lines().any(|l| l.trim() == "vigil_runner_lease_held 1")
}

/// The event ids the webhook received, in arrival order (answered or not).
fn event_ids(hook: &Webhook) -> Vec<String> {
    hook.requests()
        .iter()
        .map(|r| r.header("x-vigil-event-id").expect("event id header").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_holder_paused_past_its_lease_has_its_writes_refused_by_the_fence() {
    let Some(db) = TestDatabase::create("a_lease_holder_paused_past_its_lease").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let hook = Webhook::start(200).await;
    let config = config(dir.path(), &hook);
    let database = ["--database", db.url.as_str()];
    let a = Collector::start_with_config(&dir.path().join("a"), None, &config, &database);
    a.wait_for("replica A to hold the runner lease", Duration::from_secs(30), async |c| {
        holds_lease(c).await.then_some(())
    })
    .await;
    let b = Collector::start_replica(&a, &dir.path().join("b"), &config, &database);
    b.wait_for("replica B to stand by", Duration::from_secs(30), async |c| {
        let tasks = c.get("/api/v1/tasks").await;
        let sla = tasks["tasks"].as_array()?.iter().find(|t| t["name"] == "sla_sweep")?.clone();
        sla["last_summary"].as_str()?.contains("standing by").then_some(())
    })
    .await;
    assert!(!holds_lease(&b).await, "one holder at a time");

    // An incident opens through A; A's delivery of its event reaches the webhook, whose answer
    // is held: A is caught between sending and recording the outcome.
    let held = hook.hold_next();
    let (_agent, root): (Agent, _) = mdstat::healthy_agent(&a, dir.path(), "h").await;
    mdstat::set(&root, DEGRADED);
    b.wait_for("A's delivery to reach the webhook", Duration::from_secs(60), async |_| {
        (!hook.requests().is_empty()).then_some(())
    })
    .await;
    let event = event_ids(&hook)[0].clone();

    // A stops where it is, past its lease; B takes the lease over and delivers the event A had
    // not recorded, with the same event id.
    a.proc.pause();
    b.wait_for("replica B to take the runner lease", Duration::from_secs(30), async |c| {
        holds_lease(c).await.then_some(())
    })
    .await;
    let recorded = format!(
        "SELECT COUNT(*) FROM deliveries WHERE event_id = '{event}' AND state = 'delivered'"
    );
    b.wait_for("replica B to deliver the event", Duration::from_secs(30), async |_| {
        (db.scalar(&recorded).await == 1).then_some(())
    })
    .await;
    let attempts = format!("SELECT attempts FROM deliveries WHERE event_id = '{event}'");
    assert_eq!(db.scalar(&attempts).await, 1, "B's one attempt is recorded");
    assert!(event_ids(&hook).iter().filter(|e| **e == event).count() >= 2, "B sent it again");

    // A resumes and gets its answer: its record of the outcome carries the stale fence and is
    // refused, so B's record stands.
    a.proc.resume();
    drop(held);
    a.wait_for("A's write to be refused by the fence", Duration::from_secs(30), async |c| {
        c.proc
            .log_text()
            .contains("lost the runner lease during notification delivery")
            .then_some(())
    })
    .await;
    a.wait_for("replica A to stand by", Duration::from_secs(30), async |c| {
        (!holds_lease(c).await).then_some(())
    })
    .await;
    assert_eq!(db.scalar(&attempts).await, 1, "A's outcome was not recorded over B's");
    assert_eq!(db.scalar(&recorded).await, 1);
    assert!(holds_lease(&b).await, "B keeps the lease");
    let deliveries = db.scalar("SELECT COUNT(*) FROM deliveries").await;
    let distinct = db.scalar("SELECT COUNT(DISTINCT event_id) FROM deliveries").await;
    assert_eq!(deliveries, distinct, "one delivery per event and receiver");
    let log = a.proc.log_text();
    assert!(log.contains("another collector holds the runner lease; standing by"), "{log}");
}

/// Three replicas started at the same moment on an empty database: each waits for the
/// migration lock in turn, one creates the schema, the others find it made, and all three
/// serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_starting_together_migrate_once() {
    let Some(db) = TestDatabase::create("three_replicas_starting_together").await else { return };
    let dir = tempfile::tempdir().unwrap();
    let database = ["--database", db.url.as_str()];
    let replicas: Vec<Collector> = std::thread::scope(|scope| {
        let started: Vec<_> = ["a", "b", "c"]
            .map(|name| {
                let data = dir.path().join(name);
                scope.spawn(move || Collector::start(&data, None, &database))
            })
            .into_iter()
            .collect();
        started.into_iter().map(|s| s.join().expect("a replica started")).collect()
    });
    for replica in &replicas {
        let (status, body) = replica.get_status("/readyz").await;
        assert_eq!(status, 200, "{body}");
    }
    let migrations = std::fs::read_dir(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../collector/src/store/migrations/postgres"),
    )
    .unwrap()
    .count() as i64;
    assert_eq!(db.count("_sqlx_migrations").await, migrations, "each migration applied once");
    assert_eq!(db.scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE NOT success").await, 0);
}
