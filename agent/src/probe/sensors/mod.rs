//! Hardware sensors: temperatures, fans, voltages, power and chassis intrusion from every hwmon
//! chip, and every thermal zone with its trip points.
//!
//! Sources: `/sys/class/hwmon/hwmon*/` with the chip `name` and the attributes of the kernel's
//! sysfs interface (`Documentation/hwmon/sysfs-interface.rst`): `temp*_input` (millidegrees
//! Celsius) with `_label`, `_max`, `_crit`; `fan*_input` (rpm) with `_min`; `in*_input`
//! (millivolts) with `_min`, `_max`; `power*_input` (microwatts) with `_max` or `_cap`;
//! `intrusion*_alarm`; and any `*_alarm` flag of a sensor. Some older drivers keep their
//! attributes in the `device/` directory of the hwmon entry; those are read there. And
//! `/sys/class/thermal/thermal_zone*/temp` with its `type` and `trip_point_*_{type,temp}`
//! (`Documentation/driver-api/thermal/sysfs-api.rst`). The parsing of one chip or zone is a
//! pure function of its files ([`hwmon::parse_chip`], [`thermal::parse_zone`]), so it can be
//! tested and fuzzed without a tree.
//!
//! Names are `<chip>/<label>` (`coretemp/Core 0`; `nct6779/fan2` when the chip has no label)
//! and `thermal/<type>` for zones; `source` is the attribute's path below `/sys`.
//!
//! A value no sensor can truly read (outside the ranges below) is not a reading: it goes to
//! `SensorData.implausible` with the reason, so an unconnected input or a firmware placeholder
//! shows up as such and never raises a temperature or voltage alarm for hardware that is fine.
//! Thresholds (`_max`, `_crit`, `_min`, trip points) outside the same ranges are left out.
//! Attributes the kernel refuses to read (`ENODATA` from a sensor that is asleep, `EAGAIN`
//! from some ACPI zones, `EIO` from a chip that does not answer) are skipped, logged at debug,
//! as is a sensor whose `*_fault` flag is set.

pub mod hwmon;
pub mod thermal;

use std::ops::RangeInclusive;
use std::path::Path;

use vigil_proto::v1::{ImplausibleReading, SensorData, probe_result};

use super::{Probe, ProbeError};
use crate::read;
use crate::root::HostRoot;

/// Coldest plausible temperature: the bottom of the industrial operating range (-40 °C) of any
/// part in a running machine. Colder is an unconnected input or a firmware placeholder (ACPI
/// zones reading -44 °C, or -273 °C for "no value").
pub const MIN_PLAUSIBLE_CELSIUS: f64 = -40.0;
/// Hottest plausible temperature: the top junction rating of silicon (150 °C, automotive grade
/// 0); CPUs and GPUs shut themselves down near 100-125 °C. Hotter is a floating input reading
/// full scale (127 or 255 °C) or garbage.
pub const MAX_PLAUSIBLE_CELSIUS: f64 = 150.0;
/// Fastest plausible fan: small server fans peak near 30 000 rpm. Faster is a tachometer
/// miscount (a noise pulse train, a wrong divisor) or garbage. A stopped fan (0 rpm) is a real
/// reading.
pub const MAX_PLAUSIBLE_RPM: f64 = 50_000.0;
/// Most negative plausible voltage: the lowest rail in a computer is -12 V. Below -20 V is a
/// sign or scaling error.
pub const MIN_PLAUSIBLE_VOLTS: f64 = -20.0;
/// Highest plausible voltage: power supplies report their input, up to 380 V on HVDC feeds.
/// Above 400 V is a scaling error or garbage.
pub const MAX_PLAUSIBLE_VOLTS: f64 = 400.0;
/// Highest plausible power: one hwmon sensor (a CPU package, a GPU, a power supply) draws at
/// most a few kW, a whole rack tens of kW. Above 100 kW is a scaling error or garbage.
pub const MAX_PLAUSIBLE_WATTS: f64 = 100_000.0;

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
        let mut data = SensorData::default();
        for (_, dir) in read::numbered_dirs(&hwmon, "hwmon") {
            append(&mut data, hwmon::read_chip(root, &dir));
        }
        for (_, dir) in read::numbered_dirs(&thermal, "thermal_zone") {
            append(&mut data, thermal::read_zone(root, &dir));
        }
        Ok(probe_result::Data::Sensors(data))
    }
}

