//! Ingest: the gRPC `vigil.v1.Ingest/Report` stream. It validates what an agent sends, identifies
//! the host, queues each report for group commit, and acknowledges cumulatively, in order, only
//! after the report is durable. A resent report the store already holds is acknowledged and
//! ignored; an invalid one ends the stream with `InvalidArgument` and a message naming the fault,
//! after every earlier report on the stream has been acknowledged. Nothing one agent sends can
//! disturb another agent's stream.

pub mod cardinality;
pub mod commit;
pub mod identity;
pub mod refusal;
pub mod replay;
pub mod revocation;
pub mod validate;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use vigil_proto::v1::{
    Ack, AgentMessage, CollectorMessage, Hello, Report, Welcome, agent_message, collector_message,
    goodbye, ingest_server,
};

use crate::clock::{SharedClock, UnixMs};
use crate::config::IngestConfig;
use crate::error::{report_status, to_status};
use crate::events::{
    ClonedIdentity, RejectReason, ReportRejected, SeriesCapped, StreamClosed, StreamOpened,
};
use crate::ids::HostId;
use crate::ratelimit::RateLimiter;
use crate::readings;
use crate::sanitize::{for_log, for_log_text};
use crate::store::{CertificateRow, CommitOutcome, ReportRecord, Store, StoreError, StoreResult};
use crate::tls::PeerInfo;
use cardinality::{HostSeries, SeriesLimits};
use commit::CommitQueue;
use refusal::Refusal;
use replay::{ReplayBudget, ReplaySlack};
use revocation::Revocations;
use validate::InvalidInput;

/// How long a new stream may take to send its Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct IngestService {
    store: Arc<dyn Store>,
    queue: CommitQueue,
    clock: SharedClock,
    revocations: Revocations,
    max_report_bytes: usize,
    limits: validate::ReportLimits,
    live_rate: Arc<RateLimiter<HostId>>,
    live_reports_per_minute: u32,
    replay_gap: Duration,
    replay_slack: u32,
    /// The replay slack each host that streamed here has left (one small entry per enrolled
    /// host at most).
    replay_slack_left: Arc<Mutex<HashMap<HostId, ReplaySlack>>>,
    series_limits: SeriesLimits,
    /// The stored series of each host with a stream here, shared by its streams; an entry
    /// goes when the host's last stream closes.
    host_series: Arc<Mutex<HashMap<HostId, Weak<Mutex<HostSeries>>>>>,
    /// Becomes true when the collector stops: open streams end with `UNAVAILABLE` so the
    /// agents reconnect (elsewhere, or after the restart) instead of holding shutdown up.
    stopping: tokio::sync::watch::Receiver<bool>,
    /// The per-host series of the hosts whose streams this replica holds.
    host_metrics: crate::exporter::HostMetrics,
}

impl IngestService {
    pub fn new(
        store: Arc<dyn Store>,
        queue: CommitQueue,
        clock: SharedClock,
        revocations: Revocations,
        config: &IngestConfig,
        stopping: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        let limits = validate::ReportLimits {
            max_bytes: config.max_report_bytes,
            max_probes: config.max_probes_per_report,
            max_readings_per_probe: config.max_readings_per_probe,
            max_string_bytes: config.max_string_bytes,
        };
        Self {
            store,
            queue,
            clock,
            revocations,
            max_report_bytes: config.max_report_bytes,
            limits,
            live_rate: Arc::new(RateLimiter::new(config.live_reports_per_minute)),
            live_reports_per_minute: config.live_reports_per_minute,
            replay_gap: Duration::from_secs(1) / config.replay_reports_per_second.max(1),
            replay_slack: config.replay_slack_reports,
            replay_slack_left: Arc::default(),
            series_limits: SeriesLimits {
                max_per_host: config.max_series_per_host,
                max_new_per_day: config.max_new_series_per_day,
                max_name_bytes: config.max_series_name_bytes,
            },
            host_series: Arc::default(),
            stopping,
            host_metrics: crate::exporter::HostMetrics::default(),
        }
    }

