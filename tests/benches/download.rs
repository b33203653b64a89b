//! `make bench`: the figures the foundation promises, measured on this
//! machine. Prints one line per figure.
//!
//! - size of the engine component;
//! - host start-up (build a runtime, instantiate, recover): first run
//!   (compiling the component) and with the precompiled component;
//! - round trip of one small download (start → COMPLETED event);
//! - throughput of a 1 GiB download beside `cp` of the same file, and the
//!   process's peak memory (no file is ever buffered whole).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudsync::cloud::LocalFolderCloud;
use cloudsync::{CloudFileCache, DownloadProgress, Identity, Runtime, State};
use cloudsync_tests::write_pattern_file;

const APP: &str = "bench.app";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // Child mode: one start-up measured in a fresh process.
    if let Some(pos) = args.iter().position(|a| a == "--startup-child") {
        let cache = Path::new(&args[pos + 1]);
        let root = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let t = Instant::now();
        let runtime = rt.block_on(runtime(root.path(), Some(cache)));
        println!("{}", t.elapsed().as_secs_f64());
        drop(runtime);
        return;
    }
    let gib: u64 = std::env::var("BENCH_BIG_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 30);

    println!("component size: {} bytes", cloudsync_component_size());
    let cache = tempfile::tempdir().unwrap();
    let first = startup_child(cache.path());
    let cached: Vec<f64> = (0..5).map(|_| startup_child(cache.path())).collect();
    let cached = cached.iter().cloned().fold(f64::INFINITY, f64::min);
    println!(
        "host start-up, first run (compiles the component): {:.1} ms",
        first * 1e3
    );
    println!(
        "host start-up, precompiled component: {:.1} ms (best of 5)",
        cached * 1e3
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let runtime = runtime(dir.path(), Some(cache.path())).await;
        let cloud_dir = dir.path().join("cloud").join(APP);
        std::fs::create_dir_all(&cloud_dir).unwrap();

        // Small downloads: 4 KiB files, each a new one.
        let n = 200;
        for i in 0..n {
            std::fs::write(cloud_dir.join(format!("small-{i}.txt")), vec![b'x'; 4096]).unwrap();
        }
        let c = CloudFileCache::new(&runtime);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<DownloadProgress>();
        c.on("progress", move |p| {
            let _ = tx.send(p);
        })
        .unwrap();
        let mut times = Vec::new();
        for i in 0..n {
            let uri = runtime.uri_for(&format!("small-{i}.txt"));
            let t = Instant::now();
            c.start(&uri).await.unwrap();
            wait_done(&mut rx, &uri).await;
            times.push(t.elapsed());
        }
        times.sort();
        println!(
            "small download round trip (4 KiB, start -> COMPLETED): median {:.2} ms, p90 {:.2} ms over {n}",
            ms(times[n / 2]),
            ms(times[n * 9 / 10])
        );

        // The big one.
        let big = cloud_dir.join("big.bin");
        write_pattern_file(&big, gib);
        let copy = dir.path().join("cp-copy.bin");
        let t = Instant::now();
        let ok = std::process::Command::new("cp")
            .arg(&big)
            .arg(&copy)
            .status()
            .unwrap()
            .success();
        assert!(ok);
        std::process::Command::new("sync").status().unwrap();
        let cp = t.elapsed();
        std::fs::remove_file(&copy).unwrap();

        let uri = runtime.uri_for("big.bin");
        let t = Instant::now();
        c.start(&uri).await.unwrap();
        wait_done(&mut rx, &uri).await;
        let ours = t.elapsed();
        let mib = gib as f64 / (1 << 20) as f64;
        println!(
            "{:.0} MiB download: {:.2} s ({:.0} MiB/s); cp of the same file (+ sync): {:.2} s ({:.0} MiB/s)",
            mib,
            ours.as_secs_f64(),
            mib / ours.as_secs_f64(),
            cp.as_secs_f64(),
            mib / cp.as_secs_f64()
        );
        println!("peak memory of this process: {} MiB", peak_rss_kib() / 1024);
    });
}

async fn runtime(root: &Path, cache: Option<&Path>) -> Runtime {
    let cloud = Arc::new(LocalFolderCloud::create(root.join("cloud")).unwrap());
    Runtime::builder(root.join("device"))
        .cloud(cloud)
        .identity(Identity::app(APP))
        .cache_dir(cache.map(Path::to_path_buf))
        .build()
        .await
        .unwrap()
}

async fn wait_done(rx: &mut tokio::sync::mpsc::UnboundedReceiver<DownloadProgress>, uri: &str) {
    while let Some(p) = rx.recv().await {
        if p.uri == uri && p.is_terminal() {
            assert_eq!(p.state, State::Completed, "{p:?}");
            return;
        }
    }
    panic!("events ended");
}

fn startup_child(cache: &Path) -> f64 {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--startup-child")
        .arg(cache)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn cloudsync_component_size() -> usize {
    cloudsync::engine_component().len()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
