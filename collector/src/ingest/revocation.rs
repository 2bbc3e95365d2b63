//! Which hosts are revoked, as every open stream needs to know within seconds.
//!
//! Revocation is written to the store by whichever replica the admin talked to; each replica
//! polls the store (default every 2 s) and publishes the set on a watch channel, so a stream
//! already open on any replica ends within one poll interval. Polling the store, rather than
//! messaging between replicas, keeps replicas stateless and unaware of each other.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::ids::HostId;
use crate::store::Store;

pub type RevokedSet = Arc<HashSet<HostId>>;

#[derive(Debug, Clone)]
pub struct Revocations {
    rx: watch::Receiver<RevokedSet>,
}

impl Revocations {
    /// Loads the current set, then keeps it fresh every `poll` until the process ends.
    pub async fn spawn(store: Arc<dyn Store>, poll: Duration) -> Self {
        let initial = store.revoked_hosts().await.unwrap_or_default();
        let (tx, rx) = watch::channel(Arc::new(initial.into_iter().collect::<HashSet<_>>()));
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(poll);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                match store.revoked_hosts().await {
                    Ok(hosts) => {
                        let set: HashSet<HostId> = hosts.into_iter().collect();
                        tx.send_if_modified(|current| {
                            let changed = **current != set;
                            if changed {
                                *current = Arc::new(set);
                            }
                            changed
                        });
                    }
                    Err(err) => tracing::warn!(error = %err, "could not refresh revoked hosts"),
                }
                if tx.is_closed() {
                    return;
                }
            }
        });
        Self { rx }
    }

    pub fn is_revoked(&self, host: HostId) -> bool {
        self.rx.borrow().contains(&host)
    }

    pub fn subscribe(&self) -> watch::Receiver<RevokedSet> {
        self.rx.clone()
    }
}
