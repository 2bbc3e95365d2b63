//! Storage rules: filesystems (remounted read-only, stale, out of space or inodes), software
//! RAID (failed, degraded, rebuilding) and SMART (the disk's own verdict, NVMe warnings, spare
//! and wear, and the defect counters that rise before a disk dies). Resources are the mount
//! point, the array (`md0`) and the device as smartctl names it (`/dev/sda`); a failed or
//! degraded array groups its member disks (`/dev/sda`), so their SMART incidents file under it.

use vigil_proto::v1::{Filesystem, FilesystemData, RaidArray, RaidData, SmartData, SmartDevice};

use super::catalogue::GIB;
use super::memory::counter_events;
use super::text::{bytes, decimal, duration, percent, text};
use super::{FaultLevel, Findings, HostMemory, Rule, RuleDef, ThresholdUnit};

pub(super) const FS_READ_ONLY: RuleDef = RuleDef::state(
    "filesystem.read_only",
    FaultLevel::L1,
    "a filesystem meant to be read-write is mounted read-only (typically remounted after \
     I/O errors)",
);
pub(super) const FS_STALE: RuleDef = RuleDef::state(
    "filesystem.stale",
    FaultLevel::L2,
    "a mount does not answer statvfs in time (a hung NFS server)",
);
pub(super) const FS_FULL: RuleDef = RuleDef::state(
    "filesystem.full",
    FaultLevel::L2,
    "used share (as `df` counts it) at or above the threshold and less than \
     `min_free_bytes` available: both",
)
.utilisation()
.threshold(0.95, ThresholdUnit::Ratio)
.min_free_bytes(10 * GIB);
pub(super) const FS_USAGE: RuleDef = RuleDef::state(
    "filesystem.usage",
    FaultLevel::L3,
    "as `filesystem.full` with lower bounds; a filesystem that is full gets only \
     `filesystem.full`",
)
.utilisation()
.threshold(0.85, ThresholdUnit::Ratio)
.min_free_bytes(50 * GIB);
pub(super) const FS_INODES_FULL: RuleDef = RuleDef::state(
    "filesystem.inodes_full",
    FaultLevel::L2,
    "share of inodes used at or above the threshold",
)
.utilisation()
.threshold(0.95, ThresholdUnit::Ratio);
pub(super) const FS_INODES: RuleDef = RuleDef::state(
    "filesystem.inodes",
    FaultLevel::L3,
    "as `filesystem.inodes_full`, with a lower threshold; only one of the two fires",
)
.utilisation()
.threshold(0.85, ThresholdUnit::Ratio);
pub(super) const RAID_FAILED: RuleDef = RuleDef::state(
    "raid.failed",
    FaultLevel::L1,
    "an md array cannot serve: inactive with members expected, `broken`, or fewer working \
     members than its level needs",
);
pub(super) const RAID_DEGRADED: RuleDef = RuleDef::state(
    "raid.degraded",
    FaultLevel::L2,
    "an md array runs without full redundancy (missing or failed members) but still serves",
);
pub(super) const RAID_SYNC: RuleDef = RuleDef::state(
    "raid.sync",
    FaultLevel::L4,
    "a healthy md array resyncs, recovers, reshapes or repairs (a scheduled `check` is \
     not reported)",
);
pub(super) const SMART_FAILED: RuleDef = RuleDef::state(
    "smart.failed",
    FaultLevel::L1,
    "the disk's SMART overall health self-assessment says FAILED",
);
pub(super) const SMART_CRITICAL_WARNING: RuleDef =
    RuleDef::state("smart.critical_warning", FaultLevel::L2, "an NVMe critical warning bit is set");
pub(super) const SMART_SPARE_LOW: RuleDef = RuleDef::state(
    "smart.spare_low",
    FaultLevel::L2,
    "NVMe available spare below the threshold the drive states",
);
pub(super) const SMART_PENDING: RuleDef = RuleDef::state(
    "smart.pending_sectors",
    FaultLevel::L3,
    "ATA pending (unreadable, not yet reallocated) sectors at or above the threshold",
)
.threshold(1.0, ThresholdUnit::Count);
pub(super) const SMART_REALLOCATED: RuleDef =
    RuleDef::event("smart.reallocated", FaultLevel::L3, "the ATA reallocated sector count rose");
pub(super) const SMART_GROWN_DEFECTS: RuleDef =
    RuleDef::event("smart.grown_defects", FaultLevel::L3, "the SCSI grown defect list grew");
