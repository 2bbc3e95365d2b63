//! PostgreSQL side of enrolment: tokens used up in the same transaction that creates the host,
//! certificates, revocation and replacement of hosts.

use async_trait::async_trait;
use sqlx::Row;

use super::*;

impl PgStore {
    async fn insert_certificate(conn: &mut PgConnection, c: &CertificateRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO certificates (fingerprint, host_id, key_sha256, not_before_ms, \
             not_after_ms, issued_at_ms, reason) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&c.fingerprint)
        .bind(c.host_id.to_string())
        .bind(&c.key_sha256)
        .bind(c.not_before_ms)
        .bind(c.not_after_ms)
        .bind(c.issued_at_ms)
        .bind(c.reason)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
        Ok(())
    }
}

#[async_trait]
impl EnrolmentStore for PgStore {
    async fn create_enrollment_token(&self, t: &EnrollmentToken) -> StoreResult<()> {
        let mut conn = self.writer().await?;
        sqlx::query(
            "INSERT INTO enrollment_tokens \
             (id, secret_sha256, site_id, uses_left, expires_at_ms, created_at_ms, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&t.id)
        .bind(&t.secret_sha256)
        .bind(t.site_id.to_string())
        .bind(i64::from(t.uses))
        .bind(t.expires_at_ms)
        .bind(t.created_at_ms)
        .bind(&t.created_by)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn list_enrollment_tokens(&self) -> StoreResult<Vec<EnrollmentTokenRow>> {
        let rows = sqlx::query(
            "SELECT t.id, c.name AS customer, s.name AS site, t.uses_left, t.expires_at_ms, \
             t.created_at_ms, t.created_by FROM enrollment_tokens t \
             JOIN sites s ON s.id = t.site_id JOIN customers c ON c.id = s.customer_id \
             ORDER BY t.created_at_ms",
        )
        .fetch_all(&self.read)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                Ok(EnrollmentTokenRow {
                    id: row.try_get("id").map_err(corrupt)?,
                    customer: row.try_get("customer").map_err(corrupt)?,
                    site: row.try_get("site").map_err(corrupt)?,
                    uses_left: row.try_get::<i64, _>("uses_left").map_err(corrupt)?.max(0) as u32,
                    expires_at_ms: row.try_get("expires_at_ms").map_err(corrupt)?,
                    created_at_ms: row.try_get("created_at_ms").map_err(corrupt)?,
                    created_by: row.try_get("created_by").map_err(corrupt)?,
                })
            })
            .collect()
    }

