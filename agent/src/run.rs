//! The agent's main loop, on one single-threaded runtime. Every interval it runs the probes,
//! numbers the report and writes it to the spool; independently, while a connection is up, it
//! sends what the collector has not yet received (replayed reports first, in seq order) and
//! deletes what the collector acknowledged. Collecting never waits for the network: a collector
//! that is down only makes the spool grow, and reconnection follows an exponential backoff with
//! jitter, logged once per step. On shutdown it says goodbye with the reason.
//!
//! The backoff is reset only by an acknowledgement, never by a connect, so a collector that
//! accepts the stream and then refuses every report is not hammered.
//!
//! What the collector refuses it names by seq (`vigil-seq`): a report it can never accept is
//! quarantined and the next one follows; a seq it holds with other content means this instance
//! is compromised (a restored state directory), so the agent begins a new instance and sends
//! what it holds again under it. A Welcome that says the collector holds more of this instance
//! than the state directory remembers (a rollback) moves the seq past it before anything is
//! sent, so no seq is ever reused.
//!
//! The loop also keeps the client certificate fresh ([`crate::renewal`]): after a renewal it
//! drops the report stream and reconnects at once with the new certificate; the spool makes
//! that lossless. The TLS files are read again for every connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc::OwnedPermit;
use tokio::time::{Instant, MissedTickBehavior};
use vigil_config::sd_notify::Notifier;
use vigil_proto::v1::{
    Ack, AgentMessage, CollectorMessage, Goodbye, Hello, HostFacts, Report, Welcome, agent_message,
    collector_message,
};

use crate::backoff::Backoff;
use crate::config::{AgentConfig, ProbesConfig};
use crate::enroll::rfc3339;
use crate::identity::TlsPaths;
use crate::probe::ProbeSet;
use crate::renewal::Renewal;
use crate::root::HostRoot;
use crate::spool::{Read, Spool, SpoolLimits};
use crate::state::AgentState;
use crate::transport::{self, Connection, TransportError, status_line};
use crate::{facts, goodbye};

pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// How often host facts (hostname, OS, DMI, ...) are read again.
const FACTS_REFRESH: Duration = Duration::from_secs(600);

pub fn unix_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Collects reports: probes plus (cached) host facts.
pub struct Collector {
    root: HostRoot,
    probes: ProbeSet,
    facts: Option<(Instant, HostFacts)>,
}

impl Collector {
    pub fn new(root: HostRoot, probe_timeout: Duration, probes: &ProbesConfig) -> Self {
        Self { probes: ProbeSet::new(root.clone(), probe_timeout, probes), root, facts: None }
    }

    async fn facts(&mut self) -> HostFacts {
        if let Some((at, facts)) = &self.facts
            && at.elapsed() < FACTS_REFRESH
        {
            return facts.clone();
        }
        let root = self.root.clone();
        let facts = tokio::task::spawn_blocking(move || facts::collect(&root, AGENT_VERSION))
            .await
            .unwrap_or_default();
        self.facts = Some((Instant::now(), facts.clone()));
        facts
    }

    /// One report with everything but its identity (instance, seq).
    pub async fn collect(&mut self) -> Report {
        let collected_at_unix_ms = unix_ms();
        let probes = self.probes.run_all().await;
        let facts = self.facts().await;
        Report {
            agent_instance: String::new(),
            seq: 0,
            collected_at_unix_ms,
            facts: Some(facts),
            probes,
            replayed: false,
            spool: None,
        }
    }
}

/// An open stream plus how far the spool has been sent on it.
struct Link {
    conn: Connection,
    /// Highest seq sent on this stream.
    sent_through: u64,
}

type Connecting = Pin<Box<dyn Future<Output = Result<Connection, TransportError>>>>;

/// The trailer in which the collector names the report a refusal is about.
const SEQ_TRAILER: &str = "vigil-seq";