pub(super) const SMART_MEDIA_ERRORS: RuleDef = RuleDef::event(
    "smart.media_errors",
    FaultLevel::L3,
    "the NVMe media and data integrity error count rose",
);
pub(super) const SMART_WEAR: RuleDef = RuleDef::state(
    "smart.wear",
    FaultLevel::L4,
    "NVMe percentage used (of the rated endurance) at or above the threshold",
)
.threshold(100.0, ThresholdUnit::Percent);

pub(super) const RULES: &[RuleDef] = &[
    FS_READ_ONLY,
    FS_STALE,
    FS_FULL,
    FS_USAGE,
    FS_INODES_FULL,
    FS_INODES,
    RAID_FAILED,
    RAID_DEGRADED,
    RAID_SYNC,
    SMART_FAILED,
    SMART_CRITICAL_WARNING,
    SMART_SPARE_LOW,
    SMART_PENDING,
    SMART_REALLOCATED,
    SMART_GROWN_DEFECTS,
    SMART_MEDIA_ERRORS,
    SMART_WEAR,
];

// ---- filesystems ----

pub(super) fn filesystems(data: &FilesystemData, findings: &mut Findings) {
    for fs in &data.filesystems {
        let mount = text(&fs.mount_point);
        if fs.unexpected_read_only {
            findings.fire(&FS_READ_ONLY, &mount, |_| {
                format!("{mount} ({}) is mounted read-only, meant read-write", text(&fs.device))
            });
        }
        if fs.stale {
            findings.fire(&FS_STALE, &mount, |_| {
                format!(
                    "{mount} ({}) does not answer statvfs: {}",
                    text(&fs.device),
                    text(&fs.error)
                )
            });
        }
        // Without a measurement (stale, an error) the sizes are 0: nothing to judge.
        if fs.error.is_empty() && fs.size_bytes > 0 {
            space(fs, &mount, findings);
            inodes(fs, &mount, findings);
        }
    }
}

/// The used share as `df` counts it: of the space unprivileged users can have (used plus
/// available), so blocks reserved for root do not count as free.
fn used_ratio(fs: &Filesystem) -> Option<f64> {
    let used = fs.size_bytes.saturating_sub(fs.free_bytes);
    let usable = used.checked_add(fs.available_bytes)?;
    (usable > 0).then(|| used as f64 / usable as f64)
}

fn space(fs: &Filesystem, mount: &str, findings: &mut Findings) {
    let Some(used) = used_ratio(fs) else { return };
    let available = fs.available_bytes;
    findings.first_of(&[&FS_FULL, &FS_USAGE], mount, |rule| {
        (used >= rule.threshold && available < rule.min_free_bytes).then(|| {
            format!(
                "{mount} {} used, {} free (thresholds {}, {})",
                percent(used),
                bytes(available),
                percent(rule.threshold),
                bytes(rule.min_free_bytes),
            )
        })
    });
}

fn inodes(fs: &Filesystem, mount: &str, findings: &mut Findings) {
    // Filesystems that allocate inodes as needed (btrfs, some network ones) report 0.
    if fs.inodes_total == 0 {
        return;
    }
    let used = fs.inodes_total.saturating_sub(fs.inodes_free) as f64 / fs.inodes_total as f64;
    findings.first_of(&[&FS_INODES_FULL, &FS_INODES], mount, |rule| {
        (used >= rule.threshold).then(|| {
            format!(
                "{mount} inodes {} used, {} free (threshold {})",
                percent(used),
                fs.inodes_free,
                percent(rule.threshold)
            )
        })
    });
}

// ---- software RAID ----

pub(super) fn raid(data: &RaidData, findings: &mut Findings) {
    for array in &data.arrays {
        let name = text(&array.name);
        match health_of(array) {
            ArrayHealth::Failed(why) => {
                let summary = |_: &Rule| format!("{name} failed: {why}; {}", members(array));
                if let Some(finding) = findings.fire(&RAID_FAILED, &name, summary) {
                    finding.groups = member_disks(array);
                }
            }
            ArrayHealth::Degraded => {
                let summary = |_: &Rule| degraded_summary(&name, array);
                if let Some(finding) = findings.fire(&RAID_DEGRADED, &name, summary) {
                    finding.groups = member_disks(array);
                }
            }
            ArrayHealth::Syncing(sync) => {
                findings.fire(&RAID_SYNC, &name, |_| format!("{name} {sync}"));
            }
            ArrayHealth::Healthy => {}
        }
    }
}

/// The one state of an array the rules report, worst first.
enum ArrayHealth {
    /// It cannot serve; why.
    Failed(String),
    /// It serves without full redundancy.
    Degraded,
    /// It is whole and a sync runs or waits; which.
    Syncing(String),
    Healthy,
}

