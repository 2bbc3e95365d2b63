//! Hardware rules: hwmon and thermal-zone sensors (temperatures against the hardware's own
//! limits, fans, voltages, power, chassis intrusion), IPMI (sensor states the BMC judges, new
//! System Event Log entries) and ECC memory (corrected and uncorrected error counts). The
//! limits are the hardware's: a sensor without one is never judged against a guess, and
//! readings the agent found implausible are never findings. Sensor resources are the agent's
//! `<chip>/<label>` name, qualified by the source when two sensors of a chip share it;
//! IPMI sensors are `ipmi/<name>`, the SEL is `sel`, an ECC controller its name (`mc0`).

use std::borrow::Cow;
use std::collections::BTreeMap;

use vigil_proto::v1::{EccData, IpmiData, IpmiEvent, IpmiSensor, SensorData, TemperatureSensor};

use super::memory::{Marks, counter_events};
use super::text::{decimal, decimals, text};
use super::{FaultLevel, Findings, HostMemory, RuleDef};

pub(super) const TEMP_CRITICAL: RuleDef = RuleDef::state(
    "temperature.critical",
    FaultLevel::L1,
    "a temperature at or above its critical limit (the chip's, or a thermal zone's critical trip)",
);
pub(super) const TEMP_HIGH: RuleDef = RuleDef::state(
    "temperature.high",
    FaultLevel::L2,
    "a temperature at or above its high limit, below critical",
);
pub(super) const FAN_STOPPED: RuleDef = RuleDef::state(
    "fan.stopped",
    FaultLevel::L2,
    "a fan reads 0 rpm that has a minimum speed set or was seen turning (empty fan \
     headers are ignored)",
);
pub(super) const FAN_SLOW: RuleDef =
    RuleDef::state("fan.slow", FaultLevel::L3, "a fan turns below its minimum speed");
pub(super) const VOLTAGE: RuleDef = RuleDef::state(
    "voltage.out_of_range",
    FaultLevel::L2,
    "a voltage outside its min/max limits, or its chip's alarm (limits of 0 count as unset)",
);
pub(super) const POWER: RuleDef = RuleDef::state(
    "power.out_of_range",
    FaultLevel::L2,
    "a power reading above its limit, or its chip's alarm",
);
pub(super) const INTRUSION: RuleDef = RuleDef::event(
    "chassis.intrusion",
    FaultLevel::L4,
    "a chassis intrusion alarm is set that was not set (or not seen) in the last report; \
     once per latch",
);
pub(super) const IPMI_NONRECOVERABLE: RuleDef = RuleDef::state(
    "ipmi.non_recoverable",
    FaultLevel::L1,
    "the BMC rates a sensor non-recoverable (`nr`, `lnr`, `unr`)",
);
pub(super) const IPMI_CRITICAL: RuleDef = RuleDef::state(
    "ipmi.critical",
    FaultLevel::L2,
    "the BMC rates a sensor critical (`cr`, `lcr`, `ucr`)",
);
pub(super) const IPMI_NONCRITICAL: RuleDef = RuleDef::state(
    "ipmi.non_critical",
    FaultLevel::L3,
    "the BMC rates a sensor non-critical (`nc`, `lnc`, `unc`)",
);
pub(super) const IPMI_SEL: RuleDef = RuleDef::event(
    "ipmi.sel",
    FaultLevel::L4,
    "the IPMI System Event Log has new entries (one finding per report, resource `sel`)",
);
pub(super) const ECC_UNCORRECTED: RuleDef = RuleDef::event(
    "ecc.uncorrected",
    FaultLevel::L1,
    "a memory controller's uncorrected error count rose",
);
pub(super) const ECC_CORRECTED: RuleDef = RuleDef::event(
    "ecc.corrected",
    FaultLevel::L3,
    "a memory controller's corrected error count rose",
);

pub(super) const RULES: &[RuleDef] = &[
    TEMP_CRITICAL,
    TEMP_HIGH,
    FAN_STOPPED,
    FAN_SLOW,
    VOLTAGE,
    POWER,
    INTRUSION,
    IPMI_NONRECOVERABLE,
    IPMI_CRITICAL,
    IPMI_NONCRITICAL,
    IPMI_SEL,
    ECC_UNCORRECTED,
    ECC_CORRECTED,
];

