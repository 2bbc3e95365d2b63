//! SQLite side of contracts, SLA clocks, the single-runner lease and the notification outbox.
//! Portable SQL only (`ON CONFLICT … DO UPDATE … WHERE`, `RETURNING`, `COALESCE`), so the
//! PostgreSQL store can share it.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::sqlite::{SqliteStore, corrupt, parse_id, unavailable};
use super::sqlite_incidents::timeline_batch;
use super::*;
use crate::classify::FaultLevel;
use crate::sla::deadlines::{IncidentSla, SlaUpdate};

fn contract_row(row: &SqliteRow) -> StoreResult<ContractRow> {
    Ok(ContractRow {
        customer_id: parse_id(&row.try_get::<String, _>("customer_id").map_err(corrupt)?)?,
        body: row.try_get("body").map_err(corrupt)?,
        updated_at_ms: row.try_get("updated_at_ms").map_err(corrupt)?,
        updated_by: row.try_get("updated_by").map_err(corrupt)?,
    })
}

fn delivery_row(row: &SqliteRow) -> StoreResult<DeliveryRow> {
    Ok(DeliveryRow {
        id: row.try_get("id").map_err(corrupt)?,
        incident_id: row.try_get("incident_id").map_err(corrupt)?,
        event_id: row.try_get("event_id").map_err(corrupt)?,
        receiver: row.try_get("receiver").map_err(corrupt)?,
        payload: row.try_get("payload").map_err(corrupt)?,
        state: row.try_get("state").map_err(corrupt)?,
        attempts: row.try_get::<i64, _>("attempts").map_err(corrupt)? as u32,
        next_attempt_at_ms: row.try_get("next_attempt_at_ms").map_err(corrupt)?,
        last_error: row.try_get("last_error").map_err(corrupt)?,
        delivered_at_ms: row.try_get("delivered_at_ms").map_err(corrupt)?,
    })
}

const DELIVERY_COLUMNS: &str = "id, incident_id, event_id, receiver, payload, state, attempts, \
     next_attempt_at_ms, last_error, delivered_at_ms";

impl SqliteStore {
    pub(super) async fn get_contract_impl(
        &self,
        customer: CustomerId,
    ) -> StoreResult<Option<ContractRow>> {
        let row = sqlx::query(
            "SELECT customer_id, body, updated_at_ms, updated_by FROM contracts \
             WHERE customer_id = ?",
        )
        .bind(customer.to_string())
        .fetch_optional(&self.read)
        .await
        .map_err(unavailable)?;
        row.as_ref().map(contract_row).transpose()
    }

    pub(super) async fn list_contracts_impl(&self) -> StoreResult<Vec<ContractRow>> {
        let rows =
            sqlx::query("SELECT customer_id, body, updated_at_ms, updated_by FROM contracts")
                .fetch_all(&self.read)
                .await
                .map_err(unavailable)?;
        rows.iter().map(contract_row).collect()
    }

    pub(super) async fn set_contract_impl(&self, row: &ContractRow) -> StoreResult<()> {
        let mut conn = self.writer().await;
        let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(unavailable)?;
        sqlx::query(
            "INSERT INTO contracts (customer_id, body, updated_at_ms, updated_by) \
             VALUES (?, ?, ?, ?) ON CONFLICT (customer_id) DO UPDATE SET body = excluded.body, \
             updated_at_ms = excluded.updated_at_ms, updated_by = excluded.updated_by",
        )
        .bind(row.customer_id.to_string())
        .bind(&row.body)
        .bind(row.updated_at_ms)
        .bind(&row.updated_by)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        reset_sla(&mut tx, Some(row.customer_id)).await?;
        tx.commit().await.map_err(unavailable)
    }

    pub(super) async fn reset_sla_impl(&self, customer: Option<CustomerId>) -> StoreResult<()> {
        let mut conn = self.writer().await;
        reset_sla(&mut conn, customer).await
    }

