//! A runtime that links WASI and nothing else, running the composed
//! `cloudsync-wasi.wasm` as a command: what `wasmtime run --dir …` does.

use std::path::Path;
use std::sync::OnceLock;

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::p2::bindings::sync::Command;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// The engine composed for WASI alone: `$CLOUDSYNC_WASI_WASM` when set,
/// else the one this crate's build script made.
pub fn wasi_component_path() -> &'static Path {
    static PATH: OnceLock<std::path::PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::var_os("CLOUDSYNC_WASI_WASM")
            .map(Into::into)
            .unwrap_or_else(|| env!("CLOUDSYNC_WASI_WASM").into())
    })
}

struct Ctx {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Ctx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// What a run printed and how it ended.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

fn loaded() -> &'static (Engine, Component) {
    static LOADED: OnceLock<(Engine, Component)> = OnceLock::new();
    LOADED.get_or_init(|| {
        let mut config = Config::new();
        config.concurrency_support(false);
        let engine = Engine::new(&config).expect("an engine");
        // Compiled once per machine (the host's cache, keyed on the bytes,
        // wasmtime and this Config), not on every run.
        let bytes = std::fs::read(wasi_component_path()).expect("the composed component is there");
        let component = cloudsync::compiled_component(&engine, &bytes, cloudsync::default_cache_dir().as_deref())
            .expect("the composed component loads");
        (engine, component)
    })
}

/// The names the component imports: `wasi:*` only, when it runs on WASI alone.
pub fn imports() -> Vec<String> {
    let (engine, component) = loaded();
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .collect()
}

/// Runs the composed component ([`wasi_component_path`]) with `args` (the program name first), each
/// `(host folder, guest path)` preopened, and `env`.
pub fn run(args: &[&str], dirs: &[(&Path, &str)], env: &[(&str, &str)]) -> wasmtime::Result<Run> {
    let (engine, component) = loaded();
    let stdout = MemoryOutputPipe::new(16 << 20);
    let stderr = MemoryOutputPipe::new(16 << 20);
    let mut builder = WasiCtxBuilder::new();
    // Synchronous embedding: file operations run on this thread, not handed
    // to a blocking pool and back (which costs more than most of them).
    builder
        .args(args)
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .allow_blocking_current_thread(true);
    for (k, v) in env {
        builder.env(k, v);
    }
    for (host, guest) in dirs {
        builder.preopened_dir(host, guest, FsPerms::ReadWrite)?;
    }
    let mut store = Store::new(
        engine,
        Ctx {
            wasi: builder.build(),
            table: ResourceTable::new(),
        },
    );
    let mut linker: Linker<Ctx> = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    let command = Command::instantiate(&mut store, component, &linker)?;
    let code = match command.wasi_cli_run().call_run(&mut store) {
        Ok(Ok(())) => 0,
        Ok(Err(())) => 1,
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(exit) => exit.0,
            None => return Err(e),
        },
    };
    let text = |p: &MemoryOutputPipe| String::from_utf8_lossy(&p.contents()).into_owned();
    Ok(Run {
        code,
        stdout: text(&stdout),
        stderr: text(&stderr),
    })
}
