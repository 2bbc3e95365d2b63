//! Benchmark: the spool. Collects one real report (this machine, or a fixture tree with
//! `--root`), then measures on a real filesystem (`--dir`, default `/var/tmp`):
//!
//! - the record size (framed, LZ4-compressed) and how many hours the default 64 MiB holds at
//!   the default 10 s interval;
//! - one append, including its fsyncs (file and directory), as p50 / p99 / max over
//!   `--appends` appends;
//! - a start on a full 64 MiB spool: open (every frame and checksum checked) and then reading
//!   every record back (decompressed, decoded, seq checked), as the replay does.
//!
//! ```text
//! cargo run --release -p vigil-agent --example spool_bench -- [--root DIR] [--dir DIR] [--appends 2000]
//! ```

use std::time::{Duration, Instant};

use vigil_agent::config::{AgentConfig, SpoolConfig};
use vigil_agent::root::HostRoot;
use vigil_agent::run::Collector;
use vigil_agent::spool::{Read, Spool, SpoolLimits, record};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let mut root = HostRoot::live();
    let mut dir = std::path::PathBuf::from("/var/tmp");
    let mut appends = 2000usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--root" => root = HostRoot::new(args.next().expect("--root DIR").into()),
            "--dir" => dir = args.next().expect("--dir DIR").into(),
            "--appends" => appends = args.next().and_then(|v| v.parse().ok()).expect("N"),
            other => panic!("unknown argument {other:?}"),
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let config = AgentConfig::default();
    let mut probes = config.probes_config();
    probes.smart.enabled = false;
    let mut collector = Collector::new(root, Duration::from_secs(5), &probes);
    // Two cycles: the second carries rates (CPU, disk I/O) like every report after the first.
    runtime.block_on(collector.collect());
    let mut report = runtime.block_on(collector.collect());
    report.agent_instance = "2f1d3c4e-0000-4000-8000-000000000001".to_owned();
    report.seq = 1;
    report.spool = Some(Default::default());
    let raw = prost::Message::encoded_len(&report);
    let framed = record::encode(&report).len();
    let defaults = SpoolConfig::default();
    let held = defaults.max_bytes / framed as u64;
    let hours = held as f64 * config.interval.as_secs_f64() / 3600.0;
    println!(
        "report: {raw} bytes encoded, {framed} bytes as a record ({:.0}% of it); the default \
         {} MiB hold {held} reports = {hours:.0} h at {:?}",
        framed as f64 * 100.0 / raw as f64,
        defaults.max_bytes >> 20,
        config.interval
    );

    let tmp = tempfile::tempdir_in(&dir).expect("temporary directory");
    let limits = SpoolLimits {
        max_reports: defaults.max_reports,
        max_bytes: defaults.max_bytes,
        max_memory_bytes: defaults.max_memory_bytes,
    };
    let mut spool = Spool::open(tmp.path(), limits);
    spool.bind_instance(&report.agent_instance);
    let mut times = Vec::with_capacity(appends);
    for seq in 1..=appends as u64 {
        report.seq = seq;
        let started = Instant::now();
        spool.push(&report);
        times.push(started.elapsed());
    }
    times.sort();
    println!(
        "append incl. fsync ({appends} on {}): p50 {:?}, p99 {:?}, max {:?}",
        dir.display(),
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times[times.len() - 1]
    );

    // Fill to the byte bound the way the spool lays it out (segments of records back to back,
    // about 1 MiB each), without paying an fsync per record for the setup.
    let full = held.min(defaults.max_reports as u64);
    let v2 = tmp.path().join("spool/v2");
    let mut segment = Vec::new();
    let mut id = 1_000u64;
    for seq in appends as u64 + 1..=full {
        report.seq = seq;
        segment.extend(record::encode(&report));
        if segment.len() >= 1 << 20 || seq == full {
            std::fs::write(v2.join(format!("{id:020}.seg")), &segment).unwrap();
            segment.clear();
            id += 1;
        }
    }
    drop(spool);
    // Cold page cache where we may (root): what a start after a reboot sees.
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
    let started = Instant::now();
    let mut spool = Spool::open(tmp.path(), limits);
    spool.bind_instance(&report.agent_instance);
    let opened = started.elapsed();
    let mut replayed = 0u64;
    let mut next = spool.next_after(0);
    while let Some(seq) = next {
        if let Read::Report(_) = spool.read(seq) {
            replayed += 1;
        }
        next = spool.next_after(seq);
    }
    let total = started.elapsed();
    println!(
        "start on a full spool ({} records, {:.1} MiB): open and check {:?}, open and replay all \
         {:?} ({replayed} read back)",
        spool.len(),
        spool.bytes() as f64 / (1 << 20) as f64,
        opened,
        total
    );
}
