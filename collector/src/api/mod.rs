//! The HTTP side of the collector (axum): health and readiness probes, Prometheus `/metrics`,
//! and the operator API under `/api/v1`. Errors leave through [`ApiError`], which takes its
//! status from the shared error-code table, so the API and the gRPC side agree.

pub mod admin;
pub mod auth;
pub mod hosts;
pub mod https;
pub mod incidents;
pub mod listener;
pub mod maintenance;
pub mod notifications;
pub mod sla;
pub mod tasks;

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

use crate::clock::{ManualClock, SharedClock};
use crate::error::{ErrorCode, HasErrorCode};
use crate::maintenance::Maintenance;
use crate::metrics as m;
use crate::status::{HostStatus, host_status};
use crate::store::Store;

#[derive(Clone, Debug)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub clock: SharedClock,
    pub min_silence: Duration,
    pub metrics: Option<PrometheusHandle>,
    /// Serve `/metrics` without a token.
    pub open_metrics: bool,
    /// The collector URL printed in join commands.
    pub join_url: String,
    /// SHA-256 of the CA certificate, printed in join commands.
    pub ca_sha256: String,
    /// The maintenance windows in force (reloaded after each change).
    pub maintenance: Maintenance,
    /// Set only when the collector runs on a test clock.
    pub test_clock: Option<Arc<ManualClock>>,
    /// Names of the configured notification receivers (what contracts may refer to).
    pub receivers: Arc<Vec<String>>,
    /// Per-host series of the hosts streaming to this replica.
    pub host_metrics: crate::exporter::HostMetrics,
    /// True while this replica holds the runner lease: it then exports the fleet series.
    pub holding: Arc<std::sync::atomic::AtomicBool>,
    /// The background tasks' status (`GET /api/v1/tasks`).
    pub tasks: crate::tasks::TaskStatuses,
    /// Runs the revocation poll now: after a revocation, so this replica's streams of the
    /// host end at once.
    pub revocation_poll: crate::tasks::Activator,
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
        .route("/api/v1/hosts/{id}/revoke", post(admin::revoke_host))
        .route("/api/v1/hosts/{id}/move", post(admin::move_host))
        .route("/api/v1/hosts/{id}/replace", post(admin::replace_host))
        .route("/api/v1/customers", get(admin::list_customers).post(admin::create_customer))
        .route("/api/v1/customers/{customer}/sites", post(admin::create_site))
        .route(
            "/api/v1/customers/{customer}/contract",
            get(sla::show_contract).put(sla::set_contract),
        )
        .route("/api/v1/customers/{customer}/sla", get(sla::compliance))
        .route(
            "/api/v1/enrollment-tokens",
            get(admin::list_enrollment_tokens).post(admin::create_enrollment_token),
        )
        .route("/api/v1/api-tokens", get(admin::list_api_tokens).post(admin::create_api_token))
        .route("/api/v1/api-tokens/{id}", delete(admin::revoke_api_token))
        .route("/api/v1/audit", get(admin::audit_log))
        .route("/api/v1/incidents", get(incidents::list))
        .route("/api/v1/incidents/{id}", get(incidents::show))
        .route("/api/v1/incidents/{id}/ack", post(incidents::acknowledge))
        .route("/api/v1/incidents/{id}/assign", post(incidents::assign))
        .route("/api/v1/incidents/{id}/notes", post(incidents::note))
        .route("/api/v1/incidents/{id}/resolve", post(incidents::resolve))
        .route("/api/v1/maintenance", get(maintenance::list).post(maintenance::create))
        .route("/api/v1/maintenance/{id}", delete(maintenance::remove))
        .route("/api/v1/notifications/dead-letters", get(notifications::dead_letters))
        .route("/api/v1/notifications/{id}", delete(notifications::remove))
        .route(
            "/api/v1/test-clock",
            get(maintenance::test_clock).post(maintenance::move_test_clock),
        )
        .route("/api/v1/tasks", get(tasks::list))
        .route("/api/v1/whoami", get(whoami))
        .fallback(not_found)
        .layer(axum::middleware::map_response(json_errors))
        .with_state(state)
}

/// Longest framework error text carried into a JSON error body.
const MAX_REJECTION_TEXT: usize = 1024;

/// Every error answer is the JSON body of docs/api.md, also those no handler wrote: axum's
/// plain-text rejections of a body, path or query string, 405 for a method the route lacks, and
/// limits refused by layers. The status is kept; the code comes from the error table.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, MAX_REJECTION_TEXT).await {
        Ok(bytes) if !bytes.is_empty() => String::from_utf8_lossy(&bytes).trim().to_owned(),
        _ => status.canonical_reason().unwrap_or("error").to_lowercase(),
    };
    let code = ErrorCode::of_http(status);
    let body = json!({ "error": { "code": code.as_str(), "message": text } }).to_string();
    parts.headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// `app` with the API's per-request bounds: a body larger than `max_body_bytes` is refused
