//! PostgreSQL side of the tenancy: customers and sites.

use async_trait::async_trait;
use sqlx::Row;

use super::*;

const SITE_COLUMNS: &str = "s.id, s.customer_id, c.name AS customer, s.name, s.created_at_ms \
     FROM sites s JOIN customers c ON c.id = s.customer_id";

fn site_row(row: &PgRow) -> StoreResult<SiteRow> {
    Ok(SiteRow {
        id: parse_id(&row.try_get::<String, _>("id").map_err(corrupt)?)?,
        customer_id: parse_id(&row.try_get::<String, _>("customer_id").map_err(corrupt)?)?,
        customer: row.try_get("customer").map_err(corrupt)?,
        name: row.try_get("name").map_err(corrupt)?,
        created_at_ms: row.try_get("created_at_ms").map_err(corrupt)?,
    })
}

#[async_trait]
impl TenancyStore for PgStore {
    async fn create_customer(&self, name: &str, now: UnixMs) -> StoreResult<CustomerRow> {
        let mut conn = self.writer().await?;
        let id = CustomerId::new_random();
        let inserted = sqlx::query(
            "INSERT INTO customers (id, name, created_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(id.to_string())
        .bind(name)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?
        .rows_affected();
        if inserted == 0 {
            return Err(StoreError::Conflict(format!("customer {name:?} exists already")));
        }
        Ok(CustomerRow { id, name: name.to_owned(), created_at_ms: now, sites: Vec::new() })
    }

    async fn create_site(&self, customer: &str, name: &str, now: UnixMs) -> StoreResult<SiteRow> {
        let Some(c) = self.find_customer(customer).await? else {
            return Err(StoreError::NotFound(format!("no customer {customer:?}")));
        };
        let mut conn = self.writer().await?;
        let id = SiteId::new_random();
        let inserted = sqlx::query(
            "INSERT INTO sites (id, customer_id, name, created_at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (customer_id, name) DO NOTHING",
        )
        .bind(id.to_string())
        .bind(c.id.to_string())
        .bind(name)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?
        .rows_affected();
        if inserted == 0 {
            return Err(StoreError::Conflict(format!(
                "site {name:?} of customer {customer:?} exists already"
            )));
        }
        Ok(SiteRow {
            id,
            customer_id: c.id,
            customer: c.name,
            name: name.to_owned(),
            created_at_ms: now,
        })
    }

    async fn list_customers(&self) -> StoreResult<Vec<CustomerRow>> {
        let rows = sqlx::query("SELECT id, name, created_at_ms FROM customers ORDER BY name")
            .fetch_all(&self.read)
            .await
            .map_err(unavailable)?;
        let mut customers = Vec::with_capacity(rows.len());
        for row in &rows {
            customers.push(CustomerRow {
                id: parse_id(&row.try_get::<String, _>("id").map_err(corrupt)?)?,
                name: row.try_get("name").map_err(corrupt)?,
                created_at_ms: row.try_get("created_at_ms").map_err(corrupt)?,
                sites: Vec::new(),
            });
        }
        let sites = sqlx::query(&format!("SELECT {SITE_COLUMNS} ORDER BY s.name"))
            .fetch_all(&self.read)
            .await
            .map_err(unavailable)?;
        for row in &sites {
            let site = site_row(row)?;
            if let Some(c) = customers.iter_mut().find(|c| c.id == site.customer_id) {
                c.sites.push(site);
            }
        }
        Ok(customers)
    }

    async fn find_site(&self, customer: &str, site: &str) -> StoreResult<Option<SiteRow>> {
        let row = sqlx::query(&format!("SELECT {SITE_COLUMNS} WHERE c.name = $1 AND s.name = $2"))
            .bind(customer)
            .bind(site)
            .fetch_optional(&self.read)
            .await
            .map_err(unavailable)?;
        row.as_ref().map(site_row).transpose()
    }

    async fn find_customer(&self, name: &str) -> StoreResult<Option<CustomerRow>> {
        Ok(self.list_customers().await?.into_iter().find(|c| c.name == name))
    }

    async fn move_host(&self, host: HostId, site: SiteId) -> StoreResult<()> {
        let mut conn = self.writer().await?;
        let updated = sqlx::query("UPDATE hosts SET site_id = $1 WHERE id = $2")
            .bind(site.to_string())
            .bind(host.to_string())
            .execute(&mut *conn)
            .await
            .map_err(unavailable)?
            .rows_affected();
        if updated == 0 {
            return Err(StoreError::NotFound(format!("no host {host}")));
        }
        Ok(())
    }
}
