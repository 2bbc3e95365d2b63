//! Validation of what an agent sends, before anything is stored: a report must name its
//! instance and sequence number and stay within the limits (size, probes per report, readings
//! per probe, string lengths), so a hostile or broken agent cannot make the collector store or
//! show something absurd. Every number in a report must be one the store can hold and the
//! stages after it can compute with: no NaN or infinity anywhere, no seq beyond what the store
//! keeps as a signed 64-bit integer, no ratio far outside 0..1. Each failure says exactly what
//! is wrong, names the field path, and maps to gRPC `InvalidArgument`.

use vigil_proto::v1::probe_result::Data;
use vigil_proto::v1::{Hello, Report};

use crate::error::{ErrorCode, HasErrorCode};
use crate::events::RejectReason;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidInput {
    #[error("hello: agent_instance {0:?} is not a UUID")]
    HelloInstance(String),
    #[error("hello: {field} is longer than {max} bytes")]
    HelloFieldTooLong { field: &'static str, max: usize },
    #[error("the first message on a report stream must be a Hello")]
    NoHello,
    #[error("a second Hello on one stream")]
    RepeatedHello,
    #[error("report has no agent_instance")]
    MissingInstance,
    #[error("report has no seq (seq starts at 1)")]
    MissingSeq,
    #[error("report seq {seq}: agent_instance {got:?} differs from the stream's {expected:?}")]
    InstanceMismatch { seq: u64, got: String, expected: String },
    #[error("report seq {seq} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { seq: u64, size: usize, limit: usize },
    #[error("message over the size limit of {limit} bytes: {detail}")]
    MessageTooLarge { limit: usize, detail: String },
    #[error("empty message")]
    Empty,
    #[error("report seq {seq} has {count} probe results, over the limit of {max}")]
    TooManyProbes { seq: u64, count: usize, max: usize },
    #[error("report seq {seq}: probe {probe:?} has {count} readings, over the limit of {max}")]
    TooManyReadings { seq: u64, probe: String, count: usize, max: usize },
    #[error("report seq {seq}: {field} is {len} bytes, over the limit of {max}")]
    StringTooLong { seq: u64, field: String, len: usize, max: usize },
    #[error("report seq {seq}: {field} is {value}")]
    NotFinite { seq: u64, field: String, value: &'static str },
    #[error("report seq {seq}: {field} is {value}, outside {range}")]
    OutOfRange { seq: u64, field: String, value: String, range: &'static str },
}

/// The shape limits of one report (sizes are in `IngestConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportLimits {
    pub max_bytes: usize,
    pub max_probes: usize,
    pub max_readings_per_probe: usize,
    pub max_string_bytes: usize,
}

impl InvalidInput {
    pub fn reject_reason(&self) -> RejectReason {
        match self {
            Self::TooLarge { .. }
            | Self::MessageTooLarge { .. }
            | Self::TooManyProbes { .. }
            | Self::TooManyReadings { .. }
            | Self::StringTooLong { .. } => RejectReason::TooLarge,
            Self::NoHello | Self::RepeatedHello | Self::InstanceMismatch { .. } => {
                RejectReason::ProtocolViolation
            }
            _ => RejectReason::Malformed,
        }
    }
}

impl HasErrorCode for InvalidInput {
    fn code(&self) -> ErrorCode {
        ErrorCode::InvalidArgument
    }
}

const MAX_HELLO_FIELD: usize = 256;

pub fn hello(h: &Hello) -> Result<(), InvalidInput> {
    if uuid::Uuid::parse_str(&h.agent_instance).is_err() {
        return Err(InvalidInput::HelloInstance(h.agent_instance.clone()));
    }
    for (field, value) in [
        ("machine_id", &h.machine_id),
        ("hostname", &h.hostname),
        ("agent_version", &h.agent_version),
        ("host_id", &h.host_id),
        ("previous_instance", &h.previous_instance),
        ("previous_instance_reason", &h.previous_instance_reason),
    ] {
        if value.len() > MAX_HELLO_FIELD {
            return Err(InvalidInput::HelloFieldTooLong { field, max: MAX_HELLO_FIELD });
        }
    }
    Ok(())
}

pub fn report(
    r: &Report,
    stream_instance: &str,
    limits: &ReportLimits,
) -> Result<(), InvalidInput> {
    let limit = limits.max_bytes;
    if r.agent_instance.is_empty() {
        return Err(InvalidInput::MissingInstance);
    }
    if r.seq == 0 {
        return Err(InvalidInput::MissingSeq);
    }
    if i64::try_from(r.seq).is_err() {
        return Err(InvalidInput::OutOfRange {
            seq: r.seq,
            field: "seq".into(),
            value: r.seq.to_string(),
            range: "1..=9223372036854775807 (what the store holds)",
        });
    }
    if r.agent_instance != stream_instance {
        return Err(InvalidInput::InstanceMismatch {
            seq: r.seq,
            got: r.agent_instance.clone(),
            expected: stream_instance.to_owned(),
        });
    }
    let size = prost::Message::encoded_len(r);
    if size > limit {
        return Err(InvalidInput::TooLarge { seq: r.seq, size, limit });
    }
    shape(r, limits)?;
    numbers(r)
}

/// Counts and string lengths. The match over probe data is exhaustive on purpose: a new probe
/// type does not compile until its readings are bounded here too.
fn shape(r: &Report, limits: &ReportLimits) -> Result<(), InvalidInput> {
    let seq = r.seq;
    if r.probes.len() > limits.max_probes {
        return Err(InvalidInput::TooManyProbes {
            seq,
            count: r.probes.len(),
            max: limits.max_probes,
        });
    }
    let check = |field: &dyn Fn() -> String, value: &str| {
        if value.len() > limits.max_string_bytes {
            return Err(InvalidInput::StringTooLong {
                seq,
                field: field(),
                len: value.len(),
                max: limits.max_string_bytes,
            });
        }
        Ok(())
    };
    if let Some(f) = &r.facts {
        for (name, value) in [
            ("hostname", &f.hostname),
            ("os_name", &f.os_name),
            ("os_version", &f.os_version),
            ("kernel", &f.kernel),
            ("architecture", &f.architecture),
            ("cpu_model", &f.cpu_model),
            ("machine_vendor", &f.machine_vendor),
            ("machine_model", &f.machine_model),
            ("machine_serial", &f.machine_serial),
            ("bios_vendor", &f.bios_vendor),
            ("bios_version", &f.bios_version),
            ("bios_date", &f.bios_date),
            ("agent_version", &f.agent_version),
            ("machine_id", &f.machine_id),
            ("virtualization", &f.virtualization),
        ] {
            check(&|| format!("facts.{name}"), value)?;
        }
    }
    for p in &r.probes {
        check(&|| "probe name".to_owned(), &p.probe)?;
        check(&|| format!("probe {:?} message", p.probe), &p.message)?;
        let mut strings: Vec<&str> = Vec::new();
        let count = match &p.data {
            None
            | Some(Data::Cpu(_))
            | Some(Data::Memory(_))
            | Some(Data::Uptime(_))
            | Some(Data::Clock(_)) => 0,
            Some(Data::Filesystem(d)) => {
                for fs in &d.filesystems {
                    strings.extend([&*fs.mount_point, &fs.device, &fs.fs_type, &fs.error]);
                }
                d.filesystems.len()
            }
            Some(Data::Network(d)) => {
                for nic in &d.interfaces {
                    strings.extend([&*nic.name, &nic.oper_state, &nic.mac_address]);
                }
                d.interfaces.len()
            }
            Some(Data::Sensors(d)) => {
                for t in &d.temperatures {
                    strings.extend([&*t.name, &t.source]);
                }
                for f in &d.fans {
                    strings.extend([&*f.name, &f.source]);
                }
                for v in &d.voltages {
                    strings.extend([&*v.name, &v.source]);
                }
                for w in &d.power {
                    strings.extend([&*w.name, &w.source]);
                }
                for i in &d.intrusions {
                    strings.extend([&*i.name, &i.source]);
                }
                for i in &d.implausible {
                    strings.extend([&*i.name, &i.source, &i.kind, &i.reason]);
                }
                d.temperatures.len()
                    + d.fans.len()
                    + d.voltages.len()
                    + d.power.len()
                    + d.intrusions.len()
                    + d.implausible.len()
            }
            Some(Data::Smart(d)) => {
                for dev in &d.devices {
                    strings.extend([
                        &*dev.name,
                        &dev.device_type,
                        &dev.protocol,
                        &dev.model,
                        &dev.serial,
                        &dev.firmware,
                        &dev.error,
                    ]);
                }
                d.devices.len()
            }
            Some(Data::Ipmi(d)) => {
                for s in &d.sensors {
                    strings.extend([
                        &*s.name,
                        &s.sensor_type,
                        &s.status,
                        &s.unit,
                        &s.text,
                        &s.entity,
                    ]);
                }
                for e in &d.events {
                    strings.extend([&*e.timestamp, &e.sensor, &e.description, &e.direction]);
                }
                d.sensors.len() + d.events.len()
            }
            Some(Data::Raid(d)) => {
                for a in &d.arrays {
                    strings.extend([&*a.name, &a.level, &a.state, &a.array_state, &a.sync_action]);
                    strings.extend(a.members.iter().map(|m| m.device.as_str()));
                }
                d.arrays.len() + d.arrays.iter().map(|a| a.members.len()).sum::<usize>()
            }
            Some(Data::Ecc(d)) => {
                for c in &d.controllers {
                    strings.push(&c.name);
                    for dimm in &c.dimms {
                        strings.extend([&*dimm.label, &dimm.location]);
                    }
                }
                d.controllers.len() + d.controllers.iter().map(|c| c.dimms.len()).sum::<usize>()
            }
            Some(Data::DiskIo(d)) => {
                strings.extend(d.disks.iter().map(|disk| disk.name.as_str()));
                d.disks.len()
            }
            Some(Data::Services(d)) => {
                strings.push(&d.systemd_message);
                for u in &d.units {
                    strings.extend([&*u.name, &u.active_state, &u.sub_state, &u.load_state]);
                }
                for p in &d.processes {
                    strings.extend([&*p.name, &p.pattern]);
                }
                for p in &d.ports {
                    strings.extend([&*p.name, &p.host, &p.error]);
                }
                for h in &d.http {
                    strings.extend([&*h.name, &h.url, &h.error]);
                }
                d.units.len() + d.processes.len() + d.ports.len() + d.http.len()
            }
        };
        if count > limits.max_readings_per_probe {
            return Err(InvalidInput::TooManyReadings {
                seq,
                probe: p.probe.chars().take(64).collect(),
                count,
                max: limits.max_readings_per_probe,
            });
        }
        for value in strings {
            check(&|| format!("a reading of probe {:?}", p.probe), value)?;
        }
    }
    Ok(())
}

/// How far over 1 a ratio documented as 0..1 may run before it is refused: rounding between
/// two samples can push a fully busy CPU or disk a little over 1, nothing real goes further.
const RATIO_MAX: f64 = 1.1;

/// Where a number sits in a report, for the error message: `probes[2] (cpu)` plus the field.
struct Fields {
    seq: u64,
    probe: usize,
    kind: &'static str,
}

impl Fields {
    fn path(&self, field: &dyn Fn() -> String) -> String {
        format!("probes[{}] ({}).{}", self.probe, self.kind, field())
    }

    fn finite(&self, field: &dyn Fn() -> String, value: f64) -> Result<(), InvalidInput> {
        if value.is_finite() {
            return Ok(());
        }
        let value = if value.is_nan() {
            "NaN"
        } else if value > 0.0 {
            "+inf"
        } else {
            "-inf"
        };
        Err(InvalidInput::NotFinite { seq: self.seq, field: self.path(field), value })
    }

    fn optional(&self, field: &dyn Fn() -> String, value: Option<f64>) -> Result<(), InvalidInput> {
        value.map_or(Ok(()), |v| self.finite(field, v))
    }

    /// A finite share documented as 0..1, within [`RATIO_MAX`].
    fn ratio(&self, field: &dyn Fn() -> String, value: f64) -> Result<(), InvalidInput> {
        self.finite(field, value)?;
        if (0.0..=RATIO_MAX).contains(&value) {
            return Ok(());
        }
        Err(InvalidInput::OutOfRange {
            seq: self.seq,
            field: self.path(field),
            value: value.to_string(),
            range: "0..1 (a ratio; at most 1.1 for rounding)",
        })
    }

    fn optional_ratio(
        &self,
        field: &dyn Fn() -> String,
        value: Option<f64>,
    ) -> Result<(), InvalidInput> {
        value.map_or(Ok(()), |v| self.ratio(field, v))
    }
}

fn name(field: &'static str) -> impl Fn() -> String {
    move || field.to_owned()
}

fn indexed(list: &'static str, i: usize, field: &'static str) -> impl Fn() -> String {
    move || format!("{list}[{i}].{field}")
}

/// The numbers of a report: every floating-point field finite, ratios within 0..1 (with
/// rounding slack), and the integers the store keeps as signed 64-bit within their range.
/// Each message that holds a floating-point field is destructured without `..` on purpose: a
/// field added to it does not compile until it is placed here. The probe types with no
/// floating-point field today (filesystem, network, uptime, ECC) are listed as such; a float
/// added to one of them must be checked here too.
fn numbers(r: &Report) -> Result<(), InvalidInput> {
    let seq = r.seq;
    if r.collected_at_unix_ms < 0 {
        return Err(InvalidInput::OutOfRange {
            seq,
            field: "collected_at_unix_ms".into(),
            value: r.collected_at_unix_ms.to_string(),
            range: "0.. (Unix milliseconds; 0 for unset)",
        });
    }
    for (probe, p) in r.probes.iter().enumerate() {
        let Some(data) = &p.data else { continue };
        let f = Fields { seq, probe, kind: kind(data) };
        match data {
            Data::Cpu(d) => {
                let vigil_proto::v1::CpuData {
                    usage_ratio,
                    iowait_ratio,
                    steal_ratio,
                    load1,
                    load5,
                    load15,
                    logical_cpus: _,
                    pressure_some_avg60,
                    procs_running: _,
                    procs_blocked: _,
                } = d;
                f.ratio(&name("usage_ratio"), *usage_ratio)?;
                f.ratio(&name("iowait_ratio"), *iowait_ratio)?;
                f.ratio(&name("steal_ratio"), *steal_ratio)?;
                f.finite(&name("load1"), *load1)?;
                f.finite(&name("load5"), *load5)?;
                f.finite(&name("load15"), *load15)?;
                f.optional(&name("pressure_some_avg60"), *pressure_some_avg60)?;
            }
            Data::Memory(d) => {
                let vigil_proto::v1::MemoryData {
                    total_bytes: _,
                    available_bytes: _,
                    free_bytes: _,
                    buffers_bytes: _,
                    cached_bytes: _,
                    swap_total_bytes: _,
                    swap_free_bytes: _,
                    pressure_some_avg60,
                    pressure_full_avg60,
                    oom_kills: _,
                } = d;
                f.optional(&name("pressure_some_avg60"), *pressure_some_avg60)?;
                f.optional(&name("pressure_full_avg60"), *pressure_full_avg60)?;
            }
            // Integers, strings and flags only.
            Data::Filesystem(_) | Data::Network(_) | Data::Uptime(_) | Data::Ecc(_) => {}
            Data::Sensors(d) => {
                for (i, t) in d.temperatures.iter().enumerate() {
                    let vigil_proto::v1::TemperatureSensor {
                        name: _,
                        source: _,
                        celsius,
                        high_celsius,
                        critical_celsius,
                        alarm: _,
                        trips,
                    } = t;
                    f.finite(&indexed("temperatures", i, "celsius"), *celsius)?;
                    f.optional(&indexed("temperatures", i, "high_celsius"), *high_celsius)?;
                    f.optional(&indexed("temperatures", i, "critical_celsius"), *critical_celsius)?;
                    for (j, trip) in trips.iter().enumerate() {
                        let vigil_proto::v1::ThermalTrip { kind: _, celsius } = trip;
                        f.finite(&|| format!("temperatures[{i}].trips[{j}].celsius"), *celsius)?;
                    }
                }
                for (i, fan) in d.fans.iter().enumerate() {
                    let vigil_proto::v1::FanSensor { name: _, source: _, rpm, min_rpm, alarm: _ } =
                        fan;
                    f.finite(&indexed("fans", i, "rpm"), *rpm)?;
                    f.optional(&indexed("fans", i, "min_rpm"), *min_rpm)?;
                }
                for (i, v) in d.voltages.iter().enumerate() {
                    let vigil_proto::v1::VoltageSensor {
                        name: _,
                        source: _,
                        volts,
                        min_volts,
                        max_volts,
                        alarm: _,
                    } = v;
                    f.finite(&indexed("voltages", i, "volts"), *volts)?;
                    f.optional(&indexed("voltages", i, "min_volts"), *min_volts)?;
                    f.optional(&indexed("voltages", i, "max_volts"), *max_volts)?;
                }
                for (i, w) in d.power.iter().enumerate() {
                    let vigil_proto::v1::PowerSensor {
                        name: _,
                        source: _,
                        watts,
                        max_watts,
                        alarm: _,
                    } = w;
                    f.finite(&indexed("power", i, "watts"), *watts)?;
                    f.optional(&indexed("power", i, "max_watts"), *max_watts)?;
                }
                for (i, x) in d.implausible.iter().enumerate() {
                    // An implausible reading is a number no sensor can truly read, but still a
                    // number: the agent filters out what does not parse.
                    let vigil_proto::v1::ImplausibleReading {
                        name: _,
                        source: _,
                        kind: _,
                        value,
                        reason: _,
                    } = x;
                    f.finite(&indexed("implausible", i, "value"), *value)?;
                }
            }
            Data::Smart(d) => {
                for (i, dev) in d.devices.iter().enumerate() {
                    let vigil_proto::v1::SmartDevice {
                        name: _,
                        device_type: _,
                        protocol: _,
                        model: _,
                        serial: _,
                        firmware: _,
                        capacity_bytes: _,
                        health_passed: _,
                        in_standby: _,
                        temperature_celsius,
                        power_on_hours: _,
                        reallocated_sectors: _,
                        pending_sectors: _,
                        offline_uncorrectable: _,
                        critical_warning: _,
                        percentage_used: _,
                        media_errors: _,
                        available_spare_percent: _,
                        available_spare_threshold_percent: _,
                        grown_defects: _,
                        exit_status: _,
                        error: _,
                        crc_errors: _,
                    } = dev;
                    f.optional(
                        &indexed("devices", i, "temperature_celsius"),
                        *temperature_celsius,
                    )?;
                }
            }
            Data::Ipmi(d) => {
                for (i, s) in d.sensors.iter().enumerate() {
                    let vigil_proto::v1::IpmiSensor {
                        name: _,
                        sensor_type: _,
                        status: _,
                        value,
                        unit: _,
                        text: _,
                        entity: _,
                    } = s;
                    f.optional(&indexed("sensors", i, "value"), *value)?;
                }
            }
            Data::Raid(d) => {
                for (i, a) in d.arrays.iter().enumerate() {
                    let vigil_proto::v1::RaidArray {
                        name: _,
                        level: _,
                        state: _,
                        array_state: _,
                        members: _,
                        raid_disks: _,
                        active_disks: _,
                        failed_disks: _,
                        spare_disks: _,
                        degraded: _,
                        sync_action: _,
                        sync_progress_ratio,
                        sync_speed_kib_per_second: _,
                        sync_remaining_seconds,
                        sync_delayed: _,
                        sync_pending: _,
                        size_kib: _,
                    } = a;
                    f.optional_ratio(
                        &indexed("arrays", i, "sync_progress_ratio"),
                        *sync_progress_ratio,
                    )?;
                    f.optional(
                        &indexed("arrays", i, "sync_remaining_seconds"),
                        *sync_remaining_seconds,
                    )?;
                }
            }
            Data::DiskIo(d) => {
                let vigil_proto::v1::DiskIoData { disks, pressure_some_avg60, pressure_full_avg60 } =
                    d;
                f.optional(&name("pressure_some_avg60"), *pressure_some_avg60)?;
                f.optional(&name("pressure_full_avg60"), *pressure_full_avg60)?;
                for (i, disk) in disks.iter().enumerate() {
                    let vigil_proto::v1::DiskIo {
                        name: _,
                        reads_completed: _,
                        writes_completed: _,
                        read_bytes: _,
                        written_bytes: _,
                        io_time_ms: _,
                        utilization_ratio,
                        read_latency_ms,
                        write_latency_ms,
                        in_flight: _,
                    } = disk;
                    f.optional_ratio(
                        &indexed("disks", i, "utilization_ratio"),
                        *utilization_ratio,
                    )?;
                    f.optional(&indexed("disks", i, "read_latency_ms"), *read_latency_ms)?;
                    f.optional(&indexed("disks", i, "write_latency_ms"), *write_latency_ms)?;
                }
            }
            Data::Clock(d) => {
                let vigil_proto::v1::ClockData {
                    synchronized: _,
                    estimated_error_seconds,
                    max_error_seconds,
                    offset_seconds,
                } = d;
                f.finite(&name("estimated_error_seconds"), *estimated_error_seconds)?;
                f.finite(&name("max_error_seconds"), *max_error_seconds)?;
                f.finite(&name("offset_seconds"), *offset_seconds)?;
            }
            Data::Services(d) => {
                for (i, port) in d.ports.iter().enumerate() {
                    let vigil_proto::v1::PortCheck {
                        name: _,
                        host: _,
                        port: _,
                        open: _,
                        connect_ms,
                        error: _,
                        critical: _,
                    } = port;
                    f.optional(&indexed("ports", i, "connect_ms"), *connect_ms)?;
                }
                for (i, check) in d.http.iter().enumerate() {
                    let vigil_proto::v1::HttpCheck {
                        name: _,
                        url: _,
                        status_code: _,
                        expected_status: _,
                        ok: _,
                        response_ms,
                        error: _,
                        critical: _,
                    } = check;
                    f.optional(&indexed("http", i, "response_ms"), *response_ms)?;
                }
            }
        }
    }
    Ok(())
}

/// The name of a probe's data as the wire spells it (the `oneof data` field).
fn kind(data: &Data) -> &'static str {
    match data {
        Data::Cpu(_) => "cpu",
        Data::Memory(_) => "memory",
        Data::Filesystem(_) => "filesystem",
        Data::Network(_) => "network",
        Data::Sensors(_) => "sensors",
        Data::Uptime(_) => "uptime",
        Data::Smart(_) => "smart",
        Data::Ipmi(_) => "ipmi",
        Data::Raid(_) => "raid",
        Data::Ecc(_) => "ecc",
        Data::DiskIo(_) => "disk_io",
        Data::Clock(_) => "clock",
        Data::Services(_) => "services",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INSTANCE: &str = "6f1c1c8e-7c55-4f0e-9d7c-3f7a6a1b2c3d";
    const LIMITS: ReportLimits = ReportLimits {
        max_bytes: 1024,
        max_probes: 4,
        max_readings_per_probe: 3,
        max_string_bytes: 100,
    };

    fn ok_report() -> Report {
        Report { agent_instance: INSTANCE.into(), seq: 1, ..Default::default() }
    }

    #[test]
    fn accepts_a_well_formed_report() {
        assert_eq!(report(&ok_report(), INSTANCE, &LIMITS), Ok(()));
    }

    #[test]
    fn rejects_missing_instance_and_seq() {
        let r = Report { agent_instance: String::new(), ..ok_report() };
        assert_eq!(report(&r, INSTANCE, &LIMITS), Err(InvalidInput::MissingInstance));
        let r = Report { seq: 0, ..ok_report() };
        assert_eq!(report(&r, INSTANCE, &LIMITS), Err(InvalidInput::MissingSeq));
    }

    #[test]
    fn rejects_oversized_report_with_sizes() {
        let r = Report { facts: Some(Default::default()), ..ok_report() };
        let mut big = r.clone();
        big.facts.as_mut().unwrap().hostname = "x".repeat(2000);
        let err = report(&big, INSTANCE, &LIMITS).unwrap_err();
        assert!(err.to_string().starts_with("report seq 1 is 20"), "{err}");
        assert!(err.to_string().ends_with("over the limit of 1024 bytes"), "{err}");
        assert_eq!(err.code(), ErrorCode::InvalidArgument);
    }

    #[test]
    fn rejects_other_instance_on_stream() {
        let err = report(&ok_report(), "another", &LIMITS).unwrap_err();
        assert_eq!(err.reject_reason(), RejectReason::ProtocolViolation);
    }

    #[test]
    fn hello_needs_a_uuid_and_short_fields() {
        let good = Hello { agent_instance: INSTANCE.into(), ..Default::default() };
        assert_eq!(hello(&good), Ok(()));
        let bad = Hello { agent_instance: "nope".into(), ..good.clone() };
        assert!(matches!(hello(&bad), Err(InvalidInput::HelloInstance(_))));
        let bad = Hello { hostname: "h".repeat(300), ..good };
        assert_eq!(
            hello(&bad),
            Err(InvalidInput::HelloFieldTooLong { field: "hostname", max: 256 })
        );
    }

    fn probe(name: &str, data: Data) -> vigil_proto::v1::ProbeResult {
        vigil_proto::v1::ProbeResult { probe: name.into(), data: Some(data), ..Default::default() }
    }

    #[test]
    fn bounds_probes_readings_and_strings() {
        use vigil_proto::v1::{CpuData, Filesystem, FilesystemData, NetworkData, NetworkInterface};
        let many = Report {
            probes: (0..5).map(|_| probe("cpu", Data::Cpu(CpuData::default()))).collect(),
            ..ok_report()
        };
        assert_eq!(
            report(&many, INSTANCE, &LIMITS).unwrap_err().to_string(),
            "report seq 1 has 5 probe results, over the limit of 4"
        );
        let nics = NetworkData { interfaces: vec![NetworkInterface::default(); 4] };
        let r = Report { probes: vec![probe("network", Data::Network(nics))], ..ok_report() };
        assert_eq!(
            report(&r, INSTANCE, &LIMITS).unwrap_err().to_string(),
            "report seq 1: probe \"network\" has 4 readings, over the limit of 3"
        );
        let fs = Filesystem { mount_point: "/".repeat(101), ..Default::default() };
        let r = Report {
            probes: vec![probe(
                "filesystem",
                Data::Filesystem(FilesystemData { filesystems: vec![fs] }),
            )],
            ..ok_report()
        };
        let err = report(&r, INSTANCE, &LIMITS).unwrap_err();
        assert_eq!(
            err.to_string(),
            "report seq 1: a reading of probe \"filesystem\" is 101 bytes, over the limit of 100"
        );
        assert_eq!(err.reject_reason(), RejectReason::TooLarge);
        let mut r = ok_report();
        r.facts =
            Some(vigil_proto::v1::HostFacts { kernel: "k".repeat(101), ..Default::default() });
        assert!(report(&r, INSTANCE, &LIMITS).unwrap_err().to_string().contains("facts.kernel"));
    }

    fn cpu(usage_ratio: f64) -> vigil_proto::v1::ProbeResult {
        let data = vigil_proto::v1::CpuData { usage_ratio, ..Default::default() };
        probe("cpu", Data::Cpu(data))
    }

    /// A report whose third probe (index 2) is `bad`, behind two healthy ones.
    fn third(bad: vigil_proto::v1::ProbeResult) -> Report {
        Report { probes: vec![cpu(0.5), cpu(0.25), bad], ..ok_report() }
    }

    #[test]
    fn rejects_nan_naming_the_field() {
        let err = report(&third(cpu(f64::NAN)), INSTANCE, &LIMITS).unwrap_err();
        assert_eq!(err.to_string(), "report seq 1: probes[2] (cpu).usage_ratio is NaN");
        assert_eq!(err.code(), ErrorCode::InvalidArgument);
        assert_eq!(err.reject_reason(), RejectReason::Malformed);
    }

    #[test]
    fn rejects_infinities_in_nested_readings() {
        use vigil_proto::v1::{ClockData, SensorData, TemperatureSensor, ThermalTrip};
        let hot = |celsius| TemperatureSensor { celsius, ..Default::default() };
        let mut trip = hot(40.0);
        trip.trips = vec![ThermalTrip { kind: "critical".into(), celsius: f64::INFINITY }];
        let sensors = SensorData { temperatures: vec![hot(30.0), trip], ..Default::default() };
        let err =
            report(&third(probe("hwmon", Data::Sensors(sensors))), INSTANCE, &LIMITS).unwrap_err();
        assert_eq!(
            err.to_string(),
            "report seq 1: probes[2] (sensors).temperatures[1].trips[0].celsius is +inf"
        );
        let clock = ClockData { offset_seconds: f64::NEG_INFINITY, ..Default::default() };
        let err =
            report(&third(probe("clock", Data::Clock(clock))), INSTANCE, &LIMITS).unwrap_err();
        assert_eq!(err.to_string(), "report seq 1: probes[2] (clock).offset_seconds is -inf");
        assert_eq!(err.code(), ErrorCode::InvalidArgument);
    }

    #[test]
    fn rejects_optional_readings_only_when_present_and_not_finite() {
        use vigil_proto::v1::{DiskIo, DiskIoData};
        let disks = |read_latency_ms| DiskIoData {
            disks: vec![DiskIo::default(), DiskIo { read_latency_ms, ..Default::default() }],
            ..Default::default()
        };
        let absent = third(probe("diskio", Data::DiskIo(disks(None))));
        assert_eq!(report(&absent, INSTANCE, &LIMITS), Ok(()));
        let nan = third(probe("diskio", Data::DiskIo(disks(Some(f64::NAN)))));
        assert_eq!(
            report(&nan, INSTANCE, &LIMITS).unwrap_err().to_string(),
            "report seq 1: probes[2] (disk_io).disks[1].read_latency_ms is NaN"
        );
    }

    #[test]
    fn rejects_ratios_far_outside_zero_to_one() {
        // Rounding may run a busy CPU a little over 1; that is kept.
        assert_eq!(report(&third(cpu(1.05)), INSTANCE, &LIMITS), Ok(()));
        assert_eq!(report(&third(cpu(0.0)), INSTANCE, &LIMITS), Ok(()));
        for (value, shown) in [(3.5, "3.5"), (-0.2, "-0.2")] {
            let err = report(&third(cpu(value)), INSTANCE, &LIMITS).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "report seq 1: probes[2] (cpu).usage_ratio is {shown}, outside 0..1 \
                     (a ratio; at most 1.1 for rounding)"
                )
            );
            assert_eq!(err.code(), ErrorCode::InvalidArgument);
        }
        let raid = vigil_proto::v1::RaidData {
            arrays: vec![vigil_proto::v1::RaidArray {
                sync_progress_ratio: Some(12.0),
                ..Default::default()
            }],
        };
        let err = report(&third(probe("mdstat", Data::Raid(raid))), INSTANCE, &LIMITS).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("report seq 1: probes[2] (raid).arrays[0].sync_progress_ratio is 12,"),
            "{err}"
        );
    }

    #[test]
    fn rejects_integers_the_store_cannot_hold() {
        let seq = i64::MAX as u64 + 1;
        let err = report(&Report { seq, ..ok_report() }, INSTANCE, &LIMITS).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "report seq {seq}: seq is {seq}, outside 1..=9223372036854775807 \
                 (what the store holds)"
            )
        );
        assert_eq!(err.code(), ErrorCode::InvalidArgument);
        let largest = Report { seq: i64::MAX as u64, ..ok_report() };
        assert_eq!(report(&largest, INSTANCE, &LIMITS), Ok(()));
        let before_1970 = Report { collected_at_unix_ms: -1, ..ok_report() };
        let err = report(&before_1970, INSTANCE, &LIMITS).unwrap_err();
        assert!(err.to_string().starts_with("report seq 1: collected_at_unix_ms is -1"), "{err}");
    }
}
