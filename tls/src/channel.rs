//! A tonic [`Channel`] to the collector over our own TLS: tonic is built without its TLS
//! feature, so the connector here opens the TCP connection (no Nagle, TCP keepalive), runs the
//! rustls handshake with the URL's host as the server name, insists on ALPN `h2`, and hands the
//! stream to hyper. One place decides how every Vigil client reaches the collector.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::{TlsError, error_chain};

/// Idle time before TCP keepalive probes start.
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);
/// HTTP/2 PING interval, and how long to wait for the answer.
const H2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Where to connect, taken apart from an `https://HOST:PORT` URL.
#[derive(Debug, Clone, PartialEq)]
struct Target {
    /// Host without IPv6 brackets: a DNS name or an IP address.
    host: String,
    port: u16,
}

fn parse_target(url: &str) -> Result<Target, TlsError> {
    let bad = |reason: &str| TlsError::Url { url: url.to_owned(), reason: reason.to_owned() };
    let uri: Uri = url.parse().map_err(|_| bad("expected https://HOST:PORT"))?;
    if uri.scheme_str() != Some("https") {
        return Err(bad("the collector speaks TLS only; the URL must start with https://"));
    }
    let host = uri.host().ok_or_else(|| bad("no host in it"))?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if host.is_empty() {
        return Err(bad("no host in it"));
    }
    Ok(Target { host: host.to_owned(), port: uri.port_u16().unwrap_or(443) })
}

/// A channel to `url` (`https://host:port`; host a name, an IPv4 address or `[IPv6]`) over TLS
/// with `config`. Connecting (TCP, TLS, HTTP/2) must finish within `timeout`; the connection
/// then carries TCP keepalive (30 s) and HTTP/2 keepalive pings (every 30 s, 20 s to answer).
pub async fn connect_channel(
    url: &str,
    config: Arc<ClientConfig>,
    timeout: Duration,
) -> Result<Channel, TlsError> {
    let target = parse_target(url)?;
    let server_name = ServerName::try_from(target.host.clone()).map_err(|_| TlsError::Url {
        url: url.to_owned(),
        reason: format!("{:?} is neither a DNS name nor an IP address", target.host),
    })?;
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| TlsError::Url { url: url.to_owned(), reason: error_chain(&e) })?
        .connect_timeout(timeout)
        .http2_keep_alive_interval(H2_KEEPALIVE_INTERVAL)
        .keep_alive_timeout(H2_KEEPALIVE_TIMEOUT);
    let connector = TlsConnector::from(config);
    let connect = tower::service_fn(move |_: Uri| {
        let (target, server_name, connector) =
            (target.clone(), server_name.clone(), connector.clone());
        async move {
            let tcp = TcpStream::connect((target.host.as_str(), target.port)).await?;
            tcp.set_nodelay(true)?;
            rustix::net::sockopt::set_socket_keepalive(&tcp, true)?;
            rustix::net::sockopt::set_tcp_keepidle(&tcp, TCP_KEEPALIVE)?;
            let tls = connector.connect(server_name, tcp).await?;
            if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                return Err(std::io::Error::other(
                    "the server did not negotiate HTTP/2 (ALPN h2) in the TLS handshake",
                ));
            }
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    // The endpoint's connect timeout covers TCP and TLS; this one covers HTTP/2 setup too.
    match tokio::time::timeout(timeout, endpoint.connect_with_connector(connect)).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(err)) => {
            // tonic's own message is a bare "transport error"; the cause is in its sources.
            let mut reason = match std::error::Error::source(&err) {
                Some(cause) => error_chain(cause),
                None => error_chain(&err),
            };
            if reason.contains("UnknownIssuer") {
                reason.push_str(" (the server's certificate is not issued by the trusted CA)");
            }
            Err(TlsError::Connect { url: url.to_owned(), reason })
        }
        Err(_) => Err(TlsError::Connect {
            url: url.to_owned(),
            reason: format!("timed out after {timeout:?}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: &str, port: u16) -> Target {
        Target { host: host.to_owned(), port }
    }

    #[test]
    fn parses_names_and_addresses() {
        assert_eq!(parse_target("https://localhost:7700").unwrap(), target("localhost", 7700));
        assert_eq!(parse_target("https://10.0.0.1:1").unwrap(), target("10.0.0.1", 1));
        assert_eq!(parse_target("https://[::1]:7700").unwrap(), target("::1", 7700));
        assert_eq!(parse_target("https://vigil.example").unwrap(), target("vigil.example", 443));
    }

    #[test]
    fn refuses_plaintext_and_garbage() {
        let err = parse_target("http://127.0.0.1:7700").unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid collector URL \"http://127.0.0.1:7700\": the collector speaks TLS only; the \
             URL must start with https://"
        );
        let err = parse_target("127.0.0.1:7700").unwrap_err().to_string();
        assert!(err.starts_with("invalid collector URL \"127.0.0.1:7700\""), "{err}");
    }
}
