//! One hwmon chip: `/sys/class/hwmon/hwmonN/` (or its `device/`), parsed by [`parse_chip`].

use std::collections::BTreeMap;
use std::path::Path;

use vigil_proto::v1::{
    FanSensor, IntrusionSensor, PowerSensor, SensorData, TemperatureSensor, VoltageSensor,
};

use super::{Quantity, dir_name, index, integer, read_files};
use crate::root::HostRoot;

/// The sensor types this probe reads, in report order, by their attribute prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Type {
    Temp,
    Fan,
    In,
    Power,
    Intrusion,
}

impl Type {
    fn prefix(self) -> &'static str {
        match self {
            Self::Temp => "temp",
            Self::Fan => "fan",
            Self::In => "in",
            Self::Power => "power",
            Self::Intrusion => "intrusion",
        }
    }

    fn from_prefix(prefix: &str) -> Option<Self> {
        Some(match prefix {
            "temp" => Self::Temp,
            "fan" => Self::Fan,
            "in" => Self::In,
            "power" => Self::Power,
            "intrusion" => Self::Intrusion,
            _ => return None,
        })
    }

    /// The attributes (after `<type>N_`) this probe reads, besides the `*_alarm` flags.
    fn items(self) -> &'static [&'static str] {
        match self {
            Self::Temp => &["input", "label", "max", "crit", "fault"],
            Self::Fan => &["input", "label", "min", "fault"],
            Self::In => &["input", "label", "min", "max"],
            Self::Power => &["input", "average", "label", "max", "cap"],
            Self::Intrusion => &[],
        }
    }

    /// Whether an attribute of this type with this item is one the probe reads.
    fn reads(self, item: &str) -> bool {
        is_alarm(item) || self.items().contains(&item)
    }

    /// Whether an attribute with this item is the value itself, so its presence means the
    /// sensor exists.
    fn is_value(self, item: &str) -> bool {
        match self {
            Self::Temp | Self::Fan | Self::In => item == "input",
            Self::Power => item == "input" || item == "average",
            Self::Intrusion => item == "alarm",
        }
    }
}

/// `alarm`, `crit_alarm`, `max_alarm`, `min_alarm`, `lcrit_alarm`, `emergency_alarm`...
fn is_alarm(item: &str) -> bool {
    item == "alarm" || item.ends_with("_alarm")
}

/// `temp1_crit_alarm` as (`Temp`, 1, `"crit_alarm"`); `None` for any other name.
fn split_attribute(file: &str) -> Option<(Type, u32, &str)> {
    let digits_at = file.find(|c: char| c.is_ascii_digit())?;
    let (prefix, rest) = file.split_at(digits_at);
    let kind = Type::from_prefix(prefix)?;
    let (number, item) = rest.split_once('_')?;
    Some((kind, index(number)?, item))
}

/// Whether the probe reads a file of this name in a hwmon directory.
fn wanted(file: &str) -> bool {
    file == "name" || split_attribute(file).is_some_and(|(kind, _, item)| kind.reads(item))
}

/// Whether a file of this name is a sensor value (so the directory holds a chip's sensors).
fn is_value(file: &str) -> bool {
    split_attribute(file).is_some_and(|(kind, _, item)| kind.is_value(item))
}

/// Reads the chip at `dir` (`/sys/class/hwmon/hwmonN`). Older drivers keep their attributes
/// in `device/`; those are read there when `dir` itself has no sensor, and the chip `name`
/// then comes from `dir` if it has one, else from `device/`.
pub(super) fn read_chip(root: &HostRoot, dir: &Path) -> SensorData {
    let entry = dir_name(dir);
    let own = read_files(dir, wanted);
    if own.iter().any(|(file, _)| is_value(file)) {
        return parse_chip(&entry, &root.sys_relative(dir), &own);
    }
    let device = dir.join("device");
    let mut files: Vec<(String, String)> =
        own.into_iter().filter(|(file, _)| file == "name").collect();
    files.extend(read_files(&device, wanted));
    parse_chip(&entry, &root.sys_relative(&device), &files)
}

