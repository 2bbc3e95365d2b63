//! Memory and swap: how much RAM the host has, how much is still available to programs, and
//! how much swap is left, plus memory pressure where the kernel has PSI.
//!
//! Sources: `/proc/meminfo` (values in kB, converted to bytes) and `/proc/pressure/memory`.
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
        Ok(probe_result::Data::Memory(data))
    }
}

/// Builds [`MemoryData`] (without pressure) from parsed meminfo. `MemTotal` is required;
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
}
