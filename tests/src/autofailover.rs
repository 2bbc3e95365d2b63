//! A real pg_auto_failover formation for end-to-end tests: a monitor, a primary and a
//! secondary (synchronous replication), each a PostgreSQL of its own on a loopback port, all in
//! one temporary directory, run by `pg_autoctl` (as the `postgres` user when the test runs as
//! root, since PostgreSQL refuses root). Everything is killed on drop.
//!
//! `pg_autoctl` comes from `VIGIL_TEST_PG_AUTOCTL`, else `/usr/bin/pg_autoctl` (Debian's
//! pg-auto-failover-cli with postgresql-15-auto-failover); a test without it is skipped loudly,
//! or fails under `VIGIL_REQUIRE_EXTERNAL=1`.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::alertmanager::{external, free_port};

/// One node of the formation: its data directory, port and `pg_autoctl run` process.
#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub pgdata: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

#[derive(Debug)]
pub struct Formation {
    pg_autoctl: PathBuf,
    pg_ctl: PathBuf,
    dir: tempfile::TempDir,
    monitor: Node,
    pub nodes: Vec<Node>,
    as_postgres: bool,
}

/// The database the formation serves.
pub const DATABASE: &str = "vigil";

impl Formation {
    /// A monitor and two nodes, waited for until one is primary and the other secondary;
    /// `None` (skipped) without pg_autoctl.
    pub fn start() -> Option<Self> {
        let pg_autoctl = external("pg_autoctl", "VIGIL_TEST_PG_AUTOCTL", "/usr/bin/pg_autoctl")?;
        let pg_ctl = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|version| version.path().join("bin/pg_ctl"))
            .find(|path| path.is_file())
            .expect("pg_ctl of the PostgreSQL server pg_auto_failover runs");
        let dir = tempfile::tempdir().expect("temporary directory");
        let as_postgres = rustix::process::geteuid().is_root();
        if as_postgres {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            let chown = Command::new("chown").arg("postgres:postgres").arg(dir.path()).status();
            assert!(chown.is_ok_and(|s| s.success()), "chown the formation's directory");
        }
        let node = |name: &str| Node {
            name: name.to_owned(),
            pgdata: dir.path().join(name),
            port: free_port(),
            child: None,
        };
        let mut formation = Self {
            monitor: node("monitor"),
            nodes: vec![node("node_a"), node("node_b")],
            pg_autoctl,
            pg_ctl,
            dir,
            as_postgres,
        };
        formation.start_monitor();
        for index in 0..formation.nodes.len() {
            formation.start_node(index);
            let want = if index == 0 { "primary|wait_primary|single" } else { "secondary" };
            formation.wait_for_state(index, want, Duration::from_secs(120));
        }
        formation.wait_for_state(0, "primary", Duration::from_secs(60));
        Some(formation)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&self.pg_autoctl);
            c
        } else {
            Command::new(&self.pg_autoctl)
        };
        command.args(args).env("PG_AUTOCTL_DEBUG", "0").stdin(Stdio::null());
        command
    }

    fn log(&self, name: &str) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{name}.log")))
            .expect("log file")
    }

    /// What `name`'s log holds (its creation and its runs).
    pub fn log_text(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    fn monitor_url(&self) -> String {
        format!(
            "postgres://autoctl_node@127.0.0.1:{}/pg_auto_failover?sslmode=disable",
            self.monitor.port
        )
    }

    fn start_monitor(&mut self) {
        let (pgdata, port) = (self.monitor.pgdata.clone(), self.monitor.port.to_string());
        let created = self
            .command(&["create", "monitor", "--pgdata", path(&pgdata), "--pgport", &port])
            .args(["--hostname", "127.0.0.1", "--auth", "trust", "--no-ssl", "--pgctl"])
            .arg(&self.pg_ctl)
            .stdout(self.log("monitor"))
            .stderr(self.log("monitor"))
            .status()
            .expect("pg_autoctl create monitor");
        assert!(created.success(), "pg_autoctl create monitor:\n{}", self.log_text("monitor"));
        let child = self
            .command(&["run", "--pgdata", path(&pgdata)])
            .stdout(self.log("monitor"))
            .stderr(self.log("monitor"))
            .process_group(0)
            .spawn()
            .expect("pg_autoctl run (monitor)");
        self.monitor.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", self.monitor.port)).is_err() {
            assert!(Instant::now() < deadline, "monitor:\n{}", self.log_text("monitor"));
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn start_node(&mut self, index: usize) {
        let node = &self.nodes[index];
        let (name, pgdata, port) = (node.name.clone(), node.pgdata.clone(), node.port.to_string());
        let child = self
            .command(&["create", "postgres", "--pgdata", path(&pgdata), "--pgport", &port])
            .args(["--hostname", "127.0.0.1", "--auth", "trust", "--no-ssl", "--name", &name])
            .args(["--dbname", DATABASE, "--monitor", &self.monitor_url(), "--run", "--pgctl"])
            .arg(&self.pg_ctl)
            .stdout(self.log(&name))
            .stderr(self.log(&name))
            .process_group(0)
            .spawn()
            .expect("pg_autoctl create postgres --run");
        self.nodes[index].child = Some(child);
    }

    /// The formation's state as the monitor sees it: (name, reported state) per node.
    pub fn states(&self) -> Vec<(String, String)> {
        let out = self
            .command(&["show", "state", "--json", "--pgdata", path(&self.monitor.pgdata)])
            .stderr(Stdio::null())
            .output()
            .expect("pg_autoctl show state");
        let Ok(states) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
            return Vec::new();
        };
        states
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| {
                let name = n["nodename"].as_str().unwrap_or_default().to_owned();
                (name, n["current_group_state"].as_str().unwrap_or_default().to_owned())
            })
            .collect()
    }

    /// Waits until node `index` reports one of the `|`-separated states. A node being made
    /// a standby waits for the primary's checkpoint before its base backup; an immediate
    /// CHECKPOINT there saves the spread one's minutes.
    pub fn wait_for_state(&self, index: usize, states: &str, timeout: Duration) {
        let name = &self.nodes[index].name;
        let deadline = Instant::now() + timeout;
        loop {
            let now = self.states();
            if now.iter().any(|(n, s)| n == name && states.split('|').any(|w| w == s)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not reach {states}: {now:?}\n{}",
                self.log_text(name)
            );
            for node in &self.nodes {
                let _ = Command::new("psql")
                    .args(["-h", "127.0.0.1", "-p", &node.port.to_string(), "-U", "postgres"])
                    .args(["-d", DATABASE, "-Atqc", "CHECKPOINT"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// The index of the node the monitor reports as primary.
    pub fn primary(&self) -> Option<usize> {
        let states = self.states();
        self.nodes
            .iter()
            .position(|n| states.iter().any(|(name, s)| *name == n.name && s == "primary"))
    }

    /// The multi-host URL collectors are given, in libpq's form (what `pg_autoctl show uri`
    /// prints).
    pub fn url(&self) -> String {
        let hosts: Vec<String> =
            self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        format!(
            "postgres://postgres@{}/{DATABASE}?target_session_attrs=read-write&sslmode=disable",
            hosts.join(",")
        )
    }

    /// SIGKILLs node `index`: its `pg_autoctl` and every PostgreSQL process of its data
    /// directory, as a machine that dies.
    pub fn kill_node(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        if let Some(mut child) = node.child.take() {
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = child.wait();
        }
        let _ = Command::new("pkill").args(["-KILL", "-f"]).arg(&node.pgdata).status();
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

impl Drop for Formation {
    fn drop(&mut self) {
        for index in 0..self.nodes.len() {
            self.kill_node(index);
        }
        if let Some(mut child) = self.monitor.child.take() {
            let _ =
                Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
            let _ = child.wait();
        }
        let _ = Command::new("pkill").args(["-KILL", "-f"]).arg(self.dir.path()).status();
    }
}
