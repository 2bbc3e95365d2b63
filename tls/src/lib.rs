//! vigil-tls: the client side of Vigil's TLS, shared by the agent, the end-to-end tests and the
//! load generator so they all speak to the collector the same way. It owns the rustls client
//! configurations ([`client_config`] trusting the collector CA alone, [`pinned_client_config`]
//! trusting a CA known only by its SHA-256, for enrolment), the tonic [`Channel`] over them
//! ([`connect_channel`]; tonic's own TLS feature is not used) and the PEM files ([`pem`]).
//! Everything is TLS 1.3 with ALPN `h2` on the ring provider.
//!
//! [`Channel`]: tonic::transport::Channel

#![forbid(unsafe_code)]

mod channel;
mod config;
mod error;
pub mod pem;
mod pinned;

use std::sync::Arc;

pub use channel::connect_channel;
pub use config::{ClientIdentity, client_config, verify_client_cert};
pub use error::TlsError;
pub use pinned::{PinnedCa, pinned_client_config};
pub use rustls;

/// Installs rustls' ring provider as the process default. Idempotent: a provider installed
/// earlier (by this call or anyone else) is kept. The configurations built here name their
/// provider explicitly and do not need it; servers and other rustls users in the process may.
pub fn install_crypto_provider() {
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
}

/// Well-known locations of the system's CA bundle (Debian/Ubuntu, RHEL/Fedora, SUSE, Alpine).
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The system's CA bundle, if this machine has one where distributions put it.
pub fn system_ca_bundle() -> Option<&'static std::path::Path> {
    SYSTEM_CA_BUNDLES.iter().map(std::path::Path::new).find(|p| p.exists())
}

/// A TLS 1.2/1.3 client trusting the system's CA bundle (no roots when there is none, so
/// every HTTPS connection fails verification), ALPN `http/1.1`: for outgoing HTTPS to
/// third parties (webhooks), never for the collector's own endpoints.
pub fn system_roots_client_config() -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = system_ca_bundle() {
        roots.add_parsable_certificates(pem::read_certs(path)?);
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// SHA-256 of `der`, as 64 lowercase hex digits: the form in which CA pins are written.
pub fn sha256_hex(der: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, der).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

/// The one crypto provider every configuration here is built on.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Flattens an error and its sources into one line, skipping a source whose message the line
/// already contains (wrappers often repeat their cause). For errors whose own message is as
/// bare as tonic's "transport error".
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = String::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let message = e.to_string();
        if !line.contains(&message) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&message);
        }
        next = e.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_hex_is_lowercase_and_64_digits() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn install_crypto_provider_is_idempotent() {
        install_crypto_provider();
        install_crypto_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
