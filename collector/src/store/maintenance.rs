//! Records of maintenance windows: planned work during which a customer's, site's or host's
//! conditions open no incident and its SLA clocks pause.

use async_trait::async_trait;
use serde::Serialize;

use super::StoreResult;
use crate::clock::UnixMs;
use crate::ids::{CustomerId, HostId, SiteId};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MaintenanceWindowRow {
    pub id: String,
    pub customer_id: CustomerId,
    pub customer: String,
    pub site_id: Option<SiteId>,
    pub site: Option<String>,
    pub host_id: Option<HostId>,
    pub hostname: Option<String>,
    /// Empty: every rule.
    pub rules: Vec<String>,
    pub start_local: String,
    pub duration_ms: i64,
    pub recurrence: String,
    pub time_zone: String,
    pub until_local: Option<String>,
    pub reason: String,
    pub created_at_ms: UnixMs,
    pub created_by: String,
}

/// Maintenance windows.
#[async_trait]
pub trait MaintenanceStore: Send + Sync {
    /// Stores a window; the name fields of the row are ignored.
    async fn create_maintenance(&self, window: &MaintenanceWindowRow) -> StoreResult<()>;

    async fn list_maintenance(&self) -> StoreResult<Vec<MaintenanceWindowRow>>;

    /// Returns false when there was no such window.
    async fn delete_maintenance(&self, id: &str) -> StoreResult<bool>;
}
