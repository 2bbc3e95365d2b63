//! What a gRPC connection without a client certificate may do: one `Enrollment` call, nothing
//! else. Client certificates are optional at the TLS layer only so that a new agent can enrol;
//! this layer, in front of every service, refuses any other call on such a connection
//! (`UNAUTHENTICATED`, naming why) and any second call, and marks the connection finished once
//! its call is answered, so it closes a moment later ([`crate::watchdog`]). Connections with a
//! certificate pass untouched.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::http;
use vigil_proto::v1::enrollment_server::SERVICE_NAME as ENROLLMENT;

use crate::error::{ErrorCode, HasErrorCode};
use crate::events::{ConnectionRefused, Listener};
use crate::tls::PeerInfo;
use crate::watchdog::Finish;

/// The state of one certificate-less connection, shared by its calls.
#[derive(Debug, Clone, Default)]
pub struct CertlessConn {
    called: Arc<AtomicBool>,
    pub finish: Finish,
}

/// Why a call on a certificate-less connection was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertlessRefusal {
    #[error(
        "a client certificate is required for {path}; without one a connection may only call \
         the {ENROLLMENT} service"
    )]
    CertificateRequired { path: String },
    #[error(
        "a connection without a client certificate may make one {ENROLLMENT} call; open a new \
         connection for the next"
    )]
    OneCallOnly,
}

impl HasErrorCode for CertlessRefusal {
    fn code(&self) -> ErrorCode {
        ErrorCode::Unauthenticated
    }
}

impl CertlessRefusal {
    fn reason(&self) -> &'static str {
        match self {
            Self::CertificateRequired { .. } => "certificate_required",
            Self::OneCallOnly => "one_call",
        }
    }
}

/// Whether a call to `path` may go ahead on a certificate-less connection that has (or has
/// not) `called_before`.
pub fn admit(path: &str, called_before: bool) -> Result<(), CertlessRefusal> {
    let service = path.strip_prefix('/').and_then(|p| p.split_once('/')).map(|(s, _)| s);
    if service != Some(ENROLLMENT) {
        return Err(CertlessRefusal::CertificateRequired { path: path.to_owned() });
    }
    if called_before {
        return Err(CertlessRefusal::OneCallOnly);
    }
    Ok(())
}

/// The tower layer that applies [`admit`] in front of the gRPC services.
#[derive(Debug, Clone, Copy, Default)]
pub struct CertlessLayer;

impl<S> tower::Layer<S> for CertlessLayer {
    type Service = CertlessPolicy<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CertlessPolicy { inner }
    }
}

#[derive(Debug, Clone)]
pub struct CertlessPolicy<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for CertlessPolicy<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let certless = request.extensions().get::<PeerInfo>().and_then(|p| p.certless.clone());
        let Some(conn) = certless else {
            return Box::pin(self.inner.call(request));
        };
        let called_before = conn.called.swap(true, Ordering::AcqRel);
        match admit(request.uri().path(), called_before) {
            Ok(()) => {
                let answer = self.inner.call(request);
                Box::pin(async move {
                    let response = answer.await;
                    conn.finish.finish();
                    response
                })
            }
            Err(refusal) => {
                let message = refusal.to_string();
                let reason = refusal.reason();
                ConnectionRefused { listener: Listener::Grpc, reason, message: &message }.emit();
                conn.finish.finish();
                let response = crate::error::to_status(&refusal).into_http();
                Box::pin(std::future::ready(Ok(response)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_enrollment_call_is_admitted() {
        assert_eq!(admit("/vigil.v1.Enrollment/Enroll", false), Ok(()));
        assert_eq!(admit("/vigil.v1.Enrollment/Renew", true), Err(CertlessRefusal::OneCallOnly));
    }

    #[test]
    fn any_other_service_needs_a_certificate_and_the_refusal_names_the_call() {
        for path in ["/vigil.v1.Ingest/Report", "/vigil.v1.EnrollmentX/Enroll", "/", ""] {
            let refusal = admit(path, false).unwrap_err();
            assert_eq!(refusal, CertlessRefusal::CertificateRequired { path: path.into() });
            assert_eq!(refusal.code(), ErrorCode::Unauthenticated);
        }
        let message = admit("/vigil.v1.Ingest/Report", false).unwrap_err().to_string();
        assert!(
            message.starts_with("a client certificate is required for /vigil.v1.Ingest/Report")
        );
    }
}
