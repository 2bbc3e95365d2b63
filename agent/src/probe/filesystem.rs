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
//! * **Usage.** `statvfs(root.path(mount_point))`. A failure is recorded in that
//!   filesystem's `error` and never fails the probe. Under `--root`, a mount point is only
//!   measured if the directory under the root really is a mount point (statx
//!   `STATX_ATTR_MOUNT_ROOT`, Linux 5.8+; else a device-number comparison with its parent),
//!   so a captured tree never reports the test machine's disk as the host's.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use vigil_proto::v1::{Filesystem as FsProto, FilesystemData, probe_result};

use super::{Probe, ProbeError};
use crate::read::{self, ReadError};
use crate::root::HostRoot;

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

/// The filesystem probe.
#[derive(Debug, Default)]
pub struct Filesystem;

impl Probe for Filesystem {
    fn name(&self) -> &'static str {
        "filesystem"
    }

    fn collect(&mut self, root: &HostRoot) -> Result<probe_result::Data, ProbeError> {
        let mounts = read_mount_table(root)?;
        let filesystems = select(mounts).into_iter().map(|mount| measure(root, mount)).collect();
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
    pub read_only: bool,
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
    Some(Mount {
        dev: Some((major.parse().ok()?, minor.parse().ok()?)),
        fs_root: Some(unescape(fields.get(3)?)),
        mount_point: unescape(fields.get(4)?),
        fs_type: String::from_utf8_lossy(&unescape(fs_type)).into_owned(),
        source: String::from_utf8_lossy(&unescape(source)).into_owned(),
        // "ro" in the per-mount options covers a read-only superblock too (the kernel prints
        // mnt_is_readonly()), but older kernels only show that in the super options.
        read_only: has_option(fields.get(5)?, "ro") || has_option(super_options, "ro"),
    })
}

/// Parses `/proc/mounts` (fstab(5) format): `/dev/sda1 / ext4 rw,relatime 0 0`.
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

/// Size and inode figures from `statvfs`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Usage {
    size: u64,
    free: u64,
    available: u64,
    inodes_total: u64,
    inodes_free: u64,
}

fn measure(root: &HostRoot, mount: Mount) -> FsProto {
    let path = root.path(OsStr::from_bytes(&mount.mount_point));
    let usage =
        if root.is_live() { Ok(()) } else { check_mount_root(&path) }.and_then(|()| statvfs(&path));
    let mut fs = FsProto {
        mount_point: mount.mount_point_lossy(),
        device: mount.source,
        fs_type: mount.fs_type,
        read_only: mount.read_only,
        ..FsProto::default()
    };
    match usage {
        Ok(usage) => {
            fs.size_bytes = usage.size;
            fs.free_bytes = usage.free;
            fs.available_bytes = usage.available;
            fs.inodes_total = usage.inodes_total;
            fs.inodes_free = usage.inodes_free;
        }
        Err(error) => {
            tracing::debug!(mount_point = %fs.mount_point, %error, "filesystem not measured");
            fs.error = error;
        }
    }
    fs
}

fn statvfs(path: &Path) -> Result<Usage, String> {
    let vfs = rustix::fs::statvfs(path).map_err(|errno| format!("statvfs failed: {errno}"))?;
    // f_frsize is the unit of the block counts; a few old filesystems leave it 0.
    let unit = if vfs.f_frsize > 0 { vfs.f_frsize } else { vfs.f_bsize };
    Ok(Usage {
        size: vfs.f_blocks.saturating_mul(unit),
        free: vfs.f_bfree.saturating_mul(unit),
        available: vfs.f_bavail.saturating_mul(unit),
        inodes_total: vfs.f_files,
        inodes_free: vfs.f_ffree,
    })
}

/// Under `--root`, whether `path` is the root of a mount, so that `statvfs` measures the
/// host's filesystem and not whatever directory happens to sit there. The messages are
/// fixed texts: they end up in golden files and must not depend on the machine.
fn check_mount_root(path: &Path) -> Result<(), String> {
    use rustix::fs::{AtFlags, StatxAttributes, StatxFlags};

    const NOT_MOUNTED: &str = "statvfs skipped: not a mount point under the host root";
    const MISSING: &str = "statvfs skipped: mount point missing under the host root";

    match rustix::fs::statx(rustix::fs::CWD, path, AtFlags::empty(), StatxFlags::empty()) {
        Ok(stx) if stx.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT) => {
            if stx.stx_attributes.contains(StatxAttributes::MOUNT_ROOT) {
                Ok(())
            } else {
                Err(NOT_MOUNTED.to_owned())
            }
        }
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => Err(MISSING.to_owned()),
        // Older kernels: a mount root is on another device than its parent. This misses bind
        // mounts within one filesystem, which then go unmeasured.
        Ok(_) | Err(_) => {
            let dev = |p: &Path| std::fs::metadata(p).map(|m| m.dev());
            match (dev(path), dev(&path.join(".."))) {
                (Ok(own), Ok(parent)) if own != parent => Ok(()),
                (Ok(_), Ok(_)) => Err(NOT_MOUNTED.to_owned()),
                (Err(err), _) | (_, Err(err)) => {
                    if err.kind() == std::io::ErrorKind::NotFound {
                        Err(MISSING.to_owned())
                    } else {
                        Err(format!("statvfs skipped: {err}"))
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
        // Remounted read-only after an error: older kernels show it in super options only.
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
        let measured: Vec<FsProto> = mounts.into_iter().map(|m| measure(&root, m)).collect();
        assert_eq!(measured[0].error, "statvfs skipped: not a mount point under the host root");
        assert_eq!(measured[0].size_bytes, 0);
        assert_eq!(measured[1].error, "statvfs skipped: not a mount point under the host root");
        assert_eq!(measured[2].error, "statvfs skipped: mount point missing under the host root");
    }

    #[test]
    fn live_root_is_measured() {
        let fs = measure(&HostRoot::live(), parse_mountinfo_line(ROOT_EXT4).unwrap());
        assert_eq!(fs.error, "");
        assert!(fs.size_bytes > 0);
        assert!(fs.available_bytes <= fs.size_bytes);
    }
}
