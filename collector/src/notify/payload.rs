//! What the outbox hands a sender, and what a sender hands back. A [`Notification`] is one
//! incident event with a snapshot of the incident; text in it may come from an agent (hostname,
//! resource, summary), so every sender passes it through [`bounded`] before it leaves the
//! collector. [`DeliveryError`] is the one outcome table of all senders: retry later or give up,
//! decided here once from the transport error or the HTTP status, so the senders agree.

use std::borrow::Cow;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Bound of free text an agent can influence: summary, detail, resource.
pub const MAX_TEXT_BYTES: usize = 4096;
/// Bound of one Alertmanager label value (and of the short fields of a webhook body).
pub const MAX_LABEL_BYTES: usize = 256;
/// How long one delivery attempt may take, from connecting until the answer has been read.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of a receiver's error answer a [`DeliveryError`] quotes.
pub const MAX_QUOTED_BODY_BYTES: usize = 200;

const ELLIPSIS: &str = "…";
const REPLACEMENT: char = '\u{FFFD}';

/// One incident event for one receiver. `event_id` is stable across retries, so a receiver can
/// drop the duplicates that at-least-once delivery produces.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Notification {
    /// `INC-000042/7`: incident number / timeline entry id.
    pub event_id: String,
    pub kind: EventKind,
    /// When it happened, by the collector's clock.
    pub at_ms: i64,
    pub incident: IncidentSnapshot,
    /// E.g. "response due 2026-11-30T10:05:00Z missed; escalated to tier 2".
    pub detail: String,
}

impl Notification {
    /// True once the incident is resolved or closed. The incident's state decides, not the event
    /// kind, so an acknowledgement delivered after the resolution does not re-fire an alert.
    pub fn is_resolved(&self) -> bool {
        self.incident.resolved_at_ms.is_some()
            || matches!(self.kind, EventKind::Resolved | EventKind::Closed)
    }
}

/// The incident as it was when the event happened.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IncidentSnapshot {
    /// `INC-000042`
    pub number: String,
    pub customer: String,
    pub site: String,
    pub host_id: Option<String>,
    pub hostname: Option<String>,
    /// `raid.degraded`
    pub rule: String,
    /// `md0`
    pub resource: String,
    /// 1–4 (L1–L4).
    pub level: u8,
    pub state: String,
    pub tier: u8,
    pub summary: String,
    pub opened_at_ms: i64,
    pub resolved_at_ms: Option<i64>,
    pub response_due_ms: Option<i64>,
    pub resolution_due_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Opened,
    Reopened,
    LevelChanged,
    Acknowledged,
    Assigned,
    /// A response or resolution deadline is near.
    Warning,
    Escalated,
    Resolved,
    Closed,
}

impl EventKind {
    pub const ALL: [EventKind; 9] = [
        Self::Opened,
        Self::Reopened,
        Self::LevelChanged,
        Self::Acknowledged,
        Self::Assigned,
        Self::Warning,
        Self::Escalated,
        Self::Resolved,
        Self::Closed,
    ];

    /// The stable snake_case name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Opened => "opened",
            Self::Reopened => "reopened",
            Self::LevelChanged => "level_changed",
            Self::Acknowledged => "acknowledged",
            Self::Assigned => "assigned",
            Self::Warning => "warning",
            Self::Escalated => "escalated",
            Self::Resolved => "resolved",
            Self::Closed => "closed",
        }
    }
}

/// Bounds a string that may come from an agent. The result is at most `max` bytes, the "…"
/// included: a longer text is cut on a char boundary and "…" appended (with no "…" when `max`
/// is below its 3 bytes). Control characters other than `\n` and `\t` are replaced by U+FFFD,
/// and so are the Unicode bidi embedding/override/isolate controls and the line and paragraph
/// separators, which would let an agent reorder or break how the text displays in an operator's
/// tool. Borrows when nothing needs changing.
pub fn bounded(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max && !text.chars().any(needs_replacing) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len().min(max));
    // Length of the longest prefix that still leaves room for the ellipsis.
    let mut room_for_ellipsis = 0;
    for c in text.chars() {
        let c = if needs_replacing(c) { REPLACEMENT } else { c };
        if out.len() + c.len_utf8() > max {
            if max >= ELLIPSIS.len() {
                out.truncate(room_for_ellipsis);
                out.push_str(ELLIPSIS);
            }
            return Cow::Owned(out);
        }
        out.push(c);
        if out.len() + ELLIPSIS.len() <= max {
            room_for_ellipsis = out.len();
        }
    }
    Cow::Owned(out)
}

