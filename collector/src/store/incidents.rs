//! Records of the incident stage: incidents and their timelines, the primitive operations the
//! incident engine asks the store to apply (one transaction per batch), the classifier state
//! kept per host, and maintenance windows. The decisions (what opens, what resolves) are made
//! by `crate::incidents`; the store only applies them, so both engines share one behaviour.

use async_trait::async_trait;
use serde::Serialize;

use super::StoreResult;

use crate::classify::{FaultLevel, FindingKind};
use crate::clock::UnixMs;
use crate::ids::{CustomerId, HostId, IncidentId, SiteId};

/// Who did something to an incident when no person did.
pub const SYSTEM_ACTOR: &str = "vigil";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentState {
    Open,
    Acknowledged,
    Resolved,
    Closed,
}

impl IncidentState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Acknowledged => "acknowledged",
            Self::Resolved => "resolved",
            Self::Closed => "closed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "open" => Some(Self::Open),
            "acknowledged" => Some(Self::Acknowledged),
            "resolved" => Some(Self::Resolved),
            "closed" => Some(Self::Closed),
            _ => None,
        }
    }

    /// Open or acknowledged: the condition still needs someone.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Open | Self::Acknowledged)
    }
}

/// What a timeline entry of an incident records. Stored as its snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimelineKind {
    /// A new incident.
    Opened,
    /// A resolved incident raised again within the reopen window: a recurrence.
    Reopened,
    /// The level of a state changed.
    Level,
    /// An event (a counter that rose) happened again while the incident was active.
    Event,
    /// Extra lines written when an incident opens (the findings a baseline review lists).
    Detail,
    /// Filed under another incident.
    Grouped,
    /// Held open because its condition changed too often.
    Flapping,
    Acknowledged,
    Assigned,
    Note,
    Resolved,
    Closed,
    /// An SLA deadline computed, met or missed.
    Sla,
    /// An SLA deadline is near.
    Warning,
    /// Moved to the next support tier.
    Escalated,
}

impl TimelineKind {
    pub const ALL: [Self; 15] = [
        Self::Opened,
        Self::Reopened,
        Self::Level,
        Self::Event,
        Self::Detail,
        Self::Grouped,
        Self::Flapping,
        Self::Acknowledged,
        Self::Assigned,
        Self::Note,
        Self::Resolved,
        Self::Closed,
        Self::Sla,
        Self::Warning,
        Self::Escalated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Opened => "opened",
            Self::Reopened => "reopened",
            Self::Level => "level",
            Self::Event => "event",
            Self::Detail => "detail",
            Self::Grouped => "grouped",
            Self::Flapping => "flapping",
            Self::Acknowledged => "acknowledged",
            Self::Assigned => "assigned",
            Self::Note => "note",
            Self::Resolved => "resolved",
            Self::Closed => "closed",
            Self::Sla => "sla",
            Self::Warning => "warning",
            Self::Escalated => "escalated",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }

    /// Goes out as a notification: the entry enters the outbox in the same transaction.
    pub fn notifies(self) -> bool {
        matches!(
            self,
            Self::Opened
                | Self::Reopened
                | Self::Level
                | Self::Acknowledged
                | Self::Resolved
                | Self::Warning
                | Self::Escalated
        )
    }

    /// Changes what the SLA clocks depend on: the incident is looked at by the next sweep.
    pub fn resets_sla(self) -> bool {
        matches!(
            self,
            Self::Opened | Self::Reopened | Self::Level | Self::Acknowledged | Self::Resolved
        )
    }
}

/// What identifies "the same problem": at most one active incident per fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint {
    pub customer_id: CustomerId,
    pub site_id: SiteId,
    /// None for a site-level incident.
    pub host_id: Option<HostId>,
    pub rule: String,
    pub resource: String,
}

impl Fingerprint {
    pub fn key(&self) -> String {
        let scope = match self.host_id {
            Some(host) => host.to_string(),
            None => format!("site:{}", self.site_id),
        };
        format!("{}|{scope}|{}|{}", self.customer_id, self.rule, self.resource)
    }
}

