//! The collector on the PostgreSQL store, with the real binaries and the real PostgreSQL of
//! `VIGIL_TEST_DATABASE_URL`: an agent's reports land in the database (not in a SQLite file),
//! survive the collector being killed, and the same agent keeps reporting to it afterwards;
//! wrong, refused and unreachable databases are told apart. Each test works in a database of
//! its own, dropped at the end.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use vigil_e2e::pgbouncer::Pgbouncer;
use vigil_e2e::postgres::TestDatabase;
use vigil_e2e::{Agent, Collector, first_reported_host, run};

fn collector_cmd(data_dir: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--data-dir", data_dir.to_str().unwrap()];
    all.extend_from_slice(args);
    run("vigil-collector", &all)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_land_in_postgresql_and_survive_the_collector_being_killed() {
    let Some(db) = TestDatabase::create("reports_land_in_postgresql").await else { return };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut collector = Collector::start(&data, None, &["--database", &db.url]);
    let ports = (collector.grpc, collector.http);
    let mut agent = Agent::enroll_and_start(&collector, &tmp.path().join("agent"), &[]).await;
    let host = first_reported_host(&collector, Duration::from_secs(30)).await;
    let host = host["id"].as_str().unwrap().to_owned();
    let instance = agent.instance();
    collector
        .wait_for("three reports", Duration::from_secs(30), async |c| {
            (c.receipts_once(&host, &instance).await.len() >= 3).then_some(())
        })
        .await;
    assert!(!data.join("vigil.db").exists(), "with store.url set, no SQLite store is made");
    assert!(db.count("report_receipts").await >= 3);
    assert_eq!(db.count("hosts").await, 1);

    collector.proc.kill();
    let stored = db.count("report_receipts").await;
    let mut collector = Collector::start(&data, Some(ports), &["--database", &db.url]);
    // `receipts_once` also asserts that no seq is held twice.
    let before = collector.receipts_once(&host, &instance).await;
    assert!(before.len() as i64 >= stored, "every stored receipt is read back after the kill");
    // The same agent, with its certificate, goes on reporting to the restarted collector.
    let last = *before.last().unwrap();
    collector
        .wait_for("a report after the restart", Duration::from_secs(30), async |c| {
            (c.receipts_once(&host, &instance).await.last() > Some(&last)).then_some(())
        })
        .await;
    let seqs: Vec<u64> = collector.receipts_once(&host, &instance).await.into_iter().collect();
    assert_eq!(seqs, (1..=*seqs.last().unwrap()).collect::<Vec<_>>(), "no seq is missing");
    agent.proc.terminate();
    collector.proc.terminate();
}

/// A TCP proxy on a loopback port in front of the test database that the test can cut: every
/// open connection is dropped and new ones are refused until it is restored. The database
/// "goes away" for the collector without stopping the shared PostgreSQL.
struct CuttableProxy {
    port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    connections: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl CuttableProxy {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let connections = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (flag, list) = (cut.clone(), connections.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else { return };
                if flag.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped: the connection is refused
                }
                list.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }));
            }
        });
        Self { port, cut, connections }
    }

    fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The database becomes unreachable under a running collector and comes back: meanwhile
/// `/readyz` says the collector is not ready and no report is acknowledged (the agent keeps
/// them spooled); afterwards every report is stored once and none is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_holds_acknowledgements_and_loses_nothing() {
    let Some(db) = TestDatabase::create("a_database_outage").await else { return };
    let upstream = {
        let (host, port) = db.server();
        tokio::net::lookup_host((host.as_str(), port)).await.unwrap().next().unwrap()
    };
    let proxy = CuttableProxy::start(upstream).await;
    let (_, path) = db.url.rsplit_once('/').unwrap();
    let user = db.url.split("://").nth(1).unwrap().split('@').next().unwrap();
    let via_proxy = format!("postgres://{user}@127.0.0.1:{}/{path}", proxy.port);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let collector = Collector::start(&data, None, &["--database", &via_proxy]);
    let agent = Agent::enroll_and_start(&collector, &tmp.path().join("agent"), &[]).await;
    let host = first_reported_host(&collector, Duration::from_secs(30)).await;
    let host = host["id"].as_str().unwrap().to_owned();
    let instance = agent.instance();
    collector
        .wait_for("three reports", Duration::from_secs(30), async |c| {
            (c.receipts_once(&host, &instance).await.len() >= 3).then_some(())
        })
        .await;

    proxy.cut();
    let cut_at = std::time::Instant::now();
    let acked_at_cut = db.count("report_receipts").await;
    collector
        .wait_for("/readyz to say not ready", Duration::from_secs(30), async |c| {
            (c.get_status("/readyz").await.0 == 503).then_some(())
        })
        .await;
    // The agent reports every second: with nothing acknowledged, its spool grows.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while agent.spooled() < 3 {
        assert!(std::time::Instant::now() < deadline, "the agent's spool did not grow");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let outage = cut_at.elapsed();
    assert!(db.count("report_receipts").await <= acked_at_cut + 1, "nothing stored while cut");

    proxy.restore();
    let restored_at = std::time::Instant::now();
    collector
        .wait_for("the spool to drain", Duration::from_secs(60), async |c| {
            (c.get_status("/readyz").await.0 == 200 && agent.spooled() == 0).then_some(())
        })
        .await;
    eprintln!(
        "database cut for {:.1} s; acknowledgements resumed {:.1} s after it came back",
        outage.as_secs_f64(),
        restored_at.elapsed().as_secs_f64()
    );
    let seqs: Vec<u64> = collector.receipts_once(&host, &instance).await.into_iter().collect();
    assert_eq!(seqs, (1..=*seqs.last().unwrap()).collect::<Vec<_>>(), "no seq is missing");
    drop(agent);
}

