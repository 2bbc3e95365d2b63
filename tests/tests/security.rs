//! An agent can only ever report as itself: with real TLS on loopback, every way of reporting
//! without a valid identity of one's own is refused, logged, and stores nothing — no client
//! certificate, an expired or not-yet-valid one, one from a foreign CA, a revoked host (even on a
//! stream already open), host A's certificate claiming host B, a plaintext client, a reused or
//! expired enrolment token. The operator API needs a token whose role and customer allow the
//! call, and every change lands in the audit log.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use vigil_e2e::Collector;
use vigil_e2e::identity::{self, TestIdentity};
use vigil_proto::v1::{
    AgentMessage, CollectorMessage, Hello, Report, agent_message, collector_message,
    ingest_client::IngestClient,
};

fn hello(who: &str, claim: &str) -> AgentMessage {
    AgentMessage {
        kind: Some(agent_message::Kind::Hello(Hello {
            agent_instance: "00000000-0000-4000-8000-000000000001".into(),
            agent_version: "test".into(),
            interval_seconds: 10,
            machine_id: who.into(),
            hostname: who.into(),
            host_id: claim.into(),
            ..Default::default()
        })),
    }
}

fn report(seq: u64) -> AgentMessage {
    AgentMessage {
        kind: Some(agent_message::Kind::Report(Report {
            agent_instance: "00000000-0000-4000-8000-000000000001".into(),
            seq,
            collected_at_unix_ms: 1,
            ..Default::default()
        })),
    }
}

/// Opens a report stream on `channel` with `hello` and one report; returns the first answer
/// or the error, whichever happens.
async fn try_report(
    channel: tonic::transport::Channel,
    hello: AgentMessage,
) -> Result<CollectorMessage, tonic::Status> {
    let (tx, rx) = mpsc::channel(4);
    tx.send(hello).await.unwrap();
    tx.send(report(1)).await.unwrap();
    let mut inbound =
        IngestClient::new(channel).report(ReceiverStream::new(rx)).await?.into_inner();
    match tokio::time::timeout(Duration::from_secs(10), inbound.message()).await {
        Ok(Ok(Some(message))) => Ok(message),
        Ok(Ok(None)) => Err(tonic::Status::cancelled("stream ended")),
        Ok(Err(status)) => Err(status),
        Err(_) => Err(tonic::Status::deadline_exceeded("no answer")),
    }
}

