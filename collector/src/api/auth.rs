//! Who is calling the operator API, and what they may do.
//!
//! Every request under `/api/v1` (and `/metrics` unless `http.open_metrics`) carries
//! `Authorization: Bearer vgo_…`; the token's SHA-256 is looked up in the store, so tokens work
//! on every replica and a revoked one stops at once. A token has a [`Role`] (viewer ⊂ operator ⊂
//! admin) and may be limited to one customer, in which case it sees that customer's hosts only
//! and nothing fleet-wide. Handlers state what they need with [`Caller::require`], look things
//! up with [`Caller::customer`] and [`Caller::host`] (which answer for another customer's thing
//! exactly as for one that does not exist, so a scoped token learns nothing by probing), filter
//! lists with [`Caller::sees`], and write changes to the audit log with [`Caller::audit`].

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use serde_json::Value;

use super::{ApiError, AppState};
use crate::error::ErrorCode;
use crate::events::ApiTokenRefused;
use crate::ids::CustomerId;
use crate::sanitize::{for_log, for_log_text};
use crate::store::{AuditEntry, CustomerRow, HostRow, Role};

#[derive(Debug, Clone)]
pub struct Caller {
    pub token_id: String,
    pub name: String,
    pub role: Role,
    pub customer_id: Option<CustomerId>,
    pub source: String,
}

impl Caller {
    /// Refuses with 403 unless the token's role includes `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            return Ok(());
        }
        Err(ApiError::new(
            ErrorCode::PermissionDenied,
            format!(
                "this needs the {} role; token {:?} is {}",
                role.as_str(),
                self.name,
                self.role.as_str()
            ),
        ))
    }

    /// Refuses with 403 unless the token is fleet-wide (not limited to one customer).
    pub fn require_fleet(&self, role: Role) -> Result<(), ApiError> {
        self.require(role)?;
        if self.customer_id.is_some() {
            return Err(ApiError::new(
                ErrorCode::PermissionDenied,
                format!("token {:?} is limited to one customer", self.name),
            ));
        }
        Ok(())
    }

    pub fn sees(&self, host: &HostRow) -> bool {
        self.sees_customer(host.customer_id)
    }

    pub fn sees_customer(&self, customer: CustomerId) -> bool {
        self.customer_id.is_none_or(|c| c == customer)
    }

    /// The customer named `name`, if it exists and this caller may see it. Another customer's
    /// name gets the very answer a name that does not exist gets.
    pub async fn customer(&self, state: &AppState, name: &str) -> Result<CustomerRow, ApiError> {
        state
            .store
            .find_customer(name)
            .await?
            .filter(|c| self.sees_customer(c.id))
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no customer {name:?}")))
    }

    /// The host with id `id`, if it exists and this caller may see it; the same 404 either way.
    pub async fn host(&self, state: &AppState, id: &str) -> Result<HostRow, ApiError> {
        let id = super::hosts::parse_host(id)?;
        state
            .store
            .get_host(id)
            .await?
            .filter(|h| self.sees(h))
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no host {id}")))
    }

    /// Appends a change to the audit log. A change whose audit entry cannot be written fails.
    pub async fn audit(
        &self,
        state: &AppState,
        action: &str,
        target: impl Into<String>,
        detail: Value,
    ) -> Result<(), ApiError> {
        let entry = AuditEntry {
            at_ms: state.clock.now_ms(),
            actor: format!("token:{}", self.name),
            action: action.to_owned(),
            target: target.into(),
            detail: detail.to_string(),
            source: self.source.clone(),
        };
        tracing::info!(actor = %for_log(&entry.actor), action, target = %for_log(&entry.target), source = %entry.source, detail = %for_log_text(&entry.detail), "audit");
        state.store.record_audit(&entry).await?;
        Ok(())
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
        let source = peer.map(|p| p.to_string()).unwrap_or_else(|| "unknown".into());
        let refused = |reason| ApiTokenRefused { source: peer, reason }.emit(state.clock.now_ms());
        let Some(secret) = bearer(parts) else {
            refused("missing_token");
            return Err(ApiError::new(
                ErrorCode::Unauthenticated,
                "missing `Authorization: Bearer <token>` (see `vigilctl --help` for --token)",
            ));
        };
        let Some(token) = state.store.api_token(&crate::secret::sha256(secret)).await? else {
            refused("unknown_token");
            return Err(ApiError::new(ErrorCode::Unauthenticated, "unknown or revoked token"));
        };
        Ok(Caller {
            token_id: token.id,
            name: token.name,
            role: token.role,
            customer_id: token.customer_id,
            source,
        })
    }
}
