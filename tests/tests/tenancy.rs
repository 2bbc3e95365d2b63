//! Tenancy that gives nothing away: a token limited to one customer gets, on every route of the
//! API, the same status and the same body for another customer's thing as for a thing that
//! does not exist. The walk covers every route the router declares (a route added later without
//! a place here fails the test), and every rejection is the JSON error body of docs/api.md.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use vigil_e2e::Collector;
use vigil_e2e::identity::TestIdentity;
use vigil_proto::v1::{AgentMessage, Report, SpoolStatus, agent_message};

const INSTANCE: &str = "0b7c4c1e-2b52-4c1a-9a43-5c1d2e3f4a5b";
const CONFIG: &str = "[incidents]\nsweep_every = \"100ms\"\nstart_grace = \"1ms\"\n";

/// A report whose spool is held in memory: an L2 state finding, so the host gets an incident.
fn spool_in_memory(seq: u64) -> AgentMessage {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    AgentMessage {
        kind: Some(agent_message::Kind::Report(Report {
            agent_instance: INSTANCE.into(),
            seq,
            collected_at_unix_ms: now.as_millis() as i64,
            spool: Some(SpoolStatus {
                in_memory: true,
                disk_error: "No space left on device".into(),
                spooled_reports: 3,
                ..Default::default()
            }),
            ..Default::default()
        })),
    }
}

