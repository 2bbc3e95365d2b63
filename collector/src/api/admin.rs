//! Administration through the API: customers and sites, enrolment tokens, operator API tokens,
//! host revocation, moves and replacement, and the audit log. Everything here needs the admin
//! role on a fleet-wide token, and every change is audited.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Caller;
use super::hosts::parse_host;
use super::{ApiError, AppState, Body};
use crate::clock::rfc3339;
use crate::error::ErrorCode;
use crate::secret;
use crate::store::{ApiTokenRecord, EnrollmentToken, Role};

/// Longest customer, site or token name.
const MAX_NAME: usize = 100;

fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            format!("{what} must be 1 to {MAX_NAME} printable characters"),
        ));
    }
    Ok(())
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidArgument, message)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameBody {
    pub name: String,
}

pub async fn list_customers(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let customers: Vec<_> = state
        .store
        .list_customers()
        .await?
        .into_iter()
        .filter(|c| caller.sees_customer(c.id))
        .collect();
    Ok(Json(json!({ "customers": customers })))
}

pub async fn create_customer(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<NameBody>,
) -> Result<Json<Value>, ApiError> {
    caller.require_fleet(Role::Admin)?;
    check_name("customer name", &body.name)?;
    let customer = state.store.create_customer(&body.name, state.clock.now_ms()).await?;
    caller.audit(&state, "customer.create", &body.name, json!({})).await?;
    Ok(Json(json!(customer)))
}

pub async fn create_site(
    State(state): State<AppState>,
    caller: Caller,
    Path(customer): Path<String>,
    Body(body): Body<NameBody>,
) -> Result<Json<Value>, ApiError> {
    caller.require_fleet(Role::Admin)?;
    check_name("site name", &body.name)?;
    let site = state.store.create_site(&customer, &body.name, state.clock.now_ms()).await?;
    caller.audit(&state, "site.create", format!("{customer}/{}", body.name), json!({})).await?;
    Ok(Json(json!(site)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentTokenBody {
    pub customer: String,
    pub site: String,
    /// How many hosts may enrol with it (default 1).
    pub uses: Option<u32>,
    /// How long it is valid, like "1h" (default 1h).
    pub ttl: Option<String>,
}

pub async fn create_enrollment_token(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<EnrollmentTokenBody>,
) -> Result<Json<Value>, ApiError> {
    caller.require_fleet(Role::Admin)?;
    let uses = body.uses.unwrap_or(1);
    if !(1..=10_000).contains(&uses) {
        return Err(invalid("uses must be between 1 and 10000"));
    }
    let ttl = match &body.ttl {
        None => Duration::from_secs(3600),
        Some(text) => humantime::parse_duration(text)
            .map_err(|e| invalid(format!("ttl {text:?} is not a duration like 1h or 30m: {e}")))?,
    };
    if ttl < Duration::from_secs(1) || ttl > Duration::from_secs(30 * 86_400) {
        return Err(invalid("ttl must be between 1s and 30days"));
    }
    let site = state.store.find_site(&body.customer, &body.site).await?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            format!(
                "no site {:?} of customer {:?}; create it with `vigilctl customers add` and \
                 `vigilctl sites add`",
                body.site, body.customer
            ),
        )
    })?;
    let now = state.clock.now_ms();
    let (token, secret_sha256) = secret::generate(secret::ENROLLMENT_PREFIX);
    let record = EnrollmentToken {
        id: uuid::Uuid::new_v4().to_string(),
        secret_sha256,
        site_id: site.id,
        uses,
        expires_at_ms: now + ttl.as_millis() as i64,
        created_at_ms: now,
        created_by: format!("token:{}", caller.name),
    };
    state.store.create_enrollment_token(&record).await?;
    let detail =
        json!({ "id": record.id, "uses": uses, "ttl": vigil_config::duration::format(ttl) });
    caller
        .audit(
            &state,
            "enrollment_token.create",
            format!("{}/{}", site.customer, site.name),
            detail,
        )
        .await?;
    let join = format!(
        "vigil-agent enroll --collector {} --ca-sha256 {} --token {token}",
        state.join_url, state.ca_sha256
    );
    Ok(Json(json!({
        "id": record.id,
        "token": token,
        "customer": site.customer,
        "site": site.name,
        "uses": uses,
        "expires_at": rfc3339(record.expires_at_ms),
        "collector": state.join_url,
        "ca_sha256": state.ca_sha256,
        "join_command": join,
    })))
}

