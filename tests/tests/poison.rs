//! A poison report harms nobody else: a report carrying a NaN, an infinity or a ratio no
//! machine can have is refused with gRPC `InvalidArgument` naming the field, and the status
//! names the report in the `vigil-seq` trailer so the agent can quarantine exactly that one,
//! while fifty healthy agents streaming at the same time see every report acknowledged and
//! stored.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use vigil_e2e::Collector;
use vigil_e2e::identity::TestIdentity;
use vigil_proto::v1::{
    AgentMessage, CollectorMessage, CpuData, ProbeResult, Report, SensorData, TemperatureSensor,
    agent_message, collector_message, ingest_client::IngestClient, probe_result,
};

const HEALTHY_AGENTS: usize = 50;
const REPORTS_EACH: u64 = 20;
const CONFIG: &str = "[enrollment]\nattempts_per_minute = 200\n";

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn instance(n: usize) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

fn probe(name: &str, data: probe_result::Data) -> ProbeResult {
    ProbeResult {
        probe: name.into(),
        status: probe_result::Status::Ok as i32,
        data: Some(data),
        ..Default::default()
    }
}

fn cpu(usage_ratio: f64) -> ProbeResult {
    probe("cpu", probe_result::Data::Cpu(CpuData { usage_ratio, load1: 0.5, ..Default::default() }))
}

fn temperature(celsius: f64) -> ProbeResult {
    let sensor = TemperatureSensor { name: "cpu".into(), celsius, ..Default::default() };
    probe(
        "hwmon",
        probe_result::Data::Sensors(SensorData {
            temperatures: vec![sensor],
            ..Default::default()
        }),
    )
}

fn report(instance: &str, seq: u64, probes: Vec<ProbeResult>) -> AgentMessage {
    let report = Report {
        agent_instance: instance.into(),
        seq,
        collected_at_unix_ms: now_ms(),
        probes,
        ..Default::default()
    };
    AgentMessage { kind: Some(agent_message::Kind::Report(report)) }
}

/// A healthy agent: one stream, `REPORTS_EACH` valid reports sent 25 ms apart, every one
/// acknowledged, then a clean close. Returns the acknowledged seqs and any error.
async fn healthy(
    collector: Arc<Collector>,
    who: TestIdentity,
    instance: String,
) -> (Vec<u64>, Option<tonic::Status>) {
    let channel = who.channel(&collector).await.expect("mTLS channel");
    let mut client = IngestClient::new(channel);
    let (tx, rx) = mpsc::channel(4);
    tx.send(who.hello(&instance)).await.unwrap();
    let mut inbound = client.report(ReceiverStream::new(rx)).await.expect("stream").into_inner();
    let sender = {
        let instance = instance.clone();
        tokio::spawn(async move {
            for seq in 1..=REPORTS_EACH {
                let probes = vec![cpu(0.1 + seq as f64 / 100.0), temperature(45.0)];
                if tx.send(report(&instance, seq, probes)).await.is_err() {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            // Held until every report is acknowledged, then dropped: a clean close.
            Some(tx)
        })
    };
    let mut acked = Vec::new();
    let mut error = None;
    let mut sender = Some(sender);
    loop {
        match tokio::time::timeout(Duration::from_secs(30), inbound.message()).await {
            Ok(Ok(Some(CollectorMessage { kind: Some(collector_message::Kind::Ack(ack)) }))) => {
                acked.push(ack.seq);
                if ack.seq == REPORTS_EACH
                    && let Some(sender) = sender.take()
                {
                    drop(sender.await.unwrap());
                }
            }
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None)) => break,
            Ok(Err(status)) => {
                error = Some(status);
                break;
            }
            Err(_) => panic!("{instance}: no answer within 30 s"),
        }
    }
    (acked, error)
}

/// Sends one good report (`seq`) then the poisoned one (`seq + 1`) on a fresh stream, and
/// returns the stream's final status after checking the good one was acknowledged.
async fn poisoned(
    collector: &Collector,
    who: &TestIdentity,
    seq: u64,
    bad: Vec<ProbeResult>,
) -> tonic::Status {
    let instance = instance(0);
    let messages = vec![report(&instance, seq, vec![cpu(0.2)]), report(&instance, seq + 1, bad)];
    let (acked, error) = who.stream(collector, &instance, messages).await;
    assert_eq!(acked, [seq], "the good report before the poisoned one is acknowledged");
    error.expect("the poisoned report ends the stream with an error")
}

