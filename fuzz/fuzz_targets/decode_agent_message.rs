//! Checks that any bytes on the report stream decode to an `AgentMessage` or fail cleanly,
//! that a decoded message re-encodes to a canonical form that decodes to the same message,
//! and that `validate::report` / `validate::hello` never panic on what decodes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use vigil_collector::ingest::validate::{self, ReportLimits};
use vigil_proto::v1::AgentMessage;
use vigil_proto::v1::agent_message::Kind;

/// The collector's default limits (`IngestConfig::default()` in collector/src/config.rs).
const LIMITS: ReportLimits = ReportLimits {
    max_bytes: 1024 * 1024,
    max_probes: 256,
    max_readings_per_probe: 4096,
    max_string_bytes: 4096,
};

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = AgentMessage::decode(data) else {
        return;
    };

    // Round trip. Unknown fields are dropped, so compare against the re-encoding, not `data`.
    let encoded = msg.encode_to_vec();
    assert_eq!(encoded.len(), msg.encoded_len());
    let again = AgentMessage::decode(encoded.as_slice()).expect("re-encoded message must decode");
    assert_eq!(again.encode_to_vec(), encoded, "re-encoding is not stable");
    // Doubles may be NaN (NaN != NaN): compare structurally only when the message equals itself.
    #[allow(clippy::eq_op)]
    if msg == msg {
        assert_eq!(again, msg, "round trip changed the message");
    }

    match &msg.kind {
        Some(Kind::Report(report)) => {
            let _ = validate::report(report, &report.agent_instance, &LIMITS);
        }
        Some(Kind::Hello(hello)) => {
            let _ = validate::hello(hello);
        }
        _ => {} // Goodbye carries nothing to validate.
    }
});