fn append(into: &mut SensorData, from: SensorData) {
    let SensorData { temperatures, fans, voltages, power, intrusions, implausible } = from;
    into.temperatures.extend(temperatures);
    into.fans.extend(fans);
    into.voltages.extend(voltages);
    into.power.extend(power);
    into.intrusions.extend(intrusions);
    into.implausible.extend(implausible);
}

/// The regular files of `dir` whose name is `wanted`, as (file name, content) pairs. A file
/// that cannot be read is skipped, logged at debug. Only regular files are opened, so a
/// directory or a FIFO under an attribute's name in an odd tree cannot block the probe.
fn read_files(dir: &Path, wanted: fn(&str) -> bool) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<(String, String)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok().filter(|name| wanted(name))?;
            let path = entry.path();
            if !path.is_file() {
                return None;
            }
            match read::read_string(&path) {
                Ok(text) => Some((name, text)),
                Err(err) => {
                    tracing::debug!(%err, "sensor attribute not readable");
                    None
                }
            }
        })
        .collect();
    files.sort();
    files
}

/// The last path component, for the fallback name of a chip or zone.
fn dir_name(dir: &Path) -> String {
    dir.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default()
}

/// What a sensor measures: its kind for [`ImplausibleReading::kind`], its unit and the range of
/// values it can truly read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Quantity {
    Temperature,
    Fan,
    Voltage,
    Power,
}

impl Quantity {
    fn kind(self) -> &'static str {
        match self {
            Self::Temperature => "temperature",
            Self::Fan => "fan",
            Self::Voltage => "voltage",
            Self::Power => "power",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Self::Temperature => "°C",
            Self::Fan => "rpm",
            Self::Voltage => "V",
            Self::Power => "W",
        }
    }

    fn plausible(self) -> RangeInclusive<f64> {
        match self {
            Self::Temperature => MIN_PLAUSIBLE_CELSIUS..=MAX_PLAUSIBLE_CELSIUS,
            Self::Fan => 0.0..=MAX_PLAUSIBLE_RPM,
            Self::Voltage => MIN_PLAUSIBLE_VOLTS..=MAX_PLAUSIBLE_VOLTS,
            Self::Power => 0.0..=MAX_PLAUSIBLE_WATTS,
        }
    }

    /// Why `value` (outside [`Self::plausible`]) cannot be a reading.
    fn reason(self, value: f64) -> String {
        let range = self.plausible();
        let unit = self.unit();
        let why = match self {
            Self::Temperature if value < *range.start() => {
                "colder than any running machine: an unconnected input or a firmware placeholder"
            }
            Self::Temperature => "past the shutdown point of any silicon: a floating input",
            Self::Fan if value < 0.0 => "a fan cannot turn at a negative speed",
            Self::Fan => "faster than any cooling fan: a tachometer miscount",
            Self::Voltage if value < *range.start() => {
                "more negative than any rail in a computer (-12 V): a sign or scaling error"
            }
            Self::Voltage => "more than any supply a sensor chip measures: a scaling error",
            Self::Power if value < 0.0 => "a sensor cannot draw negative power",
            Self::Power => "more than a whole rack draws: a scaling error",
        };
        let bound = if value < *range.start() {
            format!("below {} {unit}", range.start())
        } else {
            format!("above {} {unit}", range.end())
        };
        format!("{value} {unit} is {bound}, {why}")
    }

    /// `Ok(value)` when it is plausible; otherwise the [`ImplausibleReading`] to report in
    /// its place.
    fn check(self, name: &str, source: &str, value: f64) -> Result<f64, ImplausibleReading> {
        if self.plausible().contains(&value) {
            return Ok(value);
        }
        tracing::debug!(name, source, value, kind = self.kind(), "implausible sensor value");
        Err(ImplausibleReading {
            name: name.to_owned(),
            source: source.to_owned(),
            kind: self.kind().to_owned(),
            value,
            reason: self.reason(value),
        })
    }

    /// A threshold (`_max`, `_crit`, a trip point) when it is plausible, else `None`.
    fn threshold(self, value: Option<f64>) -> Option<f64> {
        value.filter(|value| self.plausible().contains(value))
    }
}

