//! Records of the incident stage: incidents and their timelines, the primitive operations the
//! incident engine asks the store to apply (one transaction per batch), the classifier state
//! kept per host, and maintenance windows. The decisions (what opens, what resolves) are made
//! by `crate::incidents`; the store only applies them, so both engines share one behaviour.

use serde::Serialize;

use crate::classify::{FaultLevel, FindingKind};
use crate::clock::UnixMs;
use crate::ids::{CustomerId, HostId, SiteId};

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
    pub incident_id: i64,
    /// opened, reopened, level, summary, event, resolved, flapping, grouped
    pub change: &'static str,
    pub level: u8,
    pub rule: String,
    pub resource: String,
}

impl IncidentChange {
    /// True when the change wrote a timeline entry that entered the outbox: a notification
    /// is waiting to go out, and the incident's SLA clocks are to be looked at again.
    pub fn enters_outbox(&self) -> bool {
        NOTIFIABLE.contains(&self.change)
    }
}

/// Timeline kinds that go out as notifications (through the outbox, same transaction).
pub const NOTIFIABLE: &[&str] =
    &["opened", "reopened", "level", "acknowledged", "resolved", "warning", "escalated"];

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
    pub id: i64,
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
    pub level: u8,
    pub summary: String,
    pub kind: String,
    pub state: IncidentState,
    pub flapping: bool,
    pub recurrences: u32,
    pub parent_id: Option<i64>,
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

pub fn incident_number(id: i64) -> String {
    format!("INC-{id:06}")
}

/// Accepts `INC-000042`, `inc-42` or `42`.
pub fn parse_incident_number(text: &str) -> Option<i64> {
    let digits = text.strip_prefix("INC-").or_else(|| text.strip_prefix("inc-")).unwrap_or(text);
    digits.parse().ok().filter(|n| *n > 0)
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TimelineEntry {
    pub at_ms: UnixMs,
    pub kind: String,
    pub actor: String,
    pub detail: String,
}

/// Filters of the incident list; None matches everything.
#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    pub states: Vec<IncidentState>,
    pub level: Option<u8>,
    pub customer_id: Option<CustomerId>,
    pub site_id: Option<SiteId>,
    pub host_id: Option<HostId>,
    pub rule: Option<String>,
    /// Only incidents filed under this one.
    pub parent_id: Option<i64>,
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

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MaintenanceWindowRow {
    pub id: String,
    pub customer_id: CustomerId,
    pub customer: String,
    pub site_id: Option<SiteId>,
    pub site: Option<String>,
    pub host_id: Option<HostId>,
    pub hostname: Option<String>,
    /// Empty: every rule.
    pub rules: Vec<String>,
    pub start_local: String,
    pub duration_ms: i64,
    pub recurrence: String,
    pub time_zone: String,
    pub until_local: Option<String>,
    pub reason: String,
    pub created_at_ms: UnixMs,
    pub created_by: String,
}
