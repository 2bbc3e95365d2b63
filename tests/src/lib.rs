//! Harness for Vigil's end-to-end tests: finds the real `vigil-collector`, `vigil-agent` and
//! `vigilctl` binaries next to the test executable, starts them on ephemeral loopback ports with
//! temporary state, waits for readiness, and talks to them only through their command lines,
//! the HTTP API (with the collector's bootstrap admin token) and the gRPC protocol over real
//! mutual TLS. Agents are enrolled the way an operator does it. Processes are killed when their
//! handle drops. Third-party peers are real too: [`alertmanager`] runs Alertmanager and
//! [`webhook`] is a recording webhook receiver.

pub mod alertmanager;
pub mod autofailover;
pub mod identity;
pub mod mdstat;
pub mod pgbouncer;
pub mod postgres;
pub mod prometheus;
pub mod webhook;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Path of a workspace binary, built by `cargo test --workspace` beside the test executables.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target profile dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first with `cargo build --workspace --bins` \
         (`cargo test --workspace` does this)",
        path.display()
    );
    path
}

/// A running child process that is killed on drop; its stderr goes to a log file kept for
/// the failure message.
#[derive(Debug)]
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Sends SIGTERM and waits for the exit status (up to 20 s, then SIGKILL).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return self.child.wait().expect("wait after kill");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGSTOP: the process stops where it is (a VM stall, a debugger) until [`Self::resume`].
    pub fn pause(&self) {
        let status = Command::new("kill").args(["-STOP", &self.child.id().to_string()]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -STOP");
    }

    /// SIGCONT after [`Self::pause`].
    pub fn resume(&self) {
        let status = Command::new("kill").args(["-CONT", &self.child.id().to_string()]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -CONT");
    }

    /// SIGKILL: a crash, no goodbye, no flush.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A collector on its embedded store in a temporary data directory.
#[derive(Debug)]
pub struct Collector {
    pub proc: Proc,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub data_dir: PathBuf,
    /// SHA-256 of the collector's CA certificate, from its ready line.
    pub ca_sha256: String,
    /// The bootstrap admin token the collector wrote on first start.
    pub admin_token: String,
}

impl Collector {
    /// Starts a collector on ephemeral loopback ports (or the given ones, for a restart).
    pub fn start(data_dir: &Path, ports: Option<(SocketAddr, SocketAddr)>, extra: &[&str]) -> Self {
        Self::start_with_config(data_dir, ports, "", extra)
    }

    /// [`Self::start`] with `config` as the collector's TOML config file.
    pub fn start_with_config(
        data_dir: &Path,
        ports: Option<(SocketAddr, SocketAddr)>,
        config: &str,
        extra: &[&str],
    ) -> Self {
        Self::spawn(data_dir, ports, config, extra, None, &[])
    }

    /// Another replica of `first` (same config and flags, its own data directory and ports),
    /// holding `first`'s bootstrap admin token as an operator would copy it over.
    pub fn start_replica(first: &Collector, data_dir: &Path, config: &str, extra: &[&str]) -> Self {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().mode(0o700).recursive(true).create(data_dir).expect("data dir");
        write_secret(&data_dir.join("admin.token"), &format!("{}\n", first.admin_token));
        Self::start_with_config(data_dir, None, config, extra)
    }

    /// [`Self::start`] with extra environment variables for the collector process.
    pub fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn(data_dir, None, "", extra, None, env)
    }

    /// [`Self::start_with_config`] under a file-descriptor limit of `nofile`, soft and hard
    /// (set by `prlimit`, which then runs the collector in its place).
    pub fn start_with_nofile(data_dir: &Path, config: &str, nofile: u64) -> Self {
        Self::spawn(data_dir, None, config, &[], Some(nofile), &[])
    }

    fn spawn(
        data_dir: &Path,
        ports: Option<(SocketAddr, SocketAddr)>,
        config: &str,
        extra: &[&str],
        nofile: Option<u64>,
        env: &[(&str, &str)],
    ) -> Self {
        // reqwest's TLS support looks for the process-wide rustls provider.
        vigil_tls::install_crypto_provider();
        let config_text = config;
        let (grpc, http) = ports.unwrap_or((
            "127.0.0.1:0".parse().expect("addr"),
            "127.0.0.1:0".parse().expect("addr"),
        ));
        let log = data_dir.with_extension(format!("collector-{}.log", unique()));
        let stderr = std::fs::File::create(&log).expect("log file");
        // Every key not in `config` at its default, then the flags below.
        let config = data_dir.with_extension("collector.toml");
        std::fs::write(&config, config_text).expect("config file");
        let mut command = match nofile {
            None => Command::new(bin("vigil-collector")),
            Some(n) => {
                let mut prlimit = Command::new("prlimit");
                prlimit.arg(format!("--nofile={n}:{n}")).arg("--").arg(bin("vigil-collector"));
                prlimit
            }
        };
        let mut child = command
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--grpc-listen")
            .arg(grpc.to_string())
            .arg("--http-listen")
            .arg(http.to_string())
            .args(extra)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start vigil-collector");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("vigil-collector ready") {
                    let _ = tx.send(line);
                }
            }
        });
        let proc = Proc { child, log };
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => panic!("collector did not become ready:\n{}", proc.log_text()),
        };
        let field = |name: &str| -> String {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .map(str::to_owned)
                .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
        };
        // A replica started over a database that already has API tokens makes none; it is
        // given its first replica's file (`start_replica`), or has none.
        let admin_token = std::fs::read_to_string(data_dir.join("admin.token"))
            .map(|token| token.trim().to_owned())
            .unwrap_or_default();
        Self {
            grpc: field("grpc").parse().expect("grpc address"),
            http: field("http").parse().expect("http address"),
            ca_sha256: field("ca_sha256"),
            admin_token,
            proc,
            data_dir: data_dir.to_owned(),
        }
    }

    pub fn grpc_url(&self) -> String {
        format!("https://{}", self.grpc)
    }

    /// Creates customer `customer` and its site `site` if missing, then an enrolment token for
    /// that site with `uses` uses, valid for `ttl` (like "1h").
    pub async fn enrollment_token(
        &self,
        customer: &str,
        site: &str,
        uses: u32,
        ttl: &str,
    ) -> String {
        self.post("/api/v1/customers", serde_json::json!({ "name": customer })).await;
        self.post(
            &format!("/api/v1/customers/{customer}/sites"),
            serde_json::json!({ "name": site }),
        )
        .await;
        let (status, body) = self
            .post(
                "/api/v1/enrollment-tokens",
                serde_json::json!({ "customer": customer, "site": site, "uses": uses, "ttl": ttl }),
            )
            .await;
        assert_eq!(status, 200, "creating an enrolment token: {body}");
        body["token"].as_str().expect("token").to_owned()
    }

    /// PUT JSON as the bootstrap admin; returns status and body.
    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.request_as(&self.admin_token, reqwest::Method::PUT, path, Some(body)).await
    }

    /// POST JSON as the bootstrap admin; returns status and body (conflicts are not failures
    /// here, so setup can be repeated).
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.request_as(&self.admin_token, reqwest::Method::POST, path, Some(body)).await
    }

    /// Any request with any token (or none, with an empty token).
    pub async fn request_as(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request =
            reqwest::Client::new().request(method, format!("{}{path}", self.http_url()));
        if !token.is_empty() {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("HTTP request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Runs `vigilctl` against this collector as the bootstrap admin.
    pub fn vigilctl(&self, args: &[&str]) -> Output {
        let server = self.http_url();
        let token_file = self.data_dir.join("admin.token").to_string_lossy().into_owned();
        let mut all = vec!["--server", server.as_str(), "--token-file", token_file.as_str()];
        all.extend_from_slice(args);
        run("vigilctl", &all)
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// GET a path of the HTTP API as JSON, panicking with the body on a non-2xx status.
    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self.get_status(path).await;
        assert!((200..300).contains(&status), "GET {path}: {status}: {body}");
        body
    }

    pub async fn get_status(&self, path: &str) -> (u16, Value) {
        self.request_as(&self.admin_token, reqwest::Method::GET, path, None).await
    }

    pub async fn get_text(&self, path: &str) -> String {
        match self.get_status(path).await.1 {
            Value::String(text) => text,
            other => other.to_string(),
        }
    }

    /// The seqs of `instance` with a receipt on `host`, asserting that none has two.
    pub async fn receipts_once(
        &self,
        host: &str,
        instance: &str,
    ) -> std::collections::BTreeSet<u64> {
        let path = format!("/api/v1/hosts/{host}/receipts?instance={instance}&limit=100000");
        let list: Vec<u64> = self.get(&path).await["receipts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["seq"].as_u64())
            .collect();
        let set: std::collections::BTreeSet<u64> = list.iter().copied().collect();
        assert_eq!(set.len(), list.len(), "a seq of {instance} was stored twice: {list:?}");
        set
    }

    /// The seqs of `instance` that have a receipt on `host`.
    pub async fn receipt_seqs(
        &self,
        host: &str,
        instance: &str,
    ) -> std::collections::BTreeSet<u64> {
        let path = format!("/api/v1/hosts/{host}/receipts?instance={instance}&limit=100000");
        self.get(&path).await["receipts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["seq"].as_u64())
            .collect()
    }

    pub async fn hosts(&self) -> Vec<Value> {
        self.get("/api/v1/hosts").await["hosts"].as_array().cloned().unwrap_or_default()
    }

    /// Polls until `check` returns Some, or panics after `timeout` with the collector's log.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl AsyncFnMut(&Self) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(value) = check(self).await {
                return value;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}\ncollector log:\n{}", self.proc.log_text());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A `vigil-agent` reporting to a collector, with its own state directory.
#[derive(Debug)]
pub struct Agent {
    pub proc: Proc,
    pub state_dir: PathBuf,
}

impl Agent {
    /// Enrols a new agent with a fresh single-use token for `acme/main`, then starts it.
    pub async fn enroll_and_start(collector: &Collector, state_dir: &Path, extra: &[&str]) -> Self {
        let token = collector.enrollment_token("acme", "main", 1, "1h").await;
        let out = Agent::enroll(collector, state_dir, &token);
        assert!(
            out.status.success(),
            "vigil-agent enroll failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Agent::start(&collector.grpc_url(), state_dir, extra)
    }

    /// Runs `vigil-agent enroll` for `state_dir` and returns its output.
    pub fn enroll(collector: &Collector, state_dir: &Path, token: &str) -> Output {
        let config = state_dir.with_extension("agent.toml");
        std::fs::write(&config, "").expect("config file");
        Command::new(bin("vigil-agent"))
            .arg("--config")
            .arg(&config)
            .args(["--collector", &collector.grpc_url()])
            .arg("--state-dir")
            .arg(state_dir)
            .args(["enroll", "--token", token, "--ca-sha256", &collector.ca_sha256])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .expect("run vigil-agent enroll")
    }

    /// Starts an already enrolled agent.
    pub fn start(collector_url: &str, state_dir: &Path, extra: &[&str]) -> Self {
        Self::start_with_env(collector_url, state_dir, extra, &[])
    }

    /// [`Agent::start`] with extra environment variables for the agent process.
    pub fn start_with_env(
        collector_url: &str,
        state_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let log = state_dir.with_extension(format!("agent-{}.log", unique()));
        let stderr = std::fs::File::create(&log).expect("log file");
        let config = state_dir.with_extension("agent.toml");
        std::fs::write(&config, "").expect("config file");
        let child = Command::new(bin("vigil-agent"))
            .arg("--config")
            .arg(&config)
            .args(["--collector", collector_url, "--interval", "1s", "--probe-timeout", "900ms"])
            .args(["--backoff-initial", "100ms", "--backoff-max", "500ms"])
            .arg("--state-dir")
            .arg(state_dir)
            .args(extra)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start vigil-agent");
        Self { proc: Proc { child, log }, state_dir: state_dir.to_owned() }
    }

    /// The HostId the agent enrolled as.
    pub fn host_id(&self) -> String {
        let text = std::fs::read_to_string(self.state_dir.join("tls/identity.json"))
            .expect("identity.json");
        let v: Value = serde_json::from_str(&text).expect("identity json");
        v["host_id"].as_str().expect("host_id").to_owned()
    }

    pub fn instance(&self) -> String {
        std::fs::read_to_string(self.state_dir.join("instance"))
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    }

    pub fn last_seq(&self) -> u64 {
        std::fs::read_to_string(self.state_dir.join("seq"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Reports still waiting in the spool for an acknowledgement: the records in its segments
    /// above the acknowledged seq it keeps (read the way the agent's spool lays them out:
    /// 28-byte headers with the seq at 8 and the body length at 16).
    pub fn spooled(&self) -> usize {
        self.spooled_seqs().len()
    }

    /// The seqs [`Agent::spooled`] counts, in order.
    pub fn spooled_seqs(&self) -> Vec<u64> {
        let spool = self.state_dir.join("spool");
        let acked = std::fs::read_to_string(spool.join("acked"))
            .ok()
            .and_then(|t| {
                let (instance, seq) = t.trim().split_once(' ')?;
                (instance == self.instance()).then(|| seq.parse::<u64>().ok()).flatten()
            })
            .unwrap_or(0);
        let mut seqs = std::collections::BTreeSet::new();
        for entry in std::fs::read_dir(spool.join("v2")).into_iter().flatten().flatten() {
            let Ok(bytes) = std::fs::read(entry.path()) else { continue };
            let mut at = 0;
            while at + 28 <= bytes.len() && bytes[at..at + 4] == *b"VGS\x02" {
                let seq = u64::from_le_bytes(bytes[at + 8..at + 16].try_into().unwrap());
                let len = u32::from_le_bytes(bytes[at + 16..at + 20].try_into().unwrap());
                if seq > acked {
                    seqs.insert(seq);
                }
                at += 28 + len as usize;
            }
        }
        seqs.into_iter().collect()
    }
}

/// Runs a binary to completion and returns its output.
pub fn run(name: &str, args: &[&str]) -> Output {
    Command::new(bin(name))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {name}: {e}"))
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}

/// The resident memory of process `pid` in KiB (VmRSS).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// MemTotal of this machine in bytes, read independently of the agent.
pub fn meminfo_total_bytes() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").expect("/proc/meminfo");
    let line = text.lines().find(|l| l.starts_with("MemTotal:")).expect("MemTotal");
    let kb: u64 = line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("kB");
    kb * 1024
}

/// The single host in the fleet that has reported, once there is one.
pub async fn first_reported_host(collector: &Collector, timeout: Duration) -> Value {
    collector
        .wait_for("a host with a report", timeout, async |c| {
            c.hosts().await.into_iter().find(|h| h["last_seen_unix_ms"].is_i64())
        })
        .await
}

/// Copies the directory tree `from` to `to` (files and folders; what a VM snapshot or a backup
/// of a state directory holds).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for entry in std::fs::read_dir(from).expect("read tree") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

/// A host's timeline events of `kind`, from the host detail.
pub async fn host_events(collector: &Collector, host: &str, kind: &str) -> Vec<Value> {
    collector.get(&format!("/api/v1/hosts/{host}")).await["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["kind"] == kind)
        .cloned()
        .collect()
}

/// A small tmpfs mounted for one test, unmounted when dropped.
pub struct SmallDisk {
    pub path: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` at `path`, or says why it cannot (not root, no mount).
    pub fn mount(path: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Self { path: path.to_owned() })
    }

    /// [`SmallDisk::mount`], or `None` after a loud skip message for `test` when this machine
    /// cannot mount (not root); with `VIGIL_REQUIRE_EXTERNAL=1` that is a failure instead.
    pub fn mount_or_skip(path: &Path, size: &str, test: &str) -> Option<Self> {
        match Self::mount(path, size) {
            Ok(disk) => Some(disk),
            Err(why) => {
                assert!(
                    std::env::var("VIGIL_REQUIRE_EXTERNAL").as_deref() != Ok("1"),
                    "a tmpfs is required here (VIGIL_REQUIRE_EXTERNAL=1) but cannot be mounted: {why}"
                );
                eprintln!("SKIPPED {test}: {why} (mounting a tmpfs needs root)");
                None
            }
        }
    }

    /// Writes zeros into a file until the disk is full.
    pub fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.path.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 4096];
        while file.write_all(&chunk).is_ok() {}
        let _ = file.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Writes a secret file (a webhook secret, a key) readable by its owner only, as the collector
/// demands of every secret it is given.
pub fn write_secret(path: &Path, contents: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}
