//! Pure parsers for `smartctl --json` output: the device list of `--scan-open` and the
//! readings of `-a` for one device, as [`SmartDevice`].
//!
//! They read `serde_json::Value` rather than typed structs on purpose: smartctl's JSON varies
//! with its version, the protocol and the drive (a field may be missing, a number may be
//! beyond `u64`, an older smartctl may name a field differently), and one odd field must cost
//! that field, not the device. Anything that is not a JSON object is an error; inside an
//! object, a field that is missing or of the wrong type is simply absent. Nothing here panics,
//! whatever the bytes (fuzz target `parse_smartctl`).
//!
//! Exit status (smartctl(8) "EXIT STATUS"): bits 0-2 mean the device could not be (fully)
//! read and become [`SmartDevice::error`]; bits 3-7 (failing, prefail attributes at or below
//! threshold, errors logged) are readings, kept in [`SmartDevice::exit_status`] only. With
//! `-n standby`, a sleeping disk makes smartctl stop before touching it, exit with bit 1 and
//! say "Device is in STANDBY mode": that is [`SmartDevice::in_standby`], not an error.

use serde_json::Value;
use vigil_proto::v1::SmartDevice;

/// Longest string kept from smartctl output (model, serial, messages), in bytes.
const MAX_STRING: usize = 256;
/// Longest [`SmartDevice::error`], in bytes.
const MAX_ERROR: usize = 1024;

/// Exit status bit 0: smartctl did not accept its command line.
const EXIT_COMMAND_LINE: u32 = 1 << 0;
/// Exit status bit 1: device open failed, it did not identify, or it is in a low-power mode.
const EXIT_OPEN: u32 = 1 << 1;
/// Exit status bit 2: some SMART or other command failed, or a SMART checksum was wrong.
const EXIT_COMMAND: u32 = 1 << 2;

/// One device of `smartctl --json --scan-open`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanEntry {
    /// Device name as smartctl wants it back, e.g. `/dev/sda`, `/dev/bus/0`.
    pub name: String,
    /// The `-d` type to query it with, e.g. `sat`, `nvme`, `megaraid,4`, `sat+megaraid,5`.
    pub device_type: String,
    /// `ATA`, `SCSI`, `NVMe` (as smartctl prints it).
    pub protocol: String,
    /// Why smartctl could not open it during the scan (`open_error`), if it could not.
    pub open_error: Option<String>,
}

/// What `--scan-open` printed, with what the probe needs to judge the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScanReport {
    pub devices: Vec<ScanEntry>,
    /// `smartctl.exit_status`, if present.
    pub exit_status: Option<u32>,
    /// smartctl said it was not allowed to open something.
    pub not_permitted: bool,
}

/// One device's readings with what the probe needs beyond [`SmartDevice`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DeviceReport {
    pub device: SmartDevice,
    /// Open failed because smartctl was not allowed to (EACCES/EPERM).
    pub not_permitted: bool,
}

/// The devices of `smartctl --json --scan-open`, in smartctl's order, without duplicates.
/// Entries without a name or type, or that could be mistaken for an option, are dropped:
/// they cannot be queried. No `devices` key means no devices (what smartctl prints then).
pub fn parse_scan(json: &[u8]) -> Result<Vec<ScanEntry>, String> {
    scan_report(json).map(|report| report.devices)
}

/// One device from `smartctl --json -a -n standby -d TYPE NAME`.
pub fn parse_device(json: &[u8]) -> Result<SmartDevice, String> {
    device_report(json, None).map(|report| report.device)
}

pub(crate) fn scan_report(json: &[u8]) -> Result<ScanReport, String> {
    let root = object(json)?;
    let devices = match root.get("devices") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(devices)) => devices.iter().filter_map(scan_entry).collect(),
        Some(_) => return Err("\"devices\" is not an array".to_owned()),
    };
    let mut unique: Vec<ScanEntry> = Vec::with_capacity(devices.len());
    for entry in devices {
        if !unique.iter().any(|u| u.name == entry.name && u.device_type == entry.device_type) {
            unique.push(entry);
        }
    }
    let exit_status = number(&root, &["smartctl", "exit_status"]).map(saturating_u32);
    let messages = messages(&root);
    let not_permitted = messages.iter().any(|m| is_not_permitted(&m.text));
    Ok(ScanReport { devices: unique, exit_status, not_permitted })
}

