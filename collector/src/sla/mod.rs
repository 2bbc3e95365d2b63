//! SLA clocks and escalation. Every incident carries a response and a resolution deadline,
//! computed from its opening, its level and its customer's contract ([`contract`]) on the
//! contract's calendar ([`calendar`]: support hours, holidays, the customer's time zone),
//! paused while a maintenance window covers it. The pure rule engine ([`deadlines`]) decides
//! warnings, escalations and outcomes; the sweep here feeds it the incidents that are due and
//! applies its decisions through the store — timeline entries that enter the notification
//! outbox in the same transaction.
//!
//! The sweep runs in one place at a time: only the holder of the store's runner lease
//! ([`crate::lease`]) sweeps, so several collectors never double-escalate, and one that takes
//! over resumes from the state in the store. Only incidents whose next check is due are read
//! (`incidents.sla_check_at_ms`, indexed), so a sweep over a large quiet fleet is cheap.

pub mod calendar;
pub mod contract;
pub mod deadlines;

use std::collections::HashMap;
use std::sync::Arc;

use crate::clock::{SharedClock, UnixMs};
use crate::ids::CustomerId;
use crate::maintenance::{Maintenance, Scope};
use crate::store::{Fence, Store, StoreResult, TimelineKind};
use contract::{Contract, Terms};

/// Most incidents one sweep looks at, so one sweep holds the store's writer for well under
/// 100 ms and ingest's group commits interleave; a larger backlog (a contract change for
/// thousands of open incidents) is worked off by the sweeps that follow at once.
pub const SWEEP_LIMIT: u32 = 2_000;

/// How far past now maintenance windows are looked up for pausing clocks.
const PAUSE_HORIZON_MS: i64 = 60 * 86_400_000;

/// Every customer's validated contract; customers without one get the default.
#[derive(Debug, Clone)]
pub struct Contracts {
    default: Arc<Terms>,
    by_customer: HashMap<CustomerId, Arc<Terms>>,
}

impl Contracts {
    /// Loads every stored contract. One that no longer validates (a receiver removed from
    /// the config since) is logged and its customer falls back to the default contract with
    /// the contract's own time targets kept where possible.
    pub async fn load(store: &dyn Store, receivers: &[&str]) -> StoreResult<Self> {
        let default = Arc::new(Terms::new(Contract::default(), receivers).expect("valid default"));
        let mut by_customer = HashMap::new();
        for row in store.list_contracts().await? {
            let parsed = serde_json::from_str::<Contract>(&row.body)
                .map_err(|e| e.to_string())
                .and_then(|c| Terms::new(c, receivers).map_err(|e| e.to_string()));
            match parsed {
                Ok(terms) => {
                    by_customer.insert(row.customer_id, Arc::new(terms));
                }
                Err(err) => {
                    tracing::error!(customer = %row.customer_id, error = %err, "stored contract is invalid; using the default contract for this customer until it is fixed");
                }
            }
        }
        Ok(Self { default, by_customer })
    }

    pub fn for_customer(&self, customer: CustomerId) -> &Terms {
        self.by_customer.get(&customer).unwrap_or(&self.default)
    }
}

/// What one sweep did; `looked_at == SWEEP_LIMIT` means more may be due.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepStats {
    pub looked_at: u64,
    pub applied: u64,
    pub warnings: u64,
    pub escalations: u64,
}

/// Looks at up to [`SWEEP_LIMIT`] incidents whose SLA state is due, oldest first, and applies
/// what follows. The caller holds the runner lease; its writes carry `fence`.
pub async fn sweep(
    store: &dyn Store,
    clock: &SharedClock,
    maintenance: &Maintenance,
    receivers: &[&str],
    fence: &Fence,
) -> StoreResult<SweepStats> {
    let now: UnixMs = clock.now_ms();
    let due = store.sla_due(now, SWEEP_LIMIT).await?;
    if due.is_empty() {
        return Ok(SweepStats::default());
    }
    let contracts = Contracts::load(store, receivers).await?;
    let mut stats = SweepStats { looked_at: due.len() as u64, ..SweepStats::default() };
    let mut batch = Vec::with_capacity(due.len());
    for row in due {
        let terms = contracts.for_customer(row.customer_id);
        let scope =
            Scope { customer_id: row.customer_id, site_id: row.site_id, host_id: row.host_id };
        let start = row.sla.opened_at_ms;
        let paused = maintenance.paused(scope, &row.rule, start, start.max(now) + PAUSE_HORIZON_MS);
        let update = deadlines::evaluate(&row.sla, terms, &paused, now);
        for entry in &update.entries {
            match entry.kind {
                TimelineKind::Warning => stats.warnings += 1,
                TimelineKind::Escalated => stats.escalations += 1,
                _ => {}
            }
        }
        batch.push((row.sla, update));
    }
    stats.applied = store.apply_sla(&batch, now, fence).await?;
    if stats.warnings + stats.escalations > 0 {
        tracing::info!(
            warnings = stats.warnings,
            escalations = stats.escalations,
            looked_at = stats.looked_at,
            "SLA sweep"
        );
    }
    Ok(stats)
}
