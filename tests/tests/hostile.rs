//! Nothing a network peer sends can crash the collector or make it lie: a stream of random bytes
//! on its gRPC port, a flood of oversized messages, 2 000 idle connections and a host sending
//! live reports too fast or replaying more than its time away allows are all refused with a
//! precise answer, memory stays bounded, and a well-behaved agent keeps reporting throughout
//! without losing a report.

use std::collections::BTreeSet;
use std::time::Duration;

use rand::RngCore;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tonic::Code;
use vigil_e2e::identity::TestIdentity;
use vigil_e2e::{Agent, Collector, first_reported_host, rss_kib};
use vigil_proto::v1::{AgentMessage, HostFacts, Report, agent_message};

const INSTANCE: &str = "6f1c1c8e-7c55-4f0e-9d7c-3f7a6a1b2c3d";

fn report(seq: u64, replayed: bool, padding: usize) -> AgentMessage {
    let facts =
        (padding > 0).then(|| HostFacts { os_name: "x".repeat(padding), ..Default::default() });
    AgentMessage {
        kind: Some(agent_message::Kind::Report(Report {
            agent_instance: INSTANCE.into(),
            seq,
            collected_at_unix_ms: 1,
            facts,
            replayed,
            ..Default::default()
        })),
    }
}

/// Opens a stream as `who`, sends `messages`, and returns the acknowledged seqs and the final
/// error, if any.
async fn stream(
    collector: &Collector,
    who: &TestIdentity,
    messages: Vec<AgentMessage>,
) -> (Vec<u64>, Option<tonic::Status>) {
    who.stream(collector, INSTANCE, messages).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_survives_hostile_peers_and_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let config = "[grpc]\nhandshake_timeout = \"2s\"\n[ingest]\nlive_reports_per_minute = 30\n";
    let collector = Collector::start_with_config(&tmp.path().join("data"), None, config, &[]);
    let pid = collector.proc.child.id();
    let mut agent = Agent::enroll_and_start(&collector, &tmp.path().join("agent"), &[]).await;
    let good = first_reported_host(&collector, Duration::from_secs(30)).await;
    let good = good["id"].as_str().unwrap().to_owned();
    let token = collector.enrollment_token("acme", "main", 1, "1h").await;
    let hostile = TestIdentity::enroll(&collector, &token, "hostile").await.unwrap();
    let rss_before = rss_kib(pid);

    // 2 000 connections that never say anything: held, then dropped by the handshake timeout.
    let mut idle = Vec::new();
    for _ in 0..2000 {
        idle.push(TcpStream::connect(collector.grpc).await.unwrap());
    }

    // Random bytes: 200 connections, 64 KiB of noise each.
    let mut noise = vec![0u8; 64 * 1024];
    for _ in 0..200 {
        rand::rng().fill_bytes(&mut noise);
        if let Ok(mut s) = TcpStream::connect(collector.grpc).await {
            let _ = s.write_all(&noise).await;
        }
    }

    // A flood of oversized messages (8 MiB against the 1 MiB limit), each refused precisely.
    for _ in 0..20 {
        let (acked, err) = stream(&collector, &hostile, vec![report(1, false, 8 << 20)]).await;
        assert!(acked.is_empty());
        let err = err.expect("refused");
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains("limit"), "{err:?}");
    }

    // Live reports too fast: the burst (30) is acknowledged, then RESOURCE_EXHAUSTED.
    let live: Vec<_> = (1..=40).map(|seq| report(seq, false, 0)).collect();
    let (acked, err) = stream(&collector, &hostile, live).await;
    assert_eq!(acked.last().copied(), Some(30), "{acked:?}");
    let err = err.expect("rate limited");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    // Replays are held to what the host's time away allows: it was seen a moment ago, so its
    // last interval's report and the slack (20) get through, then RESOURCE_EXHAUSTED naming
    // the first refused seq (which an agent keeps spooled).
    let replay: Vec<_> = (31..=230).map(|seq| report(seq, true, 0)).collect();
    let (acked, err) = stream(&collector, &hostile, replay).await;
    let err = err.expect("replays beyond the budget are refused");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    let accepted = acked.len() as u64;
    assert!((21..=22).contains(&accepted), "{acked:?}");
    let refused_seq = err.metadata().get("vigil-seq").and_then(|v| v.to_str().ok());
    assert_eq!(refused_seq, Some((31 + accepted).to_string().as_str()), "{err:?}");

    // The idle connections were cut by the handshake timeout.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut closed = 0;
    for mut s in idle.drain(..) {
        let mut buf = [0u8; 1];
        if matches!(
            tokio::time::timeout(
                Duration::from_millis(50),
                tokio::io::AsyncReadExt::read(&mut s, &mut buf)
            )
            .await,
            Ok(Ok(0)) | Ok(Err(_))
        ) {
            closed += 1;
        }
    }
    assert_eq!(closed, 2000, "idle connections must be dropped after grpc.handshake_timeout");

    // Memory stayed bounded (the 8 MiB messages were refused, not buffered twenty times).
    let rss_after = rss_kib(pid);
    assert!(
        rss_after < rss_before + 96 * 1024,
        "collector RSS grew from {rss_before} KiB to {rss_after} KiB"
    );

    // The well-behaved agent was served throughout: it is up and lost nothing.
    collector
        .wait_for("the agent's spool to drain", Duration::from_secs(30), async |_| {
            (agent.spooled() == 0).then_some(())
        })
        .await;
    assert!(agent.proc.terminate().success());
    let seqs = collector.receipt_seqs(&good, &agent.instance()).await;
    assert_eq!(seqs, (1..=agent.last_seq()).collect::<BTreeSet<u64>>());
    assert!(agent.last_seq() >= 5, "the agent kept reporting during the attack");
    let metrics = collector.get_text("/metrics").await;
    assert!(
        metrics.contains("vigil_ingest_reports_rejected_total{reason=\"rate_limited\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vigil_ingest_reports_rejected_total{reason=\"too_large\"} 20"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vigil_ingest_reports_rejected_total{reason=\"replay_limited\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_closed_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let config = "[grpc]\nmax_connections = 50\nhandshake_timeout = \"30s\"\n";
    let collector = Collector::start_with_config(&tmp.path().join("data"), None, config, &[]);
    let mut held = Vec::new();
    for _ in 0..50 {
        held.push(TcpStream::connect(collector.grpc).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The 51st is accepted by the kernel and closed by the collector at once.
    let mut extra = TcpStream::connect(collector.grpc).await.unwrap();
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut extra, &mut buf),
    )
    .await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    let metrics = collector.get_text("/metrics").await;
    assert!(
        metrics.contains(
            "vigil_connections_refused_total{listener=\"grpc\",reason=\"connection_limit\"} 1"
        ),
        "{metrics}"
    );
    // Freeing slots lets new connections in again: enrolment works.
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let token = collector.enrollment_token("acme", "main", 1, "1h").await;
    TestIdentity::enroll(&collector, &token, "after").await.unwrap();
}
