//! Contracts and SLA reports through the API: a customer's contract (read by anyone who may
//! see the customer, replaced by an admin, validated whole before it is stored, effective at
//! the next SLA sweep without a restart), an incident's deadlines and outcomes, and a
//! customer's SLA compliance per level over a period.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Caller;
use super::{ApiError, AppState, Body};
use crate::classify::FaultLevel;
use crate::clock::{UnixMs, rfc3339};
use crate::error::ErrorCode;
use crate::sla::contract::{Contract, Terms};
use crate::store::{ContractRow, IncidentFilter, IncidentRow, Role};

fn receivers(state: &AppState) -> Vec<&str> {
    state.receivers.iter().map(String::as_str).collect()
}

pub async fn show_contract(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let customer = caller.customer(&state, &name).await?;
    let row = state.store.get_contract(customer.id).await?;
    let (contract, updated) = match &row {
        Some(row) => (
            serde_json::from_str::<Contract>(&row.body)
                .map_err(|e| ApiError::new(ErrorCode::Internal, format!("stored contract: {e}")))?,
            json!({ "at": rfc3339(row.updated_at_ms), "by": row.updated_by }),
        ),
        None => (Contract::default(), Value::Null),
    };
    // Show what applies: omitted levels filled with their defaults.
    let effective =
        Terms::new(contract.clone(), &receivers(&state)).map(|t| t.contract).unwrap_or(contract);
    Ok(Json(json!({
        "customer": customer.name,
        "default": row.is_none(),
        "updated": updated,
        "contract": effective,
        "receivers": *state.receivers,
    })))
}

pub async fn set_contract(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Body(contract): Body<Contract>,
) -> Result<Json<Value>, ApiError> {
    caller.require_fleet(Role::Admin)?;
    let customer = caller.customer(&state, &name).await?;
    let terms = Terms::new(contract, &receivers(&state))
        .map_err(|e| ApiError::new(ErrorCode::InvalidArgument, format!("contract: {e}")))?;
    let body = serde_json::to_string(&terms.contract)
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    let now = state.clock.now_ms();
    state
        .store
        .set_contract(&ContractRow {
            customer_id: customer.id,
            body: body.clone(),
            updated_at_ms: now,
            updated_by: format!("token:{}", caller.name),
        })
        .await?;
    caller
        .audit(
            &state,
            "contract.set",
            &customer.name,
            serde_json::from_str(&body).unwrap_or_default(),
        )
        .await?;
    Ok(Json(json!({ "customer": customer.name, "contract": terms.contract })))
}

/// The SLA block of one incident: tier, deadlines, whether each was met, time to
/// acknowledge and to resolve.
pub async fn incident_sla(state: &AppState, incident: &IncidentRow) -> Result<Value, ApiError> {
    let Some(sla) = state.store.incident_sla(incident.id).await? else {
        return Ok(Value::Null);
    };
    let at = |ms: Option<UnixMs>| ms.map(rfc3339);
    Ok(json!({
        "tier": sla.tier,
        "clock_started": rfc3339(sla.sla_start_ms),
        "response": {
            "due": at(sla.response_due_ms),
            "met": sla.response_met,
        },
        "resolution": {
            "due": at(sla.resolution_due_ms),
            "met": sla.resolution_met,
        },
        "time_to_acknowledge_ms": incident.acknowledged_at_ms.map(|a| a - sla.sla_start_ms),
        "time_to_resolve_ms": incident.resolved_at_ms.map(|r| r - sla.sla_start_ms),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodQuery {
    /// RFC 3339 start (inclusive) of the period; default 30 days before `to`.
    pub from: Option<String>,
    /// RFC 3339 end (exclusive); default now.
    pub to: Option<String>,
}

fn parse_time(what: &str, text: &str) -> Result<UnixMs, ApiError> {
    let t = humantime::parse_rfc3339_weak(text).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidArgument,
            format!("{what} {text:?} is not an RFC 3339 time like 2026-11-01T00:00:00Z: {e}"),
        )
    })?;
    Ok(t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0))
}

#[derive(Debug, Default)]
struct LevelStats {
    opened: u64,
    response_met: u64,
    response_missed: u64,
    resolution_met: u64,
    resolution_missed: u64,
    ack_ms: Vec<i64>,
    resolve_ms: Vec<i64>,
}

fn ratio(met: u64, missed: u64) -> Value {
    if met + missed == 0 { Value::Null } else { json!(met as f64 / (met + missed) as f64) }
}

fn mean(values: &[i64]) -> Value {
    if values.is_empty() {
        Value::Null
    } else {
        json!(values.iter().sum::<i64>() / values.len() as i64)
    }
}

/// SLA compliance of one customer per level, over incidents opened in `[from, to)`.
pub async fn compliance(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(query): Query<PeriodQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let customer = caller.customer(&state, &name).await?;
    let to = match &query.to {
        Some(text) => parse_time("to", text)?,
        None => state.clock.now_ms(),
    };
    let from = match &query.from {
        Some(text) => parse_time("from", text)?,
        None => to - 30 * 86_400_000,
    };
    if from >= to {
        return Err(ApiError::new(ErrorCode::InvalidArgument, "from must be before to"));
    }
    let incidents = state
        .store
        .list_incidents(&IncidentFilter {
            customer_id: Some(customer.id),
            limit: 1_000_000,
            ..IncidentFilter::default()
        })
        .await?;
    let mut levels: [LevelStats; 4] = Default::default();
    for incident in incidents.iter().filter(|i| from <= i.opened_at_ms && i.opened_at_ms < to) {
        let Some(sla) = state.store.incident_sla(incident.id).await? else { continue };
        let stats = &mut levels[usize::from(incident.level.as_u8() - 1)];
        stats.opened += 1;
        match sla.response_met {
            Some(true) => stats.response_met += 1,
            Some(false) => stats.response_missed += 1,
            None => {}
        }
        match sla.resolution_met {
            Some(true) => stats.resolution_met += 1,
            Some(false) => stats.resolution_missed += 1,
            None => {}
        }
        if let Some(a) = incident.acknowledged_at_ms {
            stats.ack_ms.push(a - sla.sla_start_ms);
        }
        if let Some(r) = incident.resolved_at_ms {
            stats.resolve_ms.push(r - sla.sla_start_ms);
        }
    }
    let per_level: Vec<Value> = levels
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({
                "level": FaultLevel::from_u8(i as u8 + 1).map(|l| l.to_string()),
                "opened": s.opened,
                "response": { "met": s.response_met, "missed": s.response_missed, "ratio": ratio(s.response_met, s.response_missed) },
                "resolution": { "met": s.resolution_met, "missed": s.resolution_missed, "ratio": ratio(s.resolution_met, s.resolution_missed) },
                "mean_time_to_acknowledge_ms": mean(&s.ack_ms),
                "mean_time_to_resolve_ms": mean(&s.resolve_ms),
            })
        })
        .collect();
    Ok(Json(json!({
        "customer": customer.name,
        "from": rfc3339(from),
        "to": rfc3339(to),
        "levels": per_level,
    })))
}
