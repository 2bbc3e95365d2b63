//! Whether a read-only mount was meant to be read-write: `Filesystem.unexpected_read_only`.
//!
//! A filesystem that the kernel turned read-only after I/O errors (ext4 `errors=remount-ro`,
//! a btrfs transaction abort) keeps serving reads, so nothing fails loudly until the first
//! write. Two sources say what was intended:
//!
//! * **The mount table.** In `/proc/<pid>/mountinfo` (proc_pid_mountinfo(5)) field 6 holds
//!   the per-mount options and starts with `ro` only if *this mount* is read-only
//!   (`MNT_READONLY`: `mount -o ro`, `mount -o remount,bind,ro`); the super options after the
//!   ` - ` separator start with `ro` when the *filesystem* (the superblock) is read-only
//!   (fs/proc_namespace.c `show_mountinfo`). A filesystem the kernel remounted read-only
//!   after errors shows `rw` in the first and `ro` in the second: the mount asked for
//!   read-write and did not get it. `/proc/mounts` prints only one combined flag, so this
//!   signal exists for mountinfo only.
//! * **`/etc/fstab`.** The entry for the mount point says what the administrator asked for;
//!   an entry without `ro` means read-write, mount(8)'s default.
//!
//! The rules, for a mount that is read-only at all (either flag), in this order:
//!
//! 1. fstab has an entry for the mount point whose options say `ro` (the last of `ro`/`rw`
//!    wins, as in mount(8)): **not** unexpected. An explicit request beats every other signal.
//! 2. fstab has an entry for the mount point that asks for read-write and is not a bind
//!    mount (`bind`/`rbind`): **unexpected**. This catches a `/` left read-only because the
//!    early-boot remount failed, which shows `ro` in both mountinfo fields.
//! 3. Otherwise (no entry, or a read-write `bind` entry): unexpected exactly when the
//!    filesystem is read-only under a mount that asked for read-write (per-mount `rw`, super
//!    `ro`), unless its type can only ever be read-only ([`ALWAYS_READ_ONLY_FS_TYPES`], whose
//!    superblock is read-only whatever the mount asked for).
//!
//! Consequences: a mount made read-only on its own (`mount --bind -o ro`, a container
//! runtime's read-only bind, `mount -o ro` without an fstab entry) is never flagged, since
//! its filesystem stays read-write or both flags say `ro`. A bind mount is flagged only when
//! the filesystem behind it went read-only, which is then true of every mount of it.
//! Entries are matched by mount point alone (the source may be `UUID=` or `LABEL=`, and the
//! type `auto`); with several entries for one mount point the last counts, as it is the one
//! mounted on top.

use super::{Mount, has_option, unescape};

/// Filesystem types whose superblock is read-only whatever the mount asked for. Most of them
/// are left out of the report anyway ([`super::IGNORED_FS_TYPES`]); listed here so the rule
/// does not depend on that list.
pub const ALWAYS_READ_ONLY_FS_TYPES: &[&str] = &["cramfs", "erofs", "iso9660", "romfs", "squashfs"];

/// What the read-only rule needs of one `/etc/fstab` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FstabEntry {
    /// Raw bytes, octal escapes decoded, without a trailing `/` (except for `/` itself).
    pub mount_point: Vec<u8>,
    /// The options ask for read-only: the last of `ro` and `rw` is `ro`.
    pub read_only: bool,
    /// A bind mount (`bind` or `rbind`): its read-only state is inherited, not chosen here.
    pub bind: bool,
}

/// Parses fstab(5): `fs_spec fs_file fs_vfstype fs_mntops fs_freq fs_passno`, separated by
/// blanks; `#` starts a comment line; missing options mean `defaults`. Swap entries and
/// lines without an absolute mount point are skipped.
pub(crate) fn parse_fstab(text: &str) -> Vec<FstabEntry> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim_start();
            if line.starts_with('#') {
                return None;
            }
            let mut fields = line.split_whitespace();
            let _spec = fields.next()?;
            let mount_point = normalise(unescape(fields.next()?));
            if !mount_point.starts_with(b"/") || fields.next() == Some("swap") {
                return None;
            }
            let options = fields.next().unwrap_or("defaults");
            let read_only = options.split(',').fold(false, |ro, option| match option {
                "ro" => true,
                "rw" => false,
                _ => ro,
            });
            let bind = has_option(options, "bind") || has_option(options, "rbind");
            Some(FstabEntry { mount_point, read_only, bind })
        })
        .collect()
}

/// `/data/` and `/data` name the same mount point.
fn normalise(mut path: Vec<u8>) -> Vec<u8> {
    while path.len() > 1 && path.ends_with(b"/") {
        path.pop();
    }
    path
}