/// An integer attribute: trimmed, decimal, `None` when absent or garbage.
fn integer(content: Option<&str>) -> Option<i64> {
    content?.trim().parse().ok()
}

/// `N` of a sysfs attribute name (`temp<N>_input`, `trip_point_<N>_temp`) in canonical form
/// only (no sign, no leading zero), so `temp01_input` cannot pose as `temp1_input`.
fn index(digits: &str) -> Option<u32> {
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if canonical { digits.parse().ok() } else { None }
}

#[cfg(test)]
mod tests {
    use vigil_proto::v1::{
        FanSensor, IntrusionSensor, TemperatureSensor, ThermalTrip, VoltageSensor,
    };

    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn collect(root: &HostRoot) -> SensorData {
        match Sensors.collect(root) {
            Ok(probe_result::Data::Sensors(data)) => data,
            other => panic!("{other:?}"),
        }
    }

    fn fixture(tree: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(tree)
    }

    /// The fixture tree as a root; its sysfs class entries are relative symlinks, as on a host.
    fn fixture_with_links(tree: &str) -> HostRoot {
        HostRoot::new(fixture(tree))
    }

    fn names<T>(sensors: &[T], name: impl Fn(&T) -> &str) -> Vec<&str> {
        sensors.iter().map(name).collect()
    }

    #[test]
    fn fixture_coretemp_thresholds_and_crit_alarm() {
        let data = collect(&fixture_with_links("node-exporter"));
        let coretemp: Vec<&TemperatureSensor> =
            data.temperatures.iter().filter(|t| t.name.starts_with("coretemp/")).collect();
        assert_eq!(coretemp.len(), 10, "two packages of five sensors: {coretemp:?}");
        assert_eq!(
            *coretemp[0],
            TemperatureSensor {
                name: "coretemp/Physical id 0".into(),
                source: "class/hwmon/hwmon0/temp1_input".into(),
                celsius: 55.0,
                high_celsius: Some(84.0),
                critical_celsius: Some(100.0),
                alarm: false, // temp1_crit_alarm = 0
                trips: Vec::new(),
            }
        );
        assert_eq!(coretemp[4].name, "coretemp/Core 3");
        assert_eq!(coretemp[4].celsius, 50.0);
        assert_eq!(coretemp[5].source, "class/hwmon/hwmon1/temp1_input");
        assert!(coretemp.iter().all(|t| t.critical_celsius == Some(100.0) && !t.alarm));
    }

