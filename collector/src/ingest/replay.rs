//! How many replayed reports one stream may carry. A replayed report is one the agent spooled
//! while it could not reach a collector, so a host cannot honestly have more of them than it
//! collected while away: one per report interval since its last stored report (or since it
//! was enrolled, when it never reported), plus `ingest.replay_slack_reports` for the reports
//! in flight when its last stream broke. The interval is the agent's own (from its Hello), but
//! never taken as shorter than the live rate limit allows, so a host claiming a 1 s interval
//! gains nothing. [`ReplayBudget`] is the time-away part, fixed when the stream opens; past it,
//! each replay draws on the host's [`ReplaySlack`], which is the host's, not the stream's, and
//! grows back by one report per interval, so a client that reconnects over and over gains one
//! replay per interval, as an honest agent collects. A replay past both ends the stream with
//! `RESOURCE_EXHAUSTED`, and the agent keeps the report spooled for its next stream. Pure code
//! on the injected clock's time.

use crate::clock::UnixMs;

/// The interval replays are counted in: the agent's, but no shorter than one live report at
/// the live rate limit.
fn counted_interval_ms(interval_ms: i64, live_per_minute: u32) -> i64 {
    let fastest_ms = 60_000 / i64::from(live_per_minute.max(1));
    interval_ms.max(fastest_ms).max(1)
}

/// What one stream may replay for its host's time away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayBudget {
    allowed: u64,
    used: u64,
}

impl ReplayBudget {
    /// The budget of a stream opened at `now` by a host last stored at `since` that reports
    /// every `interval_ms` and may send `live_per_minute` live reports.
    pub fn new(since: UnixMs, now: UnixMs, interval_ms: i64, live_per_minute: u32) -> Self {
        let interval_ms = counted_interval_ms(interval_ms, live_per_minute);
        let away_ms = now.saturating_sub(since).max(0);
        // The report collected right as the host was last seen is one more.
        let allowed = (away_ms / interval_ms) as u64 + 1;
        Self { allowed, used: 0 }
    }

    /// Takes one replayed report: from the time away while it lasts, then from the host's
    /// slack (`from_slack`, asked only then); false when neither has one left.
    pub fn take(&mut self, from_slack: impl FnOnce() -> bool) -> bool {
        if self.used >= self.allowed && !from_slack() {
            return false;
        }
        self.used += 1;
        true
    }

    /// The replays the stream was allowed for the time away.
    pub fn allowed(&self) -> u64 {
        self.allowed
    }
}

/// The replay slack one host has left, on one replica: full when first asked for, spent by
/// replays beyond a stream's time away, and grown back by one report per interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplaySlack {
    left: u32,
    /// Since when the refill counts (a partial interval carries over).
    counted_from: UnixMs,
}

impl ReplaySlack {
    /// A host not seen on this replica yet: the whole slack.
    pub fn full(slack: u32, now: UnixMs) -> Self {
        Self { left: slack, counted_from: now }
    }

