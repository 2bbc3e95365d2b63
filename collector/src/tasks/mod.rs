//! The collector's background work, run by one [`Driver`] (after omicron's
//! `nexus/src/app/background/`). A background task is an idempotent reconciler: on each
//! activation it looks at stored state, acts, and is safe to run again, so running it once too
//! often costs only the work and running it once too few is made good by the next run. The
//! driver runs each registered task in its own tokio task, on its period and on demand through
//! its [`Activator`], never two activations of one task at once; activations asked for while a
//! run is in progress coalesce into exactly one more run. It keeps each task's [`TaskStatus`]
//! (what `GET /api/v1/tasks` and `vigilctl tasks` show) and counts each activation in
//! `/metrics`.
//!
//! The tasks are thin adapters around decisions their stages own: [`retention`] (receipts and
//! roll-ups past their age), [`sla_sweep`] (the runner lease, then `sla::sweep`),
//! [`notifications`] (`Notifier::tick` on the lease holder),
//! [`crate::incidents::silence::SilenceSweeper`] and
//! [`crate::ingest::revocation::RevocationPoll`]. Each logs its own failures ("… failed; will
//! retry") and returns a one-line [`TaskOutcome`]; the driver records it and tries again on
//! the next period.

pub mod notifications;
pub mod retention;
pub mod sla_sweep;

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::FutureExt;
use serde::Serialize;
use tokio::sync::Notify;

use crate::clock::{SharedClock, UnixMs};
use crate::events::BackgroundTaskRan;

/// Shortest period the driver runs a task on (a zero period would spin).
const MIN_PERIOD: Duration = Duration::from_millis(1);

/// One kind of background work. `activate` does one pass and says how it went; the driver
/// never calls it again before it returned.
#[async_trait::async_trait]
pub trait BackgroundTask: Send {
    /// A short, stable name: the `task` label in `/metrics` and the key in the API.
    fn name(&self) -> &'static str;

    /// One pass of the work.
    async fn activate(&mut self) -> TaskOutcome;
}

/// How one activation ended, with a one-line summary of what it did or why it failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", content = "summary", rename_all = "snake_case")]
pub enum TaskOutcome {
    Ok(String),
    Error(String),
}

impl TaskOutcome {
    pub fn ok(summary: impl Into<String>) -> Self {
        Self::Ok(summary.into())
    }

    pub fn error(summary: impl Into<String>) -> Self {
        Self::Error(summary.into())
    }

    pub fn is_ok(&self) -> bool {
        matches!(self, Self::Ok(_))
    }

    /// `ok` or `error`: the `outcome` label in `/metrics`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Ok(_) => "ok",
            Self::Error(_) => "error",
        }
    }

    pub fn summary(&self) -> &str {
        match self {
            Self::Ok(summary) | Self::Error(summary) => summary,
        }
    }
}

/// Why a task ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivationReason {
    /// Its period came round.
    Period,
    /// Something asked for it through its [`Activator`].
    OnDemand,
}

/// Asks one task to run now. Cloneable; made before the task is registered, so a stage can be
/// handed the activator of a task started after it. Asking while the task runs makes exactly
/// one more run follow, however often it is asked (a [`Notify`] holds at most one permit).
/// Asking before the task is registered runs it once at its first chance.
#[derive(Debug, Clone, Default)]
pub struct Activator {
    wake: Arc<Notify>,
    /// Set once the activator is wired to a task: one activator, one task.
    wired: Arc<AtomicBool>,
}

impl Activator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs the task as soon as it is not running.
    pub fn activate(&self) {
        self.wake.notify_one();
    }
}

/// What the driver knows of one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskStatus {
    pub name: &'static str,
    pub period_ms: u64,
    /// Runs started, on the period and on demand.
    pub activations: u64,
    /// Runs that ended in an error.
    pub failures: u64,
    /// True while a run is in progress.
    pub running: bool,
    /// When the latest run started (the one in progress, while `running`), on the
    /// collector's clock, and why.
    pub last_started_ms: Option<UnixMs>,
    pub last_reason: Option<ActivationReason>,
    /// How long the latest finished run took, and how it ended.
    pub last_duration_ms: Option<u64>,
    pub last_outcome: Option<TaskOutcome>,
}

