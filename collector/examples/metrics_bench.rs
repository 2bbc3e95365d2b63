//! How long `/metrics` takes to render the per-host series of a large fleet, and what they
//! cost in memory: `--hosts N` (default 10 000) hosts each observed with the agent's golden
//! node-exporter report (a well-equipped host: 16 temperatures, 17 RAID arrays, fans, ECC,
//! NICs; more series than a typical one), then rendered `--renders R` (default 20) times.
//! Prints the resident memory the held series added, the render time (median and worst) and
//! the size of the text, rendered in 256 KiB pieces as `/metrics` streams it. The budget is
//! 200 ms and 50 MiB for 10 000 hosts.
//!
//! ```text
//! cargo run --release -p vigil-collector --example metrics_bench [-- --hosts N --renders R]
//! ```

use std::time::Instant;

use vigil_collector::exporter::HostMetrics;
use vigil_collector::ids::HostId;
use vigil_proto::v1::Report;

const REPORT: &str =
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../agent/tests/golden/node-exporter.json"));

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

fn args() -> Result<(usize, usize), String> {
    let mut hosts = 10_000;
    let mut renders = 20;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let n: usize = value.parse().map_err(|e| format!("{flag} {value}: {e}"))?;
        match flag.as_str() {
            "--hosts" => hosts = n,
            "--renders" => renders = n.max(1),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok((hosts, renders))
}

fn main() {
    let (hosts, renders) = match args() {
        Ok(a) => a,
        Err(message) => {
            eprintln!("metrics_bench: {message}\nusage: metrics_bench [--hosts N] [--renders R]");
            std::process::exit(2);
        }
    };
    let report: Report = serde_json::from_str(REPORT).expect("the golden report parses");
    let before = rss_kib();
    let metrics = HostMetrics::default();
    let started = Instant::now();
    for _ in 0..hosts {
        metrics.observe(HostId::new_random(), 1, &report);
    }
    let observe = started.elapsed();
    let held = rss_kib().saturating_sub(before);

    let mut times = Vec::with_capacity(renders);
    let mut size = 0;
    let mut peak = 0;
    for _ in 0..renders {
        // As `/metrics` does: pieces of 256 KiB, each handed on (here: measured and dropped).
        let started = Instant::now();
        let mut bytes = 0;
        metrics.render_chunked(256 << 10, &mut |chunk| {
            bytes += chunk.len();
            peak = peak.max(rss_kib().saturating_sub(before));
        });
        times.push(started.elapsed());
        size = bytes;
    }
    times.sort();
    let series = {
        let mut out = String::new();
        metrics.render(&mut out);
        out.lines().filter(|l| !l.starts_with('#')).count()
    };
    println!(
        "{hosts} hosts, {series} series ({} per host), observed in {observe:.2?} ({:.1} µs per report)",
        series / hosts.max(1),
        observe.as_secs_f64() * 1e6 / hosts.max(1) as f64
    );
    println!(
        "render: median {:.2?}, worst {:.2?}, {:.1} MiB of text",
        times[times.len() / 2],
        times[times.len() - 1],
        size as f64 / (1 << 20) as f64
    );
    println!(
        "memory: {:.1} MiB held between scrapes, {:.1} MiB at the peak of a render",
        held as f64 / 1024.0,
        peak as f64 / 1024.0
    );
}