/// Lowest temperature limit taken as set. No part is specified to be too hot at room
/// temperature; a lower `_max`, `_crit` or trip is an unset register (often 0).
const MIN_TEMPERATURE_LIMIT_CELSIUS: f64 = 20.0;

// ---- hwmon and thermal-zone sensors ----

pub(super) fn sensors(data: &SensorData, memory: &mut HostMemory, findings: &mut Findings) {
    let names = resource_names(data.temperatures.iter().map(|t| (&t.name, &t.source)));
    for (sensor, name) in data.temperatures.iter().zip(&names) {
        temperature(sensor, name, findings);
    }
    fans(data, &mut Marks::new(&mut memory.fans_turning), findings);
    let names = resource_names(data.voltages.iter().map(|v| (&v.name, &v.source)));
    for (sensor, name) in data.voltages.iter().zip(&names) {
        let limits = Limits::new(sensor.min_volts, sensor.max_volts, sensor.alarm, VOLTS);
        out_of_range(&VOLTAGE, name, sensor.volts, &limits, findings);
    }
    let names = resource_names(data.power.iter().map(|p| (&p.name, &p.source)));
    for (sensor, name) in data.power.iter().zip(&names) {
        let limits = Limits::new(None, sensor.max_watts, sensor.alarm, WATTS);
        out_of_range(&POWER, name, sensor.watts, &limits, findings);
    }
    intrusions(data, &mut Marks::new(&mut memory.intrusions_latched), findings);
}

/// The resource of each sensor of one kind, in order: its name (`coretemp/Core 0`), or where
/// several share a name (two chips of one driver), `<name> (<source>)`.
fn resource_names<'a>(
    sensors: impl Iterator<Item = (&'a String, &'a String)> + Clone,
) -> Vec<String> {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for (name, _) in sensors.clone() {
        *count.entry(name).or_default() += 1;
    }
    sensors
        .map(|(name, source)| match count[name.as_str()] {
            1 => text(name).into_owned(),
            _ => text(&format!("{name} ({source})")).into_owned(),
        })
        .collect()
}

fn temperature(sensor: &TemperatureSensor, name: &str, findings: &mut Findings) {
    let celsius = sensor.celsius;
    let critical_trips =
        sensor.trips.iter().filter(|trip| trip.kind == "critical").map(|trip| trip.celsius);
    let critical = lowest_limit(sensor.critical_celsius.into_iter().chain(critical_trips));
    let high = lowest_limit(sensor.high_celsius);
    let over = |limit: Option<f64>, what: &str| {
        let limit = limit.filter(|&limit| celsius >= limit)?;
        Some(format!("{name} at {} °C, {what} limit {} °C", decimal(celsius), decimal(limit)))
    };
    if let Some(summary) = over(critical, "critical") {
        findings.fire(&TEMP_CRITICAL, name, |_| summary);
    } else if let Some(summary) = over(high, "high") {
        findings.fire(&TEMP_HIGH, name, |_| summary);
    }
}

/// The lowest of the limits that are set (see [`MIN_TEMPERATURE_LIMIT_CELSIUS`]).
fn lowest_limit(limits: impl IntoIterator<Item = f64>) -> Option<f64> {
    limits.into_iter().filter(|&limit| limit >= MIN_TEMPERATURE_LIMIT_CELSIUS).reduce(f64::min)
}

/// A fan is judged against its minimum when it has one (a `min_rpm` of 0 is unset); a fan
/// without one only when it stops after it was seen turning, so an empty header (0 rpm,
/// no minimum, as Super I/O chips list them) is never a stopped fan.
fn fans(data: &SensorData, turning: &mut Marks, findings: &mut Findings) {
    let names = resource_names(data.fans.iter().map(|f| (&f.name, &f.source)));
    for (fan, name) in data.fans.iter().zip(&names) {
        let was_turning = turning.was_marked(name);
        if was_turning || fan.rpm > 0.0 {
            turning.mark(name);
        }
        let min = fan.min_rpm.filter(|&min| min > 0.0);
        let rpm = decimal(fan.rpm);
        if fan.rpm <= 0.0 && (min.is_some() || was_turning) {
            let reference = match min {
                Some(min) => format!("minimum {} rpm", decimal(min)),
                None => "it was turning before".to_owned(),
            };
            findings
                .fire(&FAN_STOPPED, name, |_| format!("{name} stopped: {rpm} rpm ({reference})"));
        } else if let Some(min) = min.filter(|&min| fan.rpm < min) {
            findings.fire(&FAN_SLOW, name, |_| {
                format!("{name} at {rpm} rpm, below its minimum {} rpm", decimal(min))
            });
        }
    }
}