fn seq_trailer(status: &tonic::Status) -> Option<&str> {
    status.metadata().get("vigil-seq").and_then(|v| v.to_str().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poisoned_reports_are_refused_alone_while_healthy_agents_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let collector =
        Arc::new(Collector::start_with_config(&tmp.path().join("data"), None, CONFIG, &[]));
    let uses = HEALTHY_AGENTS as u32 + 1;
    let token = collector.enrollment_token("acme", "main", uses, "1h").await;
    let hostile = TestIdentity::enroll(&collector, &token, "hostile").await.unwrap();
    let mut fleet = Vec::new();
    for n in 1..=HEALTHY_AGENTS {
        let who = TestIdentity::enroll(&collector, &token, &format!("srv{n:02}")).await.unwrap();
        fleet.push((who.host_id.clone(), instance(n), who));
    }

    // The fleet streams while the poisoned reports arrive.
    let mut running = Vec::new();
    for (host, instance, who) in fleet {
        let task = tokio::spawn(healthy(collector.clone(), who, instance.clone()));
        running.push((host, instance, task));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    let nan = poisoned(&collector, &hostile, 1, vec![cpu(0.3), cpu(f64::NAN)]).await;
    assert_eq!(nan.code(), Code::InvalidArgument, "{nan:?}");
    assert_eq!(nan.message(), "report seq 2: probes[1] (cpu).usage_ratio is NaN");
    assert_eq!(seq_trailer(&nan), Some("2"), "{nan:?}");

    let inf = poisoned(&collector, &hostile, 3, vec![temperature(f64::INFINITY)]).await;
    assert_eq!(inf.code(), Code::InvalidArgument, "{inf:?}");
    assert_eq!(inf.message(), "report seq 4: probes[0] (sensors).temperatures[0].celsius is +inf");
    assert_eq!(seq_trailer(&inf), Some("4"), "{inf:?}");

    let out_of_range = poisoned(&collector, &hostile, 5, vec![cpu(250.0)]).await;
    assert_eq!(out_of_range.code(), Code::InvalidArgument, "{out_of_range:?}");
    assert!(
        out_of_range.message().starts_with("report seq 6: probes[0] (cpu).usage_ratio is 250,"),
        "{out_of_range:?}"
    );
    assert_eq!(seq_trailer(&out_of_range), Some("6"), "{out_of_range:?}");

    // A seq beyond what the store holds as a signed 64-bit integer.
    let huge = i64::MAX as u64 + 1;
    let (acked, error) = hostile
        .stream(&collector, &instance(0), vec![report(&instance(0), huge, vec![cpu(0.2)])])
        .await;
    assert!(acked.is_empty());
    let error = error.expect("an out-of-range seq is refused");
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    assert!(error.message().contains("seq is 9223372036854775808, outside"), "{error:?}");
    assert_eq!(seq_trailer(&error), Some("9223372036854775808"));

    // Every healthy agent: no failed acknowledgement, and a receipt for each of its seqs.
    let expected: Vec<u64> = (1..=REPORTS_EACH).collect();
    for (host, instance, task) in running {
        let (acked, error) = task.await.unwrap();
        assert!(error.is_none(), "{instance}: {error:?}");
        assert_eq!(acked, expected, "{instance}");
        let stored: Vec<u64> = collector.receipt_seqs(&host, &instance).await.into_iter().collect();
        assert_eq!(stored, expected, "{instance}");
    }

    // Of the poisoned identity only the good reports were stored.
    let stored: Vec<u64> =
        collector.receipt_seqs(&hostile.host_id, &instance(0)).await.into_iter().collect();
    assert_eq!(stored, [1, 3, 5]);
    let metrics = collector.get_text("/metrics").await;
    assert!(
        metrics.contains("vigil_ingest_reports_rejected_total{reason=\"malformed\"} 4"),
        "{metrics}"
    );
}
