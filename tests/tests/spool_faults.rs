//! The spool under the faults of an ordinary world, with the real binaries: records damaged on
//! disk (cut short, zeroed, bits flipped in the header, the body and the seq, a directory in a
//! segment's place), a state directory restored from a snapshot taken earlier, and a state
//! directory whose disk fills up. Each scenario ends by comparing every seq the agent made
//! with the collector's receipts: none missing (but what was damaged), none twice.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use vigil_e2e::{Agent, Collector, SmallDisk, copy_tree, first_reported_host, host_events};

/// Where each record of the agent's spool sits: (seq, segment, offset, length), read the way
/// the spool lays records out (28-byte headers, the seq at 8, the body length at 16).
fn records(state: &Path) -> Vec<(u64, PathBuf, usize, usize)> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(state.join("spool/v2"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segments.sort();
    let mut out = Vec::new();
    for path in segments {
        let bytes = std::fs::read(&path).unwrap();
        let mut at = 0;
        while at + 28 <= bytes.len() {
            let seq = u64::from_le_bytes(bytes[at + 8..at + 16].try_into().unwrap());
            let len = 28 + u32::from_le_bytes(bytes[at + 16..at + 20].try_into().unwrap()) as usize;
            out.push((seq, path.clone(), at, len));
            at += len;
        }
    }
    out
}

/// Changes the bytes of one record in place.
fn damage(path: &Path, change: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).unwrap();
    change(&mut bytes);
    std::fs::write(path, bytes).unwrap();
}

