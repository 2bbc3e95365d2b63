//! CPU load: how busy the CPUs are, how much time waits on I/O or is stolen by a hypervisor,
//! the load averages, and CPU pressure.
//!
//! Sources: `/proc/stat` (the aggregate `cpu` line, `cpuN` lines, `procs_running`,
//! `procs_blocked`), `/proc/loadavg` and, where the kernel has PSI, `/proc/pressure/cpu`.
//! The `cpu` counters only ever grow, so a ratio needs two samples: the probe keeps the
//! previous one between runs. The first run on the live host takes a second sample 250 ms
//! later; on a captured tree (not live) time does not pass, so the ratios are computed from
//! the counters themselves, i.e. averaged since boot.
//!
//! `/proc/stat` is also where the boot time (`btime`) and the number of logical CPUs come
//! from, so [`parse_stat`] is shared with the uptime probe and the host facts.

use std::time::Duration;

use vigil_proto::v1::{CpuData, probe_result};

use super::{Probe, ProbeError};
use crate::read;
use crate::root::HostRoot;

/// How long the first run on a live host waits for its second sample.
const FIRST_SAMPLE_GAP: Duration = Duration::from_millis(250);

/// The CPU probe; keeps the previous `/proc/stat` sample.
#[derive(Debug, Default)]
pub struct Cpu {
    previous: Option<CpuTimes>,
}

impl Probe for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn collect(&mut self, root: &HostRoot) -> Result<probe_result::Data, ProbeError> {
        let mut stat = read_stat(root)?;
        let previous = match self.previous {
            Some(previous) => previous,
            None if root.is_live() => {
                let first = stat.cpu;
                std::thread::sleep(FIRST_SAMPLE_GAP);
                stat = read_stat(root)?;
                first
            }
            None => stat.cpu,
        };
        self.previous = Some(stat.cpu);
        let ratios = Ratios::between(&previous, &stat.cpu);

        let loadavg_path = root.proc("loadavg");
        let loadavg =
            read::read_string(&loadavg_path).map_err(|err| ProbeError::from_read(root, &err))?;
        let [load1, load5, load15] = parse_loadavg(&loadavg).ok_or_else(|| {
            ProbeError::Failed(format!(
                "{}: cannot parse {:?}",
                root.host_view(&loadavg_path),
                loadavg.trim()
            ))
        })?;

        Ok(probe_result::Data::Cpu(CpuData {
            usage_ratio: ratios.usage,
            iowait_ratio: ratios.iowait,
            steal_ratio: ratios.steal,
            load1,
            load5,
            load15,
            logical_cpus: stat.logical_cpus,
            pressure_some_avg60: pressure(root, "pressure/cpu", "some"),
            procs_running: stat.procs_running,
            procs_blocked: stat.procs_blocked,
        }))
    }
}

fn read_stat(root: &HostRoot) -> Result<Stat, ProbeError> {
    let path = root.proc("stat");
    let text = read::read_string(&path).map_err(|err| ProbeError::from_read(root, &err))?;
    parse_stat(&text).ok_or_else(|| {
        ProbeError::Failed(format!("{}: no aggregate cpu line", root.host_view(&path)))
    })
}

/// One `avg60` from a PSI file under `/proc/pressure`, `None` when the kernel has no PSI.
/// The files exist but fail to read with `EOPNOTSUPP` when PSI is compiled in and disabled
/// at boot (`psi=0`), so any read error is "no pressure information", not a probe failure.
pub(crate) fn pressure(root: &HostRoot, file: &str, kind: &str) -> Option<f64> {
    match read::read_optional(&root.proc(file)) {
        Ok(Some(text)) => read::parse_pressure(&text, kind, "avg60"),
        Ok(None) => None,
        Err(err) => {
            tracing::debug!(%err, "pressure information not readable");
            None
        }
    }
}

/// The time counters of one `cpu` line of `/proc/stat`, in USER_HZ ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CpuTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

