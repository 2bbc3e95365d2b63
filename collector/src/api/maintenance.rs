//! `/api/v1/maintenance`: planned maintenance windows (create, list, delete), one-off or
//! recurring in a time zone, scoped to a customer, a site or a host and optionally to rules.
//! Also `/api/v1/test-clock`, which exists only on a collector started with `--test-clock`.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Caller;
use super::{ApiError, AppState, Body};
use crate::clock::{Clock, rfc3339};
use crate::error::ErrorCode;
use crate::maintenance::schedule_of;
use crate::schedule::{Recurrence, Schedule};
use crate::store::{MaintenanceWindowRow, Role};

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidArgument, message)
}

fn view(state: &AppState, row: &MaintenanceWindowRow) -> Value {
    let mut value = json!(row);
    let now = state.clock.now_ms();
    if let Ok(schedule) = schedule_of(row) {
        value["active"] = json!(schedule.is_active(now));
        value["next_start"] = json!(schedule.next_start(now).map(rfc3339));
    }
    value
}

pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let windows = state.store.list_maintenance().await?;
    let views: Vec<Value> = windows
        .iter()
        .filter(|w| caller.sees_customer(w.customer_id))
        .map(|w| view(&state, w))
        .collect();
    Ok(Json(json!({ "windows": views })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// Customer name; with only a host, the host's customer.
    pub customer: Option<String>,
    /// Site name of that customer.
    pub site: Option<String>,
    /// Host id.
    pub host: Option<String>,
    /// Rule ids the window covers; empty or absent: every rule.
    #[serde(default)]
    pub rules: Vec<String>,
    /// Local start, like `2026-11-28T22:00`.
    pub start: String,
    /// Like `2h` or `90m`.
    pub duration: String,
    /// once (default), daily, weekly, monthly.
    pub recurrence: Option<Recurrence>,
    /// IANA time zone of `start` (default UTC).
    pub time_zone: Option<String>,
    /// Last local date an occurrence may start, like `2027-03-01`.
    pub until: Option<String>,
    pub reason: String,
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<CreateBody>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Operator)?;
    let reason = body.reason.trim();
    if reason.is_empty() || reason.len() > 1024 {
        return Err(invalid("reason must be 1 to 1024 bytes (say what the work is)"));
    }
    let recurrence = body.recurrence.unwrap_or(Recurrence::Once);
    let time_zone = body.time_zone.clone().unwrap_or_else(|| "UTC".into());
    let schedule =
        Schedule::new(&body.start, &body.duration, recurrence, &time_zone, body.until.as_deref())
            .map_err(|e| invalid(e.to_string()))?;

    // Another customer's host or name is answered as one that does not exist.
    let host = match &body.host {
        Some(id) => Some(caller.host(&state, id).await?),
        None => None,
    };
    let customer_name = match (&body.customer, &host) {
        (Some(name), _) => name.clone(),
        (None, Some(host)) => host.customer.clone(),
        (None, None) => return Err(invalid("give a customer, a host, or both")),
    };
    let customer = caller.customer(&state, &customer_name).await?;
    if let Some(host) = &host
        && host.customer_id != customer.id
    {
        return Err(invalid(format!(
            "host {} belongs to customer {:?}, not {customer_name:?}",
            host.id, host.customer
        )));
    }
    let site = match &body.site {
        Some(name) => {
            Some(state.store.find_site(&customer_name, name).await?.ok_or_else(|| {
                ApiError::new(ErrorCode::NotFound, format!("no site {name:?} of {customer_name:?}"))
            })?)
        }
        None => None,
    };
    if let (Some(site), Some(host)) = (&site, &host)
        && host.site_id != site.id
    {
        return Err(invalid(format!("host {} is not in site {:?}", host.id, site.name)));
    }
    for rule in &body.rules {
        if rule.is_empty() || rule.len() > 128 {
            return Err(invalid("rule ids must be 1 to 128 bytes"));
        }
    }
    let row = MaintenanceWindowRow {
        id: uuid::Uuid::new_v4().to_string(),
        customer_id: customer.id,
        customer: customer.name.clone(),
        site_id: site.as_ref().map(|s| s.id).or(host.as_ref().map(|h| h.site_id)),
        site: site.as_ref().map(|s| s.name.clone()),
        host_id: host.as_ref().map(|h| h.id),
        hostname: host.as_ref().map(|h| h.hostname.clone()),
        rules: body.rules.clone(),
        start_local: schedule.start_local(),
        duration_ms: schedule.duration().as_millis() as i64,
        recurrence: schedule.recurrence().as_str().into(),
        time_zone: schedule.time_zone().to_owned(),
        until_local: schedule.until(),
        reason: reason.to_owned(),
        created_at_ms: state.clock.now_ms(),
        created_by: format!("token:{}", caller.name),
    };
    state.store.create_maintenance(&row).await?;
    state.maintenance.reload(state.store.as_ref()).await?;
    caller.audit(&state, "maintenance.create", &row.id, json!({ "reason": row.reason })).await?;
    Ok(Json(view(&state, &row)))
}

pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Operator)?;
    let not_found = || ApiError::new(ErrorCode::NotFound, format!("no maintenance window {id}"));
    let visible = state
        .store
        .list_maintenance()
        .await?
        .iter()
        .any(|w| w.id == id && caller.sees_customer(w.customer_id));
    if !visible || !state.store.delete_maintenance(&id).await? {
        return Err(not_found());
    }
    state.maintenance.reload(state.store.as_ref()).await?;
    caller.audit(&state, "maintenance.delete", &id, json!({})).await?;
    Ok(Json(json!({ "deleted": id })))
}

fn test_clock_of(state: &AppState) -> Result<&crate::clock::ManualClock, ApiError> {
    state.test_clock.as_deref().ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            "this collector runs on the system clock (the test clock needs --test-clock)",
        )
    })
}

pub async fn test_clock(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let clock = test_clock_of(&state)?;
    let now = clock.now_ms();
    Ok(Json(json!({ "now": rfc3339(now), "now_unix_ms": now })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveClock {
    /// Like `90s` or `16m`.
    pub advance: String,
}

pub async fn move_test_clock(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<MoveClock>,
) -> Result<Json<Value>, ApiError> {
    caller.require_fleet(Role::Admin)?;
    let clock = test_clock_of(&state)?;
    let by = humantime::parse_duration(&body.advance)
        .map_err(|e| invalid(format!("advance {:?} is not a duration: {e}", body.advance)))?;
    clock.advance_ms(by.as_millis() as i64);
    let now = clock.now_ms();
    tracing::warn!(by = %body.advance, now = %rfc3339(now), "test clock moved");
    Ok(Json(json!({ "now": rfc3339(now), "now_unix_ms": now })))
}
