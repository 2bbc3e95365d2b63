//! The host's TLS identity on disk, under `<state_dir>/tls/`: the collector's CA (`ca.crt`),
//! the private key made here and never sent (`agent.key`, 0600), the client certificate the
//! collector issued for it (`agent.crt`) and `identity.json` (HostId, expiry, renewal time, CA
//! fingerprint). `identity.json` is written last and removed first, so its presence is what
//! "enrolled" means: a crash halfway through enrolment leaves a host that is simply not
//! enrolled yet. Everything is read again from the files for every connection, so a renewal
//! or a forced re-enrolment takes effect without a restart.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vigil_tls::rustls::ClientConfig;
use vigil_tls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use vigil_tls::{ClientIdentity, TlsError, pem, sha256_hex};

const KEY_MODE: u32 = 0o600;
const PUBLIC_MODE: u32 = 0o644;

/// What `identity.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityMeta {
    /// The HostId the collector assigned; the certificate's CN.
    pub host_id: String,
    /// When the certificate expires (ms since the Unix epoch).
    pub not_after_unix_ms: i64,
    /// When the collector wants it renewed (ms since the Unix epoch).
    pub renew_after_unix_ms: i64,
    /// SHA-256 of `ca.crt` (DER), lowercase hex: the pin the host was enrolled with.
    pub ca_sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("not enrolled: {} does not exist", .0.display())]
    NotEnrolled(PathBuf),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// The files of one state directory's identity.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsPaths {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub key: PathBuf,
    pub cert: PathBuf,
    pub meta: PathBuf,
}

impl TlsPaths {
    pub fn new(state_dir: &Path) -> Self {
        let dir = state_dir.join("tls");
        Self {
            ca: dir.join("ca.crt"),
            key: dir.join("agent.key"),
            cert: dir.join("agent.crt"),
            meta: dir.join("identity.json"),
            dir,
        }
    }

    /// Whether `identity.json` exists (see the module docs).
    pub fn is_enrolled(&self) -> bool {
        self.meta.exists()
    }

    /// Reads `identity.json`; [`IdentityError::NotEnrolled`] if there is none.
    pub fn load_meta(&self) -> Result<IdentityMeta, IdentityError> {
        let text = match std::fs::read_to_string(&self.meta) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(IdentityError::NotEnrolled(self.meta.clone()));
            }
            Err(source) => return Err(IdentityError::Io { path: self.meta.clone(), source }),
        };
        let meta: IdentityMeta = serde_json::from_str(&text).map_err(|e| {
            IdentityError::Invalid { path: self.meta.clone(), message: e.to_string() }
        })?;
        if meta.host_id.trim().is_empty() {
            return Err(IdentityError::Invalid {
                path: self.meta.clone(),
                message: "host_id is empty".to_owned(),
            });
        }
        Ok(meta)
    }

    /// The CA certificate, checked against the fingerprint recorded at enrolment.
    pub fn load_ca(&self, meta: &IdentityMeta) -> Result<CertificateDer<'static>, IdentityError> {
        let ca = first_cert(&self.ca)?;
        let actual = sha256_hex(&ca);
        if !actual.eq_ignore_ascii_case(&meta.ca_sha256) {
            return Err(IdentityError::Invalid {
                path: self.ca.clone(),
                message: format!(
                    "its SHA-256 is {actual}, but {} says the collector CA is {}",
                    self.meta.display(),
                    meta.ca_sha256
                ),
            });
        }
        Ok(ca)
    }

    pub fn load_cert(&self) -> Result<CertificateDer<'static>, IdentityError> {
        first_cert(&self.cert)
    }

    pub fn load_key(&self) -> Result<PrivateKeyDer<'static>, IdentityError> {
        Ok(pem::read_key(&self.key)?)
    }

    /// The key as PEM text (to sign a renewal CSR with it).
    pub fn load_key_pem(&self) -> Result<String, IdentityError> {
        std::fs::read_to_string(&self.key)
            .map_err(|source| IdentityError::Io { path: self.key.clone(), source })
    }

    /// The mutual-TLS configuration for the report stream: the CA as only root, the host's
    /// certificate and key as client identity. Fails if the key does not match the certificate.
    pub fn client_config(&self, meta: &IdentityMeta) -> Result<ClientConfig, IdentityError> {
        let identity =
            ClientIdentity { cert_chain: vec![self.load_cert()?], key: self.load_key()? };
        Ok(vigil_tls::client_config(self.load_ca(meta)?, Some(identity))?)
    }

    /// The configuration for calls that need no client certificate (Renew).
    pub fn server_only_config(&self, meta: &IdentityMeta) -> Result<ClientConfig, IdentityError> {
        Ok(vigil_tls::client_config(self.load_ca(meta)?, None)?)
    }

    /// Stores a fresh enrolment: key first, then the certificates, `identity.json` last. Any
    /// previous `identity.json` is removed before the key is replaced, so a failure halfway
    /// leaves "not enrolled" rather than a key that does not match the certificate.
    pub fn save_enrollment(
        &self,
        key_pem: &str,
        ca_der: &[u8],
        cert_der: &[u8],
        meta: &IdentityMeta,
    ) -> Result<(), IdentityError> {
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&self.dir)
                .map_err(|source| IdentityError::Io { path: self.dir.clone(), source })?;
        }
        match std::fs::remove_file(&self.meta) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(IdentityError::Io { path: self.meta.clone(), source: e });
            }
            _ => {}
        }
        pem::write_file(&self.key, key_pem.as_bytes(), KEY_MODE)?;
        pem::write_file(&self.ca, pem::cert_to_pem(ca_der).as_bytes(), PUBLIC_MODE)?;
        pem::write_file(&self.cert, pem::cert_to_pem(cert_der).as_bytes(), PUBLIC_MODE)?;
        self.save_meta(meta)
    }

    /// Stores a renewed certificate (same key), then its times.
    pub fn save_renewal(&self, cert_der: &[u8], meta: &IdentityMeta) -> Result<(), IdentityError> {
        pem::write_file(&self.cert, pem::cert_to_pem(cert_der).as_bytes(), PUBLIC_MODE)?;
        self.save_meta(meta)
    }

    fn save_meta(&self, meta: &IdentityMeta) -> Result<(), IdentityError> {
        let mut json = serde_json::to_string_pretty(meta).map_err(|e| IdentityError::Invalid {
            path: self.meta.clone(),
            message: e.to_string(),
        })?;
        json.push('\n');
        Ok(pem::write_file(&self.meta, json.as_bytes(), PUBLIC_MODE)?)
    }
}

