//! Compiles `proto/` without `protoc`: protox parses the files, prost-build generates Rust.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
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
