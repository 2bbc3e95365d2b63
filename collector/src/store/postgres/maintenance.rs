//! PostgreSQL side of maintenance windows; a change marks the affected incidents for the next SLA
//! sweep, since their clocks pause inside a window.

use async_trait::async_trait;
use sqlx::Row;

use super::*;

#[async_trait]
impl MaintenanceStore for PgStore {
    async fn create_maintenance(&self, w: &MaintenanceWindowRow) -> StoreResult<()> {
        let rules =
            serde_json::to_string(&w.rules).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut conn = self.writer().await?;
        sqlx::query(
            "INSERT INTO maintenance_windows (id, customer_id, site_id, host_id, rules, \
             start_local, duration_ms, recurrence, time_zone, until_local, reason, \
             created_at_ms, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&w.id)
        .bind(w.customer_id.to_string())
        .bind(w.site_id.map(|s| s.to_string()))
        .bind(w.host_id.map(|h| h.to_string()))
        .bind(rules)
        .bind(&w.start_local)
        .bind(w.duration_ms)
        .bind(&w.recurrence)
        .bind(&w.time_zone)
        .bind(&w.until_local)
        .bind(&w.reason)
        .bind(w.created_at_ms)
        .bind(&w.created_by)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
        // Clocks of the customer's incidents pause inside the window: recompute them.
        super::sla::reset_sla(&mut conn, Some(w.customer_id)).await?;
        Ok(())
    }

    async fn list_maintenance(&self) -> StoreResult<Vec<MaintenanceWindowRow>> {
        let rows = sqlx::query(
            "SELECT m.id, m.customer_id, c.name AS customer, m.site_id, s.name AS site, \
             m.host_id, h.hostname, m.rules, m.start_local, m.duration_ms, m.recurrence, \
             m.time_zone, m.until_local, m.reason, m.created_at_ms, m.created_by \
             FROM maintenance_windows m JOIN customers c ON c.id = m.customer_id \
             LEFT JOIN sites s ON s.id = m.site_id LEFT JOIN hosts h ON h.id = m.host_id \
             ORDER BY m.created_at_ms, m.id",
        )
        .fetch_all(&self.read)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                let rules: String = row.try_get("rules").map_err(corrupt)?;
                Ok(MaintenanceWindowRow {
                    id: row.try_get("id").map_err(corrupt)?,
                    customer_id: parse_id(
                        &row.try_get::<String, _>("customer_id").map_err(corrupt)?,
                    )?,
                    customer: row.try_get("customer").map_err(corrupt)?,
                    site_id: optional_id(row, "site_id")?,
                    site: row.try_get("site").map_err(corrupt)?,
                    host_id: optional_id(row, "host_id")?,
                    hostname: row.try_get("hostname").map_err(corrupt)?,
                    rules: serde_json::from_str(&rules)
                        .map_err(|e| StoreError::Corrupt(format!("maintenance rules: {e}")))?,
                    start_local: row.try_get("start_local").map_err(corrupt)?,
                    duration_ms: row.try_get("duration_ms").map_err(corrupt)?,
                    recurrence: row.try_get("recurrence").map_err(corrupt)?,
                    time_zone: row.try_get("time_zone").map_err(corrupt)?,
                    until_local: row.try_get("until_local").map_err(corrupt)?,
                    reason: row.try_get("reason").map_err(corrupt)?,
                    created_at_ms: row.try_get("created_at_ms").map_err(corrupt)?,
                    created_by: row.try_get("created_by").map_err(corrupt)?,
                })
            })
            .collect()
    }

    async fn delete_maintenance(&self, id: &str) -> StoreResult<bool> {
        let mut conn = self.writer().await?;
        let deleted = sqlx::query("DELETE FROM maintenance_windows WHERE id = $1")
            .bind(id)
            .execute(&mut *conn)
            .await
            .map_err(unavailable)?
            .rows_affected();
        if deleted > 0 {
            super::sla::reset_sla(&mut conn, None).await?;
        }
        Ok(deleted > 0)
    }
}
