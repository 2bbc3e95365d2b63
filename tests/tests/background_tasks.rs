//! The collector's background tasks as an operator sees them: `GET /api/v1/tasks` (admin,
//! fleet-wide tokens only) and `vigilctl tasks` list the five tasks with the periods their
//! config keys set, each having run at start-up; a revocation through the API runs the
//! revocation poll at once.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use vigil_e2e::Collector;
use vigil_e2e::identity::TestIdentity;

const CONFIG: &str = "[incidents]\nsweep_every = \"3s\"\n\n[sla]\nsweep_every = \"7s\"\n\n\
                      [ingest]\nrevocation_poll = \"40s\"\n\n[retention]\nsweep_every = \"2h\"\n";

async fn api_token(c: &Collector, name: &str, role: &str, customer: Option<&str>) -> String {
    let body = json!({ "name": name, "role": role, "customer": customer });
    let (status, body) = c.post("/api/v1/api-tokens", body).await;
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

fn task<'a>(tasks: &'a Value, name: &str) -> &'a Value {
    tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no task {name}: {tasks:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_sees_the_five_background_tasks_with_their_periods() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start_with_config(&dir.path().join("c"), None, CONFIG, &[]);
    let (status, body) = c.post("/api/v1/customers", json!({ "name": "acme" })).await;
    assert_eq!(status, 200, "{body}");
    let viewer = api_token(&c, "noc", "viewer", None).await;
    let operator = api_token(&c, "oncall", "operator", None).await;
    let acme_operator = api_token(&c, "acme-oncall", "operator", Some("acme")).await;
    for token in [&viewer, &operator, &acme_operator] {
        let (status, body) = c.request_as(token, Method::GET, "/api/v1/tasks", None).await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["error"]["code"], "permission_denied", "{body}");
    }
    let (status, _) = c.request_as("", Method::GET, "/api/v1/tasks", None).await;
    assert_eq!(status, 401);

    // Every task runs once at start-up.
    let tasks = c
        .wait_for("every task to have run", Duration::from_secs(30), async |c| {
            let tasks = c.get("/api/v1/tasks").await;
            let ran = tasks["tasks"].as_array()?.iter().all(|t| !t["last_outcome"].is_null());
            ran.then_some(tasks)
        })
        .await;
    let names: Vec<&str> =
        tasks["tasks"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["retention", "silence", "sla_sweep", "notifications", "revocation"]);
    for (name, period_ms) in [
        ("retention", 7_200_000),
        ("silence", 3_000),
        ("sla_sweep", 7_000),
        ("notifications", 7_000),
        ("revocation", 40_000),
    ] {
        let t = task(&tasks, name);
        assert_eq!(t["period_ms"], period_ms, "{t:#}");
        assert!(t["activations"].as_u64().unwrap() >= 1, "{t:#}");
        assert_eq!(t["failures"], 0, "{t:#}");
        assert_eq!(t["last_outcome"], "ok", "{t:#}");
    }
    let sla = task(&tasks, "sla_sweep");
    assert!(sla["last_summary"].as_str().unwrap().contains("holding the runner lease"), "{sla:#}");

    // A revocation runs the revocation poll at once, well before its 40 s period.
    let before = task(&tasks, "revocation")["activations"].as_u64().unwrap();
    let token = c.enrollment_token("acme", "main", 1, "1h").await;
    let host = TestIdentity::enroll(&c, &token, "srv01").await.unwrap().host_id;
    let (status, body) = c.post(&format!("/api/v1/hosts/{host}/revoke"), json!({})).await;
    assert_eq!(status, 200, "{body}");
    c.wait_for("the revocation poll to run", Duration::from_secs(10), async |c| {
        let tasks = c.get("/api/v1/tasks").await;
        let t = task(&tasks, "revocation");
        let ran = t["activations"].as_u64().unwrap() > before && t["last_reason"] == "on_demand";
        ran.then(|| assert_eq!(t["last_summary"], "revoked hosts: 1 (changed)", "{t:#}"))
    })
    .await;

    let out = c.vigilctl(&["tasks"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("TASK"), "{text}");
    assert_eq!(lines.len(), 6, "a header and five tasks:\n{text}");
    assert!(lines[3].starts_with("sla_sweep") && lines[3].contains("7s"), "{text}");
}
