//! Notifications are never given up: a delivery whose receiver stays down past
//! `notify.max_attempts` is dead-lettered, shown per receiver at `/metrics`, listed by the API
//! and retried every `notify.dead_letter_retry`; once the receiver answers again it gets the
//! event exactly once, and an operator may drop a dead letter (audit-logged) instead.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use vigil_e2e::mdstat::{self, DEGRADED};
use vigil_e2e::webhook::Webhook;
use vigil_e2e::{Agent, Collector};

const SECRET: &str = "a-webhook-secret-of-32-characters";

/// Two receivers, both told of every incident; two attempts before a delivery is
/// dead-lettered, and a dead letter retried every 2 s.
fn config(dir: &Path, hook: &Webhook, gone: &Webhook) -> String {
    let secret = dir.join("hook.secret");
    vigil_e2e::write_secret(&secret, SECRET);
    let mut text = String::from(
        "[enrollment]\nattempts_per_minute = 100\n\n[ingest]\nmin_silence = \"1day\"\n\n\
         [incidents]\nsweep_every = \"100ms\"\nstart_grace = \"1ms\"\n\n\
         [sla]\nsweep_every = \"100ms\"\nlease_ttl = \"1s\"\n\n\
         [notify]\ndefault_receivers = [\"hook\", \"gone\"]\nmax_attempts = 2\n\
         dead_letter_retry = \"2s\"\n\n",
    );
    for (name, w) in [("hook", hook), ("gone", gone)] {
        text.push_str(&format!(
            "[notify.receivers.{name}]\nwebhook = \"{}\"\nsecret_file = \"{}\"\n\n",
            w.url,
            secret.display()
        ));
    }
    text.push_str("[rules.\"clock.unsynchronised\"]\nenabled = false\n");
    text
}

/// The dead letters the API lists, by receiver: (delivery id, event id).
async fn dead_letters(c: &Collector) -> BTreeMap<String, Vec<(i64, String)>> {
    let mut out: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
    for d in c.get("/api/v1/notifications/dead-letters").await["dead_letters"]
        .as_array()
        .expect("dead_letters")
    {
        assert_eq!(d["state"], "dead_letter", "{d:#}");
        out.entry(d["receiver"].as_str().unwrap().to_owned())
            .or_default()
            .push((d["id"].as_i64().unwrap(), d["event_id"].as_str().unwrap().to_owned()));
    }
    out
}

