//! SQLite side of the incident records: applying the incident engine's operations in one
//! transaction per batch, the incident queries, the people's actions on an incident, and
//! maintenance windows. The SQL is kept portable (no SQLite-only functions) so the PostgreSQL
//! store can share it nearly verbatim.

use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use super::sqlite::{SqliteStore, corrupt, parse_id, unavailable};
use super::*;
use crate::classify::{FaultLevel, FindingKind};

const ACTIVE: &str = "state IN ('open', 'acknowledged')";

const INCIDENT_COLUMNS: &str = "i.id, i.customer_id, c.name AS customer, i.site_id, \
     s.name AS site, i.host_id, h.hostname, i.rule, i.resource, i.level, i.summary, i.kind, \
     i.state, i.flapping, i.recurrences, i.parent_id, i.opened_at_ms, i.updated_at_ms, \
     i.acknowledged_at_ms, i.acknowledged_by, i.assignee, i.resolved_at_ms, i.resolved_by, \
     i.resolution_note, i.closed_at_ms \
     FROM incidents i JOIN customers c ON c.id = i.customer_id \
     JOIN sites s ON s.id = i.site_id LEFT JOIN hosts h ON h.id = i.host_id";

fn optional_id<T: std::str::FromStr>(row: &SqliteRow, column: &str) -> StoreResult<Option<T>> {
    row.try_get::<Option<String>, _>(column).map_err(corrupt)?.map(|id| parse_id(&id)).transpose()
}

fn incident_row(row: &SqliteRow) -> StoreResult<IncidentRow> {
    let id: i64 = row.try_get("id").map_err(corrupt)?;
    let state: String = row.try_get("state").map_err(corrupt)?;
    Ok(IncidentRow {
        id,
        number: incident_number(id),
        customer_id: parse_id(&row.try_get::<String, _>("customer_id").map_err(corrupt)?)?,
        customer: row.try_get("customer").map_err(corrupt)?,
        site_id: parse_id(&row.try_get::<String, _>("site_id").map_err(corrupt)?)?,
        site: row.try_get("site").map_err(corrupt)?,
        host_id: optional_id(row, "host_id")?,
        hostname: row.try_get("hostname").map_err(corrupt)?,
        rule: row.try_get("rule").map_err(corrupt)?,
        resource: row.try_get("resource").map_err(corrupt)?,
        level: row.try_get::<i64, _>("level").map_err(corrupt)? as u8,
        summary: row.try_get("summary").map_err(corrupt)?,
        kind: row.try_get("kind").map_err(corrupt)?,
        state: IncidentState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("bad incident state {state:?}")))?,
        flapping: row.try_get("flapping").map_err(corrupt)?,
        recurrences: row.try_get::<i64, _>("recurrences").map_err(corrupt)? as u32,
        parent_id: row.try_get("parent_id").map_err(corrupt)?,
        opened_at_ms: row.try_get("opened_at_ms").map_err(corrupt)?,
        updated_at_ms: row.try_get("updated_at_ms").map_err(corrupt)?,
        acknowledged_at_ms: row.try_get("acknowledged_at_ms").map_err(corrupt)?,
        acknowledged_by: row.try_get("acknowledged_by").map_err(corrupt)?,
        assignee: row.try_get("assignee").map_err(corrupt)?,
        resolved_at_ms: row.try_get("resolved_at_ms").map_err(corrupt)?,
        resolved_by: row.try_get("resolved_by").map_err(corrupt)?,
        resolution_note: row.try_get("resolution_note").map_err(corrupt)?,
        closed_at_ms: row.try_get("closed_at_ms").map_err(corrupt)?,
    })
}

fn kind_str(kind: FindingKind) -> &'static str {
    match kind {
        FindingKind::State => "state",
        FindingKind::Event => "event",
    }
}

