//! Compiles `innoxide/agent/v1/*.proto` with protox (pure Rust), so a build
//! needs no system `protoc`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["innoxide/agent/v1/agent.proto"];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let descriptors = protox::compile(protos, ["."])?;
    tonic_prost_build::configure()
        // Credentials must not show in `{:?}`: lib.rs writes these by hand.
        .skip_debug([
            ".innoxide.agent.v1.SecretRef",
            ".innoxide.agent.v1.SecretRef.source",
        ])
        .compile_fds(descriptors)?;
    Ok(())
}
