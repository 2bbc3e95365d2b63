//! PostgreSQL side of the host queries.

use async_trait::async_trait;
use sqlx::Row;

use super::*;

const HOST_COLUMNS: &str = "h.id, c.id AS customer_id, c.name AS customer, s.id AS site_id, \
     s.name AS site, h.hostname, h.created_at_ms, h.last_seen_ms, h.interval_seconds, \
     h.agent_version, h.goodbye_reason, h.goodbye_at_ms, h.machine_id, h.revoked_at_ms, \
     h.replaced_by \
     FROM hosts h JOIN sites s ON s.id = h.site_id JOIN customers c ON c.id = s.customer_id";

fn host_row(row: &PgRow) -> StoreResult<HostRow> {
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

fn latest_row(row: &PgRow) -> StoreResult<LatestReport> {
    Ok(LatestReport {
        instance: row.try_get("instance").map_err(corrupt)?,
        seq: row.try_get::<i64, _>("seq").map_err(corrupt)? as u64,
        collected_at_ms: row.try_get("collected_at_ms").map_err(corrupt)?,
        received_at_ms: row.try_get("received_at_ms").map_err(corrupt)?,
        encoded: row.try_get("report").map_err(corrupt)?,
    })
}

#[async_trait]
impl HostStore for PgStore {
    async fn list_hosts(&self) -> StoreResult<Vec<HostRow>> {
        let rows =
            sqlx::query(&format!("SELECT {HOST_COLUMNS} ORDER BY c.name, s.name, h.hostname"))
                .fetch_all(&self.read)
                .await
                .map_err(unavailable)?;
        rows.iter().map(host_row).collect()
    }

    async fn get_host(&self, id: HostId) -> StoreResult<Option<HostRow>> {
        let row = sqlx::query(&format!("SELECT {HOST_COLUMNS} WHERE h.id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.read)
            .await
            .map_err(unavailable)?;
        row.as_ref().map(host_row).transpose()
    }

    async fn latest_report(&self, id: HostId) -> StoreResult<Option<LatestReport>> {
        let row = sqlx::query(
            "SELECT instance, seq, collected_at_ms, received_at_ms, report \
             FROM latest_reports WHERE host_id = $1",
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
             pruned_through_seq FROM agent_instances WHERE host_id = $1 ORDER BY first_seen_ms, instance",
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
            "SELECT at_ms, kind, detail FROM host_events WHERE host_id = $1 \
             ORDER BY at_ms DESC, id LIMIT $2",
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
             FROM report_receipts WHERE host_id = $1 AND ($2 IS NULL OR instance = $3) \
             ORDER BY received_at_ms, instance, seq LIMIT $4",
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
             FROM rollups_5m WHERE host_id = $1 AND series = $2 AND bucket_start_ms >= $3 \
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
        sqlx::query_as("SELECT series, first_seen_ms FROM host_series WHERE host_id = $1")
            .bind(id.to_string())
            .fetch_all(&self.read)
            .await
            .map_err(unavailable)
    }
}
