//! Builds the hostile test component used by the sandbox tests, and the
//! engine composed for WASI alone (`target/cloudsync-wasi.wasm`).

include!("../build-support/build_component.rs");

fn main() {
    let manifest = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest.parent().unwrap().to_path_buf();
    rerun_if_changed_under(&[
        manifest.join("evil-guest"),
        workspace.join("guest/src"),
        workspace.join("guest/Cargo.toml"),
        workspace.join("guest/wasi-adapter"),
        workspace.join("guest/wasi-command"),
        workspace.join("guest/cloudsync-wasi.wac"),
        workspace.join("wit"),
        workspace.join("build-support"),
    ]);
    let wasm = build_component_with(&workspace, "cloudsync-evil-guest", &[], "guest");
    println!("cargo:rustc-env=EVIL_COMPONENT_WASM={}", wasm.display());
    let wasi = compose_wasi(&workspace);
    println!("cargo:rustc-env=CLOUDSYNC_WASI_WASM={}", wasi.display());
}
