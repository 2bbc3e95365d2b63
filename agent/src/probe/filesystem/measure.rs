//! Measuring mounts with `statvfs(2)`, each bounded on its own, so one hung mount (a hard NFS
//! mount whose server is gone) is reported stale and never hides the others.
//!
//! `statvfs` on a dead NFS server blocks in the kernel and cannot be cancelled. Run inline,
//! it would hold the whole probe past its timeout, and the probe's slot in
//! [`super::super::ProbeSet`] would report "previous run still in progress" every cycle, so
//! one dead mount would hide every filesystem. Instead each cycle:
//!
//! 1. forgets the calls of earlier cycles that have returned since (their answer is old and
//!    dropped; the mount is measured afresh below);
//! 2. starts one helper thread per mount that has no call in flight, all at once, each
//!    running the mount-root check (under `--root`) and `statvfs` through [`StatFs`];
//! 3. waits for all of them until one common deadline, [`MOUNT_TIMEOUT`] after the start.
//!    A mount that answered is measured; one that did not is **stale** and its call is kept
//!    in flight. A mount whose earlier call is still in flight is stale at once, without a
//!    new call.
//!
//! So a dead mount costs one blocked thread, however many cycles it stays dead, and the
//! probe takes at most about [`MOUNT_TIMEOUT`] however many mounts hang. A call is keyed by
//! mount point and device number, so a dead mount replaced by a fresh one (a lazy unmount,
//! then a new mount at the same place) is measured at once while the old call drains.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Mount;
use crate::root::HostRoot;

/// How long one cycle waits for the mounts' `statvfs` calls (they run at the same time, so
/// this bounds the whole measurement). A fifth of the default `probe_timeout` (5 s): a
/// healthy local or NFS mount answers in microseconds to milliseconds, and the rest of the
/// probe's budget is left for reading the mount table. With a `probe_timeout` below about
/// 1 s, the first cycle after a mount hangs can exceed it once; later cycles do not wait
/// for that mount.
pub const MOUNT_TIMEOUT: Duration = Duration::from_secs(1);

/// Size and inode figures from `statvfs`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub size: u64,
    pub free: u64,
    pub available: u64,
    pub inodes_total: u64,
    pub inodes_free: u64,
}

/// The `statvfs(2)` call, replaceable so tests can simulate a mount that hangs.
pub trait StatFs: Send + Sync {
    fn statvfs(&self, path: &Path) -> io::Result<Usage>;
}

/// The real `statvfs(2)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Statvfs;

impl StatFs for Statvfs {
    fn statvfs(&self, path: &Path) -> io::Result<Usage> {
        let vfs = rustix::fs::statvfs(path)?;
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
}

/// What became of one mount's measurement in one cycle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Measured(Usage),
    /// Not measured, for the reason given (`statvfs` failed, not a mount point under the root).
    Failed(String),
    /// `statvfs` did not return in time, now or in an earlier cycle; the message says which.
    Stale(String),
}

/// Identifies a mount across cycles: its mount point, and its device number when the mount
/// table has one.
type MountKey = (Vec<u8>, Option<(u32, u32)>);

/// Measures mounts cycle after cycle, remembering the calls that have not returned.
pub(crate) struct Measurer {
    statfs: Arc<dyn StatFs>,
    timeout: Duration,
    /// The helper thread of every call that timed out and has not returned yet.
    in_flight: HashMap<MountKey, JoinHandle<()>>,
}

impl Measurer {
    pub(crate) fn new(statfs: Arc<dyn StatFs>, timeout: Duration) -> Self {
        Self { statfs, timeout, in_flight: HashMap::new() }
    }

