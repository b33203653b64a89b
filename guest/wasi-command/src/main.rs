//! `cloudsync` on WASI alone: the native command line's `sync`, `download`,
//! `status` and `state`, driving the engine through the exports it imports
//! (the `command` world). Where things are (`--root`, `--cloud`, `--app`) is
//! read by the WASI adapter from the same arguments; this program reads
//! only what it needs to print URIs.

#[cfg(target_arch = "wasm32")]
mod lock;
#[cfg(target_arch = "wasm32")]
mod run;

#[cfg(target_arch = "wasm32")]
fn main() {
    std::process::exit(run::main());
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!("cloudsync-wasi-command is built for wasm32-wasip2 and run composed (cloudsync-wasi.wasm)");
    std::process::exit(2);
}