    async fn enroll_host(
        &self,
        secret_sha256: &str,
        host: &NewHost,
        cert: &CertificateRecord,
        now: UnixMs,
    ) -> StoreResult<Result<HostRow, TokenRefusal>> {
        {
            let mut conn = self.writer().await?;
            let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(unavailable)?;
            let token = sqlx::query(
                "SELECT site_id, uses_left, expires_at_ms FROM enrollment_tokens \
                 WHERE secret_sha256 = $1",
            )
            .bind(secret_sha256)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
            let Some(token) = token else { return Ok(Err(TokenRefusal::Unknown)) };
            let site: String = token.try_get("site_id").map_err(corrupt)?;
            if token.try_get::<i64, _>("expires_at_ms").map_err(corrupt)? <= now {
                return Ok(Err(TokenRefusal::Expired));
            }
            // Conditional decrement: two agents racing for the last use cannot both win.
            let used = sqlx::query(
                "UPDATE enrollment_tokens SET uses_left = uses_left - 1 \
                 WHERE secret_sha256 = $1 AND uses_left > 0",
            )
            .bind(secret_sha256)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?
            .rows_affected();
            if used == 0 {
                return Ok(Err(TokenRefusal::UsedUp));
            }
            sqlx::query(
                "INSERT INTO hosts (id, site_id, hostname, machine_id, created_at_ms) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(host.id.to_string())
            .bind(&site)
            .bind(&host.hostname)
            .bind(&host.machine_id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
            Self::insert_certificate(&mut tx, cert).await?;
            tx.commit().await.map_err(unavailable)?;
        }
        let row = self.get_host(host.id).await?;
        row.map(Ok).ok_or_else(|| StoreError::Corrupt("enrolled host vanished".into()))
    }

    async fn certificate(&self, fingerprint: &str) -> StoreResult<Option<CertificateRow>> {
        let row = sqlx::query(
            "SELECT c.fingerprint, c.host_id, c.key_sha256, c.not_after_ms, h.revoked_at_ms \
             FROM certificates c JOIN hosts h ON h.id = c.host_id WHERE c.fingerprint = $1",
        )
        .bind(fingerprint)
        .fetch_optional(&self.read)
        .await
        .map_err(unavailable)?;
        row.map(|row| {
            Ok(CertificateRow {
                fingerprint: row.try_get("fingerprint").map_err(corrupt)?,
                host_id: parse_id(&row.try_get::<String, _>("host_id").map_err(corrupt)?)?,
                key_sha256: row.try_get("key_sha256").map_err(corrupt)?,
                not_after_ms: row.try_get("not_after_ms").map_err(corrupt)?,
                host_revoked: row
                    .try_get::<Option<i64>, _>("revoked_at_ms")
                    .map_err(corrupt)?
                    .is_some(),
            })
        })
        .transpose()
    }

    async fn add_certificate(&self, cert: &CertificateRecord) -> StoreResult<()> {
        let mut conn = self.writer().await?;
        Self::insert_certificate(&mut conn, cert).await
    }

    async fn revoke_host(&self, host: HostId, now: UnixMs) -> StoreResult<bool> {
        let mut conn = self.writer().await?;
        let exists: Option<Option<i64>> =
            sqlx::query_scalar("SELECT revoked_at_ms FROM hosts WHERE id = $1")
                .bind(host.to_string())
                .fetch_optional(&mut *conn)
                .await
                .map_err(unavailable)?;
        match exists {
            None => Err(StoreError::NotFound(format!("no host {host}"))),
            Some(Some(_)) => Ok(false),
            Some(None) => {
                sqlx::query("UPDATE hosts SET revoked_at_ms = $1 WHERE id = $2")
                    .bind(now)
                    .bind(host.to_string())
                    .execute(&mut *conn)
                    .await
                    .map_err(unavailable)?;
                Ok(true)
            }
        }
    }

    async fn revoked_hosts(&self) -> StoreResult<Vec<HostId>> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM hosts WHERE revoked_at_ms IS NOT NULL")
                .fetch_all(&self.read)
                .await
                .map_err(unavailable)?;
        ids.iter().map(|id| parse_id(id)).collect()
    }

    async fn replace_host(&self, old: HostId, new: HostId, now: UnixMs) -> StoreResult<()> {
        if old == new {
            return Err(StoreError::Conflict("a host cannot replace itself".into()));
        }
        for id in [old, new] {
            if self.get_host(id).await?.is_none() {
                return Err(StoreError::NotFound(format!("no host {id}")));
            }
        }
        let (old, new) = (old.to_string(), new.to_string());
        let mut conn = self.writer().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(unavailable)?;
        let statements = [
            // Receipts and instances: instance UUIDs differ between identities; on the rare
            // overlap the new host's own row wins.
            "UPDATE report_receipts SET host_id = $2 WHERE host_id = $1 AND NOT EXISTS \
             (SELECT 1::BIGINT FROM report_receipts r WHERE r.host_id = $2 \
              AND r.instance = report_receipts.instance AND r.seq = report_receipts.seq)",
            "DELETE FROM report_receipts WHERE host_id = $1",
            "UPDATE agent_instances SET host_id = $2 WHERE host_id = $1 AND NOT EXISTS \
             (SELECT 1::BIGINT FROM agent_instances a WHERE a.host_id = $2 \
              AND a.instance = agent_instances.instance)",
            "DELETE FROM agent_instances WHERE host_id = $1",
            // Roll-ups of the same bucket merge.
            "INSERT INTO rollups_5m \
             (host_id, series, bucket_start_ms, min_value, max_value, sum_value, sample_count) \
             SELECT $2, series, bucket_start_ms, min_value, max_value, sum_value, sample_count \
             FROM rollups_5m WHERE host_id = $1 \
             ON CONFLICT (host_id, series, bucket_start_ms) DO UPDATE SET \
               min_value = CASE WHEN excluded.min_value < rollups_5m.min_value \
                                THEN excluded.min_value ELSE rollups_5m.min_value END, \
               max_value = CASE WHEN excluded.max_value > rollups_5m.max_value \
                                THEN excluded.max_value ELSE rollups_5m.max_value END, \
               sum_value = rollups_5m.sum_value + excluded.sum_value, \
               sample_count = rollups_5m.sample_count + excluded.sample_count",
            "DELETE FROM rollups_5m WHERE host_id = $1",
            "INSERT INTO host_series (host_id, series, first_seen_ms) \
             SELECT $2, series, first_seen_ms FROM host_series WHERE host_id = $1 \
             ON CONFLICT (host_id, series) DO NOTHING",
            "DELETE FROM host_series WHERE host_id = $1",
            // The newer host's latest report stays when it has one.
            "UPDATE latest_reports SET host_id = $2 WHERE host_id = $1 AND NOT EXISTS \
             (SELECT 1::BIGINT FROM latest_reports l WHERE l.host_id = $2)",
            "DELETE FROM latest_reports WHERE host_id = $1",
            "UPDATE host_events SET host_id = $2 WHERE host_id = $1 AND NOT EXISTS \
             (SELECT 1::BIGINT FROM host_events e WHERE e.host_id = $2 \
              AND e.kind = host_events.kind AND e.dedupe_key = host_events.dedupe_key)",
            "DELETE FROM host_events WHERE host_id = $1",
            "UPDATE hosts SET replaced_by = $2, revoked_at_ms = COALESCE(revoked_at_ms, $3) \
             WHERE id = $1",
        ];
        for sql in statements {
            sqlx::query(sql)
                .bind(&old)
                .bind(&new)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(())
    }
}
