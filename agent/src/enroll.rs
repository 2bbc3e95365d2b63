//! Getting and keeping the client certificate: `Enroll` (a one-time token plus a CSR for a key
//! made here, over a connection trusted by the CA pin the operator gave) and `Renew` (a CSR
//! signed by the same key, over a connection trusted by the stored CA), plus when to renew.
//! Everything the collector returns is checked before it replaces anything on disk: the CA is
//! the pinned one, the certificate is a client certificate of that CA for our key. The token is
//! sent and otherwise never stored, logged or printed.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{CertificateParams, DnType, KeyPair};
use tonic::Code;
use vigil_proto::v1::enrollment_client::EnrollmentClient;
use vigil_proto::v1::{EnrollRequest, RenewRequest};
use vigil_tls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use vigil_tls::{ClientIdentity, TlsError, connect_channel, sha256_hex};

use crate::config::AgentConfig;
use crate::facts;
use crate::identity::{IdentityError, IdentityMeta, TlsPaths};
use crate::root::HostRoot;
use crate::run::AGENT_VERSION;
use crate::state::{self, StateError};
use crate::transport::status_line;

/// Longest TCP + TLS + HTTP/2 setup.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the answer to Enroll or Renew.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error(
        "already enrolled as host {host_id} ({}); pass --force to enroll again with a new key",
        path.display()
    )]
    AlreadyEnrolled { host_id: String, path: std::path::PathBuf },
    #[error("{0}")]
    BadPin(#[source] TlsError),
    #[error("{0}")]
    Connect(#[source] TlsError),
    #[error("collector refused the {call}: {}", status_line(.status))]
    Refused { call: &'static str, status: tonic::Status },
    #[error("no answer to the {call} from the collector within {:?}", CALL_TIMEOUT)]
    Timeout { call: &'static str },
    #[error("the collector's answer to the {call} is unusable: {reason}")]
    BadResponse { call: &'static str, reason: String },
    #[error("cannot make the key or the certificate request: {0}")]
    Crypto(#[from] rcgen::Error),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    State(#[from] StateError),
}

impl EnrollError {
    /// The process exit code: 2 for what the operator must fix in the command line, 1 else.
    pub fn exit_code(&self) -> u8 {
        match self {
            EnrollError::AlreadyEnrolled { .. } | EnrollError::BadPin(_) => 2,
            _ => 1,
        }
    }

    /// The gRPC status the collector answered with, if it answered with one.
    pub fn status_code(&self) -> Option<Code> {
        match self {
            EnrollError::Refused { status, .. } => Some(status.code()),
            _ => None,
        }
    }
}

/// A PKCS#10 request for `key`, subject CN = `common_name`, DER. The collector sets the real
/// subject; the CSR proves possession of the key.
pub fn csr_der(key: &KeyPair, common_name: &str) -> Result<Vec<u8>, rcgen::Error> {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, common_name);
    Ok(params.serialize_request(key)?.der().to_vec())
}

/// `unix_ms` (ms since the Unix epoch) as RFC 3339 UTC, to the second.
pub fn rfc3339(unix_ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(unix_ms.max(0) as u64);
    humantime::format_rfc3339_seconds(at).to_string()
}

fn unix_ms_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Checks a certificate the collector just issued: a client certificate of `ca` and for `key`.
/// Its time validity is checked halfway between now and the expiry the collector announced, so
/// a host clock running somewhat behind the collector's does not fail a good certificate.
fn check_issued(
    call: &'static str,
    ca: &CertificateDer<'static>,
    cert: &[u8],
    key: &KeyPair,
    not_after_unix_ms: i64,
) -> Result<(), EnrollError> {
    let bad = |reason: String| EnrollError::BadResponse { call, reason };
    let now = unix_ms_now();
    if not_after_unix_ms <= now {
        return Err(bad(format!(
            "the certificate expires at {}, which is already past (is this host's clock right?)",
            rfc3339(not_after_unix_ms)
        )));
    }
    let at = UnixTime::since_unix_epoch(Duration::from_millis(
        (now + (not_after_unix_ms - now) / 2) as u64,
    ));
    let cert = CertificateDer::from(cert.to_vec());
    vigil_tls::verify_client_cert(ca.clone(), &cert, at).map_err(|e| bad(e.to_string()))?;
    let identity = ClientIdentity {
        cert_chain: vec![cert],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    };
    vigil_tls::client_config(ca.clone(), Some(identity)).map_err(|e| bad(e.to_string()))?;
    Ok(())
}

/// `vigil-agent enroll`: exchanges `token` for a certificate from the collector whose CA has
/// the SHA-256 `ca_sha256`, and stores the identity in the state directory.
pub async fn enroll(
    config: &AgentConfig,
    token: &str,
    ca_sha256: &str,
    force: bool,
) -> Result<IdentityMeta, EnrollError> {
    const CALL: &str = "enrolment";
    let paths = TlsPaths::new(&config.state_dir);
    if paths.is_enrolled() && !force {
        let host_id = paths.load_meta().map(|m| m.host_id).unwrap_or_else(|_| "?".to_owned());
        return Err(EnrollError::AlreadyEnrolled { host_id, path: paths.meta.clone() });
    }
    let (tls, pinned) = vigil_tls::pinned_client_config(ca_sha256).map_err(EnrollError::BadPin)?;

    let root = HostRoot::new(config.root.clone());
    let facts = tokio::task::spawn_blocking(move || facts::collect(&root, AGENT_VERSION))
        .await
        .unwrap_or_default();
    let machine_id = match facts.machine_id.trim() {
        "" => state::fallback_machine_id(&config.state_dir)?,
        id => id.to_owned(),
    };
    let hostname = facts.hostname.trim().to_owned();
    let common_name = if hostname.is_empty() { machine_id.clone() } else { hostname.clone() };

    let key = KeyPair::generate()?;
    let csr_der = csr_der(&key, &common_name)?;
    // Enrolment goes to the first collector address; any replica serves it.
    let first = config.collectors().into_iter().next().unwrap_or_default();
    let channel = connect_channel(&first, Arc::new(tls), CONNECT_TIMEOUT)
        .await
        .map_err(EnrollError::Connect)?;
    let request = EnrollRequest {
        token: token.to_owned(),
        csr_der,
        hostname,
        machine_id,
        agent_version: AGENT_VERSION.to_owned(),
    };
    let response =
        tokio::time::timeout(CALL_TIMEOUT, EnrollmentClient::new(channel).enroll(request))
            .await
            .map_err(|_| EnrollError::Timeout { call: CALL })?
            .map_err(|status| EnrollError::Refused { call: CALL, status })?
            .into_inner();

    let bad = |reason: String| EnrollError::BadResponse { call: CALL, reason };
    let ca = pinned.ca().ok_or_else(|| bad("the handshake matched no pinned CA".to_owned()))?;
    if response.ca_certificate_der != ca.as_ref() {
        return Err(bad(format!(
            "it names the CA with SHA-256 {}, not the pinned {}",
            sha256_hex(&response.ca_certificate_der),
            sha256_hex(&ca)
        )));
    }
    if uuid::Uuid::parse_str(&response.host_id).is_err() {
        return Err(bad(format!("host_id {:?} is not a UUID", response.host_id)));
    }
    check_issued(CALL, &ca, &response.certificate_der, &key, response.not_after_unix_ms)?;

    let meta = IdentityMeta {
        host_id: response.host_id,
        not_after_unix_ms: response.not_after_unix_ms,
        renew_after_unix_ms: response.renew_after_unix_ms,
        ca_sha256: sha256_hex(&ca),
    };
    paths.save_enrollment(&key.serialize_pem(), &ca, &response.certificate_der, &meta)?;
    Ok(meta)
}

/// Renews the stored certificate for the stored key and stores the result. Works while the
/// certificate is valid and, at the collector's discretion, for a grace period after.
pub async fn renew(collector: &str, paths: &TlsPaths) -> Result<IdentityMeta, EnrollError> {
    const CALL: &str = "renewal";
    let meta = paths.load_meta()?;
    let ca = paths.load_ca(&meta)?;
    let cert = paths.load_cert()?;
    let key = KeyPair::from_pem(&paths.load_key_pem()?).map_err(|e| {
        EnrollError::Identity(IdentityError::Invalid {
            path: paths.key.clone(),
            message: format!("not a usable private key: {e}"),
        })
    })?;
    let csr_der = csr_der(&key, &meta.host_id)?;
    let tls = paths.server_only_config(&meta)?;
    let channel = connect_channel(collector, Arc::new(tls), CONNECT_TIMEOUT)
        .await
        .map_err(EnrollError::Connect)?;
    let request = RenewRequest { certificate_der: cert.to_vec(), csr_der };
    let response =
        tokio::time::timeout(CALL_TIMEOUT, EnrollmentClient::new(channel).renew(request))
            .await
            .map_err(|_| EnrollError::Timeout { call: CALL })?
            .map_err(|status| EnrollError::Refused { call: CALL, status })?
            .into_inner();
    check_issued(CALL, &ca, &response.certificate_der, &key, response.not_after_unix_ms)?;
    let renewed = IdentityMeta {
        not_after_unix_ms: response.not_after_unix_ms,
        renew_after_unix_ms: response.renew_after_unix_ms,
        ..meta
    };
    paths.save_renewal(&response.certificate_der, &renewed)?;
    Ok(renewed)
}

/// How long from `now` until the certificate should be renewed: at `renew_after` plus
/// `jitter` (a fraction in [0, 1)) of 5% of the certificate's lifetime, so a fleet enrolled
/// together does not renew together; never after `not_after`; zero if that moment has passed
/// (an expired certificate is still renewed at once: the collector allows a grace period).
/// The lifetime is taken as three times `not_after − renew_after`, as the collector renews at
/// two thirds of it. All times in ms since the Unix epoch.
pub fn renewal_delay(now: i64, renew_after: i64, not_after: i64, jitter: f64) -> Duration {
    let lifetime = not_after.saturating_sub(renew_after).max(0).saturating_mul(3);
    let spread = (lifetime as f64 * jitter.clamp(0.0, 1.0) / 20.0) as i64;
    let due = renew_after.saturating_add(spread).min(not_after);
    Duration::from_millis(due.saturating_sub(now).max(0) as u64)
}

/// The earliest next renewal right after one succeeded: halfway to the new `not_after`. Guards
/// against a `renew_after` that is already past when the certificate arrives (a very short
/// lifetime, clocks apart), which would otherwise renew again and again at once.
pub fn min_delay_after_renewal(now: i64, not_after: i64) -> Duration {
    Duration::from_millis((not_after.saturating_sub(now).max(0) / 2) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn renews_at_renew_after_plus_jitter() {
        // 90-day certificate issued at 0, renewal due at 60 days; 5% of 90 days is 4.5 days.
        let (renew_after, not_after) = (60 * DAY, 90 * DAY);
        assert_eq!(
            renewal_delay(10 * DAY, renew_after, not_after, 0.0),
            Duration::from_millis((50 * DAY) as u64)
        );
        assert_eq!(
            renewal_delay(10 * DAY, renew_after, not_after, 0.5),
            Duration::from_millis((52 * DAY + DAY / 4) as u64)
        );
        let latest = renewal_delay(10 * DAY, renew_after, not_after, 0.999_999);
        assert!(latest < Duration::from_millis((54 * DAY + DAY / 2) as u64), "{latest:?}");
        assert!(latest > Duration::from_millis((54 * DAY) as u64), "{latest:?}");
    }

    #[test]
    fn overdue_or_expired_means_now() {
        assert_eq!(renewal_delay(70 * DAY, 60 * DAY, 90 * DAY, 0.3), Duration::ZERO);
        assert_eq!(renewal_delay(95 * DAY, 60 * DAY, 90 * DAY, 0.3), Duration::ZERO);
    }

    #[test]
    fn never_after_not_after() {
        // renew_after at or past not_after (a collector bug) still renews before expiry.
        assert_eq!(
            renewal_delay(0, 100 * DAY, 90 * DAY, 0.9),
            Duration::from_millis((90 * DAY) as u64)
        );
        // Jitter beyond 1 is clamped: at most 5% of the lifetime past renew_after.
        let d = renewal_delay(0, 60 * DAY, 90 * DAY, 7.0);
        assert_eq!(d, Duration::from_millis((64 * DAY + DAY / 2) as u64));
    }

    #[test]
    fn a_fresh_certificate_is_not_renewed_again_at_once() {
        assert_eq!(min_delay_after_renewal(0, 90_000), Duration::from_secs(45));
        assert_eq!(min_delay_after_renewal(100, 50), Duration::ZERO);
    }

    #[test]
    fn csr_is_a_der_sequence() {
        let key = KeyPair::generate().unwrap();
        let der = csr_der(&key, "web-1").unwrap();
        assert_eq!(der.first(), Some(&0x30));
        assert!(der.len() > 100, "{}", der.len());
    }
}
