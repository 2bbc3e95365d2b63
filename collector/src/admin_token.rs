//! Admin API tokens made on the collector's own machine rather than through the API: the first
//! one at first start, written to `<data_dir>/admin.token`, and the recovery one that
//! `vigil-collector admin-token` prints when no admin token is left or its secret is lost.
//! Whoever can run this as the service user already owns the store, so it asks for nothing
//! more; every token made here is in the audit log, with the local user that made it.

use crate::clock::UnixMs;
use crate::store::{ApiTokenRecord, AuditEntry, Role, Store, StoreResult};

/// A new admin token's secret and its SHA-256: made first, so a caller can put the secret
/// where it belongs (a file) before the store knows the token.
pub fn generate() -> (String, String) {
    crate::secret::generate(crate::secret::API_PREFIX)
}

/// Stores the fleet-wide admin token `name` whose secret hashes to `secret_sha256` and records
/// it in the audit log as made by `actor` from `source`.
pub async fn create(
    store: &dyn Store,
    name: &str,
    secret_sha256: String,
    actor: &str,
    source: &str,
    now: UnixMs,
) -> StoreResult<()> {
    let record = ApiTokenRecord {
        id: uuid::Uuid::new_v4().to_string(),
        name: name.to_owned(),
        role: Role::Admin,
        customer_id: None,
        secret_sha256,
        created_at_ms: now,
        created_by: actor.to_owned(),
    };
    store.create_api_token(&record).await?;
    let detail = serde_json::json!({ "id": record.id, "role": "admin", "customer": null });
    store
        .record_audit(&AuditEntry {
            at_ms: now,
            actor: actor.to_owned(),
            action: "api_token.create".into(),
            target: name.to_owned(),
            detail: detail.to_string(),
            source: source.to_owned(),
        })
        .await
}

/// Who runs a local command, for the audit log: `local:uid=N`.
pub fn local_source() -> String {
    format!("local:uid={}", rustix::process::getuid().as_raw())
}