async fn wait_until(
    what: &str,
    timeout: Duration,
    log: impl Fn() -> String,
    check: impl Fn() -> bool,
) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}\n{}", log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_spool_records_are_quarantined_and_every_other_report_arrives() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut collector = Collector::start(&data, None, &[]);
    let ports = (collector.grpc, collector.http);
    let state = tmp.path().join("agent");
    let mut agent = Agent::enroll_and_start(&collector, &state, &[]).await;
    let host = first_reported_host(&collector, Duration::from_secs(30)).await;
    let host = host["id"].as_str().unwrap().to_owned();

    // The collector goes away; the spool fills; the agent is killed with reports on disk.
    // Reports made before the kill may have reached the collector unacknowledged, so only
    // those made after it are damaged: the collector cannot hold any of them.
    collector.proc.kill();
    let made_before_kill = agent.last_seq();
    wait_until(
        "10 reports spooled after the kill",
        Duration::from_secs(30),
        || agent.proc.log_text(),
        || agent.spooled_seqs().iter().filter(|&&s| s > made_before_kill).count() >= 10,
    )
    .await;
    agent.proc.kill();
    let instance = agent.instance();
    let waiting: Vec<u64> =
        agent.spooled_seqs().into_iter().filter(|&s| s > made_before_kill).collect();
    let all = records(&state);
    let at = |seq: u64| all.iter().find(|r| r.0 == seq).cloned().unwrap();
    // Every other waiting report is damaged, the last one cut short as by a crash in the
    // middle of its append.
    let picks: Vec<u64> = waiting.iter().copied().skip(1).step_by(2).take(4).collect();
    let last = *waiting.last().unwrap();
    assert!(!picks.contains(&last), "{waiting:?}");
    let (zeroed, header, body, seq_field) =
        (at(picks[0]), at(picks[1]), at(picks[2]), at(picks[3]));
    damage(&zeroed.1, |b| b[zeroed.2..zeroed.2 + zeroed.3].fill(0));
    damage(&header.1, |b| b[header.2 + 1] ^= 0x04);
    damage(&body.1, |b| b[body.2 + body.3 - 1] ^= 0x04);
    damage(&seq_field.1, |b| b[seq_field.2 + 8] ^= 0x04);
    let torn = at(last);
    damage(&torn.1, |b| b.truncate(torn.2 + torn.3 / 2));
    // And a directory where a segment should be.
    std::fs::create_dir(state.join("spool/v2/99999999999999999999.seg")).unwrap();
    let damaged: BTreeSet<u64> = picks.iter().copied().chain([last]).collect();

    let collector = Collector::start(&data, Some(ports), &[]);
    let mut agent = Agent::start(&collector.grpc_url(), &state, &[]);
    let first_new = agent.last_seq() + 1;
    collector
        .wait_for("reports after the restart", Duration::from_secs(30), async |c| {
            let got = c.receipts_once(&host, &instance).await;
            (got.contains(&(first_new + 1)) && agent.spooled() == 0).then_some(())
        })
        .await;
    // Per-host series come from the replica holding the host's stream: read them while it is up.
    let counter = format!("vigil_host_agent_spool_quarantined_total{{host_id=\"{host}\"}} 6");
    collector
        .wait_for("the quarantine count on /metrics", Duration::from_secs(10), async |c| {
            c.get_text("/metrics").await.contains(&counter).then_some(())
        })
        .await;
    assert!(agent.proc.terminate().success(), "{}", agent.proc.log_text());
    let last = agent.last_seq();

    let got = collector.receipts_once(&host, &instance).await;
    let expected: BTreeSet<u64> = (1..=last).filter(|s| !damaged.contains(s)).collect();
    assert_eq!(got, expected, "every intact report arrives once, the damaged ones never");
    let quarantined = std::fs::read_dir(state.join("spool/quarantine")).unwrap().count();
    assert_eq!(quarantined, 6, "each damaged record is kept aside for a person to look at");
    assert!(agent.spooled_seqs().is_empty(), "the damage is cut out of the spool");
    let log = agent.proc.log_text();
    assert!(log.contains("damaged spool record quarantined"), "{log}");
    let events = host_events(&collector, &host, "spool_quarantined").await;
    assert!(
        events.iter().any(|e| e["detail"].as_str().unwrap().starts_with("6 spool records")),
        "the collector is told: {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_directory_restored_from_a_snapshot_loses_nothing_and_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut collector = Collector::start(&data, None, &[]);
    let ports = (collector.grpc, collector.http);
    let state = tmp.path().join("agent");
    let mut agent = Agent::enroll_and_start(&collector, &state, &[]).await;
    let host = first_reported_host(&collector, Duration::from_secs(30)).await;
    let host = host["id"].as_str().unwrap().to_owned();
    let old = agent.instance();

    // A snapshot, then ten more reports acknowledged.
    agent.proc.kill();
    let snapshot = tmp.path().join("snapshot");
    copy_tree(&state, &snapshot);
    let snapshot_seq = agent.last_seq();
    let mut agent = Agent::start(&collector.grpc_url(), &state, &[]);
    collector
        .wait_for("ten reports after the snapshot", Duration::from_secs(40), async |c| {
            let got = c.receipts_once(&host, &old).await;
            got.contains(&(snapshot_seq + 10)).then_some(())
        })
        .await;
    agent.proc.kill();
    let held_before_restore = collector.receipts_once(&host, &old).await;

    // The snapshot is restored while the collector is away, and the agent collects new
    // reports under seqs the collector already holds with other content.
    std::fs::remove_dir_all(&state).unwrap();
    copy_tree(&snapshot, &state);
    collector.proc.kill();
    let restored_at_ms = now_ms();
    let mut agent = Agent::start(&collector.grpc_url(), &state, &[]);
    wait_until(
        "2 new reports spooled",
        Duration::from_secs(30),
        || agent.proc.log_text(),
        || agent.spooled() >= 2,
    )
    .await;
    let collector = Collector::start(&data, Some(ports), &[]);
    collector
        .wait_for("a new instance", Duration::from_secs(30), async |_| {
            (agent.instance() != old).then_some(())
        })
        .await;
    let new = agent.instance();
    collector
        .wait_for("the new instance's reports", Duration::from_secs(30), async |c| {
            let got = c.receipts_once(&host, &new).await;
            (got.len() >= 4 && agent.spooled() == 0).then_some(())
        })
        .await;
    assert!(agent.proc.terminate().success(), "{}", agent.proc.log_text());

    // Nothing the collector had acknowledged was replaced or dropped.
    let old_after = collector.receipts_once(&host, &old).await;
    assert!(old_after.is_superset(&held_before_restore), "acknowledged reports of {old} lost");
    let old_max = *old_after.last().unwrap();
    assert_eq!(old_after, (1..=old_max).collect(), "no gap in {old}");
    // Everything collected after the restore arrived once, under the new instance.
    let new_got = collector.receipts_once(&host, &new).await;
    assert_eq!(new_got, (1..=agent.last_seq()).collect(), "no gap in {new}");
    let receipts: Vec<Value> = collector
        .get(&format!("/api/v1/hosts/{host}/receipts?instance={old}&limit=100000"))
        .await["receipts"]
        .as_array()
        .unwrap()
        .clone();
    let reused = receipts
        .iter()
        .filter(|r| r["seq"].as_u64().unwrap() <= old_max)
        .filter(|r| r["collected_at_ms"].as_i64().unwrap() >= restored_at_ms)
        .filter(|r| r["seq"].as_u64().unwrap() <= snapshot_seq + 10)
        .count();
    assert_eq!(reused, 0, "a report collected after the restore overwrote an acknowledged seq");

    // The host's timeline says why.
    for kind in ["state_rolled_back", "seq_reused", "instance_replaced"] {
        let events = host_events(&collector, &host, kind).await;
        assert!(!events.is_empty(), "no {kind} event:\n{}", collector.proc.log_text());
    }
    let replaced = &host_events(&collector, &host, "instance_replaced").await[0];
    let detail = replaced["detail"].as_str().unwrap();
    assert!(detail.contains(&old) && detail.contains(&new), "{detail}");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_keeps_the_agent_reporting_from_memory() {
    let tmp = tempfile::tempdir().unwrap();
    // The state directory is the small disk itself; the agent's log stays outside it, as a
    // journal would.
    let state = tmp.path().join("agent");
    let Some(disk) =
        SmallDisk::mount_or_skip(&state, "4m", "a_full_disk_keeps_the_agent_reporting_from_memory")
    else {
        return;
    };
    let data = tmp.path().join("data");
    let mut collector = Collector::start(&data, None, &[]);
    let ports = (collector.grpc, collector.http);
    let mut agent = Agent::enroll_and_start(&collector, &state, &[]).await;
    let host = first_reported_host(&collector, Duration::from_secs(30)).await;
    let host = host["id"].as_str().unwrap().to_owned();
    let instance = agent.instance();

    // Reports wait on disk while the collector is away; then the disk fills up.
    collector.proc.kill();
    wait_until(
        "3 spooled reports",
        Duration::from_secs(30),
        || agent.proc.log_text(),
        || agent.spooled() >= 3,
    )
    .await;
    let on_disk = agent.spooled();
    let filler = disk.fill();
    wait_until(
        "the agent to hold reports in memory",
        Duration::from_secs(30),
        || agent.proc.log_text(),
        || agent.proc.log_text().contains("holding reports in memory"),
    )
    .await;

    // The collector comes back while the disk is still full: the agent keeps reporting, and
    // the collector shows the condition.
    let collector = Collector::start(&data, Some(ports), &[]);
    let gauge = format!("vigil_host_agent_spool_in_memory{{host_id=\"{host}\"}} 1");
    collector
        .wait_for("the in-memory spool on /metrics", Duration::from_secs(30), async |c| {
            c.get_text("/metrics").await.contains(&gauge).then_some(())
        })
        .await;
    collector
        .wait_for("an agent.spool_in_memory incident", Duration::from_secs(30), async |c| {
            let list = c.get("/api/v1/incidents").await;
            list["incidents"]
                .as_array()?
                .iter()
                .find(|i| i["rule"] == "agent.spool_in_memory" && i["host_id"] == host.as_str())
                .cloned()
        })
        .await;
    assert_eq!(agent.spooled(), 0, "the {on_disk} reports spooled on disk were sent");
    let seq_while_full = agent.last_seq();
    assert!(seq_while_full > 0, "the seq is kept on a full disk");

    // Space comes back: the agent goes back to disk and loses nothing.
    std::fs::remove_file(filler).unwrap();
    wait_until(
        "the agent back on disk",
        Duration::from_secs(30),
        || agent.proc.log_text(),
        || agent.proc.log_text().contains("can be written again"),
    )
    .await;
    let back_seq = agent.last_seq();
    collector
        .wait_for("reports after the disk recovered", Duration::from_secs(30), async |c| {
            c.receipts_once(&host, &instance).await.contains(&(back_seq + 1)).then_some(())
        })
        .await;
    assert!(agent.proc.terminate().success(), "{}", agent.proc.log_text());
    let last = agent.last_seq();
    let got = collector.receipts_once(&host, &instance).await;
    assert_eq!(got, (1..=last).collect(), "every report arrives once");
    assert!(seq_while_full >= on_disk as u64);
}

#[test]
fn a_log_on_a_full_disk_does_not_stop_the_agent() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(disk) = SmallDisk::mount_or_skip(
        &tmp.path().join("logs"),
        "64k",
        "a_log_on_a_full_disk_does_not_stop_the_agent",
    ) else {
        return;
    };
    disk.fill();
    let log = std::fs::File::create(disk.path.join("agent.log")).unwrap();
    let out = Command::new(vigil_e2e::bin("vigil-agent"))
        .args(["--once", "--log", "debug", "--state-dir"])
        .arg(tmp.path().join("state"))
        .stderr(log)
        .output()
        .unwrap();
    assert!(out.status.success(), "exit {:?}", out.status);
    let report: Value = serde_json::from_slice(&out.stdout).expect("the report still comes out");
    assert!(report["probes"].as_array().is_some_and(|p| !p.is_empty()), "{report}");
}
