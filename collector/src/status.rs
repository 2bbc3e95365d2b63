//! A host's status as operators see it, judged on the collector's clock only: `up` while
//! reports arrive, `silent` once none came for max(3 × the agent's interval, a minimum),
//! `stopped` after the agent said goodbye, `new` before the first report. Pure, so the rule is
//! tested without servers; fault classification builds its liveness rule on the same judgement.

use std::time::Duration;

use serde::Serialize;

use crate::clock::UnixMs;
use crate::store::HostRow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostStatus {
    New,
    Up,
    Silent,
    Stopped,
    /// Cut off by an admin (or replaced by a re-installed machine's new identity).
    Revoked,
}

impl HostStatus {
    pub const ALL: [HostStatus; 5] =
        [Self::New, Self::Up, Self::Silent, Self::Stopped, Self::Revoked];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Up => "up",
            Self::Silent => "silent",
            Self::Stopped => "stopped",
            Self::Revoked => "revoked",
        }
    }
}

/// How long without a report makes this host silent.
pub fn silence_after(interval_seconds: u32, min_silence: Duration) -> Duration {
    (Duration::from_secs(u64::from(interval_seconds)) * 3).max(min_silence)
}

pub fn host_status(host: &HostRow, now: UnixMs, min_silence: Duration) -> HostStatus {
    if host.revoked_at_ms.is_some() {
        return HostStatus::Revoked;
    }
    let Some(last_seen) = host.last_seen_ms else { return HostStatus::New };
    if host.goodbye_at_ms.is_some_and(|bye| bye >= last_seen) {
        return HostStatus::Stopped;
    }
    let limit = silence_after(host.interval_seconds, min_silence).as_millis() as i64;
    if now - last_seen > limit { HostStatus::Silent } else { HostStatus::Up }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{CustomerId, HostId, SiteId};

    fn host(last_seen: Option<i64>, goodbye: Option<i64>) -> HostRow {
        HostRow {
            id: HostId::new_random(),
            customer_id: CustomerId::new_random(),
            customer: "default".into(),
            site_id: SiteId::new_random(),
            site: "default".into(),
            hostname: "srv01".into(),
            created_at_ms: 0,
            last_seen_ms: last_seen,
            interval_seconds: 10,
            agent_version: "0.1.0".into(),
            goodbye_reason: goodbye.map(|_| "stop".into()),
            goodbye_at_ms: goodbye,
            machine_id: String::new(),
            revoked_at_ms: None,
            replaced_by: None,
        }
    }

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn silence_needs_the_minimum_even_for_fast_agents() {
        let h = host(Some(1_000), None);
        assert_eq!(host_status(&h, 1_000 + 60_000, MIN), HostStatus::Up);
        assert_eq!(host_status(&h, 1_000 + 60_001, MIN), HostStatus::Silent);
    }

    #[test]
    fn slow_agents_get_three_intervals() {
        let mut h = host(Some(0), None);
        h.interval_seconds = 60;
        assert_eq!(host_status(&h, 179_000, MIN), HostStatus::Up);
        assert_eq!(host_status(&h, 180_001, MIN), HostStatus::Silent);
    }

    #[test]
    fn goodbye_means_stopped_until_next_report() {
        assert_eq!(host_status(&host(Some(1_000), Some(2_000)), 900_000, MIN), HostStatus::Stopped);
        assert_eq!(host_status(&host(Some(3_000), Some(2_000)), 3_000, MIN), HostStatus::Up);
        assert_eq!(host_status(&host(None, None), 3_000, MIN), HostStatus::New);
    }

    #[test]
    fn revoked_wins_over_everything() {
        let mut h = host(Some(1_000), None);
        h.revoked_at_ms = Some(2_000);
        assert_eq!(host_status(&h, 1_000, MIN), HostStatus::Revoked);
    }
}
