//! The spool: every report the collector has not yet acknowledged, kept so that nothing is lost
//! while the collector is unreachable or the agent restarts, and replayed in `seq` order.
//!
//! On disk it is an append-only log in segments, `spool/v2/<n>.seg` of about 1 MiB each, holding
//! reports back to back in the checked [`record`] format. A report is appended and fdatasync'd
//! before it is sent; a new segment is created with an fsync of the directory. What the
//! collector acknowledged is dropped from the index, the highest acknowledged seq is kept in
//! `spool/acked` (so a restart does not send it again), and a segment is deleted once nothing
//! in it is waiting. A start reads every segment sequentially and checks every record's frame
//! (length, checksum); a record that fails a check, or the full check (decompression, decoding,
//! seq) when it is read for sending, is copied to `spool/quarantine/`, counted and reported,
//! and the scan resumes at the next intact record. A write cut short by a crash at the tail is
//! quarantined the same way and cut off. Nothing here ever stops the agent.
//!
//! The spool never fails its caller. When the state directory cannot be written (disk full,
//! I/O error, read-only), reports are held in a bounded in-memory spool instead, the condition
//! is reported with every report, and each new report tries the disk again: once a write
//! succeeds, what memory holds goes back to disk.
//!
//! Bounded by count and by bytes of waiting reports (the disk holds at most one segment more):
//! when full, the oldest reports go first, and the number dropped is kept (in `spool/counters`)
//! and sent to the collector ahead of the backlog. Reports of the older `spool/v1/` layout (one
//! file per report) are carried over at start.

pub mod record;

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use prost::Message;
use vigil_proto::v1::{Report, SpoolStatus};

use crate::state::{overwrite_in_place, sync_dir, write_atomic};

/// A segment takes appends until it is this long.
const SEGMENT_BYTES: u64 = 1 << 20;
/// After a failed write, the disk is tried again only once it has this much room: a nearly
/// full filesystem still takes appends that fit its last block, and the agent would go back
/// and forth with every report.
const ROOM_TO_RETURN: u64 = 2 * SEGMENT_BYTES;
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
    Segment {
        id: u64,
        offset: u64,
    },
    /// The framed record, held while the disk cannot be written.
    Memory(Vec<u8>),
}

#[derive(Debug)]
struct Entry {
    size: u64,
    location: Location,
}

#[derive(Debug)]
struct Segment {
    file: File,
    len: u64,
    /// Records of this segment still waiting.
    live: usize,
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
    acked_path: PathBuf,
    entries: BTreeMap<u64, Entry>,
    segments: BTreeMap<u64, Segment>,
    /// The segment appends go to.
    current: Option<u64>,
    bytes: u64,
    memory_bytes: u64,
    limits: SpoolLimits,
    dropped_total: u64,
    quarantined_total: u64,
    /// Why the disk cannot be written, while it cannot.
    disk_error: Option<String>,
    /// The highest acknowledged seq and the instance it belongs to, as last saved.
    acked: (String, u64),
    /// For the crash tests only: pause this long in the middle of each append
    /// (`VIGIL_TEST_SPOOL_WRITE_PAUSE_MS`), so a kill can land inside one.
    test_pause: Option<std::time::Duration>,
}

impl Spool {
    /// Opens the spool under `state_dir`: scans and checks every segment, carries over the v1
    /// layout, and indexes what waits. Never fails: a directory that cannot be read or created
    /// leaves the spool in memory. Call [`Spool::bind_instance`] next.
    pub fn open(state_dir: &Path, limits: SpoolLimits) -> Self {
        let root = state_dir.join("spool");
        let mut spool = Self {
            dir: root.join("v2"),
            quarantine_dir: root.join("quarantine"),
            counters_path: root.join("counters"),
            acked_path: root.join("acked"),
            entries: BTreeMap::new(),
            segments: BTreeMap::new(),
            current: None,
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
            acked: (String::new(), 0),
            test_pause: std::env::var("VIGIL_TEST_SPOOL_WRITE_PAUSE_MS")
                .ok()
                .and_then(|ms| ms.parse().ok())
                .map(std::time::Duration::from_millis),
        };
        spool.load_counters();
        if let Err(err) = std::fs::create_dir_all(&spool.dir) {
            spool.disk_failed(&err);
            return spool;
        }
        spool.index();
        spool.migrate_v1(&root.join("v1"));
        spool
    }

