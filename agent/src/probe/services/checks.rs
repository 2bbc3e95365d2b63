//! The process, TCP port and HTTP checks of the services probe.
//!
//! Process checks read `/proc/<pid>/comm` and `/proc/<pid>/cmdline` through the
//! [`HostRoot`], so they work on fixture trees; a process that exits mid-scan is skipped. Port
//! and HTTP checks talk to the network as the agent sees it, so they only run on the live root.
//! HTTP is a minimal HTTP/1.1 `GET` over a [`TcpStream`] that reads the status line and
//! nothing else: enough to say "answers with 200", without an HTTP client crate. `https://`
//! runs the same request over rustls, verifying the server against the system's CA bundle or
//! the check's own `ca_file` (an expired or untrusted certificate is the check's error).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use vigil_tls::rustls::pki_types::ServerName;
use vigil_tls::rustls::{ClientConfig, ClientConnection, StreamOwned};

use vigil_proto::v1::{HttpCheck, PortCheck, ProcessCheck};

use crate::config::{HttpCheckConfig, PortCheckConfig, ProcessCheckConfig, is_cmdline_pattern};
use crate::root::HostRoot;

/// Longest status line read from an HTTP server.
const MAX_STATUS_LINE: usize = 8192;

/// One process as the checks see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// `/proc/<pid>/comm` without its newline.
    pub comm: String,
    /// `/proc/<pid>/cmdline` with its NUL separators turned into spaces; empty for kernel
    /// threads and zombies.
    pub cmdline: String,
}

/// Every process under `<root>/proc`, in pid order. A process that exits between the listing
/// and the reads is skipped; an unreadable `/proc` is an empty list.
pub fn scan_processes(root: &HostRoot) -> Vec<ProcessInfo> {
    let Ok(entries) = std::fs::read_dir(root.proc("")) else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    pids.into_iter()
        .filter_map(|pid| {
            let dir = root.proc(&pid.to_string());
            let comm = std::fs::read(dir.join("comm")).ok()?;
            let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
            Some(ProcessInfo {
                comm: String::from_utf8_lossy(&comm).trim_end_matches('\n').to_owned(),
                cmdline: join_cmdline(&cmdline),
            })
        })
        .collect()
}

/// `a\0b c\0` → `a b c`.
pub fn join_cmdline(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    text.trim_end_matches('\0').replace('\0', " ")
}

/// Whether `process` matches `pattern` (see [`ProcessCheckConfig::pattern`]).
pub fn matches(pattern: &str, process: &ProcessInfo) -> bool {
    if is_cmdline_pattern(pattern) {
        process.cmdline.contains(pattern)
    } else {
        process.comm == pattern
    }
}

/// The result of one process check over a scan.
pub fn process_check(config: &ProcessCheckConfig, processes: &[ProcessInfo]) -> ProcessCheck {
    let pattern = config.effective_pattern();
    let count = processes.iter().filter(|p| matches(pattern, p)).count();
    ProcessCheck {
        name: config.name.clone(),
        pattern: pattern.to_owned(),
        min_count: config.min_count,
        count: u32::try_from(count).unwrap_or(u32::MAX),
        critical: config.critical,
    }
}

/// A port check that was not run, with why.
pub fn port_not_run(config: &PortCheckConfig, error: &str) -> PortCheck {
    PortCheck {
        name: config.name.clone(),
        host: config.host.clone(),
        port: u32::from(config.port),
        open: false,
        connect_ms: None,
        error: error.to_owned(),
        critical: config.critical,
    }
}

/// Connects to the port once, within `timeout`.
pub fn port_check(config: &PortCheckConfig, timeout: Duration) -> PortCheck {
    let started = Instant::now();
    let mut check = port_not_run(config, "");
    match connect(&config.host, config.port, started + timeout) {
        Ok(_stream) => {
            check.open = true;
            check.connect_ms = Some(millis(started.elapsed()));
        }
        Err(error) => check.error = error,
    }
    check
}

/// An HTTP check that was not run, with why.
pub fn http_not_run(config: &HttpCheckConfig, error: &str) -> HttpCheck {
    HttpCheck {
        name: config.name.clone(),
        url: config.url.clone(),
        status_code: None,
        expected_status: u32::from(config.expected_status),
        ok: false,
        response_ms: None,
        error: error.to_owned(),
        critical: config.critical,
    }
}

/// `GET`s the URL once; the whole exchange up to the status line takes at most `timeout`.
pub fn http_check(config: &HttpCheckConfig, timeout: Duration) -> HttpCheck {
    let started = Instant::now();
    let mut check = http_not_run(config, "");
    match http_status(&config.url, config.ca_file.as_deref(), started + timeout) {
        Ok(status) => {
            check.status_code = Some(u32::from(status));
            check.ok = status == config.expected_status;
            check.response_ms = Some(millis(started.elapsed()));
            if !check.ok {
                check.error = format!("status {status}, expected {}", config.expected_status);
            }
        }
        Err(error) => check.error = error,
    }
    check
}

/// An `http://` or `https://` URL split into what a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// `https://`: the request goes over TLS, verified against the system's CA bundle or the
    /// check's `ca_file`.
    pub tls: bool,
    /// Host name or address, IPv6 without brackets.
    pub host: String,
    pub port: u16,
    /// The `Host` header: as written in the URL (`[::1]:8080`).
    pub authority: String,
    /// Path and query, at least `/`.
    pub path: String,
}

