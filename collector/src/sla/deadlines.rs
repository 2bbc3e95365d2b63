//! The SLA rule engine for one incident, pure: from the incident's opening time, level,
//! acknowledgement and resolution, the customer's contract and the stretches a maintenance
//! window paused its clocks, it computes the response and resolution deadlines and decides
//! what is due now — a warning (at `warn_at` of the way to a deadline), an escalation (a
//! missed response moves tier 1 → 2, a missed resolution → 3), a deadline met or missed — and
//! when the incident next needs a look. The sweep (`super::sweep`) feeds it and applies the
//! outcome; nothing here reads a clock or the store, so tests drive it exactly.
//!
//! Deadlines always count from the opening time with the current level's targets, so a level
//! change recomputes them; a deadline already met or missed stays so.

use crate::clock::{UnixMs, rfc3339};

use super::contract::Terms;
use crate::store::{IncidentSla, SlaEntry, SlaUpdate, TimelineKind};

/// Evaluates one incident at `now`. `paused` are the maintenance stretches (any order).
pub fn evaluate(
    incident: &IncidentSla,
    terms: &Terms,
    paused: &[(UnixMs, UnixMs)],
    now: UnixMs,
) -> SlaUpdate {
    let level = incident.level;
    let calendar = terms.calendar(level);
    let target = terms.terms(level);
    let warn_at = terms.contract.warn_at;
    let opened = incident.opened_at_ms;
    let response_ms = target.response.as_millis() as i64;
    let resolution_ms = target.resolution.as_millis() as i64;
    let response_due = calendar.deadline(opened, response_ms, paused);
    let resolution_due = calendar.deadline(opened, resolution_ms, paused);
    let response_warn = calendar.deadline(opened, (response_ms as f64 * warn_at) as i64, paused);
    let resolution_warn =
        calendar.deadline(opened, (resolution_ms as f64 * warn_at) as i64, paused);

    let mut out = SlaUpdate {
        id: incident.id,
        tier: incident.tier,
        sla_level: level.as_u8(),
        response_due_ms: response_due,
        resolution_due_ms: resolution_due,
        response_met: incident.response_met,
        resolution_met: incident.resolution_met,
        response_warned: incident.response_warned,
        resolution_warned: incident.resolution_warned,
        next_check_ms: None,
        entries: Vec::new(),
    };
    // The first deadlines are in the incident's SLA block; the timeline records changes.
    let recomputed = incident.sla_level.is_some() && incident.sla_level != Some(level.as_u8());
    let moved = incident.response_due_ms.is_some()
        && (incident.response_due_ms != Some(response_due)
            || incident.resolution_due_ms != Some(resolution_due));
    if recomputed || moved {
        let why = if recomputed {
            format!("recomputed for {level}")
        } else {
            "moved (maintenance or contract change)".to_owned()
        };
        out.entries.push(SlaEntry {
            kind: TimelineKind::Sla,
            detail: format!(
                "deadlines {why}: response due {}, resolution due {}",
                rfc3339(response_due),
                rfc3339(resolution_due)
            ),
        });
    }

    let mut next: Vec<UnixMs> = Vec::new();
    // Response: acknowledged (or resolved, which needs no acknowledgement any more) in time?
    if out.response_met.is_none() {
        let answered = match (incident.acknowledged_at_ms, incident.resolved_at_ms) {
            (Some(a), Some(r)) => Some(a.min(r)),
            (a, r) => a.or(r),
        };
        match answered {
            Some(at) if at <= response_due => {
                out.response_met = Some(true);
                out.entries.push(SlaEntry {
                    kind: TimelineKind::Sla,
                    detail: format!("response met ({} before due)", span(response_due - at)),
                });
            }
            _ if now >= response_due || answered.is_some() => {
                out.response_met = Some(false);
                out.entries.push(escalate(&mut out.tier, 2, "response", response_due));
            }
            _ => {
                if now >= response_warn && !out.response_warned {
                    out.response_warned = true;
                    out.entries.push(warning("response", response_due, now));
                }
                next.push(if out.response_warned { response_due } else { response_warn });
            }
        }
    }
    // Resolution.
    if out.resolution_met.is_none() {
        match incident.resolved_at_ms {
            Some(at) if at <= resolution_due => {
                out.resolution_met = Some(true);
                out.entries.push(SlaEntry {
                    kind: TimelineKind::Sla,
                    detail: format!("resolution met ({} before due)", span(resolution_due - at)),
                });
            }
            resolved if now >= resolution_due || resolved.is_some() => {
                out.resolution_met = Some(false);
                out.entries.push(escalate(&mut out.tier, 3, "resolution", resolution_due));
            }
            _ => {
                if now >= resolution_warn && !out.resolution_warned {
                    out.resolution_warned = true;
                    out.entries.push(warning("resolution", resolution_due, now));
                }
                next.push(if out.resolution_warned { resolution_due } else { resolution_warn });
            }
        }
    }
    out.next_check_ms = next.into_iter().min();
    out
}

