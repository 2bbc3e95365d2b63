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
}