    #[test]
    fn fixture_fans_voltages_and_intrusion() {
        let data = collect(&fixture_with_links("node-exporter"));
        let fan = |name: &str, source: &str, rpm, min_rpm| FanSensor {
            name: name.into(),
            source: source.into(),
            rpm,
            min_rpm: Some(min_rpm),
            alarm: false,
        };
        assert_eq!(
            data.fans,
            [
                // applesmc keeps its attributes in `device/` and its name there too (hwmon2
                // has none). The left fan stands still below its minimum: a real reading.
                fan("applesmc/Left side", "class/hwmon/hwmon2/device/fan1_input", 0.0, 2160.0),
                fan("applesmc/Right side", "class/hwmon/hwmon2/device/fan2_input", 1998.0, 2000.0),
                fan("nct6779/fan2", "class/hwmon/hwmon3/fan2_input", 1098.0, 0.0),
            ]
        );
        assert_eq!(
            data.voltages,
            [
                VoltageSensor {
                    name: "nct6779/in0".into(),
                    source: "class/hwmon/hwmon3/in0_input".into(),
                    volts: 0.792,
                    min_volts: Some(0.0),
                    max_volts: Some(1.744),
                    alarm: false,
                },
                // The chip's limits are both 0 V, so its own alarm flag is up.
                VoltageSensor {
                    name: "nct6779/in1".into(),
                    source: "class/hwmon/hwmon3/in1_input".into(),
                    volts: 1.024,
                    min_volts: Some(0.0),
                    max_volts: Some(0.0),
                    alarm: true,
                },
            ]
        );
        assert_eq!(
            data.intrusions,
            [
                IntrusionSensor {
                    name: "nct6779/intrusion0".into(),
                    source: "class/hwmon/hwmon3/intrusion0_alarm".into(),
                    alarm: true,
                },
                IntrusionSensor {
                    name: "nct6779/intrusion1".into(),
                    source: "class/hwmon/hwmon3/intrusion1_alarm".into(),
                    alarm: true,
                },
            ]
        );
        assert!(data.power.is_empty(), "{:?}", data.power);
    }

    #[test]
    fn fixture_odd_chips_do_not_break_the_rest() {
        let data = collect(&fixture_with_links("node-exporter"));
        let mut expected = vec![];
        for _ in 0..2 {
            expected.extend([
                "coretemp/Physical id 0",
                "coretemp/Core 0",
                "coretemp/Core 1",
                "coretemp/Core 2",
                "coretemp/Core 3",
            ]);
        }
        // hwmon2 (applesmc: no name, fans in `device/`) and hwmon3 (nct6779) have no
        // temperatures, hwmon5 (`bogus1_*` attributes of no known type) has nothing, hwmon6
        // and hwmon7 (asus) only `pwm1_enable`; hwmon4 is a plain directory without a name.
        expected.extend([
            "hwmon4/foosensor",
            "hwmon4/foosensor",
            "mt7996_phy0_0/temp1",
            "mt7996_phy0_1/temp1",
            "mt7996_phy0_2/temp1",
            "thermal/cpu-thermal",
        ]);
        assert_eq!(names(&data.temperatures, |t| &t.name), expected);
        assert_eq!(data.temperatures[10].source, "class/hwmon/hwmon4/temp1_input");
        assert_eq!(data.temperatures[12].source, "class/hwmon/hwmon8/temp1_input");
        assert_eq!(data.temperatures[15].celsius, 12.376);
        assert!(data.implausible.is_empty(), "{:?}", data.implausible);
    }

    #[test]
    fn fixture_acpitz_at_minus_44_is_implausible_not_a_reading() {
        let data = collect(&HostRoot::new(fixture("linux-procfs")));
        assert_eq!(names(&data.temperatures, |t| &t.name), ["thermal/bcm2835_thermal"]);
        assert_eq!(data.temperatures[0].celsius, 49.925);
        assert_eq!(data.implausible.len(), 1, "{:?}", data.implausible);
        let acpitz = &data.implausible[0];
        assert_eq!(acpitz.name, "thermal/acpitz");
        assert_eq!(acpitz.source, "class/thermal/thermal_zone1/temp");
        assert_eq!(acpitz.kind, "temperature");
        assert_eq!(acpitz.value, -44.0);
        assert!(acpitz.reason.starts_with("-44 °C is below -40 °C, "), "{}", acpitz.reason);
    }

