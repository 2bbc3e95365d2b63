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
    read: SqlitePool,
    write: Mutex<SqliteConnection>,
}

fn unavailable(err: sqlx::Error) -> StoreError {
    StoreError::Unavailable(err.to_string())
}

fn parse_id<T: FromStr>(text: &str) -> StoreResult<T> {
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
        Ok(Self { read, write: Mutex::new(write) })
    }

    async fn ensure_tenant(conn: &mut SqliteConnection, now: UnixMs) -> StoreResult<SiteId> {
        sqlx::query(
            "INSERT INTO customers (id, name, created_at_ms) VALUES (?, ?, ?) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(CustomerId::new_random().to_string())
        .bind(DEFAULT_TENANT)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
        let customer: String = sqlx::query_scalar("SELECT id FROM customers WHERE name = ?")
            .bind(DEFAULT_TENANT)
            .fetch_one(&mut *conn)
            .await
            .map_err(unavailable)?;
        sqlx::query(
            "INSERT INTO sites (id, customer_id, name, created_at_ms) VALUES (?, ?, ?, ?) \
             ON CONFLICT (customer_id, name) DO NOTHING",
        )
        .bind(SiteId::new_random().to_string())
        .bind(&customer)
        .bind(DEFAULT_TENANT)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
        let site: String =
            sqlx::query_scalar("SELECT id FROM sites WHERE customer_id = ? AND name = ?")
                .bind(&customer)
                .bind(DEFAULT_TENANT)
                .fetch_one(&mut *conn)
                .await
                .map_err(unavailable)?;
        parse_id(&site)
    }

    async fn commit_one(tx: &mut SqliteConnection, r: &ReportRecord) -> StoreResult<CommitOutcome> {
        let host = r.host_id.to_string();
        let inserted = sqlx::query(
            "INSERT INTO report_receipts \
             (host_id, instance, seq, collected_at_ms, received_at_ms, replayed) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (host_id, instance, seq) DO NOTHING",
        )
        .bind(&host)
        .bind(&r.instance)
        .bind(r.seq as i64)
        .bind(r.collected_at_ms)
        .bind(r.received_at_ms)
        .bind(r.replayed)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?
        .rows_affected();

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
        .map_err(unavailable)?;

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
        .map_err(unavailable)?;

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
        .map_err(unavailable)?;

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
            .map_err(unavailable)?;
        }
        Ok(CommitOutcome::Stored)
    }
}

const HOST_COLUMNS: &str = "h.id, c.id AS customer_id, c.name AS customer, s.id AS site_id, \
     s.name AS site, h.hostname, h.created_at_ms, h.last_seen_ms, h.interval_seconds, \
     h.agent_version, h.goodbye_reason, h.goodbye_at_ms \
     FROM hosts h JOIN sites s ON s.id = h.site_id JOIN customers c ON c.id = s.customer_id";

fn host_row(row: &sqlx::sqlite::SqliteRow) -> StoreResult<HostRow> {
    let get = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
    Ok(HostRow {
        id: parse_id(&row.try_get::<String, _>("id").map_err(get)?)?,
        customer_id: parse_id(&row.try_get::<String, _>("customer_id").map_err(get)?)?,
        customer: row.try_get("customer").map_err(get)?,
        site_id: parse_id(&row.try_get::<String, _>("site_id").map_err(get)?)?,
        site: row.try_get("site").map_err(get)?,
        hostname: row.try_get("hostname").map_err(get)?,
        created_at_ms: row.try_get("created_at_ms").map_err(get)?,
        last_seen_ms: row.try_get("last_seen_ms").map_err(get)?,
        interval_seconds: row.try_get::<i64, _>("interval_seconds").map_err(get)? as u32,
        agent_version: row.try_get("agent_version").map_err(get)?,
        goodbye_reason: row.try_get("goodbye_reason").map_err(get)?,
        goodbye_at_ms: row.try_get("goodbye_at_ms").map_err(get)?,
    })
}