/// What the loop's state is made of; each arm of the select loop is one method.
struct Runner {
    config: AgentConfig,
    /// The collector addresses, tried in order; `current` is the one in use.
    collectors: Vec<String>,
    current: usize,
    /// Collectors tried since the last acknowledgement, in this round of failover.
    tried: usize,
    paths: TlsPaths,
    spool: Spool,
    state: AgentState,
    collector: Collector,
    hello: Hello,
    backoff: Backoff,
    link: Option<Link>,
    retry_at: Option<Instant>,
}

impl Runner {
    /// The Hello for the next connection: the current instance, seq and spool.
    fn hello(&self) -> Hello {
        Hello {
            agent_instance: self.state.instance().to_owned(),
            last_seq: self.state.last_seq(),
            spool: Some(self.spool.status()),
            ..self.hello.clone()
        }
    }

    /// Opens a stream. The identity is read from its files for every connection: a renewal or a
    /// re-enrolment takes effect on the next one.
    fn connect(&self) -> Connecting {
        let (url, paths, hello) = (self.url().to_owned(), self.paths.clone(), self.hello());
        Box::pin(async move {
            let meta = paths.load_meta()?;
            let tls = Arc::new(paths.client_config(&meta)?);
            let hello = Hello { host_id: meta.host_id, ..hello };
            transport::connect(&url, tls, hello, Duration::from_secs(10)).await
        })
    }

    /// Every interval: collect, number, spool. The seq is persisted after the report is in
    /// the spool: a crash in between leaves the spool's copy (its seq counts at the next
    /// start), and a crash during the append leaves a cut-off record whose seq, never sent, is
    /// given to the next report, so the collector sees no gap.
    async fn collect_report(&mut self) {
        let mut report = self.collector.collect().await;
        report.agent_instance = self.state.instance().to_owned();
        report.seq = self.state.last_seq() + 1;
        report.spool = Some(self.spool.status());
        self.spool_report(&report);
        self.state.next_seq();
        tracing::debug!(seq = report.seq, spooled = self.spool.len(), "report collected");
    }

    fn spool_report(&mut self, report: &Report) {
        let dropped = self.spool.push(report);
        if dropped > 0 {
            tracing::error!(
                dropped,
                total_dropped = self.spool.dropped_total(),
                max_reports = self.config.spool.max_reports,
                max_bytes = self.config.spool.max_bytes,
                "spool full: oldest unacknowledged reports dropped"
            );
        }
    }

    /// What `systemctl status` shows: where reports go and how many wait in the spool.
    fn status_line(&self) -> String {
        let spooled = self.spool.len();
        match &self.link {
            Some(_) => format!("streaming to {}, {spooled} spooled", self.url()),
            None => format!("waiting for collector {}, {spooled} spooled", self.url()),
        }
    }

    /// The collector address in use.
    fn url(&self) -> &str {
        &self.collectors[self.current]
    }

    /// When to try again, and where: after a collector was unreachable or unavailable
    /// (`move_on`), the next one is tried at once until every one has been tried; then the
    /// backoff applies.
    fn schedule_retry(&mut self, move_on: bool) -> Duration {
        let delay = if move_on && self.tried + 1 < self.collectors.len() {
            self.tried += 1;
            Duration::ZERO
        } else {
            self.tried = 0;
            self.backoff.next_delay(&mut rand::rng())
        };
        if move_on && self.collectors.len() > 1 {
            self.current = (self.current + 1) % self.collectors.len();
        }
        self.retry_at = Some(Instant::now() + delay);
        delay
    }

    fn connected(&mut self, result: Result<Connection, TransportError>) {
        match result {
            Ok(conn) => {
                tracing::info!(
                    host_id = %conn.welcome.host_id,
                    replaying = self.spool.len(),
                    "connected to collector {}", self.url()
                );
                let welcome = conn.welcome.clone();
                self.link = Some(Link { conn, sent_through: 0 });
                self.check_rollback(&welcome);
            }
            Err(err) => {
                let failed = self.url().to_owned();
                let delay = self.schedule_retry(true);
                tracing::warn!(
                    attempt = self.backoff.attempt(),
                    spooled = self.spool.len(),
                    "collector {failed} unreachable: {err}; trying {} in {:.1}s",
                    self.url(),
                    delay.as_secs_f64()
                );
            }
        }
    }

