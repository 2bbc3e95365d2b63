//! Checks that the smartctl JSON parsers of the SMART probe never panic on any bytes, and that
//! what they accept keeps their promises: every scan entry can be passed back to smartctl as
//! an argument (not empty, not an option, no NUL) and appears once; a device's strings are
//! bounded, its temperature is a real number, and a disk in standby carries no error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil_agent::probe::smart::{parse_device, parse_scan};

/// `MAX_STRING` and `MAX_ERROR` in agent/src/probe/smart/parse.rs.
const MAX_STRING: usize = 256;
const MAX_ERROR: usize = 1024;

fn usable_argument(text: &str) -> bool {
    !text.is_empty() && !text.starts_with('-') && !text.contains('\0')
}

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = parse_scan(data) {
        for (i, entry) in entries.iter().enumerate() {
            assert!(usable_argument(&entry.name), "unusable name {:?}", entry.name);
            assert!(usable_argument(&entry.device_type), "unusable type {:?}", entry.device_type);
            assert!(
                !entries[..i]
                    .iter()
                    .any(|e| e.name == entry.name && e.device_type == entry.device_type),
                "duplicate {entry:?}"
            );
        }
    }
    if let Ok(device) = parse_device(data) {
        for text in [
            &device.name,
            &device.device_type,
            &device.protocol,
            &device.model,
            &device.serial,
            &device.firmware,
        ] {
            assert!(text.len() <= MAX_STRING, "{} bytes", text.len());
        }
        assert!(device.error.len() <= MAX_ERROR, "error of {} bytes", device.error.len());
        assert!(device.temperature_celsius.is_none_or(f64::is_finite));
        if device.in_standby {
            assert!(device.error.is_empty(), "standby with error {:?}", device.error);
            assert_ne!(device.exit_status & 2, 0, "standby without exit bit 1");
        }
        if device.exit_status & 0b111 == 0 {
            assert!(device.error.is_empty(), "error {:?} without exit bits 0-2", device.error);
        }
    }
});
