//! Client identities for tests that speak gRPC themselves: enrolled through the real
//! `Enrollment` service like an agent, or forged (expired, not yet valid, from a foreign CA) to
//! prove the collector refuses them. Forging "expired" certificates needs the collector's CA key,
//! which a test may read from the collector's data directory.

use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use vigil_proto::v1::enrollment_client::EnrollmentClient;
use vigil_proto::v1::ingest_client::IngestClient;
use vigil_proto::v1::{
    AgentMessage, CollectorMessage, EnrollRequest, Hello, agent_message, collector_message,
};
use vigil_tls::{ClientIdentity, TlsError};

use crate::Collector;

/// A host identity: its key, its certificate and the HostId the certificate carries.
#[derive(Debug)]
pub struct TestIdentity {
    pub host_id: String,
    pub key: KeyPair,
    pub cert: CertificateDer<'static>,
    /// The CA the client trusts for the collector.
    pub ca: CertificateDer<'static>,
}

impl TestIdentity {
    pub fn client_identity(&self) -> ClientIdentity {
        ClientIdentity {
            cert_chain: vec![self.cert.clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der())),
        }
    }

    /// Enrols through the real `Enrollment.Enroll` call with `token`, pinning the CA.
    pub async fn enroll(
        collector: &Collector,
        token: &str,
        hostname: &str,
    ) -> Result<Self, tonic::Status> {
        Self::enroll_at(&collector.grpc_url(), &collector.ca_sha256, token, hostname).await
    }

    /// [`Self::enroll`] with a collector given by URL and CA fingerprint.
    pub async fn enroll_at(
        url: &str,
        ca_sha256: &str,
        token: &str,
        hostname: &str,
    ) -> Result<Self, tonic::Status> {
        let key = KeyPair::generate().expect("key");
        let csr = csr(&key);
        let mut client = EnrollmentClient::new(pinned_channel_at(url, ca_sha256).await);
        let response = client
            .enroll(EnrollRequest {
                token: token.to_owned(),
                csr_der: csr,
                hostname: hostname.to_owned(),
                machine_id: format!("machine-of-{hostname}"),
                agent_version: "test".into(),
            })
            .await?
            .into_inner();
        Ok(Self {
            host_id: response.host_id,
            key,
            cert: response.certificate_der.into(),
            ca: response.ca_certificate_der.into(),
        })
    }

    /// The `Hello` this identity opens a report stream with, as agent instance `instance`.
    pub fn hello(&self, instance: &str) -> AgentMessage {
        AgentMessage {
            kind: Some(agent_message::Kind::Hello(Hello {
                agent_instance: instance.into(),
                agent_version: "test".into(),
                interval_seconds: 10,
                machine_id: format!("machine-{instance}"),
                hostname: "test-host".into(),
                host_id: self.host_id.clone(),
                ..Default::default()
            })),
        }
    }

    /// Opens a report stream as this identity, sends its `Hello` for `instance` and then
    /// `messages`, and returns the acknowledged seqs and the final error, if any.
    pub async fn stream(
        &self,
        collector: &Collector,
        instance: &str,
        messages: Vec<AgentMessage>,
    ) -> (Vec<u64>, Option<tonic::Status>) {
        self.stream_opened_by(collector, self.hello(instance), messages).await
    }

    /// [`Self::stream`] opened by `hello` instead of this identity's own (an earlier agent's,
    /// say).
    pub async fn stream_opened_by(
        &self,
        collector: &Collector,
        hello: AgentMessage,
        messages: Vec<AgentMessage>,
    ) -> (Vec<u64>, Option<tonic::Status>) {
        let channel = self.channel(collector).await.expect("mTLS channel");
        let mut client = IngestClient::new(channel).max_encoding_message_size(64 << 20);
        let (tx, rx) = mpsc::channel(messages.len() + 1);
        tx.send(hello).await.expect("queue hello");
        for m in messages {
            tx.send(m).await.expect("queue message");
        }
        drop(tx);
        let mut inbound = match client.report(ReceiverStream::new(rx)).await {
            Ok(response) => response.into_inner(),
            Err(status) => return (Vec::new(), Some(status)),
        };
        let mut acked = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_secs(30), inbound.message()).await {
                Ok(Ok(Some(CollectorMessage {
                    kind: Some(collector_message::Kind::Ack(ack)),
                }))) => acked.push(ack.seq),
                Ok(Ok(Some(_))) => {}
                Ok(Ok(None)) => return (acked, None),
                Ok(Err(status)) => return (acked, Some(status)),
                Err(_) => panic!("no answer within 30 s"),
            }
        }
    }

    /// Like [`Self::stream`], but keeps the stream open after every message is acknowledged,
    /// as a connected agent does, until the returned sender is dropped.
    pub async fn stream_held(
        &self,
        collector: &Collector,
        instance: &str,
        messages: Vec<AgentMessage>,
    ) -> mpsc::Sender<AgentMessage> {
        let channel = self.channel(collector).await.expect("mTLS channel");
        let mut client = IngestClient::new(channel).max_encoding_message_size(64 << 20);
        let (tx, rx) = mpsc::channel(messages.len() + 1);
        tx.send(self.hello(instance)).await.expect("queue hello");
        let expected = messages.len();
        for m in messages {
            tx.send(m).await.expect("queue message");
        }
        let mut inbound =
            client.report(ReceiverStream::new(rx)).await.expect("report stream").into_inner();
        let mut acked = 0;
        while acked < expected {
            match tokio::time::timeout(Duration::from_secs(30), inbound.message()).await {
                Ok(Ok(Some(CollectorMessage { kind: Some(collector_message::Kind::Ack(_)) }))) => {
                    acked += 1
                }
                Ok(Ok(Some(_))) => {}
                other => panic!("stream ended before every report was acknowledged: {other:?}"),
            }
        }
        // Keep reading (and so the stream open) in the background.
        tokio::spawn(async move { while let Ok(Some(_)) = inbound.message().await {} });
        tx
    }

    /// An mTLS channel to the collector with this identity.
    pub async fn channel(&self, collector: &Collector) -> Result<Channel, TlsError> {
        self.channel_at(&collector.grpc_url()).await
    }

    pub async fn channel_at(&self, url: &str) -> Result<Channel, TlsError> {
        let config = vigil_tls::client_config(self.ca.clone(), Some(self.client_identity()))?;
        vigil_tls::connect_channel(url, Arc::new(config), Duration::from_secs(5)).await
    }
}

