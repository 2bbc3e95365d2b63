//! Fault classification and incidents end to end: real collectors, real agents reading fixture
//! roots whose `/proc/mdstat` the test rewrites, the collector's test clock for silence.
//! Each test says which promise of the incident stage it proves.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use vigil_e2e::mdstat::{
    DEGRADED as MDSTAT_DEGRADED, HEALTHY as MDSTAT_HEALTHY, healthy_agent, root_with,
    set as set_mdstat,
};
use vigil_e2e::{Agent, Collector};

/// Sweeps often so tests wait little; the clock rule is off because the synthetic roots do
/// not fake adjtimex (it reads this machine's clock, whatever its sync state).
const CONFIG: &str = "[enrollment]\nattempts_per_minute = 100\n\n[incidents]\nsweep_every = \"100ms\"\nstart_grace = \"1ms\"\n\n\
[rules.\"clock.unsynchronised\"]\nenabled = false\n";

/// The test clock starts at the real time: certificates are issued on it.
const TEST_CLOCK: &str = "now";

async fn incidents(c: &Collector, query: &str) -> Vec<Value> {
    c.get(&format!("/api/v1/incidents?{query}")).await["incidents"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn advance(c: &Collector, by: &str) {
    let (status, body) = c.post("/api/v1/test-clock", json!({ "advance": by })).await;
    assert_eq!(status, 200, "moving the test clock: {body}");
}

/// Moves the test clock by `total_s` in steps of `step_s`, giving every agent time to report
/// between steps, so no host looks silent only because time jumped.
async fn advance_reporting(c: &Collector, total_s: u64, step_s: u64) {
    let mut moved = 0;
    while moved < total_s {
        let step = step_s.min(total_s - moved);
        advance(c, &format!("{step}s")).await;
        moved += step;
        tokio::time::sleep(Duration::from_millis(1600)).await;
    }
}

/// Starts `n` agents, each enrolled on its own, all reading one healthy root.
async fn healthy_agents(c: &Collector, dir: &Path, n: usize) -> Vec<Agent> {
    let root = root_with(dir, "root", MDSTAT_HEALTHY);
    let root = root.to_str().unwrap().to_owned();
    let mut agents = Vec::new();
    for i in 0..n {
        agents
            .push(Agent::enroll_and_start(c, &dir.join(format!("a{i}")), &["--root", &root]).await);
    }
    agents
}

async fn wait_reported(c: &Collector, hosts: usize) {
    c.wait_for("every host to report", Duration::from_secs(60), async |c| {
        let reported = c.hosts().await.iter().filter(|h| h["last_seen_unix_ms"].is_i64()).count();
        (reported >= hosts).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn degraded_raid_opens_one_l2_incident_and_healing_resolves_it() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start_with_config(&dir.path().join("c"), None, CONFIG, &[]);
    let (agent, root) = healthy_agent(&c, dir.path(), "root").await;
    // A few healthy reports: nothing is wrong, nothing opens (no baseline review either).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(incidents(&c, "").await, Vec::<Value>::new());

    set_mdstat(&root, MDSTAT_DEGRADED);
    let incident = c
        .wait_for("an L2 RAID incident", Duration::from_secs(10), async |c| {
            incidents(c, "state=active").await.into_iter().next()
        })
        .await;
    assert_eq!(incident["rule"], "raid.degraded", "{incident:#}");
    assert_eq!(incident["resource"], "md6");
    assert_eq!(incident["level"], 2);
    assert_eq!(incident["host_id"], agent.host_id());
    assert!(incident["number"].as_str().unwrap().starts_with("INC-0000"), "{incident:#}");
    // Still degraded for several more reports: still one incident, not a storm.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(incidents(&c, "").await.len(), 1);

    set_mdstat(&root, MDSTAT_HEALTHY);
    let number = incident["number"].as_str().unwrap().to_owned();
    let resolved = c
        .wait_for("the incident to resolve", Duration::from_secs(15), async |c| {
            let i = c.get(&format!("/api/v1/incidents/{number}")).await;
            (i["state"] == "resolved").then_some(i)
        })
        .await;
    assert_eq!(resolved["resolved_by"], "vigil");
    // The incident's own changes; the SLA clock's entries are proven in sla.rs.
    let changes: Vec<&Value> =
        resolved["timeline"].as_array().unwrap().iter().filter(|t| t["kind"] != "sla").collect();
    let kinds: Vec<&str> = changes.iter().filter_map(|t| t["kind"].as_str()).collect();
    assert_eq!(kinds, ["opened", "resolved"], "{resolved:#}");
    let reason = changes[1]["detail"].as_str().unwrap();
    assert!(reason.contains("3 consecutive reports"), "{reason}");

    // vigilctl shows it among all incidents, and in detail with its timeline.
    let out = c.vigilctl(&["incidents", "--all"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(&number) && text.contains("raid.degraded"),
        "{text}"
    );
    let out = c.vigilctl(&["incident", "show", &number]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Timeline:") && text.contains("cleared"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn people_work_incidents_by_role_through_the_api_and_vigilctl() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start_with_config(&dir.path().join("c"), None, CONFIG, &[]);
    let (_agent, root) = healthy_agent(&c, dir.path(), "root").await;
    set_mdstat(&root, MDSTAT_DEGRADED);
    let incident = c
        .wait_for("an incident", Duration::from_secs(10), async |c| {
            incidents(c, "state=open").await.into_iter().next()
        })
        .await;
    let number = incident["number"].as_str().unwrap().to_owned();
    let token = |role: &'static str| {
        let c = &c;
        async move {
            let (status, body) =
                c.post("/api/v1/api-tokens", json!({ "name": role, "role": role })).await;
            assert_eq!(status, 200, "{body}");
            body["token"].as_str().unwrap().to_owned()
        }
    };
    let viewer = token("viewer").await;
    let operator = token("operator").await;
    let post = |token: String, path: String, body: Value| {
        let c = &c;
        async move { c.request_as(&token, reqwest::Method::POST, &path, Some(body)).await }
    };
    let ack = format!("/api/v1/incidents/{number}/ack");

    // A viewer reads but cannot acknowledge.
    let (status, body) = post(viewer.clone(), ack.clone(), json!({})).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("operator"), "{body}");
    let (status, _) = c
        .request_as(&viewer, reqwest::Method::GET, &format!("/api/v1/incidents/{number}"), None)
        .await;
    assert_eq!(status, 200);

    // The operator acknowledges; twice is a conflict that names who did it.
    let (status, body) = post(operator.clone(), ack.clone(), json!({})).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("acknowledged")), "{body}");
    assert_eq!(body["acknowledged_by"], "token:operator");
    let (status, body) = post(operator.clone(), ack, json!({})).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("token:operator"), "{body}");

    // Bad input: clear JSON errors, nothing changed.
    let resolve = format!("/api/v1/incidents/{number}/resolve");
    let (status, body) = post(operator.clone(), resolve.clone(), json!({ "note": "  " })).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("note"), "{body}");
    let (status, body) = post(operator.clone(), resolve.clone(), json!({ "nope": 1 })).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_argument", "{body}");
    let (status, body) = c.get_status("/api/v1/incidents/INC-999999").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = c.get_status("/api/v1/incidents?state=broken").await;
    assert_eq!(status, 400, "{body}");

    // vigilctl assigns, notes and resolves with the service record.
    let vigilctl = |args: &[&str]| {
        let out = c.vigilctl(args);
        assert!(
            out.status.success(),
            "vigilctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    vigilctl(&["incident", "assign", &number, "alice"]);
    vigilctl(&["incident", "note", &number, "replacement disk ordered"]);
    let text = vigilctl(&[
        "incident",
        "resolve",
        &number,
        "--note",
        "sdb failed; replaced under warranty and re-added to md6",
    ]);
    assert!(text.contains("resolved"), "{text}");
    let out = c.vigilctl(&["incident", "resolve", &number, "--note", "again"]);
    assert_eq!(out.status.code(), Some(1), "resolving twice must fail");
    assert!(String::from_utf8_lossy(&out.stderr).contains("is resolved"));

    let shown = c.get(&format!("/api/v1/incidents/{number}")).await;
    assert_eq!(shown["assignee"], "alice");
    assert_eq!(shown["resolution_note"], "sdb failed; replaced under warranty and re-added to md6");
    let kinds: Vec<&str> = shown["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["kind"].as_str())
        .filter(|k| *k != "sla")
        .collect();
    assert_eq!(kinds, ["opened", "acknowledged", "assigned", "note", "resolved"], "{shown:#}");
    let audit = c.get("/api/v1/audit?limit=20").await;
    let actions: Vec<&str> =
        audit["entries"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    for action in ["incident.acknowledge", "incident.assign", "incident.note", "incident.resolve"] {
        assert!(actions.contains(&action), "{action} not audited: {actions:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_agent_is_l1_silent_and_a_stopped_one_waits_for_the_planned_grace() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start_with_config(
        &dir.path().join("c"),
        None,
        CONFIG,
        &["--test-clock", TEST_CLOCK],
    );
    assert!(c.proc.log_text().contains("RUNNING ON A TEST CLOCK"), "{}", c.proc.log_text());
    let root = root_with(dir.path(), "root", MDSTAT_HEALTHY);
    let root = root.to_str().unwrap();
    let mut killed = Agent::enroll_and_start(&c, &dir.path().join("k"), &["--root", root]).await;
    let mut stopped = Agent::enroll_and_start(&c, &dir.path().join("s"), &["--root", root]).await;
    wait_reported(&c, 2).await;
    // Past the start grace, with both agents reporting all along.
    advance_reporting(&c, 150, 30).await;
    assert_eq!(incidents(&c, "").await, Vec::<Value>::new());

    killed.proc.kill();
    assert!(stopped.proc.terminate().success());
    advance(&c, "61s").await;
    let silent = c
        .wait_for("an L1 silence incident", Duration::from_secs(10), async |c| {
            incidents(c, "rule=host.silent").await.into_iter().next()
        })
        .await;
    assert_eq!(silent["host_id"], killed.host_id());
    assert_eq!(silent["level"], 1);
    assert!(silent["summary"].as_str().unwrap().contains("no reports"), "{silent:#}");

    // The agent that said goodbye: nothing within the planned grace of 15 minutes...
    advance(&c, "13m").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let silences = incidents(&c, "rule=host.silent").await;
    assert_eq!(silences.len(), 1, "{silences:#?}");
    // ...and L1 once its return is overdue.
    advance(&c, "2m").await;
    let overdue = c
        .wait_for("the stopped host to be overdue", Duration::from_secs(10), async |c| {
            incidents(c, "rule=host.silent")
                .await
                .into_iter()
                .find(|i| i["host_id"] == stopped.host_id())
        })
        .await;
    assert!(overdue["summary"].as_str().unwrap().contains("goodbye (stop)"), "{overdue:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn collector_restart_under_20_agents_opens_no_incident() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("c");
    let mut c = Collector::start_with_config(&data, None, CONFIG, &["--test-clock", TEST_CLOCK]);
    let agents = healthy_agents(&c, dir.path(), 20).await;
    wait_reported(&c, 20).await;
    advance_reporting(&c, 150, 30).await;

    // Back on a clock four minutes ahead (less than the certificates' five-minute backdating):
    // the hosts' last reports are then about two minutes old, so without the start grace
    // every host would look silent the moment the collector is up.
    let ports = (c.grpc, c.http);
    assert!(c.proc.terminate().success());
    tokio::time::sleep(Duration::from_secs(2)).await;
    c = Collector::start_with_config(&data, Some(ports), CONFIG, &["--test-clock", "now+4m"]);
    let restarted = c.get("/api/v1/test-clock").await["now_unix_ms"].as_i64().unwrap();
    c.wait_for("all 20 agents back", Duration::from_secs(60), async |c| {
        let back = c
            .hosts()
            .await
            .iter()
            .filter(|h| h["last_seen_unix_ms"].as_i64().is_some_and(|t| t >= restarted))
            .count();
        (back == 20).then_some(())
    })
    .await;
    advance_reporting(&c, 180, 30).await;
    assert_eq!(incidents(&c, "").await, Vec::<Value>::new(), "{}", c.proc.log_text());
    drop(agents);
}

#[tokio::test(flavor = "multi_thread")]
async fn half_a_site_falling_silent_is_one_site_incident() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start_with_config(
        &dir.path().join("c"),
        None,
        CONFIG,
        &["--test-clock", TEST_CLOCK],
    );
    let mut agents = healthy_agents(&c, dir.path(), 6).await;
    wait_reported(&c, 6).await;
    advance_reporting(&c, 150, 30).await;

    for agent in &mut agents[..3] {
        agent.proc.kill();
    }
    // In steps, so the three still running keep reporting while time passes.
    advance_reporting(&c, 61, 30).await;
    let site = c
        .wait_for("a site incident", Duration::from_secs(10), async |c| {
            incidents(c, "rule=site.silent").await.into_iter().next()
        })
        .await;
    assert_eq!(site["level"], 1);
    assert!(site["host_id"].is_null(), "{site:#}");
    assert!(site["summary"].as_str().unwrap().contains("3 of 6 hosts"), "{site:#}");
    let hosts = c
        .wait_for("the host incidents grouped under it", Duration::from_secs(10), async |c| {
            let hosts = incidents(c, "rule=host.silent").await;
            (hosts.len() == 3 && hosts.iter().all(|h| h["parent_id"] == site["id"]))
                .then_some(hosts)
        })
        .await;
    let mut ids: Vec<String> =
        hosts.iter().map(|h| h["host_id"].as_str().unwrap().to_owned()).collect();
    let mut killed: Vec<String> = agents[..3].iter().map(Agent::host_id).collect();
    ids.sort();
    killed.sort();
    assert_eq!(ids, killed);
    assert_eq!(
        incidents(&c, "rule=site.silent").await.len(),
        1,
        "one site incident, not one per sweep"
    );
    let shown = c.get(&format!("/api/v1/incidents/{}", site["number"].as_str().unwrap())).await;
    assert_eq!(shown["grouped"].as_array().unwrap().len(), 3, "{shown:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_maintenance_window_records_the_fault_but_opens_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start_with_config(&dir.path().join("c"), None, CONFIG, &[]);
    let (agent, root) = healthy_agent(&c, dir.path(), "root").await;
    let host = agent.host_id();
    // A window from a minute ago, for an hour, in the customer's zone.
    let start =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() - Duration::from_secs(60))
            .to_string();
    let start = &start[..16];
    let out = c.vigilctl(&[
        "maintenance",
        "add",
        "--host",
        &host,
        "--start",
        start,
        "--duration",
        "1h",
        "--time-zone",
        "UTC",
        "--reason",
        "disk replacement, ticket 4711",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list = c.vigilctl(&["maintenance", "list"]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(text.contains("disk replacement") && text.contains("yes"), "{text}");

    set_mdstat(&root, MDSTAT_DEGRADED);
    c.wait_for("the fault recorded on the host's timeline", Duration::from_secs(10), async |c| {
        let h = c.get(&format!("/api/v1/hosts/{host}")).await;
        h["events"].as_array()?.iter().find(|e| e["kind"] == "in_maintenance").cloned()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(incidents(&c, "").await, Vec::<Value>::new());

    // The window removed, the still-degraded array opens its incident.
    let windows = c.get("/api/v1/maintenance").await;
    let id = windows["windows"][0]["id"].as_str().unwrap().to_owned();
    let out = c.vigilctl(&["maintenance", "rm", &id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    c.wait_for("the incident after the window", Duration::from_secs(10), async |c| {
        incidents(c, "rule=raid.degraded").await.into_iter().next()
    })
    .await;

    // Bad windows are refused with the field named.
    let (status, body) = c
        .post(
            "/api/v1/maintenance",
            json!({ "host": host, "start": start, "duration": "1h", "time_zone": "Mars/Olympus",
                    "reason": "x" }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("Mars/Olympus"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flapping_array_is_one_incident_marked_flapping() {
    let dir = tempfile::tempdir().unwrap();
    // Clearing after one clean report makes each change count quickly.
    let config = format!("{CONFIG}\n[rules.\"raid.degraded\"]\nclear_after = 1\n");
    let c = Collector::start_with_config(&dir.path().join("c"), None, &config, &[]);
    let (_agent, root) = healthy_agent(&c, dir.path(), "root").await;
    for _ in 0..3 {
        set_mdstat(&root, MDSTAT_DEGRADED);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        set_mdstat(&root, MDSTAT_HEALTHY);
        tokio::time::sleep(Duration::from_millis(2500)).await;
    }
    let all = incidents(&c, "").await;
    assert_eq!(all.len(), 1, "one incident, reopened, not one per flap: {all:#?}");
    let incident = &all[0];
    assert_eq!(incident["flapping"], true, "{incident:#}");
    assert_eq!(incident["state"], "open", "held open while flapping: {incident:#}");
    assert!(incident["recurrences"].as_u64().unwrap() >= 1, "{incident:#}");
}
