//! The agent's durable identity in its state directory: the `instance` UUID, born together with
//! the directory, and the last assigned report sequence number (`seq`). A sequence number is
//! never reused within an instance: it is persisted before the report that carries it leaves
//! the process, and if the stored number is lost while the instance survives, the agent starts
//! a new instance rather than risk the collector mistaking new reports for old duplicates.

use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state directory {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io { path: path.to_owned(), source }
}

/// Writes `contents` to `path` atomically and durably: temporary file, fsync, rename, then an
/// fsync of the directory, so that after a power cut the file is either the old or the new one.
/// A failed write leaves no temporary file behind.
pub fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Makes a rename or a new file in `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Overwrites a small file in place (same length, no new blocks): how the seq is kept when the
/// disk is too full for a temporary file. Its few bytes sit in one sector.
fn overwrite_in_place(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
    if file.metadata()?.len() != contents.len() as u64 {
        return Err(std::io::Error::other("length differs; cannot overwrite in place"));
    }
    file.write_all(contents)?;
    file.sync_all()
}

/// Removes temporary files a write cut short left in `dir`.
fn remove_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().ends_with(".tmp") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[derive(Debug)]
pub struct AgentState {
    dir: PathBuf,
    instance: String,
    seq: u64,
    /// Whether this start created the instance (new or wiped state directory).
    pub created: bool,
    persist_failed: bool,
}

impl AgentState {
    /// Opens (creating if needed) the state directory. `spooled_max_seq` is the highest seq
    /// still in the spool, so a lost `seq` file can be recovered from it.
    pub fn open(dir: &Path, spooled_max_seq: u64) -> Result<Self, StateError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        remove_leftovers(dir);
        let instance_path = dir.join("instance");
        let seq_path = dir.join("seq");
        let existing = std::fs::read_to_string(&instance_path)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| uuid::Uuid::parse_str(s).is_ok());
        let stored_seq =
            std::fs::read_to_string(&seq_path).ok().and_then(|s| s.trim().parse::<u64>().ok());

        let (instance, seq, created) = match (existing, stored_seq) {
            (Some(instance), Some(seq)) => (instance, seq.max(spooled_max_seq), false),
            (Some(old), None) if spooled_max_seq > 0 => (old, spooled_max_seq, false),
            (existing, _) => {
                if let Some(old) = existing {
                    tracing::warn!(
                        old_instance = %old,
                        "the seq file is missing or unreadable; starting a new agent instance so \
                         no report can be mistaken for an old one"
                    );
                }
                (uuid::Uuid::new_v4().to_string(), 0, true)
            }
        };
        let state = Self { dir: dir.to_owned(), instance, seq, created, persist_failed: false };
        if created {
            // The seq file first: an instance file without it would mean "seq lost".
            state.persist_seq(0)?;
            write_atomic(&instance_path, format!("{}\n", state.instance).as_bytes())
                .map_err(io(&instance_path))?;
        }
        Ok(state)
    }

    /// Begins a new instance (new UUID, seq 0) keeping the host's identity: the old one is
    /// compromised (its seqs were reused, or the collector holds more of it than this state
    /// directory remembers). Returns the old instance.
    pub fn start_new_instance(&mut self) -> String {
        let old = std::mem::replace(&mut self.instance, uuid::Uuid::new_v4().to_string());
        self.seq = 0;
        self.created = true;
        let instance_path = self.dir.join("instance");
        let written = self.persist_seq(0).and_then(|()| {
            write_atomic(&instance_path, format!("{}\n", self.instance).as_bytes())
                .map_err(io(&instance_path))
        });
        if let Err(err) = written {
            tracing::error!(error = %err, "the new instance cannot be persisted; going on");
        }
        old
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The last assigned sequence number (0 before the first report).
    pub fn last_seq(&self) -> u64 {
        self.seq
    }

    /// Moves the seq forward to `seq` (never back): the collector holds seqs up to it that this
    /// state directory does not remember.
    pub fn skip_to(&mut self, seq: u64) {
        if seq > self.seq {
            self.seq = seq - 1;
            self.next_seq();
        }
    }

    /// Assigns and persists the next sequence number. Never fails: a seq that cannot be
    /// persisted (the state directory unwritable even in place) is still used, and the failure
    /// is logged once; should the agent then restart with an older seq, the collector's Welcome
    /// tells it, and it starts a new instance rather than reuse a seq.
    pub fn next_seq(&mut self) -> u64 {
        let next = self.seq + 1;
        match self.persist_seq(next) {
            Ok(()) if self.persist_failed => {
                self.persist_failed = false;
                tracing::info!(seq = next, "the seq is persisted again");
            }
            Ok(()) => {}
            Err(err) if !self.persist_failed => {
                self.persist_failed = true;
                tracing::error!(seq = next, error = %err, "the seq cannot be persisted; going on");
            }
            Err(_) => {}
        }
        self.seq = next;
        next
    }

    /// Writes the seq, fixed-width so that a full disk can still take it in place.
    fn persist_seq(&self, seq: u64) -> Result<(), StateError> {
        let path = self.dir.join("seq");
        let text = format!("{seq:020}\n");
        write_atomic(&path, text.as_bytes())
            .or_else(|err| overwrite_in_place(&path, text.as_bytes()).map_err(|_| err))
            .map_err(io(&path))
    }

    /// See [`fallback_machine_id`].
    pub fn fallback_machine_id(&self) -> Result<String, StateError> {
        fallback_machine_id(&self.dir)
    }
}

/// A stable machine ID for hosts without /etc/machine-id (shown to operators to tell machines
/// apart, never identity): generated once and kept in the state directory `dir`.
pub fn fallback_machine_id(dir: &Path) -> Result<String, StateError> {
    let path = dir.join("machine-id");
    if let Some(id) = std::fs::read_to_string(&path).ok().map(|s| s.trim().to_owned())
        && !id.is_empty()
    {
        return Ok(id);
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    write_atomic(&path, format!("{id}\n").as_bytes()).map_err(io(&path))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_survives_restart_and_instance_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = AgentState::open(dir.path(), 0).unwrap();
        assert!(s.created);
        assert_eq!(s.next_seq(), 1);
        assert_eq!(s.next_seq(), 2);
        let instance = s.instance().to_owned();
        let mut again = AgentState::open(dir.path(), 0).unwrap();
        assert!(!again.created);
        assert_eq!(again.instance(), instance);
        assert_eq!(again.next_seq(), 3);
    }

    #[test]
    fn wiped_directory_is_a_new_instance() {
        let dir = tempfile::tempdir().unwrap();
        let first = AgentState::open(dir.path(), 0).unwrap().instance().to_owned();
        std::fs::remove_dir_all(dir.path()).unwrap();
        let second = AgentState::open(dir.path(), 0).unwrap();
        assert!(second.created);
        assert_ne!(second.instance(), first);
        assert_eq!(second.last_seq(), 0);
    }

    #[test]
    fn lost_seq_file_recovers_from_spool_or_starts_new_instance() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = AgentState::open(dir.path(), 0).unwrap();
        s.next_seq();
        let instance = s.instance().to_owned();
        std::fs::remove_file(dir.path().join("seq")).unwrap();
        let recovered = AgentState::open(dir.path(), 7).unwrap();
        assert_eq!((recovered.instance(), recovered.last_seq()), (instance.as_str(), 7));
        std::fs::write(dir.path().join("seq"), "garbage").unwrap();
        let fresh = AgentState::open(dir.path(), 0).unwrap();
        assert!(fresh.created);
        assert_ne!(fresh.instance(), instance);
    }
}
