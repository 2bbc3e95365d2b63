//! Maintenance windows as the incident stage sees them: every stored window with its parsed
//! schedule, held in memory and reloaded from the store after each change through the API and
//! on every sweep (so a window created on another replica takes effect within one sweep).
//! Findings covered by a window are recorded but open no incident and notify no one.

use std::sync::{Arc, RwLock};

use crate::clock::UnixMs;
use crate::ids::{CustomerId, HostId, SiteId};
use crate::schedule::{Recurrence, Schedule};
use crate::store::{MaintenanceWindowRow, Store, StoreResult};

/// Where a finding is: what a window's scope is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    pub customer_id: CustomerId,
    pub site_id: SiteId,
    pub host_id: Option<HostId>,
}

#[derive(Debug, Clone)]
struct Window {
    row: MaintenanceWindowRow,
    schedule: Schedule,
}

impl Window {
    fn covers(&self, scope: Scope, rule: &str, now: UnixMs) -> bool {
        let row = &self.row;
        row.customer_id == scope.customer_id
            && row.site_id.is_none_or(|site| site == scope.site_id)
            && row.host_id.is_none_or(|host| Some(host) == scope.host_id)
            && (row.rules.is_empty() || row.rules.iter().any(|r| r == rule))
            && self.schedule.is_active(now)
    }
}

/// Parses a stored row's schedule.
pub fn schedule_of(row: &MaintenanceWindowRow) -> Result<Schedule, crate::schedule::ScheduleError> {
    let recurrence = match row.recurrence.as_str() {
        "daily" => Recurrence::Daily,
        "weekly" => Recurrence::Weekly,
        "monthly" => Recurrence::Monthly,
        _ => Recurrence::Once,
    };
    let duration = vigil_config::duration::format(std::time::Duration::from_millis(
        row.duration_ms.max(0) as u64,
    ));
    Schedule::new(
        &row.start_local,
        &duration,
        recurrence,
        &row.time_zone,
        row.until_local.as_deref(),
    )
}

/// The windows in force, shared by the evaluator, the sweeper and the API.
#[derive(Debug, Clone, Default)]
pub struct Maintenance {
    windows: Arc<RwLock<Vec<Window>>>,
}

impl Maintenance {
    /// Reloads every window from the store. A stored window whose schedule no longer parses
    /// (it was valid when created) is logged and ignored rather than stopping the others.
    pub async fn reload(&self, store: &dyn Store) -> StoreResult<()> {
        let rows = store.list_maintenance().await?;
        let mut windows = Vec::with_capacity(rows.len());
        for row in rows {
            match schedule_of(&row) {
                Ok(schedule) => windows.push(Window { row, schedule }),
                Err(err) => {
                    tracing::warn!(window = %row.id, error = %err, "ignoring a maintenance window")
                }
            }
        }
        *self.windows.write().unwrap_or_else(|e| e.into_inner()) = windows;
        Ok(())
    }

    /// Whether a finding of `rule` at `scope` is inside a window now.
    pub fn covers(&self, scope: Scope, rule: &str, now: UnixMs) -> bool {
        let windows = self.windows.read().unwrap_or_else(|e| e.into_inner());
        windows.iter().any(|w| w.covers(scope, rule, now))
    }

    /// The id of a window covering `scope` for `rule` now, for the timeline.
    pub fn covering(&self, scope: Scope, rule: &str, now: UnixMs) -> Option<String> {
        let windows = self.windows.read().unwrap_or_else(|e| e.into_inner());
        windows.iter().find(|w| w.covers(scope, rule, now)).map(|w| w.row.id.clone())
    }
}

impl Maintenance {
    /// The stretches of `[from, to)` during which a window covering `rule` at `scope` is
    /// active: what pauses the SLA clocks of the incidents there. Sorted, may overlap.
    pub fn paused(
        &self,
        scope: Scope,
        rule: &str,
        from: UnixMs,
        to: UnixMs,
    ) -> Vec<(UnixMs, UnixMs)> {
        let windows = self.windows.read().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for w in windows.iter() {
            let row = &w.row;
            let in_scope = row.customer_id == scope.customer_id
                && row.site_id.is_none_or(|site| site == scope.site_id)
                && row.host_id.is_none_or(|host| Some(host) == scope.host_id)
                && (row.rules.is_empty() || row.rules.iter().any(|r| r == rule));
            if !in_scope {
                continue;
            }
            if let Some(occurrence) = w.schedule.occurrence_at(from) {
                out.push(occurrence);
            }
            let mut at = from;
            // Bounded: a daily window over a year is 366 occurrences.
            for _ in 0..400 {
                let Some(start) = w.schedule.next_start(at) else { break };
                if start >= to {
                    break;
                }
                out.push((start, start + w.schedule.duration().as_millis() as i64));
                at = start + 1;
            }
        }
        out.sort_unstable();
        out
    }
}
