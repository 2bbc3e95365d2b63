//! The HTTP side of the collector (axum): health and readiness probes, Prometheus `/metrics`,
//! and the operator API under `/api/v1`. Errors leave through [`ApiError`], which takes its
//! status from the shared error-code table, so the API and the gRPC side agree.

pub mod hosts;

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

use crate::clock::SharedClock;
use crate::error::{ErrorCode, HasErrorCode};
use crate::metrics as m;
use crate::status::{HostStatus, host_status};
use crate::store::Store;

#[derive(Clone, Debug)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub clock: SharedClock,
    pub min_silence: Duration,
    pub metrics: Option<PrometheusHandle>,
}

pub fn router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/hosts", get(hosts::list))
        .route("/api/v1/hosts/{id}", get(hosts::show))
        .route("/api/v1/hosts/{id}/receipts", get(hosts::receipts))
        .route("/api/v1/hosts/{id}/rollups", get(hosts::rollups))
        .fallback(not_found)
        .with_state(state)
}

/// An API error: `{"error": {"code": "...", "message": "..."}}` with the matching status.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

impl<E: HasErrorCode> From<E> for ApiError {
    fn from(err: E) -> Self {
        Self { code: err.code(), message: err.to_string() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code.as_str(), "message": self.message } });
        (self.code.http(), Json(body)).into_response()
    }
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such endpoint; see docs/api.md")
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(err) => ApiError::from(err).into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let Some(handle) = state.metrics.as_ref() else {
        return ApiError::new(ErrorCode::Unavailable, "metrics recorder not installed")
            .into_response();
    };
    // Fleet gauges are computed from the store at scrape time, so every replica reports the
    // same truth and nothing drifts between scrapes.
    if let Ok(hosts) = state.store.list_hosts().await {
        let now = state.clock.now_ms();
        for status in HostStatus::ALL {
            let count =
                hosts.iter().filter(|h| host_status(h, now, state.min_silence) == status).count();
            ::metrics::gauge!(m::HOSTS, "status" => status.as_str()).set(count as f64);
        }
    }
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        handle.render(),
    )
        .into_response()
}