pub async fn list_enrollment_tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require_fleet(Role::Admin)?;
    Ok(Json(json!({ "tokens": state.store.list_enrollment_tokens().await? })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTokenBody {
    pub name: String,
    pub role: String,
    /// Limit the token to this customer's hosts.
    pub customer: Option<String>,
}

pub async fn create_api_token(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<ApiTokenBody>,
) -> Result<Json<Value>, ApiError> {
    caller.require_fleet(Role::Admin)?;
    check_name("token name", &body.name)?;
    let role = Role::parse(&body.role)
        .ok_or_else(|| invalid(format!("role {:?} is not viewer, operator or admin", body.role)))?;
    let customer =
        match &body.customer {
            None => None,
            Some(name) => Some(state.store.find_customer(name).await?.ok_or_else(|| {
                ApiError::new(ErrorCode::NotFound, format!("no customer {name:?}"))
            })?),
        };
    if role == Role::Admin && customer.is_some() {
        return Err(invalid("an admin token cannot be limited to one customer"));
    }
    let (token, secret_sha256) = secret::generate(secret::API_PREFIX);
    let record = ApiTokenRecord {
        id: uuid::Uuid::new_v4().to_string(),
        name: body.name.clone(),
        role,
        customer_id: customer.as_ref().map(|c| c.id),
        secret_sha256,
        created_at_ms: state.clock.now_ms(),
        created_by: format!("token:{}", caller.name),
    };
    state.store.create_api_token(&record).await?;
    let detail = json!({ "id": record.id, "role": role.as_str(), "customer": body.customer });
    caller.audit(&state, "api_token.create", &body.name, detail).await?;
    Ok(Json(json!({
        "id": record.id,
        "name": body.name,
        "role": role,
        "customer": body.customer,
        "token": token,
    })))
}

pub async fn list_api_tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require_fleet(Role::Admin)?;
    Ok(Json(json!({ "tokens": state.store.list_api_tokens().await? })))
}

pub async fn revoke_api_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require_fleet(Role::Admin)?;
    let changed = state.store.revoke_api_token(&id, state.clock.now_ms()).await?;
    caller.audit(&state, "api_token.revoke", &id, json!({ "changed": changed })).await?;
    Ok(Json(json!({ "id": id, "revoked": true, "changed": changed })))
}

pub async fn revoke_host(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require_fleet(Role::Admin)?;
    let host = parse_host(&id)?;
    let changed = state.store.revoke_host(host, state.clock.now_ms()).await?;
    state.revocation_poll.activate();
    caller.audit(&state, "host.revoke", host.to_string(), json!({ "changed": changed })).await?;
    Ok(Json(json!({ "id": host, "revoked": true, "changed": changed })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveBody {
    pub customer: String,
    pub site: String,
}

pub async fn move_host(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<MoveBody>,
) -> Result<Json<Value>, ApiError> {
    caller.require_fleet(Role::Admin)?;
    let host = parse_host(&id)?;
    let site = state.store.find_site(&body.customer, &body.site).await?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            format!("no site {:?} of customer {:?}", body.site, body.customer),
        )
    })?;
    let before = state
        .store
        .get_host(host)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no host {host}")))?;
    state.store.move_host(host, site.id).await?;
    let detail = json!({
        "from": format!("{}/{}", before.customer, before.site),
        "to": format!("{}/{}", site.customer, site.name),
    });
    caller.audit(&state, "host.move", host.to_string(), detail).await?;
    Ok(Json(json!({ "id": host, "customer": site.customer, "site": site.name })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaceBody {
    /// The new identity (HostId) of the re-installed machine.
    pub by: String,
}

pub async fn replace_host(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<ReplaceBody>,
) -> Result<Json<Value>, ApiError> {
    caller.require_fleet(Role::Admin)?;
    let old = parse_host(&id)?;
    let new = parse_host(&body.by)?;
    state.store.replace_host(old, new, state.clock.now_ms()).await?;
    state.revocation_poll.activate();
    caller.audit(&state, "host.replace", old.to_string(), json!({ "by": new })).await?;
    Ok(Json(json!({ "id": old, "replaced_by": new })))
}

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    pub limit: Option<u32>,
}

pub async fn audit_log(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.require_fleet(Role::Admin)?;
    let entries = state.store.audit_log(q.limit.unwrap_or(100).min(10_000)).await?;
    Ok(Json(json!({ "entries": entries })))
}
