//! One thermal zone: `/sys/class/thermal/thermal_zoneN/`, parsed by [`parse_zone`].

use std::collections::BTreeMap;
use std::path::Path;

use vigil_proto::v1::{SensorData, TemperatureSensor, ThermalTrip};

use super::{Quantity, dir_name, index, integer, read_files};
use crate::root::HostRoot;

/// `trip_point_3_temp` as (3, `"temp"`); `None` for any other name.
fn split_trip(file: &str) -> Option<(u32, &str)> {
    let (number, item) = file.strip_prefix("trip_point_")?.split_once('_')?;
    matches!(item, "type" | "temp").then_some((index(number)?, item))
}

/// Whether the probe reads a file of this name in a thermal zone directory.
fn wanted(file: &str) -> bool {
    file == "temp" || file == "type" || split_trip(file).is_some()
}

/// Reads the zone at `dir` (`/sys/class/thermal/thermal_zoneN`).
pub(super) fn read_zone(root: &HostRoot, dir: &Path) -> SensorData {
    parse_zone(&dir_name(dir), &root.sys_relative(dir), &read_files(dir, wanted))
}

/// Parses one thermal zone from its files, given as (file name, content) pairs in any order,
/// contents as read (untrimmed). `zone` is the directory name (`thermal_zone1`), the name when
/// there is no `type`; `source_dir` is the directory relative to the sysfs root
/// (`class/thermal/thermal_zone1`).
///
/// The zone is one temperature named `thermal/<type>` with its trip points in trip order; the
/// lowest `critical` and `hot` trips are also its critical and high thresholds. Trips without
/// a type or with an implausible temperature (firmware placeholders) are left out. An
/// implausible zone temperature goes to `implausible`; a zone without a readable `temp` yields
/// nothing. No input makes it panic.
pub fn parse_zone(zone: &str, source_dir: &str, files: &[(String, String)]) -> SensorData {
    let mut temp = None;
    let mut kind = None;
    let mut trips: BTreeMap<u32, (Option<&str>, Option<&str>)> = BTreeMap::new();
    for (file, content) in files {
        match file.as_str() {
            "temp" => temp = temp.or(Some(content.as_str())),
            "type" => kind = kind.or(Some(content.trim()).filter(|kind| !kind.is_empty())),
            _ => match split_trip(file) {
                Some((number, "type")) => trips.entry(number).or_default().0 = Some(content.trim()),
                Some((number, _)) => trips.entry(number).or_default().1 = Some(content),
                None => {}
            },
        }
    }

    let mut data = SensorData::default();
    let Some(millidegrees) = integer(temp) else {
        return data;
    };
    let quantity = Quantity::Temperature;
    let name = format!("thermal/{}", kind.unwrap_or(zone));
    let source = format!("{source_dir}/temp");
    match quantity.check(&name, &source, millidegrees as f64 / 1000.0) {
        Ok(celsius) => {
            let trips: Vec<ThermalTrip> = trips
                .into_values()
                .filter_map(|(kind, temp)| {
                    let kind = kind.filter(|kind| !kind.is_empty())?;
                    let celsius = quantity.threshold(Some(integer(temp)? as f64 / 1000.0))?;
                    Some(ThermalTrip { kind: kind.to_owned(), celsius })
                })
                .collect();
            let lowest = |kind: &str| {
                trips
                    .iter()
                    .filter(|trip| trip.kind == kind)
                    .map(|trip| trip.celsius)
                    .reduce(f64::min)
            };
            data.temperatures.push(TemperatureSensor {
                name,
                source,
                celsius,
                high_celsius: lowest("hot"),
                critical_celsius: lowest("critical"),
                alarm: false,
                trips,
            });
        }
        Err(implausible) => data.implausible.push(implausible),
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> SensorData {
        let files: Vec<(String, String)> = pairs
            .iter()
            .map(|(name, content)| ((*name).to_owned(), (*content).to_owned()))
            .collect();
        parse_zone("thermal_zone4", "class/thermal/thermal_zone4", &files)
    }

    #[test]
    fn trip_names() {
        assert_eq!(split_trip("trip_point_0_temp"), Some((0, "temp")));
        assert_eq!(split_trip("trip_point_12_type"), Some((12, "type")));
        assert_eq!(split_trip("trip_point_0_hyst"), None);
        assert_eq!(split_trip("trip_point__temp"), None);
        assert_eq!(split_trip("trip_point_01_temp"), None);
        assert!(wanted("temp") && wanted("type") && !wanted("policy") && !wanted("mode"));
    }

    #[test]
    fn zone_with_critical_trips_and_junk() {
        let data = parse(&[
            ("type", "acpitz\n"),
            ("temp", "27800\n"),
            ("trip_point_0_type", "critical\n"),
            ("trip_point_0_temp", "119000\n"),
            ("trip_point_1_type", "critical\n"),
            ("trip_point_1_temp", "110000\n"),
            ("trip_point_2_type", "\n"),
            ("trip_point_2_temp", "90000\n"),
            ("trip_point_3_type", "passive\n"),
            ("trip_point_3_temp", "eighty\n"),
            ("trip_point_4_temp", "80000\n"),
        ]);
        let zone = &data.temperatures[0];
        assert_eq!(zone.name, "thermal/acpitz");
        assert_eq!(zone.celsius, 27.8);
        let trips: Vec<(&str, f64)> =
            zone.trips.iter().map(|trip| (trip.kind.as_str(), trip.celsius)).collect();
        assert_eq!(trips, [("critical", 119.0), ("critical", 110.0)]);
        assert_eq!(zone.critical_celsius, Some(110.0));
        assert_eq!(zone.high_celsius, None);
    }

    #[test]
    fn unreadable_temp_yields_nothing() {
        assert_eq!(parse(&[("type", "acpitz\n")]), SensorData::default());
        assert_eq!(parse(&[("temp", "\n")]), SensorData::default());
        assert_eq!(parse(&[]), SensorData::default());
    }
}
