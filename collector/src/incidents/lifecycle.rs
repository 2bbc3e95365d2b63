//! The incident lifecycle, pure: how a raised condition meets the incidents already there
//! (update the active one, reopen a recently resolved one as a recurrence, or open a new one),
//! and which actions a person may take in which state. Nothing here reads a clock or the
//! store. Each store backend reads what these functions need inside its transaction, calls
//! them, and applies the writes they return, so every backend behaves the same and the rules
//! are tested here without a database.

use crate::classify::{FaultLevel, FindingKind};
use crate::clock::UnixMs;
use crate::store::{IncidentAction, IncidentState, TimelineKind};

/// The active incident of a fingerprint, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Active<'a> {
    pub level: FaultLevel,
    pub summary: &'a str,
}

/// The most recently resolved incident of a fingerprint, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastResolved {
    pub resolved_at_ms: UnixMs,
    pub recurrences: u32,
}

/// A condition raised again: what the classifier found now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raised<'a> {
    pub level: FaultLevel,
    pub summary: &'a str,
    pub kind: FindingKind,
}

/// A timeline entry to write: its kind and detail.
pub type Entry = (TimelineKind, String);

/// What raising a condition does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RaiseOutcome {
    /// The active incident stays. Its level becomes `level` and its summary the raised one
    /// when `rewrite`; `entry`, when there is one, goes on its timeline.
    Update { level: FaultLevel, rewrite: bool, entry: Option<Entry> },
    /// The resolved incident opens again at the raised level, its recurrence count raised to
    /// `recurrences`, its acknowledgement, resolution and SLA clocks cleared.
    Reopen { recurrences: u32, entry: Entry },
    /// A new incident opens.
    Open { entry: Entry },
}

/// Decides what raising `raised` does, given the fingerprint's active incident and its most
/// recently resolved one.
///
/// - With an active incident, an event adds an `event` entry and never lowers the level (a
///   lesser event does not make a worse condition look better); a state follows its condition
///   and a level change adds a `level` entry. A new summary alone is written without an entry.
/// - Without one, an incident resolved at most `reopen_within_ms` before `now` reopens (a
///   recurrence keeps its history together); otherwise a new incident opens.
pub fn raise(
    active: Option<Active<'_>>,
    last_resolved: Option<LastResolved>,
    raised: Raised<'_>,
    reopen_within_ms: i64,
    now: UnixMs,
) -> RaiseOutcome {
    if let Some(active) = active {
        let entry = if raised.kind == FindingKind::Event {
            Some((TimelineKind::Event, raised.summary.to_owned()))
        } else if active.level != raised.level {
            let detail = format!("{} → {}: {}", active.level, raised.level, raised.summary);
            Some((TimelineKind::Level, detail))
        } else {
            None
        };
        let level = match raised.kind {
            FindingKind::Event => active.level.min(raised.level),
            FindingKind::State => raised.level,
        };
        let rewrite = entry.is_some() || active.summary != raised.summary;
        return RaiseOutcome::Update { level, rewrite, entry };
    }
    if let Some(resolved) = last_resolved
        && resolved.resolved_at_ms >= now - reopen_within_ms
    {
        let recurrences = resolved.recurrences + 1;
        let detail = format!("recurrence {recurrences}: {} {}", raised.level, raised.summary);
        return RaiseOutcome::Reopen { recurrences, entry: (TimelineKind::Reopened, detail) };
    }
    RaiseOutcome::Open {
        entry: (TimelineKind::Opened, format!("{} {}", raised.level, raised.summary)),
    }
}

/// Why a person's action does not fit the incident's state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WorkRefused(pub String);