/// Parses one hwmon chip from its attribute files, given as (file name, content) pairs in any
/// order, contents as read (untrimmed). `entry` is the hwmon directory name (`hwmon3`), the
/// chip name when no `name` file has one; `source_dir` is the directory of the files relative
/// to the sysfs root (`class/hwmon/hwmon3`), the prefix of every `source`. The first non-empty
/// `name` file names the chip.
///
/// Returns every sensor the files describe, in (type, number) order: readings within the
/// plausible ranges, anything else under `implausible`. Names and contents that are not what
/// the kernel documents are skipped; no input makes it panic.
pub fn parse_chip(entry: &str, source_dir: &str, files: &[(String, String)]) -> SensorData {
    let mut chip = None;
    let mut sensors: BTreeMap<(Type, u32), BTreeMap<&str, &str>> = BTreeMap::new();
    for (file, content) in files {
        if file == "name" {
            let name = content.trim();
            if chip.is_none() && !name.is_empty() {
                chip = Some(name);
            }
        } else if let Some((kind, number, item)) = split_attribute(file)
            && kind.reads(item)
        {
            sensors.entry((kind, number)).or_default().insert(item, content.as_str());
        }
    }
    let chip = chip.unwrap_or(entry);

    let mut data = SensorData::default();
    for ((kind, number), attributes) in &sensors {
        let attribute = |item: &str| attributes.get(item).copied();
        let prefix = kind.prefix();
        let source = |item: &str| format!("{source_dir}/{prefix}{number}_{item}");
        let label = attribute("label")
            .map(str::trim)
            .filter(|label| !label.is_empty())
            .map_or_else(|| format!("{prefix}{number}"), str::to_owned);
        let name = format!("{chip}/{label}");
        let alarm = attributes.iter().any(|(item, value)| is_alarm(item) && flag(Some(value)));
        if flag(attribute("fault")) {
            tracing::debug!(source = source("fault"), "sensor reports a fault");
            continue;
        }
        // Unit conversions: millidegrees, millivolts, microwatts.
        let scaled = |item: &str, per_unit: f64| Some(integer(attribute(item))? as f64 / per_unit);

        match kind {
            Type::Temp => {
                let Some(value) = scaled("input", 1000.0) else { continue };
                let (quantity, source) = (Quantity::Temperature, source("input"));
                match quantity.check(&name, &source, value) {
                    Ok(celsius) => data.temperatures.push(TemperatureSensor {
                        name,
                        source,
                        celsius,
                        high_celsius: quantity.threshold(scaled("max", 1000.0)),
                        critical_celsius: quantity.threshold(scaled("crit", 1000.0)),
                        alarm,
                        trips: Vec::new(),
                    }),
                    Err(implausible) => data.implausible.push(implausible),
                }
            }
            Type::Fan => {
                let Some(value) = scaled("input", 1.0) else { continue };
                let (quantity, source) = (Quantity::Fan, source("input"));
                match quantity.check(&name, &source, value) {
                    Ok(rpm) => data.fans.push(FanSensor {
                        name,
                        source,
                        rpm,
                        min_rpm: quantity.threshold(scaled("min", 1.0)),
                        alarm,
                    }),
                    Err(implausible) => data.implausible.push(implausible),
                }
            }
            Type::In => {
                let Some(value) = scaled("input", 1000.0) else { continue };
                let (quantity, source) = (Quantity::Voltage, source("input"));
                match quantity.check(&name, &source, value) {
                    Ok(volts) => data.voltages.push(VoltageSensor {
                        name,
                        source,
                        volts,
                        min_volts: quantity.threshold(scaled("min", 1000.0)),
                        max_volts: quantity.threshold(scaled("max", 1000.0)),
                        alarm,
                    }),
                    Err(implausible) => data.implausible.push(implausible),
                }
            }
            Type::Power => {
                // `power*_input` is the instantaneous draw; drivers without it (older amdgpu,
                // fam15h_power) report `power*_average` instead.
                let (value, item) = match scaled("input", 1e6) {
                    Some(value) => (value, "input"),
                    None => match scaled("average", 1e6) {
                        Some(value) => (value, "average"),
                        None => continue,
                    },
                };
                let (quantity, source) = (Quantity::Power, source(item));
                let max = scaled("max", 1e6).or_else(|| scaled("cap", 1e6));
                match quantity.check(&name, &source, value) {
                    Ok(watts) => data.power.push(PowerSensor {
                        name,
                        source,
                        watts,
                        max_watts: quantity.threshold(max),
                        alarm,
                    }),
                    Err(implausible) => data.implausible.push(implausible),
                }
            }
            Type::Intrusion => {
                if integer(attribute("alarm")).is_some() {
                    data.intrusions.push(IntrusionSensor { name, source: source("alarm"), alarm });
                }
            }
        }
    }
    data
}