    /// Exports the per-host series of the hosts streaming here into `metrics`.
    pub fn with_host_metrics(mut self, metrics: crate::exporter::HostMetrics) -> Self {
        self.host_metrics = metrics;
        self
    }

    /// The tonic service, with the decoder limit set so that an oversized message is caught
    /// (and answered with `InvalidArgument`) instead of buffered.
    pub fn into_server(self) -> ingest_server::IngestServer<Self> {
        // Room for the AgentMessage envelope around a report of the maximum size.
        let limit = self.max_report_bytes + 1024;
        ingest_server::IngestServer::new(self).max_decoding_message_size(limit)
    }

    /// The host a connection speaks for: the one its client certificate was issued to, unless
    /// that host is revoked. The message is never trusted for identity.
    async fn authenticate(&self, info: Option<&PeerInfo>) -> Result<CertificateRow, Status> {
        let peer = info.map(|i| i.addr);
        let refuse = |reason: RejectReason, status: Status| {
            ReportRejected { reason, peer, message: status.message() }.emit(self.clock.now_ms());
            status
        };
        let Some(fingerprint) = info.and_then(|i| i.client_cert_sha256.as_deref()) else {
            return Err(refuse(RejectReason::Unauthenticated, to_status(&Refusal::NoCertificate)));
        };
        let cert = match self.store.certificate(fingerprint).await {
            Ok(Some(cert)) => cert,
            Ok(None) => {
                return Err(refuse(
                    RejectReason::Unauthenticated,
                    to_status(&Refusal::UnknownCertificate),
                ));
            }
            Err(err) => return Err(refuse(RejectReason::StoreUnavailable, to_status(&err))),
        };
        if cert.host_revoked || self.revocations.is_revoked(cert.host_id) {
            return Err(refuse(
                RejectReason::PermissionDenied,
                to_status(&Refusal::Revoked(cert.host_id)),
            ));
        }
        Ok(cert)
    }

    /// The host's stored series: those of its other streams here, or loaded from the store.
    async fn host_series(&self, host: HostId) -> StoreResult<Arc<Mutex<HostSeries>>> {
        let held = |map: &HashMap<HostId, Weak<Mutex<HostSeries>>>| map.get(&host)?.upgrade();
        if let Some(series) = held(&self.host_series.lock().unwrap_or_else(|e| e.into_inner())) {
            return Ok(series);
        }
        let loaded = HostSeries::new(self.store.host_series(host).await?, self.clock.now_ms());
        let mut map = self.host_series.lock().unwrap_or_else(|e| e.into_inner());
        // Another stream of the host may have loaded it meanwhile.
        if let Some(series) = held(&map) {
            return Ok(series);
        }
        map.retain(|_, series| series.strong_count() > 0);
        let series = Arc::new(Mutex::new(loaded));
        map.insert(host, Arc::downgrade(&series));
        Ok(series)
    }

    /// What the stream may replay: see [`replay`]. The host's last stored report is the
    /// start of its time away (its enrolment when it never reported).
    async fn replay_budget(
        &self,
        host: HostId,
        interval_seconds: u32,
    ) -> StoreResult<ReplayBudget> {
        let row = self.store.get_host(host).await?;
        let now = self.clock.now_ms();
        let since = row.map_or(now, |h| h.last_seen_ms.unwrap_or(h.created_at_ms));
        Ok(ReplayBudget::new(
            since,
            now,
            i64::from(interval_seconds) * 1000,
            self.live_reports_per_minute,
        ))
    }

    /// Takes one report of `host`'s replay slack, if it has one left (see [`replay`]).
    fn take_replay_slack(&self, host: HostId, interval_seconds: u32) -> bool {
        let now = self.clock.now_ms();
        self.replay_slack_left
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(host)
            .or_insert_with(|| ReplaySlack::full(self.replay_slack, now))
            .take_one(
                now,
                i64::from(interval_seconds) * 1000,
                self.live_reports_per_minute,
                self.replay_slack,
            )
    }

