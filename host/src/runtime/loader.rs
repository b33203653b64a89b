//! One wasmtime `Engine` per process, the component compiled once and kept
//! precompiled on disk, instances made from a shared `InstancePre`.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

use super::bindings::{Cloudsync, CloudsyncPre};
use super::state::HostState;

/// How often the epoch advances; a guest call's time budget is checked this often.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The process's engine, with its epoch ticker running.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = Config::new();
        config.wasm_component_model(true);
        // Synchronous exports plus a host-driven loop: component-model async
        // is not used, and its bookkeeping makes every call 2-4x slower.
        config.concurrency_support(false);
        config.epoch_interruption(true);
        let engine = Engine::new(&config).expect("the engine configuration is valid");
        let ticker = engine.clone();
        std::thread::Builder::new()
            .name("cloudsync-epoch".into())
            .spawn(move || loop {
                std::thread::sleep(EPOCH_TICK);
                ticker.increment_epoch();
            })
            .expect("a thread can be spawned");
        engine
    })
}

/// The engine component built with this crate.
pub fn embedded_component() -> &'static [u8] {
    include_bytes!(env!("CLOUDSYNC_COMPONENT_WASM"))
}

/// The default place for precompiled components: `$XDG_CACHE_HOME/cloudsync`
/// or `~/.cache/cloudsync`.
pub fn default_cache_dir() -> Option<PathBuf> {
    // An empty XDG_CACHE_HOME is unset (the XDG spec), never the current folder.
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("cloudsync"))
}

/// A precompiled component is only valid for the same component bytes, the
/// same wasmtime and the same `Config`: the key covers all three.
fn cache_key(engine: &Engine, wasm: &[u8]) -> String {
    let mut h = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    let digest = Sha256::new()
        .chain_update(wasm)
        .chain_update(h.finish().to_le_bytes())
        .finalize();
    format!("{:x}", digest)[..32].to_string()
}

/// The instance template for `wasm`, compiled at most once per process and,
/// with a cache directory, once per machine.
pub fn instance_pre(wasm: &[u8], cache_dir: Option<&Path>) -> anyhow::Result<CloudsyncPre<HostState>> {
    static PRES: OnceLock<Mutex<HashMap<String, CloudsyncPre<HostState>>>> = OnceLock::new();
    let engine = engine();
    let key = cache_key(engine, wasm);
    let pres = PRES.get_or_init(Default::default);
    if let Some(pre) = pres.lock().unwrap().get(&key) {
        return Ok(pre.clone());
    }
    let component = load_component(engine, wasm, &key, cache_dir)?;
    let mut linker = Linker::<HostState>::new(engine);
    // WASI is linked because Rust's std imports it, with nothing granted:
    // no preopened directories, no sockets, no environment, no arguments.
    ctx(wasmtime_wasi::p2::add_to_linker_sync(&mut linker), "linking WASI")?;
    ctx(
        Cloudsync::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s),
        "linking the imports",
    )?;
    let pre = ctx(
        linker.instantiate_pre(&component).and_then(CloudsyncPre::new),
        "checking the component's imports",
    )?;
    pres.lock().unwrap().insert(key, pre.clone());
    Ok(pre)
}

/// `wasm` compiled for `engine`, from (and into) the cache in `cache_dir`
/// when there is one: for other embedders of a cloudsync component (the
/// WASI runner), keyed like the host's own.
pub fn compiled_component(engine: &Engine, wasm: &[u8], cache_dir: Option<&Path>) -> anyhow::Result<Component> {
    load_component(engine, wasm, &cache_key(engine, wasm), cache_dir)
}

fn load_component(engine: &Engine, wasm: &[u8], key: &str, cache_dir: Option<&Path>) -> anyhow::Result<Component> {
    let Some(dir) = cache_dir else {
        return ctx(Component::new(engine, wasm), "compiling the component");
    };
    let path = dir.join(format!("cloudsync-{key}.cwasm"));
    // Native code is run from it: its bytes must be the ones written, which
    // end with their own sha256 (a damaged or altered file is rebuilt).
    if let Ok(file) = std::fs::read(&path) {
        if let Some((code, sum)) = file.split_at_checked(file.len().saturating_sub(32)) {
            if sum.len() == 32 && Sha256::digest(code).as_slice() == sum {
                // SAFETY: the bytes are those `precompile_component` of an
                // engine with the same compatibility hash (it is in the file
                // name) wrote, as their checksum shows; wasmtime checks the
                // header again, and a file that fails is rebuilt.
                if let Ok(c) = unsafe { Component::deserialize(engine, code) } {
                    return Ok(c);
                }
            }
        }
    }
    let mut bytes = ctx(engine.precompile_component(wasm), "compiling the component")?;
    let sum = Sha256::digest(&bytes);
    bytes.extend_from_slice(&sum);
    // Write-then-rename: a concurrent reader never sees half a file.
    let written = std::fs::create_dir_all(dir).and_then(|_| {
        let temp = dir.join(format!(".cloudsync-{key}.{}.tmp", std::process::id()));
        std::fs::write(&temp, &bytes)?;
        std::fs::rename(&temp, &path)
    });
    if let Err(e) = written {
        eprintln!(
            "cloudsync: cannot cache the compiled component in {}: {e}",
            dir.display()
        );
    }
    // SAFETY: `bytes` (less its checksum) was just produced by
    // `precompile_component` on this engine.
    ctx(
        unsafe { Component::deserialize(engine, &bytes[..bytes.len() - sum.len()]) },
        "loading the compiled component",
    )
}

fn ctx<T>(r: wasmtime::Result<T>, what: &str) -> anyhow::Result<T> {
    r.map_err(|e| anyhow::anyhow!("{what}: {e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_cached_component_is_rebuilt_never_run() {
        let dir = tempfile::tempdir().unwrap();
        let wasm = crate::runtime::engine_component();
        compiled_component(engine(), wasm, Some(dir.path())).unwrap();
        let path = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "cwasm"))
            .expect("cached");
        let good = std::fs::read(&path).unwrap();
        let mut bad = good.clone();
        let mid = bad.len() / 2;
        for b in &mut bad[mid..mid + 4096] {
            *b ^= 0x5a;
        }
        std::fs::write(&path, &bad).unwrap();
        compiled_component(engine(), wasm, Some(dir.path())).unwrap();
        let now = std::fs::read(&path).unwrap();
        assert_ne!(now, bad, "the damaged file was not taken");
        let (code, sum) = now.split_at(now.len() - 32);
        assert_eq!(Sha256::digest(code).as_slice(), sum, "rebuilt with its checksum");
    }
}
