//! vigilctl: the operator's terminal view of the collector over its HTTP API. Commands fetch
//! JSON and render it as a readable table (or pass it through with `--json` for scripts).
//! Errors name what failed and exit non-zero: 1 for a server-side failure or an unreachable
//! collector, 2 for bad arguments.

pub mod contract;
pub mod incidents;
pub mod tasks;

use std::fmt::Write as _;

use serde_json::Value;

use crate::sanitize::{for_terminal, for_terminal_text, for_terminal_within};

#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("cannot reach the collector at {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url}: HTTP {status}: {message}")]
    Api { url: String, status: u16, message: String },
    #[error("{url}: unreadable answer: {detail}")]
    BadAnswer { url: String, detail: String },
    #[error("{0}")]
    Usage(String),
}

impl CtlError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => 2,
            _ => 1,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl Client {
    /// A client that sends `token` as `Authorization: Bearer` and, for an `https://` server,
    /// trusts `ca_cert` (PEM; the collector's `<data_dir>/tls/ca.crt`) and nothing else. A
    /// token goes over plain `http://` only to a loopback address, or with `insecure_http`;
    /// refused before any connection is made.
    pub fn with_token(
        server: &str,
        token: Option<String>,
        ca_cert: Option<&std::path::Path>,
        insecure_http: bool,
    ) -> Result<Self, CtlError> {
        let mut client = Self::new(server)?;
        if token.is_some() && !insecure_http && !token_may_travel(&client.base) {
            return Err(CtlError::Usage(format!(
                "--server {server} is plain http:// to a host that is not loopback: the API \
                 token would cross the network unencrypted. Use https:// (set http.tls = true \
                 on the collector) or, if the network is trusted, pass --insecure-http"
            )));
        }
        client.token = token;
        if client.base.starts_with("https://") {
            let Some(path) = ca_cert else {
                return Err(CtlError::Usage(format!(
                    "--server {server} is HTTPS: pass --ca-cert with the collector's CA \
                     certificate (<data_dir>/tls/ca.crt) or the CA that issued http.cert"
                )));
            };
            let ca = vigil_tls::pem::read_certs(path)
                .map_err(|e| CtlError::Usage(format!("--ca-cert: {e}")))?
                .into_iter()
                .next()
                .ok_or_else(|| {
                    CtlError::Usage(format!("--ca-cert {}: no certificate", path.display()))
                })?;
            let mut tls = vigil_tls::client_config(ca, None)
                .map_err(|e| CtlError::Usage(format!("--ca-cert: {e}")))?;
            tls.alpn_protocols = vec![b"http/1.1".to_vec()];
            client.http = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(15))
                .use_preconfigured_tls(tls)
                .build()
                .map_err(|source| CtlError::Unreachable { url: client.base.clone(), source })?;
        }
        Ok(client)
    }

    pub fn new(server: &str) -> Result<Self, CtlError> {
        // (See `with_token` for what may carry a token.)
        // reqwest's TLS support looks up the process-wide rustls provider even for http://.
        vigil_tls::install_crypto_provider();
        let base = server.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(CtlError::Usage(format!(
                "--server {server:?} must start with http:// or https://"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(15))
            .build()
            .map_err(|source| CtlError::Unreachable { url: base.clone(), source })?;
        Ok(Self { base, http, token: None })
    }

    pub async fn get(&self, path: &str) -> Result<Value, CtlError> {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<Value, CtlError> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Result<Value, CtlError> {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, CtlError> {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, CtlError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|source| CtlError::Unreachable { url: url.clone(), source })?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|e| CtlError::BadAnswer {
            url: url.clone(),
            detail: for_terminal_text(&e.to_string()),
        })?;
        if !status.is_success() {
            // The message may quote what a host or client sent.
            let message =
                for_terminal_text(body["error"]["message"].as_str().unwrap_or("no message"));
            return Err(CtlError::Api { url, status: status.as_u16(), message });
        }
        Ok(body)
    }

    /// Resolves a full host id or a unique prefix of one (as the table shows it).
    pub async fn resolve_host(&self, id_or_prefix: &str) -> Result<String, CtlError> {
        if uuid::Uuid::parse_str(id_or_prefix).is_ok() {
            return Ok(id_or_prefix.to_owned());
        }
        let list = self.get("/api/v1/hosts").await?;
        let matches: Vec<&str> = list["hosts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| h["id"].as_str())
            .filter(|id| id.starts_with(id_or_prefix))
            .collect();
        match matches.as_slice() {
            [one] => Ok((*one).to_owned()),
            [] => Err(CtlError::Usage(format!("no host id starts with {id_or_prefix:?}"))),
            _ => Err(CtlError::Usage(format!(
                "{id_or_prefix:?} matches {} hosts; give more of the id",
                matches.len()
            ))),
        }
    }
}

/// A JSON value as one printable cell: a string through [`for_terminal`] (host-controlled text
/// is shown, never interpreted), `-` for null, anything else as JSON.
pub fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => for_terminal(s),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// [`cell`] at most `width` characters wide, `…` marking a cut.
pub fn cell_within(v: &Value, width: usize) -> String {
    match v {
        Value::String(s) => for_terminal_within(s, width),
        other => for_terminal_within(&cell(other), width),
    }
}

/// `--json` output: pretty JSON in which every character [`crate::sanitize::is_unsafe`] holds
/// back from a terminal (serde leaves DEL, C1 controls and bidi overrides raw) is written as a
/// JSON `\uXXXX` escape, so the document means the same and the terminal shows it inertly.
pub fn json_for_terminal(value: &Value) -> String {
    let mut out = String::new();
    for c in format!("{value:#}").chars() {
        if crate::sanitize::is_unsafe(c) && c != '\n' {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        } else {
            out.push(c);
        }
    }
    out.push('\n');
    out
}

/// A string field as a cell, `-` when missing or empty.
fn text(v: &Value) -> String {
    v.as_str().filter(|s| !s.is_empty()).map_or_else(|| "-".into(), for_terminal)
}

/// Whether a bearer token may be sent to `base`: over `https://`, or over `http://` to a
/// loopback address (127.0.0.0/8, ::1, `localhost`) only.
pub fn token_may_travel(base: &str) -> bool {
    if base.starts_with("https://") {
        return true;
    }
    let Ok(url) = reqwest::Url::parse(base) else { return false };
    let Some(host) = url.host_str() else { return false };
    match host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost") || host.eq_ignore_ascii_case("localhost."),
    }
}

fn pct(v: &Value) -> String {
    v.as_f64().map(|r| format!("{:.0}%", r * 100.0)).unwrap_or_else(|| "-".into())
}

pub(crate) fn ago(last_seen_ms: Option<i64>, now_ms: i64) -> String {
    let Some(t) = last_seen_ms else { return "never".into() };
    let secs = ((now_ms - t).max(0) / 1000) as u64;
    match secs {
        s if s < 120 => format!("{s}s ago"),
        s if s < 7200 => format!("{}m ago", s / 60),
        s if s < 172_800 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86_400),
    }
}

