//! Trust on a pinned fingerprint, for enrolment: before a host has its collector's CA it knows
//! only the CA's SHA-256 (printed by the operator next to the token). The server is trusted iff
//! its presented chain contains a certificate with that hash AND the end-entity certificate
//! verifies against that certificate as the only root under the normal webpki rules (hostname,
//! EKU serverAuth, validity). Matching the hash alone is not enough: a client certificate the
//! same CA issued must not pass as a server. [`PinnedCa`] hands the matched CA to the caller.

use std::sync::{Arc, Mutex};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::{TlsError, hex, provider, sha256_hex};

/// The CA certificate the pinned verifier matched, once a handshake has verified.
#[derive(Debug, Default)]
pub struct PinnedCa {
    matched: Mutex<Option<CertificateDer<'static>>>,
}

impl PinnedCa {
    /// The presented certificate whose SHA-256 equals the pin, after a successful handshake;
    /// `None` before.
    pub fn ca(&self) -> Option<CertificateDer<'static>> {
        self.matched.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn set(&self, ca: CertificateDer<'static>) {
        *self.matched.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(ca);
    }
}

/// Parses a SHA-256 pin: 64 hex digits, any case, colons (and surrounding whitespace) allowed,
/// an optional `sha256:` prefix tolerated.
fn parse_pin(text: &str) -> Result<[u8; 32], TlsError> {
    let trimmed = text.trim();
    let body = trimmed
        .strip_prefix("sha256:")
        .or_else(|| trimmed.strip_prefix("SHA256:"))
        .unwrap_or(trimmed);
    let digits: Vec<u8> = body.bytes().filter(|b| *b != b':').collect();
    let bad = || TlsError::BadPin(text.to_owned());
    if digits.len() != 64 {
        return Err(bad());
    }
    let mut pin = [0u8; 32];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16).ok_or_else(bad)?;
        let lo = (pair[1] as char).to_digit(16).ok_or_else(bad)?;
        pin[i] = (hi * 16 + lo) as u8;
    }
    Ok(pin)
}

/// A client configuration for enrolment that trusts the server by CA pin (see the module
/// docs), TLS 1.3, ALPN h2, no client certificate. The returned [`PinnedCa`] yields the
/// matched CA certificate after the handshake.
pub fn pinned_client_config(
    ca_sha256_hex: &str,
) -> Result<(ClientConfig, Arc<PinnedCa>), TlsError> {
    let pin = parse_pin(ca_sha256_hex)?;
    let found = Arc::new(PinnedCa::default());
    let provider = provider();
    let verifier = PinnedVerifier { pin, provider: provider.clone(), found: found.clone() };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok((config, found))
}

#[derive(Debug)]
struct PinnedVerifier {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
    found: Arc<PinnedCa>,
}

/// Why a pinned handshake was refused before webpki was even asked.
#[derive(Debug, thiserror::Error)]
#[error(
    "no certificate the collector presented has the pinned CA SHA-256 {pin} (presented: {presented})"
)]
struct PinMismatch {
    pin: String,
    presented: String,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = std::iter::once(end_entity).chain(intermediates);
        let Some(ca) = presented.clone().find(|cert| {
            ring::digest::digest(&ring::digest::SHA256, cert.as_ref()).as_ref() == self.pin
        }) else {
            let presented: Vec<String> = presented.map(|c| sha256_hex(c.as_ref())).collect();
            return Err(rustls::Error::Other(rustls::OtherError(Arc::new(PinMismatch {
                pin: hex(&self.pin),
                presented: presented.join(", "),
            }))));
        };
        let ca = ca.clone().into_owned();
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone())?;
        let webpki =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(format!("pinned CA verifier: {e}")))?;
        let verified = webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        self.found.set(ca);
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_accepts_case_and_colons_and_refuses_garbage() {
        let lower = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let expected = parse_pin(lower).unwrap();
        assert_eq!(hex(&expected), lower);
        let colons: Vec<String> =
            lower.as_bytes().chunks(2).map(|p| String::from_utf8_lossy(p).to_uppercase()).collect();
        assert_eq!(parse_pin(&colons.join(":")).unwrap(), expected);
        assert_eq!(parse_pin(&format!("sha256:{lower}")).unwrap(), expected);
        for bad in ["", "abc", &lower[..62], &format!("{}zz", &lower[..62])] {
            let err = parse_pin(bad).unwrap_err().to_string();
            assert!(err.starts_with("invalid CA pin"), "{err}");
        }
    }
}
