//! What the collector tells systemd while it runs (`Type=notify`, see
//! [`vigil_config::sd_notify`]): `WATCHDOG=1` from a loop that first asks the store to answer
//! (so a collector whose runtime or store hangs stops feeding the watchdog and is restarted),
//! and every 10 s, when it changed, a `STATUS=` line with the number of agents connected.
//! `READY=1` and `STOPPING=1` are sent by `main` around [`crate::server::run`].

use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use vigil_config::sd_notify::Notifier;

use crate::store::Store;

/// How often the status line is refreshed (sent only when it changed).
pub const STATUS_EVERY: Duration = Duration::from_secs(10);

/// The status line: how many agents stream to this collector.
pub fn status_line() -> String {
    match crate::events::streams_open() {
        1 => "1 agent connected".to_owned(),
        n => format!("{n} agents connected"),
    }
}

/// Starts the watchdog and status loop; does nothing when not run under systemd.
pub fn spawn(notifier: Arc<Notifier>, store: Arc<dyn Store>) {
    if !notifier.is_enabled() {
        return;
    }
    tokio::spawn(async move {
        let mut status = tokio::time::interval(STATUS_EVERY);
        status.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let watchdog_every = notifier.watchdog_interval();
        let mut watchdog =
            tokio::time::interval(watchdog_every.unwrap_or(Duration::from_secs(3600)));
        watchdog.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = status.tick() => notifier.status(&status_line()),
                _ = watchdog.tick(), if watchdog_every.is_some() => {
                    let every = watchdog_every.unwrap_or_default();
                    match tokio::time::timeout(every, store.ping()).await {
                        Ok(Ok(())) => notifier.watchdog(),
                        // An answer, even an error, shows the store is not hung; the error is
                        // for the operator (and /readyz), not a reason to restart.
                        Ok(Err(err)) => {
                            tracing::warn!(error = %err, "store ping failed (watchdog still fed)");
                            notifier.watchdog();
                        }
                        Err(_) => tracing::error!(
                            after = ?every,
                            "store did not answer a ping: not feeding the systemd watchdog"
                        ),
                    }
                }
            }
        }
    });
}
