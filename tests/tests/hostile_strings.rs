//! What a host or client sends is data, never control, wherever it comes out: hostnames, OS
//! names, kernels and sensor names carrying escape sequences, OSC titles and hyperlinks,
//! carriage returns, newlines, bidi overrides and a mebibyte of text reach `vigilctl`'s
//! terminal output, the collector's log and `/metrics` without one control character, without
//! a forged log line and bounded; and a flood of requests with an unknown token writes a few
//! log lines while a counter counts every one.

use std::time::Duration;

use vigil_e2e::Collector;
use vigil_e2e::identity::TestIdentity;
use vigil_proto::v1::{
    AgentMessage, HostFacts, ProbeResult, RaidArray, RaidData, RaidMember, Report, SensorData,
    TemperatureSensor, agent_message, probe_result,
};

const INSTANCE: &str = "3b0d6c1e-2f4a-4c8b-9e7d-1a2b3c4d5e6f";

/// A line the attacker would like the log to hold; its timestamp is one the collector never
/// writes, so a line starting with it was forged.
const FORGED: &str = "\n1999-01-01T00:00:00.000000Z  INFO vigil_collector::server: forged";

/// Everything a terminal or log reader interprets in one string.
fn hostile(what: &str) -> String {
    format!(
        "{what}\u{1b}[2J\u{1b}]0;owned title\u{7}\u{1b}]8;;http://evil.example/\u{1b}\\click\
         \u{1b}]8;;\u{1b}\\\r\u{9b}31m\u{202e}gpj.exe\u{2066}\u{7f}{FORGED}\nFAKE ROW"
    )
}

/// Characters that must never come out: C0 controls but the output's own line ends, DEL, C1
/// controls, bidi embeddings, overrides and isolates, zero-width and other hiding format
/// characters. An oracle of its own, independent of the collector's sanitiser.
fn unsafe_chars(text: &str) -> Vec<(usize, char)> {
    text.char_indices()
        .filter(|(_, c)| {
            let u = u32::from(*c);
            (u < 0x20 && *c != '\n')
                || (0x7f..=0x9f).contains(&u)
                || (0x202a..=0x202e).contains(&u)
                || (0x2066..=0x2069).contains(&u)
                || (0x200b..=0x200f).contains(&u)
                || u == 0xfeff
        })
        .collect()
}

fn assert_inert(what: &str, text: &str) {
    let bad = unsafe_chars(text);
    assert!(bad.is_empty(), "{what}: {} unsafe characters, first {:?}", bad.len(), &bad[..1]);
}

/// One line of the collector's log as it writes them: `<RFC 3339 time>  <LEVEL> <target>: `.
fn is_collector_line(line: &str) -> bool {
    let mut words = line.split_whitespace();
    let time = words.next().unwrap_or("");
    let level = words.next().unwrap_or("");
    let target = words.next().unwrap_or("");
    time.len() == 27
        && time.starts_with("20")
        && time.as_bytes()[10] == b'T'
        && time.ends_with('Z')
        && ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level)
        && target.ends_with(':')
        && target
            .trim_end_matches(':')
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_:".contains(c))
}

fn report(seq: u64, name: &str, degraded: bool) -> AgentMessage {
    let member =
        |device: &str, failed| RaidMember { device: device.into(), failed, ..Default::default() };
    let array = RaidArray {
        name: name.into(),
        level: "raid1".into(),
        state: "active".into(),
        raid_disks: 2,
        active_disks: if degraded { 1 } else { 2 },
        failed_disks: u32::from(degraded),
        degraded,
        members: vec![member("sda2", false), member("sdb2", degraded)],
        ..Default::default()
    };
    let sensor = TemperatureSensor { name: name.into(), celsius: 40.0, ..Default::default() };
    let probe = |probe: &str, data| ProbeResult {
        probe: probe.into(),
        status: probe_result::Status::Ok as i32,
        message: name.into(),
        data: Some(data),
        ..Default::default()
    };
    AgentMessage {
        kind: Some(agent_message::Kind::Report(Report {
            agent_instance: INSTANCE.into(),
            seq,
            collected_at_unix_ms: 1,
            facts: Some(HostFacts {
                hostname: name.into(),
                os_name: name.into(),
                kernel: name.into(),
                cpu_model: name.into(),
                ..Default::default()
            }),
            probes: vec![
                probe("raid", probe_result::Data::Raid(RaidData { arrays: vec![array] })),
                probe(
                    "hwmon",
                    probe_result::Data::Sensors(SensorData {
                        temperatures: vec![sensor],
                        ..Default::default()
                    }),
                ),
            ],
            ..Default::default()
        })),
    }
}

