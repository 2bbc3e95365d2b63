//! Why the ingest stream refuses a connection, a stream or one report, as one coded error, so
//! every status an agent sees goes through the collector's error table ([`crate::error`]).
//! Refusals about one report carry its seq in the `vigil-seq` trailer
//! ([`crate::error::report_status`]); what the agent does with each code is in
//! `proto/vigil/v1/report.proto`.

use crate::error::{ErrorCode, HasErrorCode};
use crate::ids::HostId;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "a client certificate is required to report; enrol this agent with `vigil-agent enroll`"
    )]
    NoCertificate,
    #[error("client certificate not issued by this collector")]
    UnknownCertificate,
    #[error("host {0} is revoked")]
    Revoked(HostId),
    #[error("the client certificate is for host {cert} but the Hello claims host {claimed}")]
    WrongHost { cert: HostId, claimed: String },
    #[error("no Hello within {0}s")]
    NoHelloInTime(u64),
    #[error("stream closed before its Hello")]
    ClosedBeforeHello,
    #[error("host {0} sends live reports faster than the limit; slow down")]
    RateLimited(HostId),
    #[error(
        "host {host} replays more reports than its interval and time away allow ({allowed} on \
         this stream); keep the rest spooled and reconnect later"
    )]
    ReplayLimited { host: HostId, allowed: u64 },
    #[error("collector is shutting down; reconnect")]
    ShuttingDown,
    #[error("client certificate expired; reconnect with the renewed one")]
    CertificateExpired,
    #[error(
        "seq {seq} of agent instance {instance} is held with other content: the instance reused \
         a seq (its state directory restored from a snapshot or a backup?); start a new instance"
    )]
    SeqReused { seq: u64, instance: String },
}

impl HasErrorCode for Refusal {
    fn code(&self) -> ErrorCode {
        match self {
            Self::NoCertificate | Self::UnknownCertificate | Self::CertificateExpired => {
                ErrorCode::Unauthenticated
            }
            Self::Revoked(_) | Self::WrongHost { .. } => ErrorCode::PermissionDenied,
            Self::NoHelloInTime(_) => ErrorCode::DeadlineExceeded,
            Self::ClosedBeforeHello => ErrorCode::InvalidArgument,
            Self::RateLimited(_) | Self::ReplayLimited { .. } => ErrorCode::ResourceExhausted,
            Self::ShuttingDown => ErrorCode::Unavailable,
            Self::SeqReused { .. } => ErrorCode::AlreadyExists,
        }
    }
}
