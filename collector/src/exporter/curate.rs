//! The curated per-host series: which readings of a report become Prometheus series, under
//! which names, units and labels. Pure (a report in, samples out) so the set is reviewed by a
//! golden test, and small by design — about fifty series for a typical host, the signals an
//! operator watches, not every counter a probe reads. Every family is listed once in
//! [`FAMILIES`], with its type and help text, in the order `/metrics` renders them.

use std::borrow::Cow;

use vigil_proto::v1::Report;
use vigil_proto::v1::probe_result::{Data, Status};

/// A metric family: name (base units, `_total` for counters), type, help and the label that
/// names the resource (`""` for one series per host).
#[derive(Debug, Clone, Copy)]
pub struct Family {
    pub name: &'static str,
    pub counter: bool,
    pub help: &'static str,
    pub label: &'static str,
}

const fn gauge(name: &'static str, label: &'static str, help: &'static str) -> Family {
    Family { name, counter: false, help, label }
}

const fn counter(name: &'static str, label: &'static str, help: &'static str) -> Family {
    Family { name, counter: true, help, label }
}

pub const CPU_USAGE: usize = 0;
pub const CPU_IOWAIT: usize = 1;
pub const LOAD1: usize = 2;
pub const UPTIME: usize = 3;
pub const MEMORY_USED: usize = 4;
pub const MEMORY_TOTAL: usize = 5;
pub const SWAP_USED: usize = 6;
pub const FS_USED: usize = 7;
pub const FS_FREE: usize = 8;
pub const FS_INODES_USED: usize = 9;
pub const FS_READ_ONLY: usize = 10;
pub const TEMP: usize = 11;
pub const TEMP_HIGH: usize = 12;
pub const TEMP_CRIT: usize = 13;
pub const FAN: usize = 14;
pub const SMART_HEALTHY: usize = 15;
pub const SMART_REALLOCATED: usize = 16;
pub const SMART_PENDING: usize = 17;
pub const SMART_MEDIA_ERRORS: usize = 18;
pub const SMART_TEMP: usize = 19;
pub const RAID_DEGRADED: usize = 20;
pub const RAID_FAILED: usize = 21;
pub const ECC_CORRECTED: usize = 22;
pub const ECC_UNCORRECTED: usize = 23;
pub const NET_CARRIER: usize = 24;
pub const SERVICE_UP: usize = 25;
pub const SPOOL_DROPPED: usize = 26;
pub const SPOOL_QUARANTINED: usize = 27;
pub const SPOOL_IN_MEMORY: usize = 28;
pub const SPOOL_REPORTS: usize = 29;
pub const SPOOL_BYTES: usize = 30;

