//! The connection to the collector: a tonic channel and one `Ingest.Report` stream. Opening it
//! sends the Hello and waits for the Welcome that names this host's HostId; after that the
//! caller sends reports through [`Connection::tx`] and reads acknowledgements from
//! [`Connection::inbound`]. Knows nothing of spools or schedules.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Endpoint;
use vigil_proto::v1::{
    AgentMessage, CollectorMessage, Hello, agent_message, collector_message,
    ingest_client::IngestClient,
};

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("invalid collector address {0:?}")]
    Address(String),
    #[error("cannot connect: {0}")]
    Connect(#[source] tonic::transport::Error),
    #[error("collector refused the stream: {} ({:?})", .0.message(), .0.code())]
    Refused(tonic::Status),
    #[error("no Welcome from the collector within {0:?}")]
    NoWelcome(Duration),
    #[error("collector closed the stream before its Welcome")]
    ClosedEarly,
}

#[derive(Debug)]
pub struct Connection {
    pub host_id: String,
    pub tx: mpsc::Sender<AgentMessage>,
    pub inbound: Streaming<CollectorMessage>,
}

/// Opens the report stream: connect, Hello, Welcome, all within `timeout`.
pub async fn connect(
    collector: &str,
    hello: Hello,
    timeout: Duration,
) -> Result<Connection, TransportError> {
    let endpoint = Endpoint::from_shared(collector.to_owned())
        .map_err(|_| TransportError::Address(collector.to_owned()))?
        .connect_timeout(timeout)
        .tcp_keepalive(Some(Duration::from_secs(30)))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));
    let channel = endpoint.connect().await.map_err(TransportError::Connect)?;
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
            Ok(Connection { host_id: welcome.host_id, tx, inbound })
        }
        Some(_) => Err(TransportError::Refused(tonic::Status::internal(
            "collector sent something other than a Welcome first",
        ))),
        None => Err(TransportError::ClosedEarly),
    }
}
