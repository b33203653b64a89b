//! Builds the engine component (the `guest` crate) and embeds it in the host,
//! so that the `cloudsync` binary and the library are self-contained.

include!("../build-support/build_component.rs");

fn main() {
    let manifest = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest.parent().unwrap().to_path_buf();
    rerun_if_changed_under(&[
        workspace.join("guest/src"),
        workspace.join("guest/Cargo.toml"),
        workspace.join("wit"),
        workspace.join("build-support"),
    ]);
    // The engine for the `cloudsync` world: this host gives the optional imports.
    let wasm = build_component_with(&workspace, "cloudsync-guest", &["native"], "guest");
    println!("cargo:rustc-env=CLOUDSYNC_COMPONENT_WASM={}", wasm.display());
}
