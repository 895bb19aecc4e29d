//! Generates the capstan.v1 Rust code with the vendored protoc, so a fresh machine needs only cargo.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY of intent: build scripts are single-threaded; this only tells prost-build where protoc is.
    std::env::set_var("PROTOC", protoc);
    // BTreeMap for every map field: encoding must be byte-identical on every replica.
    // Entries replication passes through as the bytes the log stores: `Bytes`, shared, not copied.
    tonic_prost_build::configure()
        .btree_map(".")
        .bytes(".capstan.v1.AppendEntriesRequest.entries")
        // prost's codec with smaller per-call buffers (see src/codec.rs)
        .codec_path("crate::codec::LeanCodec")
        .compile_protos(
            &[
                "proto/capstan/v1/records.proto",
                "proto/capstan/v1/log.proto",
                "proto/capstan/v1/control_plane.proto",
                "proto/capstan/v1/raft.proto",
                "proto/capstan/v1/admin.proto",
                "proto/capstan/v1/cell.proto",
                "proto/capstan/v1/task.proto",
                "proto/capstan/v1/auth.proto",
                "proto/capstan/v1/cf.proto",
            ],
            &["proto"],
        )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
