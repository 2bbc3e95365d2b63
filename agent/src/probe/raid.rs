//! Software RAID: every md array the kernel has assembled, its member devices with their
//! state, whether it is degraded, and any resync, recovery, check, repair or reshape that is
//! running or waiting. A failed member or a degraded array is the incident this probe exists
//! for: one more failure and the data is gone.
//!
//! Source: `/proc/mdstat` (the kernel's `md_seq_show` and `status_resync` in
//! `drivers/md/md.c`), one block per array:
//!
//! ```text
//! md6 : active raid1 sdb2[2](F) sdc[1](S) sda2[0]
//!       195310144 blocks [2/1] [U_]
//!       [=>...................]  recovery =  8.5% (16775552/195310144) finish=17.0min speed=259783K/sec
//! ```
//!
//! The header holds the state (`active`, `inactive`, `active (read-only)`,
//! `active (auto-read-only)`), the level (absent for an inactive array on a real kernel) and
//! the members as `device[number]` with flags `(F)` failed, `(S)` spare, `(W)` write-mostly
//! (`(J)` journal and `(R)` replacement are accepted and not reported). The next line has the
//! size in 1 KiB blocks and, for levels with redundancy, `[raid_disks/working_disks]` and the
//! slot map (`U` working, `_` missing). A sync line shows the action, its progress as
//! `(done/total)` (the ratio is taken from these, not from the percentage the kernel rounds
//! down to 0.1 %), `finish=` in minutes and tenths and `speed=` in KiB/s; or
//! `resync=DELAYED` (the sync thread waits for another array on the same disks) or
//! `resync=PENDING` (a sync is needed but the array is read-only, so nothing runs yet).
//!
//! Where `/sys/block/<md>/md/` exists it adds what mdstat lacks: `array_state`, and
//! `sync_action` for an array whose mdstat block shows no sync line (mdstat prints a repair
//! as `resync`, so a sysfs `repair`, `check` or `recover` also refines an mdstat `resync`).
//! `degraded` is the sysfs count being non-zero, a failed member, fewer working disks than
//! raid disks, or a `_` in the slot map. An active array with redundancy and no sync in
//! either source is `idle`; levels without redundancy (`raid0`, `linear`) have no sync action.
//!
//! [`parse_mdstat`] never panics and never fails: lines it does not understand are skipped,
//! so a kernel that adds a field costs that field and not the report. It is fuzzed
//! (`fuzz/fuzz_targets/parse_mdstat.rs`).

use vigil_proto::v1::{RaidArray, RaidData, RaidMember, probe_result};

use super::{Probe, ProbeError};
use crate::read;
use crate::root::HostRoot;

/// Levels that can lose a member and keep running, and so have a sync action.
const REDUNDANT_LEVELS: &[&str] = &["raid1", "raid4", "raid5", "raid6", "raid10"];

/// The software RAID probe.
#[derive(Debug, Default)]
pub struct Raid;

impl Probe for Raid {
    fn name(&self) -> &'static str {
        "raid"
    }

    fn collect(&mut self, root: &HostRoot) -> Result<probe_result::Data, ProbeError> {
        let path = root.proc("mdstat");
        let text = match read::read_string(&path) {
            Ok(text) => text,
            Err(err) if err.is_not_found() => {
                return Err(ProbeError::Unavailable(format!(
                    "no software RAID ({} not found)",
                    root.host_view(&path)
                )));
            }
            Err(err) => return Err(ProbeError::from_read(root, &err)),
        };
        let mut arrays = parse_mdstat(&text);
        for array in &mut arrays {
            let sysfs = MdSysfs::read(root, &array.name);
            apply_sysfs(array, &sysfs);
        }
        Ok(probe_result::Data::Raid(RaidData { arrays }))
    }
}

/// Every array in `/proc/mdstat` text, in file order, from mdstat alone: `array_state` is
/// empty and `sync_action` is empty unless a sync line names one (the probe fills both from
/// sysfs). Never panics; what it cannot read is left out or zero.
pub fn parse_mdstat(text: &str) -> Vec<RaidArray> {
    let mut arrays = Vec::new();
    let mut current: Option<Block> = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with(char::is_whitespace) {
            if let Some(block) = &mut current {
                block.status_line(line);
            }
            continue;
        }
        // Any unindented line ends the current block: a new header, `unused devices`.
        arrays.extend(current.take().map(Block::finish));
        current = Block::header(line);
    }
    arrays.extend(current.map(Block::finish));
    arrays
}

