//! The collector's command lines as an operator meets them: the example config it prints is
//! the shipped one and passes `check-config --strict`; `vigilctl` explains itself and refuses
//! bad arguments with exit code 2. (Being an integration test of this package also makes cargo
//! build `vigil-collector` and `vigilctl` before any test runs, which the end-to-end tests in
//! `tests/` rely on.)

use std::process::Command;

const COLLECTOR: &str = env!("CARGO_BIN_EXE_vigil-collector");
const VIGILCTL: &str = env!("CARGO_BIN_EXE_vigilctl");

#[test]
fn example_config_is_the_shipped_one_and_passes_strict_check() {
    let out = Command::new(COLLECTOR).arg("example-config").output().unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../packaging/config/collector.example.toml"),
    )
    .unwrap();
    assert_eq!(printed, shipped);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("collector.toml");
    std::fs::write(&path, printed).unwrap();
    let out = Command::new(COLLECTOR)
        .args(["--config", path.to_str().unwrap(), "check-config", "--strict"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{}: ok\n", path.display()));
}

#[test]
fn vigilctl_explains_itself_and_refuses_bad_arguments() {
    let help = Command::new(VIGILCTL).arg("--help").output().unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for command in ["hosts", "customers", "tokens", "api-tokens", "audit"] {
        assert!(text.contains(command), "--help lists {command}:\n{text}");
    }
    let bad = Command::new(VIGILCTL).args(["hosts", "frobnicate"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let bad = Command::new(VIGILCTL).args(["--server", "ftp://x", "hosts"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("must start with http:// or https://"));
    assert!(text.contains("--insecure-http"), "--help names --insecure-http:\n{text}");
}

/// A token never crosses the network in plain http:// unless the operator says so; the refusal
/// comes before any connection (192.0.2.1 is TEST-NET-1: nothing would answer, and a connection
/// attempt would show as "cannot reach" instead).
#[test]
fn vigilctl_refuses_to_send_a_token_over_plain_http_off_loopback() {
    let out = Command::new(VIGILCTL)
        .args(["--server", "http://192.0.2.1:1", "--token", "vgo_test", "hosts"])
        .env_remove("VIGIL_TOKEN_FILE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--insecure-http"), "{stderr}");
    assert!(!stderr.contains("cannot reach"), "refused before connecting: {stderr}");

    // Loopback needs no flag: the request is made (and here finds nothing listening).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let out = Command::new(VIGILCTL)
        .args(["--server", &format!("http://127.0.0.1:{port}"), "--token", "vgo_test", "hosts"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot reach"), "{stderr}");
}

/// A token file others on the machine can read is refused, as ssh refuses such a key, with the
/// file, its mode and the fix; at 0600 the same file is used.
#[test]
fn vigilctl_refuses_a_token_file_others_can_read() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admin.token");
    std::fs::write(&path, "vgo_test\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let file = path.to_str().unwrap();
    let out = Command::new(VIGILCTL)
        .args(["--server", "http://127.0.0.1:1", "--token-file", file, "hosts"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("readable by others (mode 644)"), "{stderr}");
    assert!(stderr.contains(&format!("chmod 600 {file}")), "{stderr}");

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = Command::new(VIGILCTL)
        .args(["--server", "http://127.0.0.1:1", "--token-file", file, "hosts"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "read, then nothing listens: {stderr}");
    assert!(stderr.contains("cannot reach"), "{stderr}");
}
