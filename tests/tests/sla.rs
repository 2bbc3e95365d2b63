//! SLA clocks, escalation and notifications end to end: real collectors and agents, a real
//! Alertmanager, a recording webhook receiver that checks every signature, and the collector's
//! test clock to move through deadlines exactly. Each test says which promise it proves.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use vigil_e2e::alertmanager::Alertmanager;
use vigil_e2e::identity::TestIdentity;
use vigil_e2e::mdstat::{self, DEGRADED, HEALTHY};
use vigil_e2e::webhook::{Request, Webhook};
use vigil_e2e::{Agent, Collector};

const SECRET: &str = "a-webhook-secret-of-32-characters";

/// Sweeps often; silence judged only after a day so the test clock can jump; the clock rule
/// off because synthetic roots do not fake adjtimex.
fn config(dir: &Path, hooks: &[(&str, &Webhook)], am: Option<&Alertmanager>) -> String {
    config_with(dir, hooks, am, "")
}

/// [`config`] with more `[ingest]` keys.
fn config_with(
    dir: &Path,
    hooks: &[(&str, &Webhook)],
    am: Option<&Alertmanager>,
    ingest: &str,
) -> String {
    let secret = dir.join("hook.secret");
    vigil_e2e::write_secret(&secret, SECRET);
    let mut text = format!(
        "[enrollment]\nattempts_per_minute = 100\n\n[ingest]\nmin_silence = \"1day\"\n{ingest}\n\
         [incidents]\nsweep_every = \"100ms\"\nstart_grace = \"1ms\"\n\n\
         [sla]\nsweep_every = \"100ms\"\nlease_ttl = \"1s\"\n\n",
    );
    let mut defaults: Vec<String> = hooks.iter().take(1).map(|(n, _)| format!("{n:?}")).collect();
    if am.is_some() {
        defaults.push("\"am\"".into());
    }
    text.push_str(&format!(
        "[notify]\nalertmanager_repeat = \"1s\"\ndefault_receivers = [{}]\n\n",
        defaults.join(", ")
    ));
    for (name, hook) in hooks {
        text.push_str(&format!(
            "[notify.receivers.{name}]\nwebhook = \"{}\"\nsecret_file = \"{}\"\n\n",
            hook.url,
            secret.display()
        ));
    }
    if let Some(am) = am {
        text.push_str(&format!("[notify.receivers.am]\nalertmanager = \"{}\"\n\n", am.url));
    }
    text.push_str("[rules.\"clock.unsynchronised\"]\nenabled = false\n");
    text
}