    fn reject(&self, err: &InvalidInput, peer: Option<SocketAddr>) -> Status {
        let message = err.to_string();
        ReportRejected { reason: err.reject_reason(), peer, message: &message }
            .emit(self.clock.now_ms());
        to_status(err)
    }

    /// [`Self::reject`] for one report: the status names its seq, so the agent quarantines
    /// that report and goes on with the next.
    fn reject_report(&self, err: &InvalidInput, peer: Option<SocketAddr>, seq: u64) -> Status {
        let message = err.to_string();
        ReportRejected { reason: err.reject_reason(), peer, message: &message }
            .emit(self.clock.now_ms());
        report_status(err, seq)
    }

    /// The host's timeline learns from the Hello what the agent found: a state directory
    /// rolled back below what this collector holds, an instance that replaced a compromised
    /// one, reports dropped or quarantined. Each is recorded once.
    async fn record_hello_events(&self, host: HostId, hello: &Hello, highest_seq: u64) {
        let now = self.clock.now_ms();
        let mut events = Vec::new();
        // Agents that predate the spool status send no last_seq; they are not judged by it.
        if hello.spool.is_some() && hello.last_seq < highest_seq {
            events.push((
                "state_rolled_back",
                format!("{}:{}", hello.agent_instance, hello.last_seq),
                format!(
                    "agent instance {} came back with seq {} but the collector holds up to {}: \
                     its state directory was rolled back (restored from a snapshot or a \
                     backup); it continues after seq {}",
                    hello.agent_instance, hello.last_seq, highest_seq, highest_seq
                ),
            ));
        }
        if !hello.previous_instance.is_empty() {
            events.push((
                "instance_replaced",
                hello.previous_instance.clone(),
                format!(
                    "agent instance {} replaced instance {}: {}",
                    hello.agent_instance, hello.previous_instance, hello.previous_instance_reason
                ),
            ));
        }
        if let Some(spool) = &hello.spool {
            if spool.dropped_total > 0 {
                events.push((
                    "reports_dropped",
                    spool.dropped_total.to_string(),
                    format!(
                        "the agent's spool was full: {} reports dropped unsent in all",
                        spool.dropped_total
                    ),
                ));
            }
            if spool.quarantined_total > 0 {
                events.push((
                    "spool_quarantined",
                    spool.quarantined_total.to_string(),
                    format!(
                        "{} spool records failed their checks or were refused, and were moved to \
                         the agent's spool/quarantine/",
                        spool.quarantined_total
                    ),
                ));
            }
        }
        for (kind, key, detail) in events {
            // The agent's words are data: no control characters, bounded.
            let detail: String = detail.chars().filter(|c| !c.is_control()).take(1024).collect();
            match self.store.record_event(host, kind, &key, &detail, now).await {
                Ok(true) => {
                    tracing::warn!(host = %host, kind, detail = %for_log_text(&detail), "agent reported an event")
                }
                Ok(false) => {}
                Err(err) => tracing::warn!(host = %host, error = %err, "could not record event"),
            }
        }
    }
}

/// tonic's decoder refuses messages over `max_decoding_message_size` with `OutOfRange`; for
/// Vigil an oversized message is an invalid argument, said as such.
fn too_large(status: &Status, limit: usize) -> Option<InvalidInput> {
    (status.code() == tonic::Code::OutOfRange)
        .then(|| InvalidInput::MessageTooLarge { limit, detail: status.message().to_owned() })
}

enum Pending {
    Report { seq: u64, live: bool, committed: oneshot::Receiver<StoreResult<CommitOutcome>> },
    Goodbye(goodbye::Reason),
    Fail(Status),
}

struct Session {
    store: Arc<dyn Store>,
    clock: SharedClock,
    host: HostId,
    /// Where the stream comes from (its refusals are logged per address).
    peer: Option<SocketAddr>,
    instance: String,
    interval_seconds: u32,
    /// The instance's retention watermark when the stream opened (see `CommitOutcome::Stale`).
    pruned_through_seq: u64,
    out: mpsc::Sender<Result<CollectorMessage, Status>>,
    host_metrics: crate::exporter::HostMetrics,
    /// The host's stored series, shared with its other streams here.
    series: Arc<Mutex<HostSeries>>,
    /// Whether readings over the series caps were logged on this stream yet.
    series_capped_logged: AtomicBool,
}