    pub(super) async fn acquire_lease_impl(
        &self,
        name: &str,
        holder: &str,
        now: UnixMs,
        ttl_ms: i64,
    ) -> StoreResult<bool> {
        let mut conn = self.writer().await;
        sqlx::query(
            "INSERT INTO leases (name, holder, expires_at_ms) VALUES (?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
             expires_at_ms = excluded.expires_at_ms \
             WHERE leases.holder = excluded.holder OR leases.expires_at_ms < ?",
        )
        .bind(name)
        .bind(holder)
        .bind(now + ttl_ms)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
        let current: String = sqlx::query_scalar("SELECT holder FROM leases WHERE name = ?")
            .bind(name)
            .fetch_one(&mut *conn)
            .await
            .map_err(unavailable)?;
        Ok(current == holder)
    }

    pub(super) async fn sla_due_impl(&self, now: UnixMs, limit: u32) -> StoreResult<Vec<SlaRow>> {
        let rows = sqlx::query(
            "SELECT id, customer_id, site_id, host_id, rule, level, \
             COALESCE(sla_start_ms, opened_at_ms) AS start_ms, acknowledged_at_ms, \
             resolved_at_ms, tier, sla_level, response_due_ms, resolution_due_ms, response_met, \
             resolution_met, response_warned, resolution_warned FROM incidents \
             WHERE sla_done = FALSE AND (sla_check_at_ms IS NULL OR sla_check_at_ms <= ?) \
             ORDER BY id LIMIT ?",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                let level: i64 = row.try_get("level").map_err(corrupt)?;
                let host: Option<String> = row.try_get("host_id").map_err(corrupt)?;
                Ok(SlaRow {
                    customer_id: parse_id(
                        &row.try_get::<String, _>("customer_id").map_err(corrupt)?,
                    )?,
                    site_id: parse_id(&row.try_get::<String, _>("site_id").map_err(corrupt)?)?,
                    host_id: host.as_deref().map(parse_id).transpose()?,
                    rule: row.try_get("rule").map_err(corrupt)?,
                    sla: IncidentSla {
                        id: row.try_get("id").map_err(corrupt)?,
                        level: FaultLevel::from_u8(level as u8).ok_or_else(|| {
                            StoreError::Corrupt(format!("bad incident level {level}"))
                        })?,
                        opened_at_ms: row.try_get("start_ms").map_err(corrupt)?,
                        acknowledged_at_ms: row.try_get("acknowledged_at_ms").map_err(corrupt)?,
                        resolved_at_ms: row.try_get("resolved_at_ms").map_err(corrupt)?,
                        tier: row.try_get::<i64, _>("tier").map_err(corrupt)? as u8,
                        sla_level: row
                            .try_get::<Option<i64>, _>("sla_level")
                            .map_err(corrupt)?
                            .map(|l| l as u8),
                        response_due_ms: row.try_get("response_due_ms").map_err(corrupt)?,
                        resolution_due_ms: row.try_get("resolution_due_ms").map_err(corrupt)?,
                        response_met: row.try_get("response_met").map_err(corrupt)?,
                        resolution_met: row.try_get("resolution_met").map_err(corrupt)?,
                        response_warned: row.try_get("response_warned").map_err(corrupt)?,
                        resolution_warned: row.try_get("resolution_warned").map_err(corrupt)?,
                    },
                })
            })
            .collect()
    }

    pub(super) async fn apply_sla_impl(
        &self,
        batch: &[(IncidentSla, SlaUpdate)],
        now: UnixMs,
    ) -> StoreResult<u64> {
        let mut conn = self.writer().await;
        let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(unavailable)?;
        let mut applied = std::collections::HashSet::new();
        // One multi-row UPDATE per chunk (15 parameters a row, well under SQLite's limit).
        // Each row only if nothing the clocks depend on changed since the sweep read the
        // incident; otherwise it is marked for the next sweep already and is left to it.
        for chunk in batch.chunks(500) {
            let mut sql = String::from(
                "WITH v (id, tier, sla_level, response_due_ms, resolution_due_ms, response_met, \
                 resolution_met, response_warned, resolution_warned, check_at, done, seen_level, \
                 seen_ack, seen_resolved, seen_start) AS (VALUES ",
            );
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
            }
            sql.push_str(
                ") UPDATE incidents SET tier = v.tier, sla_level = v.sla_level, \
                 response_due_ms = v.response_due_ms, resolution_due_ms = v.resolution_due_ms, \
                 response_met = v.response_met, resolution_met = v.resolution_met, \
                 response_warned = v.response_warned, resolution_warned = v.resolution_warned, \
                 sla_check_at_ms = v.check_at, sla_done = v.done FROM v \
                 WHERE incidents.id IN (SELECT id FROM v) AND incidents.id = v.id \
                 AND incidents.level = v.seen_level \
                 AND COALESCE(incidents.acknowledged_at_ms, -1) = v.seen_ack \
                 AND COALESCE(incidents.resolved_at_ms, -1) = v.seen_resolved \
                 AND incidents.sla_done = FALSE \
                 AND COALESCE(incidents.sla_start_ms, incidents.opened_at_ms) = v.seen_start \
                 RETURNING incidents.id",
            );
            let mut query = sqlx::query_scalar::<_, i64>(&sql);
            for (seen, u) in chunk {
                query = query
                    .bind(u.id)
                    .bind(i64::from(u.tier))
                    .bind(i64::from(u.sla_level))
                    .bind(u.response_due_ms)
                    .bind(u.resolution_due_ms)
                    .bind(u.response_met)
                    .bind(u.resolution_met)
                    .bind(u.response_warned)
                    .bind(u.resolution_warned)
                    .bind(u.next_check_ms)
                    .bind(u.next_check_ms.is_none())
                    .bind(i64::from(seen.level.as_u8()))
                    .bind(seen.acknowledged_at_ms.unwrap_or(-1))
                    .bind(seen.resolved_at_ms.unwrap_or(-1))
                    .bind(seen.opened_at_ms);
            }
            applied.extend(query.fetch_all(&mut *tx).await.map_err(unavailable)?);
        }
        let entries: Vec<(i64, &str, &str)> = batch
            .iter()
            .filter(|(_, u)| applied.contains(&u.id))
            .flat_map(|(_, u)| u.entries.iter().map(|e| (u.id, e.kind, e.detail.as_str())))
            .collect();
        timeline_batch(&mut tx, &entries, now).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(applied.len() as u64)
    }

    pub(super) async fn incident_sla_impl(&self, id: i64) -> StoreResult<Option<IncidentSlaView>> {
        let row = sqlx::query(
            "SELECT tier, response_due_ms, resolution_due_ms, response_met, resolution_met, \
             COALESCE(sla_start_ms, opened_at_ms) AS start_ms FROM incidents WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.read)
        .await
        .map_err(unavailable)?;
        row.map(|row| {
            Ok(IncidentSlaView {
                tier: row.try_get::<i64, _>("tier").map_err(corrupt)? as u8,
                response_due_ms: row.try_get("response_due_ms").map_err(corrupt)?,
                resolution_due_ms: row.try_get("resolution_due_ms").map_err(corrupt)?,
                response_met: row.try_get("response_met").map_err(corrupt)?,
                resolution_met: row.try_get("resolution_met").map_err(corrupt)?,
                sla_start_ms: row.try_get("start_ms").map_err(corrupt)?,
            })
        })
        .transpose()
    }

    pub(super) async fn pending_outbox_impl(&self, limit: u32) -> StoreResult<Vec<OutboxItem>> {
        let rows = sqlx::query(
            "SELECT o.id, o.incident_id, o.timeline_id, t.kind, t.detail, t.at_ms FROM outbox o \
             JOIN incident_timeline t ON t.id = o.timeline_id WHERE o.fanned_out = FALSE \
             ORDER BY o.id LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                Ok(OutboxItem {
                    id: row.try_get("id").map_err(corrupt)?,
                    incident_id: row.try_get("incident_id").map_err(corrupt)?,
                    timeline_id: row.try_get("timeline_id").map_err(corrupt)?,
                    kind: row.try_get("kind").map_err(corrupt)?,
                    detail: row.try_get("detail").map_err(corrupt)?,
                    at_ms: row.try_get("at_ms").map_err(corrupt)?,
                })
            })
            .collect()
    }

    pub(super) async fn fan_out_impl(
        &self,
        outbox_id: i64,
        incident_id: i64,
        deliveries: &[NewDelivery],
        now: UnixMs,
    ) -> StoreResult<()> {
        let mut conn = self.writer().await;
        let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(unavailable)?;
        for d in deliveries {
            sqlx::query(
                "INSERT INTO deliveries (outbox_id, incident_id, event_id, receiver, payload, \
                 state, attempts, next_attempt_at_ms) VALUES (?, ?, ?, ?, ?, 'pending', 0, ?) \
                 ON CONFLICT (outbox_id, receiver) DO NOTHING",
            )
            .bind(outbox_id)
            .bind(incident_id)
            .bind(&d.event_id)
            .bind(&d.receiver)
            .bind(&d.payload)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        }
        sqlx::query("UPDATE outbox SET fanned_out = TRUE WHERE id = ?")
            .bind(outbox_id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)
    }

    pub(super) async fn due_deliveries_impl(
        &self,
        now: UnixMs,
        limit: u32,
    ) -> StoreResult<Vec<DeliveryRow>> {
        // In order per incident and receiver: one waits while an earlier one is pending, so
        // a receiver never sees "resolved" before "opened".
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d \
             WHERE state IN ('pending', 'dead_letter') \
             AND next_attempt_at_ms <= ? AND NOT EXISTS (SELECT 1 FROM deliveries e \
             WHERE e.incident_id = d.incident_id AND e.receiver = d.receiver \
             AND e.state IN ('pending', 'dead_letter') AND e.id < d.id) ORDER BY id LIMIT ?"
        ))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(unavailable)?;
        rows.iter().map(delivery_row).collect()
    }

    pub(super) async fn record_delivery_impl(
        &self,
        id: i64,
        outcome: &DeliveryOutcome,
        now: UnixMs,
    ) -> StoreResult<()> {
        let (state, error, next, delivered) = match outcome {
            DeliveryOutcome::Delivered => ("delivered", None, now, Some(now)),
            DeliveryOutcome::Retry { error, at_ms } => ("pending", Some(error), *at_ms, None),
            DeliveryOutcome::DeadLetter { error, at_ms } => {
                ("dead_letter", Some(error), *at_ms, None)
            }
        };
        let mut conn = self.writer().await;
        sqlx::query(
            "UPDATE deliveries SET state = ?, attempts = attempts + 1, next_attempt_at_ms = ?, \
             last_error = COALESCE(?, last_error), delivered_at_ms = ? WHERE id = ?",
        )
        .bind(state)
        .bind(next)
        .bind(error)
        .bind(delivered)
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    pub(super) async fn dead_letters_impl(&self, limit: u32) -> StoreResult<Vec<DeliveryRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE state = 'dead_letter' \
             ORDER BY id LIMIT ?"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(unavailable)?;
        rows.iter().map(delivery_row).collect()
    }

    pub(super) async fn dead_letter_counts_impl(&self) -> StoreResult<Vec<DeadLetterCount>> {
        let rows = sqlx::query(
            "SELECT receiver, COUNT(*) AS n FROM deliveries WHERE state = 'dead_letter' \
             GROUP BY receiver ORDER BY receiver",
        )
        .fetch_all(&self.read)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                Ok(DeadLetterCount {
                    receiver: row.try_get("receiver").map_err(corrupt)?,
                    count: row.try_get::<i64, _>("n").map_err(corrupt)?.max(0) as u64,
                })
            })
            .collect()
    }

    pub(super) async fn drop_delivery_impl(&self, id: i64) -> StoreResult<DeliveryRow> {
        let mut conn = self.writer().await;
        let dropped = sqlx::query(
            "UPDATE deliveries SET state = 'dropped' WHERE id = ? AND state = 'dead_letter'",
        )
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?
        .rows_affected();
        let row = sqlx::query(&format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?"))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(unavailable)?;
        let Some(row) = row.as_ref().map(delivery_row).transpose()? else {
            return Err(StoreError::NotFound(format!("no notification delivery {id}")));
        };
        if dropped == 0 {
            return Err(StoreError::Conflict(format!(
                "notification delivery {id} is {}, not dead-lettered: only a dead letter can be \
                 dropped",
                row.state
            )));
        }
        Ok(row)
    }

    pub(super) async fn incident_deliveries_impl(
        &self,
        incident: i64,
    ) -> StoreResult<Vec<DeliveryRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE incident_id = ? ORDER BY id"
        ))
        .bind(incident)
        .fetch_all(&self.read)
        .await
        .map_err(unavailable)?;
        rows.iter().map(delivery_row).collect()
    }

    pub(super) async fn incident_stats_impl(&self) -> StoreResult<Vec<IncidentStat>> {
        let rows = sqlx::query(
            "SELECT c.name AS customer, i.level, i.state, \
             COALESCE(i.sla_start_ms, i.opened_at_ms) AS start_ms, i.acknowledged_at_ms, \
             i.resolved_at_ms, i.response_met, i.resolution_met \
             FROM incidents i JOIN customers c ON c.id = i.customer_id",
        )
        .fetch_all(&self.read)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                let state: String = row.try_get("state").map_err(corrupt)?;
                Ok(IncidentStat {
                    customer: row.try_get("customer").map_err(corrupt)?,
                    level: row.try_get::<i64, _>("level").map_err(corrupt)? as u8,
                    active: state == "open" || state == "acknowledged",
                    clock_start_ms: row.try_get("start_ms").map_err(corrupt)?,
                    acknowledged_at_ms: row.try_get("acknowledged_at_ms").map_err(corrupt)?,
                    resolved_at_ms: row.try_get("resolved_at_ms").map_err(corrupt)?,
                    response_met: row.try_get("response_met").map_err(corrupt)?,
                    resolution_met: row.try_get("resolution_met").map_err(corrupt)?,
                })
            })
            .collect()
    }

    pub(super) async fn notification_backlog_impl(&self) -> StoreResult<(u64, u64)> {
        let outbox: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE fanned_out = FALSE")
                .fetch_one(&self.read)
                .await
                .map_err(unavailable)?;
        let deliveries: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE state = 'pending'")
                .fetch_one(&self.read)
                .await
                .map_err(unavailable)?;
        Ok((outbox as u64, deliveries as u64))
    }
}

/// Marks the incidents of `customer` (of everyone when None) for the next SLA sweep.
pub(super) async fn reset_sla(
    conn: &mut sqlx::SqliteConnection,
    customer: Option<CustomerId>,
) -> StoreResult<()> {
    let mut sql = String::from(
        "UPDATE incidents SET sla_done = FALSE, sla_check_at_ms = NULL \
         WHERE state IN ('open', 'acknowledged')",
    );
    if customer.is_some() {
        sql.push_str(" AND customer_id = ?");
    }
    let mut query = sqlx::query(&sql);
    if let Some(customer) = customer {
        query = query.bind(customer.to_string());
    }
    query.execute(&mut *conn).await.map_err(unavailable)?;
    Ok(())
}
