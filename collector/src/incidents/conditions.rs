//! Condition tracking for one host: turns the state findings of each live report into decisions
//! — raise, resolve, mark flapping, file under the baseline review — with hysteresis (open after
//! N consecutive reports with the finding, clear after M without), flapping detection (a
//! condition that changes state too often is held open and marked, not reopened each time) and
//! the baseline review (what is wrong at a host's first report is listed once, not paged one by
//! one). Pure: time comes in as an argument and the state is a serde value the caller stores.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::classify::{FaultLevel, Finding, Hysteresis};
use crate::clock::UnixMs;

/// Rule id of the one-per-host incident listing what was wrong at the first report.
pub const BASELINE_RULE: &str = "host.baseline";

/// The settings condition tracking needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracking {
    pub flap_changes: u32,
    pub flap_window_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Conditions {
    /// The host's first live report has been evaluated.
    pub baseline_done: bool,
    /// A baseline review incident is open.
    pub baseline_open: bool,
    /// By `rule|resource`.
    pub items: BTreeMap<String, Condition>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    pub rule: String,
    pub resource: String,
    pub level: FaultLevel,
    pub summary: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The finding was in the last live report.
    pub present: bool,
    /// Consecutive live reports in the current `present` state.
    pub streak: u32,
    /// Hysteresis passed: the condition counts as a fault.
    pub active: bool,
    /// An incident is open for it (or it was put in maintenance and is waiting).
    pub raised: bool,
    /// Listed by the baseline review at this level instead of having its own incident.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<FaultLevel>,
    /// When `present` changed, within the flap window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<UnixMs>,
    #[serde(default)]
    pub flapping: bool,
}

/// What the incident engine should do.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Raise {
        rule: String,
        resource: String,
        level: FaultLevel,
        summary: String,
        /// (rule, resource) of the condition this one is filed under (a degraded array).
        parent: Option<(String, String)>,
        groups: Vec<String>,
    },
    Resolve {
        rule: String,
        resource: String,
        reason: String,
    },
    Flapping {
        rule: String,
        resource: String,
        detail: String,
    },
    /// A fault inside a maintenance window: recorded, not raised.
    InMaintenance {
        rule: String,
        resource: String,
        summary: String,
    },
    /// Open the baseline review at `level`, listing `items`.
    Baseline {
        level: FaultLevel,
        items: Vec<String>,
    },
    ResolveBaseline,
}

fn key(rule: &str, resource: &str) -> String {
    format!("{rule}|{resource}")
}

impl Conditions {
    /// Evaluates the state findings of one live report. `hysteresis` gives each rule's
    /// settings; `in_maintenance` says whether a rule is covered by a maintenance window now.
    pub fn evaluate(
        &mut self,
        findings: &[Finding],
        now: UnixMs,
        tracking: Tracking,
        hysteresis: impl Fn(&str) -> Hysteresis,
        in_maintenance: impl Fn(&str) -> bool,
    ) -> Vec<Decision> {
        let first = !self.baseline_done;
        self.baseline_done = true;
        let mut present: BTreeMap<String, &Finding> = BTreeMap::new();
        for finding in findings {
            present.insert(key(&finding.rule, &finding.resource), finding);
        }
        for (k, finding) in &present {
            self.items.entry(k.clone()).or_insert_with(|| Condition {
                rule: finding.rule.clone(),
                resource: finding.resource.clone(),
                level: finding.level,
                summary: finding.summary.clone(),
                groups: finding.groups.clone(),
                present: false,
                streak: 0,
                active: false,
                raised: false,
                baseline: None,
                changes: Vec::new(),
                flapping: false,
            });
        }

        let mut decisions = Vec::new();
        let mut baseline_items = Vec::new();
        let keys: Vec<String> = self.items.keys().cloned().collect();
        for k in &keys {
            let finding = present.get(k).copied();
            let cond = self.items.get_mut(k).expect("key from the map");
            let changed = track(cond, finding, now, tracking, hysteresis(&cond.rule));
            if first {
                if let Some(finding) = finding {
                    cond.baseline = Some(finding.level);
                    baseline_items.push(format!("L{} {}", finding.level.as_u8(), finding.summary));
                }
                continue;
            }
            if let Some(level) = cond.baseline {
                if !cond.present && !cond.active {
                    cond.baseline = None;
                } else if cond.present && cond.level < level {
                    // Worse than at the first report: it gets its own incident.
                    cond.baseline = None;
                } else {
                    continue;
                }
                if cond.baseline.is_none() && !cond.present {
                    continue;
                }
            }
            decide(cond, changed, now, tracking, &in_maintenance, &mut decisions);
        }
        self.attach_parents(&mut decisions);

        if first && !baseline_items.is_empty() {
            let level =
                self.items.values().filter_map(|c| c.baseline).min().unwrap_or(FaultLevel::L4);
            self.baseline_open = true;
            decisions.push(Decision::Baseline { level, items: baseline_items });
        } else if self.baseline_open && self.items.values().all(|c| c.baseline.is_none()) {
            self.baseline_open = false;
            decisions.push(Decision::ResolveBaseline);
        }
        self.items.retain(|_, c| {
            c.present || c.active || c.raised || c.baseline.is_some() || !c.changes.is_empty()
        });
        decisions
    }

