//! PostgreSQL side of contracts, SLA clocks and the single-runner lease. Portable SQL only (`ON
//! CONFLICT … DO UPDATE … WHERE`, `RETURNING`, `COALESCE`), so the PostgreSQL store can share it.

use async_trait::async_trait;
use sqlx::Row;

use super::incidents::timeline_batch;
use super::*;

fn contract_row(row: &PgRow) -> StoreResult<ContractRow> {
    Ok(ContractRow {
        customer_id: parse_id(&row.try_get::<String, _>("customer_id").map_err(corrupt)?)?,
        body: row.try_get("body").map_err(corrupt)?,
        updated_at_ms: row.try_get("updated_at_ms").map_err(corrupt)?,
        updated_by: row.try_get("updated_by").map_err(corrupt)?,
    })
}

/// Refuses a write whose fence is stale: the lease is no longer `fence.holder`'s at
/// `fence.generation`, or it expired by the database's clock. Called first in the write's
/// transaction; the row is locked `FOR SHARE` until that transaction ends, so a takeover (an
/// update of the row) waits for it: the write lands before the lease moves, or is refused.
pub(super) async fn check_fence(tx: &mut PgConnection, fence: &Fence) -> StoreResult<()> {
    let held: Option<i64> = sqlx::query_scalar(&format!(
        "SELECT generation FROM leases WHERE name = $1 AND holder = $2 AND generation = $3 \
         AND expires_at_ms >= {DB_NOW_MS} FOR SHARE"
    ))
    .bind(&fence.lease)
    .bind(&fence.holder)
    .bind(fence.generation)
    .fetch_optional(&mut *tx)
    .await
    .map_err(unavailable)?;
    match held {
        Some(_) => Ok(()),
        None => Err(fenced(fence)),
    }
}

/// Marks the incidents of `customer` (of everyone when None) for the next SLA sweep.
pub(super) async fn reset_sla(
    conn: &mut sqlx::PgConnection,
    customer: Option<CustomerId>,
) -> StoreResult<()> {
    let mut sql = String::from(
        "UPDATE incidents SET sla_done = FALSE, sla_check_at_ms = NULL \
         WHERE state IN ('open', 'acknowledged')",
    );
    if customer.is_some() {
        sql.push_str(" AND customer_id = $1");
    }
    let mut query = sqlx::query(&sql);
    if let Some(customer) = customer {
        query = query.bind(customer.to_string());
    }
    query.execute(&mut *conn).await.map_err(unavailable)?;
    Ok(())
}

#[async_trait]
impl SlaStore for PgStore {
    async fn get_contract(&self, customer: CustomerId) -> StoreResult<Option<ContractRow>> {
        let row = sqlx::query(
            "SELECT customer_id, body, updated_at_ms, updated_by FROM contracts \
             WHERE customer_id = $1",
        )
        .bind(customer.to_string())
        .fetch_optional(&self.read)
        .await
        .map_err(unavailable)?;
        row.as_ref().map(contract_row).transpose()
    }

    async fn list_contracts(&self) -> StoreResult<Vec<ContractRow>> {
        let rows =
            sqlx::query("SELECT customer_id, body, updated_at_ms, updated_by FROM contracts")
                .fetch_all(&self.read)
                .await
                .map_err(unavailable)?;
        rows.iter().map(contract_row).collect()
    }

