//! Checks that any bytes decode to an `EnrollRequest` or fail cleanly, and that
//! `pki::Csr::parse` returns Ok or Err, never panics, on whatever `csr_der` holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use vigil_collector::pki::Csr;
use vigil_proto::v1::EnrollRequest;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = EnrollRequest::decode(data) else {
        return;
    };
    if let Ok(csr) = Csr::parse(&req.csr_der) {
        assert_eq!(csr.key_sha256.len(), 64, "key_sha256 is not SHA-256 hex");
    }
});