fn latest_row(row: &sqlx::sqlite::SqliteRow) -> StoreResult<LatestReport> {
    let get = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
    Ok(LatestReport {
        instance: row.try_get("instance").map_err(get)?,
        seq: row.try_get::<i64, _>("seq").map_err(get)? as u64,
        collected_at_ms: row.try_get("collected_at_ms").map_err(get)?,
        received_at_ms: row.try_get("received_at_ms").map_err(get)?,
        encoded: row.try_get("report").map_err(get)?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn register_host(
        &self,
        key: &str,
        hostname: &str,
        now: UnixMs,
    ) -> StoreResult<(HostId, bool)> {
        let mut conn = self.write.lock().await;
        let existing: Option<String> =
            sqlx::query_scalar("SELECT id FROM hosts WHERE registration_key = ?")
                .bind(key)
                .fetch_optional(&mut *conn)
                .await
                .map_err(unavailable)?;
        if let Some(id) = existing {
            return Ok((parse_id(&id)?, false));
        }
        let site = Self::ensure_tenant(&mut conn, now).await?;
        let id = HostId::new_random();
        sqlx::query(
            "INSERT INTO hosts (id, site_id, registration_key, hostname, created_at_ms) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(id.to_string())
        .bind(site.to_string())
        .bind(key)
        .bind(hostname)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
        Ok((id, true))
    }

    async fn commit_reports(&self, records: &[ReportRecord]) -> StoreResult<Vec<CommitOutcome>> {
        let mut conn = self.write.lock().await;
        let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(unavailable)?;
        let mut outcomes = Vec::with_capacity(records.len());
        for record in records {
            outcomes.push(Self::commit_one(&mut tx, record).await?);
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(outcomes)
    }

    async fn record_goodbye(&self, host: HostId, reason: &str, at: UnixMs) -> StoreResult<()> {
        let mut conn = self.write.lock().await;
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
        let mut conn = self.write.lock().await;
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
            "SELECT instance, first_seen_ms, last_seen_ms, last_live_ms, max_seq \
             FROM agent_instances WHERE host_id = ? ORDER BY first_seen_ms, instance",
        )
        .bind(id.to_string())
        .fetch_all(&self.read)
        .await
        .map_err(unavailable)?;
        let get = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
        rows.iter()
            .map(|row| {
                Ok(InstanceRow {
                    instance: row.try_get("instance").map_err(get)?,
                    first_seen_ms: row.try_get("first_seen_ms").map_err(get)?,
                    last_seen_ms: row.try_get("last_seen_ms").map_err(get)?,
                    last_live_ms: row.try_get("last_live_ms").map_err(get)?,
                    max_seq: row.try_get::<i64, _>("max_seq").map_err(get)? as u64,
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
        let get = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
        rows.iter()
            .map(|row| {
                Ok(HostEvent {
                    at_ms: row.try_get("at_ms").map_err(get)?,
                    kind: row.try_get("kind").map_err(get)?,
                    detail: row.try_get("detail").map_err(get)?,
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
        let get = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
        rows.iter()
            .map(|row| {
                Ok(Receipt {
                    instance: row.try_get("instance").map_err(get)?,
                    seq: row.try_get::<i64, _>("seq").map_err(get)? as u64,
                    collected_at_ms: row.try_get("collected_at_ms").map_err(get)?,
                    received_at_ms: row.try_get("received_at_ms").map_err(get)?,
                    replayed: row.try_get("replayed").map_err(get)?,
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
        let get = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
        rows.iter()
            .map(|row| {
                let sum: f64 = row.try_get("sum_value").map_err(get)?;
                let count = row.try_get::<i64, _>("sample_count").map_err(get)?.max(1) as u64;
                Ok(Rollup {
                    series: row.try_get("series").map_err(get)?,
                    bucket_start_ms: row.try_get("bucket_start_ms").map_err(get)?,
                    min: row.try_get("min_value").map_err(get)?,
                    max: row.try_get("max_value").map_err(get)?,
                    avg: sum / count as f64,
                    count,
                })
            })
            .collect()
    }

    async fn prune(
        &self,
        receipts_before: UnixMs,
        rollups_before: UnixMs,
    ) -> StoreResult<PruneStats> {
        let mut conn = self.write.lock().await;
        let receipts = sqlx::query("DELETE FROM report_receipts WHERE received_at_ms < ?")
            .bind(receipts_before)
            .execute(&mut *conn)
            .await
            .map_err(unavailable)?
            .rows_affected();
        let rollups = sqlx::query("DELETE FROM rollups_5m WHERE bucket_start_ms < ?")
            .bind(rollups_before)
            .execute(&mut *conn)
            .await
            .map_err(unavailable)?
            .rows_affected();
        Ok(PruneStats { receipts, rollups })
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.read).await.map_err(unavailable)?;
        Ok(())
    }
}