/// The agent's side of one stream, as [`IngestService::read`] consumes it.
struct Inbound {
    hello: Hello,
    messages: Streaming<AgentMessage>,
    pending: mpsc::Sender<Pending>,
    peer: Option<SocketAddr>,
    replay: ReplayBudget,
}

#[tonic::async_trait]
impl ingest_server::Ingest for IngestService {
    type ReportStream = ReceiverStream<Result<CollectorMessage, Status>>;

    async fn report(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::ReportStream>, Status> {
        let info = request.extensions().get::<PeerInfo>().cloned();
        let peer = info.as_ref().map(|i| i.addr);
        let cert = self.authenticate(info.as_ref()).await?;
        let mut inbound = request.into_inner();
        let first = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Err(_) => return Err(to_status(&Refusal::NoHelloInTime(HELLO_TIMEOUT.as_secs()))),
            Ok(Err(status)) => {
                return Err(match too_large(&status, self.max_report_bytes) {
                    Some(err) => self.reject(&err, peer),
                    None => status,
                });
            }
            Ok(Ok(None)) => return Err(to_status(&Refusal::ClosedBeforeHello)),
            Ok(Ok(Some(message))) => message,
        };
        let hello: Hello = match first.kind {
            Some(agent_message::Kind::Hello(hello)) => hello,
            _ => return Err(self.reject(&InvalidInput::NoHello, peer)),
        };
        validate::hello(&hello).map_err(|e| self.reject(&e, peer))?;

        let host = cert.host_id;
        if !hello.host_id.is_empty() && hello.host_id != host.to_string() {
            let status =
                to_status(&Refusal::WrongHost { cert: host, claimed: hello.host_id.clone() });
            ReportRejected {
                reason: RejectReason::PermissionDenied,
                peer,
                message: status.message(),
            }
            .emit(self.clock.now_ms());
            return Err(status);
        }
        StreamOpened {
            host,
            hostname: &hello.hostname,
            instance: &hello.agent_instance,
            agent_version: &hello.agent_version,
            peer,
        }
        .emit();

        let interval_seconds = hello.interval_seconds.clamp(1, 86_400);
        // What the stream starts from: the instance's seqs, the host's series, its replays.
        let loaded = async {
            let (highest_seq, pruned_through_seq) = self
                .store
                .instances(host)
                .await?
                .iter()
                .find(|i| i.instance == hello.agent_instance)
                .map_or((0, 0), |i| (i.max_seq, i.pruned_through_seq));
            let series = self.host_series(host).await?;
            let replay = self.replay_budget(host, interval_seconds).await?;
            Ok::<_, StoreError>((highest_seq, pruned_through_seq, series, replay))
        };
        let (highest_seq, pruned_through_seq, series, replay) = match loaded.await {
            Ok(loaded) => loaded,
            Err(err) => {
                ReportRejected {
                    reason: RejectReason::StoreUnavailable,
                    peer,
                    message: &err.to_string(),
                }
                .emit(self.clock.now_ms());
                return Err(to_status(&err));
            }
        };
        self.record_hello_events(host, &hello, highest_seq).await;

        let (out, rx) = mpsc::channel(64);
        let welcome = CollectorMessage {
            kind: Some(collector_message::Kind::Welcome(Welcome {
                host_id: host.to_string(),
                highest_seq,
            })),
        };
        // The receiver is held right here, so this cannot fail.
        let _ = out.send(Ok(welcome)).await;

        let session = Arc::new(Session {
            store: self.store.clone(),
            clock: self.clock.clone(),
            host,
            peer,
            instance: hello.agent_instance.clone(),
            interval_seconds,
            pruned_through_seq,
            out,
            host_metrics: self.host_metrics.clone(),
            series,
            series_capped_logged: AtomicBool::new(false),
        });
        let (pending_tx, pending_rx) = mpsc::channel(256);
        tokio::spawn(session.clone().acknowledge(pending_rx));
        let expires_in = Duration::from_millis(
            u64::try_from(cert.not_after_ms - self.clock.now_ms()).unwrap_or(0),
        );
        let stream = Inbound { hello, messages: inbound, pending: pending_tx, peer, replay };
        tokio::spawn(self.clone().read(session, stream, expires_in));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

impl IngestService {
    /// Reads the agent's messages in order and queues them; never acknowledges by itself.
    async fn read(self, session: Arc<Session>, stream: Inbound, cert_expires_in: Duration) {
        let Inbound { hello, messages: mut inbound, pending, peer, mut replay } = stream;
        let mut revoked = self.revocations.subscribe();
        let mut stopping = self.stopping.clone();
        let expiry = tokio::time::sleep(cert_expires_in);
        tokio::pin!(expiry);
        loop {
            let message = tokio::select! {
                message = inbound.message() => message,
                // The acknowledging side ended (error sent, or the agent went away).
                () = pending.closed() => return,
                // Revoked on any replica: cut off, even mid-stream.
                () = async {
                    if revoked.wait_for(|set| set.contains(&session.host)).await.is_err() {
                        std::future::pending::<()>().await;
                    }
                } => {
                    let status = to_status(&Refusal::Revoked(session.host));
                    ReportRejected { reason: RejectReason::PermissionDenied, peer, message: status.message() }.emit(self.clock.now_ms());
                    let _ = pending.send(Pending::Fail(status)).await;
                    return;
                }
                () = async {
                    if stopping.wait_for(|stop| *stop).await.is_err() {
                        std::future::pending::<()>().await;
                    }
                } => {
                    let status = to_status(&Refusal::ShuttingDown);
                    let _ = pending.send(Pending::Fail(status)).await;
                    return;
                }
                () = &mut expiry => {
                    let status = to_status(&Refusal::CertificateExpired);
                    let _ = pending.send(Pending::Fail(status)).await;
                    return;
                }
            };
            let next = match message {
                Ok(None) => return,
                Err(status) => match too_large(&status, self.max_report_bytes) {
                    Some(err) => Pending::Fail(self.reject(&err, peer)),
                    None => {
                        tracing::debug!(host = %session.host, error = %status, "agent stream broke");
                        return;
                    }
                },
                Ok(Some(AgentMessage { kind: Some(agent_message::Kind::Report(report)) })) => {
                    match validate::report(&report, &session.instance, &self.limits) {
                        Ok(())
                            if !report.replayed
                                && !self.live_rate.allow(&session.host, self.clock.now_ms()) =>
                        {
                            let status = to_status(&Refusal::RateLimited(session.host));
                            ReportRejected {
                                reason: RejectReason::RateLimited,
                                peer,
                                message: status.message(),
                            }
                            .emit(self.clock.now_ms());
                            Pending::Fail(status)
                        }
                        Ok(())
                            if report.replayed
                                && !replay.take(|| {
                                    self.take_replay_slack(session.host, session.interval_seconds)
                                }) =>
                        {
                            let refusal = Refusal::ReplayLimited {
                                host: session.host,
                                allowed: replay.allowed(),
                            };
                            let status = report_status(&refusal, report.seq);
                            ReportRejected {
                                reason: RejectReason::ReplayLimited,
                                peer,
                                message: status.message(),
                            }
                            .emit(self.clock.now_ms());
                            Pending::Fail(status)
                        }
                        Ok(()) => {
                            if report.replayed {
                                // Pace a draining backlog instead of refusing it.
                                tokio::time::sleep(self.replay_gap).await;
                            }
                            let seq = report.seq;
                            let live = !report.replayed;
                            let record = self.record(&session, &hello, report);
                            Pending::Report {
                                seq,
                                live,
                                committed: self.queue.submit(record).await,
                            }
                        }
                        Err(err) => Pending::Fail(self.reject_report(&err, peer, report.seq)),
                    }
                }
                Ok(Some(AgentMessage { kind: Some(agent_message::Kind::Goodbye(bye)) })) => {
                    Pending::Goodbye(bye.reason())
                }
                Ok(Some(AgentMessage { kind: Some(agent_message::Kind::Hello(_)) })) => {
                    Pending::Fail(self.reject(&InvalidInput::RepeatedHello, peer))
                }
                Ok(Some(AgentMessage { kind: None })) => {
                    Pending::Fail(self.reject(&InvalidInput::Empty, peer))
                }
            };
            let stop = matches!(next, Pending::Fail(_));
            if pending.send(next).await.is_err() || stop {
                return;
            }
        }
    }

    /// The readings of a report that its host may store (see [`cardinality`]); the others are
    /// counted.
    fn admit(
        &self,
        session: &Session,
        readings: Vec<(String, f64)>,
        now: UnixMs,
    ) -> cardinality::Admitted {
        let (admitted, held) = {
            let mut series = session.series.lock().unwrap_or_else(|e| e.into_inner());
            (series.admit(readings, now, &self.series_limits), series.len())
        };
        if admitted.refused.total() > 0 {
            let first = !session.series_capped_logged.swap(true, Ordering::Relaxed);
            SeriesCapped { host: session.host, refused: admitted.refused, held, first }.emit();
            if first {
                self.record_series_capped(session.host, &admitted.refused, held, now);
            }
        }
        admitted
    }

    /// The host's timeline says, once a day, that readings were not stored.
    fn record_series_capped(
        &self,
        host: HostId,
        refused: &cardinality::Refused,
        held: usize,
        now: UnixMs,
    ) {
        let limits = &self.series_limits;
        let detail = format!(
            "roll-up readings not stored: the host has {held} series (at most {} stored, {} new \
             a day, names of at most {} bytes); in one report {} had a name too long, {} found \
             the host full, {} found the day's new series used up",
            limits.max_per_host,
            limits.max_new_per_day,
            limits.max_name_bytes,
            refused.name_too_long,
            refused.host_full,
            refused.day_full
        );
        let key = now.div_euclid(86_400_000).to_string();
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(err) = store.record_event(host, "series_capped", &key, &detail, now).await {
                tracing::warn!(host = %host, error = %err, "could not record event");
            }
        });
    }

