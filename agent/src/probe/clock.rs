//! The system clock: whether the kernel considers it synchronised (by NTP, chrony or PTP via
//! the kernel PLL) and how far off it may be.
//!
//! Source: `adjtimex(2)` with `modes = 0`, a read-only query of the kernel's NTP state. It is
//! the same call `ntptime`, `timedatectl` and node_exporter's `timex` collector use; there is
//! no file under `/proc` or `/sys` with this state. The clock is synchronised when the kernel
//! status has `STA_UNSYNC` clear and the call does not return `TIME_ERROR` (which the kernel
//! returns while unsynchronised, among other cases). The estimated and maximum errors are in
//! microseconds; the offset is in nanoseconds when `STA_NANO` is set, else microseconds
//! (`include/uapi/linux/timex.h`).
//!
//! A system call reads the running kernel, not a `--root` tree, so under a root that is not
//! live the probe reports itself unavailable; that keeps fixture reports the same on every
//! machine. The kernel is reached through [`ClockSource`], so the mapping is tested with a
//! fake source. The one `unsafe` block of the agent is the `adjtimex` call in
//! [`KernelClock`]: rustix has no wrapper for it.

use vigil_proto::v1::{ClockData, probe_result};

use super::{Probe, ProbeError};
use crate::root::HostRoot;

/// `STA_UNSYNC`: the clock is not synchronised (`include/uapi/linux/timex.h`).
pub const STA_UNSYNC: i32 = 0x0040;
/// `STA_NANO`: `offset` is in nanoseconds rather than microseconds.
pub const STA_NANO: i32 = 0x2000;
/// `TIME_ERROR`: the return value of `adjtimex` when the clock is not synchronised.
pub const TIME_ERROR: i32 = 5;

/// What the probe needs from one `adjtimex` query.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timex {
    /// The return value: the clock state, `TIME_OK` (0) to `TIME_ERROR` (5).
    pub state: i32,
    /// `status`: `STA_*` flags.
    pub status: i32,
    /// `esterror`, µs.
    pub esterror_us: i64,
    /// `maxerror`, µs.
    pub maxerror_us: i64,
    /// `offset`: ns with [`STA_NANO`] in `status`, else µs.
    pub offset: i64,
}

/// Where the kernel's clock state comes from.
pub trait ClockSource: Send {
    /// One read-only query; the error says why it failed.
    fn read(&self) -> Result<Timex, String>;
}

/// The running kernel, through `adjtimex(2)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelClock;

impl ClockSource for KernelClock {
    fn read(&self) -> Result<Timex, String> {
        adjtimex_query()
    }
}

/// `adjtimex` with `modes = 0`: reads the kernel's NTP state, changes nothing.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn adjtimex_query() -> Result<Timex, String> {
    // SAFETY: `timex` is a plain C struct of integers (and padding) for which all-zero bytes
    // are a valid value; zero `modes` makes the call a pure query. The pointer is to a live,
    // exclusively borrowed local that outlives the call, and the kernel writes only within
    // the struct it is given.
    let (state, tx) = unsafe {
        let mut tx: libc::timex = std::mem::zeroed();
        (libc::adjtimex(&mut tx), tx)
    };
    if state == -1 {
        return Err(format!("adjtimex: {}", std::io::Error::last_os_error()));
    }
    Ok(Timex {
        state,
        status: tx.status,
        esterror_us: widen(tx.esterror),
        maxerror_us: widen(tx.maxerror),
        offset: widen(tx.offset),
    })
}

/// `c_long` is `i32` or `i64` by target; widening to `i64` never loses anything.
#[cfg(target_os = "linux")]
#[allow(clippy::unnecessary_cast)]
fn widen(value: libc::c_long) -> i64 {
    value as i64
}

#[cfg(not(target_os = "linux"))]
fn adjtimex_query() -> Result<Timex, String> {
    Err("adjtimex is only available on Linux".to_owned())
}

/// The clock probe.
pub struct Clock {
    source: Box<dyn ClockSource>,
}

impl Default for Clock {
    fn default() -> Self {
        Self::with_source(KernelClock)
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clock").finish_non_exhaustive()
    }
}

impl Clock {
    /// A probe that asks `source` instead of the kernel.
    pub fn with_source(source: impl ClockSource + 'static) -> Self {
        Self { source: Box::new(source) }
    }
}

impl Probe for Clock {
    fn name(&self) -> &'static str {
        "clock"
    }

    fn collect(&mut self, root: &HostRoot) -> Result<probe_result::Data, ProbeError> {
        if !root.is_live() {
            return Err(ProbeError::Unavailable("clock is not read under --root".to_owned()));
        }
        let timex = self.source.read().map_err(ProbeError::Failed)?;
        Ok(probe_result::Data::Clock(clock_data(&timex)))
    }
}

