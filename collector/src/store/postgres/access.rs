//! PostgreSQL side of operator API tokens and the audit log.

use async_trait::async_trait;
use sqlx::Row;

use super::*;

const API_TOKEN_COLUMNS: &str = "t.id, t.name, t.role, t.customer_id, c.name AS customer, \
     t.created_at_ms, t.created_by, t.revoked_at_ms \
     FROM api_tokens t LEFT JOIN customers c ON c.id = t.customer_id";

fn api_token_row(row: &PgRow) -> StoreResult<ApiTokenRow> {
    let role: String = row.try_get("role").map_err(corrupt)?;
    Ok(ApiTokenRow {
        id: row.try_get("id").map_err(corrupt)?,
        name: row.try_get("name").map_err(corrupt)?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role {role:?}")))?,
        customer_id: row
            .try_get::<Option<String>, _>("customer_id")
            .map_err(corrupt)?
            .map(|id| parse_id(&id))
            .transpose()?,
        customer: row.try_get("customer").map_err(corrupt)?,
        created_at_ms: row.try_get("created_at_ms").map_err(corrupt)?,
        created_by: row.try_get("created_by").map_err(corrupt)?,
        revoked_at_ms: row.try_get("revoked_at_ms").map_err(corrupt)?,
    })
}

#[async_trait]
impl AccessStore for PgStore {
    async fn create_api_token(&self, t: &ApiTokenRecord) -> StoreResult<()> {
        let mut conn = self.writer().await?;
        sqlx::query(
            "INSERT INTO api_tokens \
             (id, name, role, customer_id, secret_sha256, created_at_ms, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&t.id)
        .bind(&t.name)
        .bind(t.role.as_str())
        .bind(t.customer_id.map(|c| c.to_string()))
        .bind(&t.secret_sha256)
        .bind(t.created_at_ms)
        .bind(&t.created_by)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn api_token(&self, secret_sha256: &str) -> StoreResult<Option<ApiTokenRow>> {
        let row = sqlx::query(&format!(
            "SELECT {API_TOKEN_COLUMNS} WHERE t.secret_sha256 = $1 AND t.revoked_at_ms IS NULL"
        ))
        .bind(secret_sha256)
        .fetch_optional(&self.read)
        .await
        .map_err(unavailable)?;
        row.as_ref().map(api_token_row).transpose()
    }

    async fn list_api_tokens(&self) -> StoreResult<Vec<ApiTokenRow>> {
        let rows = sqlx::query(&format!("SELECT {API_TOKEN_COLUMNS} ORDER BY t.created_at_ms"))
            .fetch_all(&self.read)
            .await
            .map_err(unavailable)?;
        rows.iter().map(api_token_row).collect()
    }

    async fn revoke_api_token(&self, id: &str, now: UnixMs) -> StoreResult<bool> {
        let mut conn = self.writer().await?;
        let known: Option<String> = sqlx::query_scalar("SELECT id FROM api_tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(unavailable)?;
        if known.is_none() {
            return Err(StoreError::NotFound(format!("no API token {id}")));
        }
        // One statement: the count of the other live admins and the revocation cannot be
        // separated by another replica's write.
        let updated = sqlx::query(
            "UPDATE api_tokens SET revoked_at_ms = $1 WHERE id = $2 AND revoked_at_ms IS NULL \
             AND NOT (role = 'admin' AND customer_id IS NULL AND NOT EXISTS ( \
                 SELECT 1::BIGINT FROM api_tokens o WHERE o.id <> api_tokens.id AND o.role = 'admin' \
                 AND o.customer_id IS NULL AND o.revoked_at_ms IS NULL))",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?
        .rows_affected();
        if updated > 0 {
            return Ok(true);
        }
        let live: Option<i64> = sqlx::query_scalar(
            "SELECT 1::BIGINT FROM api_tokens WHERE id = $1 AND revoked_at_ms IS NULL",
        )
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(unavailable)?;
        if live.is_some() {
            return Err(StoreError::FailedPrecondition(format!(
                "API token {id} is the last admin token: revoking it would lock every \
                 operator out; create another admin token first (or, on the collector's \
                 machine, `vigil-collector admin-token --data-dir DIR`)"
            )));
        }
        Ok(false)
    }

    async fn count_api_tokens(&self) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_tokens")
            .fetch_one(&self.read)
            .await
            .map_err(unavailable)?;
        Ok(n.max(0) as u64)
    }

    async fn record_audit(&self, e: &AuditEntry) -> StoreResult<()> {
        let mut conn = self.writer().await?;
        sqlx::query(
            "INSERT INTO audit_log (at_ms, actor, action, target, detail, source) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(e.at_ms)
        .bind(&e.actor)
        .bind(&e.action)
        .bind(&e.target)
        .bind(&e.detail)
        .bind(&e.source)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn audit_log(&self, limit: u32) -> StoreResult<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT at_ms, actor, action, target, detail, source FROM audit_log \
             ORDER BY at_ms DESC, id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                Ok(AuditEntry {
                    at_ms: row.try_get("at_ms").map_err(corrupt)?,
                    actor: row.try_get("actor").map_err(corrupt)?,
                    action: row.try_get("action").map_err(corrupt)?,
                    target: row.try_get("target").map_err(corrupt)?,
                    detail: row.try_get("detail").map_err(corrupt)?,
                    source: row.try_get("source").map_err(corrupt)?,
                })
            })
            .collect()
    }
}
