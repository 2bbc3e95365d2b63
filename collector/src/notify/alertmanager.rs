//! Sends incidents to a Prometheus Alertmanager through its API v2 (`POST /api/v2/alerts`), so
//! operators who already route, silence and page with Alertmanager get Vigil's incidents there.
//! One incident is one alert: Alertmanager identifies an alert by its label set, so sending the
//! same event twice (at-least-once delivery) updates the alert instead of adding one. A firing
//! alert carries an explicit `endsAt` of now + TTL, so that Alertmanager resolves it by itself
//! if Vigil falls silent; the outbox must therefore re-send open incidents well within the TTL.
//! Label values are bounded to [`MAX_LABEL_BYTES`], annotations to [`MAX_TEXT_BYTES`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::payload::{
    DeliveryError, MAX_LABEL_BYTES, MAX_TEXT_BYTES, Notification, REQUEST_TIMEOUT, bounded,
    deliver, target_url,
};
use crate::clock::rfc3339;

/// The `alertname` label of every Vigil alert.
pub const ALERT_NAME: &str = "VigilIncident";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertmanagerTarget {
    /// Base URL, e.g. `http://127.0.0.1:9093` (a path prefix such as `/alertmanager` is kept).
    pub url: String,
    /// Added to every alert, e.g. `env="prod"` for routing. They never replace a label Vigil
    /// sets itself; such a name is ignored.
    pub extra_labels: BTreeMap<String, String>,
}

impl AlertmanagerTarget {
    /// `{url}/api/v2/alerts`.
    pub fn alerts_url(&self) -> String {
        format!("{}/api/v2/alerts", self.url.trim_end_matches('/'))
    }

    /// The request body for this target: [`alert_body`] plus the extra labels, followed by
    /// the same alert resolved under every other `level`/`tier` label pair. Alertmanager
    /// identifies an alert by its labels, so without those a level change or an escalation
    /// would leave the alert of the old level or tier firing beside the new one until its
    /// `endsAt`; with them an incident is exactly one active alert.
    pub fn body(&self, n: &Notification, now_ms: i64, firing_ttl: Duration) -> Value {
        let mut body = alert_body(n, now_ms, firing_ttl);
        if let Some(labels) = body[0]["labels"].as_object_mut() {
            for (name, value) in &self.extra_labels {
                if !labels.contains_key(name) {
                    labels.insert(name.clone(), bounded(value, MAX_LABEL_BYTES).into());
                }
            }
        }
        let current = body[0].clone();
        let ended = rfc3339(now_ms.max(n.incident.opened_at_ms));
        let ended = if n.is_resolved() { current["endsAt"].clone() } else { ended.into() };
        if let Some(alerts) = body.as_array_mut() {
            for level in 1..=4u8 {
                for tier in 1..=3u8 {
                    if (level, tier) == (n.incident.level, n.incident.tier) {
                        continue;
                    }
                    let mut other = current.clone();
                    other["labels"]["level"] = format!("L{level}").into();
                    other["labels"]["tier"] = tier.to_string().into();
                    other["endsAt"] = ended.clone();
                    alerts.push(other);
                }
            }
        }
        body
    }
}

