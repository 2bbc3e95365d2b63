use std::path::Path;

use super::*;

const LIMITS: SpoolLimits =
    SpoolLimits { max_reports: 100, max_bytes: 1 << 20, max_memory_bytes: 1 << 16 };
const INSTANCE: &str = "2f1d3c4e-0000-4000-8000-000000000001";

fn report(seq: u64) -> Report {
    Report {
        agent_instance: INSTANCE.into(),
        seq,
        collected_at_unix_ms: 1_700_000_000_000 + seq as i64,
        ..Default::default()
    }
}

fn open(state: &Path, limits: SpoolLimits) -> Spool {
    let mut spool = Spool::open(state, limits);
    assert!(spool.bind_instance(INSTANCE).is_empty());
    spool
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

/// The one segment file and where each of its records starts.
fn segment(state: &Path) -> (PathBuf, Vec<usize>) {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(state.join("spool/v2")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let path = files.pop().expect("a segment");
    let bytes = std::fs::read(&path).unwrap();
    let mut starts = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        starts.push(at);
        at += record::check_prefix(&bytes[at..]).unwrap().1;
    }
    (path, starts)
}

fn drain(spool: &mut Spool) -> Vec<u64> {
    let mut seqs = Vec::new();
    let mut next = spool.next_after(0);
    while let Some(seq) = next {
        if let Some(seq) = seq_of(spool.read(seq)) {
            seqs.push(seq);
        }
        next = spool.next_after(seq);
    }
    seqs
}

#[test]
fn replays_in_order_and_acks_cumulatively() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = open(dir.path(), LIMITS);
    for seq in [3, 1, 2] {
        assert_eq!(spool.push(&report(seq)), 0);
    }
    assert_eq!(spool.next_after(0), Some(1));
    assert_eq!(spool.next_after(1), Some(2));
    assert_eq!(seq_of(spool.read(2)), Some(2));
    spool.ack(INSTANCE, 2);
    assert_eq!(spool.next_after(0), Some(3));
    assert_eq!(seq_of(spool.read(1)), None);
    assert_eq!(spool.len(), 1);
    drop(spool);
    // The acknowledgement outlives the process: nothing acknowledged is sent again.
    let spool = open(dir.path(), LIMITS);
    assert_eq!((spool.len(), spool.first()), (1, Some(3)));
}

#[test]
fn survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = open(dir.path(), LIMITS);
    spool.push(&report(41));
    spool.push(&report(42));
    let bytes = spool.bytes();
    drop(spool);
    let mut spool = open(dir.path(), LIMITS);
    assert_eq!((spool.max_seq(), spool.len(), spool.bytes()), (42, 2, bytes));
    match spool.read(41) {
        Read::Report(r) => assert_eq!(*r, report(41)),
        Read::Gone => panic!("seq 41 must survive a restart"),
    }
}

#[test]
fn an_acknowledgement_of_another_instance_hides_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = open(dir.path(), LIMITS);
    spool.push(&report(5));
    spool.ack(INSTANCE, 5);
    spool.push(&report(6));
    drop(spool);
    // A new instance begins at seq 1 with the old acknowledgement (5) on disk: the old
    // instance's unacknowledged report comes out for renumbering, the acknowledged one not.
    let new = "7e57e57e-0000-4000-8000-000000000002";
    let mut spool = Spool::open(dir.path(), LIMITS);
    let held: Vec<u64> = spool.bind_instance(new).iter().map(|r| r.seq).collect();
    assert_eq!(held, [6]);
    assert!(spool.is_empty());
    spool.push(&report(1));
    drop(spool);
    let mut spool = Spool::open(dir.path(), LIMITS);
    assert!(spool.bind_instance(new).is_empty());
    assert_eq!(drain(&mut spool), [1]);
}

