//! The spool: every report the collector has not yet acknowledged, kept on disk so nothing is
//! lost while the collector is unreachable or the agent restarts, and replayed in `seq` order.
//! One file per report, `spool/v1/<seq>.pb`, holding the encoded `vigil.v1.Report`; written
//! atomically before the report is sent, deleted once a cumulative Ack covers it. The spool is
//! bounded: when full, the oldest report is dropped and that loss is logged.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::state::write_atomic;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    seqs: BTreeSet<u64>,
    max_reports: usize,
    dropped: u64,
}

impl Spool {
    /// Opens the spool under `state_dir`, indexing what an earlier run left behind.
    pub fn open(state_dir: &Path, max_reports: usize) -> Result<Self, SpoolError> {
        let dir = state_dir.join("spool").join("v1");
        let err = |source| SpoolError::Io { path: dir.clone(), source };
        std::fs::create_dir_all(&dir).map_err(err)?;
        let mut seqs = BTreeSet::new();
        for entry in std::fs::read_dir(&dir).map_err(err)? {
            let name = entry.map_err(err)?.file_name();
            let name = name.to_string_lossy();
            if let Some(seq) = name.strip_suffix(".pb").and_then(|s| s.parse::<u64>().ok()) {
                seqs.insert(seq);
            }
        }
        Ok(Self { dir, seqs, max_reports: max_reports.max(1), dropped: 0 })
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.pb"))
    }

    /// Stores one encoded report. Returns how many old reports were dropped to make room.
    pub fn push(&mut self, seq: u64, encoded: &[u8]) -> Result<u64, SpoolError> {
        let path = self.path(seq);
        write_atomic(&path, encoded).map_err(|source| SpoolError::Io { path, source })?;
        self.seqs.insert(seq);
        let mut dropped = 0;
        while self.seqs.len() > self.max_reports {
            let Some(oldest) = self.seqs.pop_first() else { break };
            let _ = std::fs::remove_file(self.path(oldest));
            dropped += 1;
        }
        self.dropped += dropped;
        Ok(dropped)
    }

    /// Reads one spooled report, or `None` when it is no longer spooled.
    pub fn read(&self, seq: u64) -> Result<Option<Vec<u8>>, SpoolError> {
        if !self.seqs.contains(&seq) {
            return Ok(None);
        }
        let path = self.path(seq);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(SpoolError::Io { path, source }),
        }
    }

    /// Forgets a report that can never be sent (rejected by the collector as invalid).
    pub fn discard(&mut self, seq: u64) {
        if self.seqs.remove(&seq) {
            let _ = std::fs::remove_file(self.path(seq));
        }
    }

    /// Deletes every report with seq <= `seq` (a cumulative acknowledgement).
    pub fn ack(&mut self, seq: u64) {
        while let Some(&first) = self.seqs.first() {
            if first > seq {
                break;
            }
            self.seqs.pop_first();
            let _ = std::fs::remove_file(self.path(first));
        }
    }

    /// The first spooled seq greater than `after`.
    pub fn next_after(&self, after: u64) -> Option<u64> {
        let from = after.checked_add(1)?;
        self.seqs.range(from..).next().copied()
    }

    pub fn len(&self) -> usize {
        self.seqs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }

    pub fn max_seq(&self) -> u64 {
        self.seqs.last().copied().unwrap_or(0)
    }

    /// Reports dropped because the spool was full, since this process started.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_in_order_and_acks_cumulatively() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 10).unwrap();
        for seq in [3, 1, 2] {
            spool.push(seq, &[seq as u8]).unwrap();
        }
        assert_eq!(spool.next_after(0), Some(1));
        assert_eq!(spool.next_after(1), Some(2));
        assert_eq!(spool.read(2).unwrap(), Some(vec![2]));
        spool.ack(2);
        assert_eq!(spool.next_after(0), Some(3));
        assert_eq!(spool.read(1).unwrap(), None);
        assert_eq!(spool.len(), 1);
    }

    #[test]
    fn survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 10).unwrap();
        spool.push(41, b"a").unwrap();
        spool.push(42, b"b").unwrap();
        drop(spool);
        let spool = Spool::open(dir.path(), 10).unwrap();
        assert_eq!(spool.max_seq(), 42);
        assert_eq!(spool.read(41).unwrap(), Some(b"a".to_vec()));
    }

    #[test]
    fn full_spool_drops_oldest_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 2).unwrap();
        spool.push(1, b"1").unwrap();
        spool.push(2, b"2").unwrap();
        assert_eq!(spool.push(3, b"3").unwrap(), 1);
        assert_eq!(spool.next_after(0), Some(2));
        assert_eq!(spool.dropped(), 1);
    }
}
