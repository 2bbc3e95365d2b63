use std::path::Path;

use super::*;

const LIMITS: SpoolLimits =
    SpoolLimits { max_reports: 100, max_bytes: 1 << 20, max_memory_bytes: 1 << 16 };

fn report(seq: u64) -> Report {
    Report {
        agent_instance: "2f1d3c4e-0000-4000-8000-000000000001".into(),
        seq,
        collected_at_unix_ms: 1_700_000_000_000 + seq as i64,
        ..Default::default()
    }
}

fn seq_of(read: Read) -> Option<u64> {
    match read {
        Read::Report(r) => Some(r.seq),
        Read::Gone => None,
    }
}

fn quarantined(state: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(state.join("spool/quarantine"))
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

fn record_path(state: &Path, seq: u64) -> PathBuf {
    state.join(format!("spool/v2/{seq:020}.rec"))
}

#[test]
fn replays_in_order_and_acks_cumulatively() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), LIMITS);
    for seq in [3, 1, 2] {
        assert_eq!(spool.push(&report(seq)), 0);
    }
    assert_eq!(spool.next_after(0), Some(1));
    assert_eq!(spool.next_after(1), Some(2));
    assert_eq!(seq_of(spool.read(2)), Some(2));
    spool.ack(2);
    assert_eq!(spool.next_after(0), Some(3));
    assert_eq!(seq_of(spool.read(1)), None);
    assert_eq!(spool.len(), 1);
    assert!(!record_path(dir.path(), 1).exists(), "acknowledged records are deleted");
}

#[test]
fn survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), LIMITS);
    spool.push(&report(41));
    spool.push(&report(42));
    let bytes = spool.bytes();
    drop(spool);
    let mut spool = Spool::open(dir.path(), LIMITS);
    assert_eq!((spool.max_seq(), spool.len(), spool.bytes()), (42, 2, bytes));
    match spool.read(41) {
        Read::Report(r) => assert_eq!(*r, report(41)),
        Read::Gone => panic!("seq 41 must survive a restart"),
    }
}

#[test]
fn full_spool_drops_oldest_by_count_and_by_bytes_and_remembers() {
    let dir = tempfile::tempdir().unwrap();
    let by_count = SpoolLimits { max_reports: 2, ..LIMITS };
    let mut spool = Spool::open(dir.path(), by_count);
    spool.push(&report(1));
    spool.push(&report(2));
    assert_eq!(spool.push(&report(3)), 1);
    assert_eq!(spool.next_after(0), Some(2));
    assert_eq!(spool.dropped_total(), 1);
    drop(spool);
    // The count outlives the process: it reaches the collector with the next Hello.
    let spool = Spool::open(dir.path(), by_count);
    assert_eq!(spool.status().dropped_total, 1);

    let dir = tempfile::tempdir().unwrap();
    let one = record::encode(&report(1)).len() as u64;
    let by_bytes = SpoolLimits { max_bytes: one * 3, ..LIMITS };
    let mut spool = Spool::open(dir.path(), by_bytes);
    for seq in 1..=5 {
        spool.push(&report(seq));
    }
    assert_eq!((spool.len(), spool.first(), spool.dropped_total()), (3, Some(3), 2));
    assert!(spool.bytes() <= one * 3);
}

#[test]
fn damaged_records_are_quarantined_at_start_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let mut spool = Spool::open(state, LIMITS);
    for seq in 1..=7 {
        spool.push(&report(seq));
    }
    drop(spool);
    // 1: zero length. 2: cut short. 3: a header bit flipped. 4: a body bit flipped.
    // 5: a directory in its place. 6: the seq inside the header changed (claims 7's slot).
    std::fs::write(record_path(state, 1), b"").unwrap();
    let two = std::fs::read(record_path(state, 2)).unwrap();
    std::fs::write(record_path(state, 2), &two[..two.len() - 3]).unwrap();
    let mut three = std::fs::read(record_path(state, 3)).unwrap();
    three[17] ^= 0x10;
    std::fs::write(record_path(state, 3), three).unwrap();
    let mut four = std::fs::read(record_path(state, 4)).unwrap();
    let last = four.len() - 1;
    four[last] ^= 0x01;
    std::fs::write(record_path(state, 4), four).unwrap();
    std::fs::remove_file(record_path(state, 5)).unwrap();
    std::fs::create_dir(record_path(state, 5)).unwrap();
    let mut six = std::fs::read(record_path(state, 6)).unwrap();
    six[8..16].copy_from_slice(&7u64.to_le_bytes());
    std::fs::write(record_path(state, 6), six).unwrap();
    // A temporary file a crash left behind.
    std::fs::write(state.join("spool/v2/00000000000000000008.tmp"), b"half").unwrap();

    let mut spool = Spool::open(state, LIMITS);
    assert_eq!(spool.len(), 1, "only seq 7 is intact");
    assert_eq!(seq_of(spool.read(7)), Some(7), "the real seq 7 is not overwritten");
    assert_eq!(spool.quarantined_total(), 6);
    let names = quarantined(state);
    assert_eq!(names.len(), 6, "{names:?}");
    for reason in ["truncated", "length", "checksum", "not-a-file"] {
        assert!(names.iter().any(|n| n.contains(reason)), "{reason} missing from {names:?}");
    }
    assert!(!state.join("spool/v2/00000000000000000008.tmp").exists());
}