    /// How many calls are still blocked (tests only).
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Measures `mounts` (paths as the host sees them) under `root`, one outcome per mount,
    /// in order. Under a relocated root (`check_mount_root`), a path is measured only if it
    /// is a mount point there, so a captured tree never reports the test machine's disk.
    pub(crate) fn measure_all(&mut self, root: &HostRoot, mounts: &[Mount]) -> Vec<Outcome> {
        self.in_flight.retain(|(mount_point, _), thread| {
            let finished = thread.is_finished();
            if finished {
                let mount_point = String::from_utf8_lossy(mount_point);
                tracing::info!(%mount_point, "stale filesystem answered again");
            }
            !finished
        });

        let check_mount_root = !root.is_live();
        let calls: Vec<Call> = mounts
            .iter()
            .map(|mount| {
                let key = (mount.mount_point.clone(), mount.dev);
                if self.in_flight.contains_key(&key) {
                    return Call::InFlight;
                }
                let path = root.path(OsStr::from_bytes(&mount.mount_point));
                self.start(path, check_mount_root)
                    .map_or_else(|err| Call::NotStarted(err.to_string()), Call::Started)
            })
            .collect();

        let deadline = Instant::now() + self.timeout;
        mounts
            .iter()
            .zip(calls)
            .map(|(mount, call)| match call {
                Call::Started((answer, thread)) => {
                    match answer.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                        Ok(Ok(usage)) => Outcome::Measured(usage),
                        Ok(Err(reason)) => Outcome::Failed(reason),
                        Err(RecvTimeoutError::Timeout) => {
                            tracing::warn!(
                                mount_point = %mount.mount_point_lossy(),
                                timeout = ?self.timeout,
                                "statvfs hangs; filesystem stale until it returns"
                            );
                            self.in_flight.insert((mount.mount_point.clone(), mount.dev), thread);
                            Outcome::Stale(format!(
                                "statvfs did not return within {:?}; skipped until it does",
                                self.timeout
                            ))
                        }
                        // Only a panicking StatFs ends a thread without an answer.
                        Err(RecvTimeoutError::Disconnected) => {
                            Outcome::Failed("statvfs ended without an answer".to_owned())
                        }
                    }
                }
                Call::InFlight => Outcome::Stale(format!(
                    "previous statvfs still in progress (timed out after {:?})",
                    self.timeout
                )),
                Call::NotStarted(reason) => {
                    Outcome::Failed(format!("statvfs not started: {reason}"))
                }
            })
            .collect()
    }

    /// Starts the check and `statvfs` of `path` on a helper thread.
    fn start(&self, path: PathBuf, check_mount_root: bool) -> io::Result<Answer> {
        let (send, answer) = mpsc::sync_channel(1);
        let statfs = Arc::clone(&self.statfs);
        let thread =
            std::thread::Builder::new().name("vigil-statvfs".to_owned()).spawn(move || {
                let checked = if check_mount_root { self::check_mount_root(&path) } else { Ok(()) };
                let result = checked.and_then(|()| {
                    statfs.statvfs(&path).map_err(|err| format!("statvfs failed: {err}"))
                });
                // The receiver is gone if the cycle gave up on this call: nothing to tell.
                let _ = send.send(result);
            })?;
        Ok((answer, thread))
    }

    /// Blocks until every call in flight has returned (tests only).
    #[cfg(test)]
    pub(crate) fn wait_for_calls_in_flight(&self, limit: Duration) {
        let started = Instant::now();
        while !self.in_flight.values().all(JoinHandle::is_finished) {
            assert!(started.elapsed() < limit, "calls in flight did not return");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// A started call: where its answer arrives, and its thread.
type Answer = (mpsc::Receiver<Result<Usage, String>>, JoinHandle<()>);

enum Call {
    Started(Answer),
    InFlight,
    NotStarted(String),
}

/// Under `--root`, whether `path` is the root of a mount, so that `statvfs` measures the
/// host's filesystem and not whatever directory happens to sit there (statx
/// `STATX_ATTR_MOUNT_ROOT`, Linux 5.8+; else a device-number comparison with its parent).
/// The messages are fixed texts: they end up in golden files and must not depend on the
/// machine.
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
