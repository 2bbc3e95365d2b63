//! `vigil-collector backup` and `restore` with the real binaries: a backup taken while an
//! agent reports, refused overwrites and restores, a restored store that holds what the source
//! held at the backup point, and a restored collector the same agent keeps reporting to with
//! its certificate.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use sqlx::Connection;
use vigil_e2e::mdstat::{DEGRADED, root_with};
use vigil_e2e::{Agent, Collector, first_reported_host, run};

/// Runs `vigil-collector --data-dir DIR ARGS` (the default config path, absent here, means
/// built-in defaults).
fn collector_cmd(data_dir: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--data-dir", data_dir.to_str().unwrap()];
    all.extend_from_slice(args);
    run("vigil-collector", &all)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The host's timeline, one line per event.
async fn timeline(collector: &Collector, host: &str) -> BTreeSet<String> {
    let got = collector.get(&format!("/api/v1/hosts/{host}")).await;
    got["events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| format!("{} {} {}", e["at_ms"], e["kind"], e["detail"]))
        .collect()
}

/// Every incident with its timeline, one line per entry: what a backup must carry.
async fn incident_lines(collector: &Collector) -> BTreeSet<String> {
    let list = collector.get("/api/v1/incidents?limit=1000").await;
    let mut lines = BTreeSet::new();
    for incident in list["incidents"].as_array().into_iter().flatten() {
        let number = incident["number"].as_str().unwrap();
        let shown = collector.get(&format!("/api/v1/incidents/{number}")).await;
        lines.insert(format!("{number} {} {}", incident["rule"], incident["resource"]));
        for entry in shown["timeline"].as_array().into_iter().flatten() {
            lines.insert(format!(
                "{number} {} {} {}",
                entry["at_ms"], entry["kind"], entry["detail"]
            ));
        }
    }
    lines
}

/// The outbox of the store in `data_dir`, read from its database file.
async fn outbox(data_dir: &Path) -> BTreeSet<(i64, i64, i64)> {
    let url = format!("sqlite://{}?mode=ro", data_dir.join("vigil.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query_as("SELECT id, incident_id, timeline_id FROM outbox")
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

fn ids(list: &[Value], key: &str) -> BTreeSet<String> {
    list.iter().filter_map(|v| v[key].as_str().map(str::to_owned)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_ingesting_restores_into_a_collector_the_same_agent_reports_to() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut source = Collector::start(&data, None, &[]);
    let ports = (source.grpc, source.http);
    let state = tmp.path().join("agent");
    // A degraded array: an incident (with its timeline and outbox entries) is in the backup.
    let root = root_with(tmp.path(), "root", DEGRADED);
    let mut agent =
        Agent::enroll_and_start(&source, &state, &["--root", root.to_str().unwrap()]).await;
    let host = first_reported_host(&source, Duration::from_secs(30)).await;
    let host = host["id"].as_str().unwrap().to_owned();
    let instance = agent.instance();
    source
        .wait_for("three reports", Duration::from_secs(30), async |c| {
            (c.receipts_once(&host, &instance).await.len() >= 3).then_some(())
        })
        .await;
    source
        // Degraded from the first report: found by the baseline review of a new host.
        .wait_for("an incident", Duration::from_secs(30), async |c| {
            let got = c.get("/api/v1/incidents").await;
            got["incidents"].as_array().is_some_and(|l| !l.is_empty()).then_some(())
        })
        .await;

    // Online, while the agent keeps reporting every second.
    let file = tmp.path().join("vigil.backup");
    let file_arg = file.to_str().unwrap();
    let out = collector_cmd(&data, &["backup", "--to", file_arg]);
    assert!(out.status.success(), "backup: {}", stderr(&out));
    assert!(stderr(&out).contains("backup written"), "{}", stderr(&out));
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the backup holds the CA key");
    let after_backup = source.receipts_once(&host, &instance).await;

    // Refusals: an existing backup file, the running collector's directory, a directory that
    // holds a store, a file that is not a backup.
    let out = collector_cmd(&data, &["backup", "--to", file_arg]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("give --force"), "{}", stderr(&out));
    let out = collector_cmd(&data, &["restore", "--from", file_arg, "--force"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("a collector is running"), "{}", stderr(&out));
    let restored = tmp.path().join("restored");
    let out = collector_cmd(&restored, &["restore", "--from", file_arg]);
    assert!(out.status.success(), "restore: {}", stderr(&out));
    let out = collector_cmd(&restored, &["restore", "--from", file_arg]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("already holds a store"), "{}", stderr(&out));
    let not_backup = data.join("vigil.db");
    let out = collector_cmd(
        &tmp.path().join("elsewhere"),
        &["restore", "--from", not_backup.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("is not a Vigil backup"), "{}", stderr(&out));
    for secret in ["tls/ca.key", "admin.token"] {
        let mode = std::fs::metadata(restored.join(secret)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{secret}");
    }

    // The restored store holds what the source held at the backup point: the same hosts, a
    // contiguous run of the agent's receipts that the source also holds, and the source's
    // timeline up to then.
    let copy = Collector::start(&restored, None, &[]);
    assert_eq!(ids(&copy.hosts().await, "id"), ids(&source.hosts().await, "id"));
    let held = copy.receipts_once(&host, &instance).await;
    let k = *held.last().expect("receipts in the backup");
    assert!(k >= 3, "{held:?}");
    assert_eq!(held, (1..=k).collect(), "a contiguous run of receipts");
    assert!(held.is_subset(&after_backup), "the copy holds what the source held");
    let copied_events = timeline(&copy, &host).await;
    assert!(copied_events.is_subset(&timeline(&source, &host).await), "{copied_events:?}");
    // Incidents with their timelines, and the outbox, as the source held them.
    let copied_incidents = incident_lines(&copy).await;
    assert!(!copied_incidents.is_empty(), "the incident is in the backup");
    let source_incidents = incident_lines(&source).await;
    assert!(copied_incidents.is_subset(&source_incidents), "{copied_incidents:?}");
    let copied_outbox = outbox(&restored).await;
    assert!(!copied_outbox.is_empty(), "the opening of the incident is in the outbox");
    assert!(copied_outbox.is_subset(&outbox(&data).await), "{copied_outbox:?}");
    let replica = |dir: &Path| std::fs::read_to_string(dir.join("replica.id")).unwrap();
    assert_ne!(replica(&data), replica(&restored), "a restored collector is a new replica");
    drop(copy);

    // The restored collector takes the source's place: the same agent, with the certificate
    // the source's CA issued, reports to it and is acknowledged.
    source.proc.kill();
    let copy = Collector::start(&restored, Some(ports), &[]);
    let before = agent.last_seq();
    copy.wait_for(
        "the agent's new reports on the restored collector",
        Duration::from_secs(40),
        async |c| {
            let got = c.receipts_once(&host, &instance).await;
            got.range(before + 1..).next().is_some().then_some(())
        },
    )
    .await;
    assert!(agent.proc.terminate().success(), "{}", agent.proc.log_text());
}
