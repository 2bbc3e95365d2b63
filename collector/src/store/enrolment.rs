//! Records of enrolment: one-time tokens, the hosts they create and the certificates issued to
//! hosts. Secrets are never stored, only their SHA-256.

use async_trait::async_trait;
use serde::Serialize;

use super::{HostRow, StoreResult};
use crate::clock::UnixMs;
use crate::ids::{HostId, SiteId};

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

/// Enrolment tokens, the hosts they create, the certificates issued to hosts, revocation and replacement.
#[async_trait]
pub trait EnrolmentStore: Send + Sync {
    async fn create_enrollment_token(&self, token: &EnrollmentToken) -> StoreResult<()>;

    async fn list_enrollment_tokens(&self) -> StoreResult<Vec<EnrollmentTokenRow>>;

    /// In one transaction: checks and uses up one use of the token whose secret hashes to
    /// `secret_sha256`, creates the host in the token's site and records its first certificate.
    /// A refused token changes nothing.
    async fn enroll_host(
        &self,
        secret_sha256: &str,
        host: &NewHost,
        cert: &CertificateRecord,
        now: UnixMs,
    ) -> StoreResult<Result<HostRow, TokenRefusal>>;

    /// The certificate with this fingerprint, with its host's revocation state.
    async fn certificate(&self, fingerprint: &str) -> StoreResult<Option<CertificateRow>>;

    async fn add_certificate(&self, cert: &CertificateRecord) -> StoreResult<()>;

    /// Revokes a host: its certificates stop working. Returns false when it was revoked already.
    async fn revoke_host(&self, host: HostId, now: UnixMs) -> StoreResult<bool>;

    /// Every revoked host (what each replica polls to cut off open streams).
    async fn revoked_hosts(&self) -> StoreResult<Vec<HostId>>;

    /// Hands `old`'s history (receipts, instances, roll-ups, latest report, events) to `new` and
    /// revokes `old`, which keeps a pointer to `new`.
    async fn replace_host(&self, old: HostId, new: HostId, now: UnixMs) -> StoreResult<()>;
}