impl HttpUrl {
    /// Parses `http[s]://HOST[:PORT][/PATH]`. User info is refused; a fragment is dropped.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (tls, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) => (false, rest),
            (None, None) => {
                return Err(format!("{url:?} is not a URL like http://127.0.0.1:8080/health"));
            }
        };
        let rest = rest.split('#').next().unwrap_or("");
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') { format!("/{path}") } else { path.to_owned() };
        if authority.contains('@') {
            return Err(format!("{url:?}: user info in the URL is not supported"));
        }
        let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
            let Some((host, after)) = inner.split_once(']') else {
                return Err(format!("{url:?}: unclosed '[' in the host"));
            };
            match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return Err(format!("{url:?}: junk after the IPv6 address")),
                },
            }
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        let port = match port {
            None if tls => 443,
            None => 80,
            Some(port) => match port.parse::<u16>() {
                Ok(port) if port > 0 => port,
                _ => return Err(format!("{url:?}: {port:?} is not a port")),
            },
        };
        Ok(Self { tls, host: host.to_owned(), port, authority: authority.to_owned(), path })
    }
}

/// The status code the server answers a `GET` of `url` with, before `deadline`.
fn http_status(url: &str, ca_file: Option<&Path>, deadline: Instant) -> Result<u16, String> {
    let url = HttpUrl::parse(url)?;
    let tcp = connect(&url.host, url.port, deadline)?;
    // Timeouts are set on the socket, whether TLS runs over it or not.
    let timeouts = tcp.try_clone().map_err(|e| e.to_string())?;
    let set_timeout = move |timeout: Duration| {
        timeouts.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
        timeouts.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())
    };
    if !url.tls {
        return exchange(tcp, &url, deadline, set_timeout);
    }
    let config = tls_config(ca_file)?;
    let name = ServerName::try_from(url.host.clone())
        .map_err(|_| format!("{:?} is not a name TLS can verify", url.host))?;
    let connection = ClientConnection::new(config, name).map_err(|e| format!("TLS setup: {e}"))?;
    exchange(StreamOwned::new(connection, tcp), &url, deadline, set_timeout)
}

/// The TLS client for an HTTPS check: TLS 1.2/1.3, HTTP/1.1, roots from `ca_file` or the
/// system bundle (read once per process).
fn tls_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    static SYSTEM: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    let build = |certs: Vec<vigil_tls::rustls::pki_types::CertificateDer<'static>>| {
        let mut roots = vigil_tls::rustls::RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err("no usable CA certificate".to_owned());
        }
        let provider = Arc::new(vigil_tls::rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    };
    match ca_file {
        Some(path) => build(vigil_tls::pem::read_certs(path).map_err(|e| e.to_string())?)
            .map_err(|e| format!("{}: {e}", path.display())),
        None => SYSTEM
            .get_or_init(|| {
                let path = vigil_tls::system_ca_bundle()
                    .ok_or("no system CA bundle found; set ca_file for this check")?;
                build(vigil_tls::pem::read_certs(path).map_err(|e| e.to_string())?)
            })
            .clone(),
    }
}

/// Sends the `GET` on `stream` and reads up to the status line; `set_timeout` bounds each
/// read and write by what is left before `deadline`.
fn exchange<S: Read + Write>(
    mut stream: S,
    url: &HttpUrl,
    deadline: Instant,
    set_timeout: impl Fn(Duration) -> Result<(), String>,
) -> Result<u16, String> {
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: vigil-agent\r\nAccept: */*\r\n\
         Connection: close\r\n\r\n",
        url.path, url.authority
    );
    set_timeout(remaining(deadline)?)?;
    stream.write_all(request.as_bytes()).map_err(|e| io_error("sending the request", &e))?;
    stream.flush().map_err(|e| io_error("sending the request", &e))?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.contains(&b'\n') {
        if answer.len() >= MAX_STATUS_LINE {
            return Err(format!("no status line in the first {MAX_STATUS_LINE} bytes"));
        }
        set_timeout(remaining(deadline)?)?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error("reading the answer", &e)),
        }
    }
    if answer.is_empty() {
        return Err("connection closed without an answer".to_owned());
    }
    let line = answer.split(|&b| b == b'\n').next().unwrap_or(&[]);
    parse_status_line(&String::from_utf8_lossy(line))
}

/// `HTTP/1.1 503 Service Unavailable` → 503.
pub fn parse_status_line(line: &str) -> Result<u16, String> {
    let line = line.trim_end_matches('\r');
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    match code.parse::<u16>() {
        Ok(code) if version.starts_with("HTTP/") && (100..=999).contains(&code) => Ok(code),
        _ => Err(format!("not an HTTP status line: {:?}", cut(line, 80))),
    }
}

/// A TCP connection to `host:port`, trying each address it resolves to, before `deadline`.
fn connect(host: &str, port: u16, deadline: Instant) -> Result<TcpStream, String> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("{host} resolves to no address"));
    }
    let mut last = String::new();
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, remaining(deadline)?) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = format!("connect to {addr}: {}", io_reason(&e)),
        }
    }
    Err(last)
}

/// Time left until `deadline`; an error once it has passed.
fn remaining(deadline: Instant) -> Result<Duration, String> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() { Err("timed out".to_owned()) } else { Ok(left) }
}

fn io_error(doing: &str, err: &std::io::Error) -> String {
    format!("{doing}: {}", io_reason(err))
}

/// A timeout reads as one whatever the platform's error kind for it.
fn io_reason(err: &std::io::Error) -> String {
    match err.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => "timed out".to_owned(),
        _ => err.to_string(),
    }
}

fn millis(took: Duration) -> f64 {
    took.as_secs_f64() * 1000.0
}

fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
