//! One enrolled host cannot fill the collector's store: a hostile client with its own
//! certificate sends a clean first report, then 100 reports of 4 096 new mount points each,
//! then 1 000 reports flagged `replayed` at once. Every report is acknowledged and stored (its
//! receipt), but the roll-ups hold no more series than the host's cap, the excess is counted
//! on `/metrics` and raises `agent.series_capped`, and the replays stop at what the host's
//! time away allows, refused with `RESOURCE_EXHAUSTED` naming the first one refused.

use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::Row;
use sqlx::sqlite::SqliteConnectOptions;
use tonic::Code;
use vigil_e2e::Collector;
use vigil_e2e::identity::TestIdentity;
use vigil_proto::v1::{
    AgentMessage, CpuData, Filesystem, FilesystemData, ProbeResult, Report, agent_message,
    probe_result,
};

const INSTANCE: &str = "0d4b6c2a-91e7-4c1f-b5a3-7e2f9d8c6b10";
const MAX_SERIES: u64 = 300;
const SLACK: u64 = 20;
/// The interval the test identity's Hello claims.
const INTERVAL_MS: u64 = 10_000;

const CONFIG: &str = "[enrollment]\nattempts_per_minute = 100\n\n\
[ingest]\nlive_reports_per_minute = 100000\nmax_series_per_host = 300\n\
max_new_series_per_day = 100000\nreplay_slack_reports = 20\n\n\
[incidents]\nsweep_every = \"100ms\"\nstart_grace = \"1ms\"\n\n\
[rules.\"clock.unsynchronised\"]\nenabled = false\n";

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn probe(data: probe_result::Data) -> ProbeResult {
    ProbeResult {
        probe: "p".into(),
        status: probe_result::Status::Ok as i32,
        data: Some(data),
        ..Default::default()
    }
}

fn report(seq: u64, replayed: bool, probes: Vec<ProbeResult>) -> AgentMessage {
    AgentMessage {
        kind: Some(agent_message::Kind::Report(Report {
            agent_instance: INSTANCE.into(),
            seq,
            collected_at_unix_ms: now_ms(),
            replayed,
            probes,
            ..Default::default()
        })),
    }
}

/// A report with 4 096 filesystems never seen before (one roll-up series each).
fn flood(seq: u64) -> AgentMessage {
    let filesystems = (0..4096)
        .map(|i| Filesystem {
            mount_point: format!("/r{seq}/m{i}"),
            size_bytes: 100,
            free_bytes: 50,
            ..Default::default()
        })
        .collect();
    report(seq, false, vec![probe(probe_result::Data::Filesystem(FilesystemData { filesystems }))])
}