    /// No fixture has a chip over its critical threshold (every `temp*_crit_alarm` there is
    /// 0), so this tree is written by hand.
    #[test]
    fn hwmon_chip_over_its_crit() {
        let dir = tempfile::tempdir().unwrap();
        let chip = dir.path().join("sys/class/hwmon/hwmon0");
        write(&chip.join("name"), "k10temp\n");
        write(&chip.join("temp1_label"), "Tctl\n");
        write(&chip.join("temp1_input"), "104500\n");
        write(&chip.join("temp1_max"), "90000\n");
        write(&chip.join("temp1_crit"), "100000\n");
        write(&chip.join("temp1_max_alarm"), "1\n");
        write(&chip.join("temp1_crit_alarm"), "1\n");
        write(&chip.join("temp2_label"), "Tccd1\n");
        write(&chip.join("temp2_input"), "61000\n");
        write(&chip.join("temp2_crit"), "100000\n");
        write(&chip.join("temp2_crit_alarm"), "0\n");

        let data = collect(&HostRoot::new(dir.path().to_path_buf()));
        assert_eq!(
            data.temperatures,
            [
                TemperatureSensor {
                    name: "k10temp/Tctl".into(),
                    source: "class/hwmon/hwmon0/temp1_input".into(),
                    celsius: 104.5,
                    high_celsius: Some(90.0),
                    critical_celsius: Some(100.0),
                    alarm: true,
                    trips: Vec::new(),
                },
                TemperatureSensor {
                    name: "k10temp/Tccd1".into(),
                    source: "class/hwmon/hwmon0/temp2_input".into(),
                    celsius: 61.0,
                    high_celsius: None,
                    critical_celsius: Some(100.0),
                    alarm: false,
                    trips: Vec::new(),
                },
            ]
        );
        assert!(data.implausible.is_empty());
    }

    /// No fixture zone has trip points, so this tree is written by hand.
    #[test]
    fn thermal_zone_trip_points() {
        let dir = tempfile::tempdir().unwrap();
        let zone = dir.path().join("sys/class/thermal/thermal_zone0");
        write(&zone.join("type"), "x86_pkg_temp\n");
        write(&zone.join("temp"), "47000\n");
        write(&zone.join("trip_point_0_type"), "critical\n");
        write(&zone.join("trip_point_0_temp"), "105000\n");
        write(&zone.join("trip_point_1_type"), "passive\n");
        write(&zone.join("trip_point_1_temp"), "95000\n");
        write(&zone.join("trip_point_2_type"), "active\n");
        write(&zone.join("trip_point_2_temp"), "-273200\n"); // placeholder: left out
        write(&zone.join("trip_point_3_type"), "hot\n"); // no temperature: left out
        write(&zone.join("trip_point_10_type"), "hot\n");
        write(&zone.join("trip_point_10_temp"), "100000\n");

        let data = collect(&HostRoot::new(dir.path().to_path_buf()));
        let trip = |kind: &str, celsius| ThermalTrip { kind: kind.into(), celsius };
        assert_eq!(
            data.temperatures,
            [TemperatureSensor {
                name: "thermal/x86_pkg_temp".into(),
                source: "class/thermal/thermal_zone0/temp".into(),
                celsius: 47.0,
                high_celsius: Some(100.0),
                critical_celsius: Some(105.0),
                alarm: false,
                trips: vec![trip("critical", 105.0), trip("passive", 95.0), trip("hot", 100.0)],
            }]
        );
    }

    #[test]
    fn implausible_zones_are_reported_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let thermal = dir.path().join("sys/class/thermal");
        write(&thermal.join("thermal_zone0/temp"), "49925\n");
        write(&thermal.join("thermal_zone0/type"), "x86_pkg_temp\n");
        write(&thermal.join("thermal_zone1/temp"), "-44000\n");
        write(&thermal.join("thermal_zone1/type"), "acpitz\n");
        write(&thermal.join("thermal_zone2/temp"), "255500\n");
        write(&thermal.join("thermal_zone3/temp"), "not a number\n");
        write(&thermal.join("cooling_device0/type"), "Processor\n");

        let data = collect(&HostRoot::new(dir.path().to_path_buf()));
        assert_eq!(names(&data.temperatures, |t| &t.name), ["thermal/x86_pkg_temp"]);
        assert_eq!(data.temperatures[0].celsius, 49.925);
        assert_eq!(data.temperatures[0].source, "class/thermal/thermal_zone0/temp");
        let implausible: Vec<(&str, f64)> =
            data.implausible.iter().map(|i| (i.name.as_str(), i.value)).collect();
        // Without a `type`, the zone is named by its directory.
        assert_eq!(implausible, [("thermal/acpitz", -44.0), ("thermal/thermal_zone2", 255.5)]);
        assert!(data.implausible[1].reason.starts_with("255.5 °C is above 150 °C, "));
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
        // An empty name falls back to the directory name too.
        write(&hwmon.join("hwmon3/name"), "\n");
        write(&hwmon.join("hwmon3/fan1_input"), "900\n");

