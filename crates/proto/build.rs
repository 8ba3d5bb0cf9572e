//! Compiles `proto/` without `protoc`: protox parses the files, prost-build generates Rust.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read when the script runs, not baked in when it is compiled: a build script binary
    // kept in a target folder shared by two checkouts must look in the one being built.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").ok_or("CARGO_MANIFEST_DIR is not set")?;
    let root = std::path::Path::new(&manifest).join("../../proto");
    let files = [
        root.join("trendwatch/v1/events.proto"),
        root.join("trendwatch/v1/alerts.proto"),
        root.join("trendwatch/v1/ranking.proto"),
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let fds = protox::compile(&files, [&root])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
