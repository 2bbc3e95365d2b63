//! Notifications that are never lost. Every notifiable incident change (opened, reopened,
//! level, acknowledged, warning, escalated, resolved) enters the store's outbox in the same
//! transaction as the change. The notifier, on the holder of the runner lease only:
//!
//! 1. **fans out** each outbox item to the receivers of the incident's support tier and the
//!    tiers below it (the contract's, or `notify.default_receivers`), one delivery row per
//!    receiver with the payload as it was, in one transaction;
//! 2. **delivers** due deliveries ([`alertmanager`], [`webhook`]), recording each outcome and
//!    retrying with [`backoff`] — at least once, each with a stable event id
//!    (`INC-000042/<timeline id>`) receivers deduplicate on. A delivery is never given up:
//!    once `notify.max_attempts` is used up, or the receiver refuses it, it is dead-lettered
//!    and tried again every `notify.dead_letter_retry` until the receiver takes it or an
//!    operator drops it; the lease holder exports the dead letters per receiver at `/metrics`;
//! 3. **re-posts firing alerts** to Alertmanager receivers every `notify.alertmanager_repeat`
//!    with an explicit `endsAt`, so Alertmanager's view follows Vigil's even across restarts.
//!
//! A crash at any point repeats at most the step it was in: an item is fanned out again only
//! if its transaction did not commit, a delivery is retried if its outcome was not recorded.
//! No shell anywhere: payloads are JSON built from data, every agent-sent string bounded.

pub mod alertmanager;
pub mod backoff;
pub mod payload;
#[cfg(test)]
pub mod testing;
pub mod webhook;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::{SharedClock, UnixMs};
use crate::config::NotifyConfig;
use crate::events::NotificationDelivered;
use crate::sla::Contracts;
use crate::store::{
    DeliveryOutcome, DeliveryRow, DeliveryState, Fence, IncidentFilter, IncidentRow, IncidentState,
    NewDelivery, Store, StoreResult, TimelineKind, incident_number,
};
use alertmanager::AlertmanagerTarget;
use payload::{DeliveryError, EventKind, IncidentSnapshot, Notification};
use webhook::WebhookTarget;

/// Most outbox items fanned out, and deliveries attempted, per tick.
const BATCH: u32 = 200;

/// A configured receiver, ready to send.
#[derive(Debug, Clone)]
pub enum Target {
    Alertmanager(AlertmanagerTarget),
    Webhook(WebhookTarget),
}

/// What a delivery row carries: the notification and the contract's extra labels.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    notification: Notification,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// Builds the receivers of the config; a webhook's secret is read from its file now, so a
/// missing file stops the collector at start rather than failing every delivery later.
pub fn targets(config: &NotifyConfig) -> anyhow::Result<HashMap<String, Target>> {
    let mut out = HashMap::new();
    for (name, r) in &config.receivers {
        let target = match (&r.alertmanager, &r.webhook) {
            (Some(url), _) => Target::Alertmanager(AlertmanagerTarget {
                url: url.trim_end_matches('/').to_owned(),
                extra_labels: r.labels.clone(),
            }),
            (None, Some(url)) => {
                let path = r.secret_file.as_ref().ok_or_else(|| {
                    anyhow::anyhow!("notify.receivers.{name}: a webhook needs secret_file")
                })?;
                crate::data_dir::check_private_file(path).map_err(|e| {
                    anyhow::anyhow!("notify.receivers.{name}.secret_file: {}: {e}", path.display())
                })?;
                let secret = std::fs::read_to_string(path).map_err(|e| {
                    anyhow::anyhow!(
                        "notify.receivers.{name}.secret_file: cannot read {}: {e}",
                        path.display()
                    )
                })?;
                let secret = secret.trim().to_owned();
                if secret.len() < 16 {
                    anyhow::bail!(
                        "notify.receivers.{name}.secret_file: {} holds a secret shorter than 16 bytes",
                        path.display()
                    );
                }
                Target::Webhook(WebhookTarget { url: url.clone(), secret })
            }
            (None, None) => anyhow::bail!("notify.receivers.{name}: no alertmanager or webhook"),
        };
        out.insert(name.clone(), target);
    }
    Ok(out)
}

