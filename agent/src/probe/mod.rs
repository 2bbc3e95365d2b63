//! The probes and the one place that runs them.
//!
//! A probe reads one kernel source through a [`HostRoot`] and returns its typed
//! [`probe_result::Data`]. [`PROBES`] is the only list of probes; its order is the order of
//! `Report.probes`. [`ProbeSet`] runs every probe on the blocking thread pool, bounds each with
//! a timeout and turns every outcome into a [`ProbeResult`] with a status and a duration, so a
//! probe that fails, hangs or panics shows up as that probe's status and never as a missing
//! report or a missing neighbour (node_exporter `collector/collector.go` `execute`).
//!
//! A probe that timed out is still running on its blocking thread (a `statvfs` on a dead NFS
//! server cannot be cancelled). Its slot keeps the [`JoinHandle`] and reports
//! "previous run still in progress" until that call returns; then the probe, with whatever
//! state it keeps between runs, goes back into the slot. At most one call per probe is ever in
//! flight, so a stuck source costs one thread, not one per cycle.

pub(crate) mod cadence;
pub(crate) mod clock;
pub mod command;
pub(crate) mod cpu;
pub(crate) mod diskio;
pub(crate) mod ecc;
pub(crate) mod filesystem;
pub mod ipmi;
pub(crate) mod memory;
pub(crate) mod network;
pub mod raid;
pub mod sensors;
pub mod services;
pub mod smart;
pub(crate) mod uptime;

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use vigil_proto::v1::{ProbeResult, probe_result};

use crate::config::ProbesConfig;
use crate::read::ReadError;
use crate::root::HostRoot;

pub use clock::Clock;
pub use cpu::Cpu;
pub use diskio::DiskIo;
pub use ecc::Ecc;
pub use filesystem::Filesystem;
pub use ipmi::Ipmi;
pub use memory::Memory;
pub use network::Network;
pub use raid::Raid;
pub use sensors::Sensors;
pub use services::Services;
pub use smart::Smart;
pub use uptime::Uptime;

/// One source of host state. `collect` runs on a blocking thread and may block on I/O.
pub trait Probe: Send {
    /// Stable name, reported as `ProbeResult.probe`.
    fn name(&self) -> &'static str;
    /// Reads the source once. State kept in `self` (the previous CPU sample) survives
    /// between calls.
    fn collect(&mut self, root: &HostRoot) -> Result<probe_result::Data, ProbeError>;
    /// How long the next `collect` may take, when it needs longer than the agent's
    /// `probe_timeout` (a SMART run calling smartctl once per disk). Never shorter.
    fn timeout(&self) -> Option<Duration> {
        None
    }
}

/// Why a probe has no (complete) data.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The source does not exist on this host; reported as `STATUS_UNAVAILABLE`.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The source exists but could not be read or understood; reported as `STATUS_ERROR`.
    #[error("{0}")]
    Failed(String),
}

impl ProbeError {
    /// Maps a failed read of a required file: a missing file means the source is unavailable,
    /// anything else is a failure. The message names the file as the host sees it.
    pub fn from_read(root: &HostRoot, err: &ReadError) -> Self {
        let path = root.host_view(err.path());
        if err.is_not_found() {
            Self::Unavailable(format!("{path} not found"))
        } else {
            Self::Failed(format!("{path}: {}", err.reason()))
        }
    }
}

/// Makes a fresh probe from the probes' config. A list of constructors rather than of probes,
/// so a probe that panicked can be replaced by a new one.
pub type NewProbe = fn(&ProbesConfig) -> Box<dyn Probe>;

/// Every probe, in report order. Adding a probe is one file and one line here.
pub const PROBES: &[NewProbe] = &[
    |_| Box::new(Cpu::default()),
    |_| Box::new(Memory),
    |_| Box::new(Filesystem::default()),
    |_| Box::new(Network),
    |_| Box::new(Sensors),
    |_| Box::new(Uptime),
    |_| Box::new(DiskIo::default()),
    |_| Box::new(Raid),
    |_| Box::new(Ecc),
    |_| Box::new(Clock::default()),
    |c| Box::new(Smart::new(c.smart.clone())),
    |c| Box::new(Ipmi::new(c.ipmi.clone())),
    |c| Box::new(Services::new(c.services.clone())),
];

/// What one run of one probe ended with, before it becomes a [`ProbeResult`].
type Outcome = Result<probe_result::Data, ProbeError>;

/// What a blocking run hands back: the probe (with its state), its outcome and how long
/// `collect` took, measured on the blocking thread.
type Run = (Box<dyn Probe>, Outcome, Duration);