/// `vigil_notification_dead_letters{receiver="…"}` as `/metrics` shows it.
async fn gauge(c: &Collector, receiver: &str) -> Option<u64> {
    let text = c.get_text("/metrics").await;
    let prefix = format!("vigil_notification_dead_letters{{receiver=\"{receiver}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).map(|v| v.trim().parse().unwrap())
}

/// The event ids a webhook accepted (answered 200), with how often each.
fn accepted(hook: &Webhook) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in hook.requests().into_iter().filter(|r| r.answered == 200) {
        let id = r.header("x-vigil-event-id").expect("event id header").to_owned();
        *out.entry(id).or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_down_past_max_attempts_gets_its_dead_letters_exactly_once_when_back() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Webhook::start(503).await;
    let gone = Webhook::start(503).await;
    let c = Collector::start_with_config(
        &dir.path().join("c"),
        None,
        &config(dir.path(), &hook, &gone),
        &[],
    );
    let (_agent, root): (Agent, _) = mdstat::healthy_agent(&c, dir.path(), "h").await;
    mdstat::set(&root, DEGRADED);

    // Both receivers refuse; after two attempts each has the incident's event dead-lettered.
    let dead = c
        .wait_for("a dead letter for each receiver", Duration::from_secs(60), async |c| {
            let dead = dead_letters(c).await;
            (dead.get("hook").is_some_and(|d| !d.is_empty())
                && dead.get("gone").is_some_and(|d| !d.is_empty()))
            .then_some(dead)
        })
        .await;
    let hook_dead: Vec<String> = dead["hook"].iter().map(|(_, e)| e.clone()).collect();
    assert_eq!(gauge(&c, "hook").await, Some(hook_dead.len() as u64));
    assert_eq!(gauge(&c, "gone").await, Some(dead["gone"].len() as u64));
    let log = c.proc.log_text();
    assert!(log.contains("notification dead-lettered"), "{log}");
    assert!(hook.requests().len() >= 2, "two attempts before the dead letter");

    // Still retried, slowly: more attempts arrive while the receiver stays down.
    let before = hook.requests().len();
    c.wait_for("a slow retry of the dead letter", Duration::from_secs(10), async |_| {
        (hook.requests().len() > before).then_some(())
    })
    .await;
    assert!(accepted(&hook).is_empty());

    // vigilctl lists them.
    let listed = c.vigilctl(&["notifications", "dead-letters"]);
    assert!(listed.status.success(), "{listed:?}");
    let listed = String::from_utf8_lossy(&listed.stdout);
    for (id, event) in dead.values().flatten() {
        assert!(listed.contains(event) && listed.contains(&id.to_string()), "{listed}");
    }

    // Dead letters are fleet-wide: a viewer reads them but drops nothing, and a token limited
    // to one customer does not see them.
    let token = async |name: &str, role: &str, customer: Option<&str>| {
        let body = json!({ "name": name, "role": role, "customer": customer });
        let (status, body) = c.post("/api/v1/api-tokens", body).await;
        assert_eq!(status, 200, "{body}");
        body["token"].as_str().unwrap().to_owned()
    };
    let viewer = token("noc-viewer", "viewer", None).await;
    let acme = token("acme-operator", "operator", Some("acme")).await;
    let list = "/api/v1/notifications/dead-letters";
    let drop_first = format!("/api/v1/notifications/{}", dead["gone"][0].0);
    assert_eq!(c.request_as(&viewer, Method::GET, list, None).await.0, 200);
    assert_eq!(c.request_as(&viewer, Method::DELETE, &drop_first, None).await.0, 403);
    assert_eq!(c.request_as(&acme, Method::GET, list, None).await.0, 403);
    assert_eq!(c.request_as(&acme, Method::DELETE, &drop_first, None).await.0, 403);

    // An operator drops the other receiver's dead letters: audit-logged, never sent again.
    for (id, event) in &dead["gone"] {
        let dropped = c.vigilctl(&["notifications", "drop", &id.to_string()]);
        assert!(dropped.status.success(), "{dropped:?}");
        let said = String::from_utf8_lossy(&dropped.stdout);
        assert_eq!(
            said,
            format!("delivery {id} of {event} to gone dropped; it will not be sent\n")
        );
        let (status, body) = c
            .request_as(
                &c.admin_token,
                Method::DELETE,
                &format!("/api/v1/notifications/{id}"),
                None,
            )
            .await;
        assert_eq!(status, 409, "a dropped delivery is not dead-lettered: {body}");
    }
    let audit = c.get("/api/v1/audit").await;
    let drops = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "notification.drop")
        .count();
    assert_eq!(drops, dead["gone"].len(), "{audit:#}");

    // The receiver comes back: each dead letter is delivered, and only once.
    hook.set_status(200);
    gone.set_status(200);
    c.wait_for("the dead letters delivered", Duration::from_secs(30), async |c| {
        let got = accepted(&hook);
        (hook_dead.iter().all(|e| got.contains_key(e)) && dead_letters(c).await.is_empty())
            .then_some(())
    })
    .await;
    assert_eq!(gauge(&c, "hook").await, Some(0));
    assert_eq!(gauge(&c, "gone").await, Some(0));
    // Two more slow-retry periods: nothing is sent twice, and the dropped ones never.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let got = accepted(&hook);
    assert!(got.values().all(|n| *n == 1), "an event delivered twice: {got:?}");
    let dropped: Vec<&String> = dead["gone"].iter().map(|(_, e)| e).collect();
    let gone_got = accepted(&gone);
    assert!(dropped.iter().all(|e| !gone_got.contains_key(*e)), "{gone_got:?}");
    let incident = hook_dead[0].split('/').next().unwrap().to_owned();
    let shown: Value = c.get(&format!("/api/v1/incidents/{incident}")).await;
    let states: Vec<&str> = shown["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["receiver"] == "hook")
        .map(|d| d["state"].as_str().unwrap())
        .collect();
    assert!(states.iter().all(|s| *s == "delivered"), "{shown:#}");
}
