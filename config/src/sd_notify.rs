//! The systemd notify protocol (`sd_notify(3)`), spoken by both daemons without linking
//! libsystemd: one datagram per message to the Unix socket named by `NOTIFY_SOCKET` (a path, or
//! an abstract name when it starts with `@`). It lives here because both binaries already
//! depend on this crate and nothing else; it needs only std.
//!
//! Without `NOTIFY_SOCKET` (not started by systemd with `Type=notify`) every call does nothing.
//! `WATCHDOG_USEC` (honoured only when `WATCHDOG_PID` is unset or names this process) gives
//! the watchdog period; callers ping at half of it. [`Notifier::status`] sends a `STATUS=` line
//! only when it differs from the last one sent, so callers may call it on every loop turn.
//!
//! Test hook: in debug builds only (`cfg(debug_assertions)`, which release builds and packages
//! never have), `VIGIL_TEST_WEDGE_WATCHDOG_AFTER=N` makes the N-th [`Notifier::watchdog`] call
//! block its thread for good instead of returning, so a test can see the watchdog pings stop
//! when the loop that sends them hangs. Release builds ignore the variable.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The test hook's variable; see the module documentation.
pub const WEDGE_ENV: &str = "VIGIL_TEST_WEDGE_WATCHDOG_AFTER";

/// A connection to the service manager, or nothing when not run under one.
#[derive(Debug)]
pub struct Notifier {
    socket: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
    last_status: Mutex<String>,
    pings: AtomicU64,
    wedge_after: Option<u64>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` and `WATCHDOG_USEC` from the environment. A socket that cannot be
    /// used is logged on stderr once and the notifier does nothing.
    pub fn from_env() -> Self {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|name| {
            let name = name.to_string_lossy().into_owned();
            match open(&name) {
                Ok(socket) => Some(socket),
                Err(err) => {
                    eprintln!("warning: NOTIFY_SOCKET={name:?} cannot be used: {err}");
                    None
                }
            }
        });
        let for_us = std::env::var("WATCHDOG_PID")
            .map(|pid| pid.trim() == std::process::id().to_string())
            .unwrap_or(true);
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|usec| usec.trim().parse::<u64>().ok())
            .filter(|usec| *usec > 0 && for_us)
            .map(Duration::from_micros);
        let wedge_after = if cfg!(debug_assertions) {
            std::env::var(WEDGE_ENV).ok().and_then(|n| n.trim().parse::<u64>().ok())
        } else {
            None
        };
        Self {
            socket,
            watchdog,
            last_status: Mutex::new(String::new()),
            pings: AtomicU64::new(0),
            wedge_after,
        }
    }

    /// A notifier that sends nothing.
    pub fn disabled() -> Self {
        Self {
            socket: None,
            watchdog: None,
            last_status: Mutex::new(String::new()),
            pings: AtomicU64::new(0),
            wedge_after: None,
        }
    }

    /// Whether messages go anywhere.
    pub fn is_enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// How often to send `WATCHDOG=1`: half the service manager's period, when it set one and
    /// a socket is there to send to.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.socket.as_ref()?;
        self.watchdog.map(|period| (period / 2).max(Duration::from_millis(1)))
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) {
        self.remember(status);
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// `STATUS=...`, only when it differs from the last status sent.
    pub fn status(&self, status: &str) {
        if self.is_enabled() && self.remember(status) {
            self.send(&format!("STATUS={}", one_line(status)));
        }
    }

    /// `WATCHDOG=1`. Under the debug-only test hook, the N-th call never returns.
    pub fn watchdog(&self) {
        let pings = self.pings.fetch_add(1, Ordering::Relaxed) + 1;
        if self.wedge_after.is_some_and(|n| pings >= n) {
            eprintln!("warning: {WEDGE_ENV}: test hook wedging the watchdog loop for good");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        self.send("WATCHDOG=1");
    }

    /// `STOPPING=1` with a status line.
    pub fn stopping(&self, status: &str) {
        self.remember(status);
        self.send(&format!("STOPPING=1\nSTATUS={}", one_line(status)));
    }

    /// Records `status` as the last one sent; true when it changed.
    fn remember(&self, status: &str) -> bool {
        let mut last = self.last_status.lock().unwrap_or_else(|e| e.into_inner());
        if *last == status {
            return false;
        }
        status.clone_into(&mut last);
        true
    }

    /// One datagram; a failure is not the daemon's business beyond a debug line on stderr
    /// (systemd gone, or the socket full): the daemon goes on.
    fn send(&self, message: &str) {
        if let Some((socket, addr)) = &self.socket
            && let Err(err) = socket.send_to_addr(message.as_bytes(), addr)
        {
            eprintln!("warning: sd_notify {message:?}: {err}");
        }
    }
}

/// An unbound datagram socket and the service manager's address.
fn open(name: &str) -> io::Result<(UnixDatagram, SocketAddr)> {
    let addr = if let Some(abstract_name) = name.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(abstract_name.as_bytes())?
    } else if name.starts_with('/') {
        SocketAddr::from_pathname(name)?
    } else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "neither an absolute path nor an abstract name starting with '@'",
        ));
    };
    Ok((UnixDatagram::unbound()?, addr))
}

/// A status is one line of the protocol: newlines would start new assignments.
fn one_line(status: &str) -> String {
    status.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notifier_to(addr: SocketAddr) -> Notifier {
        Notifier { socket: Some((UnixDatagram::unbound().unwrap(), addr)), ..Notifier::disabled() }
    }

    fn recv(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn messages_reach_a_path_socket_and_repeated_statuses_are_not_sent() {
        let dir = tempfile_dir();
        let path = dir.join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        server.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let (_, addr) = open(path.to_str().unwrap()).unwrap();
        let notifier = notifier_to(addr);
        notifier.ready("up, 0 spooled");
        notifier.status("up, 0 spooled");
        notifier.status("up,\n1 spooled");
        notifier.watchdog();
        notifier.stopping("bye");
        assert_eq!(recv(&server), "READY=1\nSTATUS=up, 0 spooled");
        assert_eq!(recv(&server), "STATUS=up, 1 spooled");
        assert_eq!(recv(&server), "WATCHDOG=1");
        assert_eq!(recv(&server), "STOPPING=1\nSTATUS=bye");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn abstract_names_start_with_an_at_sign() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("vigil-sd-notify-test-{}", std::process::id());
        let server =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        server.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let (_, addr) = open(&format!("@{name}")).unwrap();
        notifier_to(addr).watchdog();
        assert_eq!(recv(&server), "WATCHDOG=1");
    }

    #[test]
    fn a_relative_name_is_refused_and_nothing_is_sent_without_a_socket() {
        assert!(open("notify").is_err());
        let off = Notifier::disabled();
        assert!(!off.is_enabled());
        assert_eq!(off.watchdog_interval(), None);
        off.ready("nothing listens");
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "vigil-sd-notify-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
