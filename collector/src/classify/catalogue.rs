//! The rule catalogue: what each rule is (id, default level, kind, hysteresis, settings and
//! what it fires on), as data. Each area declares its own rules; [`RULES`] joins them, and
//! [`catalogue_markdown`] renders them as the table of `docs/rules.md`, which a test keeps in
//! step with the code.

use super::{FaultLevel, FindingKind, agent, hardware, services, storage, system};

/// One GiB, in bytes.
pub(super) const GIB: u64 = 1 << 30;

/// One rule of the catalogue, with its defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RuleDef {
    /// `area.what`, e.g. `filesystem.full`: the key of `[rules."<id>"]` and `Finding::rule`.
    pub id: &'static str,
    pub level: FaultLevel,
    pub kind: FindingKind,
    /// Default hysteresis, in reports.
    pub open_after: u32,
    pub clear_after: u32,
    /// The primary value the rule compares against, which `threshold` overrides; `None` when
    /// the rule takes no threshold (it judges by the hardware's own limits or a state).
    pub threshold: Option<Threshold>,
    /// The free-bytes bound of a filesystem space rule, which `min_free_bytes` overrides.
    pub min_free_bytes: Option<u64>,
    /// Whether the rule takes `names` (resources it always watches).
    pub takes_names: bool,
    /// One line: what makes it fire.
    pub fires_on: &'static str,
}

/// Default hysteresis: hardware and state rules open at once, utilisation rules after 3
/// reports (a busy minute is not a fault); all clear after 3 reports without the finding.
const OPEN_AFTER: u32 = 1;
const UTILISATION_OPEN_AFTER: u32 = 3;
const CLEAR_AFTER: u32 = 3;

impl RuleDef {
    /// A state rule with the default hysteresis.
    pub(super) const fn state(id: &'static str, level: FaultLevel, fires_on: &'static str) -> Self {
        Self {
            id,
            level,
            kind: FindingKind::State,
            open_after: OPEN_AFTER,
            clear_after: CLEAR_AFTER,
            threshold: None,
            min_free_bytes: None,
            takes_names: false,
            fires_on,
        }
    }

    /// An event rule (something happened: a counter rose, an alarm latched).
    pub(super) const fn event(id: &'static str, level: FaultLevel, fires_on: &'static str) -> Self {
        Self { kind: FindingKind::Event, ..Self::state(id, level, fires_on) }
    }

    /// Opens after 3 reports, like every utilisation rule.
    pub(super) const fn utilisation(self) -> Self {
        self.open_after(UTILISATION_OPEN_AFTER)
    }

    pub(super) const fn open_after(self, reports: u32) -> Self {
        Self { open_after: reports, ..self }
    }

    pub(super) const fn threshold(self, value: f64, unit: ThresholdUnit) -> Self {
        Self { threshold: Some(Threshold { value, unit }), ..self }
    }

    pub(super) const fn min_free_bytes(self, bytes: u64) -> Self {
        Self { min_free_bytes: Some(bytes), ..self }
    }

    pub(super) const fn takes_names(self) -> Self {
        Self { takes_names: true, ..self }
    }
}

/// A rule's threshold and what kind of number it is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    pub value: f64,
    pub unit: ThresholdUnit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThresholdUnit {
    /// A share, 0 to 1 (0.95 is 95 %).
    Ratio,
    /// A count of things (sectors, restarts), 1 or more.
    Count,
    /// A percentage as the hardware states it (NVMe wear can pass 100), 0 or more.
    Percent,
}

impl ThresholdUnit {
    /// Whether `value` is a valid threshold of this unit; the error says why not.
    pub(super) fn check(self, value: f64) -> Result<(), String> {
        let valid = match self {
            Self::Ratio => (0.0..=1.0).contains(&value),
            Self::Count => value.is_finite() && value >= 1.0,
            Self::Percent => value.is_finite() && value >= 0.0,
        };
        if valid { Ok(()) } else { Err(format!("must be {}, not {value}", self.range())) }
    }

    fn range(self) -> &'static str {
        match self {
            Self::Ratio => "a ratio from 0 to 1",
            Self::Count => "a count of 1 or more",
            Self::Percent => "a percentage of 0 or more",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Ratio => "ratio",
            Self::Count => "count",
            Self::Percent => "percent",
        }
    }
}

/// Every rule, by area: storage, hardware, system, services, the agent itself.
pub const RULES: &[RuleDef] = &concat::<RULE_COUNT>([
    storage::RULES,
    hardware::RULES,
    system::RULES,
    services::RULES,
    agent::RULES,
]);

