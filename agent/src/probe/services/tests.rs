use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;

use vigil_proto::v1::{HttpCheck, PortCheck, ProcessCheck};

use super::*;
use crate::config::{HttpCheckConfig, PortCheckConfig, ProcessCheckConfig};

fn process(comm: &str, cmdline: &str) -> ProcessInfo {
    ProcessInfo { comm: comm.to_owned(), cmdline: cmdline.to_owned() }
}

fn process_config(name: &str, pattern: &str, min_count: u32) -> ProcessCheckConfig {
    ProcessCheckConfig {
        name: name.to_owned(),
        pattern: pattern.to_owned(),
        min_count,
        critical: true,
    }
}

/// A `/proc/<pid>` with `comm` and (when given) `cmdline`.
fn add_process(root: &Path, pid: u32, comm: &str, cmdline: Option<&[u8]>) {
    let dir = root.join("proc").join(pid.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("comm"), format!("{comm}\n")).unwrap();
    if let Some(cmdline) = cmdline {
        std::fs::write(dir.join("cmdline"), cmdline).unwrap();
    }
}

#[test]
fn cmdline_is_joined_by_spaces() {
    assert_eq!(join_cmdline(b"nginx: worker process\0\0"), "nginx: worker process");
    assert_eq!(
        join_cmdline(b"/usr/bin/python3\0-m\0http.server\0"),
        "/usr/bin/python3 -m http.server"
    );
    assert_eq!(join_cmdline(b""), "");
}

#[test]
fn names_match_comm_exactly_and_paths_match_the_cmdline() {
    let sshd = process("sshd", "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups");
    assert!(matches("sshd", &sshd));
    assert!(!matches("ssh", &sshd), "a name is not a substring match");
    assert!(matches("/usr/sbin/sshd", &sshd));
    assert!(matches("sshd -D", &sshd));
    assert!(!matches("/usr/sbin/nginx", &sshd));
    // A kernel thread has no command line.
    assert!(!matches("/kworker", &process("kworker/0:1", "")));
}

#[test]
fn process_checks_count_matches_in_a_tree() {
    let dir = tempfile::tempdir().unwrap();
    add_process(dir.path(), 1, "systemd", Some(b"/sbin/init\0splash\0"));
    add_process(dir.path(), 812, "nginx", Some(b"nginx: master process /usr/sbin/nginx\0"));
    add_process(dir.path(), 813, "nginx", Some(b"nginx: worker process\0"));
    add_process(dir.path(), 2040, "python3", Some(b"/usr/bin/python3\0/opt/app/serve.py\0"));
    // A kernel thread (no cmdline file content) and a process that vanished (no comm).
    add_process(dir.path(), 2, "kthreadd", Some(b""));
    std::fs::create_dir_all(dir.path().join("proc/3000")).unwrap();
    // Not a pid.
    std::fs::create_dir_all(dir.path().join("proc/sys")).unwrap();
    let root = HostRoot::new(dir.path().to_path_buf());

    assert_eq!(
        scan_processes(&root),
        [
            process("systemd", "/sbin/init splash"),
            process("kthreadd", ""),
            process("nginx", "nginx: master process /usr/sbin/nginx"),
            process("nginx", "nginx: worker process"),
            process("python3", "/usr/bin/python3 /opt/app/serve.py"),
        ]
    );

    let config = ServicesConfig {
        processes: vec![
            process_config("nginx", "", 2),
            process_config("app", "/opt/app/serve.py", 1),
            ProcessCheckConfig { critical: false, ..process_config("redis", "redis-server", 1) },
        ],
        ..ServicesConfig::default()
    };
    let Ok(probe_result::Data::Services(data)) = Services::new(config).collect(&root) else {
        panic!("no services data");
    };
    assert_eq!(
        data.processes,
        [
            ProcessCheck {
                name: "nginx".into(),
                pattern: "nginx".into(),
                min_count: 2,
                count: 2,
                critical: true
            },
            ProcessCheck {
                name: "app".into(),
                pattern: "/opt/app/serve.py".into(),
                min_count: 1,
                count: 1,
                critical: true
            },
            ProcessCheck {
                name: "redis".into(),
                pattern: "redis-server".into(),
                min_count: 1,
                count: 0,
                critical: false
            },
        ]
    );
}