    fn record(&self, session: &Session, hello: &Hello, mut report: Report) -> ReportRecord {
        let received_at_ms = self.clock.now_ms();
        let facts = report.facts.as_ref();
        let hostname = facts
            .map(|f| f.hostname.clone())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| hello.hostname.clone());
        let agent_version = facts
            .map(|f| f.agent_version.clone())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| hello.agent_version.clone());
        let collected_at_ms = match report.collected_at_unix_ms {
            0 => received_at_ms,
            t => t,
        };
        // Replayed reports count too: only a newer report replaces the held one, and right
        // after a reconnect the replayed ones are the freshest readings there are.
        self.host_metrics.observe(session.host, collected_at_ms, &report);
        let admitted = self.admit(session, readings::series(&report), received_at_ms);
        let replayed = std::mem::take(&mut report.replayed);
        let encoded = report.encode_to_vec();
        let digest = ring::digest::digest(&ring::digest::SHA256, &encoded);
        ReportRecord {
            host_id: session.host,
            instance: report.agent_instance.clone(),
            seq: report.seq,
            collected_at_ms,
            received_at_ms,
            replayed,
            hostname,
            agent_version,
            interval_seconds: session.interval_seconds,
            series: admitted.kept,
            new_series: admitted.new,
            series_refused: admitted.refused.total(),
            encoded,
            digest: digest.as_ref().try_into().expect("SHA-256 is 32 bytes"),
            pruned_through_seq: session.pruned_through_seq,
            received: std::time::Instant::now(),
        }
    }
}

