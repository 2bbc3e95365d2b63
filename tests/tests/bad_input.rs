//! Bad input gets a clear error and changes nothing: a report with no seq or no instance, or
//! over the size limit, is refused with gRPC `InvalidArgument` naming the fault; a resent seq is
//! acknowledged and ignored; the collector keeps serving everyone else; malformed config files
//! are named by file, line and key with exit code 2.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use vigil_e2e::identity::TestIdentity;
use vigil_e2e::{Agent, Collector, first_reported_host, run};
use vigil_proto::v1::{
    AgentMessage, CollectorMessage, Hello, HostFacts, Report, agent_message, collector_message,
    ingest_client::IngestClient,
};

const INSTANCE: &str = "6f1c1c8e-7c55-4f0e-9d7c-3f7a6a1b2c3d";

struct Stream {
    tx: mpsc::Sender<AgentMessage>,
    inbound: tonic::Streaming<CollectorMessage>,
}

impl Stream {
    async fn open(collector: &Collector, who: &TestIdentity) -> Stream {
        let mut client = client(collector, who).await.max_encoding_message_size(64 * 1024 * 1024);
        let (tx, rx) = mpsc::channel(16);
        let hello = Hello {
            agent_instance: INSTANCE.into(),
            agent_version: "test".into(),
            interval_seconds: 10,
            machine_id: "hostile-machine".into(),
            hostname: "hostile".into(),
            host_id: who.host_id.clone(),
            ..Default::default()
        };
        tx.send(AgentMessage { kind: Some(agent_message::Kind::Hello(hello)) }).await.unwrap();
        let mut inbound = client.report(ReceiverStream::new(rx)).await.unwrap().into_inner();
        let welcome = inbound.message().await.unwrap().unwrap();
        assert!(matches!(welcome.kind, Some(collector_message::Kind::Welcome(_))));
        Stream { tx, inbound }
    }

    async fn send(&self, report: Report) {
        self.tx
            .send(AgentMessage { kind: Some(agent_message::Kind::Report(report)) })
            .await
            .unwrap();
    }

    async fn next(&mut self) -> Result<Option<CollectorMessage>, tonic::Status> {
        tokio::time::timeout(Duration::from_secs(10), self.inbound.message()).await.unwrap()
    }

    async fn expect_ack(&mut self, seq: u64) {
        match self.next().await {
            Ok(Some(CollectorMessage { kind: Some(collector_message::Kind::Ack(ack)) })) => {
                assert_eq!(ack.seq, seq)
            }
            other => panic!("expected Ack({seq}), got {other:?}"),
        }
    }
}

async fn client(
    collector: &Collector,
    who: &TestIdentity,
) -> IngestClient<tonic::transport::Channel> {
    IngestClient::new(who.channel(collector).await.unwrap())
}