#[test]
fn the_fixture_tree_has_no_comm_files_so_nothing_matches() {
    // linux-procfs/proc/26231 has stat and status but no comm: it counts as vanished.
    let root =
        HostRoot::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/linux-procfs"));
    assert_eq!(scan_processes(&root), []);
    let missing = HostRoot::new(Path::new("/nonexistent-vigil-root").to_path_buf());
    assert_eq!(scan_processes(&missing), []);
}

#[test]
fn network_checks_are_not_run_under_a_root() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServicesConfig {
        ports: vec![PortCheckConfig {
            name: "ssh".into(),
            host: "127.0.0.1".into(),
            port: 22,
            critical: true,
        }],
        http: vec![HttpCheckConfig {
            name: "web".into(),
            url: "http://127.0.0.1/".into(),
            expected_status: 200,
            critical: false,
            ca_file: None,
        }],
        ..ServicesConfig::default()
    };
    let root = HostRoot::new(dir.path().to_path_buf());
    let Ok(probe_result::Data::Services(data)) = Services::new(config).collect(&root) else {
        panic!("no services data");
    };
    assert_eq!(
        data.ports,
        [PortCheck {
            name: "ssh".into(),
            host: "127.0.0.1".into(),
            port: 22,
            open: false,
            connect_ms: None,
            error: "not run under --root".into(),
            critical: true
        }]
    );
    assert_eq!(
        data.http,
        [HttpCheck {
            name: "web".into(),
            url: "http://127.0.0.1/".into(),
            status_code: None,
            expected_status: 200,
            ok: false,
            response_ms: None,
            error: "not run under --root".into(),
            critical: false
        }]
    );
}

fn port_config(host: &str, port: u16) -> PortCheckConfig {
    PortCheckConfig { name: "p".into(), host: host.into(), port, critical: true }
}

/// A port on 127.0.0.1 that nothing listens on (bound, then closed).
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn an_open_port_is_open_and_a_closed_one_is_not() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let open = port_check(&port_config("127.0.0.1", port), Duration::from_secs(5));
    assert!(open.open, "{open:?}");
    assert_eq!(open.error, "");
    assert!(open.connect_ms.is_some_and(|ms| (0.0..5000.0).contains(&ms)), "{open:?}");
    assert_eq!(
        (open.name.as_str(), open.host.as_str(), open.port),
        ("p", "127.0.0.1", port.into())
    );

    let port = closed_port();
    let closed = port_check(&port_config("127.0.0.1", port), Duration::from_secs(5));
    assert!(!closed.open);
    assert_eq!(closed.connect_ms, None);
    assert!(closed.error.starts_with(&format!("connect to 127.0.0.1:{port}: ")), "{closed:?}");
    assert!(closed.error.contains("refused"), "{closed:?}");
}

/// Serves one connection per answer on 127.0.0.1, each with `answer`, and hands back the
/// requests it read.
fn http_server(answers: Vec<&'static str>) -> (u16, std::thread::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let mut requests = Vec::new();
        for answer in answers {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 512];
            while !request.ends_with(b"\r\n\r\n") {
                let n = stream.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            requests.push(String::from_utf8(request).unwrap());
            stream.write_all(answer.as_bytes()).unwrap();
        }
        requests
    });
    (port, handle)
}

fn http_config(url: String, expected_status: u16) -> HttpCheckConfig {
    HttpCheckConfig { name: "web".into(), url, expected_status, critical: true, ca_file: None }
}

