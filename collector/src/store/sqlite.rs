//! The embedded SQLite store, the default: one file `vigil.db` in the data directory, WAL journal
//! and `synchronous=FULL`, so a committed report survives a process crash and a power cut.
//! Writes go through one dedicated connection (SQLite has one writer anyway); reads use a small
//! pool that WAL lets run beside the writer.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, SqliteConnection};
use tokio::sync::Mutex;

use super::*;

#[derive(Debug)]
pub struct SqliteStore {
    pub(super) read: SqlitePool,
    pub(super) write: Mutex<SqliteConnection>,
    /// How the write connection is opened again after a failed batch (see
    /// [`SqliteStore::commit_reports`]).
    write_options: SqliteConnectOptions,
}

pub(super) fn unavailable(err: sqlx::Error) -> StoreError {
    StoreError::Unavailable(err.to_string())
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

/// A stored row that does not read back as it should.
pub(super) fn corrupt(err: sqlx::Error) -> StoreError {
    StoreError::Corrupt(err.to_string())
}

pub(super) fn parse_id<T: FromStr>(text: &str) -> StoreResult<T> {
    text.parse().map_err(|_| StoreError::Corrupt(format!("bad id {text:?}")))
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
        sqlx::migrate!("src/store/migrations/sqlite")
            .run(&read)
            .await
            .map_err(|e| StoreError::Migration(e.to_string()))?;
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
    async fn reopen_writer(&self, conn: &mut SqliteConnection) {
        match sqlx::Connection::connect_with(&self.write_options).await {
            Ok(fresh) => {
                let old = std::mem::replace(conn, fresh);
                let _ = sqlx::Connection::close(old).await;
                tracing::info!("store write connection reopened after a failed batch");
            }
            Err(err) => tracing::warn!(error = %err, "store write connection not reopened"),
        }
    }

    async fn insert_certificate(
        conn: &mut SqliteConnection,
        c: &CertificateRecord,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO certificates (fingerprint, host_id, key_sha256, not_before_ms, \
             not_after_ms, issued_at_ms, reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&c.fingerprint)
        .bind(c.host_id.to_string())
        .bind(&c.key_sha256)
        .bind(c.not_before_ms)
        .bind(c.not_after_ms)
        .bind(c.issued_at_ms)
        .bind(c.reason)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    /// One batch in one transaction. With `isolate`, each report runs under its own savepoint
    /// and one the store refuses fails alone; without, any refusal fails the batch (the caller
    /// then retries isolated).
    async fn commit_batch(
        conn: &mut SqliteConnection,
        records: &[ReportRecord],
        isolate: bool,
    ) -> StoreResult<Vec<StoreResult<CommitOutcome>>> {
        let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(unavailable)?;
        let mut outcomes = Vec::with_capacity(records.len());
        for record in records {
            if !isolate {
                // Dropping the transaction on an error rolls everything back.
                outcomes.push(Ok(Self::commit_one(&mut tx, record).await?));
                continue;
            }
            // A nested transaction is a SAVEPOINT: rolling it back undoes this report only.
            let mut one = sqlx::Connection::begin(&mut *tx).await.map_err(unavailable)?;
            match Self::commit_one(&mut one, record).await {
                Ok(outcome) => {
                    one.commit().await.map_err(unavailable)?;
                    outcomes.push(Ok(outcome));
                }
                Err(StoreError::Rejected(why)) => {
                    one.rollback().await.map_err(unavailable)?;
                    outcomes.push(Err(StoreError::Rejected(format!(
                        "report seq {}: {why}",
                        record.seq
                    ))));
                }
                Err(err) => return Err(err),
            }
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(outcomes)
    }

    async fn commit_one(tx: &mut SqliteConnection, r: &ReportRecord) -> StoreResult<CommitOutcome> {
        let host = r.host_id.to_string();
        // Recorded before anything else (even for a report not stored again): the caps then
        // count every series the host may have rows of.
        for series in &r.new_series {
            sqlx::query(
                "INSERT INTO host_series (host_id, series, first_seen_ms) VALUES (?, ?, ?) \
                 ON CONFLICT (host_id, series) DO NOTHING",
            )
            .bind(&host)
            .bind(series)
            .bind(r.received_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(refused)?;
        }
        // A seq at or below what retention pruned, with no receipt left: it may have been
        // stored before its receipt aged out, so it is not stored again. Looked up only for
        // seqs at or below the watermark the stream saw when it opened.
        if r.seq <= r.pruned_through_seq {
            let held: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM report_receipts WHERE host_id = ? AND instance = ? AND seq = ?",
            )
            .bind(&host)
            .bind(&r.instance)
            .bind(r.seq as i64)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
            if held.is_none() {
                return Ok(CommitOutcome::Stale);
            }
        }
        let inserted = sqlx::query(
            "INSERT INTO report_receipts \
             (host_id, instance, seq, collected_at_ms, received_at_ms, replayed, digest) \
             VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (host_id, instance, seq) DO NOTHING",
        )
        .bind(&host)
        .bind(&r.instance)
        .bind(r.seq as i64)
        .bind(r.collected_at_ms)
        .bind(r.received_at_ms)
        .bind(r.replayed)
        .bind(r.digest.as_slice())
        .execute(&mut *tx)
        .await
        .map_err(refused)?
        .rows_affected();
        if inserted == 0 {
            let held: Option<Vec<u8>> = sqlx::query_scalar(
                "SELECT digest FROM report_receipts WHERE host_id = ? AND instance = ? AND seq = ?",
            )
            .bind(&host)
            .bind(&r.instance)
            .bind(r.seq as i64)
            .fetch_one(&mut *tx)
            .await
            .map_err(unavailable)?;
            // Receipts from before digests were kept compare by seq alone.
            if held.is_some_and(|held| held != r.digest) {
                return Ok(CommitOutcome::Conflict);
            }
        }

        let last_live = (!r.replayed).then_some(r.received_at_ms);
        sqlx::query(
            "INSERT INTO agent_instances \
             (host_id, instance, first_seen_ms, last_seen_ms, last_live_ms, max_seq) \
             VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (host_id, instance) DO UPDATE SET \
               last_seen_ms = excluded.last_seen_ms, \
               last_live_ms = COALESCE(excluded.last_live_ms, agent_instances.last_live_ms), \
               max_seq = CASE WHEN excluded.max_seq > agent_instances.max_seq \
                              THEN excluded.max_seq ELSE agent_instances.max_seq END",
        )
        .bind(&host)
        .bind(&r.instance)
        .bind(r.received_at_ms)
        .bind(r.received_at_ms)
        .bind(last_live)
        .bind(r.seq as i64)
        .execute(&mut *tx)
        .await
        .map_err(refused)?;

        sqlx::query(
            "UPDATE hosts SET last_seen_ms = ?, hostname = ?, agent_version = ?, \
             interval_seconds = ?, goodbye_reason = NULL, goodbye_at_ms = NULL WHERE id = ?",
        )
        .bind(r.received_at_ms)
        .bind(&r.hostname)
        .bind(&r.agent_version)
        .bind(i64::from(r.interval_seconds))
        .bind(&host)
        .execute(&mut *tx)
        .await
        .map_err(refused)?;

        if inserted == 0 {
            return Ok(CommitOutcome::Duplicate);
        }

        sqlx::query(
            "INSERT INTO latest_reports \
             (host_id, instance, seq, collected_at_ms, received_at_ms, report) \
             VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (host_id) DO UPDATE SET instance = excluded.instance, \
               seq = excluded.seq, collected_at_ms = excluded.collected_at_ms, \
               received_at_ms = excluded.received_at_ms, report = excluded.report \
             WHERE excluded.collected_at_ms >= latest_reports.collected_at_ms",
        )
        .bind(&host)
        .bind(&r.instance)
        .bind(r.seq as i64)
        .bind(r.collected_at_ms)
        .bind(r.received_at_ms)
        .bind(&r.encoded)
        .execute(&mut *tx)
        .await
        .map_err(refused)?;

        let bucket = r.collected_at_ms - r.collected_at_ms.rem_euclid(ROLLUP_BUCKET_MS);
        for (series, value) in &r.series {
            sqlx::query(
                "INSERT INTO rollups_5m \
                 (host_id, series, bucket_start_ms, min_value, max_value, sum_value, sample_count) \
                 VALUES (?, ?, ?, ?, ?, ?, 1) \
                 ON CONFLICT (host_id, series, bucket_start_ms) DO UPDATE SET \
                   min_value = CASE WHEN excluded.min_value < rollups_5m.min_value \
                                    THEN excluded.min_value ELSE rollups_5m.min_value END, \
                   max_value = CASE WHEN excluded.max_value > rollups_5m.max_value \
                                    THEN excluded.max_value ELSE rollups_5m.max_value END, \
                   sum_value = rollups_5m.sum_value + excluded.sum_value, \
                   sample_count = rollups_5m.sample_count + 1",
            )
            .bind(&host)
            .bind(series)
            .bind(bucket)
            .bind(value)
            .bind(value)
            .bind(value)
            .execute(&mut *tx)
            .await
            .map_err(refused)?;
        }
        Ok(CommitOutcome::Stored)
    }
}

const HOST_COLUMNS: &str = "h.id, c.id AS customer_id, c.name AS customer, s.id AS site_id, \
     s.name AS site, h.hostname, h.created_at_ms, h.last_seen_ms, h.interval_seconds, \
     h.agent_version, h.goodbye_reason, h.goodbye_at_ms, h.machine_id, h.revoked_at_ms, \
     h.replaced_by \
     FROM hosts h JOIN sites s ON s.id = h.site_id JOIN customers c ON c.id = s.customer_id";

fn host_row(row: &sqlx::sqlite::SqliteRow) -> StoreResult<HostRow> {
    Ok(HostRow {
        id: parse_id(&row.try_get::<String, _>("id").map_err(corrupt)?)?,
        customer_id: parse_id(&row.try_get::<String, _>("customer_id").map_err(corrupt)?)?,
        customer: row.try_get("customer").map_err(corrupt)?,
        site_id: parse_id(&row.try_get::<String, _>("site_id").map_err(corrupt)?)?,
        site: row.try_get("site").map_err(corrupt)?,
        hostname: row.try_get("hostname").map_err(corrupt)?,
        created_at_ms: row.try_get("created_at_ms").map_err(corrupt)?,
        last_seen_ms: row.try_get("last_seen_ms").map_err(corrupt)?,
        interval_seconds: row.try_get::<i64, _>("interval_seconds").map_err(corrupt)? as u32,
        agent_version: row.try_get("agent_version").map_err(corrupt)?,
        goodbye_reason: row.try_get("goodbye_reason").map_err(corrupt)?,
        goodbye_at_ms: row.try_get("goodbye_at_ms").map_err(corrupt)?,
        machine_id: row.try_get("machine_id").map_err(corrupt)?,
        revoked_at_ms: row.try_get("revoked_at_ms").map_err(corrupt)?,
        replaced_by: row
            .try_get::<Option<String>, _>("replaced_by")
            .map_err(corrupt)?
            .map(|id| parse_id(&id))
            .transpose()?,
    })
}

const SITE_COLUMNS: &str = "s.id, s.customer_id, c.name AS customer, s.name, s.created_at_ms \
     FROM sites s JOIN customers c ON c.id = s.customer_id";

fn site_row(row: &sqlx::sqlite::SqliteRow) -> StoreResult<SiteRow> {
    Ok(SiteRow {
        id: parse_id(&row.try_get::<String, _>("id").map_err(corrupt)?)?,
        customer_id: parse_id(&row.try_get::<String, _>("customer_id").map_err(corrupt)?)?,
        customer: row.try_get("customer").map_err(corrupt)?,
        name: row.try_get("name").map_err(corrupt)?,
        created_at_ms: row.try_get("created_at_ms").map_err(corrupt)?,
    })
}

const API_TOKEN_COLUMNS: &str = "t.id, t.name, t.role, t.customer_id, c.name AS customer, \
     t.created_at_ms, t.created_by, t.revoked_at_ms \
     FROM api_tokens t LEFT JOIN customers c ON c.id = t.customer_id";

fn api_token_row(row: &sqlx::sqlite::SqliteRow) -> StoreResult<ApiTokenRow> {
    let role: String = row.try_get("role").map_err(corrupt)?;
    Ok(ApiTokenRow {
        id: row.try_get("id").map_err(corrupt)?,
        name: row.try_get("name").map_err(corrupt)?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role {role:?}")))?,
        customer_id: row
            .try_get::<Option<String>, _>("customer_id")
            .map_err(corrupt)?
            .map(|id| parse_id(&id))
            .transpose()?,
        customer: row.try_get("customer").map_err(corrupt)?,
        created_at_ms: row.try_get("created_at_ms").map_err(corrupt)?,
        created_by: row.try_get("created_by").map_err(corrupt)?,
        revoked_at_ms: row.try_get("revoked_at_ms").map_err(corrupt)?,
    })
}

fn latest_row(row: &sqlx::sqlite::SqliteRow) -> StoreResult<LatestReport> {
    Ok(LatestReport {
        instance: row.try_get("instance").map_err(corrupt)?,
        seq: row.try_get::<i64, _>("seq").map_err(corrupt)? as u64,
        collected_at_ms: row.try_get("collected_at_ms").map_err(corrupt)?,
        received_at_ms: row.try_get("received_at_ms").map_err(corrupt)?,
        encoded: row.try_get("report").map_err(corrupt)?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn commit_reports(
        &self,
        records: &[ReportRecord],
    ) -> StoreResult<Vec<StoreResult<CommitOutcome>>> {
        let mut conn = self.writer().await;
        // Optimistic: the whole batch in one transaction. Only when the store refuses one
        // report is the batch done again with a savepoint per report, so the others commit;
        // a refusal is rare, and savepoints on every report cost ingest CPU.
        let done = match Self::commit_batch(&mut conn, records, false).await {
            Err(StoreError::Rejected(_)) => Self::commit_batch(&mut conn, records, true).await,
            done => done,
        };
        if done.is_err() {
            self.reopen_writer(&mut conn).await;
        }
        done
    }

    async fn record_goodbye(&self, host: HostId, reason: &str, at: UnixMs) -> StoreResult<()> {
        let mut conn = self.writer().await;
        sqlx::query("UPDATE hosts SET goodbye_reason = ?, goodbye_at_ms = ? WHERE id = ?")
            .bind(reason)
            .bind(at)
            .bind(host.to_string())
            .execute(&mut *conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn record_event(
        &self,
        host: HostId,
        kind: &str,
        dedupe_key: &str,
        detail: &str,
        at: UnixMs,
    ) -> StoreResult<bool> {
        let mut conn = self.writer().await;
        let inserted = sqlx::query(
            "INSERT INTO host_events (id, host_id, at_ms, kind, detail, dedupe_key) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (host_id, kind, dedupe_key) DO NOTHING",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(host.to_string())
        .bind(at)
        .bind(kind)
        .bind(detail)
        .bind(dedupe_key)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?
        .rows_affected();
        Ok(inserted > 0)
    }

    async fn list_hosts(&self) -> StoreResult<Vec<HostRow>> {
        let rows =
            sqlx::query(&format!("SELECT {HOST_COLUMNS} ORDER BY c.name, s.name, h.hostname"))
                .fetch_all(&self.read)
                .await
                .map_err(unavailable)?;
        rows.iter().map(host_row).collect()
    }

    async fn get_host(&self, id: HostId) -> StoreResult<Option<HostRow>> {
        let row = sqlx::query(&format!("SELECT {HOST_COLUMNS} WHERE h.id = ?"))
            .bind(id.to_string())
            .fetch_optional(&self.read)
            .await
            .map_err(unavailable)?;
        row.as_ref().map(host_row).transpose()
    }

    async fn latest_report(&self, id: HostId) -> StoreResult<Option<LatestReport>> {
        let row = sqlx::query(
            "SELECT instance, seq, collected_at_ms, received_at_ms, report \
             FROM latest_reports WHERE host_id = ?",
        )
        .bind(id.to_string())
        .fetch_optional(&self.read)
        .await
        .map_err(unavailable)?;
        row.as_ref().map(latest_row).transpose()
    }

    async fn latest_reports(&self) -> StoreResult<Vec<(HostId, LatestReport)>> {
        let rows = sqlx::query(
            "SELECT host_id, instance, seq, collected_at_ms, received_at_ms, report \
             FROM latest_reports",
        )
        .fetch_all(&self.read)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                let host: String =
                    row.try_get("host_id").map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok((parse_id(&host)?, latest_row(row)?))
            })
            .collect()
    }

    async fn instances(&self, id: HostId) -> StoreResult<Vec<InstanceRow>> {
        let rows = sqlx::query(
            "SELECT instance, first_seen_ms, last_seen_ms, last_live_ms, max_seq, \
             pruned_through_seq FROM agent_instances WHERE host_id = ? ORDER BY first_seen_ms, instance",
        )
        .bind(id.to_string())
        .fetch_all(&self.read)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                Ok(InstanceRow {
                    instance: row.try_get("instance").map_err(corrupt)?,
                    first_seen_ms: row.try_get("first_seen_ms").map_err(corrupt)?,
                    last_seen_ms: row.try_get("last_seen_ms").map_err(corrupt)?,
                    last_live_ms: row.try_get("last_live_ms").map_err(corrupt)?,
                    max_seq: row.try_get::<i64, _>("max_seq").map_err(corrupt)? as u64,
                    pruned_through_seq: row
                        .try_get::<i64, _>("pruned_through_seq")
                        .map_err(corrupt)? as u64,
                })
            })
            .collect()
    }

    async fn events(&self, id: HostId, limit: u32) -> StoreResult<Vec<HostEvent>> {
        let rows = sqlx::query(
            "SELECT at_ms, kind, detail FROM host_events WHERE host_id = ? \
             ORDER BY at_ms DESC, id LIMIT ?",
        )
        .bind(id.to_string())
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                Ok(HostEvent {
                    at_ms: row.try_get("at_ms").map_err(corrupt)?,
                    kind: row.try_get("kind").map_err(corrupt)?,
                    detail: row.try_get("detail").map_err(corrupt)?,
                })
            })
            .collect()
    }

    async fn receipts(
        &self,
        id: HostId,
        instance: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Receipt>> {
        let rows = sqlx::query(
            "SELECT instance, seq, collected_at_ms, received_at_ms, replayed \
             FROM report_receipts WHERE host_id = ? AND (? IS NULL OR instance = ?) \
             ORDER BY received_at_ms, instance, seq LIMIT ?",
        )
        .bind(id.to_string())
        .bind(instance)
        .bind(instance)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                Ok(Receipt {
                    instance: row.try_get("instance").map_err(corrupt)?,
                    seq: row.try_get::<i64, _>("seq").map_err(corrupt)? as u64,
                    collected_at_ms: row.try_get("collected_at_ms").map_err(corrupt)?,
                    received_at_ms: row.try_get("received_at_ms").map_err(corrupt)?,
                    replayed: row.try_get("replayed").map_err(corrupt)?,
                })
            })
            .collect()
    }

    async fn rollups(&self, id: HostId, series: &str, since: UnixMs) -> StoreResult<Vec<Rollup>> {
        let rows = sqlx::query(
            "SELECT series, bucket_start_ms, min_value, max_value, sum_value, sample_count \
             FROM rollups_5m WHERE host_id = ? AND series = ? AND bucket_start_ms >= ? \
             ORDER BY bucket_start_ms",
        )
        .bind(id.to_string())
        .bind(series)
        .bind(since)
        .fetch_all(&self.read)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                let sum: f64 = row.try_get("sum_value").map_err(corrupt)?;
                let count = row.try_get::<i64, _>("sample_count").map_err(corrupt)?.max(1) as u64;
                Ok(Rollup {
                    series: row.try_get("series").map_err(corrupt)?,
                    bucket_start_ms: row.try_get("bucket_start_ms").map_err(corrupt)?,
                    min: row.try_get("min_value").map_err(corrupt)?,
                    max: row.try_get("max_value").map_err(corrupt)?,
                    avg: sum / count as f64,
                    count,
                })
            })
            .collect()
    }

    async fn host_series(&self, id: HostId) -> StoreResult<Vec<(String, UnixMs)>> {
        sqlx::query_as("SELECT series, first_seen_ms FROM host_series WHERE host_id = ?")
            .bind(id.to_string())
            .fetch_all(&self.read)
            .await
            .map_err(unavailable)
    }

    async fn prune(
        &self,
        receipts_before: UnixMs,
        rollups_before: UnixMs,
        batch_rows: u32,
    ) -> StoreResult<PruneStats> {
        let limit = i64::from(batch_rows.max(1));
        let mut stats = PruneStats::default();
        // Receipts, oldest first. One batch is one transaction under the writer lock: the
        // watermark and the deletion of the same rows commit together, and ingest commits
        // take the lock between batches.
        loop {
            let mut conn = self.writer().await;
            let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(unavailable)?;
            let batch = "SELECT rowid FROM report_receipts WHERE received_at_ms < ?1 \
                         ORDER BY received_at_ms, rowid LIMIT ?2";
            sqlx::query(&format!(
                "UPDATE agent_instances SET pruned_through_seq = CASE \
                   WHEN pruned.seq > agent_instances.pruned_through_seq THEN pruned.seq \
                   ELSE agent_instances.pruned_through_seq END \
                 FROM (SELECT host_id, instance, MAX(seq) AS seq FROM report_receipts \
                       WHERE rowid IN ({batch}) GROUP BY host_id, instance) AS pruned \
                 WHERE agent_instances.host_id = pruned.host_id \
                   AND agent_instances.instance = pruned.instance"
            ))
            .bind(receipts_before)
            .bind(limit)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
            let deleted =
                sqlx::query(&format!("DELETE FROM report_receipts WHERE rowid IN ({batch})"))
                    .bind(receipts_before)
                    .bind(limit)
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?
                    .rows_affected();
            tx.commit().await.map_err(unavailable)?;
            drop(conn);
            stats.receipts += deleted;
            stats.batches += 1;
            if deleted < limit as u64 {
                break;
            }
            tokio::task::yield_now().await;
        }
        loop {
            let mut conn = self.writer().await;
            let deleted = sqlx::query(
                "DELETE FROM rollups_5m WHERE rowid IN \
                 (SELECT rowid FROM rollups_5m WHERE bucket_start_ms < ? LIMIT ?)",
            )
            .bind(rollups_before)
            .bind(limit)
            .execute(&mut *conn)
            .await
            .map_err(unavailable)?
            .rows_affected();
            drop(conn);
            stats.rollups += deleted;
            stats.batches += 1;
            if deleted < limit as u64 {
                break;
            }
            tokio::task::yield_now().await;
        }
        // Series without roll-ups, walked once in rowid ranges of `limit` entries (each range
        // one statement), so the sweep is linear in the table however few are deleted.
        let mut after = 0_i64;
        loop {
            let upto: Option<i64> = sqlx::query_scalar(
                "SELECT MAX(rowid) FROM (SELECT rowid FROM host_series WHERE rowid > ? \
                 ORDER BY rowid LIMIT ?)",
            )
            .bind(after)
            .bind(limit)
            .fetch_one(&self.read)
            .await
            .map_err(unavailable)?;
            let Some(upto) = upto else { break };
            let mut conn = self.writer().await;
            stats.series += sqlx::query(
                "DELETE FROM host_series WHERE rowid > ? AND rowid <= ? AND first_seen_ms < ? \
                 AND NOT EXISTS (SELECT 1 FROM rollups_5m r \
                   WHERE r.host_id = host_series.host_id AND r.series = host_series.series)",
            )
            .bind(after)
            .bind(upto)
            .bind(rollups_before)
            .execute(&mut *conn)
            .await
            .map_err(unavailable)?
            .rows_affected();
            drop(conn);
            stats.batches += 1;
            after = upto;
            tokio::task::yield_now().await;
        }
        Ok(stats)
    }

    async fn create_customer(&self, name: &str, now: UnixMs) -> StoreResult<CustomerRow> {
        let mut conn = self.writer().await;
        let id = CustomerId::new_random();
        let inserted = sqlx::query(
            "INSERT INTO customers (id, name, created_at_ms) VALUES (?, ?, ?) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(id.to_string())
        .bind(name)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?
        .rows_affected();
        if inserted == 0 {
            return Err(StoreError::Conflict(format!("customer {name:?} exists already")));
        }
        Ok(CustomerRow { id, name: name.to_owned(), created_at_ms: now, sites: Vec::new() })
    }

    async fn create_site(&self, customer: &str, name: &str, now: UnixMs) -> StoreResult<SiteRow> {
        let Some(c) = self.find_customer(customer).await? else {
            return Err(StoreError::NotFound(format!("no customer {customer:?}")));
        };
        let mut conn = self.writer().await;
        let id = SiteId::new_random();
        let inserted = sqlx::query(
            "INSERT INTO sites (id, customer_id, name, created_at_ms) VALUES (?, ?, ?, ?) \
             ON CONFLICT (customer_id, name) DO NOTHING",
        )
        .bind(id.to_string())
        .bind(c.id.to_string())
        .bind(name)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?
        .rows_affected();
        if inserted == 0 {
            return Err(StoreError::Conflict(format!(
                "site {name:?} of customer {customer:?} exists already"
            )));
        }
        Ok(SiteRow {
            id,
            customer_id: c.id,
            customer: c.name,
            name: name.to_owned(),
            created_at_ms: now,
        })
    }

    async fn list_customers(&self) -> StoreResult<Vec<CustomerRow>> {
        let rows = sqlx::query("SELECT id, name, created_at_ms FROM customers ORDER BY name")
            .fetch_all(&self.read)
            .await
            .map_err(unavailable)?;
        let mut customers = Vec::with_capacity(rows.len());
        for row in &rows {
            customers.push(CustomerRow {
                id: parse_id(&row.try_get::<String, _>("id").map_err(corrupt)?)?,
                name: row.try_get("name").map_err(corrupt)?,
                created_at_ms: row.try_get("created_at_ms").map_err(corrupt)?,
                sites: Vec::new(),
            });
        }
        let sites = sqlx::query(&format!("SELECT {SITE_COLUMNS} ORDER BY s.name"))
            .fetch_all(&self.read)
            .await
            .map_err(unavailable)?;
        for row in &sites {
            let site = site_row(row)?;
            if let Some(c) = customers.iter_mut().find(|c| c.id == site.customer_id) {
                c.sites.push(site);
            }
        }
        Ok(customers)
    }

    async fn find_site(&self, customer: &str, site: &str) -> StoreResult<Option<SiteRow>> {
        let row = sqlx::query(&format!("SELECT {SITE_COLUMNS} WHERE c.name = ? AND s.name = ?"))
            .bind(customer)
            .bind(site)
            .fetch_optional(&self.read)
            .await
            .map_err(unavailable)?;
        row.as_ref().map(site_row).transpose()
    }

    async fn find_customer(&self, name: &str) -> StoreResult<Option<CustomerRow>> {
        Ok(self.list_customers().await?.into_iter().find(|c| c.name == name))
    }

    async fn move_host(&self, host: HostId, site: SiteId) -> StoreResult<()> {
        let mut conn = self.writer().await;
        let updated = sqlx::query("UPDATE hosts SET site_id = ? WHERE id = ?")
            .bind(site.to_string())
            .bind(host.to_string())
            .execute(&mut *conn)
            .await
            .map_err(unavailable)?
            .rows_affected();
        if updated == 0 {
            return Err(StoreError::NotFound(format!("no host {host}")));
        }
        Ok(())
    }

    async fn create_enrollment_token(&self, t: &EnrollmentToken) -> StoreResult<()> {
        let mut conn = self.writer().await;
        sqlx::query(
            "INSERT INTO enrollment_tokens \
             (id, secret_sha256, site_id, uses_left, expires_at_ms, created_at_ms, created_by) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&t.id)
        .bind(&t.secret_sha256)
        .bind(t.site_id.to_string())
        .bind(i64::from(t.uses))
        .bind(t.expires_at_ms)
        .bind(t.created_at_ms)
        .bind(&t.created_by)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn list_enrollment_tokens(&self) -> StoreResult<Vec<EnrollmentTokenRow>> {
        let rows = sqlx::query(
            "SELECT t.id, c.name AS customer, s.name AS site, t.uses_left, t.expires_at_ms, \
             t.created_at_ms, t.created_by FROM enrollment_tokens t \
             JOIN sites s ON s.id = t.site_id JOIN customers c ON c.id = s.customer_id \
             ORDER BY t.created_at_ms",
        )
        .fetch_all(&self.read)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                Ok(EnrollmentTokenRow {
                    id: row.try_get("id").map_err(corrupt)?,
                    customer: row.try_get("customer").map_err(corrupt)?,
                    site: row.try_get("site").map_err(corrupt)?,
                    uses_left: row.try_get::<i64, _>("uses_left").map_err(corrupt)?.max(0) as u32,
                    expires_at_ms: row.try_get("expires_at_ms").map_err(corrupt)?,
                    created_at_ms: row.try_get("created_at_ms").map_err(corrupt)?,
                    created_by: row.try_get("created_by").map_err(corrupt)?,
                })
            })
            .collect()
    }

    async fn enroll_host(
        &self,
        secret_sha256: &str,
        host: &NewHost,
        cert: &CertificateRecord,
        now: UnixMs,
    ) -> StoreResult<Result<HostRow, TokenRefusal>> {
        {
            let mut conn = self.writer().await;
            let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(unavailable)?;
            let token = sqlx::query(
                "SELECT site_id, uses_left, expires_at_ms FROM enrollment_tokens \
                 WHERE secret_sha256 = ?",
            )
            .bind(secret_sha256)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
            let Some(token) = token else { return Ok(Err(TokenRefusal::Unknown)) };
            let site: String = token.try_get("site_id").map_err(corrupt)?;
            if token.try_get::<i64, _>("expires_at_ms").map_err(corrupt)? <= now {
                return Ok(Err(TokenRefusal::Expired));
            }
            // Conditional decrement: two agents racing for the last use cannot both win.
            let used = sqlx::query(
                "UPDATE enrollment_tokens SET uses_left = uses_left - 1 \
                 WHERE secret_sha256 = ? AND uses_left > 0",
            )
            .bind(secret_sha256)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?
            .rows_affected();
            if used == 0 {
                return Ok(Err(TokenRefusal::UsedUp));
            }
            sqlx::query(
                "INSERT INTO hosts (id, site_id, hostname, machine_id, created_at_ms) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(host.id.to_string())
            .bind(&site)
            .bind(&host.hostname)
            .bind(&host.machine_id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
            Self::insert_certificate(&mut tx, cert).await?;
            tx.commit().await.map_err(unavailable)?;
        }
        let row = self.get_host(host.id).await?;
        row.map(Ok).ok_or_else(|| StoreError::Corrupt("enrolled host vanished".into()))
    }

    async fn certificate(&self, fingerprint: &str) -> StoreResult<Option<CertificateRow>> {
        let row = sqlx::query(
            "SELECT c.fingerprint, c.host_id, c.key_sha256, c.not_after_ms, h.revoked_at_ms \
             FROM certificates c JOIN hosts h ON h.id = c.host_id WHERE c.fingerprint = ?",
        )
        .bind(fingerprint)
        .fetch_optional(&self.read)
        .await
        .map_err(unavailable)?;
        row.map(|row| {
            Ok(CertificateRow {
                fingerprint: row.try_get("fingerprint").map_err(corrupt)?,
                host_id: parse_id(&row.try_get::<String, _>("host_id").map_err(corrupt)?)?,
                key_sha256: row.try_get("key_sha256").map_err(corrupt)?,
                not_after_ms: row.try_get("not_after_ms").map_err(corrupt)?,
                host_revoked: row
                    .try_get::<Option<i64>, _>("revoked_at_ms")
                    .map_err(corrupt)?
                    .is_some(),
            })
        })
        .transpose()
    }

    async fn add_certificate(&self, cert: &CertificateRecord) -> StoreResult<()> {
        let mut conn = self.writer().await;
        Self::insert_certificate(&mut conn, cert).await
    }

    async fn revoke_host(&self, host: HostId, now: UnixMs) -> StoreResult<bool> {
        let mut conn = self.writer().await;
        let exists: Option<Option<i64>> =
            sqlx::query_scalar("SELECT revoked_at_ms FROM hosts WHERE id = ?")
                .bind(host.to_string())
                .fetch_optional(&mut *conn)
                .await
                .map_err(unavailable)?;
        match exists {
            None => Err(StoreError::NotFound(format!("no host {host}"))),
            Some(Some(_)) => Ok(false),
            Some(None) => {
                sqlx::query("UPDATE hosts SET revoked_at_ms = ? WHERE id = ?")
                    .bind(now)
                    .bind(host.to_string())
                    .execute(&mut *conn)
                    .await
                    .map_err(unavailable)?;
                Ok(true)
            }
        }
    }

    async fn revoked_hosts(&self) -> StoreResult<Vec<HostId>> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM hosts WHERE revoked_at_ms IS NOT NULL")
                .fetch_all(&self.read)
                .await
                .map_err(unavailable)?;
        ids.iter().map(|id| parse_id(id)).collect()
    }

    async fn replace_host(&self, old: HostId, new: HostId, now: UnixMs) -> StoreResult<()> {
        if old == new {
            return Err(StoreError::Conflict("a host cannot replace itself".into()));
        }
        for id in [old, new] {
            if self.get_host(id).await?.is_none() {
                return Err(StoreError::NotFound(format!("no host {id}")));
            }
        }
        let (old, new) = (old.to_string(), new.to_string());
        let mut conn = self.writer().await;
        let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(unavailable)?;
        let statements = [
            // Receipts and instances: instance UUIDs differ between identities; on the rare
            // overlap the new host's own row wins.
            "UPDATE report_receipts SET host_id = $2 WHERE host_id = $1 AND NOT EXISTS \
             (SELECT 1 FROM report_receipts r WHERE r.host_id = $2 \
              AND r.instance = report_receipts.instance AND r.seq = report_receipts.seq)",
            "DELETE FROM report_receipts WHERE host_id = $1",
            "UPDATE agent_instances SET host_id = $2 WHERE host_id = $1 AND NOT EXISTS \
             (SELECT 1 FROM agent_instances a WHERE a.host_id = $2 \
              AND a.instance = agent_instances.instance)",
            "DELETE FROM agent_instances WHERE host_id = $1",
            // Roll-ups of the same bucket merge.
            "INSERT INTO rollups_5m \
             (host_id, series, bucket_start_ms, min_value, max_value, sum_value, sample_count) \
             SELECT $2, series, bucket_start_ms, min_value, max_value, sum_value, sample_count \
             FROM rollups_5m WHERE host_id = $1 \
             ON CONFLICT (host_id, series, bucket_start_ms) DO UPDATE SET \
               min_value = CASE WHEN excluded.min_value < rollups_5m.min_value \
                                THEN excluded.min_value ELSE rollups_5m.min_value END, \
               max_value = CASE WHEN excluded.max_value > rollups_5m.max_value \
                                THEN excluded.max_value ELSE rollups_5m.max_value END, \
               sum_value = rollups_5m.sum_value + excluded.sum_value, \
               sample_count = rollups_5m.sample_count + excluded.sample_count",
            "DELETE FROM rollups_5m WHERE host_id = $1",
            "INSERT INTO host_series (host_id, series, first_seen_ms) \
             SELECT $2, series, first_seen_ms FROM host_series WHERE host_id = $1 \
             ON CONFLICT (host_id, series) DO NOTHING",
            "DELETE FROM host_series WHERE host_id = $1",
            // The newer host's latest report stays when it has one.
            "UPDATE latest_reports SET host_id = $2 WHERE host_id = $1 AND NOT EXISTS \
             (SELECT 1 FROM latest_reports l WHERE l.host_id = $2)",
            "DELETE FROM latest_reports WHERE host_id = $1",
            "UPDATE host_events SET host_id = $2 WHERE host_id = $1 AND NOT EXISTS \
             (SELECT 1 FROM host_events e WHERE e.host_id = $2 \
              AND e.kind = host_events.kind AND e.dedupe_key = host_events.dedupe_key)",
            "DELETE FROM host_events WHERE host_id = $1",
            "UPDATE hosts SET replaced_by = $2, revoked_at_ms = COALESCE(revoked_at_ms, $3) \
             WHERE id = $1",
        ];
        for sql in statements {
            sqlx::query(sql)
                .bind(&old)
                .bind(&new)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(())
    }

    async fn create_api_token(&self, t: &ApiTokenRecord) -> StoreResult<()> {
        let mut conn = self.writer().await;
        sqlx::query(
            "INSERT INTO api_tokens \
             (id, name, role, customer_id, secret_sha256, created_at_ms, created_by) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&t.id)
        .bind(&t.name)
        .bind(t.role.as_str())
        .bind(t.customer_id.map(|c| c.to_string()))
        .bind(&t.secret_sha256)
        .bind(t.created_at_ms)
        .bind(&t.created_by)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn api_token(&self, secret_sha256: &str) -> StoreResult<Option<ApiTokenRow>> {
        let row = sqlx::query(&format!(
            "SELECT {API_TOKEN_COLUMNS} WHERE t.secret_sha256 = ? AND t.revoked_at_ms IS NULL"
        ))
        .bind(secret_sha256)
        .fetch_optional(&self.read)
        .await
        .map_err(unavailable)?;
        row.as_ref().map(api_token_row).transpose()
    }

    async fn list_api_tokens(&self) -> StoreResult<Vec<ApiTokenRow>> {
        let rows = sqlx::query(&format!("SELECT {API_TOKEN_COLUMNS} ORDER BY t.created_at_ms"))
            .fetch_all(&self.read)
            .await
            .map_err(unavailable)?;
        rows.iter().map(api_token_row).collect()
    }

    async fn revoke_api_token(&self, id: &str, now: UnixMs) -> StoreResult<bool> {
        let mut conn = self.writer().await;
        let known: Option<String> = sqlx::query_scalar("SELECT id FROM api_tokens WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(unavailable)?;
        if known.is_none() {
            return Err(StoreError::NotFound(format!("no API token {id}")));
        }
        // One statement: the count of the other live admins and the revocation cannot be
        // separated by another replica's write.
        let updated = sqlx::query(
            "UPDATE api_tokens SET revoked_at_ms = ? WHERE id = ? AND revoked_at_ms IS NULL \
             AND NOT (role = 'admin' AND customer_id IS NULL AND NOT EXISTS ( \
                 SELECT 1 FROM api_tokens o WHERE o.id <> api_tokens.id AND o.role = 'admin' \
                 AND o.customer_id IS NULL AND o.revoked_at_ms IS NULL))",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?
        .rows_affected();
        if updated > 0 {
            return Ok(true);
        }
        let live: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM api_tokens WHERE id = ? AND revoked_at_ms IS NULL")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await
                .map_err(unavailable)?;
        if live.is_some() {
            return Err(StoreError::FailedPrecondition(format!(
                "API token {id} is the last admin token: revoking it would lock every \
                 operator out; create another admin token first (or, on the collector's \
                 machine, `vigil-collector admin-token --data-dir DIR`)"
            )));
        }
        Ok(false)
    }

    async fn count_api_tokens(&self) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_tokens")
            .fetch_one(&self.read)
            .await
            .map_err(unavailable)?;
        Ok(n.max(0) as u64)
    }

    async fn record_audit(&self, e: &AuditEntry) -> StoreResult<()> {
        let mut conn = self.writer().await;
        sqlx::query(
            "INSERT INTO audit_log (at_ms, actor, action, target, detail, source) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(e.at_ms)
        .bind(&e.actor)
        .bind(&e.action)
        .bind(&e.target)
        .bind(&e.detail)
        .bind(&e.source)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn audit_log(&self, limit: u32) -> StoreResult<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT at_ms, actor, action, target, detail, source FROM audit_log \
             ORDER BY at_ms DESC, id DESC LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                Ok(AuditEntry {
                    at_ms: row.try_get("at_ms").map_err(corrupt)?,
                    actor: row.try_get("actor").map_err(corrupt)?,
                    action: row.try_get("action").map_err(corrupt)?,
                    target: row.try_get("target").map_err(corrupt)?,
                    detail: row.try_get("detail").map_err(corrupt)?,
                    source: row.try_get("source").map_err(corrupt)?,
                })
            })
            .collect()
    }

    async fn eval_states(&self, hosts: &[HostId]) -> StoreResult<Vec<HostEvalState>> {
        self.eval_states_impl(hosts).await
    }

    async fn apply_evaluations(
        &self,
        batch: &[HostEvaluation],
        reopen_within_ms: i64,
        now: UnixMs,
    ) -> StoreResult<Vec<IncidentChange>> {
        self.apply_evaluations_impl(batch, reopen_within_ms, now).await
    }

    async fn list_incidents(&self, filter: &IncidentFilter) -> StoreResult<Vec<IncidentRow>> {
        self.list_incidents_impl(filter).await
    }

    async fn get_incident(&self, id: i64) -> StoreResult<Option<IncidentRow>> {
        self.get_incident_impl(id).await
    }

    async fn incident_timeline(&self, id: i64) -> StoreResult<Vec<TimelineEntry>> {
        self.incident_timeline_impl(id).await
    }

    async fn work_incident(
        &self,
        id: i64,
        action: &IncidentAction,
        actor: &str,
        now: UnixMs,
    ) -> StoreResult<IncidentRow> {
        self.work_incident_impl(id, action, actor, now).await
    }

    async fn close_resolved(&self, resolved_before: UnixMs, now: UnixMs) -> StoreResult<u64> {
        self.close_resolved_impl(resolved_before, now).await
    }

    async fn create_maintenance(&self, window: &MaintenanceWindowRow) -> StoreResult<()> {
        self.create_maintenance_impl(window).await
    }

    async fn list_maintenance(&self) -> StoreResult<Vec<MaintenanceWindowRow>> {
        self.list_maintenance_impl().await
    }

    async fn delete_maintenance(&self, id: &str) -> StoreResult<bool> {
        self.delete_maintenance_impl(id).await
    }

    async fn get_contract(&self, customer: CustomerId) -> StoreResult<Option<ContractRow>> {
        self.get_contract_impl(customer).await
    }

    async fn list_contracts(&self) -> StoreResult<Vec<ContractRow>> {
        self.list_contracts_impl().await
    }

    async fn set_contract(&self, row: &ContractRow) -> StoreResult<()> {
        self.set_contract_impl(row).await
    }

    async fn reset_sla(&self, customer: Option<CustomerId>) -> StoreResult<()> {
        self.reset_sla_impl(customer).await
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: UnixMs,
        ttl_ms: i64,
    ) -> StoreResult<bool> {
        self.acquire_lease_impl(name, holder, now, ttl_ms).await
    }

    async fn sla_due(&self, now: UnixMs, limit: u32) -> StoreResult<Vec<SlaRow>> {
        self.sla_due_impl(now, limit).await
    }

    async fn apply_sla(
        &self,
        batch: &[(crate::sla::deadlines::IncidentSla, crate::sla::deadlines::SlaUpdate)],
        now: UnixMs,
    ) -> StoreResult<u64> {
        self.apply_sla_impl(batch, now).await
    }

    async fn incident_sla(&self, id: i64) -> StoreResult<Option<IncidentSlaView>> {
        self.incident_sla_impl(id).await
    }

    async fn pending_outbox(&self, limit: u32) -> StoreResult<Vec<OutboxItem>> {
        self.pending_outbox_impl(limit).await
    }

    async fn fan_out(
        &self,
        outbox_id: i64,
        incident_id: i64,
        deliveries: &[NewDelivery],
        now: UnixMs,
    ) -> StoreResult<()> {
        self.fan_out_impl(outbox_id, incident_id, deliveries, now).await
    }

    async fn due_deliveries(&self, now: UnixMs, limit: u32) -> StoreResult<Vec<DeliveryRow>> {
        self.due_deliveries_impl(now, limit).await
    }

    async fn dead_letters(&self, limit: u32) -> StoreResult<Vec<DeliveryRow>> {
        self.dead_letters_impl(limit).await
    }

    async fn dead_letter_counts(&self) -> StoreResult<Vec<DeadLetterCount>> {
        self.dead_letter_counts_impl().await
    }

    async fn drop_delivery(&self, id: i64) -> StoreResult<DeliveryRow> {
        self.drop_delivery_impl(id).await
    }

    async fn record_delivery(
        &self,
        id: i64,
        outcome: &DeliveryOutcome,
        now: UnixMs,
    ) -> StoreResult<()> {
        self.record_delivery_impl(id, outcome, now).await
    }

    async fn incident_deliveries(&self, incident: i64) -> StoreResult<Vec<DeliveryRow>> {
        self.incident_deliveries_impl(incident).await
    }

    async fn notification_backlog(&self) -> StoreResult<(u64, u64)> {
        self.notification_backlog_impl().await
    }

    async fn incident_stats(&self) -> StoreResult<Vec<IncidentStat>> {
        self.incident_stats_impl().await
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.read).await.map_err(unavailable)?;
        Ok(())
    }
}