const RULE_COUNT: usize = storage::RULES.len()
    + hardware::RULES.len()
    + system::RULES.len()
    + services::RULES.len()
    + agent::RULES.len();

/// The areas' rule lists as one array (`N` must be their total length).
const fn concat<const N: usize>(areas: [&[RuleDef]; 5]) -> [RuleDef; N] {
    let mut all = [storage::RULES[0]; N];
    let mut next = 0;
    let mut area = 0;
    while area < areas.len() {
        let mut i = 0;
        while i < areas[area].len() {
            all[next] = areas[area][i];
            next += 1;
            i += 1;
        }
        area += 1;
    }
    assert!(next == N, "RULE_COUNT is not the number of rules");
    all
}

/// The rule catalogue as a markdown table, one row per rule in [`RULES`] order.
pub fn catalogue_markdown() -> String {
    let mut table = String::from(
        "| Rule | Level | Kind | Open after | Clear after | Settings | Fires on |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for def in RULES {
        let kind = match def.kind {
            FindingKind::State => "state",
            FindingKind::Event => "event",
        };
        table.push_str(&format!(
            "| `{}` | {} | {kind} | {} | {} | {} | {} |\n",
            def.id,
            def.level,
            def.open_after,
            def.clear_after,
            settings(def),
            def.fires_on.replace('|', "\\|"),
        ));
    }
    table
}

/// The settings a rule takes beside `enabled`, `level`, `open_after` and `clear_after`, with
/// their defaults.
fn settings(def: &RuleDef) -> String {
    let mut settings = Vec::new();
    if let Some(threshold) = def.threshold {
        settings.push(format!("`threshold` = {} ({})", threshold.value, threshold.unit.name()));
    }
    if let Some(bytes) = def.min_free_bytes {
        settings.push(format!("`min_free_bytes` = {bytes} ({})", super::text::bytes(bytes)));
    }
    if def.takes_names {
        settings.push("`names`".to_owned());
    }
    if settings.is_empty() { "—".to_owned() } else { settings.join("; ") }
}

/// The error for a rule id that is not in the catalogue: the id, and the closest one when it
/// looks like a typo.
pub(super) fn unknown_rule_message(id: &str) -> String {
    let shown = super::text::text(id);
    let closest = RULES
        .iter()
        .map(|def| (edit_distance(id, def.id), def.id))
        .min()
        .filter(|(distance, _)| *distance <= 3);
    match closest {
        Some((_, near)) => format!(
            "unknown rule `{shown}` (did you mean `{near}`?); docs/rules.md lists the rules"
        ),
        None => format!("unknown rule `{shown}`; docs/rules.md lists the rules"),
    }
}