fn health_of(array: &RaidArray) -> ArrayHealth {
    if let Some(why) = why_failed(array) {
        ArrayHealth::Failed(why)
    } else if array.degraded {
        ArrayHealth::Degraded
    } else if let Some(sync) = running_sync(array) {
        ArrayHealth::Syncing(sync)
    } else {
        ArrayHealth::Healthy
    }
}

/// Why the array cannot serve, if it cannot.
fn why_failed(array: &RaidArray) -> Option<String> {
    if array.state.starts_with("inactive") && array.raid_disks > 0 {
        return Some("array inactive".to_owned());
    }
    if array.array_state == "broken" {
        return Some("array broken (a member of a level without redundancy is gone)".to_owned());
    }
    let needed = members_needed(&array.level, array.raid_disks)?;
    let short = array.active_disks < needed;
    // Without redundancy any failed member is a lost array.
    let lost_member = needed == array.raid_disks && array.failed_disks > 0;
    (short || lost_member).then(|| {
        format!("{} needs {needed} of {} members working", text(&array.level), array.raid_disks)
    })
}

/// Working members an array of this level needs to serve its data; `None` for a level this
/// classifier does not know (it then judges by `degraded` only). For raid10 it is the
/// guaranteed bound of the two-copy layouts: beyond half the members lost, data is lost.
fn members_needed(level: &str, raid_disks: u32) -> Option<u32> {
    match level {
        "raid1" => Some(raid_disks.min(1)),
        "raid4" | "raid5" => Some(raid_disks.saturating_sub(1)),
        "raid6" => Some(raid_disks.saturating_sub(2)),
        "raid10" => Some(raid_disks.div_ceil(2)),
        "raid0" | "linear" => Some(raid_disks),
        _ => None,
    }
}

/// `md6 degraded: 1 of 2 members active, 1 failed (sdb2), 1 spare; recover 8.6% done, 17 min left`.
fn degraded_summary(name: &str, array: &RaidArray) -> String {
    let mut summary = format!("{name} degraded: {}", members(array));
    if let Some(sync) = running_sync(array) {
        summary.push_str("; ");
        summary.push_str(&sync);
    }
    summary
}

/// `1 of 2 members active, 1 failed (sdb2), 1 spare`.
fn members(array: &RaidArray) -> String {
    let mut summary = format!("{} of {} members active", array.active_disks, array.raid_disks);
    let failed: Vec<_> =
        array.members.iter().filter(|m| m.failed).map(|m| text(&m.device)).collect();
    if !failed.is_empty() {
        summary.push_str(&format!(", {} failed ({})", failed.len(), failed.join(", ")));
    }
    if array.spare_disks > 0 {
        summary.push_str(&format!(", {} spare", array.spare_disks));
    }
    summary
}

/// Sync actions that are work on the array's redundancy. `check` is a scheduled scrub (the
/// monthly `checkarray`), `frozen` and `idle` are nothing running.
const SYNC_ACTIONS: &[&str] = &["resync", "recover", "reshape", "repair"];

/// `recover 8.6% done, 17 min left at 253.7 MiB/s`, `resync delayed`; `None` when no sync runs
/// or waits.
fn running_sync(array: &RaidArray) -> Option<String> {
    let action = array.sync_action.as_str();
    if !SYNC_ACTIONS.contains(&action) {
        return None;
    }
    if array.sync_delayed {
        return Some(format!("{action} delayed (waits for another array on the same disks)"));
    }
    let mut sync = action.to_owned();
    if let Some(ratio) = array.sync_progress_ratio {
        sync.push_str(&format!(" {} done", percent(ratio)));
    }
    if let Some(seconds) = array.sync_remaining_seconds {
        sync.push_str(&format!(", {} left", duration(seconds)));
    }
    if let Some(kib) = array.sync_speed_kib_per_second {
        sync.push_str(&format!(" at {}/s", bytes(kib.saturating_mul(1024))));
    }
    Some(sync)
}

/// The whole disks under the array's members (`sda1` → `/dev/sda`), each once, in member
/// order.
fn member_disks(array: &RaidArray) -> Vec<String> {
    let mut disks: Vec<String> = Vec::new();
    for member in &array.members {
        let disk = whole_disk(&text(&member.device));
        if !disks.contains(&disk) {
            disks.push(disk);
        }
    }
    disks
}

/// Kernel names of disks whose partitions are the name and a number (`sda1`, `vdb2`, `xvda3`).
const LETTER_DISK_PREFIXES: &[&str] = &["sd", "hd", "vd", "xvd"];