async fn receipt_count(collector: &Collector) -> usize {
    let mut n = 0;
    for host in collector.hosts().await {
        let id = host["id"].as_str().unwrap();
        let r = collector.get(&format!("/api/v1/hosts/{id}/receipts")).await;
        n += r["receipts"].as_array().map_or(0, Vec::len);
    }
    n
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_valid_certificate_of_ones_own_may_report() {
    let tmp = tempfile::tempdir().unwrap();
    let collector = Collector::start(&tmp.path().join("data"), None, &[]);
    let token = collector.enrollment_token("acme", "main", 2, "1h").await;
    let a = TestIdentity::enroll(&collector, &token, "host-a").await.unwrap();
    let b = TestIdentity::enroll(&collector, &token, "host-b").await.unwrap();
    assert_ne!(a.host_id, b.host_id);

    // The real thing works: A reports as A.
    let answer = try_report(a.channel(&collector).await.unwrap(), hello("a", &a.host_id)).await;
    assert!(
        matches!(answer, Ok(CollectorMessage { kind: Some(collector_message::Kind::Welcome(_)) })),
        "{answer:?}"
    );
    let stored = collector
        .wait_for("A's report", Duration::from_secs(10), async |c| {
            let n = receipt_count(c).await;
            (n == 1).then_some(n)
        })
        .await;
    let before_failures =
        metric(&collector.get_text("/metrics").await, "vigil_tls_handshake_failures_total");

    // No client certificate: TLS succeeds (enrolment needs that), reporting does not.
    let anonymous = identity::channel(&collector, None).await.unwrap();
    let err = try_report(anonymous, hello("anon", "")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("client certificate is required"), "{err:?}");

    // A's certificate claiming to be B.
    let err =
        try_report(a.channel(&collector).await.unwrap(), hello("a", &b.host_id)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains(&format!("Hello claims host {}", b.host_id)), "{err:?}");

    // Expired, not yet valid, and foreign certificates fail the handshake itself.
    let forged = [
        ("expired", identity::forged_by_collector_ca(&collector, &a.host_id, -7200, -3600)),
        ("not yet valid", identity::forged_by_collector_ca(&collector, &a.host_id, 3600, 7200)),
        ("foreign CA", identity::from_foreign_ca(&collector, &a.host_id)),
    ];
    for (what, who) in &forged {
        let refused = match who.channel(&collector).await {
            Err(_) => true,
            Ok(channel) => try_report(channel, hello("forged", &a.host_id)).await.is_err(),
        };
        assert!(refused, "{what} certificate was accepted");
    }

    // A plaintext client gets no HTTP/2 at all.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{}", collector.grpc))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5));
    match plain.connect().await {
        Err(_) => {}
        Ok(channel) => assert!(try_report(channel, hello("plain", "")).await.is_err()),
    }

    // Each refusal was logged and counted; nothing was stored.
    let metrics = collector.get_text("/metrics").await;
    let failures = metric(&metrics, "vigil_tls_handshake_failures_total") - before_failures;
    assert!(failures >= 4.0, "3 forged certificates + plaintext: {failures}\n{metrics}");
    let log = collector.proc.log_text();
    assert!(log.contains("TLS handshake refused"), "{log}");
    assert!(log.contains("a client certificate is required"), "{log}");
    assert!(log.contains("but the Hello claims host"), "{log}");
    assert_eq!(receipt_count(&collector).await, stored, "refused reports stored nothing");
    assert_eq!(collector.hosts().await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_single_use_expire_and_bind_the_customer() {
    let tmp = tempfile::tempdir().unwrap();
    let collector = Collector::start(&tmp.path().join("data"), None, &[]);
    let token = collector.enrollment_token("acme", "main", 1, "1h").await;
    let host = TestIdentity::enroll(&collector, &token, "srv01").await.unwrap();

    let reused = TestIdentity::enroll(&collector, &token, "srv02").await.unwrap_err();
    assert_eq!(reused.code(), Code::Unauthenticated);
    assert!(reused.message().contains("token used up"), "{reused:?}");

    let short = collector.enrollment_token("acme", "main", 5, "1s").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let expired = TestIdentity::enroll(&collector, &short, "srv03").await.unwrap_err();
    assert_eq!(expired.code(), Code::Unauthenticated);
    assert!(expired.message().contains("token expired"), "{expired:?}");

    let unknown = TestIdentity::enroll(&collector, "vge_0000", "srv04").await.unwrap_err();
    assert_eq!(unknown.code(), Code::Unauthenticated);

    // A host lands in its token's customer and site, whatever it calls itself.
    let hosts = collector.hosts().await;
    assert_eq!(hosts.len(), 1, "refused enrolments created no host: {hosts:?}");
    assert_eq!(hosts[0]["id"], host.host_id.as_str());
    assert_eq!(
        (hosts[0]["customer"].as_str(), hosts[0]["site"].as_str()),
        (Some("acme"), Some("main"))
    );

    // The secret is in no log line.
    let log = collector.proc.log_text();
    for secret in [&token, &short] {
        assert!(!log.contains(secret.as_str()), "a token leaked into the log");
    }
    assert!(log.contains("enroll refused"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_is_rate_limited_per_address() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let collector = Collector::start(&data, None, &[]);
    // The default is 10 attempts per minute per address; the 11th in a burst is refused.
    let mut codes = Vec::new();
    for _ in 0..11 {
        codes.push(TestIdentity::enroll(&collector, "vge_bad", "x").await.unwrap_err().code());
    }
    assert!(codes[..10].iter().all(|c| *c == Code::Unauthenticated), "{codes:?}");
    assert_eq!(codes[10], Code::ResourceExhausted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_cuts_off_an_open_stream_within_seconds() {
    let tmp = tempfile::tempdir().unwrap();
    let collector = Collector::start(&tmp.path().join("data"), None, &[]);
    let token = collector.enrollment_token("acme", "main", 1, "1h").await;
    let host = TestIdentity::enroll(&collector, &token, "srv01").await.unwrap();

    let (tx, rx) = mpsc::channel(4);
    tx.send(hello("srv01", &host.host_id)).await.unwrap();
    let channel = host.channel(&collector).await.unwrap();
    let mut inbound =
        IngestClient::new(channel).report(ReceiverStream::new(rx)).await.unwrap().into_inner();
    assert!(inbound.message().await.unwrap().is_some(), "welcome");

    let out = collector.vigilctl(&["hosts", "revoke", &host.host_id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let revoked_at = std::time::Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(5), inbound.message()).await;
    let err = ended.expect("the open stream must end within 5 s").unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(revoked_at.elapsed() < Duration::from_secs(5));

    // A new stream is refused too, and the host shows as revoked.
    let err = try_report(host.channel(&collector).await.unwrap(), hello("srv01", &host.host_id))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(collector.hosts().await[0]["status"], "revoked");
    // It cannot renew its way back either.
    let mut enrollment = vigil_proto::v1::enrollment_client::EnrollmentClient::new(
        identity::pinned_channel(&collector).await,
    );
    let renew = enrollment
        .renew(vigil_proto::v1::RenewRequest {
            certificate_der: host.cert.to_vec(),
            csr_der: identity::csr(&host.key),
        })
        .await
        .unwrap_err();
    assert_eq!(renew.code(), Code::PermissionDenied);
    drop(tx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_needs_the_same_key() {
    let tmp = tempfile::tempdir().unwrap();
    let collector = Collector::start(&tmp.path().join("data"), None, &[]);
    let token = collector.enrollment_token("acme", "main", 1, "1h").await;
    let host = TestIdentity::enroll(&collector, &token, "srv01").await.unwrap();
    let mut enrollment = vigil_proto::v1::enrollment_client::EnrollmentClient::new(
        identity::pinned_channel(&collector).await,
    );
    let other_key = rcgen::KeyPair::generate().unwrap();
    let err = enrollment
        .renew(vigil_proto::v1::RenewRequest {
            certificate_der: host.cert.to_vec(),
            csr_der: identity::csr(&other_key),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("not signed with the certificate's key"), "{err:?}");
    // A connection without a client certificate makes one call: the retry opens another.
    let mut enrollment = vigil_proto::v1::enrollment_client::EnrollmentClient::new(
        identity::pinned_channel(&collector).await,
    );
    let renewed = enrollment
        .renew(vigil_proto::v1::RenewRequest {
            certificate_der: host.cert.to_vec(),
            csr_der: identity::csr(&host.key),
        })
        .await
        .unwrap()
        .into_inner();
    let fresh = TestIdentity { cert: renewed.certificate_der.into(), ..host };
    let answer =
        try_report(fresh.channel(&collector).await.unwrap(), hello("srv01", &fresh.host_id)).await;
    assert!(answer.is_ok(), "the renewed certificate works: {answer:?}");
}

async fn call(
    collector: &Collector,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> u16 {
    collector.request_as(token, method, path, body).await.0
}

async fn api_token(
    collector: &Collector,
    name: &str,
    role: &str,
    customer: Option<&str>,
) -> String {
    let (status, body) = collector
        .post("/api/v1/api-tokens", json!({ "name": name, "role": role, "customer": customer }))
        .await;
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_roles_and_customers_limit_what_a_token_can_do() {
    let tmp = tempfile::tempdir().unwrap();
    let collector = Collector::start(&tmp.path().join("data"), None, &[]);
    let acme_token = collector.enrollment_token("acme", "main", 1, "1h").await;
    let globex_token = collector.enrollment_token("globex", "hq", 1, "1h").await;
    let acme_host = TestIdentity::enroll(&collector, &acme_token, "srv01").await.unwrap();
    let globex_host = TestIdentity::enroll(&collector, &globex_token, "srv01").await.unwrap();

    let viewer = api_token(&collector, "noc-viewer", "viewer", None).await;
    let operator = api_token(&collector, "noc-operator", "operator", None).await;
    let acme_staff = api_token(&collector, "acme-staff", "viewer", Some("acme")).await;

    // No token, or a wrong one: 401.
    assert_eq!(call(&collector, "", Method::GET, "/api/v1/hosts", None).await, 401);
    assert_eq!(call(&collector, "vgo_nope", Method::GET, "/api/v1/hosts", None).await, 401);
    assert_eq!(call(&collector, "", Method::GET, "/metrics", None).await, 401);
    // Health stays open.
    assert_eq!(call(&collector, "", Method::GET, "/healthz", None).await, 200);

    // A viewer reads but changes nothing.
    assert_eq!(call(&collector, &viewer, Method::GET, "/api/v1/hosts", None).await, 200);
    let revoke = format!("/api/v1/hosts/{}/revoke", acme_host.host_id);
    assert_eq!(call(&collector, &viewer, Method::POST, &revoke, Some(json!({}))).await, 403);
    // An operator cannot create tokens of either kind.
    let new_token = json!({ "name": "x", "role": "admin" });
    assert_eq!(
        call(&collector, &operator, Method::POST, "/api/v1/api-tokens", Some(new_token)).await,
        403
    );
    let enrol = json!({ "customer": "acme", "site": "main" });
    assert_eq!(
        call(&collector, &operator, Method::POST, "/api/v1/enrollment-tokens", Some(enrol)).await,
        403
    );

    // A viewer limited to acme sees acme's host only; globex's is as if it did not exist.
    let (status, list) =
        collector.request_as(&acme_staff, Method::GET, "/api/v1/hosts", None).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> =
        list["hosts"].as_array().unwrap().iter().map(|h| h["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [acme_host.host_id.as_str()]);
    let other = format!("/api/v1/hosts/{}", globex_host.host_id);
    assert_eq!(call(&collector, &acme_staff, Method::GET, &other, None).await, 404);
    assert_eq!(
        call(&collector, &acme_staff, Method::GET, &format!("{other}/receipts"), None).await,
        404
    );
    assert_eq!(call(&collector, &acme_staff, Method::GET, "/metrics", None).await, 403);
    let (_, customers) =
        collector.request_as(&acme_staff, Method::GET, "/api/v1/customers", None).await;
    assert_eq!(customers["customers"].as_array().unwrap().len(), 1);

    // Changes are audited: who, what, when, from where. A revoked API token stops at once.
    let (status, body) = collector.post(&revoke, json!({})).await;
    assert_eq!(status, 200, "{body}");
    let (_, tokens) =
        collector.request_as(&collector.admin_token, Method::GET, "/api/v1/api-tokens", None).await;
    let viewer_id = tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "noc-viewer")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = collector.vigilctl(&["api-tokens", "revoke", &viewer_id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(call(&collector, &viewer, Method::GET, "/api/v1/hosts", None).await, 401);
    let audit = collector.get("/api/v1/audit").await;
    let entries = audit["entries"].as_array().unwrap();
    let revoke_entry =
        entries.iter().find(|e| e["action"] == "host.revoke").expect("host.revoke audited");
    assert_eq!(revoke_entry["actor"], "token:bootstrap-admin");
    assert_eq!(revoke_entry["target"], acme_host.host_id.as_str());
    assert!(revoke_entry["source"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(entries.iter().any(|e| e["action"] == "api_token.revoke"));
    assert!(
        entries.iter().any(|e| e["action"] == "api_token.create" && e["target"] == "acme-staff")
    );
    // Secrets never reach the audit log.
    let text = audit.to_string();
    for secret in [&viewer, &operator, &acme_staff, &acme_token] {
        assert!(!text.contains(secret.as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_ca_and_revocation_reaches_every_one() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // Two collector processes over one store and one CA: what replicas are.
    let a = Collector::start(&data, None, &[]);
    let b = Collector::start(&data, None, &[]);
    assert_eq!(a.ca_sha256, b.ca_sha256, "replicas present the same CA");

    // A token made on A enrols through B.
    let token = a.enrollment_token("acme", "main", 1, "1h").await;
    let host = TestIdentity::enroll(&b, &token, "srv01").await.unwrap();

    // A stream open on B is cut when A revokes the host.
    let (tx, rx) = mpsc::channel(4);
    tx.send(hello("srv01", &host.host_id)).await.unwrap();
    let channel = host.channel(&b).await.unwrap();
    let mut inbound =
        IngestClient::new(channel).report(ReceiverStream::new(rx)).await.unwrap().into_inner();
    assert!(inbound.message().await.unwrap().is_some(), "welcome from B");
    let out = a.vigilctl(&["hosts", "revoke", &host.host_id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ended = tokio::time::timeout(Duration::from_secs(5), inbound.message()).await;
    let err = ended.expect("B must end the stream within 5 s").unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    drop(tx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_move_and_replace_keep_history() {
    let tmp = tempfile::tempdir().unwrap();
    let collector = Collector::start(&tmp.path().join("data"), None, &[]);
    let token = collector.enrollment_token("acme", "main", 2, "1h").await;
    let old = TestIdentity::enroll(&collector, &token, "srv01").await.unwrap();
    let (acked, _) = {
        let (tx, rx) = mpsc::channel(4);
        tx.send(hello("srv01", &old.host_id)).await.unwrap();
        tx.send(report(1)).await.unwrap();
        let channel = old.channel(&collector).await.unwrap();
        let mut inbound =
            IngestClient::new(channel).report(ReceiverStream::new(rx)).await.unwrap().into_inner();
        inbound.message().await.unwrap();
        let ack = inbound.message().await.unwrap();
        drop(tx);
        (ack, ())
    };
    assert!(matches!(
        acked,
        Some(CollectorMessage { kind: Some(collector_message::Kind::Ack(_)) })
    ));

    // Move to another customer without re-enrolling.
    collector.post("/api/v1/customers", json!({ "name": "globex" })).await;
    collector.post("/api/v1/customers/globex/sites", json!({ "name": "hq" })).await;
    let out = collector.vigilctl(&[
        "hosts",
        "move",
        &old.host_id,
        "--customer",
        "globex",
        "--site",
        "hq",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let detail = collector.get(&format!("/api/v1/hosts/{}", old.host_id)).await;
    assert_eq!(
        (detail["customer"].as_str(), detail["site"].as_str()),
        (Some("globex"), Some("hq"))
    );
    let answer =
        try_report(old.channel(&collector).await.unwrap(), hello("srv01", &old.host_id)).await;
    assert!(answer.is_ok(), "the moved host still reports with its certificate: {answer:?}");

    // The machine is re-installed and enrols anew; its history moves to the new identity.
    let new = TestIdentity::enroll(&collector, &token, "srv01").await.unwrap();
    let out = collector.vigilctl(&["hosts", "replace", &old.host_id, &new.host_id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let receipts = collector.get(&format!("/api/v1/hosts/{}/receipts", new.host_id)).await;
    assert_eq!(receipts["receipts"].as_array().unwrap().len(), 1, "{receipts}");
    let old_detail = collector.get(&format!("/api/v1/hosts/{}", old.host_id)).await;
    assert_eq!(old_detail["status"], "revoked");
    assert_eq!(old_detail["replaced_by"], new.host_id.as_str());
    let err = try_report(old.channel(&collector).await.unwrap(), hello("srv01", &old.host_id))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let audit = collector.vigilctl(&["audit"]);
    let text = String::from_utf8_lossy(&audit.stdout);
    assert!(text.contains("host.move") && text.contains("host.replace"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_can_be_served_over_https() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let collector = Collector::start_with_config(&data, None, "[http]\ntls = true\n", &[]);
    let https = format!("https://{}", collector.http);
    let ca = data.join("tls/ca.crt").to_string_lossy().into_owned();
    let token_file = data.join("admin.token").to_string_lossy().into_owned();
    let ok = vigil_e2e::run(
        "vigilctl",
        &["--server", &https, "--ca-cert", &ca, "--token-file", &token_file, "whoami"],
    );
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "bootstrap-admin (admin)\n");
    // Without the CA: a clear usage error, exit 2.
    let no_ca =
        vigil_e2e::run("vigilctl", &["--server", &https, "--token-file", &token_file, "whoami"]);
    assert_eq!(no_ca.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_ca.stderr).contains("--ca-cert"));
    // Plain HTTP gets nothing from an HTTPS listener.
    let plain = vigil_e2e::run(
        "vigilctl",
        &["--server", &collector.http_url(), "--token-file", &token_file, "whoami"],
    );
    assert_eq!(plain.status.code(), Some(1), "{}", String::from_utf8_lossy(&plain.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_renews_within_the_grace_period_only() {
    let tmp = tempfile::tempdir().unwrap();
    let config = "[tls]\nclient_cert_lifetime = \"10s\"\nrenewal_grace = \"5s\"\n";
    let collector = Collector::start_with_config(&tmp.path().join("data"), None, config, &[]);
    let token = collector.enrollment_token("acme", "main", 1, "1h").await;
    let host = TestIdentity::enroll(&collector, &token, "srv01").await.unwrap();
    let renew = async |cert: &[u8]| {
        let mut enrollment = vigil_proto::v1::enrollment_client::EnrollmentClient::new(
            identity::pinned_channel(&collector).await,
        );
        enrollment
            .renew(vigil_proto::v1::RenewRequest {
                certificate_der: cert.to_vec(),
                csr_der: identity::csr(&host.key),
            })
            .await
    };

    // Off for a while: the certificate expired 1 s ago; it no longer opens a stream...
    tokio::time::sleep(Duration::from_secs(11)).await;
    let expired_refused = match host.channel(&collector).await {
        Err(_) => true,
        Ok(channel) => try_report(channel, hello("srv01", &host.host_id)).await.is_err(),
    };
    assert!(expired_refused, "an expired certificate must not report");
    // ...but renews with the old key within the grace period.
    let renewed = renew(&host.cert).await.expect("renewal within grace").into_inner();
    let fresh = TestIdentity { cert: renewed.certificate_der.clone().into(), ..host };
    let answer =
        try_report(fresh.channel(&collector).await.unwrap(), hello("srv01", &fresh.host_id)).await;
    assert!(answer.is_ok(), "{answer:?}");

    // Off for longer than lifetime + grace: a new token is needed.
    tokio::time::sleep(Duration::from_secs(16)).await;
    let mut enrollment = vigil_proto::v1::enrollment_client::EnrollmentClient::new(
        identity::pinned_channel(&collector).await,
    );
    let err = enrollment
        .renew(vigil_proto::v1::RenewRequest {
            certificate_der: renewed.certificate_der,
            csr_der: identity::csr(&fresh.key),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("grace period is over"), "{err:?}");
}
