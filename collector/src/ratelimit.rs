//! Per-key token buckets (enrolment attempts per source address, live reports per host), on the
//! injected clock so tests are exact. Buckets that have refilled completely are forgotten, so a scan from many addresses
//! cannot grow the table without bound.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

use crate::clock::UnixMs;

#[derive(Debug)]
pub struct RateLimiter<K> {
    /// Tokens per minute, which is also the burst.
    per_minute: u32,
    buckets: Mutex<HashMap<K, (f64, UnixMs)>>,
}

impl<K: Eq + Hash + Clone> RateLimiter<K> {
    pub fn new(per_minute: u32) -> Self {
        Self { per_minute: per_minute.max(1), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for `key` at `now`; false when the bucket is empty.
    pub fn allow(&self, key: &K, now: UnixMs) -> bool {
        let capacity = f64::from(self.per_minute);
        let per_ms = capacity / 60_000.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > 10_000 {
            buckets
                .retain(|_, (tokens, at)| *tokens + (now - *at).max(0) as f64 * per_ms < capacity);
        }
        let (tokens, at) = buckets.entry(key.clone()).or_insert((capacity, now));
        *tokens = (*tokens + (now - *at).max(0) as f64 * per_ms).min(capacity);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill_per_key() {
        let limiter = RateLimiter::new(3);
        let (a, b) = ("10.0.0.1", "10.0.0.2");
        assert!(limiter.allow(&a, 0));
        assert!(limiter.allow(&a, 0));
        assert!(limiter.allow(&a, 0));
        assert!(!limiter.allow(&a, 0), "burst of 3 used up");
        assert!(limiter.allow(&b, 0), "another address has its own bucket");
        assert!(!limiter.allow(&a, 19_999), "one token takes 20 s at 3/min");
        assert!(limiter.allow(&a, 20_000));
        assert!(!limiter.allow(&a, 20_001));
    }
}
