//! What only the collector's own machine holds: its data directory and files are private to
//! the service user whatever the umask, a key or secret file that others can read is refused
//! with a message naming it, and access cannot be lost for good: the last admin token cannot be
//! revoked, and `vigil-collector admin-token` on the machine makes a new one, audited.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use reqwest::Method;
use serde_json::json;
use vigil_e2e::{Collector, run};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every entry under `dir` with its mode.
fn modes(dir: &Path) -> Vec<(String, u32, bool)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let is_dir = path.is_dir();
        out.push((path.display().to_string(), mode(&path), is_dir));
        if is_dir {
            out.extend(modes(&path));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_is_private_under_umask_000() {
    // The collector inherits this; every file it makes would be world-writable if it did not
    // set its own.
    rustix::process::umask(rustix::fs::Mode::empty());
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let c = Collector::start(&data, None, &[]);
    // Writes: the WAL and the shared-memory file exist now.
    let (status, body) = c.post("/api/v1/customers", json!({ "name": "acme" })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(mode(&data), 0o700);
    let entries = modes(&data);
    for name in
        ["vigil.db", "vigil.db-wal", "admin.token", "replica.id", "tls/ca.key", "tls/ca.crt"]
    {
        assert!(entries.iter().any(|(p, _, _)| p.ends_with(name)), "{name} in {entries:?}");
    }
    for (path, mode, is_dir) in &entries {
        let private = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(*mode, private, "{path} is {mode:o}");
    }

    // A directory an earlier run (or a manual mkdir) left open is narrowed, with a log line.
    drop(c);
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(data.join("vigil.db"), std::fs::Permissions::from_mode(0o644))
        .unwrap();
    let c = Collector::start(&data, None, &[]);
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("vigil.db")), 0o600);
    let log = c.proc.log_text();
    assert!(log.contains("narrowed the permissions"), "{log}");
}

/// Starts a collector expected to refuse its config, and returns its exit code and stderr.
fn refused_start(dir: &Path, config: &str) -> (Option<i32>, String) {
    let path = dir.join("collector.toml");
    std::fs::write(&path, config).unwrap();
    let data = dir.join("data").display().to_string();
    let out = run(
        "vigil-collector",
        &[
            "--config",
            &path.display().to_string(),
            "--data-dir",
            &data,
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ],
    );
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn key_and_secret_files_others_can_read_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert =
        rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().self_signed(&key).unwrap();
    std::fs::write(dir.join("api.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("api.key"), key.serialize_pem()).unwrap();
    std::fs::set_permissions(dir.join("api.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let https = format!(
        "[http]\ntls = true\ncert = \"{}\"\nkey = \"{}\"\n",
        dir.join("api.crt").display(),
        dir.join("api.key").display()
    );
    let (code, stderr) = refused_start(dir, &https);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("key `http.key`"), "{stderr}");
    assert!(stderr.contains("api.key: readable by others (mode 644)"), "{stderr}");
    assert!(stderr.contains("chmod 600"), "{stderr}");

    std::fs::write(dir.join("hook.secret"), "a-webhook-secret-of-32-characters").unwrap();
    std::fs::set_permissions(dir.join("hook.secret"), std::fs::Permissions::from_mode(0o640))
        .unwrap();
    let webhook = format!(
        "[notify.receivers.hook]\nwebhook = \"http://127.0.0.1:9/hook\"\nsecret_file = \"{}\"\n",
        dir.join("hook.secret").display()
    );
    let (code, stderr) = refused_start(dir, &webhook);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("notify.receivers.hook.secret_file"), "{stderr}");
    assert!(stderr.contains("hook.secret: readable by others (mode 640)"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_admin_cannot_be_revoked_and_admin_token_recovers_access() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let c = Collector::start(&data, None, &[]);
    let tokens = c.get("/api/v1/api-tokens").await;
    let bootstrap = tokens["tokens"][0]["id"].as_str().unwrap().to_owned();

    // Revoking the only admin token is refused, through the API and vigilctl alike.
    let path = format!("/api/v1/api-tokens/{bootstrap}");
    let (status, body) = c.request_as(&c.admin_token, Method::DELETE, &path, None).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "failed_precondition", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("last admin token"), "{body}");
    let out = c.vigilctl(&["api-tokens", "revoke", &bootstrap]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("last admin token"), "{out:?}");

    // With a second admin, the first can go; then the second is the last.
    let (status, second) =
        c.post("/api/v1/api-tokens", json!({ "name": "noc-admin", "role": "admin" })).await;
    assert_eq!(status, 200, "{second}");
    let (second_id, second) =
        (second["id"].as_str().unwrap().to_owned(), second["token"].as_str().unwrap().to_owned());
    let (status, body) = c.request_as(&second, Method::DELETE, &path, None).await;
    assert_eq!(status, 200, "{body}");
    let own = format!("/api/v1/api-tokens/{second_id}");
    let (status, _) = c.request_as(&second, Method::DELETE, &own, None).await;
    assert_eq!(status, 409);

    // Its secret is lost: on the machine, as the service user, a new admin token is made while
    // the collector runs, and it works at once.
    let data_arg = data.display().to_string();
    let out = run("vigil-collector", &["admin-token", "--data-dir", &data_arg]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let recovered = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(recovered.starts_with("vgo_"), "stdout is the token alone: {recovered:?}");
    let (status, me) = c.request_as(&recovered, Method::GET, "/api/v1/whoami", None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!((me["name"].as_str(), me["role"].as_str()), (Some("recovery-admin"), Some("admin")));
    let audit = c.request_as(&recovered, Method::GET, "/api/v1/audit", None).await.1;
    let made = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "api_token.create" && e["target"] == "recovery-admin")
        .cloned()
        .unwrap_or_else(|| panic!("recovery audited: {audit}"));
    assert_eq!(made["actor"], "local:admin-token");
    assert!(made["source"].as_str().unwrap().starts_with("local:uid="), "{made}");
    assert!(!audit.to_string().contains(&recovered), "the secret is never in the audit log");

    // Pointed at a directory without a store, it says so and makes nothing.
    let empty = tmp.path().join("empty").display().to_string();
    let out = run("vigil-collector", &["admin-token", "--data-dir", &empty]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds no store"), "{out:?}");
}