    /// Files each raised condition on a resource that an active condition groups (a member
    /// disk of a degraded array) under that condition.
    fn attach_parents(&self, decisions: &mut [Decision]) {
        for decision in decisions {
            if let Decision::Raise { resource, parent, rule, .. } = decision {
                *parent = self
                    .items
                    .values()
                    .find(|c| c.active && c.groups.contains(resource) && &c.rule != rule)
                    .map(|c| (c.rule.clone(), c.resource.clone()));
            }
        }
    }
}

/// Updates presence, streaks, hysteresis and change history; says whether the level or
/// summary changed.
fn track(
    cond: &mut Condition,
    finding: Option<&Finding>,
    now: UnixMs,
    tracking: Tracking,
    hysteresis: Hysteresis,
) -> bool {
    let is_present = finding.is_some();
    if is_present == cond.present {
        cond.streak = cond.streak.saturating_add(1);
    } else {
        cond.present = is_present;
        cond.streak = 1;
        cond.changes.push(now);
    }
    cond.changes.retain(|t| now - t < tracking.flap_window_ms);
    let mut changed = false;
    if let Some(finding) = finding {
        changed = cond.level != finding.level || cond.summary != finding.summary;
        cond.level = finding.level;
        cond.summary.clone_from(&finding.summary);
        cond.groups.clone_from(&finding.groups);
    }
    if cond.present && !cond.active && cond.streak >= hysteresis.open_after {
        cond.active = true;
    } else if !cond.present && cond.active && cond.streak >= hysteresis.clear_after {
        cond.active = false;
    }
    changed
}

