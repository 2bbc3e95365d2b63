//! Running smartctl, and the clock the SMART probe schedules itself by; both behind traits so
//! tests serve fixture files and move time by hand.
//!
//! [`SmartctlCommand`] runs the configured binary directly (no shell: device names come from
//! smartctl's own scan and are passed as separate arguments), with stdin closed, stdout read
//! by a helper thread (so a large output cannot fill the pipe and stall the child), stderr
//! discarded (with `--json` smartctl prints everything, errors included, on stdout) and
//! `LC_ALL=C` (so `strerror` texts such as "Permission denied" are not translated). A call
//! that outlives its timeout is killed with SIGKILL and reaped; a child that does not die at
//! once (stuck in an ioctl on a dying disk) is handed to a thread that reaps it whenever it
//! does, so the probe is never held up and no zombie is left behind.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Runs smartctl with `args`, for at most `timeout`.
pub trait SmartctlRunner: Send {
    fn run(&self, args: &[&str], timeout: Duration) -> Result<RunOutput, RunError>;
}

/// What a finished smartctl call printed and how it exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutput {
    pub stdout: Vec<u8>,
    /// The exit status: smartctl's bit mask (smartctl(8) "EXIT STATUS").
    pub exit_code: i32,
}

/// Why a smartctl call produced no output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    /// The binary does not exist (spawn failed with ENOENT).
    #[error("not found")]
    NotFound,
    /// The binary may not be executed (spawn failed with EACCES/EPERM).
    #[error("permission denied")]
    PermissionDenied,
    /// The call ran past its timeout and was killed.
    #[error("timed out after {0:?}")]
    TimedOut(Duration),
    /// Anything else: spawn failed otherwise, killed by a signal, unreadable output.
    #[error("{0}")]
    Failed(String),
}

/// The time now; injectable so the probe's interval logic is tested without sleeping.
pub trait Clock: Send {
    fn now(&self) -> Instant;
}

/// [`Instant::now`].
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// Most stdout kept from one call; smartctl `-a` prints tens of KiB. Beyond this the pipe is
/// closed and smartctl ends on EPIPE.
const MAX_OUTPUT: u64 = 16 << 20;
/// How often a running child is checked.
const POLL: Duration = Duration::from_millis(5);
/// How long a killed child gets to disappear before a thread is left to reap it.
const REAP_GRACE: Duration = Duration::from_secs(1);

/// The real runner: spawns `program` directly.
#[derive(Debug, Clone)]
pub struct SmartctlCommand {
    program: PathBuf,
}

impl SmartctlCommand {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self { program: program.into() }
    }
}

impl SmartctlRunner for SmartctlCommand {
    fn run(&self, args: &[&str], timeout: Duration) -> Result<RunOutput, RunError> {
        let started = Instant::now();
        let mut child = Command::new(&self.program)
            .args(args)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|err| match err.kind() {
                std::io::ErrorKind::NotFound => RunError::NotFound,
                std::io::ErrorKind::PermissionDenied => RunError::PermissionDenied,
                _ => RunError::Failed(format!("cannot run {}: {err}", self.program.display())),
            })?;

        let Some(stdout) = child.stdout.take() else {
            kill_and_reap(child);
            return Err(RunError::Failed("no stdout pipe".to_owned()));
        };
        let (sender, output) = mpsc::channel();
        let reader =
            std::thread::Builder::new().name("smartctl-stdout".to_owned()).spawn(move || {
                let mut buffer = Vec::new();
                let result = stdout.take(MAX_OUTPUT).read_to_end(&mut buffer).map(|_| buffer);
                // The receiver is gone only if the call already gave up.
                let _ = sender.send(result);
            });
        if let Err(err) = reader {
            kill_and_reap(child);
            return Err(RunError::Failed(format!("cannot start output reader: {err}")));
        }

        let deadline = started.checked_add(timeout);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => {}
                Err(err) => {
                    kill_and_reap(child);
                    return Err(RunError::Failed(format!("waiting for smartctl: {err}")));
                }
            }
            let now = Instant::now();
            let left = deadline.map_or(POLL, |deadline| deadline.saturating_duration_since(now));
            if left.is_zero() {
                kill_and_reap(child);
                return Err(RunError::TimedOut(timeout));
            }
            std::thread::sleep(POLL.min(left));
        };

        // The child has exited, so its end of the pipe is closed unless it passed it on to a
        // process of its own; do not wait past the deadline for that.
        let left = deadline
            .map_or(REAP_GRACE, |deadline| deadline.saturating_duration_since(Instant::now()))
            .max(POLL);
        let stdout = match output.recv_timeout(left) {
            Ok(Ok(stdout)) => stdout,
            Ok(Err(err)) => {
                return Err(RunError::Failed(format!("reading smartctl output: {err}")));
            }
            Err(_) => return Err(RunError::Failed("smartctl output was not closed".to_owned())),
        };
        match status.code() {
            Some(exit_code) => Ok(RunOutput { stdout, exit_code }),
            None => {
                use std::os::unix::process::ExitStatusExt;
                let signal = status.signal().map_or_else(|| "?".to_owned(), |s| s.to_string());
                Err(RunError::Failed(format!("smartctl was killed by signal {signal}")))
            }
        }
    }
}