/// A PKCS#10 CSR for `key`, DER.
pub fn csr(key: &KeyPair) -> Vec<u8> {
    CertificateParams::new(Vec::<String>::new())
        .expect("params")
        .serialize_request(key)
        .expect("csr")
        .der()
        .to_vec()
}

/// The collector's CA certificate, as an agent stores it after enrolment.
pub fn ca_cert(collector: &Collector) -> CertificateDer<'static> {
    vigil_tls::pem::read_certs(&collector.data_dir.join("tls/ca.crt")).expect("ca.crt").remove(0)
}

/// A channel trusting the collector's CA, with or without a client identity.
pub async fn channel(
    collector: &Collector,
    identity: Option<ClientIdentity>,
) -> Result<Channel, TlsError> {
    let config = vigil_tls::client_config(ca_cert(collector), identity)?;
    vigil_tls::connect_channel(&collector.grpc_url(), Arc::new(config), Duration::from_secs(5))
        .await
}

/// A channel for enrolment: no client certificate, the CA pinned by its fingerprint.
pub async fn pinned_channel(collector: &Collector) -> Channel {
    pinned_channel_at(&collector.grpc_url(), &collector.ca_sha256).await
}

pub async fn pinned_channel_at(url: &str, ca_sha256: &str) -> Channel {
    let (config, _) = vigil_tls::pinned_client_config(ca_sha256).expect("pin");
    vigil_tls::connect_channel(url, Arc::new(config), Duration::from_secs(5))
        .await
        .expect("pinned channel")
}

fn client_params(host_id: &str, not_before: i64, not_after: i64) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, host_id);
    params.subject_alt_names =
        vec![SanType::URI(format!("urn:vigil:host:{host_id}").try_into().expect("uri"))];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_before = time(not_before);
    params.not_after = time(not_after);
    params
}

fn time(unix_seconds: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(unix_seconds).expect("time")
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A client certificate for `host_id` signed by the collector's own CA key, valid from
/// `from_s` to `until_s` seconds relative to now: expired or not yet valid certificates that
/// are otherwise perfect.
pub fn forged_by_collector_ca(
    collector: &Collector,
    host_id: &str,
    from_s: i64,
    until_s: i64,
) -> TestIdentity {
    let ca_key_pem =
        std::fs::read_to_string(collector.data_dir.join("tls/ca.key")).expect("ca.key");
    let ca_key = KeyPair::from_pem(&ca_key_pem).expect("ca key");
    let issuer = Issuer::from_ca_cert_der(&ca_cert(collector), ca_key).expect("issuer");
    let key = KeyPair::generate().expect("key");
    let now = now_s();
    let cert =
        client_params(host_id, now + from_s, now + until_s).signed_by(&key, &issuer).expect("sign");
    TestIdentity {
        host_id: host_id.to_owned(),
        key,
        cert: cert.der().clone(),
        ca: ca_cert(collector),
    }
}

/// A valid client certificate for `host_id` from a CA the collector has never seen.
pub fn from_foreign_ca(collector: &Collector, host_id: &str) -> TestIdentity {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::default();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    ca_params.distinguished_name.push(DnType::CommonName, "Foreign CA");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("key");
    let now = now_s();
    let cert = client_params(host_id, now - 60, now + 3600).signed_by(&key, &issuer).expect("sign");
    TestIdentity {
        host_id: host_id.to_owned(),
        key,
        cert: cert.der().clone(),
        ca: ca_cert(collector),
    }
}