#[test]
fn damage_after_start_is_quarantined_on_read_and_the_next_report_follows() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), LIMITS);
    spool.push(&report(1));
    spool.push(&report(2));
    let mut one = std::fs::read(record_path(dir.path(), 1)).unwrap();
    one[30] ^= 0xff;
    std::fs::write(record_path(dir.path(), 1), one).unwrap();
    assert_eq!(seq_of(spool.read(1)), None);
    assert_eq!(spool.next_after(0), Some(2));
    assert_eq!(seq_of(spool.read(2)), Some(2));
    assert_eq!(spool.status().quarantined_total, 1);
}

#[test]
fn refused_reports_are_quarantined_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), LIMITS);
    spool.push(&report(1));
    spool.push(&report(2));
    spool.quarantine(1, "refused");
    assert_eq!((spool.first(), spool.quarantined_total()), (Some(2), 1));
    assert!(quarantined(dir.path())[0].ends_with("-refused-00000000000000000001.rec"));
}

#[test]
fn v1_layout_is_carried_over() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = dir.path().join("spool/v1");
    std::fs::create_dir_all(&v1).unwrap();
    for seq in [4u64, 5] {
        std::fs::write(v1.join(format!("{seq:020}.pb")), report(seq).encode_to_vec()).unwrap();
    }
    std::fs::write(v1.join(format!("{:020}.pb", 6)), b"\xff\xff").unwrap();
    let mut spool = Spool::open(dir.path(), LIMITS);
    assert_eq!((spool.len(), spool.first()), (2, Some(4)));
    assert_eq!(seq_of(spool.read(5)), Some(5));
    assert_eq!(spool.quarantined_total(), 1);
    assert!(!v1.exists());
}

#[test]
fn unwritable_disk_holds_reports_in_memory_and_goes_back_when_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), LIMITS);
    spool.push(&report(1));
    // The spool directory replaced by a file: every write fails (as on a full or failed disk).
    let v2 = dir.path().join("spool/v2");
    std::fs::rename(&v2, dir.path().join("spool/v2.away")).unwrap();
    std::fs::write(&v2, b"not a directory").unwrap();
    spool.push(&report(2));
    spool.push(&report(3));
    let status = spool.status();
    assert!(status.in_memory, "{status:?}");
    assert!(!status.disk_error.is_empty());
    assert_eq!(seq_of(spool.read(3)), Some(3), "reports are served from memory");

    std::fs::remove_file(&v2).unwrap();
    std::fs::rename(dir.path().join("spool/v2.away"), &v2).unwrap();
    spool.push(&report(4));
    assert!(!spool.status().in_memory);
    drop(spool);
    let spool = Spool::open(dir.path(), LIMITS);
    assert_eq!(spool.len(), 4, "what memory held went back to disk");
}

#[test]
fn memory_spool_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let one = record::encode(&report(1)).len() as u64;
    let limits = SpoolLimits { max_memory_bytes: one * 2, ..LIMITS };
    let v2 = dir.path().join("spool/v2");
    std::fs::create_dir_all(dir.path().join("spool")).unwrap();
    std::fs::write(&v2, b"not a directory").unwrap();
    let mut spool = Spool::open(dir.path(), limits);
    for seq in 1..=5 {
        spool.push(&report(seq));
    }
    assert_eq!((spool.len(), spool.first(), spool.dropped_total()), (2, Some(4), 3));
}

#[test]
fn take_all_returns_every_intact_report_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), LIMITS);
    for seq in 1..=3 {
        spool.push(&report(seq));
    }
    let seqs: Vec<u64> = spool.take_all().iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [1, 2, 3]);
    assert!(spool.is_empty());
    assert_eq!(Spool::open(dir.path(), LIMITS).len(), 0);
}
