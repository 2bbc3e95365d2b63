//! A customer's service contract as Vigil keeps it: the customer's time zone and holidays, the
//! response and resolution targets and support hours per fault level, the share of a deadline
//! at which a warning goes out, and who is notified at each support tier. Stored as JSON in
//! the store (one row per customer, changed through the API without a restart); a customer
//! without one has [`Contract::default`], the design's table around the clock.
//!
//! Receivers are referred to by name: the receivers themselves (Alertmanager URLs, webhook
//! URLs and their signing secrets) live in the collector's config, so an API token can route
//! an incident to a configured receiver but never make the collector post to an arbitrary URL
//! or read a secret back.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::calendar::{Calendar, SupportHours};
use crate::classify::FaultLevel;

/// Default warning point: 80 % of the way to a deadline.
pub const DEFAULT_WARN_AT: f64 = 0.8;

/// Targets of one fault level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelTerms {
    /// Time to acknowledgement by a person, in support time.
    #[serde(with = "vigil_config::duration")]
    pub response: Duration,
    /// Time to resolution (condition cleared, or resolved with a note), in support time.
    #[serde(with = "vigil_config::duration")]
    pub resolution: Duration,
    /// When the clocks of this level run.
    pub hours: SupportHours,
}

/// A receiver of the collector's config (`[notify.receivers.<name>]`) and extra labels for
/// Alertmanager (routing by team, say).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverRef {
    pub receiver: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// The contract of one customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contract {
    /// IANA time zone of the customer: support hours and holidays are local to it.
    pub time_zone: String,
    /// Local dates (YYYY-MM-DD) without business-hours support.
    #[serde(default)]
    pub holidays: Vec<String>,
    /// Share of a deadline (0 < warn_at < 1) at which a warning goes out.
    #[serde(default = "default_warn_at")]
    pub warn_at: f64,
    /// Targets by level: keys `L1` … `L4`; a missing level keeps the default.
    #[serde(default)]
    pub levels: BTreeMap<String, LevelTerms>,
    /// Receivers by tier: keys `1`, `2`, `3`. A tier without receivers uses the collector's
    /// `notify.default_receivers`.
    #[serde(default)]
    pub tiers: BTreeMap<String, Vec<ReceiverRef>>,
}

fn default_warn_at() -> f64 {
    DEFAULT_WARN_AT
}

/// The design's default SLA: L1 5 min / 4 h, L2 15 min / 8 h, L3 1 h / 24 h, L4 4 h / 72 h.
pub fn default_terms(level: FaultLevel) -> LevelTerms {
    let (response, resolution) = match level {
        FaultLevel::L1 => (5 * 60, 4 * 3600),
        FaultLevel::L2 => (15 * 60, 8 * 3600),
        FaultLevel::L3 => (3600, 24 * 3600),
        FaultLevel::L4 => (4 * 3600, 72 * 3600),
    };
    LevelTerms {
        response: Duration::from_secs(response),
        resolution: Duration::from_secs(resolution),
        hours: SupportHours::Always,
    }
}

const LEVELS: [FaultLevel; 4] = [FaultLevel::L1, FaultLevel::L2, FaultLevel::L3, FaultLevel::L4];

impl Default for Contract {
    fn default() -> Self {
        Self {
            time_zone: "UTC".into(),
            holidays: Vec::new(),
            warn_at: DEFAULT_WARN_AT,
            levels: LEVELS.iter().map(|l| (l.to_string(), default_terms(*l))).collect(),
            tiers: BTreeMap::new(),
        }
    }
}

/// Why a contract was refused; the message names the field and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ContractError(pub String);

/// A validated contract, ready for the SLA sweep: one calendar per level.
#[derive(Debug, Clone)]
pub struct Terms {
    pub contract: Contract,
    calendars: [Calendar; 4],
    terms: [LevelTerms; 4],
}

impl Terms {
    /// Validates `contract` against the receivers the collector knows.
    pub fn new(mut contract: Contract, known_receivers: &[&str]) -> Result<Self, ContractError> {
        for key in contract.levels.keys() {
            if !LEVELS.iter().any(|l| l.to_string() == *key) {
                return Err(ContractError(format!(
                    "levels: unknown level {key:?} (expected L1, L2, L3 or L4)"
                )));
            }
        }
        for level in LEVELS {
            contract.levels.entry(level.to_string()).or_insert_with(|| default_terms(level));
        }
        if !(contract.warn_at > 0.0 && contract.warn_at < 1.0) {
            return Err(ContractError(format!(
                "warn_at: {} must be more than 0 and less than 1",
                contract.warn_at
            )));
        }
        for (tier, receivers) in &contract.tiers {
            if !matches!(tier.as_str(), "1" | "2" | "3") {
                return Err(ContractError(format!(
                    "tiers: unknown tier {tier:?} (expected 1, 2 or 3)"
                )));
            }
            for r in receivers {
                if !known_receivers.contains(&r.receiver.as_str()) {
                    return Err(ContractError(format!(
                        "tiers.{tier}: unknown receiver {:?} (configured: {})",
                        r.receiver,
                        if known_receivers.is_empty() {
                            "none".to_owned()
                        } else {
                            known_receivers.join(", ")
                        }
                    )));
                }
                for name in r.labels.keys() {
                    let valid = !name.is_empty()
                        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        && !name.starts_with(|c: char| c.is_ascii_digit());
                    if !valid {
                        return Err(ContractError(format!(
                            "tiers.{tier}: label name {name:?} must match [a-zA-Z_][a-zA-Z0-9_]*"
                        )));
                    }
                }
            }
        }
        let mut calendars = Vec::with_capacity(4);
        let mut terms = Vec::with_capacity(4);
        for level in LEVELS {
            let t = contract.levels[&level.to_string()].clone();
            if t.response.is_zero() || t.resolution.is_zero() {
                return Err(ContractError(format!(
                    "levels.{level}: response and resolution must be longer than 0s"
                )));
            }
            if t.response > t.resolution {
                return Err(ContractError(format!(
                    "levels.{level}: response {} is longer than resolution {}",
                    humantime::format_duration(t.response),
                    humantime::format_duration(t.resolution)
                )));
            }
            let calendar = Calendar::new(&contract.time_zone, &t.hours, &contract.holidays)
                .map_err(|e| {
                    // Zone and holiday errors name their own (contract-wide) field.
                    let message = e.to_string();
                    match message.strip_prefix("support_hours") {
                        Some(rest) => ContractError(format!("levels.{level}.hours{rest}")),
                        None => ContractError(message),
                    }
                })?;
            calendars.push(calendar);
            terms.push(t);
        }
        Ok(Self {
            contract,
            calendars: calendars.try_into().expect("four levels"),
            terms: terms.try_into().expect("four levels"),
        })
    }

