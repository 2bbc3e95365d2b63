//! A webhook receiver for end-to-end tests: a small HTTP/1.1 server on a loopback port that
//! records every request and answers each with the status currently set (so a test can make
//! it fail, then recover), or holds the answer to the next request until the test releases it
//! (a sender caught mid-delivery). It verifies nothing itself; tests check signatures and
//! bodies.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as the receiver got it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The status it was answered with.
    pub answered: u16,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("webhook body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body))
        })
    }
}

#[derive(Debug, Clone)]
pub struct Webhook {
    /// `http://127.0.0.1:<port>/hook`
    pub url: String,
    requests: Arc<Mutex<Vec<Request>>>,
    status: Arc<Mutex<u16>>,
    hold: Hold,
    task: Arc<tokio::task::JoinHandle<()>>,
}

/// The answer to the next request, while a test holds it.
type Hold = Arc<Mutex<Option<tokio::sync::oneshot::Receiver<()>>>>;

/// Releases the answer [`Webhook::hold_next`] holds back (also when dropped).
#[derive(Debug)]
pub struct Release(
    #[allow(dead_code, reason = "dropped to release")] tokio::sync::oneshot::Sender<()>,
);

impl Webhook {
    /// Starts answering every request with `status`.
    pub async fn start(status: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let url = format!("http://{}/hook", listener.local_addr().expect("address"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(Mutex::new(status));
        let hold: Hold = Arc::default();
        let (r, s, h) = (requests.clone(), status.clone(), hold.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (r, s, h) = (r.clone(), s.clone(), h.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, r, s, h).await;
                });
            }
        });
        Self { url, requests, status, hold, task: Arc::new(task) }
    }

    /// Holds the answer to the next request (it is recorded at once, answered only when the
    /// returned [`Release`] is dropped); later requests are answered as usual.
    pub fn hold_next(&self) -> Release {
        let (tx, rx) = tokio::sync::oneshot::channel();
        *self.hold.lock().unwrap() = Some(rx);
        Release(tx)
    }

    pub fn set_status(&self, status: u16) {
        *self.status.lock().unwrap() = status;
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

async fn serve(
    mut stream: TcpStream,
    requests: Arc<Mutex<Vec<Request>>>,
    status: Arc<Mutex<u16>>,
    hold: Hold,
) -> std::io::Result<()> {
    loop {
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            let mut chunk = [0u8; 8192];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or_default().split(' ');
        let method = first.next().unwrap_or_default().to_owned();
        let path = first.next().unwrap_or_default().to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = buf[head_end + 4..].to_vec();
        while body.len() < length {
            let mut chunk = vec![0u8; length - body.len()];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            body.extend_from_slice(&chunk[..n]);
        }
        let answered = *status.lock().unwrap();
        requests.lock().unwrap().push(Request { method, path, headers, body, answered });
        let held = hold.lock().unwrap().take();
        if let Some(release) = held {
            let _ = release.await;
        }
        let answer = format!(
            "HTTP/1.1 {answered} Test\r\ncontent-length: 0\r\nconnection: keep-alive\r\n\r\n"
        );
        stream.write_all(answer.as_bytes()).await?;
    }
}
