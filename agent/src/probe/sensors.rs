//! Temperatures: every hwmon temperature input and every thermal zone, with the chip's own
//! warning and critical thresholds where it has them.
//!
//! Sources: `/sys/class/hwmon/hwmon*/temp*_input` (millidegrees Celsius) with the chip `name`
//! and `temp*_label`, `temp*_max` and `temp*_crit` (the kernel's sysfs-interface
//! documentation, `Documentation/hwmon/sysfs-interface.rst`), and
//! `/sys/class/thermal/thermal_zone*/temp` with its `type`. Some older drivers keep their
//! attributes in the `device/` directory of the hwmon entry; those are read there.
//!
//! A reading outside [`PLAUSIBLE_CELSIUS`] is left out (logged at debug): below -40 °C is
//! colder than the bottom of the industrial operating range of any part in a running machine,
//! so it is an unconnected input or a firmware placeholder (ACPI zones reporting -44 °C or
//! -273 °C); above 200 °C is far past the point where silicon shuts itself down (junction
//! limits are around 100-150 °C), so it is a floating input reading full scale or garbage.
//! Reporting those would raise temperature alarms for hardware that is fine.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use vigil_proto::v1::{SensorData, TemperatureSensor, probe_result};

use super::{Probe, ProbeError};
use crate::read;
use crate::root::HostRoot;

/// Readings outside this range are sensor faults, not temperatures (see the module doc).
pub const PLAUSIBLE_CELSIUS: RangeInclusive<f64> = -40.0..=200.0;

/// The sensors probe.
#[derive(Debug, Default)]
pub struct Sensors;

impl Probe for Sensors {
    fn name(&self) -> &'static str {
        "sensors"
    }

    fn collect(&mut self, root: &HostRoot) -> Result<probe_result::Data, ProbeError> {
        let hwmon = root.sys("class/hwmon");
        let thermal = root.sys("class/thermal");
        if !hwmon.is_dir() && !thermal.is_dir() {
            return Err(ProbeError::Unavailable(format!(
                "neither {} nor {} exists",
                root.host_view(&hwmon),
                root.host_view(&thermal)
            )));
        }
        let mut temperatures = Vec::new();
        for dir in numbered_entries(&hwmon, "hwmon") {
            temperatures.extend(hwmon_temperatures(root, &dir));
        }
        for dir in numbered_entries(&thermal, "thermal_zone") {
            temperatures.extend(thermal_zone(root, &dir));
        }
        Ok(probe_result::Data::Sensors(SensorData { temperatures, ..Default::default() }))
    }
}

/// The directories `<prefix>N` in `dir`, in numeric order (`hwmon2` before `hwmon10`).
/// Symlinks are followed, as every entry of a sysfs class directory is one.
fn numbered_entries(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut numbered: Vec<(u32, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let number = entry.file_name().to_str()?.strip_prefix(prefix)?.parse().ok()?;
            let path = entry.path();
            path.is_dir().then_some((number, path))
        })
        .collect();
    numbered.sort();
    numbered.into_iter().map(|(_, path)| path).collect()
}

/// The numbers `N` of the `temp<N>_input` files in `dir`, ascending.
fn temp_inputs(dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut numbers: Vec<u32> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name();
            name.to_str()?.strip_prefix("temp")?.strip_suffix("_input")?.parse().ok()
        })
        .collect();
    numbers.sort_unstable();
    numbers
}

fn hwmon_temperatures(root: &HostRoot, dir: &Path) -> Vec<TemperatureSensor> {
    let device = dir.join("device");
    let entry_name =
        dir.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let chip = [dir.join("name"), device.join("name")]
        .iter()
        .find_map(|path| read::attr_string(path).filter(|name| !name.is_empty()))
        .unwrap_or(entry_name);
    let (attr_dir, inputs) = match temp_inputs(dir) {
        inputs if !inputs.is_empty() => (dir.to_path_buf(), inputs),
        _ => {
            let inputs = temp_inputs(&device);
            (device, inputs)
        }
    };

    inputs
        .into_iter()
        .filter_map(|n| {
            let file = |suffix: &str| attr_dir.join(format!("temp{n}_{suffix}"));
            let input = file("input");
            if read::attr::<u8>(&file("fault")) == Some(1) {
                tracing::debug!(path = %input.display(), "sensor reports a fault");
                return None;
            }
            let celsius = plausible(&input, millidegrees(&input)?)?;
            let label = read::attr_string(&file("label"))
                .filter(|label| !label.is_empty())
                .unwrap_or_else(|| format!("temp{n}"));
            Some(TemperatureSensor {
                name: format!("{chip}/{label}"),
                source: root.sys_relative(&input),
                celsius,
                high_celsius: threshold(&file("max")),
                critical_celsius: threshold(&file("crit")),
                ..Default::default()
            })
        })
        .collect()
}

