//! Disk I/O: what each whole block device has read and written since boot, how many requests
//! are in flight, and — between two runs — how busy each device was and how long its requests
//! took; plus I/O pressure where the kernel has PSI.
//!
//! Sources: `/proc/diskstats` (Documentation/admin-guide/iostats.rst) and `/proc/pressure/io`.
//! Sector counts in diskstats are always in 512-byte units whatever the device's sector size
//! (`block/genhd.c` `diskstats_show` prints `stat.sectors`, which are 512-byte), so bytes are
//! sectors × 512.
//!
//! Which devices: diskstats lists partitions, RAM disks and loop devices next to the disks. A
//! device is reported when `/sys/block/<dev>` exists, because `/sys/block` lists whole devices
//! only (partitions live below their disk, `/sys/block/sda/sda1`); a `/` in a diskstats name
//! (`cciss/c0d0`) is `!` in sysfs. Where the root has no `/sys/block` (some captured trees,
//! some containers), a device is left out when it looks like a partition of another listed
//! device: its name is that device's name plus digits (`sda1`), or plus `p` and digits
//! (`nvme0n1p1`, `mmcblk0p2`). `ram*` and `loop*` devices are never reported. Devices keep the
//! kernel's order.
//!
//! Rates need two samples, so the probe keeps the previous one with the instant it was taken.
//! The first run (and a device that was not in the previous sample) has no rates: unlike the
//! CPU probe, this one does not wait for a second sample. The time between samples comes from
//! an injectable [`Clock`] so tests are exact. The kernel prints the time counters as 32-bit
//! milliseconds (they wrap after ~49.7 days of busy time), and a device that is removed and
//! re-created restarts from 0: when any counter of a device went backwards, that device has no
//! rates for that run, never a negative or an absurd one.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use vigil_proto::v1::{self, DiskIoData, probe_result};

use super::{Probe, ProbeError, cpu};
use crate::clock::{Clock, SystemClock};
use crate::read;
use crate::root::HostRoot;

/// Bytes per diskstats sector, whatever the device's own sector size.
const SECTOR_BYTES: u64 = 512;

/// The disk I/O probe; keeps the previous `/proc/diskstats` sample and when it was taken.
pub struct DiskIo {
    previous: Option<Sample>,
    clock: Box<dyn Clock>,
}

impl Default for DiskIo {
    fn default() -> Self {
        Self::with_clock(Box::new(SystemClock))
    }
}

impl std::fmt::Debug for DiskIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskIo").field("previous", &self.previous).finish_non_exhaustive()
    }
}

impl DiskIo {
    /// A probe that reads the time between samples from `clock` instead of the system clock.
    pub fn with_clock(clock: Box<dyn Clock>) -> Self {
        Self { previous: None, clock }
    }
}

/// One run's counters, by device name, and when they were read.
#[derive(Debug)]
struct Sample {
    at: Instant,
    disks: BTreeMap<String, DiskStats>,
}

impl Probe for DiskIo {
    fn name(&self) -> &'static str {
        "disk_io"
    }

    fn collect(&mut self, root: &HostRoot) -> Result<probe_result::Data, ProbeError> {
        let path = root.proc("diskstats");
        let text = read::read_string(&path).map_err(|err| ProbeError::from_read(root, &err))?;
        let at = self.clock.now();
        let stats = select(parse_diskstats(&text), sys_block(root).as_ref());

        let previous = self.previous.take();
        let elapsed_ms = previous
            .as_ref()
            .map(|previous| at.saturating_duration_since(previous.at).as_nanos() as f64 / 1e6);
        let disks = stats
            .iter()
            .map(|now| {
                let before = previous.as_ref().and_then(|previous| previous.disks.get(&now.name));
                let rates = match (before, elapsed_ms) {
                    (Some(before), Some(elapsed_ms)) => Rates::between(before, now, elapsed_ms),
                    _ => Rates::default(),
                };
                now.to_proto(rates)
            })
            .collect();
        self.previous = Some(Sample {
            at,
            disks: stats.into_iter().map(|stats| (stats.name.clone(), stats)).collect(),
        });

        Ok(probe_result::Data::DiskIo(DiskIoData {
            disks,
            pressure_some_avg60: cpu::pressure(root, "pressure/io", "some"),
            pressure_full_avg60: cpu::pressure(root, "pressure/io", "full"),
        }))
    }
}