    /// Takes one report of slack at `now`, after growing it back by one per `interval_ms`
    /// (counted as in [`ReplayBudget::new`]) up to `slack`; false when none is left.
    pub fn take_one(
        &mut self,
        now: UnixMs,
        interval_ms: i64,
        live_per_minute: u32,
        slack: u32,
    ) -> bool {
        let interval_ms = counted_interval_ms(interval_ms, live_per_minute);
        let grown = now.saturating_sub(self.counted_from).max(0) / interval_ms;
        let left = (i64::from(self.left) + grown).min(i64::from(slack)) as u32;
        self.counted_from =
            if left == slack { now } else { self.counted_from + grown * interval_ms };
        if left == 0 {
            self.left = 0;
            return false;
        }
        self.left = left - 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays taken from `budget` and then `slack` at `now` until refused.
    fn drain(budget: &mut ReplayBudget, slack: &mut ReplaySlack, now: UnixMs) -> u64 {
        let mut n = 0;
        while budget.take(|| slack.take_one(now, 10_000, 120, 20)) {
            n += 1;
        }
        n
    }

    #[test]
    fn an_hour_away_at_ten_seconds_allows_its_hour_of_reports_and_the_slack() {
        let hour = 3_600_000;
        let now = 1_000 + hour;
        let mut budget = ReplayBudget::new(1_000, now, 10_000, 120);
        assert_eq!(budget.allowed(), 360 + 1);
        let mut slack = ReplaySlack::full(20, now);
        assert_eq!(drain(&mut budget, &mut slack, now), 381);
        assert!(!budget.take(|| slack.take_one(now, 10_000, 120, 20)), "used up");
    }

    #[test]
    fn a_host_just_seen_gets_only_the_slack_and_a_reconnect_none_of_it() {
        let mut slack = ReplaySlack::full(20, 50_000);
        let mut budget = ReplayBudget::new(50_000, 50_000, 10_000, 120);
        assert_eq!(drain(&mut budget, &mut slack, 50_000), 21);
        // The next stream, a moment later: its time away, and no slack.
        let mut again = ReplayBudget::new(50_000, 50_001, 10_000, 120);
        assert_eq!(drain(&mut again, &mut slack, 50_001), 1);
        // A clock that moved back counts as no time away.
        assert_eq!(ReplayBudget::new(60_000, 50_000, 10_000, 120).allowed(), 1);
    }

    #[test]
    fn a_stream_that_replays_nothing_spends_no_slack() {
        let mut slack = ReplaySlack::full(20, 0);
        let mut budget = ReplayBudget::new(0, 30_000, 10_000, 120);
        assert!(budget.take(|| panic!("within the time away, the slack is not asked")));
        let mut next = ReplayBudget::new(30_000, 30_000, 10_000, 120);
        assert_eq!(drain(&mut next, &mut slack, 30_000), 21);
    }

    #[test]
    fn slack_grows_back_one_report_per_interval_up_to_the_slack() {
        let take = |slack: &mut ReplaySlack, now| slack.take_one(now, 10_000, 120, 3);
        let mut slack = ReplaySlack::full(3, 0);
        assert!(take(&mut slack, 0) && take(&mut slack, 0) && take(&mut slack, 0));
        assert!(!take(&mut slack, 9_999), "none back within the interval");
        assert!(take(&mut slack, 10_000), "one back after it");
        assert!(!take(&mut slack, 10_000));
        // 25 s later: two back, and the half interval counts toward the next.
        assert!(take(&mut slack, 35_000) && take(&mut slack, 35_000));
        assert!(!take(&mut slack, 35_000));
        assert!(take(&mut slack, 40_000), "the carried half interval completed");
        // Never more than the slack, however long away.
        let taken = (0..10).filter(|_| take(&mut slack, 10_000_000)).count();
        assert_eq!(taken, 3);
        // A clock that moved back grows nothing.
        let mut back = ReplaySlack::full(1, 50_000);
        assert!(take(&mut back, 50_000));
        assert!(!take(&mut back, 0));
    }

    #[test]
    fn a_short_claimed_interval_is_held_to_the_live_rate() {
        // 120 live reports a minute: one per 500 ms, whatever the Hello claims.
        let minute = 60_000;
        assert_eq!(ReplayBudget::new(0, minute, 1, 120).allowed(), 121);
        assert_eq!(ReplayBudget::new(0, minute, 0, 0).allowed(), 2, "a 1/min limit");
        let mut slack = ReplaySlack::full(5, 0);
        let taken = (0..5).filter(|_| slack.take_one(0, 1, 120, 5)).count();
        assert_eq!(taken, 5);
        let back = (0..5).filter(|_| slack.take_one(1_000, 1, 120, 5)).count();
        assert_eq!(back, 2, "two 500 ms intervals");
    }
}