/// How a quantity is written: its unit and decimal places (chips state voltages to the
/// millivolt).
#[derive(Clone, Copy)]
struct Quantity {
    unit: &'static str,
    places: usize,
}

const VOLTS: Quantity = Quantity { unit: "V", places: 3 };
const WATTS: Quantity = Quantity { unit: "W", places: 1 };

impl Quantity {
    fn show(self, value: f64) -> String {
        format!("{} {}", decimals(value, self.places), self.unit)
    }
}

/// A sensor's limits as its chip states them. A limit of 0 is an unset register (hwmon
/// chips power up with 0/0); with no limit set, the chip's alarm only says the reading is
/// not 0 and is not taken.
struct Limits {
    min: Option<f64>,
    max: Option<f64>,
    alarm: bool,
    quantity: Quantity,
}

impl Limits {
    fn new(min: Option<f64>, max: Option<f64>, alarm: bool, quantity: Quantity) -> Self {
        let set = |limit: Option<f64>| limit.filter(|&limit| limit != 0.0);
        Self { min: set(min), max: set(max), alarm, quantity }
    }

    /// Why `value` is out of limits, if it is.
    fn exceeded(&self, value: f64) -> Option<String> {
        let limits = self.describe()?;
        let below = self.min.is_some_and(|min| value < min);
        let above = self.max.is_some_and(|max| value > max);
        if below || above {
            Some(format!("out of range ({limits})"))
        } else if self.alarm {
            Some(format!("alarm set by the chip (range {limits})"))
        } else {
            None
        }
    }

    /// `3 to 3.6 V`, `at most 900 W`; `None` when no limit is set.
    fn describe(&self) -> Option<String> {
        let show = |limit| self.quantity.show(limit);
        match (self.min, self.max) {
            (Some(min), Some(max)) => {
                Some(format!("{} to {}", decimals(min, self.quantity.places), show(max)))
            }
            (Some(min), None) => Some(format!("at least {}", show(min))),
            (None, Some(max)) => Some(format!("at most {}", show(max))),
            (None, None) => None,
        }
    }
}

/// A finding of `def` when `value` is out of the sensor's `limits`.
fn out_of_range(def: &RuleDef, name: &str, value: f64, limits: &Limits, findings: &mut Findings) {
    if let Some(why) = limits.exceeded(value) {
        let reading = limits.quantity.show(value);
        findings.fire(def, name, |_| format!("{name} at {reading}: {why}"));
    }
}

/// An intrusion alarm is reported once when it latches; while it stays set it is remembered
/// and not reported again, and once cleared it is forgotten, so the next latch reports.
fn intrusions(data: &SensorData, latched: &mut Marks, findings: &mut Findings) {
    let names = resource_names(data.intrusions.iter().map(|i| (&i.name, &i.source)));
    for (sensor, name) in data.intrusions.iter().zip(&names) {
        if !sensor.alarm {
            continue;
        }
        let reported = latched.was_marked(name);
        latched.mark(name);
        if !reported {
            findings.fire(&INTRUSION, name, |_| {
                format!("{name}: chassis intrusion alarm set (the case was opened)")
            });
        }
    }
}

// ---- IPMI ----

pub(super) fn ipmi(data: &IpmiData, memory: &mut HostMemory, findings: &mut Findings) {
    for sensor in &data.sensors {
        if let Some((def, meaning)) = ipmi_rule(&sensor.status) {
            let resource = format!("ipmi/{}", text(&sensor.name));
            findings.fire(def, &resource, |_| ipmi_summary(sensor, &resource, meaning));
        }
    }
    sel(&data.events, memory, findings);
}