/// What a probe's slot holds between runs.
enum State {
    /// Ready to run.
    Idle(Box<dyn Probe>),
    /// A run that timed out is still going on a blocking thread.
    Running { handle: JoinHandle<Run>, timed_out_after: Duration },
    /// The probe is out on a run that [`ProbeSet::run_all`] is awaiting right now. Seen at
    /// the start of a run only if an earlier `run_all` future was dropped mid-way; the probe
    /// is then lost with its state and a fresh one is made.
    Away,
}

struct Slot {
    name: &'static str,
    new: NewProbe,
    config: std::sync::Arc<ProbesConfig>,
    state: State,
}

impl Slot {
    /// The probe if it is ready to run, leaving the slot [`State::Away`]; `None` (and the
    /// slot unchanged) while a timed-out run is still going.
    fn take_idle(&mut self) -> Option<Box<dyn Probe>> {
        match std::mem::replace(&mut self.state, State::Away) {
            State::Idle(probe) => Some(probe),
            State::Away => Some((self.new)(&self.config)),
            running @ State::Running { .. } => {
                self.state = running;
                None
            }
        }
    }

    /// A fresh probe in place of one that panicked.
    fn replace(&mut self, reason: &str) {
        tracing::warn!(probe = self.name, %reason, "probe panicked; replaced by a new one");
        self.state = State::Idle((self.new)(&self.config));
    }
}

/// Every probe of [`PROBES`] with its state, run together once per report.
pub struct ProbeSet {
    root: HostRoot,
    timeout: Duration,
    slots: Vec<Slot>,
}

impl std::fmt::Debug for ProbeSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeSet")
            .field("root", &self.root)
            .field("timeout", &self.timeout)
            .field("probes", &self.names())
            .finish()
    }
}

impl ProbeSet {
    /// All probes of [`PROBES`] reading `root`, each bounded by `timeout` in [`Self::run_all`]
    /// (or by its own longer [`Probe::timeout`]).
    pub fn new(root: HostRoot, timeout: Duration, config: &ProbesConfig) -> Self {
        Self::with_probes(root, timeout, config, PROBES)
    }

    fn with_probes(
        root: HostRoot,
        timeout: Duration,
        config: &ProbesConfig,
        probes: &[NewProbe],
    ) -> Self {
        let config = std::sync::Arc::new(config.clone());
        let slots = probes
            .iter()
            .map(|new| {
                let probe = new(&config);
                Slot {
                    name: probe.name(),
                    new: *new,
                    config: config.clone(),
                    state: State::Idle(probe),
                }
            })
            .collect();
        Self { root, timeout, slots }
    }

    /// The probe names in report order.
    pub fn names(&self) -> Vec<&'static str> {
        self.slots.iter().map(|slot| slot.name).collect()
    }

    /// Runs every probe once, all at the same time on the blocking pool, and waits for each
    /// until its own timeout. Returns one result per probe, in [`PROBES`] order.
    pub async fn run_all(&mut self) -> Vec<ProbeResult> {
        // A run that timed out earlier and has finished since gives its probe back; its
        // result is stale and dropped.
        for slot in &mut self.slots {
            if let State::Running { handle, .. } = &mut slot.state
                && handle.is_finished()
            {
                match handle.await {
                    Ok((probe, outcome, took)) => {
                        tracing::info!(
                            probe = slot.name,
                            ok = outcome.is_ok(),
                            ?took,
                            "timed-out probe run finished"
                        );
                        slot.state = State::Idle(probe);
                    }
                    Err(err) => slot.replace(&join_reason(err)),
                }
            }
        }

        // Start everything before waiting for anything, so the probes overlap.
        let started: Vec<Option<(Instant, Duration, JoinHandle<Run>)>> = self
            .slots
            .iter_mut()
            .map(|slot| {
                let mut probe = slot.take_idle()?;
                let timeout = probe.timeout().map_or(self.timeout, |own| own.max(self.timeout));
                let root = self.root.clone();
                let handle = tokio::task::spawn_blocking(move || {
                    let started = Instant::now();
                    let outcome = probe.collect(&root);
                    (probe, outcome, started.elapsed())
                });
                Some((Instant::now(), timeout, handle))
            })
            .collect();

        let mut results = Vec::with_capacity(self.slots.len());
        for (slot, started) in self.slots.iter_mut().zip(started) {
            let Some((started, timeout, mut handle)) = started else {
                results.push(still_running(slot));
                continue;
            };
            let deadline = tokio::time::Instant::from_std(started + timeout);
            let result = match tokio::time::timeout_at(deadline, &mut handle).await {
                Ok(Ok((probe, outcome, took))) => {
                    slot.state = State::Idle(probe);
                    to_result(slot.name, outcome, took)
                }
                Ok(Err(err)) => {
                    let reason = join_reason(err);
                    slot.replace(&reason);
                    failed(slot.name, format!("probe panicked: {reason}"), started.elapsed())
                }
                Err(_elapsed) => {
                    tracing::warn!(probe = slot.name, ?timeout, "probe timed out");
                    slot.state = State::Running { handle, timed_out_after: timeout };
                    failed(
                        slot.name,
                        format!("timed out after {}", human(timeout)),
                        started.elapsed(),
                    )
                }
            };
            results.push(result);
        }
        results
    }

    /// Runs every probe once, one after the other on this thread, without a timeout. For
    /// tests and one-shot use outside a runtime. A panicking probe is reported and replaced.
    pub fn run_all_blocking(&mut self) -> Vec<ProbeResult> {
        let mut results = Vec::with_capacity(self.slots.len());
        for slot in &mut self.slots {
            let Some(mut probe) = slot.take_idle() else {
                results.push(still_running(slot));
                continue;
            };
            let started = Instant::now();
            let run = std::panic::catch_unwind(AssertUnwindSafe(|| probe.collect(&self.root)));
            let took = started.elapsed();
            let result = match run {
                Ok(outcome) => {
                    slot.state = State::Idle(probe);
                    to_result(slot.name, outcome, took)
                }
                Err(panic) => {
                    let reason = panic_message(panic);
                    slot.replace(&reason);
                    failed(slot.name, format!("probe panicked: {reason}"), took)
                }
            };
            results.push(result);
        }
        results
    }
}