/// (by [`Body`], as `invalid_argument`), and a request not answered within `request_timeout`
/// is answered `deadline_exceeded`.
pub fn with_limits(
    app: axum::Router,
    max_body_bytes: usize,
    request_timeout: Duration,
) -> axum::Router {
    app.layer(axum::middleware::from_fn(move |request, next: axum::middleware::Next| {
        answer_within(request_timeout, request, next)
    }))
    .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
}

async fn answer_within(
    limit: Duration,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            ErrorCode::DeadlineExceeded,
            format!(
                "the request was not answered within http.request_timeout ({})",
                humantime::format_duration(limit)
            ),
        )
        .into_response(),
    }
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

async fn whoami(caller: auth::Caller) -> Json<serde_json::Value> {
    Json(json!({
        "id": caller.token_id,
        "name": caller.name,
        "role": caller.role,
        "customer_id": caller.customer_id,
    }))
}

async fn metrics(
    State(state): State<AppState>,
    caller: Result<auth::Caller, ApiError>,
) -> Response {
    if !state.open_metrics {
        // Fleet-wide numbers: a token limited to one customer may not read them.
        if let Err(err) = caller.and_then(|c| c.require_fleet(crate::store::Role::Viewer)) {
            return err.into_response();
        }
    }
    let Some(handle) = state.metrics.as_ref() else {
        return ApiError::new(ErrorCode::Unavailable, "metrics recorder not installed")
            .into_response();
    };
    // Fleet series are computed from the store at scrape time, by the lease holder only, so
    // with several replicas they come from exactly one and nothing drifts between scrapes.
    let holder = state.holding.load(std::sync::atomic::Ordering::Relaxed);
    let now = state.clock.now_ms();
    if holder && let Ok(hosts) = state.store.list_hosts().await {
        for status in HostStatus::ALL {
            let count =
                hosts.iter().filter(|h| host_status(h, now, state.min_silence) == status).count();
            ::metrics::gauge!(m::HOSTS, "status" => status.as_str()).set(count as f64);
        }
    }
    // The collector's own metrics and the fleet first, then the per-host series streamed in
    // pieces rendered off the async threads: ten thousand hosts are tens of megabytes of text,
    // never held at once.
    let mut head = handle.render();
    if holder {
        let fleet = crate::exporter::render_fleet(
            state.store.as_ref(),
            now,
            state.min_silence,
            &state.receivers,
            &mut head,
        )
        .await;
        if let Err(err) = fleet {
            return ApiError::from(err).into_response();
        }
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<axum::body::Bytes, std::io::Error>>(4);
    let _first = tx.try_send(Ok(head.into()));
    let hosts = state.host_metrics.clone();
    tokio::task::spawn_blocking(move || {
        hosts.render_chunked(256 << 10, &mut |chunk| {
            let _gone = tx.blocking_send(Ok(chunk.into()));
        });
    });
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
        .into_response()
}

/// A JSON request body whose rejection is an [`ApiError`] (`invalid_argument` naming what is
/// wrong) instead of axum's plain-text one.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for Body<T>
where
    Json<T>: axum::extract::FromRequest<S, Rejection = axum::extract::rejection::JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::new(
                    ErrorCode::InvalidArgument,
                    "request body larger than http.max_body_bytes",
                ))
            }
            Err(rejection) => Err(ApiError::new(
                ErrorCode::InvalidArgument,
                format!("invalid request body: {}", rejection.body_text()),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body as HttpBody;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn echo(Body(value): Body<serde_json::Value>) -> Json<serde_json::Value> {
        Json(value)
    }

    async fn answer(body: String) -> (u16, serde_json::Value) {
        let app = with_limits(
            axum::Router::new().route("/echo", post(echo)),
            1024,
            Duration::from_secs(30),
        );
        let request = Request::post("/echo")
            .header("content-type", "application/json")
            .body(HttpBody::from(body))
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    #[tokio::test]
    async fn a_request_not_answered_in_time_is_the_json_deadline_error() {
        let never = || std::future::pending::<&'static str>();
        let app = with_limits(
            axum::Router::new().route("/never", get(never)),
            1024,
            Duration::from_millis(10),
        );
        let request = Request::get("/never").body(HttpBody::empty()).unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["error"]["code"], "deadline_exceeded");
        assert_eq!(
            body["error"]["message"],
            "the request was not answered within http.request_timeout (10ms)"
        );
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_with_the_json_error_naming_the_key() {
        let (status, body) = answer(format!("\"{}\"", "x".repeat(2048))).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], "invalid_argument");
        assert_eq!(body["error"]["message"], "request body larger than http.max_body_bytes");
        let (status, body) = answer("\"small\"".into()).await;
        assert_eq!((status, body), (200, json!("small")));
    }
}
