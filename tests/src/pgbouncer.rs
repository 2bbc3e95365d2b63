//! A real pgbouncer in front of the test PostgreSQL, on `127.0.0.1:<ephemeral>`, in
//! transaction pooling mode with prepared-statement tracking (`max_prepared_statements`, which
//! needs pgbouncer 1.21 or later), its config in a temporary directory. Killed on drop.
//!
//! The binary comes from `VIGIL_TEST_PGBOUNCER`, else `/usr/sbin/pgbouncer`; a test without it
//! is skipped loudly, or fails under `VIGIL_REQUIRE_EXTERNAL=1`.

use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::alertmanager::{external, free_port};

#[derive(Debug)]
pub struct Pgbouncer {
    pub port: u16,
    child: Child,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Pgbouncer {
    /// Starts one forwarding every database to `upstream` (host, port) with `pool_size` server
    /// connections per database and user, tracking up to `max_prepared_statements` per server
    /// connection (0: none, as pgbouncer before 1.21), and waits until it accepts connections;
    /// `None` (skipped) without the binary.
    pub fn start(
        upstream: (&str, u16),
        pool_size: u32,
        max_prepared_statements: u32,
    ) -> Option<Self> {
        let binary =
            external("pgbouncer (1.21 or later)", "VIGIL_TEST_PGBOUNCER", "/usr/sbin/pgbouncer")?;
        let dir = tempfile::tempdir().expect("temporary directory");
        // pgbouncer refuses to run as root; started as root it switches to `user` below, who
        // must read its files.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let port = free_port();
        let users = dir.path().join("userlist.txt");
        std::fs::write(&users, "\"postgres\" \"\"\n").unwrap();
        let as_root = rustix::process::geteuid().is_root();
        let config = dir.path().join("pgbouncer.ini");
        std::fs::write(
            &config,
            format!(
                "[databases]\n* = host={host} port={upstream_port}\n\n\
                 [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = trust\nauth_file = {users}\npool_mode = transaction\n\
                 max_prepared_statements = {max_prepared_statements}\ndefault_pool_size = {pool_size}\n\
                 max_client_conn = 500\nignore_startup_parameters = extra_float_digits,options\n\
                 server_reset_query =\n{user}",
                host = upstream.0,
                upstream_port = upstream.1,
                users = users.display(),
                user = if as_root { "user = postgres\n" } else { "" },
            ),
        )
        .unwrap();
        for file in [&users, &config] {
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let log = dir.path().join("pgbouncer.log");
        let stderr = std::fs::File::create(&log).expect("log file");
        let child = Command::new(&binary)
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start pgbouncer");
        let bouncer = Self { port, child, log, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "pgbouncer did not listen:\n{}", bouncer.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(bouncer)
    }

    /// The URL of `database` through this pgbouncer.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Pgbouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