#[test]
fn segments_roll_over_and_are_deleted_once_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    // About 10 KiB each, little of it compressible: few appends fill a segment.
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(7);
    let noise: String = (0..10_000)
        .map(|_| char::from(b'a' + rand::Rng::random_range(&mut rng, 0..26u8)))
        .collect();
    let facts = vigil_proto::v1::HostFacts { hostname: noise, ..Default::default() };
    let big = Report { facts: Some(facts), ..report(0) };
    let framed = record::encode(&Report { seq: 1, ..big.clone() }).len() as u64;
    let per_segment = SEGMENT_BYTES.div_ceil(framed);
    let limits = SpoolLimits { max_reports: 100_000, max_bytes: 64 << 20, ..LIMITS };
    let mut spool = open(dir.path(), limits);
    let total = per_segment * 3;
    for seq in 1..=total {
        spool.push(&Report { seq, ..big.clone() });
    }
    let files = || std::fs::read_dir(dir.path().join("spool/v2")).unwrap().count();
    let before = files();
    assert!(before >= 3, "{before} segments");
    spool.ack(INSTANCE, per_segment + 2);
    assert!(files() < before, "the first segment is gone once all of it is acknowledged");
    spool.ack(INSTANCE, total);
    assert_eq!(files(), 1, "the segment appends go to stays");
    assert!(spool.is_empty());
    drop(spool);
    assert!(open(dir.path(), limits).is_empty(), "nothing acknowledged comes back");
}

#[test]
fn full_spool_drops_oldest_by_count_and_by_bytes_and_remembers() {
    let dir = tempfile::tempdir().unwrap();
    let by_count = SpoolLimits { max_reports: 2, ..LIMITS };
    let mut spool = open(dir.path(), by_count);
    spool.push(&report(1));
    spool.push(&report(2));
    assert_eq!(spool.push(&report(3)), 1);
    assert_eq!(spool.next_after(0), Some(2));
    assert_eq!(spool.dropped_total(), 1);
    drop(spool);
    // The count outlives the process: it reaches the collector with the next Hello.
    let spool = open(dir.path(), by_count);
    assert_eq!(spool.status().dropped_total, 1);

    let dir = tempfile::tempdir().unwrap();
    let one = record::encode(&report(1)).len() as u64;
    let by_bytes = SpoolLimits { max_bytes: one * 3, ..LIMITS };
    let mut spool = open(dir.path(), by_bytes);
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
    let mut spool = open(state, LIMITS);
    for seq in 1..=10 {
        spool.push(&report(seq));
    }
    drop(spool);
    let (path, at) = segment(state);
    let mut bytes = std::fs::read(&path).unwrap();
    let len = bytes.len();
    let end = |i: usize| at.get(i + 1).copied().unwrap_or(len);
    // 2: zeroed. 4: a header bit flipped. 6: a body bit flipped. 8: its seq changed to 9's.
    let (s, e) = (at[1], end(1));
    bytes[s..e].fill(0);
    bytes[at[3] + 17] ^= 0x10;
    let last_of_6 = end(5) - 1;
    bytes[last_of_6] ^= 0x01;
    bytes[at[7] + 8] = 9;
    // 10: cut short, as by a crash in the middle of its append.
    let cut = end(9) - 5;
    bytes.truncate(cut);
    std::fs::write(&path, &bytes).unwrap();
    // A directory where a segment should be, and a temporary file a crash left behind.
    std::fs::create_dir(state.join("spool/v2/00000000000000000007.seg")).unwrap();
    std::fs::write(state.join("spool/v2/00000000000000000008.tmp"), b"half").unwrap();

    let mut spool = open(state, LIMITS);
    assert_eq!(
        drain(&mut spool),
        [1, 3, 5, 7, 9],
        "the intact ones are kept, the real 9 not overwritten"
    );
    assert_eq!(spool.quarantined_total(), 6, "{:?}", quarantined(state));
    let names = quarantined(state);
    assert_eq!(names.len(), 6, "{names:?}");
    for reason in ["bad-magic", "checksum", "length", "not-a-file"] {
        assert!(names.iter().any(|n| n.contains(reason)), "{reason} missing from {names:?}");
    }
    assert!(!state.join("spool/v2/00000000000000000008.tmp").exists());
    // The damage was cut out of the segment: appends go on cleanly, and a restart finds
    // nothing new to quarantine.
    spool.push(&report(11));
    drop(spool);
    let mut spool = open(state, LIMITS);
    assert_eq!(drain(&mut spool), [1, 3, 5, 7, 9, 11]);
    assert_eq!(spool.quarantined_total(), 6, "nothing is quarantined twice");
}

