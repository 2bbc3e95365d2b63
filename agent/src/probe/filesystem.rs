//! Filesystem usage and read-only state: for each filesystem that stores data, its size, free
//! and available bytes, inodes, and whether it is mounted (or was remounted) read-only.
//!
//! Sources: the mount table and `statvfs(2)` on each mount point.
//!
//! * **Mount table.** On the live host `/proc/self/mountinfo` (the agent's own mount
//!   namespace, which for a host service is the host's), then `/proc/1/mountinfo`. Under
//!   `--root` the order is reversed: an agent in a container sees the host's filesystems in
//!   the host init's namespace, not its own (node_exporter reads `/proc/1/mountinfo` for the
//!   same reason). `/proc/mounts` is the last resort; it lacks device numbers, so bind mounts
//!   are not recognised there.
//! * **Which entries.** A mount hidden by a later mount on the same mount point is dropped,
//!   as `df` does: `statvfs` can only see the top one. Then the deny lists below drop pseudo
//!   and memory-backed filesystems and container storage, and of several mounts of the same
//!   device and source directory (bind mounts) only the first is kept.
//! * **Usage.** `statvfs(root.path(mount_point))`, each mount on its own helper thread with
//!   its own bound ([`measure`]): a mount whose call does not return in time (a dead NFS
//!   server) is reported `stale`, with sizes 0, and gets no new call until the old one
//!   returns; the other mounts are reported as usual. A failure is recorded in that
//!   filesystem's `error` and never fails the probe. Under `--root`, a mount point is only
//!   measured if the directory under the root really is a mount point, so a captured tree
//!   never reports the test machine's disk as the host's.
//! * **Read-only.** `read_only` is set when the mount or its filesystem is read-only;
//!   `unexpected_read_only` when it was meant to be read-write, by `<root>/etc/fstab` (read
//!   if present) or by its own per-mount options ([`readonly`] has the rules).

mod measure;
mod readonly;

use std::sync::Arc;
use std::time::Duration;

use vigil_proto::v1::{Filesystem as FsProto, FilesystemData, probe_result};

use super::{Probe, ProbeError};
use crate::read::{self, ReadError};
use crate::root::HostRoot;
use measure::{MOUNT_TIMEOUT, Measurer, Outcome, StatFs, Statvfs};
use readonly::FstabEntry;

/// Filesystem types that hold no data of the host's own, or whose fullness means nothing.
/// Mostly node_exporter's default `--collector.filesystem.fs-types-exclude`, plus:
/// `tmpfs`/`ramfs` (memory-backed; RAM is the memory probe's job), `rootfs` (the initramfs
/// root, hidden under the real `/`), `efivarfs`/`xenfs` (firmware and hypervisor interfaces)
/// and FUSE helpers that only proxy other filesystems (`gvfsd-fuse`, `portal`, `lxcfs`).
/// `squashfs`, `erofs` and `iso9660` are read-only images that are always 100% full.
pub const IGNORED_FS_TYPES: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "erofs",
    "fuse.gvfsd-fuse",
    "fuse.lxcfs",
    "fuse.portal",
    "fusectl",
    "hugetlbfs",
    "iso9660",
    "mqueue",
    "nsfs",
    "proc",
    "pstore",
    "ramfs",
    "rootfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
    "xenfs",
];

/// Mount points below these directories are container runtimes' storage, not the host's own
/// filesystems (node_exporter's default `--collector.filesystem.mount-points-exclude`).
pub const IGNORED_MOUNT_PREFIXES: &[&str] = &["/var/lib/docker/", "/var/lib/containers/storage/"];

/// `overlay` is reported only as the root filesystem (an agent whose host is itself a
/// container); anywhere else it is a container's root and belongs to the container.
const OVERLAY: &str = "overlay";

/// The filesystem probe. It remembers, between runs, the `statvfs` calls that have not
/// returned (see the `measure` submodule).
pub struct Filesystem {
    measurer: Measurer,
}

