//! A PostgreSQL database of its own for one end-to-end test, made in the server that
//! `VIGIL_TEST_DATABASE_URL` names and dropped when the test ends, so tests running at once
//! never see each other's rows. Without that variable a test is skipped with a loud message,
//! unless `VIGIL_REQUIRE_EXTERNAL=1`, where a missing database fails it.

use sqlx::Connection;

/// One test's database.
pub struct TestDatabase {
    admin_url: String,
    /// The database's name.
    pub name: String,
    /// The URL collectors are given (`--database`).
    pub url: String,
}

impl TestDatabase {
    /// None (with a loud message) without `VIGIL_TEST_DATABASE_URL`, unless
    /// `VIGIL_REQUIRE_EXTERNAL=1`, where a missing database fails the test.
    pub async fn create(test: &str) -> Option<Self> {
        let Ok(admin_url) = std::env::var("VIGIL_TEST_DATABASE_URL") else {
            assert!(
                std::env::var("VIGIL_REQUIRE_EXTERNAL").as_deref() != Ok("1"),
                "VIGIL_TEST_DATABASE_URL is not set and VIGIL_REQUIRE_EXTERNAL=1"
            );
            eprintln!(
                "SKIPPED {test}: VIGIL_TEST_DATABASE_URL is not set \
                 (e.g. postgres://postgres@127.0.0.1/test)"
            );
            return None;
        };
        let name = format!("vigil_e2e_{}", rand::random::<u64>());
        let mut conn = sqlx::PgConnection::connect(&admin_url).await.expect("test database");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
        let (base, _) = admin_url.rsplit_once('/').expect("a database in the URL");
        let url = format!("{base}/{name}");
        Some(Self { admin_url, name, url })
    }

    /// The TCP host and port of the server the database is on (loopback when the URL names a
    /// Unix socket directory).
    pub fn server(&self) -> (String, u16) {
        let options: sqlx::postgres::PgConnectOptions = self.url.parse().expect("database URL");
        let host = options.get_host();
        let host = if host.starts_with('/') { "127.0.0.1" } else { host };
        (host.to_owned(), options.get_port())
    }

    /// The rows of `table`.
    pub async fn count(&self, table: &str) -> i64 {
        self.scalar(&format!("SELECT COUNT(*) FROM {table}")).await
    }

    /// The one BIGINT `sql` selects.
    pub async fn scalar(&self, sql: &str) -> i64 {
        let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
    }

    /// Every row `sql` selects, as text columns.
    pub async fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        use sqlx::Row;
        let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
        let rows = sqlx::query(sql).fetch_all(&mut conn).await.unwrap();
        rows.iter()
            .map(|row| {
                (0..row.len()).map(|i| row.try_get::<Option<String>, _>(i).unwrap()).collect()
            })
            .collect()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&url).await {
                    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::query(&drop).execute(&mut conn).await;
                }
            });
        })
        .join();
    }
}
