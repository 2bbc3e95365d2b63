//! The one error type of vigil-tls. Every message names what was being done and with what (the
//! file, the URL, the pin), because these errors end up as the single line an operator reads.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not valid PEM: {detail}", path.display())]
    Pem { path: PathBuf, detail: String },
    #[error("{}: no certificate in it (expected a PEM \"CERTIFICATE\" block)", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: no private key in it (expected a PEM \"PRIVATE KEY\" block)", path.display())]
    NoKey { path: PathBuf },
    #[error("invalid CA pin {0:?}: expected a SHA-256 as 64 hex digits (colons allowed)")]
    BadPin(String),
    #[error("the CA certificate cannot be used as a trust anchor: {0}")]
    BadCa(#[source] rustls::Error),
    #[error("the client certificate and key cannot be used: {0}")]
    BadIdentity(#[source] rustls::Error),
    #[error("the client certificate does not verify against the CA: {0}")]
    BadClientCert(#[source] rustls::Error),
    #[error("cannot build the TLS configuration: {0}")]
    Config(String),
    #[error("invalid collector URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },
}