impl Default for Filesystem {
    /// The real `statvfs`, bounded by `MOUNT_TIMEOUT` (1 s).
    fn default() -> Self {
        Self::new(Arc::new(Statvfs), MOUNT_TIMEOUT)
    }
}

impl std::fmt::Debug for Filesystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filesystem").finish_non_exhaustive()
    }
}

impl Filesystem {
    /// A probe that measures through `statfs` and waits at most `mount_timeout` per cycle for
    /// the mounts' answers.
    pub(crate) fn new(statfs: Arc<dyn StatFs>, mount_timeout: Duration) -> Self {
        Self { measurer: Measurer::new(statfs, mount_timeout) }
    }

    /// One report entry per mount of `mounts` (already [`select`]ed), in order.
    fn report(
        &mut self,
        root: &HostRoot,
        mounts: Vec<Mount>,
        fstab: &[FstabEntry],
    ) -> Vec<FsProto> {
        let outcomes = self.measurer.measure_all(root, &mounts);
        mounts
            .into_iter()
            .zip(outcomes)
            .map(|(mount, outcome)| to_proto(mount, outcome, fstab))
            .collect()
    }
}

impl Probe for Filesystem {
    fn name(&self) -> &'static str {
        "filesystem"
    }

    fn collect(&mut self, root: &HostRoot) -> Result<probe_result::Data, ProbeError> {
        let mounts = read_mount_table(root)?;
        let fstab = read_fstab(root);
        let filesystems = self.report(root, select(mounts), &fstab);
        Ok(probe_result::Data::Filesystem(FilesystemData { filesystems }))
    }
}

/// One line of the mount table, octal escapes decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Mount {
    /// `major:minor` of the filesystem (mountinfo only).
    pub dev: Option<(u32, u32)>,
    /// The directory of the filesystem that is mounted here (mountinfo only; `/` unless a
    /// bind mount of a subdirectory).
    pub fs_root: Option<Vec<u8>>,
    /// Raw bytes: mount points need not be UTF-8.
    pub mount_point: Vec<u8>,
    pub fs_type: String,
    pub source: String,
    /// Read-only, whichever way: the mount itself or its filesystem (superblock).
    pub read_only: bool,
    /// The filesystem is read-only while the mount asked for read-write: `rw` in the
    /// per-mount options, `ro` in the super options (mountinfo only; see [`readonly`]).
    pub fs_read_only_under_rw_mount: bool,
}

impl Mount {
    fn mount_point_lossy(&self) -> String {
        String::from_utf8_lossy(&self.mount_point).into_owned()
    }
}

/// Reads the first mount table that exists, in the order the module doc explains.
fn read_mount_table(root: &HostRoot) -> Result<Vec<Mount>, ProbeError> {
    let mountinfo = if root.is_live() {
        ["self/mountinfo", "1/mountinfo"]
    } else {
        ["1/mountinfo", "self/mountinfo"]
    };
    let mut last_error: Option<ReadError> = None;
    for rel in mountinfo {
        match read::read_string(&root.proc(rel)) {
            Ok(text) => return Ok(parse_mountinfo(&text)),
            Err(err) => last_error = Some(keep_worst(last_error, err)),
        }
    }
    match read::read_string(&root.proc("mounts")) {
        Ok(text) => Ok(parse_mounts(&text)),
        Err(err) => {
            let err = keep_worst(last_error, err);
            Err(ProbeError::from_read(root, &err))
        }
    }
}

/// The entries of `<root>/etc/fstab`. A missing or unreadable file is no entries: it only
/// refines `unexpected_read_only`, and many containers have none.
fn read_fstab(root: &HostRoot) -> Vec<FstabEntry> {
    match read::read_optional(&root.etc("fstab")) {
        Ok(text) => text.as_deref().map(readonly::parse_fstab).unwrap_or_default(),
        Err(err) => {
            tracing::debug!(%err, "fstab not readable");
            Vec::new()
        }
    }
}

