//! How many roll-up series one host may have in the store. Series names come from the agent
//! (mount points, sensor names), so without a bound one host could fill the disk with series
//! that are kept for the roll-up retention. [`HostSeries`] is what this replica knows of a
//! host's stored series (loaded from the store when its first stream opens here, shared by its
//! streams) and decides, per report, which readings are stored: the series it already has
//! always; a new one only while the host is under `ingest.max_series_per_host` and
//! `ingest.max_new_series_per_day`, and only if its name is at most
//! `ingest.max_series_name_bytes`. The rest are counted ([`Refused`]), never stored; the report
//! itself is stored and acknowledged as usual. Pure code on the injected clock's time.
//!
//! Every reading of every report is looked up by name, so the names are hashed with foldhash,
//! keyed from the OS's random source once per process, rather than SipHash. The names are the
//! agent's, but it cannot learn the key (no hash value or table order leaves the collector),
//! and whatever collisions it might still find are bounded: a host's set holds at most
//! `max_series_per_host` names of at most `max_series_name_bytes` each.

use std::collections::HashSet;
use std::sync::OnceLock;

use foldhash::SharedSeed;
use foldhash::fast::SeedableRandomState;

use crate::clock::UnixMs;

const DAY_MS: i64 = 86_400_000;

/// The caps of `[ingest]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesLimits {
    pub max_per_host: usize,
    pub max_new_per_day: usize,
    pub max_name_bytes: usize,
}

/// Readings of one report that were not stored, by the cap they met.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refused {
    /// The series name is longer than `max_name_bytes`.
    pub name_too_long: u32,
    /// The host has `max_per_host` series.
    pub host_full: u32,
    /// The host added `max_new_per_day` series today.
    pub day_full: u32,
}

impl Refused {
    pub fn total(&self) -> u32 {
        self.name_too_long + self.host_full + self.day_full
    }
}

/// What one report may store.
#[derive(Debug, Default, PartialEq)]
pub struct Admitted {
    /// The readings to roll up: known series, and new ones within the caps.
    pub kept: Vec<(String, f64)>,
    /// The series of `kept` the host did not have before this report.
    pub new: Vec<String>,
    pub refused: Refused,
}

/// A hasher for series names: one key for the process, drawn from the OS's random source, and
/// one for each table.
fn series_hasher() -> SeedableRandomState {
    static SHARED: OnceLock<SharedSeed> = OnceLock::new();
    let shared = SHARED.get_or_init(|| SharedSeed::from_u64(rand::random()));
    SeedableRandomState::with_seed(rand::random(), shared)
}

/// The stored series of one host, as this replica knows them.
#[derive(Debug)]
pub struct HostSeries {
    known: HashSet<String, SeedableRandomState>,
    /// UTC day (days since the epoch) that `added_today` counts.
    day: i64,
    added_today: usize,
}

impl HostSeries {
    /// From the store's rows: each series with when it was first stored.
    pub fn new(held: impl IntoIterator<Item = (String, UnixMs)>, now: UnixMs) -> Self {
        let day = now.div_euclid(DAY_MS);
        let mut series = Self { known: HashSet::with_hasher(series_hasher()), day, added_today: 0 };
        for (name, first_seen_ms) in held {
            if first_seen_ms.div_euclid(DAY_MS) == day {
                series.added_today += 1;
            }
            series.known.insert(name);
        }
        series
    }

    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// Splits one report's readings into what is stored and what is refused, and counts the
    /// new series as the host's.
    pub fn admit(
        &mut self,
        readings: Vec<(String, f64)>,
        now: UnixMs,
        limits: &SeriesLimits,
    ) -> Admitted {
        let day = now.div_euclid(DAY_MS);
        if day != self.day {
            self.day = day;
            self.added_today = 0;
        }
        let mut refused = Refused::default();
        let mut new = Vec::new();
        // Filtered in place: the report's readings vector is the one stored, no copy of it.
        let mut kept = readings;
        kept.retain(|(name, _)| {
            if self.known.contains(name) {
                return true;
            }
            if name.len() > limits.max_name_bytes {
                refused.name_too_long += 1;
            } else if self.known.len() >= limits.max_per_host {
                refused.host_full += 1;
            } else if self.added_today >= limits.max_new_per_day {
                refused.day_full += 1;
            } else {
                self.known.insert(name.clone());
                self.added_today += 1;
                new.push(name.clone());
                return true;
            }
            false
        });
        Admitted { kept, new, refused }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: SeriesLimits =
        SeriesLimits { max_per_host: 4, max_new_per_day: 3, max_name_bytes: 12 };

    fn readings(names: &[&str]) -> Vec<(String, f64)> {
        names.iter().map(|n| ((*n).to_owned(), 1.0)).collect()
    }

    fn kept(admitted: &Admitted) -> Vec<&str> {
        admitted.kept.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn known_series_are_always_kept_and_new_ones_only_within_the_caps() {
        let day2 = 2 * DAY_MS;
        let mut series = HostSeries::new([("cpu".to_owned(), 0), ("mem".to_owned(), 0)], day2);
        assert_eq!(series.len(), 2);
        // Two new series fit (the host cap is 4); the fifth does not.
        let a =
            series.admit(readings(&["cpu", "fs:/", "fs:/var", "fs:/tmp", "mem"]), day2, &LIMITS);
        assert_eq!(kept(&a), ["cpu", "fs:/", "fs:/var", "mem"]);
        assert_eq!(a.new, ["fs:/", "fs:/var"]);
        assert_eq!(a.refused, Refused { host_full: 1, ..Refused::default() });
        // Full: every known series still stored, nothing new.
        let b = series.admit(readings(&["fs:/var", "x", "y"]), day2 + 1, &LIMITS);
        assert_eq!(kept(&b), ["fs:/var"]);
        assert!(b.new.is_empty());
        assert_eq!(b.refused.total(), 2);
        assert_eq!(series.len(), 4, "the host never holds more than the cap");
    }

    #[test]
    fn the_daily_cap_counts_what_was_stored_today_and_resets_at_midnight_utc() {
        let limits = SeriesLimits { max_per_host: 100, ..LIMITS };
        let today = 10 * DAY_MS + 5_000;
        // One series first stored today (it counts), one yesterday (it does not).
        let held = [("a".to_owned(), today - 1_000), ("b".to_owned(), today - DAY_MS)];
        let mut series = HostSeries::new(held, today);
        let a = series.admit(readings(&["c", "d", "e"]), today, &limits);
        assert_eq!(a.new, ["c", "d"]);
        assert_eq!(a.refused, Refused { day_full: 1, ..Refused::default() });
        let next_day = 11 * DAY_MS;
        let b = series.admit(readings(&["e", "f", "g", "h"]), next_day, &limits);
        assert_eq!(b.new, ["e", "f", "g"]);
        assert_eq!(b.refused.day_full, 1);
    }

    #[test]
    fn a_long_name_is_refused_even_with_room() {
        let mut series = HostSeries::new([], 0);
        assert!(series.is_empty());
        // 12 bytes is the limit itself: kept; 13 is over it.
        let a = series.admit(
            readings(&["temperature:0123456789", "twelve_bytes", "thirteen_byte", "ok"]),
            0,
            &LIMITS,
        );
        assert_eq!(kept(&a), ["twelve_bytes", "ok"]);
        assert_eq!(a.refused, Refused { name_too_long: 2, ..Refused::default() });
        assert!(!series.is_empty());
    }

    #[test]
    fn the_total_adds_every_cap() {
        let refused = Refused { name_too_long: 1, host_full: 2, day_full: 4 };
        assert_eq!(refused.total(), 7);
    }
}