        let data = collect(&HostRoot::new(dir.path().to_path_buf()));
        let temperatures = &data.temperatures;
        assert_eq!(
            names(temperatures, |t| &t.name),
            ["hwmon2/temp1", "nvme/Composite", "nvme/temp2"]
        );
        assert_eq!(temperatures[0].source, "class/hwmon/hwmon2/device/temp1_input");
        assert_eq!(temperatures[0].critical_celsius, None, "implausible threshold");
        assert_eq!(temperatures[1].celsius, 38.85);
        assert_eq!(temperatures[1].high_celsius, Some(81.85));
        assert_eq!(temperatures[1].critical_celsius, Some(84.85));
        assert_eq!(names(&data.fans, |f| &f.name), ["hwmon3/fan1"]);
        assert!(data.implausible.is_empty(), "a faulty sensor is skipped, not implausible");
    }

    #[test]
    fn odd_files_are_skipped_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let chip = dir.path().join("sys/class/hwmon/hwmon0");
        write(&chip.join("name"), "odd\n");
        // A directory and a FIFO under attribute names: neither is opened.
        std::fs::create_dir_all(chip.join("temp1_input")).unwrap();
        let fifo = chip.join("temp2_input");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        write(&chip.join("temp3_input"), "\u{fffd}\u{0}garbage");
        write(&chip.join("temp4_input"), "99999999999999999999999\n");
        write(&chip.join("temp5_input"), "42000\n");
        // A plain file where a chip directory should be.
        write(&dir.path().join("sys/class/hwmon/hwmon1"), "../../devices/nowhere\n");

        let data = collect(&HostRoot::new(dir.path().to_path_buf()));
        assert_eq!(names(&data.temperatures, |t| &t.name), ["odd/temp5"]);
        assert!(data.implausible.is_empty());
    }

    #[test]
    fn plausibility_bounds_are_inclusive() {
        let t = Quantity::Temperature;
        assert_eq!(t.check("x", "y", MIN_PLAUSIBLE_CELSIUS), Ok(-40.0));
        assert_eq!(t.check("x", "y", MAX_PLAUSIBLE_CELSIUS), Ok(150.0));
        assert!(t.check("x", "y", -40.001).is_err());
        assert!(t.check("x", "y", 150.001).is_err());
        assert_eq!(Quantity::Fan.check("x", "y", 0.0), Ok(0.0));
        assert_eq!(Quantity::Fan.check("x", "y", MAX_PLAUSIBLE_RPM), Ok(50_000.0));
        assert_eq!(Quantity::Voltage.check("x", "y", -12.0), Ok(-12.0));
        assert!(Quantity::Voltage.check("x", "y", -20.001).is_err());
        assert!(Quantity::Voltage.check("x", "y", 400.001).is_err());
        assert!(Quantity::Power.check("x", "y", 100_000.001).is_err());
        let bad = Quantity::Power.check("psu/PIN", "src", -1.0).unwrap_err();
        assert_eq!(bad.kind, "power");
        assert_eq!(bad.reason, "-1 W is below 0 W, a sensor cannot draw negative power");
    }

    #[test]
    fn canonical_indices_only() {
        assert_eq!(index("0"), Some(0));
        assert_eq!(index("12"), Some(12));
        assert_eq!(index("01"), None);
        assert_eq!(index("+1"), None);
        assert_eq!(index(""), None);
        assert_eq!(index("99999999999"), None);
    }

    #[test]
    fn no_sources_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let root = HostRoot::new(dir.path().to_path_buf());
        assert!(matches!(Sensors.collect(&root), Err(ProbeError::Unavailable(_))));
    }
}
