//! The incident stage: committed reports go through the classifier, condition tracking turns
//! findings into decisions, and the store applies them as incident operations — one
//! transaction per batch, together with the classifier's memory, so a decision and the state it
//! was made from never disagree. Live and replayed reports differ: state findings of a
//! replayed (late) report open or resolve nothing, its events are recorded as "happened while
//! disconnected" and raise an incident when their level warrants it. Silence (no reports at
//! all) is judged by [`silence`] on a timer, not here.
//!
//! A crash between committing a report and evaluating it loses that one evaluation: hysteresis
//! counts one report fewer, and counters are compared with the last evaluated report, so an
//! event is never lost, only found one report later.

pub mod conditions;
pub mod silence;

use std::collections::BTreeMap;
use std::sync::Arc;

use prost::Message;
use tokio::sync::mpsc;
use vigil_proto::v1::Report;

use crate::classify::{self, FaultLevel, Finding, FindingKind, HostMemory, RuleSet};
use crate::clock::{SharedClock, UnixMs};
use crate::config::IncidentsConfig;
use crate::events::{BatchEvaluated, IncidentChanged};
use crate::ids::HostId;
use crate::maintenance::{Maintenance, Scope};
use crate::store::{
    Fingerprint, HostEvalState, HostEvaluation, IncidentChange, IncidentOp, ReportRecord, Store,
    StoreResult,
};
use conditions::{BASELINE_RULE, Conditions, Decision, Tracking};

/// The global rule set and, for customers with overrides, theirs.
#[derive(Debug, Clone, Default)]
pub struct CustomerRules {
    pub global: RuleSet,
    pub customers: BTreeMap<String, RuleSet>,
}

impl CustomerRules {
    pub fn for_customer(&self, customer: &str) -> &RuleSet {
        self.customers.get(customer).unwrap_or(&self.global)
    }
}

/// What the evaluator needs besides the store.
#[derive(Debug, Clone)]
pub struct Policy {
    pub rules: Arc<CustomerRules>,
    pub tracking: Tracking,
    pub reopen_within_ms: i64,
    pub late_event_max_level: FaultLevel,
}

impl Policy {
    pub fn new(rules: CustomerRules, config: &IncidentsConfig) -> Self {
        Self {
            rules: Arc::new(rules),
            tracking: Tracking {
                flap_changes: config.flap_changes,
                flap_window_ms: config.flap_window.as_millis() as i64,
            },
            reopen_within_ms: config.reopen_within.as_millis() as i64,
            late_event_max_level: FaultLevel::from_u8(config.late_event_max_level)
                .unwrap_or(FaultLevel::L3),
        }
    }
}

/// Classifies committed reports and applies what follows.
#[derive(Debug, Clone)]
pub struct Evaluator {
    store: Arc<dyn Store>,
    clock: SharedClock,
    policy: Policy,
    maintenance: Maintenance,
}

/// Where the committer hands stored reports to the evaluator.
#[derive(Debug, Clone)]
pub struct EvaluationQueue {
    tx: mpsc::Sender<Vec<ReportRecord>>,
}

impl EvaluationQueue {
    /// Hands a batch over; waits when the evaluator is behind (back-pressure on ingest).
    pub async fn submit(&self, records: Vec<ReportRecord>) {
        if !records.is_empty() && self.tx.send(records).await.is_err() {
            tracing::error!(
                "the incident evaluator stopped; reports are stored but not classified"
            );
        }
    }
}

impl Evaluator {
    pub fn new(
        store: Arc<dyn Store>,
        clock: SharedClock,
        policy: Policy,
        maintenance: Maintenance,
    ) -> Self {
        Self { store, clock, policy, maintenance }
    }

    /// Starts the evaluator task; batches are evaluated one after the other, in order.
    pub fn spawn(self) -> EvaluationQueue {
        let (tx, mut rx) = mpsc::channel::<Vec<ReportRecord>>(64);
        tokio::spawn(async move {
            while let Some(records) = rx.recv().await {
                if let Err(err) = self.evaluate(&records).await {
                    tracing::error!(error = %err, reports = records.len(), "evaluating reports failed; they stay stored and the next report is evaluated again");
                }
            }
        });
        EvaluationQueue { tx }
    }

