//! Records of who may do what: customers and sites, enrolment tokens, the certificates issued to
//! hosts, operator API tokens and the audit log. Secrets are never stored, only their SHA-256.

use serde::Serialize;

use crate::clock::UnixMs;
use crate::ids::{CustomerId, HostId, SiteId};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SiteRow {
    pub id: SiteId,
    pub customer_id: CustomerId,
    pub customer: String,
    pub name: String,
    pub created_at_ms: UnixMs,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CustomerRow {
    pub id: CustomerId,
    pub name: String,
    pub created_at_ms: UnixMs,
    pub sites: Vec<SiteRow>,
}

/// A new enrolment token; `secret_sha256` is all that is kept of its secret.
#[derive(Debug, Clone)]
pub struct EnrollmentToken {
    pub id: String,
    pub secret_sha256: String,
    pub site_id: SiteId,
    pub uses: u32,
    pub expires_at_ms: UnixMs,
    pub created_at_ms: UnixMs,
    pub created_by: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EnrollmentTokenRow {
    pub id: String,
    pub customer: String,
    pub site: String,
    pub uses_left: u32,
    pub expires_at_ms: UnixMs,
    pub created_at_ms: UnixMs,
    pub created_by: String,
}

/// Why a token did not admit a host. Deliberately coarse towards the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    Unknown,
    Expired,
    UsedUp,
}

impl TokenRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown token",
            Self::Expired => "token expired",
            Self::UsedUp => "token used up",
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewHost {
    pub id: HostId,
    pub hostname: String,
    pub machine_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRecord {
    pub fingerprint: String,
    pub host_id: HostId,
    pub key_sha256: String,
    pub not_before_ms: UnixMs,
    pub not_after_ms: UnixMs,
    pub issued_at_ms: UnixMs,
    /// `enroll` or `renew`.
    pub reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRow {
    pub fingerprint: String,
    pub host_id: HostId,
    pub key_sha256: String,
    pub not_after_ms: UnixMs,
    pub host_revoked: bool,
}

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