impl CpuTimes {
    /// All time. `guest` and `guest_nice` are left out: the kernel already counts them in
    /// `user` and `nice` (Documentation/filesystems/proc.rst, "1.7 Miscellaneous kernel
    /// statistics in /proc/stat"; `kernel/sched/cputime.c` `account_guest_time`).
    fn total(&self) -> u64 {
        [
            self.user,
            self.nice,
            self.system,
            self.idle,
            self.iowait,
            self.irq,
            self.softirq,
            self.steal,
        ]
        .iter()
        .fold(0u64, |sum, value| sum.saturating_add(*value))
    }

    /// Counter growth from `earlier` to `self`. Each field saturates at 0: `iowait` can go
    /// backwards (proc.rst: "the iowait field in /proc/stat will decrease in certain
    /// conditions"), and CPU hot-unplug can shrink the sums.
    fn since(&self, earlier: &Self) -> Self {
        Self {
            user: self.user.saturating_sub(earlier.user),
            nice: self.nice.saturating_sub(earlier.nice),
            system: self.system.saturating_sub(earlier.system),
            idle: self.idle.saturating_sub(earlier.idle),
            iowait: self.iowait.saturating_sub(earlier.iowait),
            irq: self.irq.saturating_sub(earlier.irq),
            softirq: self.softirq.saturating_sub(earlier.softirq),
            steal: self.steal.saturating_sub(earlier.steal),
        }
    }
}

/// Shares of CPU time between two samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Ratios {
    /// Not idle: everything but `idle` and `iowait` (a CPU waiting on I/O is free to run
    /// other work, so `iowait` counts as idle, as in `top` and `mpstat`).
    pub usage: f64,
    pub iowait: f64,
    pub steal: f64,
}

impl Ratios {
    /// Ratios over the interval from `previous` to `now`; when no time passed between them
    /// (the same sample twice, as on a captured tree), over the whole time since boot.
    pub fn between(previous: &CpuTimes, now: &CpuTimes) -> Self {
        let delta = now.since(previous);
        let span = if delta.total() > 0 { delta } else { *now };
        let total = span.total();
        if total == 0 {
            return Self { usage: 0.0, iowait: 0.0, steal: 0.0 };
        }
        let share = |part: u64| (part as f64 / total as f64).clamp(0.0, 1.0);
        let idle = span.idle.saturating_add(span.iowait);
        Self {
            usage: share(total.saturating_sub(idle)),
            iowait: share(span.iowait),
            steal: share(span.steal),
        }
    }
}

/// What the CPU probe, uptime probe and facts need from `/proc/stat`.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Stat {
    /// The aggregate `cpu` line.
    pub cpu: CpuTimes,
    /// Number of `cpuN` lines: CPUs online (hot-unplugged ones have no line).
    pub logical_cpus: u32,
    pub procs_running: u64,
    pub procs_blocked: u64,
    /// Boot time, seconds since the epoch.
    pub btime: Option<i64>,
}

/// Parses `/proc/stat`; `None` without an aggregate `cpu` line. Missing trailing counters
/// (older kernels have no `steal`) read as 0.
pub(crate) fn parse_stat(text: &str) -> Option<Stat> {
    let mut stat = Stat::default();
    let mut saw_cpu = false;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(key) = fields.next() else { continue };
        match key {
            "cpu" => {
                let mut next = || fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                stat.cpu = CpuTimes {
                    user: next(),
                    nice: next(),
                    system: next(),
                    idle: next(),
                    iowait: next(),
                    irq: next(),
                    softirq: next(),
                    steal: next(),
                };
                saw_cpu = true;
            }
            cpu_n if is_cpu_n(cpu_n) => stat.logical_cpus += 1,
            "procs_running" => stat.procs_running = parse_next(&mut fields).unwrap_or(0),
            "procs_blocked" => stat.procs_blocked = parse_next(&mut fields).unwrap_or(0),
            "btime" => stat.btime = parse_next(&mut fields),
            _ => {}
        }
    }
    saw_cpu.then_some(stat)
}