/// The JSON array of one alert for `n`. `startsAt` is when the incident opened; `endsAt` is
/// `now_ms + firing_ttl` while it is open and its resolution time once resolved (never before
/// `startsAt`, which Alertmanager would refuse). Pure.
pub fn alert_body(n: &Notification, now_ms: i64, firing_ttl: Duration) -> Value {
    let i = &n.incident;
    let label = |text: &str| Value::from(bounded(text, MAX_LABEL_BYTES));
    let mut labels = serde_json::Map::new();
    labels.insert("alertname".into(), ALERT_NAME.into());
    labels.insert("incident".into(), label(&i.number));
    labels.insert("customer".into(), label(&i.customer));
    labels.insert("site".into(), label(&i.site));
    if let Some(host) = &i.host_id {
        labels.insert("host".into(), label(host));
    }
    if let Some(hostname) = &i.hostname {
        labels.insert("hostname".into(), label(hostname));
    }
    labels.insert("rule".into(), label(&i.rule));
    labels.insert("resource".into(), label(&i.resource));
    labels.insert("level".into(), format!("L{}", i.level).into());
    labels.insert("tier".into(), i.tier.to_string().into());

    let ends_at_ms = if n.is_resolved() {
        i.resolved_at_ms.unwrap_or(n.at_ms)
    } else {
        let ttl_ms = i64::try_from(firing_ttl.as_millis()).unwrap_or(i64::MAX);
        now_ms.saturating_add(ttl_ms)
    };
    json!([{
        "labels": labels,
        "annotations": {
            "summary": bounded(&i.summary, MAX_TEXT_BYTES),
            "description": bounded(&n.detail, MAX_TEXT_BYTES),
            "event_id": bounded(&n.event_id, MAX_TEXT_BYTES),
        },
        "startsAt": rfc3339(i.opened_at_ms),
        "endsAt": rfc3339(ends_at_ms.max(i.opened_at_ms)),
    }])
}

/// Posts `n` to the target's Alertmanager. `client` must be built with
/// `reqwest::redirect::Policy::none()` (see [`super::payload::DeliveryError`] for the outcome
/// table); the request carries its own [`REQUEST_TIMEOUT`].
pub async fn send(
    client: &reqwest::Client,
    target: &AlertmanagerTarget,
    n: &Notification,
    now_ms: i64,
    firing_ttl: Duration,
) -> Result<(), DeliveryError> {
    let url = target_url(&target.alerts_url())?;
    let body = target.body(n, now_ms, firing_ttl);
    let request = client.post(url.clone()).timeout(REQUEST_TIMEOUT).json(&body);
    deliver(request, &url).await
}

#[cfg(test)]
mod tests {
    use super::super::payload::EventKind;
    use super::super::testing::{self, Alertmanager, notification};
    use super::*;
    use crate::clock::{Clock, SystemClock};

    const TTL: Duration = Duration::from_secs(3600);

    #[test]
    fn firing_alert_body() {
        let n = notification();
        let now = n.at_ms + 5_000;
        let body = alert_body(&n, now, Duration::from_secs(600));
        assert_eq!(
            body,
            json!([{
                "labels": {
                    "alertname": "VigilIncident",
                    "incident": "INC-000042",
                    "customer": "Acme",
                    "site": "Berlin",
                    "host": "h-0001",
                    "hostname": "db1",
                    "rule": "raid.degraded",
                    "resource": "md0",
                    "level": "L2",
                    "tier": "1",
                },
                "annotations": {
                    "summary": "md0 degraded: 1 of 2 disks missing",
                    "description": "opened",
                    "event_id": "INC-000042/7",
                },
                "startsAt": "2025-11-30T10:00:00.000Z",
                "endsAt": "2025-11-30T10:10:05.000Z",
            }])
        );
    }

    #[test]
    fn resolved_alert_body_ends_at_the_resolution() {
        let mut n = notification();
        n.kind = EventKind::Resolved;
        n.event_id = "INC-000042/9".into();
        n.incident.state = "resolved".into();
        n.incident.resolved_at_ms = Some(n.incident.opened_at_ms + 90_000);
        n.incident.host_id = None;
        n.incident.hostname = None;
        let body = alert_body(&n, n.at_ms + 3_600_000, TTL);
        let alert = &body[0];
        assert_eq!(alert["startsAt"], "2025-11-30T10:00:00.000Z");
        assert_eq!(alert["endsAt"], "2025-11-30T10:01:30.000Z");
        assert_eq!(alert["annotations"]["event_id"], "INC-000042/9");
        let labels = alert["labels"].as_object().unwrap();
        assert!(!labels.contains_key("host") && !labels.contains_key("hostname"));

        // Closed without a recorded resolution time: ends when the event happened.
        n.kind = EventKind::Closed;
        n.incident.resolved_at_ms = None;
        n.at_ms = n.incident.opened_at_ms + 60_000;
        assert_eq!(alert_body(&n, n.at_ms, TTL)[0]["endsAt"], "2025-11-30T10:01:00.000Z");

        // A resolution stamped before the opening (clock trouble) is clamped, not refused.
        n.incident.resolved_at_ms = Some(n.incident.opened_at_ms - 1);
        assert_eq!(alert_body(&n, n.at_ms, TTL)[0]["endsAt"], "2025-11-30T10:00:00.000Z");
    }

