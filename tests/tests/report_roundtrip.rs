//! The quickstart path, end to end: a real collector on its embedded store, a real agent on
//! this machine reporting to it, and the operator seeing the host through the API and vigilctl.

use std::time::Duration;

use vigil_e2e::{Agent, Collector, first_reported_host, meminfo_total_bytes, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_appears_with_plausible_readings() {
    let tmp = tempfile::tempdir().unwrap();
    let collector = Collector::start(&tmp.path().join("data"), None, &[]);
    let mut agent = Agent::enroll_and_start(&collector, &tmp.path().join("agent"), &[]).await;

    let host = first_reported_host(&collector, Duration::from_secs(30)).await;
    let id = host["id"].as_str().unwrap().to_owned();
    assert_eq!(host["status"], "up");
    assert_eq!(host["customer"], "acme", "the enrolment token's customer");
    assert_eq!(host["site"], "main");
    assert_eq!(host["id"].as_str().unwrap(), agent.host_id(), "the HostId of the certificate");
    assert!(host["cpu_cores"].as_u64().unwrap() > 0, "{host}");
    assert_eq!(host["memory_total_bytes"].as_u64().unwrap(), meminfo_total_bytes(), "{host}");
    let usage = host["readings"]["cpu_usage_ratio"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&usage), "{host}");
    let mem = host["readings"]["memory_used_ratio"].as_f64().unwrap();
    assert!(mem > 0.0 && mem < 1.0, "{host}");

    let detail = collector.get(&format!("/api/v1/hosts/{id}")).await;
    let facts = &detail["facts"];
    assert_eq!(facts["hostname"].as_str().unwrap(), detail["hostname"].as_str().unwrap());
    assert!(!facts["kernel"].as_str().unwrap_or("").is_empty(), "{facts}");
    assert!(facts["bootTimeUnixMs"].as_str().unwrap_or("0") != "0", "{facts}");
    let probes = detail["latest_report"]["probes"].as_array().unwrap();
    let names: Vec<&str> = probes.iter().map(|p| p["probe"].as_str().unwrap()).collect();
    for expected in ["cpu", "memory", "filesystem", "network", "uptime"] {
        assert!(names.contains(&expected), "probe {expected} missing: {names:?}");
    }
    let fs_probe = probes.iter().find(|p| p["probe"] == "filesystem").unwrap();
    assert_eq!(fs_probe["status"], "STATUS_OK", "{fs_probe}");
    assert_eq!(detail["instances"].as_array().unwrap().len(), 1);
    assert_eq!(detail["instances"][0]["instance"].as_str().unwrap(), agent.instance());

    // The operator's view.
    let out = collector.vigilctl(&["hosts"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.starts_with("ID "), "{table}");
    assert!(table.contains(&id[..8]) && table.contains(" up "), "{table}");
    let out = collector.vigilctl(&["--json", "hosts"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["hosts"][0]["id"].as_str().unwrap(), id);
    let out = collector.vigilctl(&["hosts", "show", &id[..8]]);
    let shown = String::from_utf8(out.stdout).unwrap();
    assert!(shown.contains("Probes") && shown.contains("filesystem"), "{shown}");

    // Metrics are Prometheus text with the fleet gauge.
    let metrics = collector.get_text("/metrics").await;
    assert!(metrics.contains("vigil_hosts{status=\"up\"} 1"), "{metrics}");
    assert!(metrics.contains("vigil_ingest_reports_total{outcome=\"stored\"}"), "{metrics}");

    // A clean stop says goodbye: the host is "stopped", not "silent".
    let status = agent.proc.terminate();
    assert!(status.success(), "agent exit {status:?}\n{}", agent.proc.log_text());
    let host = collector
        .wait_for("the goodbye", Duration::from_secs(10), async |c| {
            c.hosts().await.into_iter().find(|h| h["status"] == "stopped")
        })
        .await;
    assert_eq!(host["goodbye_reason"], "stop");
    assert_eq!(agent.spooled(), 0, "a clean stop leaves nothing unacknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_are_precise() {
    let tmp = tempfile::tempdir().unwrap();
    let collector = Collector::start(&tmp.path().join("data"), None, &[]);
    let (status, body) = collector.get_status("/api/v1/hosts/not-a-uuid").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_argument");
    let (status, body) =
        collector.get_status("/api/v1/hosts/6f1c1c8e-7c55-4f0e-9d7c-3f7a6a1b2c3d").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(collector.get_text("/healthz").await, "ok\n");
    assert_eq!(collector.get_text("/readyz").await, "ready\n");

    let out = collector.vigilctl(&["hosts", "show", "zzz"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no host id starts with \"zzz\""));
    let out = run("vigilctl", &["--server", "http://127.0.0.1:1", "hosts"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the collector"));
}