    async fn set_contract(&self, row: &ContractRow) -> StoreResult<()> {
        let mut conn = self.writer().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(unavailable)?;
        sqlx::query(
            "INSERT INTO contracts (customer_id, body, updated_at_ms, updated_by) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (customer_id) DO UPDATE SET body = excluded.body, \
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

    async fn reset_sla(&self, customer: Option<CustomerId>) -> StoreResult<()> {
        let mut conn = self.writer().await?;
        reset_sla(&mut conn, customer).await
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: UnixMs,
        ttl_ms: i64,
    ) -> StoreResult<Option<Fence>> {
        // Judged by the database's clock, which every replica shares: a replica whose own
        // clock runs fast or slow neither steals the lease nor keeps it too long.
        let _ = now;
        let mut conn = self.writer().await?;
        let generation: Option<i64> = sqlx::query_scalar(&format!(
            "INSERT INTO leases (name, holder, expires_at_ms, generation) \
             VALUES ($1, $2, {DB_NOW_MS} + $3, 1) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
             expires_at_ms = excluded.expires_at_ms, \
             generation = CASE WHEN leases.holder = excluded.holder THEN leases.generation \
                               ELSE leases.generation + 1 END \
             WHERE leases.holder = excluded.holder OR leases.expires_at_ms < {DB_NOW_MS} \
             RETURNING generation"
        ))
        .bind(name)
        .bind(holder)
        .bind(ttl_ms)
        .fetch_optional(&mut *conn)
        .await
        .map_err(unavailable)?;
        Ok(generation.map(|generation| Fence {
            lease: name.to_owned(),
            holder: holder.to_owned(),
            generation,
        }))
    }

    async fn sla_due(&self, now: UnixMs, limit: u32) -> StoreResult<Vec<SlaRow>> {
        let rows = sqlx::query(
            "SELECT id, customer_id, site_id, host_id, rule, level, \
             COALESCE(sla_start_ms, opened_at_ms) AS start_ms, acknowledged_at_ms, \
             resolved_at_ms, tier, sla_level, response_due_ms, resolution_due_ms, response_met, \
             resolution_met, response_warned, resolution_warned FROM incidents \
             WHERE sla_done = FALSE AND (sla_check_at_ms IS NULL OR sla_check_at_ms <= $1) \
             ORDER BY id LIMIT $2",
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

    async fn apply_sla(
        &self,
        batch: &[(IncidentSla, SlaUpdate)],
        now: UnixMs,
        fence: &Fence,
    ) -> StoreResult<u64> {
        let mut conn = self.writer().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(unavailable)?;
        check_fence(&mut tx, fence).await?;
        let mut applied = std::collections::HashSet::new();
        // One multi-row UPDATE per chunk (15 parameters a row, well under PostgreSQL's 65 535).
        // Each row only if nothing the clocks depend on changed since the sweep read the
        // incident; otherwise it is marked for the next sweep already and is left to it.
        for chunk in batch.chunks(500) {
            let mut sql = String::from(
                "WITH v (id, tier, sla_level, response_due_ms, resolution_due_ms, response_met, \
                 resolution_met, response_warned, resolution_warned, check_at, done, seen_level, \
                 seen_ack, seen_resolved, seen_start) AS (VALUES ",
            );
            // Typed, since PostgreSQL cannot infer the types of a VALUES list's parameters.
            sql.push_str(&values_rows(
                chunk.len(),
                &[
                    "BIGINT", "BIGINT", "BIGINT", "BIGINT", "BIGINT", "BOOLEAN", "BOOLEAN",
                    "BOOLEAN", "BOOLEAN", "BIGINT", "BOOLEAN", "BIGINT", "BIGINT", "BIGINT",
                    "BIGINT",
                ],
            ));
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
            let mut query = sqlx::query_scalar::<_, IncidentId>(&sql);
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
        let entries: Vec<(IncidentId, TimelineKind, &str)> = batch
            .iter()
            .filter(|(_, u)| applied.contains(&u.id))
            .flat_map(|(_, u)| u.entries.iter().map(|e| (u.id, e.kind, e.detail.as_str())))
            .collect();
        timeline_batch(&mut tx, &entries, now).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(applied.len() as u64)
    }

    async fn incident_sla(&self, id: IncidentId) -> StoreResult<Option<IncidentSlaView>> {
        let row = sqlx::query(
            "SELECT tier, response_due_ms, resolution_due_ms, response_met, resolution_met, \
             COALESCE(sla_start_ms, opened_at_ms) AS start_ms FROM incidents WHERE id = $1",
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
}