fn needs_replacing(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

// ---------------------------------------------------------------------------------------------
// Delivery outcome
// ---------------------------------------------------------------------------------------------

/// Why a delivery did not happen, and whether trying again can help. Messages name the target
/// URL (without user info or query, which may hold credentials), the HTTP status and at most
/// [`MAX_QUOTED_BODY_BYTES`] of the receiver's answer.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// Connection refused or reset, timeout, 5xx, 408, 429: try again later.
    #[error("{0}")]
    Retry(String),
    /// Any other 4xx, a redirect, an invalid target URL: retrying will not help.
    #[error("{0}")]
    Permanent(String),
}

impl DeliveryError {
    pub fn is_retry(&self) -> bool {
        matches!(self, Self::Retry(_))
    }
}

/// Parses a configured target URL; only absolute `http` and `https` URLs are accepted.
pub(crate) fn target_url(text: &str) -> Result<reqwest::Url, DeliveryError> {
    let invalid = |why: &str| {
        DeliveryError::Permanent(format!(
            "invalid target URL {:?}: {why}",
            bounded(text, MAX_LABEL_BYTES)
        ))
    };
    let url = reqwest::Url::parse(text).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("no host"));
    }
    Ok(url)
}

/// The URL as error messages show it: no user info, and the query (which may carry a token)
/// shown as `?…`.
pub(crate) fn shown(url: &reqwest::Url) -> String {
    let mut clean = url.clone();
    let _ = clean.set_username("");
    let _ = clean.set_password(None);
    clean.set_fragment(None);
    let had_query = clean.query().is_some();
    clean.set_query(None);
    let mut text = clean.to_string();
    if had_query {
        text.push_str("?…");
    }
    text
}

/// Sends `request` (method, URL, headers, body and [`REQUEST_TIMEOUT`] already set) to `url`
/// and classifies the outcome. The client must not follow redirects: a redirect would carry
/// the payload (and a webhook's signature) to wherever the receiver points. An answer from
/// another origin than `url`, which only a redirect-following client can produce, is treated
/// as a permanent failure all the same.
pub(crate) async fn deliver(
    request: reqwest::RequestBuilder,
    url: &reqwest::Url,
) -> Result<(), DeliveryError> {
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => return Err(transport_error(url, &e)),
    };
    let status = response.status();
    let answered = response.url();
    if (answered.scheme(), answered.host_str(), answered.port_or_known_default())
        != (url.scheme(), url.host_str(), url.port_or_known_default())
    {
        return Err(DeliveryError::Permanent(format!(
            "{}: redirected to {}; the HTTP client must be built with \
             reqwest::redirect::Policy::none()",
            shown(url),
            shown(answered)
        )));
    }
    if status.is_success() {
        return Ok(());
    }
    let quoted = quote_body(response).await;
    Err(status_error(url, status, &quoted))
}

/// The outcome for a non-2xx status.
pub(crate) fn status_error(
    url: &reqwest::Url,
    status: reqwest::StatusCode,
    quoted_body: &str,
) -> DeliveryError {
    let mut message = format!("{}: HTTP {status}", shown(url));
    if status.is_redirection() {
        message.push_str(" (redirects are not followed)");
    }
    if !quoted_body.is_empty() {
        message.push_str(": ");
        message.push_str(quoted_body);
    }
    let retry = status.is_server_error()
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
    if retry { DeliveryError::Retry(message) } else { DeliveryError::Permanent(message) }
}

fn transport_error(url: &reqwest::Url, error: &reqwest::Error) -> DeliveryError {
    // reqwest's own message repeats the full URL (query included); say what happened instead,
    // followed by the causes.
    let what = if error.is_timeout() {
        format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())
    } else if error.is_connect() {
        "cannot connect".to_owned()
    } else if error.is_builder() {
        "cannot build the request".to_owned()
    } else if error.is_redirect() {
        "redirect refused".to_owned()
    } else {
        "error sending the request".to_owned()
    };
    let mut message = format!("{}: {what}", shown(url));
    let mut cause = std::error::Error::source(error);
    while let Some(e) = cause {
        message.push_str(": ");
        message.push_str(&e.to_string());
        cause = e.source();
    }
    let message = bounded(&message, MAX_TEXT_BYTES).into_owned();
    if error.is_builder() || error.is_redirect() {
        DeliveryError::Permanent(message)
    } else {
        DeliveryError::Retry(message)
    }
}

