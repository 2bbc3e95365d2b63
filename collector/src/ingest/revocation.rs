//! Which hosts are revoked, as every open stream needs to know within seconds.
//!
//! Revocation is written to the store by whichever replica the admin talked to; each replica
//! polls the store (default every 2 s, and at once after a revocation through it: see
//! [`RevocationPoll`]) and publishes the set on a watch channel, so a stream already open on
//! any replica ends within one poll interval. Polling the store, rather than
//! messaging between replicas, keeps replicas stateless and unaware of each other.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::watch;

use crate::ids::HostId;
use crate::store::{Store, StoreResult};
use crate::tasks::{BackgroundTask, TaskOutcome};

pub type RevokedSet = Arc<HashSet<HostId>>;

#[derive(Debug, Clone)]
pub struct Revocations {
    rx: watch::Receiver<RevokedSet>,
}

/// The background task that keeps [`Revocations`] fresh: each activation reads the revoked
/// hosts from the store and publishes the set when it changed. Runs every
/// `ingest.revocation_poll`, and at once when an admin revokes a host through this replica.
#[derive(Debug)]
pub struct RevocationPoll {
    store: Arc<dyn Store>,
    tx: watch::Sender<RevokedSet>,
}

impl RevocationPoll {
    /// Reads the revoked hosts now; true when the set changed.
    pub async fn poll(&self) -> StoreResult<bool> {
        let set: HashSet<HostId> = self.store.revoked_hosts().await?.into_iter().collect();
        Ok(self.tx.send_if_modified(|current| {
            let changed = **current != set;
            if changed {
                *current = Arc::new(set);
            }
            changed
        }))
    }
}

#[async_trait::async_trait]
impl BackgroundTask for RevocationPoll {
    fn name(&self) -> &'static str {
        "revocation"
    }

    async fn activate(&mut self) -> TaskOutcome {
        match self.poll().await {
            Ok(changed) => {
                let count = self.tx.borrow().len();
                let what = if changed { "changed" } else { "unchanged" };
                TaskOutcome::ok(format!("revoked hosts: {count} ({what})"))
            }
            Err(err) => {
                tracing::warn!(error = %err, "could not refresh revoked hosts");
                TaskOutcome::error(err.to_string())
            }
        }
    }
}

impl Revocations {
    /// Loads the current set (empty when the store cannot say yet: the first poll fills it)
    /// and returns it with the task that keeps it fresh, for the task driver.
    pub async fn load(store: Arc<dyn Store>) -> (Self, RevocationPoll) {
        let initial = store.revoked_hosts().await.unwrap_or_default();
        let (tx, rx) = watch::channel(Arc::new(initial.into_iter().collect::<HashSet<_>>()));
        (Self { rx }, RevocationPoll { store, tx })
    }

    pub fn is_revoked(&self, host: HostId) -> bool {
        self.rx.borrow().contains(&host)
    }

    pub fn subscribe(&self) -> watch::Receiver<RevokedSet> {
        self.rx.clone()
    }
}
