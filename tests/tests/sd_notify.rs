//! The systemd notify protocol as the real binaries speak it, without systemd: each test binds
//! a Unix datagram socket of its own, starts the agent or the collector with `NOTIFY_SOCKET`
//! and `WATCHDOG_USEC` pointing at it, and reads what arrives. `READY=1` must come only once
//! the agent's first report is in its spool, and only once the collector's listeners accept
//! connections; `WATCHDOG=1` must keep coming, and stop when the loop that sends it is wedged
//! (the debug-build test hook `VIGIL_TEST_WEDGE_WATCHDOG_AFTER`); `STOPPING=1` comes on SIGTERM.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use vigil_e2e::{Agent, Collector};

/// 400 ms: the daemons ping every 200 ms.
const WATCHDOG_USEC: &str = "400000";

/// The test's end of the notify protocol.
struct NotifySocket {
    socket: UnixDatagram,
    path: String,
}

impl NotifySocket {
    fn bind(dir: &Path) -> Self {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        Self { socket, path: path.to_str().expect("utf-8 path").to_owned() }
    }

    /// The next datagram, or None after `within`.
    fn next(&self, within: Duration) -> Option<String> {
        self.socket.set_read_timeout(Some(within.max(Duration::from_millis(1)))).expect("timeout");
        let mut buf = [0u8; 4096];
        match self.socket.recv(&mut buf) {
            Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => None,
        }
    }

    /// Messages until one satisfies `done` (returned last), failing after `within`.
    fn until(&self, within: Duration, done: impl Fn(&str) -> bool, what: &str) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Some(message) = self.next(left) else { break };
            let stop = done(&message);
            seen.push(message);
            if stop {
                return seen;
            }
        }
        panic!("no {what} within {within:?}; received {seen:?}");
    }

    /// Every message that arrives during `span`.
    fn during(&self, span: Duration) -> Vec<String> {
        let deadline = Instant::now() + span;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if let Some(message) = self.next(left) {
                seen.push(message);
            }
        }
        seen
    }

    fn env(&self) -> [(&str, &str); 2] {
        [("NOTIFY_SOCKET", self.path.as_str()), ("WATCHDOG_USEC", WATCHDOG_USEC)]
    }
}

fn is_ready(m: &str) -> bool {
    m.lines().any(|l| l == "READY=1")
}

fn is_stopping(m: &str) -> bool {
    m.lines().any(|l| l == "STOPPING=1")
}

fn watchdogs(messages: &[String]) -> usize {
    messages.iter().filter(|m| m.as_str() == "WATCHDOG=1").count()
}

fn status_of(m: &str) -> Option<&str> {
    m.lines().find_map(|l| l.strip_prefix("STATUS="))
}