/// The active incident of a fingerprint: (id, level, summary).
async fn active(
    tx: &mut SqliteConnection,
    fingerprint: &str,
) -> StoreResult<Option<(i64, i64, String)>> {
    let row = sqlx::query(&format!(
        "SELECT id, level, summary FROM incidents WHERE fingerprint = ? AND {ACTIVE}"
    ))
    .bind(fingerprint)
    .fetch_optional(&mut *tx)
    .await
    .map_err(unavailable)?;
    row.map(|r| {
        Ok((
            r.try_get("id").map_err(corrupt)?,
            r.try_get("level").map_err(corrupt)?,
            r.try_get("summary").map_err(corrupt)?,
        ))
    })
    .transpose()
}

async fn active_on_host(
    tx: &mut SqliteConnection,
    host: HostId,
    rule: &str,
    resource: &str,
) -> StoreResult<Option<i64>> {
    sqlx::query_scalar(&format!(
        "SELECT id FROM incidents WHERE host_id = ? AND rule = ? AND resource = ? AND {ACTIVE}"
    ))
    .bind(host.to_string())
    .bind(rule)
    .bind(resource)
    .fetch_optional(&mut *tx)
    .await
    .map_err(unavailable)
}

/// Timeline kinds after which the SLA clocks must be looked at again.
const SLA_RELEVANT: &[&str] = &["opened", "reopened", "level", "acknowledged", "resolved"];

/// Writes a timeline entry; a notifiable one also enters the outbox, and one that changes
/// what the SLA clocks depend on marks the incident for the next SLA sweep.
pub(super) async fn timeline(
    tx: &mut SqliteConnection,
    incident: i64,
    at: UnixMs,
    kind: &str,
    actor: &str,
    detail: &str,
) -> StoreResult<()> {
    let entry: i64 = sqlx::query_scalar(
        "INSERT INTO incident_timeline (incident_id, at_ms, kind, actor, detail) \
         VALUES (?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(incident)
    .bind(at)
    .bind(kind)
    .bind(actor)
    .bind(detail)
    .fetch_one(&mut *tx)
    .await
    .map_err(unavailable)?;
    if NOTIFIABLE.contains(&kind) {
        sqlx::query(
            "INSERT INTO outbox (incident_id, timeline_id, created_at_ms) VALUES (?, ?, ?)",
        )
        .bind(incident)
        .bind(entry)
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
    }
    if SLA_RELEVANT.contains(&kind) {
        sqlx::query("UPDATE incidents SET sla_done = FALSE, sla_check_at_ms = NULL WHERE id = ?")
            .bind(incident)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
    }
    Ok(())
}

/// [`timeline`] for many entries at once (entries of kinds that never reset the SLA clocks):
/// multi-row inserts, the notifiable ones entering the outbox.
pub(super) async fn timeline_batch(
    tx: &mut SqliteConnection,
    entries: &[(i64, &str, &str)],
    at: UnixMs,
) -> StoreResult<()> {
    debug_assert!(entries.iter().all(|(_, kind, _)| !SLA_RELEVANT.contains(kind)));
    for chunk in entries.chunks(1000) {
        let mut sql = String::from(
            "INSERT INTO incident_timeline (incident_id, at_ms, kind, actor, detail) VALUES ",
        );
        for i in 0..chunk.len() {
            sql.push_str(if i == 0 { "(?, ?, ?, ?, ?)" } else { ", (?, ?, ?, ?, ?)" });
        }
        sql.push_str(" RETURNING id, incident_id, kind");
        let mut query = sqlx::query(&sql);
        for (incident, kind, detail) in chunk {
            query = query.bind(incident).bind(at).bind(*kind).bind(SYSTEM_ACTOR).bind(*detail);
        }
        let rows = query.fetch_all(&mut *tx).await.map_err(unavailable)?;
        let mut notify: Vec<(i64, i64)> = Vec::new();
        for row in &rows {
            let kind: String = row.try_get("kind").map_err(corrupt)?;
            if NOTIFIABLE.contains(&kind.as_str()) {
                notify.push((
                    row.try_get("incident_id").map_err(corrupt)?,
                    row.try_get("id").map_err(corrupt)?,
                ));
            }
        }
        if notify.is_empty() {
            continue;
        }
        let mut sql =
            String::from("INSERT INTO outbox (incident_id, timeline_id, created_at_ms) VALUES ");
        for i in 0..notify.len() {
            sql.push_str(if i == 0 { "(?, ?, ?)" } else { ", (?, ?, ?)" });
        }
        let mut query = sqlx::query(&sql);
        for (incident, entry) in &notify {
            query = query.bind(incident).bind(entry).bind(at);
        }
        query.execute(&mut *tx).await.map_err(unavailable)?;
    }
    Ok(())
}

/// Files `child` under `parent` unless it already is under something.
async fn group_under(
    tx: &mut SqliteConnection,
    child: i64,
    parent: i64,
    now: UnixMs,
) -> StoreResult<bool> {
    let moved = sqlx::query(
        "UPDATE incidents SET parent_id = ?, updated_at_ms = ? \
         WHERE id = ? AND id <> ? AND parent_id IS NULL",
    )
    .bind(parent)
    .bind(now)
    .bind(child)
    .bind(parent)
    .execute(&mut *tx)
    .await
    .map_err(unavailable)?
    .rows_affected();
    if moved > 0 {
        timeline(
            tx,
            child,
            now,
            "grouped",
            SYSTEM_ACTOR,
            &format!("under {}", incident_number(parent)),
        )
        .await?;
    }
    Ok(moved > 0)
}

struct Raise<'a> {
    fingerprint: &'a Fingerprint,
    level: FaultLevel,
    summary: &'a str,
    kind: FindingKind,
}

