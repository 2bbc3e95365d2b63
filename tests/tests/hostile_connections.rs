//! Connections an attacker opens and does not use cannot lock agents out: certificate-less TLS
//! connections that say nothing, slowloris HTTP clients and a flood under a small descriptor
//! limit are all cut or shed on time while a real agent keeps reporting, and a connection
//! without a client certificate may make one `Enrollment` call and nothing else.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;
use tonic::Code;
use vigil_e2e::identity::{self, TestIdentity};
use vigil_e2e::{Agent, Collector, first_reported_host, rss_kib};
use vigil_proto::v1::enrollment_client::EnrollmentClient;
use vigil_proto::v1::ingest_client::IngestClient;
use vigil_proto::v1::{AgentMessage, EnrollRequest, Report, agent_message};

/// `vigil_connections_refused_total` for `listener` and `reason` in a `/metrics` text.
fn refused(metrics: &str, listener: &str, reason: &str) -> u64 {
    let series =
        format!("vigil_connections_refused_total{{listener=\"{listener}\",reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{series} missing:\n{metrics}"))
}

/// The configuration of the tests' collectors: short deadlines, everything else default.
fn short_deadlines(extra: &str) -> String {
    format!(
        "[grpc]\ncertless_timeout = \"2s\"\n{extra}\n[http]\nheader_timeout = \"2s\"\n\
         idle_timeout = \"2s\"\n"
    )
}

/// A TLS connection to the gRPC port without a client certificate, handshake done, nothing
/// sent.
async fn certless_tls(
    collector: &Collector,
    connector: &TlsConnector,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(collector.grpc).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.expect("TLS handshake without a client certificate")
}

fn certless_connector(collector: &Collector) -> TlsConnector {
    let (config, _) = vigil_tls::pinned_client_config(&collector.ca_sha256).unwrap();
    TlsConnector::from(Arc::new(config))
}