fn hmac_hex(secret: &str, message: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    ring::hmac::sign(&key, message).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Every request the hook got, each checked: POST, JSON, a valid signature over
/// `<timestamp>.<body>`, and an event id header equal to the body's.
fn events(hook: &Webhook) -> Vec<(Request, Value)> {
    hook.requests()
        .into_iter()
        .map(|r| {
            assert_eq!(r.method, "POST");
            let timestamp = r.header("x-vigil-timestamp").expect("timestamp header").to_owned();
            let mut signed = timestamp.into_bytes();
            signed.push(b'.');
            signed.extend_from_slice(&r.body);
            let expected = format!("sha256={}", hmac_hex(SECRET, &signed));
            assert_eq!(r.header("x-vigil-signature"), Some(expected.as_str()), "bad signature");
            let body = r.json();
            assert_eq!(r.header("x-vigil-event-id"), body["event_id"].as_str());
            (r, body)
        })
        .collect()
}

/// The kinds of events the hook accepted for `incident`, each event id once.
fn kinds(hook: &Webhook, incident: &str) -> Vec<String> {
    let mut seen = BTreeSet::new();
    events(hook)
        .into_iter()
        .filter(|(r, b)| r.answered == 200 && b["incident"]["number"] == incident)
        .filter(|(_, b)| seen.insert(b["event_id"].as_str().unwrap().to_owned()))
        .map(|(_, b)| b["kind"].as_str().unwrap().to_owned())
        .collect()
}

async fn advance(c: &Collector, by: &str) {
    let (status, body) = c.post("/api/v1/test-clock", json!({ "advance": by })).await;
    assert_eq!(status, 200, "moving the test clock: {body}");
}

fn ms(rfc3339: &Value) -> i64 {
    vigil_e2e::alertmanager::parse_time(rfc3339)
}

/// Starts an agent on a healthy root, waits for its first report, then degrades the array and
/// returns the raid.degraded incident it opens (not a baseline review).
async fn degraded_host(
    c: &Collector,
    dir: &Path,
    name: &str,
) -> (Agent, std::path::PathBuf, Value) {
    let (agent, root) = mdstat::healthy_agent(c, dir, name).await;
    let host = agent.host_id();
    mdstat::set(&root, DEGRADED);
    let incident = c
        .wait_for("the raid.degraded incident", Duration::from_secs(30), async |c| {
            c.get(&format!("/api/v1/incidents?host={host}")).await["incidents"]
                .as_array()?
                .iter()
                .find(|i| i["rule"] == "raid.degraded")
                .cloned()
        })
        .await;
    (agent, root, incident)
}

async fn incident(c: &Collector, number: &Value) -> Value {
    c.get(&format!("/api/v1/incidents/{}", number.as_str().unwrap())).await
}

#[tokio::test(flavor = "multi_thread")]
async fn deadlines_warn_escalate_pause_and_stop_on_acknowledgement() {
    let dir = tempfile::tempdir().unwrap();
    let tier1 = Webhook::start(200).await;
    let tier2 = Webhook::start(200).await;
    let config = config(dir.path(), &[("tier1", &tier1), ("tier2", &tier2)], None);
    let c = Collector::start_with_config(
        &dir.path().join("c"),
        None,
        &config,
        &["--test-clock", "now"],
    );
    let (status, body) = c.post("/api/v1/customers", json!({ "name": "acme" })).await;
    assert!(status == 200 || status == 409, "{body}");
    let (status, body) = c
        .put(
            "/api/v1/customers/acme/contract",
            json!({ "time_zone": "Europe/Berlin",
                    "tiers": { "1": [{ "receiver": "tier1" }], "2": [{ "receiver": "tier2" }] } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Three hosts, three L2 incidents opened at about the same time (15 min to respond).
    let (_a, _, ignored) = degraded_host(&c, dir.path(), "ignored").await;
    let (_b, _, acked) = degraded_host(&c, dir.path(), "acked").await;
    let (_m, _, paused) = degraded_host(&c, dir.path(), "paused").await;
    for i in [&ignored, &acked, &paused] {
        assert_eq!(i["level"], 2, "{i:#}");
    }
    // Deadlines are computed by the sweep.
    let sla_of = async |i: &Value| {
        c.wait_for("deadlines", Duration::from_secs(10), async |c| {
            let v = incident(c, &i["number"]).await;
            v["sla"]["response"]["due"].is_string().then_some(v)
        })
        .await
    };
    let shown = sla_of(&ignored).await;
    let opened = ms(&shown["opened_at"]);
    assert_eq!(ms(&shown["sla"]["response"]["due"]), opened + 15 * 60_000, "{shown:#}");
    assert_eq!(ms(&shown["sla"]["resolution"]["due"]), opened + 8 * 3_600_000, "{shown:#}");

    // One is acknowledged at once; a maintenance window an hour long starting within the
    // next two minutes covers the third host.
    let (status, body) = c
        .post(&format!("/api/v1/incidents/{}/ack", acked["number"].as_str().unwrap()), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let now = c.get("/api/v1/test-clock").await["now_unix_ms"].as_i64().unwrap();
    let start_ms = (now / 60_000 + 1) * 60_000;
    let start = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + Duration::from_millis(start_ms as u64),
    )
    .to_string();
    let (status, body) = c
        .post(
            "/api/v1/maintenance",
            json!({ "customer": "acme", "host": paused["host_id"], "start": &start[..16],
                    "duration": "1h", "time_zone": "UTC", "rules": ["raid.degraded"],
                    "reason": "disk swap" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let held = c
        .wait_for("the paused clock", Duration::from_secs(10), async |c| {
            let v = incident(c, &paused["number"]).await;
            let due =
                v["sla"]["response"]["due"].as_str().map(|_| ms(&v["sla"]["response"]["due"]))?;
            (due > ms(&v["opened_at"]) + 15 * 60_000).then_some(v)
        })
        .await;
    assert_eq!(
        ms(&held["sla"]["response"]["due"]),
        ms(&held["opened_at"]) + 75 * 60_000,
        "15 minutes of clock plus the hour of maintenance: {held:#}"
    );

    // 80 % of the response time: a warning to tier 1, for the unacknowledged one only.
    advance(&c, "12m").await;
    c.wait_for("the response warning", Duration::from_secs(10), async |_| {
        kinds(&tier1, ignored["number"].as_str().unwrap())
            .contains(&"warning".to_owned())
            .then_some(())
    })
    .await;
    // The deadline: escalated to tier 2, whose receiver hears of it; tier 2 heard nothing before.
    advance(&c, "3m").await;
    let escalated = c
        .wait_for("the escalation", Duration::from_secs(10), async |c| {
            let v = incident(c, &ignored["number"]).await;
            (v["sla"]["tier"] == 2).then_some(v)
        })
        .await;
    assert_eq!(escalated["sla"]["response"]["met"], false, "{escalated:#}");
    assert!(
        escalated["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["kind"] == "escalated"
                && t["detail"].as_str().unwrap().contains("tier 1 → 2")),
        "{escalated:#}"
    );
    c.wait_for("tier 2 notified", Duration::from_secs(10), async |_| {
        let k = kinds(&tier2, ignored["number"].as_str().unwrap());
        (k == ["escalated"]).then_some(())
    })
    .await;
    let tier1_kinds = kinds(&tier1, ignored["number"].as_str().unwrap());
    assert_eq!(tier1_kinds, ["opened", "warning", "escalated"], "tier 1 hears everything");

    // The acknowledged one met its response deadline and stays with tier 1; the paused one
    // is not due yet.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let acked = incident(&c, &acked["number"]).await;
    assert_eq!(acked["sla"]["response"]["met"], true, "{acked:#}");
    assert_eq!(acked["sla"]["tier"], 1, "{acked:#}");
    let paused = incident(&c, &paused["number"]).await;
    assert_eq!(paused["sla"]["tier"], 1, "{paused:#}");
    assert!(paused["sla"]["response"]["met"].is_null(), "{paused:#}");
    assert!(kinds(&tier2, acked["number"].as_str().unwrap()).is_empty());
    assert!(kinds(&tier1, acked["number"].as_str().unwrap()).contains(&"acknowledged".to_owned()));

    // Every delivery is visible on its incident, delivered. (A receiver having the request is
    // not yet the store having marked it delivered: wait for that, not for the snapshot taken
    // when the escalation was first seen.)
    let number = ignored["number"].clone();
    c.wait_for("every delivery marked delivered", Duration::from_secs(10), async |c| {
        let v = incident(c, &number).await;
        let deliveries = v["deliveries"].as_array().cloned().unwrap_or_default();
        (!deliveries.is_empty() && deliveries.iter().all(|d| d["state"] == "delivered"))
            .then_some(())
    })
    .await;
    // SLA compliance of the customer: L2 had one response met and one missed so far.
    let report = c.get("/api/v1/customers/acme/sla").await;
    let l2 = &report["levels"][1];
    assert_eq!(l2["opened"], 3, "{report:#}");
    assert_eq!(
        (l2["response"]["met"].as_u64(), l2["response"]["missed"].as_u64()),
        (Some(1), Some(1)),
        "{report:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn alertmanager_sees_the_incident_firing_then_resolved() {
    let Some(am) = Alertmanager::start().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let hook = Webhook::start(200).await;
    let config = config(dir.path(), &[("hook", &hook)], Some(&am));
    let c = Collector::start_with_config(&dir.path().join("c"), None, &config, &[]);
    let (_agent, root, opened) = degraded_host(&c, dir.path(), "h").await;
    let number = opened["number"].as_str().unwrap().to_owned();
    let filter = format!("incident=\"{number}\"");
    let alert = c
        .wait_for("the alert in Alertmanager", Duration::from_secs(20), async |_| {
            am.alerts(&[&filter]).await.into_iter().next()
        })
        .await;
    let labels: BTreeMap<String, String> = serde_json::from_value(alert["labels"].clone()).unwrap();
    assert_eq!(labels["alertname"], "VigilIncident");
    assert_eq!(labels["customer"], "acme");
    assert_eq!(labels["site"], "main");
    assert_eq!(labels["host"], opened["host_id"].as_str().unwrap());
    assert_eq!(labels["rule"], "raid.degraded");
    assert_eq!(labels["resource"], "md6");
    assert_eq!(labels["level"], "L2");
    assert_eq!(labels["tier"], "1");
    assert_eq!(alert["status"]["state"], "active");
    // Re-posted with an explicit endsAt in the near future, not left open-ended.
    let ends = ms(&alert["endsAt"]);
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
            as i64;
    assert!(
        ends > now && ends <= now + 5_000,
        "endsAt {} is 4 x the 1 s repeat ahead",
        alert["endsAt"]
    );

    // Healed: resolved after three clean reports, and gone from Alertmanager's active alerts.
    mdstat::set(&root, HEALTHY);
    c.wait_for("resolution", Duration::from_secs(30), async |c| {
        (incident(c, &opened["number"]).await["state"] == "resolved").then_some(())
    })
    .await;
    c.wait_for("the alert resolved in Alertmanager", Duration::from_secs(20), async |_| {
        am.alerts(&[&filter]).await.is_empty().then_some(())
    })
    .await;
    let shown = incident(&c, &opened["number"]).await;
    let delivered: BTreeSet<(String, String)> = shown["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["state"] == "delivered")
        .map(|d| {
            (d["receiver"].as_str().unwrap().to_owned(), d["event_id"].as_str().unwrap().to_owned())
        })
        .collect();
    assert!(delivered.iter().any(|(r, _)| r == "am"), "{shown:#}");
    assert_eq!(kinds(&hook, &number), ["opened", "resolved"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn notifications_pending_at_a_kill_9_are_all_delivered_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Webhook::start(503).await;
    let config = config(dir.path(), &[("hook", &hook)], None);
    let data = dir.path().join("c");
    let mut c = Collector::start_with_config(&data, None, &config, &[]);
    let (mut agent, _root, opened) = degraded_host(&c, dir.path(), "h").await;
    let number = opened["number"].as_str().unwrap().to_owned();
    let (status, body) = c.post(&format!("/api/v1/incidents/{number}/ack"), json!({})).await;
    assert_eq!(status, 200, "{body}");
    // The first event was tried and refused; the second waits behind it (a receiver gets an
    // incident's events in order); nothing is delivered yet.
    let pending = c
        .wait_for("failed attempts", Duration::from_secs(20), async |c| {
            let v = incident(c, &opened["number"]).await;
            let d = v["deliveries"].as_array()?.clone();
            (d.len() == 2 && d[0]["attempts"].as_u64() >= Some(2)).then_some(d)
        })
        .await;
    assert!(pending.iter().all(|d| d["state"] == "pending"), "{pending:#?}");
    assert!(pending[0]["last_error"].as_str().unwrap().contains("503"), "{pending:#?}");
    assert_eq!(pending[1]["attempts"], 0, "{pending:#?}");

    agent.proc.kill();
    c.proc.kill();
    hook.set_status(200);
    c = Collector::start_with_config(&data, None, &config, &[]);
    let expected: BTreeSet<String> =
        pending.iter().map(|d| d["event_id"].as_str().unwrap().to_owned()).collect();
    c.wait_for("every pending notification delivered", Duration::from_secs(60), async |_| {
        let got: BTreeSet<String> = events(&hook)
            .into_iter()
            .filter(|(r, _)| r.answered == 200)
            .map(|(_, b)| b["event_id"].as_str().unwrap().to_owned())
            .collect();
        (got == expected).then_some(())
    })
    .await;
    assert_eq!(kinds(&hook, &number), ["opened", "acknowledged"]);
    let shown = incident(&c, &opened["number"]).await;
    let deliveries = shown["deliveries"].as_array().unwrap();
    assert!(deliveries.iter().all(|d| d["state"] == "delivered"), "{deliveries:#?}");
    assert!(deliveries[0]["attempts"].as_u64().unwrap() >= 3, "{deliveries:#?}");
}

fn raid_report(seq: u64, array: vigil_proto::v1::RaidArray) -> vigil_proto::v1::AgentMessage {
    use vigil_proto::v1::{
        AgentMessage, ProbeResult, RaidData, Report, agent_message, probe_result,
    };
    AgentMessage {
        kind: Some(agent_message::Kind::Report(Report {
            agent_instance: "0e6f2b0c-5a43-4d55-9c5e-6f0a3c1d2e4f".into(),
            seq,
            collected_at_unix_ms: 1,
            probes: vec![ProbeResult {
                probe: "raid".into(),
                status: probe_result::Status::Ok as i32,
                data: Some(probe_result::Data::Raid(RaidData { arrays: vec![array] })),
                ..Default::default()
            }],
            ..Default::default()
        })),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_agent_strings_reach_the_webhook_as_valid_bounded_json() {
    use vigil_proto::v1::{RaidArray, RaidMember};
    let dir = tempfile::tempdir().unwrap();
    let hook = Webhook::start(200).await;
    // Limits raised so a megabyte-long name is accepted by ingest and must be bounded later.
    let ingest = "max_string_bytes = 2097152\nmax_report_bytes = 8388608\n";
    let config = config_with(dir.path(), &[("hook", &hook)], None, ingest);
    let c = Collector::start_with_config(&dir.path().join("c"), None, &config, &[]);
    let token = c.enrollment_token("acme", "main", 1, "1h").await;
    let who = TestIdentity::enroll(&c, &token, "hostile").await.unwrap();

    let hostile = format!(
        "md0\n`$(touch /tmp/pwned)`<script>alert(1)</script>\u{1b}[2J\u{202e}{}",
        "x".repeat(1 << 20)
    );
    let member =
        |device: &str, failed| RaidMember { device: device.into(), failed, ..Default::default() };
    let array = |name: &str, failed: bool| RaidArray {
        name: name.into(),
        level: "raid1".into(),
        state: "active".into(),
        raid_disks: 2,
        active_disks: if failed { 1 } else { 2 },
        failed_disks: u32::from(failed),
        degraded: failed,
        members: vec![member("sda2", false), member("sdb2", failed)],
        ..Default::default()
    };
    // A healthy first report (the baseline), then the hostile array degraded.
    let (acked, err) = who
        .stream(
            &c,
            "0e6f2b0c-5a43-4d55-9c5e-6f0a3c1d2e4f",
            vec![raid_report(1, array("md0", false)), raid_report(2, array(&hostile, true))],
        )
        .await;
    assert_eq!((acked, err.map(|e| e.to_string())), (vec![1, 2], None));

    let (request, body) = c
        .wait_for("the opened event at the webhook", Duration::from_secs(20), async |_| {
            events(&hook).into_iter().find(|(_, b)| b["incident"]["rule"] == "raid.degraded")
        })
        .await;
    // Valid JSON (events() parsed and checked the signature), bounded, and the text is data.
    assert!(request.body.len() < 16 * 1024, "{} bytes", request.body.len());
    let summary = body["incident"]["summary"].as_str().unwrap();
    let resource = body["incident"]["resource"].as_str().unwrap();
    for text in [summary, resource] {
        assert!(text.contains("`$(touch /tmp/pwned)`<script>alert(1)</script>"), "{text:?}");
        assert!(!text.chars().any(|c| c.is_control() || c == '\u{202e}'), "{text:?}");
        assert!(text.len() <= 4096, "{}", text.len());
    }
    assert!(!Path::new("/tmp/pwned").exists(), "nothing ran the text");
    let shown =
        c.get(&format!("/api/v1/incidents/{}", body["incident"]["number"].as_str().unwrap())).await;
    assert_eq!(shown["summary"].as_str().unwrap(), summary, "the API shows what was sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn vigilctl_shows_and_changes_a_contract_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Webhook::start(200).await;
    let config = config(dir.path(), &[("hook", &hook)], None);
    let c = Collector::start_with_config(&dir.path().join("c"), None, &config, &[]);
    assert!(c.vigilctl(&["customers", "add", "acme"]).status.success());
    let text = |out: &std::process::Output| String::from_utf8_lossy(&out.stdout).into_owned();

    let out = c.vigilctl(&["customers", "show", "acme"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown = text(&out);
    assert!(shown.contains("(default contract)") && shown.contains("L1     5m"), "{shown}");

    let out = c.vigilctl(&[
        "customers",
        "set",
        "acme",
        "--time-zone",
        "Europe/Berlin",
        "--response",
        "L1=10m",
        "--hours",
        "L4=mon-fri/08:00-18:00",
        "--holidays",
        "2026-12-24,2026-12-25",
        "--tier",
        "2=hook",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown = text(&out);
    for line in [
        "time zone Europe/Berlin",
        "L1     10m",
        "mon,tue,wed,thu,fri 08:00-18:00",
        "holidays: 2026-12-24, 2026-12-25",
        "tier 2: hook",
    ] {
        assert!(shown.contains(line), "{line:?} missing:\n{shown}");
    }
    let contract = c.get("/api/v1/customers/acme/contract").await;
    assert_eq!(contract["default"], false);
    assert_eq!(contract["contract"]["levels"]["L1"]["response"], "10m");

    // Wrong input: a clear message and exit code 2 (usage) or 1 (refused by the collector),
    // and the stored contract unchanged.
    let out = c.vigilctl(&["customers", "set", "acme", "--hours", "L4=weekdays"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected always, or days/HH:MM-HH:MM"));
    let out = c.vigilctl(&["customers", "set", "acme", "--tier", "1=pager"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("tiers.1: unknown receiver \"pager\" (configured: hook)"), "{err}");
    let out = c.vigilctl(&["customers", "set", "acme", "--time-zone", "Mars/Base"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("time_zone: unknown time zone"));
    assert_eq!(c.get("/api/v1/customers/acme/contract").await["contract"], contract["contract"]);

    let out = c.vigilctl(&["customers", "sla", "acme"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text(&out).contains("RESPONSE MET/MISSED"), "{}", text(&out));
}