/// The entries of `/sys/block`, or `None` when the root has no such directory (or it cannot
/// be listed, which is treated the same way).
fn sys_block(root: &HostRoot) -> Option<BTreeSet<String>> {
    let dir = root.sys("block");
    match std::fs::read_dir(&dir) {
        Ok(entries) => Some(
            entries
                .filter_map(Result::ok)
                .filter_map(|entry| entry.file_name().into_string().ok())
                .collect(),
        ),
        Err(err) => {
            tracing::debug!(dir = %root.host_view(&dir), %err, "not listing block devices");
            None
        }
    }
}

/// The counters of one `/proc/diskstats` line that the probe uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct DiskStats {
    pub name: String,
    pub reads_completed: u64,
    pub sectors_read: u64,
    pub read_time_ms: u64,
    pub writes_completed: u64,
    pub sectors_written: u64,
    pub write_time_ms: u64,
    pub in_flight: u64,
    pub io_time_ms: u64,
}

impl DiskStats {
    /// True when any cumulative counter is smaller than in `earlier` (`in_flight` is a gauge
    /// and does not count).
    fn went_backwards(&self, earlier: &Self) -> bool {
        self.reads_completed < earlier.reads_completed
            || self.sectors_read < earlier.sectors_read
            || self.read_time_ms < earlier.read_time_ms
            || self.writes_completed < earlier.writes_completed
            || self.sectors_written < earlier.sectors_written
            || self.write_time_ms < earlier.write_time_ms
            || self.io_time_ms < earlier.io_time_ms
    }

    fn to_proto(&self, rates: Rates) -> v1::DiskIo {
        v1::DiskIo {
            name: self.name.clone(),
            reads_completed: self.reads_completed,
            writes_completed: self.writes_completed,
            read_bytes: self.sectors_read.saturating_mul(SECTOR_BYTES),
            written_bytes: self.sectors_written.saturating_mul(SECTOR_BYTES),
            io_time_ms: self.io_time_ms,
            utilization_ratio: rates.utilization,
            read_latency_ms: rates.read_latency_ms,
            write_latency_ms: rates.write_latency_ms,
            in_flight: self.in_flight,
        }
    }
}

/// What one device did between two samples; each `None` when it cannot be told.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Rates {
    /// Share of the elapsed time with I/O in flight, 0..1.
    pub utilization: Option<f64>,
    /// Mean time per completed read / write, in ms.
    pub read_latency_ms: Option<f64>,
    pub write_latency_ms: Option<f64>,
}

impl Rates {
    /// Rates from `before` to `now`, `elapsed_ms` apart. No rates at all when a counter went
    /// backwards; no utilization when no time passed; no latency without completed requests.
    pub fn between(before: &DiskStats, now: &DiskStats, elapsed_ms: f64) -> Self {
        if now.went_backwards(before) {
            return Self::default();
        }
        let latency = |time: u64, time_before: u64, done: u64, done_before: u64| {
            let done = done - done_before;
            (done > 0).then(|| (time - time_before) as f64 / done as f64)
        };
        Self {
            utilization: (elapsed_ms > 0.0).then(|| {
                ((now.io_time_ms - before.io_time_ms) as f64 / elapsed_ms).clamp(0.0, 1.0)
            }),
            read_latency_ms: latency(
                now.read_time_ms,
                before.read_time_ms,
                now.reads_completed,
                before.reads_completed,
            ),
            write_latency_ms: latency(
                now.write_time_ms,
                before.write_time_ms,
                now.writes_completed,
                before.writes_completed,
            ),
        }
    }
}

/// Parses `/proc/diskstats`: `major minor name` and at least 11 counters (4.18 added four
/// discard counters, 5.5 two flush counters; they are ignored). Lines with fewer counters
/// (the 4-counter partition lines of 2.6.x) or non-numeric ones are skipped.
pub(crate) fn parse_diskstats(text: &str) -> Vec<DiskStats> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_major, _minor, name) = (fields.next()?, fields.next()?, fields.next()?);
            let values: Vec<u64> = fields.map(str::parse).collect::<Result<_, _>>().ok()?;
            if values.len() < 11 {
                return None;
            }
            Some(DiskStats {
                name: name.to_owned(),
                reads_completed: values[0],
                sectors_read: values[2],
                read_time_ms: values[3],
                writes_completed: values[4],
                sectors_written: values[6],
                write_time_ms: values[7],
                in_flight: values[8],
                io_time_ms: values[9],
            })
        })
        .collect()
}

