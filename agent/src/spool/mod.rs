//! The spool: every report the collector has not yet acknowledged, kept so that nothing is lost
//! while the collector is unreachable or the agent restarts, and replayed in `seq` order.
//!
//! On disk it is one file per report, `spool/v2/<seq>.rec`, in the checked [`record`] format,
//! written atomically (temporary file, fsync, rename, directory fsync) before the report is
//! sent and deleted once a cumulative Ack covers it. A record that fails any check (length,
//! checksum, seq against its name and its report) is moved to `spool/quarantine/`, counted and
//! reported; it never stops the agent. Leftover temporary files are removed at start, and the
//! reports of the older `spool/v1/` layout are carried over.
//!
//! The spool never fails its caller. When the state directory cannot be written (disk full,
//! I/O error, read-only), reports are held in a bounded in-memory spool instead, the condition
//! is reported with every report, and each new report tries the disk again: once a write
//! succeeds, what memory holds goes back to disk.
//!
//! Bounded by count and by bytes: when full, the oldest reports go first, and the number
//! dropped is kept (in `spool/counters`) and sent to the collector ahead of the backlog.

pub mod record;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prost::Message;
use vigil_proto::v1::{Report, SpoolStatus};

use crate::state::write_atomic;
use record::RecordError;

/// How many quarantined files are kept for a person to look at; older ones are deleted.
const QUARANTINE_KEEP: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolLimits {
    pub max_reports: usize,
    pub max_bytes: u64,
    /// Bound of the in-memory spool used while the disk cannot be written.
    pub max_memory_bytes: u64,
}

#[derive(Debug)]
enum Location {
    Disk,
    /// The framed record, held while the disk cannot be written.
    Memory(Vec<u8>),
}

#[derive(Debug)]
struct Entry {
    size: u64,
    location: Location,
}

/// What [`Spool::read`] found.
#[derive(Debug)]
pub enum Read {
    Report(Box<Report>),
    /// Not spooled (acknowledged or dropped meanwhile), or quarantined just now.
    Gone,
}

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    quarantine_dir: PathBuf,
    counters_path: PathBuf,
    entries: BTreeMap<u64, Entry>,
    bytes: u64,
    memory_bytes: u64,
    limits: SpoolLimits,
    dropped_total: u64,
    quarantined_total: u64,
    /// Why the disk cannot be written, while it cannot.
    disk_error: Option<String>,
}

impl Spool {
    /// Opens the spool under `state_dir`: cleans up, carries over the v1 layout, checks every
    /// record's frame and indexes what is left. Never fails: a directory that cannot be read or
    /// created leaves the spool in memory.
    pub fn open(state_dir: &Path, limits: SpoolLimits) -> Self {
        let root = state_dir.join("spool");
        let mut spool = Self {
            dir: root.join("v2"),
            quarantine_dir: root.join("quarantine"),
            counters_path: root.join("counters"),
            entries: BTreeMap::new(),
            bytes: 0,
            memory_bytes: 0,
            limits: SpoolLimits {
                max_reports: limits.max_reports.max(1),
                max_bytes: limits.max_bytes.max(1),
                max_memory_bytes: limits.max_memory_bytes.max(1),
            },
            dropped_total: 0,
            quarantined_total: 0,
            disk_error: None,
        };
        spool.load_counters();
        if let Err(err) = std::fs::create_dir_all(&spool.dir) {
            spool.disk_failed(&err);
            return spool;
        }
        spool.migrate_v1(&root.join("v1"));
        spool.index();
        spool.enforce_limits();
        spool
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.rec"))
    }

    fn load_counters(&mut self) {
        let Ok(text) = std::fs::read_to_string(&self.counters_path) else { return };
        for line in text.lines() {
            let mut kv = line.splitn(2, '=');
            let (Some(key), Some(value)) = (kv.next(), kv.next()) else { continue };
            let Ok(value) = value.trim().parse::<u64>() else { continue };
            match key.trim() {
                "dropped_total" => self.dropped_total = value,
                "quarantined_total" => self.quarantined_total = value,
                _ => {}
            }
        }
    }

    fn save_counters(&self) {
        let text = format!(
            "dropped_total={}\nquarantined_total={}\n",
            self.dropped_total, self.quarantined_total
        );
        if let Err(err) = write_atomic(&self.counters_path, text.as_bytes()) {
            tracing::debug!(error = %err, "spool counters not saved");
        }
    }

