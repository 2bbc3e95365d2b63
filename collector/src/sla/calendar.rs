//! Support-hours calendars: the clock arithmetic behind SLA deadlines.
//!
//! This module owns "support time". A customer's contract gives, per fault level, either 24×7
//! support or business hours (chosen weekdays, a local start and end time, minus holiday dates),
//! all in the customer's IANA time zone. [`Calendar`] parses and validates one such definition
//! and answers the two questions every SLA clock asks: when will a target amount of support time
//! have passed since an instant ([`Calendar::deadline`]), and how much support time lies between
//! two instants ([`Calendar::elapsed`]). Response and resolution deadlines, "time to acknowledge"
//! and compliance reports all go through these two so that they agree to the millisecond:
//! `elapsed(s, deadline(s, t, x), x) == t` for every `t > 0`. Maintenance windows pause every
//! clock; callers pass them as excluded instant intervals already resolved to [`UnixMs`] (see
//! `crate::schedule`), which keeps this module pure: no clock, no I/O, no state beyond the
//! parsed contract.
//!
//! Business hours are wall-clock hours. Each support day's interval comes from mapping its local
//! start and end to instants in the customer's zone with jiff's "compatible" disambiguation, as
//! `crate::schedule` does (a time in a DST gap moves forward by the gap, a time in a fold takes
//! its first pass), never from adding 24 hours to the previous day: on a spring-forward day
//! 08:00–18:00 is still ten real hours, while 00:00–06:00 is five. 24×7 support counts real
//! elapsed time and runs on holidays too: the holiday list only removes business days. Zones
//! are resolved through the bundled database ([`jiff::tz::TimeZoneDatabase::bundled`]) for the reasons
//! given in `crate::schedule`: the same answer on every machine, with or without `tzdata`.
//!
//! An SLA sweep recomputes deadlines for thousands of open incidents, so the work is interval
//! arithmetic: one step per local day (two zone conversions on a support day, none on other
//! days), with exclusions sorted, merged and subtracted as intervals; nothing steps minute by
//! minute. A typical deadline costs a few zone conversions.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use crate::clock::UnixMs;

const MS_PER_DAY: i64 = 24 * 60 * 60 * 1000;

/// How far past `start + target` [`Calendar::deadline`] looks for support time before giving
/// up, in days.
pub const DEADLINE_HORIZON_DAYS: i64 = 400;

const DEADLINE_HORIZON_MS: i64 = DEADLINE_HORIZON_DAYS * MS_PER_DAY;

/// Day names as configured, Monday first (the index is jiff's `to_monday_zero_offset`).
const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Support hours of one fault level, as written in a contract's configuration (JSON or TOML):
/// `{"kind":"always"}` or
/// `{"kind":"business_hours","days":["mon","wed","fri"],"start":"08:00","end":"18:00"}`.
/// Values are checked by [`Calendar::new`], not while deserialising, so that errors name the
/// field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SupportHours {
    /// Around the clock, every day, holidays included (24×7).
    Always,
    /// On the listed weekdays ("mon".."sun", any case), from local `start` to local `end`
    /// ("HH:MM"; `end` may be "24:00" for the end of the day), except on holidays.
    BusinessHours { days: Vec<String>, start: String, end: String },
}

impl SupportHours {
    /// Monday to Friday, 08:00 to 18:00.
    pub fn business_default() -> Self {
        SupportHours::BusinessHours {
            days: DAY_NAMES[..5].iter().map(|d| (*d).to_owned()).collect(),
            start: "08:00".to_owned(),
            end: "18:00".to_owned(),
        }
    }
}

/// Why a calendar definition was rejected. Each message names the field and the bad value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("time_zone: unknown time zone {value:?}")]
    TimeZone { value: String },
    #[error("support_hours.days: unknown day {value:?} (expected mon..sun)")]
    Day { value: String },
    #[error("support_hours.days: {value:?} is listed more than once")]
    DuplicateDay { value: String },
    #[error("support_hours.days: no days listed (expected some of mon..sun)")]
    NoDays,
    #[error("support_hours.start: invalid time {value:?} (expected HH:MM, 00:00 to 23:59)")]
    Start { value: String },
    #[error("support_hours.end: invalid time {value:?} (expected HH:MM, 00:00 to 24:00)")]
    End { value: String },
    #[error("support_hours: start {start} must be before end {end}")]
    StartNotBeforeEnd { start: String, end: String },
    #[error("holidays[{index}]: invalid date {value:?}")]
    Holiday { index: usize, value: String },
}

/// A validated support-hours calendar in one time zone.
#[derive(Debug, Clone)]
pub struct Calendar {
    /// The zone's IANA name as the database spells it.
    time_zone_name: String,
    time_zone: TimeZone,
    hours: Hours,
    /// Local dates without business hours; unused by 24×7 calendars.
    holidays: BTreeSet<Date>,
}

/// Parsed [`SupportHours`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hours {
    Always,
    Business {
        /// Bit `i` set: support on weekday `i`, Monday being 0.
        days: u8,
        /// Local opening time.
        start: Time,
        /// Local closing time; `None` for 24:00, the next day's midnight.
        end: Option<Time>,
    },
}

impl Calendar {
    /// Builds a calendar, validating every field.
    ///
    /// `time_zone`: IANA name like "Europe/Berlin" or "UTC" (matched without regard to case);
    /// `hours`: see [`SupportHours`], with `start` strictly before `end`; `holidays`: local dates
    /// "YYYY-MM-DD" without business hours (checked for 24×7 calendars too, but not used there).
    pub fn new(
        time_zone: &str,
        hours: &SupportHours,
        holidays: &[String],
    ) -> Result<Calendar, CalendarError> {
        let (time_zone, time_zone_name) = crate::schedule::bundled_zone(time_zone)
            .ok_or_else(|| CalendarError::TimeZone { value: time_zone.to_owned() })?;

        let hours = match hours {
            SupportHours::Always => Hours::Always,
            SupportHours::BusinessHours { days, start, end } => parse_business(days, start, end)?,
        };

        let holidays = holidays
            .iter()
            .enumerate()
            .map(|(index, value)| {
                parse_local_date(value)
                    .ok_or_else(|| CalendarError::Holiday { index, value: value.clone() })
            })
            .collect::<Result<BTreeSet<Date>, CalendarError>>()?;

        Ok(Calendar { time_zone_name, time_zone, hours, holidays })
    }

    /// The zone's IANA name, as the time-zone database spells it.
    pub fn time_zone(&self) -> &str {
        &self.time_zone_name
    }

