//! The collector's own certificate authority: the root of every agent's identity.
//!
//! On first start the collector creates an ECDSA P-256 CA under `<data_dir>/tls/` (key mode 0600,
//! refused at start-up if anyone else can read it), or loads the one the operator provides. It
//! issues three kinds of certificate and nothing else: the collector's TLS server certificate,
//! agents' client certificates (CN and SAN URI carry the HostId, EKU clientAuth only, short-lived)
//! from a CSR whose key never left the agent, and renewals of those for the same key. Whether a
//! certificate is still good for anything (revoked host, expired, grace) is the store's and
//! ingest's business, not this module's.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
    SanType, SerialNumber,
};
use rustls::pki_types::{CertificateDer, CertificateSigningRequestDer, PrivateKeyDer};
use time::OffsetDateTime;
use vigil_tls::pem;

use crate::clock::UnixMs;
use crate::ids::HostId;

/// Certificates are valid from a little before they are issued, so that an agent whose clock
/// runs a few minutes behind can use its certificate at once.
const BACKDATE: Duration = Duration::from_secs(5 * 60);
/// Lifetime of the collector's CA and of its server certificate.
const CA_LIFETIME: Duration = Duration::from_secs(20 * 365 * 86_400);
const SERVER_LIFETIME: Duration = Duration::from_secs(365 * 86_400);

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("certificate signing request rejected: {0}")]
    BadCsr(String),
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
}

fn file_error(path: &Path, message: impl std::fmt::Display) -> PkiError {
    PkiError::File { path: path.to_owned(), message: message.to_string() }
}

/// A certificate this CA issued, with what the store keeps about it.
#[derive(Debug, Clone)]
pub struct Issued {
    pub der: CertificateDer<'static>,
    /// SHA-256 of the DER, lowercase hex: how a presented client certificate is looked up.
    pub fingerprint: String,
    /// SHA-256 of the subject public key: a renewal must be for the same key.
    pub key_sha256: String,
    pub not_before_ms: UnixMs,
    pub not_after_ms: UnixMs,
}

/// A parsed, signature-checked CSR: only its public key is ever used.
#[derive(Debug)]
pub struct Csr {
    params: CertificateSigningRequestParams,
    pub key_sha256: String,
}

impl Csr {
    pub fn parse(der: &[u8]) -> Result<Self, PkiError> {
        if der.is_empty() {
            return Err(PkiError::BadCsr("empty".into()));
        }
        let params =
            CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(der))
                .map_err(|e| PkiError::BadCsr(e.to_string()))?;
        let key_sha256 = vigil_tls::sha256_hex(params.public_key.der_bytes());
        Ok(Self { params, key_sha256 })
    }
}

#[derive(Debug)]
pub struct CertificateAuthority {
    cert: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    fingerprint: String,
}

/// Where the CA lives on disk.
#[derive(Debug, Clone)]
pub struct CaFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CaFiles {
    /// The default location, `<data_dir>/tls/ca.crt` and `ca.key`.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        let dir = data_dir.join("tls");
        Self { cert: dir.join("ca.crt"), key: dir.join("ca.key") }
    }
}

fn to_time(ms: UnixMs) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive
    SerialNumber::from_slice(&bytes)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl CertificateAuthority {
    /// Loads the CA from `files`, or creates it there when neither file exists and `create` is
    /// allowed. Returns whether it was created.
    pub fn load_or_create(
        files: &CaFiles,
        create: bool,
        now: UnixMs,
    ) -> Result<(Self, bool), PkiError> {
        match (files.cert.exists(), files.key.exists()) {
            (true, true) => Ok((Self::load(files)?, false)),
            (false, false) if create => {
                let (ca, key_pem) = Self::generate(now)?;
                if let Some(dir) = files.key.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| file_error(dir, e))?;
                }
                pem::write_file(&files.key, key_pem.as_bytes(), 0o600)
                    .map_err(|e| file_error(&files.key, e))?;
                pem::write_file(&files.cert, pem::cert_to_pem(&ca.cert).as_bytes(), 0o600)
                    .map_err(|e| file_error(&files.cert, e))?;
                Ok((ca, true))
            }
            (false, false) => Err(file_error(&files.cert, "CA certificate and key not found")),
            (true, false) => Err(file_error(&files.key, "CA key missing (the certificate exists)")),
            (false, true) => {
                Err(file_error(&files.cert, "CA certificate missing (the key exists)"))
            }
        }
    }

    fn generate(now: UnixMs) -> Result<(Self, String), PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Vigil");
        dn.push(DnType::CommonName, format!("Vigil collector CA {}", uuid::Uuid::new_v4()));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = to_time(now - ms(BACKDATE));
        params.not_after = to_time(now + ms(CA_LIFETIME));
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        let der = cert.der().clone();
        Ok((Self::from_parts(der, Issuer::new(params, key)), key_pem))
    }

    fn load(files: &CaFiles) -> Result<Self, PkiError> {
        check_private(&files.key)?;
        let key_pem = std::fs::read_to_string(&files.key).map_err(|e| file_error(&files.key, e))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| file_error(&files.key, e))?;
        let cert = pem::read_certs(&files.cert)
            .map_err(|e| file_error(&files.cert, e))?
            .into_iter()
            .next()
            .ok_or_else(|| file_error(&files.cert, "no certificate in the file"))?;
        let issuer =
            Issuer::from_ca_cert_der(&cert, key).map_err(|e| file_error(&files.cert, e))?;
        Ok(Self::from_parts(cert, issuer))
    }

    fn from_parts(cert: CertificateDer<'static>, issuer: Issuer<'static, KeyPair>) -> Self {
        let fingerprint = vigil_tls::sha256_hex(&cert);
        Self { cert, issuer, fingerprint }
    }

    pub fn cert(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// SHA-256 of the CA certificate: what `vigil-agent enroll --ca-sha256` pins.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The collector's TLS server certificate and key, for `names` (DNS names or IP addresses).
    pub fn issue_server(
        &self,
        names: &[String],
        now: UnixMs,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.to_vec())?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, "vigil-collector");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = to_time(now - ms(BACKDATE));
        params.not_after = to_time(now + ms(SERVER_LIFETIME));
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        let key = PrivateKeyDer::try_from(key.serialize_der())
            .map_err(|e| PkiError::BadCsr(e.to_string()))?;
        Ok((vec![cert.der().clone(), self.cert.clone()], key))
    }

    /// A client certificate for `host`, for the key of `csr`, valid for `lifetime` from `now`.
    pub fn issue_client(
        &self,
        csr: &Csr,
        host: HostId,
        lifetime: Duration,
        now: UnixMs,
    ) -> Result<Issued, PkiError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, host.to_string());
        let uri = format!("urn:vigil:host:{host}");
        params.subject_alt_names = vec![SanType::URI(
            uri.try_into().map_err(|e: rcgen::Error| PkiError::BadCsr(e.to_string()))?,
        )];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let not_before_ms = now - ms(BACKDATE);
        let not_after_ms = now + ms(lifetime);
        params.not_before = to_time(not_before_ms);
        params.not_after = to_time(not_after_ms);
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        let request =
            CertificateSigningRequestParams { params, public_key: csr.params.public_key.clone() };
        let cert = request.signed_by(&self.issuer)?;
        let der = cert.der().clone();
        Ok(Issued {
            fingerprint: vigil_tls::sha256_hex(&der),
            der,
            key_sha256: csr.key_sha256.clone(),
            not_before_ms,
            // X.509 times have one-second resolution.
            not_after_ms: not_after_ms / 1000 * 1000,
        })
    }
}

