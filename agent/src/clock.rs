//! The agent's one notion of monotonic "now": the [`Clock`] that probes keeping time between
//! runs read instead of calling [`Instant::now`] themselves (SMART and IPMI, to know when their
//! next run is due; disk I/O, for the time between two samples). It is injectable so that
//! interval logic is tested by moving a `testing::FakeClock` by hand, without sleeping. Wall
//! time (report timestamps, certificate lifetimes) is not this module's; nor is the kernel's
//! time synchronisation, which the time-sync probe in `probe::clock` reports.

use std::time::Instant;

/// Where "now" comes from; [`SystemClock`] outside tests.
pub trait Clock: Send {
    fn now(&self) -> Instant;
}

/// [`Instant::now`].
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock for tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use super::Clock;

    /// A clock that only moves when the test says so; clones share one time, so a test keeps
    /// one and hands a clone to the probe.
    #[derive(Clone, Debug)]
    pub(crate) struct FakeClock(Arc<Mutex<Instant>>);

    impl FakeClock {
        pub(crate) fn new() -> Self {
            Self(Arc::new(Mutex::new(Instant::now())))
        }
        pub(crate) fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += by;
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> Instant {
            *self.0.lock().unwrap()
        }
    }

    #[test]
    fn moves_only_when_advanced_and_clones_share_the_time() {
        let clock = FakeClock::new();
        let probe_side = clock.clone();
        let start = probe_side.now();
        assert_eq!(probe_side.now(), start);
        clock.advance(Duration::from_secs(90));
        assert_eq!(probe_side.now(), start + Duration::from_secs(90));
    }
}