/// Opens, updates or reopens; returns the incident id and what happened.
async fn raise(
    tx: &mut SqliteConnection,
    op: &Raise<'_>,
    reopen_within_ms: i64,
    now: UnixMs,
) -> StoreResult<(i64, Option<&'static str>)> {
    let key = op.fingerprint.key();
    let level = i64::from(op.level.as_u8());
    if let Some((id, old_level, old_summary)) = active(tx, &key).await? {
        let change = if op.kind == FindingKind::Event {
            timeline(tx, id, now, "event", SYSTEM_ACTOR, op.summary).await?;
            Some("event")
        } else if old_level != level {
            let detail = format!("L{old_level} → L{level}: {}", op.summary);
            timeline(tx, id, now, "level", SYSTEM_ACTOR, &detail).await?;
            Some("level")
        } else {
            None
        };
        // An event never lowers the level of what is open; a state follows its condition.
        let new_level = if op.kind == FindingKind::Event { old_level.min(level) } else { level };
        if change.is_some() || old_summary != op.summary {
            sqlx::query(
                "UPDATE incidents SET level = ?, summary = ?, updated_at_ms = ? WHERE id = ?",
            )
            .bind(new_level)
            .bind(op.summary)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        }
        return Ok((id, change));
    }
    let recent: Option<(i64, i64)> = sqlx::query_as(
        "SELECT id, recurrences FROM incidents WHERE fingerprint = ? AND state = 'resolved' \
         AND resolved_at_ms >= ? ORDER BY resolved_at_ms DESC LIMIT 1",
    )
    .bind(&key)
    .bind(now - reopen_within_ms)
    .fetch_optional(&mut *tx)
    .await
    .map_err(unavailable)?;
    if let Some((id, recurrences)) = recent {
        sqlx::query(
            "UPDATE incidents SET state = 'open', level = ?, summary = ?, kind = ?, \
             recurrences = ?, updated_at_ms = ?, acknowledged_at_ms = NULL, \
             acknowledged_by = NULL, resolved_at_ms = NULL, resolved_by = NULL, \
             resolution_note = NULL, tier = 1, sla_start_ms = ?, sla_level = NULL, \
             response_due_ms = NULL, resolution_due_ms = NULL, response_met = NULL, \
             resolution_met = NULL, response_warned = FALSE, resolution_warned = FALSE \
             WHERE id = ?",
        )
        .bind(level)
        .bind(op.summary)
        .bind(kind_str(op.kind))
        .bind(recurrences + 1)
        .bind(now)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        let detail = format!("recurrence {}: L{level} {}", recurrences + 1, op.summary);
        timeline(tx, id, now, "reopened", SYSTEM_ACTOR, &detail).await?;
        return Ok((id, Some("reopened")));
    }
    let fp = op.fingerprint;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO incidents (fingerprint, customer_id, site_id, host_id, rule, resource, \
         level, summary, kind, state, opened_at_ms, updated_at_ms) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?, ?) RETURNING id",
    )
    .bind(&key)
    .bind(fp.customer_id.to_string())
    .bind(fp.site_id.to_string())
    .bind(fp.host_id.map(|h| h.to_string()))
    .bind(&fp.rule)
    .bind(&fp.resource)
    .bind(level)
    .bind(op.summary)
    .bind(kind_str(op.kind))
    .bind(now)
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .map_err(unavailable)?;
    timeline(tx, id, now, "opened", SYSTEM_ACTOR, &format!("L{level} {}", op.summary)).await?;
    Ok((id, Some("opened")))
}