fn join_reason(err: tokio::task::JoinError) -> String {
    if err.is_panic() { panic_message(err.into_panic()) } else { err.to_string() }
}

fn still_running(slot: &Slot) -> ProbeResult {
    let after = match &slot.state {
        State::Running { timed_out_after, .. } => *timed_out_after,
        State::Idle(_) | State::Away => Duration::ZERO,
    };
    ProbeResult {
        probe: slot.name.to_owned(),
        status: probe_result::Status::Error.into(),
        message: format!("previous run still in progress (timed out after {})", human(after)),
        duration_us: 0,
        data: None,
    }
}

fn to_result(name: &'static str, outcome: Outcome, took: Duration) -> ProbeResult {
    let mut result =
        ProbeResult { probe: name.to_owned(), duration_us: micros(took), ..ProbeResult::default() };
    match outcome {
        Ok(data) => {
            result.set_status(probe_result::Status::Ok);
            result.data = Some(data);
        }
        Err(ProbeError::Unavailable(message)) => {
            result.set_status(probe_result::Status::Unavailable);
            result.message = message;
        }
        Err(ProbeError::Failed(message)) => {
            tracing::debug!(probe = name, %message, "probe failed");
            result.set_status(probe_result::Status::Error);
            result.message = message;
        }
    }
    result
}

fn failed(name: &'static str, message: String, took: Duration) -> ProbeResult {
    to_result(name, Err(ProbeError::Failed(message)), took)
}

fn micros(took: Duration) -> u64 {
    u64::try_from(took.as_micros()).unwrap_or(u64::MAX)
}

fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// `10s`, `1.5s`, `250ms`: short and exact enough for a status message.
fn human(duration: Duration) -> String {
    if duration.subsec_millis() == 0 && duration.as_secs() > 0 {
        format!("{}s", duration.as_secs())
    } else if duration.as_secs() > 0 {
        format!("{:.1}s", duration.as_secs_f64())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use vigil_proto::v1::UptimeData;

    use super::*;

    /// Answers at once with the number of calls it has served (state kept across runs).
    #[derive(Default)]
    struct Counter(u64);
    impl Probe for Counter {
        fn name(&self) -> &'static str {
            "counter"
        }
        fn collect(&mut self, _: &HostRoot) -> Result<probe_result::Data, ProbeError> {
            self.0 += 1;
            Ok(probe_result::Data::Uptime(UptimeData {
                uptime_seconds: self.0,
                boot_time_unix_ms: 0,
            }))
        }
    }

    static GATE_OPEN: AtomicBool = AtomicBool::new(false);
    static SLOW_CALLS: AtomicUsize = AtomicUsize::new(0);

    /// Blocks until [`GATE_OPEN`], like a `statvfs` on a dead NFS server.
    struct Slow;
    impl Probe for Slow {
        fn name(&self) -> &'static str {
            "slow"
        }
        fn collect(&mut self, _: &HostRoot) -> Result<probe_result::Data, ProbeError> {
            SLOW_CALLS.fetch_add(1, Ordering::SeqCst);
            while !GATE_OPEN.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(ProbeError::Unavailable("nothing here".into()))
        }
    }

    struct Panics;
    impl Probe for Panics {
        fn name(&self) -> &'static str {
            "panics"
        }
        fn collect(&mut self, _: &HostRoot) -> Result<probe_result::Data, ProbeError> {
            panic!("boom")
        }
    }

    fn status(result: &ProbeResult) -> probe_result::Status {
        result.status()
    }

    fn counter_value(result: &ProbeResult) -> u64 {
        match &result.data {
            Some(probe_result::Data::Uptime(data)) => data.uptime_seconds,
            other => panic!("unexpected data {other:?}"),
        }
    }

    #[test]
    fn the_list_has_unique_names_in_report_order() {
        let set = ProbeSet::new(HostRoot::live(), Duration::from_secs(1), &Default::default());
        assert_eq!(
            set.names(),
            [
                "cpu",
                "memory",
                "filesystem",
                "network",
                "sensors",
                "uptime",
                "disk_io",
                "raid",
                "ecc",
                "clock",
                "smart",
                "ipmi",
                "services"
            ]
        );
    }

    #[tokio::test]
    async fn a_stuck_probe_is_not_rerun_until_it_returns() {
        let list: &[NewProbe] = &[
            |_| Box::new(Counter::default()),
            |_| Box::new(Slow),
            |_| Box::new(Counter::default()),
        ];
        let mut set = ProbeSet::with_probes(
            HostRoot::live(),
            Duration::from_millis(50),
            &Default::default(),
            list,
        );

        let first = set.run_all().await;
        assert_eq!(first.len(), 3);
        assert_eq!(status(&first[0]), probe_result::Status::Ok);
        assert_eq!(status(&first[1]), probe_result::Status::Error);
        assert_eq!(first[1].message, "timed out after 50ms");
        assert!(first[1].duration_us >= 50_000, "{}", first[1].duration_us);
        assert_eq!(status(&first[2]), probe_result::Status::Ok);

        let second = set.run_all().await;
        assert_eq!(second[1].message, "previous run still in progress (timed out after 50ms)");
        assert_eq!(status(&second[1]), probe_result::Status::Error);
        assert_eq!(counter_value(&second[0]), 2, "neighbours keep running");
        assert_eq!(SLOW_CALLS.load(Ordering::SeqCst), 1, "not started twice");

        GATE_OPEN.store(true, Ordering::SeqCst);
        // Wait until the blocking call has returned.
        while matches!(&set.slots[1].state, State::Running { handle, .. } if !handle.is_finished())
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let third = set.run_all().await;
        assert_eq!(status(&third[1]), probe_result::Status::Unavailable);
        assert_eq!(third[1].message, "nothing here");
        assert_eq!(SLOW_CALLS.load(Ordering::SeqCst), 2);
        assert_eq!(counter_value(&third[2]), 3);
    }

    #[tokio::test]
    async fn a_panicking_probe_is_reported_and_replaced() {
        let list: &[NewProbe] = &[|_| Box::new(Panics), |_| Box::new(Counter::default())];
        let mut set = ProbeSet::with_probes(
            HostRoot::live(),
            Duration::from_secs(5),
            &Default::default(),
            list,
        );
        for round in 1..=2 {
            let results = set.run_all().await;
            assert_eq!(status(&results[0]), probe_result::Status::Error);
            assert_eq!(results[0].message, "probe panicked: boom");
            assert_eq!(results[0].probe, "panics");
            assert_eq!(counter_value(&results[1]), round);
        }
        let results = set.run_all_blocking();
        assert_eq!(results[0].message, "probe panicked: boom");
        assert_eq!(counter_value(&results[1]), 3);
    }

    #[test]
    fn read_errors_map_to_statuses() {
        let dir = tempfile::tempdir().unwrap();
        let root = HostRoot::new(dir.path().to_path_buf());
        let missing = crate::read::read_string(&root.proc("uptime")).unwrap_err();
        match ProbeError::from_read(&root, &missing) {
            ProbeError::Unavailable(message) => {
                // Named as the host sees it, not by where the root happens to be.
                assert!(message.ends_with("/uptime not found"), "{message}");
                assert!(!message.contains(&*dir.path().to_string_lossy()), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human(Duration::from_secs(10)), "10s");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
        assert_eq!(human(Duration::from_millis(250)), "250ms");
    }
}
