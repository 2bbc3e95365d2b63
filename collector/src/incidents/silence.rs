//! Silence: a host that stops reporting gets an L1 "no reports" incident, judged on the
//! collector's clock by receive time (never the agent's). Quiet where it should be: nothing is
//! judged until a grace period after this collector started (so a restart or failover opens
//! nothing while agents reconnect), a host whose agent said goodbye is given the planned
//! downtime grace, and when a large part of a site falls silent together one site incident
//! groups the host incidents. [`judge`] is pure; [`sweep`] applies it together with closing
//! old resolved incidents, and [`SilenceSweeper`] is the background task that runs the sweep
//! (see [`crate::tasks`]).
//!
//! With several replicas only one may run the sweeper; until the store lease exists (the SLA
//! issue), run it on one collector.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::classify::{FaultLevel, FindingKind};
use crate::clock::{SharedClock, UnixMs, rfc3339};
use crate::config::CollectorConfig;
use crate::events::IncidentChanged;
use crate::ids::SiteId;
use crate::maintenance::{Maintenance, Scope};
use crate::status::silence_after;
use crate::store::{
    Fingerprint, HostEvaluation, HostRow, IncidentChange, IncidentFilter, IncidentOp, IncidentRow,
    IncidentState, Store, StoreResult,
};
use crate::tasks::{Activator, BackgroundTask, TaskOutcome};

pub const SILENT_RULE: &str = "host.silent";
pub const SITE_SILENT_RULE: &str = "site.silent";

#[derive(Debug, Clone, Copy)]
pub struct SilencePolicy {
    pub start_grace_ms: i64,
    pub planned_grace_ms: i64,
    pub site_min_hosts: u32,
    pub site_ratio: f64,
    pub site_window_ms: i64,
}

impl SilencePolicy {
    pub fn from_config(config: &CollectorConfig) -> Self {
        let i = &config.incidents;
        Self {
            start_grace_ms: i.start_grace.as_millis() as i64,
            planned_grace_ms: i.planned_downtime_grace.as_millis() as i64,
            site_min_hosts: i.site_outage_min_hosts,
            site_ratio: i.site_outage_ratio,
            site_window_ms: i.site_outage_window.as_millis() as i64,
        }
    }
}

fn ms(d: Duration) -> i64 {
    d.as_millis() as i64
}

fn human(ms: i64) -> String {
    humantime::format_duration(Duration::from_secs((ms.max(0) / 1000) as u64)).to_string()
}

/// Since when `host` counts as silent, or None while it is not (or cannot be: never reported,
/// revoked).
pub fn silent_since(
    host: &HostRow,
    now: UnixMs,
    started_at: UnixMs,
    policy: &SilencePolicy,
    min_silence: Duration,
) -> Option<UnixMs> {
    if host.revoked_at_ms.is_some() {
        return None;
    }
    let last_seen = host.last_seen_ms?;
    let judged_from = started_at + policy.start_grace_ms;
    let mut limit = ms(silence_after(host.interval_seconds, min_silence));
    let mut reference = last_seen;
    if let Some(bye) = host.goodbye_at_ms.filter(|bye| *bye >= last_seen) {
        reference = bye;
        limit = limit.max(policy.planned_grace_ms);
    }
    let since = reference.max(judged_from) + limit;
    (now > since).then_some(since)
}

fn host_fingerprint(host: &HostRow, rule: &str) -> Fingerprint {
    Fingerprint {
        customer_id: host.customer_id,
        site_id: host.site_id,
        host_id: Some(host.id),
        rule: rule.into(),
        resource: "host".into(),
    }
}

fn site_fingerprint(host: &HostRow) -> Fingerprint {
    Fingerprint {
        customer_id: host.customer_id,
        site_id: host.site_id,
        host_id: None,
        rule: SITE_SILENT_RULE.into(),
        resource: host.site.clone(),
    }
}

