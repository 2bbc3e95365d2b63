//! Validation of what an agent sends, before anything is stored: a report must name its
//! instance and sequence number and stay within the limits (size, probes per report, readings
//! per probe, string lengths), so a hostile or broken agent cannot make the collector store or
//! show something absurd. Each failure says exactly what is wrong and maps to gRPC
//! `InvalidArgument`.

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
    shape(r, limits)
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
}