/// One array's block of mdstat while it is being read.
struct Block {
    array: RaidArray,
    /// `[n/m]`, the first one seen.
    counts: Option<(u32, u32)>,
    /// `[UU_]`, the first one seen.
    map: Option<String>,
    size_seen: bool,
    /// A sync line was read; the kernel prints at most one, any further one is ignored.
    sync_seen: bool,
    /// `done/total` of the sync line.
    fraction: Option<(u64, u64)>,
    percent: Option<f64>,
}

impl Block {
    /// `md6 : active raid1 sdb2[2](F) sdc[1](S) sda2[0]`; `None` for any other line.
    fn header(line: &str) -> Option<Self> {
        let (name, rest) = line.split_once(':')?;
        let name = name.trim();
        if name.is_empty() || name.contains(char::is_whitespace) || name == "Personalities" {
            return None;
        }
        let mut tokens = rest.split_whitespace().peekable();
        let mut state = tokens.next().unwrap_or_default().to_owned();
        // `active (read-only)`, `active (auto-read-only)`.
        while let Some(note) = tokens.next_if(|t| t.starts_with('(') && !t.contains('[')) {
            state.push(' ');
            state.push_str(note);
        }
        let level = tokens.next_if(|t| !t.contains('[')).unwrap_or_default().to_owned();
        let members = tokens.filter_map(parse_member).collect();
        Some(Self {
            array: RaidArray {
                name: name.to_owned(),
                level,
                state,
                members,
                ..RaidArray::default()
            },
            counts: None,
            map: None,
            size_seen: false,
            sync_seen: false,
            fraction: None,
            percent: None,
        })
    }

    /// One indented line: the size line, a sync line, a bitmap line or something new.
    fn status_line(&mut self, line: &str) {
        if self.sync_line(line) {
            return;
        }
        let mut tokens = line.split_whitespace().peekable();
        if !self.size_seen
            && let Some(size) = tokens.peek().and_then(|t| t.parse::<u64>().ok())
            && line.contains("blocks")
        {
            self.array.size_kib = size;
            self.size_seen = true;
        }
        for token in tokens {
            let Some(inner) = token.strip_prefix('[').and_then(|t| t.strip_suffix(']')) else {
                continue;
            };
            if self.counts.is_none()
                && let Some((raid, working)) = inner.split_once('/')
                && let (Ok(raid), Ok(working)) = (raid.parse(), working.parse())
            {
                self.counts = Some((raid, working));
            } else if self.map.is_none()
                && !inner.is_empty()
                && inner.chars().all(|c| c == 'U' || c == '_')
            {
                self.map = Some(inner.to_owned());
            }
        }
    }

    /// `[=>...]  recovery =  8.5% (16775552/195310144) finish=17.0min speed=259783K/sec`,
    /// `resync=DELAYED`, `resync=PENDING`. False (and nothing taken) for any other line.
    fn sync_line(&mut self, line: &str) -> bool {
        let mut rest = line.trim_start();
        // The progress bar.
        if let Some(bar) = rest.strip_prefix('[') {
            match bar.split_once(']') {
                Some((_, after)) => rest = after.trim_start(),
                None => return false,
            }
        }
        let word_end = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
        let (word, after) = rest.split_at(word_end);
        let action = match word {
            "resync" => "resync",
            "recovery" => "recover",
            "check" => "check",
            "repair" => "repair",
            "reshape" => "reshape",
            _ => return false,
        };
        let Some(value) = after.trim_start().strip_prefix('=') else {
            return false;
        };
        if std::mem::replace(&mut self.sync_seen, true) {
            return true;
        }
        let value = value.trim_start();
        let array = &mut self.array;
        if value.starts_with("PENDING") {
            // Nothing runs on a read-only array; the kernel's sync_action is `idle`.
            array.sync_pending = true;
            return true;
        }
        array.sync_action = action.to_owned();
        if value.starts_with("DELAYED") {
            array.sync_delayed = true;
            return true;
        }
        let mut tokens = value.split_whitespace();
        self.percent = tokens
            .next()
            .and_then(|t| t.strip_suffix('%'))
            .and_then(|t| t.parse::<f64>().ok())
            .filter(|p| p.is_finite());
        for token in tokens {
            if let Some(fraction) = token.strip_prefix('(').and_then(|t| t.strip_suffix(')')) {
                self.fraction = fraction
                    .split_once('/')
                    .and_then(|(done, total)| Some((done.parse().ok()?, total.parse().ok()?)));
            } else if let Some(minutes) =
                token.strip_prefix("finish=").and_then(|t| t.strip_suffix("min"))
            {
                array.sync_remaining_seconds = minutes_to_seconds(minutes);
            } else if let Some(speed) =
                token.strip_prefix("speed=").and_then(|t| t.strip_suffix("K/sec"))
            {
                array.sync_speed_kib_per_second = speed.parse().ok();
            }
        }
        true
    }