/// Of two read errors, the one worth reporting: a file that exists but cannot be read
/// (`EACCES` on another process's mountinfo) says more than a missing one.
fn keep_worst(previous: Option<ReadError>, next: ReadError) -> ReadError {
    match previous {
        Some(previous) if next.is_not_found() && !previous.is_not_found() => previous,
        _ => next,
    }
}

/// Parses `/proc/<pid>/mountinfo` (proc_pid_mountinfo(5)):
/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`.
/// Malformed lines are skipped.
pub(crate) fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_mountinfo_line).collect()
}

fn parse_mountinfo_line(line: &str) -> Option<Mount> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    // The optional fields end at the first lone "-", which comes after the six fixed ones.
    let separator = fields.iter().skip(6).position(|field| *field == "-")? + 6;
    let (major, minor) = fields.get(2)?.split_once(':')?;
    let fs_type = fields.get(separator + 1)?;
    let source = fields.get(separator + 2).copied().unwrap_or("");
    let super_options = fields.get(separator + 3).copied().unwrap_or("");
    // Field 6 says whether this mount is read-only (MNT_READONLY), the super options whether
    // the filesystem is (fs/proc_namespace.c show_mountinfo): either makes it read-only.
    let mount_ro = has_option(fields.get(5)?, "ro");
    let super_ro = has_option(super_options, "ro");
    Some(Mount {
        dev: Some((major.parse().ok()?, minor.parse().ok()?)),
        fs_root: Some(unescape(fields.get(3)?)),
        mount_point: unescape(fields.get(4)?),
        fs_type: String::from_utf8_lossy(&unescape(fs_type)).into_owned(),
        source: String::from_utf8_lossy(&unescape(source)).into_owned(),
        read_only: mount_ro || super_ro,
        fs_read_only_under_rw_mount: super_ro && !mount_ro,
    })
}

/// Parses `/proc/mounts` (fstab(5) format): `/dev/sda1 / ext4 rw,relatime 0 0`. Its one
/// `ro`/`rw` says whether the mount or its filesystem is read-only, not which.
pub(crate) fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let source = fields.next()?;
            let mount_point = fields.next()?;
            let fs_type = fields.next()?;
            let options = fields.next().unwrap_or("");
            Some(Mount {
                dev: None,
                fs_root: None,
                mount_point: unescape(mount_point),
                fs_type: String::from_utf8_lossy(&unescape(fs_type)).into_owned(),
                source: String::from_utf8_lossy(&unescape(source)).into_owned(),
                read_only: has_option(options, "ro"),
                fs_read_only_under_rw_mount: false,
            })
        })
        .collect()
}

fn has_option(options: &str, wanted: &str) -> bool {
    options.split(',').any(|option| option == wanted)
}

/// Decodes the kernel's octal escapes (`\040` space, `\011` tab, `\012` newline, `\134`
/// backslash) that `seq_file` writes for those bytes in paths; anything else stays as is.
pub(crate) fn unescape(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(code) = bytes.get(i + 1..i + 4).and_then(octal_byte)
        {
            out.push(code);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

fn octal_byte(digits: &[u8]) -> Option<u8> {
    digits.iter().try_fold(0u8, |value, digit| match digit {
        b'0'..=b'7' => value.checked_mul(8)?.checked_add(digit - b'0'),
        _ => None,
    })
}

/// The filesystems worth reporting, in mount-table order (see the module doc).
pub(crate) fn select(mounts: Vec<Mount>) -> Vec<Mount> {
    let visible: Vec<&Mount> = mounts
        .iter()
        .enumerate()
        .filter(|(i, mount)| {
            !mounts[i + 1..].iter().any(|later| later.mount_point == mount.mount_point)
        })
        .map(|(_, mount)| mount)
        .collect();

    let mut seen: Vec<((u32, u32), &[u8])> = Vec::new();
    let mut selected = Vec::new();
    for mount in visible {
        if !stores_data(mount) {
            continue;
        }
        if let (Some(dev), Some(fs_root)) = (mount.dev, mount.fs_root.as_deref()) {
            if seen.contains(&(dev, fs_root)) {
                tracing::debug!(mount_point = %mount.mount_point_lossy(), "bind mount skipped");
                continue;
            }
            seen.push((dev, fs_root));
        }
        selected.push(mount.clone());
    }
    selected
}

fn stores_data(mount: &Mount) -> bool {
    if mount.fs_type == OVERLAY {
        return mount.mount_point == b"/";
    }
    if IGNORED_FS_TYPES.contains(&mount.fs_type.as_str()) {
        return false;
    }
    !IGNORED_MOUNT_PREFIXES.iter().any(|prefix| mount.mount_point.starts_with(prefix.as_bytes()))
}

fn to_proto(mount: Mount, outcome: Outcome, fstab: &[FstabEntry]) -> FsProto {
    let mut fs = FsProto {
        mount_point: mount.mount_point_lossy(),
        unexpected_read_only: readonly::unexpected_read_only(&mount, fstab),
        read_only: mount.read_only,
        device: mount.source,
        fs_type: mount.fs_type,
        ..FsProto::default()
    };
    match outcome {
        Outcome::Measured(usage) => {
            fs.size_bytes = usage.size;
            fs.free_bytes = usage.free;
            fs.available_bytes = usage.available;
            fs.inodes_total = usage.inodes_total;
            fs.inodes_free = usage.inodes_free;
        }
        Outcome::Failed(error) => {
            tracing::debug!(mount_point = %fs.mount_point, %error, "filesystem not measured");
            fs.error = error;
        }
        Outcome::Stale(error) => {
            fs.stale = true;
            fs.error = error;
        }
    }
    fs
}

#[cfg(test)]
mod tests {
    use super::measure::Usage;
    use super::*;

    const ROOT_EXT4: &str =
        "21 0 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro";

    fn mp(mount: &Mount) -> String {
        mount.mount_point_lossy()
    }

    #[test]
    fn parses_a_mountinfo_line() {
        let mount = parse_mountinfo_line(ROOT_EXT4).unwrap();
        assert_eq!(mount.dev, Some((8, 1)));
        assert_eq!(mount.fs_root.as_deref(), Some(&b"/"[..]));
        assert_eq!(mp(&mount), "/");
        assert_eq!(mount.fs_type, "ext4");
        assert_eq!(mount.source, "/dev/sda1");
        assert!(!mount.read_only, "errors=remount-ro is not ro");
    }

    #[test]
    fn no_optional_fields_and_read_only() {
        let mount =
            parse_mountinfo_line("30 21 8:2 / /srv ro,relatime - xfs /dev/sda2 ro").unwrap();
        assert!(mount.read_only);
        assert_eq!(mp(&mount), "/srv");
        // Remounted read-only after an error: the filesystem is, the mount still says rw.
        let mount =
            parse_mountinfo_line("30 21 8:2 / /srv rw,relatime - ext4 /dev/sda2 ro,data=ordered")
                .unwrap();
        assert!(mount.read_only);
        assert_eq!(parse_mountinfo_line("30 21 8:2 / /srv rw"), None);
        assert_eq!(parse_mountinfo_line(""), None);
    }

    #[test]
    fn octal_escapes_in_mount_points() {
        let line = "3148 3003 260:0 / /mnt/a\\040b\\011c\\134d rw - ext4 /dev/sda rw";
        let mount = parse_mountinfo_line(line).unwrap();
        assert_eq!(mp(&mount), "/mnt/a b\tc\\d");
        assert_eq!(unescape("\\012"), b"\n");
        // Not an escape: kept literally.
        assert_eq!(unescape("a\\9bc\\04"), b"a\\9bc\\04");
        assert_eq!(unescape("\\777"), b"\\777", "does not fit a byte");
        // Non-UTF-8 bytes survive for statvfs.
        assert_eq!(unescape("\\377"), [0xff]);
    }

    #[test]
    fn parses_proc_mounts() {
        let mounts =
            parse_mounts("/dev/sda1 / ext4 rw,relatime 0 0\ndevpts /dev/pts devpts rw 0 0\n");
        assert_eq!(mounts.len(), 2);
        assert_eq!(mounts[0].dev, None);
        assert_eq!(mounts[0].source, "/dev/sda1");
        assert_eq!(select(mounts).len(), 1);
    }

    #[test]
    fn selects_data_filesystems() {
        let table = "\
21 0 8:1 / / rw - ext4 /dev/sda1 rw
22 21 0:22 / /dev/pts rw - devpts devpts rw
23 21 0:25 / /run rw - tmpfs tmpfs rw
24 21 8:2 / /boot rw - ext2 /dev/sda2 rw
25 21 8:1 /srv /var/srv rw - ext4 /dev/sda1 rw
26 21 8:1 /srv /mnt/srv-again rw - ext4 /dev/sda1 rw
27 21 0:50 / /var/lib/docker/overlay2/abc/merged rw - overlay overlay rw
28 21 253:0 /x /var/lib/containers/storage/overlay rw - xfs /dev/vg/root rw
29 21 0:60 / /snap/core/1 ro - squashfs /dev/loop0 ro
";
        let selected: Vec<String> = select(parse_mountinfo(table)).iter().map(mp).collect();
        assert_eq!(selected, ["/", "/boot", "/var/srv"]);
    }

    #[test]
    fn overlay_only_as_root() {
        let table = "1 0 0:40 / / rw - overlay overlay rw\n";
        assert_eq!(select(parse_mountinfo(table)).len(), 1);
    }

    #[test]
    fn a_later_mount_hides_an_earlier_one_on_the_same_point() {
        let table = "\
21 0 8:1 / / rw - ext4 /dev/sda1 rw
40 21 0:42 / /mnt/nfs rw - nfs4 server:/a rw
41 40 0:44 / /mnt/nfs rw - nfs server:/b rw
50 21 8:3 / /data rw - ext4 /dev/sda3 rw
51 50 0:30 / /data rw - tmpfs tmpfs rw
";
        let selected = select(parse_mountinfo(table));
        let names: Vec<(String, &str)> =
            selected.iter().map(|m| (mp(m), m.source.as_str())).collect();
        // /data is now a tmpfs (ignored); the ext4 below it cannot be measured.
        assert_eq!(names, [("/".to_owned(), "/dev/sda1"), ("/mnt/nfs".to_owned(), "server:/b")]);
    }

    #[test]
    fn relocated_root_only_measures_real_mount_points() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("boot")).unwrap();
        let root = HostRoot::new(dir.path().to_path_buf());
        let mounts = parse_mountinfo(
            "21 0 8:1 / / rw - ext4 /dev/sda1 rw\n\
             22 21 8:2 / /boot rw - ext4 /dev/sda2 rw\n\
             23 21 8:3 / /gone rw - ext4 /dev/sda3 rw\n",
        );
        let measured = Filesystem::default().report(&root, mounts, &[]);
        assert_eq!(measured[0].error, "statvfs skipped: not a mount point under the host root");
        assert_eq!(measured[0].size_bytes, 0);
        assert_eq!(measured[1].error, "statvfs skipped: not a mount point under the host root");
        assert_eq!(measured[2].error, "statvfs skipped: mount point missing under the host root");
    }

    #[test]
    fn live_root_is_measured() {
        let mounts = vec![parse_mountinfo_line(ROOT_EXT4).unwrap()];
        let fs = Filesystem::default().report(&HostRoot::live(), mounts, &[]).remove(0);
        assert_eq!(fs.error, "");
        assert!(!fs.stale);
        assert!(fs.size_bytes > 0);
        assert!(fs.available_bytes <= fs.size_bytes);
    }

    /// A read-only remount, end to end through a host root: `/srv` went read-only under its
    /// read-write mount, `/data` is read-only although fstab asks for read-write, `/mnt/ro`
    /// is read-only as fstab asks, and `/var/www` is a read-only bind mount.
    #[test]
    fn read_only_remount_through_a_host_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc/1")).unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("proc/1/mountinfo"),
            "21 0 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro\n\
             30 21 8:2 / /srv rw,relatime shared:2 - ext4 /dev/sda2 ro,errors=remount-ro\n\
             31 21 8:3 / /data ro,relatime shared:3 - xfs /dev/sda3 ro,attr2\n\
             32 21 8:4 / /mnt/ro ro,relatime shared:4 - ext4 /dev/sda4 ro\n\
             33 21 8:1 /www /var/www ro,relatime shared:1 - ext4 /dev/sda1 rw\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/fstab"),
            "UUID=1 / ext4 errors=remount-ro 0 1\n\
             UUID=3 /data xfs defaults 0 2\n\
             UUID=4 /mnt/ro ext4 ro 0 2\n\
             /www /var/www none bind,ro 0 0\n",
        )
        .unwrap();
        let root = HostRoot::new(dir.path().to_path_buf());
        let Ok(probe_result::Data::Filesystem(data)) = Filesystem::default().collect(&root) else {
            panic!("no filesystem data");
        };
        let not_mounted = "statvfs skipped: not a mount point under the host root";
        let missing = "statvfs skipped: mount point missing under the host root";
        let fs =
            |mount_point: &str, device: &str, fs_type: &str, ro: bool, unexpected: bool| FsProto {
                mount_point: mount_point.to_owned(),
                device: device.to_owned(),
                fs_type: fs_type.to_owned(),
                read_only: ro,
                unexpected_read_only: unexpected,
                error: if mount_point == "/" { not_mounted } else { missing }.to_owned(),
                ..FsProto::default()
            };
        assert_eq!(
            data.filesystems,
            [
                fs("/", "/dev/sda1", "ext4", false, false),
                fs("/srv", "/dev/sda2", "ext4", true, true),
                fs("/data", "/dev/sda3", "xfs", true, true),
                fs("/mnt/ro", "/dev/sda4", "ext4", true, false),
                fs("/var/www", "/dev/sda1", "ext4", true, false),
            ]
        );
    }

    /// A `statvfs` that answers at once, except on one path, where it blocks until the test
    /// drops the gate's sender.
    struct HangingStatFs {
        hangs_on: &'static str,
        gate: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
        calls: std::sync::Mutex<Vec<std::path::PathBuf>>,
    }

    const USAGE: Usage =
        Usage { size: 1000, free: 400, available: 300, inodes_total: 100, inodes_free: 50 };

    impl StatFs for HangingStatFs {
        fn statvfs(&self, path: &std::path::Path) -> std::io::Result<Usage> {
            self.calls.lock().unwrap().push(path.to_path_buf());
            if path == std::path::Path::new(self.hangs_on) {
                // Returns once the sender is dropped.
                let _ = self.gate.lock().unwrap().recv();
            }
            if path == std::path::Path::new("/denied") {
                return Err(std::io::Error::from_raw_os_error(13));
            }
            Ok(USAGE)
        }
    }

    impl HangingStatFs {
        fn calls_to(&self, path: &str) -> usize {
            self.calls
                .lock()
                .unwrap()
                .iter()
                .filter(|call| *call == std::path::Path::new(path))
                .count()
        }
    }

    #[test]
    fn a_hanging_mount_is_stale_and_never_called_twice() {
        let (release, gate) = std::sync::mpsc::channel();
        let statfs = Arc::new(HangingStatFs {
            hangs_on: "/mnt/dead",
            gate: std::sync::Mutex::new(gate),
            calls: std::sync::Mutex::default(),
        });
        let mut probe = Filesystem::new(statfs.clone(), Duration::from_millis(50));
        let mounts = parse_mountinfo(
            "21 0 8:1 / / rw - ext4 /dev/sda1 rw\n\
             40 21 0:42 / /mnt/dead rw - nfs4 server:/a rw\n\
             50 21 8:3 / /denied rw - ext4 /dev/sda3 rw\n",
        );
        let root = HostRoot::live();
        let measured = |mount_point: &str, device: &str, fs_type: &str| FsProto {
            mount_point: mount_point.to_owned(),
            device: device.to_owned(),
            fs_type: fs_type.to_owned(),
            size_bytes: 1000,
            free_bytes: 400,
            available_bytes: 300,
            inodes_total: 100,
            inodes_free: 50,
            ..FsProto::default()
        };
        let stale = |error: &str| FsProto {
            mount_point: "/mnt/dead".to_owned(),
            device: "server:/a".to_owned(),
            fs_type: "nfs4".to_owned(),
            stale: true,
            error: error.to_owned(),
            ..FsProto::default()
        };
        let denied = FsProto {
            mount_point: "/denied".to_owned(),
            device: "/dev/sda3".to_owned(),
            fs_type: "ext4".to_owned(),
            error: format!("statvfs failed: {}", std::io::Error::from_raw_os_error(13)),
            ..FsProto::default()
        };

        // First cycle: the dead mount is stale, its neighbours are reported.
        let first = probe.report(&root, mounts.clone(), &[]);
        assert_eq!(
            first,
            [
                measured("/", "/dev/sda1", "ext4"),
                stale("statvfs did not return within 50ms; skipped until it does"),
                denied.clone(),
            ]
        );
        assert_eq!(probe.measurer.in_flight(), 1);

        // Second cycle: still stale, and no second call on it.
        let second = probe.report(&root, mounts.clone(), &[]);
        assert_eq!(
            second,
            [
                measured("/", "/dev/sda1", "ext4"),
                stale("previous statvfs still in progress (timed out after 50ms)"),
                denied.clone(),
            ]
        );
        assert_eq!(statfs.calls_to("/mnt/dead"), 1);
        assert_eq!(statfs.calls_to("/"), 2);

        // The server answers again: the next cycle measures the mount normally.
        drop(release);
        probe.measurer.wait_for_calls_in_flight(Duration::from_secs(10));
        let third = probe.report(&root, mounts, &[]);
        assert_eq!(
            third,
            [
                measured("/", "/dev/sda1", "ext4"),
                measured("/mnt/dead", "server:/a", "nfs4"),
                denied,
            ]
        );
        assert_eq!(statfs.calls_to("/mnt/dead"), 2);
        assert_eq!(probe.measurer.in_flight(), 0);
    }

    /// A dead mount replaced by a new one at the same place (another device number) is
    /// measured at once; a dead mount that left the table keeps its one call until it returns.
    #[test]
    fn a_replaced_or_vanished_dead_mount() {
        let (release, gate) = std::sync::mpsc::channel();
        let statfs = Arc::new(HangingStatFs {
            hangs_on: "/mnt/dead",
            gate: std::sync::Mutex::new(gate),
            calls: std::sync::Mutex::default(),
        });
        let mut probe = Filesystem::new(statfs.clone(), Duration::from_millis(20));
        let root = HostRoot::live();
        let dead = parse_mountinfo("40 21 0:42 / /mnt/dead rw - nfs4 server:/a rw\n");
        assert!(probe.report(&root, dead, &[])[0].stale);

        // Gone from the table: nothing to report, the call stays in flight.
        assert_eq!(probe.report(&root, Vec::new(), &[]), []);
        assert_eq!(probe.measurer.in_flight(), 1);

        // Mounted again (new device 0:43): measured, which hangs again on this fake, so a
        // second call is in flight, one per device.
        let remounted = parse_mountinfo("41 21 0:43 / /mnt/dead rw - nfs4 server:/a rw\n");
        assert!(probe.report(&root, remounted, &[])[0].stale);
        assert_eq!(statfs.calls_to("/mnt/dead"), 2);
        assert_eq!(probe.measurer.in_flight(), 2);

        drop(release);
        probe.measurer.wait_for_calls_in_flight(Duration::from_secs(10));
        assert_eq!(probe.report(&root, Vec::new(), &[]), []);
        assert_eq!(probe.measurer.in_flight(), 0);
    }
}