#[test]
fn http_checks_read_the_status_code() {
    let (port, server) = http_server(vec![
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        "SSH-2.0-OpenSSH_9.2\r\n",
    ]);
    let url = format!("http://127.0.0.1:{port}/health?full=1");
    let timeout = Duration::from_secs(5);

    let down = http_check(&http_config(url.clone(), 200), timeout);
    assert_eq!(down.status_code, Some(503));
    assert!(!down.ok);
    assert_eq!(down.error, "status 503, expected 200");
    assert!(down.response_ms.is_some());

    let up = http_check(&http_config(url.clone(), 200), timeout);
    assert_eq!(
        up,
        HttpCheck {
            name: "web".into(),
            url: url.clone(),
            status_code: Some(200),
            expected_status: 200,
            ok: true,
            response_ms: up.response_ms,
            error: String::new(),
            critical: true
        }
    );
    assert!(up.response_ms.is_some_and(|ms| (0.0..5000.0).contains(&ms)));

    let junk = http_check(&http_config(url.clone(), 200), timeout);
    assert_eq!(junk.status_code, None);
    assert_eq!(junk.error, "not an HTTP status line: \"SSH-2.0-OpenSSH_9.2\"");

    let requests = server.join().unwrap();
    assert_eq!(
        requests[0],
        format!(
            "GET /health?full=1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: vigil-agent\r\n\
             Accept: */*\r\nConnection: close\r\n\r\n"
        )
    );
}

#[test]
fn a_silent_http_server_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let check = http_check(
        &http_config(format!("http://127.0.0.1:{port}/"), 200),
        Duration::from_millis(200),
    );
    assert_eq!(check.error, "reading the answer: timed out");
    assert_eq!(check.status_code, None);
    drop(listener);

    let port = closed_port();
    let check =
        http_check(&http_config(format!("http://127.0.0.1:{port}/"), 200), Duration::from_secs(5));
    assert!(check.error.starts_with(&format!("connect to 127.0.0.1:{port}: ")), "{check:?}");
}

#[test]
fn the_live_probe_runs_ports_and_http_in_config_order() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap().port();
    let (web, server) = http_server(vec!["HTTP/1.0 204 No Content\r\n\r\n"]);
    let config = ServicesConfig {
        ports: vec![port_config("127.0.0.1", open), port_config("127.0.0.1", closed_port())],
        http: vec![http_config(format!("http://localhost:{web}"), 204)],
        ..ServicesConfig::default()
    };
    let Ok(probe_result::Data::Services(data)) = Services::new(config).collect(&HostRoot::live())
    else {
        panic!("no services data");
    };
    assert_eq!(data.ports.iter().map(|p| p.open).collect::<Vec<_>>(), [true, false]);
    assert_eq!(data.ports[0].port, u32::from(open));
    assert_eq!(data.http.len(), 1);
    // localhost may resolve to ::1 first, where nothing listens; 127.0.0.1 is tried next.
    assert!(data.http[0].ok, "{:?}", data.http[0]);
    assert_eq!(data.http[0].status_code, Some(204));
    server.join().unwrap();
}

#[test]
fn status_lines() {
    assert_eq!(parse_status_line("HTTP/1.1 200 OK\r"), Ok(200));
    assert_eq!(parse_status_line("HTTP/1.0 404"), Ok(404));
    assert_eq!(parse_status_line("HTTP/2 301 Moved"), Ok(301));
    assert!(parse_status_line("HTTP/1.1 OK 200").is_err());
    assert!(parse_status_line("").is_err());
}

