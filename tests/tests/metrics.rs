//! The operators' view end to end: a collector with real agents (one on the node-exporter
//! fixture tree, one on this machine) and a synthetic host with SMART disks and services,
//! scraped by a real Prometheus; `promtool check metrics` on the live `/metrics`; then every
//! panel query and template variable of the shipped Grafana dashboards run against
//! Prometheus's HTTP API, each required to return data.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use vigil_e2e::identity::TestIdentity;
use vigil_e2e::prometheus::{Prometheus, promtool};
use vigil_e2e::{Agent, Collector};
use vigil_proto::v1::{
    AgentMessage, Filesystem, FilesystemData, ProbeResult, Report, ServicesData, SmartData,
    SmartDevice, UnitStatus, agent_message, probe_result,
};

const CONFIG: &str = "[enrollment]\nattempts_per_minute = 100\n\n[incidents]\nsweep_every = \"100ms\"\nstart_grace = \"1ms\"\n\n\
[sla]\nsweep_every = \"100ms\"\nlease_ttl = \"1s\"\n\n[rules.\"clock.unsynchronised\"]\nenabled = false\n";

const INSTANCE: &str = "5b8f7c1e-2d3a-4e6f-8a9b-0c1d2e3f4a5b";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// A host with what the fixture trees lack: SMART disks (one failing), systemd units (one
/// failed) and filesystems.
fn synthetic_report(seq: u64) -> AgentMessage {
    let probe = |name: &str, data| ProbeResult {
        probe: name.into(),
        status: probe_result::Status::Ok as i32,
        data: Some(data),
        ..Default::default()
    };
    let disk = |name: &str, passed: bool, reallocated: u64| SmartDevice {
        name: name.into(),
        protocol: "ATA".into(),
        health_passed: Some(passed),
        reallocated_sectors: Some(reallocated),
        pending_sectors: Some(0),
        temperature_celsius: Some(36.0),
        ..Default::default()
    };
    let nvme = SmartDevice {
        name: "/dev/nvme0".into(),
        protocol: "NVMe".into(),
        health_passed: Some(true),
        media_errors: Some(0),
        temperature_celsius: Some(41.0),
        ..Default::default()
    };
    let unit = |name: &str, state: &str| UnitStatus {
        name: name.into(),
        active_state: state.into(),
        load_state: "loaded".into(),
        configured: true,
        ..Default::default()
    };
    let fs = |mount: &str, free: u64| Filesystem {
        mount_point: mount.into(),
        device: "/dev/sda1".into(),
        fs_type: "ext4".into(),
        size_bytes: 100 << 30,
        free_bytes: free,
        available_bytes: free,
        inodes_total: 1_000_000,
        inodes_free: 900_000,
        ..Default::default()
    };
    AgentMessage {
        kind: Some(agent_message::Kind::Report(Report {
            agent_instance: INSTANCE.into(),
            seq,
            collected_at_unix_ms: 1,
            probes: vec![
                probe(
                    "smart",
                    probe_result::Data::Smart(SmartData {
                        devices: vec![
                            disk("/dev/sda", true, 0),
                            disk("/dev/sdb", false, 120),
                            nvme,
                        ],
                    }),
                ),
                probe(
                    "services",
                    probe_result::Data::Services(ServicesData {
                        units: vec![
                            unit("nginx.service", "active"),
                            unit("backup.service", "failed"),
                        ],
                        systemd_available: true,
                        ..Default::default()
                    }),
                ),
                probe(
                    "filesystem",
                    probe_result::Data::Filesystem(FilesystemData {
                        filesystems: vec![fs("/", 40 << 30), fs("/srv", 3 << 30)],
                    }),
                ),
            ],
            ..Default::default()
        })),
    }
}

/// Grafana's `label_values(expr, label)` as PromQL; other queries as they are.
fn variable_query(query: &str) -> String {
    let query = query.trim();
    if let Some(inner) = query.strip_prefix("label_values(").and_then(|q| q.strip_suffix(')')) {
        match inner.rsplit_once(',') {
            Some((expr, label)) => format!("group by ({}) ({})", label.trim(), expr.trim()),
            None => format!("group by ({inner}) ({{{inner}=~\".+\"}})"),
        }
    } else if let Some(inner) =
        query.strip_prefix("query_result(").and_then(|q| q.strip_suffix(')'))
    {
        inner.to_owned()
    } else {
        query.to_owned()
    }
}

/// Dashboard variables and Grafana's built-ins replaced by what a user would have selected.
fn substitute(expr: &str) -> String {
    let mut out = expr.to_owned();
    for (from, to) in [
        ("${customer}", ".*"),
        ("${site}", ".*"),
        ("${host}", ".*"),
        ("$customer", ".*"),
        ("$site", ".*"),
        ("$host", ".*"),
        ("$__rate_interval", "1m"),
        ("$__range_s", "300"),
        ("$__range", "5m"),
        ("$__interval", "1m"),
    ] {
        out = out.replace(from, to);
    }
    out
}

