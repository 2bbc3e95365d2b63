//! `vigil-loadgen`: drives a collector with many simulated agents over the real gRPC protocol
//! and real mutual TLS, and measures acknowledgement latency (report sent → cumulative Ack
//! received), i.e. the time to a durable commit. Each simulated agent enrols first with its own
//! key (so give it a token with enough uses, and a collector whose
//! `enrollment.attempts_per_minute` admits that many). Used for docs/benchmarks.md; loopback
//! targets only.
//!
//! ```text
//! vigil-loadgen --collector https://127.0.0.1:7700 --ca-sha256 HASH --token vge_… \
//!     --agents 100 --rate 1000 --seconds 30
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use vigil_e2e::identity::TestIdentity;
use vigil_proto::v1::{
    AgentMessage, CollectorMessage, CpuData, Filesystem, FilesystemData, Hello, HostFacts,
    MemoryData, NetworkData, NetworkInterface, ProbeResult, Report, agent_message,
    collector_message, ingest_client::IngestClient, probe_result,
};

struct Args {
    collector: String,
    ca_sha256: String,
    token: String,
    agents: usize,
    rate: f64,
    seconds: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        collector: "https://127.0.0.1:7700".into(),
        ca_sha256: String::new(),
        token: String::new(),
        agents: 100,
        rate: 1000.0,
        seconds: 30,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--collector" => args.collector = value()?,
            "--ca-sha256" => args.ca_sha256 = value()?,
            "--token" => args.token = value()?,
            "--agents" => args.agents = value()?.parse().map_err(|e| format!("--agents: {e}"))?,
            "--rate" => args.rate = value()?.parse().map_err(|e| format!("--rate: {e}"))?,
            "--seconds" => {
                args.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?
            }
            "--help" | "-h" => {
                return Err(
                    "usage: vigil-loadgen --ca-sha256 HASH --token TOKEN [--collector URL] \
                            [--agents N] [--rate REPORTS_PER_SECOND] [--seconds N]"
                        .into(),
                );
            }
            other => return Err(format!("unknown argument {other:?}; see --help")),
        }
    }
    if args.ca_sha256.is_empty() || args.token.is_empty() {
        return Err("--ca-sha256 and --token are required (vigilctl tokens create --uses N)".into());
    }
    let host = args.collector.trim_start_matches("https://");
    if !(host.starts_with("127.") || host.starts_with("localhost") || host.starts_with("[::1]")) {
        return Err("the load generator only targets loopback collectors".into());
    }
    Ok(args)
}

fn probe(name: &str, data: probe_result::Data) -> ProbeResult {
    ProbeResult {
        probe: name.into(),
        status: probe_result::Status::Ok as i32,
        message: String::new(),
        duration_us: 120,
        data: Some(data),
    }
}

/// A report shaped like a real one: facts, cpu, memory, four filesystems, three NICs.
fn report(instance: &str, seq: u64, agent: usize) -> Report {
    let filesystems = ["/", "/var", "/home", "/boot"]
        .iter()
        .map(|m| Filesystem {
            mount_point: (*m).into(),
            device: "/dev/sda1".into(),
            fs_type: "ext4".into(),
            size_bytes: 100 << 30,
            free_bytes: (40 + seq % 10) << 30,
            available_bytes: 35 << 30,
            inodes_total: 6_000_000,
            inodes_free: 5_000_000,
            ..Default::default()
        })
        .collect();
    let interfaces = ["eth0", "eth1", "bond0"]
        .iter()
        .map(|n| NetworkInterface {
            name: (*n).into(),
            oper_state: "up".into(),
            carrier: Some(true),
            speed_mbps: Some(10_000),
            rx_bytes: seq * 1_000_000,
            tx_bytes: seq * 500_000,
            ..Default::default()
        })
        .collect();
    Report {
        agent_instance: instance.into(),
        seq,
        collected_at_unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
        facts: Some(HostFacts {
            hostname: format!("load-{agent:05}"),
            os_name: "Debian GNU/Linux 12 (bookworm)".into(),
            kernel: "6.1.0-18-amd64".into(),
            cpu_model: "Intel(R) Xeon(R) Silver 4214 CPU @ 2.20GHz".into(),
            cpu_cores: 48,
            memory_total_bytes: 256 << 30,
            machine_vendor: "Dell Inc.".into(),
            machine_model: "PowerEdge R740".into(),
            agent_version: "loadgen".into(),
            ..Default::default()
        }),
        probes: vec![
            probe(
                "cpu",
                probe_result::Data::Cpu(CpuData {
                    usage_ratio: 0.2,
                    load1: 1.0,
                    ..Default::default()
                }),
            ),
            probe(
                "memory",
                probe_result::Data::Memory(MemoryData {
                    total_bytes: 256 << 30,
                    available_bytes: 100 << 30,
                    ..Default::default()
                }),
            ),
            probe("filesystem", probe_result::Data::Filesystem(FilesystemData { filesystems })),
            probe("network", probe_result::Data::Network(NetworkData { interfaces })),
        ],
        replayed: false,
        spool: None,
    }
}

