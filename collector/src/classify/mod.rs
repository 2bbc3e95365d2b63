//! Classification: pure rules that turn one report (and what the classifier remembers about the
//! host from earlier reports) into findings — a rule id, a resource, a fault level and a one-line
//! summary with the evidence. No I/O, no clock, no store: the incident stage decides what a
//! finding opens, holds or resolves (hysteresis, flapping, maintenance, late data).
//!
//! How it is laid out:
//!
//! * The rules live by area: [`storage`] (filesystems, software RAID, SMART), [`hardware`]
//!   (sensors, IPMI, ECC memory), [`system`] (CPU, memory, clock, network) and [`services`]
//!   (systemd units, process, port and HTTP checks). Each area declares its rules as
//!   [`RuleDef`]s beside the code that evaluates them; [`RULES`] is all of them, in that order,
//!   and `docs/rules.md` is generated from it ([`catalogue_markdown`]).
//! * [`RuleSet`] is the rules as one customer has them: the defaults of [`RULES`], then the
//!   global `[rules."<id>"]` overrides, then the customer's. A disabled rule never fires.
//! * [`classify`] hands each probe result whose status is OK to its area; a probe that is
//!   unavailable or failed contributes nothing (its data may be partial), and the memory of
//!   its area is left as it was.
//! * [`HostMemory`] is what a rule needs from earlier reports: counter baselines (so an event
//!   fires when a counter rises, once), NICs seen with carrier and fans seen turning (so only
//!   a link or fan that used to work can be "down"), latched intrusion alarms and the last SEL
//!   entries reported. It holds only resources present in the last report of their probe, so
//!   it stays as small as the host.
//!
//! Everything that came from the agent is data: resources and the agent's strings in summaries
//! are cut to 200 characters and stripped of control characters ([`text`]).

mod agent;
mod catalogue;
mod hardware;
mod memory;
mod services;
mod storage;
mod system;
mod text;

#[cfg(test)]
mod golden_tests;
#[cfg(test)]
mod testing;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use vigil_config::FieldError;
use vigil_proto::v1::Report;
use vigil_proto::v1::probe_result::{Data, Status};

pub use catalogue::{RULES, RuleDef, Threshold, ThresholdUnit, catalogue_markdown};

/// Fault levels of the service contracts: L1 is the most severe. Ordered so that
/// `L1 < L2 < L3 < L4`, i.e. `min()` is the worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
pub enum FaultLevel {
    L1 = 1,
    L2 = 2,
    L3 = 3,
    L4 = 4,
}

impl FaultLevel {
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    pub fn from_u8(n: u8) -> Option<Self> {
        match n {
            1 => Some(Self::L1),
            2 => Some(Self::L2),
            3 => Some(Self::L3),
            4 => Some(Self::L4),
            _ => None,
        }
    }
}

impl From<FaultLevel> for u8 {
    fn from(level: FaultLevel) -> u8 {
        level.as_u8()
    }
}

impl TryFrom<u8> for FaultLevel {
    type Error = String;
    fn try_from(n: u8) -> Result<Self, String> {
        Self::from_u8(n).ok_or_else(|| format!("fault level must be 1, 2, 3 or 4, not {n}"))
    }
}

impl std::fmt::Display for FaultLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "L{}", self.as_u8())
    }
}

/// Whether a finding describes a condition that holds while it is true (a temperature, a
/// usage, a degraded array) or something that happened (a counter that rose: ECC errors, OOM
/// kills, new IPMI SEL entries, an intrusion alarm that latched).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    State,
    Event,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Rule id from the catalogue, e.g. `raid.degraded`.
    pub rule: String,
    /// What it is about: `/dev/sda`, `md0`, `coretemp-isa-0000/Package id 0`, `nginx.service`.
    pub resource: String,
    pub level: FaultLevel,
    /// One line with the evidence values.
    pub summary: String,
    pub kind: FindingKind,
    /// Resources whose findings this one groups (a degraded array's member disks, as
    /// `/dev/sdX`), so their incidents are filed under this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// What the classifier remembers about one host between reports (counter baselines, NICs seen