pub const FAMILIES: [Family; 31] = [
    gauge("vigil_host_cpu_usage_ratio", "", "Share of CPU time not idle, 0..1."),
    gauge("vigil_host_cpu_iowait_ratio", "", "Share of CPU time waiting for I/O, 0..1."),
    gauge("vigil_host_load1", "", "One-minute load average."),
    gauge("vigil_host_uptime_seconds", "", "Time since the host booted."),
    gauge("vigil_host_memory_used_ratio", "", "Share of memory not available, 0..1."),
    gauge("vigil_host_memory_total_bytes", "", "Installed memory."),
    gauge("vigil_host_swap_used_ratio", "", "Share of swap in use, 0..1 (hosts with swap)."),
    gauge(
        "vigil_host_filesystem_used_ratio",
        "mountpoint",
        "Share of the filesystem in use, 0..1.",
    ),
    gauge(
        "vigil_host_filesystem_free_bytes",
        "mountpoint",
        "Bytes available to unprivileged users.",
    ),
    gauge("vigil_host_filesystem_inodes_used_ratio", "mountpoint", "Share of inodes in use, 0..1."),
    gauge(
        "vigil_host_filesystem_read_only",
        "mountpoint",
        "1 when mounted read-only although configured read-write (a remount after errors).",
    ),
    gauge("vigil_host_temperature_celsius", "sensor", "Temperature of a sensor."),
    gauge("vigil_host_temperature_high_celsius", "sensor", "The sensor's high limit."),
    gauge("vigil_host_temperature_critical_celsius", "sensor", "The sensor's critical limit."),
    gauge("vigil_host_fan_rpm", "fan", "Fan speed (fans that have turned or have a minimum)."),
    gauge(
        "vigil_host_smart_healthy",
        "device",
        "1 when SMART's self-assessment passed, 0 when it failed.",
    ),
    gauge("vigil_host_smart_reallocated_sectors", "device", "Reallocated sectors (ATA 5)."),
    gauge("vigil_host_smart_pending_sectors", "device", "Sectors pending reallocation (ATA 197)."),
    gauge("vigil_host_smart_media_errors", "device", "Media and data integrity errors (NVMe)."),
    gauge("vigil_host_smart_temperature_celsius", "device", "Drive temperature."),
    gauge("vigil_host_raid_degraded", "array", "1 when the software RAID array is degraded."),
    gauge("vigil_host_raid_failed_members", "array", "Failed members of the array."),
    counter(
        "vigil_host_ecc_corrected_errors_total",
        "controller",
        "Corrected ECC memory errors since boot.",
    ),
    counter(
        "vigil_host_ecc_uncorrected_errors_total",
        "controller",
        "Uncorrected ECC memory errors since boot.",
    ),
    gauge("vigil_host_network_carrier", "interface", "1 when the NIC has a link (carrier)."),
    gauge("vigil_host_service_up", "service", "1 when the systemd unit is active."),
    counter(
        "vigil_host_agent_spool_dropped_reports_total",
        "",
        "Reports the agent dropped unsent because its spool was full.",
    ),
    counter(
        "vigil_host_agent_spool_quarantined_total",
        "",
        "Spool records the agent quarantined (damaged, or refused by the collector).",
    ),
    gauge(
        "vigil_host_agent_spool_in_memory",
        "",
        "1 while the agent cannot write its state directory and holds reports in memory.",
    ),
    gauge("vigil_host_agent_spool_reports", "", "Reports waiting in the agent's spool."),
    gauge("vigil_host_agent_spool_bytes", "", "Bytes the agent's spool takes."),
];

/// One sample: family index, the resource label's value (empty for host-wide families), value.
/// The label borrows the report's string; only a repeated name (numbered) is a copy.
pub type Sample<'a> = (usize, Cow<'a, str>, f64);

fn ratio(used: f64, total: f64) -> Option<f64> {
    (total > 0.0).then(|| (used / total).clamp(0.0, 1.0))
}