/// At most [`MAX_QUOTED_BODY_BYTES`] of the answer, read only that far, made printable.
async fn quote_body(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < MAX_QUOTED_BODY_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    bounded(text.trim(), MAX_QUOTED_BODY_BYTES).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_kinds_serialize_as_their_names() {
        for kind in EventKind::ALL {
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, serde_json::Value::from(kind.as_str()));
            assert_eq!(serde_json::from_value::<EventKind>(json).unwrap(), kind);
        }
    }

    #[test]
    fn bounded_borrows_clean_short_text() {
        let text = "disk md0 degraded\n\tsee `cat /proc/mdstat`";
        assert!(matches!(bounded(text, 100), Cow::Borrowed(t) if t == text));
        assert!(matches!(bounded("", 0), Cow::Borrowed("")));
    }

    #[test]
    fn bounded_cuts_on_a_char_boundary_with_ellipsis_inside_the_bound() {
        assert_eq!(bounded("abcdef", 6), "abcdef");
        assert_eq!(bounded("abcdefg", 6), "abc…");
        // "é" is 2 bytes: 4 of them are 8 bytes; 7 allows "éé" (4) + "…" (3).
        assert_eq!(bounded("éééé", 7), "éé…");
        assert_eq!(bounded("éééé", 6), "é…");
        // Below the ellipsis' own size: cut without it.
        assert_eq!(bounded("abcdef", 2), "ab");
        assert_eq!(bounded("éé", 1), "");
        assert_eq!(bounded("abc", 0), "");
    }

    #[test]
    fn bounded_replaces_control_characters_but_keeps_newline_and_tab() {
        let text = "a\0b\x07c\rd\x1be[31m\x7f\u{85}\n\t\u{202E}evil\u{2028}x";
        assert_eq!(
            bounded(text, 1000),
            "a\u{FFFD}b\u{FFFD}c\u{FFFD}d\u{FFFD}e[31m\u{FFFD}\u{FFFD}\n\t\u{FFFD}evil\u{FFFD}x"
        );
        // Replacement grows the text (1 byte to 3); the bound holds on the result.
        let nuls = "\0".repeat(100);
        let out = bounded(&nuls, 10);
        assert_eq!(out, "\u{FFFD}\u{FFFD}…");
        assert!(out.len() <= 10);
    }

    #[test]
    fn bounded_hostile_megabyte_is_valid_json_under_the_bound() {
        let unit = "line\n`id`$(rm -rf /)<script>alert(1)</script>\0\x01\x1b]0;x\x07\"\\é🦀";
        let mut text = String::new();
        while text.len() < 1 << 20 {
            text.push_str(unit);
        }
        for max in [MAX_TEXT_BYTES, MAX_LABEL_BYTES, 7, 3] {
            let out = bounded(&text, max);
            assert!(out.len() <= max, "{} > {max}", out.len());
            assert!(out.ends_with(ELLIPSIS), "{out:?}");
            assert!(!out.chars().any(|c| c.is_control() && c != '\n' && c != '\t'));
            let json = serde_json::to_string(&serde_json::json!({ "summary": out })).unwrap();
            let back: serde_json::Value = serde_json::from_str(&json).unwrap();
            assert_eq!(back["summary"].as_str().unwrap(), out);
        }
        // The visible hostile parts survive as inert text.
        let out = bounded(&text, MAX_TEXT_BYTES);
        assert!(out.starts_with("line\n`id`$(rm -rf /)<script>alert(1)</script>\u{FFFD}"));
    }

    #[test]
    fn is_resolved_follows_the_incident_state() {
        let mut n = super::super::testing::notification();
        assert!(!n.is_resolved());
        n.kind = EventKind::Acknowledged;
        n.incident.resolved_at_ms = Some(n.at_ms);
        assert!(n.is_resolved());
        n.incident.resolved_at_ms = None;
        n.kind = EventKind::Closed;
        assert!(n.is_resolved());
    }

    #[test]
    fn status_classification() {
        let url = target_url("http://user:pw@127.0.0.1:9/hook?token=s3cret").unwrap();
        let cases = [
            (301, false),
            (400, false),
            (401, false),
            (404, false),
            (408, true),
            (409, false),
            (422, false),
            (429, true),
            (500, true),
            (502, true),
            (503, true),
        ];
        for (code, retry) in cases {
            let status = reqwest::StatusCode::from_u16(code).unwrap();
            let err = status_error(&url, status, "nope");
            assert_eq!(err.is_retry(), retry, "{code}");
            let message = err.to_string();
            assert!(message.starts_with("http://127.0.0.1:9/hook?…: HTTP "), "{message}");
            assert!(message.contains(&code.to_string()), "{message}");
            assert!(message.ends_with(": nope"), "{message}");
            assert!(!message.contains("s3cret") && !message.contains("pw"), "{message}");
        }
    }

    #[test]
    fn invalid_target_urls_are_permanent() {
        for text in ["", "not a url", "127.0.0.1:9093", "ftp://example.test/", "file:///etc/passwd"]
        {
            let err = target_url(text).unwrap_err();
            assert!(!err.is_retry(), "{text}");
            assert!(err.to_string().starts_with("invalid target URL "), "{err}");
        }
        assert!(target_url("https://am.example.test:9093/prefix/").is_ok());
    }
}