/// The whole-disk device path of a block device: `sda1` → `/dev/sda`, `nvme0n1p2` →
/// `/dev/nvme0n1`, `mmcblk0p1` → `/dev/mmcblk0`; a whole disk or a name of another kind
/// (`dm-3`, `loop0`, `/dev/sdb`) keeps its name.
pub(super) fn whole_disk(device: &str) -> String {
    let name = device.strip_prefix("/dev/").unwrap_or(device);
    format!("/dev/{}", strip_partition(name))
}

fn strip_partition(name: &str) -> &str {
    let base = name.trim_end_matches(|c: char| c.is_ascii_digit());
    if base.len() == name.len() {
        return name;
    }
    // `nvme0n1p2`, `mmcblk0p1`, `loop0p1`: the disk ends in a digit, then `p` and the number.
    if let Some(disk) = base.strip_suffix('p')
        && disk.ends_with(|c: char| c.is_ascii_digit())
    {
        return disk;
    }
    let letter_disk = LETTER_DISK_PREFIXES.iter().any(|prefix| {
        base.strip_prefix(prefix).is_some_and(|letters| {
            !letters.is_empty() && letters.bytes().all(|b| b.is_ascii_lowercase())
        })
    });
    if letter_disk { base } else { name }
}

// ---- SMART ----

/// A SMART counter whose rise is an event.
struct SmartCounter {
    rule: &'static RuleDef,
    /// What the summary calls it.
    what: &'static str,
    reading: fn(&SmartDevice) -> Option<u64>,
}

const SMART_COUNTERS: [SmartCounter; 3] = [
    SmartCounter {
        rule: &SMART_REALLOCATED,
        what: "reallocated sectors",
        reading: |d| d.reallocated_sectors,
    },
    SmartCounter {
        rule: &SMART_GROWN_DEFECTS,
        what: "grown defects",
        reading: |d| d.grown_defects,
    },
    SmartCounter { rule: &SMART_MEDIA_ERRORS, what: "media errors", reading: |d| d.media_errors },
];

pub(super) fn smart(data: &SmartData, memory: &mut HostMemory, findings: &mut Findings) {
    for device in &data.devices {
        let name = text(&device.name);
        health(device, &name, findings);
        nvme_condition(device, &name, findings);
        if let Some(pending) = device.pending_sectors {
            findings.fire_when(&SMART_PENDING, &name, |rule| {
                (pending as f64 >= rule.threshold).then(|| {
                    format!("{name}: {pending} pending sectors (threshold {})", rule.threshold)
                })
            });
        }
    }
    for counter in &SMART_COUNTERS {
        let readings =
            data.devices.iter().map(|device| (device.name.as_str(), (counter.reading)(device)));
        counter_events(counter.rule, counter.what, readings, memory, findings);
    }
}

fn health(device: &SmartDevice, name: &str, findings: &mut Findings) {
    if device.health_passed == Some(false) {
        findings.fire(&SMART_FAILED, name, |_| {
            format!(
                "{name}: SMART overall health FAILED ({} serial {})",
                text(&device.model),
                text(&device.serial)
            )
        });
    }
}

/// NVMe health log: critical warning bits, available spare, wear.
fn nvme_condition(device: &SmartDevice, name: &str, findings: &mut Findings) {
    if let Some(bits) = device.critical_warning.filter(|&bits| bits != 0) {
        findings.fire(&SMART_CRITICAL_WARNING, name, |_| {
            format!("{name}: NVMe critical warning 0x{bits:02x} ({})", critical_warnings(bits))
        });
    }
    if let (Some(spare), Some(threshold)) =
        (device.available_spare_percent, device.available_spare_threshold_percent)
        && spare < threshold
    {
        findings.fire(&SMART_SPARE_LOW, name, |_| {
            format!("{name}: available spare {spare}%, below the drive's threshold {threshold}%")
        });
    }
    if let Some(used) = device.percentage_used {
        findings.fire_when(&SMART_WEAR, name, |rule| {
            (f64::from(used) >= rule.threshold).then(|| {
                format!(
                    "{name}: {used}% of rated endurance used (threshold {}%)",
                    decimal(rule.threshold)
                )
            })
        });
    }
}

/// The NVMe critical warning bits (NVMe base specification, SMART / Health log, byte 0).
const CRITICAL_WARNING_BITS: [&str; 6] = [
    "available spare below threshold",
    "temperature outside its thresholds",
    "reliability degraded by media or internal errors",
    "media placed in read-only mode",
    "volatile memory backup failed",
    "persistent memory region read-only",
];