/// (distinct series, rows) of the host's roll-ups, read from the store's file, read-only.
async fn rollups(collector: &Collector, host: &str) -> (u64, u64) {
    let options =
        SqliteConnectOptions::new().filename(collector.data_dir.join("vigil.db")).read_only(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.expect("open the store read-only");
    let row = sqlx::query(
        "SELECT COUNT(DISTINCT series) AS series, COUNT(*) AS rows FROM rollups_5m \
         WHERE host_id = ?",
    )
    .bind(host)
    .fetch_one(&pool)
    .await
    .expect("count roll-ups");
    let counts = (row.get::<i64, _>("series") as u64, row.get::<i64, _>("rows") as u64);
    pool.close().await;
    counts
}

fn counter(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_host_cannot_fill_the_store_or_replay_more_than_it_was_away() {
    let tmp = tempfile::tempdir().unwrap();
    let collector = Collector::start_with_config(&tmp.path().join("data"), None, CONFIG, &[]);
    let token = collector.enrollment_token("acme", "main", 1, "1h").await;
    let hostile = TestIdentity::enroll(&collector, &token, "hostile").await.unwrap();
    let host = hostile.host_id.clone();
    let started = Instant::now();

    // A clean first report (the host's baseline: two CPU series), then the flood.
    let cpu = probe(probe_result::Data::Cpu(CpuData { usage_ratio: 0.1, ..Default::default() }));
    let mut messages = vec![report(1, false, vec![cpu])];
    messages.extend((2..=101).map(flood));
    let (acked, err) = hostile.stream(&collector, INSTANCE, messages).await;
    assert!(err.is_none(), "{err:?}\n{}", collector.proc.log_text());
    assert_eq!(acked, (1..=101).collect::<Vec<u64>>(), "every report is acknowledged");

    // The roll-ups grew by the cap, not by 409 600 series.
    let (series, rows) = rollups(&collector, &host).await;
    assert_eq!(series, MAX_SERIES, "series stored for the host");
    // All reports fall in one or two 5-minute buckets.
    assert!(rows <= 2 * MAX_SERIES, "{rows} roll-up rows");

    // The excess is counted, per host and for the fleet.
    let refused = 100 * 4096 - (MAX_SERIES - 2);
    let metrics = collector.get_text("/metrics").await;
    let per_host = format!("vigil_host_rollup_readings_refused_total{{host_id=\"{host}\"}}");
    assert_eq!(counter(&metrics, &per_host), refused, "{metrics}");
    let fleet = "vigil_ingest_rollup_readings_refused_total{cap=\"host_full\"}";
    assert_eq!(counter(&metrics, fleet), refused, "{metrics}");

    // The finding is raised on the host, and its timeline says so.
    let incident = collector
        .wait_for("agent.series_capped", Duration::from_secs(20), async |c| {
            let list =
                c.get(&format!("/api/v1/incidents?rule=agent.series_capped&host={host}")).await;
            list["incidents"].as_array().and_then(|a| a.first().cloned())
        })
        .await;
    assert!(incident["summary"].as_str().unwrap_or("").contains("not stored"), "{incident}");
    let shown = collector.vigilctl(&["hosts", "show", &host]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("series_capped"), "{shown}");

    // 1 000 replays at once: the host was seen a moment ago, so only its last interval's
    // report and the slack get through; the rest are refused for the agent to keep.
    let away_ms = started.elapsed().as_millis() as u64;
    let replays: Vec<_> = (102..=1101).map(|seq| report(seq, true, Vec::new())).collect();
    let (acked, err) = hostile.stream(&collector, INSTANCE, replays).await;
    let accepted = acked.len() as u64;
    let budget = away_ms / INTERVAL_MS + 1 + SLACK;
    assert!((1 + SLACK..=budget).contains(&accepted), "{accepted} accepted, budget {budget}");
    assert_eq!(acked, (102..102 + accepted).collect::<Vec<u64>>());
    let err = err.expect("replays beyond the budget are refused");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    let refused_seq = err.metadata().get("vigil-seq").and_then(|v| v.to_str().ok());
    assert_eq!(refused_seq, Some((102 + accepted).to_string().as_str()), "{err:?}");
    let metrics = collector.get_text("/metrics").await;
    let limited = "vigil_ingest_reports_rejected_total{reason=\"replay_limited\"}";
    assert_eq!(counter(&metrics, limited), 1, "{metrics}");

    // Reconnecting at once brings no new slack: the host used it, and it grows back one
    // report per interval.
    let next = 102 + accepted;
    let replays: Vec<_> = (next..next + 100).map(|seq| report(seq, true, Vec::new())).collect();
    let (again, err) = hostile.stream(&collector, INSTANCE, replays).await;
    // Time away since the last stored report, and slack grown back since the first replay
    // stream: each at most the whole test's time in intervals.
    let intervals = started.elapsed().as_millis() as u64 / INTERVAL_MS;
    let budget = 1 + 2 * intervals;
    assert!(again.len() as u64 <= budget, "{} accepted on reconnect, budget {budget}", again.len());
    assert_eq!(err.map(|e| e.code()), Some(Code::ResourceExhausted));
    let accepted = accepted + again.len() as u64;

    // Every acknowledged report is stored: its receipt is there, and no other.
    let seqs = collector.receipt_seqs(&host, INSTANCE).await;
    assert_eq!(seqs, (1..102 + accepted).collect(), "receipts");
    let host_row: Value = collector.get(&format!("/api/v1/hosts/{host}")).await;
    assert_eq!(host_row["instances"][0]["max_seq"].as_u64(), Some(101 + accepted), "{host_row}");
}