fn stdout_of(out: std::process::Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap_or_else(|e| panic!("{what}: not UTF-8: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_strings_reach_terminal_log_and_metrics_as_inert_bounded_text() {
    let tmp = tempfile::tempdir().unwrap();
    // Limits raised so a mebibyte-long name is accepted by ingest and must be bounded later.
    let config = "[ingest]\nmax_string_bytes = 2097152\nmax_report_bytes = 16777216\n";
    let c = Collector::start_with_config(&tmp.path().join("data"), None, config, &[]);
    let token = c.enrollment_token("acme", "main", 2, "1h").await;

    // Enrolment with a hostile hostname (within the 253 bytes enrolment takes): this host never
    // reports, so the list shows the enrolled name.
    let enrolled = hostile("enrolled");
    assert!(enrolled.len() + "machine-of-".len() <= 253, "{}", enrolled.len());
    let quiet = TestIdentity::enroll(&c, &token, &enrolled).await.unwrap();

    // A host reporting hostile facts and sensor names: one short, one a mebibyte long.
    let loud = TestIdentity::enroll(&c, &token, "loud").await.unwrap();
    let long = format!("{}{}", hostile("md0"), "x".repeat(1 << 20));
    let (acked, err) = loud
        .stream(&c, INSTANCE, vec![report(1, &hostile("md0"), false), report(2, &long, true)])
        .await;
    assert_eq!((acked, err.map(|e| e.to_string())), (vec![1, 2], None));

    // A Hello whose agent instance is a mebibyte of hostile text: refused, and logged bounded.
    let (_, err) =
        loud.stream(&c, &format!("{}{}", hostile("inst"), "y".repeat(1 << 20)), vec![]).await;
    assert!(err.is_some(), "a non-UUID agent instance is refused");

    // The raid.degraded incident on the hostile array (its resource is the array's name).
    let open = c
        .wait_for("the raid incident", Duration::from_secs(20), async |c| {
            let list = c.get("/api/v1/incidents").await;
            list["incidents"].as_array().filter(|l| !l.is_empty()).map(Vec::len)
        })
        .await;

    // vigilctl: every view of these hosts is inert, one line per row.
    let list = stdout_of(c.vigilctl(&["hosts"]), "vigilctl hosts");
    assert_inert("vigilctl hosts", &list);
    assert_eq!(list.lines().count(), 3, "a header and one line per host:\n{list}");
    assert!(!list.lines().any(|l| l.starts_with("FAKE ROW") || l.starts_with("1999-")), "{list}");
    assert!(list.contains("\\u{1b}[2J"), "escapes are shown:\n{list}");
    assert!(list.lines().all(|l| l.chars().count() < 2_000), "bounded:\n{list}");
    for host in [&quiet.host_id, &loud.host_id] {
        let shown = stdout_of(c.vigilctl(&["hosts", "show", &host[..8]]), "vigilctl hosts show");
        assert_inert("vigilctl hosts show", &shown);
        assert!(!shown.lines().any(|l| l.starts_with("FAKE ROW")), "{shown}");
        assert!(shown.len() < 16 * 1024, "bounded: {} bytes", shown.len());
    }
    let incidents = stdout_of(c.vigilctl(&["incidents"]), "vigilctl incidents");
    assert_inert("vigilctl incidents", &incidents);
    assert_eq!(incidents.lines().count(), 1 + open, "{incidents}");
    let json = stdout_of(c.vigilctl(&["--json", "hosts"]), "vigilctl --json hosts");
    assert_inert("vigilctl --json hosts", &json);
    let parsed: serde_json::Value = serde_json::from_str(&json).expect("still JSON");
    assert!(parsed["hosts"].as_array().unwrap().iter().any(|h| h["hostname"] == enrolled));

    // /metrics: label values carry no control character, and every line is a sample or comment.
    let metrics = c.get_text("/metrics").await;
    assert_inert("/metrics", &metrics);
    assert!(metrics.contains("\\\\u{1b}[2J"), "the array's label shows the escape");
    assert!(metrics.lines().all(|l| l.len() < 4_096), "label values are bounded");

    // The log: every line one of the collector's own, none forged, none long.
    let log = c.proc.log_text();
    assert_inert("the collector's log", &log);
    for line in log.lines() {
        assert!(is_collector_line(line), "not a line the collector writes: {line:?}");
        assert!(line.len() < 4_096, "a log line of {} bytes", line.len());
    }
    assert!(!log.lines().any(|l| l.starts_with("1999-")), "a forged line:\n{log}");
    assert!(log.len() < 256 * 1024, "the log holds {} bytes", log.len());
    assert!(log.contains("enrolled\\u{1b}[2J"), "the hostile names are in the log, escaped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unknown_tokens_writes_a_few_lines_and_counts_every_request() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start_with_config(&tmp.path().join("data"), None, "", &[]);
    let refused =
        |log: &str| log.lines().filter(|l| l.contains("unknown or revoked token")).count();
    let before = refused(&c.proc.log_text());
    let lines_before = c.proc.log_text().lines().count();

    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/hosts", c.http_url());
    for i in 0..2_000 {
        let status = client
            .get(&url)
            .bearer_auth(format!("vgo_unknown_{i}"))
            .send()
            .await
            .expect("request")
            .status();
        assert_eq!(status.as_u16(), 401);
    }

    let metrics = c.get_text("/metrics").await;
    assert!(
        metrics.contains("vigil_api_unauthenticated_requests_total{reason=\"unknown_token\"} 2000"),
        "{}",
        metrics.lines().filter(|l| l.contains("unauthenticated")).collect::<Vec<_>>().join("\n")
    );
    let log = c.proc.log_text();
    let lines = refused(&log) - before;
    // One line a minute per source address: one, or two if the flood crossed a minute.
    assert!((1..=2).contains(&lines), "{lines} lines for 2 000 refused requests:\n{log}");
    let suppressed = format!(
        "vigil_log_lines_suppressed_total{{event=\"api_token_refused\"}} {}",
        2_000 - lines
    );
    assert!(metrics.contains(&suppressed), "{suppressed} missing");
    assert!(
        log.lines().count() - lines_before < 10,
        "the log grew by {} lines",
        log.lines().count() - lines_before
    );
}
