//! The PostgreSQL store, for a fleet: several collector replicas over one database. Selected
//! with `store.url = "postgres://…"` (or `--database`). Migrations run at start under
//! PostgreSQL's advisory lock (sqlx takes it), so replicas starting together migrate once; a
//! database migrated by a newer collector is refused with the version it needs. Reads and
//! writes share one pool; every write batch is one transaction, as on SQLite. This file opens
//! the store and holds what every stage shares (the pool, error mapping); each stage's trait is
//! implemented in the file of the same name, with the same SQL as the SQLite store's wherever
//! the two engines agree (`$n` parameters, `ON CONFLICT`, `RETURNING`, row values).

use std::time::Duration;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{PgConnection, Postgres};

use super::columns::*;
use super::*;
use crate::classify::{FaultLevel, FindingKind};
use crate::clock::UnixMs;
use crate::ids::{CustomerId, DeliveryId, HostId, IncidentId, OutboxId, SiteId, TimelineId};

mod access;
mod batch;
mod enrolment;
mod hosts;
mod incidents;
mod maintenance;
mod notify;
mod reports;
mod sla;
pub mod targets;
mod tenancy;

use targets::{PrimaryWatch, Targets, find_primary, is_primary};

#[derive(Debug, Clone)]
pub struct PgStore {
    pub(super) read: PgPool,
}

/// A write of one report that failed: `Rejected` when the fault is the report's own (SQLSTATE
/// class 23, integrity: a constraint it breaks; class 22, data: a value PostgreSQL cannot
/// hold, such as a NUL byte in text; 54000, a row too large to index), so that report alone is
/// refused; `Unavailable` for everything else (connection, serialization, disk full, a bug in
/// a statement), so the batch fails and the agents retry later.
pub(super) fn refused(err: sqlx::Error) -> StoreError {
    let own = match &err {
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("23") || code.starts_with("22") || code == "54000"
        }),
        sqlx::Error::Encode(_) => true,
        _ => false,
    };
    if own { StoreError::Rejected(err.to_string()) } else { unavailable(err) }
}

/// The width of one roll-up partition: 30 days of `bucket_start_ms`, counted from the Unix
/// epoch (partition `rollups_5m_p<n>` holds `[n, n + 1)` widths).
pub(super) const ROLLUP_PARTITION_MS: i64 = 30 * 86_400_000;

/// The database's clock in Unix milliseconds.
pub(super) const DB_NOW_MS: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";

/// A connection the database refused for good (SQLSTATE class 28, authentication; 3D000, no
/// such database) is a setting to fix, not an outage to wait out.
fn refused_connection(err: sqlx::Error) -> StoreError {
    match &err {
        sqlx::Error::Database(db)
            if db.code().is_some_and(|code| code.starts_with("28") || code == "3D000") =>
        {
            StoreError::FailedPrecondition(format!("the database refused the connection: {err}"))
        }
        _ => unavailable(err),
    }
}

/// An error of the first statements at start. Through a transaction-pooling pgbouncer that
/// does not track prepared statements (older than 1.21, or `max_prepared_statements = 0`), a
/// statement prepared on one server connection is looked for on another: it already exists
/// (SQLSTATE 42P05) or does not (26000). That is a setting to fix, not an outage to wait out.
fn setup_failed(err: sqlx::Error) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.code().is_some_and(|c| c == "42P05" || c == "26000") => {
            StoreError::FailedPrecondition(format!(
                "{err}: the database is reached through a connection pooler in transaction mode \
                 that does not keep track of prepared statements; with pgbouncer, set \
                 max_prepared_statements (pgbouncer 1.21 or later) or pool_mode = session \
                 (docs/scale-out.md)"
            ))
        }
        _ => unavailable(err),
    }
}

/// Why no primary was found among several servers: a refusal for good (credentials, no such
/// database) from any of them is a setting to fix; otherwise none answered as the primary.
async fn no_primary(targets: &Targets) -> StoreError {
    for server in &targets.servers {
        let tried = tokio::time::timeout(
            Duration::from_secs(2),
            <PgConnection as sqlx::Connection>::connect_with(server),
        )
        .await;
        if let Ok(Err(err)) = tried
            && let refused @ StoreError::FailedPrecondition(_) = refused_connection(err)
        {
            return refused;
        }
    }
    let names: Vec<String> = (0..targets.servers.len()).map(|i| targets.name(i)).collect();
    StoreError::Unavailable(format!(
        "none of the servers of store.url answers as the primary (tried {})",
        names.join(", ")
    ))
}

/// `$1, …` placeholders of a multi-row `VALUES` list: `rows` rows of `types.len()` columns,
/// each cast to its type when one is given (PostgreSQL cannot infer the types of a `VALUES`
/// list in a `WITH`).
pub(super) fn values_rows(rows: usize, types: &[&str]) -> String {
    let mut sql = String::new();
    let mut n = 0;
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for (column, ty) in types.iter().enumerate() {
            n += 1;
            if column > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${n}"));
            if !ty.is_empty() {
                sql.push_str(&format!("::{ty}"));
            }
        }
        sql.push(')');
    }
    sql
}

/// The advisory lock key the collectors' migrations take (`vigil` in ASCII).
const MIGRATION_LOCK: i64 = 0x0076_6967_696c;