#[derive(Debug, Clone)]
pub struct Notifier {
    store: Arc<dyn Store>,
    clock: SharedClock,
    targets: Arc<HashMap<String, Target>>,
    default_receivers: Vec<String>,
    max_attempts: u32,
    dead_letter_retry: Duration,
    repeat: Duration,
    client: reqwest::Client,
    last_repost: Arc<std::sync::Mutex<Option<UnixMs>>>,
}

impl Notifier {
    pub fn new(
        store: Arc<dyn Store>,
        clock: SharedClock,
        targets: HashMap<String, Target>,
        config: &NotifyConfig,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .use_preconfigured_tls(vigil_tls::system_roots_client_config()?)
            .build()?;
        Ok(Self {
            store,
            clock,
            targets: Arc::new(targets),
            default_receivers: config.default_receivers.clone(),
            max_attempts: config.max_attempts,
            dead_letter_retry: config.dead_letter_retry,
            repeat: config.alertmanager_repeat,
            client,
            last_repost: Arc::default(),
        })
    }

    pub fn receiver_names(&self) -> Vec<&str> {
        self.targets.keys().map(String::as_str).collect()
    }

    /// One tick on the lease holder: fan out, deliver what is due, re-post firing alerts.
    /// The writes carry `fence`, so they are refused once another collector took the lease.
    pub async fn tick(&self, contracts: &Contracts, fence: &Fence) -> StoreResult<()> {
        self.fan_out(contracts, fence).await?;
        self.deliver(fence).await?;
        self.repost(contracts).await
    }

    /// The receivers of tiers 1..=`tier` with their extra labels, each once.
    fn receivers(
        &self,
        contracts: &Contracts,
        incident: &IncidentRow,
        tier: u8,
    ) -> Vec<(String, BTreeMap<String, String>)> {
        let terms = contracts.for_customer(incident.customer_id);
        let mut out: Vec<(String, BTreeMap<String, String>)> = Vec::new();
        for t in 1..=tier.clamp(1, 3) {
            let refs: Vec<(String, BTreeMap<String, String>)> = match terms.receivers(t) {
                Some(refs) => refs.iter().map(|r| (r.receiver.clone(), r.labels.clone())).collect(),
                None => {
                    self.default_receivers.iter().map(|r| (r.clone(), BTreeMap::new())).collect()
                }
            };
            for (name, labels) in refs {
                if let Some(existing) = out.iter_mut().find(|(n, _)| *n == name) {
                    // The highest tier's labels win (they route to the people now called).
                    existing.1 = labels;
                } else {
                    out.push((name, labels));
                }
            }
        }
        out.retain(|(name, _)| self.targets.contains_key(name));
        out
    }

    async fn fan_out(&self, contracts: &Contracts, fence: &Fence) -> StoreResult<()> {
        let items = self.store.pending_outbox(BATCH).await?;
        for item in items {
            let now = self.clock.now_ms();
            let Some(incident) = self.store.get_incident(item.incident_id).await? else {
                self.store.fan_out(item.id, item.incident_id, &[], now, fence).await?;
                continue;
            };
            let sla = self.store.incident_sla(item.incident_id).await?;
            let tier = sla.as_ref().map_or(1, |s| s.tier);
            let event_id = format!("{}/{}", incident_number(incident.id), item.timeline_id);
            let notification = Notification {
                event_id: event_id.clone(),
                kind: event_kind(item.kind),
                at_ms: item.at_ms,
                incident: snapshot(&incident, tier, sla.as_ref()),
                detail: item.detail.clone(),
            };
            let deliveries: Vec<NewDelivery> = self
                .receivers(contracts, &incident, tier)
                .into_iter()
                .map(|(receiver, labels)| NewDelivery {
                    event_id: event_id.clone(),
                    receiver,
                    payload: serde_json::to_string(&Stored {
                        notification: notification.clone(),
                        labels,
                    })
                    .unwrap_or_default(),
                })
                .collect();
            self.store.fan_out(item.id, item.incident_id, &deliveries, now, fence).await?;
        }
        Ok(())
    }

