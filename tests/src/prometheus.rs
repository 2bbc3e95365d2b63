//! A real Prometheus for tests: Debian's `prometheus` binary on a loopback port with a
//! temporary data directory, scraping what the test names; killed on drop. Skipped loudly when
//! absent, unless `VIGIL_REQUIRE_EXTERNAL=1` (as in CI). Also `promtool`, for checks on text
//! the collector serves.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::alertmanager::{external, free_port};

pub const PROMETHEUS_ENV: &str = "VIGIL_TEST_PROMETHEUS";
pub const DEFAULT_PROMETHEUS: &str = "/usr/bin/prometheus";
pub const PROMTOOL_ENV: &str = "VIGIL_TEST_PROMTOOL";
pub const DEFAULT_PROMTOOL: &str = "/usr/bin/promtool";

#[derive(Debug)]
pub struct Prometheus {
    /// `http://127.0.0.1:<port>`
    pub url: String,
    child: Child,
    dir: tempfile::TempDir,
    client: reqwest::Client,
}

impl Prometheus {
    /// Starts Prometheus with `scrape_configs` (YAML, the list's items indented by two spaces)
    /// and waits until it is ready; None (skipped) when the binary is absent.
    pub async fn start(scrape_configs: &str) -> Option<Self> {
        let binary = external("Prometheus", PROMETHEUS_ENV, DEFAULT_PROMETHEUS)?;
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n{scrape_configs}"),
        )
        .expect("write prometheus.yml");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let port = free_port();
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        vigil_tls::install_crypto_provider();
        let client = reqwest::Client::builder().no_proxy().build().expect("HTTP client");
        let prometheus = Self { url: format!("http://127.0.0.1:{port}"), child, dir, client };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ready = prometheus.client.get(format!("{}/-/ready", prometheus.url)).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Some(prometheus);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "Prometheus did not become ready:\n{}",
                prometheus.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// An instant query; returns the `data.result` array, panicking on an error answer.
    pub async fn query(&self, promql: &str) -> Vec<Value> {
        let response = self
            .client
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", promql)])
            .send()
            .await
            .expect("query Prometheus");
        let body: Value = response.json().await.expect("Prometheus answers JSON");
        assert_eq!(body["status"], "success", "query {promql:?}: {body}");
        body["data"]["result"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `promtool`, if present (skipped loudly otherwise, unless required).
pub fn promtool() -> Option<PathBuf> {
    external("promtool", PROMTOOL_ENV, DEFAULT_PROMTOOL)
}