    /// The collector holds more of this instance than the state directory remembers: the state
    /// was rolled back. New reports continue after the collector's highest seq, so none reuses
    /// a seq; what the spool still holds is sent as it is, and the collector compares it with
    /// what it has.
    fn check_rollback(&mut self, welcome: &Welcome) {
        let last = self.state.last_seq();
        if welcome.highest_seq > last {
            tracing::warn!(
                instance = self.state.instance(),
                last_seq = last,
                collector_highest_seq = welcome.highest_seq,
                "the state directory was rolled back (restored from a snapshot or a backup): \
                 the collector holds seqs this agent does not remember; continuing after them"
            );
            self.state.skip_to(welcome.highest_seq);
        }
    }

    /// The next report the stream has not carried yet.
    fn unsent(&self) -> Option<u64> {
        self.link.as_ref().and_then(|l| self.spool.next_after(l.sent_through))
    }

    fn send(&mut self, seq: u64, permit: Result<OwnedPermit<AgentMessage>, impl std::fmt::Debug>) {
        let interval_ms = self.config.interval.as_millis() as i64;
        let Some(link) = self.link.as_mut() else { return };
        let Ok(permit) = permit else {
            // The stream's sending side is gone; the inbound arm sees why.
            link.sent_through = u64::MAX;
            return;
        };
        if let Read::Report(mut report) = self.spool.read(seq) {
            // Late only when it waited for a connection longer than one interval.
            report.replayed = unix_ms().saturating_sub(report.collected_at_unix_ms) > interval_ms;
            permit.send(AgentMessage { kind: Some(agent_message::Kind::Report(*report)) });
        }
        link.sent_through = seq;
    }

