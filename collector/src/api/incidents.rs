//! `/api/v1/incidents`: the incident list with filters, one incident with its timeline, and
//! what a person does to one — acknowledge, assign, add a note, resolve with the note that is
//! the service record. Reading needs the viewer role, working an incident the operator role; a
//! customer-scoped token sees and works only its customer's incidents.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Caller;
use super::{ApiError, AppState, Body};
use crate::classify::FaultLevel;
use crate::clock::rfc3339;
use crate::error::ErrorCode;
use crate::store::{
    IncidentAction, IncidentFilter, IncidentRow, IncidentState, Role, parse_incident_number,
};

/// Longest note, assignee or resolution text accepted.
const MAX_TEXT: usize = 4096;

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidArgument, message)
}

fn view(incident: &IncidentRow) -> Value {
    let mut value = json!(incident);
    value["opened_at"] = json!(rfc3339(incident.opened_at_ms));
    value["updated_at"] = json!(rfc3339(incident.updated_at_ms));
    value["acknowledged_at"] = json!(incident.acknowledged_at_ms.map(rfc3339));
    value["resolved_at"] = json!(incident.resolved_at_ms.map(rfc3339));
    value
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Comma-separated states, or `active` (open and acknowledged). Default: every state.
    pub state: Option<String>,
    pub level: Option<u8>,
    /// Customer name.
    pub customer: Option<String>,
    /// Site name (with `customer`).
    pub site: Option<String>,
    /// Host id.
    pub host: Option<String>,
    pub rule: Option<String>,
    pub limit: Option<u32>,
}

fn parse_states(text: &str) -> Result<Vec<IncidentState>, ApiError> {
    let mut states = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if part == "active" {
            states.extend([IncidentState::Open, IncidentState::Acknowledged]);
            continue;
        }
        states.push(IncidentState::parse(part).ok_or_else(|| {
            invalid(format!(
                "state {part:?} is not one of open, acknowledged, resolved, closed, active"
            ))
        })?);
    }
    Ok(states)
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let mut filter = IncidentFilter {
        states: query.state.as_deref().map(parse_states).transpose()?.unwrap_or_default(),
        level: query
            .level
            .map(FaultLevel::try_from)
            .transpose()
            .map_err(|e| ApiError::new(ErrorCode::InvalidArgument, format!("level: {e}")))?,
        rule: query.rule.clone(),
        limit: query.limit.unwrap_or(500).clamp(1, 10_000),
        ..IncidentFilter::default()
    };
    if let Some(level) = query.level
        && !(1..=4).contains(&level)
    {
        return Err(invalid(format!("level must be 1, 2, 3 or 4, not {level}")));
    }
    if let Some(name) = &query.customer {
        // Another customer's name is answered as a name that does not exist.
        let customer = caller.customer(&state, name).await?;
        filter.customer_id = Some(customer.id);
        if let Some(site) = &query.site {
            let site = state.store.find_site(name, site).await?.ok_or_else(|| {
                ApiError::new(ErrorCode::NotFound, format!("no site {site:?} of {name:?}"))
            })?;
            filter.site_id = Some(site.id);
        }
    } else if query.site.is_some() {
        return Err(invalid("site needs customer (site names repeat across customers)"));
    }
    if let Some(host) = &query.host {
        filter.host_id = Some(super::hosts::parse_host(host)?);
    }
    if let Some(own) = caller.customer_id {
        filter.customer_id = Some(own);
    }
    let incidents = state.store.list_incidents(&filter).await?;
    Ok(Json(json!({ "incidents": incidents.iter().map(view).collect::<Vec<_>>() })))
}

/// The incident, if it exists and the caller may see it (404 otherwise, so a scoped token
/// cannot probe other customers' incident numbers).
async fn visible(state: &AppState, caller: &Caller, id: &str) -> Result<IncidentRow, ApiError> {
    let not_found = || ApiError::new(ErrorCode::NotFound, format!("no incident {id}"));
    let number = parse_incident_number(id).ok_or_else(|| {
        invalid(format!("{id:?} is not an incident number like INC-000042 or 42"))
    })?;
    state
        .store
        .get_incident(number)
        .await?
        .filter(|i| caller.sees_customer(i.customer_id))
        .ok_or_else(not_found)
}

pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let incident = visible(&state, &caller, &id).await?;
    let timeline = state.store.incident_timeline(incident.id).await?;
    let children = state
        .store
        .list_incidents(&IncidentFilter {
            parent_id: Some(incident.id),
            limit: 10_000,
            ..IncidentFilter::default()
        })
        .await?
        .into_iter()
        .map(|i| i.number)
        .collect::<Vec<_>>();
    let mut value = view(&incident);
    value["timeline"] = json!(
        timeline
            .iter()
            .map(|t| {
                let mut entry = json!(t);
                entry["at"] = json!(rfc3339(t.at_ms));
                entry
            })
            .collect::<Vec<_>>()
    );
    value["grouped"] = json!(children);
    value["sla"] = super::sla::incident_sla(&state, &incident).await?;
    value["deliveries"] = json!(state.store.incident_deliveries(incident.id).await?);
    Ok(Json(value))
}

async fn work(
    state: &AppState,
    caller: &Caller,
    id: &str,
    action: IncidentAction,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Operator)?;
    let incident = visible(state, caller, id).await?;
    let actor = format!("token:{}", caller.name);
    let (name, detail) = match &action {
        IncidentAction::Acknowledge => ("incident.acknowledge", json!({})),
        IncidentAction::Assign(who) => ("incident.assign", json!({ "assignee": who })),
        IncidentAction::Note(_) => ("incident.note", json!({})),
        IncidentAction::Resolve(_) => ("incident.resolve", json!({})),
    };
    let updated =
        state.store.work_incident(incident.id, &action, &actor, state.clock.now_ms()).await?;
    caller.audit(state, name, &incident.number, detail).await?;
    Ok(Json(view(&updated)))
}

fn text(field: &str, value: &str) -> Result<String, ApiError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(invalid(format!("{field} must not be empty")));
    }
    if value.len() > MAX_TEXT {
        return Err(invalid(format!("{field} is longer than {MAX_TEXT} bytes")));
    }
    Ok(value.to_owned())
}

pub async fn acknowledge(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    work(&state, &caller, &id, IncidentAction::Acknowledge).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignBody {
    pub assignee: String,
}

pub async fn assign(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<AssignBody>,
) -> Result<Json<Value>, ApiError> {
    let who = text("assignee", &body.assignee)?;
    work(&state, &caller, &id, IncidentAction::Assign(who)).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoteBody {
    pub note: String,
}

pub async fn note(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<NoteBody>,
) -> Result<Json<Value>, ApiError> {
    let note = text("note", &body.note)?;
    work(&state, &caller, &id, IncidentAction::Note(note)).await
}

pub async fn resolve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<NoteBody>,
) -> Result<Json<Value>, ApiError> {
    let note = text("note (cause and action taken)", &body.note)?;
    work(&state, &caller, &id, IncidentAction::Resolve(note)).await
}
