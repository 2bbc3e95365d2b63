//! Certificates are short-lived and renewed by the running agent without a restart, and nothing
//! is lost across renewals: with a short certificate lifetime (2 minutes by default, set
//! `VIGIL_RENEWAL_LIFETIME` to e.g. `20s` for a quick local run) an agent reports for five
//! lifetimes, renews at least four times, and every report it made has a receipt.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use vigil_e2e::{Agent, Collector, first_reported_host};

fn lifetime() -> (String, Duration) {
    let text = std::env::var("VIGIL_RENEWAL_LIFETIME").unwrap_or_else(|_| "2m".into());
    let seconds = match text.strip_suffix('m') {
        Some(m) => m.parse::<u64>().expect("minutes") * 60,
        None => text.trim_end_matches('s').parse::<u64>().expect("seconds"),
    };
    (text, Duration::from_secs(seconds))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_keeps_an_agent_reporting_without_loss() {
    let (text, lifetime) = lifetime();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let config = format!("[tls]\nclient_cert_lifetime = \"{text}\"\n");
    let collector = Collector::start_with_config(&data, None, &config, &[]);
    let mut agent = Agent::enroll_and_start(&collector, &tmp.path().join("agent"), &[]).await;
    let host = first_reported_host(&collector, Duration::from_secs(30)).await;
    let host = host["id"].as_str().unwrap().to_owned();

    let until = Instant::now() + lifetime * 5;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let status = collector.get(&format!("/api/v1/hosts/{host}")).await["status"].clone();
        assert_eq!(status, "up", "the host must stay up across renewals");
    }
    collector
        .wait_for("the spool to drain", Duration::from_secs(30), async |_| {
            (agent.spooled() == 0).then_some(())
        })
        .await;
    assert!(agent.proc.terminate().success());

    let log = agent.proc.log_text();
    let renewals = log.matches("certificate renewed").count();
    assert!(renewals >= 4, "{renewals} renewals in five lifetimes:\n{log}");
    assert!(!log.contains("renewal failed"), "{log}");
    let seqs = collector.receipt_seqs(&host, &agent.instance()).await;
    let expected: BTreeSet<u64> = (1..=agent.last_seq()).collect();
    assert_eq!(seqs, expected, "every report has a receipt");
    let collector_log = collector.proc.log_text();
    assert!(!collector_log.contains("TLS handshake refused"), "{collector_log}");
}
