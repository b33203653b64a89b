//! `make bench` (third part): sync of 10,000 files / 1 GiB with a
//! local-folder cloud, in both directions — up (the device holds the files)
//! and a first download (the cloud does) — each as the initial sync, a
//! re-sync with nothing changed right after it, and a re-sync after 100
//! files changed, with the `cloudsync` command line beside `rclone sync`
//! (alone, and followed by `sync` for the same durability), `rsync` and
//! `unison` on the same data in the same run.
//! Each tool runs as its own process; its peak memory is the maximum
//! resident set size the kernel reports for it (wait4).
//!
//! `SYNC_BENCH_FILES` and `SYNC_BENCH_BYTES` change the data set.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn main() {
    let files: usize = env_or("SYNC_BENCH_FILES", 10_000);
    let total: u64 = env_or("SYNC_BENCH_BYTES", 1 << 30);
    let size = (total / files as u64) as usize;
    let cli = cloudsync_cli();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    make_data(&data, files, size);
    warm_up(&cli, dir.path());
    for direction in [Direction::Up, Direction::Down] {
        println!();
        println!(
            "{} of {files} files × {size} bytes ({} MiB), local-folder cloud, one process per run",
            match direction {
                Direction::Up => "sync up (the device holds the files, the cloud is empty)",
                Direction::Down => "first download (the cloud holds the files, the device is empty)",
            },
            (files * size) >> 20
        );
        println!("| tool | initial sync | no-change re-sync right after | 100 files changed | peak memory |");
        println!("|---|---|---|---|---|");
        bench_direction(&cli, dir.path(), &data, direction);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// The files start on the side that syncs (the device).
    Up,
    /// The files start on the other side (the cloud): a first download.
    Down,
}

fn bench_direction(cli: &Path, dir: &Path, data: &Path, direction: Direction) {
    let tag = if direction == Direction::Up { "up" } else { "down" };
    // cloudsync: the app's folder and the cloud; changes are made on the
    // side that held the files.
    let root = dir.join(format!("cs-{tag}-device"));
    let cloud = dir.join(format!("cs-{tag}-cloud"));
    let local = root.join("apps/cloudsync.cli/cloud");
    let remote = cloud.join("cloudsync.cli");
    let (full, empty) = match direction {
        Direction::Up => (&local, &remote),
        Direction::Down => (&remote, &local),
    };
    copy_tree(data, full);
    std::fs::create_dir_all(&cloud).unwrap();
    let _ = empty;
    let cs = |_: &Path| {
        let mut c = Command::new(cli);
        c.arg("--root").arg(&root);
        c.arg("--cloud").arg(format!("dir://{}", cloud.display()));
        c.args(["--app", "cloudsync.cli", "sync"]);
        c.env_remove("CLOUDSYNC_CONFIG").env_remove("CLOUDSYNC_POLICY");
        c
    };
    let row = measure_tool(full, &cs);
    verify_same(&local, &remote);
    print_row("cloudsync sync (durable)", row);

    // The one-way peers: what starts full is their source.
    let src = dir.join(format!("peer-{tag}-src"));
    let dst = dir.join(format!("peer-{tag}-dst"));
    let fresh = |src: &Path, dst: &Path| {
        let _ = std::fs::remove_dir_all(src);
        let _ = std::fs::remove_dir_all(dst);
        copy_tree(data, src);
        // Written long ago, as a user's files are; then out of the cache's
        // favour no more than cloudsync's were.
        sync_disks();
    };
    let rclone = |durable: bool| {
        let (src, dst) = (src.clone(), dst.clone());
        move |_: &Path| {
            let mut c = Command::new("sh");
            let then = if durable { " && sync" } else { "" };
            c.arg("-c").arg(format!(
                "rclone sync '{}' '{}' --config /dev/null{then}",
                src.display(),
                dst.display()
            ));
            c
        }
    };
    fresh(&src, &dst);
    let row = measure_tool(&src, &rclone(false));
    verify_same(&src, &dst);
    print_row("rclone sync", row);
    fresh(&src, &dst);
    let row = measure_tool(&src, &rclone(true));
    verify_same(&src, &dst);
    print_row("rclone sync && sync (durable)", row);
    fresh(&src, &dst);
    let rsync = |src: &Path| {
        let mut c = Command::new("rsync");
        c.arg("-a").arg("--delete").arg(format!("{}/", src.display())).arg(&dst);
        c
    };
    let row = measure_tool(&src, &rsync);
    verify_same(&src, &dst);
    print_row("rsync -a --delete", row);

    // unison (two ways), batch mode, its archive in a folder of its own.
    fresh(&src, &dst);
    std::fs::create_dir_all(&dst).unwrap();
    let home = dir.join(format!("un-{tag}-home"));
    std::fs::create_dir_all(&home).unwrap();
    let un = |src: &Path| {
        let mut c = Command::new("unison");
        c.arg(src).arg(&dst);
        c.args(["-batch", "-auto", "-silent", "-confirmbigdel=false", "-times"]);
        c.env("UNISON", &home);
        c
    };
    let row = measure_tool(&src, &un);
    verify_same(&src, &dst);
    print_row("unison", row);
}

