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
//! event is never lost, only found one report later. An error evaluating a batch (the store
//! refusing its outcome, a rule panicking on one report) costs the same and no more: the batch
//! is evaluated again one report at a time, so the error skips only the report that caused it
//! ([`EvaluationFailed`](crate::events::EvaluationFailed)), and the next ones go on.

pub mod conditions;
pub mod lifecycle;
pub mod silence;

use std::collections::BTreeMap;
use std::sync::Arc;

use prost::Message;
use tokio::sync::mpsc;
use vigil_proto::v1::Report;

use crate::classify::{self, FaultLevel, Finding, FindingKind, HostMemory, RuleSet};
use crate::clock::{SharedClock, UnixMs};
use crate::config::IncidentsConfig;
use crate::events::{BatchEvaluated, EvaluationFailed, IncidentChanged};
use crate::ids::HostId;
use crate::maintenance::{Maintenance, Scope};
use crate::store::{
    Fingerprint, HostEvalState, HostEvaluation, IncidentChange, IncidentOp, ReportRecord, Store,
};
use crate::tasks::Activator;
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

/// The classifier the evaluator runs: [`classify::classify`], or a stand-in in tests.
pub type Classifier = fn(&Report, &mut HostMemory, &RuleSet) -> Vec<Finding>;

/// Classifies committed reports and applies what follows.
#[derive(Debug, Clone)]
pub struct Evaluator {
    store: Arc<dyn Store>,
    clock: SharedClock,
    policy: Policy,
    maintenance: Maintenance,
    classifier: Classifier,
    /// Activated after a change that entered the outbox was applied: the SLA sweep and the
    /// notification task, so a notification goes out at once rather than at their next period.
    on_outbox: Vec<Activator>,
}

/// Why evaluating some reports failed: nothing of them was applied.
#[derive(Debug, thiserror::Error)]
pub enum EvaluationError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("classification panicked: {0}")]
    Panicked(String),
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
        Self {
            store,
            clock,
            policy,
            maintenance,
            classifier: classify::classify,
            on_outbox: Vec::new(),
        }
    }

    /// The same evaluator activating `tasks` whenever it applied a change that entered the
    /// outbox.
    pub fn activating_on_outbox(mut self, tasks: Vec<Activator>) -> Self {
        self.on_outbox = tasks;
        self
    }

    /// The same evaluator running `classifier` instead of the built-in rules.
    pub fn with_classifier(mut self, classifier: Classifier) -> Self {
        self.classifier = classifier;
        self
    }

    /// Starts the evaluator task; batches are evaluated one after the other, in order.
    pub fn spawn(self) -> EvaluationQueue {
        let (tx, mut rx) = mpsc::channel::<Vec<ReportRecord>>(64);
        tokio::spawn(async move {
            while let Some(records) = rx.recv().await {
                self.evaluate(&records).await;
            }
        });
        EvaluationQueue { tx }
    }

    /// Evaluates stored reports (in order per host) and applies the outcome in one
    /// transaction. When that fails, evaluates them again one by one, each applied alone, so
    /// an error skips only the report that caused it; returns every change applied. When one
    /// of them entered the outbox, activates the tasks of [`Self::activating_on_outbox`].
    pub async fn evaluate(&self, records: &[ReportRecord]) -> Vec<IncidentChange> {
        let changes = self.evaluate_apart_on_error(records).await;
        if changes.iter().any(IncidentChange::enters_outbox) {
            self.on_outbox.iter().for_each(Activator::activate);
        }
        changes
    }

    async fn evaluate_apart_on_error(&self, records: &[ReportRecord]) -> Vec<IncidentChange> {
        let err = match self.evaluate_together(records).await {
            Ok(changes) => return changes,
            Err(err) => err,
        };
        if let [record] = records {
            EvaluationFailed { record, error: &err.to_string() }.emit();
            return Vec::new();
        }
        tracing::warn!(error = %err, reports = records.len(), "evaluating a batch failed; evaluating its reports one by one");
        let mut changes = Vec::new();
        for record in records {
            match self.evaluate_together(std::slice::from_ref(record)).await {
                Ok(applied) => changes.extend(applied),
                Err(err) => EvaluationFailed { record, error: &err.to_string() }.emit(),
            }
        }
        changes
    }

    /// Evaluates `records` and applies the outcome in one transaction: all of it, or nothing.
    async fn evaluate_together(
        &self,
        records: &[ReportRecord],
    ) -> Result<Vec<IncidentChange>, EvaluationError> {
        let mut hosts: Vec<HostId> = records.iter().map(|r| r.host_id).collect();
        hosts.sort_unstable();
        hosts.dedup();
        let states = self.store.eval_states(&hosts).await?;
        let now = self.clock.now_ms();
        let mut batch = Vec::with_capacity(states.len());
        for state in states {
            let reports = records.iter().filter(|r| r.host_id == state.host_id);
            // A rule that panics on one report must not stop the evaluator for everyone.
            let evaluated = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.evaluate_host(&state, reports, now)
            }))
            .map_err(|panic| EvaluationError::Panicked(panic_message(panic.as_ref())))?;
            batch.push(evaluated);
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
            let mut findings = (self.classifier)(&report, &mut memory, rules);
            findings.extend(classify::series_capped(record.series_refused, rules));
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

