fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../../proto");
    tonic_prost_build::configure()
        .bytes(".cairn.v1")
        .compile_protos(&["../../proto/cairn/v1/cairn.proto"], &["../../proto"])?;
    Ok(())
}