/// Applies pending migrations, one replica at a time: in one transaction that first takes a
/// transaction-scoped advisory lock, with each migration in a savepoint of it (sqlx's own
/// session-level lock turned off). A session-level lock taken and released through a
/// transaction-pooling pgbouncer may land on two different server connections and never be
/// released; a transaction's lock and work stay on one, and a replica waiting for the lock
/// holds one server connection, never two, so replicas starting together cannot starve each
/// other of the pooler's connections. Those after the first find nothing left to apply.
async fn migrate(pool: &PgPool) -> StoreResult<()> {
    let mut tx = pool.begin().await.map_err(setup_failed)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(setup_failed)?;
    let mut migrator = sqlx::migrate!("src/store/migrations/postgres");
    migrator.set_locking(false);
    migrator.run_direct(&mut *tx).await.map_err(migration_failed)?;
    tx.commit().await.map_err(unavailable)?;
    Ok(())
}

impl PgStore {
    /// Connects to `url`, applies pending migrations, and answers once the database does.
    /// With `schema`, every connection works in that schema (created if missing): how tests
    /// keep their runs apart in one database.
    pub async fn open(url: &str, schema: Option<&str>) -> StoreResult<Self> {
        let parsed =
            Targets::parse(url).map_err(|e| StoreError::Unavailable(format!("store.url: {e}")))?;
        let servers = parsed
            .servers
            .into_iter()
            .map(|server| match schema {
                Some(schema) => server.options([("search_path", schema)]),
                None => server,
            })
            .collect();
        let targets = Targets { servers };
        let several = targets.servers.len() > 1;
        // One connection first: it fails at once when nothing answers, where the pool would
        // retry for its whole acquire timeout. Of several servers, the primary's.
        let (current, probe) = if several {
            match find_primary(&targets).await {
                Some((index, conn)) => (index, Some(conn)),
                None => return Err(no_primary(&targets).await),
            }
        } else {
            let probe = <PgConnection as sqlx::Connection>::connect_with(&targets.servers[0])
                .await
                .map_err(refused_connection)?;
            let _ = sqlx::Connection::close(probe).await;
            (0, None)
        };
        let mut pool =
            PgPoolOptions::new().max_connections(16).acquire_timeout(Duration::from_secs(10));
        if several {
            // A connection that lands on a standby (a primary demoted since) is refused, so
            // no write is tried where it cannot succeed.
            pool = pool.after_connect(|conn, _| {
                Box::pin(async move {
                    if is_primary(conn).await? {
                        Ok(())
                    } else {
                        Err(sqlx::Error::Protocol(
                            "the server is a standby, not the primary".into(),
                        ))
                    }
                })
            });
        }
        let read = pool
            .connect_with(targets.servers[current].clone())
            .await
            .map_err(refused_connection)?;
        if several {
            tracing::info!(
                primary = %targets.name(current),
                servers = targets.servers.len(),
                "PostgreSQL primary found; watching it every second"
            );
            tokio::spawn(PrimaryWatch { targets, pool: read.clone(), current }.run(probe));
        }
        if let Some(schema) = schema {
            sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
                .execute(&read)
                .await
                .map_err(setup_failed)?;
        }
        migrate(&read).await?;
        let store = Self { read };
        store.make_rollup_partitions(None).await?;
        Ok(store)
    }

    /// Makes the roll-up partitions from two ranges back (but none wholly before
    /// `not_before_ms`, what retention keeps) to three ahead of the database's clock, those that
    /// do not exist yet. Run at start and by every retention pass, so a collector never writes
    /// past the partitions it made. A range the default partition
    /// already holds rows of cannot be made (PostgreSQL refuses); its rows stay in the
    /// default partition and retention deletes them row by row.
    pub(super) async fn make_rollup_partitions(
        &self,
        not_before_ms: Option<i64>,
    ) -> StoreResult<()> {
        let now: i64 = sqlx::query_scalar(&format!("SELECT {DB_NOW_MS}"))
            .fetch_one(&self.read)
            .await
            .map_err(unavailable)?;
        let current = now.div_euclid(ROLLUP_PARTITION_MS);
        let first = not_before_ms.map_or(current - 2, |at| {
            (current - 2).max(at.div_euclid(ROLLUP_PARTITION_MS)).min(current)
        });
        for n in first..=current + 3 {
            let (from, to) = (n * ROLLUP_PARTITION_MS, (n + 1) * ROLLUP_PARTITION_MS);
            let made = sqlx::query(&format!(
                "CREATE TABLE IF NOT EXISTS rollups_5m_p{n} PARTITION OF rollups_5m \
                 FOR VALUES FROM ({from}) TO ({to})"
            ))
            .execute(&self.read)
            .await;
            if let Err(err) = made {
                tracing::warn!(partition = n, error = %err, "roll-up partition not made");
            }
        }
        Ok(())
    }

    /// A connection for one write (a transaction of its own, or one statement).
    pub(super) async fn writer(&self) -> StoreResult<PoolConnection<Postgres>> {
        self.read.acquire().await.map_err(unavailable)
    }
}

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.read).await.map_err(unavailable)?;
        Ok(())
    }
}
