//! Enrolment: the gRPC `vigil.v1.Enrollment` service, the only calls served without a client
//! certificate. `Enroll` turns a one-time token plus a CSR into a host and its first client
//! certificate; `Renew` issues a new certificate for the same key, proven by a CSR signed with
//! it, up to `tls.renewal_grace` after expiry. Every attempt is rate-limited per source address,
//! logged and counted without the token, and a refused one stores nothing.

use std::net::IpAddr;
use std::sync::Arc;

use tonic::{Request, Response, Status};
use vigil_proto::v1::{
    EnrollRequest, EnrollResponse, RenewRequest, RenewResponse, enrollment_server,
};

use crate::clock::{SharedClock, UnixMs};
use crate::config::TlsConfig;
use crate::error::to_status;
use crate::events::{EnrollmentAttempt, HostRegistered};
use crate::ids::HostId;
use crate::pki::{CertificateAuthority, Csr, Issued};
use crate::ratelimit::RateLimiter;
use crate::store::{CertificateRecord, NewHost, Store};
use crate::tls::PeerInfo;

/// Longest hostname or machine ID accepted at enrolment.
const MAX_NAME: usize = 253;

#[derive(Debug, Clone)]
pub struct EnrollmentService {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    ca: Arc<CertificateAuthority>,
    clock: SharedClock,
    tls: TlsConfig,
    enroll_limiter: RateLimiter<IpAddr>,
    renew_limiter: RateLimiter<IpAddr>,
}

impl EnrollmentService {
    pub fn new(
        store: Arc<dyn Store>,
        ca: Arc<CertificateAuthority>,
        clock: SharedClock,
        tls: TlsConfig,
        attempts_per_minute: u32,
    ) -> Self {
        let enroll_limiter = RateLimiter::new(attempts_per_minute);
        let renew_limiter = RateLimiter::new(attempts_per_minute.saturating_mul(RENEW_RATE_FACTOR));
        Self { inner: Arc::new(Inner { store, ca, clock, tls, enroll_limiter, renew_limiter }) }
    }

    pub fn into_server(self) -> enrollment_server::EnrollmentServer<Self> {
        enrollment_server::EnrollmentServer::new(self).max_decoding_message_size(64 * 1024)
    }
}

/// Renew at two thirds of the certificate's life, counted from issue (not from the backdated
/// `not_before`, which would make a short-lived certificate due at once).
fn renew_after(issued_at_ms: UnixMs, not_after_ms: UnixMs) -> UnixMs {
    issued_at_ms + (not_after_ms - issued_at_ms) * 2 / 3
}

/// Renewals come from hosts that already proved who they are, often many behind one NAT
/// address after an outage: they get far more room than first enrolments.
const RENEW_RATE_FACTOR: u32 = 100;

struct Attempt {
    call: &'static str,
    peer: Option<std::net::SocketAddr>,
    /// When the call came in (throttles the refusal's log line).
    at: UnixMs,
}

impl Attempt {
    fn refuse(&self, outcome: &'static str, host: Option<HostId>, status: Status) -> Status {
        EnrollmentAttempt {
            call: self.call,
            outcome,
            peer: self.peer,
            host,
            message: status.message(),
        }
        .emit(self.at);
        status
    }
}

impl Inner {
    fn admit(&self, attempt: &Attempt) -> Result<(), Status> {
        let ip = attempt.peer.map(|p| p.ip()).unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let limiter =
            if attempt.call == "renew" { &self.renew_limiter } else { &self.enroll_limiter };
        if limiter.allow(&ip, self.clock.now_ms()) {
            return Ok(());
        }
        Err(attempt.refuse(
            "rate_limited",
            None,
            Status::resource_exhausted(format!(
                "too many enrolment attempts from {ip}; retry in a minute"
            )),
        ))
    }

    fn issue(
        &self,
        attempt: &Attempt,
        csr: &Csr,
        host: HostId,
        now: UnixMs,
    ) -> Result<Issued, Status> {
        self.ca.issue_client(csr, host, self.tls.client_cert_lifetime, now).map_err(|e| {
            attempt.refuse("internal", Some(host), Status::internal(format!("issuing failed: {e}")))
        })
    }
}

fn record(issued: &Issued, host: HostId, now: UnixMs, reason: &'static str) -> CertificateRecord {
    CertificateRecord {
        fingerprint: issued.fingerprint.clone(),
        host_id: host,
        key_sha256: issued.key_sha256.clone(),
        not_before_ms: issued.not_before_ms,
        not_after_ms: issued.not_after_ms,
        issued_at_ms: now,
        reason,
    }
}