    async fn deliver(&self, fence: &Fence) -> StoreResult<()> {
        let due = self.store.due_deliveries(self.clock.now_ms(), BATCH).await?;
        // A receiver that failed once this tick is not tried again until the next: a dead
        // endpoint costs one timeout per tick, not one per pending delivery.
        let mut down: HashSet<String> = HashSet::new();
        for delivery in due {
            if down.contains(&delivery.receiver) {
                continue;
            }
            let outcome = self.attempt(&delivery).await;
            if !matches!(outcome, DeliveryOutcome::Delivered) {
                down.insert(delivery.receiver.clone());
            }
            let now = self.clock.now_ms();
            NotificationDelivered { delivery: &delivery, outcome: &outcome }.emit();
            self.store.record_delivery(delivery.id, &outcome, now, fence).await?;
        }
        Ok(())
    }

    async fn attempt(&self, delivery: &DeliveryRow) -> DeliveryOutcome {
        let now = self.clock.now_ms();
        let dead_letter = |error: String| DeliveryOutcome::DeadLetter {
            error,
            at_ms: now.saturating_add(self.dead_letter_retry.as_millis() as i64),
        };
        let stored: Stored = match serde_json::from_str(&delivery.payload) {
            Ok(stored) => stored,
            Err(err) => return dead_letter(format!("stored payload unreadable: {err}")),
        };
        let Some(target) = self.targets.get(&delivery.receiver) else {
            return dead_letter(format!(
                "receiver {:?} is no longer configured",
                delivery.receiver
            ));
        };
        let result = match target {
            Target::Alertmanager(am) => {
                let mut am = am.clone();
                for (k, v) in stored.labels {
                    am.extra_labels.entry(k).or_insert(v);
                }
                alertmanager::send(&self.client, &am, &stored.notification, now, self.firing_ttl())
                    .await
            }
            Target::Webhook(hook) => {
                webhook::send(&self.client, hook, &stored.notification, now).await
            }
        };
        match result {
            Ok(()) => DeliveryOutcome::Delivered,
            Err(DeliveryError::Permanent(error)) => dead_letter(error),
            Err(DeliveryError::Retry(error)) if delivery.state == DeliveryState::DeadLetter => {
                dead_letter(error)
            }
            Err(DeliveryError::Retry(error)) if delivery.attempts + 1 >= self.max_attempts => {
                dead_letter(format!(
                    "{error} (dead-lettered after {} attempts)",
                    delivery.attempts + 1
                ))
            }
            Err(DeliveryError::Retry(error)) => DeliveryOutcome::Retry {
                error,
                at_ms: backoff::next_attempt_at(delivery.attempts + 1, now, &delivery.event_id),
            },
        }
    }

    fn firing_ttl(&self) -> Duration {
        self.repeat * 4
    }