    fn finish(self) -> RaidArray {
        let Self { mut array, counts, map, fraction, percent, .. } = self;
        array.sync_progress_ratio = match fraction {
            Some((done, total)) if total > 0 => Some(done as f64 / total as f64),
            _ => percent.map(|p| p / 100.0),
        }
        .map(|ratio| ratio.clamp(0.0, 1.0));

        let count = |keep: fn(&RaidMember) -> bool| {
            u32::try_from(array.members.iter().filter(|m| keep(m)).count()).unwrap_or(u32::MAX)
        };
        array.failed_disks = count(|m| m.failed);
        array.spare_disks = count(|m| m.spare && !m.failed);
        (array.raid_disks, array.active_disks) = match (counts, &map) {
            (Some(counts), _) => counts,
            (None, Some(map)) => {
                let working = map.chars().filter(|&c| c == 'U').count();
                (clamp_u32(map.len()), clamp_u32(working))
            }
            // raid0 and linear print no counts: every member in place is a working disk.
            (None, None) if array.state.starts_with("active") => {
                let working = count(|m| !m.failed && !m.spare);
                (working, working)
            }
            (None, None) => (0, 0),
        };
        array.degraded = array.failed_disks > 0
            || array.active_disks < array.raid_disks
            || map.is_some_and(|map| map.contains('_'));
        array
    }
}

fn clamp_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// `sdb2[2](F)`: device, number in brackets, then any `(X)` flags. `None` if it is not one.
fn parse_member(token: &str) -> Option<RaidMember> {
    let (device, rest) = token.split_once('[')?;
    let (role, mut flags) = rest.split_once(']')?;
    if device.is_empty() {
        return None;
    }
    let mut member =
        RaidMember { device: device.to_owned(), role: role.parse().ok()?, ..RaidMember::default() };
    while let Some((flag, after)) = flags.strip_prefix('(').and_then(|f| f.split_once(')')) {
        match flag {
            "F" => member.failed = true,
            "S" => member.spare = true,
            "W" => member.write_mostly = true,
            _ => {}
        }
        flags = after;
    }
    Some(member)
}