fn decide(
    cond: &mut Condition,
    changed: bool,
    now: UnixMs,
    tracking: Tracking,
    in_maintenance: &impl Fn(&str) -> bool,
    decisions: &mut Vec<Decision>,
) {
    let raise = |cond: &Condition| Decision::Raise {
        rule: cond.rule.clone(),
        resource: cond.resource.clone(),
        level: cond.level,
        summary: cond.summary.clone(),
        parent: None,
        groups: cond.groups.clone(),
    };
    if cond.raised && !cond.flapping && cond.changes.len() >= tracking.flap_changes as usize {
        cond.flapping = true;
        decisions.push(Decision::Flapping {
            rule: cond.rule.clone(),
            resource: cond.resource.clone(),
            detail: format!(
                "{} changes within {}; held open until it is quiet that long",
                cond.changes.len(),
                vigil_config::duration::format(std::time::Duration::from_millis(
                    tracking.flap_window_ms as u64
                ))
            ),
        });
    }
    if cond.active {
        if !cond.raised {
            if in_maintenance(&cond.rule) {
                decisions.push(Decision::InMaintenance {
                    rule: cond.rule.clone(),
                    resource: cond.resource.clone(),
                    summary: cond.summary.clone(),
                });
            } else {
                cond.raised = true;
                decisions.push(raise(cond));
            }
        } else if changed && cond.present {
            decisions.push(raise(cond));
        }
        return;
    }
    if !cond.raised {
        return;
    }
    if cond.flapping {
        // Held open until no change for a whole flap window.
        let quiet = cond.changes.last().is_none_or(|last| now - last >= tracking.flap_window_ms);
        if !quiet {
            return;
        }
    }
    cond.raised = false;
    cond.flapping = false;
    decisions.push(Decision::Resolve {
        rule: cond.rule.clone(),
        resource: cond.resource.clone(),
        reason: format!("cleared: {} consecutive reports without it", cond.streak),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::FindingKind;

    const TRACKING: Tracking = Tracking { flap_changes: 4, flap_window_ms: 30 * 60_000 };

    fn finding(rule: &str, resource: &str, level: FaultLevel) -> Finding {
        Finding {
            rule: rule.into(),
            resource: resource.into(),
            level,
            summary: format!("{resource} {rule}"),
            kind: FindingKind::State,
            groups: Vec::new(),
        }
    }

    fn hysteresis(open_after: u32) -> impl Fn(&str) -> Hysteresis {
        move |_| Hysteresis { open_after, clear_after: 3 }
    }

    /// Runs one report per entry, 10 s apart, after a clean first report.
    fn run(
        conditions: &mut Conditions,
        reports: &[Vec<Finding>],
        open_after: u32,
    ) -> Vec<Vec<Decision>> {
        let mut out = Vec::new();
        if !conditions.baseline_done {
            conditions.evaluate(&[], 0, TRACKING, hysteresis(open_after), |_| false);
        }
        for (i, findings) in reports.iter().enumerate() {
            let now = 10_000 * (i as i64 + 1);
            out.push(
                conditions.evaluate(findings, now, TRACKING, hysteresis(open_after), |_| false),
            );
        }
        out
    }

    fn names(decisions: &[Vec<Decision>]) -> Vec<Vec<&'static str>> {
        decisions
            .iter()
            .map(|ds| {
                ds.iter()
                    .map(|d| match d {
                        Decision::Raise { .. } => "raise",
                        Decision::Resolve { .. } => "resolve",
                        Decision::Flapping { .. } => "flapping",
                        Decision::InMaintenance { .. } => "maintenance",
                        Decision::Baseline { .. } => "baseline",
                        Decision::ResolveBaseline => "resolve-baseline",
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn opens_after_n_and_clears_after_m() {
        let bad = vec![finding("cpu.busy", "cpu", FaultLevel::L3)];
        let mut c = Conditions::default();
        let d = run(&mut c, &[bad.clone(), bad.clone(), bad.clone(), vec![], vec![], vec![]], 3);
        assert_eq!(
            names(&d),
            [vec![], vec![], vec!["raise"], vec![], vec![], vec!["resolve"]] as [Vec<&str>; 6]
        );
        assert!(c.items.is_empty() || c.items.values().all(|c| !c.raised));
    }

    #[test]
    fn a_blip_shorter_than_open_after_opens_nothing() {
        let bad = vec![finding("cpu.busy", "cpu", FaultLevel::L3)];
        let mut c = Conditions::default();
        let d = run(&mut c, &[bad.clone(), bad, vec![], vec![], vec![]], 3);
        assert!(names(&d).iter().all(Vec::is_empty), "{d:?}");
    }

    #[test]
    fn level_change_raises_again_with_the_new_level() {
        let mut c = Conditions::default();
        let d = run(
            &mut c,
            &[
                vec![finding("temp", "cpu0", FaultLevel::L2)],
                vec![finding("temp", "cpu0", FaultLevel::L1)],
            ],
            1,
        );
        assert!(matches!(d[1][0], Decision::Raise { level: FaultLevel::L1, .. }), "{d:?}");
    }

    #[test]
    fn flapping_is_marked_once_and_held_open_until_quiet() {
        let bad = vec![finding("raid.degraded", "md0", FaultLevel::L2)];
        let mut c = Conditions::default();
        let t = Tracking { flap_changes: 4, flap_window_ms: 30 * 60_000 };
        let h = |_: &str| Hysteresis { open_after: 1, clear_after: 1 };
        c.evaluate(&[], 0, t, h, |_| false);
        let mut all = Vec::new();
        for i in 1..=8 {
            let findings = if i % 2 == 1 { bad.clone() } else { vec![] };
            all.push(c.evaluate(&findings, i * 10_000, t, h, |_| false));
        }
        let flat: Vec<&str> = names(&all).into_iter().flatten().collect();
        // raise, resolve, raise (reopen), then flapping: never resolved again while flapping.
        assert_eq!(flat, ["raise", "resolve", "raise", "flapping"], "{all:?}");
        // Quiet for a whole window: resolved.
        let d = c.evaluate(&[], 30 * 60_000 + 80_000, t, h, |_| false);
        assert_eq!(names(&[d]), [vec!["resolve"]]);
    }

    #[test]
    fn first_report_opens_one_baseline_and_clearing_resolves_it() {
        let mut c = Conditions::default();
        let first = vec![
            finding("fs.usage", "/", FaultLevel::L3),
            finding("raid.degraded", "md0", FaultLevel::L2),
        ];
        let d = c.evaluate(&first, 0, TRACKING, hysteresis(1), |_| false);
        match &d[..] {
            [Decision::Baseline { level: FaultLevel::L2, items }] => assert_eq!(items.len(), 2),
            other => panic!("{other:?}"),
        }
        // Still present: nothing new. Worse: its own incident.
        let worse = vec![
            finding("fs.usage", "/", FaultLevel::L2),
            finding("raid.degraded", "md0", FaultLevel::L2),
        ];
        let d = c.evaluate(&worse, 10_000, TRACKING, hysteresis(1), |_| false);
        assert_eq!(names(&[d]), [vec!["raise"]]);
        // The array heals (3 clean reports) while the filesystem stays: baseline resolves.
        let only_fs = vec![finding("fs.usage", "/", FaultLevel::L2)];
        let mut last = Vec::new();
        for i in 2..5 {
            last = c.evaluate(&only_fs, i * 10_000, TRACKING, hysteresis(1), |_| false);
        }
        assert_eq!(names(&[last]), [vec!["resolve-baseline"]]);
    }

    #[test]
    fn maintenance_records_and_raises_after_the_window() {
        let bad = vec![finding("raid.degraded", "md0", FaultLevel::L2)];
        let mut c = Conditions::default();
        c.evaluate(&[], 0, TRACKING, hysteresis(1), |_| false);
        let d = c.evaluate(&bad, 10_000, TRACKING, hysteresis(1), |_| true);
        assert_eq!(names(&[d]), [vec!["maintenance"]]);
        let d = c.evaluate(&bad, 20_000, TRACKING, hysteresis(1), |_| false);
        assert_eq!(names(&[d]), [vec!["raise"]]);
    }

    #[test]
    fn member_disk_is_filed_under_its_degraded_array() {
        let mut raid = finding("raid.degraded", "md0", FaultLevel::L2);
        raid.groups = vec!["/dev/sda".into()];
        let disk = finding("smart.failing", "/dev/sda", FaultLevel::L1);
        let mut c = Conditions::default();
        let d = run(&mut c, &[vec![raid, disk]], 1);
        let parent = d[0].iter().find_map(|d| match d {
            Decision::Raise { resource, parent, .. } if resource == "/dev/sda" => parent.clone(),
            _ => None,
        });
        assert_eq!(parent, Some(("raid.degraded".into(), "md0".into())));
    }
}