    pub fn calendar(&self, level: FaultLevel) -> &Calendar {
        &self.calendars[usize::from(level.as_u8() - 1)]
    }

    pub fn terms(&self, level: FaultLevel) -> &LevelTerms {
        &self.terms[usize::from(level.as_u8() - 1)]
    }

    /// The receivers of `tier` (1–3), or None when the contract names none for it.
    pub fn receivers(&self, tier: u8) -> Option<&[ReceiverRef]> {
        self.contract.tiers.get(&tier.to_string()).map(Vec::as_slice).filter(|r| !r.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_the_design_table_around_the_clock() {
        let terms = Terms::new(Contract::default(), &[]).unwrap();
        assert_eq!(terms.terms(FaultLevel::L1).response, Duration::from_secs(300));
        assert_eq!(terms.terms(FaultLevel::L4).resolution, Duration::from_secs(72 * 3600));
        assert_eq!(terms.terms(FaultLevel::L2).hours, SupportHours::Always);
    }

    #[test]
    fn a_partial_contract_keeps_the_defaults_of_what_it_omits() {
        let json = r#"{"time_zone":"Europe/Berlin","levels":{"L4":{"response":"8h","resolution":"5days","hours":{"kind":"business_hours","days":["mon","tue","wed","thu","fri"],"start":"08:00","end":"18:00"}}}}"#;
        let contract: Contract = serde_json::from_str(json).unwrap();
        let terms = Terms::new(contract, &[]).unwrap();
        assert_eq!(terms.terms(FaultLevel::L4).response, Duration::from_secs(8 * 3600));
        assert_eq!(terms.terms(FaultLevel::L1).response, Duration::from_secs(300));
        assert_eq!(terms.contract.warn_at, DEFAULT_WARN_AT);
    }

    #[test]
    fn bad_contracts_name_the_field() {
        let bad = |json: &str| {
            let contract: Contract = serde_json::from_str(json).unwrap();
            Terms::new(contract, &["ops"]).unwrap_err().to_string()
        };
        assert_eq!(
            bad(r#"{"time_zone":"UTC","warn_at":1.5}"#),
            "warn_at: 1.5 must be more than 0 and less than 1"
        );
        assert_eq!(
            bad(r#"{"time_zone":"UTC","tiers":{"2":[{"receiver":"pager"}]}}"#),
            "tiers.2: unknown receiver \"pager\" (configured: ops)"
        );
        assert_eq!(
            bad(r#"{"time_zone":"UTC","tiers":{"4":[]}}"#),
            "tiers: unknown tier \"4\" (expected 1, 2 or 3)"
        );
        assert_eq!(
            bad(
                r#"{"time_zone":"UTC","levels":{"L5":{"response":"1h","resolution":"2h","hours":{"kind":"always"}}}}"#
            ),
            "levels: unknown level \"L5\" (expected L1, L2, L3 or L4)"
        );
        assert_eq!(
            bad(
                r#"{"time_zone":"UTC","levels":{"L1":{"response":"5h","resolution":"2h","hours":{"kind":"always"}}}}"#
            ),
            "levels.L1: response 5h is longer than resolution 2h"
        );
        assert_eq!(
            bad(r#"{"time_zone":"Mars/Base"}"#),
            "time_zone: unknown time zone \"Mars/Base\""
        );
        assert_eq!(
            bad(
                r#"{"time_zone":"UTC","levels":{"L4":{"response":"1h","resolution":"2h","hours":{"kind":"business_hours","days":["funday"],"start":"08:00","end":"18:00"}}}}"#
            ),
            "levels.L4.hours.days: unknown day \"funday\" (expected mon..sun)"
        );
        assert_eq!(
            bad(
                r#"{"time_zone":"UTC","tiers":{"1":[{"receiver":"ops","labels":{"bad-name":"x"}}]}}"#
            ),
            "tiers.1: label name \"bad-name\" must match [a-zA-Z_][a-zA-Z0-9_]*"
        );
    }

    #[test]
    fn receivers_by_tier() {
        let json = r#"{"time_zone":"UTC","tiers":{"1":[{"receiver":"ops","labels":{"team":"t1"}}],"2":[]}}"#;
        let terms = Terms::new(serde_json::from_str(json).unwrap(), &["ops"]).unwrap();
        assert_eq!(terms.receivers(1).unwrap()[0].labels["team"], "t1");
        assert!(terms.receivers(2).is_none());
        assert!(terms.receivers(3).is_none());
    }
}