async fn agent(
    index: usize,
    args: &Args,
    interval: Duration,
    stop_at: Instant,
) -> Result<Vec<Duration>, String> {
    let hostname = format!("load-{index:05}");
    let identity =
        TestIdentity::enroll_at(&args.collector, &args.ca_sha256, &args.token, &hostname)
            .await
            .map_err(|e| format!("agent {index}: enrol: {}", e.message()))?;
    let channel =
        identity.channel_at(&args.collector).await.map_err(|e| format!("agent {index}: {e}"))?;
    let mut client = IngestClient::new(channel);
    let instance = uuid_like(index);
    let (tx, rx) = mpsc::channel(64);
    let hello = Hello {
        agent_instance: instance.clone(),
        agent_version: "loadgen".into(),
        interval_seconds: interval.as_secs().max(1) as u32,
        machine_id: format!("loadgen-{index}-{}", std::process::id()),
        hostname,
        host_id: identity.host_id.clone(),
        ..Default::default()
    };
    tx.send(AgentMessage { kind: Some(agent_message::Kind::Hello(hello)) })
        .await
        .map_err(|e| e.to_string())?;
    let mut inbound =
        client.report(ReceiverStream::new(rx)).await.map_err(|e| e.to_string())?.into_inner();
    inbound.message().await.map_err(|e| e.to_string())?;

    // Stagger agents across the interval, as a real fleet is.
    let offset = interval.mul_f64(index as f64 / args.agents.max(1) as f64);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + offset, interval);
    let mut in_flight: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut latencies = Vec::new();
    let mut seq = 0;
    loop {
        tokio::select! {
            _ = ticker.tick(), if Instant::now() < stop_at => {
                seq += 1;
                let msg = AgentMessage { kind: Some(agent_message::Kind::Report(report(&instance, seq, index))) };
                in_flight.push_back((seq, Instant::now()));
                tx.send(msg).await.map_err(|e| e.to_string())?;
            }
            message = inbound.message() => match message {
                Ok(Some(CollectorMessage { kind: Some(collector_message::Kind::Ack(ack)) })) => {
                    let now = Instant::now();
                    while in_flight.front().is_some_and(|(s, _)| *s <= ack.seq) {
                        let (_, sent) = in_flight.pop_front().expect("front");
                        latencies.push(now - sent);
                    }
                    if Instant::now() >= stop_at && in_flight.is_empty() {
                        return Ok(latencies);
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => return Ok(latencies),
                Err(status) => return Err(format!("agent {index}: {status}")),
            },
        }
    }
}

fn uuid_like(index: usize) -> String {
    let pid = std::process::id();
    format!("{pid:08x}-0000-4000-8000-{index:012x}")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("vigil-loadgen: {message}");
            std::process::exit(2);
        }
    };
    let per_agent = args.rate / args.agents as f64;
    let interval = Duration::from_secs_f64(1.0 / per_agent);
    let stop_at = Instant::now() + Duration::from_secs(args.seconds);
    let args = std::sync::Arc::new(args);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for index in 0..args.agents {
        let args = args.clone();
        tasks.push(tokio::spawn(async move { agent(index, &args, interval, stop_at).await }));
    }
    let mut latencies = Vec::new();
    let mut failures = 0;
    for task in tasks {
        match task.await {
            Ok(Ok(mut l)) => latencies.append(&mut l),
            Ok(Err(e)) => {
                failures += 1;
                eprintln!("{e}");
            }
            Err(e) => {
                failures += 1;
                eprintln!("task: {e}");
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "agents={} target_rate={}/s acked={} achieved_rate={:.0}/s failures={}",
        args.agents,
        args.rate,
        latencies.len(),
        latencies.len() as f64 / elapsed,
        failures
    );
    println!(
        "ack latency ms: p50={:.2} p90={:.2} p99={:.2} p99.9={:.2} max={:.2}",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 90.0)),
        ms(percentile(&latencies, 99.0)),
        ms(percentile(&latencies, 99.9)),
        ms(latencies.last().copied().unwrap_or_default()),
    );
    if failures > 0 {
        std::process::exit(1);
    }
}