    /// Evaluates stored reports (in order per host) and applies the outcome in one
    /// transaction.
    pub async fn evaluate(&self, records: &[ReportRecord]) -> StoreResult<Vec<IncidentChange>> {
        let mut hosts: Vec<HostId> = records.iter().map(|r| r.host_id).collect();
        hosts.sort_unstable();
        hosts.dedup();
        let states = self.store.eval_states(&hosts).await?;
        let now = self.clock.now_ms();
        let mut batch = Vec::with_capacity(states.len());
        for state in states {
            let reports = records.iter().filter(|r| r.host_id == state.host_id);
            batch.push(self.evaluate_host(&state, reports, now));
        }
        let changes =
            self.store.apply_evaluations(&batch, self.policy.reopen_within_ms, now).await?;
        BatchEvaluated { records }.emit();
        for change in &changes {
            IncidentChanged { change }.emit();
        }
        Ok(changes)
    }

    fn evaluate_host<'a>(
        &self,
        state: &HostEvalState,
        reports: impl Iterator<Item = &'a ReportRecord>,
        now: UnixMs,
    ) -> HostEvaluation {
        let mut memory: HostMemory = parse_or_default(state.memory.as_deref(), state.host_id);
        let mut conditions: Conditions =
            parse_or_default(state.conditions.as_deref(), state.host_id);
        let rules = self.policy.rules.for_customer(&state.customer);
        let scope = Scope {
            customer_id: state.customer_id,
            site_id: state.site_id,
            host_id: Some(state.host_id),
        };
        let mut out = HostEvaluation::default();
        for record in reports {
            let report = match Report::decode(record.encoded.as_slice()) {
                Ok(report) => report,
                Err(err) => {
                    tracing::error!(host = %state.host_id, seq = record.seq, error = %err, "stored report does not decode; not classified");
                    continue;
                }
            };
            let findings = classify::classify(&report, &mut memory, rules);
            let ctx = HostContext { state, scope, now, record };
            // A new host's first report sets its baseline even when it was sent as replayed
            // (collected a moment before the first stream opened); after that, replayed means
            // late.
            if record.replayed && conditions.baseline_done {
                self.late(&ctx, findings, &mut out);
            } else {
                self.live(&ctx, findings, &mut conditions, rules, &mut out);
            }
        }
        let memory = serde_json::to_string(&memory).unwrap_or_default();
        let conditions = serde_json::to_string(&conditions).unwrap_or_default();
        out.state = Some((state.host_id, memory, conditions));
        out
    }

    fn live(
        &self,
        ctx: &HostContext<'_>,
        findings: Vec<Finding>,
        conditions: &mut Conditions,
        rules: &RuleSet,
        out: &mut HostEvaluation,
    ) {
        let (states, events): (Vec<Finding>, Vec<Finding>) =
            findings.into_iter().partition(|f| f.kind == FindingKind::State);
        let first = !conditions.baseline_done;
        let decisions = conditions.evaluate(
            &states,
            ctx.now,
            self.policy.tracking,
            |rule| rules.hysteresis(rule),
            |rule| self.maintenance.covers(ctx.scope, rule, ctx.now),
        );
        let had_baseline = decisions.iter().any(|d| matches!(d, Decision::Baseline { .. }));
        for decision in decisions {
            if let Some(op) = self.op(ctx, decision, &events, first, out) {
                out.ops.push(op);
            }
        }
        if first {
            // Events at the first report are listed by the baseline review, not paged.
            if !had_baseline && !events.is_empty() {
                let only_events = Decision::Baseline { level: FaultLevel::L4, items: Vec::new() };
                if let Some(op) = self.op(ctx, only_events, &events, first, out) {
                    out.ops.push(op);
                }
            }
            return;
        }
        for event in events {
            self.event(ctx, &event, "event", out);
        }
    }

    /// Late data: events are recorded as having happened while disconnected; a failure of the
    /// array that recovered meanwhile counts as such an event too.
    fn late(&self, ctx: &HostContext<'_>, findings: Vec<Finding>, out: &mut HostEvaluation) {
        for mut finding in findings {
            let hardware_fault =
                finding.rule.starts_with("raid.") && finding.level <= FaultLevel::L2;
            if finding.kind == FindingKind::State && !hardware_fault {
                continue;
            }
            finding.kind = FindingKind::Event;
            finding.summary = format!("while disconnected: {}", finding.summary);
            self.event(ctx, &finding, "while_disconnected", out);
        }
    }

    fn event(
        &self,
        ctx: &HostContext<'_>,
        finding: &Finding,
        kind: &str,
        out: &mut HostEvaluation,
    ) {
        let key = format!(
            "{}|{}|{}|{}",
            finding.rule, finding.resource, ctx.record.instance, ctx.record.seq
        );
        out.host_events.push((ctx.state.host_id, kind.to_owned(), key, finding.summary.clone()));
        let late = kind == "while_disconnected";
        if late && finding.level > self.policy.late_event_max_level {
            return;
        }
        if let Some(window) = self.maintenance.covering(ctx.scope, &finding.rule, ctx.now) {
            out.host_events.push((
                ctx.state.host_id,
                "in_maintenance".into(),
                format!("{}|{}|{}|{}", finding.rule, finding.resource, window, ctx.record.seq),
                format!("in maintenance window {window}: {}", finding.summary),
            ));
            return;
        }
        out.ops.push(IncidentOp::Raise {
            fingerprint: ctx.fingerprint(&finding.rule, &finding.resource),
            level: finding.level,
            summary: finding.summary.clone(),
            kind: FindingKind::Event,
            parent: None,
            groups: Vec::new(),
            group_host: false,
            detail: None,
        });
    }

    fn op(
        &self,
        ctx: &HostContext<'_>,
        decision: Decision,
        first_events: &[Finding],
        first: bool,
        out: &mut HostEvaluation,
    ) -> Option<IncidentOp> {
        Some(match decision {
            Decision::Raise { rule, resource, level, summary, parent, groups } => {
                IncidentOp::Raise {
                    fingerprint: ctx.fingerprint(&rule, &resource),
                    level,
                    summary,
                    kind: FindingKind::State,
                    parent,
                    groups,
                    group_host: false,
                    detail: None,
                }
            }
            Decision::Resolve { rule, resource, reason } => {
                IncidentOp::Resolve { fingerprint: ctx.fingerprint(&rule, &resource), reason }
            }
            Decision::Flapping { rule, resource, detail } => {
                IncidentOp::Flapping { fingerprint: ctx.fingerprint(&rule, &resource), detail }
            }
            Decision::InMaintenance { rule, resource, summary } => {
                let window =
                    self.maintenance.covering(ctx.scope, &rule, ctx.now).unwrap_or_default();
                out.host_events.push((
                    ctx.state.host_id,
                    "in_maintenance".into(),
                    format!("{rule}|{resource}|{window}"),
                    format!("in maintenance window {window}: {summary}"),
                ));
                return None;
            }
            Decision::Baseline { level, mut items } => {
                if first {
                    items
                        .extend(first_events.iter().map(|e| format!("L{} {}", e.level, e.summary)));
                }
                let level = first_events.iter().map(|e| e.level).fold(level, FaultLevel::min);
                IncidentOp::Raise {
                    fingerprint: ctx.fingerprint(BASELINE_RULE, "host"),
                    level,
                    summary: format!(
                        "baseline review: {} condition(s) present at the first report",
                        items.len()
                    ),
                    kind: FindingKind::State,
                    parent: None,
                    groups: Vec::new(),
                    group_host: false,
                    detail: Some(items.join("\n")),
                }
            }
            Decision::ResolveBaseline => IncidentOp::Resolve {
                fingerprint: ctx.fingerprint(BASELINE_RULE, "host"),
                reason: "every condition of the baseline review has cleared".into(),
            },
        })
    }
}

struct HostContext<'a> {
    state: &'a HostEvalState,
    scope: Scope,
    now: UnixMs,
    record: &'a ReportRecord,
}

impl HostContext<'_> {
    fn fingerprint(&self, rule: &str, resource: &str) -> Fingerprint {
        Fingerprint {
            customer_id: self.state.customer_id,
            site_id: self.state.site_id,
            host_id: Some(self.state.host_id),
            rule: rule.to_owned(),
            resource: resource.to_owned(),
        }
    }
}

/// Stored JSON state, or a fresh one when there is none. State that no longer parses (an
/// older shape) starts fresh, logged, rather than stopping classification of the host.
fn parse_or_default<T: Default + serde::de::DeserializeOwned>(
    json: Option<&str>,
    host: HostId,
) -> T {
    match json.map(serde_json::from_str) {
        None => T::default(),
        Some(Ok(value)) => value,
        Some(Err(err)) => {
            tracing::warn!(host = %host, error = %err, "stored classification state unreadable; starting fresh");
            T::default()
        }
    }
}