/// The rule for an ipmitool sensor status, and what the status means; `None` for `ok`, `ns`
/// (no reading) and anything unknown.
fn ipmi_rule(status: &str) -> Option<(&'static RuleDef, &'static str)> {
    match status {
        "nr" | "lnr" | "unr" => Some((&IPMI_NONRECOVERABLE, "non-recoverable")),
        "cr" | "lcr" | "ucr" => Some((&IPMI_CRITICAL, "critical")),
        "nc" | "lnc" | "unc" => Some((&IPMI_NONCRITICAL, "non-critical")),
        _ => None,
    }
}

/// `ipmi/PSU1 (Power Supply): critical (cr), reading Failure detected`.
fn ipmi_summary(sensor: &IpmiSensor, resource: &str, meaning: &str) -> String {
    let kind = match sensor.sensor_type.as_str() {
        "" => String::new(),
        kind => format!(" ({})", text(kind)),
    };
    let reading: Cow<'_, str> = match sensor.value {
        Some(value) => format!("{} {}", decimal(value), text(&sensor.unit)).into(),
        None => text(&sensor.text),
    };
    let reading = reading.trim();
    let status = text(&sensor.status);
    if reading.is_empty() {
        format!("{resource}{kind}: {meaning} ({status})")
    } else {
        format!("{resource}{kind}: {meaning} ({status}), reading {reading}")
    }
}

/// The SEL entries of this report the last report with entries did not have: one finding for
/// all of them. The agent sends each entry once; remembering the last batch keeps a report
/// classified twice (a resend) from reporting them twice.
fn sel(events: &[IpmiEvent], memory: &mut HostMemory, findings: &mut Findings) {
    if events.is_empty() {
        return;
    }
    let keys: Vec<String> = events
        .iter()
        .map(|e| text(&format!("{}@{}", e.record_id, e.timestamp)).into_owned())
        .collect();
    let new: Vec<&IpmiEvent> = events
        .iter()
        .zip(&keys)
        .filter(|(_, key)| !memory.sel_last_entries.contains(*key))
        .map(|(event, _)| event)
        .collect();
    memory.sel_last_entries = keys.into_iter().collect();
    let Some(first) = new.first() else { return };
    findings.fire(&IPMI_SEL, "sel", |_| {
        let entries = if new.len() == 1 { "entry" } else { "entries" };
        format!(
            "{} new SEL {entries}, first: {}: {} ({}) at {}",
            new.len(),
            text(&first.sensor),
            text(&first.description),
            text(&first.direction),
            text(&first.timestamp)
        )
    });
}

// ---- ECC memory ----

pub(super) fn ecc(data: &EccData, memory: &mut HostMemory, findings: &mut Findings) {
    let controllers = &data.controllers;
    let uncorrected = controllers.iter().map(|mc| (mc.name.as_str(), Some(mc.uncorrected_errors)));
    counter_events(&ECC_UNCORRECTED, "uncorrected ECC errors", uncorrected, memory, findings);
    let corrected = controllers.iter().map(|mc| (mc.name.as_str(), Some(mc.corrected_errors)));
    counter_events(&ECC_CORRECTED, "corrected ECC errors", corrected, memory, findings);
}

#[cfg(test)]
mod tests {
    use vigil_proto::v1::probe_result::Data;
    use vigil_proto::v1::{
        FanSensor, ImplausibleReading, IntrusionSensor, MemoryController, PowerSensor, ThermalTrip,
        VoltageSensor,
    };

    use super::*;
    use crate::classify::FindingKind;
    use crate::classify::testing::{fired, run, run_once};

    fn sensors_data(data: SensorData) -> Data {
        Data::Sensors(data)
    }

    fn temp(
        name: &str,
        celsius: f64,
        high: Option<f64>,
        critical: Option<f64>,
    ) -> TemperatureSensor {
        TemperatureSensor {
            name: name.into(),
            source: format!("class/hwmon/hwmon0/{name}"),
            celsius,
            high_celsius: high,
            critical_celsius: critical,
            ..TemperatureSensor::default()
        }
    }

    fn temperatures(temperatures: Vec<TemperatureSensor>) -> Vec<crate::classify::Finding> {
        run_once([sensors_data(SensorData { temperatures, ..SensorData::default() })])
    }