/// Maps one query to the report (see the module doc for the rules).
pub(crate) fn clock_data(timex: &Timex) -> ClockData {
    let offset_unit = if timex.status & STA_NANO != 0 { 1e9 } else { 1e6 };
    ClockData {
        synchronized: timex.status & STA_UNSYNC == 0 && timex.state != TIME_ERROR,
        estimated_error_seconds: timex.esterror_us as f64 / 1e6,
        max_error_seconds: timex.maxerror_us as f64 / 1e6,
        offset_seconds: timex.offset as f64 / offset_unit,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    struct Fake(Result<Timex, String>);

    impl ClockSource for Fake {
        fn read(&self) -> Result<Timex, String> {
            self.0.clone()
        }
    }

    fn collect(source: Fake) -> Result<ClockData, ProbeError> {
        match Clock::with_source(source).collect(&HostRoot::live())? {
            probe_result::Data::Clock(data) => Ok(data),
            other => panic!("{other:?}"),
        }
    }

    /// `STA_PLL` (0x0001): a typical synchronised status besides the flags the probe reads.
    const STA_PLL: i32 = 0x0001;

    #[test]
    fn synchronised_clock_in_microseconds() {
        let data = collect(Fake(Ok(Timex {
            state: 0,
            status: STA_PLL,
            esterror_us: 1_500,
            maxerror_us: 250_000,
            offset: -125,
        })))
        .unwrap();
        assert_eq!(
            data,
            ClockData {
                synchronized: true,
                estimated_error_seconds: 0.0015,
                max_error_seconds: 0.25,
                offset_seconds: -0.000125,
            }
        );
    }

    #[test]
    fn nanosecond_offsets() {
        let data = clock_data(&Timex {
            status: STA_PLL | STA_NANO,
            offset: 2_500_000,
            ..Timex::default()
        });
        assert_eq!(data.offset_seconds, 0.0025);
        assert!(data.synchronized);
    }

    #[test]
    fn unsynchronised_by_flag_or_by_state() {
        let unsync = clock_data(&Timex {
            state: TIME_ERROR,
            status: STA_UNSYNC,
            esterror_us: 16_000_000,
            maxerror_us: 16_000_000,
            offset: 0,
        });
        assert_eq!(
            unsync,
            ClockData {
                synchronized: false,
                estimated_error_seconds: 16.0,
                max_error_seconds: 16.0,
                offset_seconds: 0.0,
            }
        );
        assert!(!clock_data(&Timex { status: STA_UNSYNC, ..Timex::default() }).synchronized);
        assert!(!clock_data(&Timex { state: TIME_ERROR, ..Timex::default() }).synchronized);
        // TIME_INS..TIME_WAIT (1..4): leap second handling, still synchronised.
        assert!(clock_data(&Timex { state: 1, ..Timex::default() }).synchronized);
    }

    #[test]
    fn a_failed_query_is_an_error() {
        match collect(Fake(Err("adjtimex: Operation not permitted".into()))) {
            Err(ProbeError::Failed(message)) => {
                assert_eq!(message, "adjtimex: Operation not permitted");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn not_read_under_a_root() {
        let mut probe = Clock::with_source(Fake(Ok(Timex::default())));
        match probe.collect(&HostRoot::new(PathBuf::from("/srv/host"))) {
            Err(ProbeError::Unavailable(message)) => {
                assert_eq!(message, "clock is not read under --root");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(probe.name(), "clock");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn constants_match_the_kernel_headers() {
        assert_eq!(STA_UNSYNC, libc::STA_UNSYNC);
        assert_eq!(STA_NANO, libc::STA_NANO);
        assert_eq!(TIME_ERROR, libc::TIME_ERROR);
    }

    /// The real kernel: no error, and values within what the kernel allows (`maxerror` and
    /// `esterror` are capped at `NTP_PHASE_LIMIT`, 16 s; the PLL offset at `MAXPHASE`, 0.5 s).
    #[cfg(target_os = "linux")]
    #[test]
    fn reads_the_running_kernel() {
        let timex = KernelClock.read().expect("adjtimex query");
        assert!((0..=5).contains(&timex.state), "{timex:?}");
        let data = match Clock::default().collect(&HostRoot::live()) {
            Ok(probe_result::Data::Clock(data)) => data,
            other => panic!("{other:?}"),
        };
        assert!((0.0..=16.0).contains(&data.max_error_seconds), "{data:?}");
        assert!((0.0..=16.0).contains(&data.estimated_error_seconds), "{data:?}");
        assert!(data.offset_seconds.abs() <= 0.5, "{data:?}");
    }
}