fn report(seq: u64) -> Report {
    Report { agent_instance: INSTANCE.into(), seq, collected_at_unix_ms: 1, ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_reports_are_refused_and_others_keep_working() {
    let tmp = tempfile::tempdir().unwrap();
    let collector = Collector::start(&tmp.path().join("data"), None, &[]);
    // A well-behaved agent reporting all along.
    let _agent = Agent::enroll_and_start(&collector, &tmp.path().join("agent"), &[]).await;
    first_reported_host(&collector, Duration::from_secs(30)).await;
    let token = collector.enrollment_token("acme", "main", 1, "1h").await;
    let hostile = TestIdentity::enroll(&collector, &token, "hostile").await.unwrap();

    // Resending is how nothing gets lost: a duplicate seq is acknowledged, stored once.
    let mut s = Stream::open(&collector, &hostile).await;
    s.send(report(1)).await;
    s.expect_ack(1).await;
    s.send(report(1)).await;
    s.expect_ack(1).await;

    // No seq: InvalidArgument naming the fault, after earlier reports were acknowledged.
    s.send(report(2)).await;
    s.send(report(0)).await;
    s.expect_ack(2).await;
    let err = s.next().await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("no seq"), "{err:?}");

    // No instance.
    let mut s = Stream::open(&collector, &hostile).await;
    s.send(Report { agent_instance: String::new(), ..report(3) }).await;
    let err = s.next().await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("no agent_instance"), "{err:?}");

    // Over the 1 MiB default limit, by a little and by a lot.
    for size in [1024 * 1024 + 10, 8 * 1024 * 1024] {
        let mut s = Stream::open(&collector, &hostile).await;
        let facts = HostFacts { hostname: "x".repeat(size), ..Default::default() };
        s.send(Report { facts: Some(facts), ..report(4) }).await;
        let err = s.next().await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{size}: {err:?}");
        assert!(err.message().contains("limit"), "{err:?}");
    }

    // A stream that does not start with Hello.
    let mut client = client(&collector, &hostile).await;
    let (tx, rx) = mpsc::channel(1);
    tx.send(AgentMessage { kind: Some(agent_message::Kind::Report(report(5))) }).await.unwrap();
    let err = client.report(ReceiverStream::new(rx)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("Hello"), "{err:?}");

    // Nothing of the refused reports was stored: seq 1 and 2 only.
    let hosts = collector.hosts().await;
    let hostile = hosts.iter().find(|h| h["hostname"] == "hostile").expect("hostile host");
    let id = hostile["id"].as_str().unwrap();
    let receipts = collector.get(&format!("/api/v1/hosts/{id}/receipts")).await;
    let seqs: Vec<u64> = receipts["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2]);

    // The well-behaved agent kept reporting throughout.
    let metrics = collector.get_text("/metrics").await;
    assert!(
        metrics.contains("vigil_ingest_reports_rejected_total{reason=\"too_large\"} 2"),
        "{metrics}"
    );
    let good = hosts.iter().find(|h| h["hostname"] != "hostile").unwrap();
    assert_eq!(good["status"], "up");
    let before = good["last_seen_unix_ms"].as_i64().unwrap();
    collector
        .wait_for("the agent's next report", Duration::from_secs(10), async |c| {
            c.hosts().await.into_iter().find(|h| {
                h["hostname"] != "hostile" && h["last_seen_unix_ms"].as_i64().unwrap() > before
            })
        })
        .await;
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn malformed_config_names_file_line_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        ("vigil-agent", "syntax.toml", "interval = \"10s\"\ncollector = \n", ":2: "),
        (
            "vigil-agent",
            "type.toml",
            "\n[spool]\nmax_reports = \"lots\"\n",
            ":3: key `spool.max_reports`: invalid type",
        ),
        (
            "vigil-agent",
            "value.toml",
            "interval = \"0s\"\n",
            ":1: key `interval`: must be between 1s and 1h",
        ),
        (
            "vigil-collector",
            "value.toml",
            "[grpc]\nlisten = \"0.0.0.0:7700\"\nmax_connections = 0\n",
            ":3: key `grpc.max_connections`: must be at least 1",
        ),
        (
            "vigil-collector",
            "type.toml",
            "[ingest]\nmax_batch = -1\n",
            ":2: key `ingest.max_batch`: ",
        ),
    ];
    for (binary, name, text, expected) in cases {
        let path = write(tmp.path(), &format!("{binary}-{name}"), text);
        for args in [vec!["--config", &path, "check-config"], vec!["--config", &path]] {
            let out = run(binary, &args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{binary} {args:?}: {stderr}");
            assert!(stderr.contains(&format!("{path}{expected}")), "{binary} {name}: {stderr}");
        }
    }

    // Unknown keys warn (a fleet survives a renamed key) unless --strict.
    let path = write(tmp.path(), "unknown.toml", "interval = \"5s\"\nintervall = \"5s\"\n");
    let out = run("vigil-agent", &["--config", &path, "check-config"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(&format!("warning: {path}:2: key `intervall`: unknown key, ignored"))
    );
    let out = run("vigil-agent", &["--config", &path, "check-config", "--strict"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("{path}:2: key `intervall`")));

    // A named config file that does not exist.
    let out = run("vigil-collector", &["--config", "/nonexistent/collector.toml", "check-config"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent/collector.toml: cannot read")
    );
}