/// The curated samples of `report`, in family order. Resources are the agent's strings as
/// they are; escaping is the renderer's business.
pub fn curate<'a>(report: &'a Report) -> Vec<Sample<'a>> {
    let mut out: Vec<Sample<'a>> = Vec::with_capacity(64);
    let mut push = |family: usize, label: &'a str, value: f64| {
        if value.is_finite() {
            out.push((family, Cow::Borrowed(label), value));
        }
    };
    for probe in &report.probes {
        if probe.status != Status::Ok as i32 {
            continue;
        }
        match &probe.data {
            Some(Data::Cpu(cpu)) => {
                push(CPU_USAGE, "", cpu.usage_ratio);
                push(CPU_IOWAIT, "", cpu.iowait_ratio);
                push(LOAD1, "", cpu.load1);
            }
            Some(Data::Uptime(u)) => push(UPTIME, "", u.uptime_seconds as f64),
            Some(Data::Memory(m)) => {
                let total = m.total_bytes as f64;
                if let Some(r) = ratio(total - m.available_bytes as f64, total) {
                    push(MEMORY_USED, "", r);
                }
                push(MEMORY_TOTAL, "", total);
                let swap = m.swap_total_bytes as f64;
                if let Some(r) = ratio(swap - m.swap_free_bytes as f64, swap) {
                    push(SWAP_USED, "", r);
                }
            }
            Some(Data::Filesystem(fs)) => {
                for f in fs.filesystems.iter().filter(|f| f.error.is_empty() && !f.stale) {
                    let size = f.size_bytes as f64;
                    if let Some(r) = ratio(size - f.free_bytes as f64, size) {
                        push(FS_USED, &f.mount_point, r);
                        push(FS_FREE, &f.mount_point, f.available_bytes as f64);
                    }
                    let inodes = f.inodes_total as f64;
                    if let Some(r) = ratio(inodes - f.inodes_free as f64, inodes) {
                        push(FS_INODES_USED, &f.mount_point, r);
                    }
                    push(FS_READ_ONLY, &f.mount_point, f64::from(u8::from(f.unexpected_read_only)));
                }
            }
            Some(Data::Sensors(s)) => {
                for t in &s.temperatures {
                    push(TEMP, &t.name, t.celsius);
                    if let Some(high) = t.high_celsius {
                        push(TEMP_HIGH, &t.name, high);
                    }
                    if let Some(crit) = t.critical_celsius {
                        push(TEMP_CRIT, &t.name, crit);
                    }
                }
                for f in s.fans.iter().filter(|f| f.rpm > 0.0 || f.min_rpm.is_some()) {
                    push(FAN, &f.name, f.rpm);
                }
            }
            Some(Data::Smart(smart)) => {
                for d in smart.devices.iter().filter(|d| !d.in_standby) {
                    if let Some(passed) = d.health_passed {
                        push(SMART_HEALTHY, &d.name, f64::from(u8::from(passed)));
                    }
                    if let Some(n) = d.reallocated_sectors {
                        push(SMART_REALLOCATED, &d.name, n as f64);
                    }
                    if let Some(n) = d.pending_sectors {
                        push(SMART_PENDING, &d.name, n as f64);
                    }
                    if let Some(n) = d.media_errors {
                        push(SMART_MEDIA_ERRORS, &d.name, n as f64);
                    }
                    if let Some(t) = d.temperature_celsius {
                        push(SMART_TEMP, &d.name, t);
                    }
                }
            }
            Some(Data::Raid(raid)) => {
                for a in raid.arrays.iter().filter(|a| a.raid_disks > 0) {
                    push(RAID_DEGRADED, &a.name, f64::from(u8::from(a.degraded)));
                    push(RAID_FAILED, &a.name, f64::from(a.failed_disks));
                }
            }
            Some(Data::Ecc(ecc)) => {
                for c in &ecc.controllers {
                    push(ECC_CORRECTED, &c.name, c.corrected_errors as f64);
                    push(ECC_UNCORRECTED, &c.name, c.uncorrected_errors as f64);
                }
            }
            Some(Data::Network(net)) => {
                for i in &net.interfaces {
                    if let Some(carrier) = i.carrier {
                        push(NET_CARRIER, &i.name, f64::from(u8::from(carrier)));
                    }
                }
            }
            Some(Data::Services(s)) => {
                for u in &s.units {
                    push(SERVICE_UP, &u.name, f64::from(u8::from(u.active_state == "active")));
                }
            }
            _ => {}
        }
    }
    if let Some(spool) = &report.spool {
        push(SPOOL_DROPPED, "", spool.dropped_total as f64);
        push(SPOOL_QUARANTINED, "", spool.quarantined_total as f64);
        push(SPOOL_IN_MEMORY, "", f64::from(u8::from(spool.in_memory)));
        push(SPOOL_REPORTS, "", spool.spooled_reports as f64);
        push(SPOOL_BYTES, "", spool.spooled_bytes as f64);
    }
    out.sort_by_key(|s| s.0);
    number_repeats(&mut out);
    out
}