fn is_cpu_n(key: &str) -> bool {
    key.strip_prefix("cpu").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn parse_next<'a, T: std::str::FromStr>(fields: &mut impl Iterator<Item = &'a str>) -> Option<T> {
    fields.next()?.parse().ok()
}

/// The three load averages of `/proc/loadavg` (`0.02 0.04 0.05 1/497 11947`).
pub(crate) fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut fields = text.split_whitespace().map(str::parse::<f64>);
    let mut next = || fields.next()?.ok();
    Some([next()?, next()?, next()?])
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  100 0 50 800 40 0 10 0 5 0\n\
                        cpu0 50 0 25 400 20 0 5 0 0 0\n\
                        cpu1 50 0 25 400 20 0 5 0 0 0\n\
                        intr 1 2 3\n\
                        btime 1418183276\n\
                        procs_running 2\n\
                        procs_blocked 1\n";

    #[test]
    fn parses_stat() {
        let stat = parse_stat(STAT).unwrap();
        assert_eq!(stat.logical_cpus, 2);
        assert_eq!(stat.procs_running, 2);
        assert_eq!(stat.procs_blocked, 1);
        assert_eq!(stat.btime, Some(1_418_183_276));
        assert_eq!(stat.cpu.user, 100);
        assert_eq!(stat.cpu.iowait, 40);
        assert_eq!(stat.cpu.total(), 1000, "guest is not counted twice");
    }

    #[test]
    fn old_kernels_without_steal_and_no_cpu_line() {
        let stat = parse_stat("cpu 1 2 3 4\ncpu0 1 2 3 4\n").unwrap();
        assert_eq!(stat.cpu.steal, 0);
        assert_eq!(stat.cpu.total(), 10);
        assert_eq!(parse_stat("intr 1\n"), None);
        assert!(!is_cpu_n("cpu"));
        assert!(!is_cpu_n("cpux"));
        assert!(is_cpu_n("cpu12"));
    }

    #[test]
    fn ratios_over_an_interval() {
        let before = parse_stat(STAT).unwrap().cpu;
        let after = CpuTimes {
            user: before.user + 30,
            system: before.system + 10,
            idle: before.idle + 40,
            iowait: before.iowait + 10,
            steal: before.steal + 10,
            ..before
        };
        let ratios = Ratios::between(&before, &after);
        // 100 ticks passed: 30 user + 10 system + 10 steal busy, 40 idle + 10 iowait idle.
        assert_eq!(ratios.usage, 0.5);
        assert_eq!(ratios.iowait, 0.1);
        assert_eq!(ratios.steal, 0.1);
    }

    #[test]
    fn same_sample_twice_gives_since_boot_ratios() {
        let now = parse_stat(STAT).unwrap().cpu;
        let ratios = Ratios::between(&now, &now);
        // 1000 ticks since boot, 800 idle + 40 iowait.
        assert_eq!(ratios.usage, 0.16);
        assert_eq!(ratios.iowait, 0.04);
        assert_eq!(ratios.steal, 0.0);
        let zero = CpuTimes::default();
        assert_eq!(Ratios::between(&zero, &zero).usage, 0.0);
    }

    #[test]
    fn iowait_going_backwards_does_not_underflow() {
        let before = CpuTimes { user: 10, idle: 10, iowait: 10, ..CpuTimes::default() };
        let after = CpuTimes { user: 20, idle: 20, iowait: 5, ..CpuTimes::default() };
        let ratios = Ratios::between(&before, &after);
        assert_eq!(ratios.usage, 0.5);
        assert_eq!(ratios.iowait, 0.0);
    }

    #[test]
    fn parses_loadavg() {
        assert_eq!(parse_loadavg("0.02 0.04 0.05 1/497 11947\n"), Some([0.02, 0.04, 0.05]));
        assert_eq!(parse_loadavg("0.02 x"), None);
        assert_eq!(parse_loadavg(""), None);
    }
}