    /// The instant at which `target_ms` of support time has passed since `start`, counting only
    /// time inside support hours, not on holidays, and not inside any `excluded` interval
    /// (`[from, to)`, in any order, possibly overlapping; empty or reversed ones are ignored).
    ///
    /// The answer is the first such instant: a target that exactly fills a business day ends at
    /// that day's closing time, not at the next opening. `target_ms <= 0` gives the first
    /// support instant at or after `start` (for 24×7, `start` itself unless it is excluded).
    ///
    /// Support time is looked for up to `start + target_ms + 400 days`
    /// ([`DEADLINE_HORIZON_DAYS`]), so the cost grows with the target. If the target is not
    /// reached by then (every support day a holiday, or exclusions covering the support time),
    /// that horizon itself, `start + target_ms + 400 days` (saturating; a negative target counts
    /// as 0), is returned: a deadline far enough out to be visibly unreachable rather than a
    /// loop. Only then does [`Calendar::elapsed`] up to the result fall short of the target.
    pub fn deadline(&self, start: UnixMs, target_ms: i64, excluded: &[(UnixMs, UnixMs)]) -> UnixMs {
        let target = target_ms.max(0);
        let horizon = start.saturating_add(target).saturating_add(DEADLINE_HORIZON_MS);
        let mut left = target;
        self.for_each_piece(start, horizon, excluded, |from, to| {
            let len = to.saturating_sub(from);
            if left <= len {
                ControlFlow::Break(from + left)
            } else {
                left -= len;
                ControlFlow::Continue(())
            }
        })
        .unwrap_or(horizon)
    }

    /// Support time in milliseconds in `[from, to)` (0 if `to <= from`), with the same
    /// exclusions as [`Calendar::deadline`]: for "time to acknowledge in support time" and
    /// compliance reports. The cost grows with the number of local days in the range.
    pub fn elapsed(&self, from: UnixMs, to: UnixMs, excluded: &[(UnixMs, UnixMs)]) -> i64 {
        let mut total: i64 = 0;
        self.for_each_piece::<()>(from, to, excluded, |a, b| {
            total = total.saturating_add(b.saturating_sub(a));
            ControlFlow::Continue(())
        });
        total
    }

    /// Calls `f` with each stretch `[a, b)` of support time inside `[from, until)` that no
    /// exclusion covers, in order; the stretches are non-empty and disjoint. Returns what `f`
    /// breaks with, if it does.
    fn for_each_piece<B>(
        &self,
        from: UnixMs,
        until: UnixMs,
        excluded: &[(UnixMs, UnixMs)],
        mut f: impl FnMut(UnixMs, UnixMs) -> ControlFlow<B>,
    ) -> Option<B> {
        if until <= from {
            return None;
        }
        let mut exclusions = Exclusions::new(excluded, from, until);
        let mut open = |a: UnixMs, b: UnixMs| exclusions.subtract(a, b, &mut f);
        let flow = match self.hours {
            Hours::Always => open(from, until),
            Hours::Business { days, start, end } => {
                self.for_each_open(days, start, end, from, until, &mut open)
            }
        };
        flow.break_value()
    }

    /// Calls `f` with each business-hours interval inside `[from, until)`, in order, clipped
    /// to the range, non-empty and disjoint.
    fn for_each_open<B>(
        &self,
        days: u8,
        start: Time,
        end: Option<Time>,
        from: UnixMs,
        until: UnixMs,
        f: &mut impl FnMut(UnixMs, UnixMs) -> ControlFlow<B>,
    ) -> ControlFlow<B> {
        // A day's hours map to instants whose local date is that day's, except through a DST
        // gap or fold around midnight, which can shift them into a neighbouring date; a day of
        // margin on each side covers that (no zone has moved its clock by more than a day).
        let first = self.local_date(from);
        let mut date = first.yesterday().unwrap_or(first);
        let last = self.local_date(until);
        let last = last.tomorrow().unwrap_or(last);
        // Support before this instant is already reported (or before `from`). Only odd zones
        // make one day's interval reach into the next; clipping keeps the stretches disjoint.
        let mut done = from;
        loop {
            let weekday = date.weekday().to_monday_zero_offset();
            if days & (1 << weekday) != 0
                && !self.holidays.contains(&date)
                && let Some((open, close)) = self.open_interval(date, start, end)
            {
                let (a, b) = (open.max(done), close.min(until));
                if a < b {
                    f(a, b)?;
                    done = b;
                }
            }
            if date >= last {
                break;
            }
            match date.tomorrow() {
                Ok(next) => date = next,
                Err(_) => break,
            }
        }
        ControlFlow::Continue(())
    }

    /// The instants at which business hours on local `date` open and close; `None` when the
    /// date is out of the supported range. May be empty or reversed when an end lies in a DST
    /// gap (a time in a gap moves forward by the gap, possibly past the other end).
    fn open_interval(&self, date: Date, start: Time, end: Option<Time>) -> Option<(i64, i64)> {
        let open = self.instant(date.to_datetime(start))?;
        let close = match end {
            Some(end) => self.instant(date.to_datetime(end))?,
            None => self.instant(date.tomorrow().ok()?.to_datetime(Time::midnight()))?,
        };
        Some((open, close))
    }

    /// The instant of a local date-time, with "compatible" disambiguation.
    fn instant(&self, local: DateTime) -> Option<UnixMs> {
        let ts = self.time_zone.to_ambiguous_timestamp(local).compatible().ok()?;
        Some(ts.as_millisecond())
    }

    /// The local date of `at` (clamped to jiff's range).
    fn local_date(&self, at: UnixMs) -> Date {
        let ts = Timestamp::from_millisecond(at).unwrap_or(if at < 0 {
            Timestamp::MIN
        } else {
            Timestamp::MAX
        });
        self.time_zone.to_datetime(ts).date()
    }
}

/// Excluded intervals for one query: sorted, merged, and consumed front to back as the query's
/// support intervals (which come in order) are cut by them.
struct Exclusions {
    /// Disjoint, non-adjacent `[from, to)` intervals, ascending.
    merged: Vec<(UnixMs, UnixMs)>,
    /// Index of the first interval that may still overlap the next support interval.
    next: usize,
}

impl Exclusions {
    /// Keeps the non-empty intervals that overlap `[from, until)`. Allocates nothing when none
    /// do.
    fn new(excluded: &[(UnixMs, UnixMs)], from: UnixMs, until: UnixMs) -> Self {
        let mut merged: Vec<(UnixMs, UnixMs)> =
            excluded.iter().copied().filter(|&(a, b)| a < b && a < until && b > from).collect();
        merged.sort_unstable();
        merged.dedup_by(|later, earlier| {
            // `later` starts at or after `earlier`; fold it in when they touch.
            if later.0 <= earlier.1 {
                earlier.1 = earlier.1.max(later.1);
                true
            } else {
                false
            }
        });
        Exclusions { merged, next: 0 }
    }