/// SIGKILLs `child` and reaps it: here if it dies within [`REAP_GRACE`], else on a detached
/// thread that waits as long as it takes.
fn kill_and_reap(mut child: Child) {
    // Fails only if the child has already exited, which is what we want.
    let _ = child.kill();
    let until = Instant::now() + REAP_GRACE;
    while Instant::now() < until {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) => std::thread::sleep(POLL),
        }
    }
    let pid = child.id();
    tracing::warn!(pid, "killed smartctl has not exited yet; reaping it in the background");
    let spawned = std::thread::Builder::new().name("smartctl-reaper".to_owned()).spawn(move || {
        let _ = child.wait();
    });
    if spawned.is_err() {
        tracing::warn!(pid, "cannot start a reaper thread; smartctl may remain a zombie");
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// Children of this process whose command name is `comm` (zombies included).
    fn children_named(comm: &str) -> Vec<String> {
        let me = std::process::id().to_string();
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid ...
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let name = &stat[open + 1..close];
            let mut rest = stat[close + 1..].split_whitespace();
            let (state, ppid) = (rest.next(), rest.next());
            if name == comm && ppid == Some(me.as_str()) {
                found.push(format!("{} {}", &stat[..open], state.unwrap_or("?")));
            }
        }
        found
    }

    #[test]
    fn timeout_kills_and_reaps_the_child() {
        let runner = SmartctlCommand::new("/bin/sleep");
        let started = Instant::now();
        let result = runner.run(&["5"], Duration::from_millis(200));
        let took = started.elapsed();
        assert_eq!(result, Err(RunError::TimedOut(Duration::from_millis(200))));
        assert!(took >= Duration::from_millis(200), "{took:?}");
        assert!(took < Duration::from_secs(3), "not killed: {took:?}");
        assert_eq!(children_named("sleep"), Vec::<String>::new(), "child left behind");
    }

    #[test]
    fn output_and_exit_code_are_returned() {
        let echo = SmartctlCommand::new("/bin/echo");
        let out = echo.run(&["--json", "-d", "megaraid,4", "/dev/bus/0"], Duration::from_secs(5));
        assert_eq!(
            out,
            Ok(RunOutput { stdout: b"--json -d megaraid,4 /dev/bus/0\n".to_vec(), exit_code: 0 })
        );
        let fail = SmartctlCommand::new("/bin/false").run(&[], Duration::from_secs(5)).unwrap();
        assert_eq!(fail.exit_code, 1);
        assert_eq!(fail.stdout, b"");
    }

    #[test]
    fn missing_binary_is_not_found() {
        let runner = SmartctlCommand::new("/nonexistent/vigil-test/smartctl");
        assert_eq!(runner.run(&["--version"], Duration::from_secs(1)), Err(RunError::NotFound));
    }

    #[test]
    fn non_executable_binary_is_permission_denied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("smartctl");
        std::fs::write(&path, b"not a program").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let runner = SmartctlCommand::new(&path);
        assert_eq!(runner.run(&[], Duration::from_secs(1)), Err(RunError::PermissionDenied));
    }

    /// The installed smartctl (Debian: /usr/sbin/smartctl) answers the scan with JSON the
    /// parser reads; a host without it gets a clean "not found". A VM may list no devices.
    #[test]
    fn real_smartctl_scan_is_parseable_json() {
        let runner = SmartctlCommand::new("/usr/sbin/smartctl");
        match runner.run(&["--json", "--scan-open"], Duration::from_secs(20)) {
            Ok(out) => {
                assert_eq!(out.exit_code, 0, "{}", String::from_utf8_lossy(&out.stdout));
                let devices = super::super::parse_scan(&out.stdout).unwrap();
                for device in devices {
                    assert!(device.name.starts_with("/dev/"), "{device:?}");
                    assert!(!device.device_type.is_empty(), "{device:?}");
                }
            }
            Err(RunError::NotFound) => eprintln!("smartctl not installed; skipped"),
            Err(err) => panic!("{err}"),
        }
    }
}
