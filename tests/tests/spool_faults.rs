//! The spool under the faults of an ordinary world, with the real binaries: records damaged on
//! disk (truncated, zero-length, bits flipped in the header, the body and the seq, a directory
//! in a record's place), a state directory restored from a snapshot taken earlier, and a state
//! directory whose disk fills up. Each scenario ends by comparing every seq the agent made
//! with the collector's receipts: none missing (but what was damaged), none twice.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use vigil_e2e::{Agent, Collector, copy_tree, first_reported_host, host_events};

/// The seqs of `instance` with a receipt, asserting that none has two.
async fn receipts_once(collector: &Collector, host: &str, instance: &str) -> BTreeSet<u64> {
    let path = format!("/api/v1/hosts/{host}/receipts?instance={instance}&limit=100000");
    let list: Vec<u64> = collector.get(&path).await["receipts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["seq"].as_u64())
        .collect();
    let set: BTreeSet<u64> = list.iter().copied().collect();
    assert_eq!(set.len(), list.len(), "a seq of {instance} was stored twice: {list:?}");
    set
}

fn spooled_seqs(state: &Path) -> Vec<u64> {
    let mut seqs: Vec<u64> = std::fs::read_dir(state.join("spool/v2"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".rec")?.parse().ok())
        .collect();
    seqs.sort_unstable();
    seqs
}

fn record(state: &Path, seq: u64) -> PathBuf {
    state.join(format!("spool/v2/{seq:020}.rec"))
}

fn flip(path: &Path, offset: impl Fn(usize) -> usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = offset(bytes.len());
    bytes[at] ^= 0x04;
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
    collector.proc.kill();
    wait_until(
        "8 spooled reports",
        Duration::from_secs(30),
        || agent.proc.log_text(),
        || agent.spooled() >= 8,
    )
    .await;
    agent.proc.kill();
    let instance = agent.instance();
    let spooled = spooled_seqs(&state);
    let damaged: BTreeSet<u64> = spooled[..6].iter().copied().collect();
    let s = &spooled;
    std::fs::write(record(&state, s[0]), b"").unwrap(); // zero length
    let cut = std::fs::read(record(&state, s[1])).unwrap();
    std::fs::write(record(&state, s[1]), &cut[..cut.len() / 2]).unwrap(); // cut short
    flip(&record(&state, s[2]), |_| 1); // header: magic
    flip(&record(&state, s[3]), |len| len - 1); // body
    flip(&record(&state, s[4]), |_| 8); // the seq inside the header
    std::fs::remove_file(record(&state, s[5])).unwrap();
    std::fs::create_dir(record(&state, s[5])).unwrap(); // a directory in its place

    let collector = Collector::start(&data, Some(ports), &[]);
    let mut agent = Agent::start(&collector.grpc_url(), &state, &[]);
    let first_new = agent.last_seq() + 1;
    collector
        .wait_for("reports after the restart", Duration::from_secs(30), async |c| {
            let got = receipts_once(c, &host, &instance).await;
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

    let got = receipts_once(&collector, &host, &instance).await;
    let expected: BTreeSet<u64> = (1..=last).filter(|s| !damaged.contains(s)).collect();
    assert_eq!(got, expected, "every intact report arrives once, the damaged ones never");
    let quarantined = std::fs::read_dir(state.join("spool/quarantine")).unwrap().count();
    assert_eq!(quarantined, 6, "each damaged record is kept aside for a person to look at");
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
            let got = receipts_once(c, &host, &old).await;
            got.contains(&(snapshot_seq + 10)).then_some(())
        })
        .await;
    agent.proc.kill();
    let held_before_restore = receipts_once(&collector, &host, &old).await;

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
            let got = receipts_once(c, &host, &new).await;
            (got.len() >= 4 && agent.spooled() == 0).then_some(())
        })
        .await;
    assert!(agent.proc.terminate().success(), "{}", agent.proc.log_text());

    // Nothing the collector had acknowledged was replaced or dropped.
    let old_after = receipts_once(&collector, &host, &old).await;
    assert!(old_after.is_superset(&held_before_restore), "acknowledged reports of {old} lost");
    let old_max = *old_after.last().unwrap();
    assert_eq!(old_after, (1..=old_max).collect(), "no gap in {old}");
    // Everything collected after the restore arrived once, under the new instance.
    let new_got = receipts_once(&collector, &host, &new).await;
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

/// A small tmpfs mounted for one test, unmounted when dropped.
struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` at `path`, or says why it cannot (not root, no mount).
    fn mount(path: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Self { path: path.to_owned() })
    }

    /// Writes zeros into a file until the disk is full.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.path.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 4096];
        while file.write_all(&chunk).is_ok() {}
        let _ = file.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_keeps_the_agent_reporting_from_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = match SmallDisk::mount(&tmp.path().join("disk"), "4m") {
        Ok(disk) => disk,
        Err(why) => {
            assert!(
                std::env::var("VIGIL_REQUIRE_EXTERNAL").as_deref() != Ok("1"),
                "a tmpfs is required here (VIGIL_REQUIRE_EXTERNAL=1) but cannot be mounted: {why}"
            );
            eprintln!(
                "SKIPPED a_full_disk_keeps_the_agent_reporting_from_memory: {why} (run as root)"
            );
            return;
        }
    };
    let data = tmp.path().join("data");
    let mut collector = Collector::start(&data, None, &[]);
    let ports = (collector.grpc, collector.http);
    let state = disk.path.join("agent");
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
            receipts_once(c, &host, &instance).await.contains(&(back_seq + 1)).then_some(())
        })
        .await;
    assert!(agent.proc.terminate().success(), "{}", agent.proc.log_text());
    let last = agent.last_seq();
    let got = receipts_once(&collector, &host, &instance).await;
    assert_eq!(got, (1..=last).collect(), "every report arrives once");
    assert!(seq_while_full >= on_disk as u64);
}
