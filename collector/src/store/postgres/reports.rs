//! PostgreSQL side of ingest: the group commit of reports (one transaction, written by the
//! statements of `batch.rs`; report by report, under a savepoint each, when the store refused
//! the batch), goodbyes, host timeline entries and retention in small batches.

use async_trait::async_trait;

use super::*;

impl PgStore {
    /// One batch in one transaction. With `isolate`, each report runs under its own savepoint
    /// and one the store refuses fails alone; without, any refusal fails the batch (the caller
    /// then retries isolated).
    async fn commit_batch(
        conn: &mut PgConnection,
        records: &[ReportRecord],
        isolate: bool,
    ) -> StoreResult<Vec<StoreResult<CommitOutcome>>> {
        let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(unavailable)?;
        if !isolate && records.iter().all(|r| r.seq > r.pruned_through_seq) {
            let outcomes = super::batch::commit(&mut tx, records).await?;
            tx.commit().await.map_err(unavailable)?;
            return Ok(outcomes.into_iter().map(Ok).collect());
        }
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

    /// One report: a seq at or below what retention pruned, with no receipt left, may have
    /// been stored before its receipt aged out, so it is not stored again (looked up only for
    /// seqs at or below the watermark the stream saw when it opened); any other goes through
    /// the batch statements as a batch of one.
    async fn commit_one(tx: &mut PgConnection, r: &ReportRecord) -> StoreResult<CommitOutcome> {
        if r.seq <= r.pruned_through_seq {
            let held: Option<i64> = sqlx::query_scalar(
                "SELECT 1::BIGINT FROM report_receipts WHERE host_id = $1 AND instance = $2 AND seq = $3",
            )
            .bind(r.host_id.to_string())
            .bind(&r.instance)
            .bind(r.seq as i64)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
            if held.is_none() {
                // Its series count toward the caps all the same.
                super::batch::record_series(tx, std::slice::from_ref(r)).await?;
                return Ok(CommitOutcome::Stale);
            }
        }
        let outcomes = super::batch::commit(tx, std::slice::from_ref(r)).await?;
        Ok(outcomes[0])
    }
}

#[async_trait]
impl ReportStore for PgStore {
    async fn commit_reports(
        &self,
        records: &[ReportRecord],
    ) -> StoreResult<Vec<StoreResult<CommitOutcome>>> {
        let mut conn = self.writer().await?;
        // Optimistic: the whole batch in one transaction. Only when the store refuses one
        // report is the batch done again with a savepoint per report, so the others commit;
        // a refusal is rare, and savepoints on every report cost ingest CPU.
        match Self::commit_batch(&mut conn, records, false).await {
            Err(StoreError::Rejected(_)) => Self::commit_batch(&mut conn, records, true).await,
            done => done,
        }
    }

