//! `/api/v1/hosts`: the fleet list and one host's detail (facts, last seen, status, latest
//! readings, agent instances, timeline), its report receipts and its roll-ups.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use prost::Message;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use vigil_proto::v1::Report;

use super::auth::Caller;
use super::{ApiError, AppState};
use crate::clock::{UnixMs, rfc3339};
use crate::error::ErrorCode;
use crate::ids::HostId;
use crate::readings::{Summary, summary};
use crate::status::{HostStatus, host_status};
use crate::store::{HostRow, LatestReport, Role};

#[derive(Debug, Serialize)]
pub struct HostView {
    pub id: HostId,
    pub hostname: String,
    pub customer: String,
    pub site: String,
    pub status: HostStatus,
    pub last_seen: Option<String>,
    pub last_seen_unix_ms: Option<UnixMs>,
    pub interval_seconds: u32,
    pub agent_version: String,
    pub goodbye_reason: Option<String>,
    pub os: String,
    pub cpu_cores: u32,
    pub memory_total_bytes: u64,
    pub readings: Summary,
}

fn decode(latest: &LatestReport) -> Result<Report, ApiError> {
    Report::decode(latest.encoded.as_slice())
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("stored report is corrupt: {e}")))
}

fn view(state: &AppState, host: HostRow, report: Option<&Report>) -> HostView {
    let status = host_status(&host, state.clock.now_ms(), state.min_silence);
    let facts = report.and_then(|r| r.facts.clone()).unwrap_or_default();
    HostView {
        id: host.id,
        hostname: host.hostname,
        customer: host.customer,
        site: host.site,
        status,
        last_seen: host.last_seen_ms.map(rfc3339),
        last_seen_unix_ms: host.last_seen_ms,
        interval_seconds: host.interval_seconds,
        agent_version: host.agent_version,
        goodbye_reason: host.goodbye_reason,
        os: facts.os_name,
        cpu_cores: facts.cpu_cores,
        memory_total_bytes: facts.memory_total_bytes,
        readings: report.map(summary).unwrap_or_default(),
    }
}

pub fn parse_host(id: &str) -> Result<HostId, ApiError> {
    id.parse().map_err(|_| {
        ApiError::new(ErrorCode::InvalidArgument, format!("{id:?} is not a host id (a UUID)"))
    })
}

pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let hosts = state.store.list_hosts().await?.into_iter().filter(|h| caller.sees(h));
    let mut latest: HashMap<HostId, LatestReport> =
        state.store.latest_reports().await?.into_iter().collect();
    let mut views = Vec::new();
    for host in hosts {
        let report = latest.remove(&host.id).map(|l| decode(&l)).transpose()?;
        views.push(view(&state, host, report.as_ref()));
    }
    Ok(Json(json!({ "hosts": views })))
}

async fn visible_host(state: &AppState, caller: &Caller, id: &str) -> Result<HostRow, ApiError> {
    caller.require(Role::Viewer)?;
    caller.host(state, id).await
}

pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let host = visible_host(&state, &caller, &id).await?;
    let id = host.id;
    let latest = state.store.latest_report(id).await?;
    let report = latest.as_ref().map(decode).transpose()?;
    let instances = state.store.instances(id).await?;
    let events = state.store.events(id, 100).await?;
    let host_extra = (host.machine_id.clone(), host.revoked_at_ms, host.replaced_by);
    let mut body = serde_json::to_value(view(&state, host, report.as_ref()))
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    body["facts"] = json!(report.as_ref().and_then(|r| r.facts.clone()));
    body["instances"] = json!(instances);
    body["events"] = json!(events);
    body["machine_id"] = json!(host_extra.0);
    body["revoked_at"] = json!(host_extra.1.map(rfc3339));
    body["replaced_by"] = json!(host_extra.2);
    body["latest_report"] = json!(report);
    body["latest_report_received_at"] = json!(latest.map(|l| rfc3339(l.received_at_ms)));
    Ok(Json(body))
}

#[derive(Debug, Deserialize)]
pub struct ReceiptQuery {
    pub instance: Option<String>,
    pub limit: Option<u32>,
}

pub async fn receipts(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<ReceiptQuery>,
) -> Result<Json<Value>, ApiError> {
    let id = visible_host(&state, &caller, &id).await?.id;
    let limit = q.limit.unwrap_or(1000).min(100_000);
    let receipts = state.store.receipts(id, q.instance.as_deref(), limit).await?;
    Ok(Json(json!({ "receipts": receipts })))
}

#[derive(Debug, Deserialize)]
pub struct RollupQuery {
    pub series: String,
    pub since_unix_ms: Option<i64>,
}

pub async fn rollups(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<RollupQuery>,
) -> Result<Json<Value>, ApiError> {
    let id = visible_host(&state, &caller, &id).await?.id;
    let since = q.since_unix_ms.unwrap_or_else(|| state.clock.now_ms() - 86_400_000);
    let rollups = state.store.rollups(id, &q.series, since).await?;
    Ok(Json(json!({ "series": q.series, "bucket_seconds": 300, "rollups": rollups })))
}