fn scan_entry(device: &Value) -> Option<ScanEntry> {
    let name = string(device, &["name"])?;
    let device_type = string(device, &["type"])?;
    if !is_argument(&name) || !is_argument(&device_type) {
        return None;
    }
    Some(ScanEntry {
        name,
        device_type,
        protocol: string(device, &["protocol"]).unwrap_or_default(),
        open_error: string(device, &["open_error"]),
    })
}

/// Safe to pass to smartctl as one argument: not empty, not an option, no NUL.
fn is_argument(text: &str) -> bool {
    !text.is_empty() && !text.starts_with('-') && !text.contains('\0')
}

/// Parses one device's output. `process_exit` is the process's exit status, used when the
/// JSON has none (smartctl always prints `smartctl.exit_status`; a truncated output may not).
pub(crate) fn device_report(
    json: &[u8],
    process_exit: Option<u32>,
) -> Result<DeviceReport, String> {
    let root = object(json)?;
    let exit_status = number(&root, &["smartctl", "exit_status"])
        .map(saturating_u32)
        .or(process_exit)
        .unwrap_or(0);
    let messages = messages(&root);

    let mut device = SmartDevice {
        name: string(&root, &["device", "name"]).unwrap_or_default(),
        device_type: string(&root, &["device", "type"]).unwrap_or_default(),
        protocol: string(&root, &["device", "protocol"]).unwrap_or_default(),
        model: model(&root).unwrap_or_default(),
        serial: string(&root, &["serial_number"]).unwrap_or_default(),
        firmware: first_string(&root, &[&["firmware_version"], &["scsi_revision"], &["revision"]])
            .unwrap_or_default(),
        capacity_bytes: number(&root, &["user_capacity", "bytes"])
            .or_else(|| number(&root, &["nvme_total_capacity"]))
            .unwrap_or(0),
        health_passed: root.pointer("/smart_status/passed").and_then(Value::as_bool),
        in_standby: false,
        temperature_celsius: root
            .pointer("/temperature/current")
            .and_then(Value::as_f64)
            .filter(|t| t.is_finite()),
        power_on_hours: number(&root, &["power_on_time", "hours"]),
        reallocated_sectors: ata_raw(&root, 5),
        pending_sectors: ata_raw(&root, 197),
        offline_uncorrectable: ata_raw(&root, 198),
        crc_errors: ata_raw(&root, 199),
        critical_warning: nvme(&root, "critical_warning").map(saturating_u32),
        percentage_used: nvme(&root, "percentage_used").map(saturating_u32),
        media_errors: nvme(&root, "media_errors"),
        available_spare_percent: nvme(&root, "available_spare").map(saturating_u32),
        available_spare_threshold_percent: nvme(&root, "available_spare_threshold")
            .map(saturating_u32),
        grown_defects: number(&root, &["scsi_grown_defect_list"]),
        exit_status,
        error: String::new(),
    };

    let mut not_permitted = false;
    if exit_status & EXIT_OPEN != 0 && messages.iter().any(|m| is_standby(&m.text)) {
        device.in_standby = true;
    } else if exit_status & (EXIT_COMMAND_LINE | EXIT_OPEN | EXIT_COMMAND) != 0 {
        not_permitted =
            exit_status & EXIT_OPEN != 0 && messages.iter().any(|m| is_not_permitted(&m.text));
        device.error = exit_error(exit_status, &messages);
    }
    Ok(DeviceReport { device, not_permitted })
}

