//! Keeping the client certificate fresh while the agent runs: when to renew (at the time the
//! collector set, plus jitter), re-checking the wall clock at least hourly (the monotonic clock
//! stops while a machine is suspended; a certificate's validity does not), noticing a renewal or
//! re-enrolment done by someone else, and retrying a failed renewal with backoff. The renewal
//! itself runs over its own connection ([`enroll::renew`]); the report stream is reconnected by
//! the caller once a new certificate is in place.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::enroll::{self, EnrollError, min_delay_after_renewal, renewal_delay, rfc3339};
use crate::identity::{IdentityMeta, TlsPaths};
use crate::run::unix_ms;

/// Longest sleep before the renewal time is checked against the wall clock again.
const RENEW_RECHECK: Duration = Duration::from_secs(3600);

pub type Renewing = Pin<Box<dyn Future<Output = Result<IdentityMeta, EnrollError>>>>;

/// When (ms since the Unix epoch) to renew `meta`'s certificate, with fresh jitter.
fn renewal_due(meta: &IdentityMeta, rng: &mut impl Rng) -> i64 {
    let now = unix_ms();
    let delay =
        renewal_delay(now, meta.renew_after_unix_ms, meta.not_after_unix_ms, rng.random::<f64>());
    now.saturating_add(delay.as_millis() as i64)
}

/// The next wake-up for the renewal timer: the due time, or sooner to re-check the wall clock.
fn renewal_wake(due_unix_ms: i64) -> Instant {
    let until_due = Duration::from_millis(due_unix_ms.saturating_sub(unix_ms()).max(0) as u64);
    Instant::now() + until_due.min(RENEW_RECHECK)
}

pub struct Renewal {
    paths: TlsPaths,
    backoff: Backoff,
    due_unix_ms: i64,
    /// The identity `due_unix_ms` was computed for.
    scheduled: IdentityMeta,
    /// When the timer next wakes.
    pub wake: Instant,
    /// The renewal in flight, if any.
    pub running: Option<Renewing>,
}

impl Renewal {
    pub fn new(paths: &TlsPaths, meta: &IdentityMeta, backoff: Backoff) -> Self {
        let due_unix_ms = renewal_due(meta, &mut rand::rng());
        Self {
            paths: paths.clone(),
            backoff,
            due_unix_ms,
            scheduled: meta.clone(),
            wake: renewal_wake(due_unix_ms),
            running: None,
        }
    }

    /// The timer fired: reschedule for an identity renewed elsewhere, or start renewing at the
    /// collector `url` (the one the agent reports to now).
    pub fn on_wake(&mut self, url: &str) {
        let now = unix_ms();
        match self.paths.load_meta() {
            // Renewed or re-enrolled by someone else since it was scheduled.
            Ok(current) if current != self.scheduled && current.renew_after_unix_ms > now => {
                self.due_unix_ms = renewal_due(&current, &mut rand::rng());
                self.scheduled = current;
            }
            _ if now >= self.due_unix_ms => {
                let (url, paths) = (url.to_owned(), self.paths.clone());
                self.running = Some(Box::pin(async move { enroll::renew(&url, &paths).await }));
            }
            _ => {}
        }
        self.wake = renewal_wake(self.due_unix_ms);
    }

    /// The renewal finished. Returns true when a new certificate is in place (the caller then
    /// reconnects with it).
    pub fn on_done(&mut self, result: Result<IdentityMeta, EnrollError>) -> bool {
        self.running = None;
        let renewed = match result {
            Ok(renewed) => {
                self.backoff.reset();
                let now = unix_ms();
                let floor = min_delay_after_renewal(now, renewed.not_after_unix_ms);
                self.due_unix_ms = renewal_due(&renewed, &mut rand::rng())
                    .max(now.saturating_add(floor.as_millis() as i64));
                tracing::info!(
                    host_id = %renewed.host_id,
                    next_renewal = %rfc3339(self.due_unix_ms),
                    "certificate renewed; valid until {}",
                    rfc3339(renewed.not_after_unix_ms)
                );
                self.scheduled = renewed;
                true
            }
            Err(err) => {
                let delay = self.backoff.next_delay(&mut rand::rng());
                let now = unix_ms();
                let expired =
                    self.paths.load_meta().map(|m| now > m.not_after_unix_ms).unwrap_or(false);
                if expired && err.status_code() == Some(tonic::Code::Unauthenticated) {
                    tracing::error!(
                        attempt = self.backoff.attempt(),
                        reason = %err,
                        "certificate expired beyond the grace period: re-enroll with a new \
                         token; retrying in {:.1}s",
                        delay.as_secs_f64()
                    );
                } else {
                    tracing::warn!(
                        attempt = self.backoff.attempt(),
                        expired,
                        "certificate renewal failed: {err}; retrying in {:.1}s",
                        delay.as_secs_f64()
                    );
                }
                self.due_unix_ms = now.saturating_add(delay.as_millis() as i64);
                false
            }
        };
        self.wake = renewal_wake(self.due_unix_ms);
        renewed
    }
}