/// Whether `mount` is read-only although it was meant to be read-write, by the rules of the
/// module doc.
pub(crate) fn unexpected_read_only(mount: &Mount, fstab: &[FstabEntry]) -> bool {
    if !mount.read_only {
        return false;
    }
    let mount_point = normalise(mount.mount_point.clone());
    match fstab.iter().rev().find(|entry| entry.mount_point == mount_point) {
        Some(entry) if entry.read_only => false,
        Some(entry) if !entry.bind => true,
        _ => {
            mount.fs_read_only_under_rw_mount
                && !ALWAYS_READ_ONLY_FS_TYPES.contains(&mount.fs_type.as_str())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{parse_mountinfo, parse_mountinfo_line, parse_mounts, select};
    use super::*;

    fn mount(line: &str) -> Mount {
        parse_mountinfo_line(line).unwrap()
    }

    fn entry(mount_point: &str, read_only: bool, bind: bool) -> FstabEntry {
        FstabEntry { mount_point: mount_point.as_bytes().to_vec(), read_only, bind }
    }

    /// The mount points flagged in `mountinfo` under `fstab`, in table order.
    fn flagged(mountinfo: &str, fstab: &str) -> Vec<String> {
        let fstab = parse_fstab(fstab);
        select(parse_mountinfo(mountinfo))
            .iter()
            .filter(|mount| unexpected_read_only(mount, &fstab))
            .map(|mount| mount.mount_point_lossy())
            .collect()
    }

    fn fixture(tree: &str, rel: &str) -> String {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(tree).join(rel);
        std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
    }

    const FSTAB: &str = "\
# /etc/fstab: static file system information.
#
# <file system>                           <mount point> <type> <options>          <dump> <pass>
UUID=0b9e4a3c-5d5e-4d8c-9d2e-3f3f3f3f3f3f /             ext4   errors=remount-ro  0      1
/dev/sda2                                 /boot/        ext2   defaults           0      2
LABEL=archive                             /srv/archive  xfs    ro,noatime         0      2
/dev/sdb1                                 /mnt/usb      vfat   noauto,user,ro,rw  0      0
/srv/archive/pub                          /var/www/pub  none   bind               0      0
/srv/media                                /export/media none   rbind,ro           0      0
server:/home                              /home\\040dirs nfs4   defaults,_netdev   0      0
/swapfile                                 none          swap   sw                 0      0
proc                                      /proc         proc
  # an indented comment
";

    #[test]
    fn parses_fstab() {
        assert_eq!(
            parse_fstab(FSTAB),
            [
                entry("/", false, false),
                entry("/boot", false, false),
                entry("/srv/archive", true, false),
                entry("/mnt/usb", false, false),
                entry("/var/www/pub", false, true),
                entry("/export/media", true, true),
                entry("/home dirs", false, false),
                entry("/proc", false, false),
            ]
        );
        assert_eq!(parse_fstab(""), []);
    }

    #[test]
    fn mountinfo_read_only_flags() {
        let fs_only = mount("30 21 8:2 / /srv rw,relatime - ext4 /dev/sda2 ro,errors=remount-ro");
        assert!(fs_only.read_only && fs_only.fs_read_only_under_rw_mount);
        let both = mount("30 21 8:2 / /srv ro,relatime - ext4 /dev/sda2 ro");
        assert!(both.read_only && !both.fs_read_only_under_rw_mount);
        let mount_only = mount("30 21 8:2 /x /srv ro,relatime - ext4 /dev/sda2 rw");
        assert!(mount_only.read_only && !mount_only.fs_read_only_under_rw_mount);
        // /proc/mounts has one combined flag: read-only, cause unknown.
        let proc_mounts = &parse_mounts("/dev/sda2 /srv ext4 ro,relatime 0 0\n")[0];
        assert!(proc_mounts.read_only && !proc_mounts.fs_read_only_under_rw_mount);
    }

    #[test]
    fn rule_1_explicit_ro_in_fstab_is_never_flagged() {
        let fstab = parse_fstab(FSTAB);
        // Even with the filesystem read-only under a read-write mount.
        let archive = mount("40 21 8:5 / /srv/archive rw - xfs /dev/sdc1 ro");
        assert!(!unexpected_read_only(&archive, &fstab));
        let media = mount("41 21 8:5 /media /export/media ro - xfs /dev/sdc1 rw");
        assert!(!unexpected_read_only(&media, &fstab));
        // "ro,rw": the last one wins, so /mnt/usb asked for read-write.
        let usb = mount("42 21 8:17 / /mnt/usb ro - vfat /dev/sdb1 ro");
        assert!(unexpected_read_only(&usb, &fstab));
    }

    #[test]
    fn rule_2_fstab_asks_read_write() {
        let fstab = parse_fstab(FSTAB);
        // The early-boot remount of / failed: both flags say ro, only fstab tells.
        assert!(unexpected_read_only(&mount("21 0 8:1 / / ro - ext4 /dev/sda1 ro"), &fstab));
        // A trailing slash in fstab, an escaped space in both.
        assert!(unexpected_read_only(&mount("24 21 8:2 / /boot ro - ext2 /dev/sda2 ro"), &fstab));
        let home = mount("50 21 0:50 / /home\\040dirs ro - nfs4 server:/home ro");
        assert!(unexpected_read_only(&home, &fstab));
        // Read-write mounts are never flagged.
        assert!(!unexpected_read_only(&mount("21 0 8:1 / / rw - ext4 /dev/sda1 rw"), &fstab));
        // The options of a different mount point do not apply.
        let other = mount("60 21 8:6 / /srv/archive2 ro - ext4 /dev/sdd1 ro");
        assert!(!unexpected_read_only(&other, &fstab));
    }

    #[test]
    fn rule_3_filesystem_read_only_under_a_read_write_mount() {
        let no_fstab: &[FstabEntry] = &[];
        let remounted = mount("30 21 8:2 / /srv rw - ext4 /dev/sda2 ro,errors=remount-ro");
        assert!(unexpected_read_only(&remounted, no_fstab));
        // Read-only on purpose, without an fstab entry: not flagged.
        assert!(!unexpected_read_only(&mount("30 21 8:2 / /srv ro - ext4 /dev/sda2 ro"), no_fstab));
        // A read-only bind mount of a read-write filesystem, with or without an fstab entry.
        let ro_bind = mount("43 21 8:1 /srv/archive/pub /var/www/pub ro - ext4 /dev/sda1 rw");
        assert!(!unexpected_read_only(&ro_bind, no_fstab));
        assert!(!unexpected_read_only(&ro_bind, &parse_fstab(FSTAB)));
        // A bind mount whose filesystem went read-only is flagged like the filesystem.
        let bind_of_broken =
            mount("43 21 8:1 /srv/archive/pub /var/www/pub rw - ext4 /dev/sda1 ro");
        assert!(unexpected_read_only(&bind_of_broken, &parse_fstab(FSTAB)));
        // Filesystems that are always read-only.
        let image = mount("70 21 7:0 / /opt/image rw - squashfs /dev/loop0 ro");
        assert!(!unexpected_read_only(&image, no_fstab));
        // /proc/mounts cannot tell the two flags apart: only fstab can flag there.
        let proc_mounts = &parse_mounts("/dev/sda2 /srv ext4 ro,relatime 0 0\n")[0];
        assert!(!unexpected_read_only(proc_mounts, no_fstab));
    }

    /// The captured mount tables have no read-only data filesystem: nothing is flagged, with
    /// or without an fstab that asks read-write for each of their mounts.
    #[test]
    fn fixture_mount_tables_have_nothing_unexpected() {
        let fstab = "/dev/sda1 / ext4 defaults 0 1\n\
                     192.168.1.1:/srv/test /mnt/nfs/test nfs defaults 0 0\n\
                     /dev/dm-2 / ext4 errors=remount-ro 0 1\n\
                     /dev/sda3 /boot ext2 defaults 0 2\n";
        for (tree, rel) in
            [("linux-procfs", "proc/26231/mountinfo"), ("node-exporter", "proc/1/mountinfo")]
        {
            let mountinfo = fixture(tree, rel);
            assert!(select(parse_mountinfo(&mountinfo)).iter().all(|mount| !mount.read_only));
            assert_eq!(flagged(&mountinfo, ""), [] as [&str; 0], "{tree}");
            assert_eq!(flagged(&mountinfo, fstab), [] as [&str; 0], "{tree}");
        }
    }

    /// A read-only remount: the linux-procfs table as the kernel prints it after ext4 hit an
    /// error on `/` (`errors=remount-ro`): the super options turn `ro`, the per-mount
    /// options stay `rw`. The one edited line is the only difference from the capture.
    #[test]
    fn fixture_read_only_remount() {
        let captured = fixture("linux-procfs", "proc/26231/mountinfo");
        let before = "- ext4 /dev/sda1 rw,errors=remount-ro,data=ordered";
        let after = "- ext4 /dev/sda1 ro,errors=remount-ro,data=ordered";
        assert_eq!(captured.matches(before).count(), 1);
        let remounted = captured.replace(before, after);

        let root = select(parse_mountinfo(&remounted));
        assert_eq!(root[0].mount_point_lossy(), "/");
        assert!(root[0].read_only);
        assert!(root.iter().skip(1).all(|mount| !mount.read_only));
        // Flagged without any fstab, and with one that asks for read-write...
        assert_eq!(flagged(&remounted, ""), ["/"]);
        assert_eq!(flagged(&remounted, "/dev/sda1 / ext4 errors=remount-ro 0 1\n"), ["/"]);
        // ...but not when fstab asked for read-only.
        assert_eq!(flagged(&remounted, "/dev/sda1 / ext4 ro 0 1\n"), [] as [&str; 0]);
    }
}