/// Two resources of one family with one name (two chips both calling a sensor "Core 0")
/// would be one series twice: the second and later ones, in report order, get ` #2`, ` #3`, ….
/// `samples` is sorted by family. The repeats are found by sorting each family's indices by
/// name, so no name is copied unless it repeats, and no choice of names makes it slower than
/// n log n comparisons (the names are the agent's).
fn number_repeats(samples: &mut [Sample<'_>]) {
    let mut order: Vec<usize> = Vec::new();
    let mut repeats: Vec<(usize, u32)> = Vec::new();
    let mut start = 0;
    while start < samples.len() {
        let family = samples[start].0;
        let end = samples[start..]
            .iter()
            .position(|s| s.0 != family)
            .map_or(samples.len(), |n| start + n);
        if end - start > 1 {
            order.clear();
            order.extend(start..end);
            // Equal names stay in report order: the first keeps its name.
            order.sort_unstable_by(|&a, &b| samples[a].1.cmp(&samples[b].1).then(a.cmp(&b)));
            let mut n = 1;
            for pair in order.windows(2) {
                if samples[pair[0]].1 == samples[pair[1]].1 {
                    n += 1;
                    repeats.push((pair[1], n));
                } else {
                    n = 1;
                }
            }
        }
        start = end;
    }
    for (at, n) in repeats {
        let label = samples[at].1.to_mut();
        label.push_str(&format!(" #{n}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_exporter() -> Report {
        let text = include_str!("../../../agent/tests/golden/node-exporter.json");
        serde_json::from_str(text).expect("the golden report parses")
    }

    #[test]
    fn repeated_names_of_one_family_are_numbered_in_report_order() {
        let mut samples: Vec<Sample<'_>> =
            [(TEMP, "a"), (TEMP, "b"), (TEMP, "a"), (FAN, "a"), (TEMP, "a"), (TEMP, "b")]
                .into_iter()
                .enumerate()
                .map(|(i, (family, name))| (family, Cow::Borrowed(name), i as f64))
                .collect();
        samples.sort_by_key(|s| s.0);
        number_repeats(&mut samples);
        let got: Vec<_> = samples.iter().map(|s| (s.0, s.1.as_ref(), s.2)).collect();
        assert_eq!(
            got,
            [
                (TEMP, "a", 0.0),
                (TEMP, "b", 1.0),
                (TEMP, "a #2", 2.0),
                (TEMP, "a #3", 4.0),
                (TEMP, "b #2", 5.0),
                (FAN, "a", 3.0),
            ]
        );
        assert!(matches!(samples[0].1, Cow::Borrowed(_)), "a name seen once is not copied");
    }

    #[test]
    fn the_node_exporter_host_is_a_few_dozen_series_of_the_signals_that_matter() {
        let report = node_exporter();
        let samples = curate(&report);
        let count = |family: usize| samples.iter().filter(|s| s.0 == family).count();
        assert!(count(TEMP) > 5, "{samples:?}");
        assert_eq!(count(RAID_DEGRADED), count(RAID_FAILED));
        assert!(count(RAID_DEGRADED) > 0);
        assert_eq!(count(ECC_UNCORRECTED), 1, "{samples:?}");
        // Every series is unique.
        let unique: std::collections::HashSet<_> = samples.iter().map(|s| (s.0, &s.1)).collect();
        assert_eq!(unique.len(), samples.len());
        assert!(samples.iter().any(|s| s.0 == TEMP && s.1 == "coretemp/Core 0 #2"));
        assert!(count(NET_CARRIER) > 0);
        let ecc: Vec<_> = samples.iter().filter(|s| s.0 == ECC_UNCORRECTED).collect();
        assert_eq!((ecc[0].1.as_ref(), ecc[0].2), ("mc0", 5.0));
        let memory = samples.iter().find(|s| s.0 == MEMORY_USED).unwrap().2;
        assert!((memory - (1.0 - 1_206_681_600.0 / 3_831_959_552.0)).abs() < 1e-9);
        // Sorted by family, so the renderer can slice.
        assert!(samples.windows(2).all(|w| w[0].0 <= w[1].0));
        // Every name follows the conventions.
        for f in FAMILIES {
            assert!(f.name.starts_with("vigil_host_"), "{}", f.name);
            assert_eq!(f.counter, f.name.ends_with("_total"), "{}", f.name);
        }
    }
}