fn sync_disks() {
    let _ = Command::new("sync").status();
}

struct Row {
    initial: Duration,
    unchanged: Duration,
    changed: Duration,
    peak_kib: u64,
}

fn measure_tool(src: &Path, command: &dyn Fn(&Path) -> Command) -> Row {
    let (initial, m1) = run(command(src));
    let (unchanged, m2) = run(command(src));
    change_files(src, 100);
    let (changed, m3) = run(command(src));
    Row {
        initial,
        unchanged,
        changed,
        peak_kib: m1.max(m2).max(m3),
    }
}

fn print_row(name: &str, r: Row) {
    println!(
        "| {name} | {:.2} s | {:.3} s | {:.3} s | {:.1} MiB |",
        r.initial.as_secs_f64(),
        r.unchanged.as_secs_f64(),
        r.changed.as_secs_f64(),
        r.peak_kib as f64 / 1024.0
    );
}

/// Runs a command to its end; its wall time and peak RSS (KiB).
fn run(mut cmd: Command) -> (Duration, u64) {
    cmd.stdout(std::process::Stdio::null());
    let start = Instant::now();
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (make bench installs the tools)"));
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for the child we spawned.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let elapsed = start.elapsed();
    assert_eq!(rc, pid, "wait4 failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed with status {status}"
    );
    std::mem::forget(child); // already reaped
    (elapsed, usage.ru_maxrss as u64)
}

/// The first run compiles the component; a real user's runs find it precompiled.
fn warm_up(cli: &Path, dir: &Path) {
    let root = dir.join("warm");
    let status = Command::new(cli)
        .arg("--root")
        .arg(&root)
        .args(["--app", "cloudsync.cli", "sync"])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

fn make_data(dir: &Path, files: usize, size: usize) {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = vec![0u8; size];
    for i in 0..files {
        let sub = dir.join(format!("d{:03}", i / 100));
        std::fs::create_dir_all(&sub).unwrap();
        for b in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
        }
        std::fs::write(sub.join(format!("f{i:05}.bin")), &buf).unwrap();
    }
}

/// Rewrites `n` files spread over the tree (same size, new content).
fn change_files(dir: &Path, n: usize) {
    let mut all = Vec::new();
    walk(dir, &mut all);
    all.sort();
    let step = (all.len() / n).max(1);
    for path in all.iter().step_by(step).take(n) {
        let mut data = std::fs::read(path).unwrap();
        for b in data.iter_mut().take(4096) {
            *b = b.wrapping_add(1);
        }
        std::fs::write(path, data).unwrap();
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    let ok = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp -a failed");
}

/// Both trees hold the same files with the same bytes.
fn verify_same(a: &Path, b: &Path) {
    let (mut fa, mut fb) = (Vec::new(), Vec::new());
    walk(a, &mut fa);
    walk(b, &mut fb);
    let rel = |base: &Path, v: Vec<PathBuf>| {
        let mut r: Vec<PathBuf> = v
            .into_iter()
            .map(|p| p.strip_prefix(base).unwrap().to_path_buf())
            .collect();
        r.sort();
        r
    };
    let (ra, rb) = (rel(a, fa), rel(b, fb));
    assert_eq!(ra.len(), rb.len(), "{} vs {}", a.display(), b.display());
    assert_eq!(ra, rb);
    for p in ra.iter().step_by(97) {
        assert_eq!(
            std::fs::read(a.join(p)).unwrap(),
            std::fs::read(b.join(p)).unwrap(),
            "{}",
            p.display()
        );
    }
}

/// `target/release/cloudsync`, built by `make bench` before the benches.
fn cloudsync_cli() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let cli = exe.parent().unwrap().parent().unwrap().join("cloudsync");
    assert!(
        cli.exists(),
        "{} is missing: `make bench` builds it (cargo build --release -p cloudsync)",
        cli.display()
    );
    cli
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}
