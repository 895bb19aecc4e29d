//! Generates the capstan.v1 Rust code with the vendored protoc, so a fresh machine needs only cargo.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY of intent: build scripts are single-threaded; this only tells prost-build where protoc is.
    std::env::set_var("PROTOC", protoc);
    tonic_prost_build::configure().compile_protos(
        &[
            "proto/capstan/v1/records.proto",
            "proto/capstan/v1/log.proto",
            "proto/capstan/v1/control_plane.proto",
            "proto/capstan/v1/raft.proto",
        ],
        &["proto"],
    )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