impl Session {
    /// Acknowledges, in stream order, each report once its batch is durable.
    async fn acknowledge(self: Arc<Self>, mut pending: mpsc::Receiver<Pending>) {
        let mut close_reason = "agent closed the stream";
        while let Some(item) = pending.recv().await {
            let message = match item {
                Pending::Report { seq, live, committed } => match committed.await {
                    Ok(Ok(CommitOutcome::Conflict)) => {
                        let refusal = Refusal::SeqReused { seq, instance: self.instance.clone() };
                        self.record_seq_reused(seq, &refusal).await;
                        Err(report_status(&refusal, seq))
                    }
                    Ok(Ok(outcome)) => {
                        if live && outcome == CommitOutcome::Stored {
                            self.check_identity().await;
                        }
                        Ok(CollectorMessage {
                            kind: Some(collector_message::Kind::Ack(Ack {
                                agent_instance: self.instance.clone(),
                                seq,
                                stale: outcome == CommitOutcome::Stale,
                            })),
                        })
                    }
                    Ok(Err(err)) => {
                        // Refused alone (the agent quarantines it), or the store is down.
                        let (status, reason) = match &err {
                            StoreError::Rejected(_) => {
                                (report_status(&err, seq), RejectReason::Malformed)
                            }
                            _ => (to_status(&err), RejectReason::StoreUnavailable),
                        };
                        ReportRejected { reason, peer: self.peer, message: status.message() }
                            .emit(self.clock.now_ms());
                        Err(status)
                    }
                    Err(_) => Err(to_status(&Refusal::ShuttingDown)),
                },
                Pending::Goodbye(reason) => {
                    let reason = match reason {
                        goodbye::Reason::Reboot => "reboot",
                        goodbye::Reason::Upgrade => "upgrade",
                        goodbye::Reason::Stop | goodbye::Reason::Unspecified => "stop",
                    };
                    close_reason = reason;
                    if let Err(err) =
                        self.store.record_goodbye(self.host, reason, self.clock.now_ms()).await
                    {
                        tracing::warn!(host = %self.host, error = %err, "could not record goodbye");
                    }
                    tracing::info!(host = %self.host, instance = %for_log(&self.instance), reason, "agent said goodbye");
                    continue;
                }
                Pending::Fail(status) => Err(status),
            };
            let failed = message.is_err();
            if failed {
                close_reason = "rejected";
            }
            if self.out.send(message).await.is_err() || failed {
                break;
            }
        }
        StreamClosed { host: self.host, instance: &self.instance, reason: close_reason }.emit();
        // Its series are exported by the replica holding its next stream.
        self.host_metrics.forget(self.host);
    }

