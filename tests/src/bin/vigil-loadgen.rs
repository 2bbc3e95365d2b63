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
    /// Collector URLs: agent i starts at the i-th (modulo their number) and moves to the
    /// next when its stream fails.
    collectors: Vec<String>,
    ca_sha256: String,
    token: String,
    agents: usize,
    rate: f64,
    seconds: u64,
    /// The first this many agents report a full root filesystem from their sixth report on
    /// (an L2 incident each).
    faulty: usize,
    /// Where to write one JSON line per agent: host id, instance, highest acknowledged seq.
    acks: Option<std::path::PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        collectors: Vec::new(),
        ca_sha256: String::new(),
        token: String::new(),
        agents: 100,
        rate: 1000.0,
        seconds: 30,
        faulty: 0,
        acks: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--collector" => args.collectors.push(value()?),
            "--faulty" => args.faulty = value()?.parse().map_err(|e| format!("--faulty: {e}"))?,
            "--acks" => args.acks = Some(value()?.into()),
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
                            [--agents N] [--rate REPORTS_PER_SECOND] [--seconds N] [--faulty N] \
                     [--acks FILE]\n\
                     --collector may be given several times: agents spread over the \
                     collectors and move to the next one when a stream fails"
                        .into(),
                );
            }
            other => return Err(format!("unknown argument {other:?}; see --help")),
        }
    }
    if args.ca_sha256.is_empty() || args.token.is_empty() {
        return Err("--ca-sha256 and --token are required (vigilctl tokens create --uses N)".into());
    }
    if args.collectors.is_empty() {
        args.collectors.push("https://127.0.0.1:7700".into());
    }
    for url in &args.collectors {
        let host = url.trim_start_matches("https://");
        if !(host.starts_with("127.") || host.starts_with("localhost") || host.starts_with("[::1]"))
        {
            return Err(format!("{url}: the load generator only targets loopback collectors"));
        }
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

/// A report shaped like a real one: facts, cpu, memory, four filesystems, three NICs. A
/// `faulty` agent's root filesystem has 1 GiB of 100 left from its sixth report on (a
/// condition present from the first report would go to the host's baseline review instead).
fn report(instance: &str, seq: u64, agent: usize, faulty: bool) -> Report {
    let faulty = faulty && seq > 5;
    let filesystems = ["/", "/var", "/home", "/boot"]
        .iter()
        .map(|m| Filesystem {
            mount_point: (*m).into(),
            device: "/dev/sda1".into(),
            fs_type: "ext4".into(),
            size_bytes: 100 << 30,
            free_bytes: if faulty && *m == "/" { 1 << 30 } else { (40 + seq % 10) << 30 },
            available_bytes: if faulty && *m == "/" { 1 << 30 } else { 35 << 30 },
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

/// What one simulated agent saw.
struct Outcome {
    host_id: String,
    instance: String,
    /// The highest seq the collectors acknowledged.
    acked: u64,
    latencies: Vec<Duration>,
    /// Streams that ended or could not be opened, after which the agent moved to the next
    /// collector URL.
    reconnects: u32,
    /// The longest time between two acknowledgements while the agent had reports waiting.
    longest_wait: Duration,
}

type Inbound = tonic::Streaming<CollectorMessage>;

/// Opens a report stream at `url` and waits for the collector's Welcome.
async fn open_stream(
    identity: &TestIdentity,
    url: &str,
    hello: &Hello,
) -> Result<(mpsc::Sender<AgentMessage>, Inbound), String> {
    let channel = identity.channel_at(url).await.map_err(|e| e.to_string())?;
    let mut client = IngestClient::new(channel);
    let (tx, rx) = mpsc::channel(256);
    tx.send(AgentMessage { kind: Some(agent_message::Kind::Hello(hello.clone())) })
        .await
        .map_err(|e| e.to_string())?;
    let mut inbound =
        client.report(ReceiverStream::new(rx)).await.map_err(|e| e.to_string())?.into_inner();
    inbound.message().await.map_err(|e| e.to_string())?;
    Ok((tx, inbound))
}

/// One simulated agent: enrols, then reports every `interval` until `stop_at` and waits for
/// the last acknowledgement. A stream that fails moves it to the next collector URL, where it
/// sends again every report not yet acknowledged, as the real agent does from its spool.
async fn agent(
    index: usize,
    args: &Args,
    interval: Duration,
    stop_at: Instant,
) -> Result<Outcome, String> {
    let hostname = format!("load-{index:05}");
    let urls = &args.collectors;
    let mut at = index % urls.len();
    let identity = TestIdentity::enroll_at(&urls[at], &args.ca_sha256, &args.token, &hostname)
        .await
        .map_err(|e| format!("agent {index}: enrol: {}", e.message()))?;
    let instance = uuid_like(index);
    let hello = Hello {
        agent_instance: instance.clone(),
        agent_version: "loadgen".into(),
        interval_seconds: interval.as_secs().max(1) as u32,
        machine_id: format!("loadgen-{index}-{}", std::process::id()),
        hostname,
        host_id: identity.host_id.clone(),
        ..Default::default()
    };
    let faulty = index < args.faulty;

    // Stagger agents across the interval, as a real fleet is.
    let offset = interval.mul_f64(index as f64 / args.agents.max(1) as f64);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + offset, interval);
    let mut outcome = Outcome {
        host_id: identity.host_id.clone(),
        instance: instance.clone(),
        acked: 0,
        latencies: Vec::new(),
        reconnects: 0,
        longest_wait: Duration::ZERO,
    };
    let mut waiting: VecDeque<(u64, Instant, AgentMessage)> = VecDeque::new();
    let mut last_progress = Instant::now();
    let give_up = stop_at + Duration::from_secs(120);
    let mut seq = 0;
    loop {
        let (tx, mut inbound) = match open_stream(&identity, &urls[at], &hello).await {
            Ok(stream) => stream,
            Err(e) => {
                if Instant::now() > give_up {
                    return Err(format!("agent {index}: {}: {e}", urls[at]));
                }
                outcome.reconnects += 1;
                at = (at + 1) % urls.len();
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let mut open = true;
        for (_, _, message) in &waiting {
            open &= tx.send(message.clone()).await.is_ok();
        }
        while open {
            if Instant::now() >= stop_at && waiting.is_empty() {
                return Ok(outcome);
            }
            tokio::select! {
                _ = ticker.tick(), if Instant::now() < stop_at => {
                    seq += 1;
                    let message = AgentMessage {
                        kind: Some(agent_message::Kind::Report(report(&instance, seq, index, faulty))),
                    };
                    if waiting.is_empty() {
                        last_progress = Instant::now();
                    }
                    waiting.push_back((seq, Instant::now(), message.clone()));
                    open = tx.send(message).await.is_ok();
                }
                message = inbound.message() => match message {
                    Ok(Some(CollectorMessage { kind: Some(collector_message::Kind::Ack(ack)) })) => {
                        let now = Instant::now();
                        outcome.longest_wait = outcome.longest_wait.max(now - last_progress);
                        last_progress = now;
                        outcome.acked = outcome.acked.max(ack.seq);
                        while waiting.front().is_some_and(|(s, _, _)| *s <= ack.seq) {
                            let (_, sent, _) = waiting.pop_front().expect("front");
                            outcome.latencies.push(now - sent);
                        }
                        if now >= stop_at && waiting.is_empty() {
                            return Ok(outcome);
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => open = false,
                },
            }
        }
        if Instant::now() > give_up {
            return Err(format!("agent {index}: {} reports never acknowledged", waiting.len()));
        }
        outcome.reconnects += 1;
        at = (at + 1) % urls.len();
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
    let (mut reconnects, mut longest_wait) = (0, Duration::ZERO);
    let mut acks = String::new();
    for task in tasks {
        match task.await {
            Ok(Ok(mut outcome)) => {
                latencies.append(&mut outcome.latencies);
                reconnects += outcome.reconnects;
                longest_wait = longest_wait.max(outcome.longest_wait);
                let line = serde_json::json!({
                    "host_id": outcome.host_id,
                    "instance": outcome.instance,
                    "acked": outcome.acked,
                });
                acks.push_str(&format!("{line}\n"));
            }
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
    println!(
        "reconnects={reconnects} longest wait for an acknowledgement ms={:.0}",
        ms(longest_wait)
    );
    if let Some(path) = &args.acks
        && let Err(e) = std::fs::write(path, acks)
    {
        eprintln!("vigil-loadgen: {}: {e}", path.display());
        failures += 1;
    }
    if failures > 0 {
        std::process::exit(1);
    }
}