/// Levenshtein distance in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::PathBuf;

    use super::*;
    use crate::classify::{HYSTERESIS_RANGE, Hysteresis, RuleOverride, RuleSet};

    const BEGIN: &str = "<!-- rules:begin -->\n";
    const END: &str = "<!-- rules:end -->";

    fn rules_doc() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/rules.md")
    }

    /// `docs/rules.md` holds exactly the generated table between its markers;
    /// `VIGIL_UPDATE_GOLDEN=1` rewrites that part.
    #[test]
    fn docs_rules_md_is_generated_table() {
        let path = rules_doc();
        let doc = std::fs::read_to_string(&path).expect("docs/rules.md exists");
        let start = doc.find(BEGIN).expect("docs/rules.md has <!-- rules:begin -->") + BEGIN.len();
        let end = start + doc[start..].find(END).expect("docs/rules.md has <!-- rules:end -->");
        let table = catalogue_markdown();
        if std::env::var_os("VIGIL_UPDATE_GOLDEN").is_some_and(|v| v == "1") {
            let updated = format!("{}{table}{}", &doc[..start], &doc[end..]);
            std::fs::write(&path, updated).unwrap();
            return;
        }
        assert!(
            doc[start..end] == table,
            "docs/rules.md is not the generated rule table; regenerate it with \
             `VIGIL_UPDATE_GOLDEN=1 cargo test -p vigil-collector classify` and review the diff"
        );
    }

    #[test]
    fn ids_are_unique_and_well_formed() {
        let mut seen = BTreeSet::new();
        for def in RULES {
            assert!(seen.insert(def.id), "{} twice", def.id);
            let (area, what) = def.id.split_once('.').expect("area.what");
            assert!(!area.is_empty() && !what.is_empty() && !what.contains('.'), "{}", def.id);
            assert!(def.id.bytes().all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_'));
            assert!(HYSTERESIS_RANGE.contains(&def.open_after), "{}", def.id);
            assert!(HYSTERESIS_RANGE.contains(&def.clear_after), "{}", def.id);
            assert!(!def.fires_on.is_empty() && !def.fires_on.contains('\n'), "{}", def.id);
            if let Some(threshold) = def.threshold {
                threshold.unit.check(threshold.value).unwrap();
            }
        }
    }

    fn overrides(id: &str, change: RuleOverride) -> BTreeMap<String, RuleOverride> {
        BTreeMap::from([(id.to_owned(), change)])
    }

    #[test]
    fn unknown_rule_is_a_field_error_with_a_suggestion() {
        let global = overrides("filesystem.ful", RuleOverride::default());
        let err = RuleSet::new(&global, None).unwrap_err();
        assert_eq!(err.key, "rules.filesystem.ful");
        assert_eq!(
            err.message,
            "unknown rule `filesystem.ful` (did you mean `filesystem.full`?); \
             docs/rules.md lists the rules"
        );

        let customer = overrides("no.such_thing", RuleOverride::default());
        let err = RuleSet::new(&BTreeMap::new(), Some(("acme", &customer))).unwrap_err();
        assert_eq!(err.key, "customers.acme.rules.no.such_thing");
        assert_eq!(err.message, "unknown rule `no.such_thing`; docs/rules.md lists the rules");
    }

    #[test]
    fn invalid_settings_are_field_errors() {
        let cases = [
            ("cpu.usage", RuleOverride { open_after: Some(0), ..Default::default() }, "open_after"),
            (
                "cpu.usage",
                RuleOverride { clear_after: Some(101), ..Default::default() },
                "clear_after",
            ),
            ("cpu.usage", RuleOverride { threshold: Some(1.5), ..Default::default() }, "threshold"),
            (
                "cpu.usage",
                RuleOverride { threshold: Some(f64::NAN), ..Default::default() },
                "threshold",
            ),
            (
                "raid.degraded",
                RuleOverride { threshold: Some(0.5), ..Default::default() },
                "threshold",
            ),
            (
                "cpu.usage",
                RuleOverride { min_free_bytes: Some(1), ..Default::default() },
                "min_free_bytes",
            ),
            ("cpu.usage", RuleOverride { names: Some(vec![]), ..Default::default() }, "names"),
            (
                "service.restart_loop",
                RuleOverride { threshold: Some(0.0), ..Default::default() },
                "threshold",
            ),
        ];
        for (id, change, field) in cases {
            let err = RuleSet::new(&overrides(id, change.clone()), None).unwrap_err();
            assert_eq!(err.key, format!("rules.{id}.{field}"), "{change:?}");
        }
        let err = RuleSet::new(
            &overrides("cpu.usage", RuleOverride { open_after: Some(0), ..Default::default() }),
            None,
        )
        .unwrap_err();
        assert_eq!(err.message, "must be 1 to 100 reports, not 0");
        let err = RuleSet::new(
            &overrides("cpu.usage", RuleOverride { threshold: Some(1.5), ..Default::default() }),
            None,
        )
        .unwrap_err();
        assert_eq!(err.message, "must be a ratio from 0 to 1, not 1.5");
    }

    #[test]
    fn hysteresis_defaults_and_overrides() {
        let rules = RuleSet::default();
        assert_eq!(rules.hysteresis("cpu.usage"), Hysteresis { open_after: 3, clear_after: 3 });
        assert_eq!(rules.hysteresis("raid.failed"), Hysteresis { open_after: 1, clear_after: 3 });
        assert_eq!(rules.hysteresis("no.such"), Hysteresis { open_after: 1, clear_after: 3 });

        let global = overrides(
            "raid.failed",
            RuleOverride { open_after: Some(2), clear_after: Some(5), ..Default::default() },
        );
        let customer =
            overrides("raid.failed", RuleOverride { open_after: Some(4), ..Default::default() });
        let rules = RuleSet::new(&global, Some(("acme", &customer))).unwrap();
        assert_eq!(rules.hysteresis("raid.failed"), Hysteresis { open_after: 4, clear_after: 5 });
    }

    #[test]
    fn markdown_has_a_row_per_rule() {
        let table = catalogue_markdown();
        assert_eq!(table.lines().count(), RULES.len() + 2);
        assert!(table.contains(
            "| `filesystem.full` | L2 | state | 3 | 3 | `threshold` = 0.95 (ratio); \
             `min_free_bytes` = 10737418240 (10 GiB) |"
        ));
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("raid.degraded", "raid.degraded"), 0);
    }
}