#[test]
fn urls() {
    let url = |host: &str, port, authority: &str, path: &str| HttpUrl {
        tls: false,
        host: host.into(),
        port,
        authority: authority.into(),
        path: path.into(),
    };
    assert_eq!(
        HttpUrl::parse("http://example.com"),
        Ok(url("example.com", 80, "example.com", "/"))
    );
    assert_eq!(
        HttpUrl::parse("http://10.0.0.5:8080/health#top"),
        Ok(url("10.0.0.5", 8080, "10.0.0.5:8080", "/health"))
    );
    assert_eq!(HttpUrl::parse("http://[::1]:81?x=1"), Ok(url("::1", 81, "[::1]:81", "/?x=1")));
    assert_eq!(HttpUrl::parse("http://[::1]/a"), Ok(url("::1", 80, "[::1]", "/a")));
    assert_eq!(
        HttpUrl::parse("https://example.com/"),
        Ok(HttpUrl { tls: true, ..url("example.com", 443, "example.com", "/") })
    );
    assert_eq!(
        HttpUrl::parse("example.com"),
        Err("\"example.com\" is not a URL like http://127.0.0.1:8080/health".into())
    );
    assert_eq!(HttpUrl::parse("http://:80/"), Err("\"http://:80/\" has no host".into()));
    assert_eq!(
        HttpUrl::parse("http://a:99999/"),
        Err("\"http://a:99999/\": \"99999\" is not a port".into())
    );
    assert!(HttpUrl::parse("http://user@a/").is_err());
    assert!(HttpUrl::parse("http://[::1/").is_err());
}

/// systemd over a real D-Bus: a private `dbus-daemon` and a stand-in that owns
/// `org.freedesktop.systemd1` and serves what the probe reads.
mod over_dbus {
    use std::io::BufRead;
    use std::process::{Child, Command, Stdio};

    use vigil_proto::v1::UnitStatus;
    use zbus::OwnedObjectPath;

    use super::*;
    use crate::config::UnitCheckConfig;

    /// A private bus; the daemon is killed on drop.
    struct Bus {
        child: Child,
        address: String,
        _dir: tempfile::TempDir,
    }

