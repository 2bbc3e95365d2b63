//! ECC memory: corrected and uncorrected error counts per memory controller and per DIMM, as
//! the kernel's EDAC drivers count them. A rising corrected count is a DIMM to replace soon;
//! any uncorrected error is memory that returned wrong data.
//!
//! Source: `/sys/devices/system/edac/mc/mc*/` (the kernel's `edac_mc_sysfs.c` and
//! `Documentation/admin-guide/ras.rst`). Each controller has `ce_count` and `ue_count`, its
//! totals since the driver loaded, including errors it could not place on a DIMM. Below it the
//! DIMMs appear in one of two layouts:
//!
//! - `dimm*/` (or `rank*/` on a chip-select based controller), since Linux 3.6: per DIMM
//!   `dimm_label`, `dimm_ce_count`, `dimm_ue_count` and `size` in MiB. Location `dimm0`.
//! - `csrow*/` only, the legacy layout: per chip-select row `ue_count` and `size_mb`, per
//!   channel `ch*_ce_count` and `ch*_dimm_label`. Location `csrow0/ch0`. The kernel counts
//!   uncorrected errors per row, not per channel, so each channel reports its row's
//!   `ue_count` (a `ch*_ue_count`, which some captures have, is used when present); the
//!   controller's count is the one to add up. A row's `size_mb` covers all its channels and
//!   is split evenly between them (the DIMMs of one row are a matched set).
//!
//! When both layouts exist the `dimm*` one is used. A count that cannot be read is 0 (logged
//! at debug): the files are plain kernel counters, so that only happens on a broken tree.

use std::path::Path;

use vigil_proto::v1::{Dimm, EccData, MemoryController, probe_result};

use super::{Probe, ProbeError};
use crate::read;
use crate::root::HostRoot;

/// The ECC memory probe.
#[derive(Debug, Default)]
pub struct Ecc;

impl Probe for Ecc {
    fn name(&self) -> &'static str {
        "ecc"
    }

    fn collect(&mut self, root: &HostRoot) -> Result<probe_result::Data, ProbeError> {
        let mc = root.sys("devices/system/edac/mc");
        if !mc.is_dir() {
            return Err(ProbeError::Unavailable("no EDAC memory controller".to_owned()));
        }
        let controllers: Vec<MemoryController> =
            read::numbered_dirs(&mc, "mc").into_iter().map(|(_, dir)| controller(&dir)).collect();
        if controllers.is_empty() {
            return Err(ProbeError::Unavailable(format!(
                "no EDAC memory controller (none in {})",
                root.host_view(&mc)
            )));
        }
        Ok(probe_result::Data::Ecc(EccData { controllers }))
    }
}

/// One `mc<N>` directory.
fn controller(dir: &Path) -> MemoryController {
    let mut dimms = Vec::new();
    for prefix in ["dimm", "rank"] {
        for (n, dimm_dir) in read::numbered_dirs(dir, prefix) {
            dimms.push(Dimm {
                label: label(&dimm_dir.join("dimm_label")),
                location: format!("{prefix}{n}"),
                corrected_errors: count(&dimm_dir.join("dimm_ce_count")),
                uncorrected_errors: count(&dimm_dir.join("dimm_ue_count")),
                size_mib: read::attr(&dimm_dir.join("size")).unwrap_or(0),
            });
        }
    }
    if dimms.is_empty() {
        for (n, row) in read::numbered_dirs(dir, "csrow") {
            dimms.extend(csrow_dimms(n, &row));
        }
    }
    MemoryController {
        name: dir.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default(),
        corrected_errors: count(&dir.join("ce_count")),
        uncorrected_errors: count(&dir.join("ue_count")),
        dimms,
    }
}

/// The channels of one legacy `csrow<n>` directory, each as a [`Dimm`].
fn csrow_dimms(n: u32, row: &Path) -> Vec<Dimm> {
    let channels = channels(row);
    let row_ue = count(&row.join("ue_count"));
    let channel_count = u64::try_from(channels.len()).unwrap_or(u64::MAX).max(1);
    let size_mib = read::attr::<u64>(&row.join("size_mb")).unwrap_or(0) / channel_count;
    channels
        .into_iter()
        .map(|ch| {
            let file = |suffix: &str| row.join(format!("ch{ch}_{suffix}"));
            let ue_file = file("ue_count");
            Dimm {
                label: label(&file("dimm_label")),
                location: format!("csrow{n}/ch{ch}"),
                corrected_errors: count(&file("ce_count")),
                uncorrected_errors: if ue_file.exists() { count(&ue_file) } else { row_ue },
                size_mib,
            }
        })
        .collect()
}

/// The numbers `N` of the `ch<N>_ce_count` files of a csrow, ascending.
fn channels(row: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(row) else {
        return Vec::new();
    };
    let mut numbers: Vec<u32> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name();
            name.to_str()?.strip_prefix("ch")?.strip_suffix("_ce_count")?.parse().ok()
        })
        .collect();
    numbers.sort_unstable();
    numbers
}

fn count(path: &Path) -> u64 {
    read::attr(path).unwrap_or(0)
}

