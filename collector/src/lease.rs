//! The runner lease: work that exactly one collector may do at a time (the SLA sweep,
//! notification fan-out and delivery) runs only on the holder of a lease in the store. The
//! holder renews it on every tick; when it stops, another replica takes over once the lease
//! has expired and resumes from the state in the store.
//!
//! A replica's holder id is kept in its data directory (`replica.id`), so a restarted
//! collector is the same holder and resumes at once instead of waiting out its own lease.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::SharedClock;
use crate::store::{Fence, Store, StoreResult};

/// The fence of the runner lease while this replica holds it, shared by the tasks that write
/// as its holder (the SLA sweep sets it, notifications read it).
pub type SharedFence = Arc<std::sync::Mutex<Option<Fence>>>;

/// The one lease all single-runner work shares.
pub const RUNNER_LEASE: &str = "runner";

#[derive(Debug, Clone)]
pub struct Lease {
    store: Arc<dyn Store>,
    clock: SharedClock,
    holder: String,
    ttl: Duration,
}

impl Lease {
    pub fn new(store: Arc<dyn Store>, clock: SharedClock, holder: String, ttl: Duration) -> Self {
        Self { store, clock, holder, ttl }
    }

    /// Takes or renews the lease: the fence this replica's writes carry while it holds it,
    /// None while another does.
    pub async fn hold(&self) -> StoreResult<Option<Fence>> {
        let now = self.clock.now_ms();
        self.store.acquire_lease(RUNNER_LEASE, &self.holder, now, self.ttl.as_millis() as i64).await
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }
}

/// This replica's holder id: read from `<data_dir>/replica.id`, created at first start.
pub fn replica_id(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join("replica.id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
        Ok(_) | Err(_) => {
            let id = uuid::Uuid::new_v4().to_string();
            // Durable (temporary file, fsync, rename, directory fsync): a replica that came
            // back after a power cut with another id would wait out its own lease.
            vigil_tls::pem::write_file(&path, format!("{id}\n").as_bytes(), 0o600)
                .map_err(std::io::Error::other)?;
            Ok(id)
        }
    }
}
