//! `cloudsync-wasi-run [--dir HOST::GUEST]... -- ARGS...`: runs the engine
//! composed for WASI alone (`target/cloudsync-wasi.wasm`) in a runtime that
//! links WASI and nothing else, like `wasmtime run --dir HOST::GUEST
//! cloudsync-wasi.wasm ARGS...` (for machines without the wasmtime CLI).
//! `CLOUDSYNC_*` variables pass through to the component; with a
//! `webdav://` cloud, wasi:http reaches that server alone.

fn main() {
    let mut dirs: Vec<(std::path::PathBuf, String)> = Vec::new();
    let mut args: Vec<String> = vec!["cloudsync".into()];
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        if a == "--" {
            args.extend(it.by_ref());
            break;
        }
        if a == "--dir" {
            let spec = it.next().unwrap_or_default();
            let (host, guest) = spec.split_once("::").unwrap_or((&spec, &spec));
            dirs.push((host.into(), guest.to_string()));
        } else {
            args.push(a);
            args.extend(it.by_ref());
            break;
        }
    }
    let dirs: Vec<(&std::path::Path, &str)> = dirs.iter().map(|(h, g)| (h.as_path(), g.as_str())).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // The cloudsync settings pass through, as `wasmtime run --env` would.
    let env: Vec<(String, String)> = std::env::vars().filter(|(k, _)| k.starts_with("CLOUDSYNC_")).collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    match cloudsync_tests::wasi::run(&args, &dirs, &env) {
        Ok(run) => {
            print!("{}", run.stdout);
            eprint!("{}", run.stderr);
            std::process::exit(run.code);
        }
        Err(e) => {
            eprintln!("cloudsync-wasi-run: {e:#}");
            std::process::exit(1);
        }
    }
}
