//! How many replayed reports one stream may carry. A replayed report is one the agent spooled
//! while it could not reach a collector, so a host cannot honestly have more of them than it
//! collected while away: one per report interval since its last stored report (or since it
//! was enrolled, when it never reported), plus `ingest.replay_slack_reports` for the reports
//! in flight when its last stream broke. The interval is the agent's own (from its Hello), but
//! never taken as shorter than the live rate limit allows, so a host claiming a 1 s interval
//! gains nothing. [`ReplayBudget`] is fixed when the stream opens; a replay past it ends the
//! stream with `RESOURCE_EXHAUSTED` and the agent keeps the report spooled for its next stream.
//! Pure code on the injected clock's time.

use crate::clock::UnixMs;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayBudget {
    allowed: u64,
    used: u64,
}

impl ReplayBudget {
    /// The budget of a stream opened at `now` by a host last stored at `since` that reports
    /// every `interval_ms` and may send `live_per_minute` live reports.
    pub fn new(
        since: UnixMs,
        now: UnixMs,
        interval_ms: i64,
        live_per_minute: u32,
        slack: u32,
    ) -> Self {
        let fastest_ms = 60_000 / i64::from(live_per_minute.max(1));
        let interval_ms = interval_ms.max(fastest_ms).max(1);
        let away_ms = now.saturating_sub(since).max(0);
        // The report collected right as the host was last seen is one more.
        let allowed = (away_ms / interval_ms) as u64 + 1 + u64::from(slack);
        Self { allowed, used: 0 }
    }

    /// Takes one replayed report; false when the stream has used its budget.
    pub fn take(&mut self) -> bool {
        if self.used >= self.allowed {
            return false;
        }
        self.used += 1;
        true
    }

    pub fn allowed(&self) -> u64 {
        self.allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(budget: &mut ReplayBudget) -> u64 {
        let mut n = 0;
        while budget.take() {
            n += 1;
        }
        n
    }

    #[test]
    fn an_hour_away_at_ten_seconds_allows_its_hour_of_reports() {
        let hour = 3_600_000;
        let mut budget = ReplayBudget::new(1_000, 1_000 + hour, 10_000, 120, 20);
        assert_eq!(budget.allowed(), 360 + 1 + 20);
        assert_eq!(drain(&mut budget), 381);
        assert!(!budget.take(), "used up");
    }

    #[test]
    fn a_host_just_seen_gets_only_the_slack() {
        let mut budget = ReplayBudget::new(50_000, 50_000, 10_000, 120, 20);
        assert_eq!(drain(&mut budget), 21);
        // A clock that moved back counts as no time away.
        assert_eq!(ReplayBudget::new(60_000, 50_000, 10_000, 120, 0).allowed(), 1);
    }

    #[test]
    fn a_short_claimed_interval_is_held_to_the_live_rate() {
        // 120 live reports a minute: one per 500 ms, whatever the Hello claims.
        let minute = 60_000;
        assert_eq!(ReplayBudget::new(0, minute, 1, 120, 0).allowed(), 121);
        assert_eq!(ReplayBudget::new(0, minute, 0, 0, 0).allowed(), 2, "a 1/min limit");
    }
}