/// An enrolled agent state directory (enrolled against `collector`).
async fn enrolled(collector: &Collector, dir: &Path) -> std::path::PathBuf {
    let state = dir.join("agent");
    let token = collector.enrollment_token("acme", "main", 1, "1h").await;
    let out = Agent::enroll(collector, &state, &token);
    assert!(out.status.success(), "enroll: {}", String::from_utf8_lossy(&out.stderr));
    let told = String::from_utf8_lossy(&out.stdout);
    assert!(
        told.contains("next:") && told.contains("systemctl"),
        "enroll says what is next: {told}"
    );
    state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_is_ready_only_with_a_spooled_report_feeds_the_watchdog_and_says_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let collector = Collector::start(&dir.path().join("collector"), None, &[]);
    let state = enrolled(&collector, dir.path()).await;
    let notify = NotifySocket::bind(dir.path());

    // A collector that is not there: nothing is ever acknowledged, so the spool at READY time
    // shows exactly what was spooled before it.
    let nowhere = "https://127.0.0.1:1";
    let mut agent = Agent::start_with_env(nowhere, &state, &[], &notify.env());
    let before = notify.until(Duration::from_secs(30), is_ready, "READY=1 from the agent");
    let spooled = agent.spooled_seqs();
    assert!(spooled.contains(&1), "READY=1 came before report 1 was spooled (spool {spooled:?})");
    assert!(
        before[..before.len() - 1].iter().all(|m| m == "WATCHDOG=1"),
        "only watchdog pings may come before READY: {before:?}"
    );
    let ready = before.last().unwrap();
    let status = status_of(ready).expect("READY carries a status");
    assert!(status.starts_with(&format!("waiting for collector {nowhere}, ")), "{status}");
    assert!(status.ends_with(" spooled"), "{status}");

    let after = notify.during(Duration::from_secs(3));
    let pings = watchdogs(&after);
    println!("agent: {pings} watchdog pings in 3 s at WATCHDOG_USEC={WATCHDOG_USEC}");
    assert!(pings >= 8, "the agent stopped feeding the watchdog: {after:?}");
    let statuses: Vec<&str> = after.iter().filter_map(|m| status_of(m)).collect();
    assert!(
        statuses.iter().any(|s| s.starts_with("waiting for collector")),
        "a status follows the growing spool: {after:?}"
    );
    assert!(statuses.len() <= 6, "a status per report at most, not per loop turn: {statuses:?}");

    let exit = {
        let pid = agent.proc.child.id().to_string();
        std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let stop = notify.until(Duration::from_secs(10), is_stopping, "STOPPING=1");
        assert!(status_of(stop.last().unwrap()).is_some_and(|s| s.starts_with("stopping")));
        agent.proc.terminate()
    };
    assert!(exit.success(), "agent exit after SIGTERM: {exit:?}\n{}", agent.proc.log_text());

    // With the collector there, the status says the agent streams to it.
    let again = dir.path().join("again");
    std::fs::create_dir_all(&again).unwrap();
    let notify = NotifySocket::bind(&again);
    let mut agent = Agent::start_with_env(&collector.grpc_url(), &state, &[], &notify.env());
    let streaming = format!("streaming to {}, ", collector.grpc_url());
    notify.until(
        Duration::from_secs(30),
        |m| status_of(m).is_some_and(|s| s.starts_with(&streaming)),
        "a streaming status",
    );
    agent.proc.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_watchdog_stops_when_its_report_loop_is_wedged() {
    let dir = tempfile::tempdir().unwrap();
    let collector = Collector::start(&dir.path().join("collector"), None, &[]);
    let state = enrolled(&collector, dir.path()).await;
    let notify = NotifySocket::bind(dir.path());
    let [socket, usec] = notify.env();
    let env = [socket, usec, ("VIGIL_TEST_WEDGE_WATCHDOG_AFTER", "6")];
    let mut agent = Agent::start_with_env(&collector.grpc_url(), &state, &[], &env);
    notify.until(Duration::from_secs(30), is_ready, "READY=1 from the agent");
    let seen = notify.during(Duration::from_secs(4));
    let pings = watchdogs(&seen);
    assert!(pings <= 5, "the hook wedges the 6th ping: {seen:?}");
    // Wedged means wedged: nothing at all arrives any more (no status, no ping).
    let later = notify.during(Duration::from_secs(2));
    assert!(later.is_empty(), "a wedged loop still notified: {later:?}");
    assert!(
        agent.proc.log_text().contains("test hook wedging the watchdog loop"),
        "{}",
        agent.proc.log_text()
    );
    agent.proc.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_is_ready_with_its_listeners_bound_and_feeds_the_watchdog() {
    let dir = tempfile::tempdir().unwrap();
    let notify = NotifySocket::bind(dir.path());
    let mut collector =
        Collector::start_with_env(&dir.path().join("collector"), &[], &notify.env());
    let before = notify.until(Duration::from_secs(30), is_ready, "READY=1 from the collector");
    let status = status_of(before.last().unwrap()).expect("READY carries a status").to_owned();
    // The addresses READY names accept connections as soon as it arrives.
    let grpc = status
        .strip_prefix("serving agents on ")
        .and_then(|s| s.split(',').next())
        .unwrap_or_else(|| panic!("{status}"));
    let http = status
        .split("API on ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .unwrap_or_else(|| panic!("{status}"));
    assert_eq!(grpc, collector.grpc.to_string());
    assert_eq!(http, collector.http.to_string());
    std::net::TcpStream::connect(grpc).expect("gRPC listener bound at READY");
    std::net::TcpStream::connect(http).expect("HTTP listener bound at READY");
    assert!(status.ends_with("0 agents connected"), "{status}");

    let state = enrolled(&collector, dir.path()).await;
    let mut agent = Agent::start(&collector.grpc_url(), &state, &[]);
    let seen = notify.until(
        Duration::from_secs(30),
        |m| status_of(m) == Some("1 agent connected"),
        "the connected agent in the status",
    );
    println!("collector: {} watchdog pings before the agent showed", watchdogs(&seen));
    let pings = watchdogs(&notify.during(Duration::from_secs(3)));
    assert!(pings >= 8, "the collector stopped feeding the watchdog ({pings} in 3 s)");

    agent.proc.terminate();
    let pid = collector.proc.child.id().to_string();
    std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    notify.until(Duration::from_secs(20), is_stopping, "STOPPING=1 from the collector");
    let exit = collector.proc.terminate();
    assert!(exit.success(), "collector exit after SIGTERM: {exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_watchdog_stops_when_its_loop_is_wedged() {
    let dir = tempfile::tempdir().unwrap();
    let notify = NotifySocket::bind(dir.path());
    let [socket, usec] = notify.env();
    let env = [socket, usec, ("VIGIL_TEST_WEDGE_WATCHDOG_AFTER", "4")];
    let collector = Collector::start_with_env(&dir.path().join("collector"), &[], &env);
    notify.until(Duration::from_secs(30), is_ready, "READY=1 from the collector");
    let seen = notify.during(Duration::from_secs(3));
    assert!(watchdogs(&seen) <= 3, "the hook wedges the 4th ping: {seen:?}");
    let later = notify.during(Duration::from_secs(2));
    assert_eq!(watchdogs(&later), 0, "a wedged watchdog loop still pinged: {later:?}");
    assert!(collector.proc.log_text().contains("test hook wedging the watchdog loop"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unenrolled_agent_under_systemd_waits_says_how_to_enrol_and_starts_once_enrolled() {
    let dir = tempfile::tempdir().unwrap();
    let collector = Collector::start(&dir.path().join("collector"), None, &[]);
    let state = dir.path().join("agent");
    let notify = NotifySocket::bind(dir.path());
    let mut agent = Agent::start_with_env(
        &collector.grpc_url(),
        &state,
        &["--wait-for-enrolment"],
        &notify.env(),
    );
    let ready = notify.until(Duration::from_secs(30), is_ready, "READY=1 while waiting");
    let status = status_of(ready.last().unwrap()).unwrap().to_owned();
    assert!(status.starts_with("waiting for enrolment: run `vigil-agent enroll"), "{status}");
    // Waiting quietly: still running, watchdog fed, the advice logged once.
    let waiting = notify.during(Duration::from_secs(2));
    assert!(watchdogs(&waiting) >= 5, "{waiting:?}");
    assert!(agent.proc.child.try_wait().unwrap().is_none(), "{}", agent.proc.log_text());
    assert_eq!(
        agent.proc.log_text().matches("not enrolled").count(),
        1,
        "{}",
        agent.proc.log_text()
    );

    // What an operator edits while the agent waits (its collector, say) applies once it is
    // enrolled: the config is read again. A key this release does not know shows it, as the
    // warning it is read with.
    // (`Agent::enroll` would write the config afresh, so enrol by hand here.)
    let config = state.with_extension("agent.toml");
    std::fs::write(&config, "edited_while_waiting = 1\n").unwrap();
    let token = collector.enrollment_token("acme", "main", 1, "1h").await;
    let out = std::process::Command::new(vigil_e2e::bin("vigil-agent"))
        .arg("--config")
        .arg(&config)
        .args(["--collector", &collector.grpc_url()])
        .arg("--state-dir")
        .arg(&state)
        .args(["enroll", "--token", &token, "--ca-sha256", &collector.ca_sha256])
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "enroll: {}", String::from_utf8_lossy(&out.stderr));
    let streaming = format!("streaming to {}, ", collector.grpc_url());
    notify.until(
        Duration::from_secs(40),
        |m| status_of(m).is_some_and(|s| s.starts_with(&streaming)),
        "streaming after enrolment, without a restart",
    );
    assert!(agent.last_seq() >= 1);
    let log = agent.proc.log_text();
    assert!(log.contains("edited_while_waiting"), "the config was not read again: {log}");
    agent.proc.terminate();
}