    /// Tells the spool which instance numbers the reports. The saved acknowledgement drops
    /// what was acknowledged. When it belongs to another instance (the agent began a new one),
    /// the other instance's unacknowledged reports are taken out and returned, for the caller
    /// to renumber under the new one: seqs start over.
    pub fn bind_instance(&mut self, instance: &str) -> Vec<Report> {
        let (saved, seq) = self.acked.clone();
        self.ack_index(seq);
        // No instance saved yet (a new spool, or one carried over from v1): it is this one's.
        let same = saved.is_empty() || saved == instance;
        let held = if same { Vec::new() } else { self.take_all() };
        if saved != instance {
            self.save_acked(instance, if same { seq } else { 0 }, true);
        }
        self.enforce_limits();
        held
    }

    fn load_counters(&mut self) {
        if let Ok(text) = std::fs::read_to_string(&self.counters_path) {
            for line in text.lines() {
                let Some((key, value)) = line.split_once('=') else { continue };
                let Ok(value) = value.trim().parse::<u64>() else { continue };
                match key.trim() {
                    "dropped_total" => self.dropped_total = value,
                    "quarantined_total" => self.quarantined_total = value,
                    _ => {}
                }
            }
        }
        if let Ok(text) = std::fs::read_to_string(&self.acked_path)
            && let Some((instance, seq)) = text.trim().split_once(' ')
            && let Ok(seq) = seq.parse::<u64>()
        {
            self.acked = (instance.to_owned(), seq);
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

    /// Keeps the acknowledgement. Lazily by default (after a crash an older one only means
    /// some reports are sent again, and the collector knows them); `durable` when seqs start
    /// over, where an old value would hide new reports.
    fn save_acked(&mut self, instance: &str, seq: u64, durable: bool) {
        self.acked = (instance.to_owned(), seq);
        // Fixed width, so that a full disk can still take it in place.
        let text = format!("{instance} {seq:020}\n");
        let saved = if durable {
            write_atomic(&self.acked_path, text.as_bytes())
        } else {
            let tmp = self.acked_path.with_extension("tmp");
            std::fs::write(&tmp, &text).and_then(|()| std::fs::rename(&tmp, &self.acked_path))
        }
        .or_else(|err| {
            let _ = std::fs::remove_file(self.acked_path.with_extension("tmp"));
            overwrite_in_place(&self.acked_path, text.as_bytes()).map_err(|_| err)
        });
        if let Err(err) = saved {
            tracing::debug!(error = %err, "spool acknowledgement not saved");
        }
    }

    /// Reports of the v1 layout (`spool/v1/<seq>.pb`, unframed) are appended to the log.
    fn migrate_v1(&mut self, v1: &Path) {
        let Ok(dir) = std::fs::read_dir(v1) else { return };
        let mut moved = 0;
        let mut files: Vec<_> = dir.flatten().collect();
        files.sort_by_key(|e| e.file_name());
        for entry in files {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let seq = name.strip_suffix(".pb").and_then(|s| s.parse::<u64>().ok());
            let report = std::fs::read(&path)
                .ok()
                .and_then(|bytes| Report::decode(bytes.as_slice()).ok())
                .filter(|r| Some(r.seq) == seq && r.seq > 0);
            match report {
                Some(report) => {
                    self.push(&report);
                    if self.disk_error.is_none() {
                        let _ = std::fs::remove_file(&path);
                        moved += 1;
                    }
                }
                None => self.quarantine_file(&path, &name, "v1-unreadable"),
            }
        }
        let _ = std::fs::remove_dir(v1);
        if moved > 0 {
            tracing::info!(reports = moved, "spool carried over from the v1 layout");
        }
    }

    /// Scans every segment in order, checking each record's frame.
    fn index(&mut self) {
        let dir = match std::fs::read_dir(&self.dir) {
            Ok(dir) => dir,
            Err(err) => {
                self.disk_failed(&err);
                return;
            }
        };
        let mut segments = Vec::new();
        for entry in dir.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let id = name.strip_suffix(".seg").and_then(|s| s.parse::<u64>().ok());
            match (id, entry.file_type()) {
                (Some(id), Ok(t)) if t.is_file() => segments.push((id, path)),
                (None, _) => self.quarantine_file(&path, &name, "unexpected-name"),
                _ => self.quarantine_file(&path, &name, "not-a-file"),
            }
        }
        segments.sort();
        let last = segments.last().map(|(id, _)| *id);
        for (id, path) in segments {
            self.scan(id, &path, Some(id) == last);
        }
        self.current = last.filter(|id| self.segments.contains_key(id));
    }

    fn scan(&mut self, id: u64, path: &Path, last: bool) {
        let opened = std::fs::OpenOptions::new().read(true).write(true).open(path);
        let (file, bytes) = match opened.and_then(|f| std::fs::read(path).map(|b| (f, b))) {
            Ok(ok) => ok,
            Err(err) => {
                let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
                tracing::error!(segment = %path.display(), error = %err, "unreadable spool segment quarantined");
                self.quarantine_file(path, &name, "unreadable");
                return;
            }
        };
        let mut len = bytes.len() as u64;
        let mut at = 0;
        let mut live = 0;
        // Whether the file holds bytes no index entry points at (damage, or a seq written
        // again), which a compaction then removes.
        let mut dead_bytes = false;
        while at < bytes.len() {
            match record::check_prefix(&bytes[at..]) {
                Ok((header, size)) => {
                    if let Some(old) = self.entries.insert(
                        header.seq,
                        Entry {
                            size: size as u64,
                            location: Location::Segment { id, offset: at as u64 },
                        },
                    ) {
                        // The seq again (renumbered reports after an older copy): the later
                        // one counts.
                        self.bytes -= old.size;
                        dead_bytes = true;
                        if let Location::Segment { id: old_id, .. } = old.location {
                            if old_id == id {
                                live -= 1;
                            } else if let Some(seg) = self.segments.get_mut(&old_id) {
                                seg.live -= 1;
                            }
                        }
                    }
                    self.bytes += size as u64;
                    live += 1;
                    at += size;
                }
                Err(err) => {
                    dead_bytes = true;
                    let next = record::find_next(&bytes, at + 1);
                    let end = next.unwrap_or(bytes.len());
                    let damaged = &bytes[at..end];
                    let records = count_magic(damaged).max(1);
                    tracing::error!(
                        segment = %path.display(),
                        offset = at,
                        bytes = damaged.len(),
                        reason = %err,
                        "damaged spool record quarantined; going on with the next"
                    );
                    self.quarantine_bytes(damaged, &format!("{id:020}-{at}"), err.kind(), records);
                    if next.is_none() && last {
                        // The tail of the log: appends go on from the last intact record.
                        let _ = file.set_len(at as u64).and_then(|()| file.sync_data());
                        len = at as u64;
                    }
                    at = end;
                }
            }
        }
        if live == 0 && !last {
            let _ = std::fs::remove_file(path);
            return;
        }
        self.segments.insert(id, Segment { file, len, live });
        if dead_bytes {
            self.compact(id);
        }
    }

    /// Rewrites segment `id` with only the records still waiting (after damage was
    /// quarantined or a report refused), so nothing is quarantined or sent twice after a
    /// restart. Atomic: a temporary file, fsync, rename, directory fsync.
    fn compact(&mut self, id: u64) {
        let Some(segment) = self.segments.get(&id) else { return };
        let mut seqs: Vec<(u64, u64, u64)> = self
            .entries
            .iter()
            .filter_map(|(seq, e)| match e.location {
                Location::Segment { id: sid, offset } if sid == id => Some((offset, *seq, e.size)),
                _ => None,
            })
            .collect();
        seqs.sort_unstable();
        let mut out = Vec::new();
        let mut moved = Vec::with_capacity(seqs.len());
        for (offset, seq, size) in seqs {
            let mut bytes = vec![0; size as usize];
            if segment.file.read_exact_at(&mut bytes, offset).is_ok() {
                moved.push((seq, out.len() as u64));
                out.extend_from_slice(&bytes);
            }
        }
        let path = self.segment_path(id);
        let rewritten = write_atomic(&path, &out)
            .and_then(|()| std::fs::OpenOptions::new().read(true).write(true).open(&path));
        match rewritten {
            Ok(file) => {
                let live = moved.len();
                for (seq, offset) in moved {
                    if let Some(entry) = self.entries.get_mut(&seq) {
                        entry.location = Location::Segment { id, offset };
                    }
                }
                self.segments.insert(id, Segment { file, len: out.len() as u64, live });
            }
            Err(err) => {
                tracing::warn!(segment = %path.display(), error = %err, "spool segment not compacted");
            }
        }
    }

    fn quarantine_bytes(&mut self, bytes: &[u8], name: &str, reason: &str, records: u64) {
        self.quarantined_total += records;
        let stamp = unix_ms();
        let kept = std::fs::create_dir_all(&self.quarantine_dir).and_then(|()| {
            std::fs::write(self.quarantine_dir.join(format!("{stamp}-{reason}-{name}.rec")), bytes)
        });
        if let Err(err) = kept {
            tracing::warn!(error = %err, "quarantined record not kept on disk");
        }
        self.prune_quarantine();
        self.save_counters();
    }

    /// Moves a whole file (or directory) aside into the quarantine directory and counts it.
    fn quarantine_file(&mut self, path: &Path, name: &str, reason: &str) {
        self.quarantined_total += 1;
        tracing::error!(path = %path.display(), reason, "damaged spool entry quarantined");
        let moved = std::fs::create_dir_all(&self.quarantine_dir).is_ok()
            && std::fs::rename(
                path,
                self.quarantine_dir.join(format!("{}-{reason}-{name}", unix_ms())),
            )
            .is_ok();
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

    /// Whether the filesystem of the spool has room to go back to (while in memory). A
    /// filesystem that cannot tell is tried.
    fn disk_has_room(&self) -> bool {
        let dir = if self.dir.exists() {
            self.dir.as_path()
        } else {
            self.dir.parent().unwrap_or(&self.dir)
        };
        match rustix::fs::statvfs(dir) {
            Ok(fs) => fs.f_bavail.saturating_mul(fs.f_frsize) >= ROOM_TO_RETURN,
            Err(_) => true,
        }
    }

    fn segment_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:020}.seg"))
    }