    async fn record_goodbye(&self, host: HostId, reason: &str, at: UnixMs) -> StoreResult<()> {
        let mut conn = self.writer().await?;
        sqlx::query("UPDATE hosts SET goodbye_reason = $1, goodbye_at_ms = $2 WHERE id = $3")
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
        let mut conn = self.writer().await?;
        let inserted = sqlx::query(
            "INSERT INTO host_events (id, host_id, at_ms, kind, detail, dedupe_key) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (host_id, kind, dedupe_key) DO NOTHING",
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

    async fn prune(
        &self,
        receipts_before: UnixMs,
        rollups_before: UnixMs,
        batch_rows: u32,
    ) -> StoreResult<PruneStats> {
        let limit = i64::from(batch_rows.max(1));
        let mut stats = PruneStats::default();
        // Receipts, oldest first. One batch is one statement: the rows deleted and the
        // watermark raised to the highest seq deleted commit together.
        loop {
            let mut conn = self.writer().await?;
            let deleted: i64 = sqlx::query_scalar(
                "WITH doomed AS ( \
                   DELETE FROM report_receipts WHERE (host_id, instance, seq) IN \
                     (SELECT host_id, instance, seq FROM report_receipts \
                      WHERE received_at_ms < $1 \
                      ORDER BY received_at_ms, host_id, instance, seq LIMIT $2) \
                   RETURNING host_id, instance, seq), \
                 pruned AS (SELECT host_id, instance, MAX(seq) AS seq, COUNT(*) AS n \
                            FROM doomed GROUP BY host_id, instance), \
                 raised AS (UPDATE agent_instances SET pruned_through_seq = pruned.seq \
                            FROM pruned WHERE agent_instances.host_id = pruned.host_id \
                              AND agent_instances.instance = pruned.instance \
                              AND pruned.seq > agent_instances.pruned_through_seq \
                            RETURNING 1) \
                 SELECT COALESCE(SUM(n), 0)::BIGINT FROM pruned",
            )
            .bind(receipts_before)
            .bind(limit)
            .fetch_one(&mut *conn)
            .await
            .map_err(unavailable)?;
            drop(conn);
            let deleted = deleted.max(0) as u64;
            stats.receipts += deleted;
            stats.batches += 1;
            if deleted < limit as u64 {
                break;
            }
            tokio::task::yield_now().await;
        }
        // Roll-ups: whole partitions that ended before the cut-off are dropped; what is left
        // (the partition the cut-off falls in, the default one) is deleted row by row.
        let partitions: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::TEXT FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'rollups_5m'::regclass",
        )
        .fetch_all(&self.read)
        .await
        .map_err(unavailable)?;
        for partition in partitions {
            let Some(n) =
                partition.strip_prefix("rollups_5m_p").and_then(|n| n.parse::<i64>().ok())
            else {
                continue;
            };
            if (n + 1) * ROLLUP_PARTITION_MS > rollups_before {
                continue;
            }
            let mut conn = self.writer().await?;
            let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(unavailable)?;
            let rows: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {partition}"))
                .fetch_one(&mut *tx)
                .await
                .map_err(unavailable)?;
            sqlx::query(&format!("DROP TABLE {partition}"))
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            tx.commit().await.map_err(unavailable)?;
            stats.rollups += rows.max(0) as u64;
            stats.batches += 1;
            tracing::info!(partition, rows, "dropped an expired roll-up partition");
        }
        self.make_rollup_partitions(Some(rollups_before)).await?;
        loop {
            let mut conn = self.writer().await?;
            let deleted = sqlx::query(
                "DELETE FROM rollups_5m WHERE (host_id, series, bucket_start_ms) IN \
                 (SELECT host_id, series, bucket_start_ms FROM rollups_5m \
                  WHERE bucket_start_ms < $1 LIMIT $2)",
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
        // Series without roll-ups, walked once in key ranges of `limit` entries (each range
        // one statement), so the sweep is linear in the table however few are deleted.
        let mut after = (String::new(), String::new());
        loop {
            let keys: Vec<(String, String)> = sqlx::query_as(
                "SELECT host_id, series FROM host_series WHERE (host_id, series) > ($1, $2) \
                 ORDER BY host_id, series LIMIT $3",
            )
            .bind(&after.0)
            .bind(&after.1)
            .bind(limit)
            .fetch_all(&self.read)
            .await
            .map_err(unavailable)?;
            let Some(upto) = keys.into_iter().last() else { break };
            let mut conn = self.writer().await?;
            stats.series += sqlx::query(
                "DELETE FROM host_series WHERE (host_id, series) > ($1, $2) \
                 AND (host_id, series) <= ($3, $4) AND first_seen_ms < $5 \
                 AND NOT EXISTS (SELECT 1 FROM rollups_5m r \
                   WHERE r.host_id = host_series.host_id AND r.series = host_series.series)",
            )
            .bind(&after.0)
            .bind(&after.1)
            .bind(&upto.0)
            .bind(&upto.1)
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
}