fn critical_warnings(bits: u32) -> String {
    let named: Vec<&str> = CRITICAL_WARNING_BITS
        .iter()
        .enumerate()
        .filter(|(bit, _)| bits & (1 << bit) != 0)
        .map(|(_, meaning)| *meaning)
        .collect();
    if named.is_empty() { "reserved bits".to_owned() } else { named.join(", ") }
}

#[cfg(test)]
mod tests {
    use vigil_proto::v1::RaidMember;
    use vigil_proto::v1::probe_result::Data;

    use super::*;
    use crate::classify::testing::{fired, rules_with, run, run_once};
    use crate::classify::{FindingKind, RuleOverride, RuleSet, classify, testing};

    fn filesystem(mount: &str, size: u64, free: u64, available: u64) -> Filesystem {
        Filesystem {
            mount_point: mount.into(),
            device: "/dev/sda1".into(),
            size_bytes: size,
            free_bytes: free,
            available_bytes: available,
            inodes_total: 1000,
            inodes_free: 900,
            ..Filesystem::default()
        }
    }

    fn filesystems_data(filesystems: Vec<Filesystem>) -> Data {
        Data::Filesystem(FilesystemData { filesystems })
    }

    /// (rule, level) of what one filesystem gets.
    fn space_of(size: u64, available: u64) -> Vec<(String, FaultLevel)> {
        let fs = filesystem("/var", size, available, available);
        let findings = run_once([filesystems_data(vec![fs])]);
        findings.into_iter().map(|f| (f.rule, f.level)).collect()
    }

    fn rule(id: &str, level: FaultLevel) -> Vec<(String, FaultLevel)> {
        vec![(id.to_owned(), level)]
    }

    #[test]
    fn full_needs_ratio_and_free_bytes_together() {
        // 95 % used and 5 GiB free: full.
        assert_eq!(space_of(100 * GIB, 5 * GIB), rule("filesystem.full", FaultLevel::L2));
        // Just below 95 %: only nearly full.
        assert_eq!(space_of(100 * GIB, 5 * GIB + 1), rule("filesystem.usage", FaultLevel::L3));
        // 100 TiB at 96 %: 4 TiB free is not full, nor nearly.
        assert_eq!(space_of(100 * 1024 * GIB, 4 * 1024 * GIB), []);
        // 1 TiB at 96 %: 41 GiB free is not full (>= 10 GiB) but nearly (< 50 GiB).
        assert_eq!(space_of(1024 * GIB, 41 * GIB), rule("filesystem.usage", FaultLevel::L3));
        // 85 % used: nearly full; just below: nothing.
        assert_eq!(space_of(100 * GIB, 15 * GIB), rule("filesystem.usage", FaultLevel::L3));
        assert_eq!(space_of(100 * GIB, 15 * GIB + 1), []);
        // A tiny filesystem entirely full.
        assert_eq!(space_of(GIB, 0), rule("filesystem.full", FaultLevel::L2));
    }

    #[test]
    fn space_summary_and_reserved_blocks() {
        let fs = filesystem("/var", 100 * GIB, 4 * GIB, 3 * GIB);
        let findings = run_once([filesystems_data(vec![fs])]);
        assert_eq!(findings[0].summary, "/var 97% used, 3 GiB free (thresholds 95%, 10 GiB)");
        assert_eq!(findings[0].kind, FindingKind::State);
        // 10 GiB free of which 5 are reserved for root: used is 90 of 95 usable, 94.7 %.
        let fs = filesystem("/srv", 100 * GIB, 10 * GIB, 5 * GIB);
        let findings = run_once([filesystems_data(vec![fs])]);
        assert_eq!(fired(&findings), [("filesystem.usage", "/srv", FaultLevel::L3)]);
        assert_eq!(findings[0].summary, "/srv 94.7% used, 5 GiB free (thresholds 85%, 50 GiB)");
    }

    #[test]
    fn space_overrides_threshold_and_free_bytes() {
        let rules = rules_with(
            "filesystem.full",
            RuleOverride {
                threshold: Some(0.9),
                min_free_bytes: Some(20 * GIB),
                ..Default::default()
            },
        );
        let fs = filesystem("/var", 100 * GIB, 10 * GIB, 10 * GIB);
        let report = testing::report([filesystems_data(vec![fs])]);
        let findings = classify(&report, &mut HostMemory::default(), &rules);
        assert_eq!(fired(&findings), [("filesystem.full", "/var", FaultLevel::L2)]);
        assert_eq!(findings[0].summary, "/var 90% used, 10 GiB free (thresholds 90%, 20 GiB)");
        // With the full rule disabled, the nearly-full rule reports it.
        let rules = rules_with(
            "filesystem.full",
            RuleOverride { enabled: Some(false), ..Default::default() },
        );
        let findings = classify(&report, &mut HostMemory::default(), &rules);
        assert_eq!(fired(&findings), [("filesystem.usage", "/var", FaultLevel::L3)]);
    }

