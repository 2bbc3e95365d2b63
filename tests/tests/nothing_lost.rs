//! "Nothing acknowledged is ever lost": a collector killed and restarted under a running agent
//! loses no report (every seq of the instance has a receipt, the outage's reports arrive as
//! replays), and an agent whose state directory is wiped (its certificate kept) comes back as a
//! new instance of the same host whose reports are stored too.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use vigil_e2e::{Agent, Collector, copy_tree, first_reported_host};

async fn receipts(collector: &Collector, host: &str, instance: &str) -> Vec<Value> {
    collector.get(&format!("/api/v1/hosts/{host}/receipts?instance={instance}&limit=100000")).await
        ["receipts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_restart_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut collector = Collector::start(&data, None, &[]);
    let ports = (collector.grpc, collector.http);
    let mut agent = Agent::enroll_and_start(&collector, &tmp.path().join("agent"), &[]).await;
    let host = first_reported_host(&collector, Duration::from_secs(30)).await;
    let host = host["id"].as_str().unwrap().to_owned();

    // Crash the collector; the agent keeps collecting into its spool.
    collector.proc.kill();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    // The seq is persisted just before its report reaches the spool: count spooled reports.
    while agent.spooled() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "agent stopped collecting while the collector was down\n{}",
            agent.proc.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let collector = Collector::start(&data, Some(ports), &[]);
    let instance = agent.instance();
    // Wait until the agent has caught up.
    collector
        .wait_for("the spool to drain", Duration::from_secs(30), async |_| {
            (agent.spooled() == 0).then_some(())
        })
        .await;
    let status = agent.proc.terminate();
    assert!(status.success(), "{}", agent.proc.log_text());
    let last = agent.last_seq();

    let got = receipts(&collector, &host, &instance).await;
    let seqs: BTreeSet<u64> = got.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    let expected: BTreeSet<u64> = (1..=last).collect();
    assert_eq!(seqs, expected, "every seq 1..={last} must have exactly one receipt");
    assert_eq!(got.len() as u64, last, "no duplicate receipts");
    assert!(got.iter().any(|r| r["replayed"] == true), "reports from the outage arrive as replays");
    assert_eq!(agent.spooled(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_state_is_a_new_instance_of_the_same_host() {
    let tmp = tempfile::tempdir().unwrap();
    let collector = Collector::start(&tmp.path().join("data"), None, &[]);
    let state = tmp.path().join("agent");
    let mut agent = Agent::enroll_and_start(&collector, &state, &[]).await;
    let host = first_reported_host(&collector, Duration::from_secs(30)).await;
    let host = host["id"].as_str().unwrap().to_owned();
    let first_instance = agent.instance();
    assert!(agent.proc.terminate().success());
    let first_last = agent.last_seq();

    // Instance, sequence and spool gone (a restored or rebuilt state directory); the
    // host's identity (its certificate) kept.
    for entry in std::fs::read_dir(&state).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n != "tls") {
            if path.is_dir() {
                std::fs::remove_dir_all(&path).unwrap();
            } else {
                std::fs::remove_file(&path).unwrap();
            }
        }
    }
    let mut agent = Agent::start(&collector.grpc_url(), &state, &[]);
    let second_instance = collector
        .wait_for("the new instance's reports", Duration::from_secs(30), async |c| {
            let detail = c.get(&format!("/api/v1/hosts/{host}")).await;
            let instances = detail["instances"].as_array().cloned().unwrap_or_default();
            (instances.len() == 2).then(|| instances[1]["instance"].as_str().unwrap().to_owned())
        })
        .await;
    assert_ne!(second_instance, first_instance);
    assert_eq!(second_instance, agent.instance());
    assert!(agent.proc.terminate().success());

    assert_eq!(collector.hosts().await.len(), 1, "same machine, same host");
    assert_eq!(receipts(&collector, &host, &first_instance).await.len() as u64, first_last);
    let second = receipts(&collector, &host, &second_instance).await;
    assert_eq!(second.len() as u64, agent.last_seq());
    assert_eq!(second[0]["seq"], 1, "a new instance numbers from 1 and nothing is dropped");
    let detail = collector.get(&format!("/api/v1/hosts/{host}")).await;
    let events = detail["events"].as_array().unwrap();
    assert!(
        events.iter().all(|e| e["kind"] != "cloned_identity"),
        "a replacement is not a clone: {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_live_instances_are_a_cloned_identity() {
    let tmp = tempfile::tempdir().unwrap();
    let collector = Collector::start(&tmp.path().join("data"), None, &[]);
    // A second machine made from a copy of the first one's identity (a cloned VM): both
    // report as one host with different instances.
    let a = Agent::enroll_and_start(&collector, &tmp.path().join("a"), &[]).await;
    let host = first_reported_host(&collector, Duration::from_secs(30)).await;
    let host = host["id"].as_str().unwrap().to_owned();
    copy_tree(&tmp.path().join("a/tls"), &tmp.path().join("b/tls"));
    let b = Agent::start(&collector.grpc_url(), &tmp.path().join("b"), &[]);
    let event = collector
        .wait_for("a cloned_identity event", Duration::from_secs(30), async |c| {
            let detail = c.get(&format!("/api/v1/hosts/{host}")).await;
            detail["events"]
                .as_array()
                .and_then(|e| e.iter().find(|e| e["kind"] == "cloned_identity").cloned())
        })
        .await;
    let detail = event["detail"].as_str().unwrap();
    assert!(detail.contains(&a.instance()) && detail.contains(&b.instance()), "{detail}");
    assert_eq!(collector.hosts().await.len(), 1);
    let metrics = collector.get_text("/metrics").await;
    assert!(metrics.contains("vigil_cloned_identity_total 1"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_moves_to_the_next_collector_with_no_gap_and_no_duplicate() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // Two replicas over one store.
    let mut first = Collector::start(&data, None, &[]);
    let second = Collector::start(&data, None, &[]);
    let state = tmp.path().join("agent");
    let token = first.enrollment_token("acme", "main", 1, "1h").await;
    assert!(Agent::enroll(&first, &state, &token).status.success());
    let both = format!("{},{}", first.grpc_url(), second.grpc_url());
    let mut agent = Agent::start(&both, &state, &[]);
    let host = first_reported_host(&first, Duration::from_secs(30)).await;
    let host = host["id"].as_str().unwrap().to_owned();
    let instance = agent.instance();

    first.proc.kill();
    let after_kill = agent.last_seq();
    second
        .wait_for("reports through the second collector", Duration::from_secs(30), async |c| {
            c.receipt_seqs(&host, &instance).await.contains(&(after_kill + 3)).then_some(())
        })
        .await;
    assert!(agent.proc.terminate().success(), "{}", agent.proc.log_text());
    let last = agent.last_seq();
    let got = receipts(&second, &host, &instance).await;
    let seqs: BTreeSet<u64> = got.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=last).collect(), "no gap across the failover");
    assert_eq!(got.len() as u64, last, "no duplicate across the failover");
    let log = agent.proc.log_text();
    assert!(log.contains(&format!("connected to collector {}", second.grpc_url())), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_report_after_a_start_is_live() {
    let tmp = tempfile::tempdir().unwrap();
    let collector = Collector::start(&tmp.path().join("data"), None, &[]);
    let state = tmp.path().join("agent");
    let mut agent = Agent::enroll_and_start(&collector, &state, &[]).await;
    let host = first_reported_host(&collector, Duration::from_secs(30)).await;
    let host = host["id"].as_str().unwrap().to_owned();
    let instance = agent.instance();
    collector
        .wait_for("two reports", Duration::from_secs(30), async |c| {
            c.receipt_seqs(&host, &instance).await.contains(&2).then_some(())
        })
        .await;
    // A clean restart with nothing waiting: the reports after it were never late.
    assert!(agent.proc.terminate().success(), "{}", agent.proc.log_text());
    let before = agent.last_seq();
    let mut agent = Agent::start(&collector.grpc_url(), &state, &[]);
    collector
        .wait_for("two reports after the restart", Duration::from_secs(30), async |c| {
            c.receipt_seqs(&host, &instance).await.contains(&(before + 2)).then_some(())
        })
        .await;
    assert!(agent.proc.terminate().success(), "{}", agent.proc.log_text());
    let got = receipts(&collector, &host, &instance).await;
    let late: Vec<u64> =
        got.iter().filter(|r| r["replayed"] == true).map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(late.is_empty(), "reports that never waited for a connection are live: {late:?}");
    let events = collector.get(&format!("/api/v1/hosts/{host}")).await["events"].clone();
    let disconnected = events
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["detail"].as_str().is_some_and(|d| d.contains("while disconnected")))
        .count();
    assert_eq!(
        disconnected, 0,
        "no 'while disconnected' events for a host that never was: {events:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_write_acknowledges_nothing_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    // The collector's data directory is a small disk of its own.
    let data = tmp.path().join("data");
    let test = "a_store_that_cannot_write_acknowledges_nothing_and_loses_nothing";
    let Some(disk) = vigil_e2e::SmallDisk::mount_or_skip(&data, "24m", test) else {
        return;
    };
    let config = "[enrollment]\nattempts_per_minute = 10000\n\
                  [ingest]\nlive_reports_per_minute = 100000\n";
    let collector = Collector::start_with_config(&data, None, config, &[]);
    let mut agent = Agent::enroll_and_start(&collector, &tmp.path().join("agent"), &[]).await;
    let host = first_reported_host(&collector, Duration::from_secs(30)).await;
    let host = host["id"].as_str().unwrap().to_owned();
    let instance = agent.instance();

    // Twenty more simulated agents keep the store writing, so a full disk is felt at once
    // (SQLite reuses its write-ahead log in place until it must grow).
    let token = collector.enrollment_token("acme", "main", 20, "1h").await;
    let mut load = std::process::Command::new(vigil_e2e::bin("vigil-loadgen"))
        .args(["--collector", &collector.grpc_url(), "--ca-sha256", &collector.ca_sha256])
        .args(["--token", &token, "--agents", "20", "--rate", "400", "--seconds", "40"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;

    // The store's disk fills up: commits fail (SQLite refuses once its write-ahead log must
    // grow) and are not acknowledged; the agents resend.
    let filler = disk.fill();
    collector
        .wait_for("a failed commit", Duration::from_secs(30), async |c| {
            c.proc.log_text().contains("batch commit failed; nothing acknowledged").then_some(())
        })
        .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let _ = load.kill();
    let _ = load.wait();

    // Space comes back: everything arrives, once.
    std::fs::remove_file(filler).unwrap();
    collector
        .wait_for("the spool to drain", Duration::from_secs(60), async |_| {
            (agent.spooled() == 0).then_some(())
        })
        .await;
    assert!(agent.proc.terminate().success(), "{}", agent.proc.log_text());
    let last = agent.last_seq();
    let got = collector.receipts_once(&host, &instance).await;
    assert_eq!(got, (1..=last).collect(), "every report arrives, once");
    let log = collector.proc.log_text();
    assert!(log.contains("store write connection reopened after a failed batch"), "{log}");
}
