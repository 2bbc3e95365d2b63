//! Compiles `vigil/v1/*.proto` with protox (a pure-Rust protobuf compiler), so a fresh
//! machine builds without `protoc`; generates the prost/tonic bindings and the proto3 JSON
//! mapping (pbjson) from the same descriptor set.

use std::path::PathBuf;

use prost::Message;

const PROTOS: &[&str] = &[
    "vigil/v1/report.proto",
    "vigil/v1/enrollment.proto",
    "vigil/v1/hardware.proto",
    "vigil/v1/services.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let fds = protox::compile(PROTOS, ["."])?;
    let descriptor_path = out_dir.join("vigil_descriptor.bin");
    std::fs::write(&descriptor_path, fds.encode_to_vec())?;

    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(fds)?;

    pbjson_build::Builder::new()
        .register_descriptors(&std::fs::read(&descriptor_path)?)?
        .build(&[".vigil.v1"])?;
    Ok(())
}