    #[test]
    fn inodes_graded() {
        let inodes = |free| {
            let fs = Filesystem {
                inodes_total: 1000,
                inodes_free: free,
                ..filesystem("/", 100 * GIB, 90 * GIB, 90 * GIB)
            };
            let findings = run_once([filesystems_data(vec![fs])]);
            findings.into_iter().map(|f| (f.rule, f.level)).collect::<Vec<_>>()
        };
        assert_eq!(inodes(50), rule("filesystem.inodes_full", FaultLevel::L2));
        assert_eq!(inodes(51), rule("filesystem.inodes", FaultLevel::L3));
        assert_eq!(inodes(150), rule("filesystem.inodes", FaultLevel::L3));
        assert_eq!(inodes(151), []);
        let no_inodes =
            Filesystem { inodes_total: 0, inodes_free: 0, ..filesystem("/", GIB, GIB, GIB) };
        assert_eq!(run_once([filesystems_data(vec![no_inodes])]), []);
    }

    #[test]
    fn read_only_and_stale() {
        let read_only =
            Filesystem { unexpected_read_only: true, ..filesystem("/data", GIB, GIB, GIB) };
        let stale = Filesystem {
            stale: true,
            error: "statvfs did not return within 5s".into(),
            ..filesystem("/mnt/nfs", 0, 0, 0)
        };
        let unmeasured =
            Filesystem { error: "permission denied".into(), ..filesystem("/x", 0, 0, 0) };
        let findings = run_once([filesystems_data(vec![read_only, stale, unmeasured])]);
        assert_eq!(
            fired(&findings),
            [
                ("filesystem.read_only", "/data", FaultLevel::L1),
                ("filesystem.stale", "/mnt/nfs", FaultLevel::L2),
            ]
        );
        assert_eq!(findings[0].summary, "/data (/dev/sda1) is mounted read-only, meant read-write");
        assert_eq!(
            findings[1].summary,
            "/mnt/nfs (/dev/sda1) does not answer statvfs: statvfs did not return within 5s"
        );
    }

    fn member(device: &str, role: u32, flags: &str) -> RaidMember {
        RaidMember {
            device: device.into(),
            role,
            failed: flags.contains('F'),
            spare: flags.contains('S'),
            ..RaidMember::default()
        }
    }

    fn array(level: &str, raid_disks: u32, members: Vec<RaidMember>) -> RaidArray {
        let failed = members.iter().filter(|m| m.failed).count() as u32;
        let spare = members.iter().filter(|m| m.spare && !m.failed).count() as u32;
        let active = members.len() as u32 - failed - spare;
        RaidArray {
            name: "md0".into(),
            level: level.into(),
            state: "active".into(),
            raid_disks,
            active_disks: active,
            failed_disks: failed,
            spare_disks: spare,
            degraded: failed > 0 || active < raid_disks,
            sync_action: "idle".into(),
            members,
            ..RaidArray::default()
        }
    }

    fn raid_findings(arrays: Vec<RaidArray>) -> Vec<crate::classify::Finding> {
        run_once([Data::Raid(RaidData { arrays })])
    }

    #[test]
    fn raid_degraded_groups_member_disks() {
        let md6 = RaidArray {
            name: "md6".into(),
            ..array(
                "raid1",
                2,
                vec![member("sdb2", 2, "F"), member("nvme0n1p2", 1, "S"), member("sda2", 0, "")],
            )
        };
        let findings = raid_findings(vec![md6]);
        assert_eq!(fired(&findings), [("raid.degraded", "md6", FaultLevel::L2)]);
        assert_eq!(
            findings[0].summary,
            "md6 degraded: 1 of 2 members active, 1 failed (sdb2), 1 spare"
        );
        assert_eq!(findings[0].groups, ["/dev/sdb", "/dev/nvme0n1", "/dev/sda"]);
    }