    /// Re-posts every active incident to its Alertmanager receivers, every `repeat`.
    async fn repost(&self, contracts: &Contracts) -> StoreResult<()> {
        let now = self.clock.now_ms();
        {
            let mut last = self.last_repost.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| now - t < self.repeat.as_millis() as i64) {
                return Ok(());
            }
            *last = Some(now);
        }
        if !self.targets.values().any(|t| matches!(t, Target::Alertmanager(_))) {
            return Ok(());
        }
        let filter = IncidentFilter {
            states: vec![IncidentState::Open, IncidentState::Acknowledged],
            limit: 100_000,
            ..IncidentFilter::default()
        };
        let mut down: HashSet<String> = HashSet::new();
        for incident in self.store.list_incidents(&filter).await? {
            let sla = self.store.incident_sla(incident.id).await?;
            let tier = sla.as_ref().map_or(1, |s| s.tier);
            let n = Notification {
                event_id: format!("{}/firing", incident_number(incident.id)),
                kind: EventKind::Opened,
                at_ms: now,
                incident: snapshot(&incident, tier, sla.as_ref()),
                detail: String::new(),
            };
            for (name, labels) in self.receivers(contracts, &incident, tier) {
                let Some(Target::Alertmanager(am)) = self.targets.get(&name) else { continue };
                if down.contains(&name) {
                    continue;
                }
                let mut am = am.clone();
                for (k, v) in labels {
                    am.extra_labels.entry(k).or_insert(v);
                }
                if let Err(err) =
                    alertmanager::send(&self.client, &am, &n, now, self.firing_ttl()).await
                {
                    tracing::warn!(receiver = %name, incident = %incident.number, error = %crate::sanitize::for_log_text(&err.to_string()), "re-posting firing alerts failed; next try in one repeat interval");
                    down.insert(name);
                }
            }
        }
        Ok(())
    }
}

fn event_kind(kind: TimelineKind) -> EventKind {
    match kind {
        TimelineKind::Opened => EventKind::Opened,
        TimelineKind::Reopened => EventKind::Reopened,
        TimelineKind::Level => EventKind::LevelChanged,
        TimelineKind::Acknowledged => EventKind::Acknowledged,
        TimelineKind::Warning => EventKind::Warning,
        TimelineKind::Escalated => EventKind::Escalated,
        TimelineKind::Resolved => EventKind::Resolved,
        TimelineKind::Closed => EventKind::Closed,
        _ => EventKind::Assigned,
    }
}

