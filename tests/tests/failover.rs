//! The database fails over under a running collector: a real pg_auto_failover formation
//! (monitor, primary, synchronous secondary on loopback ports) behind a collector given the
//! formation's multi-host URL, three agents reporting every second. The primary is SIGKILLed:
//! while no server accepts writes the collector acknowledges nothing (the agents keep their
//! reports), it finds the promoted secondary by itself, and afterwards every report that was
//! acknowledged before the kill is still stored, once, with no seq missing.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use vigil_e2e::autofailover::Formation;
use vigil_e2e::{Agent, Collector, first_reported_host};

/// The seqs stored of `instance` on `host`, or None while the collector cannot read them.
async fn stored(c: &Collector, host: &str, instance: &str) -> Option<BTreeSet<u64>> {
    let path = format!("/api/v1/hosts/{host}/receipts?instance={instance}&limit=100000");
    let (status, body) = c.get_status(&path).await;
    (status == 200).then(|| {
        body["receipts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["seq"].as_u64())
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_killed_under_load_loses_no_acknowledged_report() {
    let Some(mut formation) = tokio::task::block_in_place(Formation::start) else { return };
    let first_primary = formation.primary().expect("a primary");
    let tmp = tempfile::tempdir().unwrap();
    let url = formation.url();
    let collector = Collector::start(&tmp.path().join("data"), None, &["--database", &url]);
    let log = collector.proc.log_text();
    assert!(log.contains("PostgreSQL primary found"), "{log}");
    let mut agents = Vec::new();
    for n in 0..3 {
        agents.push(
            Agent::enroll_and_start(&collector, &tmp.path().join(format!("a{n}")), &[]).await,
        );
    }
    first_reported_host(&collector, Duration::from_secs(30)).await;
    let streams: Vec<(String, String)> =
        agents.iter().map(|a| (a.host_id(), a.instance())).collect();
    for (host, instance) in &streams {
        collector
            .wait_for("five reports of each agent", Duration::from_secs(60), async |c| {
                (c.receipts_once(host, instance).await.len() >= 5).then_some(())
            })
            .await;
    }

    // What is stored (so acknowledged) the moment before the primary dies.
    let mut acknowledged = Vec::new();
    for (host, instance) in &streams {
        acknowledged.push(collector.receipts_once(host, instance).await);
    }
    tokio::task::block_in_place(|| formation.kill_node(first_primary));
    let killed_at = Instant::now();

    // Nothing is acknowledged until the secondary is promoted and accepts writes; then the
    // collector finds it and the agents' spooled reports drain.
    let resumed = collector
        .wait_for("acknowledgements to resume", Duration::from_secs(180), async |c| {
            let (host, instance) = &streams[0];
            let now = stored(c, host, instance).await?;
            (now.last() > acknowledged[0].last()).then(|| killed_at.elapsed())
        })
        .await;
    eprintln!(
        "acknowledgements resumed {:.1} s after the primary was killed",
        resumed.as_secs_f64()
    );
    let log = collector.proc.log_text();
    assert!(log.contains("the PostgreSQL primary moved"), "{log}");
    for agent in &agents {
        collector
            .wait_for("every agent's spool to drain", Duration::from_secs(60), async |_| {
                (agent.spooled() == 0).then_some(())
            })
            .await;
    }
    for ((host, instance), before) in streams.iter().zip(&acknowledged) {
        // `receipts_once` asserts that no seq is held twice.
        let after: BTreeSet<u64> = collector.receipts_once(host, instance).await;
        assert!(
            before.is_subset(&after),
            "an acknowledged report was lost: {before:?} ⊄ {after:?}"
        );
        let seqs: Vec<u64> = after.iter().copied().collect();
        assert_eq!(seqs, (1..=*seqs.last().unwrap()).collect::<Vec<_>>(), "no seq is missing");
    }
    // The secondary took over; alone, it is primary without a standby (`wait_primary`).
    let states = formation.states();
    let other = &formation.nodes[1 - first_primary].name;
    assert!(
        states.iter().any(|(n, s)| n == other && (s == "primary" || s == "wait_primary")),
        "{states:?}"
    );
}