    /// Calls `f` with the parts of `[a, b)` (non-empty, ascending) that no exclusion covers.
    /// Successive calls must pass ascending, disjoint intervals.
    fn subtract<B>(
        &mut self,
        mut a: UnixMs,
        b: UnixMs,
        f: &mut impl FnMut(UnixMs, UnixMs) -> ControlFlow<B>,
    ) -> ControlFlow<B> {
        while let Some(&(ex_from, ex_to)) = self.merged.get(self.next) {
            if ex_to <= a {
                self.next += 1;
                continue;
            }
            if ex_from >= b {
                break;
            }
            if ex_from > a {
                f(a, ex_from)?;
            }
            if ex_to >= b {
                // Covers the rest; it may cover the start of the next interval too.
                return ControlFlow::Continue(());
            }
            a = ex_to;
            self.next += 1;
        }
        f(a, b)
    }
}

/// Parses and checks the business-hours fields.
fn parse_business(days: &[String], start: &str, end: &str) -> Result<Hours, CalendarError> {
    let mut mask = 0u8;
    for value in days {
        let bit = DAY_NAMES
            .iter()
            .position(|name| name.eq_ignore_ascii_case(value))
            .map(|i| 1u8 << i)
            .ok_or_else(|| CalendarError::Day { value: value.clone() })?;
        if mask & bit != 0 {
            return Err(CalendarError::DuplicateDay { value: value.clone() });
        }
        mask |= bit;
    }
    if mask == 0 {
        return Err(CalendarError::NoDays);
    }

    let start_minute = parse_minute_of_day(start)
        .filter(|&m| m < 24 * 60)
        .ok_or_else(|| CalendarError::Start { value: start.to_owned() })?;
    let end_minute =
        parse_minute_of_day(end).ok_or_else(|| CalendarError::End { value: end.to_owned() })?;
    if start_minute >= end_minute {
        return Err(CalendarError::StartNotBeforeEnd {
            start: start.to_owned(),
            end: end.to_owned(),
        });
    }
    Ok(Hours::Business {
        days: mask,
        start: time_of_minute(start_minute),
        end: (end_minute < 24 * 60).then(|| time_of_minute(end_minute)),
    })
}

/// Parses "HH:MM" (00:00 to 24:00) to minutes after midnight.
fn parse_minute_of_day(value: &str) -> Option<u16> {
    let bytes = value.as_bytes();
    let shape_ok = bytes.len() == 5
        && bytes[2] == b':'
        && bytes[..2].iter().chain(&bytes[3..]).all(u8::is_ascii_digit);
    if !shape_ok {
        return None;
    }
    let two = |i: usize| u16::from(bytes[i] - b'0') * 10 + u16::from(bytes[i + 1] - b'0');
    let (hour, minute) = (two(0), two(3));
    let total = hour * 60 + minute;
    (minute < 60 && total <= 24 * 60).then_some(total)
}

/// The time `minute` (below 24 × 60) minutes after midnight.
fn time_of_minute(minute: u16) -> Time {
    // Both parts are in range by construction, so `constant` cannot panic.
    Time::constant((minute / 60) as i8, (minute % 60) as i8, 0, 0)
}

