//! The agent's main loop, on one single-threaded runtime. Every interval it runs the probes,
//! numbers the report and writes it to the spool; independently, while a connection is up, it
//! sends what the collector has not yet received (replayed reports first, in seq order) and
//! deletes what the collector acknowledged. Collecting never waits for the network: a collector
//! that is down only makes the spool grow, and reconnection follows an exponential backoff with
//! jitter, logged once per step. On shutdown it says goodbye with the reason.
//!
//! The loop also keeps the client certificate fresh: at the renewal time the collector set (plus
//! jitter) it renews over a separate connection, then drops the report stream and reconnects at
//! once with the new certificate; the spool makes that lossless. A failed renewal is retried
//! with backoff while collecting goes on. The TLS files are read again for every connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message;
use rand::Rng;
use tokio::time::{Instant, MissedTickBehavior};
use vigil_proto::v1::{
    AgentMessage, CollectorMessage, Goodbye, Hello, HostFacts, Report, agent_message,
    collector_message,
};

use crate::backoff::Backoff;
use crate::config::{AgentConfig, ProbesConfig};
use crate::enroll::{self, EnrollError, min_delay_after_renewal, renewal_delay, rfc3339};
use crate::identity::{IdentityMeta, TlsPaths};
use crate::probe::ProbeSet;
use crate::root::HostRoot;
use crate::spool::Spool;
use crate::state::AgentState;
use crate::transport::{self, Connection, TransportError};
use crate::{facts, goodbye};

pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// How often host facts (hostname, OS, DMI, ...) are read again.
const FACTS_REFRESH: Duration = Duration::from_secs(600);

/// Longest sleep before the renewal time is checked against the wall clock again (the monotonic
/// clock stops while a machine is suspended; a certificate's validity does not).
const RENEW_RECHECK: Duration = Duration::from_secs(3600);

fn unix_ms() -> i64 {
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
        }
    }
}

/// An open stream plus how far the spool has been sent on it.
struct Link {
    conn: Connection,
    /// Highest seq sent on this stream.
    sent_through: u64,
    /// Reports with a lower seq were collected before this stream opened: they are replays.
    live_from: u64,
}

type Connecting = Pin<Box<dyn Future<Output = Result<Connection, TransportError>>>>;
type Renewing = Pin<Box<dyn Future<Output = Result<IdentityMeta, EnrollError>>>>;

/// When (ms since the Unix epoch) to renew `meta`'s certificate, with fresh jitter.
fn renewal_due(meta: &IdentityMeta, rng: &mut impl Rng) -> i64 {
    let now = unix_ms();
    let delay =
        renewal_delay(now, meta.renew_after_unix_ms, meta.not_after_unix_ms, rng.random::<f64>());
    now.saturating_add(delay.as_millis() as i64)
}

/// The next wake-up for the renewal timer: the due time, or sooner to re-check the wall clock.
fn renewal_wake(due_unix_ms: i64) -> Instant {
    let until_due = Duration::from_millis(due_unix_ms.saturating_sub(unix_ms()).max(0) as u64);
    Instant::now() + until_due.min(RENEW_RECHECK)
}

