//! `make bench` (fourth part): files on demand on a local-folder cloud —
//! the time to optimise (evict) 10,000 synced files, and the time to
//! hydrate a 1 GiB placeholder (CloudFileCache.start → COMPLETED) beside
//! `cp` + `sync` of the same file.
//!
//! `ONDEMAND_FILES` and `BENCH_BIG_BYTES` change the sizes.

use std::time::{Duration, Instant};

use cloudsync::identity::CLOUDFILE_SYNC;
use cloudsync::{
    start_optimize_space, CloudFileCache, FileSync, Identity, OptimizeSpaceParam, OptimizeSpaceProgress, Runtime,
    State, SyncProgress,
};
use cloudsync_tests::write_pattern_file;

const APP: &str = "bench.app";

fn main() {
    let files: usize = env_or("ONDEMAND_FILES", 10_000);
    let big: u64 = env_or("BENCH_BIG_BYTES", 1 << 30);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut id = Identity::app(APP);
        id.permissions = [CLOUDFILE_SYNC.to_string()].into();
        id.system_app = true;
        let runtime = Runtime::builder(dir.path().join("device"))
            .identity(id)
            .build()
            .await
            .unwrap();
        let folder = runtime.app_folder(APP);

        // 10,000 synced files, then one optimisation that evicts them all.
        for i in 0..files {
            let sub = folder.join(format!("d{:03}", i / 100));
            std::fs::create_dir_all(&sub).unwrap();
            std::fs::write(sub.join(format!("f{i:05}.txt")), format!("file {i} ").repeat(400)).unwrap();
        }
        sync(&runtime).await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<OptimizeSpaceProgress>();
        let param = OptimizeSpaceParam {
            total_size: u64::MAX,
            aging_days: 0,
        };
        let t = Instant::now();
        start_optimize_space(
            &runtime,
            param,
            Some(move |p| {
                let _ = tx.send(p);
            }),
        )
        .await
        .unwrap();
        let last = loop {
            let p = rx.recv().await.unwrap();
            if p.is_terminal() {
                break p;
            }
        };
        let optimize = t.elapsed();
        let left = std::fs::read_dir(folder.join("d000")).unwrap().count();
        assert_eq!((last.progress, left), (100, 0), "{last:?}");
        println!(
            "optimize {files} synced files (evict them all): {:.2} s ({:.0} files/s)",
            optimize.as_secs_f64(),
            files as f64 / optimize.as_secs_f64()
        );

        // A 1 GiB placeholder, hydrated.
        let big_path = folder.join("big.bin");
        write_pattern_file(&big_path, big);
        sync(&runtime).await;
        let cache = CloudFileCache::new(&runtime);
        let uri = runtime.uri_for("big.bin");
        cache.clean_cache(&uri).unwrap();
        assert!(!big_path.exists());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        cache
            .on("progress", move |p| {
                let _ = tx.send(p);
            })
            .unwrap();
        let t = Instant::now();
        cache.start(&uri).await.unwrap();
        loop {
            let p: cloudsync::DownloadProgress = rx.recv().await.unwrap();
            if p.is_terminal() {
                assert_eq!(p.state, State::Completed);
                break;
            }
        }
        let hydrate = t.elapsed();
        let cloud_copy = dir.path().join("device/cloud").join(APP).join("big.bin");
        let target = dir.path().join("cp-target.bin");
        let t = Instant::now();
        assert!(std::process::Command::new("cp")
            .arg(&cloud_copy)
            .arg(&target)
            .status()
            .unwrap()
            .success());
        assert!(std::process::Command::new("sync").status().unwrap().success());
        let cp = t.elapsed();
        println!(
            "hydrate a {} MiB placeholder: {:.2} s ({:.0} MiB/s); cp + sync of the same file: {:.2} s ({:.0} MiB/s)",
            big >> 20,
            hydrate.as_secs_f64(),
            mib_s(big, hydrate),
            cp.as_secs_f64(),
            mib_s(big, cp)
        );
    });
}

async fn sync(rt: &Runtime) {
    let sync = FileSync::new(rt);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<SyncProgress>();
    sync.on("progress", move |p| {
        let _ = tx.send(p);
    })
    .unwrap();
    sync.start().await.unwrap();
    loop {
        let p = rx.recv().await.unwrap();
        if p.is_terminal() {
            assert_eq!(p.state, cloudsync::SyncState::Completed, "{:?}", sync.report().await);
            break;
        }
    }
}

fn mib_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}
