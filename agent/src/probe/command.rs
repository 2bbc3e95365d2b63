//! Running an external tool (smartctl, ipmitool), behind a trait so tests serve fixture files
//! instead. When the probes that call one run it is decided by `probe::cadence`, on "now" from
//! [`crate::clock`].
//!
//! [`DirectCommand`] runs the configured binary directly (no shell: every argument is passed as
//! it is), with stdin closed, stdout and stderr read by helper threads (so a large output cannot
//! fill a pipe and stall the child) and `LC_ALL=C` (so messages such as `strerror` texts are not
//! translated and parsers see the documented English). A call that outlives its timeout is
//! killed with SIGKILL and reaped; a child that does not die at once (stuck in an ioctl on a
//! dying disk or a hung BMC) is handed to a thread that reaps it whenever it does, so the probe
//! is never held up and no zombie is left behind.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Runs the tool with `args`, for at most `timeout`.
pub trait CommandRunner: Send {
    fn run(&self, args: &[&str], timeout: Duration) -> Result<RunOutput, RunError>;
}

/// What a finished call printed and how it exited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOutput {
    pub stdout: Vec<u8>,
    /// At most [`MAX_STDERR`] bytes of it (ipmitool says "Could not open device" here).
    pub stderr: Vec<u8>,
    /// The exit status (for smartctl a bit mask, smartctl(8) "EXIT STATUS").
    pub exit_code: i32,
}

/// Why a call produced no output.
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

/// Most stdout kept from one call; smartctl `-a` prints tens of KiB. Beyond this the pipe is
/// closed and the tool ends on EPIPE.
const MAX_OUTPUT: u64 = 16 << 20;
/// Most stderr kept from one call: enough for an error message.
pub const MAX_STDERR: u64 = 64 << 10;
/// How often a running child is checked.
const POLL: Duration = Duration::from_millis(5);
/// How long a killed child gets to disappear before a thread is left to reap it.
const REAP_GRACE: Duration = Duration::from_secs(1);

/// The real runner: spawns `program` directly.
#[derive(Debug, Clone)]
pub struct DirectCommand {
    program: PathBuf,
    /// The program's file name, for messages, logs and thread names.
    name: String,
}

impl DirectCommand {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        let program = program.into();
        let name = program
            .file_name()
            .map_or_else(|| program.display().to_string(), |n| n.to_string_lossy().into_owned());
        Self { program, name }
    }

    /// Starts a thread that reads at most `limit` bytes of `pipe` and sends them on.
    fn read_pipe(
        &self,
        pipe: impl Read + Send + 'static,
        limit: u64,
        what: &str,
    ) -> std::io::Result<mpsc::Receiver<std::io::Result<Vec<u8>>>> {
        let (sender, output) = mpsc::channel();
        std::thread::Builder::new().name(format!("{}-{what}", self.name)).spawn(move || {
            let mut buffer = Vec::new();
            let result = pipe.take(limit).read_to_end(&mut buffer).map(|_| buffer);
            // The receiver is gone only if the call already gave up.
            let _ = sender.send(result);
        })?;
        Ok(output)
    }
}

impl CommandRunner for DirectCommand {
    fn run(&self, args: &[&str], timeout: Duration) -> Result<RunOutput, RunError> {
        let started = Instant::now();
        let name = &self.name;
        let mut child = Command::new(&self.program)
            .args(args)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| match err.kind() {
                std::io::ErrorKind::NotFound => RunError::NotFound,
                std::io::ErrorKind::PermissionDenied => RunError::PermissionDenied,
                _ => RunError::Failed(format!("cannot run {}: {err}", self.program.display())),
            })?;

        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            kill_and_reap(child, name);
            return Err(RunError::Failed("no output pipes".to_owned()));
        };
        let readers = self
            .read_pipe(stdout, MAX_OUTPUT, "stdout")
            .and_then(|out| Ok((out, self.read_pipe(stderr, MAX_STDERR, "stderr")?)));
        let (output, errors) = match readers {
            Ok(readers) => readers,
            Err(err) => {
                kill_and_reap(child, name);
                return Err(RunError::Failed(format!("cannot start output reader: {err}")));
            }
        };

        let deadline = started.checked_add(timeout);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => {}
                Err(err) => {
                    kill_and_reap(child, name);
                    return Err(RunError::Failed(format!("waiting for {name}: {err}")));
                }
            }
            let now = Instant::now();
            let left = deadline.map_or(POLL, |deadline| deadline.saturating_duration_since(now));
            if left.is_zero() {
                kill_and_reap(child, name);
                return Err(RunError::TimedOut(timeout));
            }
            std::thread::sleep(POLL.min(left));
        };

        // The child has exited, so its ends of the pipes are closed unless it passed them on
        // to a process of its own; do not wait past the deadline for that.
        let left = || {
            deadline
                .map_or(REAP_GRACE, |deadline| deadline.saturating_duration_since(Instant::now()))
                .max(POLL)
        };
        let stdout = match output.recv_timeout(left()) {
            Ok(Ok(stdout)) => stdout,
            Ok(Err(err)) => {
                return Err(RunError::Failed(format!("reading {name} output: {err}")));
            }
            Err(_) => return Err(RunError::Failed(format!("{name} output was not closed"))),
        };
        // stderr only explains; a problem reading it loses the explanation, not the output.
        let stderr = errors.recv_timeout(left()).ok().and_then(Result::ok).unwrap_or_default();
        match status.code() {
            Some(exit_code) => Ok(RunOutput { stdout, stderr, exit_code }),
            None => {
                use std::os::unix::process::ExitStatusExt;
                let signal = status.signal().map_or_else(|| "?".to_owned(), |s| s.to_string());
                Err(RunError::Failed(format!("{name} was killed by signal {signal}")))
            }
        }
    }
}