pub async fn run(config: AgentConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let root = HostRoot::new(config.root.clone());
    let paths = TlsPaths::new(&config.state_dir);
    let meta = paths.load_meta()?;
    // A key that does not match the certificate, or a swapped CA, is worth stopping for.
    paths.client_config(&meta)?;
    let mut spool = Spool::open(&config.state_dir, config.spool.max_reports)?;
    let mut state = AgentState::open(&config.state_dir, spool.max_seq())?;
    let mut collector = Collector::new(root.clone(), config.probe_timeout, &config.probes_config());
    let first_facts = collector.facts().await;
    let machine_id = match first_facts.machine_id.trim() {
        "" => state.fallback_machine_id()?,
        id => id.to_owned(),
    };
    tracing::info!(
        instance = state.instance(),
        new_instance = state.created,
        last_seq = state.last_seq(),
        spooled = spool.len(),
        collector = %config.collector,
        interval = ?config.interval,
        host_id = %meta.host_id,
        certificate_valid_until = %rfc3339(meta.not_after_unix_ms),
        "vigil-agent {AGENT_VERSION} started"
    );
    let hello = Hello {
        agent_instance: state.instance().to_owned(),
        agent_version: AGENT_VERSION.to_owned(),
        interval_seconds: config.interval.as_secs() as u32,
        machine_id,
        hostname: first_facts.hostname.clone(),
        host_id: meta.host_id.clone(),
    };
    // The identity is read from its files for every connection: a renewal or a re-enrolment
    // takes effect on the next one.
    let connect = |hello: Hello| -> Connecting {
        let (url, paths) = (config.collector.clone(), paths.clone());
        Box::pin(async move {
            let meta = paths.load_meta()?;
            let tls = Arc::new(paths.client_config(&meta)?);
            let hello = Hello { host_id: meta.host_id, ..hello };
            transport::connect(&url, tls, hello, Duration::from_secs(10)).await
        })
    };
    let renew = || -> Renewing {
        let (url, paths) = (config.collector.clone(), paths.clone());
        Box::pin(async move { enroll::renew(&url, &paths).await })
    };

    let mut backoff = Backoff::new(config.backoff.initial, config.backoff.max);
    let mut rng = rand::rng();
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut link: Option<Link> = None;
    let mut connecting: Option<Connecting> = Some(connect(hello.clone()));
    let mut retry_at: Option<Instant> = None;
    let mut renew_backoff = Backoff::new(config.backoff.initial, config.backoff.max);
    let mut renew_due = renewal_due(&meta, &mut rng);
    // The identity `renew_due` was computed for.
    let mut scheduled = meta.clone();
    let mut renew_wake = renewal_wake(renew_due);
    let mut renewing: Option<Renewing> = None;
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        let unsent = link.as_ref().and_then(|l| spool.next_after(l.sent_through));
        // An owned permit keeps the select's output free of borrows of `link`.
        let sender = link.as_ref().map(|l| l.conn.tx.clone());
        tokio::select! {
            _ = ticker.tick() => {
                let mut report = collector.collect().await;
                report.agent_instance = state.instance().to_owned();
                report.seq = state.next_seq()?;
                let dropped = spool.push(report.seq, &report.encode_to_vec())?;
                if dropped > 0 {
                    tracing::error!(
                        dropped,
                        total_dropped = spool.dropped(),
                        max_reports = config.spool.max_reports,
                        "spool full: oldest unacknowledged reports dropped"
                    );
                }
                tracing::debug!(seq = report.seq, spooled = spool.len(), "report collected");
            }
            result = async { connecting.as_mut().expect("guarded").await }, if connecting.is_some() => {
                connecting = None;
                match result {
                    Ok(conn) => {
                        backoff.reset();
                        tracing::info!(
                            host_id = %conn.host_id,
                            replaying = spool.len(),
                            "connected to collector {}", config.collector
                        );
                        let live_from = state.last_seq() + 1;
                        link = Some(Link { conn, sent_through: 0, live_from });
                    }
                    Err(err) => {
                        let delay = backoff.next_delay(&mut rng);
                        tracing::warn!(
                            attempt = backoff.attempt(),
                            spooled = spool.len(),
                            "collector {} unreachable: {err}; retrying in {:.1}s",
                            config.collector,
                            delay.as_secs_f64()
                        );
                        retry_at = Some(Instant::now() + delay);
                    }
                }
            }
            () = async { tokio::time::sleep_until(retry_at.expect("guarded")).await },
                if retry_at.is_some() && connecting.is_none() && link.is_none() => {
                retry_at = None;
                connecting = Some(connect(hello.clone()));
            }
            permit = async move { sender.expect("guarded").reserve_owned().await },
                if unsent.is_some() => {
                let seq = unsent.expect("guarded");
                let l = link.as_mut().expect("guarded");
                match permit {
                    Ok(permit) => {
                        if let Some(bytes) = spool.read(seq)? {
                            match Report::decode(bytes.as_slice()) {
                                Ok(mut report) => {
                                    report.replayed = seq < l.live_from;
                                    permit.send(AgentMessage {
                                        kind: Some(agent_message::Kind::Report(report)),
                                    });
                                }
                                Err(err) => {
                                    tracing::error!(seq, error = %err, "unreadable spooled report discarded");
                                    spool.discard(seq);
                                }
                            }
                        }
                        l.sent_through = seq;
                    }
                    Err(_) => {
                        // The stream's sending side is gone; the inbound arm sees why.
                        l.sent_through = u64::MAX;
                    }
                }
            }
            message = async { link.as_mut().expect("guarded").conn.inbound.message().await },
                if link.is_some() => {
                match message {
                    Ok(Some(CollectorMessage { kind: Some(collector_message::Kind::Ack(ack)) })) => {
                        spool.ack(ack.seq);
                        tracing::trace!(seq = ack.seq, spooled = spool.len(), "acknowledged");
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => {
                        if let Err(status) = &message
                            && status.code() == tonic::Code::InvalidArgument {
                                // Everything before the offending report was acknowledged first,
                                // so the oldest spooled report is the one refused. Resending it
                                // would fail forever.
                                if let Some(seq) = spool.next_after(0) {
                                    tracing::error!(seq, reason = status.message(), "collector rejected report; discarded");
                                    spool.discard(seq);
                                }
                            }
                        let reason = match &message {
                            Err(status) => status.message().to_owned(),
                            _ => "stream closed".to_owned(),
                        };
                        let delay = backoff.next_delay(&mut rng);
                        tracing::warn!(
                            spooled = spool.len(),
                            "connection to collector lost ({reason}); reconnecting in {:.1}s",
                            delay.as_secs_f64()
                        );
                        link = None;
                        retry_at = Some(Instant::now() + delay);
                    }
                }
            }
            () = tokio::time::sleep_until(renew_wake), if renewing.is_none() => {
                let now = unix_ms();
                match paths.load_meta() {
                    // Renewed or re-enrolled by someone else since it was scheduled.
                    Ok(current) if current != scheduled && current.renew_after_unix_ms > now => {
                        renew_due = renewal_due(&current, &mut rng);
                        scheduled = current;
                    }
                    _ if now >= renew_due => renewing = Some(renew()),
                    _ => {}
                }
                renew_wake = renewal_wake(renew_due);
            }
            result = async { renewing.as_mut().expect("guarded").await }, if renewing.is_some() => {
                renewing = None;
                match result {
                    Ok(renewed) => {
                        renew_backoff.reset();
                        let now = unix_ms();
                        let floor = min_delay_after_renewal(now, renewed.not_after_unix_ms);
                        renew_due = renewal_due(&renewed, &mut rng)
                            .max(now.saturating_add(floor.as_millis() as i64));
                        scheduled = renewed.clone();
                        tracing::info!(
                            host_id = %renewed.host_id,
                            next_renewal = %rfc3339(renew_due),
                            "certificate renewed; valid until {}",
                            rfc3339(renewed.not_after_unix_ms)
                        );
                        // Reconnect now with the new certificate; unacknowledged reports are
                        // still in the spool and are sent again.
                        link = None;
                        retry_at = None;
                        connecting = Some(connect(hello.clone()));
                    }
                    Err(err) => {
                        let delay = renew_backoff.next_delay(&mut rng);
                        let now = unix_ms();
                        let expired = paths
                            .load_meta()
                            .map(|m| now > m.not_after_unix_ms)
                            .unwrap_or(false);
                        if expired && err.status_code() == Some(tonic::Code::Unauthenticated) {
                            tracing::error!(
                                attempt = renew_backoff.attempt(),
                                reason = %err,
                                "certificate expired beyond the grace period: re-enroll with a \
                                 new token; retrying in {:.1}s",
                                delay.as_secs_f64()
                            );
                        } else {
                            tracing::warn!(
                                attempt = renew_backoff.attempt(),
                                expired,
                                "certificate renewal failed: {err}; retrying in {:.1}s",
                                delay.as_secs_f64()
                            );
                        }
                        renew_due = now.saturating_add(delay.as_millis() as i64);
                    }
                }
                renew_wake = renewal_wake(renew_due);
            }
            () = &mut shutdown => break,
        }
    }

    let reason = goodbye::reason(&root, &config.state_dir);
    if let Some(mut l) = link {
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
            if let Some(collector_message::Kind::Ack(ack)) = message.kind {
                spool.ack(ack.seq);
            }
        }
    }
    tracing::info!(
        reason = ?reason,
        spooled = spool.len(),
        last_seq = state.last_seq(),
        "vigil-agent stopped"
    );
    Ok(())
}
