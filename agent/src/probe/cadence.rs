//! When a probe that runs an external tool (SMART, IPMI) runs it: on the first collect, then
//! once per configured interval counted from the start of the last run, the collects in
//! between answering from that run. A run that finds the tool unusable (not installed, no
//! device, not permitted) is logged once, not at every retry; the next run with data re-arms
//! the log. The probes hold a [`Cadence`] and read "now" from their [`Clock`]; the cadence
//! itself only compares instants, so it is tested without any clock.
//!
//! [`Clock`]: crate::clock::Clock

use std::time::{Duration, Instant};

/// A probe's schedule and its "unavailable" log state.
#[derive(Debug, Clone)]
pub(crate) struct Cadence {
    /// The probe's name, the `probe` field of the log line.
    probe: &'static str,
    /// What the probe reads, as the log message names it ("SMART", "IPMI").
    subject: &'static str,
    interval: Duration,
    /// When the last run started; `None` before the first.
    last_run: Option<Instant>,
    /// "Unavailable" has been logged since the last run with data.
    unavailable_logged: bool,
}

/// How a run ended, as far as the cadence cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunEnd<'a> {
    Data,
    /// The tool cannot be used here, and why.
    Unavailable(&'a str),
    Failed,
}

impl Cadence {
    /// A cadence of one run per `interval` for the probe `probe`, whose log line calls what it
    /// reads `subject`.
    pub(crate) fn new(probe: &'static str, subject: &'static str, interval: Duration) -> Self {
        Self { probe, subject, interval, last_run: None, unavailable_logged: false }
    }

    /// A run is due at `now`: none yet, `interval` or more has passed since the last one
    /// started, or `now` is before it (a clock that went backwards must not stop the probe).
    pub(crate) fn due(&self, now: Instant) -> bool {
        self.last_run.is_none_or(|last| {
            now.checked_duration_since(last).is_none_or(|since| since >= self.interval)
        })
    }

    /// A run starts at `now`; the interval counts from here.
    pub(crate) fn ran(&mut self, now: Instant) {
        self.last_run = Some(now);
    }

    /// The run ended with `end`: the first "unavailable" since the last data is logged, with
    /// the reason and how often it is retried.
    pub(crate) fn ended(&mut self, end: RunEnd<'_>) {
        match end {
            RunEnd::Unavailable(reason) if !self.unavailable_logged => {
                self.unavailable_logged = true;
                tracing::info!(
                    probe = self.probe,
                    %reason,
                    retry = %humantime::format_duration(self.interval),
                    "{} unavailable; retrying once per interval",
                    self.subject
                );
            }
            RunEnd::Data => self.unavailable_logged = false,
            RunEnd::Unavailable(_) | RunEnd::Failed => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::command::testing::logs;

    const INTERVAL: Duration = Duration::from_secs(5 * 60);

    fn cadence() -> Cadence {
        Cadence::new("ipmi", "IPMI", INTERVAL)
    }

    #[test]
    fn the_first_run_is_due_at_once() {
        assert!(cadence().due(Instant::now()));
    }

    #[test]
    fn due_again_at_the_interval_not_before() {
        let start = Instant::now();
        let mut cadence = cadence();
        cadence.ran(start);
        assert!(!cadence.due(start), "not right after the run");
        assert!(!cadence.due(start + INTERVAL - Duration::from_nanos(1)), "not before");
        assert!(cadence.due(start + INTERVAL), "exactly at the interval");
        assert!(cadence.due(start + INTERVAL + Duration::from_secs(1)), "after it");
    }

    #[test]
    fn asking_does_not_move_the_schedule() {
        let start = Instant::now();
        let mut cadence = cadence();
        cadence.ran(start);
        assert!(cadence.due(start + INTERVAL));
        assert!(cadence.due(start + INTERVAL), "only ran() starts a new interval");
    }

    #[test]
    fn the_interval_counts_from_the_last_run() {
        let start = Instant::now();
        let mut cadence = cadence();
        cadence.ran(start);
        // A run that starts late (the collect came after the interval).
        let late = start + INTERVAL + Duration::from_secs(60);
        assert!(cadence.due(late));
        cadence.ran(late);
        assert!(!cadence.due(start + 2 * INTERVAL), "not on the original grid");
        assert!(!cadence.due(late + INTERVAL - Duration::from_nanos(1)));
        assert!(cadence.due(late + INTERVAL));
    }

    #[test]
    fn a_clock_that_went_backwards_makes_a_run_due() {
        let start = Instant::now() + Duration::from_secs(3600);
        let mut cadence = cadence();
        cadence.ran(start);
        assert!(cadence.due(start - Duration::from_nanos(1)));
        assert!(cadence.due(start - Duration::from_secs(60)));
    }

    #[test]
    fn a_zero_interval_is_always_due() {
        let start = Instant::now();
        let mut cadence = Cadence::new("smart", "SMART", Duration::ZERO);
        cadence.ran(start);
        assert!(cadence.due(start));
    }

    #[test]
    fn unavailable_is_logged_once_then_again_after_data() {
        let mut cadence = Cadence::new("smart", "SMART", Duration::from_secs(30 * 60));
        let first = logs(|| {
            cadence.ended(RunEnd::Unavailable("/usr/sbin/smartctl not found"));
            cadence.ended(RunEnd::Unavailable("/usr/sbin/smartctl not found"));
            cadence.ended(RunEnd::Failed);
            cadence.ended(RunEnd::Unavailable("another reason"));
        });
        assert_eq!(first.lines().count(), 1, "{first}");
        assert!(
            first.contains(
                "SMART unavailable; retrying once per interval probe=\"smart\" \
                 reason=/usr/sbin/smartctl not found retry=30m"
            ),
            "{first}"
        );

        let after_data = logs(|| {
            cadence.ended(RunEnd::Data);
            cadence.ended(RunEnd::Unavailable("no devices"));
            cadence.ended(RunEnd::Unavailable("no devices"));
        });
        assert_eq!(after_data.matches("SMART unavailable").count(), 1, "{after_data}");
        assert!(after_data.contains("reason=no devices"), "{after_data}");
    }

    #[test]
    fn failures_neither_log_nor_re_arm_the_log() {
        let mut cadence = cadence();
        let log = logs(|| {
            cadence.ended(RunEnd::Failed);
            cadence.ended(RunEnd::Unavailable("no IPMI device"));
            cadence.ended(RunEnd::Failed);
            cadence.ended(RunEnd::Unavailable("no IPMI device"));
        });
        assert_eq!(log.lines().count(), 1, "{log}");
        assert!(log.contains("IPMI unavailable; retrying once per interval"), "{log}");
        assert!(log.contains("probe=\"ipmi\""), "{log}");
        assert!(log.contains("retry=5m"), "{log}");
    }
}