/// SIGKILLs `child` and reaps it: here if it dies within [`REAP_GRACE`], else on a detached
/// thread that waits as long as it takes.
fn kill_and_reap(mut child: Child, name: &str) {
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
    tracing::warn!(pid, program = name, "killed child has not exited yet; reaping it later");
    let spawned = std::thread::Builder::new().name(format!("{name}-reaper")).spawn(move || {
        let _ = child.wait();
    });
    if spawned.is_err() {
        tracing::warn!(pid, program = name, "cannot start a reaper thread; may remain a zombie");
    }
}

/// Test doubles for probes that run a tool: a runner answering command lines from a table and
/// recording every call, and a way to see what they logged.
#[cfg(test)]
pub(crate) mod testing {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::{CommandRunner, RunError, RunOutput};

    /// Answers each command line (args joined by spaces) with a prepared output or error, and
    /// records every call. Every call must be bounded by `expected_timeout`.
    #[derive(Clone)]
    pub(crate) struct FakeRunner {
        tool: &'static str,
        expected_timeout: Duration,
        answers: Arc<Mutex<HashMap<String, Result<RunOutput, RunError>>>>,
        calls: Arc<Mutex<Vec<String>>>,
    }

    impl FakeRunner {
        pub(crate) fn new(tool: &'static str, expected_timeout: Duration) -> Self {
            Self { tool, expected_timeout, answers: Default::default(), calls: Default::default() }
        }
        pub(crate) fn output(&self, command: &str, out: RunOutput) -> &Self {
            self.answers.lock().unwrap().insert(command.to_owned(), Ok(out));
            self
        }
        pub(crate) fn fail(&self, command: &str, err: RunError) -> &Self {
            self.answers.lock().unwrap().insert(command.to_owned(), Err(err));
            self
        }
        pub(crate) fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }
    }

    impl CommandRunner for FakeRunner {
        fn run(&self, args: &[&str], timeout: Duration) -> Result<RunOutput, RunError> {
            assert_eq!(timeout, self.expected_timeout, "every call is bounded by the config");
            let command = args.join(" ");
            self.calls.lock().unwrap().push(command.clone());
            self.answers
                .lock()
                .unwrap()
                .get(&command)
                .cloned()
                .unwrap_or_else(|| panic!("unexpected {} {command}", self.tool))
        }
    }

    /// Collects every log line written while `f` runs on this thread.
    pub(crate) fn logs(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
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
        let runner = DirectCommand::new("/bin/sleep");
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
        let echo = DirectCommand::new("/bin/echo");
        let out = echo.run(&["--json", "-d", "megaraid,4", "/dev/bus/0"], Duration::from_secs(5));
        assert_eq!(
            out,
            Ok(RunOutput {
                stdout: b"--json -d megaraid,4 /dev/bus/0\n".to_vec(),
                stderr: Vec::new(),
                exit_code: 0
            })
        );
        let fail = DirectCommand::new("/bin/false").run(&[], Duration::from_secs(5)).unwrap();
        assert_eq!(fail.exit_code, 1);
        assert_eq!(fail.stdout, b"");
    }

    #[test]
    fn stderr_is_kept_apart_from_stdout() {
        let sh = DirectCommand::new("/bin/sh");
        let out =
            sh.run(&["-c", "echo out; echo err >&2; exit 3"], Duration::from_secs(5)).unwrap();
        assert_eq!(
            out,
            RunOutput { stdout: b"out\n".to_vec(), stderr: b"err\n".to_vec(), exit_code: 3 }
        );
    }

    #[test]
    fn missing_binary_is_not_found() {
        let runner = DirectCommand::new("/nonexistent/vigil-test/smartctl");
        assert_eq!(runner.run(&["--version"], Duration::from_secs(1)), Err(RunError::NotFound));
    }

    #[test]
    fn non_executable_binary_is_permission_denied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("smartctl");
        std::fs::write(&path, b"not a program").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let runner = DirectCommand::new(&path);
        assert_eq!(runner.run(&[], Duration::from_secs(1)), Err(RunError::PermissionDenied));
    }
}
