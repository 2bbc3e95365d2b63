//! Scalar readings derived from a report: the series that are rolled up per 5 minutes for
//! history (and, later, monthly inspection reports), and the few headline values the host list
//! shows. Pure functions over the wire types, so the rules are testable without a store.

use serde::Serialize;
use vigil_proto::v1::{Report, probe_result::Data};

/// Headline readings of one report, for the host list.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Summary {
    pub cpu_usage_ratio: Option<f64>,
    pub load1: Option<f64>,
    pub memory_used_ratio: Option<f64>,
    pub swap_used_ratio: Option<f64>,
    /// The fullest real filesystem (by used share of its size).
    pub filesystem_max_used_ratio: Option<f64>,
    pub temperature_max_celsius: Option<f64>,
    pub uptime_seconds: Option<u64>,
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

pub fn summary(report: &Report) -> Summary {
    let mut s = Summary::default();
    for probe in &report.probes {
        match &probe.data {
            Some(Data::Cpu(cpu)) => {
                s.cpu_usage_ratio = Some(cpu.usage_ratio);
                s.load1 = Some(cpu.load1);
            }
            Some(Data::Memory(m)) => {
                s.memory_used_ratio =
                    ratio(m.total_bytes.saturating_sub(m.available_bytes), m.total_bytes);
                s.swap_used_ratio =
                    ratio(m.swap_total_bytes.saturating_sub(m.swap_free_bytes), m.swap_total_bytes);
            }
            Some(Data::Filesystem(fs)) => {
                s.filesystem_max_used_ratio = fs
                    .filesystems
                    .iter()
                    .filter(|f| f.error.is_empty())
                    .filter_map(|f| ratio(f.size_bytes.saturating_sub(f.free_bytes), f.size_bytes))
                    .reduce(f64::max);
            }
            Some(Data::Sensors(sensors)) => {
                s.temperature_max_celsius =
                    sensors.temperatures.iter().map(|t| t.celsius).reduce(f64::max);
            }
            Some(Data::Uptime(u)) => s.uptime_seconds = Some(u.uptime_seconds),
            Some(
                Data::Network(_)
                | Data::Smart(_)
                | Data::Ipmi(_)
                | Data::Raid(_)
                | Data::Ecc(_)
                | Data::DiskIo(_)
                | Data::Clock(_)
                | Data::Services(_),
            )
            | None => {}
        }
    }
    s
}

/// Series rolled up per host per 5 minutes: `(name, value)`. Names are stable; per-resource
/// series carry the resource after a colon (`filesystem.used_ratio:/var`).
pub fn series(report: &Report) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for probe in &report.probes {
        match &probe.data {
            Some(Data::Cpu(cpu)) => {
                out.push(("cpu.usage_ratio".to_owned(), cpu.usage_ratio));
                out.push(("cpu.load1".to_owned(), cpu.load1));
            }
            Some(Data::Memory(m)) => {
                if let Some(r) =
                    ratio(m.total_bytes.saturating_sub(m.available_bytes), m.total_bytes)
                {
                    out.push(("memory.used_ratio".to_owned(), r));
                }
                if let Some(r) =
                    ratio(m.swap_total_bytes.saturating_sub(m.swap_free_bytes), m.swap_total_bytes)
                {
                    out.push(("swap.used_ratio".to_owned(), r));
                }
            }
            Some(Data::Filesystem(fs)) => {
                for f in fs.filesystems.iter().filter(|f| f.error.is_empty()) {
                    if let Some(r) = ratio(f.size_bytes.saturating_sub(f.free_bytes), f.size_bytes)
                    {
                        out.push((format!("filesystem.used_ratio:{}", f.mount_point), r));
                    }
                    if let Some(r) =
                        ratio(f.inodes_total.saturating_sub(f.inodes_free), f.inodes_total)
                    {
                        out.push((format!("filesystem.inodes_used_ratio:{}", f.mount_point), r));
                    }
                }
            }
            Some(Data::Sensors(sensors)) => {
                for t in &sensors.temperatures {
                    out.push((format!("temperature.celsius:{}", t.name), t.celsius));
                }
            }
            Some(
                Data::Network(_)
                | Data::Uptime(_)
                | Data::Smart(_)
                | Data::Ipmi(_)
                | Data::Raid(_)
                | Data::Ecc(_)
                | Data::DiskIo(_)
                | Data::Clock(_)
                | Data::Services(_),
            )
            | None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use vigil_proto::v1::{
        CpuData, Filesystem, FilesystemData, MemoryData, ProbeResult, probe_result::Status,
    };

    use super::*;

    fn probe(data: Data) -> ProbeResult {
        ProbeResult {
            probe: "x".into(),
            status: Status::Ok as i32,
            data: Some(data),
            ..Default::default()
        }
    }

    fn sample() -> Report {
        Report {
            probes: vec![
                probe(Data::Cpu(CpuData { usage_ratio: 0.25, load1: 1.5, ..Default::default() })),
                probe(Data::Memory(MemoryData {
                    total_bytes: 1000,
                    available_bytes: 400,
                    swap_total_bytes: 0,
                    ..Default::default()
                })),
                probe(Data::Filesystem(FilesystemData {
                    filesystems: vec![
                        Filesystem {
                            mount_point: "/".into(),
                            size_bytes: 100,
                            free_bytes: 10,
                            inodes_total: 10,
                            inodes_free: 5,
                            ..Default::default()
                        },
                        Filesystem {
                            mount_point: "/stale".into(),
                            error: "timed out".into(),
                            ..Default::default()
                        },
                    ],
                })),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn summary_takes_headline_values() {
        let s = summary(&sample());
        assert_eq!(s.cpu_usage_ratio, Some(0.25));
        assert_eq!(s.memory_used_ratio, Some(0.6));
        assert_eq!(s.swap_used_ratio, None, "no swap configured is not 0 % used");
        assert_eq!(s.filesystem_max_used_ratio, Some(0.9));
        assert_eq!(s.temperature_max_celsius, None);
    }

    #[test]
    fn series_names_resources_and_skips_failed_filesystems() {
        let names: Vec<_> = series(&sample()).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "cpu.usage_ratio",
                "cpu.load1",
                "memory.used_ratio",
                "filesystem.used_ratio:/",
                "filesystem.inodes_used_ratio:/"
            ]
        );
    }
}