/// Runs `program args`, failing the test with its stderr when it fails.
fn run_tool(program: &str, args: &[&str]) {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} could not run (package postgresql-client): {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", stderr(&out));
}

/// The recipe of docs/scale-out.md: `pg_dump --format=custom` while the collector ingests,
/// `pg_restore` into a new database, and a collector on it holds what was dumped and takes
/// the same agent's reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_dump_and_pg_restore_carry_the_store_to_a_new_database() {
    let Some(source) = TestDatabase::create("pg_dump_and_pg_restore").await else { return };
    let Some(target) = TestDatabase::create("pg_dump_and_pg_restore").await else { return };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let collector = Collector::start(&data, None, &["--database", &source.url]);
    let ports = (collector.grpc, collector.http);
    let agent = Agent::enroll_and_start(&collector, &tmp.path().join("agent"), &[]).await;
    let host = first_reported_host(&collector, Duration::from_secs(30)).await;
    let host = host["id"].as_str().unwrap().to_owned();
    let instance = agent.instance();
    collector
        .wait_for("three reports", Duration::from_secs(30), async |c| {
            (c.receipts_once(&host, &instance).await.len() >= 3).then_some(())
        })
        .await;

    // Online: the agent keeps reporting while the dump runs.
    let dump = tmp.path().join("vigil.pgdump");
    let dump_arg = dump.to_str().unwrap();
    run_tool("pg_dump", &["--format=custom", "--file", dump_arg, &source.url]);
    let dumped = source.count("report_receipts").await;
    run_tool("pg_restore", &["--no-owner", "--dbname", &target.url, dump_arg]);
    for table in ["hosts", "certificates", "api_tokens", "incidents", "outbox", "leases"] {
        assert_eq!(target.count(table).await, source.count(table).await, "{table}");
    }
    let restored = target.count("report_receipts").await;
    assert!(restored >= 3 && restored <= dumped, "{restored} receipts restored of {dumped}");

    // The collector moves to the restored database; the same agent keeps reporting to it.
    drop(collector);
    let collector = Collector::start(&data, Some(ports), &["--database", &target.url]);
    let held = collector.receipts_once(&host, &instance).await;
    let last = *held.last().unwrap();
    collector
        .wait_for("a report to the restored database", Duration::from_secs(30), async |c| {
            (c.receipts_once(&host, &instance).await.last() > Some(&last)).then_some(())
        })
        .await;
    drop(agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_refused_and_unreachable_databases_are_told_apart() {
    let Some(db) = TestDatabase::create("wrong_refused_and_unreachable").await else { return };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");

    // Not a PostgreSQL URL: a configuration error naming the key, exit 2.
    let out = collector_cmd(&data, &["--database", "mysql://root@127.0.0.1/vigil", "check-config"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("store.url"), "{}", stderr(&out));

    // A database that does not exist: refused for good, exit 2 at once, saying why.
    let (base, _) = db.url.rsplit_once('/').unwrap();
    let missing = format!("{base}/vigil_no_such_database");
    let out = collector_cmd(&data, &["--database", &missing]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("refused the connection"), "{}", stderr(&out));
    assert!(stderr(&out).contains("vigil_no_such_database"), "{}", stderr(&out));

    // Nothing listening: the collector waits and retries, saying so, instead of exiting.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let unreachable = format!("postgres://postgres:secret@127.0.0.1:{port}/vigil");
    let mut child = std::process::Command::new(vigil_e2e::bin("vigil-collector"))
        .args(["--data-dir", data.to_str().unwrap(), "--database", &unreachable])
        .args(["--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr_pipe = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr_pipe).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut retries = Vec::new();
    while retries.len() < 2 && std::time::Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200))
            && line.contains("does not answer; retrying")
        {
            retries.push(line);
        }
    }
    assert_eq!(child.try_wait().unwrap(), None, "the collector waits for its database");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(retries.len(), 2, "two logged retries within 20 s");
    assert!(!retries[0].contains("secret"), "the password is never logged: {}", retries[0]);

    // Backup and restore are the embedded store's; PostgreSQL has pg_dump.
    let out = collector_cmd(&data, &["--database", &db.url, "backup", "--to", "x.backup"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("pg_dump"), "{}", stderr(&out));
}

/// Two collectors through one transaction-pooling pgbouncer with two server connections, far
/// fewer than the collectors pool, so their transactions and prepared statements share server
/// connections: every report of two agents (one on each collector) is stored once, an
/// incident opens from a degraded array, and a collector killed and restarted through the
/// pooler (migrating again under its lock) carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_collectors_through_a_transaction_pooling_pgbouncer_store_every_report_once() {
    use vigil_e2e::mdstat::{self, DEGRADED};
    let Some(db) = TestDatabase::create("through_a_transaction_pooling_pgbouncer").await else {
        return;
    };
    let (host, port) = db.server();
    let Some(bouncer) = Pgbouncer::start((&host, port), 2, 200) else { return };
    let url = bouncer.url(&db.name);
    let tmp = tempfile::tempdir().unwrap();
    let config = "[enrollment]\nattempts_per_minute = 100\n\n[ingest]\nmin_silence = \"1day\"\n\n\
                  [incidents]\nsweep_every = \"100ms\"\nstart_grace = \"1ms\"\n\n\
                  [rules.\"clock.unsynchronised\"]\nenabled = false\n";
    let database = ["--database", url.as_str()];
    let mut a = Collector::start_with_config(&tmp.path().join("a"), None, config, &database);
    let b = Collector::start_replica(&a, &tmp.path().join("b"), config, &database);
    let (agent_a, root) = mdstat::healthy_agent(&a, tmp.path(), "on-a").await;
    let (agent_b, _) = mdstat::healthy_agent(&b, tmp.path(), "on-b").await;
    let hosts: Vec<(String, String)> =
        [&agent_a, &agent_b].into_iter().map(|agent| (agent.host_id(), agent.instance())).collect();
    mdstat::set(&root, DEGRADED);
    b.wait_for("an incident from the degraded array", Duration::from_secs(60), async |c| {
        let incidents = c.get("/api/v1/incidents").await;
        let open = incidents["incidents"].as_array()?.iter().any(|i| {
            i["rule"].as_str().is_some_and(|r| r.starts_with("raid.")) && i["state"] == "open"
        });
        open.then_some(())
    })
    .await;
    for (host, instance) in &hosts {
        b.wait_for("five reports of each agent", Duration::from_secs(30), async |c| {
            (c.receipts_once(host, instance).await.len() >= 5).then_some(())
        })
        .await;
    }

    // SIGKILL one collector; restarted on its ports through the pooler, it takes its agent back.
    let ports = (a.grpc, a.http);
    a.proc.kill();
    let a = Collector::start_with_config(&tmp.path().join("a"), Some(ports), config, &database);
    for (host, instance) in &hosts {
        let last = *b.receipts_once(host, instance).await.last().unwrap();
        a.wait_for("reports after the restart", Duration::from_secs(30), async |c| {
            (c.receipts_once(host, instance).await.last() >= Some(&(last + 3))).then_some(())
        })
        .await;
        // `receipts_once` asserts no seq is held twice; none is missing either.
        let seqs: Vec<u64> = a.receipts_once(host, instance).await.into_iter().collect();
        assert_eq!(seqs, (1..=*seqs.last().unwrap()).collect::<Vec<_>>(), "no seq is missing");
    }
    let incidents = db.scalar("SELECT COUNT(*) FROM incidents WHERE rule LIKE 'raid.%'").await;
    assert_eq!(incidents, 1, "one incident for the one degraded array");
    for log in [a.proc.log_text(), b.proc.log_text()] {
        assert!(!log.contains("prepared statement"), "{log}");
        assert!(!log.contains(" ERROR "), "{log}");
    }
    let log = bouncer.log_text();
    assert!(!log.contains("ERROR"), "pgbouncer:\n{log}");
}

/// A transaction-pooling pgbouncer that does not track prepared statements (as before 1.21)
/// breaks every prepared statement: the collector says so and exits 2 instead of waiting for a
/// database that answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooler_that_loses_prepared_statements_is_named_as_the_setting_to_fix() {
    let Some(db) = TestDatabase::create("a_pooler_that_loses_prepared_statements").await else {
        return;
    };
    let (host, port) = db.server();
    let Some(bouncer) = Pgbouncer::start((&host, port), 1, 0) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = collector_cmd(&tmp.path().join("data"), &["--database", &bouncer.url(&db.name)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("max_prepared_statements"), "{}", stderr(&out));
}
