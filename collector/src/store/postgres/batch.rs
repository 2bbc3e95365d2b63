//! A batch of reports committed with one statement per table instead of statements per
//! report: on PostgreSQL each statement is a round trip, and round trips bounded ingest
//! (docs/benchmarks.md). The receipts go in first; which of them were new decides what the
//! rest writes. [`BatchRows::plan`] folds the batch into the rows the per-report path would
//! leave behind (the last hostname of a host, the newest latest report, a roll-up bucket's
//! min, max, sum and count), as pure code; [`commit`] applies them.
//!
//! A batch holding a seq at or below its stream's pruning watermark, which needs a lookup of
//! its own, goes report by report instead, each a batch of one (see `reports.rs`); so does a
//! batch the store refused, one savepoint per report, so a bad report fails alone.

use std::collections::{BTreeMap, HashMap};

use sqlx::PgConnection;

use super::refused;
use crate::store::hosts::ROLLUP_BUCKET_MS;
use crate::store::{CommitOutcome, ReportRecord, StoreResult};

/// (host, instance, seq): the key of a receipt.
type ReceiptKey = (String, String, i64);

/// Records the series `records` name for the first time, before anything else (even for a
/// report not stored again): the caps then count every series a host may have rows of.
pub(super) async fn record_series(
    tx: &mut PgConnection,
    records: &[ReportRecord],
) -> StoreResult<()> {
    let (hosts, series): (Vec<String>, Vec<&str>) = records
        .iter()
        .flat_map(|r| r.new_series.iter().map(move |s| (r.host_id.to_string(), s.as_str())))
        .unzip();
    if series.is_empty() {
        return Ok(());
    }
    let received: Vec<i64> =
        records.iter().flat_map(|r| r.new_series.iter().map(|_| r.received_at_ms)).collect();
    sqlx::query(
        "INSERT INTO host_series (host_id, series, first_seen_ms) \
         SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::INT8[]) \
         ON CONFLICT (host_id, series) DO NOTHING",
    )
    .bind(&hosts)
    .bind(&series)
    .bind(&received)
    .execute(&mut *tx)
    .await
    .map_err(refused)?;
    Ok(())
}

/// Commits `records` in the open transaction `tx`, one statement per table.
pub(super) async fn commit(
    tx: &mut PgConnection,
    records: &[ReportRecord],
) -> StoreResult<Vec<CommitOutcome>> {
    record_series(tx, records).await?;
    let hosts: Vec<String> = records.iter().map(|r| r.host_id.to_string()).collect();

    // The receipts: those the insert returns are new, the first record of each key.
    let instances: Vec<&str> = records.iter().map(|r| r.instance.as_str()).collect();
    let seqs: Vec<i64> = records.iter().map(|r| r.seq as i64).collect();
    let digests: Vec<&[u8]> = records.iter().map(|r| r.digest.as_slice()).collect();
    let new: Vec<ReceiptKey> = sqlx::query_as(
        "INSERT INTO report_receipts \
         (host_id, instance, seq, collected_at_ms, received_at_ms, replayed, digest) \
         SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::INT8[], $4::INT8[], $5::INT8[], \
                              $6::BOOL[], $7::BYTEA[]) \
         ON CONFLICT (host_id, instance, seq) DO NOTHING \
         RETURNING host_id, instance, seq",
    )
    .bind(&hosts)
    .bind(&instances)
    .bind(&seqs)
    .bind(records.iter().map(|r| r.collected_at_ms).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.received_at_ms).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.replayed).collect::<Vec<_>>())
    .bind(&digests)
    .fetch_all(&mut *tx)
    .await
    .map_err(refused)?;
    let mut stored = vec![false; records.len()];
    let mut new: HashMap<ReceiptKey, ()> = new.into_iter().map(|k| (k, ())).collect();
    for (i, r) in records.iter().enumerate() {
        stored[i] = new.remove(&(hosts[i].clone(), r.instance.clone(), seqs[i])).is_some();
    }

    // The others were held already (or came twice in this batch): the same content is a
    // duplicate, other content a reused seq.
    let mut held = HashMap::new();
    if stored.iter().any(|s| !s) {
        let again: Vec<usize> = (0..records.len()).filter(|&i| !stored[i]).collect();
        let rows: Vec<(String, String, i64, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT r.host_id, r.instance, r.seq, r.digest FROM report_receipts r \
             JOIN UNNEST($1::TEXT[], $2::TEXT[], $3::INT8[]) AS k (host_id, instance, seq) \
               ON r.host_id = k.host_id AND r.instance = k.instance AND r.seq = k.seq",
        )
        .bind(again.iter().map(|&i| hosts[i].as_str()).collect::<Vec<_>>())
        .bind(again.iter().map(|&i| instances[i]).collect::<Vec<_>>())
        .bind(again.iter().map(|&i| seqs[i]).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await
        .map_err(refused)?;
        held = rows.into_iter().map(|(h, i, s, d)| ((h, i, s), d)).collect();
    }
    let outcomes: Vec<CommitOutcome> = (0..records.len())
        .map(|i| {
            if stored[i] {
                return CommitOutcome::Stored;
            }
            let key = (hosts[i].clone(), records[i].instance.clone(), seqs[i]);
            // Receipts from before digests were kept compare by seq alone.
            match held.get(&key) {
                Some(Some(digest)) if digest.as_slice() != records[i].digest => {
                    CommitOutcome::Conflict
                }
                _ => CommitOutcome::Duplicate,
            }
        })
        .collect();

    let rows = BatchRows::plan(records, &hosts, &outcomes);
    rows.apply(tx).await?;
    Ok(outcomes)
}