    /// A new segment for appends; the one before it is deleted if nothing in it waits.
    fn new_segment(&mut self) -> std::io::Result<u64> {
        std::fs::create_dir_all(&self.dir)?;
        let id = self.segments.keys().next_back().map_or(1, |last| last + 1);
        let path = self.segment_path(id);
        let file =
            std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
        if let Err(err) = sync_dir(&self.dir) {
            let _ = std::fs::remove_file(&path);
            return Err(err);
        }
        self.segments.insert(id, Segment { file, len: 0, live: 0 });
        if let Some(old) = self.current.replace(id) {
            self.forget_segment_if_done(old);
        }
        Ok(id)
    }

    fn forget_segment_if_done(&mut self, id: u64) {
        if Some(id) != self.current && self.segments.get(&id).is_some_and(|s| s.live == 0) {
            self.segments.remove(&id);
            let _ = std::fs::remove_file(self.segment_path(id));
        }
    }

    /// Appends one framed record and makes it durable; a failed append leaves the segment as
    /// it was.
    fn append(&mut self, framed: &[u8]) -> std::io::Result<(u64, u64)> {
        let id = match self.current {
            Some(id) if self.segments.get(&id).is_some_and(|s| s.len < SEGMENT_BYTES) => id,
            _ => self.new_segment()?,
        };
        let segment = self.segments.get_mut(&id).expect("current segment");
        let offset = segment.len;
        if let Some(pause) = self.test_pause {
            let half = framed.len() / 2;
            segment.file.write_all_at(&framed[..half], offset)?;
            segment.file.sync_data()?;
            tracing::warn!(offset, "test hook: spool write paused mid-record");
            std::thread::sleep(pause);
        }
        let written =
            segment.file.write_all_at(framed, offset).and_then(|()| segment.file.sync_data());
        if let Err(err) = written {
            let _ = segment.file.set_len(offset);
            return Err(err);
        }
        segment.len += framed.len() as u64;
        segment.live += 1;
        Ok((id, offset))
    }