impl TaskStatus {
    fn new(name: &'static str, period: Duration) -> Self {
        Self {
            name,
            period_ms: u64::try_from(period.as_millis()).unwrap_or(u64::MAX),
            activations: 0,
            failures: 0,
            running: false,
            last_started_ms: None,
            last_reason: None,
            last_duration_ms: None,
            last_outcome: None,
        }
    }
}

/// The status of every registered task, in registration order: a cloneable, read-only view
/// for the API.
#[derive(Debug, Clone, Default)]
pub struct TaskStatuses {
    tasks: Arc<Mutex<Vec<TaskStatus>>>,
}

impl TaskStatuses {
    /// A copy of every task's status now.
    pub fn list(&self) -> Vec<TaskStatus> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<TaskStatus>> {
        // A status is plain data, whole after every update: a poisoned lock still holds it.
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, index: usize, change: impl FnOnce(&mut TaskStatus)) {
        if let Some(status) = self.lock().get_mut(index) {
            change(status);
        }
    }
}

/// Runs registered tasks until the runtime stops.
#[derive(Debug)]
pub struct Driver {
    clock: SharedClock,
    statuses: TaskStatuses,
}

impl Driver {
    pub fn new(clock: SharedClock) -> Self {
        Self { clock, statuses: TaskStatuses::default() }
    }

    /// The status board of the tasks registered so far and later.
    pub fn statuses(&self) -> TaskStatuses {
        self.statuses.clone()
    }

    /// Starts `task`: it runs at once, then every `period` after the previous start (a run
    /// longer than the period delays the next one instead of bunching them,
    /// `MissedTickBehavior::Delay`), and whenever `activator` is activated.
    ///
    /// # Panics
    ///
    /// When `activator` is already wired to another task (a programming error: the second
    /// task would steal the first one's activations).
    pub fn register(
        &mut self,
        task: impl BackgroundTask + 'static,
        period: Duration,
        activator: &Activator,
    ) {
        let wired_before = activator.wired.swap(true, Ordering::SeqCst);
        assert!(!wired_before, "the activator of task {} is already wired", task.name());
        let name = task.name();
        let period = period.max(MIN_PERIOD);
        let index = {
            let mut tasks = self.statuses.lock();
            tasks.push(TaskStatus::new(name, period));
            tasks.len() - 1
        };
        BackgroundTaskRan::register(name);
        let run = TaskRun {
            index,
            statuses: self.statuses.clone(),
            clock: self.clock.clone(),
            wake: activator.wake.clone(),
        };
        tokio::spawn(run.drive(Box::new(task), period));
    }
}

/// One task's loop.
struct TaskRun {
    index: usize,
    statuses: TaskStatuses,
    clock: SharedClock,
    wake: Arc<Notify>,
}

