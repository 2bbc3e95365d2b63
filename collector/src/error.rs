//! One table of error codes for both protocols. Every module error answers [`ErrorCode`] through
//! [`HasErrorCode`], and the code maps once to a gRPC status and once to an HTTP status, so the
//! ingest stream, the HTTP API and vigilctl agree on what went wrong.

use axum::http::StatusCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The request is malformed or violates a limit; resending it unchanged will fail again.
    InvalidArgument,
    /// The thing named does not exist.
    NotFound,
    /// The caller is not who it must be.
    Unauthenticated,
    /// The caller is known but may not do this.
    PermissionDenied,
    /// The thing to create exists already.
    AlreadyExists,
    /// The thing is not in a state that allows this (the last admin token cannot be revoked);
    /// resending it unchanged fails until that state changes.
    FailedPrecondition,
    /// A rate or size limit was hit; retry later.
    ResourceExhausted,
    /// The store or another dependency is unavailable; retry later.
    Unavailable,
    /// The peer did not do its part in time.
    DeadlineExceeded,
    /// A bug or an unexpected state.
    Internal,
}

impl ErrorCode {
    pub fn grpc(self) -> tonic::Code {
        match self {
            Self::InvalidArgument => tonic::Code::InvalidArgument,
            Self::NotFound => tonic::Code::NotFound,
            Self::Unauthenticated => tonic::Code::Unauthenticated,
            Self::PermissionDenied => tonic::Code::PermissionDenied,
            Self::AlreadyExists => tonic::Code::AlreadyExists,
            Self::FailedPrecondition => tonic::Code::FailedPrecondition,
            Self::ResourceExhausted => tonic::Code::ResourceExhausted,
            Self::Unavailable => tonic::Code::Unavailable,
            Self::DeadlineExceeded => tonic::Code::DeadlineExceeded,
            Self::Internal => tonic::Code::Internal,
        }
    }

    pub fn http(self) -> StatusCode {
        match self {
            Self::InvalidArgument => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::PermissionDenied => StatusCode::FORBIDDEN,
            Self::AlreadyExists | Self::FailedPrecondition => StatusCode::CONFLICT,
            Self::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::DeadlineExceeded => StatusCode::REQUEST_TIMEOUT,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The code of an HTTP error answer that no handler made (a body, path or query string the
    /// framework refused, a method the route lacks, a size limit, a timeout): the JSON error
    /// body then says what kind of error it is, and the status stays the framework's precise one
    /// (405, 413, 415, 422…).
    pub fn of_http(status: StatusCode) -> Self {
        match status {
            StatusCode::NOT_FOUND => Self::NotFound,
            StatusCode::UNAUTHORIZED => Self::Unauthenticated,
            StatusCode::FORBIDDEN => Self::PermissionDenied,
            StatusCode::CONFLICT => Self::AlreadyExists,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::PAYLOAD_TOO_LARGE => {
                Self::ResourceExhausted
            }
            StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => Self::DeadlineExceeded,
            StatusCode::SERVICE_UNAVAILABLE => Self::Unavailable,
            s if s.is_client_error() => Self::InvalidArgument,
            _ => Self::Internal,
        }
    }

    /// Stable lowercase name used in API error bodies and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidArgument => "invalid_argument",
            Self::NotFound => "not_found",
            Self::Unauthenticated => "unauthenticated",
            Self::PermissionDenied => "permission_denied",
            Self::AlreadyExists => "already_exists",
            Self::FailedPrecondition => "failed_precondition",
            Self::ResourceExhausted => "resource_exhausted",
            Self::Unavailable => "unavailable",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::Internal => "internal",
        }
    }
}

pub trait HasErrorCode: std::error::Error {
    fn code(&self) -> ErrorCode;
}

/// Turns any coded error into a gRPC status carrying its message.
pub fn to_status<E: HasErrorCode>(err: &E) -> tonic::Status {
    tonic::Status::new(err.code().grpc(), err.to_string())
}

/// The trailer that names the report a refusal is about.
pub const SEQ_TRAILER: &str = "vigil-seq";

/// A status about one report: [`to_status`] with the report's seq in the `vigil-seq` trailer,
/// so the agent knows which report to quarantine or renumber.
pub fn report_status<E: HasErrorCode>(err: &E, seq: u64) -> tonic::Status {
    let mut status = to_status(err);
    status.metadata_mut().insert(SEQ_TRAILER, tonic::metadata::MetadataValue::from(seq));
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_maps_to_matching_grpc_and_http() {
        let all = [
            ErrorCode::InvalidArgument,
            ErrorCode::NotFound,
            ErrorCode::Unauthenticated,
            ErrorCode::PermissionDenied,
            ErrorCode::AlreadyExists,
            ErrorCode::ResourceExhausted,
            ErrorCode::Unavailable,
            ErrorCode::DeadlineExceeded,
            ErrorCode::Internal,
        ];
        for code in all {
            let (grpc, http) = (code.grpc(), code.http());
            let expected_http = match grpc {
                tonic::Code::InvalidArgument => 400,
                tonic::Code::NotFound => 404,
                tonic::Code::Unauthenticated => 401,
                tonic::Code::PermissionDenied => 403,
                tonic::Code::AlreadyExists => 409,
                tonic::Code::ResourceExhausted => 429,
                tonic::Code::Unavailable => 503,
                tonic::Code::DeadlineExceeded => 408,
                _ => 500,
            };
            assert_eq!(http.as_u16(), expected_http, "{code:?}");
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("probes[0] (cpu).usage_ratio is NaN")]
    struct Refused;

    impl HasErrorCode for Refused {
        fn code(&self) -> ErrorCode {
            ErrorCode::InvalidArgument
        }
    }

    #[test]
    fn a_report_status_names_its_seq_in_the_trailer() {
        let status = report_status(&Refused, 42);
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), "probes[0] (cpu).usage_ratio is NaN");
        let seq = status.metadata().get(SEQ_TRAILER).and_then(|v| v.to_str().ok());
        assert_eq!(seq, Some("42"));
        assert!(to_status(&Refused).metadata().get(SEQ_TRAILER).is_none());
    }
}