    /// Reports of the v1 layout (`spool/v1/<seq>.pb`, unframed) become v2 records.
    fn migrate_v1(&mut self, v1: &Path) {
        let Ok(dir) = std::fs::read_dir(v1) else { return };
        let mut moved = 0;
        for entry in dir.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let seq = name.strip_suffix(".pb").and_then(|s| s.parse::<u64>().ok());
            let report = std::fs::read(&path)
                .ok()
                .and_then(|bytes| Report::decode(bytes.as_slice()).ok())
                .filter(|r| Some(r.seq) == seq && r.seq > 0);
            match report {
                Some(report) => {
                    if write_atomic(&self.path(report.seq), &record::encode(&report)).is_ok() {
                        let _ = std::fs::remove_file(&path);
                        moved += 1;
                    }
                }
                None => self.quarantine_path(&path, &name, "v1-unreadable"),
            }
        }
        let _ = std::fs::remove_dir(v1);
        if moved > 0 {
            tracing::info!(reports = moved, "spool carried over from the v1 layout");
        }
    }

    /// Indexes the records on disk, checking each frame; quarantines what fails.
    fn index(&mut self) {
        let dir = match std::fs::read_dir(&self.dir) {
            Ok(dir) => dir,
            Err(err) => {
                self.disk_failed(&err);
                return;
            }
        };
        for entry in dir.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                // A write cut short: its report was never sent (the rename comes first).
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let seq = name.strip_suffix(".rec").and_then(|s| s.parse::<u64>().ok());
            let checked = match (seq, entry.file_type()) {
                (None, _) => Err("unexpected-name".to_owned()),
                (Some(_), Ok(t)) if !t.is_file() => Err("not-a-file".to_owned()),
                (Some(seq), _) => match std::fs::read(&path) {
                    Err(err) => Err(format!("unreadable: {err}")),
                    Ok(bytes) => match record::check(&bytes) {
                        Ok(h) if h.seq == seq => Ok((seq, bytes.len() as u64)),
                        Ok(h) => Err(RecordError::SeqMismatch {
                            header: h.seq,
                            what: "file name",
                            other: seq,
                        }
                        .kind()
                        .to_owned()),
                        Err(err) => Err(err.kind().to_owned()),
                    },
                },
            };
            match checked {
                Ok((seq, size)) => {
                    self.entries.insert(seq, Entry { size, location: Location::Disk });
                    self.bytes += size;
                }
                Err(reason) => {
                    tracing::error!(file = %path.display(), reason, "damaged spool record quarantined");
                    self.quarantine_path(&path, &name, reason.split(':').next().unwrap_or("bad"));
                }
            }
        }
    }

    /// Moves `path` aside into the quarantine directory and counts it.
    fn quarantine_path(&mut self, path: &Path, name: &str, reason: &str) {
        self.quarantined_total += 1;
        let moved = std::fs::create_dir_all(&self.quarantine_dir).is_ok() && {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0);
            let target = self.quarantine_dir.join(format!("{stamp}-{reason}-{name}"));
            std::fs::rename(path, target).is_ok()
        };
        if !moved {
            // Cannot keep it for inspection; it must not be read again either.
            let _ = std::fs::remove_file(path).or_else(|_| std::fs::remove_dir_all(path));
        }
        self.prune_quarantine();
        self.save_counters();
    }

    fn prune_quarantine(&self) {
        let Ok(dir) = std::fs::read_dir(&self.quarantine_dir) else { return };
        let mut names: Vec<_> = dir.flatten().map(|e| e.path()).collect();
        if names.len() <= QUARANTINE_KEEP {
            return;
        }
        names.sort();
        for path in &names[..names.len() - QUARANTINE_KEEP] {
            let _ = std::fs::remove_file(path).or_else(|_| std::fs::remove_dir_all(path));
        }
    }

    fn disk_failed(&mut self, err: &std::io::Error) {
        if self.disk_error.is_none() {
            tracing::error!(
                dir = %self.dir.display(),
                error = %err,
                "the state directory cannot be written; holding reports in memory (at most {} \
                 bytes) until it can",
                self.limits.max_memory_bytes
            );
        }
        self.disk_error = Some(err.to_string());
    }

    /// Writes one record to disk; on success after a failure, moves what memory holds back.
    fn write_disk(&mut self, seq: u64, framed: &[u8]) -> Result<(), std::io::Error> {
        std::fs::create_dir_all(&self.dir)?;
        write_atomic(&self.path(seq), framed)?;
        if let Some(error) = self.disk_error.take() {
            tracing::info!(
                previous_error = error,
                "the state directory can be written again; spooling to disk"
            );
            let held: Vec<u64> = self
                .entries
                .iter()
                .filter(|(_, e)| matches!(e.location, Location::Memory(_)))
                .map(|(seq, _)| *seq)
                .collect();
            for held_seq in held {
                let entry = self.entries.get_mut(&held_seq).expect("listed");
                let Location::Memory(bytes) = &entry.location else { continue };
                let path = self.dir.join(format!("{held_seq:020}.rec"));
                if write_atomic(&path, bytes).is_err() {
                    break;
                }
                self.memory_bytes -= entry.size;
                entry.location = Location::Disk;
            }
            self.save_counters();
        }
        Ok(())
    }

    /// Stores one report (already numbered). Returns how many old reports were dropped to
    /// make room. Never fails: without a writable disk the report is held in memory.
    pub fn push(&mut self, report: &Report) -> u64 {
        let seq = report.seq;
        let framed = record::encode(report);
        let size = framed.len() as u64;
        self.remove(seq);
        let location = match self.write_disk(seq, &framed) {
            Ok(()) => Location::Disk,
            Err(err) => {
                self.disk_failed(&err);
                self.memory_bytes += size;
                Location::Memory(framed)
            }
        };
        self.entries.insert(seq, Entry { size, location });
        self.bytes += size;
        self.enforce_limits()
    }

    fn enforce_limits(&mut self) -> u64 {
        let mut dropped = 0;
        while self.entries.len() > self.limits.max_reports
            || self.bytes > self.limits.max_bytes
            || self.memory_bytes > self.limits.max_memory_bytes
        {
            let victim = if self.memory_bytes > self.limits.max_memory_bytes {
                self.entries
                    .iter()
                    .find(|(_, e)| matches!(e.location, Location::Memory(_)))
                    .map(|(s, _)| *s)
            } else {
                self.entries.keys().next().copied()
            };
            let Some(victim) = victim else { break };
            self.remove(victim);
            dropped += 1;
        }
        if dropped > 0 {
            self.dropped_total += dropped;
            self.save_counters();
        }
        dropped
    }

    fn remove(&mut self, seq: u64) -> Option<Entry> {
        let entry = self.entries.remove(&seq)?;
        self.bytes -= entry.size;
        match entry.location {
            Location::Disk => {
                let _ = std::fs::remove_file(self.path(seq));
            }
            Location::Memory(_) => self.memory_bytes -= entry.size,
        }
        Some(entry)
    }

    /// Reads and fully checks one spooled report. A record that fails is quarantined (and
    /// counted), and the caller goes on with the next.
    pub fn read(&mut self, seq: u64) -> Read {
        let Some(entry) = self.entries.get(&seq) else { return Read::Gone };
        let path = self.path(seq);
        let bytes = match &entry.location {
            Location::Memory(bytes) => Ok(std::borrow::Cow::Borrowed(bytes.as_slice())),
            Location::Disk => std::fs::read(&path).map(std::borrow::Cow::Owned),
        };
        let result = match bytes {
            Ok(bytes) => record::decode(&bytes, seq).map_err(|e| (e.kind(), e.to_string())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                self.remove(seq);
                tracing::warn!(seq, "spooled report vanished from disk");
                return Read::Gone;
            }
            Err(err) => Err(("unreadable", err.to_string())),
        };
        match result {
            Ok(report) => Read::Report(Box::new(report)),
            Err((kind, detail)) => {
                tracing::error!(
                    seq,
                    reason = detail,
                    "damaged spool record quarantined; going on with the next"
                );
                self.quarantine(seq, kind);
                Read::Gone
            }
        }
    }

    /// Moves one report aside: damaged, or refused by the collector as invalid for good.
    pub fn quarantine(&mut self, seq: u64, reason: &str) {
        let Some(entry) = self.entries.remove(&seq) else { return };
        self.bytes -= entry.size;
        match entry.location {
            Location::Disk => {
                let path = self.path(seq);
                self.quarantine_path(&path, &format!("{seq:020}.rec"), reason);
            }
            Location::Memory(_) => {
                self.memory_bytes -= entry.size;
                self.quarantined_total += 1;
                self.save_counters();
            }
        }
    }

    /// Deletes every report with seq <= `seq` (a cumulative acknowledgement).
    pub fn ack(&mut self, seq: u64) {
        while let Some((&first, _)) = self.entries.first_key_value() {
            if first > seq {
                break;
            }
            self.remove(first);
        }
    }

    /// Takes every spooled report out (checked; damaged ones are quarantined), oldest first:
    /// for renumbering them under a new instance.
    pub fn take_all(&mut self) -> Vec<Report> {
        let seqs: Vec<u64> = self.entries.keys().copied().collect();
        let mut reports = Vec::with_capacity(seqs.len());
        for seq in seqs {
            if let Read::Report(report) = self.read(seq) {
                reports.push(*report);
            }
            self.remove(seq);
        }
        reports
    }

    /// The first spooled seq greater than `after`.
    pub fn next_after(&self, after: u64) -> Option<u64> {
        let from = after.checked_add(1)?;
        self.entries.range(from..).next().map(|(s, _)| *s)
    }

    pub fn first(&self) -> Option<u64> {
        self.entries.keys().next().copied()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn max_seq(&self) -> u64 {
        self.entries.keys().next_back().copied().unwrap_or(0)
    }

    /// Reports dropped because the spool was full, since the state directory was created.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }

    pub fn quarantined_total(&self) -> u64 {
        self.quarantined_total
    }

    /// Why the disk cannot be written, while reports are held in memory.
    pub fn disk_error(&self) -> Option<&str> {
        self.disk_error.as_deref()
    }

    /// The spool's state as the collector is told it.
    pub fn status(&self) -> SpoolStatus {
        SpoolStatus {
            dropped_total: self.dropped_total,
            quarantined_total: self.quarantined_total,
            in_memory: self.disk_error.is_some(),
            disk_error: self.disk_error.clone().unwrap_or_default(),
            spooled_reports: self.entries.len() as u64,
            spooled_bytes: self.bytes,
        }
    }
}

#[cfg(test)]
mod tests;
