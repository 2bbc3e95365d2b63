//! PEM files on a real filesystem: atomic writes with exact modes, round trips through
//! `cert_to_pem`, and read errors that name the file.

use std::os::unix::fs::PermissionsExt;

use rcgen::{CertificateParams, KeyPair};
use vigil_tls::TlsError;
use vigil_tls::pem::{cert_to_pem, read_certs, read_key, write_file};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn write_file_sets_the_mode_and_replaces_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("agent.key");
    write_file(&key, b"first", 0o600).unwrap();
    assert_eq!(mode(&key), 0o600);
    // A leftover temporary file from a crash, world-readable, does not leak into the result.
    let tmp = dir.path().join("agent.key.tmp");
    std::fs::write(&tmp, "stale").unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o666)).unwrap();
    write_file(&key, b"second", 0o600).unwrap();
    assert_eq!(std::fs::read(&key).unwrap(), b"second");
    assert_eq!(mode(&key), 0o600);
    assert!(!tmp.exists());

    let cert = dir.path().join("agent.crt");
    write_file(&cert, b"cert", 0o644).unwrap();
    assert_eq!(mode(&cert), 0o644);
}

#[test]
fn certificates_and_keys_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate().unwrap();
    let cert =
        CertificateParams::new(vec!["localhost".to_owned()]).unwrap().self_signed(&key).unwrap();
    assert_eq!(cert_to_pem(cert.der()), cert.pem().replace("\r\n", "\n"));

    let cert_path = dir.path().join("two.crt");
    let pem = format!("{}{}", cert_to_pem(cert.der()), cert_to_pem(cert.der()));
    write_file(&cert_path, pem.as_bytes(), 0o644).unwrap();
    assert_eq!(read_certs(&cert_path).unwrap(), vec![cert.der().clone(), cert.der().clone()]);

    let key_path = dir.path().join("agent.key");
    write_file(&key_path, key.serialize_pem().as_bytes(), 0o600).unwrap();
    assert_eq!(read_key(&key_path).unwrap().secret_der(), key.serialize_der());
}

#[test]
fn read_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.crt");
    let err = read_certs(&missing).unwrap_err();
    assert!(matches!(err, TlsError::Io { .. }), "{err:?}");
    assert!(err.to_string().starts_with(&format!("{}: ", missing.display())), "{err}");

    let empty = dir.path().join("empty.crt");
    std::fs::write(&empty, "not pem at all\n").unwrap();
    assert_eq!(
        read_certs(&empty).unwrap_err().to_string(),
        format!("{}: no certificate in it (expected a PEM \"CERTIFICATE\" block)", empty.display())
    );
    assert_eq!(
        read_key(&empty).unwrap_err().to_string(),
        format!("{}: no private key in it (expected a PEM \"PRIVATE KEY\" block)", empty.display())
    );

    let broken = dir.path().join("broken.crt");
    std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n")
        .unwrap();
    let err = read_certs(&broken).unwrap_err().to_string();
    assert!(err.starts_with(&format!("{}: not valid PEM", broken.display())), "{err}");
    let err = read_key(&missing).unwrap_err().to_string();
    assert!(err.starts_with(&missing.display().to_string()), "{err}");
}
