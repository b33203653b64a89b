// Shared by the build scripts that turn a guest crate into a component
// (`include!`d, so it has no crate of its own).
//
// The guest is built by a nested cargo for wasm32-wasip2 with its own target
// directory (the outer build holds a lock on the shared one) and without the
// outer build's RUSTFLAGS, which are meant for the host target.

/// Builds `package` (a member of the workspace at `workspace`) as a
/// component and returns the path of the `.wasm` file.
#[allow(dead_code)]
fn build_component(workspace: &std::path::Path, package: &str) -> std::path::PathBuf {
    build_component_with(workspace, package, &[], "guest")
}

/// [`build_component`] with cargo `features`, in `target/<dir>` (one
/// directory per feature set, so that the builds do not undo each other).
#[allow(dead_code)]
fn build_component_with(
    workspace: &std::path::Path,
    package: &str,
    features: &[&str],
    dir: &str,
) -> std::path::PathBuf {
    use std::process::Command;

    let target_dir = workspace.join("target").join(dir);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["build", "--package", package, "--target", "wasm32-wasip2", "--profile", "guest"])
        .arg("--target-dir")
        .arg(&target_dir);
    if !features.is_empty() {
        cmd.arg("--features").arg(features.join(","));
    }
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_PRIMARY_PACKAGE",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("cargo can be run");
    if !status.success() {
        panic!(
            "building the {package} component failed; is the target installed? \
             (`rustup target add wasm32-wasip2`, which `make` does)"
        );
    }
    let file = package.replace('-', "_");
    let wasm = target_dir.join("wasm32-wasip2").join("guest").join(format!("{file}.wasm"));
    assert!(wasm.exists(), "{} was not produced", wasm.display());
    wasm
}

/// Tells cargo to rebuild when anything under these paths changes.
#[allow(dead_code)]
fn rerun_if_changed_under(paths: &[std::path::PathBuf]) {
    for p in paths {
        println!("cargo:rerun-if-changed={}", p.display());
    }
}