/// with carrier, fans seen turning, latched alarms already reported). Stored by the incident
/// stage as JSON beside the host; an empty memory means "first report".
///
/// Every field defaults, so memory stored by an older collector still loads (what it lacks
/// starts empty). An area's fields are rebuilt from each report in which its probe is OK, so
/// resources that disappeared are forgotten; a report without that probe leaves them alone.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostMemory {
    /// Last value of each counter that only grows, by family (the rule id, e.g.
    /// `ecc.uncorrected`) and resource (`mc0`).
    counters: BTreeMap<String, BTreeMap<String, u64>>,
    /// NICs that had carrier in some report (and have been in every report since).
    nics_with_carrier: BTreeSet<String>,
    /// Fans that turned in some report (and have been in every report since).
    fans_turning: BTreeSet<String>,
    /// Intrusion alarms that are set and already reported.
    intrusions_latched: BTreeSet<String>,
    /// The SEL entries (`<record id>@<timestamp>`) of the last report that had any, so a
    /// report seen twice does not report them twice.
    sel_last_entries: BTreeSet<String>,
    /// Restarts of each unit within the current window (see `services`).
    unit_restarts: BTreeMap<String, services::RestartWindow>,
}

/// Per-rule settings from the config (`[rules."<id>"]`, `[customers.<name>.rules."<id>"]`).
/// Unset fields keep the rule's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleOverride {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<FaultLevel>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_after: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clear_after: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_free_bytes: Option<u64>,
    /// Names (NICs, units) the rule always watches, e.g. NICs that must have a link.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub names: Option<Vec<String>>,
}

/// Hysteresis of one rule: open after `open_after` consecutive reports with the finding, clear
/// after `clear_after` consecutive reports without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hysteresis {
    pub open_after: u32,
    pub clear_after: u32,
}

/// Allowed range of `open_after` and `clear_after`, in reports.
const HYSTERESIS_RANGE: std::ops::RangeInclusive<u32> = 1..=100;

/// The effective rules for one customer: defaults, then global overrides, then the customer's.
/// [`Default`] is the built-in defaults of [`RULES`].
#[derive(Debug, Clone)]
pub struct RuleSet {
    rules: BTreeMap<&'static str, Rule>,
}

impl Default for RuleSet {
    fn default() -> Self {
        Self { rules: RULES.iter().map(|def| (def.id, Rule::new(def))).collect() }
    }
}

impl RuleSet {
    /// The defaults with `global` applied (errors keyed `rules.<id>...`), then the customer's
    /// overrides (errors keyed `customers.<name>.rules.<id>...`). Field by field, the
    /// customer's value wins; `names` replaces, it does not add.
    pub fn new(
        global: &BTreeMap<String, RuleOverride>,
        customer: Option<(&str, &BTreeMap<String, RuleOverride>)>,
    ) -> Result<Self, FieldError> {
        let mut set = Self::default();
        set.apply("rules", global)?;
        if let Some((name, overrides)) = customer {
            set.apply(&format!("customers.{name}.rules"), overrides)?;
        }
        Ok(set)
    }

    /// The rule's hysteresis; for an id that is not in the catalogue, open after 1 and clear
    /// after 3 reports.
    pub fn hysteresis(&self, rule: &str) -> Hysteresis {
        self.rules
            .get(rule)
            .map_or(Hysteresis { open_after: 1, clear_after: 3 }, |rule| rule.hysteresis)
    }

    fn apply(
        &mut self,
        key_prefix: &str,
        overrides: &BTreeMap<String, RuleOverride>,
    ) -> Result<(), FieldError> {
        for (id, change) in overrides {
            let key = format!("{key_prefix}.{id}");
            let rule = self
                .rules
                .get_mut(id.as_str())
                .ok_or_else(|| FieldError::new(&key, catalogue::unknown_rule_message(id)))?;
            rule.apply(change, &key)?;
        }
        Ok(())
    }