/// One change the incident engine decided on.
#[derive(Debug, Clone, PartialEq)]
pub enum IncidentOp {
    /// Opens an incident for the fingerprint; if one is active, updates its level and summary
    /// (an event adds a timeline entry); if one was resolved within `reopen_within_ms`, reopens
    /// it and counts a recurrence.
    Raise {
        fingerprint: Fingerprint,
        level: FaultLevel,
        summary: String,
        kind: FindingKind,
        /// File it under this active incident of the same host (rule, resource).
        parent: Option<(String, String)>,
        /// File the host's active incidents on these resources under this one.
        groups: Vec<String>,
        /// File every other active incident of the host under this one (a silent host).
        group_host: bool,
        /// Extra timeline line (e.g. the findings a baseline review lists).
        detail: Option<String>,
    },
    /// Resolves the active incident of the fingerprint, if any.
    Resolve { fingerprint: Fingerprint, reason: String },
    /// Marks the active incident as flapping (held open).
    Flapping { fingerprint: Fingerprint, detail: String },
    /// Files the active incident of `child` under the active incident of `parent`.
    Group { child: Fingerprint, parent: Fingerprint },
}

/// What applying one [`IncidentOp`] did, for logs, metrics and (later) notifications.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncidentChange {
    pub incident_id: IncidentId,
    /// opened, reopened, level, summary, event, resolved, flapping, grouped
    pub change: &'static str,
    pub level: FaultLevel,
    pub rule: String,
    pub resource: String,
}

impl IncidentChange {
    /// True when the change wrote a timeline entry that entered the outbox: a notification
    /// is waiting to go out, and the incident's SLA clocks are to be looked at again.
    pub fn enters_outbox(&self) -> bool {
        TimelineKind::parse(self.change).is_some_and(TimelineKind::notifies)
    }
}

/// The classifier memory and condition tracking of one host, as stored.
#[derive(Debug, Clone)]
pub struct HostEvalState {
    pub host_id: HostId,
    pub customer_id: CustomerId,
    pub customer: String,
    pub site_id: SiteId,
    /// None before the host's first evaluated report.
    pub memory: Option<String>,
    pub conditions: Option<String>,
}

/// Everything one batch of evaluation writes for one host, in one transaction.
#[derive(Debug, Clone, Default)]
pub struct HostEvaluation {
    /// New classifier memory and condition tracking (JSON); None leaves them as they are.
    pub state: Option<(HostId, String, String)>,
    pub ops: Vec<IncidentOp>,
    /// Host timeline entries: (host, kind, dedupe key, detail).
    pub host_events: Vec<(HostId, String, String, String)>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct IncidentRow {
    pub id: IncidentId,
    /// `INC-000042`
    pub number: String,
    pub customer_id: CustomerId,
    pub customer: String,
    pub site_id: SiteId,
    pub site: String,
    pub host_id: Option<HostId>,
    pub hostname: Option<String>,
    pub rule: String,
    pub resource: String,
    pub level: FaultLevel,
    pub summary: String,
    pub kind: FindingKind,
    pub state: IncidentState,
    pub flapping: bool,
    pub recurrences: u32,
    pub parent_id: Option<IncidentId>,
    pub opened_at_ms: UnixMs,
    pub updated_at_ms: UnixMs,
    pub acknowledged_at_ms: Option<UnixMs>,
    pub acknowledged_by: Option<String>,
    pub assignee: Option<String>,
    pub resolved_at_ms: Option<UnixMs>,
    pub resolved_by: Option<String>,
    pub resolution_note: Option<String>,
    pub closed_at_ms: Option<UnixMs>,
}

pub fn incident_number(id: IncidentId) -> String {
    format!("INC-{id:06}")
}

/// Accepts `INC-000042`, `inc-42` or `42`.
pub fn parse_incident_number(text: &str) -> Option<IncidentId> {
    let digits = text.strip_prefix("INC-").or_else(|| text.strip_prefix("inc-")).unwrap_or(text);
    digits.parse().ok().filter(|n: &i64| *n > 0).map(IncidentId::new)
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TimelineEntry {
    pub at_ms: UnixMs,
    pub kind: TimelineKind,
    pub actor: String,
    pub detail: String,
}

/// Filters of the incident list; None matches everything.
#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    pub states: Vec<IncidentState>,
    pub level: Option<FaultLevel>,
    pub customer_id: Option<CustomerId>,
    pub site_id: Option<SiteId>,
    pub host_id: Option<HostId>,
    pub rule: Option<String>,
    /// Only incidents filed under this one.
    pub parent_id: Option<IncidentId>,
    pub limit: u32,
}

/// What a person does to an incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncidentAction {
    Acknowledge,
    Assign(String),
    Note(String),
    /// With the note that is the service record: cause and action taken.
    Resolve(String),
}

