//! Per-key limits on the injected clock, so tests are exact: token buckets ([`RateLimiter`]:
//! enrolment attempts per source address, live reports per host), and [`LogThrottle`], one log
//! line per key per interval for what a peer can make the collector log in a loop. Both hold at
//! most a fixed number of keys, past which new keys share one slot, so a scan from ever new
//! addresses cannot grow them without bound; buckets that have refilled completely are
//! forgotten.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

use crate::clock::UnixMs;

/// Buckets above this many make `allow` forget the ones that have refilled completely (at most
/// once a second).
const SWEEP_ABOVE: usize = 10_000;

/// Most buckets a limiter holds; past that, keys it has no bucket for share one, so a scan from
/// ever new addresses costs bounded memory (and is limited as one).
pub const MAX_BUCKETS: usize = 100_000;

#[derive(Debug)]
pub struct RateLimiter<K> {
    /// Tokens per minute, which is also the burst.
    per_minute: u32,
    buckets: Mutex<Buckets<K>>,
}

#[derive(Debug)]
struct Buckets<K> {
    by_key: HashMap<K, (f64, UnixMs)>,
    /// The bucket shared by keys past [`MAX_BUCKETS`].
    overflow: (f64, UnixMs),
    swept_at: UnixMs,
}

impl<K: Eq + Hash + Clone> RateLimiter<K> {
    pub fn new(per_minute: u32) -> Self {
        let per_minute = per_minute.max(1);
        Self {
            per_minute,
            buckets: Mutex::new(Buckets {
                by_key: HashMap::new(),
                overflow: (f64::from(per_minute), UnixMs::MIN),
                swept_at: UnixMs::MIN,
            }),
        }
    }

    /// Takes one token for `key` at `now`; false when the bucket is empty.
    pub fn allow(&self, key: &K, now: UnixMs) -> bool {
        let capacity = f64::from(self.per_minute);
        let per_ms = capacity / 60_000.0;
        let refilled =
            |tokens: f64, at: UnixMs| tokens + now.saturating_sub(at).max(0) as f64 * per_ms;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let Buckets { by_key, overflow, swept_at } = &mut *buckets;
        if by_key.len() > SWEEP_ABOVE && now.saturating_sub(*swept_at) >= 1_000 {
            by_key.retain(|_, (tokens, at)| refilled(*tokens, *at) < capacity);
            *swept_at = now;
        }
        let (tokens, at) = if by_key.contains_key(key) || by_key.len() < MAX_BUCKETS {
            by_key.entry(key.clone()).or_insert((capacity, now))
        } else {
            overflow
        };
        *tokens = refilled(*tokens, *at).min(capacity);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One log line per key per interval: the first occurrence is logged, the ones after it within
/// the interval only counted, and the next line after the interval says how many were
/// suppressed. Holds at most `max_keys` keys; past that, the keys it cannot hold share one
/// slot, so a scan from many addresses costs a bounded table and still logs one line per
/// interval.
#[derive(Debug)]
pub struct LogThrottle<K> {
    interval_ms: i64,
    max_keys: usize,
    state: Mutex<Throttled<K>>,
}

#[derive(Debug)]
struct Throttled<K> {
    /// Key → (start of its current interval, occurrences suppressed since).
    keys: HashMap<K, (UnixMs, u64)>,
    /// The slot shared by keys past `max_keys`.
    overflow: Option<(UnixMs, u64)>,
    /// When expired keys were last dropped (at most once an interval).
    swept_at: UnixMs,
}

impl<K: Eq + Hash + Clone> LogThrottle<K> {
    pub fn new(interval_ms: i64, max_keys: usize) -> Self {
        Self {
            interval_ms: interval_ms.max(1),
            max_keys: max_keys.max(1),
            state: Mutex::new(Throttled {
                keys: HashMap::new(),
                overflow: None,
                swept_at: UnixMs::MIN,
            }),
        }
    }

    /// An occurrence for `key` at `now`: `Some(suppressed)` when it is to be logged, with the
    /// number of occurrences not logged since the key's last line; `None` when it is only
    /// counted.
    pub fn admit(&self, key: &K, now: UnixMs) -> Option<u64> {
        let interval = self.interval_ms;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Throttled { keys, overflow, swept_at } = &mut *state;
        if !keys.contains_key(key)
            && keys.len() >= self.max_keys
            && now.saturating_sub(*swept_at) >= interval
        {
            keys.retain(|_, (start, _)| now.saturating_sub(*start) < interval);
            *swept_at = now;
        }
        let slot = if keys.contains_key(key) || keys.len() < self.max_keys {
            keys.entry(key.clone()).or_insert((UnixMs::MIN, 0))
        } else {
            overflow.get_or_insert((UnixMs::MIN, 0))
        };
        let (start, suppressed) = slot;
        if *start != UnixMs::MIN && now.saturating_sub(*start) < interval {
            *suppressed += 1;
            return None;
        }
        let said = std::mem::take(suppressed);
        *start = now;
        Some(said)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_key_per_interval_with_the_count_suppressed() {
        let throttle = LogThrottle::new(60_000, 16);
        assert_eq!(throttle.admit(&"a", 0), Some(0), "the first occurrence is logged");
        for t in 1..=1_999 {
            assert_eq!(throttle.admit(&"a", t), None);
        }
        assert_eq!(throttle.admit(&"b", 5), Some(0), "another key has its own interval");
        assert_eq!(throttle.admit(&"a", 59_999), None);
        assert_eq!(throttle.admit(&"a", 60_000), Some(2_000), "the next line counts the rest");
        assert_eq!(throttle.admit(&"a", 60_001), None);
        assert_eq!(throttle.admit(&"a", 500_000), Some(1));
    }

    #[test]
    fn a_scan_from_many_keys_holds_a_bounded_table_and_still_logs() {
        let throttle = LogThrottle::new(60_000, 100);
        let logged = (0..100_000u32).filter(|k| throttle.admit(k, 0).is_some()).count();
        assert_eq!(logged, 101, "100 keys held, one line for all the others");
        assert_eq!(throttle.state.lock().unwrap().keys.len(), 100);
        // After the interval, expired keys make room for new ones.
        assert_eq!(throttle.admit(&200_000, 60_000), Some(0));
        let state = throttle.state.lock().unwrap();
        assert_eq!(state.keys.len(), 1);
        assert_eq!(state.overflow, Some((0, 99_900 - 1)));
    }

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

    #[test]
    fn a_scan_from_ever_new_keys_holds_a_bounded_table() {
        let limiter = RateLimiter::new(10);
        let allowed = (0..MAX_BUCKETS as u32 + 50_000).filter(|k| limiter.allow(k, 0)).count();
        assert_eq!(allowed, MAX_BUCKETS + 10, "keys past the bound share one bucket of 10");
        assert_eq!(limiter.buckets.lock().unwrap().by_key.len(), MAX_BUCKETS);
        assert!(limiter.allow(&7, 0), "a key holding a bucket keeps it");
        // Once the buckets have refilled they are forgotten, and new keys get their own again.
        assert!(limiter.allow(&u32::MAX, 60_000));
        assert_eq!(limiter.buckets.lock().unwrap().by_key.len(), 1);
    }
}