    /// Writes to disk; on success after a failure, moves what memory holds back to disk.
    fn write_disk(&mut self, framed: &[u8]) -> std::io::Result<Location> {
        let (id, offset) = self.append(framed)?;
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
            for seq in held {
                let Some(Entry { location: Location::Memory(bytes), .. }) = self.entries.get(&seq)
                else {
                    continue;
                };
                let bytes = bytes.clone();
                let Ok((id, offset)) = self.append(&bytes) else { break };
                let entry = self.entries.get_mut(&seq).expect("listed");
                self.memory_bytes -= entry.size;
                entry.location = Location::Segment { id, offset };
            }
            self.save_counters();
        }
        Ok(Location::Segment { id, offset })
    }

    /// Stores one report (already numbered). Returns how many old reports were dropped to
    /// make room. Never fails: without a writable disk the report is held in memory.
    pub fn push(&mut self, report: &Report) -> u64 {
        let seq = report.seq;
        let framed = record::encode(report);
        let size = framed.len() as u64;
        self.remove(seq);
        let written = if self.disk_error.is_none() || self.disk_has_room() {
            self.write_disk(&framed)
        } else {
            Err(std::io::Error::other("waiting for room on the disk"))
        };
        let location = match written {
            Ok(location) => location,
            Err(err) => {
                if self.disk_error.is_none() {
                    self.disk_failed(&err);
                }
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
            let oldest = self.entries.keys().next().copied();
            let victim = if self.memory_bytes > self.limits.max_memory_bytes {
                self.entries
                    .iter()
                    .find(|(_, e)| matches!(e.location, Location::Memory(_)))
                    .map(|(s, _)| *s)
            } else {
                oldest
            };
            let Some(victim) = victim else { break };
            self.remove(victim);
            if Some(victim) == oldest {
                // Nothing at or below it waits any more: a restart must not bring it back.
                self.acked.1 = self.acked.1.max(victim);
            }
            dropped += 1;
        }
        if dropped > 0 {
            self.dropped_total += dropped;
            self.save_counters();
            let (instance, seq) = self.acked.clone();
            self.save_acked(&instance, seq, false);
        }
        dropped
    }

    fn remove(&mut self, seq: u64) -> Option<Entry> {
        let entry = self.entries.remove(&seq)?;
        self.bytes -= entry.size;
        match entry.location {
            Location::Segment { id, .. } => {
                if let Some(segment) = self.segments.get_mut(&id) {
                    segment.live -= 1;
                }
                self.forget_segment_if_done(id);
            }
            Location::Memory(_) => self.memory_bytes -= entry.size,
        }
        Some(entry)
    }

    fn record_bytes(&self, entry: &Entry) -> std::io::Result<Vec<u8>> {
        match &entry.location {
            Location::Memory(bytes) => Ok(bytes.clone()),
            Location::Segment { id, offset } => {
                let segment = self.segments.get(id).ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::NotFound, "segment gone")
                })?;
                let mut bytes = vec![0; entry.size as usize];
                segment.file.read_exact_at(&mut bytes, *offset)?;
                Ok(bytes)
            }
        }
    }

    /// Reads and fully checks one spooled report. A record that fails is quarantined (and
    /// counted), and the caller goes on with the next.
    pub fn read(&mut self, seq: u64) -> Read {
        let Some(entry) = self.entries.get(&seq) else { return Read::Gone };
        let bytes = self.record_bytes(entry);
        let checked = match &bytes {
            Ok(bytes) => record::decode(bytes, seq).map_err(|e| (e.kind(), e.to_string())),
            Err(err) => Err(("unreadable", err.to_string())),
        };
        match checked {
            Ok(report) => Read::Report(Box::new(report)),
            Err((kind, detail)) => {
                tracing::error!(
                    seq,
                    reason = detail,
                    "damaged spool record quarantined; going on with the next"
                );
                let segment = self.segment_of(seq);
                self.remove(seq);
                let bytes = bytes.unwrap_or_default();
                self.quarantine_bytes(&bytes, &format!("{seq:020}"), kind, 1);
                if let Some(id) = segment {
                    self.compact(id);
                }
                Read::Gone
            }
        }
    }

    /// Moves one report aside: refused by the collector as invalid for good.
    pub fn quarantine(&mut self, seq: u64, reason: &str) {
        let Some(entry) = self.entries.get(&seq) else { return };
        let bytes = self.record_bytes(entry).unwrap_or_default();
        let segment = self.segment_of(seq);
        self.remove(seq);
        self.quarantine_bytes(&bytes, &format!("{seq:020}"), reason, 1);
        if let Some(id) = segment {
            self.compact(id);
        }
    }

    fn segment_of(&self, seq: u64) -> Option<u64> {
        match self.entries.get(&seq)?.location {
            Location::Segment { id, .. } => Some(id),
            Location::Memory(_) => None,
        }
    }

    fn ack_index(&mut self, seq: u64) -> bool {
        let mut removed = false;
        while let Some((&first, _)) = self.entries.first_key_value() {
            if first > seq {
                break;
            }
            self.remove(first);
            removed = true;
        }
        removed
    }

    /// Deletes every report with seq <= `seq` of `instance` (a cumulative acknowledgement).
    pub fn ack(&mut self, instance: &str, seq: u64) {
        if self.ack_index(seq) || seq > self.acked.1 {
            self.save_acked(instance, seq.max(self.acked.1), false);
        }
    }

    /// Takes every spooled report out (checked; damaged ones are quarantined), oldest first,
    /// and empties the spool: for renumbering them under a new instance, whose seqs start over.
    pub fn take_all(&mut self) -> Vec<Report> {
        let seqs: Vec<u64> = self.entries.keys().copied().collect();
        let mut reports = Vec::with_capacity(seqs.len());
        for seq in seqs {
            if let Read::Report(report) = self.read(seq) {
                reports.push(*report);
            }
        }
        // Seqs start over: the old acknowledgement must not hide the new reports.
        let instance = self.acked.0.clone();
        self.save_acked(&instance, 0, true);
        self.entries.clear();
        self.current = None;
        for id in std::mem::take(&mut self.segments).into_keys() {
            let _ = std::fs::remove_file(self.segment_path(id));
        }
        self.bytes = 0;
        self.memory_bytes = 0;
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

    /// Bytes of the reports waiting (on disk and in memory).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn max_seq(&self) -> u64 {
        self.entries.keys().next_back().copied().unwrap_or(0).max(self.acked.1)
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

/// How many record starts a damaged range holds (at least one record was there).
fn count_magic(bytes: &[u8]) -> u64 {
    bytes.windows(record::MAGIC.len()).filter(|w| *w == record::MAGIC).count() as u64
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
