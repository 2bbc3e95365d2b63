//! Rules about the agent itself, from the spool status every report carries: a host whose
//! agent cannot write its state directory (it then holds reports in memory, and the disk-full
//! host is exactly the one the vendor must hear from), reports the agent dropped because its
//! spool was full, and spool records quarantined because they failed their checks or the
//! collector refused them. The resource is `spool`.

use vigil_proto::v1::SpoolStatus;

use super::memory::counter_events;
use super::text::text;
use super::{FaultLevel, Findings, HostMemory, RuleDef};

pub(super) const SPOOL_IN_MEMORY: RuleDef = RuleDef::state(
    "agent.spool_in_memory",
    FaultLevel::L2,
    "the agent cannot write its state directory (disk full, I/O error, read-only) and holds \
     unacknowledged reports in a bounded in-memory spool",
);
pub(super) const REPORTS_DROPPED: RuleDef = RuleDef::event(
    "agent.reports_dropped",
    FaultLevel::L3,
    "the agent dropped reports unsent because its spool was full (its drop count rose)",
);
pub(super) const SPOOL_QUARANTINED: RuleDef = RuleDef::event(
    "agent.spool_quarantined",
    FaultLevel::L4,
    "spool records failed their checks or were refused by the collector and were moved to \
     the agent's spool/quarantine/ (its quarantine count rose)",
);

pub(super) const SERIES_CAPPED: RuleDef = RuleDef::state(
    "agent.series_capped",
    FaultLevel::L3,
    "the host sends roll-up series the collector does not store: it is at \
     `ingest.max_series_per_host` or `ingest.max_new_series_per_day`, or a series name is longer \
     than `ingest.max_series_name_bytes` (a probe naming resources without end, or a hostile \
     client); the history of those series is missing",
);

pub(super) const RULES: &[RuleDef] =
    &[SPOOL_IN_MEMORY, REPORTS_DROPPED, SPOOL_QUARANTINED, SERIES_CAPPED];

pub(super) fn spool(status: &SpoolStatus, memory: &mut HostMemory, findings: &mut Findings) {
    if status.in_memory {
        let error = text(&status.disk_error);
        findings.fire(&SPOOL_IN_MEMORY, "spool", |_| {
            format!(
                "spool: the state directory cannot be written ({error}); {} reports held in memory",
                status.spooled_reports
            )
        });
    }
    let dropped = [("spool", Some(status.dropped_total))];
    counter_events(&REPORTS_DROPPED, "reports dropped unsent", dropped, memory, findings);
    let quarantined = [("spool", Some(status.quarantined_total))];
    counter_events(&SPOOL_QUARANTINED, "records quarantined", quarantined, memory, findings);
}

/// `refused`: readings of the report the collector did not store for the series caps.
pub(super) fn series_capped(refused: u32, findings: &mut Findings) {
    if refused > 0 {
        findings.fire(&SERIES_CAPPED, "series", |_| {
            format!(
                "series: {refused} readings of this report were not stored; the host is at its \
                 roll-up series caps"
            )
        });
    }
}

#[cfg(test)]
mod tests {
    use vigil_proto::v1::Report;

    use super::super::{RuleSet, classify};
    use super::*;

    fn report(status: SpoolStatus) -> Report {
        Report { spool: Some(status), ..Report::default() }
    }

    #[test]
    fn in_memory_spool_is_a_state_finding_naming_the_error() {
        let rules = RuleSet::default();
        let mut memory = HostMemory::default();
        let status = SpoolStatus {
            in_memory: true,
            disk_error: "No space left on device (os error 28)".into(),
            spooled_reports: 4,
            ..Default::default()
        };
        let findings = classify(&report(status), &mut memory, &rules);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(
            (findings[0].rule.as_str(), findings[0].level),
            ("agent.spool_in_memory", FaultLevel::L2)
        );
        assert!(findings[0].summary.contains("No space left on device"), "{}", findings[0].summary);
        assert!(findings[0].summary.contains("4 reports held in memory"));
        let healthy = classify(&report(SpoolStatus::default()), &mut memory, &rules);
        assert!(healthy.is_empty(), "{healthy:?}");
    }

    #[test]
    fn readings_over_the_series_caps_are_a_state_finding() {
        let rules = RuleSet::default();
        let capped = super::super::series_capped(3, &rules);
        assert_eq!(capped.len(), 1, "{capped:?}");
        assert_eq!(
            (capped[0].rule.as_str(), capped[0].resource.as_str(), capped[0].level),
            ("agent.series_capped", "series", FaultLevel::L3)
        );
        assert!(capped[0].summary.contains("3 readings"), "{}", capped[0].summary);
        assert!(super::super::series_capped(0, &rules).is_empty());
    }

    #[test]
    fn drops_and_quarantines_rise_as_events() {
        let rules = RuleSet::default();
        let mut memory = HostMemory::default();
        let at = |dropped, quarantined| {
            report(SpoolStatus {
                dropped_total: dropped,
                quarantined_total: quarantined,
                ..Default::default()
            })
        };
        assert!(classify(&at(0, 0), &mut memory, &rules).is_empty());
        let rose = classify(&at(12, 0), &mut memory, &rules);
        assert_eq!(rose.len(), 1, "{rose:?}");
        assert_eq!(rose[0].rule, "agent.reports_dropped");
        assert!(rose[0].summary.contains("rose by 12 to 12"), "{}", rose[0].summary);
        assert!(classify(&at(12, 0), &mut memory, &rules).is_empty(), "no rise, no event");
        let q = classify(&at(12, 2), &mut memory, &rules);
        assert_eq!(
            q.iter().map(|f| f.rule.as_str()).collect::<Vec<_>>(),
            ["agent.spool_quarantined"]
        );
    }
}