    impl Drop for Bus {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Starts `dbus-daemon` on a socket in a temporary directory; `None` (after saying so) when
    /// it is not installed, unless `VIGIL_REQUIRE_EXTERNAL=1`.
    fn start_bus() -> Option<Bus> {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("bus");
        let config = dir.path().join("bus.conf");
        std::fs::write(
            &config,
            format!(
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n \
                 \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n\
                 <busconfig>\n  <type>session</type>\n  <listen>unix:path={}</listen>\n  \
                 <auth>EXTERNAL</auth>\n  <policy context=\"default\">\n    \
                 <allow send_destination=\"*\"/>\n    <allow receive_sender=\"*\"/>\n    \
                 <allow own=\"*\"/>\n  </policy>\n\
                 </busconfig>\n",
                socket.display()
            ),
        )
        .unwrap();
        let spawned = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--nopidfile", "--print-address"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                if std::env::var_os("VIGIL_REQUIRE_EXTERNAL").is_some_and(|v| v == "1") {
                    panic!("dbus-daemon not found and VIGIL_REQUIRE_EXTERNAL=1");
                }
                eprintln!("SKIPPED: dbus-daemon not found (Debian package `dbus`)");
                return None;
            }
            Err(err) => panic!("cannot start dbus-daemon: {err}"),
        };
        // The address is printed once the daemon listens.
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let address = line.trim().to_owned();
        assert!(
            address.starts_with("unix:path="),
            "dbus-daemon printed {line:?}; its stderr: {}",
            std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default()
        );
        Some(Bus { child, address, _dir: dir })
    }

    #[derive(Clone)]
    struct FakeUnit {
        name: &'static str,
        active: &'static str,
        sub: &'static str,
        load: &'static str,
        changed_us: u64,
        restarts: u32,
    }

    impl FakeUnit {
        fn path(&self) -> OwnedObjectPath {
            let escaped = self.name.replace('.', "_2e").replace('-', "_2d");
            OwnedObjectPath::try_from(format!("/org/freedesktop/systemd1/unit/{escaped}")).unwrap()
        }
    }

    struct Manager(Vec<FakeUnit>);

    type Listed = (
        String,
        String,
        String,
        String,
        String,
        String,
        OwnedObjectPath,
        u32,
        String,
        OwnedObjectPath,
    );

    #[zbus::interface(name = "org.freedesktop.systemd1.Manager")]
    impl Manager {
        fn load_unit(&self, name: &str) -> zbus::fdo::Result<OwnedObjectPath> {
            (self.0.iter().find(|u| u.name == name).map(FakeUnit::path))
                .ok_or_else(|| zbus::fdo::Error::FileNotFound(format!("no unit {name}")))
        }

        fn list_units_filtered(&self, states: Vec<String>) -> Vec<Listed> {
            (self.0.iter())
                .filter(|u| states.iter().any(|s| s == u.active || s == u.sub || s == u.load))
                .map(|u| {
                    let no_job = OwnedObjectPath::try_from("/").unwrap();
                    (
                        u.name.into(),
                        "a unit".into(),
                        u.load.into(),
                        u.active.into(),
                        u.sub.into(),
                        String::new(),
                        u.path(),
                        0,
                        String::new(),
                        no_job,
                    )
                })
                .collect()
        }
    }

    struct Unit(FakeUnit);

    #[zbus::interface(name = "org.freedesktop.systemd1.Unit")]
    impl Unit {
        #[zbus(property)]
        fn active_state(&self) -> String {
            self.0.active.into()
        }
        #[zbus(property)]
        fn sub_state(&self) -> String {
            self.0.sub.into()
        }
        #[zbus(property)]
        fn load_state(&self) -> String {
            self.0.load.into()
        }
        #[zbus(property)]
        fn state_change_timestamp(&self) -> u64 {
            self.0.changed_us
        }
    }

    struct Service(u32);

    #[zbus::interface(name = "org.freedesktop.systemd1.Service")]
    impl Service {
        #[zbus(property, name = "NRestarts")]
        fn n_restarts(&self) -> u32 {
            self.0
        }
    }

    /// Serves `units` as systemd on the bus until the returned sender is dropped.
    fn stand_in(
        address: &str,
        units: Vec<FakeUnit>,
    ) -> (tokio::sync::oneshot::Sender<()>, std::thread::JoinHandle<()>) {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let address = address.to_owned();
        let thread = std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let mut builder = zbus::connection::Builder::address(address.as_str())
                    .name("org.freedesktop.systemd1")
                    .serve_at("/org/freedesktop/systemd1", Manager(units.clone()));
                for unit in &units {
                    builder = builder.serve_at(unit.path(), Unit(unit.clone()));
                    if unit.name.ends_with(".service") {
                        builder = builder.serve_at(unit.path(), Service(unit.restarts));
                    }
                }
                let conn = builder.build().await.expect("stand-in connects");
                ready_tx.send(()).unwrap();
                let _ = stop_rx.await;
                drop(conn);
            });
        });
        ready_rx.recv_timeout(Duration::from_secs(10)).expect("stand-in ready");
        (stop_tx, thread)
    }

    fn units() -> Vec<FakeUnit> {
        vec![
            FakeUnit {
                name: "nginx.service",
                active: "active",
                sub: "running",
                load: "loaded",
                changed_us: 1_700_000_000_123_456,
                restarts: 2,
            },
            FakeUnit {
                name: "backup.service",
                active: "failed",
                sub: "failed",
                load: "loaded",
                changed_us: 1_700_000_100_000_000,
                restarts: 0,
            },
        ]
    }

    fn config() -> ServicesConfig {
        ServicesConfig {
            units: vec![UnitCheckConfig { name: "nginx.service".into(), critical: true }],
            ..ServicesConfig::default()
        }
    }

    fn collect(probe: &mut Services) -> ServicesData {
        match probe.collect(&HostRoot::live()) {
            Ok(probe_result::Data::Services(data)) => data,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn configured_and_failed_units_are_read_over_dbus() {
        let Some(bus) = start_bus() else { return };
        let mut probe = Services::with_bus_address(config(), bus.address.clone());

        // A bus without systemd on it.
        let data = collect(&mut probe);
        assert!(!data.systemd_available);
        assert!(data.units.is_empty());
        assert_eq!(
            data.systemd_message,
            "LoadUnit(nginx.service): org.freedesktop.DBus.Error.ServiceUnknown: The name \
             org.freedesktop.systemd1 was not provided by any .service files"
        );

        let (stop, thread) = stand_in(&bus.address, units());
        let data = collect(&mut probe);
        assert_eq!(data.systemd_message, "");
        assert!(data.systemd_available);
        assert_eq!(
            data.units,
            [
                UnitStatus {
                    name: "nginx.service".into(),
                    active_state: "active".into(),
                    sub_state: "running".into(),
                    load_state: "loaded".into(),
                    restarts: 2,
                    critical: true,
                    configured: true,
                    state_change_unix_ms: 1_700_000_000_123,
                },
                UnitStatus {
                    name: "backup.service".into(),
                    active_state: "failed".into(),
                    sub_state: "failed".into(),
                    load_state: "loaded".into(),
                    restarts: 0,
                    critical: false,
                    configured: false,
                    state_change_unix_ms: 1_700_000_100_000,
                },
            ]
        );

        // A failed unit that is configured is reported once, as configured.
        let mut both = config();
        both.units.push(UnitCheckConfig { name: "backup.service".into(), critical: false });
        let data = collect(&mut Services::with_bus_address(both, bus.address.clone()));
        assert_eq!(
            data.units.iter().map(|u| (u.name.as_str(), u.configured)).collect::<Vec<_>>(),
            [("nginx.service", true), ("backup.service", true)]
        );

        drop(stop);
        thread.join().unwrap();
    }

    #[test]
    fn no_bus_means_systemd_unavailable_and_the_rest_still_runs() {
        let dir = tempfile::tempdir().unwrap();
        let address = format!("unix:path={}", dir.path().join("none").display());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let config = ServicesConfig { ports: vec![port_config("127.0.0.1", port)], ..config() };
        let data = collect(&mut Services::with_bus_address(config, address));
        assert!(!data.systemd_available);
        assert_eq!(
            data.systemd_message,
            format!("no system bus: {} not found", dir.path().join("none").display())
        );
        assert!(data.ports[0].open);
    }

    #[test]
    fn systemd_is_not_read_under_a_root() {
        let dir = tempfile::tempdir().unwrap();
        let mut probe = Services::with_bus_address(config(), "unix:path=/nonexistent".into());
        let Ok(probe_result::Data::Services(data)) =
            probe.collect(&HostRoot::new(dir.path().to_path_buf()))
        else {
            panic!("no data");
        };
        assert!(!data.systemd_available);
        assert_eq!(data.systemd_message, "systemd is not read under --root");
    }
}

/// A TLS server on 127.0.0.1 with a certificate from a CA made here, answering one request.
fn https_server(answer: &'static str) -> (u16, tempfile::TempDir, std::thread::JoinHandle<()>) {
    use vigil_tls::rustls;
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let config = std::sync::Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        // Two connections: one from a client that does not trust the CA, one that does.
        for _ in 0..2 {
            let (tcp, _) = listener.accept().unwrap();
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut buf = [0u8; 512];
            let mut request = Vec::new();
            while !request.ends_with(b"\r\n\r\n") {
                match tls.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            if request.ends_with(b"\r\n\r\n") {
                let _ = tls.write_all(answer.as_bytes());
                let _ = tls.flush();
            }
        }
    });
    (port, dir, handle)
}

#[test]
fn https_checks_verify_the_server_against_the_configured_ca() {
    let (port, dir, server) = https_server("HTTP/1.1 204 No Content\r\n\r\n");
    let url = format!("https://localhost:{port}/health");
    // Not trusted: the system bundle does not know this CA.
    let untrusted = http_check(&http_config(url.clone(), 204), Duration::from_secs(5));
    assert!(!untrusted.ok);
    assert_eq!(untrusted.status_code, None);
    assert!(untrusted.error.contains("certificate"), "{untrusted:?}");
    // Trusted through ca_file.
    let config =
        HttpCheckConfig { ca_file: Some(dir.path().join("ca.pem")), ..http_config(url, 204) };
    let check = http_check(&config, Duration::from_secs(5));
    assert!(check.ok, "{check:?}");
    assert_eq!(check.status_code, Some(204));
    server.join().unwrap();
}
