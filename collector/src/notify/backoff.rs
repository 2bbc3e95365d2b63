//! When the outbox tries a failed delivery again: exponential from 1 s, doubling to a 5 min
//! cap, with ±20 % jitter so that the events of a receiver that was down do not all come back
//! at the same instant. The jitter is derived from a SHA-256 of the event id and the attempt
//! count rather than drawn at random, so tests are exact and collector replicas that share an
//! outbox compute the same schedule. Pure.

use ring::digest;

/// The delay after the first failed attempt.
pub const INITIAL_DELAY_MS: i64 = 1_000;
/// The cap of the un-jittered delay; with jitter a delay is at most 6 min.
pub const MAX_DELAY_MS: i64 = 300_000;
/// The jitter: each delay is moved by up to this share of itself, either way.
pub const JITTER_PERCENT: i64 = 20;

/// The un-jittered delay after `attempts` failed attempts (0 counts as 1): 1 s, 2 s, 4 s, …
/// capped at [`MAX_DELAY_MS`].
pub fn base_delay_ms(attempts: u32) -> i64 {
    let doublings = attempts.saturating_sub(1).min(31);
    INITIAL_DELAY_MS.saturating_mul(1 << doublings).min(MAX_DELAY_MS)
}

/// When to try `event_id` again after `attempts` failed attempts, the one that just failed
/// included: `now_ms` plus [`base_delay_ms`] moved by a jitter within ±[`JITTER_PERCENT`] that
/// depends only on `event_id` and `attempts`.
pub fn next_attempt_at(attempts: u32, now_ms: i64, event_id: &str) -> i64 {
    let base = base_delay_ms(attempts);
    let spread = base * JITTER_PERCENT / 100;
    // Uniform enough over [-spread, +spread]: 2·spread + 1 ≤ 120 001 is tiny next to 2^64.
    let offset = (jitter_seed(attempts, event_id) % (2 * spread as u64 + 1)) as i64 - spread;
    now_ms.saturating_add(base + offset)
}

/// The first 8 bytes, big-endian, of SHA-256(event_id ‖ 0x00 ‖ attempts as u32 big-endian).
fn jitter_seed(attempts: u32, event_id: &str) -> u64 {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(event_id.as_bytes());
    ctx.update(&[0]);
    ctx.update(&attempts.to_be_bytes());
    let hash = ctx.finish();
    let mut seed = [0u8; 8];
    seed.copy_from_slice(&hash.as_ref()[..8]);
    u64::from_be_bytes(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_496_800_000;

    #[test]
    fn base_delays_double_to_the_cap() {
        let delays: Vec<i64> = (0..=12).map(base_delay_ms).collect();
        assert_eq!(
            delays,
            [
                1_000, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000,
                300_000, 300_000, 300_000
            ]
        );
        assert_eq!(base_delay_ms(u32::MAX), MAX_DELAY_MS);
    }

    /// Expected values computed independently:
    /// `python3 -c 'import hashlib,struct
    /// for a in range(1,13):
    ///   b=min(1000*2**(a-1),300000); s=b*20//100
    ///   h=int.from_bytes(hashlib.sha256(b"INC-000042/7\0"+struct.pack(">I",a)).digest()[:8],"big")
    ///   print(b+h%(2*s+1)-s)'`
    #[test]
    fn delays_are_exact_and_jittered_within_twenty_percent() {
        let delays: Vec<i64> =
            (1..=12).map(|a| next_attempt_at(a, NOW, "INC-000042/7") - NOW).collect();
        assert_eq!(
            delays,
            [
                805, 2_214, 4_201, 9_522, 12_982, 37_790, 65_673, 111_989, 305_292, 267_727,
                248_889, 284_836
            ]
        );
        for (attempts, delay) in (1..=12).zip(&delays) {
            let base = base_delay_ms(attempts);
            assert!((base * 4 / 5..=base * 6 / 5).contains(delay), "{attempts}: {delay}");
        }
    }

    #[test]
    fn jitter_differs_between_events_and_is_deterministic() {
        let at = |id: &str| next_attempt_at(10, NOW, id);
        assert_eq!(at("INC-000042/7"), at("INC-000042/7"));
        let distinct: std::collections::BTreeSet<i64> =
            (0..50).map(|i| at(&format!("INC-{i:06}/1"))).collect();
        assert!(distinct.len() > 40, "{distinct:?}");
        assert!(distinct.iter().all(|t| (NOW + 240_000..=NOW + 360_000).contains(t)));
    }

    #[test]
    fn never_overflows() {
        assert_eq!(next_attempt_at(u32::MAX, i64::MAX - 10, "x"), i64::MAX);
    }
}
