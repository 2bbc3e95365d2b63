//! Crash soaks with the real binaries: the collector killed with SIGKILL 20 times while three
//! agents report every second, an agent killed with SIGKILL 100 times, half of them in the
//! middle of a spool append, and three collector replicas over PostgreSQL, one of them killed
//! every 30 s for five minutes under `vigil-loadgen` agents spread across all three. Each ends
//! by comparing every seq the agents made (or had acknowledged) with the collector's receipts:
//! none missing, none twice; the replicas soak also counts incidents and the event ids a
//! webhook received. They take minutes, so they are ignored by the README's test command and
//! run by CI after it (`cargo test -p vigil-e2e --test soak -- --ignored`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vigil_e2e::postgres::TestDatabase;
use vigil_e2e::webhook::Webhook;
use vigil_e2e::{Agent, Collector, bin, first_reported_host, write_secret};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: 20 collector crashes take about a minute"]
async fn twenty_collector_crashes_under_three_agents_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut collector = Collector::start(&data, None, &[]);
    let ports = (collector.grpc, collector.http);
    let mut agents = Vec::new();
    for name in ["a", "b", "c"] {
        agents.push(Agent::enroll_and_start(&collector, &tmp.path().join(name), &[]).await);
    }
    first_reported_host(&collector, Duration::from_secs(30)).await;
    for round in 0..20u64 {
        // Kill at a different point of the agents' second each time.
        tokio::time::sleep(Duration::from_millis(700 + (round * 137) % 900)).await;
        collector.proc.kill();
        collector = Collector::start(&data, Some(ports), &[]);
    }
    // Let every agent drain, then stop them cleanly and compare.
    let deadline = Instant::now() + Duration::from_secs(60);
    while agents.iter().any(|a| a.spooled() > 0) {
        assert!(Instant::now() < deadline, "spools did not drain:\n{}", collector.proc.log_text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for agent in &mut agents {
        assert!(agent.proc.terminate().success(), "{}", agent.proc.log_text());
    }
    for agent in &agents {
        let last = agent.last_seq();
        let got = collector.receipts_once(&agent.host_id(), &agent.instance()).await;
        assert_eq!(got, (1..=last).collect(), "agent {} lost reports", agent.host_id());
        assert!(last >= 15, "the agent kept reporting through the crashes ({last} reports)");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: 100 agent crashes take about two minutes"]
async fn a_hundred_agent_crashes_half_in_a_spool_write_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let collector = Collector::start(&tmp.path().join("data"), None, &[]);
    let state = tmp.path().join("agent");
    let mut agent = Agent::enroll_and_start(&collector, &state, &[]).await;
    let host = first_reported_host(&collector, Duration::from_secs(30)).await;
    let host = host["id"].as_str().unwrap().to_owned();
    let instance = agent.instance();
    let mut torn = 0;
    for round in 0..100u64 {
        if round % 2 == 0 {
            // In the middle of an append: the test hook pauses there and says so.
            agent.proc.kill();
            agent = start_paused(&collector, &state);
            let deadline = Instant::now() + Duration::from_secs(20);
            while !agent.proc.log_text().contains("spool write paused mid-record") {
                assert!(Instant::now() < deadline, "no append began\n{}", agent.proc.log_text());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            agent.proc.kill();
            torn += 1;
            agent = Agent::start(&collector.grpc_url(), &state, &[]);
        } else {
            // Anywhere else: after a varying share of a report interval.
            tokio::time::sleep(Duration::from_millis(150 + (round * 211) % 1200)).await;
            agent.proc.kill();
            agent = Agent::start(&collector.grpc_url(), &state, &[]);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while agent.spooled() > 0 || !agent.proc.log_text().contains("connected to collector") {
        assert!(Instant::now() < deadline, "the spool did not drain\n{}", agent.proc.log_text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(agent.proc.terminate().success(), "{}", agent.proc.log_text());
    assert_eq!(agent.instance(), instance, "crashes never cost the instance");
    let last = agent.last_seq();
    let got = collector.receipts_once(&host, &instance).await;
    assert_eq!(got, (1..=last).collect(), "every seq the agent made arrived once");
    assert_eq!(torn, 50);
}

/// An agent whose spool appends pause half-written (the crash test hook).
fn start_paused(collector: &Collector, state: &std::path::Path) -> Agent {
    let pause = [("VIGIL_TEST_SPOOL_WRITE_PAUSE_MS", "5000")];
    Agent::start_with_env(&collector.grpc_url(), state, &[], &pause)
}

/// The replicas' config: a webhook hears of every incident at every tier, the runner lease
/// lasts 2 s, enrolment admits the whole load generator at once, and silence is judged only
/// after a day (the agents stop together at the end).
fn replicas_config(dir: &Path, hook: &Webhook, ca_from: Option<&Path>) -> String {
    let secret = dir.join("hook.secret");
    write_secret(&secret, "a-webhook-secret-of-32-characters");
    let tls = ca_from.map_or(String::new(), |ca| {
        format!(
            "[tls]\nca_cert = \"{}\"\nca_key = \"{}\"\n\n",
            ca.join("tls/ca.crt").display(),
            ca.join("tls/ca.key").display()
        )
    });
    format!(
        "{tls}[enrollment]\nattempts_per_minute = 10000\n\n[ingest]\nmin_silence = \"1day\"\n\n\
         [incidents]\nsweep_every = \"500ms\"\nstart_grace = \"1ms\"\n\n\
         [sla]\nsweep_every = \"200ms\"\nlease_ttl = \"2s\"\n\n\
         [notify]\ndefault_receivers = [\"hook\"]\n\n\
         [notify.receivers.hook]\nwebhook = \"{}\"\nsecret_file = \"{}\"\n\n\
         [rules.\"clock.unsynchronised\"]\nenabled = false\n",
        hook.url,
        secret.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: three replicas, one killed every 30 s for five minutes"]
async fn three_replicas_one_killed_every_30s_lose_nothing_and_notify_once() {
    let Some(db) = TestDatabase::create("three_replicas_one_killed_every_30s").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let hook = Webhook::start(200).await;
    let database = ["--database", db.url.as_str()];
    let first = dir.path().join("a");
    let configs = [
        replicas_config(dir.path(), &hook, None),
        replicas_config(dir.path(), &hook, Some(&first)),
        replicas_config(dir.path(), &hook, Some(&first)),
    ];
    let a = Collector::start_with_config(&first, None, &configs[0], &database);
    let b = Collector::start_replica(&a, &dir.path().join("b"), &configs[1], &database);
    let c = Collector::start_replica(&a, &dir.path().join("c"), &configs[2], &database);
    let mut replicas = [a, b, c];
    let ports: Vec<_> = replicas.iter().map(|r| (r.grpc, r.http)).collect();

    // Response due 30 s after opening, resolution 90 s: each full filesystem warns, escalates
    // to tier 2, warns again and escalates to tier 3 within the soak.
    let (agents, faulty) = (60, 6);
    let token = replicas[0].enrollment_token("acme", "dc1", agents, "1h").await;
    let terms = json!({ "response": "30s", "resolution": "90s", "hours": { "kind": "always" } });
    let (status, body) = replicas[0]
        .put(
            "/api/v1/customers/acme/contract",
            json!({ "time_zone": "UTC", "levels": { "L2": terms } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let acks = dir.path().join("acks.jsonl");
    let loadgen_log = dir.path().join("loadgen.log");
    let mut loadgen = Command::new(bin("vigil-loadgen"));
    for r in &replicas {
        loadgen.args(["--collector", &r.grpc_url()]);
    }
    let mut loadgen = loadgen
        .args(["--ca-sha256", &replicas[0].ca_sha256, "--token", &token])
        .args(["--agents", &agents.to_string(), "--faulty", &faulty.to_string()])
        .args(["--rate", "30", "--seconds", "300", "--acks"])
        .arg(&acks)
        .stdout(std::fs::File::create(&loadgen_log).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();

    // Every 30 s one replica, in turn, is SIGKILLed and started again on its ports.
    let started = Instant::now();
    for round in 0..10 {
        let due = started + Duration::from_secs(30 * (round as u64 + 1));
        tokio::time::sleep(due.saturating_duration_since(Instant::now())).await;
        let n = round % 3;
        replicas[n].proc.kill();
        replicas[n] = Collector::start_with_config(
            &replicas[n].data_dir.clone(),
            Some(ports[n]),
            &configs[n],
            &database,
        );
    }
    let status = tokio::task::block_in_place(|| loadgen.wait()).unwrap();
    let summary = std::fs::read_to_string(&loadgen_log).unwrap();
    println!("{summary}");
    assert!(status.success(), "the load generator failed: {summary}");

    // Every acknowledged seq is stored once, and nothing is stored past it.
    let c = &replicas[0];
    let lines = std::fs::read_to_string(&acks).unwrap();
    let streams: Vec<Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(streams.len(), agents as usize);
    for s in &streams {
        let (host, instance) = (s["host_id"].as_str().unwrap(), s["instance"].as_str().unwrap());
        let acked = s["acked"].as_u64().unwrap();
        assert!(acked >= 100, "{host} kept reporting through the kills: {acked} acknowledged");
        let stored = c.receipts_once(host, instance).await;
        assert_eq!(stored, (1..=acked).collect(), "{host}: stored against acknowledged");
    }

    // One incident per full filesystem, each escalated to tier 3 once.
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM incidents WHERE rule = 'filesystem.full'").await,
        faulty as i64
    );
    assert_eq!(
        db.scalar("SELECT COUNT(DISTINCT host_id) FROM incidents WHERE rule = 'filesystem.full'")
            .await,
        faulty as i64
    );
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM incidents WHERE rule <> 'filesystem.full'").await,
        0
    );
    c.wait_for("every delivery to be made", Duration::from_secs(60), async |_| {
        let pending = db.scalar("SELECT COUNT(*) FROM deliveries WHERE state <> 'delivered'").await;
        let tier3 = db.scalar("SELECT COUNT(*) FROM incidents WHERE tier = 3").await;
        (pending == 0 && tier3 == faulty as i64).then_some(())
    })
    .await;
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM deliveries").await,
        db.scalar("SELECT COUNT(DISTINCT event_id) FROM deliveries").await,
        "one delivery per event and receiver"
    );

    // What the webhook heard: per incident, one event id for each of opened, the response
    // warning, the escalation to tier 2, the resolution warning and the escalation to tier 3,
    // however often an event was sent again by a replica that took the lease over.
    let mut heard: BTreeMap<(String, String, u64), BTreeSet<String>> = BTreeMap::new();
    let mut sent = 0;
    for request in hook.requests() {
        let event = request.json();
        let incident = &event["incident"];
        let key = (
            incident["number"].as_str().unwrap().to_owned(),
            event["kind"].as_str().unwrap().to_owned(),
            incident["tier"].as_u64().unwrap(),
        );
        heard.entry(key).or_default().insert(event["event_id"].as_str().unwrap().to_owned());
        sent += 1;
    }
    let incidents: BTreeSet<&String> = heard.keys().map(|k| &k.0).collect();
    assert_eq!(incidents.len(), faulty as usize, "{heard:?}");
    for number in incidents {
        let kinds: Vec<(&str, u64)> = heard
            .iter()
            .filter(|(k, _)| &k.0 == number)
            .map(|(k, _)| (k.1.as_str(), k.2))
            .collect();
        let mut expected =
            vec![("escalated", 2), ("escalated", 3), ("opened", 1), ("warning", 1), ("warning", 2)];
        expected.sort();
        assert_eq!(kinds, expected, "{number}: {heard:?}");
    }
    for (key, ids) in &heard {
        assert_eq!(ids.len(), 1, "{key:?} was told under several event ids: {ids:?}");
    }
    println!("webhook: {sent} requests, {} events", heard.len());
}