async fn apply_op(
    tx: &mut SqliteConnection,
    op: &IncidentOp,
    reopen_within_ms: i64,
    now: UnixMs,
    changes: &mut Vec<IncidentChange>,
) -> StoreResult<()> {
    let mut record = |id: i64, change: &'static str, level: FaultLevel, fp: &Fingerprint| {
        changes.push(IncidentChange {
            incident_id: id,
            change,
            level: level.as_u8(),
            rule: fp.rule.clone(),
            resource: fp.resource.clone(),
        })
    };
    match op {
        IncidentOp::Raise {
            fingerprint,
            level,
            summary,
            kind,
            parent,
            groups,
            group_host,
            detail,
        } => {
            let raise_op = Raise { fingerprint, level: *level, summary, kind: *kind };
            let (id, change) = raise(tx, &raise_op, reopen_within_ms, now).await?;
            if let Some(change) = change {
                record(id, change, *level, fingerprint);
            }
            let opened = matches!(change, Some("opened" | "reopened"));
            if opened && let Some(detail) = detail {
                timeline(tx, id, now, "detail", SYSTEM_ACTOR, detail).await?;
            }
            let Some(host) = fingerprint.host_id else { return Ok(()) };
            if let Some((rule, resource)) = parent
                && let Some(parent_id) = active_on_host(tx, host, rule, resource).await?
            {
                group_under(tx, id, parent_id, now).await?;
            }
            let mut children: Vec<i64> = Vec::new();
            if *group_host {
                children = sqlx::query_scalar(&format!(
                    "SELECT id FROM incidents WHERE host_id = ? AND {ACTIVE} AND id <> ?"
                ))
                .bind(host.to_string())
                .bind(id)
                .fetch_all(&mut *tx)
                .await
                .map_err(unavailable)?;
            } else {
                for resource in groups {
                    let ids: Vec<i64> = sqlx::query_scalar(&format!(
                        "SELECT id FROM incidents WHERE host_id = ? AND resource = ? \
                         AND {ACTIVE} AND id <> ?"
                    ))
                    .bind(host.to_string())
                    .bind(resource)
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                    children.extend(ids);
                }
            }
            for child in children {
                group_under(tx, child, id, now).await?;
            }
        }
        IncidentOp::Resolve { fingerprint, reason } => {
            let Some((id, level, _)) = active(tx, &fingerprint.key()).await? else {
                return Ok(());
            };
            sqlx::query(
                "UPDATE incidents SET state = 'resolved', resolved_at_ms = ?, resolved_by = ?, \
                 flapping = FALSE, updated_at_ms = ? WHERE id = ?",
            )
            .bind(now)
            .bind(SYSTEM_ACTOR)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
            timeline(tx, id, now, "resolved", SYSTEM_ACTOR, reason).await?;
            // What was filed under it stands on its own again.
            sqlx::query(&format!(
                "UPDATE incidents SET parent_id = NULL, updated_at_ms = ? \
                 WHERE parent_id = ? AND {ACTIVE}"
            ))
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
            let level = FaultLevel::from_u8(level as u8).unwrap_or(FaultLevel::L4);
            record(id, "resolved", level, fingerprint);
        }
        IncidentOp::Flapping { fingerprint, detail } => {
            let Some((id, level, _)) = active(tx, &fingerprint.key()).await? else {
                return Ok(());
            };
            let marked = sqlx::query(
                "UPDATE incidents SET flapping = TRUE, updated_at_ms = ? \
                 WHERE id = ? AND flapping = FALSE",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?
            .rows_affected();
            if marked > 0 {
                timeline(tx, id, now, "flapping", SYSTEM_ACTOR, detail).await?;
                let level = FaultLevel::from_u8(level as u8).unwrap_or(FaultLevel::L4);
                record(id, "flapping", level, fingerprint);
            }
        }
        IncidentOp::Group { child, parent } => {
            if let (Some((child_id, level, _)), Some((parent_id, _, _))) =
                (active(tx, &child.key()).await?, active(tx, &parent.key()).await?)
                && group_under(tx, child_id, parent_id, now).await?
            {
                let level = FaultLevel::from_u8(level as u8).unwrap_or(FaultLevel::L4);
                record(child_id, "grouped", level, child);
            }
        }
    }
    Ok(())
}