fn gib(v: &Value) -> String {
    v.as_u64()
        .filter(|b| *b > 0)
        .map(|b| format!("{:.1}G", b as f64 / 1024.0 / 1024.0 / 1024.0))
        .unwrap_or_else(|| "-".into())
}

/// Renders `GET /api/v1/hosts` as a table, one host per line.
pub fn hosts_table(list: &Value, now_ms: i64) -> String {
    let headers = [
        "ID",
        "HOSTNAME",
        "CUSTOMER/SITE",
        "STATUS",
        "LAST SEEN",
        "CPU",
        "MEM",
        "DISK",
        "LOAD",
        "CORES",
        "RAM",
        "OS",
    ];
    let mut rows: Vec<[String; 12]> = Vec::new();
    for h in list["hosts"].as_array().into_iter().flatten() {
        let r = &h["readings"];
        rows.push([
            for_terminal(&h["id"].as_str().unwrap_or("").chars().take(8).collect::<String>()),
            text(&h["hostname"]),
            format!("{}/{}", text(&h["customer"]), text(&h["site"])),
            text(&h["status"]),
            ago(h["last_seen_unix_ms"].as_i64(), now_ms),
            pct(&r["cpu_usage_ratio"]),
            pct(&r["memory_used_ratio"]),
            pct(&r["filesystem_max_used_ratio"]),
            r["load1"].as_f64().map(|l| format!("{l:.2}")).unwrap_or_else(|| "-".into()),
            h["cpu_cores"]
                .as_u64()
                .filter(|c| *c > 0)
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into()),
            gib(&h["memory_total_bytes"]),
            text(&h["os"]),
        ]);
    }
    if rows.is_empty() {
        return "no hosts yet: enrol an agent (`vigilctl tokens create --help`)\n".to_owned();
    }
    table(&headers, rows.iter().map(|r| r.to_vec()).collect())
}