/// Reads (and discards what the server sends) until the peer closes or resets; how long it
/// took, or `None` if it was still open after `bound`.
async fn time_to_close(mut stream: impl AsyncReadExt + Unpin, bound: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(bound, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    closed.ok().map(|()| start.elapsed())
}

/// A slowloris client: the start of a request, then one header line every 500 ms, never the
/// blank line that ends the headers. Returns how long until the server closed the connection,
/// or `None` if it was still open after `bound`.
async fn slowloris(http: std::net::SocketAddr, bound: Duration) -> Option<Duration> {
    let start = Instant::now();
    let Ok(mut tcp) = TcpStream::connect(http).await else { return Some(Duration::ZERO) };
    if tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: vigil\r\n").await.is_err() {
        return Some(start.elapsed());
    }
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(bound, async {
        loop {
            tokio::select! {
                read = tcp.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                },
                () = tokio::time::sleep(Duration::from_millis(500)) => {
                    if tcp.write_all(b"X-Slow: 1\r\n").await.is_err() {
                        return;
                    }
                }
            }
        }
    })
    .await;
    closed.ok().map(|()| start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_slow_connections_are_cut_on_time_while_an_agent_keeps_reporting() {
    let tmp = tempfile::tempdir().unwrap();
    let config = short_deadlines("max_certless_connections = 1000");
    let collector = Collector::start_with_config(&tmp.path().join("data"), None, &config, &[]);
    let pid = collector.proc.child.id();
    let mut agent = Agent::enroll_and_start(&collector, &tmp.path().join("agent"), &[]).await;
    let host = first_reported_host(&collector, Duration::from_secs(30)).await;
    let host = host["id"].as_str().unwrap().to_owned();
    let rss_before = rss_kib(pid);
    let seq_before = agent.last_seq();

    // 500 certificate-less connections that finish the handshake and say nothing, and 500
    // slowloris clients, all at once. Each must be closed within its deadline (2 s) + 5 s.
    let bound = Duration::from_secs(2 + 5);
    let connector = certless_connector(&collector);
    let mut silent = JoinSet::new();
    let mut slow = JoinSet::new();
    for _ in 0..500 {
        let stream = certless_tls(&collector, &connector).await;
        silent.spawn(time_to_close(stream, bound));
        slow.spawn(slowloris(collector.http, bound));
    }
    // And one HTTP client that connects and sends nothing at all: cut as idle.
    let quiet = TcpStream::connect(collector.http).await.unwrap();
    let quiet = tokio::spawn(time_to_close(quiet, bound));
    let rss_peak = rss_kib(pid);
    let silent: Vec<_> = silent.join_all().await;
    let slow: Vec<_> = slow.join_all().await;
    let still_open = silent.iter().filter(|t| t.is_none()).count();
    assert_eq!(still_open, 0, "certificate-less connections still open after {bound:?}");
    let still_open = slow.iter().filter(|t| t.is_none()).count();
    assert_eq!(still_open, 0, "slowloris connections still open after {bound:?}");
    assert!(quiet.await.unwrap().is_some(), "a silent HTTP connection still open after {bound:?}");
    let rss_after = rss_kib(pid);
    eprintln!("collector RSS: {rss_before} KiB before, {rss_peak} KiB at peak, {rss_after} after");
    assert!(
        rss_peak < rss_before + 128 * 1024 && rss_after < rss_before + 64 * 1024,
        "collector RSS grew from {rss_before} KiB to {rss_peak} KiB (peak), {rss_after} KiB"
    );

    // The agent was served throughout: it kept reporting and every report was acknowledged.
    collector
        .wait_for("the agent's spool to drain", Duration::from_secs(30), async |_| {
            (agent.spooled() == 0 && agent.last_seq() > seq_before + 2).then_some(())
        })
        .await;
    assert!(agent.proc.terminate().success());
    let seqs = collector.receipts_once(&host, &agent.instance()).await;
    assert_eq!(seqs, (1..=agent.last_seq()).collect());
    let metrics = collector.get_text("/metrics").await;
    assert_eq!(refused(&metrics, "grpc", "certless_timeout"), 500, "{metrics}");
    assert_eq!(refused(&metrics, "http", "header_timeout"), 500, "{metrics}");
    // The silent one, and any connection the test's own API clients left open.
    assert!(refused(&metrics, "http", "idle_timeout") >= 1, "{metrics}");
    // Logged once per interval, not once per connection.
    let log = collector.proc.log_text();
    for reason in ["certless_timeout", "header_timeout"] {
        let lines = log.matches(&format!("reason=\"{reason}\"")).count();
        assert!((1..50).contains(&lines), "{lines} log lines for 500 connections cut ({reason})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_a_certificate_may_make_one_enrollment_call_only() {
    let tmp = tempfile::tempdir().unwrap();
    let collector = Collector::start(&tmp.path().join("data"), None, &[]);

    // Reporting without a certificate: refused in front of the Ingest service, precisely.
    let mut ingest = IngestClient::new(identity::pinned_channel(&collector).await);
    let (_tx, rx) = tokio::sync::mpsc::channel(1);
    let err = ingest.report(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert_eq!(
        err.message(),
        "a client certificate is required for /vigil.v1.Ingest/Report; without one a \
         connection may only call the vigil.v1.Enrollment service"
    );

    // One Enroll is answered; the next call on the same connection is refused.
    let token = collector.enrollment_token("acme", "main", 2, "1h").await;
    let mut enrollment = EnrollmentClient::new(identity::pinned_channel(&collector).await);
    let request = |hostname: &str| EnrollRequest {
        token: token.clone(),
        csr_der: identity::csr(&rcgen::KeyPair::generate().unwrap()),
        hostname: hostname.into(),
        machine_id: format!("machine-of-{hostname}"),
        agent_version: "test".into(),
    };
    enrollment.enroll(request("first")).await.expect("the first call is answered");
    let err = enrollment.enroll(request("second")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("may make one vigil.v1.Enrollment call"), "{err:?}");

    // Both connections were closed by the collector a moment after their call was answered,
    // long before grpc.certless_timeout (10 s), though the clients keep them.
    collector
        .wait_for("both certificate-less connections to close", Duration::from_secs(5), async |c| {
            let metrics = c.get_text("/metrics").await;
            metrics.contains("vigil_grpc_certless_connections 0\n").then_some(())
        })
        .await;
    drop((ingest, enrollment));

    // A fresh connection may enrol again (the token has a use left).
    TestIdentity::enroll(&collector, &token, "third").await.expect("a new connection enrols");
    let metrics = collector.get_text("/metrics").await;
    for reason in ["certificate_required", "one_call"] {
        assert_eq!(refused(&metrics, "grpc", reason), 1, "{reason}: {metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_less_connections_have_a_cap_of_their_own() {
    let tmp = tempfile::tempdir().unwrap();
    let config = "[grpc]\nmax_connections = 4\nmax_certless_connections = 2\n\
                  certless_timeout = \"30s\"\n";
    let collector = Collector::start_with_config(&tmp.path().join("data"), None, config, &[]);
    let token = collector.enrollment_token("acme", "main", 1, "1h").await;
    let host = TestIdentity::enroll(&collector, &token, "srv01").await.unwrap();

    // Two silent certificate-less connections fill their cap; a third is closed at once.
    let connector = certless_connector(&collector);
    let _held = hold_certless(&collector, &connector, 2).await;
    let third = certless_tls(&collector, &connector).await;
    let closed = time_to_close(third, Duration::from_secs(5)).await;
    assert!(closed.is_some(), "a third certificate-less connection was kept");

    // Enrolled agents' slots are untouched: four connections with a certificate still report.
    let mut reporting = Vec::new();
    for i in 0..4 {
        let instance = format!("6f1c1c8e-7c55-4f0e-9d7c-3f7a6a1b2c3{i}");
        let report = AgentMessage {
            kind: Some(agent_message::Kind::Report(Report {
                agent_instance: instance.clone(),
                seq: 1,
                collected_at_unix_ms: 1,
                ..Default::default()
            })),
        };
        // Returns once the report is acknowledged.
        reporting.push(host.stream_held(&collector, &instance, vec![report]).await);
    }
    let metrics = collector.get_text("/metrics").await;
    assert!(metrics.contains("vigil_grpc_certless_connections 2\n"), "{metrics}");
    assert_eq!(refused(&metrics, "grpc", "certless_limit"), 1, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_with_a_certificate_that_says_nothing_is_cut_after_the_idle_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let config = "[grpc]\nkeepalive_interval = \"1s\"\nidle_timeout = \"2s\"\n";
    let collector = Collector::start_with_config(&tmp.path().join("data"), None, config, &[]);
    let token = collector.enrollment_token("acme", "main", 1, "1h").await;
    let host = TestIdentity::enroll(&collector, &token, "srv01").await.unwrap();
    let tls = vigil_tls::client_config(host.ca.clone(), Some(host.client_identity())).unwrap();
    let tcp = TcpStream::connect(collector.grpc).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let silent = TlsConnector::from(Arc::new(tls)).connect(name, tcp).await.unwrap();
    let closed = time_to_close(silent, Duration::from_secs(2 + 5)).await;
    assert!(closed.is_some(), "a silent connection with a certificate was kept");
    let metrics = collector.get_text("/metrics").await;
    assert_eq!(refused(&metrics, "grpc", "idle_timeout"), 1, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_256_descriptors_an_http_flood_is_shed_and_agents_still_enrol_and_report() {
    let tmp = tempfile::tempdir().unwrap();
    let collector =
        Collector::start_with_nofile(&tmp.path().join("data"), &short_deadlines(""), 256);
    let log = collector.proc.log_text();
    assert!(log.contains("http_max_connections=48"), "the API's share of 256: {log}");
    let token = collector.enrollment_token("acme", "main", 1, "1h").await;

    // 400 slowloris clients: far more than the collector has descriptors for.
    let bound = Duration::from_secs(2 + 5);
    let mut flood = JoinSet::new();
    for _ in 0..400 {
        flood.spawn(slowloris(collector.http, bound));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Meanwhile an agent enrols and reports: ingest still has its descriptors.
    let state = tmp.path().join("agent");
    let out = Agent::enroll(&collector, &state, &token);
    assert!(
        out.status.success(),
        "enrol during the flood: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut agent = Agent::start(&collector.grpc_url(), &state, &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(agent.last_seq() >= 2 && agent.spooled() == 0) {
        assert!(Instant::now() < deadline, "the agent's reports were not acknowledged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The flood is cut by the header deadline, and /readyz answers.
    let results: Vec<_> = flood.join_all().await;
    assert_eq!(results.iter().filter(|t| t.is_none()).count(), 0, "slow clients still held");
    let (status, body) = collector.get_status("/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert!(agent.proc.terminate().success());

    let metrics = collector.get_text("/metrics").await;
    let count = refused(&metrics, "http", "connection_limit");
    assert!(count >= 300, "only {count} of 400 slow connections were shed at once");
    let log = collector.proc.log_text();
    assert!(!log.contains("Too many open files"), "{log}");
}

/// Memory per idle certificate-less connection: the collector's RSS with 1 000 of them held
/// open, less its RSS with none, over 1 000. Run with
/// `cargo test -p vigil-e2e --test hostile_connections -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement"]
async fn measure_memory_per_idle_certless_connection() {
    const N: u64 = 1000;
    let tmp = tempfile::tempdir().unwrap();
    let config = "[grpc]\nmax_certless_connections = 2000\ncertless_timeout = \"10m\"\n";
    let collector = Collector::start_with_config(&tmp.path().join("data"), None, config, &[]);
    let pid = collector.proc.child.id();
    let connector = certless_connector(&collector);
    // Warm up the allocator and the runtime with a few connections first.
    let warm: Vec<_> = hold_certless(&collector, &connector, 20).await;
    drop(warm);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_kib(pid);
    let held = hold_certless(&collector, &connector, N).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(pid);
    println!(
        "idle certificate-less connections: RSS {before} KiB with 0, {after} KiB with {N}: \
         {:.1} KiB per connection",
        (after.saturating_sub(before)) as f64 / N as f64
    );
    drop(held);
}

async fn hold_certless(
    collector: &Collector,
    connector: &TlsConnector,
    n: u64,
) -> Vec<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(certless_tls(collector, connector).await);
    }
    held
}
