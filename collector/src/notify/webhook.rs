//! Sends incidents to a generic HTTP(S) endpoint as signed JSON, for tools without a dedicated
//! integration. The body is the [`Notification`] with every text field bounded; the receiver
//! authenticates it by `x-vigil-signature: sha256=<hex>`, the HMAC-SHA256 under the shared
//! secret of `"<x-vigil-timestamp>.<body>"`, checked with [`verify`]. Signing the timestamp
//! with the body lets a receiver refuse replays by rejecting timestamps far from its clock;
//! `x-vigil-event-id` lets it drop the duplicates of at-least-once delivery.

use ring::hmac;

use super::payload::{
    DeliveryError, IncidentSnapshot, MAX_LABEL_BYTES, MAX_TEXT_BYTES, Notification,
    REQUEST_TIMEOUT, bounded, deliver, target_url,
};

pub const EVENT_ID_HEADER: &str = "x-vigil-event-id";
pub const TIMESTAMP_HEADER: &str = "x-vigil-timestamp";
pub const SIGNATURE_HEADER: &str = "x-vigil-signature";
const SIGNATURE_PREFIX: &str = "sha256=";

#[derive(Clone, PartialEq, Eq)]
pub struct WebhookTarget {
    pub url: String,
    /// The HMAC key shared with the receiver.
    pub secret: String,
}

impl std::fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookTarget").field("url", &self.url).field("secret", &"…").finish()
    }
}

/// The `x-vigil-signature` value for `body` sent at `timestamp` (Unix seconds):
/// `sha256=` and the lowercase hex HMAC-SHA256 under `secret` of `"<timestamp>.<body>"`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    let mut text = String::with_capacity(SIGNATURE_PREFIX.len() + 64);
    text.push_str(SIGNATURE_PREFIX);
    for byte in tag.as_ref() {
        text.push(char::from(HEX[usize::from(byte >> 4)]));
        text.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    text
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Checks an `x-vigil-signature` header against the `x-vigil-timestamp` header as received and
/// the raw body, in constant time. Checks the signature only: a receiver should also refuse a
/// timestamp far from its own clock (say ±5 min) and event ids it has seen.
pub fn verify(secret: &str, timestamp: &str, body: &[u8], header: &str) -> bool {
    let Some(tag) = header.strip_prefix(SIGNATURE_PREFIX).and_then(decode_hex) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut message = Vec::with_capacity(timestamp.len() + 1 + body.len());
    message.extend_from_slice(timestamp.as_bytes());
    message.push(b'.');
    message.extend_from_slice(body);
    hmac::verify(&key, &message, &tag).is_ok()
}

/// 64 hex digits (either case) to 32 bytes.
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    let digit = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    text.as_bytes().chunks(2).map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?)).collect()
}

/// The request body: `n` as JSON with the free text (summary, detail, resource) bounded to
/// [`MAX_TEXT_BYTES`] and every other string to [`MAX_LABEL_BYTES`].
pub fn body(n: &Notification) -> Vec<u8> {
    let text = |s: &str| bounded(s, MAX_TEXT_BYTES).into_owned();
    let short = |s: &str| bounded(s, MAX_LABEL_BYTES).into_owned();
    let i = &n.incident;
    let safe = Notification {
        event_id: short(&n.event_id),
        kind: n.kind,
        at_ms: n.at_ms,
        incident: IncidentSnapshot {
            number: short(&i.number),
            customer: short(&i.customer),
            site: short(&i.site),
            host_id: i.host_id.as_deref().map(short),
            hostname: i.hostname.as_deref().map(short),
            rule: short(&i.rule),
            resource: text(&i.resource),
            level: i.level,
            state: short(&i.state),
            tier: i.tier,
            summary: text(&i.summary),
            opened_at_ms: i.opened_at_ms,
            resolved_at_ms: i.resolved_at_ms,
            response_due_ms: i.response_due_ms,
            resolution_due_ms: i.resolution_due_ms,
        },
        detail: text(&n.detail),
    };
    serde_json::to_vec(&safe).expect("a Notification has only string keys and finite numbers")
}