    #[test]
    fn raid_failed_by_level() {
        let cases = [
            // raid1 with no working member.
            (array("raid1", 2, vec![member("sda1", 0, "F"), member("sdb1", 1, "F")]), true),
            (array("raid1", 2, vec![member("sda1", 0, "F"), member("sdb1", 1, "")]), false),
            // raid5 loses one, not two.
            (
                array("raid5", 4, vec![member("a", 0, ""), member("b", 1, ""), member("c", 2, "")]),
                false,
            ),
            (array("raid5", 4, vec![member("a", 0, ""), member("b", 1, "")]), true),
            // raid6 loses two, not three.
            (array("raid6", 4, vec![member("a", 0, ""), member("b", 1, "")]), false),
            (array("raid6", 4, vec![member("a", 0, "")]), true),
            // raid10 of 4: beyond two lost is lost.
            (array("raid10", 4, vec![member("a", 0, ""), member("b", 1, "")]), false),
            (array("raid10", 4, vec![member("a", 0, "")]), true),
            // raid0 has no redundancy.
            (array("raid0", 2, vec![member("a", 0, ""), member("b", 1, "F")]), true),
        ];
        for (array, failed) in cases {
            let findings = raid_findings(vec![array.clone()]);
            let want = if failed { "raid.failed" } else { "raid.degraded" };
            assert_eq!(findings.len(), 1, "{array:?}");
            assert_eq!(findings[0].rule, want, "{array:?}");
            assert!(!findings[0].groups.is_empty());
        }
        let inactive = RaidArray {
            state: "inactive".into(),
            degraded: false,
            ..array("raid1", 2, vec![member("sda1", 0, "")])
        };
        let findings = raid_findings(vec![inactive]);
        assert_eq!(fired(&findings), [("raid.failed", "md0", FaultLevel::L1)]);
        assert_eq!(findings[0].summary, "md0 failed: array inactive; 1 of 2 members active");
        // An inactive container of spares, no members expected: nothing.
        let spares = RaidArray {
            state: "inactive".into(),
            raid_disks: 0,
            active_disks: 0,
            degraded: false,
            ..array("", 0, vec![member("sda", 0, "S")])
        };
        assert_eq!(raid_findings(vec![spares]), []);
    }

    #[test]
    fn raid_sync_only_on_a_whole_array() {
        let syncing = |action: &str| RaidArray {
            sync_action: action.into(),
            sync_progress_ratio: Some(0.5),
            sync_remaining_seconds: Some(600.0),
            sync_speed_kib_per_second: Some(102_400),
            ..array("raid1", 2, vec![member("sda1", 0, ""), member("sdb1", 1, "")])
        };
        let findings = raid_findings(vec![syncing("resync")]);
        assert_eq!(fired(&findings), [("raid.sync", "md0", FaultLevel::L4)]);
        assert_eq!(findings[0].summary, "md0 resync 50% done, 10 min left at 100 MiB/s");
        assert!(findings[0].groups.is_empty());
        for action in ["recover", "reshape", "repair"] {
            assert_eq!(raid_findings(vec![syncing(action)])[0].rule, "raid.sync");
        }
        for quiet in ["check", "idle", "", "frozen"] {
            assert_eq!(raid_findings(vec![syncing(quiet)]), [], "{quiet}");
        }
        // A degraded array that recovers is degraded, with the recovery in its summary.
        let recovering = RaidArray { active_disks: 1, degraded: true, ..syncing("recover") };
        let findings = raid_findings(vec![recovering]);
        assert_eq!(fired(&findings), [("raid.degraded", "md0", FaultLevel::L2)]);
        assert!(findings[0].summary.ends_with("; recover 50% done, 10 min left at 100 MiB/s"));
    }

    #[test]
    fn whole_disks() {
        for (device, disk) in [
            ("sda1", "/dev/sda"),
            ("sdab12", "/dev/sdab"),
            ("/dev/sdb", "/dev/sdb"),
            ("sdc", "/dev/sdc"),
            ("nvme0n1p2", "/dev/nvme0n1"),
            ("nvme0n1", "/dev/nvme0n1"),
            ("mmcblk0p1", "/dev/mmcblk0"),
            ("xvda3", "/dev/xvda"),
            ("vdb1", "/dev/vdb"),
            ("hda", "/dev/hda"),
            ("dm-3", "/dev/dm-3"),
            ("loop0", "/dev/loop0"),
            ("md0", "/dev/md0"),
        ] {
            assert_eq!(whole_disk(device), disk, "{device}");
        }
    }

    fn disk(name: &str) -> SmartDevice {
        SmartDevice {
            name: name.into(),
            model: "M".into(),
            serial: "S1".into(),
            health_passed: Some(true),
            ..SmartDevice::default()
        }
    }

    fn smart_data(devices: Vec<SmartDevice>) -> Data {
        Data::Smart(SmartData { devices })
    }