/// The stream rows of a batch, one per (host, instance).
#[derive(Debug, Default, PartialEq)]
struct StreamRow {
    first_seen_ms: i64,
    last_seen_ms: i64,
    last_live_ms: Option<i64>,
    max_seq: i64,
}

/// The host row of a batch: its last report's.
#[derive(Debug, PartialEq)]
struct HostRow<'a> {
    seen_ms: i64,
    hostname: &'a str,
    agent_version: &'a str,
    interval_seconds: i64,
}

/// A roll-up bucket of a batch.
#[derive(Debug, PartialEq)]
struct Bucket {
    min: f64,
    max: f64,
    sum: f64,
    count: i64,
}

/// Everything a batch writes after its receipts, once per row, in key order (so that
/// replicas writing the same rows take their locks in the same order).
#[derive(Debug, Default)]
struct BatchRows<'a> {
    streams: BTreeMap<(&'a str, &'a str), StreamRow>,
    hosts: BTreeMap<&'a str, HostRow<'a>>,
    /// Per host, the stored record collected last (the later of two collected together).
    latest: BTreeMap<&'a str, &'a ReportRecord>,
    rollups: BTreeMap<(&'a str, &'a str, i64), Bucket>,
}

impl<'a> BatchRows<'a> {
    /// What the per-report path leaves behind, folded: a duplicate updates the stream and
    /// the host, a stored report also the latest report and the roll-ups, a conflict
    /// nothing.
    fn plan(records: &'a [ReportRecord], hosts: &'a [String], outcomes: &[CommitOutcome]) -> Self {
        let mut rows = Self::default();
        for ((r, host), outcome) in records.iter().zip(hosts).zip(outcomes) {
            let host = host.as_str();
            match outcome {
                CommitOutcome::Stored | CommitOutcome::Duplicate => {}
                CommitOutcome::Conflict | CommitOutcome::Stale => continue,
            }
            let live = (!r.replayed).then_some(r.received_at_ms);
            let stream = rows.streams.entry((host, r.instance.as_str())).or_insert(StreamRow {
                first_seen_ms: r.received_at_ms,
                last_seen_ms: r.received_at_ms,
                last_live_ms: None,
                max_seq: r.seq as i64,
            });
            stream.last_seen_ms = r.received_at_ms;
            stream.last_live_ms = live.or(stream.last_live_ms);
            stream.max_seq = stream.max_seq.max(r.seq as i64);
            rows.hosts.insert(
                host,
                HostRow {
                    seen_ms: r.received_at_ms,
                    hostname: &r.hostname,
                    agent_version: &r.agent_version,
                    interval_seconds: i64::from(r.interval_seconds),
                },
            );
            if *outcome != CommitOutcome::Stored {
                continue;
            }
            let latest = rows.latest.entry(host).or_insert(r);
            if r.collected_at_ms >= latest.collected_at_ms {
                *latest = r;
            }
            let bucket = r.collected_at_ms - r.collected_at_ms.rem_euclid(ROLLUP_BUCKET_MS);
            for (series, value) in &r.series {
                let b = rows.rollups.entry((host, series.as_str(), bucket)).or_insert(Bucket {
                    min: *value,
                    max: *value,
                    sum: 0.0,
                    count: 0,
                });
                b.min = b.min.min(*value);
                b.max = b.max.max(*value);
                b.sum += value;
                b.count += 1;
            }
        }
        rows
    }

