//! Checks that the ipmitool text parsers of the IPMI probe never panic on any bytes, and that
//! what they accept keeps their promises: every string is bounded, a sensor has a name and
//! a finite value if any (and then no "No Reading" text), an event's direction is empty or
//! one of the two ipmitool prints.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil_agent::probe::ipmi::{MAX_STRING, is_no_device, parse_sdr_elist, parse_sel_elist};

fuzz_target!(|data: &[u8]| {
    let _ = is_no_device(data);
    for sensor in parse_sdr_elist(data) {
        assert!(!sensor.name.is_empty(), "{sensor:?}");
        for text in [
            &sensor.name,
            &sensor.sensor_type,
            &sensor.status,
            &sensor.unit,
            &sensor.text,
            &sensor.entity,
        ] {
            assert!(text.len() <= MAX_STRING, "{} bytes", text.len());
        }
        assert!(sensor.value.is_none_or(f64::is_finite), "{sensor:?}");
        if sensor.value.is_none() {
            assert!(sensor.unit.is_empty(), "unit without a value: {sensor:?}");
        }
    }
    for event in parse_sel_elist(data) {
        for text in [&event.timestamp, &event.sensor, &event.description] {
            assert!(text.len() <= MAX_STRING, "{} bytes", text.len());
        }
        assert!(matches!(event.direction.as_str(), "" | "Asserted" | "Deasserted"), "{event:?}");
    }
});