    #[test]
    fn temperature_against_the_chips_limits() {
        let findings = temperatures(vec![
            temp("coretemp/Core 0", 100.0, Some(84.0), Some(100.0)),
            temp("coretemp/Core 1", 84.0, Some(84.0), Some(100.0)),
            temp("coretemp/Core 2", 83.9, Some(84.0), Some(100.0)),
            temp("nolimits/temp1", 140.0, None, None),
            // Unset (0) limits are no limits.
            temp("unset/temp1", 45.0, Some(0.0), Some(0.0)),
        ]);
        assert_eq!(
            fired(&findings),
            [
                ("temperature.critical", "coretemp/Core 0", FaultLevel::L1),
                ("temperature.high", "coretemp/Core 1", FaultLevel::L2),
            ]
        );
        assert_eq!(findings[0].summary, "coretemp/Core 0 at 100 °C, critical limit 100 °C");
        assert_eq!(findings[1].summary, "coretemp/Core 1 at 84 °C, high limit 84 °C");
    }

    #[test]
    fn thermal_zone_critical_trip() {
        let zone = TemperatureSensor {
            trips: vec![
                ThermalTrip { kind: "passive".into(), celsius: 90.0 },
                ThermalTrip { kind: "critical".into(), celsius: 105.0 },
            ],
            ..temp("thermal/x86_pkg_temp", 105.5, None, None)
        };
        let findings = temperatures(vec![zone.clone()]);
        assert_eq!(
            fired(&findings),
            [("temperature.critical", "thermal/x86_pkg_temp", FaultLevel::L1)]
        );
        // Past the passive trip only: no limit the rules judge by.
        assert_eq!(temperatures(vec![TemperatureSensor { celsius: 95.0, ..zone }]), []);
    }

    #[test]
    fn sensors_sharing_a_name_are_told_apart_by_source() {
        let hot = |source: &str| TemperatureSensor {
            source: source.into(),
            ..temp("coretemp/Core 0", 101.0, Some(84.0), Some(100.0))
        };
        let findings = temperatures(vec![
            hot("class/hwmon/hwmon0/temp2_input"),
            hot("class/hwmon/hwmon1/temp2_input"),
        ]);
        let resources: Vec<&str> = findings.iter().map(|f| f.resource.as_str()).collect();
        assert_eq!(
            resources,
            [
                "coretemp/Core 0 (class/hwmon/hwmon0/temp2_input)",
                "coretemp/Core 0 (class/hwmon/hwmon1/temp2_input)"
            ]
        );
    }

    #[test]
    fn implausible_readings_are_never_findings() {
        let data = SensorData {
            implausible: vec![ImplausibleReading {
                name: "thermal/acpitz".into(),
                kind: "temperature".into(),
                value: 600.0,
                reason: "above 150 °C".into(),
                ..ImplausibleReading::default()
            }],
            ..SensorData::default()
        };
        assert_eq!(run_once([sensors_data(data)]), []);
    }

    fn fan(name: &str, rpm: f64, min_rpm: Option<f64>) -> FanSensor {
        FanSensor {
            name: name.into(),
            source: format!("{name}_input"),
            rpm,
            min_rpm,
            ..FanSensor::default()
        }
    }

    fn fans(memory: &mut HostMemory, fans: Vec<FanSensor>) -> Vec<crate::classify::Finding> {
        run(memory, [sensors_data(SensorData { fans, ..SensorData::default() })])
    }

    #[test]
    fn fan_without_history_or_minimum_is_not_judged() {
        let mut memory = HostMemory::default();
        // An empty header, first seen: nothing, now or later.
        assert_eq!(fans(&mut memory, vec![fan("nct6779/fan3", 0.0, None)]), []);
        assert_eq!(fans(&mut memory, vec![fan("nct6779/fan3", 0.0, Some(0.0))]), []);
    }

    #[test]
    fn fan_that_turned_and_stopped() {
        let mut memory = HostMemory::default();
        assert_eq!(fans(&mut memory, vec![fan("nct6779/fan2", 1100.0, None)]), []);
        let findings = fans(&mut memory, vec![fan("nct6779/fan2", 0.0, None)]);
        assert_eq!(fired(&findings), [("fan.stopped", "nct6779/fan2", FaultLevel::L2)]);
        assert_eq!(findings[0].summary, "nct6779/fan2 stopped: 0 rpm (it was turning before)");
        // Still remembered while it stays stopped.
        assert_eq!(fans(&mut memory, vec![fan("nct6779/fan2", 0.0, None)]).len(), 1);
    }