fn label(path: &Path) -> String {
    read::attr_string(path).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(tree: &str) -> HostRoot {
        HostRoot::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(tree))
    }

    fn collect(root: &HostRoot) -> Vec<MemoryController> {
        match Ecc.collect(root) {
            Ok(probe_result::Data::Ecc(data)) => data.controllers,
            other => panic!("{other:?}"),
        }
    }

    fn dimm(location: &str, label: &str, ce: u64, ue: u64, size_mib: u64) -> Dimm {
        Dimm {
            label: label.to_owned(),
            location: location.to_owned(),
            corrected_errors: ce,
            uncorrected_errors: ue,
            size_mib,
        }
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn fixture_csrow_layout_exact() {
        let controllers = collect(&fixture("node-exporter"));
        assert_eq!(
            controllers,
            [MemoryController {
                name: "mc0".into(),
                corrected_errors: 1,
                uncorrected_errors: 5,
                dimms: vec![
                    dimm("csrow0/ch0", "mc0csrow0channel0", 0, 2, 0),
                    dimm("csrow0/ch1", "mc0csrow0channel1", 0, 2, 0),
                    dimm("csrow1/ch0", "mc0csrow1channel0", 0, 2, 0),
                    dimm("csrow1/ch1", "mc0csrow1channel1", 0, 2, 0),
                    // No ch*_ue_count in csrow2: the row's ue_count.
                    dimm("csrow2/ch0", "mc0csrow2channel0", 0, 5, 0),
                    dimm("csrow2/ch1", "mc0csrow2channel1", 0, 5, 0),
                ],
            }]
        );
    }

    #[test]
    fn dimm_layout_wins_and_sorts_numerically() {
        let dir = tempfile::tempdir().unwrap();
        let mc = dir.path().join("sys/devices/system/edac/mc");
        for (n, ce, ue) in [(0, "3\n", "0\n"), (10, "0\n", "1\n")] {
            write(&mc.join(format!("mc{n}/ce_count")), ce);
            write(&mc.join(format!("mc{n}/ue_count")), ue);
        }
        let mc0 = mc.join("mc0");
        for (n, label, ce, size) in [(1, "DIMM_B1", "1\n", "16384\n"), (0, "DIMM_A1", "2\n", "")] {
            write(&mc0.join(format!("dimm{n}/dimm_label")), label);
            write(&mc0.join(format!("dimm{n}/dimm_ce_count")), ce);
            write(&mc0.join(format!("dimm{n}/dimm_ue_count")), "0\n");
            write(&mc0.join(format!("dimm{n}/size")), size);
        }
        // The legacy view of the same memory is not reported twice.
        write(&mc0.join("csrow0/ch0_ce_count"), "2\n");
        write(&mc.join("mc2/rank3/dimm_label"), "rank label\n");
        write(&mc.join("mc2/rank3/dimm_ue_count"), "7\n");
        write(&mc.join("power/control"), "auto\n");

        let controllers = collect(&HostRoot::new(dir.path().to_path_buf()));
        let names: Vec<&str> = controllers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["mc0", "mc2", "mc10"]);
        assert_eq!((controllers[0].corrected_errors, controllers[0].uncorrected_errors), (3, 0));
        assert_eq!(
            controllers[0].dimms,
            [dimm("dimm0", "DIMM_A1", 2, 0, 0), dimm("dimm1", "DIMM_B1", 1, 0, 16384)]
        );
        assert_eq!(controllers[1].dimms, [dimm("rank3", "rank label", 0, 7, 0)]);
        assert_eq!((controllers[1].corrected_errors, controllers[1].uncorrected_errors), (0, 0));
        assert_eq!(controllers[2].uncorrected_errors, 1);
        assert_eq!(controllers[2].dimms, []);
    }

    #[test]
    fn csrow_size_is_split_between_channels() {
        let dir = tempfile::tempdir().unwrap();
        let row = dir.path().join("sys/devices/system/edac/mc/mc0/csrow0");
        write(&row.join("size_mb"), "8192\n");
        write(&row.join("ue_count"), "1\n");
        for ch in [0, 1] {
            write(&row.join(format!("ch{ch}_ce_count")), &format!("{}\n", ch + 4));
            write(&row.join(format!("ch{ch}_dimm_label")), &format!("CPU0_DIMM_{ch}\n"));
        }
        let controllers = collect(&HostRoot::new(dir.path().to_path_buf()));
        assert_eq!(
            controllers[0].dimms,
            [
                dimm("csrow0/ch0", "CPU0_DIMM_0", 4, 1, 4096),
                dimm("csrow0/ch1", "CPU0_DIMM_1", 5, 1, 4096),
            ]
        );
    }

    #[test]
    fn no_edac_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let root = HostRoot::new(dir.path().to_path_buf());
        match Ecc.collect(&root) {
            Err(ProbeError::Unavailable(message)) => {
                assert_eq!(message, "no EDAC memory controller");
            }
            other => panic!("{other:?}"),
        }
        // The EDAC core without a driver: the directory exists, no controller in it.
        std::fs::create_dir_all(dir.path().join("sys/devices/system/edac/mc")).unwrap();
        match Ecc.collect(&root) {
            Err(ProbeError::Unavailable(message)) => assert_eq!(
                message,
                "no EDAC memory controller (none in /sys/devices/system/edac/mc)"
            ),
            other => panic!("{other:?}"),
        }
        // The linux-procfs tree has no EDAC.
        assert!(matches!(Ecc.collect(&fixture("linux-procfs")), Err(ProbeError::Unavailable(_))));
    }
}