/// What a caught panic said, when it said it as text (for a log line or a task's status).
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::sqlite::SqliteStore;
    use crate::store::tests::{commit, enrolled, record};

    /// One event per report, named after its seq; the report numbered 2 makes it panic, as a
    /// rule with a bug would.
    fn panics_on_seq_2(report: &Report, _: &mut HostMemory, _: &RuleSet) -> Vec<Finding> {
        assert_ne!(report.seq, 2, "a rule bug triggered by report 2");
        vec![Finding {
            rule: "test.event".into(),
            resource: format!("seq{}", report.seq),
            level: FaultLevel::L3,
            summary: format!("event of report {}", report.seq),
            kind: FindingKind::Event,
            groups: Vec::new(),
        }]
    }

    fn stored(host: HostId, seq: u64) -> ReportRecord {
        let mut r = record(host, "i1", seq, seq as i64 * 10_000);
        let report = Report { agent_instance: "i1".into(), seq, ..Default::default() };
        r.encoded = report.encode_to_vec();
        r
    }

    #[tokio::test]
    async fn an_evaluation_error_skips_only_the_report_that_caused_it() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
        let (a, b) = (enrolled(store.as_ref(), "a").await, enrolled(store.as_ref(), "b").await);
        // Host a's reports 1..=4 and host b's report 1, committed and evaluated as one batch.
        let batch: Vec<ReportRecord> =
            (1..=4).map(|seq| stored(a, seq)).chain([stored(b, 1)]).collect();
        commit(store.as_ref(), &batch).await;
        let clock: SharedClock = Arc::new(ManualClock::new(100_000));
        let policy = Policy::new(CustomerRules::default(), &IncidentsConfig::default());
        let evaluator = Evaluator::new(store.clone(), clock, policy, Maintenance::default())
            .with_classifier(panics_on_seq_2);

        let changes = evaluator.evaluate(&batch).await;

        // Each host's first report opens its baseline review; after the panic on a's report
        // 2, its reports 3 and 4 are evaluated as usual, and host b is unharmed.
        let opened: Vec<(&str, &str)> = changes
            .iter()
            .filter(|c| c.change == "opened")
            .map(|c| (c.rule.as_str(), c.resource.as_str()))
            .collect();
        assert_eq!(
            opened,
            [
                (BASELINE_RULE, "host"),
                ("test.event", "seq3"),
                ("test.event", "seq4"),
                (BASELINE_RULE, "host")
            ],
            "{changes:?}"
        );
        let events = store.events(a, 100).await.unwrap();
        assert!(events.iter().all(|e| !e.detail.contains("report 2")), "{events:?}");
        assert!(events.iter().any(|e| e.detail.contains("report 4")), "{events:?}");

        // The classifier memory moved on past the skipped report: report 5 evaluates alone.
        commit(store.as_ref(), &[stored(a, 5)]).await;
        let changes = evaluator.evaluate(&[stored(a, 5)]).await;
        assert!(changes.iter().any(|c| c.resource == "seq5"), "{changes:?}");
        // A failing report alone is skipped too, and changes nothing.
        commit(store.as_ref(), &[stored(b, 2)]).await;
        assert!(evaluator.evaluate(&[stored(b, 2)]).await.is_empty());
    }

    /// A stand-in classifier that finds one event in report 1 and nothing after.
    fn event_in_report_1(report: &Report, _: &mut HostMemory, _: &RuleSet) -> Vec<Finding> {
        if report.seq != 1 {
            return Vec::new();
        }
        vec![Finding {
            rule: "test.event".into(),
            resource: "seq1".into(),
            level: FaultLevel::L3,
            summary: "event of report 1".into(),
            kind: FindingKind::Event,
            groups: Vec::new(),
        }]
    }

    /// A background task that says each time it runs.
    struct Announcing(mpsc::UnboundedSender<()>);

    #[async_trait::async_trait]
    impl crate::tasks::BackgroundTask for Announcing {
        fn name(&self) -> &'static str {
            "announcing"
        }

        async fn activate(&mut self) -> crate::tasks::TaskOutcome {
            let _ = self.0.send(());
            crate::tasks::TaskOutcome::ok("announced")
        }
    }

    #[tokio::test]
    async fn a_change_entering_the_outbox_activates_the_tasks_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
        let host = enrolled(store.as_ref(), "a").await;
        let clock: SharedClock = Arc::new(ManualClock::new(100_000));
        let (ran, mut runs) = mpsc::unbounded_channel();
        let activator = Activator::new();
        let mut driver = crate::tasks::Driver::new(clock.clone());
        driver.register(Announcing(ran), std::time::Duration::from_secs(3600), &activator);
        runs.recv().await.expect("the run at registration");
        let policy = Policy::new(CustomerRules::default(), &IncidentsConfig::default());
        let evaluator = Evaluator::new(store.clone(), clock, policy, Maintenance::default())
            .with_classifier(event_in_report_1)
            .activating_on_outbox(vec![activator]);

        // The event in the host's first report opens an incident: a notifiable change.
        commit(store.as_ref(), &[stored(host, 1)]).await;
        let changes = evaluator.evaluate(&[stored(host, 1)]).await;
        assert!(changes.iter().any(IncidentChange::enters_outbox), "{changes:?}");
        let activated = tokio::time::timeout(std::time::Duration::from_secs(10), runs.recv());
        assert_eq!(activated.await, Ok(Some(())), "activated, not left to the hourly period");

        // A report that changes nothing notifiable activates nothing.
        commit(store.as_ref(), &[stored(host, 2)]).await;
        let changes = evaluator.evaluate(&[stored(host, 2)]).await;
        assert!(!changes.iter().any(IncidentChange::enters_outbox), "{changes:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(runs.try_recv().is_err(), "no run without a notifiable change");
    }
}
