//! `make bench` (second part): download throughput through each backend —
//! the local folder, WebDAV (Apache on loopback) and S3 (s3s-fs on loopback)
//! — for one large file and for 1,000 small files, beside `rclone copy`
//! against the same server in the same run.

use std::process::Command;
use std::time::{Duration, Instant};

use cloudsync::{CloudFileCache, DownloadProgress, State};
use cloudsync_tests::{write_pattern_file, Backend, Harness, APP};

const SMALL_FILES: usize = 1000;
const SMALL_SIZE: usize = 4096;

fn main() {
    let big: u64 = std::env::var("BENCH_BIG_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 30);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("| backend | 1 large file ({} MiB): cloudsync | rclone copy | {SMALL_FILES} × {} KiB: cloudsync | rclone copy |", big >> 20, SMALL_SIZE >> 10);
    println!("|---|---|---|---|---|");
    for backend in [Backend::Folder, Backend::WebDav, Backend::S3] {
        rt.block_on(run(backend, big));
    }
}

async fn run(backend: Backend, big: u64) {
    let h = Harness::on(backend).await;
    let staging = tempfile::tempdir().unwrap();
    write_pattern_file(&staging.path().join("big.bin"), big);
    let small_dir = staging.path().join("small");
    std::fs::create_dir_all(&small_dir).unwrap();
    for i in 0..SMALL_FILES {
        std::fs::write(
            small_dir.join(format!("f{i:04}.txt")),
            vec![b'a' + (i % 26) as u8; SMALL_SIZE],
        )
        .unwrap();
    }
    // Put the data in the cloud with rclone (a third-party client), or as plain files.
    let remote = match &h.server {
        Some(s) => s.rclone_remote.clone(),
        None => h.cloud_dir.display().to_string(),
    };
    rclone(&[
        "copyto",
        staging.path().join("big.bin").to_str().unwrap(),
        &format!("{remote}/{APP}/big.bin"),
    ]);
    rclone(&["copy", small_dir.to_str().unwrap(), &format!("{remote}/{APP}/small")]);

    let cache = CloudFileCache::new(&h.rt);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<DownloadProgress>();
    cache
        .on("progress", move |p| {
            let _ = tx.send(p);
        })
        .unwrap();

    let t = Instant::now();
    cache.start(&h.uri("big.bin")).await.unwrap();
    wait(&mut rx, 1).await;
    let ours_big = t.elapsed();

    let t = Instant::now();
    for i in 0..SMALL_FILES {
        cache.start(&h.uri(&format!("small/f{i:04}.txt"))).await.unwrap();
    }
    wait(&mut rx, SMALL_FILES).await;
    let ours_small = t.elapsed();

    let out = tempfile::tempdir().unwrap();
    let t = Instant::now();
    rclone(&[
        "copyto",
        &format!("{remote}/{APP}/big.bin"),
        out.path().join("big.bin").to_str().unwrap(),
    ]);
    let rclone_big = t.elapsed();
    let t = Instant::now();
    rclone(&[
        "copy",
        &format!("{remote}/{APP}/small"),
        out.path().join("small").to_str().unwrap(),
    ]);
    let rclone_small = t.elapsed();

    let mib = big as f64 / (1 << 20) as f64;
    let rate = |d: Duration| format!("{:.2} s ({:.0} MiB/s)", d.as_secs_f64(), mib / d.as_secs_f64());
    let files = |d: Duration| {
        format!(
            "{:.2} s ({:.0} files/s)",
            d.as_secs_f64(),
            SMALL_FILES as f64 / d.as_secs_f64()
        )
    };
    println!(
        "| {backend:?} | {} | {} | {} | {} |",
        rate(ours_big),
        rate(rclone_big),
        files(ours_small),
        files(rclone_small)
    );
}

async fn wait(rx: &mut tokio::sync::mpsc::UnboundedReceiver<DownloadProgress>, n: usize) {
    let mut done = 0;
    while done < n {
        let p = rx.recv().await.expect("events");
        if p.is_terminal() {
            assert_eq!(p.state, State::Completed, "{p:?}");
            done += 1;
        }
    }
}

fn rclone(args: &[&str]) {
    let mut cmd = Command::new("rclone");
    cmd.args(args).args(["--config", "/dev/null", "--transfers", "4"]);
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") || k.starts_with("RCLONE_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().expect("rclone is installed (make bench installs it)");
    assert!(
        out.status.success(),
        "rclone {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