fn escalate(tier: &mut u8, to: u8, what: &str, due: UnixMs) -> SlaEntry {
    let from = *tier;
    if from < to {
        *tier = to;
        SlaEntry {
            kind: TimelineKind::Escalated,
            detail: format!("{what} due {} missed; tier {from} → {to}", rfc3339(due)),
        }
    } else {
        SlaEntry { kind: TimelineKind::Sla, detail: format!("{what} due {} missed", rfc3339(due)) }
    }
}

fn warning(what: &str, due: UnixMs, now: UnixMs) -> SlaEntry {
    SlaEntry {
        kind: TimelineKind::Warning,
        detail: format!("{what} due {} (in {})", rfc3339(due), span(due - now)),
    }
}

/// A duration in whole seconds, like `4m 12s`.
fn span(ms: i64) -> String {
    humantime::format_duration(std::time::Duration::from_secs((ms.max(0) / 1000) as u64))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::FaultLevel;
    use crate::sla::contract::{Contract, Terms};

    const MIN: i64 = 60_000;
    const T0: UnixMs = 1_790_000_000_000;

    fn incident(level: FaultLevel) -> IncidentSla {
        IncidentSla {
            id: crate::ids::IncidentId::new(1),
            level,
            opened_at_ms: T0,
            acknowledged_at_ms: None,
            resolved_at_ms: None,
            tier: 1,
            sla_level: None,
            response_due_ms: None,
            resolution_due_ms: None,
            response_met: None,
            resolution_met: None,
            response_warned: false,
            resolution_warned: false,
        }
    }

    fn apply(incident: &mut IncidentSla, u: &SlaUpdate) {
        incident.tier = u.tier;
        incident.sla_level = Some(u.sla_level);
        incident.response_due_ms = Some(u.response_due_ms);
        incident.resolution_due_ms = Some(u.resolution_due_ms);
        incident.response_met = u.response_met;
        incident.resolution_met = u.resolution_met;
        incident.response_warned = u.response_warned;
        incident.resolution_warned = u.resolution_warned;
    }

    fn kinds(u: &SlaUpdate) -> Vec<&'static str> {
        u.entries.iter().map(|e| e.kind.as_str()).collect()
    }

    #[test]
    fn unacknowledged_l1_warns_at_80_percent_then_escalates_to_tier_2_at_the_deadline() {
        let terms = Terms::new(Contract::default(), &[]).unwrap();
        let mut inc = incident(FaultLevel::L1);
        let u = evaluate(&inc, &terms, &[], T0);
        assert_eq!(u.response_due_ms, T0 + 5 * MIN);
        assert_eq!(u.resolution_due_ms, T0 + 240 * MIN);
        assert_eq!(u.next_check_ms, Some(T0 + 4 * MIN), "the response warning at 80 %");
        assert!(kinds(&u).is_empty(), "the first deadlines are no timeline news");
        apply(&mut inc, &u);

        let u = evaluate(&inc, &terms, &[], T0 + 4 * MIN);
        assert_eq!(kinds(&u), ["warning"]);
        assert_eq!(u.tier, 1);
        assert_eq!(u.next_check_ms, Some(T0 + 5 * MIN));
        apply(&mut inc, &u);
        // Looking again before the deadline changes nothing.
        let again = evaluate(&inc, &terms, &[], T0 + 4 * MIN + 30_000);
        assert!(again.entries.is_empty(), "{again:?}");

        let u = evaluate(&inc, &terms, &[], T0 + 5 * MIN);
        assert_eq!(kinds(&u), ["escalated"]);
        assert_eq!(u.tier, 2);
        assert_eq!(u.response_met, Some(false));
        assert!(u.entries[0].detail.contains("tier 1 → 2"), "{:?}", u.entries);
        // Resolution warning at 80 % of 4 h.
        assert_eq!(u.next_check_ms, Some(T0 + 192 * MIN));
        apply(&mut inc, &u);

        let u = evaluate(&inc, &terms, &[], T0 + 192 * MIN);
        assert_eq!(kinds(&u), ["warning"]);
        apply(&mut inc, &u);
        let u = evaluate(&inc, &terms, &[], T0 + 240 * MIN);
        assert_eq!(kinds(&u), ["escalated"]);
        assert_eq!(u.tier, 3);
        assert_eq!(u.next_check_ms, None);
    }

    #[test]
    fn acknowledged_in_time_is_met_and_never_escalates() {
        let terms = Terms::new(Contract::default(), &[]).unwrap();
        let mut inc = incident(FaultLevel::L1);
        inc.acknowledged_at_ms = Some(T0 + 2 * MIN);
        let u = evaluate(&inc, &terms, &[], T0 + 10 * MIN);
        assert_eq!(u.response_met, Some(true));
        assert_eq!(u.tier, 1);
        assert!(!kinds(&u).contains(&"escalated"));
        apply(&mut inc, &u);
        // A later level change recomputes the deadlines, but a met response stays met.
        inc.level = FaultLevel::L3;
        let u = evaluate(&inc, &terms, &[], T0 + 11 * MIN);
        assert_eq!(u.response_met, Some(true));
        assert_eq!(u.resolution_due_ms, T0 + 24 * 60 * MIN);
        assert!(u.entries[0].detail.starts_with("deadlines recomputed for L3"), "{:?}", u.entries);
    }

    #[test]
    fn a_maintenance_window_pauses_the_clock() {
        let terms = Terms::new(Contract::default(), &[]).unwrap();
        let inc = incident(FaultLevel::L2);
        let paused = [(T0 + 5 * MIN, T0 + 65 * MIN)];
        let u = evaluate(&inc, &terms, &paused, T0);
        assert_eq!(u.response_due_ms, T0 + 75 * MIN, "15 min of clock, one hour paused");
    }

    #[test]
    fn resolved_late_is_missed_resolved_in_time_is_met() {
        let terms = Terms::new(Contract::default(), &[]).unwrap();
        let mut inc = incident(FaultLevel::L2);
        inc.resolved_at_ms = Some(T0 + 10 * MIN);
        let u = evaluate(&inc, &terms, &[], T0 + 10 * MIN);
        assert_eq!((u.response_met, u.resolution_met), (Some(true), Some(true)));
        assert_eq!(u.next_check_ms, None);
        let mut late = incident(FaultLevel::L2);
        late.resolved_at_ms = Some(T0 + 9 * 60 * MIN);
        let u = evaluate(&late, &terms, &[], T0 + 9 * 60 * MIN);
        assert_eq!((u.response_met, u.resolution_met), (Some(false), Some(false)));
        assert_eq!(u.tier, 3);
    }
}
