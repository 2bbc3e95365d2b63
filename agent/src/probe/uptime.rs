//! Uptime and boot time: how long the host has been up, and when it booted, so the collector
//! can tell a reboot from a silent agent.
//!
//! Sources: `/proc/uptime` (seconds since boot, with hundredths) and the `btime` line of
//! `/proc/stat` (boot time in seconds since the epoch). The probe needs `/proc/uptime`; a
//! missing `btime` leaves the boot time 0.

use vigil_proto::v1::{UptimeData, probe_result};

use super::{Probe, ProbeError, cpu};
use crate::read;
use crate::root::HostRoot;

/// The uptime probe.
#[derive(Debug, Default)]
pub struct Uptime;

impl Probe for Uptime {
    fn name(&self) -> &'static str {
        "uptime"
    }

    fn collect(&mut self, root: &HostRoot) -> Result<probe_result::Data, ProbeError> {
        let path = root.proc("uptime");
        let text = read::read_string(&path).map_err(|err| ProbeError::from_read(root, &err))?;
        let uptime_seconds = parse_uptime(&text).ok_or_else(|| {
            ProbeError::Failed(format!("{}: cannot parse {:?}", root.host_view(&path), text.trim()))
        })?;
        Ok(probe_result::Data::Uptime(UptimeData {
            uptime_seconds,
            boot_time_unix_ms: boot_time_unix_ms(root).unwrap_or(0),
        }))
    }
}

/// Whole seconds of the first field of `/proc/uptime` (`350735.47 234388.90`).
pub(crate) fn parse_uptime(text: &str) -> Option<u64> {
    let seconds: f64 = text.split_whitespace().next()?.parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| seconds.trunc() as u64)
}

/// Boot time from `btime` in `/proc/stat`, in unix milliseconds.
pub(crate) fn boot_time_unix_ms(root: &HostRoot) -> Option<i64> {
    let text = read::read_string(&root.proc("stat")).ok()?;
    cpu::parse_stat(&text)?.btime?.checked_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_uptime() {
        assert_eq!(parse_uptime("350735.47 234388.90\n"), Some(350_735));
        assert_eq!(parse_uptime("0.99 0.5\n"), Some(0));
        assert_eq!(parse_uptime("-1 0\n"), None);
        assert_eq!(parse_uptime(""), None);
    }

    #[test]
    fn missing_uptime_is_unavailable_and_btime_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let root = HostRoot::new(dir.path().to_path_buf());
        assert!(matches!(Uptime.collect(&root), Err(ProbeError::Unavailable(_))));
        std::fs::create_dir(dir.path().join("proc")).unwrap();
        std::fs::write(root.proc("stat"), "cpu 1 2 3 4\nbtime 1418183276\n").unwrap();
        std::fs::write(root.proc("uptime"), "12.5 3.0\n").unwrap();
        assert_eq!(
            Uptime.collect(&root).unwrap(),
            probe_result::Data::Uptime(UptimeData {
                uptime_seconds: 12,
                boot_time_unix_ms: 1_418_183_276_000,
            })
        );
    }
}