/// The most silence starts that fall within `window` of each other.
fn largest_cluster(mut sinces: Vec<UnixMs>, window: i64) -> usize {
    sinces.sort_unstable();
    let mut best = 0;
    let mut start = 0;
    for end in 0..sinces.len() {
        while sinces[end] - sinces[start] > window {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

/// The hosts of one site that have reported, and the silent ones with their silence start.
#[derive(Default)]
struct SiteHosts<'a> {
    members: Vec<&'a HostRow>,
    silent: Vec<(UnixMs, &'a HostRow)>,
}

/// Decides the silence incidents: opens and resolves host and site incidents and groups.
pub fn judge(
    hosts: &[HostRow],
    active: &[IncidentRow],
    now: UnixMs,
    started_at: UnixMs,
    policy: &SilencePolicy,
    min_silence: impl Fn(&str) -> Duration,
    in_maintenance: impl Fn(&HostRow, &str) -> bool,
) -> Vec<IncidentOp> {
    let open_host =
        |host: &HostRow| active.iter().any(|i| i.rule == SILENT_RULE && i.host_id == Some(host.id));
    let mut ops = Vec::new();
    let mut sites: BTreeMap<SiteId, SiteHosts<'_>> = BTreeMap::new();
    for host in hosts.iter().filter(|h| h.revoked_at_ms.is_none() && h.last_seen_ms.is_some()) {
        let since = silent_since(host, now, started_at, policy, min_silence(&host.customer));
        let site = sites.entry(host.site_id).or_default();
        site.members.push(host);
        match since {
            Some(since) => {
                site.silent.push((since, host));
                if !open_host(host) && !in_maintenance(host, SILENT_RULE) {
                    ops.push(IncidentOp::Raise {
                        fingerprint: host_fingerprint(host, SILENT_RULE),
                        level: FaultLevel::L1,
                        summary: silent_summary(host, now),
                        kind: FindingKind::State,
                        parent: None,
                        groups: Vec::new(),
                        group_host: true,
                        detail: None,
                    });
                }
            }
            None if open_host(host) => ops.push(IncidentOp::Resolve {
                fingerprint: host_fingerprint(host, SILENT_RULE),
                reason: "reports arrive again".into(),
            }),
            None => {}
        }
    }
    for (site_id, SiteHosts { members, silent }) in sites {
        let Some(any) = members.first() else { continue };
        let fingerprint = site_fingerprint(any);
        let site_open = active
            .iter()
            .any(|i| i.rule == SITE_SILENT_RULE && i.site_id == site_id && i.host_id.is_none());
        let needed = (policy.site_min_hosts as usize)
            .max((members.len() as f64 * policy.site_ratio).ceil() as usize);
        let cluster =
            largest_cluster(silent.iter().map(|(s, _)| *s).collect(), policy.site_window_ms);
        if cluster >= needed {
            if !site_open && !in_maintenance(any, SITE_SILENT_RULE) {
                ops.push(IncidentOp::Raise {
                    fingerprint: fingerprint.clone(),
                    level: FaultLevel::L1,
                    summary: format!(
                        "site {} of {}: {} of {} hosts stopped reporting within {}",
                        any.site,
                        any.customer,
                        silent.len(),
                        members.len(),
                        human(policy.site_window_ms)
                    ),
                    kind: FindingKind::State,
                    parent: None,
                    groups: Vec::new(),
                    group_host: false,
                    detail: Some(
                        silent
                            .iter()
                            .map(|(_, h)| format!("{} ({})", h.hostname, h.id))
                            .collect::<Vec<_>>()
                            .join("\n"),
                    ),
                });
            }
            for (_, host) in &silent {
                ops.push(IncidentOp::Group {
                    child: host_fingerprint(host, SILENT_RULE),
                    parent: fingerprint.clone(),
                });
            }
        } else if site_open && silent.len() < needed {
            ops.push(IncidentOp::Resolve {
                fingerprint,
                reason: format!(
                    "{} of {} hosts report again",
                    members.len() - silent.len(),
                    members.len()
                ),
            });
        }
    }
    ops
}

fn silent_summary(host: &HostRow, now: UnixMs) -> String {
    let last = host.last_seen_ms.unwrap_or(now);
    match host.goodbye_at_ms.filter(|bye| *bye >= last) {
        Some(bye) => format!(
            "{} has not returned {} after its agent said goodbye ({})",
            host.hostname,
            human(now - bye),
            host.goodbye_reason.as_deref().unwrap_or("stop")
        ),
        None => format!(
            "no reports from {} for {} (last received {})",
            host.hostname,
            human(now - last),
            rfc3339(last)
        ),
    }
}

/// What one [`sweep`] did.
#[derive(Debug, Clone, Default)]
pub struct Swept {
    /// The incident changes it applied.
    pub changes: Vec<IncidentChange>,
    /// Resolved incidents it closed.
    pub closed: u64,
}

/// One sweep: silence, site outages, closing of old resolved incidents.
pub async fn sweep(
    store: &dyn Store,
    config: &CollectorConfig,
    maintenance: &Maintenance,
    now: UnixMs,
    started_at: UnixMs,
) -> StoreResult<Swept> {
    maintenance.reload(store).await?;
    let hosts = store.list_hosts().await?;
    let mut active = Vec::new();
    for rule in [SILENT_RULE, SITE_SILENT_RULE] {
        active.extend(
            store
                .list_incidents(&IncidentFilter {
                    states: vec![IncidentState::Open, IncidentState::Acknowledged],
                    rule: Some(rule.into()),
                    limit: u32::MAX,
                    ..IncidentFilter::default()
                })
                .await?,
        );
    }
    let policy = SilencePolicy::from_config(config);
    let ops = judge(
        &hosts,
        &active,
        now,
        started_at,
        &policy,
        |customer| config.min_silence(customer),
        |host, rule| {
            let scope = Scope {
                customer_id: host.customer_id,
                site_id: host.site_id,
                host_id: (rule == SILENT_RULE).then_some(host.id),
            };
            maintenance.covers(scope, rule, now)
        },
    );
    let mut changes = Vec::new();
    if !ops.is_empty() {
        let batch = [HostEvaluation { state: None, ops, host_events: Vec::new() }];
        let reopen = ms(config.incidents.reopen_within);
        changes = store.apply_evaluations(&batch, reopen, now).await?;
        for change in &changes {
            IncidentChanged { change }.emit();
        }
    }
    let closed = store.close_resolved(now - ms(config.incidents.close_after), now).await?;
    if closed > 0 {
        tracing::info!(closed, "closed incidents resolved long enough ago");
    }
    Ok(Swept { changes, closed })
}

/// The silence task: [`sweep`] every `incidents.sweep_every`, judged from when this collector
/// started. A change that enters the outbox (a host or site falling silent, or back) activates
/// the SLA sweep and the notification task at once.
#[derive(Debug)]
pub struct SilenceSweeper {
    store: Arc<dyn Store>,
    clock: SharedClock,
    config: Arc<CollectorConfig>,
    maintenance: Maintenance,
    started_at: UnixMs,
    on_outbox: Vec<Activator>,
}

impl SilenceSweeper {
    /// A sweeper that counts the collector as started now; `on_outbox` are activated after a
    /// sweep applied a change that entered the outbox.
    pub fn new(
        store: Arc<dyn Store>,
        clock: SharedClock,
        config: Arc<CollectorConfig>,
        maintenance: Maintenance,
        on_outbox: Vec<Activator>,
    ) -> Self {
        let started_at = clock.now_ms();
        Self { store, clock, config, maintenance, started_at, on_outbox }
    }
}

#[async_trait::async_trait]
impl BackgroundTask for SilenceSweeper {
    fn name(&self) -> &'static str {
        "silence"
    }

    async fn activate(&mut self) -> TaskOutcome {
        let now = self.clock.now_ms();
        let swept =
            sweep(self.store.as_ref(), &self.config, &self.maintenance, now, self.started_at).await;
        match swept {
            Ok(swept) => {
                if swept.changes.iter().any(IncidentChange::enters_outbox) {
                    self.on_outbox.iter().for_each(Activator::activate);
                }
                TaskOutcome::ok(format!(
                    "{} incident changes, {} incidents closed",
                    swept.changes.len(),
                    swept.closed
                ))
            }
            Err(err) => {
                tracing::warn!(error = %err, "incident sweep failed; will retry");
                TaskOutcome::error(err.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{CustomerId, HostId};

    const POLICY: SilencePolicy = SilencePolicy {
        start_grace_ms: 120_000,
        planned_grace_ms: 900_000,
        site_min_hosts: 3,
        site_ratio: 0.5,
        site_window_ms: 120_000,
    };
    const MIN: Duration = Duration::from_secs(60);

    fn host(site: SiteId, last_seen: i64) -> HostRow {
        HostRow {
            id: HostId::new_random(),
            customer_id: CustomerId::new_random(),
            customer: "acme".into(),
            site_id: site,
            site: "hq".into(),
            hostname: "srv".into(),
            created_at_ms: 0,
            last_seen_ms: Some(last_seen),
            interval_seconds: 10,
            agent_version: "0.1.0".into(),
            goodbye_reason: None,
            goodbye_at_ms: None,
            machine_id: String::new(),
            revoked_at_ms: None,
            replaced_by: None,
        }
    }

    #[test]
    fn silent_after_the_limit_and_never_within_the_start_grace() {
        let h = host(SiteId::new_random(), 1_000_000);
        // Started long ago: silent 60 s after the last report.
        assert_eq!(silent_since(&h, 1_060_000, 0, &POLICY, MIN), None);
        assert_eq!(silent_since(&h, 1_060_001, 0, &POLICY, MIN), Some(1_060_000));
        // Restarted at 1 100 000: judged from start + 2 min, then 60 s more.
        assert_eq!(silent_since(&h, 1_250_000, 1_100_000, &POLICY, MIN), None);
        assert_eq!(silent_since(&h, 1_280_001, 1_100_000, &POLICY, MIN), Some(1_280_000));
    }

    #[test]
    fn goodbye_gets_the_planned_downtime_grace() {
        let mut h = host(SiteId::new_random(), 1_000_000);
        h.goodbye_at_ms = Some(1_000_500);
        h.goodbye_reason = Some("reboot".into());
        assert_eq!(silent_since(&h, 1_000_500 + 900_000, 0, &POLICY, MIN), None);
        assert!(silent_since(&h, 1_000_501 + 900_000, 0, &POLICY, MIN).is_some());
    }

    #[test]
    fn half_a_site_is_one_site_incident_grouping_the_hosts() {
        let site = SiteId::new_random();
        let mut hosts: Vec<HostRow> = (0..6).map(|_| host(site, 1_000_000)).collect();
        for h in &mut hosts[3..] {
            h.last_seen_ms = Some(2_000_000);
        }
        let customer = hosts[0].customer_id;
        for h in &mut hosts {
            h.customer_id = customer;
        }
        let ops = judge(&hosts, &[], 2_000_000, 0, &POLICY, |_| MIN, |_, _| false);
        let raises: Vec<&str> = ops
            .iter()
            .filter_map(|op| match op {
                IncidentOp::Raise { fingerprint, .. } => Some(fingerprint.rule.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(raises, [SILENT_RULE, SILENT_RULE, SILENT_RULE, SITE_SILENT_RULE]);
        assert_eq!(ops.iter().filter(|op| matches!(op, IncidentOp::Group { .. })).count(), 3);
    }

    #[test]
    fn two_silent_hosts_are_not_a_site_outage() {
        let site = SiteId::new_random();
        let mut hosts: Vec<HostRow> = (0..4).map(|_| host(site, 2_000_000)).collect();
        hosts[0].last_seen_ms = Some(1_000_000);
        hosts[1].last_seen_ms = Some(1_000_000);
        let ops = judge(&hosts, &[], 2_000_000, 0, &POLICY, |_| MIN, |_, _| false);
        assert_eq!(ops.len(), 2, "{ops:?}");
    }

    #[test]
    fn spread_out_silences_are_not_one_outage() {
        let site = SiteId::new_random();
        let mut hosts: Vec<HostRow> = (0..4).map(|_| host(site, 5_000_000)).collect();
        for (i, h) in hosts.iter_mut().enumerate().take(3) {
            h.last_seen_ms = Some(1_000_000 + i as i64 * 600_000);
        }
        let ops = judge(&hosts, &[], 5_000_000, 0, &POLICY, |_| MIN, |_, _| false);
        assert!(ops.iter().all(|op| !matches!(op, IncidentOp::Group { .. })), "{ops:?}");
    }
}