#[test]
fn damage_after_start_is_quarantined_on_read_and_the_next_report_follows() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = open(dir.path(), LIMITS);
    spool.push(&report(1));
    spool.push(&report(2));
    let (path, _) = segment(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[30] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    assert_eq!(seq_of(spool.read(1)), None);
    assert_eq!(spool.next_after(0), Some(2));
    assert_eq!(seq_of(spool.read(2)), Some(2));
    assert_eq!(spool.status().quarantined_total, 1);
    drop(spool);
    let mut spool = open(dir.path(), LIMITS);
    assert_eq!(drain(&mut spool), [2]);
    assert_eq!(spool.quarantined_total(), 1, "nothing is quarantined twice");
}

#[test]
fn refused_reports_are_quarantined_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = open(dir.path(), LIMITS);
    spool.push(&report(1));
    spool.push(&report(2));
    spool.quarantine(1, "refused");
    assert_eq!((spool.first(), spool.quarantined_total()), (Some(2), 1));
    let names = quarantined(dir.path());
    assert!(names[0].ends_with("-refused-00000000000000000001.rec"), "{names:?}");
    let kept = std::fs::read(dir.path().join("spool/quarantine").join(&names[0])).unwrap();
    assert_eq!(record::decode(&kept, 1).unwrap(), report(1), "the refused report is kept whole");
    drop(spool);
    let spool = open(dir.path(), LIMITS);
    assert_eq!((spool.first(), spool.quarantined_total()), (Some(2), 1), "and never sent again");
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
    let mut spool = open(dir.path(), LIMITS);
    assert_eq!((spool.len(), spool.first()), (2, Some(4)));
    assert_eq!(seq_of(spool.read(5)), Some(5));
    assert_eq!(spool.quarantined_total(), 1);
    assert!(!v1.exists());
}

#[test]
fn unwritable_disk_holds_reports_in_memory_and_goes_back_when_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = open(dir.path(), LIMITS);
    spool.push(&report(1));
    // Appends fail from here on (as on a full or failed disk): the segment's handle is
    // replaced by a read-only one and no new segment can be created.
    let v2 = dir.path().join("spool/v2");
    let (path, _) = segment(dir.path());
    for segment in spool.segments.values_mut() {
        segment.file = File::open(&path).unwrap();
        segment.len = SEGMENT_BYTES;
    }
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
    let mut spool = open(dir.path(), LIMITS);
    assert_eq!(drain(&mut spool), [1, 2, 3, 4], "what memory held went back to disk");
}

#[test]
fn memory_spool_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let one = record::encode(&report(1)).len() as u64;
    let limits = SpoolLimits { max_memory_bytes: one * 2, ..LIMITS };
    let v2 = dir.path().join("spool/v2");
    std::fs::create_dir_all(dir.path().join("spool")).unwrap();
    std::fs::write(&v2, b"not a directory").unwrap();
    let mut spool = open(dir.path(), limits);
    for seq in 1..=5 {
        spool.push(&report(seq));
    }
    assert_eq!((spool.len(), spool.first(), spool.dropped_total()), (2, Some(4), 3));
}

#[test]
fn take_all_returns_every_intact_report_in_order_and_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = open(dir.path(), LIMITS);
    for seq in 1..=3 {
        spool.push(&report(seq));
    }
    spool.ack(INSTANCE, 1);
    let seqs: Vec<u64> = spool.take_all().iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [2, 3]);
    assert!(spool.is_empty());
    // Renumbered from 1 under the same binding: not hidden by the old acknowledgement.
    spool.push(&report(1));
    drop(spool);
    assert_eq!(open(dir.path(), LIMITS).first(), Some(1));
}

#[test]
fn reports_dropped_while_carrying_v1_over_stay_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = dir.path().join("spool/v1");
    std::fs::create_dir_all(&v1).unwrap();
    for seq in 1..=4u64 {
        std::fs::write(v1.join(format!("{seq:020}.pb")), report(seq).encode_to_vec()).unwrap();
    }
    let limits = SpoolLimits { max_reports: 2, ..LIMITS };
    let spool = open(dir.path(), limits);
    assert_eq!((spool.first(), spool.dropped_total()), (Some(3), 2));
    drop(spool);
    let spool = open(dir.path(), limits);
    assert_eq!((spool.first(), spool.len(), spool.dropped_total()), (Some(3), 2, 2));
}
