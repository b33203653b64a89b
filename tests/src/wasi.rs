//! A runtime that links WASI and nothing else, running the composed
//! `cloudsync-wasi.wasm` as a command: what `wasmtime run -S http --dir …`
//! does. Its wasi:http reaches the one server the `--cloud` argument names
//! (a WebDAV cloud) and nothing else.

use std::path::Path;
use std::sync::OnceLock;

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::p2::bindings::sync::Command;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

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
    http: WasiHttpCtx,
    hooks: OneServer,
    table: ResourceTable,
}

/// Outgoing requests go to this host and port alone (none: nowhere).
struct OneServer(Option<(String, u16)>);

type Sent = Box<
    dyn std::future::Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<WasiBody>,
                Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for OneServer {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Sent {
        let uri = request.uri();
        let default_port = if uri.scheme_str() == Some("https") { 443 } else { 80 };
        let to = uri
            .authority()
            .map(|a| (a.host().to_string(), a.port_u16().unwrap_or(default_port)));
        if to.is_none() || to != self.0 {
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let (res, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                res.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn std::future::Future<Output = _> + Send>,
            ))
        })
    }
}

/// The host and port of a `webdav(s)://` cloud the arguments name.
fn cloud_server(args: &[&str], env: &[(&str, &str)]) -> Option<(String, u16)> {
    let from_args = args
        .windows(2)
        .find(|w| w[0] == "--cloud")
        .map(|w| w[1])
        .or_else(|| args.iter().find_map(|a| a.strip_prefix("--cloud=")));
    let url = from_args.or_else(|| env.iter().find(|(k, _)| *k == "CLOUDSYNC_CLOUD").map(|(_, v)| *v))?;
    let rest = url
        .strip_prefix("webdav://")
        .or_else(|| url.strip_prefix("webdavs://"))?;
    let authority: http::uri::Authority = rest.split('/').next()?.parse().ok()?;
    let default_port = if url.starts_with("webdavs://") { 443 } else { 80 };
    Some((
        authority.host().to_string(),
        authority.port_u16().unwrap_or(default_port),
    ))
}

impl WasiHttpView for Ctx {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
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
            http: WasiHttpCtx::new(),
            hooks: OneServer(cloud_server(args, env)),
            table: ResourceTable::new(),
        },
    );
    let mut linker: Linker<Ctx> = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker)?;
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

#[cfg(test)]
mod tests {
    use super::cloud_server;

    #[test]
    fn wasi_http_reaches_the_cloud_named_and_nothing_else() {
        let at = |args: &[&str], env: &[(&str, &str)]| cloud_server(args, env);
        assert_eq!(
            at(&["cloudsync", "--cloud", "webdav://127.0.0.1:8080/dav", "sync"], &[]),
            Some(("127.0.0.1".into(), 8080))
        );
        assert_eq!(
            at(&["cloudsync", "--cloud=webdavs://h/dav"], &[]),
            Some(("h".into(), 443))
        );
        assert_eq!(
            at(&["cloudsync"], &[("CLOUDSYNC_CLOUD", "webdav://h")]),
            Some(("h".into(), 80))
        );
        assert_eq!(
            at(&["cloudsync", "--cloud", "dir:///cloud"], &[]),
            None,
            "a folder cloud: no server"
        );
        assert_eq!(at(&["cloudsync"], &[]), None);
    }
}