/// The devices to report, in their diskstats order (see the module doc): those in
/// `sys_block` when it is known, else those that do not look like a partition of another
/// listed device; never `ram*` or `loop*`.
pub(crate) fn select(
    stats: Vec<DiskStats>,
    sys_block: Option<&BTreeSet<String>>,
) -> Vec<DiskStats> {
    let names: BTreeSet<String> = stats.iter().map(|stats| stats.name.clone()).collect();
    stats
        .into_iter()
        .filter(|stats| {
            let name = stats.name.as_str();
            if name.starts_with("ram") || name.starts_with("loop") {
                return false;
            }
            match sys_block {
                Some(sys_block) => {
                    sys_block.contains(name) || sys_block.contains(&name.replace('/', "!"))
                }
                None => !names.iter().any(|parent| is_partition_of(name, parent)),
            }
        })
        .collect()
}

/// `sda1` of `sda`, `nvme0n1p1` of `nvme0n1`, `mmcblk0p2` of `mmcblk0`.
fn is_partition_of(name: &str, parent: &str) -> bool {
    let Some(rest) = name.strip_prefix(parent) else { return false };
    let number = rest.strip_prefix('p').unwrap_or(rest);
    !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::clock::testing::FakeClock;

    fn fixture(tree: &str) -> HostRoot {
        HostRoot::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(tree))
    }

    fn names(data: &DiskIoData) -> Vec<&str> {
        data.disks.iter().map(|disk| disk.name.as_str()).collect()
    }

    fn collect(probe: &mut DiskIo, root: &HostRoot) -> DiskIoData {
        match probe.collect(root) {
            Ok(probe_result::Data::DiskIo(data)) => data,
            other => panic!("{other:?}"),
        }
    }

    const LINE_FIELDS: &str = "   8       0 sda 25354637 34367663 1003346126 18492372 \
                               28444756 11134226 505697032 63877960 0 9653880 82621804\n";

    #[test]
    fn parses_a_diskstats_line() {
        let stats = parse_diskstats(LINE_FIELDS);
        assert_eq!(
            stats,
            [DiskStats {
                name: "sda".into(),
                reads_completed: 25_354_637,
                sectors_read: 1_003_346_126,
                read_time_ms: 18_492_372,
                writes_completed: 28_444_756,
                sectors_written: 505_697_032,
                write_time_ms: 63_877_960,
                in_flight: 0,
                io_time_ms: 9_653_880,
            }]
        );
    }

    #[test]
    fn skips_short_and_broken_lines_and_reads_newer_formats() {
        let text = "   8    1 sda1 250 2000 0 0\n\
                    8 2 sdb x 0 0 0 0 0 0 0 0 0 0\n\
                    8 3\n\
                    8 16 sdb 1 0 2 3 4 0 5 6 7 8 9 10 11 12 13 14 15\n";
        let stats = parse_diskstats(text);
        assert_eq!(stats.len(), 1);
        assert_eq!(stats[0].name, "sdb");
        assert_eq!(stats[0].in_flight, 7);
        assert_eq!(stats[0].io_time_ms, 8);
    }

    #[test]
    fn partitions_by_name_when_sysfs_has_no_block_dir() {
        let stats = parse_diskstats(
            "1 0 ram0 0 0 0 0 0 0 0 0 0 0 0\n7 0 loop0 0 0 0 0 0 0 0 0 0 0 0\n\
             8 0 sda 0 0 0 0 0 0 0 0 0 0 0\n8 1 sda1 0 0 0 0 0 0 0 0 0 0 0\n\
             259 0 nvme0n1 0 0 0 0 0 0 0 0 0 0 0\n259 1 nvme0n1p1 0 0 0 0 0 0 0 0 0 0 0\n\
             179 0 mmcblk0 0 0 0 0 0 0 0 0 0 0 0\n179 1 mmcblk0p2 0 0 0 0 0 0 0 0 0 0 0\n\
             252 0 dm-0 0 0 0 0 0 0 0 0 0 0 0\n252 1 dm-1 0 0 0 0 0 0 0 0 0 0 0\n\
             9 0 md0 0 0 0 0 0 0 0 0 0 0 0\n8 16 sdb 0 0 0 0 0 0 0 0 0 0 0\n",
        );
        let kept: Vec<String> = select(stats, None).into_iter().map(|s| s.name).collect();
        assert_eq!(kept, ["sda", "nvme0n1", "mmcblk0", "dm-0", "dm-1", "md0", "sdb"]);
        assert!(is_partition_of("sda12", "sda"));
        assert!(!is_partition_of("sdab", "sda"));
        assert!(!is_partition_of("sda", "sda"));
        assert!(!is_partition_of("sdap", "sda"));
    }

    #[test]
    fn sysfs_names_use_bang_for_slash() {
        let stats = parse_diskstats(
            "104 0 cciss/c0d0 1 0 0 0 0 0 0 0 0 0 0\n104 1 cciss/c0d0p1 1 0 0 0 0 0 0 0 0 0 0\n",
        );
        let sys_block: BTreeSet<String> = ["cciss!c0d0".to_owned()].into();
        let kept = select(stats, Some(&sys_block));
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].name, "cciss/c0d0");
    }

    #[test]
    fn linux_procfs_fixture() {
        let data = collect(&mut DiskIo::default(), &fixture("linux-procfs"));
        // diskstats ∩ /sys/block of the capture (which has dm-0..2, md*, sda..sde).
        assert_eq!(names(&data), ["sda", "dm-0", "dm-1", "dm-2", "sdb", "sdc"]);
        let sda = &data.disks[0];
        assert_eq!(
            *sda,
            v1::DiskIo {
                name: "sda".into(),
                reads_completed: 25_354_637,
                writes_completed: 28_444_756,
                read_bytes: 1_003_346_126 * 512,
                written_bytes: 505_697_032 * 512,
                io_time_ms: 9_653_880,
                utilization_ratio: None,
                read_latency_ms: None,
                write_latency_ms: None,
                in_flight: 0,
            }
        );
        // sdb has the 5.5+ format with discard and flush counters.
        assert_eq!(data.disks[4].reads_completed, 326_552);
        assert_eq!(data.disks[4].written_bytes, 1_972_905 * 512);
        assert_eq!(data.disks[4].io_time_ms, 60_730);
        assert_eq!(data.pressure_some_avg60, Some(2.0));
        assert_eq!(data.pressure_full_avg60, Some(3.0));
    }

    #[test]
    fn node_exporter_fixture() {
        let data = collect(&mut DiskIo::default(), &fixture("node-exporter"));
        assert_eq!(names(&data), ["sda", "dm-5"]);
        assert_eq!(data.disks[1].reads_completed, 3729);
        assert_eq!(data.disks[1].read_bytes, 84_279 * 512);
        assert_eq!(data.disks[1].writes_completed, 98_918);
        assert_eq!(data.disks[1].written_bytes, 1_151_688 * 512);
        assert_eq!(data.disks[1].io_time_ms, 58_848);
        assert_eq!(data.pressure_some_avg60, Some(0.34));
        assert_eq!(data.pressure_full_avg60, Some(0.34));
    }

    /// A root with only the given diskstats text (no `/sys/block`, no PSI).
    fn tree(diskstats: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc")).unwrap();
        std::fs::write(dir.path().join("proc/diskstats"), diskstats).unwrap();
        dir
    }

    #[test]
    fn rates_over_an_interval_with_an_injected_clock() {
        let dir = tree(
            "8 0 sda 100 0 800 500 50 0 400 1000 2 700 0\n\
             8 16 sdb 10 0 80 50 5 0 40 100 0 70 0\n",
        );
        let root = HostRoot::new(dir.path().to_path_buf());
        let clock = FakeClock::new();
        let mut probe = DiskIo::with_clock(Box::new(clock.clone()));

        let first = collect(&mut probe, &root);
        assert_eq!(first.disks[0].utilization_ratio, None);
        assert_eq!(first.disks[0].read_latency_ms, None);
        assert_eq!(first.disks[0].write_latency_ms, None);
        assert_eq!(first.pressure_some_avg60, None, "no PSI file");

        // 2 s later: sda did 40 reads in 200 ms, 10 writes in 250 ms, was busy 500 ms;
        // sdb completed nothing and was busy longer than the interval (clamped).
        std::fs::write(
            dir.path().join("proc/diskstats"),
            "8 0 sda 140 0 1120 700 60 0 480 1250 1 1200 0\n\
             8 16 sdb 10 0 80 50 5 0 40 100 0 2170 0\n",
        )
        .unwrap();
        clock.advance(Duration::from_millis(2000));
        let second = collect(&mut probe, &root);
        let sda = &second.disks[0];
        assert_eq!(sda.utilization_ratio, Some(0.25));
        assert_eq!(sda.read_latency_ms, Some(5.0));
        assert_eq!(sda.write_latency_ms, Some(25.0));
        assert_eq!(sda.in_flight, 1);
        assert_eq!(sda.read_bytes, 1120 * 512);
        let sdb = &second.disks[1];
        assert_eq!(sdb.utilization_ratio, Some(1.0));
        assert_eq!(sdb.read_latency_ms, None);
        assert_eq!(sdb.write_latency_ms, None);

        // No time passed: no utilization, and no latency without new completions.
        let third = collect(&mut probe, &root);
        assert_eq!(third.disks[0].utilization_ratio, None);
        assert_eq!(third.disks[0].read_latency_ms, None);
    }

    #[test]
    fn a_counter_going_backwards_gives_no_rates() {
        let dir = tree("8 0 sda 100 0 800 500 50 0 400 1000 0 700 0\n");
        let root = HostRoot::new(dir.path().to_path_buf());
        let clock = FakeClock::new();
        let mut probe = DiskIo::with_clock(Box::new(clock.clone()));
        collect(&mut probe, &root);

        // Re-created device: counters restart from (near) zero.
        std::fs::write(dir.path().join("proc/diskstats"), "8 0 sda 5 0 40 10 2 0 16 4 0 12 0\n")
            .unwrap();
        clock.advance(Duration::from_secs(1));
        let data = collect(&mut probe, &root);
        assert_eq!(data.disks[0].utilization_ratio, None);
        assert_eq!(data.disks[0].read_latency_ms, None);
        assert_eq!(data.disks[0].write_latency_ms, None);
        assert_eq!(data.disks[0].reads_completed, 5, "the counters are still reported");

        // The next interval is measured from the new baseline.
        std::fs::write(dir.path().join("proc/diskstats"), "8 0 sda 15 0 80 30 2 0 16 4 0 512 0\n")
            .unwrap();
        clock.advance(Duration::from_secs(1));
        let data = collect(&mut probe, &root);
        assert_eq!(data.disks[0].utilization_ratio, Some(0.5));
        assert_eq!(data.disks[0].read_latency_ms, Some(2.0));
        assert_eq!(data.disks[0].write_latency_ms, None);
    }

    #[test]
    fn only_the_wrapped_time_counter_is_enough_to_drop_rates() {
        // io_ticks is printed as 32-bit milliseconds and wraps; the rest moved forward.
        let before = DiskStats {
            reads_completed: 10,
            read_time_ms: 100,
            io_time_ms: 4_294_967_000,
            ..DiskStats::default()
        };
        let now =
            DiskStats { reads_completed: 20, read_time_ms: 200, io_time_ms: 5, ..before.clone() };
        assert_eq!(Rates::between(&before, &now, 1000.0), Rates::default());
        let forward = DiskStats { io_time_ms: 4_294_967_100, ..now };
        let rates = Rates::between(&before, &forward, 1000.0);
        assert_eq!(rates.utilization, Some(0.1));
        assert_eq!(rates.read_latency_ms, Some(10.0));
    }

    #[test]
    fn a_device_new_since_the_last_run_has_no_rates_yet() {
        let dir = tree("8 0 sda 1 0 8 1 0 0 0 0 0 1 0\n");
        let root = HostRoot::new(dir.path().to_path_buf());
        let clock = FakeClock::new();
        let mut probe = DiskIo::with_clock(Box::new(clock.clone()));
        collect(&mut probe, &root);
        std::fs::write(
            dir.path().join("proc/diskstats"),
            "8 0 sda 2 0 16 3 0 0 0 0 0 11 0\n8 16 sdb 1 0 8 1 0 0 0 0 0 1 0\n",
        )
        .unwrap();
        clock.advance(Duration::from_millis(100));
        let data = collect(&mut probe, &root);
        assert_eq!(data.disks[0].utilization_ratio, Some(0.1));
        assert_eq!(data.disks[0].read_latency_ms, Some(2.0));
        assert_eq!(data.disks[1].name, "sdb");
        assert_eq!(data.disks[1].utilization_ratio, None);
    }

    #[test]
    fn no_diskstats_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let root = HostRoot::new(dir.path().to_path_buf());
        match DiskIo::default().collect(&root) {
            Err(ProbeError::Unavailable(message)) => {
                assert_eq!(message, "/proc/diskstats not found");
            }
            other => panic!("{other:?}"),
        }
    }
}