/// Parses a local date "YYYY-MM-DD". The shape is checked first because jiff's parser also
/// takes date-times and zone annotations, which would be silently ignored here.
fn parse_local_date(value: &str) -> Option<Date> {
    let bytes = value.as_bytes();
    let shape_ok = bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes.iter().enumerate().all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit());
    if !shape_ok {
        return None;
    }
    value.parse::<Date>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 60 * 60 * 1000;
    const MINUTE: i64 = 60 * 1000;

    /// Unix milliseconds of an RFC 3339 instant like "2026-03-09T11:00:00+01:00".
    fn at(instant: &str) -> UnixMs {
        instant.parse::<Timestamp>().unwrap().as_millisecond()
    }

    /// Asserts that `got` is the RFC 3339 instant `want`; failures print both as instants.
    #[track_caller]
    fn assert_at(got: UnixMs, want: &str) {
        let got = Timestamp::from_millisecond(got).unwrap();
        let want = want.parse::<Timestamp>().unwrap();
        assert_eq!(got, want, "got {got}, want {want}");
    }

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| (*v).to_owned()).collect()
    }

    fn business(days: &[&str], start: &str, end: &str) -> SupportHours {
        SupportHours::BusinessHours {
            days: strings(days),
            start: start.to_owned(),
            end: end.to_owned(),
        }
    }

    const EVERY_DAY: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

    fn cal(tz: &str, hours: SupportHours, holidays: &[&str]) -> Calendar {
        Calendar::new(tz, &hours, &strings(holidays)).unwrap()
    }

    /// Europe/Berlin, Monday to Friday 08:00–18:00.
    fn berlin_office(holidays: &[&str]) -> Calendar {
        cal("Europe/Berlin", SupportHours::business_default(), holidays)
    }

    fn err(tz: &str, hours: SupportHours, holidays: &[&str]) -> String {
        Calendar::new(tz, &hours, &strings(holidays)).unwrap_err().to_string()
    }

    #[test]
    fn always_counts_real_time() {
        let c = cal("Europe/Berlin", SupportHours::Always, &[]);
        let start = at("2026-06-05T17:00:00+02:00");
        assert_at(c.deadline(start, 4 * HOUR, &[]), "2026-06-05T21:00:00+02:00");
        assert_at(c.deadline(start, 72 * HOUR, &[]), "2026-06-08T17:00:00+02:00");
        assert_at(c.deadline(start, 1, &[]), "2026-06-05T17:00:00.001+02:00");
        assert_eq!(c.deadline(start, 0, &[]), start);
        assert_eq!(c.deadline(start, -5 * HOUR, &[]), start, "a negative target counts as 0");
        assert_eq!(c.elapsed(start, at("2026-06-06T17:00:00+02:00"), &[]), 24 * HOUR);
        assert_eq!(c.elapsed(start, start, &[]), 0);
        assert_eq!(c.elapsed(start, start - HOUR, &[]), 0, "a reversed range is empty");
    }

    #[test]
    fn always_ignores_holidays() {
        let c = cal("Europe/Berlin", SupportHours::Always, &["2026-12-25"]);
        let start = at("2026-12-24T22:00:00+01:00");
        assert_at(c.deadline(start, 4 * HOUR, &[]), "2026-12-25T02:00:00+01:00");
    }

    #[test]
    fn business_hours_across_a_weekend() {
        let c = berlin_office(&[]);
        // 2026-03-06 is a Friday: one hour on Friday, three on Monday.
        let start = at("2026-03-06T17:00:00+01:00");
        let due = c.deadline(start, 4 * HOUR, &[]);
        assert_at(due, "2026-03-09T11:00:00+01:00");
        assert_eq!(c.elapsed(start, due, &[]), 4 * HOUR);
        assert_eq!(c.elapsed(start, at("2026-03-09T08:00:00+01:00"), &[]), HOUR);
        assert_eq!(
            c.elapsed(at("2026-03-07T00:00:00+01:00"), at("2026-03-09T00:00:00+01:00"), &[]),
            0
        );
    }

    #[test]
    fn business_hours_across_holidays() {
        // Monday a holiday: due Tuesday.
        let c = berlin_office(&["2026-03-09"]);
        let start = at("2026-03-06T17:00:00+01:00");
        assert_at(c.deadline(start, 4 * HOUR, &[]), "2026-03-10T11:00:00+01:00");

        // Easter 2026: Good Friday (04-03) and Easter Monday (04-06) are holidays.
        let c = berlin_office(&["2026-04-03", "2026-04-06", "2026-12-25"]);
        let start = at("2026-04-02T17:00:00+02:00");
        let due = c.deadline(start, 4 * HOUR, &[]);
        assert_at(due, "2026-04-07T11:00:00+02:00");
        assert_eq!(c.elapsed(start, due, &[]), 4 * HOUR);
        assert_eq!(c.elapsed(start, at("2026-04-07T08:00:00+02:00"), &[]), HOUR);
    }

    #[test]
    fn start_outside_opening_hours() {
        let c = berlin_office(&[]);
        // 2026-03-09 is a Monday.
        let before = at("2026-03-09T06:00:00+01:00");
        assert_at(c.deadline(before, 2 * HOUR, &[]), "2026-03-09T10:00:00+01:00");
        assert_at(c.deadline(before, 0, &[]), "2026-03-09T08:00:00+01:00");
        let after = at("2026-03-09T20:00:00+01:00");
        assert_at(c.deadline(after, 2 * HOUR, &[]), "2026-03-10T10:00:00+01:00");
        assert_at(c.deadline(after, 0, &[]), "2026-03-10T08:00:00+01:00");
        let closing = at("2026-03-09T18:00:00+01:00");
        assert_at(c.deadline(closing, 0, &[]), "2026-03-10T08:00:00+01:00");
        assert_at(c.deadline(closing, 1, &[]), "2026-03-10T08:00:00.001+01:00");
        let opening = at("2026-03-09T08:00:00+01:00");
        assert_eq!(c.deadline(opening, 0, &[]), opening);
        let inside = at("2026-03-09T09:15:00+01:00");
        assert_eq!(c.deadline(inside, 0, &[]), inside);
        // Saturday morning waits for Monday.
        assert_at(
            c.deadline(at("2026-03-07T09:00:00+01:00"), HOUR, &[]),
            "2026-03-09T09:00:00+01:00",
        );
    }

    #[test]
    fn a_target_that_fills_the_day_ends_at_closing() {
        let c = berlin_office(&[]);
        let start = at("2026-03-09T14:00:00+01:00");
        assert_at(c.deadline(start, 4 * HOUR, &[]), "2026-03-09T18:00:00+01:00");
        assert_at(c.deadline(start, 4 * HOUR + 1, &[]), "2026-03-10T08:00:00.001+01:00");
        // 25 h: Monday 10 h, Tuesday 10 h, Wednesday 5 h.
        let opening = at("2026-03-09T08:00:00+01:00");
        assert_at(c.deadline(opening, 25 * HOUR, &[]), "2026-03-11T13:00:00+01:00");
        // A fortnight of support (140 h over 14 business days) from a Monday morning.
        assert_at(c.deadline(opening, 140 * HOUR, &[]), "2026-03-26T18:00:00+01:00");
    }

    #[test]
    fn end_of_day_closing() {
        let c = cal("Europe/Berlin", business(&EVERY_DAY[..5], "00:00", "24:00"), &[]);
        // Friday 20:00 + 8 h: 4 h on Friday, then Monday from midnight.
        assert_at(
            c.deadline(at("2026-03-06T20:00:00+01:00"), 8 * HOUR, &[]),
            "2026-03-09T04:00:00+01:00",
        );
        let week = (at("2026-03-09T00:00:00+01:00"), at("2026-03-16T00:00:00+01:00"));
        assert_eq!(c.elapsed(week.0, week.1, &[]), 5 * 24 * HOUR);
    }

    #[test]
    fn europe_spring_forward() {
        // Berlin, Sunday 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
        let office = cal("Europe/Berlin", business(&EVERY_DAY, "08:00", "18:00"), &[]);
        // One hour on Saturday; Sunday opens at 08:00 CEST, not 24 h after Saturday's 08:00 CET.
        let start = at("2026-03-28T17:00:00+01:00");
        let due = office.deadline(start, 4 * HOUR, &[]);
        assert_at(due, "2026-03-29T11:00:00+02:00");
        assert_eq!(office.elapsed(start, due, &[]), 4 * HOUR);
        let sunday = (at("2026-03-29T00:00:00+01:00"), at("2026-03-30T00:00:00+02:00"));
        assert_eq!(office.elapsed(sunday.0, sunday.1, &[]), 10 * HOUR, "the gap is outside");

        // Night shift 00:00–06:00: the gap falls inside, so Sunday has 5 real hours.
        let night = cal("Europe/Berlin", business(&EVERY_DAY, "00:00", "06:00"), &[]);
        assert_eq!(night.elapsed(sunday.0, sunday.1, &[]), 5 * HOUR);
        assert_at(night.deadline(sunday.0, 5 * HOUR, &[]), "2026-03-29T06:00:00+02:00");
        assert_at(night.deadline(sunday.0, 6 * HOUR, &[]), "2026-03-30T01:00:00+02:00");
        // One hour on Saturday, then Sunday from midnight CET.
        assert_at(
            night.deadline(at("2026-03-28T05:00:00+01:00"), 2 * HOUR, &[]),
            "2026-03-29T01:00:00+01:00",
        );
        // 02:30 on Sunday does not exist: one hour past 01:30 CET is 03:30 CEST.
        assert_at(
            night.deadline(at("2026-03-29T01:30:00+01:00"), HOUR, &[]),
            "2026-03-29T03:30:00+02:00",
        );

        // 24×7 counts real time: Saturday 12:00 CET + 24 h is Sunday 13:00 CEST.
        let always = cal("Europe/Berlin", SupportHours::Always, &[]);
        assert_at(
            always.deadline(at("2026-03-28T12:00:00+01:00"), 24 * HOUR, &[]),
            "2026-03-29T13:00:00+02:00",
        );
        // A full-day business calendar has 23 hours that Sunday.
        let all_day = cal("Europe/Berlin", business(&EVERY_DAY, "00:00", "24:00"), &[]);
        assert_eq!(all_day.elapsed(sunday.0, sunday.1, &[]), 23 * HOUR);
    }

    #[test]
    fn europe_fall_back() {
        // Berlin, Sunday 2026-10-25: 03:00 CEST falls back to 02:00 CET (01:00 UTC).
        let office = cal("Europe/Berlin", business(&EVERY_DAY, "08:00", "18:00"), &[]);
        let start = at("2026-10-24T17:00:00+02:00");
        let due = office.deadline(start, 4 * HOUR, &[]);
        assert_at(due, "2026-10-25T11:00:00+01:00");
        assert_eq!(office.elapsed(start, due, &[]), 4 * HOUR);

        // Night shift 00:00–06:00: the fold falls inside, so Sunday has 7 real hours.
        let night = cal("Europe/Berlin", business(&EVERY_DAY, "00:00", "06:00"), &[]);
        let sunday = (at("2026-10-25T00:00:00+02:00"), at("2026-10-26T00:00:00+01:00"));
        assert_eq!(night.elapsed(sunday.0, sunday.1, &[]), 7 * HOUR);
        assert_at(
            night.deadline(sunday.0, 6 * HOUR + 30 * MINUTE, &[]),
            "2026-10-25T05:30:00+01:00",
        );
        // 02:30 happens twice; the clock runs through both passes.
        assert_at(
            night.deadline(at("2026-10-25T02:30:00+02:00"), HOUR, &[]),
            "2026-10-25T02:30:00+01:00",
        );
    }

    #[test]
    fn opening_hours_inside_a_gap_or_fold_resolve_compatibly() {
        // 02:30–03:30 Berlin time. In the fold, 02:30 takes its first pass (CEST): two real
        // hours. In the gap, 02:30 moves forward to 03:30 CEST: no support that day.
        let c = cal("Europe/Berlin", business(&EVERY_DAY, "02:30", "03:30"), &[]);
        let fold_day = (at("2026-10-25T00:00:00+02:00"), at("2026-10-26T00:00:00+01:00"));
        assert_eq!(c.elapsed(fold_day.0, fold_day.1, &[]), 2 * HOUR);
        assert_at(c.deadline(fold_day.0, 0, &[]), "2026-10-25T02:30:00+02:00");
        let gap_day = (at("2026-03-29T00:00:00+01:00"), at("2026-03-30T00:00:00+02:00"));
        assert_eq!(c.elapsed(gap_day.0, gap_day.1, &[]), 0);
        assert_at(c.deadline(gap_day.0, 0, &[]), "2026-03-30T02:30:00+02:00");
        // 02:30–03:00 on the gap day would close before it opens; it is empty, not negative.
        let c = cal("Europe/Berlin", business(&EVERY_DAY, "02:30", "03:00"), &[]);
        assert_eq!(c.elapsed(gap_day.0, gap_day.1, &[]), 0);
        assert_eq!(c.elapsed(gap_day.0, gap_day.1 + 24 * HOUR, &[]), 30 * MINUTE);
    }

    #[test]
    fn hours_reaching_into_a_neighbouring_date() {
        // Made-up zone (see `midnight_dst`). 2026-03-29 23:30 XST (22:30 UTC) jumps to 00:30
        // XDT on the 30th, so the 29th's closing time 23:45 falls in the gap and moves forward
        // to 22:45 UTC, 00:45 local on the 30th: the 29th's hours run past that local midnight.
        let late = midnight_dst(business(&EVERY_DAY, "22:00", "23:45"));
        let start = at("2026-03-29T22:35:00Z"); // 00:35 XDT on the 30th
        assert_eq!(late.elapsed(start, start + HOUR, &[]), 10 * MINUTE);
        assert_at(late.deadline(start, 5 * MINUTE, &[]), "2026-03-29T22:40:00Z");
        assert_at(late.deadline(start, 0, &[]), "2026-03-29T22:35:00Z");

        // 2026-10-25 00:30 XDT (22:30 UTC on the 24th) falls back to 23:30 XST on the 24th. The
        // 25th's opening 00:10 takes its first pass, 22:10 UTC, so it opens before instants
        // whose local date is still the 24th (23:45 XST is 22:45 UTC).
        let early = midnight_dst(business(&EVERY_DAY, "00:10", "01:00"));
        let (from, to) = (at("2026-10-24T22:00:00Z"), at("2026-10-24T22:45:00Z"));
        assert_eq!(early.elapsed(from, to, &[]), 35 * MINUTE);
        assert_at(early.deadline(from, 0, &[]), "2026-10-24T22:10:00Z");
        // 01:00 XST closes at 00:00 UTC: 1 h 50 min that day.
        assert_eq!(early.elapsed(from, at("2026-10-25T12:00:00Z"), &[]), 110 * MINUTE);
    }

    #[test]
    fn us_spring_forward() {
        // New York, Sunday 2026-03-08: 02:00 EST jumps to 03:00 EDT (07:00 UTC).
        let office = cal("America/New_York", business(&EVERY_DAY, "08:00", "18:00"), &[]);
        let start = at("2026-03-07T17:00:00-05:00");
        let due = office.deadline(start, 4 * HOUR, &[]);
        assert_at(due, "2026-03-08T11:00:00-04:00");
        assert_eq!(office.elapsed(start, due, &[]), 4 * HOUR);

        let night = cal("America/New_York", business(&EVERY_DAY, "00:00", "06:00"), &[]);
        let sunday = (at("2026-03-08T00:00:00-05:00"), at("2026-03-09T00:00:00-04:00"));
        assert_eq!(night.elapsed(sunday.0, sunday.1, &[]), 5 * HOUR);
        assert_at(night.deadline(sunday.0, 3 * HOUR, &[]), "2026-03-08T04:00:00-04:00");

        let always = cal("America/New_York", SupportHours::Always, &[]);
        assert_at(
            always.deadline(at("2026-03-07T22:00:00-05:00"), 24 * HOUR, &[]),
            "2026-03-08T23:00:00-04:00",
        );
    }

    #[test]
    fn a_maintenance_window_pauses_the_clock() {
        let c = berlin_office(&[]);
        let start = at("2026-03-09T09:00:00+01:00");
        let window = (at("2026-03-09T10:00:00+01:00"), at("2026-03-09T11:00:00+01:00"));
        let due = c.deadline(start, 4 * HOUR, &[window]);
        assert_at(due, "2026-03-09T14:00:00+01:00");
        assert_eq!(c.elapsed(start, due, &[window]), 4 * HOUR);
        assert_eq!(c.elapsed(start, due, &[]), 5 * HOUR);

        // A window over the start delays it.
        let early = (at("2026-03-09T07:00:00+01:00"), at("2026-03-09T09:30:00+01:00"));
        assert_at(c.deadline(start, HOUR, &[early]), "2026-03-09T10:30:00+01:00");
        assert_at(c.deadline(start, 0, &[early]), "2026-03-09T09:30:00+01:00");

        // A window at the next opening pushes a deadline that spills over.
        let late = at("2026-03-09T16:00:00+01:00");
        let tuesday = (at("2026-03-10T08:00:00+01:00"), at("2026-03-10T10:00:00+01:00"));
        assert_at(c.deadline(late, 4 * HOUR, &[tuesday]), "2026-03-10T12:00:00+01:00");

        // 24×7: the clock stops for the window, and a start inside one waits for its end.
        let always = cal("Europe/Berlin", SupportHours::Always, &[]);
        assert_at(always.deadline(start, 4 * HOUR, &[window]), "2026-03-09T14:00:00+01:00");
        let inside = at("2026-03-09T10:15:00+01:00");
        assert_eq!(always.deadline(inside, 0, &[window]), window.1);
        assert_eq!(always.elapsed(start, window.1, &[window]), HOUR);
    }

    #[test]
    fn overlapping_exclusions_in_any_order() {
        let c = berlin_office(&[]);
        let start = at("2026-03-09T09:00:00+01:00");
        let windows = [
            (at("2026-03-09T10:30:00+01:00"), at("2026-03-09T12:00:00+01:00")),
            (at("2026-03-09T10:00:00+01:00"), at("2026-03-09T11:00:00+01:00")),
            (at("2026-03-09T10:45:00+01:00"), at("2026-03-09T11:15:00+01:00")),
            (at("2026-03-09T12:00:00+01:00"), at("2026-03-09T12:30:00+01:00")),
        ];
        // Excluded 10:00–12:30: 1 h before, 3 h after.
        let due = c.deadline(start, 4 * HOUR, &windows);
        assert_at(due, "2026-03-09T15:30:00+01:00");
        assert_eq!(c.elapsed(start, due, &windows), 4 * HOUR);
        let mut reversed = windows;
        reversed.reverse();
        assert_eq!(c.deadline(start, 4 * HOUR, &reversed), due);
        // Empty and reversed intervals are ignored.
        let junk =
            [(at("2026-03-09T10:00:00+01:00"), at("2026-03-09T10:00:00+01:00")), (due, start)];
        assert_at(c.deadline(start, 4 * HOUR, &junk), "2026-03-09T13:00:00+01:00");
    }

    #[test]
    fn exclusions_outside_support_hours_change_nothing() {
        let c = berlin_office(&["2026-03-10"]);
        let start = at("2026-03-06T17:00:00+01:00");
        let windows = [
            // The weekend, an evening, the night after, a holiday, and one long after.
            (at("2026-03-07T00:00:00+01:00"), at("2026-03-09T00:00:00+01:00")),
            (at("2026-03-06T18:00:00+01:00"), at("2026-03-06T23:00:00+01:00")),
            (at("2026-03-09T18:00:00+01:00"), at("2026-03-10T08:00:00+01:00")),
            (at("2026-03-10T08:00:00+01:00"), at("2026-03-10T18:00:00+01:00")),
            (at("2026-06-01T00:00:00+02:00"), at("2026-06-02T00:00:00+02:00")),
            // Ends exactly at the start.
            (at("2026-03-06T12:00:00+01:00"), start),
        ];
        assert_at(c.deadline(start, 4 * HOUR, &windows), "2026-03-09T11:00:00+01:00");
        assert_at(c.deadline(start, 14 * HOUR, &windows), "2026-03-11T11:00:00+01:00");
        let always = cal("Europe/Berlin", SupportHours::Always, &[]);
        assert_eq!(always.deadline(start, HOUR, &windows[4..]), start + HOUR);
    }

    #[test]
    fn no_support_time_in_the_horizon() {
        // Mondays only, and every Monday for two years a holiday.
        let mut mondays = Vec::new();
        let mut monday = Date::constant(2026, 3, 9);
        for _ in 0..110 {
            mondays.push(monday.to_string());
            monday = monday.checked_add(jiff::Span::new().days(7)).unwrap();
        }
        let c = Calendar::new("Europe/Berlin", &business(&["mon"], "08:00", "18:00"), &mondays)
            .unwrap();
        let start = at("2026-03-06T17:00:00+01:00");
        let horizon = start + 4 * HOUR + 400 * 24 * HOUR;
        assert_eq!(c.deadline(start, 4 * HOUR, &[]), horizon);
        assert_eq!(c.deadline(start, 0, &[]), start + 400 * 24 * HOUR);
        assert_eq!(c.elapsed(start, horizon, &[]), 0);

        // A 24×7 calendar excluded for ever.
        let always = cal("UTC", SupportHours::Always, &[]);
        assert_eq!(always.deadline(start, HOUR, &[(start - 1, i64::MAX)]), horizon - 3 * HOUR);
        assert_eq!(always.deadline(i64::MAX - 1, HOUR, &[]), i64::MAX);
    }

    #[test]
    fn extreme_instants_do_not_panic() {
        let calendars = [
            cal("Europe/Berlin", SupportHours::Always, &[]),
            berlin_office(&["2026-12-25"]),
            cal("Pacific/Kiritimati", business(&EVERY_DAY, "00:00", "24:00"), &[]),
        ];
        for c in &calendars {
            for start in [i64::MIN, i64::MIN / 2, -1, 0, i64::MAX / 2, i64::MAX - 1, i64::MAX] {
                for target in [i64::MIN, -1, 0, 1, HOUR] {
                    let due = c.deadline(start, target, &[(i64::MIN, 0), (5, i64::MAX)]);
                    assert!(due >= start, "{start} {target} -> {due}");
                    let _ = c.elapsed(start, start.saturating_add(48 * HOUR), &[]);
                }
            }
        }
        let always = &calendars[0];
        assert_eq!(always.elapsed(i64::MIN, i64::MAX, &[]), i64::MAX);
        assert_eq!(always.deadline(0, i64::MAX, &[]), i64::MAX);
    }

    /// SplitMix64: a small deterministic generator for property tests.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        /// Uniform in `[lo, hi)`.
        fn range(&mut self, lo: i64, hi: i64) -> i64 {
            lo + (self.next() % (hi - lo) as u64) as i64
        }
    }

    /// Calendars that exercise DST gaps and folds inside and outside support hours, a
    /// half-hour DST (Lord Howe), a skipped day (Samoa, 2011-12-30) and holidays, each with the
    /// largest target it surely reaches within the deadline horizon (so the fallback, which
    /// breaks the round trip by design, never applies).
    fn property_calendars() -> Vec<(Calendar, i64)> {
        vec![
            (cal("Europe/Berlin", SupportHours::Always, &[]), 200 * HOUR),
            (berlin_office(&["2026-04-03", "2026-04-06", "2026-12-24", "2026-12-25"]), 200 * HOUR),
            (
                cal("America/New_York", business(&EVERY_DAY, "00:00", "06:00"), &["2026-11-01"]),
                200 * HOUR,
            ),
            (cal("America/New_York", business(&["sat", "sun"], "01:30", "02:30"), &[]), 60 * HOUR),
            (cal("Australia/Lord_Howe", business(&EVERY_DAY, "01:45", "02:15"), &[]), 100 * HOUR),
            (
                cal("Pacific/Apia", business(&EVERY_DAY, "00:00", "24:00"), &["2011-12-29"]),
                200 * HOUR,
            ),
            (
                cal("Pacific/Apia", business(&["thu", "fri", "sat"], "09:00", "17:00"), &[]),
                200 * HOUR,
            ),
            (cal("UTC", business(&["wed"], "23:59", "24:00"), &[]), 30 * MINUTE),
            (midnight_dst(business(&EVERY_DAY, "22:00", "23:45")), 200 * HOUR),
            (midnight_dst(business(&EVERY_DAY, "00:10", "01:00")), 150 * HOUR),
        ]
    }

    /// A calendar in a made-up zone, UTC+1 with summer time from the last Sunday of March,
    /// 23:30, to the last Sunday of October, 00:30 (summer time): its gap pushes a closing time
    /// into the next local date and its fold turns the local date back, so one day's hours reach
    /// into a neighbouring date's.
    fn midnight_dst(hours: SupportHours) -> Calendar {
        let time_zone = TimeZone::posix("XST-1XDT,M3.5.0/23:30,M10.5.0/0:30").unwrap();
        Calendar { time_zone, ..cal("UTC", hours, &[]) }
    }

    /// Random start instants near DST changes of 2026 and Samoa's skipped day.
    fn random_start(rng: &mut Rng) -> UnixMs {
        let anchors = [
            at("2026-03-08T00:00:00Z"),
            at("2026-03-29T00:00:00Z"),
            at("2026-04-05T00:00:00Z"),
            at("2026-10-04T00:00:00Z"),
            at("2026-10-25T00:00:00Z"),
            at("2026-11-01T00:00:00Z"),
            at("2011-12-28T00:00:00Z"),
            at("2026-12-20T00:00:00Z"),
        ];
        let anchor = anchors[rng.range(0, anchors.len() as i64) as usize];
        let start = anchor + rng.range(-4 * 24 * HOUR, 4 * 24 * HOUR);
        // Sometimes whole minutes, to hit openings and closings exactly.
        if rng.range(0, 2) == 0 { start - start.rem_euclid(15 * MINUTE) } else { start }
    }

    /// A target in `1..=max`, often a round number.
    fn random_target(rng: &mut Rng, max: i64) -> i64 {
        let target = match rng.range(0, 4) {
            0 => rng.range(1, 1000),
            1 => rng.range(1, 12) * HOUR,
            2 => rng.range(1, 60) * 15 * MINUTE,
            _ => rng.range(1, max + 1),
        };
        (target - 1) % max + 1
    }

    fn random_exclusions(rng: &mut Rng, start: UnixMs) -> Vec<(UnixMs, UnixMs)> {
        (0..rng.range(0, 5))
            .map(|_| {
                let from = start + rng.range(-2 * 24 * HOUR, 10 * 24 * HOUR);
                let len = rng.range(-HOUR, 3 * 24 * HOUR);
                (from, from + len)
            })
            .collect()
    }

    #[test]
    fn elapsed_inverts_deadline() {
        let calendars = property_calendars();
        let mut rng = Rng(0x5EED_CA1E);
        for case in 0..4000 {
            let (c, max_target) = &calendars[case % calendars.len()];
            let start = random_start(&mut rng);
            let target = random_target(&mut rng, *max_target);
            let excluded = random_exclusions(&mut rng, start);
            let ctx = || format!("case {case}: {c:?} start {start} target {target} {excluded:?}");

            let due = c.deadline(start, target, &excluded);
            assert!(due > start, "{}", ctx());
            assert_eq!(c.elapsed(start, due, &excluded), target, "{}", ctx());
            // The deadline is the first such instant.
            assert_eq!(c.elapsed(start, due - 1, &excluded), target - 1, "{}", ctx());
            // Elapsed time adds up over any split.
            let mid = rng.range(start, due + 1);
            assert_eq!(
                c.elapsed(start, mid, &excluded) + c.elapsed(mid, due, &excluded),
                target,
                "{} mid {mid}",
                ctx()
            );
            // A longer target is never due earlier.
            assert!(c.deadline(start, target + 1, &excluded) > due, "{}", ctx());
            // target 0: the first support instant, where support continues.
            let first = c.deadline(start, 0, &excluded);
            assert!(first >= start && first < due, "{}", ctx());
            assert_eq!(c.elapsed(start, first, &excluded), 0, "{}", ctx());
            assert_eq!(c.elapsed(start, first + 1, &excluded), 1, "{}", ctx());
        }
    }

    /// Checks `elapsed` against a minute-by-minute walk reading the local wall clock, for
    /// zones whose DST changes fall outside the opening hours.
    #[test]
    fn elapsed_matches_a_minute_walk() {
        let holidays = ["2026-03-10", "2026-10-26", "2026-11-03"];
        let calendars = [
            berlin_office(&holidays),
            cal("America/New_York", business(&EVERY_DAY, "07:30", "18:00"), &holidays),
            cal("Asia/Kolkata", business(&["sun", "mon", "fri"], "09:15", "17:45"), &holidays),
        ];
        let mut rng = Rng(42);
        for case in 0..150 {
            let c = &calendars[case % calendars.len()];
            let from = random_start(&mut rng);
            let from = from - from.rem_euclid(MINUTE);
            let to = from + rng.range(0, 4 * 24 * 60) * MINUTE;
            let excluded: Vec<_> = random_exclusions(&mut rng, from)
                .into_iter()
                .map(|(a, b)| (a - a.rem_euclid(MINUTE), b - b.rem_euclid(MINUTE)))
                .collect();
            let Hours::Business { days, start, end } = c.hours else { unreachable!() };
            let end = end.unwrap();
            let mut want = 0;
            let mut t = from;
            while t < to {
                let local = c.time_zone.to_datetime(Timestamp::from_millisecond(t).unwrap());
                let open = days & (1 << local.weekday().to_monday_zero_offset()) != 0
                    && !c.holidays.contains(&local.date())
                    && start <= local.time()
                    && local.time() < end
                    && !excluded.iter().any(|&(a, b)| a <= t && t < b);
                if open {
                    want += MINUTE;
                }
                t += MINUTE;
            }
            assert_eq!(
                c.elapsed(from, to, &excluded),
                want,
                "case {case}: {from}..{to} {excluded:?}"
            );
        }
    }

    #[test]
    fn validation_names_the_field() {
        let office = SupportHours::business_default();
        assert_eq!(
            err("Mars/Base", office.clone(), &[]),
            "time_zone: unknown time zone \"Mars/Base\""
        );
        assert_eq!(err("", SupportHours::Always, &[]), "time_zone: unknown time zone \"\"");
        assert_eq!(
            err("UTC", business(&["mon", "funday"], "08:00", "18:00"), &[]),
            "support_hours.days: unknown day \"funday\" (expected mon..sun)"
        );
        assert_eq!(
            err("UTC", business(&["mon", "Tue", "tue"], "08:00", "18:00"), &[]),
            "support_hours.days: \"tue\" is listed more than once"
        );
        assert_eq!(
            err("UTC", business(&[], "08:00", "18:00"), &[]),
            "support_hours.days: no days listed (expected some of mon..sun)"
        );
        for bad in ["8:00", "08:00:00", "8am", "24:00", "12:60", "", "0a:00", "+1:00"] {
            assert_eq!(
                err("UTC", business(&["mon"], bad, "18:00"), &[]),
                format!(
                    "support_hours.start: invalid time {bad:?} (expected HH:MM, 00:00 to 23:59)"
                )
            );
        }
        for bad in ["18", "24:01", "25:00", "18:00 ", "18h00"] {
            assert_eq!(
                err("UTC", business(&["mon"], "08:00", bad), &[]),
                format!("support_hours.end: invalid time {bad:?} (expected HH:MM, 00:00 to 24:00)")
            );
        }
        assert_eq!(
            err("UTC", business(&["mon"], "18:00", "08:00"), &[]),
            "support_hours: start 18:00 must be before end 08:00"
        );
        assert_eq!(
            err("UTC", business(&["mon"], "08:00", "08:00"), &[]),
            "support_hours: start 08:00 must be before end 08:00"
        );
        assert_eq!(
            err("UTC", office.clone(), &["2026-12-24", "2026-12-25", "2026-13-01"]),
            "holidays[2]: invalid date \"2026-13-01\""
        );
        for bad in ["2026-02-30", "2026-1-05", "2026-01-05T00:00", "05.01.2026", "", "+2026-01-0"] {
            assert_eq!(
                err("UTC", office.clone(), &[bad]),
                format!("holidays[0]: invalid date {bad:?}")
            );
        }
        // Holidays are checked for 24×7 calendars too.
        assert_eq!(
            err("UTC", SupportHours::Always, &["tomorrow"]),
            "holidays[0]: invalid date \"tomorrow\""
        );
    }

    #[test]
    fn valid_definitions() {
        let c = cal("europe/berlin", business(&["MON", "Sun"], "00:00", "24:00"), &["2026-12-25"]);
        assert_eq!(c.time_zone(), "Europe/Berlin");
        assert_eq!(
            c.hours,
            Hours::Business { days: 0b100_0001, start: Time::midnight(), end: None }
        );
        let c = cal("UTC", business(&["fri"], "23:59", "24:00"), &["2026-12-25", "2026-12-25"]);
        assert_eq!(c.holidays.len(), 1, "a repeated holiday is harmless");
    }

    #[test]
    fn support_hours_serde() {
        let always: SupportHours = serde_json::from_str(r#"{"kind":"always"}"#).unwrap();
        assert_eq!(always, SupportHours::Always);
        assert_eq!(serde_json::to_string(&always).unwrap(), r#"{"kind":"always"}"#);

        let json = concat!(
            r#"{"kind":"business_hours","days":["mon","tue","wed","thu","fri"],"#,
            r#""start":"08:00","end":"18:00"}"#
        );
        let office: SupportHours = serde_json::from_str(json).unwrap();
        assert_eq!(office, SupportHours::business_default());
        assert_eq!(serde_json::to_string(&office).unwrap(), json);

        for bad in [
            r#"{"kind":"business_hours","days":["mon"],"start":"08:00","end":"18:00","tz":"UTC"}"#,
            r#"{"kind":"business_hours","days":["mon"],"start":"08:00"}"#,
            r#"{"kind":"weekdays"}"#,
            r#"{"days":["mon"],"start":"08:00","end":"18:00"}"#,
        ] {
            assert!(serde_json::from_str::<SupportHours>(bad).is_err(), "{bad}");
        }
    }

    /// Measures `deadline` for an SLA sweep's typical case. Run with
    /// `cargo test --release -- --ignored --nocapture deadline_cost`.
    #[test]
    #[ignore = "timing only"]
    fn deadline_cost() {
        use std::hint::black_box;
        use std::time::Instant;

        let holidays = ["2026-01-01", "2026-04-03", "2026-04-06", "2026-05-01", "2026-05-14"];
        let office = berlin_office(&holidays);
        let always = cal("Europe/Berlin", SupportHours::Always, &[]);
        let base = at("2026-03-02T00:00:00+01:00");
        let windows = [
            (at("2026-03-07T22:00:00+01:00"), at("2026-03-08T02:00:00+01:00")),
            (at("2026-03-10T12:00:00+01:00"), at("2026-03-10T13:00:00+01:00")),
        ];
        let n = 200_000i64;
        let step = 7 * 24 * HOUR / n * 3; // three weeks of starts, ~9 s apart
        let none: &[(UnixMs, UnixMs)] = &[];
        let cases = [
            ("business, 4 h", &office, 4 * HOUR, none),
            ("business, 4 h, 2 windows", &office, 4 * HOUR, &windows[..]),
            ("business, 40 h", &office, 40 * HOUR, none),
            ("24x7, 4 h", &always, 4 * HOUR, none),
            ("24x7, 4 h, 2 windows", &always, 4 * HOUR, &windows[..]),
        ];
        for (name, c, target, excluded) in cases {
            let started = Instant::now();
            let mut sum = 0i64;
            for i in 0..n {
                sum = sum.wrapping_add(c.deadline(black_box(base + i * step), target, excluded));
            }
            let per_call = started.elapsed().as_nanos() / n as u128;
            black_box(sum);
            println!("deadline, {name}: {per_call} ns per call");
        }
    }
}