/// A readable reason for exit status bits 0-2, with smartctl's own error messages (or, when
/// it gave none, its warnings).
fn exit_error(exit_status: u32, messages: &[Message]) -> String {
    let mut reasons = Vec::new();
    if exit_status & EXIT_COMMAND_LINE != 0 {
        reasons.push("smartctl did not accept its command line");
    }
    if exit_status & EXIT_OPEN != 0 {
        reasons.push("device open failed or the device did not identify itself");
    }
    if exit_status & EXIT_COMMAND != 0 {
        reasons.push(
            "a SMART or other command to the device failed, or SMART data had a bad checksum",
        );
    }
    let mut error = reasons.join("; ");
    let detail = ["error", "warning"]
        .iter()
        .map(|severity| {
            messages
                .iter()
                .filter(|m| m.severity == *severity)
                .map(|m| m.text.as_str())
                .collect::<Vec<_>>()
        })
        .find(|found| !found.is_empty());
    if let Some(detail) = detail {
        error.push_str(": ");
        error.push_str(&detail.join("; "));
    }
    truncate(&mut error, MAX_ERROR);
    error
}

/// smartctl's "Device is in STANDBY mode, exit(2)" (also SLEEP, "STANDBY (OS)").
fn is_standby(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    text.starts_with("device is in ")
        && (text.contains("standby") || text.contains("sleep"))
        && text.contains(" mode")
}

/// smartctl (or the kernel, through it) refused for lack of permission: EACCES or EPERM.
pub(crate) fn is_not_permitted(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    text.contains("permission denied") || text.contains("operation not permitted")
}

struct Message {
    text: String,
    severity: String,
}

/// `smartctl.messages[]`: `{"string": ..., "severity": "information"|"warning"|"error"}`.
fn messages(root: &Value) -> Vec<Message> {
    let Some(Value::Array(list)) = root.pointer("/smartctl/messages") else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|m| {
            Some(Message {
                text: string(m, &["string"])?,
                severity: string(m, &["severity"]).unwrap_or_default(),
            })
        })
        .collect()
}

/// ATA and NVMe print `model_name`; SCSI prints `scsi_model_name` (7.3+) or, before,
/// vendor and product.
fn model(root: &Value) -> Option<String> {
    first_string(root, &[&["model_name"], &["model_number"], &["scsi_model_name"]]).or_else(|| {
        let vendor = first_string(root, &[&["scsi_vendor"], &["vendor"]]);
        let product = first_string(root, &[&["scsi_product"], &["product"]]);
        match (vendor, product) {
            (Some(vendor), Some(product)) => Some(format!("{vendor} {product}")),
            (vendor, product) => vendor.or(product),
        }
    })
}

/// Raw value of ATA attribute `id` from `ata_smart_attributes.table`.
fn ata_raw(root: &Value, id: u64) -> Option<u64> {
    let Some(Value::Array(table)) = root.pointer("/ata_smart_attributes/table") else {
        return None;
    };
    table
        .iter()
        .find(|attribute| attribute.get("id").and_then(Value::as_u64) == Some(id))
        .and_then(|attribute| number(attribute, &["raw", "value"]))
}

fn nvme(root: &Value, field: &str) -> Option<u64> {
    number(root, &["nvme_smart_health_information_log", field])
}

/// The top-level object of smartctl's output.
fn object(json: &[u8]) -> Result<Value, String> {
    match serde_json::from_slice::<Value>(json) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err("not a JSON object".to_owned()),
        Err(err) => Err(format!("not JSON: {err}")),
    }
}

fn get<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |value, key| value.get(key))
}

/// A non-negative integer. Integers beyond `u64` (smartctl prints 128-bit NVMe counters as
/// plain numbers) arrive as floats and saturate.
fn number(value: &Value, path: &[&str]) -> Option<u64> {
    let found = get(value, path)?;
    found.as_u64().or_else(|| {
        found.as_f64().filter(|f| f.is_finite() && *f >= 0.0 && f.fract() == 0.0).map(|f| f as u64)
    })
}

/// A non-empty string, trimmed and cut to [`MAX_STRING`] bytes.
fn string(value: &Value, path: &[&str]) -> Option<String> {
    let mut text = get(value, path)?.as_str()?.trim().to_owned();
    truncate(&mut text, MAX_STRING);
    (!text.is_empty()).then_some(text)
}

fn first_string(value: &Value, paths: &[&[&str]]) -> Option<String> {
    paths.iter().find_map(|path| string(value, path))
}