    fn inbound(&mut self, message: Result<Option<CollectorMessage>, tonic::Status>) {
        match message {
            Ok(Some(CollectorMessage { kind: Some(collector_message::Kind::Ack(ack)) })) => {
                self.acknowledged(&ack)
            }
            Ok(Some(_)) => {}
            Ok(None) => self.lost("stream closed".to_owned(), true),
            Err(status) => {
                let seq = status
                    .metadata()
                    .get(SEQ_TRAILER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                match (status.code(), seq) {
                    (tonic::Code::InvalidArgument, Some(seq)) => {
                        tracing::error!(
                            seq,
                            reason = status.message(),
                            "collector refused report for good; quarantined, going on with the next"
                        );
                        self.spool.quarantine(seq, "refused");
                    }
                    (tonic::Code::AlreadyExists, Some(seq)) => self.compromised(seq, &status),
                    _ => {}
                }
                // A collector that is unavailable (stopping, its store down) or whose
                // connection broke: another replica may serve.
                let move_on = matches!(
                    status.code(),
                    tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
                );
                self.lost(status_line(&status), move_on);
            }
        }
    }

    fn acknowledged(&mut self, ack: &Ack) {
        if ack.agent_instance != self.state.instance() {
            return;
        }
        if ack.stale {
            tracing::warn!(
                seq = ack.seq,
                "collector answered a replay as older than its receipt window (not stored again)"
            );
        }
        self.spool.ack(&ack.agent_instance, ack.seq);
        self.backoff.reset();
        self.tried = 0;
        tracing::trace!(seq = ack.seq, spooled = self.spool.len(), "acknowledged");
    }

    /// The collector holds another report under one of this instance's seqs: begin a new
    /// instance and renumber everything held under it.
    fn compromised(&mut self, seq: u64, status: &tonic::Status) {
        let held = self.spool.take_all();
        let old = self.state.start_new_instance();
        self.spool.bind_instance(self.state.instance());
        let reason = format!(
            "the collector holds different content for seq {seq} of instance {old} (state \
             directory restored from a snapshot or a backup?)"
        );
        tracing::error!(
            old_instance = %old,
            new_instance = self.state.instance(),
            resending = held.len(),
            collector = status.message(),
            "{reason}; starting a new instance"
        );
        for mut report in held {
            report.agent_instance = self.state.instance().to_owned();
            report.seq = self.state.last_seq() + 1;
            self.spool_report(&report);
            self.state.next_seq();
        }
        self.hello.previous_instance = old;
        // The collector bounds Hello fields at 256 bytes.
        let mut cut = reason.len().min(256);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        self.hello.previous_instance_reason = reason[..cut].to_owned();
    }

    fn lost(&mut self, reason: String, move_on: bool) {
        let lost = self.url().to_owned();
        let delay = self.schedule_retry(move_on);
        tracing::warn!(
            spooled = self.spool.len(),
            "connection to collector {lost} lost ({reason}); reconnecting to {} in {:.1}s",
            self.url(),
            delay.as_secs_f64()
        );
        self.link = None;
    }

    /// Shutdown: what was collected but not yet sent (for up to a second), goodbye with the
    /// reason, then the last acknowledgements. A clean stop so delivers the latest report
    /// instead of leaving it spooled for the next start.
    async fn goodbye(mut self) {
        let reason = goodbye::reason(&self.collector.root, &self.config.state_dir);
        let flush_until = Instant::now() + Duration::from_secs(1);
        while let Some(seq) = self.unsent() {
            let Some(tx) = self.link.as_ref().map(|l| l.conn.tx.clone()) else { break };
            match tokio::time::timeout_at(flush_until, tx.reserve_owned()).await {
                Ok(permit) => self.send(seq, permit),
                Err(_) => break,
            }
        }
        if let Some(mut l) = self.link.take() {
            let bye = AgentMessage {
                kind: Some(agent_message::Kind::Goodbye(Goodbye {
                    reason: reason as i32,
                    expected_back_unix_ms: 0,
                })),
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), l.conn.tx.send(bye)).await;
            drop(l.conn.tx);
            // Collect the last acknowledgements until the collector ends the stream.
            let deadline = Instant::now() + Duration::from_secs(3);
            while let Ok(Ok(Some(message))) =
                tokio::time::timeout_at(deadline, l.conn.inbound.message()).await
            {
                if let Some(collector_message::Kind::Ack(ack)) = message.kind
                    && ack.agent_instance == self.state.instance()
                {
                    self.spool.ack(&ack.agent_instance, ack.seq);
                }
            }
        }
        tracing::info!(
            reason = ?reason,
            spooled = self.spool.len(),
            last_seq = self.state.last_seq(),
            "vigil-agent stopped"
        );
    }
}

