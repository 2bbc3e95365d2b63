//! Builders for the rules' tests: reports made of OK probes, rule sets with one override, and
//! findings cut down to what most tests compare.

use std::collections::BTreeMap;

use vigil_proto::v1::probe_result::{Data, Status};
use vigil_proto::v1::{ProbeResult, Report};

use super::{FaultLevel, Finding, HostMemory, RuleOverride, RuleSet, classify};

/// A report with one OK probe per `data`.
pub(super) fn report(data: impl IntoIterator<Item = Data>) -> Report {
    let probes = data
        .into_iter()
        .map(|data| ProbeResult {
            status: Status::Ok.into(),
            data: Some(data),
            ..ProbeResult::default()
        })
        .collect();
    Report { probes, ..Report::default() }
}

/// Classifies `data` as one report with the default rules.
pub(super) fn run(memory: &mut HostMemory, data: impl IntoIterator<Item = Data>) -> Vec<Finding> {
    classify(&report(data), memory, &RuleSet::default())
}

/// Classifies `data` as one report with the default rules and a fresh memory.
pub(super) fn run_once(data: impl IntoIterator<Item = Data>) -> Vec<Finding> {
    run(&mut HostMemory::default(), data)
}

/// The default rules with `change` applied to rule `id` (globally).
pub(super) fn rules_with(id: &str, change: RuleOverride) -> RuleSet {
    RuleSet::new(&BTreeMap::from([(id.to_owned(), change)]), None).unwrap()
}

/// (rule, resource, level) of each finding.
pub(super) fn fired(findings: &[Finding]) -> Vec<(&str, &str, FaultLevel)> {
    findings.iter().map(|f| (f.rule.as_str(), f.resource.as_str(), f.level)).collect()
}