    #[test]
    fn fan_against_its_minimum() {
        let findings = fans(
            &mut HostMemory::default(),
            vec![
                fan("applesmc/Left side", 0.0, Some(2160.0)),
                fan("applesmc/Right side", 1998.0, Some(2000.0)),
                fan("applesmc/Middle", 2000.0, Some(2000.0)),
            ],
        );
        assert_eq!(
            fired(&findings),
            [
                ("fan.stopped", "applesmc/Left side", FaultLevel::L2),
                ("fan.slow", "applesmc/Right side", FaultLevel::L3),
            ]
        );
        assert_eq!(findings[0].summary, "applesmc/Left side stopped: 0 rpm (minimum 2160 rpm)");
        assert_eq!(
            findings[1].summary,
            "applesmc/Right side at 1998 rpm, below its minimum 2000 rpm"
        );
    }

    #[test]
    fn voltage_and_power_limits() {
        let volts = |name: &str, volts, min, max, alarm| VoltageSensor {
            name: name.into(),
            volts,
            min_volts: min,
            max_volts: max,
            alarm,
            ..VoltageSensor::default()
        };
        let data = SensorData {
            voltages: vec![
                volts("nct6779/in0", 1.8, Some(0.0), Some(1.744), false),
                volts("nct6779/in1", 1.024, Some(0.0), Some(0.0), true),
                volts("nct6779/in2", 3.3, Some(3.0), Some(3.6), true),
                volts("nct6779/in3", 3.3, Some(3.0), Some(3.6), false),
                volts("nct6779/in4", -11.0, Some(-12.6), Some(-11.4), false),
            ],
            power: vec![
                PowerSensor {
                    name: "psu/power1".into(),
                    watts: 910.0,
                    max_watts: Some(900.0),
                    ..Default::default()
                },
                PowerSensor {
                    name: "psu/power2".into(),
                    watts: 500.0,
                    max_watts: Some(900.0),
                    ..Default::default()
                },
            ],
            ..SensorData::default()
        };
        let findings = run_once([sensors_data(data)]);
        assert_eq!(
            fired(&findings),
            [
                ("voltage.out_of_range", "nct6779/in0", FaultLevel::L2),
                ("voltage.out_of_range", "nct6779/in2", FaultLevel::L2),
                ("voltage.out_of_range", "nct6779/in4", FaultLevel::L2),
                ("power.out_of_range", "psu/power1", FaultLevel::L2),
            ]
        );
        let summaries: Vec<&str> = findings.iter().map(|f| f.summary.as_str()).collect();
        assert_eq!(
            summaries,
            [
                "nct6779/in0 at 1.8 V: out of range (at most 1.744 V)",
                "nct6779/in2 at 3.3 V: alarm set by the chip (range 3 to 3.6 V)",
                "nct6779/in4 at -11 V: out of range (-12.6 to -11.4 V)",
                "psu/power1 at 910 W: out of range (at most 900 W)",
            ]
        );
    }

    fn intrusion(alarm: bool) -> Data {
        sensors_data(SensorData {
            intrusions: vec![IntrusionSensor {
                name: "nct6779/intrusion0".into(),
                alarm,
                ..Default::default()
            }],
            ..SensorData::default()
        })
    }

    #[test]
    fn intrusion_latched_reports_once() {
        let mut memory = HostMemory::default();
        let events: Vec<_> = (0..3).flat_map(|_| run(&mut memory, [intrusion(true)])).collect();
        assert_eq!(fired(&events), [("chassis.intrusion", "nct6779/intrusion0", FaultLevel::L4)]);
        assert_eq!(events[0].kind, FindingKind::Event);
        // Cleared, then set again: a new event.
        assert_eq!(run(&mut memory, [intrusion(false)]), []);
        assert_eq!(run(&mut memory, [intrusion(true)]).len(), 1);
        // A report without the sensors probe does not forget the latch.
        assert_eq!(run(&mut memory, []), []);
        assert_eq!(run(&mut memory, [intrusion(true)]), []);
    }