    /// The rule as configured, `None` when it is disabled.
    fn enabled(&self, def: &RuleDef) -> Option<&Rule> {
        self.rules.get(def.id).filter(|rule| rule.enabled)
    }
}

/// One rule as a customer has it: its definition with the overrides applied.
#[derive(Debug, Clone, PartialEq)]
struct Rule {
    def: &'static RuleDef,
    enabled: bool,
    level: FaultLevel,
    hysteresis: Hysteresis,
    /// The rule's threshold (see [`RuleDef::threshold`]); 0 for a rule without one.
    threshold: f64,
    /// The free-bytes bound of a filesystem space rule; 0 for other rules.
    min_free_bytes: u64,
    /// Names the rule always watches (`names`).
    names: Vec<String>,
}

impl Rule {
    fn new(def: &'static RuleDef) -> Self {
        Self {
            def,
            enabled: true,
            level: def.level,
            hysteresis: Hysteresis { open_after: def.open_after, clear_after: def.clear_after },
            threshold: def.threshold.map_or(0.0, |threshold| threshold.value),
            min_free_bytes: def.min_free_bytes.unwrap_or(0),
            names: Vec::new(),
        }
    }

    /// Applies the set fields of `change`; `key` (`rules.<id>`) names it in errors.
    fn apply(&mut self, change: &RuleOverride, key: &str) -> Result<(), FieldError> {
        let id = self.def.id;
        if let Some(enabled) = change.enabled {
            self.enabled = enabled;
        }
        if let Some(level) = change.level {
            self.level = level;
        }
        if let Some(reports) = change.open_after {
            self.hysteresis.open_after = hysteresis_reports(reports, key, "open_after")?;
        }
        if let Some(reports) = change.clear_after {
            self.hysteresis.clear_after = hysteresis_reports(reports, key, "clear_after")?;
        }
        if let Some(value) = change.threshold {
            let Some(threshold) = self.def.threshold else {
                return Err(FieldError::new(
                    format!("{key}.threshold"),
                    format!("rule `{id}` takes no threshold"),
                ));
            };
            threshold
                .unit
                .check(value)
                .map_err(|m| FieldError::new(format!("{key}.threshold"), m))?;
            self.threshold = value;
        }
        if let Some(bytes) = change.min_free_bytes {
            if self.def.min_free_bytes.is_none() {
                return Err(FieldError::new(
                    format!("{key}.min_free_bytes"),
                    format!(
                        "rule `{id}` takes no min_free_bytes (only the filesystem space rules)"
                    ),
                ));
            }
            self.min_free_bytes = bytes;
        }
        if let Some(names) = &change.names {
            if !self.def.takes_names {
                return Err(FieldError::new(
                    format!("{key}.names"),
                    format!("rule `{id}` takes no names"),
                ));
            }
            self.names = names.clone();
        }
        Ok(())
    }

    /// Whether `name` is one of the names the rule always watches.
    fn watches(&self, name: &str) -> bool {
        self.names.iter().any(|watched| watched == name)
    }
}

fn hysteresis_reports(reports: u32, key: &str, field: &str) -> Result<u32, FieldError> {
    if HYSTERESIS_RANGE.contains(&reports) {
        Ok(reports)
    } else {
        Err(FieldError::new(
            format!("{key}.{field}"),
            format!(
                "must be {} to {} reports, not {reports}",
                HYSTERESIS_RANGE.start(),
                HYSTERESIS_RANGE.end()
            ),
        ))
    }
}

