//! Vigil's wire contract: the `vigil.v1` protobuf package shared by agent and collector.
//!
//! The `.proto` files under `proto/vigil/v1/` are the source of truth; the bindings are
//! generated at build time by a pure-Rust compiler (protox), so nobody needs `protoc`.
//! Every message also implements the proto3 JSON mapping (pbjson), which is what
//! `vigil-agent --once` prints and what the collector keeps as a host's latest report.

/// `vigil.v1`: the agent → collector report stream (`Ingest.Report`).
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]
    include!(concat!(env!("OUT_DIR"), "/vigil.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/vigil.v1.serde.rs"));
}

/// Encoded `FileDescriptorSet` of every `vigil.*` file, for reflection and compatibility checks.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/vigil_descriptor.bin"));