/// Left-aligned columns separated by two spaces, headers first.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[&str]| {
        let last = cells.len() - 1;
        for (i, cell) in cells.iter().enumerate() {
            if i == last {
                let _ = writeln!(out, "{cell}");
            } else {
                let _ = write!(out, "{cell:<width$}  ", width = widths[i]);
            }
        }
    };
    line(&mut out, headers);
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&mut out, &cells);
    }
    out
}

/// Renders `GET /api/v1/hosts/{id}` for a person.
pub fn host_detail(h: &Value, now_ms: i64) -> String {
    let f = &h["facts"];
    let r = &h["readings"];
    let s = text;
    let mut out = String::new();
    let _ = writeln!(out, "Host        {} ({})", s(&h["hostname"]), s(&h["id"]));
    let _ = writeln!(out, "Customer    {} / site {}", s(&h["customer"]), s(&h["site"]));
    let _ = writeln!(
        out,
        "Status      {} (last report {}, every {}s)",
        s(&h["status"]),
        ago(h["last_seen_unix_ms"].as_i64(), now_ms),
        cell(&h["interval_seconds"])
    );
    let _ = writeln!(
        out,
        "OS          {} (kernel {}, {})",
        s(&f["osName"]),
        s(&f["kernel"]),
        s(&f["architecture"])
    );
    let _ = writeln!(
        out,
        "Machine     {} {} (serial {}), BIOS {} {}",
        s(&f["machineVendor"]),
        s(&f["machineModel"]),
        s(&f["machineSerial"]),
        s(&f["biosVendor"]),
        s(&f["biosVersion"])
    );
    let _ = writeln!(
        out,
        "CPU         {} x {}",
        f["cpuCores"].as_u64().unwrap_or(0),
        s(&f["cpuModel"])
    );
    let _ = writeln!(out, "Memory      {}", gib(&h["memory_total_bytes"]));
    let _ = writeln!(out, "Agent       {}", s(&h["agent_version"]));
    let _ = writeln!(
        out,
        "Readings    cpu {}  mem {}  swap {}  fullest fs {}  load1 {}  max temp {}",
        pct(&r["cpu_usage_ratio"]),
        pct(&r["memory_used_ratio"]),
        pct(&r["swap_used_ratio"]),
        pct(&r["filesystem_max_used_ratio"]),
        r["load1"].as_f64().map(|l| format!("{l:.2}")).unwrap_or_else(|| "-".into()),
        r["temperature_max_celsius"]
            .as_f64()
            .map(|t| format!("{t:.0}°C"))
            .unwrap_or_else(|| "-".into()),
    );
    if let Some(probes) = h["latest_report"]["probes"].as_array() {
        let _ = writeln!(out, "Probes");
        for p in probes {
            let status = for_terminal(
                &p["status"].as_str().unwrap_or("").trim_start_matches("STATUS_").to_lowercase(),
            );
            let message = for_terminal_text(p["message"].as_str().unwrap_or(""));
            let _ = writeln!(out, "  {:<12} {:<12} {}", s(&p["probe"]), status, message);
        }
    }
    if let Some(instances) = h["instances"].as_array() {
        let _ = writeln!(out, "Instances");
        for i in instances {
            let _ = writeln!(
                out,
                "  {}  last seq {}  last seen {}",
                s(&i["instance"]),
                cell(&i["max_seq"]),
                ago(i["last_seen_ms"].as_i64(), now_ms)
            );
        }
    }
    if let Some(events) = h["events"].as_array().filter(|e| !e.is_empty()) {
        let _ = writeln!(out, "Events");
        for e in events {
            let _ = writeln!(
                out,
                "  {}  {}  {}",
                ago(e["at_ms"].as_i64(), now_ms),
                s(&e["kind"]),
                e["detail"].as_str().map_or_else(|| "-".into(), for_terminal_text)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn table_shows_short_id_status_and_readings() {
        let list = json!({"hosts": [{
            "id": "0b7e2f7a-1111-4222-8333-944455556666", "hostname": "srv01",
            "customer": "default", "site": "default", "status": "up",
            "last_seen_unix_ms": 95_000, "cpu_cores": 8, "memory_total_bytes": 17_179_869_184u64,
            "os": "Debian GNU/Linux 12 (bookworm)",
            "readings": {"cpu_usage_ratio": 0.123, "memory_used_ratio": 0.5, "load1": 0.42,
                         "filesystem_max_used_ratio": 0.87}
        }]});
        let table = hosts_table(&list, 100_000);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2, "{table}");
        assert!(lines[0].starts_with("ID        HOSTNAME"), "{table}");
        for cell in [
            "0b7e2f7a",
            "srv01",
            "default/default",
            "up",
            "5s ago",
            "12%",
            "50%",
            "87%",
            "0.42",
            "16.0G",
            "Debian GNU/Linux 12 (bookworm)",
        ] {
            assert!(lines[1].contains(cell), "missing {cell} in {table}");
        }
    }

    #[test]
    fn host_strings_are_shown_not_interpreted() {
        let list = json!({"hosts": [{
            "id": "0b7e2f7a-1111-4222-8333-944455556666",
            "hostname": "srv\u{1b}]0;owned\u{7}\nFAKE ROW", "customer": "a\u{202e}b",
            "site": "s\r", "status": "up", "os": "\u{9b}2J", "readings": {}
        }]});
        let table = hosts_table(&list, 0);
        assert_eq!(table.lines().count(), 2, "{table}");
        assert!(table.chars().all(|c| c == '\n' || !crate::sanitize::is_unsafe(c)), "{table:?}");
        assert!(table.contains("srv\\u{1b}]0;owned\\u{7}\\nFAKE ROW"), "{table}");

        let detail = host_detail(
            &json!({"hostname": "h\u{1b}[2J", "facts": {"osName": "os\nKernel fake",
                "kernel": "\u{2066}k"}, "readings": {},
                "latest_report": {"probes": [{"probe": "p\u{7f}", "message": "m\r\n"}]},
                "events": [{"kind": "k", "detail": "d\u{1b}c"}]}),
            0,
        );
        assert!(detail.chars().all(|c| c == '\n' || !crate::sanitize::is_unsafe(c)), "{detail:?}");
        assert!(detail.contains("os\\nKernel fake"), "{detail}");

        let json = json_for_terminal(&json!({"h": "a\u{9b}\u{202e}\u{e0041}\u{1b}"}));
        assert!(json.chars().all(|c| c == '\n' || !crate::sanitize::is_unsafe(c)), "{json:?}");
        let back: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back["h"], "a\u{9b}\u{202e}\u{e0041}\u{1b}");
    }

    #[test]
    fn a_token_travels_over_plain_http_to_loopback_only() {
        for base in [
            "http://127.0.0.1:7701",
            "http://127.9.9.9",
            "http://[::1]:7701",
            "http://localhost:7701",
            "http://LOCALHOST",
            "https://collector.example:7701",
            "https://192.0.2.1",
        ] {
            assert!(token_may_travel(base), "{base}");
        }
        for base in [
            "http://192.0.2.1:1",
            "http://collector.example",
            "http://localhost.evil.example",
            "http://[::ffff:192.0.2.1]",
            "http://128.0.0.1",
            "http://10.0.0.1",
            "http://0.0.0.0",
        ] {
            assert!(!token_may_travel(base), "{base}");
        }
    }

    #[test]
    fn empty_fleet_says_what_to_do() {
        assert!(hosts_table(&json!({"hosts": []}), 0).starts_with("no hosts yet"));
    }
}