/// Decides whether `action` fits an incident in `state` (acknowledged by `acknowledged_by`),
/// and what its timeline entry says. `number` names the incident in the refusal.
///
/// Acknowledging needs an open incident; assigning and resolving need an active one (open or
/// acknowledged); a note fits every state, so a closed incident can still be annotated.
pub fn work(
    number: &str,
    state: IncidentState,
    acknowledged_by: Option<&str>,
    action: &IncidentAction,
) -> Result<Entry, WorkRefused> {
    let inactive = || WorkRefused(format!("{number} is {}; nothing to do", state.as_str()));
    match action {
        IncidentAction::Acknowledge => match state {
            IncidentState::Open => Ok((TimelineKind::Acknowledged, String::new())),
            IncidentState::Acknowledged => Err(WorkRefused(format!(
                "{number} is already acknowledged by {}",
                acknowledged_by.unwrap_or_default()
            ))),
            IncidentState::Resolved | IncidentState::Closed => Err(inactive()),
        },
        IncidentAction::Assign(who) if state.is_active() => {
            Ok((TimelineKind::Assigned, who.clone()))
        }
        IncidentAction::Resolve(note) if state.is_active() => {
            Ok((TimelineKind::Resolved, note.clone()))
        }
        IncidentAction::Assign(_) | IncidentAction::Resolve(_) => Err(inactive()),
        IncidentAction::Note(text) => Ok((TimelineKind::Note, text.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    fn state(level: FaultLevel, summary: &str) -> Raised<'_> {
        Raised { level, summary, kind: FindingKind::State }
    }

    fn event(level: FaultLevel, summary: &str) -> Raised<'_> {
        Raised { level, summary, kind: FindingKind::Event }
    }

    fn active(level: FaultLevel, summary: &str) -> Option<Active<'_>> {
        Some(Active { level, summary })
    }

    #[test]
    fn a_new_condition_opens_an_incident_at_its_level() {
        let outcome = raise(None, None, state(FaultLevel::L2, "sdb failing"), HOUR, 10 * HOUR);
        let entry = (TimelineKind::Opened, "L2 sdb failing".to_owned());
        assert_eq!(outcome, RaiseOutcome::Open { entry });
    }

    #[test]
    fn a_state_follows_its_condition_both_ways_and_notes_the_change() {
        let worse =
            raise(active(FaultLevel::L3, "hot"), None, state(FaultLevel::L2, "hotter"), 0, 0);
        let entry = Some((TimelineKind::Level, "L3 → L2: hotter".to_owned()));
        assert_eq!(worse, RaiseOutcome::Update { level: FaultLevel::L2, rewrite: true, entry });
        let better =
            raise(active(FaultLevel::L2, "hot"), None, state(FaultLevel::L3, "warm"), 0, 0);
        let entry = Some((TimelineKind::Level, "L2 → L3: warm".to_owned()));
        assert_eq!(better, RaiseOutcome::Update { level: FaultLevel::L3, rewrite: true, entry });
    }

    #[test]
    fn the_same_state_again_writes_nothing_and_a_new_summary_writes_without_an_entry() {
        let same = raise(active(FaultLevel::L2, "hot"), None, state(FaultLevel::L2, "hot"), 0, 0);
        assert_eq!(
            same,
            RaiseOutcome::Update { level: FaultLevel::L2, rewrite: false, entry: None }
        );
        let reworded =
            raise(active(FaultLevel::L2, "hot"), None, state(FaultLevel::L2, "81 °C"), 0, 0);
        assert_eq!(
            reworded,
            RaiseOutcome::Update { level: FaultLevel::L2, rewrite: true, entry: None }
        );
    }

    #[test]
    fn an_event_never_lowers_the_level_but_raises_it_and_always_adds_an_entry() {
        let lesser = raise(active(FaultLevel::L2, "ecc"), None, event(FaultLevel::L4, "ecc"), 0, 0);
        let entry = Some((TimelineKind::Event, "ecc".to_owned()));
        assert_eq!(lesser, RaiseOutcome::Update { level: FaultLevel::L2, rewrite: true, entry });
        let worse = raise(active(FaultLevel::L3, "ecc"), None, event(FaultLevel::L1, "ue"), 0, 0);
        let entry = Some((TimelineKind::Event, "ue".to_owned()));
        assert_eq!(worse, RaiseOutcome::Update { level: FaultLevel::L1, rewrite: true, entry });
    }

    #[test]
    fn an_active_incident_wins_over_a_resolved_one() {
        let resolved = Some(LastResolved { resolved_at_ms: 0, recurrences: 4 });
        let outcome =
            raise(active(FaultLevel::L2, "hot"), resolved, state(FaultLevel::L2, "hot"), HOUR, 1);
        assert!(matches!(outcome, RaiseOutcome::Update { .. }), "{outcome:?}");
    }

    #[test]
    fn a_recurrence_within_the_window_reopens_and_counts_up_to_its_edge() {
        let resolved = |at| Some(LastResolved { resolved_at_ms: at, recurrences: 2 });
        let now = 10 * HOUR;
        let raised = state(FaultLevel::L1, "down");
        let entry = (TimelineKind::Reopened, "recurrence 3: L1 down".to_owned());
        // Resolved exactly `reopen_within` ago still reopens; a millisecond earlier opens anew.
        assert_eq!(
            raise(None, resolved(now - HOUR), raised, HOUR, now),
            RaiseOutcome::Reopen { recurrences: 3, entry }
        );
        assert!(matches!(
            raise(None, resolved(now - HOUR - 1), raised, HOUR, now),
            RaiseOutcome::Open { .. }
        ));
    }

    #[test]
    fn acknowledging_needs_an_open_incident_and_names_who_acknowledged_it() {
        let ack = IncidentAction::Acknowledge;
        assert_eq!(
            work("INC-000001", IncidentState::Open, None, &ack),
            Ok((TimelineKind::Acknowledged, String::new()))
        );
        assert_eq!(
            work("INC-000001", IncidentState::Acknowledged, Some("token:ann"), &ack),
            Err(WorkRefused("INC-000001 is already acknowledged by token:ann".into()))
        );
        for state in [IncidentState::Resolved, IncidentState::Closed] {
            let refused = work("INC-000001", state, None, &ack).unwrap_err();
            assert_eq!(refused.0, format!("INC-000001 is {}; nothing to do", state.as_str()));
        }
    }

    #[test]
    fn assigning_and_resolving_need_an_active_incident_and_a_note_fits_every_state() {
        let assign = IncidentAction::Assign("bob".into());
        let resolve = IncidentAction::Resolve("replaced sdb".into());
        let note = IncidentAction::Note("invoiced".into());
        for state in [IncidentState::Open, IncidentState::Acknowledged] {
            assert_eq!(
                work("INC-000002", state, None, &assign),
                Ok((TimelineKind::Assigned, "bob".into()))
            );
            assert_eq!(
                work("INC-000002", state, None, &resolve),
                Ok((TimelineKind::Resolved, "replaced sdb".into()))
            );
        }
        for state in [IncidentState::Resolved, IncidentState::Closed] {
            assert!(work("INC-000002", state, None, &assign).is_err());
            assert!(work("INC-000002", state, None, &resolve).is_err());
        }
        for state in [
            IncidentState::Open,
            IncidentState::Acknowledged,
            IncidentState::Resolved,
            IncidentState::Closed,
        ] {
            assert_eq!(
                work("INC-000002", state, None, &note),
                Ok((TimelineKind::Note, "invoiced".into()))
            );
        }
    }
}