fn first_cert(path: &Path) -> Result<CertificateDer<'static>, IdentityError> {
    let mut certs = pem::read_certs(path)?;
    // read_certs never returns an empty list.
    Ok(certs.swap_remove(0))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn pki() -> (rcgen::KeyPair, Vec<u8>, Vec<u8>) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::default();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name.push(rcgen::DnType::CommonName, "host");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &ca).unwrap();
        (key, ca.der().to_vec(), cert.der().to_vec())
    }

    fn meta(ca_der: &[u8]) -> IdentityMeta {
        IdentityMeta {
            host_id: "7f1c1a52-3b0e-4c7e-9d55-0c7f43a5e0b1".to_owned(),
            not_after_unix_ms: 2_000_000_000_000,
            renew_after_unix_ms: 1_900_000_000_000,
            ca_sha256: sha256_hex(ca_der),
        }
    }

    #[test]
    fn not_enrolled_until_saved() {
        let dir = tempfile::tempdir().unwrap();
        let paths = TlsPaths::new(dir.path());
        assert!(!paths.is_enrolled());
        let err = paths.load_meta().unwrap_err();
        assert!(matches!(err, IdentityError::NotEnrolled(_)), "{err}");
        assert!(err.to_string().ends_with("tls/identity.json does not exist"), "{err}");
    }

    #[test]
    fn save_and_load_round_trip_with_a_private_key() {
        let dir = tempfile::tempdir().unwrap();
        let paths = TlsPaths::new(&dir.path().join("state"));
        let (key, ca, cert) = pki();
        let meta = meta(&ca);
        paths.save_enrollment(&key.serialize_pem(), &ca, &cert, &meta).unwrap();

        assert!(paths.is_enrolled());
        assert_eq!(paths.load_meta().unwrap(), meta);
        assert_eq!(paths.load_ca(&meta).unwrap().as_ref(), ca.as_slice());
        assert_eq!(paths.load_cert().unwrap().as_ref(), cert.as_slice());
        assert_eq!(paths.load_key().unwrap().secret_der(), key.serialize_der());
        paths.client_config(&meta).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&paths.key), 0o600);
        assert_eq!(mode(&paths.cert), 0o644);
        assert_eq!(mode(&paths.ca), 0o644);

        let renewed = IdentityMeta { not_after_unix_ms: 2_100_000_000_000, ..meta.clone() };
        paths.save_renewal(&cert, &renewed).unwrap();
        assert_eq!(paths.load_meta().unwrap(), renewed);
    }

    #[test]
    fn a_swapped_ca_or_key_is_refused_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let paths = TlsPaths::new(dir.path());
        let (key, ca, cert) = pki();
        let (other_key, other_ca, _) = pki();
        let meta = meta(&ca);
        paths.save_enrollment(&key.serialize_pem(), &ca, &cert, &meta).unwrap();

        pem::write_file(&paths.ca, pem::cert_to_pem(&other_ca).as_bytes(), 0o644).unwrap();
        let err = paths.client_config(&meta).unwrap_err().to_string();
        assert!(err.starts_with(&paths.ca.display().to_string()), "{err}");
        assert!(err.contains("says the collector CA is"), "{err}");

        paths.save_enrollment(&other_key.serialize_pem(), &ca, &cert, &meta).unwrap();
        let err = paths.client_config(&meta).unwrap_err().to_string();
        assert!(err.starts_with("the client certificate and key cannot be used"), "{err}");
    }

    #[test]
    fn corrupt_identity_json_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let paths = TlsPaths::new(dir.path());
        std::fs::create_dir_all(&paths.dir).unwrap();
        std::fs::write(&paths.meta, "{\"host_id\": 3}").unwrap();
        let err = paths.load_meta().unwrap_err().to_string();
        assert!(err.starts_with(&paths.meta.display().to_string()), "{err}");
    }
}
