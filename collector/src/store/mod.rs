//! The store: the only way any stage of the collector touches state. It is split by stage, one
//! module and one trait each, in the order data flows: [`tenancy`] (customers, sites),
//! [`enrolment`] (tokens, hosts, certificates), [`access`] (API tokens, audit), [`reports`]
//! (ingest's commit and retention), [`hosts`] (what is known of each host), [`incidents`],
//! [`maintenance`], [`sla`] (contracts, clocks, the runner lease) and [`notify`] (outbox,
//! deliveries). Each module holds the records of its stage and its trait; [`Store`] is all of
//! them. The embedded SQLite backend (the default, nothing to set up) implements each stage in
//! its own file under `sqlite/`, and the PostgreSQL backend (for several replicas) under
//! `postgres/`; both pass the one conformance suite (`tests.rs`). The stores apply writes; the decisions
//! (what opens, what escalates, who is notified) are made by the stages' pure code. Migrations
//! are numbered, append-only files per engine under `migrations/`.

use async_trait::async_trait;

use crate::error::{ErrorCode, HasErrorCode};

mod access;
mod columns;
mod enrolment;
mod hosts;
mod incidents;
mod maintenance;
mod notify;
pub mod postgres;
mod reports;
mod sla;
pub mod sqlite;
mod tenancy;
#[cfg(test)]
pub(crate) mod tests;

pub use access::*;
pub use enrolment::*;
pub use hosts::*;
pub use incidents::*;
pub use maintenance::*;
pub use notify::*;
pub use reports::*;
pub use sla::*;
pub use tenancy::*;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store migration failed: {0}")]
    Migration(String),
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The change is refused in the present state (it would revoke the last admin token).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A write only the holder of a lease may make, refused because the [`Fence`] it
    /// carries is stale: another replica took the lease, or it expired.
    #[error("{0}")]
    Fenced(String),
    /// The store refused this one report (a constraint it breaks, a value it cannot hold):
    /// sending it again fails again. Only ever one record's outcome in
    /// [`Store::commit_reports`]; the rest of the batch is unaffected.
    #[error("report refused by the store: {0}")]
    Rejected(String),
}

impl HasErrorCode for StoreError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Unavailable(_) => ErrorCode::Unavailable,
            Self::Migration(_) | Self::Corrupt(_) => ErrorCode::Internal,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::Conflict(_) => ErrorCode::AlreadyExists,
            Self::FailedPrecondition(_) | Self::Fenced(_) => ErrorCode::FailedPrecondition,
            Self::Rejected(_) => ErrorCode::InvalidArgument,
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The whole store: one trait per stage, so a reader can guess where a method lives and a
/// backend implements each stage once. Callers hold `Arc<dyn Store>` and import the stage
/// traits they use.
#[async_trait]
pub trait Store:
    TenancyStore
    + EnrolmentStore
    + AccessStore
    + ReportStore
    + HostStore
    + IncidentStore
    + MaintenanceStore
    + SlaStore
    + NotifyStore
    + std::fmt::Debug
{
    /// Cheap check that the store answers (for `/readyz`).
    async fn ping(&self) -> StoreResult<()>;
}
