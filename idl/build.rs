//! Compiles `idl/**/*.proto` with protox (a Rust protobuf compiler), so no system
//! `protoc` is needed.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "exchange/v1/envelope.proto",
    "exchange/v1/control.proto",
    "exchange/v1/record.proto",
    "exchange/v1/discovery.proto",
    "app/kv/v1/kv.proto",
    "app/feed/v1/feed.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={}", root.join(proto).display());
    }
    let descriptors = protox::compile(PROTOS, [&root])?;
    prost_build::Config::new()
        .btree_map(["."])
        // Control-plane answers print as JSON (`exchangectl --json`).
        .type_attribute(".exchange.v1.control", "#[derive(serde::Serialize)]")
        .compile_fds(descriptors)?;
    Ok(())
}
