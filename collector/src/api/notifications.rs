//! Notifications an operator has to look at: the dead letters (deliveries whose attempts are
//! used up or that the receiver refused, still retried slowly) and dropping one, which gives it
//! up for good. Fleet-wide, like the receivers they go to.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::auth::Caller;
use super::{ApiError, AppState};
use crate::error::ErrorCode;
use crate::ids::DeliveryId;
use crate::store::{DeliveryRow, Role, incident_number};

/// Most dead letters listed.
const LIST_LIMIT: u32 = 10_000;

fn view(d: &DeliveryRow) -> Value {
    json!({
        "id": d.id,
        "incident": incident_number(d.incident_id),
        "event_id": d.event_id,
        "receiver": d.receiver,
        "state": d.state,
        "attempts": d.attempts,
        "next_attempt_at_ms": d.next_attempt_at_ms,
        "last_error": d.last_error,
    })
}

pub async fn dead_letters(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require_fleet(Role::Viewer)?;
    let rows = state.store.dead_letters(LIST_LIMIT).await?;
    Ok(Json(json!({ "dead_letters": rows.iter().map(view).collect::<Vec<_>>() })))
}

pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require_fleet(Role::Operator)?;
    let id: DeliveryId = id.parse().map_err(|_| {
        ApiError::new(ErrorCode::InvalidArgument, format!("{id:?} is not a delivery id"))
    })?;
    let row = state.store.drop_delivery(id).await?;
    caller
        .audit(
            &state,
            "notification.drop",
            id.to_string(),
            json!({ "receiver": row.receiver, "event_id": row.event_id }),
        )
        .await?;
    Ok(Json(json!({ "dropped": view(&row) })))
}
