//! PostgreSQL side of the notification outbox and deliveries.

use async_trait::async_trait;
use sqlx::Row;

use super::sla::check_fence;
use super::*;

const DELIVERY_COLUMNS: &str = "id, incident_id, event_id, receiver, payload, state, attempts, \
     next_attempt_at_ms, last_error, delivered_at_ms";

fn delivery_row(row: &PgRow) -> StoreResult<DeliveryRow> {
    Ok(DeliveryRow {
        id: row.try_get("id").map_err(corrupt)?,
        incident_id: row.try_get("incident_id").map_err(corrupt)?,
        event_id: row.try_get("event_id").map_err(corrupt)?,
        receiver: row.try_get("receiver").map_err(corrupt)?,
        payload: row.try_get("payload").map_err(corrupt)?,
        state: named_column(row, "state", DeliveryState::parse)?,
        attempts: row.try_get::<i64, _>("attempts").map_err(corrupt)? as u32,
        next_attempt_at_ms: row.try_get("next_attempt_at_ms").map_err(corrupt)?,
        last_error: row.try_get("last_error").map_err(corrupt)?,
        delivered_at_ms: row.try_get("delivered_at_ms").map_err(corrupt)?,
    })
}

#[async_trait]
impl NotifyStore for PgStore {
    async fn pending_outbox(&self, limit: u32) -> StoreResult<Vec<OutboxItem>> {
        let rows = sqlx::query(
            "SELECT o.id, o.incident_id, o.timeline_id, t.kind, t.detail, t.at_ms FROM outbox o \
             JOIN incident_timeline t ON t.id = o.timeline_id WHERE o.fanned_out = FALSE \
             ORDER BY o.id LIMIT $1",
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
                    kind: named_column(row, "kind", TimelineKind::parse)?,
                    detail: row.try_get("detail").map_err(corrupt)?,
                    at_ms: row.try_get("at_ms").map_err(corrupt)?,
                })
            })
            .collect()
    }

    async fn fan_out(
        &self,
        outbox_id: OutboxId,
        incident_id: IncidentId,
        deliveries: &[NewDelivery],
        now: UnixMs,
        fence: &Fence,
    ) -> StoreResult<()> {
        let mut conn = self.writer().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(unavailable)?;
        check_fence(&mut tx, fence).await?;
        for d in deliveries {
            sqlx::query(
                "INSERT INTO deliveries (outbox_id, incident_id, event_id, receiver, payload, \
                 state, attempts, next_attempt_at_ms) VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6) \
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
        sqlx::query("UPDATE outbox SET fanned_out = TRUE WHERE id = $1")
            .bind(outbox_id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)
    }

    async fn due_deliveries(&self, now: UnixMs, limit: u32) -> StoreResult<Vec<DeliveryRow>> {
        // In order per incident and receiver: one waits while an earlier one is pending, so
        // a receiver never sees "resolved" before "opened".
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d \
             WHERE state IN ('pending', 'dead_letter') \
             AND next_attempt_at_ms <= $1 AND NOT EXISTS (SELECT 1::BIGINT FROM deliveries e \
             WHERE e.incident_id = d.incident_id AND e.receiver = d.receiver \
             AND e.state IN ('pending', 'dead_letter') AND e.id < d.id) ORDER BY id LIMIT $2"
        ))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(unavailable)?;
        rows.iter().map(delivery_row).collect()
    }

    async fn dead_letters(&self, limit: u32) -> StoreResult<Vec<DeliveryRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE state = 'dead_letter' \
             ORDER BY id LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(unavailable)?;
        rows.iter().map(delivery_row).collect()
    }

    async fn dead_letter_counts(&self) -> StoreResult<Vec<DeadLetterCount>> {
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

    async fn drop_delivery(&self, id: DeliveryId) -> StoreResult<DeliveryRow> {
        let mut conn = self.writer().await?;
        let dropped = sqlx::query(
            "UPDATE deliveries SET state = 'dropped' WHERE id = $1 AND state = 'dead_letter'",
        )
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?
        .rows_affected();
        let row = sqlx::query(&format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = $1"))
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
                row.state.as_str()
            )));
        }
        Ok(row)
    }

    async fn record_delivery(
        &self,
        id: DeliveryId,
        outcome: &DeliveryOutcome,
        now: UnixMs,
        fence: &Fence,
    ) -> StoreResult<()> {
        let (state, error, next, delivered) = match outcome {
            DeliveryOutcome::Delivered => ("delivered", None, now, Some(now)),
            DeliveryOutcome::Retry { error, at_ms } => ("pending", Some(error), *at_ms, None),
            DeliveryOutcome::DeadLetter { error, at_ms } => {
                ("dead_letter", Some(error), *at_ms, None)
            }
        };
        let mut conn = self.writer().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(unavailable)?;
        check_fence(&mut tx, fence).await?;
        sqlx::query(
            "UPDATE deliveries SET state = $1, attempts = attempts + 1, next_attempt_at_ms = $2, \
             last_error = COALESCE($3, last_error), delivered_at_ms = $4 WHERE id = $5",
        )
        .bind(state)
        .bind(next)
        .bind(error)
        .bind(delivered)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(())
    }

    async fn incident_deliveries(&self, incident: IncidentId) -> StoreResult<Vec<DeliveryRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE incident_id = $1 ORDER BY id"
        ))
        .bind(incident)
        .fetch_all(&self.read)
        .await
        .map_err(unavailable)?;
        rows.iter().map(delivery_row).collect()
    }

    async fn notification_backlog(&self) -> StoreResult<(u64, u64)> {
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
