//! The operator API's TLS (`http.tls = true`): which versions and protocols it offers. The
//! accept loop, handshake included, is [`super::listener`]'s, shared with plain HTTP.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The server side of the API's TLS: TLS 1.2 and 1.3 (browsers and curl), HTTP/1.1.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> anyhow::Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