impl SqliteStore {
    pub(super) async fn eval_states_impl(
        &self,
        hosts: &[HostId],
    ) -> StoreResult<Vec<HostEvalState>> {
        let mut states = Vec::with_capacity(hosts.len());
        for host in hosts {
            let row = sqlx::query(
                "SELECT h.id, s.customer_id, c.name AS customer, h.site_id, e.memory, \
                 e.conditions FROM hosts h JOIN sites s ON s.id = h.site_id \
                 JOIN customers c ON c.id = s.customer_id \
                 LEFT JOIN host_eval e ON e.host_id = h.id WHERE h.id = ?",
            )
            .bind(host.to_string())
            .fetch_optional(&self.read)
            .await
            .map_err(unavailable)?;
            let Some(row) = row else { continue };
            states.push(HostEvalState {
                host_id: *host,
                customer_id: parse_id(&row.try_get::<String, _>("customer_id").map_err(corrupt)?)?,
                customer: row.try_get("customer").map_err(corrupt)?,
                site_id: parse_id(&row.try_get::<String, _>("site_id").map_err(corrupt)?)?,
                memory: row.try_get("memory").map_err(corrupt)?,
                conditions: row.try_get("conditions").map_err(corrupt)?,
            });
        }
        Ok(states)
    }

    pub(super) async fn apply_evaluations_impl(
        &self,
        batch: &[HostEvaluation],
        reopen_within_ms: i64,
        now: UnixMs,
    ) -> StoreResult<Vec<IncidentChange>> {
        let mut conn = self.writer().await;
        let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(unavailable)?;
        let mut changes = Vec::new();
        for evaluation in batch {
            if let Some((host, memory, conditions)) = &evaluation.state {
                sqlx::query(
                    "INSERT INTO host_eval (host_id, memory, conditions, updated_at_ms) \
                     VALUES (?, ?, ?, ?) ON CONFLICT (host_id) DO UPDATE SET \
                     memory = excluded.memory, conditions = excluded.conditions, \
                     updated_at_ms = excluded.updated_at_ms",
                )
                .bind(host.to_string())
                .bind(memory)
                .bind(conditions)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            }
            for (host, kind, key, detail) in &evaluation.host_events {
                sqlx::query(
                    "INSERT INTO host_events (id, host_id, at_ms, kind, detail, dedupe_key) \
                     VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (host_id, kind, dedupe_key) DO NOTHING",
                )
                .bind(uuid::Uuid::new_v4().to_string())
                .bind(host.to_string())
                .bind(now)
                .bind(kind)
                .bind(detail)
                .bind(key)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            }
            for op in &evaluation.ops {
                apply_op(&mut tx, op, reopen_within_ms, now, &mut changes).await?;
            }
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(changes)
    }

    pub(super) async fn list_incidents_impl(
        &self,
        filter: &IncidentFilter,
    ) -> StoreResult<Vec<IncidentRow>> {
        let mut sql = format!("SELECT {INCIDENT_COLUMNS} WHERE 1 = 1");
        if !filter.states.is_empty() {
            let states: Vec<String> =
                filter.states.iter().map(|s| format!("'{}'", s.as_str())).collect();
            sql.push_str(&format!(" AND i.state IN ({})", states.join(", ")));
        }
        if filter.level.is_some() {
            sql.push_str(" AND i.level = ?");
        }
        if filter.customer_id.is_some() {
            sql.push_str(" AND i.customer_id = ?");
        }
        if filter.site_id.is_some() {
            sql.push_str(" AND i.site_id = ?");
        }
        if filter.host_id.is_some() {
            sql.push_str(" AND i.host_id = ?");
        }
        if filter.rule.is_some() {
            sql.push_str(" AND i.rule = ?");
        }
        if filter.parent_id.is_some() {
            sql.push_str(" AND i.parent_id = ?");
        }
        sql.push_str(" ORDER BY i.id DESC LIMIT ?");
        let mut query = sqlx::query(&sql);
        if let Some(level) = filter.level {
            query = query.bind(i64::from(level));
        }
        if let Some(id) = filter.customer_id {
            query = query.bind(id.to_string());
        }
        if let Some(id) = filter.site_id {
            query = query.bind(id.to_string());
        }
        if let Some(id) = filter.host_id {
            query = query.bind(id.to_string());
        }
        if let Some(rule) = &filter.rule {
            query = query.bind(rule.clone());
        }
        if let Some(parent) = filter.parent_id {
            query = query.bind(parent);
        }
        let limit = if filter.limit == 0 { 1000 } else { filter.limit };
        let rows = query.bind(i64::from(limit)).fetch_all(&self.read).await.map_err(unavailable)?;
        rows.iter().map(incident_row).collect()
    }

    pub(super) async fn get_incident_impl(&self, id: i64) -> StoreResult<Option<IncidentRow>> {
        let row = sqlx::query(&format!("SELECT {INCIDENT_COLUMNS} WHERE i.id = ?"))
            .bind(id)
            .fetch_optional(&self.read)
            .await
            .map_err(unavailable)?;
        row.as_ref().map(incident_row).transpose()
    }

    pub(super) async fn incident_timeline_impl(&self, id: i64) -> StoreResult<Vec<TimelineEntry>> {
        let rows = sqlx::query(
            "SELECT at_ms, kind, actor, detail FROM incident_timeline \
             WHERE incident_id = ? ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.read)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                Ok(TimelineEntry {
                    at_ms: row.try_get("at_ms").map_err(corrupt)?,
                    kind: row.try_get("kind").map_err(corrupt)?,
                    actor: row.try_get("actor").map_err(corrupt)?,
                    detail: row.try_get("detail").map_err(corrupt)?,
                })
            })
            .collect()
    }

    pub(super) async fn work_incident_impl(
        &self,
        id: i64,
        action: &IncidentAction,
        actor: &str,
        now: UnixMs,
    ) -> StoreResult<IncidentRow> {
        let number = incident_number(id);
        let mut conn = self.writer().await;
        let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(unavailable)?;
        let row: Option<(String, Option<String>)> =
            sqlx::query_as("SELECT state, acknowledged_by FROM incidents WHERE id = ?")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(unavailable)?;
        let Some((state, acknowledged_by)) = row else {
            return Err(StoreError::NotFound(format!("no incident {number}")));
        };
        let state = IncidentState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("bad incident state {state:?}")))?;
        let inactive =
            || StoreError::Conflict(format!("{number} is {}; nothing to do", state.as_str()));
        let (kind, detail) = match action {
            IncidentAction::Acknowledge => match state {
                IncidentState::Open => {
                    sqlx::query(
                        "UPDATE incidents SET state = 'acknowledged', acknowledged_at_ms = ?, \
                         acknowledged_by = ?, updated_at_ms = ? WHERE id = ?",
                    )
                    .bind(now)
                    .bind(actor)
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                    ("acknowledged", String::new())
                }
                IncidentState::Acknowledged => {
                    return Err(StoreError::Conflict(format!(
                        "{number} is already acknowledged by {}",
                        acknowledged_by.unwrap_or_default()
                    )));
                }
                _ => return Err(inactive()),
            },
            IncidentAction::Assign(who) if state.is_active() => {
                sqlx::query("UPDATE incidents SET assignee = ?, updated_at_ms = ? WHERE id = ?")
                    .bind(who)
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                ("assigned", who.clone())
            }
            IncidentAction::Resolve(note) if state.is_active() => {
                sqlx::query(
                    "UPDATE incidents SET state = 'resolved', resolved_at_ms = ?, \
                     resolved_by = ?, resolution_note = ?, flapping = FALSE, updated_at_ms = ? \
                     WHERE id = ?",
                )
                .bind(now)
                .bind(actor)
                .bind(note)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
                ("resolved", note.clone())
            }
            IncidentAction::Assign(_) | IncidentAction::Resolve(_) => return Err(inactive()),
            IncidentAction::Note(text) => {
                sqlx::query("UPDATE incidents SET updated_at_ms = ? WHERE id = ?")
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                ("note", text.clone())
            }
        };
        timeline(&mut tx, id, now, kind, actor, &detail).await?;
        tx.commit().await.map_err(unavailable)?;
        drop(conn);
        self.get_incident_impl(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no incident {number}")))
    }

    pub(super) async fn close_resolved_impl(
        &self,
        resolved_before: UnixMs,
        now: UnixMs,
    ) -> StoreResult<u64> {
        let mut conn = self.writer().await;
        let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(unavailable)?;
        sqlx::query(
            "INSERT INTO incident_timeline (incident_id, at_ms, kind, actor, detail) \
             SELECT id, ?, 'closed', ?, '' FROM incidents \
             WHERE state = 'resolved' AND resolved_at_ms < ?",
        )
        .bind(now)
        .bind(SYSTEM_ACTOR)
        .bind(resolved_before)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        let closed = sqlx::query(
            "UPDATE incidents SET state = 'closed', closed_at_ms = ?, updated_at_ms = ? \
             WHERE state = 'resolved' AND resolved_at_ms < ?",
        )
        .bind(now)
        .bind(now)
        .bind(resolved_before)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?
        .rows_affected();
        tx.commit().await.map_err(unavailable)?;
        Ok(closed)
    }

    pub(super) async fn create_maintenance_impl(
        &self,
        w: &MaintenanceWindowRow,
    ) -> StoreResult<()> {
        let rules =
            serde_json::to_string(&w.rules).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut conn = self.writer().await;
        sqlx::query(
            "INSERT INTO maintenance_windows (id, customer_id, site_id, host_id, rules, \
             start_local, duration_ms, recurrence, time_zone, until_local, reason, \
             created_at_ms, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        super::sqlite_sla::reset_sla(&mut conn, Some(w.customer_id)).await?;
        Ok(())
    }

    pub(super) async fn list_maintenance_impl(&self) -> StoreResult<Vec<MaintenanceWindowRow>> {
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

    pub(super) async fn delete_maintenance_impl(&self, id: &str) -> StoreResult<bool> {
        let mut conn = self.writer().await;
        let deleted = sqlx::query("DELETE FROM maintenance_windows WHERE id = ?")
            .bind(id)
            .execute(&mut *conn)
            .await
            .map_err(unavailable)?
            .rows_affected();
        if deleted > 0 {
            super::sqlite_sla::reset_sla(&mut conn, None).await?;
        }
        Ok(deleted > 0)
    }
}