/// Every `.route("…")` of the router, so the walk below cannot fall behind it.
fn declared_routes() -> Vec<String> {
    let source = include_str!("../../collector/src/api/mod.rs");
    // The router, not the module's own unit tests.
    let source = source.split("#[cfg(test)]").next().unwrap_or(source);
    source
        .split(".route(")
        .skip(1)
        .filter_map(|rest| rest.trim_start().strip_prefix('"'))
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

/// One probe of the walk: a method and a path (with query), and a body, where `@` stands for
/// the thing probed.
struct Probe {
    route: &'static str,
    method: Method,
    path: &'static str,
    body: Option<&'static str>,
}

fn probe(
    route: &'static str,
    method: Method,
    path: &'static str,
    body: Option<&'static str>,
) -> Probe {
    Probe { route, method, path, body }
}

/// Every route, probed with a placeholder `@` where a thing of another customer (or one that
/// does not exist) goes.
fn walk(kind: &str) -> Vec<Probe> {
    use Method as M;
    let host = vec![
        probe("/healthz", M::GET, "/healthz", None),
        probe("/readyz", M::GET, "/readyz", None),
        probe("/metrics", M::GET, "/metrics", None),
        probe("/api/v1/hosts", M::GET, "/api/v1/hosts", None),
        probe("/api/v1/hosts/{id}", M::GET, "/api/v1/hosts/@", None),
        probe("/api/v1/hosts/{id}/receipts", M::GET, "/api/v1/hosts/@/receipts", None),
        probe(
            "/api/v1/hosts/{id}/rollups",
            M::GET,
            "/api/v1/hosts/@/rollups?series=cpu.load1",
            None,
        ),
        probe("/api/v1/hosts/{id}/revoke", M::POST, "/api/v1/hosts/@/revoke", Some("{}")),
        probe(
            "/api/v1/hosts/{id}/move",
            M::POST,
            "/api/v1/hosts/@/move",
            Some(r#"{"customer":"acme","site":"main"}"#),
        ),
        probe(
            "/api/v1/hosts/{id}/replace",
            M::POST,
            "/api/v1/hosts/@/replace",
            Some(r#"{"by":"@"}"#),
        ),
        probe(
            "/api/v1/maintenance",
            M::POST,
            "/api/v1/maintenance",
            Some(r#"{"host":"@","start":"2030-01-01T00:00","duration":"1h","reason":"probe"}"#),
        ),
        probe("/api/v1/incidents", M::GET, "/api/v1/incidents?host=@", None),
    ];
    let customer = vec![
        probe("/api/v1/customers", M::GET, "/api/v1/customers", None),
        probe("/api/v1/customers", M::POST, "/api/v1/customers", Some(r#"{"name":"@"}"#)),
        probe(
            "/api/v1/customers/{customer}/sites",
            M::POST,
            "/api/v1/customers/@/sites",
            Some(r#"{"name":"x"}"#),
        ),
        probe(
            "/api/v1/customers/{customer}/contract",
            M::GET,
            "/api/v1/customers/@/contract",
            None,
        ),
        probe(
            "/api/v1/customers/{customer}/contract",
            M::PUT,
            "/api/v1/customers/@/contract",
            Some("{}"),
        ),
        probe("/api/v1/customers/{customer}/sla", M::GET, "/api/v1/customers/@/sla", None),
        probe("/api/v1/enrollment-tokens", M::GET, "/api/v1/enrollment-tokens", None),
        probe(
            "/api/v1/enrollment-tokens",
            M::POST,
            "/api/v1/enrollment-tokens",
            Some(r#"{"customer":"@","site":"hq"}"#),
        ),
        probe("/api/v1/api-tokens", M::GET, "/api/v1/api-tokens", None),
        probe(
            "/api/v1/api-tokens",
            M::POST,
            "/api/v1/api-tokens",
            Some(r#"{"name":"x","role":"viewer","customer":"@"}"#),
        ),
        probe("/api/v1/audit", M::GET, "/api/v1/audit", None),
        probe("/api/v1/incidents", M::GET, "/api/v1/incidents?customer=@", None),
        probe("/api/v1/incidents", M::GET, "/api/v1/incidents?customer=@&site=hq", None),
        probe("/api/v1/maintenance", M::GET, "/api/v1/maintenance", None),
        probe(
            "/api/v1/maintenance",
            M::POST,
            "/api/v1/maintenance",
            Some(r#"{"customer":"@","start":"2030-01-01T00:00","duration":"1h","reason":"probe"}"#),
        ),
        probe(
            "/api/v1/notifications/dead-letters",
            M::GET,
            "/api/v1/notifications/dead-letters",
            None,
        ),
        probe("/api/v1/tasks", M::GET, "/api/v1/tasks", None),
        probe("/api/v1/test-clock", M::GET, "/api/v1/test-clock", None),
        probe("/api/v1/test-clock", M::POST, "/api/v1/test-clock", Some(r#"{"advance":"1s"}"#)),
        probe("/api/v1/whoami", M::GET, "/api/v1/whoami", None),
    ];
    let incident = vec![
        probe("/api/v1/incidents/{id}", M::GET, "/api/v1/incidents/@", None),
        probe("/api/v1/incidents/{id}/ack", M::POST, "/api/v1/incidents/@/ack", Some("{}")),
        probe(
            "/api/v1/incidents/{id}/assign",
            M::POST,
            "/api/v1/incidents/@/assign",
            Some(r#"{"assignee":"probe"}"#),
        ),
        probe(
            "/api/v1/incidents/{id}/notes",
            M::POST,
            "/api/v1/incidents/@/notes",
            Some(r#"{"note":"probe"}"#),
        ),
        probe(
            "/api/v1/incidents/{id}/resolve",
            M::POST,
            "/api/v1/incidents/@/resolve",
            Some(r#"{"note":"probe"}"#),
        ),
    ];
    let other = vec![
        probe("/api/v1/maintenance/{id}", M::DELETE, "/api/v1/maintenance/@", None),
        probe("/api/v1/api-tokens/{id}", M::DELETE, "/api/v1/api-tokens/@", None),
        probe("/api/v1/notifications/{id}", M::DELETE, "/api/v1/notifications/@", None),
    ];
    match kind {
        "host" => host,
        "customer" => customer,
        "incident" => incident,
        _ => other,
    }
}

async fn send(c: &Collector, token: &str, p: &Probe, thing: &str) -> (u16, String) {
    let path = p.path.replace('@', thing);
    let body = p.body.map(|b| serde_json::from_str::<Value>(&b.replace('@', thing)).unwrap());
    let (status, body) = c.request_as(token, p.method.clone(), &path, body).await;
    // The caller's own words come back (`no host <id>`): that tells it nothing.
    (status, body.to_string().replace(thing, "<probed>"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_token_learns_nothing_of_another_customer_on_any_route() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start_with_config(&tmp.path().join("data"), None, CONFIG, &[]);
    let acme = c.enrollment_token("acme", "main", 1, "1h").await;
    let globex = c.enrollment_token("globex", "hq", 1, "1h").await;
    let _acme_host = TestIdentity::enroll(&c, &acme, "srv01").await.unwrap();
    let globex_host = TestIdentity::enroll(&c, &globex, "gx01").await.unwrap();
    // Globex's host reports a fault, so globex has an incident.
    let _stream =
        globex_host.stream_held(&c, INSTANCE, (1..=3).map(spool_in_memory).collect()).await;
    let incident = c
        .wait_for("globex's incident", Duration::from_secs(20), async |c| {
            let list = c.get("/api/v1/incidents?customer=globex").await;
            list["incidents"].as_array().and_then(|l| l.first()).map(|i| i["number"].clone())
        })
        .await;
    let incident = incident.as_str().unwrap().to_owned();
    let (status, window) = c
        .post(
            "/api/v1/maintenance",
            json!({ "customer": "globex", "start": "2030-01-01T00:00", "duration": "1h", "reason": "disk swap" }),
        )
        .await;
    assert_eq!(status, 200, "{window}");
    let window = window["id"].as_str().unwrap().to_owned();
    let (status, staff) = c
        .post(
            "/api/v1/api-tokens",
            json!({ "name": "acme-ops", "role": "operator", "customer": "acme" }),
        )
        .await;
    assert_eq!(status, 200, "{staff}");
    let staff = staff["token"].as_str().unwrap().to_owned();
    let tokens = c.get("/api/v1/api-tokens").await;
    let admin_id = tokens["tokens"].as_array().unwrap()[0]["id"].as_str().unwrap().to_owned();

    // Another customer's thing against one that does not exist, per kind of thing.
    let pairs = [
        ("host", globex_host.host_id.clone(), "7d3f0b5e-1111-4222-8333-944455556666".to_owned()),
        ("customer", "globex".to_owned(), "initech".to_owned()),
        ("incident", incident.clone(), "INC-999999".to_owned()),
        ("other", window.clone(), "2c9e6a1d-aaaa-4bbb-8ccc-dddd0000eeee".to_owned()),
        ("other", admin_id.clone(), "5a4b3c2d-1e0f-4a1b-9c2d-3e4f5a6b7c8d".to_owned()),
    ];
    let mut walked = std::collections::BTreeSet::new();
    let mut answers = Vec::new();
    for (kind, theirs, nothing) in &pairs {
        for p in walk(kind) {
            walked.insert(p.route);
            let seen = send(&c, &staff, &p, theirs).await;
            let absent = send(&c, &staff, &p, nothing).await;
            assert_eq!(
                seen, absent,
                "{} {} answers a scoped token differently for another customer's {kind} \
                 ({theirs}) than for none",
                p.method, p.path
            );
            if seen.0 >= 400 {
                let body: Value = serde_json::from_str(&seen.1).unwrap_or(Value::Null);
                assert!(
                    body["error"]["code"].is_string() && body["error"]["message"].is_string(),
                    "{} {}: {} is not the JSON error body: {}",
                    p.method,
                    p.path,
                    seen.0,
                    seen.1
                );
            }
            answers.push(format!("{} {} -> {}", p.method, p.path, seen.0));
        }
    }
    for route in declared_routes() {
        assert!(walked.contains(route.as_str()), "route {route} is not walked");
    }

    // Lists show the scoped customer's own things only.
    let (_, hosts) = c.request_as(&staff, Method::GET, "/api/v1/hosts", None).await;
    assert!(!hosts.to_string().contains(&globex_host.host_id), "{hosts}");
    let (_, windows) = c.request_as(&staff, Method::GET, "/api/v1/maintenance", None).await;
    assert_eq!(windows["windows"], json!([]), "{windows}");
    let (_, incidents) = c.request_as(&staff, Method::GET, "/api/v1/incidents", None).await;
    assert_eq!(incidents["incidents"], json!([]), "{incidents}");
    // And nothing of globex changed through the probes.
    let still = c.get(&format!("/api/v1/incidents/{incident}")).await;
    assert_eq!(still["state"], "open", "{still}");
    assert!(c.get("/api/v1/maintenance").await.to_string().contains(&window));
    eprintln!("walked:\n{}", answers.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rejection_is_the_json_error_body() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(&tmp.path().join("data"), None, &[]);
    let client = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", c.http_url());
    let admin = c.admin_token.clone();
    let cases: Vec<(reqwest::RequestBuilder, u16)> = vec![
        // A query string the handler cannot read.
        (client.get(url("/api/v1/hosts/00000000-0000-0000-0000-000000000000/rollups")), 400),
        (client.get(url("/api/v1/incidents?limit=many")), 400),
        // Bodies axum refuses: not JSON, the wrong content type, missing fields.
        (
            client
                .post(url("/api/v1/customers"))
                .header("content-type", "application/json")
                .body("{"),
            400,
        ),
        (client.post(url("/api/v1/customers")).body("name=acme"), 400),
        (client.post(url("/api/v1/customers")).json(&json!({ "title": "acme" })), 400),
        // A method the route lacks, and no route at all.
        (client.put(url("/api/v1/hosts")), 405),
        (client.get(url("/api/v2/hosts")), 404),
    ];
    for (request, expected) in cases {
        let request = request.bearer_auth(&admin).build().unwrap();
        let what = format!("{} {}", request.method(), request.url());
        let response = client.execute(request).await.unwrap();
        let status = response.status().as_u16();
        let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(status, expected, "{what}: {body}");
        assert!(content_type.starts_with("application/json"), "{what}: {content_type}");
        assert!(
            body["error"]["code"].is_string()
                && !body["error"]["message"].as_str().unwrap().is_empty(),
            "{what}: {body}"
        );
    }
}