/// `17.0` (minutes and tenths, as `status_resync` prints `finish=`) in seconds, exact for
/// that form: 1868.1 min is 112086 s, not 112085.99999999999.
fn minutes_to_seconds(minutes: &str) -> Option<f64> {
    let (whole, fraction) = minutes.split_once('.').unwrap_or((minutes, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !(fraction.is_empty() || digits(fraction)) || fraction.len() > 9 {
        return None;
    }
    let whole: f64 = whole.parse().ok()?;
    let fraction_seconds = if fraction.is_empty() {
        0.0
    } else {
        fraction.parse::<f64>().ok()? * 60.0 / 10f64.powi(i32::try_from(fraction.len()).ok()?)
    };
    Some(whole * 60.0 + fraction_seconds).filter(|s| s.is_finite())
}

/// What `/sys/block/<md>/md/` says about one array; all `None` when it is absent.
#[derive(Debug, Default)]
struct MdSysfs {
    array_state: Option<String>,
    sync_action: Option<String>,
    degraded: Option<u64>,
}

impl MdSysfs {
    fn read(root: &HostRoot, name: &str) -> Self {
        // The name comes from a file; only a plain name may become a path component.
        if name.is_empty() || name == "." || name == ".." || name.contains('/') {
            return Self::default();
        }
        let dir = root.sys("block").join(name).join("md");
        if !dir.is_dir() {
            return Self::default();
        }
        let text = |file: &str| read::attr_string(&dir.join(file)).filter(|s| !s.is_empty());
        Self {
            array_state: text("array_state"),
            sync_action: text("sync_action"),
            degraded: read::attr(&dir.join("degraded")),
        }
    }
}

/// Merges the sysfs view into an array parsed from mdstat (see the module doc).
fn apply_sysfs(array: &mut RaidArray, sysfs: &MdSysfs) {
    array.array_state = sysfs.array_state.clone().unwrap_or_default();
    let refines = |action: &str| matches!(action, "recover" | "check" | "repair");
    match sysfs.sync_action.as_deref() {
        Some(action) if array.sync_action.is_empty() => action.clone_into(&mut array.sync_action),
        Some(action) if array.sync_action == "resync" && refines(action) => {
            action.clone_into(&mut array.sync_action);
        }
        _ => {}
    }
    if array.sync_action.is_empty()
        && array.state.starts_with("active")
        && REDUNDANT_LEVELS.contains(&array.level.as_str())
    {
        "idle".clone_into(&mut array.sync_action);
    }
    array.degraded |= sysfs.degraded.is_some_and(|n| n != 0);
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn fixture(tree: &str) -> HostRoot {
        HostRoot::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(tree))
    }

    fn collect(root: &HostRoot) -> Vec<RaidArray> {
        match Raid.collect(root) {
            Ok(probe_result::Data::Raid(data)) => data.arrays,
            other => panic!("{other:?}"),
        }
    }

    fn array<'a>(arrays: &'a [RaidArray], name: &str) -> &'a RaidArray {
        arrays.iter().find(|a| a.name == name).unwrap_or_else(|| panic!("no {name}"))
    }

    fn member(device: &str, role: u32, flags: &str) -> RaidMember {
        RaidMember {
            device: device.to_owned(),
            role,
            failed: flags.contains('F'),
            spare: flags.contains('S'),
            write_mostly: flags.contains('W'),
        }
    }

    fn parse_one(text: &str) -> RaidArray {
        let mut arrays = parse_mdstat(text);
        assert_eq!(arrays.len(), 1, "{arrays:?}");
        arrays.remove(0)
    }

    #[test]
    fn header_state_level_and_member_flags() {
        let array = parse_one(
            "md1 : active (auto-read-only) raid1 sda1[0](W) sdb1[1](W)(F) sdc1[2](S) \
             nvme0n1p2[3](R) junk\n      100 blocks super 1.2 [2/1] [U_]\n",
        );
        assert_eq!(array.state, "active (auto-read-only)");
        assert_eq!(array.level, "raid1");
        assert_eq!(
            array.members,
            [
                member("sda1", 0, "W"),
                member("sdb1", 1, "WF"),
                member("sdc1", 2, "S"),
                member("nvme0n1p2", 3, ""),
            ]
        );
        assert_eq!((array.raid_disks, array.active_disks), (2, 1));
        assert_eq!((array.failed_disks, array.spare_disks), (1, 1));
        assert_eq!(array.size_kib, 100);
        assert!(array.degraded);
    }

    #[test]
    fn sync_line_numbers() {
        let array = parse_one(
            "md2 : active raid5 a[0] b[1] c[2]\n      10 blocks [3/3] [UUU]\n      \
             [>....................]  check = 0.1% (1/1000) finish=1868.1min speed=7640K/sec\n",
        );
        assert_eq!(array.sync_action, "check");
        assert_eq!(array.sync_progress_ratio, Some(0.001));
        assert_eq!(array.sync_remaining_seconds, Some(112_086.0));
        assert_eq!(array.sync_speed_kib_per_second, Some(7640));
        assert!(!array.degraded);
    }

    #[test]
    fn percentage_is_the_fallback_and_ratio_stays_in_range() {
        let array = parse_one("md2 : active raid1 a[0]\n      resync = 12.5%\n");
        assert_eq!(array.sync_progress_ratio, Some(0.125));
        let array = parse_one("md2 : active raid1 a[0]\n      resync = 50.0% (9/3)\n");
        assert_eq!(array.sync_progress_ratio, Some(1.0));
    }

    #[test]
    fn only_the_first_sync_line_counts() {
        let array = parse_one(
            "md2 : active raid1 a[0]\n      resync=DELAYED\n      resync=PENDING\n      \
             recovery = 5.0% (1/20) finish=1.0min speed=1K/sec\n",
        );
        assert!(array.sync_delayed);
        assert!(!array.sync_pending);
        assert_eq!(array.sync_action, "resync");
        assert_eq!(array.sync_progress_ratio, None);
        assert_eq!(array.sync_remaining_seconds, None);
    }

    #[test]
    fn minutes_and_tenths() {
        assert_eq!(minutes_to_seconds("17.0"), Some(1020.0));
        assert_eq!(minutes_to_seconds("0.2"), Some(12.0));
        assert_eq!(minutes_to_seconds("3"), Some(180.0));
        assert_eq!(minutes_to_seconds("1.25"), Some(75.0));
        assert_eq!(minutes_to_seconds(""), None);
        assert_eq!(minutes_to_seconds("-1.0"), None);
        assert_eq!(minutes_to_seconds("1e9"), None);
        assert_eq!(minutes_to_seconds("1."), Some(60.0));
    }

    #[test]
    fn personalities_only_is_no_arrays() {
        let text = "Personalities : [raid1] [raid6]\nunused devices: <none>\n";
        assert_eq!(parse_mdstat(text), []);
        assert_eq!(parse_mdstat(""), []);
    }

    #[test]
    fn odd_input_does_not_panic() {
        for text in [
            "md0 :",
            "md0 : active",
            "md0 : active raid1 [0] sda[ sdb[x] sdc[1](F\n   [",
            "md0 : active raid1\n   [=====\n   resync =\n   recovery = %\n",
            "md0 : active raid1\n   [99999999999999999999999/1] [UUé_] [] [/]\n",
            "md0 : active raid1\n   resync = 1e999% (1/0) finish=9999999999999999999999.99min\n",
            "  indented before any header\n: \n :\n\u{fffd}é : ü\n",
            "md0 : inactive\n      18446744073709551616 blocks\n",
        ] {
            parse_mdstat(text);
        }
        let array = parse_one("md0 : active raid1\n   resync = 1e999% (1/0)\n");
        assert_eq!(array.sync_progress_ratio, None);
    }

    #[test]
    fn sysfs_fills_state_and_action() {
        let mut array = parse_one("md0 : active raid1 a[0] b[1]\n      5 blocks [2/2] [UU]\n");
        apply_sysfs(&mut array, &MdSysfs::default());
        assert_eq!(array.sync_action, "idle");
        assert_eq!(array.array_state, "");
        assert!(!array.degraded);

        let sysfs = MdSysfs {
            array_state: Some("clean".into()),
            sync_action: Some("frozen".into()),
            degraded: Some(1),
        };
        let mut array = parse_one("md0 : active raid1 a[0] b[1]\n      5 blocks [2/2] [UU]\n");
        apply_sysfs(&mut array, &sysfs);
        assert_eq!(array.array_state, "clean");
        assert_eq!(array.sync_action, "frozen");
        assert!(array.degraded);

        // The kernel prints a repair as `resync` in mdstat.
        let sysfs = MdSysfs { sync_action: Some("repair".into()), ..MdSysfs::default() };
        let mut array = parse_one("md0 : active raid1 a[0]\n  resync = 1.0% (1/100)\n");
        apply_sysfs(&mut array, &sysfs);
        assert_eq!(array.sync_action, "repair");

        // No sync action for a level without redundancy, or an inactive array.
        let mut array = parse_one("md0 : active raid0 a[0] b[1]\n      5 blocks 64k chunks\n");
        apply_sysfs(&mut array, &MdSysfs::default());
        assert_eq!(array.sync_action, "");
        assert_eq!((array.raid_disks, array.active_disks), (2, 2));
    }

    #[test]
    fn sysfs_name_must_be_a_plain_component() {
        let root = fixture("linux-procfs");
        assert!(MdSysfs::read(&root, "md0").array_state.is_some());
        for name in ["", ".", "..", "../block/md0", "md0/.."] {
            assert!(MdSysfs::read(&root, name).array_state.is_none(), "{name}");
        }
    }

    #[test]
    fn fixture_arrays_in_file_order() {
        let arrays = collect(&fixture("linux-procfs"));
        let names: Vec<&str> = arrays.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "md3", "md127", "md0", "md4", "md6", "md8", "md201", "md7", "md9", "md10", "md11",
                "md12", "md126", "md219", "md00", "md120", "md101", "md42",
            ]
        );
        // The node_exporter tree is the same set without the reshape.
        let arrays = collect(&fixture("node-exporter"));
        assert_eq!(arrays.len(), 17);
        assert!(arrays.iter().all(|a| a.name != "md42"));
    }

    #[test]
    fn fixture_healthy_raid1_exact() {
        let arrays = collect(&fixture("linux-procfs"));
        assert_eq!(
            *array(&arrays, "md0"),
            RaidArray {
                name: "md0".into(),
                level: "raid1".into(),
                state: "active".into(),
                // sysfs md0 is another machine's raid0 (see the fixture notes).
                array_state: "clean".into(),
                members: vec![member("sdi1", 0, ""), member("sdj1", 1, "")],
                raid_disks: 2,
                active_disks: 2,
                failed_disks: 0,
                spare_disks: 0,
                degraded: false,
                sync_action: "idle".into(),
                sync_progress_ratio: None,
                sync_speed_kib_per_second: None,
                sync_remaining_seconds: None,
                sync_delayed: false,
                sync_pending: false,
                size_kib: 248_896,
            }
        );
        // No sysfs directory at all.
        let md127 = array(&arrays, "md127");
        assert_eq!(md127.array_state, "");
        assert_eq!(md127.sync_action, "idle");
        assert_eq!(md127.size_kib, 312_319_552);
        assert!(!md127.degraded);
    }

    #[test]
    fn fixture_md6_degraded_with_recovery() {
        let arrays = collect(&fixture("linux-procfs"));
        let md6 = array(&arrays, "md6");
        assert_eq!(md6.level, "raid1");
        assert_eq!(md6.state, "active");
        assert_eq!(md6.array_state, "active");
        assert_eq!(
            md6.members,
            [member("sdb2", 2, "F"), member("sdc", 1, "S"), member("sda2", 0, "")]
        );
        assert_eq!((md6.raid_disks, md6.active_disks), (2, 1));
        assert_eq!((md6.failed_disks, md6.spare_disks), (1, 1));
        assert!(md6.degraded);
        assert_eq!(md6.sync_action, "recover");
        assert_eq!(md6.sync_progress_ratio, Some(16_775_552.0 / 195_310_144.0));
        assert_eq!(md6.sync_speed_kib_per_second, Some(259_783));
        assert_eq!(md6.sync_remaining_seconds, Some(1020.0));
        assert_eq!(md6.size_kib, 195_310_144);
        assert!(!md6.sync_delayed && !md6.sync_pending);
    }

    #[test]
    fn fixture_md8_resync() {
        let arrays = collect(&fixture("linux-procfs"));
        let md8 = array(&arrays, "md8");
        assert_eq!(md8.level, "raid1");
        assert_eq!(
            md8.members,
            [
                member("sdb1", 1, ""),
                member("sda1", 0, ""),
                member("sdc", 2, "S"),
                member("sde", 3, "S")
            ]
        );
        assert_eq!((md8.raid_disks, md8.active_disks), (2, 2));
        assert_eq!((md8.failed_disks, md8.spare_disks), (0, 2));
        assert!(!md8.degraded);
        // sysfs md8 says `reshape` (a different machine's array); mdstat's sync line wins.
        assert_eq!(md8.array_state, "active");
        assert_eq!(md8.sync_action, "resync");
        assert_eq!(md8.sync_progress_ratio, Some(16_775_552.0 / 195_310_144.0));
        assert_eq!(md8.sync_speed_kib_per_second, Some(259_783));
        assert_eq!(md8.sync_remaining_seconds, Some(1020.0));
    }

    /// No capture shows a RAID5 resync (md42 is a reshape), so this one is written in the
    /// kernel's mdstat format (drivers/md/md.c, `md_seq_show` / `status_resync`): synthetic.
    #[test]
    fn synthetic_raid5_resync() {
        let text = "Personalities : [raid6] [raid5] [raid4]\n\
            md5 : active raid5 sdd1[3] sdc1[2] sdb1[1] sda1[0]\n      \
            5860147200 blocks super 1.2 level 5, 512k chunk, algorithm 2 [4/4] [UUUU]\n      \
            [==>..................]  resync = 12.3% (240293376/1953382400) finish=150.2min \
            speed=190045K/sec\n      bitmap: 13/15 pages [52KB], 65536KB chunk\n\n\
            unused devices: <none>\n";
        let arrays = parse_mdstat(text);
        assert_eq!(arrays.len(), 1);
        let md5 = &arrays[0];
        assert_eq!((md5.name.as_str(), md5.level.as_str()), ("md5", "raid5"));
        assert_eq!((md5.raid_disks, md5.active_disks, md5.failed_disks), (4, 4, 0));
        assert!(!md5.degraded);
        assert_eq!(md5.size_kib, 5_860_147_200);
        assert_eq!(md5.sync_action, "resync");
        assert_eq!(md5.sync_progress_ratio, Some(240_293_376.0 / 1_953_382_400.0));
        assert_eq!(md5.sync_speed_kib_per_second, Some(190_045));
        assert_eq!(md5.sync_remaining_seconds, Some(9012.0));
    }

    #[test]
    fn fixture_md201_check() {
        let arrays = collect(&fixture("linux-procfs"));
        let md201 = array(&arrays, "md201");
        assert_eq!(md201.members, [member("sda3", 0, ""), member("sdb3", 1, "")]);
        assert_eq!((md201.raid_disks, md201.active_disks), (2, 2));
        assert!(!md201.degraded);
        assert_eq!(md201.sync_action, "check");
        assert_eq!(md201.sync_progress_ratio, Some(114_176.0 / 1_993_728.0));
        assert_eq!(md201.sync_speed_kib_per_second, Some(114_176));
        assert_eq!(md201.sync_remaining_seconds, Some(12.0));
        assert_eq!(md201.size_kib, 1_993_728);
        assert_eq!(md201.array_state, "");
    }

    #[test]
    fn fixture_md7_raid6_degraded() {
        let arrays = collect(&fixture("linux-procfs"));
        let md7 = array(&arrays, "md7");
        assert_eq!(md7.level, "raid6");
        assert_eq!(md7.state, "active");
        assert_eq!(
            md7.members,
            [
                member("sdb1", 0, ""),
                member("sde1", 3, ""),
                member("sdd1", 2, ""),
                member("sdc1", 1, "F"),
            ]
        );
        assert_eq!((md7.raid_disks, md7.active_disks), (4, 3));
        assert_eq!((md7.failed_disks, md7.spare_disks), (1, 0));
        assert!(md7.degraded);
        assert_eq!(md7.size_kib, 7_813_735_424);
        // sysfs md7 is an inactive imsm container from another capture; sync_action empty.
        assert_eq!(md7.array_state, "inactive");
        assert_eq!(md7.sync_action, "idle");
        assert_eq!(md7.sync_progress_ratio, None);
    }

    #[test]
    fn fixture_md9_resync_delayed() {
        let arrays = collect(&fixture("linux-procfs"));
        let md9 = array(&arrays, "md9");
        assert_eq!(md9.members.len(), 7);
        assert_eq!(md9.members[4], member("sde", 4, "F"));
        assert_eq!(md9.members[5], member("sdf", 5, "F"));
        assert_eq!(md9.members[6], member("sdg", 6, "S"));
        assert_eq!((md9.raid_disks, md9.active_disks), (4, 4));
        assert_eq!((md9.failed_disks, md9.spare_disks), (2, 1));
        // All four slots work, but two failed devices are still in the array.
        assert!(md9.degraded);
        assert!(md9.sync_delayed);
        assert!(!md9.sync_pending);
        assert_eq!(md9.sync_action, "resync");
        assert_eq!(md9.sync_progress_ratio, None);
        assert_eq!(md9.sync_speed_kib_per_second, None);
        assert_eq!(md9.sync_remaining_seconds, None);
        assert_eq!(md9.size_kib, 523_968);
    }

    #[test]
    fn fixture_md11_auto_read_only_pending() {
        let arrays = collect(&fixture("linux-procfs"));
        let md11 = array(&arrays, "md11");
        assert_eq!(md11.state, "active (auto-read-only)");
        assert_eq!(md11.level, "raid1");
        assert_eq!(
            md11.members,
            [
                member("sdb2", 0, ""),
                member("sdc2", 1, ""),
                member("sdc3", 2, "F"),
                member("hda", 4, "S"),
                member("ssdc2", 3, "S"),
            ]
        );
        assert_eq!((md11.raid_disks, md11.active_disks), (2, 2));
        assert_eq!((md11.failed_disks, md11.spare_disks), (1, 2));
        assert!(md11.degraded);
        assert!(md11.sync_pending);
        assert!(!md11.sync_delayed);
        assert_eq!(md11.sync_action, "idle");
        assert_eq!(md11.size_kib, 4_190_208);
    }

    #[test]
    fn fixture_inactive_arrays() {
        let arrays = collect(&fixture("linux-procfs"));
        let md4 = array(&arrays, "md4");
        assert_eq!(md4.state, "inactive");
        // A real kernel prints no level for an inactive array; this capture was edited.
        assert_eq!(md4.level, "raid1");
        assert_eq!(md4.members, [member("sda3", 0, "F"), member("sdb3", 1, "S")]);
        assert_eq!((md4.raid_disks, md4.active_disks), (2, 2));
        assert_eq!((md4.failed_disks, md4.spare_disks), (1, 1));
        assert!(md4.degraded);
        assert_eq!(md4.sync_action, "idle", "sysfs md4 (another machine's raid4) says idle");
        assert_eq!(md4.array_state, "clean");
        assert_eq!(md4.size_kib, 4_883_648);

        let md219 = array(&arrays, "md219");
        assert_eq!(md219.state, "inactive");
        assert_eq!(md219.level, "");
        assert_eq!(
            md219.members,
            [member("sdb", 2, "S"), member("sdc", 1, "S"), member("sda", 0, "S")]
        );
        assert_eq!((md219.raid_disks, md219.active_disks), (0, 0));
        assert_eq!((md219.failed_disks, md219.spare_disks), (0, 3));
        assert!(!md219.degraded);
        assert_eq!(md219.sync_action, "");
        assert_eq!(md219.array_state, "");
        assert_eq!(md219.size_kib, 7932);
    }

    #[test]
    fn fixture_md42_reshape() {
        let arrays = collect(&fixture("linux-procfs"));
        let md42 = array(&arrays, "md42");
        assert_eq!(md42.level, "raid5");
        assert_eq!(
            md42.members,
            [member("sda1", 3, "S"), member("sdd1", 0, ""), member("sde1", 1, "")]
        );
        assert_eq!((md42.raid_disks, md42.active_disks), (3, 2));
        assert_eq!((md42.failed_disks, md42.spare_disks), (0, 1));
        assert!(md42.degraded);
        assert_eq!(md42.sync_action, "reshape");
        assert_eq!(md42.sync_progress_ratio, Some(1_096_879_076.0 / 1_953_381_440.0));
        assert_eq!(md42.sync_speed_kib_per_second, Some(7640));
        assert_eq!(md42.sync_remaining_seconds, Some(112_086.0));
        assert_eq!(md42.size_kib, 1_953_381_440);
    }

    #[test]
    fn fixture_levels_without_redundancy() {
        let arrays = collect(&fixture("linux-procfs"));
        // sysfs md10 is another machine's raid10; its `idle` fills the action mdstat lacks.
        let md10 = array(&arrays, "md10");
        assert_eq!(md10.level, "raid0");
        assert_eq!((md10.raid_disks, md10.active_disks), (2, 2));
        assert_eq!(md10.size_kib, 314_159_265);
        assert_eq!(md10.sync_action, "idle");
        let md120 = array(&arrays, "md120");
        assert_eq!(md120.level, "linear");
        assert_eq!(md120.sync_action, "");
        assert_eq!((md120.raid_disks, md120.active_disks), (2, 2));
        let md101 = array(&arrays, "md101");
        assert_eq!(md101.state, "active (read-only)");
        assert_eq!((md101.raid_disks, md101.active_disks), (3, 3));
        assert!(arrays.iter().filter(|a| a.level == "raid0").all(|a| !a.degraded));
    }

    #[test]
    fn no_mdstat_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        match Raid.collect(&HostRoot::new(dir.path().to_path_buf())) {
            Err(ProbeError::Unavailable(message)) => {
                assert_eq!(message, "no software RAID (/proc/mdstat not found)");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn personalities_only_file_is_ok_and_empty() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("proc")).unwrap();
        std::fs::write(
            dir.path().join("proc/mdstat"),
            "Personalities : \nunused devices: <none>\n",
        )
        .unwrap();
        assert_eq!(collect(&HostRoot::new(dir.path().to_path_buf())), []);
    }
}
