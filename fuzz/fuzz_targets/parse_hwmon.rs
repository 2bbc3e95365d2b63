//! Feeds `hwmon::parse_chip` and `thermal::parse_zone` arbitrary attribute files and checks
//! that they never panic and that whatever they return keeps the plausibility promise: every
//! reading and threshold is within its plausible range, every implausible entry is outside it,
//! every source lies in the chip's directory, and there is at most one result per file.
//!
//! File names are built from the kernel's vocabulary (`temp`, `fan`, `in`, `power`,
//! `intrusion`, `trip_point_`; `input`, `crit_alarm`...) with odd numbers and free text mixed
//! in, so the fuzzer spends its time on names the parser reads rather than on random bytes.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use vigil_agent::probe::sensors::{
    MAX_PLAUSIBLE_CELSIUS, MAX_PLAUSIBLE_RPM, MAX_PLAUSIBLE_VOLTS, MAX_PLAUSIBLE_WATTS,
    MIN_PLAUSIBLE_CELSIUS, MIN_PLAUSIBLE_VOLTS, hwmon, thermal,
};
use vigil_proto::v1::SensorData;

const PREFIXES: &[&str] =
    &["temp", "fan", "in", "power", "intrusion", "trip_point_", "curr", "pwm", "", "bogus"];
const ITEMS: &[&str] = &[
    "input",
    "label",
    "max",
    "min",
    "crit",
    "cap",
    "average",
    "fault",
    "alarm",
    "crit_alarm",
    "max_alarm",
    "min_alarm",
    "beep",
    "type",
    "temp",
    "",
];
const WHOLE: &[&str] = &["name", "temp", "type", "device", "uevent"];
const WORDS: &[&str] = &["critical", "passive", "hot", "active", "Core 0", "coretemp", ""];
const MAX_FILES: usize = 64;

fn number(u: &mut Unstructured) -> Result<String> {
    Ok(match u.int_in_range(0..=5)? {
        0..=2 => u.int_in_range(0u32..=3)?.to_string(),
        3 => u.arbitrary::<u32>()?.to_string(),
        4 => u.choose(&["01", "", "-1", "+1", "4294967296", "1a"])?.to_string(),
        _ => u.arbitrary()?,
    })
}

fn file_name(u: &mut Unstructured) -> Result<String> {
    Ok(match u.int_in_range(0..=7)? {
        0 => u.choose(WHOLE)?.to_string(),
        1 => u.arbitrary()?,
        _ => format!("{}{}_{}", u.choose(PREFIXES)?, number(u)?, u.choose(ITEMS)?),
    })
}

fn content(u: &mut Unstructured) -> Result<String> {
    let text = match u.int_in_range(0..=7)? {
        0..=2 => u.int_in_range(-300_000i64..=300_000)?.to_string(),
        3 => u.arbitrary::<i64>()?.to_string(),
        4 => u.int_in_range(0i64..=1)?.to_string(),
        5 => u.choose(WORDS)?.to_string(),
        _ => u.arbitrary()?,
    };
    let padding = *u.choose(&["", "\n", " ", "\t\n"])?;
    Ok(format!("{padding}{text}{padding}"))
}

fn files(u: &mut Unstructured) -> Vec<(String, String)> {
    let mut files = Vec::new();
    while !u.is_empty() && files.len() < MAX_FILES {
        match file_name(u).and_then(|name| Ok((name, content(u)?))) {
            Ok(file) => files.push(file),
            Err(_) => break,
        }
    }
    files
}

fn within(value: f64, low: f64, high: f64) -> bool {
    (low..=high).contains(&value)
}

fn check(data: &SensorData, source_dir: &str, files: usize, zone: bool) {
    let in_dir = |source: &str| {
        source.strip_prefix(source_dir).is_some_and(|rest| rest.starts_with('/') && rest.len() > 1)
    };
    let celsius = |value: f64| within(value, MIN_PLAUSIBLE_CELSIUS, MAX_PLAUSIBLE_CELSIUS);
    let rpm = |value: f64| within(value, 0.0, MAX_PLAUSIBLE_RPM);
    let volts = |value: f64| within(value, MIN_PLAUSIBLE_VOLTS, MAX_PLAUSIBLE_VOLTS);
    let watts = |value: f64| within(value, 0.0, MAX_PLAUSIBLE_WATTS);

    for t in &data.temperatures {
        assert!(celsius(t.celsius), "{t:?}");
        assert!(t.high_celsius.is_none_or(celsius), "{t:?}");
        assert!(t.critical_celsius.is_none_or(celsius), "{t:?}");
        assert!(t.trips.iter().all(|trip| celsius(trip.celsius) && !trip.kind.is_empty()));
        assert!(zone || t.trips.is_empty(), "a chip has no trips: {t:?}");
        assert!(t.name.contains('/') && in_dir(&t.source), "{t:?}");
    }
    for f in &data.fans {
        assert!(rpm(f.rpm) && f.min_rpm.is_none_or(rpm), "{f:?}");
        assert!(f.name.contains('/') && in_dir(&f.source), "{f:?}");
    }
    for v in &data.voltages {
        assert!(volts(v.volts), "{v:?}");
        assert!(v.min_volts.is_none_or(volts) && v.max_volts.is_none_or(volts), "{v:?}");
        assert!(v.name.contains('/') && in_dir(&v.source), "{v:?}");
    }
    for p in &data.power {
        assert!(watts(p.watts) && p.max_watts.is_none_or(watts), "{p:?}");
        assert!(p.name.contains('/') && in_dir(&p.source), "{p:?}");
    }
    for i in &data.intrusions {
        assert!(i.name.contains('/') && in_dir(&i.source), "{i:?}");
    }
    for i in &data.implausible {
        let plausible = match i.kind.as_str() {
            "temperature" => celsius(i.value),
            "fan" => rpm(i.value),
            "voltage" => volts(i.value),
            "power" => watts(i.value),
            other => panic!("unknown kind {other:?}"),
        };
        assert!(!plausible, "a plausible value reported as implausible: {i:?}");
        assert!(!i.reason.is_empty() && in_dir(&i.source), "{i:?}");
    }

    let results = data.temperatures.len()
        + data.fans.len()
        + data.voltages.len()
        + data.power.len()
        + data.intrusions.len()
        + data.implausible.len();
    assert!(results <= files, "{results} results from {files} files");
    if zone {
        assert!(results <= 1, "a zone is one temperature: {data:?}");
        assert!(data.fans.is_empty() && data.voltages.is_empty() && data.power.is_empty());
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(zone) = u.arbitrary::<bool>() else {
        return;
    };
    let files = files(&mut u);
    if zone {
        let dir = "class/thermal/thermal_zone0";
        check(&thermal::parse_zone("thermal_zone0", dir, &files), dir, files.len(), true);
    } else {
        let dir = "class/hwmon/hwmon0";
        check(&hwmon::parse_chip("hwmon0", dir, &files), dir, files.len(), false);
    }
});
