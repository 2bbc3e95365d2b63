//! Crash soaks with the real binaries: the collector killed with SIGKILL 20 times while three
//! agents report every second, and an agent killed with SIGKILL 100 times, half of them in the
//! middle of a spool append. Each ends by comparing every seq the agents made with the
//! collector's receipts: none missing, none twice. They take minutes, so they are ignored by
//! the README's test command and run by CI after it (`cargo test -p vigil-e2e --test soak --
//! --ignored`).

use std::time::{Duration, Instant};

use vigil_e2e::{Agent, Collector, first_reported_host};

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