/// Every `(where, query)` of a dashboard: panel targets (rows included) and query variables.
fn dashboard_queries(file: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(file).unwrap();
    let dashboard: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", file.display()));
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let mut out = Vec::new();
    fn panels(list: &Value, name: &str, out: &mut Vec<(String, String)>) {
        for panel in list.as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push((format!("{name} / {}", panel["title"]), substitute(expr)));
                }
            }
            panels(&panel["panels"], name, out);
        }
    }
    panels(&dashboard["panels"], &name, &mut out);
    for variable in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        if variable["type"] != "query" {
            continue;
        }
        let query = match &variable["query"] {
            Value::String(q) => q.clone(),
            other => other["query"].as_str().unwrap_or_default().to_owned(),
        };
        out.push((
            format!("{name} / variable {}", variable["name"]),
            substitute(&variable_query(&query)),
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_scrapes_the_fleet_and_every_dashboard_query_has_data() {
    let Some(promtool) = promtool() else { return };
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start_with_config(&dir.path().join("c"), None, CONFIG, &[]);
    let fixture = workspace().join("agent/tests/fixtures/node-exporter");
    let _fixture_agent =
        Agent::enroll_and_start(&c, &dir.path().join("a1"), &["--root", fixture.to_str().unwrap()])
            .await;
    let _live_agent = Agent::enroll_and_start(&c, &dir.path().join("a2"), &[]).await;
    let token = c.enrollment_token("acme", "main", 1, "1h").await;
    let synthetic = TestIdentity::enroll(&c, &token, "synthetic").await.unwrap();
    let held = synthetic.stream_held(&c, INSTANCE, vec![synthetic_report(1)]).await;

    // The fixture host's first report opens its baseline review; someone acknowledges and
    // resolves it, so time to acknowledge and to resolve have data.
    let baseline = c
        .wait_for("the baseline review", Duration::from_secs(30), async |c| {
            c.get("/api/v1/incidents").await["incidents"]
                .as_array()?
                .iter()
                .find(|i| i["rule"] == "host.baseline")
                .cloned()
        })
        .await;
    let number = baseline["number"].as_str().unwrap();
    let (status, body) = c.post(&format!("/api/v1/incidents/{number}/ack"), json!({})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) =
        c.post(&format!("/api/v1/incidents/{number}/resolve"), json!({ "note": "reviewed" })).await;
    assert_eq!(status, 200, "{body}");

    let token_file = c.data_dir.join("admin.token");
    let scrape = format!(
        "  - job_name: vigil-collector\n    authorization:\n      credentials_file: {}\n    static_configs:\n      - targets: ['{}']\n",
        token_file.display(),
        c.http
    );
    let Some(prom) = Prometheus::start(&scrape).await else { return };
    c.wait_for("a scrape with every kind of host", Duration::from_secs(60), async |_| {
        let mut all = true;
        for q in [
            "vigil_host_info",
            "vigil_host_smart_healthy",
            "vigil_host_raid_degraded",
            "vigil_host_filesystem_used_ratio",
            "vigil_incident_time_to_resolve_seconds_count > 0",
        ] {
            all &= !prom.query(q).await.is_empty();
        }
        all.then_some(())
    })
    .await;
    // Rates and increases need a few scrapes.
    c.wait_for("three scrapes", Duration::from_secs(30), async |_| {
        let n = prom.query("count_over_time(up{job=\"vigil-collector\"}[5m]) >= 3").await;
        (!n.is_empty()).then_some(())
    })
    .await;
    let up = prom.query("up{job=\"vigil-collector\"}").await;
    assert_eq!(up[0]["value"][1], "1", "{up:?}\n{}", prom.log());

    // The live text passes promtool's linter.
    let text = c.get_text("/metrics").await;
    assert!(text.contains("vigil_host_service_up{"), "{text}");
    let mut child = std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // About fifty series for the typical (fixture) host, far below the cap.
    let dropped = prom.query("vigil_host_series_dropped_total").await;
    assert!(dropped.iter().all(|s| s["value"][1] == "0"), "{dropped:?}");

    // Every panel and variable of every shipped dashboard returns data.
    let dashboards = workspace().join("packaging/grafana/dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dashboards)
        .unwrap_or_else(|e| panic!("{}: {e}", dashboards.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    let mut empty = Vec::new();
    let mut checked = 0;
    for file in &files {
        for (place, query) in dashboard_queries(file) {
            checked += 1;
            if prom.query(&query).await.is_empty() {
                empty.push(format!("{place}: {query}"));
            }
        }
    }
    assert!(checked > 30, "only {checked} queries found");
    assert!(
        empty.is_empty(),
        "{} of {checked} queries returned nothing:\n{}",
        empty.len(),
        empty.join("\n")
    );

    // A revoked host's series disappear: its stream is cut, its fleet rows go.
    let (status, body) =
        c.post(&format!("/api/v1/hosts/{}/revoke", synthetic.host_id), json!({})).await;
    assert_eq!(status, 200, "{body}");
    c.wait_for("the revoked host's series to go", Duration::from_secs(20), async |c| {
        (!c.get_text("/metrics").await.contains(&synthetic.host_id)).then_some(())
    })
    .await;
    drop(held);
}

/// The shipped Prometheus files pass promtool: the rules check, every rule's unit tests
/// (firing and not firing), and the scrape config's syntax (its token file exists only on a
/// real Prometheus host).
#[test]
fn shipped_prometheus_rules_and_config_pass_promtool() {
    let Some(promtool) = promtool() else { return };
    let dir = workspace().join("packaging/prometheus");
    for args in [
        vec!["check", "rules", "vigil-collector.rules.yml"],
        vec!["test", "rules", "vigil-collector.rules.test.yml"],
        vec!["check", "config", "--syntax-only", "prometheus.example.yml"],
    ] {
        let out =
            std::process::Command::new(&promtool).args(&args).current_dir(&dir).output().unwrap();
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
