//! Records of the tenancy: customers and their sites.

use async_trait::async_trait;
use serde::Serialize;

use super::StoreResult;
use crate::clock::UnixMs;
use crate::ids::{CustomerId, HostId, SiteId};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SiteRow {
    pub id: SiteId,
    pub customer_id: CustomerId,
    pub customer: String,
    pub name: String,
    pub created_at_ms: UnixMs,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CustomerRow {
    pub id: CustomerId,
    pub name: String,
    pub created_at_ms: UnixMs,
    pub sites: Vec<SiteRow>,
}

/// Customers and their sites: the tenancy every host, incident and token belongs to.
#[async_trait]
pub trait TenancyStore: Send + Sync {
    async fn create_customer(&self, name: &str, now: UnixMs) -> StoreResult<CustomerRow>;

    /// Creates a site of the customer named `customer`; `NotFound` when there is none.
    async fn create_site(&self, customer: &str, name: &str, now: UnixMs) -> StoreResult<SiteRow>;

    /// Customers with their sites, by name.
    async fn list_customers(&self) -> StoreResult<Vec<CustomerRow>>;

    async fn find_site(&self, customer: &str, site: &str) -> StoreResult<Option<SiteRow>>;

    async fn find_customer(&self, name: &str) -> StoreResult<Option<CustomerRow>>;

    /// Moves a host to another site (its history moves with it).
    async fn move_host(&self, host: HostId, site: SiteId) -> StoreResult<()>;
}
