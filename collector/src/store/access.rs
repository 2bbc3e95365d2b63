//! Records of who may do what through the API: operator API tokens with their roles, and the
//! audit log. Secrets are never stored, only their SHA-256.

use async_trait::async_trait;
use serde::Serialize;

use super::StoreResult;
use crate::clock::UnixMs;
use crate::ids::CustomerId;

/// What an operator API token may do. Each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read hosts, readings and (later) incidents.
    Viewer,
    /// Also work incidents and maintenance windows.
    Operator,
    /// Also tokens, enrolment, revocation, customers and the audit log.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "viewer" => Some(Self::Viewer),
            "operator" => Some(Self::Operator),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApiTokenRecord {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub customer_id: Option<CustomerId>,
    pub secret_sha256: String,
    pub created_at_ms: UnixMs,
    pub created_by: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ApiTokenRow {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub customer_id: Option<CustomerId>,
    pub customer: Option<String>,
    pub created_at_ms: UnixMs,
    pub created_by: String,
    pub revoked_at_ms: Option<UnixMs>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditEntry {
    pub at_ms: UnixMs,
    /// `token:<name>` of the API token that acted, or `local:<user>` for the collector's own CLI.
    pub actor: String,
    pub action: String,
    pub target: String,
    /// JSON object with the parameters of the change (never a secret).
    pub detail: String,
    /// Remote address of the request.
    pub source: String,
}

/// Operator API tokens and the audit log.
#[async_trait]
pub trait AccessStore: Send + Sync {
    async fn create_api_token(&self, token: &ApiTokenRecord) -> StoreResult<()>;

    /// The live (not revoked) token whose secret hashes to `secret_sha256`.
    async fn api_token(&self, secret_sha256: &str) -> StoreResult<Option<ApiTokenRow>>;

    async fn list_api_tokens(&self) -> StoreResult<Vec<ApiTokenRow>>;

    /// Revokes the token (`Ok(false)` when it was revoked already). Refuses with
    /// [`StoreError::FailedPrecondition`] to revoke the last live fleet-wide admin token, in
    /// the same write as the revocation, so two concurrent revocations cannot both pass.
    async fn revoke_api_token(&self, id: &str, now: UnixMs) -> StoreResult<bool>;

    async fn count_api_tokens(&self) -> StoreResult<u64>;

    async fn record_audit(&self, entry: &AuditEntry) -> StoreResult<()>;

    /// Newest first.
    async fn audit_log(&self, limit: u32) -> StoreResult<Vec<AuditEntry>>;
}
