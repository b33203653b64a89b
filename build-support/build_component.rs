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
    // A library's file is named with `_`, a program's as the package.
    let out = target_dir.join("wasm32-wasip2").join("guest");
    let lib = out.join(format!("{}.wasm", package.replace('-', "_")));
    let bin = out.join(format!("{package}.wasm"));
    match [lib, bin].into_iter().find(|w| w.exists()) {
        Some(wasm) => wasm,
        None => panic!("the {package} component was not produced in {}", out.display()),
    }
}

/// The engine on WASI alone, `<workspace>/target/cloudsync-wasi.wasm`: the
/// engine built for the `cloudsync-core` world, the WASI adapter plugged
/// into its imports and the command into its exports, composed with `wac`
/// (`guest/cloudsync-wasi.wac`) found in `$CLOUDSYNC_TOOLS/bin` (where the
/// Makefile installs it) or on the PATH.
#[allow(dead_code)]
fn compose_wasi(workspace: &std::path::Path) -> std::path::PathBuf {
    let engine = build_component_with(workspace, "cloudsync-guest", &[], "guest-core");
    let adapter = build_component_with(workspace, "cloudsync-wasi-adapter", &[], "guest-core");
    let command = build_component_with(workspace, "cloudsync-wasi-command", &[], "guest-core");
    let tools = std::env::var("CLOUDSYNC_TOOLS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/cloudsync-tools"));
    let installed = tools.join("bin/wac");
    let wac = if installed.exists() { installed } else { std::path::PathBuf::from("wac") };
    let out = workspace.join("target").join("cloudsync-wasi.wasm");
    let dep = |name: &str, path: &std::path::Path| format!("ohos:{name}={}", path.display());
    let status = std::process::Command::new(&wac)
        .arg("compose")
        .arg(workspace.join("guest/cloudsync-wasi.wac"))
        .args(["--dep", &dep("engine", &engine)])
        .args(["--dep", &dep("wasi-adapter", &adapter)])
        .args(["--dep", &dep("command", &command)])
        .arg("-o")
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => out,
        Ok(s) => panic!("wac compose failed ({s})"),
        Err(e) => panic!(
            "cannot run {} ({e}); `make setup` installs wac into {}",
            wac.display(),
            tools.display()
        ),
    }
}

/// Tells cargo to rebuild when anything under these paths changes.
#[allow(dead_code)]
fn rerun_if_changed_under(paths: &[std::path::PathBuf]) {
    for p in paths {
        println!("cargo:rerun-if-changed={}", p.display());
    }
}