    #[test]
    fn extra_labels_never_override_built_in_ones() {
        let extra: BTreeMap<String, String> = [
            ("alertname", "Spoofed"),
            ("incident", "INC-999999"),
            ("level", "L4"),
            ("customer", "Other"),
            ("env", "prod"),
            ("team", &"x".repeat(1000)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let target = AlertmanagerTarget { url: "http://am:9093/".into(), extra_labels: extra };
        let n = notification();
        let body = target.body(&n, n.at_ms, TTL);
        let labels = &body[0]["labels"];
        assert_eq!(labels["alertname"], "VigilIncident");
        assert_eq!(labels["incident"], "INC-000042");
        assert_eq!(labels["level"], "L2");
        assert_eq!(labels["customer"], "Acme");
        assert_eq!(labels["env"], "prod");
        assert!(labels["team"].as_str().unwrap().len() <= MAX_LABEL_BYTES);
        assert_eq!(target.alerts_url(), "http://am:9093/api/v2/alerts");
    }

    #[test]
    fn hostile_text_is_bounded_in_labels_and_annotations() {
        let mut n = notification();
        let hostile = "`$(rm -rf /)`<script>alert(1)</script>\0\x1b[2J\r\n\"\\";
        n.incident.summary = hostile.repeat(1 << 20 >> 6);
        n.incident.resource = hostile.repeat(100);
        n.incident.hostname = Some(format!("db1\0{}", "é".repeat(500)));
        n.detail = "\x07".repeat(1 << 20);
        let body = alert_body(&n, n.at_ms, TTL);
        let text = serde_json::to_string(&body).unwrap();
        let back: Value = serde_json::from_str(&text).unwrap();
        let alert = &back[0];
        for (name, value) in alert["labels"].as_object().unwrap() {
            let value = value.as_str().unwrap();
            assert!(value.len() <= MAX_LABEL_BYTES, "{name}: {}", value.len());
            assert!(!value.contains('\0') && !value.contains('\x1b'), "{name}");
        }
        for (name, value) in alert["annotations"].as_object().unwrap() {
            assert!(value.as_str().unwrap().len() <= MAX_TEXT_BYTES, "{name}");
        }
        assert!(alert["annotations"]["summary"].as_str().unwrap().starts_with("`$(rm -rf /)`<"));
        assert!(text.len() < MAX_TEXT_BYTES * 2 + MAX_LABEL_BYTES * 12);
    }

    // --- against a real Alertmanager -----------------------------------------------------------

    fn now_ms() -> i64 {
        SystemClock.now_ms()
    }

    /// A notification stamped with real time: Alertmanager judges `endsAt` by its own clock.
    fn live_notification(number: &str) -> Notification {
        let mut n = notification();
        let now = now_ms();
        n.incident.number = number.into();
        n.event_id = format!("{number}/1");
        n.at_ms = now;
        n.incident.opened_at_ms = now - 60_000;
        n
    }

    fn target(am: &Alertmanager) -> AlertmanagerTarget {
        let extra_labels = [("env".to_owned(), "test".to_owned())].into();
        AlertmanagerTarget { url: am.url.clone(), extra_labels }
    }

    #[tokio::test]
    async fn real_alertmanager_fires_dedups_and_resolves() {
        let Some(am) = Alertmanager::start().await else { return };
        let client = testing::client();
        let target = target(&am);
        let n = live_notification("INC-000101");
        let filter = r#"incident="INC-000101""#;

        let sent_at = now_ms();
        send(&client, &target, &n, sent_at, TTL).await.unwrap();
        let alerts = am.alerts(&[filter]).await;
        assert_eq!(alerts.len(), 1, "{alerts:#?}");
        let alert = &alerts[0];
        assert_eq!(
            alert["labels"],
            json!({
                "alertname": "VigilIncident",
                "incident": "INC-000101",
                "customer": "Acme",
                "site": "Berlin",
                "host": "h-0001",
                "hostname": "db1",
                "rule": "raid.degraded",
                "resource": "md0",
                "level": "L2",
                "tier": "1",
                "env": "test",
            })
        );
        assert_eq!(alert["status"]["state"], "active");
        assert_eq!(alert["annotations"]["event_id"], "INC-000101/1");
        assert_eq!(alert["annotations"]["summary"], "md0 degraded: 1 of 2 disks missing");
        assert_eq!(testing::parse_time(&alert["startsAt"]), n.incident.opened_at_ms);
        assert_eq!(testing::parse_time(&alert["endsAt"]), sent_at + TTL.as_millis() as i64);
        let fingerprint = alert["fingerprint"].clone();

        // The same event again (at-least-once delivery), and a later one: still one alert.
        send(&client, &target, &n, now_ms(), TTL).await.unwrap();
        let mut acked = n.clone();
        acked.kind = EventKind::Acknowledged;
        acked.event_id = "INC-000101/2".into();
        send(&client, &target, &acked, now_ms(), TTL).await.unwrap();
        let alerts = am.alerts(&[filter]).await;
        assert_eq!(alerts.len(), 1, "{alerts:#?}");
        assert_eq!(alerts[0]["fingerprint"], fingerprint);
        assert_eq!(alerts[0]["annotations"]["event_id"], "INC-000101/2");
        assert_eq!(alerts[0]["status"]["state"], "active");
        assert_eq!(am.alerts(&[]).await.len(), 1);

        // Resolved: Alertmanager keeps the alert until its GC, but the API lists only alerts
        // whose endsAt is in the future, whatever the active/silenced/inhibited filters say.
        let mut resolved = n.clone();
        resolved.kind = EventKind::Resolved;
        resolved.event_id = "INC-000101/3".into();
        resolved.incident.state = "resolved".into();
        resolved.incident.resolved_at_ms = Some(now_ms());
        send(&client, &target, &resolved, now_ms(), TTL).await.unwrap();
        assert_eq!(am.alerts(&[filter]).await, Vec::<Value>::new());
        assert_eq!(am.alerts(&[]).await, Vec::<Value>::new());
        assert_eq!(am.groups().await, Vec::<Value>::new());

        // Reopened: the same labels fire again.
        let mut reopened = n.clone();
        reopened.kind = EventKind::Reopened;
        reopened.event_id = "INC-000101/4".into();
        send(&client, &target, &reopened, now_ms(), TTL).await.unwrap();
        let alerts = am.alerts(&[filter]).await;
        assert_eq!(alerts.len(), 1, "{alerts:#?}");
        assert_eq!(alerts[0]["fingerprint"], fingerprint);
        assert_eq!(alerts[0]["status"]["state"], "active");
    }

    /// Pins a consequence of `level` and `tier` being labels: Alertmanager identifies an alert by
    /// its labels, so a level change or an escalation starts a second alert, and resolving the
    /// incident (with its current labels) leaves the first one firing until its `endsAt`. A
    /// [`Notification`] does not carry the previous level and tier, so the sender cannot resolve
    /// the old alert; if that matters, level and tier must move to annotations or the
    /// notification must carry the previous values. Change this test with that decision.
    #[tokio::test]
    async fn real_alertmanager_level_change_leaves_one_active_alert() {
        let Some(am) = Alertmanager::start().await else { return };
        let client = testing::client();
        let target = target(&am);
        let n = live_notification("INC-000104");
        send(&client, &target, &n, now_ms(), TTL).await.unwrap();
        let mut raised = n.clone();
        raised.kind = EventKind::LevelChanged;
        raised.event_id = "INC-000104/2".into();
        raised.incident.level = 3;
        send(&client, &target, &raised, now_ms(), TTL).await.unwrap();
        let mut resolved = raised.clone();
        resolved.kind = EventKind::Resolved;
        resolved.event_id = "INC-000104/3".into();
        resolved.incident.resolved_at_ms = Some(now_ms());
        send(&client, &target, &resolved, now_ms(), TTL).await.unwrap();
        let alerts = am.alerts(&[r#"incident="INC-000104""#]).await;
        assert_eq!(alerts, Vec::<Value>::new(), "the L2 alert went with the level change");
    }

    #[tokio::test]
    async fn real_alertmanager_escalation_replaces_the_tier_1_alert() {
        let Some(am) = Alertmanager::start().await else { return };
        let client = testing::client();
        let target = target(&am);
        let n = live_notification("INC-000105");
        send(&client, &target, &n, now_ms(), TTL).await.unwrap();
        let mut escalated = n.clone();
        escalated.kind = EventKind::Escalated;
        escalated.event_id = "INC-000105/2".into();
        escalated.incident.tier = 2;
        send(&client, &target, &escalated, now_ms(), TTL).await.unwrap();
        let alerts = am.alerts(&[r#"incident="INC-000105""#]).await;
        assert_eq!(alerts.len(), 1, "{alerts:#?}");
        assert_eq!(alerts[0]["labels"]["tier"], "2");
        assert_eq!(alerts[0]["status"]["state"], "active");
    }

    #[tokio::test]
    async fn real_alertmanager_accepts_hostile_text_bounded() {
        let Some(am) = Alertmanager::start().await else { return };
        let client = testing::client();
        let mut n = live_notification("INC-000102");
        n.incident.summary = "`$(rm -rf /)`<script>\0\x1b[2J\r\n".repeat(40_000);
        n.incident.resource = format!("md0\0{}", "x".repeat(10_000));
        n.incident.hostname = Some("db1\u{202E}txt.exe".into());
        send(&client, &target(&am), &n, now_ms(), TTL).await.unwrap();
        let alerts = am.alerts(&[r#"incident="INC-000102""#]).await;
        assert_eq!(alerts.len(), 1, "{alerts:#?}");
        let summary = alerts[0]["annotations"]["summary"].as_str().unwrap();
        assert!(summary.len() <= MAX_TEXT_BYTES && summary.ends_with('…'), "{}", summary.len());
        assert!(summary.starts_with("`$(rm -rf /)`<script>\u{FFFD}\u{FFFD}[2J\u{FFFD}\n"));
        let resource = alerts[0]["labels"]["resource"].as_str().unwrap();
        assert_eq!(resource.len(), MAX_LABEL_BYTES);
        assert!(resource.starts_with("md0\u{FFFD}xxx"));
        assert_eq!(alerts[0]["labels"]["hostname"], "db1\u{FFFD}txt.exe");
    }

    #[tokio::test]
    async fn real_alertmanager_refusal_is_permanent() {
        let Some(am) = Alertmanager::start().await else { return };
        let client = testing::client();
        let mut target = target(&am);
        target.extra_labels.insert("not-a-label-name".into(), "x".into());
        let n = live_notification("INC-000103");
        let err = send(&client, &target, &n, now_ms(), TTL).await.unwrap_err();
        assert!(!err.is_retry(), "{err}");
        let message = err.to_string();
        assert!(message.starts_with(&format!("{}/api/v2/alerts: HTTP 400", am.url)), "{message}");
        assert!(message.contains("not-a-label-name"), "{message}");
        assert_eq!(am.alerts(&[]).await, Vec::<Value>::new());

        // The wrong path on a live server: 404, permanent too.
        let wrong = AlertmanagerTarget { url: format!("{}/nope", am.url), ..target };
        let err = send(&client, &wrong, &n, now_ms(), TTL).await.unwrap_err();
        assert!(!err.is_retry() && err.to_string().contains("HTTP 404"), "{err}");
    }

    #[tokio::test]
    async fn unreachable_alertmanager_is_retried() {
        let target =
            AlertmanagerTarget { url: testing::unused_local_url(), extra_labels: BTreeMap::new() };
        let err =
            send(&testing::client(), &target, &notification(), now_ms(), TTL).await.unwrap_err();
        assert!(err.is_retry(), "{err}");
        assert!(err.to_string().starts_with(&target.alerts_url()), "{err}");
    }
}
