//! The connection to the collector: a mutual-TLS tonic channel ([`vigil_tls::connect_channel`])
//! and one `Ingest.Report` stream. Opening it sends the Hello and waits for the Welcome that
//! names this host's HostId; after that the caller sends reports through [`Connection::tx`] and
//! reads acknowledgements from [`Connection::inbound`]. Knows nothing of spools, schedules or
//! where the TLS configuration comes from.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use vigil_proto::v1::{
    AgentMessage, CollectorMessage, Hello, Welcome, agent_message, collector_message,
    ingest_client::IngestClient,
};
use vigil_tls::TlsError;
use vigil_tls::rustls::ClientConfig;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("{0}")]
    Identity(#[from] crate::identity::IdentityError),
    #[error("{0}")]
    Connect(#[source] TlsError),
    #[error("collector refused the stream: {}", status_line(.0))]
    Refused(tonic::Status),
    #[error("no Welcome from the collector within {0:?}")]
    NoWelcome(Duration),
    #[error("collector closed the stream before its Welcome")]
    ClosedEarly,
}

/// A status as one line: its message and code, and, when it carries one, the transport-level
/// cause (a TLS alert such as an expired or revoked client certificate arrives that way).
pub fn status_line(status: &tonic::Status) -> String {
    let message = match status.message() {
        "" => "(no message)",
        m => m,
    };
    let code = status.code();
    match std::error::Error::source(status).map(vigil_tls::error_chain) {
        Some(cause) if cause.starts_with(message) => format!("{cause} ({code:?})"),
        Some(cause) => format!("{message} ({code:?}): {cause}"),
        None => format!("{message} ({code:?})"),
    }
}

#[derive(Debug)]
pub struct Connection {
    /// The collector's Welcome: the HostId and what it holds of this instance.
    pub welcome: Welcome,
    pub tx: mpsc::Sender<AgentMessage>,
    pub inbound: Streaming<CollectorMessage>,
}

/// Opens the report stream over TLS with `tls` (which carries the client certificate): connect,
/// Hello, Welcome, all within `timeout`.
pub async fn connect(
    collector: &str,
    tls: Arc<ClientConfig>,
    hello: Hello,
    timeout: Duration,
) -> Result<Connection, TransportError> {
    let channel = vigil_tls::connect_channel(collector, tls, timeout)
        .await
        .map_err(TransportError::Connect)?;
    let mut client = IngestClient::new(channel);

    let (tx, rx) = mpsc::channel(32);
    let hello = AgentMessage { kind: Some(agent_message::Kind::Hello(hello)) };
    // The receiver is alive right here; the collector reads the Hello before it answers.
    let _ = tx.send(hello).await;
    let opened = tokio::time::timeout(timeout, client.report(ReceiverStream::new(rx)))
        .await
        .map_err(|_| TransportError::NoWelcome(timeout))?
        .map_err(TransportError::Refused)?;
    let mut inbound = opened.into_inner();
    let first = tokio::time::timeout(timeout, inbound.message())
        .await
        .map_err(|_| TransportError::NoWelcome(timeout))?
        .map_err(TransportError::Refused)?;
    match first {
        Some(CollectorMessage { kind: Some(collector_message::Kind::Welcome(welcome)) }) => {
            Ok(Connection { welcome, tx, inbound })
        }
        Some(_) => Err(TransportError::Refused(tonic::Status::internal(
            "collector sent something other than a Welcome first",
        ))),
        None => Err(TransportError::ClosedEarly),
    }
}