/// Classifies one report. `memory` is read and updated (the caller persists it).
///
/// Findings come in the report's probe order, each area's in the order of its data; a
/// (rule, resource) pair appears at most once.
pub fn classify(report: &Report, memory: &mut HostMemory, rules: &RuleSet) -> Vec<Finding> {
    let mut findings = Findings::new(rules);
    for probe in &report.probes {
        if probe.status() != Status::Ok {
            continue;
        }
        let Some(data) = &probe.data else { continue };
        match data {
            Data::Filesystem(data) => storage::filesystems(data, &mut findings),
            Data::Raid(data) => storage::raid(data, &mut findings),
            Data::Smart(data) => storage::smart(data, memory, &mut findings),
            Data::Sensors(data) => hardware::sensors(data, memory, &mut findings),
            Data::Ipmi(data) => hardware::ipmi(data, memory, &mut findings),
            Data::Ecc(data) => hardware::ecc(data, memory, &mut findings),
            Data::Cpu(data) => system::cpu(data, &mut findings),
            Data::Memory(data) => system::memory(data, memory, &mut findings),
            Data::Clock(data) => system::clock(data, &mut findings),
            Data::Network(data) => system::network(data, memory, &mut findings),
            Data::Services(data) => services::services(data, memory, &mut findings),
            Data::Uptime(_) | Data::DiskIo(_) => {}
        }
    }
    if let Some(status) = &report.spool {
        agent::spool(status, memory, &mut findings);
    }
    findings.list
}

/// Findings about what the collector did with a stored report rather than what the report
/// says: `refused` readings not stored for the host's series caps (`agent.series_capped`).
pub fn series_capped(refused: u32, rules: &RuleSet) -> Vec<Finding> {
    let mut findings = Findings::new(rules);
    agent::series_capped(refused, &mut findings);
    findings.list
}

/// The findings of one report as the rules produce them, with the rule set they are judged by.
struct Findings<'r> {
    rules: &'r RuleSet,
    list: Vec<Finding>,
}

impl<'r> Findings<'r> {
    fn new(rules: &'r RuleSet) -> Self {
        Self { rules, list: Vec::new() }
    }

    /// The rule as configured, `None` when it is disabled.
    fn rule(&self, def: &RuleDef) -> Option<&'r Rule> {
        self.rules.enabled(def)
    }

    /// Adds a finding of `rule` about `resource` and returns it (to add `groups`). The
    /// resource is bounded like any agent text, and control characters are dropped from the
    /// summary. A second finding of the same rule about the same resource is not added; the
    /// first is returned.
    fn push(&mut self, rule: &Rule, resource: &str, mut summary: String) -> &mut Finding {
        let resource = text::text(resource);
        let existing =
            self.list.iter().position(|f| f.rule == rule.def.id && f.resource == *resource);
        let index = existing.unwrap_or_else(|| {
            summary.retain(|c| !c.is_control());
            self.list.push(Finding {
                rule: rule.def.id.to_owned(),
                resource: resource.into_owned(),
                level: rule.level,
                summary,
                kind: rule.def.kind,
                groups: Vec::new(),
            });
            self.list.len() - 1
        });
        &mut self.list[index]
    }

    /// For rules that grade one measure (full before nearly full, by threshold): the
    /// first enabled rule of `defs` (most severe first) for which `fires` gives a summary is
    /// added; the others are not, so a resource gets one finding per measure.
    fn first_of(
        &mut self,
        defs: &[&RuleDef],
        resource: &str,
        fires: impl Fn(&Rule) -> Option<String>,
    ) -> Option<&mut Finding> {
        let (rule, summary) = defs
            .iter()
            .filter_map(|def| self.rule(def))
            .find_map(|rule| Some((rule, fires(rule)?)))?;
        Some(self.push(rule, resource, summary))
    }

    /// Adds a finding of `def` about `resource` if the rule is enabled, and returns it; the
    /// summary is only made then.
    fn fire(
        &mut self,
        def: &RuleDef,
        resource: &str,
        summary: impl FnOnce(&Rule) -> String,
    ) -> Option<&mut Finding> {
        let rule = self.rule(def)?;
        Some(self.push(rule, resource, summary(rule)))
    }

    /// Adds a finding of `def` about `resource` if the rule is enabled and `fires` (which
    /// reads the rule's settings) gives a summary.
    fn fire_when(
        &mut self,
        def: &RuleDef,
        resource: &str,
        fires: impl Fn(&Rule) -> Option<String>,
    ) -> Option<&mut Finding> {
        self.first_of(&[def], resource, fires)
    }
}