/// Posts `n` signed to the target. `client` must be built with
/// `reqwest::redirect::Policy::none()`: a redirect would carry the signed body elsewhere. The
/// request carries its own [`REQUEST_TIMEOUT`].
pub async fn send(
    client: &reqwest::Client,
    target: &WebhookTarget,
    n: &Notification,
    now_ms: i64,
) -> Result<(), DeliveryError> {
    let url = target_url(&target.url)?;
    let body = body(n);
    let timestamp = now_ms.div_euclid(1000);
    let request = client
        .post(url.clone())
        .timeout(REQUEST_TIMEOUT)
        .header("content-type", "application/json")
        .header(EVENT_ID_HEADER, bounded(&n.event_id, MAX_LABEL_BYTES).as_ref())
        .header(TIMESTAMP_HEADER, timestamp.to_string())
        .header(SIGNATURE_HEADER, signature(&target.secret, timestamp, &body))
        .body(body);
    deliver(request, &url).await
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::super::testing::{self, notification};
    use super::*;

    const SECRET: &str = "s3cret-shared-with-the-receiver";

    /// Computed independently:
    /// `python3 -c 'import hmac,hashlib;print(hmac.new(b"s3cret-shared-with-the-receiver",
    ///  b"1764496800.{\"hello\":\"world\"}",hashlib.sha256).hexdigest())'`
    const KNOWN: &str = "sha256=dda6361fd8d6561b70df5c29e5e0e3ae2b8558793ef3ee24d8350e8a7a2ec897";

    #[test]
    fn signature_matches_an_independent_hmac() {
        let body = br#"{"hello":"world"}"#;
        assert_eq!(signature(SECRET, 1_764_496_800, body), KNOWN);
        assert!(verify(SECRET, "1764496800", body, KNOWN));
        assert!(verify(
            SECRET,
            "1764496800",
            body,
            &KNOWN.to_uppercase().replace("SHA256=", "sha256=")
        ));
    }

    #[test]
    fn verify_rejects_tampering() {
        let body = br#"{"hello":"world"}"#;
        assert!(!verify(SECRET, "1764496800", br#"{"hello":"World"}"#, KNOWN));
        assert!(!verify(SECRET, "1764496801", body, KNOWN));
        assert!(!verify("another secret", "1764496800", body, KNOWN));
        assert!(!verify(SECRET, "1764496800", body, &KNOWN[7..]));
        assert!(!verify(SECRET, "1764496800", body, &KNOWN.replace("sha256=", "sha1=")));
        assert!(!verify(SECRET, "1764496800", body, &KNOWN[..KNOWN.len() - 2]));
        assert!(!verify(SECRET, "1764496800", body, &format!("{KNOWN}00")));
        assert!(!verify(SECRET, "1764496800", body, &format!("{}zz", &KNOWN[..KNOWN.len() - 2])));
        assert!(!verify(SECRET, "1764496800", body, ""));
    }

    #[test]
    fn body_is_the_notification_with_bounded_text() {
        let n = notification();
        let parsed: Notification = serde_json::from_slice(&body(&n)).unwrap();
        assert_eq!(parsed, n);

        let mut hostile = n.clone();
        hostile.incident.summary = "`$(rm -rf /)`<script>\0\u{1}\r\n\"".repeat(50_000);
        assert!(hostile.incident.summary.len() >= 1 << 20);
        hostile.detail = "\0".repeat(1 << 20);
        hostile.incident.resource = "md0\n".repeat(5000);
        hostile.incident.hostname = Some("h".repeat(10_000));
        let bytes = body(&hostile);
        let parsed: Notification = serde_json::from_slice(&bytes).unwrap();
        assert!(parsed.incident.summary.len() <= MAX_TEXT_BYTES);
        assert!(
            parsed
                .incident
                .summary
                .starts_with("`$(rm -rf /)`<script>\u{FFFD}\u{FFFD}\u{FFFD}\n\"")
        );
        assert!(parsed.incident.summary.ends_with('…'));
        assert!(parsed.detail.len() <= MAX_TEXT_BYTES && parsed.detail.starts_with('\u{FFFD}'));
        assert!(parsed.incident.resource.len() <= MAX_TEXT_BYTES);
        assert!(parsed.incident.hostname.unwrap().len() <= MAX_LABEL_BYTES);
        assert!(bytes.len() < 4 * MAX_TEXT_BYTES, "{}", bytes.len());
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value["kind"], "opened");
    }

    #[test]
    fn debug_hides_the_secret() {
        let target =
            WebhookTarget { url: "https://hooks.example.test/x".into(), secret: SECRET.into() };
        assert!(!format!("{target:?}").contains(SECRET));
    }

    // --- against a real HTTP receiver ----------------------------------------------------------

    #[tokio::test]
    async fn delivers_a_signed_body_to_a_real_receiver() {
        let receiver = testing::Receiver::start(200, "ok").await;
        let target = WebhookTarget {
            url: format!("{}/hooks/vigil?x=1", receiver.url),
            secret: SECRET.into(),
        };
        let mut n = notification();
        n.incident.summary = "x\0".repeat(1 << 19);
        let now_ms = 1_764_496_812_345;
        send(&testing::client(), &target, &n, now_ms).await.unwrap();

        let request = receiver.request().await;
        assert_eq!(request.method, "POST");
        assert_eq!(request.target, "/hooks/vigil?x=1");
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.header(EVENT_ID_HEADER), Some("INC-000042/7"));
        assert_eq!(request.header(TIMESTAMP_HEADER), Some("1764496812"));
        let signature = request.header(SIGNATURE_HEADER).unwrap();
        assert!(verify(SECRET, "1764496812", &request.body, signature), "{signature}");
        assert!(!verify("wrong", "1764496812", &request.body, signature));
        let mut tampered = request.body.clone();
        tampered[10] ^= 1;
        assert!(!verify(SECRET, "1764496812", &tampered, signature));

        assert_eq!(request.body, body(&n));
        let received: Notification = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(received.event_id, n.event_id);
        assert_eq!(received.incident.number, "INC-000042");
        assert!(received.incident.summary.len() <= MAX_TEXT_BYTES);
        assert!(received.incident.summary.starts_with("x\u{FFFD}x\u{FFFD}"));
    }

    #[tokio::test]
    async fn statuses_are_classified() {
        let cases = [
            (200, None),
            (202, None),
            (204, None),
            (302, Some(false)),
            (400, Some(false)),
            (401, Some(false)),
            (404, Some(false)),
            (408, Some(true)),
            (429, Some(true)),
            (500, Some(true)),
            (503, Some(true)),
        ];
        let client = testing::client();
        for (status, retry) in cases {
            let answer = format!("answer {status}: {}", "z".repeat(1000));
            let receiver = testing::Receiver::start(status, &answer).await;
            let target = WebhookTarget { url: receiver.url.clone(), secret: SECRET.into() };
            let outcome = send(&client, &target, &notification(), 0).await;
            assert_eq!(
                outcome.as_ref().err().map(DeliveryError::is_retry),
                retry,
                "{status}: {outcome:?}"
            );
            if let Err(err) = outcome {
                let message = err.to_string();
                let prefix = format!("{}/: HTTP {status} ", receiver.url);
                assert!(message.starts_with(&prefix), "{message}");
                let quoted = message.split_once(": answer").map(|(_, q)| q).unwrap_or_default();
                assert!(quoted.starts_with(&format!(" {status}: zzz")), "{message}");
                assert!(quoted.len() + "answer".len() <= 200, "{message}");
            }
            receiver.request().await;
        }
    }

    #[tokio::test]
    async fn nothing_listening_is_retried() {
        let target = WebhookTarget { url: testing::unused_local_url(), secret: SECRET.into() };
        let err = send(&testing::client(), &target, &notification(), 0).await.unwrap_err();
        assert!(err.is_retry(), "{err}");
        let message = err.to_string();
        assert!(message.starts_with(&format!("{}/: cannot connect", target.url)), "{message}");
    }

    #[tokio::test]
    async fn invalid_url_is_permanent() {
        let target = WebhookTarget { url: "hooks.example.test/x".into(), secret: SECRET.into() };
        let err = send(&testing::client(), &target, &notification(), 0).await.unwrap_err();
        assert!(!err.is_retry(), "{err}");
        assert!(
            err.to_string().starts_with("invalid target URL \"hooks.example.test/x\""),
            "{err}"
        );
    }

    /// A caller that forgot `Policy::none()`: the redirect is followed (so the payload did go
    /// elsewhere; that is why the client must refuse redirects), but not reported as delivered.
    #[tokio::test]
    async fn a_followed_redirect_to_another_host_is_not_success() {
        let elsewhere = testing::Receiver::start(200, "ok").await;
        let port = elsewhere.url.rsplit(':').next().unwrap();
        let location = format!("http://localhost:{port}/stolen");
        let redirecting = testing::Receiver::start_with(307, "", &[("location", &location)]).await;
        let target = WebhookTarget { url: redirecting.url.clone(), secret: SECRET.into() };
        let careless = testing::client_builder()
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .unwrap();
        let err = send(&careless, &target, &notification(), 0).await.unwrap_err();
        assert!(!err.is_retry(), "{err}");
        assert!(err.to_string().contains("redirected to http://localhost:"), "{err}");
        assert_eq!(elsewhere.request().await.target, "/stolen");
    }
}