#[tonic::async_trait]
impl enrollment_server::Enrollment for EnrollmentService {
    async fn enroll(
        &self,
        request: Request<EnrollRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        let me = &self.inner;
        let attempt = Attempt {
            call: "enroll",
            peer: request.extensions().get::<PeerInfo>().map(|p| p.addr),
            at: me.clock.now_ms(),
        };
        me.admit(&attempt)?;
        let req = request.into_inner();
        if req.token.is_empty() {
            return Err(attempt.refuse(
                "unauthenticated",
                None,
                Status::unauthenticated("no enrolment token"),
            ));
        }
        if req.hostname.len() > MAX_NAME || req.machine_id.len() > MAX_NAME {
            return Err(attempt.refuse(
                "invalid_argument",
                None,
                Status::invalid_argument(format!(
                    "hostname and machine_id are limited to {MAX_NAME} bytes"
                )),
            ));
        }
        let csr = Csr::parse(&req.csr_der).map_err(|e| {
            attempt.refuse("invalid_argument", None, Status::invalid_argument(e.to_string()))
        })?;
        let now = me.clock.now_ms();
        let host = HostId::new_random();
        let issued = me.issue(&attempt, &csr, host, now)?;
        let new_host = NewHost {
            id: host,
            hostname: req.hostname.clone(),
            machine_id: req.machine_id.clone(),
        };
        let outcome = me
            .store
            .enroll_host(
                &crate::secret::sha256(&req.token),
                &new_host,
                &record(&issued, host, now, "enroll"),
                now,
            )
            .await
            .map_err(|e| attempt.refuse("unavailable", None, to_status(&e)))?;
        let row = match outcome {
            Ok(row) => row,
            Err(refusal) => {
                return Err(attempt.refuse(
                    "unauthenticated",
                    None,
                    Status::unauthenticated(format!(
                        "enrolment token refused ({}); ask for a new one (`vigilctl tokens create`)",
                        refusal.as_str()
                    )),
                ));
            }
        };
        HostRegistered { host, hostname: &row.hostname }.emit();
        EnrollmentAttempt {
            call: "enroll",
            outcome: "ok",
            peer: attempt.peer,
            host: Some(host),
            message: &format!(
                "host {host} ({}) enrolled into {}/{}",
                row.hostname, row.customer, row.site
            ),
        }
        .emit(attempt.at);
        Ok(Response::new(EnrollResponse {
            host_id: host.to_string(),
            certificate_der: issued.der.to_vec(),
            ca_certificate_der: me.ca.cert().to_vec(),
            not_after_unix_ms: issued.not_after_ms,
            renew_after_unix_ms: renew_after(now, issued.not_after_ms),
        }))
    }

    async fn renew(
        &self,
        request: Request<RenewRequest>,
    ) -> Result<Response<RenewResponse>, Status> {
        let me = &self.inner;
        let attempt = Attempt {
            call: "renew",
            peer: request.extensions().get::<PeerInfo>().map(|p| p.addr),
            at: me.clock.now_ms(),
        };
        me.admit(&attempt)?;
        let req = request.into_inner();
        let fingerprint = vigil_tls::sha256_hex(&req.certificate_der);
        let cert = me
            .store
            .certificate(&fingerprint)
            .await
            .map_err(|e| attempt.refuse("unavailable", None, to_status(&e)))?
            .ok_or_else(|| {
                attempt.refuse(
                    "unauthenticated",
                    None,
                    Status::unauthenticated("certificate not issued by this collector"),
                )
            })?;
        let host = cert.host_id;
        if cert.host_revoked {
            return Err(attempt.refuse(
                "permission_denied",
                Some(host),
                Status::permission_denied(format!("host {host} is revoked")),
            ));
        }
        let now = me.clock.now_ms();
        let grace_ms = i64::try_from(me.tls.renewal_grace.as_millis()).unwrap_or(i64::MAX);
        if now > cert.not_after_ms.saturating_add(grace_ms) {
            return Err(attempt.refuse(
                "unauthenticated",
                Some(host),
                Status::unauthenticated(format!(
                    "certificate expired on {} and the {} grace period is over; \
                     re-enrol with a new token",
                    crate::clock::rfc3339(cert.not_after_ms),
                    vigil_config::duration::format(me.tls.renewal_grace)
                )),
            ));
        }
        let csr = Csr::parse(&req.csr_der).map_err(|e| {
            attempt.refuse("invalid_argument", Some(host), Status::invalid_argument(e.to_string()))
        })?;
        if csr.key_sha256 != cert.key_sha256 {
            return Err(attempt.refuse(
                "unauthenticated",
                Some(host),
                Status::unauthenticated("the CSR is not signed with the certificate's key"),
            ));
        }
        let issued = me.issue(&attempt, &csr, host, now)?;
        me.store
            .add_certificate(&record(&issued, host, now, "renew"))
            .await
            .map_err(|e| attempt.refuse("unavailable", Some(host), to_status(&e)))?;
        EnrollmentAttempt {
            call: "renew",
            outcome: "ok",
            peer: attempt.peer,
            host: Some(host),
            message: &format!(
                "certificate of host {host} renewed until {}",
                crate::clock::rfc3339(issued.not_after_ms)
            ),
        }
        .emit(attempt.at);
        Ok(Response::new(RenewResponse {
            certificate_der: issued.der.to_vec(),
            not_after_unix_ms: issued.not_after_ms,
            renew_after_unix_ms: renew_after(now, issued.not_after_ms),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_at_two_thirds_of_the_life() {
        assert_eq!(renew_after(0, 90_000), 60_000);
        assert_eq!(renew_after(1_000, 121_000), 81_000);
        // Two minutes of life: renew 80 s after issue, whatever the backdating.
        assert_eq!(renew_after(1_000_000, 1_120_000), 1_080_000);
    }
}