/// A 0/1 flag attribute (`*_alarm`, `*_fault`): set when it reads 1.
fn flag(content: Option<&str>) -> bool {
    integer(content) == Some(1)
}

#[cfg(test)]
mod tests {
    use super::super::{MAX_PLAUSIBLE_RPM, MAX_PLAUSIBLE_VOLTS};
    use super::*;

    fn files(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(name, content)| ((*name).to_owned(), (*content).to_owned())).collect()
    }

    fn parse(pairs: &[(&str, &str)]) -> SensorData {
        parse_chip("hwmon7", "class/hwmon/hwmon7", &files(pairs))
    }

    #[test]
    fn attribute_names() {
        assert_eq!(split_attribute("temp1_crit_alarm"), Some((Type::Temp, 1, "crit_alarm")));
        assert_eq!(split_attribute("in0_input"), Some((Type::In, 0, "input")));
        assert_eq!(split_attribute("intrusion1_alarm"), Some((Type::Intrusion, 1, "alarm")));
        assert_eq!(split_attribute("power10_cap"), Some((Type::Power, 10, "cap")));
        assert_eq!(split_attribute("temp1"), None);
        assert_eq!(split_attribute("temp01_input"), None);
        assert_eq!(split_attribute("pwm1_enable"), None);
        assert_eq!(split_attribute("bogus1_input"), None);
        assert_eq!(split_attribute("1_input"), None);
        assert!(wanted("name") && wanted("fan2_min") && wanted("temp3_emergency_alarm"));
        assert!(!wanted("fan2_beep") && !wanted("intrusion0_beep") && !wanted("uevent"));
    }

    #[test]
    fn stopped_fan_is_a_reading_and_fast_fan_is_not() {
        let data = parse(&[
            ("name", "it8728\n"),
            ("fan1_input", "0\n"),
            ("fan1_min", "600\n"),
            ("fan1_alarm", "1\n"),
            ("fan2_input", "65535000\n"),
            ("fan2_label", "CPU_OPT\n"),
            ("fan3_input", "-5\n"),
        ]);
        assert_eq!(
            data.fans,
            [FanSensor {
                name: "it8728/fan1".into(),
                source: "class/hwmon/hwmon7/fan1_input".into(),
                rpm: 0.0,
                min_rpm: Some(600.0),
                alarm: true,
            }]
        );
        let implausible: Vec<(&str, &str, f64)> =
            data.implausible.iter().map(|i| (i.name.as_str(), i.kind.as_str(), i.value)).collect();
        assert_eq!(
            implausible,
            [("it8728/CPU_OPT", "fan", 65_535_000.0), ("it8728/fan3", "fan", -5.0)]
        );
        assert_eq!(data.implausible[0].source, "class/hwmon/hwmon7/fan2_input");
        assert!(data.implausible[0].reason.contains(&format!("above {MAX_PLAUSIBLE_RPM} rpm")));
    }

    #[test]
    fn voltages_in_volts_with_limits() {
        let data = parse(&[
            ("name", "nct6798\n"),
            ("in0_input", "1032\n"),
            ("in0_min", "900\n"),
            ("in0_max", "1200\n"),
            ("in1_input", "-12096\n"),
            ("in1_label", "-12V\n"),
            ("in1_min_alarm", "1\n"),
            ("in2_input", "-25000\n"),
            ("in3_input", "512000\n"),
            ("in4_input", "garbage\n"),
            ("in4_max", "3000\n"),
        ]);
        let voltage = |name: &str, input: &str, volts, min_volts, max_volts, alarm| VoltageSensor {
            name: name.into(),
            source: format!("class/hwmon/hwmon7/{input}"),
            volts,
            min_volts,
            max_volts,
            alarm,
        };
        assert_eq!(
            data.voltages,
            [
                voltage("nct6798/in0", "in0_input", 1.032, Some(0.9), Some(1.2), false),
                voltage("nct6798/-12V", "in1_input", -12.096, None, None, true),
            ]
        );
        let implausible: Vec<(&str, f64)> =
            data.implausible.iter().map(|i| (i.name.as_str(), i.value)).collect();
        assert_eq!(implausible, [("nct6798/in2", -25.0), ("nct6798/in3", 512.0)]);
        assert!(data.implausible[1].reason.contains(&format!("above {MAX_PLAUSIBLE_VOLTS} V")));
    }

    #[test]
    fn power_in_watts_with_cap() {
        let data = parse(&[
            ("name", "amdgpu\n"),
            ("power1_average", "35123000\n"),
            ("power1_cap", "250000000\n"),
            ("power2_input", "12500000\n"),
            ("power2_max", "150000000\n"),
            ("power2_cap", "1\n"),
            ("power2_alarm", "1\n"),
            ("power3_input", "200000000000\n"),
        ]);
        assert_eq!(
            data.power,
            [
                PowerSensor {
                    name: "amdgpu/power1".into(),
                    source: "class/hwmon/hwmon7/power1_average".into(),
                    watts: 35.123,
                    max_watts: Some(250.0),
                    alarm: false,
                },
                PowerSensor {
                    name: "amdgpu/power2".into(),
                    source: "class/hwmon/hwmon7/power2_input".into(),
                    watts: 12.5,
                    max_watts: Some(150.0),
                    alarm: true,
                },
            ]
        );
        assert_eq!(data.implausible.len(), 1);
        assert_eq!(data.implausible[0].kind, "power");
        assert_eq!(data.implausible[0].value, 200_000.0);
    }

    #[test]
    fn intrusion_needs_a_readable_alarm() {
        let data = parse(&[
            ("intrusion0_alarm", "0\n"),
            ("intrusion1_alarm", "1\n"),
            ("intrusion2_alarm", "?\n"),
        ]);
        let intrusions: Vec<(&str, bool)> =
            data.intrusions.iter().map(|i| (i.name.as_str(), i.alarm)).collect();
        assert_eq!(intrusions, [("hwmon7/intrusion0", false), ("hwmon7/intrusion1", true)]);
    }

    #[test]
    fn first_non_empty_name_wins_and_garbage_is_ignored() {
        let data = parse(&[
            ("name", "  \n"),
            ("name", "drivetemp\n"),
            ("name", "other\n"),
            ("temp1_input", " 31000 \n"),
            ("temp1_label", "\n"),
            ("temp1_max", "x"),
            ("temp1_alarm", "yes"),
            ("temp1_input_extra", "1"),
            ("temp_input", "1"),
            ("temp2_max", "50000"),
            ("temp18446744073709551616_input", "1"),
            ("", ""),
            ("é1_input", "1"),
        ]);
        let temperatures: Vec<(&str, f64, Option<f64>, bool)> = data
            .temperatures
            .iter()
            .map(|t| (t.name.as_str(), t.celsius, t.high_celsius, t.alarm))
            .collect();
        assert_eq!(temperatures, [("drivetemp/temp1", 31.0, None, false)]);
        assert!(data.implausible.is_empty());
    }

    #[test]
    fn implausible_temperature_keeps_its_name_and_source() {
        let data = parse(&[
            ("name", "acpitz\n"),
            ("temp1_input", "-44000\n"),
            ("temp1_crit", "105000\n"),
            ("temp2_input", "127000\n"),
            ("temp2_crit", "255000\n"),
        ]);
        assert_eq!(data.temperatures.len(), 1);
        assert_eq!(data.temperatures[0].name, "acpitz/temp2");
        assert_eq!(data.temperatures[0].celsius, 127.0);
        assert_eq!(data.temperatures[0].critical_celsius, None, "threshold out of range");
        assert_eq!(data.implausible.len(), 1);
        assert_eq!(data.implausible[0].name, "acpitz/temp1");
        assert_eq!(data.implausible[0].source, "class/hwmon/hwmon7/temp1_input");
        assert_eq!(data.implausible[0].value, -44.0);
    }
}