    #[test]
    fn smart_states() {
        let failed = SmartDevice { health_passed: Some(false), ..disk("/dev/sda") };
        let unknown = SmartDevice { health_passed: None, ..disk("/dev/sdz") };
        let nvme = SmartDevice {
            critical_warning: Some(0x05),
            available_spare_percent: Some(5),
            available_spare_threshold_percent: Some(10),
            percentage_used: Some(100),
            ..disk("/dev/nvme0")
        };
        let worn_less = SmartDevice {
            critical_warning: Some(0),
            available_spare_percent: Some(10),
            available_spare_threshold_percent: Some(10),
            percentage_used: Some(99),
            ..disk("/dev/nvme1")
        };
        let pending = SmartDevice { pending_sectors: Some(1), ..disk("/dev/sdb") };
        let no_pending = SmartDevice { pending_sectors: Some(0), ..disk("/dev/sdc") };
        let findings =
            run_once([smart_data(vec![failed, unknown, nvme, worn_less, pending, no_pending])]);
        assert_eq!(
            fired(&findings),
            [
                ("smart.failed", "/dev/sda", FaultLevel::L1),
                ("smart.critical_warning", "/dev/nvme0", FaultLevel::L2),
                ("smart.spare_low", "/dev/nvme0", FaultLevel::L2),
                ("smart.wear", "/dev/nvme0", FaultLevel::L4),
                ("smart.pending_sectors", "/dev/sdb", FaultLevel::L3),
            ]
        );
        let summaries: Vec<&str> = findings.iter().map(|f| f.summary.as_str()).collect();
        assert_eq!(
            summaries,
            [
                "/dev/sda: SMART overall health FAILED (M serial S1)",
                "/dev/nvme0: NVMe critical warning 0x05 (available spare below threshold, \
                 reliability degraded by media or internal errors)",
                "/dev/nvme0: available spare 5%, below the drive's threshold 10%",
                "/dev/nvme0: 100% of rated endurance used (threshold 100%)",
                "/dev/sdb: 1 pending sectors (threshold 1)",
            ]
        );
    }

    #[test]
    fn smart_counters_rise_as_events() {
        let reading = |reallocated, media| SmartDevice {
            reallocated_sectors: reallocated,
            media_errors: media,
            ..disk("/dev/sda")
        };
        let mut memory = HostMemory::default();
        let mut report = |device: SmartDevice| {
            let findings = run(&mut memory, [smart_data(vec![device])]);
            assert!(findings.iter().all(|f| f.kind == FindingKind::Event));
            findings.into_iter().map(|f| (f.rule, f.summary)).collect::<Vec<_>>()
        };
        // Clean disk, first seen: nothing.
        assert_eq!(report(reading(Some(0), Some(0))), []);
        let rose = report(reading(Some(8), Some(0)));
        assert_eq!(
            rose,
            [(
                "smart.reallocated".to_owned(),
                "/dev/sda: reallocated sectors rose by 8 to 8".to_owned()
            )]
        );
        // Unchanged: nothing; in standby (no readings): nothing, baseline kept.
        assert_eq!(report(reading(Some(8), Some(0))), []);
        assert_eq!(report(reading(None, None)), []);
        assert_eq!(report(reading(Some(8), Some(2)))[0].1, "/dev/sda: media errors rose by 2 to 2");
        // A counter lower than before restarted: all of it is new.
        assert_eq!(
            report(reading(Some(3), Some(2)))[0].1,
            "/dev/sda: reallocated sectors rose by 3 to 3"
        );
    }

    #[test]
    fn level_override_and_customer_beats_global() {
        let global = std::collections::BTreeMap::from([(
            "raid.degraded".to_owned(),
            RuleOverride { level: Some(FaultLevel::L3), ..Default::default() },
        )]);
        let customer = std::collections::BTreeMap::from([(
            "raid.degraded".to_owned(),
            RuleOverride { level: Some(FaultLevel::L1), ..Default::default() },
        )]);
        let report = testing::report([Data::Raid(RaidData {
            arrays: vec![array("raid1", 2, vec![member("sda1", 0, "")])],
        })]);
        let level = |rules: &RuleSet| classify(&report, &mut HostMemory::default(), rules)[0].level;
        assert_eq!(level(&RuleSet::default()), FaultLevel::L2);
        assert_eq!(level(&RuleSet::new(&global, None).unwrap()), FaultLevel::L3);
        assert_eq!(
            level(&RuleSet::new(&global, Some(("acme", &customer))).unwrap()),
            FaultLevel::L1
        );
    }
}
