//! The classifier's memory between reports, as the rules use it: counter baselines (did a
//! counter rise since the last report?) and marks (was this NIC ever seen with carrier, this
//! fan turning, this alarm already reported?). Both are rebuilt from every report in which
//! their probe is OK: what is in the report is carried on, what is not is forgotten, so the
//! memory holds only resources the host still has.

use std::collections::{BTreeMap, BTreeSet};

use super::{Findings, HostMemory, RuleDef, text};

/// How much a counter that only grows rose from `before` to `now`. A counter lower than
/// before restarted from zero (a reboot, a driver reload, a unit reset), so all of `now` is
/// new; a counter never seen before counts from zero too (it counts since boot, and whatever
/// it holds has not been reported).
pub(super) fn counter_increase(before: Option<u64>, now: u64) -> u64 {
    match before {
        Some(before) if now >= before => now - before,
        _ => now,
    }
}

/// One family of counter baselines (one rule's counters, by resource) during one report.
pub(super) struct CounterBaselines<'m> {
    previous: BTreeMap<String, u64>,
    next: &'m mut BTreeMap<String, u64>,
}

impl HostMemory {
    /// The baselines of `family` (a rule id); resources this report does not mention are
    /// forgotten when it is dropped.
    pub(super) fn counters(&mut self, family: &str) -> CounterBaselines<'_> {
        let next = self.counters.entry(family.to_owned()).or_default();
        CounterBaselines { previous: std::mem::take(next), next }
    }
}

impl CounterBaselines<'_> {
    /// How much `resource`'s counter rose since the last report (see [`counter_increase`]);
    /// `now` becomes its baseline. With no reading this time (a disk in standby) the baseline
    /// is kept and nothing rose.
    pub(super) fn rise(&mut self, resource: &str, now: Option<u64>) -> u64 {
        let before = self.previous.get(resource).copied();
        let Some(now) = now.or(before) else { return 0 };
        self.next.insert(resource.to_owned(), now);
        counter_increase(before, now)
    }
}

/// One set of marked resources (NICs seen with carrier, latched alarms) during one report:
/// [`Marks::was_marked`] reads the last report's marks, [`Marks::mark`] sets this report's.
/// Resources not marked again are forgotten.
pub(super) struct Marks<'m> {
    previous: BTreeSet<String>,
    next: &'m mut BTreeSet<String>,
}

impl<'m> Marks<'m> {
    pub(super) fn new(set: &'m mut BTreeSet<String>) -> Self {
        Self { previous: std::mem::take(set), next: set }
    }

    pub(super) fn was_marked(&self, resource: &str) -> bool {
        self.previous.contains(resource)
    }

    pub(super) fn mark(&mut self, resource: &str) {
        self.next.insert(resource.to_owned());
    }
}

/// For the event rules on counters: a finding of `def` for each resource whose counter rose
/// since the last report, `<resource>: <what> rose by <n> to <count>`. The baselines are kept
/// up to date even while the rule is disabled, so enabling it does not report old rises.
pub(super) fn counter_events<'a>(
    def: &RuleDef,
    what: &str,
    readings: impl IntoIterator<Item = (&'a str, Option<u64>)>,
    memory: &mut HostMemory,
    findings: &mut Findings,
) {
    let mut baselines = memory.counters(def.id);
    for (resource, now) in readings {
        let resource = text::text(resource);
        let rise = baselines.rise(&resource, now);
        if rise > 0 {
            let count = now.unwrap_or_default();
            findings
                .fire(def, &resource, |_| format!("{resource}: {what} rose by {rise} to {count}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increase_with_reset_and_first_sight() {
        assert_eq!(counter_increase(Some(5), 8), 3);
        assert_eq!(counter_increase(Some(5), 5), 0);
        // Lower than before: the counter restarted, all of it is new.
        assert_eq!(counter_increase(Some(5), 2), 2);
        assert_eq!(counter_increase(None, 7), 7);
        assert_eq!(counter_increase(None, 0), 0);
    }

    #[test]
    fn baselines_follow_the_report() {
        let mut memory = HostMemory::default();
        let mut family = memory.counters("f");
        assert_eq!(family.rise("a", Some(3)), 3);
        assert_eq!(family.rise("b", Some(0)), 0);
        drop(family);

        let mut family = memory.counters("f");
        // No reading: nothing rose, the baseline stays.
        assert_eq!(family.rise("a", None), 0);
        drop(family);
        assert_eq!(memory.counters["f"], BTreeMap::from([("a".to_owned(), 3)]));

        let mut family = memory.counters("f");
        assert_eq!(family.rise("a", Some(4)), 1);
        drop(family);
        // `b` was not in the last report: forgotten.
        assert_eq!(memory.counters["f"], BTreeMap::from([("a".to_owned(), 4)]));
    }

    #[test]
    fn marks_are_rebuilt_per_report() {
        let mut set = BTreeSet::from(["old".to_owned(), "kept".to_owned()]);
        let mut marks = Marks::new(&mut set);
        assert!(marks.was_marked("old") && marks.was_marked("kept"));
        marks.mark("kept");
        marks.mark("new");
        assert!(!marks.was_marked("new"), "marks of this report are not read back");
        assert_eq!(set, BTreeSet::from(["kept".to_owned(), "new".to_owned()]));
    }
}
