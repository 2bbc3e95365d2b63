//! PostgreSQL side of ingest: the group commit of reports (one transaction; one statement per
//! table in `batch.rs`, or statements per report, under a savepoint each when a batch was
//! refused), goodbyes, host timeline entries and retention in small batches.

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

    async fn commit_one(tx: &mut PgConnection, r: &ReportRecord) -> StoreResult<CommitOutcome> {
        let host = r.host_id.to_string();
        // Recorded before anything else (even for a report not stored again): the caps then
        // count every series the host may have rows of.
        if !r.new_series.is_empty() {
            sqlx::query(
                "INSERT INTO host_series (host_id, series, first_seen_ms) \
                 SELECT $1, s, $3 FROM UNNEST($2::text[]) AS s \
                 ON CONFLICT (host_id, series) DO NOTHING",
            )
            .bind(&host)
            .bind(&r.new_series)
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
                "SELECT 1::BIGINT FROM report_receipts WHERE host_id = $1 AND instance = $2 AND seq = $3",
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
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (host_id, instance, seq) DO NOTHING",
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
                "SELECT digest FROM report_receipts WHERE host_id = $1 AND instance = $2 AND seq = $3",
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

        // The rest in one statement (writable CTEs), a round trip per table being what bounded
        // ingest on PostgreSQL (docs/benchmarks.md): the stream's and the host's bookkeeping
        // always, the latest report and the roll-ups only for a report not held before.
        let stored = inserted > 0;
        let rollups = RollupRows::of(if stored { &r.series } else { &[] });
        let mut statement = sqlx::query(if stored { BOOKKEEPING_AND_STORE } else { BOOKKEEPING })
            .bind(&host)
            .bind(&r.instance)
            .bind(r.received_at_ms)
            .bind((!r.replayed).then_some(r.received_at_ms))
            .bind(r.seq as i64)
            .bind(&r.hostname)
            .bind(&r.agent_version)
            .bind(i64::from(r.interval_seconds));
        if stored {
            let bucket = r.collected_at_ms - r.collected_at_ms.rem_euclid(ROLLUP_BUCKET_MS);
            statement = statement
                .bind(r.collected_at_ms)
                .bind(&r.encoded)
                .bind(bucket)
                .bind(&rollups.series)
                .bind(&rollups.min)
                .bind(&rollups.max)
                .bind(&rollups.sum)
                .bind(&rollups.count);
        }
        statement.execute(&mut *tx).await.map_err(refused)?;
        if !stored {
            return Ok(CommitOutcome::Duplicate);
        }
        Ok(CommitOutcome::Stored)
    }
}

/// The stream's row, as the first CTE of both statements below.
macro_rules! stream_cte {
    () => {
        "WITH stream AS ( \
            INSERT INTO agent_instances \
            (host_id, instance, first_seen_ms, last_seen_ms, last_live_ms, max_seq) \
            VALUES ($1, $2, $3, $3, $4, $5) \
            ON CONFLICT (host_id, instance) DO UPDATE SET \
              last_seen_ms = excluded.last_seen_ms, \
              last_live_ms = COALESCE(excluded.last_live_ms, agent_instances.last_live_ms), \
              max_seq = CASE WHEN excluded.max_seq > agent_instances.max_seq \
                             THEN excluded.max_seq ELSE agent_instances.max_seq END \
        ) "
    };
}

/// The host's row.
macro_rules! host_update {
    () => {
        "UPDATE hosts SET last_seen_ms = $3, hostname = $6, agent_version = $7, \
          interval_seconds = $8, goodbye_reason = NULL, goodbye_at_ms = NULL WHERE id = $1"
    };
}

/// A report's stream and host bookkeeping: $1 host, $2 instance, $3 received at, $4 received
/// live at (NULL for a replayed report), $5 seq, $6 hostname, $7 agent version, $8 interval.
const BOOKKEEPING: &str = concat!(stream_cte!(), host_update!());

/// [`BOOKKEEPING`], and the report stored: $9 collected at, $10 the encoded report, $11 the
/// roll-up bucket, $12 … $16 the roll-up rows ([`RollupRows`]).
const BOOKKEEPING_AND_STORE: &str = concat!(
    stream_cte!(),
    ", host AS (",
    host_update!(),
    "), latest AS ( \
        INSERT INTO latest_reports \
        (host_id, instance, seq, collected_at_ms, received_at_ms, report) \
        VALUES ($1, $2, $5, $9, $3, $10) \
        ON CONFLICT (host_id) DO UPDATE SET instance = excluded.instance, \
          seq = excluded.seq, collected_at_ms = excluded.collected_at_ms, \
          received_at_ms = excluded.received_at_ms, report = excluded.report \
        WHERE excluded.collected_at_ms >= latest_reports.collected_at_ms \
    ) \
    INSERT INTO rollups_5m \
    (host_id, series, bucket_start_ms, min_value, max_value, sum_value, sample_count) \
    SELECT $1, s.series, $11, s.min_value, s.max_value, s.sum_value, s.sample_count \
    FROM UNNEST($12::TEXT[], $13::FLOAT8[], $14::FLOAT8[], $15::FLOAT8[], $16::INT8[]) \
      AS s (series, min_value, max_value, sum_value, sample_count) \
    ON CONFLICT (host_id, series, bucket_start_ms) DO UPDATE SET \
      min_value = CASE WHEN excluded.min_value < rollups_5m.min_value \
                       THEN excluded.min_value ELSE rollups_5m.min_value END, \
      max_value = CASE WHEN excluded.max_value > rollups_5m.max_value \
                       THEN excluded.max_value ELSE rollups_5m.max_value END, \
      sum_value = rollups_5m.sum_value + excluded.sum_value, \
      sample_count = rollups_5m.sample_count + excluded.sample_count"
);

/// One report's roll-up readings as the columns of one multi-row upsert, a series named
/// twice folded into one row (an upsert may not touch a row twice).
#[derive(Debug, Default, PartialEq)]
struct RollupRows {
    series: Vec<String>,
    min: Vec<f64>,
    max: Vec<f64>,
    sum: Vec<f64>,
    count: Vec<i64>,
}

impl RollupRows {
    fn of(readings: &[(String, f64)]) -> Self {
        let mut rows = Self::default();
        let mut at = std::collections::HashMap::with_capacity(readings.len());
        for (series, value) in readings {
            match at.get(series.as_str()) {
                Some(&i) => {
                    rows.min[i] = f64::min(rows.min[i], *value);
                    rows.max[i] = f64::max(rows.max[i], *value);
                    rows.sum[i] += value;
                    rows.count[i] += 1;
                }
                None => {
                    at.insert(series.as_str(), rows.series.len());
                    rows.series.push(series.clone());
                    rows.min.push(*value);
                    rows.max.push(*value);
                    rows.sum.push(*value);
                    rows.count.push(1);
                }
            }
        }
        rows
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

#[cfg(test)]
mod tests {
    use super::RollupRows;

    #[test]
    fn a_series_named_twice_in_one_report_is_one_row() {
        let readings =
            [("cpu".to_owned(), 0.5), ("fs./".to_owned(), 3.0), ("cpu".to_owned(), 0.25)];
        let rows = RollupRows::of(&readings);
        assert_eq!(
            rows,
            RollupRows {
                series: vec!["cpu".into(), "fs./".into()],
                min: vec![0.25, 3.0],
                max: vec![0.5, 3.0],
                sum: vec![0.75, 3.0],
                count: vec![2, 1],
            }
        );
    }
}
