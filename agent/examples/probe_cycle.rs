//! Benchmark: CPU time of one full collection cycle (every probe but SMART), as the agent runs
//! it — one single-threaded runtime plus the blocking pool — measured from the process's own
//! CPU accounting (`/proc/self/stat`: utime + stime of all threads, plus waited-for children,
//! so a tool a probe runs counts too). Also prints the process's peak RSS.
//!
//! ```text
//! cargo run --release -p vigil-agent --example probe_cycle -- [--cycles 1000] [--root DIR] [--with-smart]
//! ```

use std::time::{Duration, Instant};

use vigil_agent::config::ProbesConfig;
use vigil_agent::probe::ProbeSet;
use vigil_agent::root::HostRoot;

/// utime + stime + cutime + cstime of this process, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the parenthesised command name; utime is field 14 (1-based).
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<u64> =
        rest.split(' ').skip(11).take(4).map(|f| f.parse().unwrap_or(0)).collect();
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    fields.iter().sum::<u64>() as f64 / ticks
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let mut cycles = 1000u32;
    let mut root = HostRoot::live();
    let mut config = ProbesConfig::default();
    config.smart.enabled = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--cycles" => cycles = args.next().and_then(|v| v.parse().ok()).expect("--cycles N"),
            "--root" => root = HostRoot::new(args.next().expect("--root DIR").into()),
            "--with-smart" => config.smart.enabled = true,
            other => panic!("unknown argument {other:?}"),
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(4)
        .build()
        .expect("runtime");
    let mut probes = ProbeSet::new(root, Duration::from_secs(5), &config);
    // One warm-up cycle: first samples (CPU, disk rates) and page cache.
    runtime.block_on(probes.run_all());
    let (cpu0, wall0) = (cpu_seconds(), Instant::now());
    for _ in 0..cycles {
        runtime.block_on(probes.run_all());
    }
    let cpu = cpu_seconds() - cpu0;
    let wall = wall0.elapsed().as_secs_f64();
    println!(
        "cycles={cycles} probes={} cpu_per_cycle_ms={:.3} wall_per_cycle_ms={:.3} peak_rss_kib={}",
        probes.names().join(","),
        cpu * 1000.0 / f64::from(cycles),
        wall * 1000.0 / f64::from(cycles),
        peak_rss_kib()
    );
}