/// Runs the agent until `shutdown` completes. `notifier` tells the service manager: `READY=1`
/// once the first report is in the spool, `STATUS=` when the link or the spool count changes,
/// `WATCHDOG=1` from this loop (so a hung loop is seen), `STOPPING=1` before the goodbye.
pub async fn run(
    config: AgentConfig,
    notifier: &Notifier,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let root = HostRoot::new(config.root.clone());
    let paths = TlsPaths::new(&config.state_dir);
    let meta = paths.load_meta()?;
    // A key that does not match the certificate, or a swapped CA, is worth stopping for.
    paths.client_config(&meta)?;
    let limits = SpoolLimits {
        max_reports: config.spool.max_reports,
        max_bytes: config.spool.max_bytes,
        max_memory_bytes: config.spool.max_memory_bytes,
    };
    let mut spool = Spool::open(&config.state_dir, limits);
    let mut state = AgentState::open(&config.state_dir, spool.max_seq())?;
    // Reports an earlier instance left unacknowledged are renumbered under this one.
    let earlier = spool.bind_instance(state.instance());
    if !earlier.is_empty() {
        tracing::warn!(
            reports = earlier.len(),
            instance = state.instance(),
            "reports of an earlier agent instance renumbered under this one"
        );
    }
    for mut report in earlier {
        report.agent_instance = state.instance().to_owned();
        report.seq = state.last_seq() + 1;
        spool.push(&report);
        state.next_seq();
    }
    let mut collector = Collector::new(root, config.probe_timeout, &config.probes_config());
    let first_facts = collector.facts().await;
    let machine_id = match first_facts.machine_id.trim() {
        "" => state.fallback_machine_id().unwrap_or_default(),
        id => id.to_owned(),
    };
    tracing::info!(
        instance = state.instance(),
        new_instance = state.created,
        last_seq = state.last_seq(),
        spooled = spool.len(),
        spooled_bytes = spool.bytes(),
        quarantined_total = spool.quarantined_total(),
        dropped_total = spool.dropped_total(),
        spool_in_memory = spool.disk_error().is_some(),
        collector = %config.collector,
        interval = ?config.interval,
        host_id = %meta.host_id,
        certificate_valid_until = %rfc3339(meta.not_after_unix_ms),
        "vigil-agent {AGENT_VERSION} started"
    );
    let hello = Hello {
        agent_version: AGENT_VERSION.to_owned(),
        interval_seconds: config.interval.as_secs() as u32,
        machine_id,
        hostname: first_facts.hostname.clone(),
        host_id: meta.host_id.clone(),
        ..Default::default()
    };
    let backoff = Backoff::new(config.backoff.initial, config.backoff.max);
    let mut renewal = Renewal::new(&paths, &meta, backoff.clone());
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut agent = Runner {
        collectors: config.collectors(),
        current: 0,
        tried: 0,
        config,
        paths,
        spool,
        state,
        collector,
        hello,
        backoff,
        link: None,
        retry_at: None,
    };
    let mut connecting: Option<Connecting> = Some(agent.connect());
    let mut shutdown = std::pin::pin!(shutdown);
    let mut watchdog = notifier.watchdog_interval().map(|every| {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticker
    });
    let mut ready = false;

    loop {
        let unsent = agent.unsent();
        // An owned permit keeps the select's output free of borrows of the link.
        let sender = agent.link.as_ref().map(|l| l.conn.tx.clone());
        let link_up = agent.link.is_some();
        let retry_at = agent.retry_at.filter(|_| connecting.is_none() && !link_up);
        tokio::select! {
            _ = ticker.tick() => {
                agent.collect_report().await;
                if !ready {
                    ready = true;
                    notifier.ready(&agent.status_line());
                }
            }
            _ = async { watchdog.as_mut().expect("guarded").tick().await }, if watchdog.is_some() => {
                notifier.watchdog();
            }
            result = async { connecting.as_mut().expect("guarded").await }, if connecting.is_some() => {
                connecting = None;
                agent.connected(result);
            }
            () = async { tokio::time::sleep_until(retry_at.expect("guarded")).await }, if retry_at.is_some() => {
                agent.retry_at = None;
                connecting = Some(agent.connect());
            }
            permit = async move { sender.expect("guarded").reserve_owned().await }, if unsent.is_some() => {
                agent.send(unsent.expect("guarded"), permit);
            }
            message = async { agent.link.as_mut().expect("guarded").conn.inbound.message().await }, if link_up => {
                agent.inbound(message);
            }
            () = tokio::time::sleep_until(renewal.wake), if renewal.running.is_none() => {
                renewal.on_wake(agent.url());
            }
            result = async { renewal.running.as_mut().expect("guarded").await }, if renewal.running.is_some() => {
                if renewal.on_done(result) {
                    // Reconnect now with the new certificate; unacknowledged reports are still
                    // in the spool and are sent again.
                    agent.link = None;
                    agent.retry_at = None;
                    connecting = Some(agent.connect());
                }
            }
            () = &mut shutdown => break,
        }
        // Formatted only under a service manager: this runs on every turn of the loop.
        if ready && notifier.is_enabled() {
            notifier.status(&agent.status_line());
        }
    }
    notifier.stopping(&format!(
        "stopping: saying goodbye to {}, {} spooled",
        agent.url(),
        agent.spool.len()
    ));
    agent.goodbye().await;
    Ok(())
}
