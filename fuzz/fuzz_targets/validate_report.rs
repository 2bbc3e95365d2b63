//! Checks that `validate::report` never panics on any decodable `Report` under small limits,
//! and that whatever it accepts really is within them: encoded size <= max_bytes,
//! probes <= max_probes, agent_instance and seq present, probe names and messages short.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use vigil_collector::ingest::validate::{self, ReportLimits};
use vigil_proto::v1::Report;

/// Small, so the fuzzer reaches every limit quickly.
const LIMITS: ReportLimits = ReportLimits {
    max_bytes: 4096,
    max_probes: 8,
    max_readings_per_probe: 16,
    max_string_bytes: 64,
};

fuzz_target!(|data: &[u8]| {
    let Ok(report) = Report::decode(data) else {
        return;
    };
    if validate::report(&report, &report.agent_instance, &LIMITS).is_err() {
        return;
    }
    assert!(!report.agent_instance.is_empty(), "accepted a report without agent_instance");
    assert_ne!(report.seq, 0, "accepted a report without seq");
    assert!(
        report.encoded_len() <= LIMITS.max_bytes,
        "accepted {} bytes, limit {}",
        report.encoded_len(),
        LIMITS.max_bytes
    );
    assert!(
        report.probes.len() <= LIMITS.max_probes,
        "accepted {} probes, limit {}",
        report.probes.len(),
        LIMITS.max_probes
    );
    // Per-probe strings that exist whatever the probe's data (reading counts and reading
    // strings depend on the data variant and are bounded by the validator's exhaustive match).
    for p in &report.probes {
        assert!(p.probe.len() <= LIMITS.max_string_bytes, "accepted a long probe name");
        assert!(p.message.len() <= LIMITS.max_string_bytes, "accepted a long probe message");
    }
});