fn thermal_zone(root: &HostRoot, dir: &Path) -> Option<TemperatureSensor> {
    let input = dir.join("temp");
    let celsius = plausible(&input, millidegrees(&input)?)?;
    let kind = read::attr_string(&dir.join("type"))
        .filter(|kind| !kind.is_empty())
        .or_else(|| Some(dir.file_name()?.to_string_lossy().into_owned()))
        .unwrap_or_default();
    Some(TemperatureSensor {
        name: format!("thermal/{kind}"),
        source: root.sys_relative(&input),
        celsius,
        high_celsius: None,
        critical_celsius: None,
        ..Default::default()
    })
}

/// A millidegree attribute in degrees Celsius. Unreadable inputs (`ENODATA` from a sensor
/// that is asleep, `EAGAIN` from some ACPI zones) are skipped, logged at debug.
fn millidegrees(path: &Path) -> Option<f64> {
    read::attr::<i64>(path).map(|milli| milli as f64 / 1000.0)
}

fn plausible(path: &Path, celsius: f64) -> Option<f64> {
    if PLAUSIBLE_CELSIUS.contains(&celsius) {
        Some(celsius)
    } else {
        tracing::debug!(path = %path.display(), celsius, "implausible temperature left out");
        None
    }
}

/// A `temp*_max`/`temp*_crit` threshold, `None` when absent or implausible.
fn threshold(path: &Path) -> Option<f64> {
    millidegrees(path).filter(|celsius| PLAUSIBLE_CELSIUS.contains(celsius))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn collect(root: &HostRoot) -> Vec<TemperatureSensor> {
        match Sensors.collect(root) {
            Ok(probe_result::Data::Sensors(data)) => data.temperatures,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn negative_thermal_zone_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let thermal = dir.path().join("sys/class/thermal");
        write(&thermal.join("thermal_zone0/temp"), "49925\n");
        write(&thermal.join("thermal_zone0/type"), "x86_pkg_temp\n");
        write(&thermal.join("thermal_zone1/temp"), "-44000\n");
        write(&thermal.join("thermal_zone1/type"), "acpitz\n");
        write(&thermal.join("thermal_zone2/temp"), "255500\n");
        write(&thermal.join("cooling_device0/type"), "Processor\n");

        let temperatures = collect(&HostRoot::new(dir.path().to_path_buf()));
        assert_eq!(temperatures.len(), 1, "{temperatures:?}");
        assert_eq!(temperatures[0].name, "thermal/x86_pkg_temp");
        assert_eq!(temperatures[0].celsius, 49.925);
        assert_eq!(temperatures[0].source, "class/thermal/thermal_zone0/temp");
    }

    #[test]
    fn hwmon_names_labels_and_thresholds() {
        let dir = tempfile::tempdir().unwrap();
        let hwmon = dir.path().join("sys/class/hwmon");
        write(&hwmon.join("hwmon10/name"), "nvme\n");
        write(&hwmon.join("hwmon10/temp1_input"), "38850\n");
        write(&hwmon.join("hwmon10/temp1_label"), "Composite\n");
        write(&hwmon.join("hwmon10/temp1_max"), "81850\n");
        write(&hwmon.join("hwmon10/temp1_crit"), "84850\n");
        write(&hwmon.join("hwmon10/temp2_input"), "40000\n");
        write(&hwmon.join("hwmon10/temp3_input"), "40000\n");
        write(&hwmon.join("hwmon10/temp3_fault"), "1\n");
        // No name file, attributes under device/ (old drivers); numeric order puts it first.
        write(&hwmon.join("hwmon2/device/temp1_input"), "30000\n");
        write(&hwmon.join("hwmon2/device/temp1_crit"), "-273150\n");

        let temperatures = collect(&HostRoot::new(dir.path().to_path_buf()));
        let names: Vec<&str> = temperatures.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["hwmon2/temp1", "nvme/Composite", "nvme/temp2"]);
        assert_eq!(temperatures[0].source, "class/hwmon/hwmon2/device/temp1_input");
        assert_eq!(temperatures[0].critical_celsius, None, "implausible threshold");
        assert_eq!(temperatures[1].celsius, 38.85);
        assert_eq!(temperatures[1].high_celsius, Some(81.85));
        assert_eq!(temperatures[1].critical_celsius, Some(84.85));
    }

    #[test]
    fn no_sources_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let root = HostRoot::new(dir.path().to_path_buf());
        assert!(matches!(Sensors.collect(&root), Err(ProbeError::Unavailable(_))));
    }
}
