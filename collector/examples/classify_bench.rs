//! How long the classifier takes per report: classifies the agent's golden node-exporter
//! report (17 RAID arrays, 16 temperatures, fans, bonds, ECC) `--iterations N` times (default
//! 100 000) with the default rules and one memory carried from report to report, as the
//! collector does for a host, and prints the mean time per report and the 99th percentile of
//! the per-report mean over batches of 1000. The budget is 100 µs per report.
//!
//! ```text
//! cargo run --release -p vigil-collector --example classify_bench [-- --iterations N]
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use vigil_collector::classify::{HostMemory, RuleSet, classify};
use vigil_proto::v1::Report;

const DEFAULT_ITERATIONS: u64 = 100_000;
const BATCH: u64 = 1000;
const BUDGET: Duration = Duration::from_micros(100);
const REPORT: &str =
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../agent/tests/golden/node-exporter.json"));

fn main() {
    let iterations = match iterations_arg() {
        Ok(n) => n,
        Err(message) => {
            eprintln!("classify_bench: {message}\nusage: classify_bench [--iterations N]");
            std::process::exit(2);
        }
    };
    let report: Report = serde_json::from_str(REPORT).expect("the golden report parses");
    let rules = RuleSet::default();
    let mut memory = HostMemory::default();
    // Warm-up: the first report fills the memory (and reports its events).
    let first = classify(&report, &mut memory, &rules);

    let mut batch_means = Vec::new();
    let started = Instant::now();
    let mut done = 0;
    while done < iterations {
        let batch = BATCH.min(iterations - done);
        let batch_started = Instant::now();
        for _ in 0..batch {
            black_box(classify(black_box(&report), &mut memory, &rules));
        }
        batch_means.push(batch_started.elapsed().as_nanos() as f64 / batch as f64);
        done += batch;
    }
    let mean = started.elapsed().as_nanos() as f64 / iterations as f64;
    batch_means.sort_by(f64::total_cmp);
    let p99 = batch_means[(batch_means.len() * 99 / 100).min(batch_means.len() - 1)];

    println!("classified node-exporter ({} findings) {iterations} times", first.len());
    println!("mean {mean:.0} ns/report, p99 over batches of {BATCH}: {p99:.0} ns/report");
    let budget = BUDGET.as_nanos() as f64;
    let verdict = if p99 <= budget { "within" } else { "OVER" };
    println!("budget {} µs/report: {verdict}", BUDGET.as_micros());
    if p99 > budget {
        std::process::exit(1);
    }
}

/// `--iterations N` (or `--iterations=N`); the default without it.
fn iterations_arg() -> Result<u64, String> {
    let mut args = std::env::args().skip(1);
    let mut iterations = DEFAULT_ITERATIONS;
    while let Some(arg) = args.next() {
        let value = match arg.strip_prefix("--iterations") {
            Some("") => args.next().ok_or("--iterations needs a number")?,
            Some(rest) if rest.starts_with('=') => rest[1..].to_owned(),
            _ => return Err(format!("unknown argument `{arg}`")),
        };
        iterations = value.parse().map_err(|_| format!("--iterations: not a number: {value}"))?;
        if iterations == 0 {
            return Err("--iterations must be at least 1".to_owned());
        }
    }
    Ok(iterations)
}
