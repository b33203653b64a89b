//! Builds the hostile test component used by the sandbox tests.

include!("../build-support/build_component.rs");

fn main() {
    let manifest = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest.parent().unwrap().to_path_buf();
    rerun_if_changed_under(&[
        manifest.join("evil-guest"),
        workspace.join("wit"),
        workspace.join("build-support"),
    ]);
    let wasm = build_component(&workspace, "cloudsync-evil-guest");
    println!("cargo:rustc-env=EVIL_COMPONENT_WASM={}", wasm.display());
}
