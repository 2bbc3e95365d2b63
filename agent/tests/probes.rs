//! Every probe and the host facts against every fixture tree, compared with a golden report
//! per tree (`tests/golden/<tree>.json`, the proto3 JSON mapping); plus a plausibility check
//! against the machine the tests run on.
//!
//! To accept a change in output, run with `VIGIL_UPDATE_GOLDEN=1` and review the diff of the
//! golden file: it is the readable statement of what the agent reports for each tree.
//!
//! The fixture trees are real captures (see each tree's `SOURCES.md`). Two things differ from
//! a real host and are normalised here, so the golden files are the same on every machine:
//! `duration_us` is zeroed, and `architecture` (which a captured tree cannot tell, so the
//! agent reports its own build target) is checked against the build target and replaced.

use std::path::{Path, PathBuf};
use std::time::Duration;

use vigil_agent::facts;
use vigil_agent::probe::ProbeSet;
use vigil_agent::root::HostRoot;
use vigil_proto::v1::{ProbeResult, Report, probe_result};

const TREES: &[&str] = &["linux-procfs", "node-exporter"];
const AGENT_VERSION: &str = "0.0.0-test";
const ARCH_PLACEHOLDER: &str = "<build target architecture>";

fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests")
}

fn fixture_root(tree: &str) -> HostRoot {
    HostRoot::new(tests_dir().join("fixtures").join(tree))
}

fn normalise(mut facts: vigil_proto::v1::HostFacts, mut probes: Vec<ProbeResult>) -> Report {
    assert_eq!(facts.architecture, std::env::consts::ARCH);
    facts.architecture = ARCH_PLACEHOLDER.to_owned();
    for probe in &mut probes {
        probe.duration_us = 0;
    }
    Report { facts: Some(facts), probes, ..Report::default() }
}

fn fixture_report(tree: &str) -> Report {
    let root = fixture_root(tree);
    let facts = facts::collect(&root, AGENT_VERSION);
    let probes =
        ProbeSet::new(root, Duration::from_secs(10), &Default::default()).run_all_blocking();
    normalise(facts, probes)
}

fn check_golden(tree: &str, report: &Report) {
    let json = serde_json::to_string_pretty(report).expect("report serialises") + "\n";
    let golden = tests_dir().join("golden").join(format!("{tree}.json"));
    vigil_config::golden::assert_golden_file(&golden, &json);
}

#[test]
fn fixture_linux_procfs() {
    check_golden("linux-procfs", &fixture_report("linux-procfs"));
}

#[test]
fn fixture_node_exporter() {
    check_golden("node-exporter", &fixture_report("node-exporter"));
}

/// The async runner (blocking pool, timeouts) gives the same report as the sequential one.
#[tokio::test]
async fn async_runner_matches_blocking_runner() {
    for tree in TREES {
        let root = fixture_root(tree);
        let facts = facts::collect(&root, AGENT_VERSION);
        let probes =
            ProbeSet::new(root, Duration::from_secs(10), &Default::default()).run_all().await;
        assert_eq!(normalise(facts, probes), fixture_report(tree), "{tree}");
    }
}

fn probe<'a>(results: &'a [ProbeResult], name: &str) -> &'a ProbeResult {
    results
        .iter()
        .find(|result| result.probe == name)
        .unwrap_or_else(|| panic!("no {name} probe in {results:?}"))
}

/// MemTotal in kB, parsed here without the agent's code.
fn mem_total_kb(root: &HostRoot) -> u64 {
    let meminfo = std::fs::read_to_string(root.proc("meminfo")).unwrap();
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:")).expect("MemTotal line");
    line["MemTotal:".len()..].trim().trim_end_matches("kB").trim().parse().unwrap()
}

#[tokio::test]
async fn live_host_is_plausible() {
    let root = HostRoot::live();
    let facts = facts::collect(&root, AGENT_VERSION);
    assert!(facts.cpu_cores > 0, "{facts:?}");
    assert_eq!(facts.memory_total_bytes, mem_total_kb(&root) * 1024);
    assert!(!facts.kernel.is_empty(), "{facts:?}");
    assert!(!facts.architecture.is_empty(), "{facts:?}");
    assert!(!facts.hostname.is_empty(), "{facts:?}");
    assert!(facts.boot_time_unix_ms > 0, "{facts:?}");

    let results = ProbeSet::new(root, Duration::from_secs(30), &Default::default()).run_all().await;
    assert_eq!(
        results.iter().map(|r| r.probe.as_str()).collect::<Vec<_>>(),
        [
            "cpu",
            "memory",
            "filesystem",
            "network",
            "sensors",
            "uptime",
            "disk_io",
            "raid",
            "ecc",
            "clock",
            "smart",
            "ipmi",
            "services"
        ]
    );

    // systemd may or may not be there; the probe has data either way.
    let services = probe(&results, "services");
    let Some(probe_result::Data::Services(services)) = &services.data else {
        panic!("services: {services:?}");
    };
    assert!(services.systemd_available == services.systemd_message.is_empty(), "{services:?}");

    let cpu = probe(&results, "cpu");
    let Some(probe_result::Data::Cpu(cpu)) = &cpu.data else {
        panic!("cpu: {cpu:?}");
    };
    assert!((0.0..=1.0).contains(&cpu.usage_ratio), "{cpu:?}");
    assert!((0.0..=1.0).contains(&cpu.iowait_ratio), "{cpu:?}");
    assert!((0.0..=1.0).contains(&cpu.steal_ratio), "{cpu:?}");
    assert_eq!(cpu.logical_cpus, facts.cpu_cores);

    let memory = probe(&results, "memory");
    let Some(probe_result::Data::Memory(memory)) = &memory.data else {
        panic!("memory: {memory:?}");
    };
    assert_eq!(memory.total_bytes, facts.memory_total_bytes);
    assert!(memory.available_bytes <= memory.total_bytes, "{memory:?}");

    let filesystem = probe(&results, "filesystem");
    let Some(probe_result::Data::Filesystem(filesystem)) = &filesystem.data else {
        panic!("filesystem: {filesystem:?}");
    };
    assert!(filesystem.filesystems.iter().any(|fs| fs.size_bytes > 0), "{filesystem:?}");
    for fs in &filesystem.filesystems {
        assert!(fs.available_bytes <= fs.size_bytes, "{fs:?}");
        assert!(fs.free_bytes <= fs.size_bytes, "{fs:?}");
    }

    let uptime = probe(&results, "uptime");
    let Some(probe_result::Data::Uptime(uptime)) = &uptime.data else {
        panic!("uptime: {uptime:?}");
    };
    assert!(uptime.uptime_seconds > 0, "{uptime:?}");
    assert_eq!(uptime.boot_time_unix_ms, facts.boot_time_unix_ms);

    // Whatever this machine has, no probe may fail outright.
    for result in &results {
        assert_ne!(result.status(), probe_result::Status::Error, "{result:?}");
    }
}