/// Refuses a private key file that anyone but its owner can read.
fn check_private(path: &Path) -> Result<(), PkiError> {
    crate::data_dir::check_private_file(path)
        .map_err(|message| PkiError::File { path: path.to_owned(), message })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr() -> (KeyPair, Vec<u8>) {
        let key = KeyPair::generate().unwrap();
        let der = CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .serialize_request(&key)
            .unwrap()
            .der()
            .to_vec();
        (key, der)
    }

    #[test]
    fn creates_then_loads_the_same_ca_with_a_private_key_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let files = CaFiles::in_data_dir(dir.path());
        let (created, was_created) = CertificateAuthority::load_or_create(&files, true, 0).unwrap();
        assert!(was_created);
        let mode = std::fs::metadata(&files.key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (loaded, was_created) = CertificateAuthority::load_or_create(&files, true, 0).unwrap();
        assert!(!was_created);
        assert_eq!(created.fingerprint(), loaded.fingerprint());
        assert_eq!(created.fingerprint().len(), 64);
    }

    #[test]
    fn refuses_a_world_readable_key() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let files = CaFiles::in_data_dir(dir.path());
        CertificateAuthority::load_or_create(&files, true, 0).unwrap();
        std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = CertificateAuthority::load_or_create(&files, true, 0).unwrap_err().to_string();
        assert!(err.contains("ca.key: readable by others (mode 644)"), "{err}");
    }

    #[test]
    fn missing_half_of_a_provided_ca_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let files = CaFiles::in_data_dir(dir.path());
        CertificateAuthority::load_or_create(&files, true, 0).unwrap();
        std::fs::remove_file(&files.key).unwrap();
        let err = CertificateAuthority::load_or_create(&files, true, 0).unwrap_err().to_string();
        assert!(err.ends_with("ca.key: CA key missing (the certificate exists)"), "{err}");
    }

    #[test]
    fn client_certificates_carry_the_host_and_the_csr_key() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, _) =
            CertificateAuthority::load_or_create(&CaFiles::in_data_dir(dir.path()), true, 0)
                .unwrap();
        let (key, der) = csr();
        let csr = Csr::parse(&der).unwrap();
        assert_eq!(csr.key_sha256, vigil_tls::sha256_hex(key.der_bytes()));
        let host = HostId::new_random();
        let now = 1_800_000_000_123;
        let issued = ca.issue_client(&csr, host, Duration::from_secs(120), now).unwrap();
        assert_eq!(issued.not_after_ms, 1_800_000_120_000);
        assert_eq!(issued.key_sha256, csr.key_sha256);
        let uri = format!("urn:vigil:host:{host}");
        let text = String::from_utf8_lossy(&issued.der);
        assert!(text.contains(&uri), "SAN URI missing");
        assert!(text.contains(&host.to_string()), "CN missing");
    }

    #[test]
    fn a_csr_with_a_broken_signature_is_refused() {
        let (_, mut der) = csr();
        let last = der.len() - 1;
        der[last] ^= 0x55;
        assert!(matches!(Csr::parse(&der), Err(PkiError::BadCsr(_))));
        assert!(matches!(Csr::parse(b"garbage"), Err(PkiError::BadCsr(_))));
    }
}