#[cfg(test)]
mod tests {
    use vigil_proto::v1::{CpuData, ProbeResult};

    use super::testing::{fired, report, rules_with, run_once};
    use super::*;

    fn busy_cpu() -> Data {
        Data::Cpu(CpuData { usage_ratio: 1.0, ..CpuData::default() })
    }

    #[test]
    fn probes_not_ok_contribute_nothing() {
        for status in [Status::Error, Status::Unavailable, Status::Unspecified] {
            let probe = ProbeResult {
                probe: "cpu".into(),
                status: status.into(),
                data: Some(busy_cpu()),
                ..ProbeResult::default()
            };
            let report = Report { probes: vec![probe], ..Report::default() };
            assert_eq!(classify(&report, &mut HostMemory::default(), &RuleSet::default()), []);
        }
        assert_eq!(fired(&run_once([busy_cpu()])), [("cpu.usage", "cpu", FaultLevel::L3)]);
    }

    #[test]
    fn disabled_rule_never_fires() {
        let rules =
            rules_with("cpu.usage", RuleOverride { enabled: Some(false), ..Default::default() });
        assert_eq!(classify(&report([busy_cpu()]), &mut HostMemory::default(), &rules), []);
        // Enabled again by the customer.
        let global = BTreeMap::from([(
            "cpu.usage".to_owned(),
            RuleOverride { enabled: Some(false), ..Default::default() },
        )]);
        let customer = BTreeMap::from([(
            "cpu.usage".to_owned(),
            RuleOverride { enabled: Some(true), level: Some(FaultLevel::L2), ..Default::default() },
        )]);
        let rules = RuleSet::new(&global, Some(("acme", &customer))).unwrap();
        let findings = classify(&report([busy_cpu()]), &mut HostMemory::default(), &rules);
        assert_eq!(fired(&findings), [("cpu.usage", "cpu", FaultLevel::L2)]);
    }

    #[test]
    fn agent_text_is_bounded_and_clean() {
        use vigil_proto::v1::{Filesystem, FilesystemData};
        let mount = format!("/mnt/\u{1b}[2J{}", "x".repeat(400));
        let fs = Filesystem {
            mount_point: mount,
            device: "/dev/evil\r\nFAKE LINE".into(),
            unexpected_read_only: true,
            ..Filesystem::default()
        };
        let findings = run_once([Data::Filesystem(FilesystemData { filesystems: vec![fs] })]);
        let finding = &findings[0];
        assert_eq!(finding.resource.chars().count(), text::MAX_TEXT_CHARS);
        assert!(finding.resource.starts_with("/mnt/[2Jxxx"));
        assert!(!finding.summary.contains(|c: char| c.is_control()));
        assert!(finding.summary.contains("(/dev/evilFAKE LINE)"));
        assert!(finding.summary.chars().count() < 3 * text::MAX_TEXT_CHARS);
    }

    #[test]
    fn one_finding_per_rule_and_resource() {
        use vigil_proto::v1::{Filesystem, FilesystemData};
        let fs = Filesystem {
            mount_point: "/data".into(),
            unexpected_read_only: true,
            ..Filesystem::default()
        };
        let data = Data::Filesystem(FilesystemData { filesystems: vec![fs.clone(), fs] });
        assert_eq!(run_once([data]).len(), 1);
    }

    #[test]
    fn level_serialises_as_a_number() {
        let finding = Finding {
            rule: "raid.degraded".into(),
            resource: "md0".into(),
            level: FaultLevel::L2,
            summary: "s".into(),
            kind: FindingKind::State,
            groups: vec![],
        };
        let json = serde_json::to_string(&finding).unwrap();
        assert_eq!(
            json,
            r#"{"rule":"raid.degraded","resource":"md0","level":2,"summary":"s","kind":"state"}"#
        );
        assert_eq!(serde_json::from_str::<Finding>(&json).unwrap(), finding);
        assert!(serde_json::from_str::<FaultLevel>("5").is_err());
    }
}