    fn ipmi_sensor(name: &str, status: &str) -> IpmiSensor {
        IpmiSensor {
            name: name.into(),
            sensor_type: "Fan".into(),
            status: status.into(),
            value: Some(300.0),
            unit: "RPM".into(),
            ..IpmiSensor::default()
        }
    }

    #[test]
    fn ipmi_sensor_statuses() {
        let sensors = ["nr", "cr", "nc", "ok", "ns", "ucr", "lnc", "??"]
            .iter()
            .map(|status| ipmi_sensor(&format!("Fan {status}"), status))
            .collect();
        let findings = run_once([Data::Ipmi(IpmiData { sensors, events: vec![] })]);
        assert_eq!(
            fired(&findings),
            [
                ("ipmi.non_recoverable", "ipmi/Fan nr", FaultLevel::L1),
                ("ipmi.critical", "ipmi/Fan cr", FaultLevel::L2),
                ("ipmi.non_critical", "ipmi/Fan nc", FaultLevel::L3),
                ("ipmi.critical", "ipmi/Fan ucr", FaultLevel::L2),
                ("ipmi.non_critical", "ipmi/Fan lnc", FaultLevel::L3),
            ]
        );
        assert_eq!(findings[1].summary, "ipmi/Fan cr (Fan): critical (cr), reading 300 RPM");
    }

    fn sel_entry(record_id: u32, description: &str) -> IpmiEvent {
        IpmiEvent {
            record_id,
            timestamp: "03/12/2026 10:14:55".into(),
            sensor: "Power Supply #0x51".into(),
            description: description.into(),
            direction: "Asserted".into(),
        }
    }

    #[test]
    fn new_sel_entries_one_event_per_report() {
        let events =
            vec![sel_entry(0x1a, "Power Supply AC lost"), sel_entry(0x1b, "Failure detected")];
        let data = Data::Ipmi(IpmiData { sensors: vec![], events });
        let mut memory = HostMemory::default();
        let findings = run(&mut memory, [data.clone()]);
        assert_eq!(fired(&findings), [("ipmi.sel", "sel", FaultLevel::L4)]);
        assert_eq!(findings[0].kind, FindingKind::Event);
        assert_eq!(
            findings[0].summary,
            "2 new SEL entries, first: Power Supply #0x51: Power Supply AC lost (Asserted) at \
             03/12/2026 10:14:55"
        );
        // The same report again (a resend): nothing new.
        assert_eq!(run(&mut memory, [data]), []);
        // A report without entries, then a new one.
        assert_eq!(run(&mut memory, [Data::Ipmi(IpmiData::default())]), []);
        let next = Data::Ipmi(IpmiData { sensors: vec![], events: vec![sel_entry(0x1c, "x")] });
        assert!(run(&mut memory, [next])[0].summary.starts_with("1 new SEL entry, first:"));
    }

    fn ecc(corrected: u64, uncorrected: u64) -> Data {
        Data::Ecc(EccData {
            controllers: vec![MemoryController {
                name: "mc0".into(),
                corrected_errors: corrected,
                uncorrected_errors: uncorrected,
                dimms: vec![],
            }],
        })
    }

    #[test]
    fn ecc_counters_rise_as_events() {
        let mut memory = HostMemory::default();
        assert_eq!(run(&mut memory, [ecc(0, 0)]), []);
        let findings = run(&mut memory, [ecc(4, 1)]);
        assert_eq!(
            fired(&findings),
            [("ecc.uncorrected", "mc0", FaultLevel::L1), ("ecc.corrected", "mc0", FaultLevel::L3)]
        );
        assert_eq!(findings[0].summary, "mc0: uncorrected ECC errors rose by 1 to 1");
        assert!(findings.iter().all(|f| f.kind == FindingKind::Event));
        assert_eq!(run(&mut memory, [ecc(4, 1)]), []);
        // Reset (a reboot): lower than before, all of it is new.
        let findings = run(&mut memory, [ecc(2, 1)]);
        assert_eq!(fired(&findings), [("ecc.corrected", "mc0", FaultLevel::L3)]);
        assert_eq!(findings[0].summary, "mc0: corrected ECC errors rose by 2 to 2");
    }
}
