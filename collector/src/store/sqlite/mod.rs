//! The embedded SQLite store, the default: one file `vigil.db` in the data directory, WAL journal
//! and `synchronous=FULL`, so a committed report survives a process crash and a power cut.
//! Writes go through one dedicated connection (SQLite has one writer anyway); reads use a small
//! pool that WAL lets run beside the writer. This file opens the store and holds what every
//! stage shares (the write connection, error mapping, id parsing); each stage's trait is
//! implemented in the file of the same name.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::SqliteConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use tokio::sync::Mutex;

use super::columns::*;
use super::*;
use crate::classify::{FaultLevel, FindingKind};
use crate::clock::UnixMs;
use crate::ids::{CustomerId, DeliveryId, HostId, IncidentId, OutboxId, SiteId, TimelineId};

mod access;
mod enrolment;
mod hosts;
mod incidents;
mod maintenance;
mod notify;
mod reports;
mod sla;
mod tenancy;

#[derive(Debug)]
pub struct SqliteStore {
    pub(super) read: SqlitePool,
    pub(super) write: Mutex<SqliteConnection>,
    /// How the write connection is opened again after a failed batch (see
    /// [`SqliteStore::commit_reports`]).
    write_options: SqliteConnectOptions,
}

/// A write of one report that failed: `Rejected` when the fault is the report's own (a
/// constraint it breaks, a value or size SQLite cannot hold), so that report alone is refused;
/// `Unavailable` for everything else (I/O, busy or locked, disk full, a bug in a statement),
/// so the batch fails and the agents retry later.
pub(super) fn refused(err: sqlx::Error) -> StoreError {
    use sqlx::error::ErrorKind;
    // Primary result codes (https://www.sqlite.org/rescode.html): TOOBIG, CONSTRAINT,
    // MISMATCH, RANGE. The extended code's low byte is the primary one.
    const REPORT_FAULTS: [i32; 4] = [18, 19, 20, 25];
    let own = match &err {
        sqlx::Error::Database(db) => {
            matches!(
                db.kind(),
                ErrorKind::UniqueViolation
                    | ErrorKind::ForeignKeyViolation
                    | ErrorKind::NotNullViolation
                    | ErrorKind::CheckViolation
            ) || db
                .code()
                .and_then(|code| code.parse::<i32>().ok())
                .is_some_and(|code| REPORT_FAULTS.contains(&(code & 0xff)))
        }
        sqlx::Error::Encode(_) => true,
        _ => false,
    };
    if own { StoreError::Rejected(err.to_string()) } else { unavailable(err) }
}

impl SqliteStore {
    /// Opens (creating if needed) `dir/vigil.db` and applies pending migrations.
    pub async fn open(dir: &Path) -> StoreResult<Self> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create data dir {}: {e}", dir.display()))
        })?;
        let options = SqliteConnectOptions::new()
            .filename(dir.join("vigil.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await
            .map_err(unavailable)?;
        sqlx::migrate!("src/store/migrations/sqlite").run(&read).await.map_err(migration_failed)?;
        let write = sqlx::Connection::connect_with(&options).await.map_err(unavailable)?;
        Ok(Self { read, write: Mutex::new(write), write_options: options })
    }

    /// The write connection, for one write. No transaction is the caller's yet, so one that
    /// SQLite still holds open after an earlier failure (see [`SqliteStore::reopen_writer`])
    /// is ended first: it would otherwise swallow this write's commit. Without one, SQLite
    /// answers "no transaction is active", which is expected and ignored.
    pub(super) async fn writer(&self) -> tokio::sync::MutexGuard<'_, SqliteConnection> {
        let mut conn = self.write.lock().await;
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        conn
    }

    /// Replaces the write connection with a new one. After SQLite fails a transaction on its
    /// own (`SQLITE_FULL`, an I/O error), the connection's idea of the open transaction and
    /// SQLite's may differ; a later "commit" could then release a savepoint inside a
    /// transaction that never ends, visible to this connection only and lost with it.
    /// Closing the connection rolls back whatever SQLite still holds open.
    pub(super) async fn reopen_writer(&self, conn: &mut SqliteConnection) {
        match sqlx::Connection::connect_with(&self.write_options).await {
            Ok(fresh) => {
                let old = std::mem::replace(conn, fresh);
                let _ = sqlx::Connection::close(old).await;
                tracing::info!("store write connection reopened after a failed batch");
            }
            Err(err) => tracing::warn!(error = %err, "store write connection not reopened"),
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.read).await.map_err(unavailable)?;
        Ok(())
    }
}
