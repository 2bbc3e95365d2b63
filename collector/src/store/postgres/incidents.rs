//! PostgreSQL side of the incident records: applying the incident engine's operations in one
//! transaction per batch, the incident queries and the people's actions on an incident. The SQL
//! is kept portable (no SQLite-only functions) so the PostgreSQL store can share it nearly
//! verbatim.

use async_trait::async_trait;
use sqlx::Row;

use super::*;
use crate::incidents::lifecycle::{self, RaiseOutcome};

const ACTIVE: &str = "state IN ('open', 'acknowledged')";

const INCIDENT_COLUMNS: &str = "i.id, i.customer_id, c.name AS customer, i.site_id, \
     s.name AS site, i.host_id, h.hostname, i.rule, i.resource, i.level, i.summary, i.kind, \
     i.state, i.flapping, i.recurrences, i.parent_id, i.opened_at_ms, i.updated_at_ms, \
     i.acknowledged_at_ms, i.acknowledged_by, i.assignee, i.resolved_at_ms, i.resolved_by, \
     i.resolution_note, i.closed_at_ms \
     FROM incidents i JOIN customers c ON c.id = i.customer_id \
     JOIN sites s ON s.id = i.site_id LEFT JOIN hosts h ON h.id = i.host_id";

fn incident_row(row: &PgRow) -> StoreResult<IncidentRow> {
    let id: IncidentId = row.try_get("id").map_err(corrupt)?;
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
        level: level_column(row, "level")?,
        summary: row.try_get("summary").map_err(corrupt)?,
        kind: named_column(row, "kind", finding_kind)?,
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

/// The active incident of a fingerprint: (id, level, summary).
async fn active(
    tx: &mut PgConnection,
    fingerprint: &str,
) -> StoreResult<Option<(IncidentId, FaultLevel, String)>> {
    let row = sqlx::query(&format!(
        "SELECT id, level, summary FROM incidents WHERE fingerprint = $1 AND {ACTIVE}"
    ))
    .bind(fingerprint)
    .fetch_optional(&mut *tx)
    .await
    .map_err(unavailable)?;
    row.map(|r| {
        Ok((
            r.try_get("id").map_err(corrupt)?,
            fault_level(r.try_get("level").map_err(corrupt)?)?,
            r.try_get("summary").map_err(corrupt)?,
        ))
    })
    .transpose()
}

async fn active_on_host(
    tx: &mut PgConnection,
    host: HostId,
    rule: &str,
    resource: &str,
) -> StoreResult<Option<IncidentId>> {
    sqlx::query_scalar(&format!(
        "SELECT id FROM incidents WHERE host_id = $1 AND rule = $2 AND resource = $3 AND {ACTIVE}"
    ))
    .bind(host.to_string())
    .bind(rule)
    .bind(resource)
    .fetch_optional(&mut *tx)
    .await
    .map_err(unavailable)
}

/// Writes a timeline entry; a notifiable one also enters the outbox, and one that changes
/// what the SLA clocks depend on marks the incident for the next SLA sweep.
pub(super) async fn timeline(
    tx: &mut PgConnection,
    incident: IncidentId,
    at: UnixMs,
    kind: TimelineKind,
    actor: &str,
    detail: &str,
) -> StoreResult<()> {
    let entry: TimelineId = sqlx::query_scalar(
        "INSERT INTO incident_timeline (incident_id, at_ms, kind, actor, detail) \
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(incident)
    .bind(at)
    .bind(kind.as_str())
    .bind(actor)
    .bind(detail)
    .fetch_one(&mut *tx)
    .await
    .map_err(unavailable)?;
    if kind.notifies() {
        sqlx::query(
            "INSERT INTO outbox (incident_id, timeline_id, created_at_ms) VALUES ($1, $2, $3)",
        )
        .bind(incident)
        .bind(entry)
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
    }
    if kind.resets_sla() {
        sqlx::query("UPDATE incidents SET sla_done = FALSE, sla_check_at_ms = NULL WHERE id = $1")
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
    tx: &mut PgConnection,
    entries: &[(IncidentId, TimelineKind, &str)],
    at: UnixMs,
) -> StoreResult<()> {
    debug_assert!(entries.iter().all(|(_, kind, _)| !kind.resets_sla()));
    for chunk in entries.chunks(1000) {
        let mut sql = String::from(
            "INSERT INTO incident_timeline (incident_id, at_ms, kind, actor, detail) VALUES ",
        );
        sql.push_str(&values_rows(chunk.len(), &["", "", "", "", ""]));
        sql.push_str(" RETURNING id, incident_id, kind");
        let mut query = sqlx::query(&sql);
        for (incident, kind, detail) in chunk {
            query =
                query.bind(incident).bind(at).bind(kind.as_str()).bind(SYSTEM_ACTOR).bind(*detail);
        }
        let rows = query.fetch_all(&mut *tx).await.map_err(unavailable)?;
        let mut notify: Vec<(IncidentId, TimelineId)> = Vec::new();
        for row in &rows {
            let kind: String = row.try_get("kind").map_err(corrupt)?;
            if TimelineKind::parse(&kind).is_some_and(TimelineKind::notifies) {
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
        sql.push_str(&values_rows(notify.len(), &["", "", ""]));
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
    tx: &mut PgConnection,
    child: IncidentId,
    parent: IncidentId,
    now: UnixMs,
) -> StoreResult<bool> {
    let moved = sqlx::query(
        "UPDATE incidents SET parent_id = $1, updated_at_ms = $2 \
         WHERE id = $3 AND id <> $4 AND parent_id IS NULL",
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
            TimelineKind::Grouped,
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

/// Opens, updates or reopens, as [`lifecycle::raise`] decides; returns the incident id and
/// what happened.
async fn raise(
    tx: &mut PgConnection,
    op: &Raise<'_>,
    reopen_within_ms: i64,
    now: UnixMs,
) -> StoreResult<(IncidentId, Option<TimelineKind>)> {
    let key = op.fingerprint.key();
    let raised = lifecycle::Raised { level: op.level, summary: op.summary, kind: op.kind };
    let active = active(tx, &key).await?;
    let last_resolved = match &active {
        Some(_) => None,
        None => {
            let row: Option<(IncidentId, i64, i64)> = sqlx::query_as(
                "SELECT id, resolved_at_ms, recurrences FROM incidents \
                 WHERE fingerprint = $1 AND state = 'resolved' \
                 ORDER BY resolved_at_ms DESC LIMIT 1",
            )
            .bind(&key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
            row
        }
    };
    let decision = lifecycle::raise(
        active.as_ref().map(|(_, level, summary)| lifecycle::Active { level: *level, summary }),
        last_resolved.map(|(_, resolved_at_ms, recurrences)| lifecycle::LastResolved {
            resolved_at_ms,
            recurrences: recurrences as u32,
        }),
        raised,
        reopen_within_ms,
        now,
    );
    let level = i64::from(op.level.as_u8());
    match (decision, active, last_resolved) {
        (RaiseOutcome::Update { level, rewrite, entry }, Some((id, _, _)), _) => {
            if let Some((kind, detail)) = &entry {
                timeline(tx, id, now, *kind, SYSTEM_ACTOR, detail).await?;
            }
            if rewrite {
                sqlx::query(
                    "UPDATE incidents SET level = $1, summary = $2, updated_at_ms = $3 WHERE id = $4",
                )
                .bind(i64::from(level.as_u8()))
                .bind(op.summary)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            }
            Ok((id, entry.map(|(kind, _)| kind)))
        }
        (RaiseOutcome::Reopen { recurrences, entry: (kind, detail) }, _, Some((id, _, _))) => {
            sqlx::query(
                "UPDATE incidents SET state = 'open', level = $1, summary = $2, kind = $3, \
                 recurrences = $4, updated_at_ms = $5, acknowledged_at_ms = NULL, \
                 acknowledged_by = NULL, resolved_at_ms = NULL, resolved_by = NULL, \
                 resolution_note = NULL, tier = 1, sla_start_ms = $6, sla_level = NULL, \
                 response_due_ms = NULL, resolution_due_ms = NULL, response_met = NULL, \
                 resolution_met = NULL, response_warned = FALSE, resolution_warned = FALSE \
                 WHERE id = $7",
            )
            .bind(level)
            .bind(op.summary)
            .bind(finding_kind_name(op.kind))
            .bind(i64::from(recurrences))
            .bind(now)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
            timeline(tx, id, now, kind, SYSTEM_ACTOR, &detail).await?;
            Ok((id, Some(kind)))
        }
        (RaiseOutcome::Open { entry: (kind, detail) }, _, _) => {
            let fp = op.fingerprint;
            let id: IncidentId = sqlx::query_scalar(
                "INSERT INTO incidents (fingerprint, customer_id, site_id, host_id, rule, \
                 resource, level, summary, kind, state, opened_at_ms, updated_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'open', $10, $11) RETURNING id",
            )
            .bind(&key)
            .bind(fp.customer_id.to_string())
            .bind(fp.site_id.to_string())
            .bind(fp.host_id.map(|h| h.to_string()))
            .bind(&fp.rule)
            .bind(&fp.resource)
            .bind(level)
            .bind(op.summary)
            .bind(finding_kind_name(op.kind))
            .bind(now)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(unavailable)?;
            timeline(tx, id, now, kind, SYSTEM_ACTOR, &detail).await?;
            Ok((id, Some(kind)))
        }
        (decision, _, _) => Err(StoreError::Corrupt(format!(
            "incident lifecycle decided {decision:?} for {key} without the incident it needs"
        ))),
    }
}

async fn apply_op(
    tx: &mut PgConnection,
    op: &IncidentOp,
    reopen_within_ms: i64,
    now: UnixMs,
    changes: &mut Vec<IncidentChange>,
) -> StoreResult<()> {
    let mut record = |id: IncidentId, change: TimelineKind, level: FaultLevel, fp: &Fingerprint| {
        changes.push(IncidentChange {
            incident_id: id,
            change: change.as_str(),
            level,
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
            let opened = matches!(change, Some(TimelineKind::Opened | TimelineKind::Reopened));
            if opened && let Some(detail) = detail {
                timeline(tx, id, now, TimelineKind::Detail, SYSTEM_ACTOR, detail).await?;
            }
            let Some(host) = fingerprint.host_id else { return Ok(()) };
            if let Some((rule, resource)) = parent
                && let Some(parent_id) = active_on_host(tx, host, rule, resource).await?
            {
                group_under(tx, id, parent_id, now).await?;
            }
            let mut children: Vec<IncidentId> = Vec::new();
            if *group_host {
                children = sqlx::query_scalar(&format!(
                    "SELECT id FROM incidents WHERE host_id = $1 AND {ACTIVE} AND id <> $2"
                ))
                .bind(host.to_string())
                .bind(id)
                .fetch_all(&mut *tx)
                .await
                .map_err(unavailable)?;
            } else {
                for resource in groups {
                    let ids: Vec<IncidentId> = sqlx::query_scalar(&format!(
                        "SELECT id FROM incidents WHERE host_id = $1 AND resource = $2 \
                         AND {ACTIVE} AND id <> $3"
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
                "UPDATE incidents SET state = 'resolved', resolved_at_ms = $1, resolved_by = $2, \
                 flapping = FALSE, updated_at_ms = $3 WHERE id = $4",
            )
            .bind(now)
            .bind(SYSTEM_ACTOR)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
            timeline(tx, id, now, TimelineKind::Resolved, SYSTEM_ACTOR, reason).await?;
            // What was filed under it stands on its own again.
            sqlx::query(&format!(
                "UPDATE incidents SET parent_id = NULL, updated_at_ms = $1 \
                 WHERE parent_id = $2 AND {ACTIVE}"
            ))
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
            record(id, TimelineKind::Resolved, level, fingerprint);
        }
        IncidentOp::Flapping { fingerprint, detail } => {
            let Some((id, level, _)) = active(tx, &fingerprint.key()).await? else {
                return Ok(());
            };
            let marked = sqlx::query(
                "UPDATE incidents SET flapping = TRUE, updated_at_ms = $1 \
                 WHERE id = $2 AND flapping = FALSE",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?
            .rows_affected();
            if marked > 0 {
                timeline(tx, id, now, TimelineKind::Flapping, SYSTEM_ACTOR, detail).await?;
                record(id, TimelineKind::Flapping, level, fingerprint);
            }
        }
        IncidentOp::Group { child, parent } => {
            if let (Some((child_id, level, _)), Some((parent_id, _, _))) =
                (active(tx, &child.key()).await?, active(tx, &parent.key()).await?)
                && group_under(tx, child_id, parent_id, now).await?
            {
                record(child_id, TimelineKind::Grouped, level, child);
            }
        }
    }
    Ok(())
}

#[async_trait]
impl IncidentStore for PgStore {
    async fn eval_states(&self, hosts: &[HostId]) -> StoreResult<Vec<HostEvalState>> {
        let mut states = Vec::with_capacity(hosts.len());
        for host in hosts {
            let row = sqlx::query(
                "SELECT h.id, s.customer_id, c.name AS customer, h.site_id, e.memory, \
                 e.conditions FROM hosts h JOIN sites s ON s.id = h.site_id \
                 JOIN customers c ON c.id = s.customer_id \
                 LEFT JOIN host_eval e ON e.host_id = h.id WHERE h.id = $1",
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

    async fn apply_evaluations(
        &self,
        batch: &[HostEvaluation],
        reopen_within_ms: i64,
        now: UnixMs,
    ) -> StoreResult<Vec<IncidentChange>> {
        let mut conn = self.writer().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(unavailable)?;
        let mut changes = Vec::new();
        for evaluation in batch {
            if let Some((host, memory, conditions)) = &evaluation.state {
                sqlx::query(
                    "INSERT INTO host_eval (host_id, memory, conditions, updated_at_ms) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (host_id) DO UPDATE SET \
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
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (host_id, kind, dedupe_key) DO NOTHING",
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

    async fn list_incidents(&self, filter: &IncidentFilter) -> StoreResult<Vec<IncidentRow>> {
        let mut sql = format!("SELECT {INCIDENT_COLUMNS} WHERE 1 = 1");
        if !filter.states.is_empty() {
            let states: Vec<String> =
                filter.states.iter().map(|s| format!("'{}'", s.as_str())).collect();
            sql.push_str(&format!(" AND i.state IN ({})", states.join(", ")));
        }
        let mut n = 0;
        let mut condition = |sql: &mut String, column: &str| {
            n += 1;
            sql.push_str(&format!(" AND i.{column} = ${n}"));
        };
        if filter.level.is_some() {
            condition(&mut sql, "level");
        }
        if filter.customer_id.is_some() {
            condition(&mut sql, "customer_id");
        }
        if filter.site_id.is_some() {
            condition(&mut sql, "site_id");
        }
        if filter.host_id.is_some() {
            condition(&mut sql, "host_id");
        }
        if filter.rule.is_some() {
            condition(&mut sql, "rule");
        }
        if filter.parent_id.is_some() {
            condition(&mut sql, "parent_id");
        }
        sql.push_str(&format!(" ORDER BY i.id DESC LIMIT ${}", n + 1));
        let mut query = sqlx::query(&sql);
        if let Some(level) = filter.level {
            query = query.bind(i64::from(level.as_u8()));
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

    async fn get_incident(&self, id: IncidentId) -> StoreResult<Option<IncidentRow>> {
        let row = sqlx::query(&format!("SELECT {INCIDENT_COLUMNS} WHERE i.id = $1"))
            .bind(id)
            .fetch_optional(&self.read)
            .await
            .map_err(unavailable)?;
        row.as_ref().map(incident_row).transpose()
    }

    async fn incident_timeline(&self, id: IncidentId) -> StoreResult<Vec<TimelineEntry>> {
        let rows = sqlx::query(
            "SELECT at_ms, kind, actor, detail FROM incident_timeline \
             WHERE incident_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.read)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                Ok(TimelineEntry {
                    at_ms: row.try_get("at_ms").map_err(corrupt)?,
                    kind: named_column(row, "kind", TimelineKind::parse)?,
                    actor: row.try_get("actor").map_err(corrupt)?,
                    detail: row.try_get("detail").map_err(corrupt)?,
                })
            })
            .collect()
    }

    async fn work_incident(
        &self,
        id: IncidentId,
        action: &IncidentAction,
        actor: &str,
        now: UnixMs,
    ) -> StoreResult<IncidentRow> {
        let number = incident_number(id);
        let mut conn = self.writer().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(unavailable)?;
        let row: Option<(String, Option<String>)> =
            sqlx::query_as("SELECT state, acknowledged_by FROM incidents WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(unavailable)?;
        let Some((state, acknowledged_by)) = row else {
            return Err(StoreError::NotFound(format!("no incident {number}")));
        };
        let state = IncidentState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("bad incident state {state:?}")))?;
        let (kind, detail) = lifecycle::work(&number, state, acknowledged_by.as_deref(), action)
            .map_err(|refused| StoreError::Conflict(refused.0))?;
        let write = match action {
            IncidentAction::Acknowledge => sqlx::query(
                "UPDATE incidents SET state = 'acknowledged', acknowledged_at_ms = $1, \
                 acknowledged_by = $2, updated_at_ms = $3 WHERE id = $4",
            )
            .bind(now)
            .bind(actor)
            .bind(now),
            IncidentAction::Assign(who) => {
                sqlx::query("UPDATE incidents SET assignee = $1, updated_at_ms = $2 WHERE id = $3")
                    .bind(who)
                    .bind(now)
            }
            IncidentAction::Resolve(note) => sqlx::query(
                "UPDATE incidents SET state = 'resolved', resolved_at_ms = $1, resolved_by = $2, \
                 resolution_note = $3, flapping = FALSE, updated_at_ms = $4 WHERE id = $5",
            )
            .bind(now)
            .bind(actor)
            .bind(note)
            .bind(now),
            IncidentAction::Note(_) => {
                sqlx::query("UPDATE incidents SET updated_at_ms = $1 WHERE id = $2").bind(now)
            }
        };
        write.bind(id).execute(&mut *tx).await.map_err(unavailable)?;
        timeline(&mut tx, id, now, kind, actor, &detail).await?;
        tx.commit().await.map_err(unavailable)?;
        drop(conn);
        self.get_incident(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no incident {number}")))
    }

    async fn close_resolved(&self, resolved_before: UnixMs, now: UnixMs) -> StoreResult<u64> {
        let mut conn = self.writer().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(unavailable)?;
        sqlx::query(
            "INSERT INTO incident_timeline (incident_id, at_ms, kind, actor, detail) \
             SELECT id, $1, 'closed', $2, '' FROM incidents \
             WHERE state = 'resolved' AND resolved_at_ms < $3",
        )
        .bind(now)
        .bind(SYSTEM_ACTOR)
        .bind(resolved_before)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        let closed = sqlx::query(
            "UPDATE incidents SET state = 'closed', closed_at_ms = $1, updated_at_ms = $2 \
             WHERE state = 'resolved' AND resolved_at_ms < $3",
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

    async fn incident_stats(&self) -> StoreResult<Vec<IncidentStat>> {
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
                    level: level_column(row, "level")?,
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
}
