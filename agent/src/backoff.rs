//! Reconnection backoff: exponential with jitter, so a fleet that lost its collector does not
//! reconnect in lock-step when it comes back. Pure: the random source is passed in, so tests
//! are exact.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max: max.max(initial), attempt: 0 }
    }

    /// The ceiling for the current attempt: initial × 2^attempt, capped at max.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The next delay ("equal jitter": half the ceiling plus a random part of the other half)
    /// and advances the attempt counter.
    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling();
        let half = ceiling / 2;
        let jitter = rng.random_range(0..=half.as_millis() as u64);
        self.attempt = self.attempt.saturating_add(1);
        half + Duration::from_millis(jitter)
    }

    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Back to the initial delay (after a connection that worked).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn grows_exponentially_within_bounds_and_resets() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let mut ceilings = Vec::new();
        for _ in 0..9 {
            let ceiling = b.ceiling();
            let delay = b.next_delay(&mut rng);
            assert!(delay >= ceiling / 2 && delay <= ceiling, "{delay:?} vs {ceiling:?}");
            ceilings.push(ceiling.as_secs());
        }
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_secs(1));
    }

    #[test]
    fn jitter_spreads_delays() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let delays: std::collections::BTreeSet<_> = (0..20)
            .map(|_| {
                let mut b = Backoff::new(Duration::from_secs(8), Duration::from_secs(8));
                b.next_delay(&mut rng)
            })
            .collect();
        assert!(delays.len() > 10, "delays should differ: {delays:?}");
    }
}