fn saturating_u32(value: u64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

/// Cuts `text` to at most `max` bytes, on a character boundary.
fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn fixture(path: &str) -> Vec<u8> {
        let full = format!("{}/tests/fixtures/smartctl/{path}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&full).unwrap_or_else(|err| panic!("{full}: {err}"))
    }

    fn device(path: &str) -> SmartDevice {
        parse_device(&fixture(path)).unwrap()
    }

    #[test]
    fn healthy_ata_disk() {
        assert_eq!(
            device("ata/WDC_WD20EFRX-68EUZN0_17.json"),
            SmartDevice {
                name: "/dev/sdb".into(),
                device_type: "sat".into(),
                protocol: "ATA".into(),
                model: "WDC WD20EFRX-68EUZN0".into(),
                serial: "REDACTED".into(),
                firmware: "REDACTED".into(),
                capacity_bytes: 2_000_398_934_016,
                health_passed: Some(true),
                in_standby: false,
                temperature_celsius: Some(34.0),
                power_on_hours: Some(47_657),
                reallocated_sectors: Some(0),
                pending_sectors: Some(0),
                offline_uncorrectable: Some(0),
                crc_errors: Some(0),
                critical_warning: None,
                percentage_used: None,
                media_errors: None,
                available_spare_percent: None,
                available_spare_threshold_percent: None,
                grown_defects: None,
                exit_status: 0,
                error: String::new(),
            }
        );
    }

    #[test]
    fn ata_reallocated_sectors_seagate_st3500418as() {
        let d = device("ata/ST3500418AS_12.json");
        assert_eq!(d.model, "ST3500418AS");
        assert_eq!(d.reallocated_sectors, Some(304));
        assert_eq!(d.pending_sectors, Some(0));
        assert_eq!(d.offline_uncorrectable, Some(0));
        assert_eq!(d.crc_errors, Some(0));
        assert_eq!(d.health_passed, Some(true));
        assert_eq!(d.temperature_celsius, Some(33.0));
        assert_eq!(d.power_on_hours, Some(44_668));
        assert_eq!(d.capacity_bytes, 500_107_862_016);
        assert_eq!((d.exit_status, d.error.as_str()), (0, ""));
    }

    #[test]
    fn ata_crc_errors_wd2003fyys() {
        let d = device("ata/sat-Western_Digital_RE4-WDC_WD2003FYYS-02W0B1-sdi.json");
        assert_eq!(d.name, "/dev/sdi");
        assert_eq!(d.model, "WDC WD2003FYYS-02W0B1");
        assert_eq!(d.crc_errors, Some(3_118_119));
        assert_eq!(d.reallocated_sectors, Some(0));
        assert_eq!(d.health_passed, Some(true));
        assert_eq!(d.temperature_celsius, Some(24.0));
        assert_eq!(d.power_on_hours, Some(58_530));
    }

    #[test]
    fn failing_nvme_samsung_is_data_not_an_error() {
        assert_eq!(
            device("nvme/nvme-null-SAMSUNG_MZWLL3T2HAJQ-00005-nvme0.json"),
            SmartDevice {
                name: "/dev/nvme0".into(),
                device_type: "nvme".into(),
                protocol: "NVMe".into(),
                model: "SAMSUNG MZWLL3T2HAJQ-00005".into(),
                serial: "REDACTED".into(),
                firmware: "REDACTED".into(),
                capacity_bytes: 3_200_631_791_616,
                health_passed: Some(false),
                in_standby: false,
                temperature_celsius: Some(40.0),
                power_on_hours: Some(18_376),
                reallocated_sectors: None,
                pending_sectors: None,
                offline_uncorrectable: None,
                crc_errors: None,
                critical_warning: Some(16),
                percentage_used: Some(0),
                media_errors: Some(0),
                available_spare_percent: Some(100),
                available_spare_threshold_percent: Some(10),
                grown_defects: None,
                exit_status: 8,
                error: String::new(),
            }
        );
    }

    #[test]
    fn scsi_grown_defects_seagate_st373453lc() {
        let d = device("scsi/SEAGATE_ST373453LC_26.json");
        assert_eq!(d.protocol, "SCSI");
        assert_eq!(d.device_type, "scsi");
        assert_eq!(d.model, "SEAGATE ST373453LC");
        assert_eq!(d.firmware, "DX10");
        assert_eq!(d.grown_defects, Some(260));
        assert_eq!(d.capacity_bytes, 73_407_820_800);
        assert_eq!(d.power_on_hours, Some(102_880));
        assert_eq!(d.temperature_celsius, Some(33.0));
        assert_eq!(d.health_passed, Some(true));
        assert_eq!(d.reallocated_sectors, None);
        assert_eq!(d.critical_warning, None);
    }

    #[test]
    fn synthetic_failing_ata_keeps_its_readings() {
        let d = device("synthetic/failing-ata-ST3500418AS_12.json");
        assert_eq!(d.health_passed, Some(false));
        assert_eq!(d.exit_status, 8);
        assert_eq!(d.error, "", "bit 3 (DISK FAILING) is a reading, not a read error");
        assert_eq!(d.reallocated_sectors, Some(304));
        assert!(!d.in_standby);
    }

    #[test]
    fn exit_bit_2_is_an_error_but_the_readings_stay() {
        let d = device("ata/sat-Phison_Driven_SSDs-KINGSTON_SA400M8120G-sda.json");
        assert_eq!(d.exit_status, 4);
        assert_eq!(
            d.error,
            "a SMART or other command to the device failed, or SMART data had a bad checksum"
        );
        assert_eq!(d.model, "KINGSTON SA400M8120G");
        assert_eq!(d.health_passed, Some(true));
        assert_eq!(d.temperature_celsius, Some(38.0));
        assert_eq!(d.power_on_hours, Some(4_994));
    }

    #[test]
    fn standby_disk_has_no_readings_and_no_error() {
        let d = device("synthetic/standby-sat-sdc.json");
        assert!(d.in_standby);
        assert_eq!(d.error, "");
        assert_eq!(d.exit_status, 2);
        assert_eq!((d.name.as_str(), d.device_type.as_str()), ("/dev/sdc", "sat"));
        assert_eq!(d.health_passed, None);
        assert_eq!(d.temperature_celsius, None);
        assert_eq!(d.power_on_hours, None);
        assert_eq!(d.reallocated_sectors, None);
    }

    #[test]
    fn open_failure_is_a_readable_error() {
        let report =
            device_report(&fixture("captured/open-failed-no-such-device.json"), None).unwrap();
        assert_eq!(report.device.exit_status, 2);
        assert_eq!(
            report.device.error,
            "device open failed or the device did not identify itself: \
             Smartctl open device: /dev/sdzz [SAT] failed: No such device"
        );
        assert!(!report.device.in_standby);
        assert!(!report.not_permitted);
        assert_eq!(report.device.health_passed, None);
    }

    #[test]
    fn permission_denied_is_recognised() {
        let report =
            device_report(&fixture("captured/open-failed-permission-denied.json"), None).unwrap();
        assert!(report.not_permitted);
        assert_eq!(report.device.exit_status, 2);
        assert!(
            report.device.error.ends_with("failed: Permission denied"),
            "{}",
            report.device.error
        );
    }

    #[test]
    fn exit_bit_0_names_the_command_line() {
        let d = device("captured/unable-to-detect-device-type.json");
        assert_eq!(d.exit_status, 1);
        assert_eq!(
            d.error,
            "smartctl did not accept its command line: /dev/vda: Unable to detect device type"
        );
    }

    #[test]
    fn process_exit_status_fills_in_when_the_json_has_none() {
        let report = device_report(br#"{"device": {"name": "/dev/sda"}}"#, Some(4)).unwrap();
        assert_eq!(report.device.exit_status, 4);
        assert!(report.device.error.starts_with("a SMART or other command"));
        let report = device_report(br#"{"smartctl": {"exit_status": 0}}"#, Some(4)).unwrap();
        assert_eq!(report.device.exit_status, 0, "the JSON's own status wins");
    }

    #[test]
    fn scan_with_megaraid_types() {
        let scan = scan_report(&fixture("synthetic/scan-open-megaraid.json")).unwrap();
        let entries: Vec<(&str, &str, &str, Option<&str>)> = scan
            .devices
            .iter()
            .map(|e| {
                (
                    e.name.as_str(),
                    e.device_type.as_str(),
                    e.protocol.as_str(),
                    e.open_error.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            entries,
            [
                ("/dev/sda", "sat", "ATA", None),
                ("/dev/sdc", "sat", "ATA", None),
                ("/dev/sdd", "scsi", "SCSI", Some("INQUIRY failed")),
                ("/dev/bus/0", "megaraid,4", "SCSI", None),
                ("/dev/bus/0", "sat+megaraid,5", "ATA", None),
                ("/dev/nvme0", "nvme", "NVMe", None),
            ]
        );
        assert_eq!(scan.exit_status, Some(0));
        assert!(!scan.not_permitted);
    }

    #[test]
    fn scan_without_devices_is_empty() {
        let scan = scan_report(&fixture("captured/scan-open-no-devices.json")).unwrap();
        assert_eq!(scan.devices, []);
        assert_eq!(scan.exit_status, Some(0));
    }

    #[test]
    fn scan_drops_unusable_and_duplicate_entries() {
        let json = br#"{"devices": [
            {"name": "/dev/sda", "type": "sat"},
            {"name": "/dev/sda", "type": "sat"},
            {"name": "-a", "type": "sat"},
            {"name": "/dev/sdb", "type": "-T"},
            {"name": "/dev/sdc"},
            {"type": "nvme"},
            {"name": "/dev/sd\u0000e", "type": "sat"},
            {"name": 5, "type": "sat"},
            "nonsense",
            {"name": "/dev/bus/0", "type": "megaraid,0"}
        ]}"#;
        let names: Vec<(String, String)> =
            parse_scan(json).unwrap().into_iter().map(|e| (e.name, e.device_type)).collect();
        assert_eq!(
            names,
            [
                ("/dev/sda".to_owned(), "sat".to_owned()),
                ("/dev/bus/0".to_owned(), "megaraid,0".to_owned())
            ]
        );
    }

    #[test]
    fn odd_input_is_an_error_or_absent_fields_never_a_panic() {
        for bad in [&b""[..], b"null", b"[]", b"42", b"\"x\"", b"{", b"\xff\xfe", b"{}}"] {
            assert!(parse_device(bad).is_err(), "{bad:?}");
            assert!(parse_scan(bad).is_err(), "{bad:?}");
        }
        assert!(parse_scan(br#"{"devices": 5}"#).is_err());
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse_device(deep.as_bytes()).is_err());

        let d = parse_device(
            br#"{
                "device": {"name": 7, "type": [], "protocol": null},
                "model_name": {"x": 1},
                "user_capacity": {"bytes": -5},
                "nvme_total_capacity": 1e300,
                "smart_status": {"passed": "yes"},
                "temperature": {"current": "hot"},
                "power_on_time": {"hours": 1.5},
                "ata_smart_attributes": {"table": [5, {"id": "5"}, {"id": 5, "raw": 3},
                                                   {"id": 197, "raw": {"value": 1e40}}]},
                "nvme_smart_health_information_log": {"critical_warning": 99999999999,
                                                      "media_errors": 3.4e38},
                "scsi_grown_defect_list": true,
                "smartctl": {"exit_status": -1, "messages": [1, {"string": 2}, null]}
            }"#,
        )
        .unwrap();
        assert_eq!(d.name, "");
        assert_eq!(d.capacity_bytes, u64::MAX, "1e300 saturates");
        assert_eq!(d.health_passed, None);
        assert_eq!(d.temperature_celsius, None);
        assert_eq!(d.power_on_hours, None);
        assert_eq!(d.reallocated_sectors, None);
        assert_eq!(d.pending_sectors, Some(u64::MAX));
        assert_eq!(d.critical_warning, Some(u32::MAX));
        assert_eq!(d.media_errors, Some(u64::MAX));
        assert_eq!(d.grown_defects, None);
        assert_eq!((d.exit_status, d.error.as_str()), (0, ""));
    }

    #[test]
    fn long_strings_are_cut_on_a_character_boundary() {
        let model = "é".repeat(1000);
        let json = format!(r#"{{"model_name": "{model}"}}"#);
        let d = parse_device(json.as_bytes()).unwrap();
        assert!(
            d.model.len() <= MAX_STRING && d.model.len() >= MAX_STRING - 1,
            "{}",
            d.model.len()
        );
        assert!(d.model.chars().all(|c| c == 'é'));
    }
}