fn snapshot(
    incident: &IncidentRow,
    tier: u8,
    sla: Option<&crate::store::IncidentSlaView>,
) -> IncidentSnapshot {
    IncidentSnapshot {
        number: incident.number.clone(),
        customer: incident.customer.clone(),
        site: incident.site.clone(),
        host_id: incident.host_id.map(|h| h.to_string()),
        hostname: incident.hostname.clone(),
        rule: incident.rule.clone(),
        resource: incident.resource.clone(),
        level: incident.level.as_u8(),
        state: incident.state.as_str().to_owned(),
        tier,
        summary: incident.summary.clone(),
        opened_at_ms: incident.opened_at_ms,
        resolved_at_ms: incident.resolved_at_ms,
        response_due_ms: sla.and_then(|s| s.response_due_ms),
        resolution_due_ms: sla.and_then(|s| s.resolution_due_ms),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::classify::{FaultLevel, FindingKind};
    use crate::clock::{Clock, ManualClock};
    use crate::store::sqlite::SqliteStore;
    use crate::store::{Fingerprint, HostEvaluation, IncidentOp};

    /// A store with one host and `n` incidents, each with one pending "opened" event.
    async fn incidents(n: usize) -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
        let host = crate::store::tests::enrolled(store.as_ref(), "h").await;
        let row = store.get_host(host).await.unwrap().unwrap();
        let ops = (0..n)
            .map(|n| IncidentOp::Raise {
                fingerprint: Fingerprint {
                    customer_id: row.customer_id,
                    site_id: row.site_id,
                    host_id: Some(host),
                    rule: "raid.degraded".into(),
                    resource: format!("md{n}"),
                },
                level: FaultLevel::L2,
                summary: "degraded".into(),
                kind: FindingKind::State,
                parent: None,
                groups: Vec::new(),
                group_host: false,
                detail: None,
            })
            .collect();
        let batch = [HostEvaluation { state: None, ops, host_events: Vec::new() }];
        store.apply_evaluations(&batch, 86_400_000, 1_000).await.unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn past_max_attempts_a_delivery_is_dead_lettered_and_retried_slowly_for_ever() {
        let (_dir, store) = incidents(1).await;
        let config = NotifyConfig {
            default_receivers: vec!["dead".into()],
            max_attempts: 2,
            dead_letter_retry: Duration::from_secs(600),
            ..Default::default()
        };
        let targets = HashMap::from([(
            "dead".to_owned(),
            Target::Webhook(WebhookTarget {
                url: testing::unused_local_url(),
                secret: "0123456789abcdef".into(),
            }),
        )]);
        let clock = Arc::new(ManualClock::new(2_000));
        let notifier = Notifier::new(store.clone(), clock.clone(), targets, &config).unwrap();
        let contracts = Contracts::load(store.as_ref(), &["dead"]).await.unwrap();
        let fence = crate::store::tests::runner_fence(store.as_ref()).await;
        let delivery = async || {
            store.incident_deliveries(crate::ids::IncidentId::new(1)).await.unwrap().remove(0)
        };

        notifier.tick(&contracts, &fence).await.unwrap();
        let first = delivery().await;
        assert_eq!((first.state.as_str(), first.attempts), ("pending", 1));
        // The second attempt, after the backoff, uses up max_attempts.
        clock.set_ms(first.next_attempt_at_ms);
        notifier.tick(&contracts, &fence).await.unwrap();
        let dead = delivery().await;
        assert_eq!((dead.state.as_str(), dead.attempts), ("dead_letter", 2));
        assert_eq!(dead.next_attempt_at_ms, first.next_attempt_at_ms + 600_000);
        assert!(dead.last_error.as_deref().unwrap().contains("dead-lettered after 2 attempts"));
        let counts = store.dead_letter_counts().await.unwrap();
        assert_eq!(counts, [crate::store::DeadLetterCount { receiver: "dead".into(), count: 1 }]);
        // Not before its slow retry; then tried again, and again, never given up.
        clock.set_ms(dead.next_attempt_at_ms - 1);
        notifier.tick(&contracts, &fence).await.unwrap();
        assert_eq!(delivery().await.attempts, 2);
        for attempts in 3..=5 {
            clock.set_ms(delivery().await.next_attempt_at_ms);
            notifier.tick(&contracts, &fence).await.unwrap();
            let again = delivery().await;
            assert_eq!((again.state.as_str(), again.attempts), ("dead_letter", attempts));
            assert_eq!(again.next_attempt_at_ms, clock.now_ms() + 600_000);
        }
    }

    #[tokio::test]
    async fn a_dead_receiver_costs_one_attempt_per_tick_not_one_per_delivery() {
        // Three incidents, each with one pending "opened" event.
        let (_dir, store) = incidents(3).await;

        let config = NotifyConfig { default_receivers: vec!["dead".into()], ..Default::default() };
        let targets = HashMap::from([(
            "dead".to_owned(),
            Target::Webhook(WebhookTarget {
                url: testing::unused_local_url(),
                secret: "0123456789abcdef".into(),
            }),
        )]);
        let clock: SharedClock = Arc::new(ManualClock::new(2_000));
        let notifier = Notifier::new(store.clone(), clock, targets, &config).unwrap();
        let contracts = Contracts::load(store.as_ref(), &["dead"]).await.unwrap();
        let fence = crate::store::tests::runner_fence(store.as_ref()).await;
        notifier.tick(&contracts, &fence).await.unwrap();

        let mut attempts = Vec::new();
        for id in 1..=3 {
            for d in store.incident_deliveries(crate::ids::IncidentId::new(id)).await.unwrap() {
                assert_eq!(d.state, DeliveryState::Pending);
                attempts.push(d.attempts);
            }
        }
        attempts.sort_unstable();
        assert_eq!(attempts, [0, 0, 1], "one attempt, then the receiver is skipped this tick");
    }
}
