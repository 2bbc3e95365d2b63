//! The classifier against the agent's golden reports (`agent/tests/golden/<tree>.json`, what
//! the agent reports for each captured fixture tree): with an empty memory and the default
//! rules, the findings must be `collector/tests/golden/findings/<tree>.json`. To accept a
//! change, run with `VIGIL_UPDATE_GOLDEN=1` and review the diff of the golden file: it is the
//! readable statement of what each captured host is found to have.

use std::path::{Path, PathBuf};

use vigil_proto::v1::Report;

use super::{Finding, FindingKind, HostMemory, RuleSet, classify};

const TREES: &[&str] = &["linux-procfs", "node-exporter"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The agent's golden report of a fixture tree.
pub(super) fn agent_report(tree: &str) -> Report {
    let path = workspace().join("agent/tests/golden").join(format!("{tree}.json"));
    let json =
        std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    serde_json::from_str(&json).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

fn check_golden(tree: &str, findings: &[Finding]) {
    let json = serde_json::to_string_pretty(findings).expect("findings serialise") + "\n";
    let golden = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/findings")
        .join(format!("{tree}.json"));
    vigil_config::golden::assert_golden_file(&golden, &json);
}

#[test]
fn golden_findings_of_every_fixture_tree() {
    for tree in TREES {
        let findings =
            classify(&agent_report(tree), &mut HostMemory::default(), &RuleSet::default());
        check_golden(tree, &findings);
    }
}

/// The same report classified twice: events were reported the first time and are not again;
/// states hold.
#[test]
fn events_do_not_repeat() {
    for tree in TREES {
        let report = agent_report(tree);
        let mut memory = HostMemory::default();
        let rules = RuleSet::default();
        let first = classify(&report, &mut memory, &rules);
        let second = classify(&report, &mut memory, &rules);
        let states = |findings: &[Finding]| -> Vec<Finding> {
            findings.iter().filter(|f| f.kind == FindingKind::State).cloned().collect()
        };
        assert!(second.iter().all(|f| f.kind == FindingKind::State), "{tree}: {second:#?}");
        assert_eq!(states(&first), second, "{tree}");
    }
}

/// Memory survives its JSON form, and an older (smaller) stored memory still loads.
#[test]
fn memory_round_trips_through_json() {
    let mut memory = HostMemory::default();
    classify(&agent_report("node-exporter"), &mut memory, &RuleSet::default());
    assert_ne!(memory, HostMemory::default());
    let json = serde_json::to_string(&memory).unwrap();
    assert_eq!(serde_json::from_str::<HostMemory>(&json).unwrap(), memory);
    assert_eq!(serde_json::from_str::<HostMemory>("{}").unwrap(), HostMemory::default());
    let partial = r#"{"fans_turning": ["a/fan1"], "field_of_the_future": 1}"#;
    assert!(serde_json::from_str::<HostMemory>(partial).is_ok());
}

/// A report without probes finds nothing and forgets nothing.
#[test]
fn empty_report_keeps_memory() {
    let rules = RuleSet::default();
    let mut memory = HostMemory::default();
    classify(&agent_report("node-exporter"), &mut memory, &rules);
    let before = memory.clone();
    assert_eq!(classify(&Report::default(), &mut memory, &rules), []);
    assert_eq!(memory, before);
}
