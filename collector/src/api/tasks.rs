//! The background tasks as the driver sees them (`GET /api/v1/tasks`): each task's period,
//! how often it ran and failed, and how its latest run went. Read-only and fleet-internal
//! plumbing, so admin only; each replica answers for its own tasks.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::auth::Caller;
use super::{ApiError, AppState};
use crate::clock::rfc3339;
use crate::store::Role;
use crate::tasks::TaskStatus;

fn view(t: &TaskStatus) -> Value {
    let period = std::time::Duration::from_millis(t.period_ms);
    json!({
        "name": t.name,
        "period_ms": t.period_ms,
        "period": humantime::format_duration(period).to_string(),
        "activations": t.activations,
        "failures": t.failures,
        "running": t.running,
        "last_started_ms": t.last_started_ms,
        "last_started": t.last_started_ms.map(rfc3339),
        "last_reason": t.last_reason,
        "last_duration_ms": t.last_duration_ms,
        "last_outcome": t.last_outcome.as_ref().map(|o| o.as_str()),
        "last_summary": t.last_outcome.as_ref().map(|o| o.summary()),
    })
}

pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require_fleet(Role::Admin)?;
    Ok(Json(json!({ "tasks": state.tasks.list().iter().map(view).collect::<Vec<_>>() })))
}