    async fn apply(&self, tx: &mut PgConnection) -> StoreResult<()> {
        if !self.streams.is_empty() {
            let s = &self.streams;
            sqlx::query(
                "INSERT INTO agent_instances \
                 (host_id, instance, first_seen_ms, last_seen_ms, last_live_ms, max_seq) \
                 SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::INT8[], $4::INT8[], \
                                      $5::INT8[], $6::INT8[]) \
                 ON CONFLICT (host_id, instance) DO UPDATE SET \
                   last_seen_ms = excluded.last_seen_ms, \
                   last_live_ms = COALESCE(excluded.last_live_ms, agent_instances.last_live_ms), \
                   max_seq = CASE WHEN excluded.max_seq > agent_instances.max_seq \
                                  THEN excluded.max_seq ELSE agent_instances.max_seq END",
            )
            .bind(s.keys().map(|k| k.0).collect::<Vec<_>>())
            .bind(s.keys().map(|k| k.1).collect::<Vec<_>>())
            .bind(s.values().map(|v| v.first_seen_ms).collect::<Vec<_>>())
            .bind(s.values().map(|v| v.last_seen_ms).collect::<Vec<_>>())
            .bind(s.values().map(|v| v.last_live_ms).collect::<Vec<_>>())
            .bind(s.values().map(|v| v.max_seq).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .map_err(refused)?;
        }
        if !self.hosts.is_empty() {
            let h = &self.hosts;
            sqlx::query(
                "UPDATE hosts SET last_seen_ms = u.seen, hostname = u.hostname, \
                   agent_version = u.version, interval_seconds = u.interval, \
                   goodbye_reason = NULL, goodbye_at_ms = NULL \
                 FROM UNNEST($1::TEXT[], $2::INT8[], $3::TEXT[], $4::TEXT[], $5::INT8[]) \
                   AS u (id, seen, hostname, version, interval) \
                 WHERE hosts.id = u.id",
            )
            .bind(h.keys().copied().collect::<Vec<_>>())
            .bind(h.values().map(|v| v.seen_ms).collect::<Vec<_>>())
            .bind(h.values().map(|v| v.hostname).collect::<Vec<_>>())
            .bind(h.values().map(|v| v.agent_version).collect::<Vec<_>>())
            .bind(h.values().map(|v| v.interval_seconds).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .map_err(refused)?;
        }
        if !self.latest.is_empty() {
            let l = &self.latest;
            sqlx::query(
                "INSERT INTO latest_reports \
                 (host_id, instance, seq, collected_at_ms, received_at_ms, report) \
                 SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::INT8[], $4::INT8[], \
                                      $5::INT8[], $6::BYTEA[]) \
                 ON CONFLICT (host_id) DO UPDATE SET instance = excluded.instance, \
                   seq = excluded.seq, collected_at_ms = excluded.collected_at_ms, \
                   received_at_ms = excluded.received_at_ms, report = excluded.report \
                 WHERE excluded.collected_at_ms >= latest_reports.collected_at_ms",
            )
            .bind(l.keys().copied().collect::<Vec<_>>())
            .bind(l.values().map(|r| r.instance.as_str()).collect::<Vec<_>>())
            .bind(l.values().map(|r| r.seq as i64).collect::<Vec<_>>())
            .bind(l.values().map(|r| r.collected_at_ms).collect::<Vec<_>>())
            .bind(l.values().map(|r| r.received_at_ms).collect::<Vec<_>>())
            .bind(l.values().map(|r| r.encoded.as_slice()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .map_err(refused)?;
        }
        if !self.rollups.is_empty() {
            let b = &self.rollups;
            sqlx::query(
                "INSERT INTO rollups_5m \
                 (host_id, series, bucket_start_ms, min_value, max_value, sum_value, sample_count) \
                 SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::INT8[], $4::FLOAT8[], \
                                      $5::FLOAT8[], $6::FLOAT8[], $7::INT8[]) \
                 ON CONFLICT (host_id, series, bucket_start_ms) DO UPDATE SET \
                   min_value = LEAST(rollups_5m.min_value, excluded.min_value), \
                   max_value = GREATEST(rollups_5m.max_value, excluded.max_value), \
                   sum_value = rollups_5m.sum_value + excluded.sum_value, \
                   sample_count = rollups_5m.sample_count + excluded.sample_count",
            )
            .bind(b.keys().map(|k| k.0).collect::<Vec<_>>())
            .bind(b.keys().map(|k| k.1).collect::<Vec<_>>())
            .bind(b.keys().map(|k| k.2).collect::<Vec<_>>())
            .bind(b.values().map(|v| v.min).collect::<Vec<_>>())
            .bind(b.values().map(|v| v.max).collect::<Vec<_>>())
            .bind(b.values().map(|v| v.sum).collect::<Vec<_>>())
            .bind(b.values().map(|v| v.count).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .map_err(refused)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::HostId;

    fn record(seq: u64, collected: i64, received: i64, series: &[(&str, f64)]) -> ReportRecord {
        ReportRecord {
            host_id: HostId::new_random(),
            instance: "i1".into(),
            seq,
            collected_at_ms: collected,
            received_at_ms: received,
            replayed: false,
            hostname: format!("name-{seq}"),
            agent_version: "1".into(),
            interval_seconds: 10,
            encoded: vec![seq as u8],
            digest: [seq as u8; 32],
            pruned_through_seq: 0,
            series: series.iter().map(|(s, v)| ((*s).to_owned(), *v)).collect(),
            new_series: Vec::new(),
            series_refused: 0,
            received: std::time::Instant::now(),
        }
    }

    #[test]
    fn a_batch_folds_into_the_rows_the_reports_one_by_one_would_leave() {
        use CommitOutcome::*;
        let mut late = record(3, 1_000, 3_000, &[("cpu", 0.9)]);
        late.replayed = true;
        let records = [
            record(1, 2_000, 1_000, &[("cpu", 0.5), ("mem", 7.0)]),
            record(2, 2_500, 2_000, &[("cpu", 0.25)]),
            late,
            record(4, 9_000, 4_000, &[("cpu", 1.0)]),
            record(5, 9_500, 5_000, &[("cpu", 2.0)]),
        ];
        let hosts = vec!["h".to_owned(); records.len()];
        let outcomes = [Stored, Stored, Stored, Duplicate, Conflict];
        let rows = BatchRows::plan(&records, &hosts, &outcomes);

        // The stream: first and last seen of the accepted reports, the last live one (the
        // replayed one is not live), the highest seq; the conflict counts for nothing.
        assert_eq!(
            rows.streams[&("h", "i1")],
            StreamRow {
                first_seen_ms: 1_000,
                last_seen_ms: 4_000,
                last_live_ms: Some(4_000),
                max_seq: 4
            }
        );
        assert_eq!(rows.hosts["h"].hostname, "name-4", "the last accepted report names it");
        assert_eq!(rows.hosts["h"].seen_ms, 4_000);
        // The latest report is the stored one collected last, not the one received last.
        assert_eq!(rows.latest["h"].seq, 2);
        // Roll-ups: stored reports only, one row per bucket and series.
        assert_eq!(rows.rollups.len(), 2, "{:?}", rows.rollups);
        assert_eq!(
            rows.rollups[&("h", "cpu", 0)],
            Bucket { min: 0.25, max: 0.9, sum: 1.65, count: 3 }
        );
        assert_eq!(
            rows.rollups[&("h", "mem", 0)],
            Bucket { min: 7.0, max: 7.0, sum: 7.0, count: 1 }
        );
    }

    #[test]
    fn a_series_named_twice_in_one_report_is_one_row() {
        let records = [record(1, 1_000, 1_000, &[("cpu", 0.5), ("fs./", 3.0), ("cpu", 0.25)])];
        let hosts = vec!["h".to_owned()];
        let rows = BatchRows::plan(&records, &hosts, &[CommitOutcome::Stored]);
        assert_eq!(
            rows.rollups[&("h", "cpu", 0)],
            Bucket { min: 0.25, max: 0.5, sum: 0.75, count: 2 }
        );
        assert_eq!(
            rows.rollups[&("h", "fs./", 0)],
            Bucket { min: 3.0, max: 3.0, sum: 3.0, count: 1 }
        );
    }

    #[test]
    fn of_two_reports_collected_at_once_the_later_one_is_the_latest() {
        let records = [record(1, 5_000, 1_000, &[]), record(2, 5_000, 2_000, &[])];
        let hosts = vec!["h".to_owned(); 2];
        let rows = BatchRows::plan(&records, &hosts, &[CommitOutcome::Stored; 2]);
        assert_eq!(rows.latest["h"].seq, 2);
    }

    #[test]
    fn a_replayed_report_keeps_the_last_live_time() {
        let mut replayed = record(2, 2_000, 2_000, &[]);
        replayed.replayed = true;
        let records = [record(1, 1_000, 1_000, &[]), replayed];
        let hosts = vec!["h".to_owned(); 2];
        let rows = BatchRows::plan(&records, &hosts, &[CommitOutcome::Stored; 2]);
        assert_eq!(rows.streams[&("h", "i1")].last_live_ms, Some(1_000));
        assert_eq!(rows.streams[&("h", "i1")].last_seen_ms, 2_000);
    }
}