impl TaskRun {
    async fn drive(self, mut task: Box<dyn BackgroundTask>, period: Duration) {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let reason = tokio::select! {
                biased;
                () = self.wake.notified() => ActivationReason::OnDemand,
                _ = ticks.tick() => ActivationReason::Period,
            };
            let started_ms = self.clock.now_ms();
            self.statuses.update(self.index, |s| {
                s.activations += 1;
                s.running = true;
                s.last_started_ms = Some(started_ms);
                s.last_reason = Some(reason);
            });
            let began = tokio::time::Instant::now();
            // A task that panics is a failed run, not a task gone for good: the next period
            // runs it again, as after any other failure.
            let outcome = match AssertUnwindSafe(task.activate()).catch_unwind().await {
                Ok(outcome) => outcome,
                Err(panic) => {
                    let message = crate::incidents::panic_message(panic.as_ref());
                    tracing::error!(task = task.name(), panic = %message, "background task panicked; will retry");
                    TaskOutcome::error(format!("panicked: {message}"))
                }
            };
            let took = began.elapsed();
            BackgroundTaskRan { task: task.name(), outcome: &outcome, took }.emit();
            self.statuses.update(self.index, |s| {
                s.running = false;
                s.failures += u64::from(!outcome.is_ok());
                s.last_duration_ms = Some(u64::try_from(took.as_millis()).unwrap_or(u64::MAX));
                s.last_outcome = Some(outcome);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use tokio::sync::Semaphore;

    use super::*;
    use crate::clock::ManualClock;

    const PERIOD: Duration = Duration::from_secs(10);

    /// A task that counts its runs, takes `work` of (tokio) time each, fails while `failing`
    /// is set, and, when `gate` is given, waits for a permit before finishing.
    struct Counting {
        runs: Arc<AtomicU32>,
        work: Duration,
        failing: Arc<AtomicBool>,
        gate: Option<Arc<Semaphore>>,
    }

    #[async_trait::async_trait]
    impl BackgroundTask for Counting {
        fn name(&self) -> &'static str {
            "counting"
        }

        async fn activate(&mut self) -> TaskOutcome {
            let run = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(self.work).await;
            if let Some(gate) = &self.gate {
                gate.acquire().await.expect("gate open").forget();
            }
            if self.failing.load(Ordering::SeqCst) {
                TaskOutcome::error(format!("run {run} failed"))
            } else {
                TaskOutcome::ok(format!("run {run}"))
            }
        }
    }

    struct Harness {
        runs: Arc<AtomicU32>,
        failing: Arc<AtomicBool>,
        gate: Arc<Semaphore>,
        activator: Activator,
        statuses: TaskStatuses,
        clock: Arc<ManualClock>,
    }

    impl Harness {
        fn start(work: Duration, gated: bool) -> Self {
            let clock = Arc::new(ManualClock::new(1_000_000));
            let mut driver = Driver::new(clock.clone());
            let runs = Arc::new(AtomicU32::new(0));
            let failing = Arc::new(AtomicBool::new(false));
            let gate = Arc::new(Semaphore::new(0));
            let activator = Activator::new();
            let task = Counting {
                runs: runs.clone(),
                work,
                failing: failing.clone(),
                gate: gated.then(|| gate.clone()),
            };
            driver.register(task, PERIOD, &activator);
            Self { runs, failing, gate, activator, statuses: driver.statuses(), clock }
        }

        fn runs(&self) -> u32 {
            self.runs.load(Ordering::SeqCst)
        }

        fn status(&self) -> TaskStatus {
            self.statuses.list().remove(0)
        }
    }

    /// Lets every task that can move do so, without moving (paused) time.
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_runs_at_once_then_on_its_period() {
        let h = Harness::start(Duration::ZERO, false);
        settle().await;
        assert_eq!(h.runs(), 1, "the first run is at registration");
        tokio::time::sleep(PERIOD - Duration::from_millis(1)).await;
        settle().await;
        assert_eq!(h.runs(), 1, "not before the period");
        tokio::time::sleep(Duration::from_millis(1)).await;
        settle().await;
        assert_eq!(h.runs(), 2);
        tokio::time::sleep(PERIOD * 3).await;
        settle().await;
        assert_eq!(h.runs(), 5);
        let status = h.status();
        assert_eq!(status.last_reason, Some(ActivationReason::Period));
        assert_eq!(status.last_outcome, Some(TaskOutcome::ok("run 5")));
    }

    #[tokio::test(start_paused = true)]
    async fn an_activation_runs_the_task_at_once() {
        let h = Harness::start(Duration::ZERO, false);
        settle().await;
        assert_eq!(h.runs(), 1);
        tokio::time::sleep(PERIOD / 4).await;
        h.clock.advance_ms(2_500);
        h.activator.activate();
        settle().await;
        assert_eq!(h.runs(), 2, "activated, without waiting for the period");
        let status = h.status();
        assert_eq!(status.last_reason, Some(ActivationReason::OnDemand));
        assert_eq!(status.last_started_ms, Some(1_002_500), "read from the injected clock");
    }

    #[tokio::test(start_paused = true)]
    async fn activations_during_a_run_coalesce_into_exactly_one_more_run() {
        let h = Harness::start(Duration::ZERO, true);
        settle().await;
        assert_eq!(h.runs(), 1);
        assert!(h.status().running, "the first run waits at the gate");
        for _ in 0..5 {
            h.activator.activate();
        }
        settle().await;
        assert_eq!(h.runs(), 1, "never two runs of one task at once");
        h.gate.add_permits(1);
        settle().await;
        assert_eq!(h.runs(), 2, "one more run follows the one in progress");
        h.gate.add_permits(1);
        settle().await;
        assert_eq!(h.runs(), 2, "and only one");
        let status = h.status();
        assert!(!status.running);
        assert_eq!((status.activations, status.failures), (2, 0));
        assert_eq!(status.last_reason, Some(ActivationReason::OnDemand));
        // The period goes on as before.
        h.gate.add_permits(1);
        tokio::time::sleep(PERIOD).await;
        settle().await;
        assert_eq!(h.runs(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_is_recorded_and_the_task_runs_again_next_period() {
        let h = Harness::start(Duration::ZERO, false);
        h.failing.store(true, Ordering::SeqCst);
        settle().await;
        let status = h.status();
        assert_eq!(status.last_outcome, Some(TaskOutcome::error("run 1 failed")));
        assert_eq!((status.activations, status.failures), (1, 1));
        h.failing.store(false, Ordering::SeqCst);
        tokio::time::sleep(PERIOD).await;
        settle().await;
        let status = h.status();
        assert_eq!(status.last_outcome, Some(TaskOutcome::ok("run 2")));
        assert_eq!((status.activations, status.failures), (2, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn the_status_counts_runs_and_times_them() {
        let h = Harness::start(Duration::from_millis(1_500), false);
        settle().await;
        let status = h.status();
        assert!(status.running);
        assert_eq!(status.activations, 1);
        assert_eq!(status.last_started_ms, Some(1_000_000));
        assert_eq!((status.last_duration_ms, status.last_outcome), (None, None));
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        settle().await;
        h.activator.activate();
        settle().await;
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        settle().await;
        assert_eq!(
            h.status(),
            TaskStatus {
                name: "counting",
                period_ms: 10_000,
                activations: 2,
                failures: 0,
                running: false,
                last_started_ms: Some(1_000_000),
                last_reason: Some(ActivationReason::OnDemand),
                last_duration_ms: Some(1_500),
                last_outcome: Some(TaskOutcome::ok("run 2")),
            }
        );
    }

    struct Panicking;

    #[async_trait::async_trait]
    impl BackgroundTask for Panicking {
        fn name(&self) -> &'static str {
            "panicking"
        }

        async fn activate(&mut self) -> TaskOutcome {
            panic!("a bug in the task")
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_task_is_a_failed_run_and_runs_again() {
        let clock = Arc::new(ManualClock::new(0));
        let mut driver = Driver::new(clock);
        driver.register(Panicking, PERIOD, &Activator::new());
        settle().await;
        tokio::time::sleep(PERIOD).await;
        settle().await;
        let status = driver.statuses().list().remove(0);
        assert_eq!((status.activations, status.failures, status.running), (2, 2, false));
        assert_eq!(status.last_outcome, Some(TaskOutcome::error("panicked: a bug in the task")));
    }

    #[test]
    #[should_panic(expected = "already wired")]
    fn one_activator_drives_one_task() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let _inside = runtime.enter();
        let mut driver = Driver::new(Arc::new(ManualClock::new(0)));
        let activator = Activator::new();
        driver.register(Panicking, PERIOD, &activator);
        driver.register(Panicking, PERIOD, &activator);
    }
}