    async fn record_seq_reused(&self, seq: u64, refusal: &Refusal) {
        let detail = refusal.to_string();
        ReportRejected { reason: RejectReason::SeqReused, peer: self.peer, message: &detail }
            .emit(self.clock.now_ms());
        let key = format!("{}:{seq}", self.instance);
        let now = self.clock.now_ms();
        if let Err(err) = self.store.record_event(self.host, "seq_reused", &key, &detail, now).await
        {
            tracing::warn!(host = %self.host, error = %err, "could not record event");
        }
    }

    async fn check_identity(&self) {
        let Ok(instances) = self.store.instances(self.host).await else { return };
        let now = self.clock.now_ms();
        let window = i64::from(self.interval_seconds) * 3_000;
        if let Some(other) = identity::concurrent_instance(&instances, &self.instance, now, window)
        {
            let mut pair = [self.instance.as_str(), other.instance.as_str()];
            pair.sort_unstable();
            let detail = format!(
                "agent instances {} and {} are both reporting as this host",
                pair[0], pair[1]
            );
            let key = pair.join("|");
            match self.store.record_event(self.host, "cloned_identity", &key, &detail, now).await {
                Ok(true) => ClonedIdentity {
                    host: self.host,
                    instance: &self.instance,
                    other_instance: &other.instance,
                }
                .emit(),
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(host = %self.host, error = %err, "could not record event")
                }
            }
        }
    }
}
