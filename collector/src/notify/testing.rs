//! Real counterparts for the senders' tests, no mocks: [`Alertmanager`] runs the actual
//! `prometheus-alertmanager` binary on a loopback port (the end-to-end crate's harness, shared),
//! and [`Receiver`] is a minimal HTTP/1.1 server on a loopback port that answers one request
//! with a chosen status and hands the request back. Plus the HTTP client the senders expect (no
//! redirects, no proxy) and a sample [`Notification`]. Test-only.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
pub use vigil_e2e::alertmanager::{Alertmanager, free_port, parse_time};

use super::payload::{EventKind, IncidentSnapshot, Notification};

/// How long a receiver may take to get its request.
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

/// A client builder as the senders require: no redirects, no proxy from the environment. It
/// installs the ring rustls provider first, without which reqwest's `build()` panics even for
/// `http://` ("No provider set").
pub fn client_builder() -> reqwest::ClientBuilder {
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy()
}

pub fn client() -> reqwest::Client {
    client_builder().build().expect("HTTP client")
}

/// A firing L2 incident on 2025-11-30 10:00:00 UTC.
pub fn notification() -> Notification {
    Notification {
        event_id: "INC-000042/7".into(),
        kind: EventKind::Opened,
        at_ms: 1_764_496_800_000,
        incident: IncidentSnapshot {
            number: "INC-000042".into(),
            customer: "Acme".into(),
            site: "Berlin".into(),
            host_id: Some("h-0001".into()),
            hostname: Some("db1".into()),
            rule: "raid.degraded".into(),
            resource: "md0".into(),
            level: 2,
            state: "open".into(),
            tier: 1,
            summary: "md0 degraded: 1 of 2 disks missing".into(),
            opened_at_ms: 1_764_496_800_000,
            resolved_at_ms: None,
            response_due_ms: Some(1_764_497_100_000),
            resolution_due_ms: None,
        },
        detail: "opened".into(),
    }
}

/// `http://127.0.0.1:<port>` with nothing listening (a port that was free a moment ago).
pub fn unused_local_url() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

// ---------------------------------------------------------------------------------------------
// HTTP receiver
// ---------------------------------------------------------------------------------------------

/// One HTTP request as a [`Receiver`] got it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Names lowercased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }
}

/// A one-request HTTP/1.1 server on `127.0.0.1:<ephemeral>`: reads one request, answers with
/// the chosen status and body, closes the connection.
#[derive(Debug)]
pub struct Receiver {
    /// `http://127.0.0.1:<port>`
    pub url: String,
    task: JoinHandle<Received>,
}

impl Receiver {
    pub async fn start(status: u16, body: &str) -> Self {
        Self::start_with(status, body, &[]).await
    }

    pub async fn start_with(status: u16, body: &str, headers: &[(&str, &str)]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let mut answer = format!(
            "HTTP/1.1 {status} Test\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\
             connection: close\r\n",
            body.len()
        );
        for (name, value) in headers {
            answer.push_str(&format!("{name}: {value}\r\n"));
        }
        answer.push_str("\r\n");
        answer.push_str(body);
        let task = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let request = read_request(&mut stream).await;
            stream.write_all(answer.as_bytes()).await.expect("write answer");
            let _ = stream.shutdown().await;
            request
        });
        Self { url, task }
    }

    /// The request, once it has been answered.
    pub async fn request(self) -> Received {
        tokio::time::timeout(STARTUP_DEADLINE, self.task)
            .await
            .expect("no request reached the receiver")
            .expect("receiver task")
    }
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> Received {
    const MAX_REQUEST: usize = 8 << 20;
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        assert!(buf.len() < MAX_REQUEST, "request head too long");
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.expect("read request");
        assert!(n > 0, "connection closed before the end of the head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).expect("UTF-8 head");
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().expect("request line").split(' ');
    let method = request_line.next().expect("method").to_owned();
    let target = request_line.next().expect("target").to_owned();
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (name, value) = line.split_once(':').expect("header line");
            (name.trim().to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.parse().expect("content-length"))
        .unwrap_or(0);
    assert!(length <= MAX_REQUEST, "body too long: {length}");
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let mut chunk = vec![0u8; length - body.len()];
        let n = stream.read(&mut chunk).await.expect("read body");
        assert!(n > 0, "connection closed before the end of the body");
        body.extend_from_slice(&chunk[..n]);
    }
    Received { method, target, headers, body }
}
