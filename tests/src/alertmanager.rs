//! A real Prometheus Alertmanager for tests: the `prometheus-alertmanager` binary (Debian's
//! package) on a loopback port, clustering off, its state and config in a temporary
//! directory, routing everything to a receiver "null" that notifies nobody; killed on drop.
//! When the binary is absent the test is skipped loudly, unless `VIGIL_REQUIRE_EXTERNAL=1`
//! (as in CI), which makes it a failure.

use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// Path of the Alertmanager binary; unset means [`DEFAULT_ALERTMANAGER`] when it exists.
pub const ALERTMANAGER_ENV: &str = "VIGIL_TEST_ALERTMANAGER";
pub const DEFAULT_ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";
/// Set to `1` (as CI does) to make a missing external program a failure, not a skip.
pub const REQUIRE_EXTERNAL_ENV: &str = "VIGIL_REQUIRE_EXTERNAL";

/// How long Alertmanager may take to become ready.
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = StdListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// Milliseconds of an RFC 3339 timestamp as Alertmanager writes it.
pub fn parse_time(value: &Value) -> i64 {
    let text = value.as_str().unwrap_or_else(|| panic!("not a timestamp: {value}"));
    let time = humantime::parse_rfc3339(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    time.duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_millis() as i64
}

fn client() -> reqwest::Client {
    vigil_tls::install_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .expect("HTTP client")
}

/// Whether to run a test that needs the external program `what`: `Some(path)` if it is there;
/// `None` after a loud "SKIPPED" if not, or a panic when [`REQUIRE_EXTERNAL_ENV`] is `1`.
pub fn external(what: &str, env: &str, default: &str) -> Option<PathBuf> {
    let path = match std::env::var_os(env) {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(path.is_file(), "{env}={} does not exist", path.display());
            return Some(path);
        }
        None => PathBuf::from(default),
    };
    if path.is_file() {
        return Some(path);
    }
    if std::env::var(REQUIRE_EXTERNAL_ENV).as_deref() == Ok("1") {
        panic!("{what} not found at {default} and {env} is unset, but {REQUIRE_EXTERNAL_ENV}=1");
    }
    eprintln!(
        "SKIPPED: {what} not found at {default}; install its Debian package or set {env} (and \
         {REQUIRE_EXTERNAL_ENV}=1 to make this a failure)"
    );
    None
}

/// A real Alertmanager on `127.0.0.1:<ephemeral>`, clustering off, its state and config in a
/// temporary directory, routing everything to a receiver "null" that notifies nobody. Killed on
/// drop.
#[derive(Debug)]
pub struct Alertmanager {
    /// `http://127.0.0.1:<port>`
    pub url: String,
    child: Child,
    client: reqwest::Client,
    dir: tempfile::TempDir,
}

impl Alertmanager {
    /// Starts one and waits for `/-/ready`; `None` (skipped) when the binary is absent.
    pub async fn start() -> Option<Self> {
        let binary = external("Alertmanager", ALERTMANAGER_ENV, DEFAULT_ALERTMANAGER)?;
        let mut last_log = String::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("temporary directory");
            let config = dir.path().join("am.yml");
            std::fs::write(
                &config,
                "route:\n  receiver: \"null\"\nreceivers:\n  - name: \"null\"\n",
            )
            .expect("write am.yml");
            let log = std::fs::File::create(dir.path().join("am.log")).expect("create am.log");
            let port = free_port();
            let child = Command::new(&binary)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.path={}", dir.path().join("data").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--cluster.listen-address=")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
            let mut am =
                Self { url: format!("http://127.0.0.1:{port}"), child, client: client(), dir };
            match am.wait_ready().await {
                Ok(()) => return Some(am),
                Err(log) if log.contains("address already in use") => last_log = log,
                Err(log) => panic!("Alertmanager did not become ready:\n{log}"),
            }
        }
        panic!("Alertmanager found no free port in 5 tries:\n{last_log}");
    }

    /// Polls `/-/ready`; on failure returns Alertmanager's log.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + STARTUP_DEADLINE;
        let ready = format!("{}/-/ready", self.url);
        loop {
            if let Some(status) = self.child.try_wait().expect("poll Alertmanager") {
                return Err(format!("exited with {status}\n{}", self.log()));
            }
            if let Ok(response) = self.client.get(&ready).send().await
                && response.status() == reqwest::StatusCode::OK
            {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!("not ready after {STARTUP_DEADLINE:?}\n{}", self.log()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What Alertmanager logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("am.log")).unwrap_or_default()
    }

    /// `GET /api/v2/alerts` with these label matchers (e.g. `incident="INC-000042"`).
    pub async fn alerts(&self, filters: &[&str]) -> Vec<Value> {
        let mut url = reqwest::Url::parse(&format!("{}/api/v2/alerts", self.url)).expect("URL");
        for filter in filters {
            url.query_pairs_mut().append_pair("filter", filter);
        }
        self.get_array(url).await
    }

    /// `GET /api/v2/alerts/groups`.
    pub async fn groups(&self) -> Vec<Value> {
        let url = reqwest::Url::parse(&format!("{}/api/v2/alerts/groups", self.url)).expect("URL");
        self.get_array(url).await
    }

    async fn get_array(&self, url: reqwest::Url) -> Vec<Value> {
        let response = self.client.get(url.clone()).send().await.expect("GET from Alertmanager");
        let status = response.status();
        let text = response.text().await.expect("Alertmanager's answer");
        assert!(status.is_success(), "GET {url}: HTTP {status}: {text}");
        match serde_json::from_str(&text) {
            Ok(Value::Array(items)) => items,
            _ => panic!("GET {url}: not a JSON array: {text}"),
        }
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_external_program_is_skipped_unless_required() {
        let env = "VIGIL_TEST_NO_SUCH_PROGRAM";
        let lookup = || external("no such program", env, "/nonexistent/vigil-no-such-program");
        if std::env::var(REQUIRE_EXTERNAL_ENV).as_deref() == Ok("1") {
            assert!(std::panic::catch_unwind(lookup).is_err());
        } else {
            assert_eq!(lookup(), None);
        }
    }
}
