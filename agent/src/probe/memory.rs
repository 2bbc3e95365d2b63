//! Memory and swap: how much RAM the host has, how much is still available to programs, and
//! how much swap is left, plus memory pressure where the kernel has PSI and how many processes
//! the OOM killer has killed since boot.
//!
//! Sources: `/proc/meminfo` (values in kB, converted to bytes), `/proc/pressure/memory` (the
//! `some` and `full` 60 s averages) and `/proc/vmstat` (`oom_kill`, since Linux 4.13). The
//! last two are optional: without them the fields are absent, the probe still succeeds.
//! `MemAvailable` (the kernel's own estimate of memory usable without swapping) exists since
//! Linux 3.14; before that, and in captured trees that lack it, available memory is estimated
//! as `MemFree + Buffers + Cached`, which is what `free` did before 3.14.

use std::collections::BTreeMap;

use vigil_proto::v1::{MemoryData, probe_result};

use super::{Probe, ProbeError, cpu};
use crate::read;
use crate::root::HostRoot;

/// The memory probe.
#[derive(Debug, Default)]
pub struct Memory;

impl Probe for Memory {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn collect(&mut self, root: &HostRoot) -> Result<probe_result::Data, ProbeError> {
        let path = root.proc("meminfo");
        let text = read::read_string(&path).map_err(|err| ProbeError::from_read(root, &err))?;
        let mut data = memory_data(&read::parse_key_values(&text))
            .map_err(|reason| ProbeError::Failed(format!("{}: {reason}", root.host_view(&path))))?;
        data.pressure_some_avg60 = cpu::pressure(root, "pressure/memory", "some");
        data.pressure_full_avg60 = cpu::pressure(root, "pressure/memory", "full");
        data.oom_kills = oom_kills(root);
        Ok(probe_result::Data::Memory(data))
    }
}

/// `oom_kill` from `/proc/vmstat`; `None` when the file or the key is missing (kernels before
/// 4.13, captured trees) or the file cannot be read.
fn oom_kills(root: &HostRoot) -> Option<u64> {
    match read::read_optional(&root.proc("vmstat")) {
        Ok(text) => parse_vmstat(&text?, "oom_kill"),
        Err(err) => {
            tracing::debug!(%err, "vmstat not readable");
            None
        }
    }
}

/// One counter of `/proc/vmstat` (`name value` per line).
pub(crate) fn parse_vmstat(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        (fields.next()? == key).then(|| fields.next()?.parse().ok()).flatten()
    })
}

/// Builds [`MemoryData`] (without pressure and OOM kills) from parsed meminfo. `MemTotal` is required;
/// any other missing field is 0.
pub(crate) fn memory_data(meminfo: &BTreeMap<String, u64>) -> Result<MemoryData, String> {
    let bytes = |key: &str| meminfo.get(key).map(|kb| kb.saturating_mul(1024));
    let total = bytes("MemTotal").ok_or("no MemTotal")?;
    let free = bytes("MemFree").unwrap_or(0);
    let buffers = bytes("Buffers").unwrap_or(0);
    let cached = bytes("Cached").unwrap_or(0);
    let available = bytes("MemAvailable")
        .unwrap_or_else(|| free.saturating_add(buffers).saturating_add(cached));
    Ok(MemoryData {
        total_bytes: total,
        available_bytes: available,
        free_bytes: free,
        buffers_bytes: buffers,
        cached_bytes: cached,
        swap_total_bytes: bytes("SwapTotal").unwrap_or(0),
        swap_free_bytes: bytes("SwapFree").unwrap_or(0),
        pressure_some_avg60: None,
        pressure_full_avg60: None,
        oom_kills: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<MemoryData, String> {
        memory_data(&read::parse_key_values(text))
    }

    #[test]
    fn converts_kb_to_bytes() {
        let data = parse(
            "MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 600 kB\nBuffers: 10 kB\n\
             Cached: 200 kB\nSwapTotal: 50 kB\nSwapFree: 40 kB\n",
        )
        .unwrap();
        assert_eq!(data.total_bytes, 1_024_000);
        assert_eq!(data.available_bytes, 614_400);
        assert_eq!(data.free_bytes, 102_400);
        assert_eq!(data.buffers_bytes, 10_240);
        assert_eq!(data.cached_bytes, 204_800);
        assert_eq!(data.swap_total_bytes, 51_200);
        assert_eq!(data.swap_free_bytes, 40_960);
    }

    #[test]
    fn missing_mem_available_is_free_plus_buffers_plus_cached() {
        let data =
            parse("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 10 kB\nCached: 200 kB\n").unwrap();
        assert_eq!(data.available_bytes, 310 * 1024);
    }

    #[test]
    fn missing_mem_total_is_an_error() {
        assert_eq!(parse("MemFree: 100 kB\n").unwrap_err(), "no MemTotal");
    }

    #[test]
    fn vmstat_counters() {
        let text = "nr_free_pages 1234\noom_kill 7\noom_killer 9\nbroken\n";
        assert_eq!(parse_vmstat(text, "oom_kill"), Some(7));
        assert_eq!(parse_vmstat(text, "nr_free_pages"), Some(1234));
        assert_eq!(parse_vmstat(text, "pgfault"), None);
        assert_eq!(parse_vmstat("oom_kill x\n", "oom_kill"), None);
    }

    fn fixture(tree: &str) -> MemoryData {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        match Memory.collect(&HostRoot::new(dir.join(tree))) {
            Ok(probe_result::Data::Memory(data)) => data,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn node_exporter_fixture_has_oom_kills_and_pressure() {
        let data = fixture("node-exporter");
        assert_eq!(data.oom_kills, Some(0));
        assert_eq!(data.pressure_some_avg60, Some(0.0));
        assert_eq!(data.pressure_full_avg60, Some(0.0));
        assert_eq!(data.total_bytes, 3_742_148 * 1024);
    }

    #[test]
    fn linux_procfs_fixture_has_pressure_but_no_vmstat() {
        let data = fixture("linux-procfs");
        assert_eq!(data.oom_kills, None);
        assert_eq!(data.pressure_some_avg60, Some(2.0));
        assert_eq!(data.pressure_full_avg60, Some(3.0));
    }

    #[test]
    fn no_psi_and_no_vmstat_leave_the_fields_absent() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("proc")).unwrap();
        std::fs::write(dir.path().join("proc/meminfo"), "MemTotal: 1000 kB\n").unwrap();
        let Ok(probe_result::Data::Memory(data)) =
            Memory.collect(&HostRoot::new(dir.path().to_path_buf()))
        else {
            panic!("memory probe failed");
        };
        assert_eq!(data.total_bytes, 1_024_000);
        assert_eq!(data.oom_kills, None);
        assert_eq!(data.pressure_some_avg60, None);
        assert_eq!(data.pressure_full_avg60, None);

        std::fs::write(dir.path().join("proc/vmstat"), "nr_free_pages 1\n").unwrap();
        let Ok(probe_result::Data::Memory(data)) =
            Memory.collect(&HostRoot::new(dir.path().to_path_buf()))
        else {
            panic!("memory probe failed");
        };
        assert_eq!(data.oom_kills, None, "no oom_kill key");
    }
}