/// What the fleet metrics need of one incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentStat {
    pub customer: String,
    pub level: FaultLevel,
    /// Open or acknowledged.
    pub active: bool,
    /// When its SLA clocks started (opening or latest reopening).
    pub clock_start_ms: UnixMs,
    pub acknowledged_at_ms: Option<UnixMs>,
    pub resolved_at_ms: Option<UnixMs>,
    pub response_met: Option<bool>,
    pub resolution_met: Option<bool>,
}

/// The incident stage: classifier state, incident operations applied in one transaction per batch, incident queries and the people working them.
#[async_trait]
pub trait IncidentStore: Send + Sync {
    /// The stored classifier state of each of `hosts` that exists, with its tenancy.
    async fn eval_states(&self, hosts: &[HostId]) -> StoreResult<Vec<HostEvalState>>;

    /// Applies a batch of evaluations in one transaction: classifier state, host timeline
    /// entries and incident operations, in order. A resolved incident of the same fingerprint
    /// reopens when raised again within `reopen_within_ms`.
    async fn apply_evaluations(
        &self,
        batch: &[HostEvaluation],
        reopen_within_ms: i64,
        now: UnixMs,
    ) -> StoreResult<Vec<IncidentChange>>;

    /// Newest first.
    async fn list_incidents(&self, filter: &IncidentFilter) -> StoreResult<Vec<IncidentRow>>;

    async fn get_incident(&self, id: IncidentId) -> StoreResult<Option<IncidentRow>>;

    /// Oldest first.
    async fn incident_timeline(&self, id: IncidentId) -> StoreResult<Vec<TimelineEntry>>;

    /// A person works an incident. `NotFound` for an unknown id, `Conflict` when the action
    /// does not fit its state (acknowledging a resolved incident).
    async fn work_incident(
        &self,
        id: IncidentId,
        action: &IncidentAction,
        actor: &str,
        now: UnixMs,
    ) -> StoreResult<IncidentRow>;

    /// Closes incidents resolved before `resolved_before`; returns how many.
    async fn close_resolved(&self, resolved_before: UnixMs, now: UnixMs) -> StoreResult<u64>;

    /// Every incident, reduced to what the fleet metrics count.
    async fn incident_stats(&self) -> StoreResult<Vec<IncidentStat>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_kinds_read_back_as_written_and_serialize_as_their_stored_name() {
        for kind in TimelineKind::ALL {
            assert_eq!(TimelineKind::parse(kind.as_str()), Some(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        assert_eq!(TimelineKind::parse("summary"), None);
    }

    #[test]
    fn what_people_and_the_clocks_must_hear_of_notifies_and_what_moves_the_clocks_resets_them() {
        let notifying: Vec<&str> =
            TimelineKind::ALL.into_iter().filter(|k| k.notifies()).map(|k| k.as_str()).collect();
        assert_eq!(
            notifying,
            ["opened", "reopened", "level", "acknowledged", "resolved", "warning", "escalated"]
        );
        let resetting: Vec<&str> =
            TimelineKind::ALL.into_iter().filter(|k| k.resets_sla()).map(|k| k.as_str()).collect();
        assert_eq!(resetting, ["opened", "reopened", "level", "acknowledged", "resolved"]);
    }
}
