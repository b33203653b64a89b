//! `make bench` (third part): sync, with the `cloudsync` command line beside
//! `rclone sync` (alone, and followed by `sync` for the same durability),
//! `rsync` and `unison` on the same data in the same run, one table per set
//! and direction — up (the device holds the files, the cloud is empty) and a
//! first download (the cloud holds them, the device is empty) — each as the
//! initial sync, a re-sync with nothing changed right after it, and a re-sync
//! after 100 files changed on the side that held them:
//!
//! - `10k`: 10,000 files / 1 GiB on the folder cloud, WebDAV (Apache on
//!   loopback) and S3 (s3s-fs on loopback); rsync and unison reach only
//!   folders, so the servers' tables compare with rclone;
//! - `100k`: 100,000 files × 4 KiB, folder cloud;
//! - `1m`: 1,000,000 files × 1 KiB, folder cloud (unison left out: its
//!   archive of a million files is a test of its own);
//! - `big`: one 1 GiB file, folder cloud, beside `cp` (and `cp && sync`).
//!
//! Folder tables add a bare stat walk of both sides (`find -printf` over the
//! device folder and the cloud folder), the floor of a no-change sync.
//! Each tool runs as its own process, started by a small launcher process
//! (a child's peak counts its spawner's memory); its peak memory is the
//! maximum resident set size the kernel reports for it (wait4).
//!
//! `SYNC_BENCH_SETS` picks sets (`10k,100k,1m,big` by default; `10k-folder`,
//! `10k-webdav`, `10k-s3` one cloud each), `SYNC_BENCH_SERVER_FILES` a
//! smaller count for the servers' sets (see [`server_sized`]),
//! `SYNC_BENCH_DIRECTIONS` `up` or `down` only one direction;
//! `SYNC_BENCH_FILES` and `SYNC_BENCH_BYTES` run one folder set of that size
//! instead.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cloudsync_tests::servers::{self, Server};

const APP: &str = "cloudsync.cli";

/// Where the cloud is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Cloud {
    Folder,
    WebDav,
    S3,
}

/// One data set on one cloud.
struct Set {
    files: usize,
    bytes: u64,
    cloud: Cloud,
    unison: bool,
}

fn main() {
    if std::env::args().any(|a| a == "--launcher") {
        return launch_loop();
    }
    launcher();
    let cli = cloudsync_cli();
    let sets: Vec<Set> = match (std::env::var("SYNC_BENCH_FILES"), std::env::var("SYNC_BENCH_BYTES")) {
        (Err(_), Err(_)) => std::env::var("SYNC_BENCH_SETS")
            .unwrap_or_else(|_| "10k,100k,1m,big".into())
            .split(',')
            .flat_map(|name| named_sets(name.trim()))
            .collect(),
        _ => vec![Set {
            files: env_or("SYNC_BENCH_FILES", 10_000),
            bytes: env_or("SYNC_BENCH_BYTES", 1 << 30),
            cloud: Cloud::Folder,
            unison: true,
        }],
    };
    let base = std::env::var_os("SYNC_BENCH_DIR").map(PathBuf::from);
    for set in sets {
        let dir = match &base {
            Some(b) => tempfile::tempdir_in(b).unwrap(),
            None => tempfile::tempdir().unwrap(),
        };
        let data = dir.path().join("data");
        let size = make_data(&data, set.files, set.bytes);
        warm_up(&cli, dir.path());
        let directions = match std::env::var("SYNC_BENCH_DIRECTIONS").as_deref() {
            Ok("up") => vec![Direction::Up],
            Ok("down") => vec![Direction::Down],
            _ => vec![Direction::Up, Direction::Down],
        };
        for direction in directions {
            println!();
            println!(
                "{} of {} files × {size} bytes ({} MiB), {}, one process per run",
                match direction {
                    Direction::Up => "sync up (the device holds the files, the cloud is empty)",
                    Direction::Down => "first download (the cloud holds the files, the device is empty)",
                },
                set.files,
                (set.files as u64 * size as u64) >> 20,
                match set.cloud {
                    Cloud::Folder => "local-folder cloud",
                    Cloud::WebDav => "WebDAV cloud (Apache httpd on loopback)",
                    Cloud::S3 => "S3 cloud (s3s-fs on loopback)",
                }
            );
            println!("| tool | initial sync | no-change re-sync right after | 100 files changed | peak memory |");
            println!("|---|---|---|---|---|");
            let scratch = dir.path().join(format!("{direction:?}"));
            std::fs::create_dir_all(&scratch).unwrap();
            bench_direction(&cli, &scratch, &data, &set, direction);
            let _ = std::fs::remove_dir_all(&scratch);
        }
    }
}

fn named_sets(name: &str) -> Vec<Set> {
    let set = |files, bytes, cloud, unison| Set {
        files,
        bytes,
        cloud,
        unison,
    };
    match name {
        "10k" => [Cloud::Folder, Cloud::WebDav, Cloud::S3]
            .into_iter()
            .map(|c| server_sized(set(10_000, 1 << 30, c, c == Cloud::Folder)))
            .collect(),
        "10k-folder" => vec![set(10_000, 1 << 30, Cloud::Folder, true)],
        "10k-webdav" => vec![server_sized(set(10_000, 1 << 30, Cloud::WebDav, false))],
        "10k-s3" => vec![server_sized(set(10_000, 1 << 30, Cloud::S3, false))],
        "100k" => vec![set(100_000, 100_000 * 4096, Cloud::Folder, true)],
        "1m" => vec![set(1_000_000, 1_000_000 * 1024, Cloud::Folder, false)],
        "big" => vec![set(1, 1 << 30, Cloud::Folder, false)],
        other => panic!("unknown SYNC_BENCH_SETS entry {other:?} (10k, 10k-folder, 10k-webdav, 10k-s3, 100k, 1m, big)"),
    }
}

/// The loopback servers' sets at `SYNC_BENCH_SERVER_FILES` files of the
/// same size each, when set: rclone sends about 35 files a second to the
/// loopback Apache (bcrypt checks each request's password) and 10 to
/// s3s-fs, so at 10,000 files their two tables take hours.
fn server_sized(mut set: Set) -> Set {
    if set.cloud != Cloud::Folder {
        if let Some(files) = std::env::var("SYNC_BENCH_SERVER_FILES")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
        {
            set.bytes = set.bytes / set.files as u64 * files as u64;
            set.files = files;
        }
    }
    set
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Direction {
    /// The files start on the side that syncs (the device).
    Up,
    /// The files start on the other side (the cloud): a first download.
    Down,
}

/// A cloud for one tool: a folder, or a location on a server.
struct Place {
    /// `--cloud` for cloudsync.
    url: String,
    /// The same place as rclone names it.
    remote: String,
    /// The folder holding the tool's files, where the cloud is a folder.
    folder: Option<PathBuf>,
}

fn bench_direction(cli: &Path, dir: &Path, data: &Path, set: &Set, direction: Direction) {
    // One server per table, each tool in a location of its own on it.
    let server = match set.cloud {
        Cloud::Folder => None,
        Cloud::WebDav => Some(servers::webdav(dir)),
        Cloud::S3 => Some(servers::s3(dir)),
    };
    let place = |name: &str| -> Place {
        match &server {
            None => {
                let folder = dir.join(name);
                std::fs::create_dir_all(&folder).unwrap();
                Place {
                    url: format!("dir://{}", folder.display()),
                    remote: folder.display().to_string(),
                    folder: Some(folder),
                }
            }
            Some(s) => {
                let place = Place {
                    url: with_prefix(&s.url, name),
                    remote: match s.rclone_remote.ends_with(':') {
                        true => format!("{}{name}", s.rclone_remote),
                        false => format!("{}/{name}", s.rclone_remote),
                    },
                    folder: None,
                };
                // A WebDAV cloud's folder must be there (S3 has no folders).
                rclone_run(&["mkdir", &place.remote]);
                place
            }
        }
    };
    let changes = dir.join("changes");
    changed_copies(data, 100, &changes);

    // cloudsync: the app's folder and the cloud.
    let root = dir.join("cs-device");
    let local = root.join("apps").join(APP).join("cloud");
    let cloud = place("cs-cloud");
    let remote_app = format!("{}/{APP}", cloud.remote);
    match direction {
        Direction::Up => copy_tree(data, &local),
        Direction::Down => put(data, &remote_app, server.as_ref()),
    }
    // As for each peer: the files were written long ago.
    sync_disks();
    let cs = || {
        let mut c = Command::new(cli);
        c.arg("--root").arg(&root);
        c.arg("--cloud").arg(&cloud.url);
        c.args(["--app", APP, "sync"]);
        c.env_remove("CLOUDSYNC_CONFIG").env_remove("CLOUDSYNC_POLICY");
        credentials(&mut c);
        c
    };
    let change = |local_side: &Path, remote_side: &str| match direction {
        Direction::Up => edit(&changes, local_side),
        Direction::Down => {
            // Changed now, as an edit on another device would be.
            let ok = Command::new("find")
                .arg(&changes)
                .args(["-type", "f", "-exec", "touch", "{}", "+"])
                .status();
            assert!(ok.unwrap().success(), "touch failed");
            put(&changes, remote_side, server.as_ref())
        }
    };
    let row = measure_tool(&cs, || change(&local, &remote_app));
    verify(&local, &remote_app, Strict::Yes);
    print_row("cloudsync sync (durable)", row);
    if let Some(folder) = &cloud.folder {
        let mut find = Command::new("find");
        find.arg(&local).arg(folder.join(APP)).args(["-printf", "%p %s %T@\\n"]);
        let (walk, peak) = run(find);
        println!(
            "| find -printf of both sides (a bare stat walk) | — | {:.3} s | — | {:.1} MiB |",
            walk.as_secs_f64(),
            peak as f64 / 1024.0
        );
    }
    let _ = std::fs::remove_dir_all(&root);
    let _ = cloud.folder.as_ref().map(std::fs::remove_dir_all);

    // The one-way peers: what starts full is their source.
    let src = dir.join("peer-src");
    let dst = dir.join("peer-dst");
    let fresh = |place: &Place| {
        let _ = std::fs::remove_dir_all(&src);
        let _ = std::fs::remove_dir_all(&dst);
        if let Some(f) = &place.folder {
            let _ = std::fs::remove_dir_all(f);
        }
        match direction {
            Direction::Up => copy_tree(data, &src),
            Direction::Down => put(data, &place.remote, server.as_ref()),
        }
        // Written long ago, as a user's files are; then out of the cache's
        // favour no more than cloudsync's were.
        sync_disks();
    };
    for (name, durable) in [("rclone sync", false), ("rclone sync && sync (durable)", true)] {
        let place = place(if durable { "rclone-durable" } else { "rclone" });
        fresh(&place);
        let (from, to) = match direction {
            Direction::Up => (src.display().to_string(), place.remote.clone()),
            Direction::Down => (place.remote.clone(), dst.display().to_string()),
        };
        let rclone = || {
            let mut c = Command::new("sh");
            let then = if durable { " && sync" } else { "" };
            c.arg("-c")
                .arg(format!("rclone sync \"$0\" \"$1\" --config /dev/null{then}"));
            c.arg(&from).arg(&to);
            clean_env(&mut c);
            c
        };
        let row = measure_tool(&rclone, || change(&src, &place.remote));
        let local_side = if direction == Direction::Up { &src } else { &dst };
        verify(local_side, &place.remote, Strict::No);
        print_row(name, row);
        if let Some(f) = &place.folder {
            let _ = std::fs::remove_dir_all(f);
        }
    }
    let _ = std::fs::remove_dir_all(&src);
    let _ = std::fs::remove_dir_all(&dst);
    if server.is_some() {
        return;
    }
    // rsync and unison reach folders: from the full one to the empty one.
    let folder_peer = |name: &str, cmd: &dyn Fn() -> Command| {
        let _ = std::fs::remove_dir_all(&src);
        let _ = std::fs::remove_dir_all(&dst);
        copy_tree(data, &src);
        std::fs::create_dir_all(&dst).unwrap();
        sync_disks();
        let row = measure_tool(cmd, || edit(&changes, &src));
        verify(&src, &dst.display().to_string(), Strict::No);
        print_row(name, row);
    };
    folder_peer("rsync -a --delete", &|| {
        let mut c = Command::new("rsync");
        c.arg("-a").arg("--delete").arg(format!("{}/", src.display())).arg(&dst);
        c
    });
    if set.unison {
        // unison (two ways), batch mode, its archive in a folder of its own.
        let home = dir.join("unison-home");
        let _ = std::fs::remove_dir_all(&home);
        std::fs::create_dir_all(&home).unwrap();
        folder_peer("unison", &|| {
            let mut c = Command::new("unison");
            c.arg(&src).arg(&dst);
            c.args(["-batch", "-auto", "-silent", "-confirmbigdel=false", "-times"]);
            c.env("UNISON", &home);
            c
        });
    } else {
        println!("| unison | (left out of this set) | | | |");
    }
    if set.files == 1 {
        // One file: the floor is a copy of it.
        // Prepared as each tool was: a fresh copy of the data, flushed.
        for (name, then) in [("cp", ""), ("cp && sync (durable)", " && sync")] {
            let _ = std::fs::remove_dir_all(&src);
            let _ = std::fs::remove_dir_all(&dst);
            copy_tree(data, &src);
            sync_disks();
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(format!("cp -a \"$0\" \"$1\"{then}"))
                .arg(&src)
                .arg(&dst);
            let (took, peak) = run(c);
            println!(
                "| {name} | {:.2} s | — | — | {:.1} MiB |",
                took.as_secs_f64(),
                peak as f64 / 1024.0
            );
        }
    }
    let _ = std::fs::remove_dir_all(&src);
    let _ = std::fs::remove_dir_all(&dst);
}

/// The server's `--cloud` URL with a folder of its own under it.
fn with_prefix(url: &str, name: &str) -> String {
    match url.split_once("/?") {
        // s3://bucket/?endpoint=… → s3://bucket/name?endpoint=…
        Some((base, query)) => format!("{base}/{name}?{query}"),
        None => format!("{}/{name}", url.trim_end_matches('/')),
    }
}

/// Copies `from`'s files into a cloud place (a folder, or a server through
/// rclone), untimed.
fn put(from: &Path, remote: &str, server: Option<&Server>) {
    if server.is_none() {
        overlay(from, Path::new(remote));
        return;
    }
    // Every file sent: on WebDAV rclone compares sizes only, and an edit
    // keeps the size.
    rclone_run(&[
        "copy",
        "--ignore-times",
        from.to_str().unwrap(),
        remote,
        "--transfers",
        "8",
    ]);
}

/// Runs rclone (untimed, no config of the user's).
fn rclone_run(args: &[&str]) {
    let mut c = Command::new("rclone");
    c.args(args).args(["--config", "/dev/null"]);
    clean_env(&mut c);
    let out = c.output().expect("rclone is installed (make bench installs it)");
    assert!(
        out.status.success(),
        "rclone {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The cloud credentials of the test servers, for cloudsync.
fn credentials(c: &mut Command) {
    clean_env(c);
    c.env("AWS_ACCESS_KEY_ID", servers::S3_ACCESS_KEY);
    c.env("AWS_SECRET_ACCESS_KEY", servers::S3_SECRET_KEY);
    c.env("CLOUDSYNC_WEBDAV_USERNAME", servers::DAV_USER);
    c.env("CLOUDSYNC_WEBDAV_PASSWORD", servers::DAV_PASSWORD);
}

/// Nothing ambient reaches a tool.
fn clean_env(c: &mut Command) {
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") || k.starts_with("RCLONE_") {
            c.env_remove(k);
        }
    }
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

fn measure_tool(command: &dyn Fn() -> Command, change: impl Fn()) -> Row {
    let (initial, m1) = run(command());
    let (unchanged, m2) = run(command());
    change();
    let (changed, m3) = run(command());
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

/// Runs a command to its end; its wall time and peak RSS (KiB). The
/// command is started by the launcher, a small process of its own: a
/// child's peak counts the memory of whoever spawned it, and this bench
/// holds a million paths at the largest set.
fn run(cmd: Command) -> (Duration, u64) {
    let mut line = format!("P{}", cmd.get_program().to_str().unwrap());
    for a in cmd.get_args() {
        line.push_str(&format!("\0A{}", a.to_str().unwrap()));
    }
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => line.push_str(&format!("\0S{}={}", k.to_str().unwrap(), v.to_str().unwrap())),
            None => line.push_str(&format!("\0R{}", k.to_str().unwrap())),
        }
    }
    let mut l = launcher().lock().unwrap();
    use std::io::{BufRead, Write};
    writeln!(l.0, "{line}").unwrap();
    l.0.flush().unwrap();
    let mut answer = String::new();
    l.1.read_line(&mut answer).unwrap();
    let mut parts = answer.split_whitespace().map(|p| p.parse::<i64>().unwrap());
    let (ns, kib, status) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
    assert_eq!(
        status, 0,
        "{cmd:?} failed (status {status}; make bench installs the tools)"
    );
    (Duration::from_nanos(ns as u64), kib as u64)
}

type Launcher = (std::process::ChildStdin, std::io::BufReader<std::process::ChildStdout>);

/// The launcher, started before this process grows.
fn launcher() -> &'static std::sync::Mutex<Launcher> {
    static LAUNCHER: std::sync::OnceLock<std::sync::Mutex<Launcher>> = std::sync::OnceLock::new();
    LAUNCHER.get_or_init(|| {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .arg("--launcher")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        std::mem::forget(child); // ends with this process's pipe
        std::sync::Mutex::new((stdin, stdout))
    })
}

/// The launcher's loop: each line a command (`P` program, `A` argument,
/// `S` variable set, `R` removed, `\0`-separated); each answer its wall
/// time (ns), peak RSS (KiB) and exit status.
fn launch_loop() {
    use std::io::{BufRead, Write};
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap();
        let mut parts = line.split('\0');
        let program = parts.next().unwrap().strip_prefix('P').unwrap().to_string();
        let mut cmd = Command::new(program);
        for p in parts {
            match p.split_at(1) {
                ("A", a) => {
                    cmd.arg(a);
                }
                ("S", kv) => {
                    let (k, v) = kv.split_once('=').unwrap();
                    cmd.env(k, v);
                }
                ("R", k) => {
                    cmd.env_remove(k);
                }
                _ => panic!("bad launcher line {line:?}"),
            }
        }
        cmd.stdout(std::process::Stdio::null());
        let start = Instant::now();
        let status = match cmd.spawn() {
            Err(e) => {
                eprintln!("{cmd:?}: {e}");
                writeln!(out, "0 0 -1").unwrap();
                out.flush().unwrap();
                continue;
            }
            Ok(child) => {
                let pid = child.id() as libc::pid_t;
                let mut status = 0;
                // SAFETY: rusage is plain data; wait4 fills it for the child we spawned.
                let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
                let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
                assert_eq!(rc, pid, "wait4 failed");
                std::mem::forget(child); // already reaped
                let code = if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status) as i64
                } else {
                    -2
                };
                (start.elapsed(), usage.ru_maxrss as i64, code)
            }
        };
        writeln!(out, "{} {} {}", status.0.as_nanos(), status.1, status.2).unwrap();
        out.flush().unwrap();
    }
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

/// `files` files of random bytes, 100 to a folder, `bytes` in all; returns
/// the size of each. Written a chunk at a time: this process's memory is
/// what each tool it starts begins with.
fn make_data(dir: &Path, files: usize, bytes: u64) -> usize {
    use std::io::Write;
    let size = (bytes / files as u64) as usize;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = vec![0u8; size.min(1 << 20)];
    for i in 0..files {
        let sub = dir.join(format!("d{:03}", i / 100));
        if i % 100 == 0 {
            std::fs::create_dir_all(&sub).unwrap();
        }
        let mut out = std::fs::File::create(sub.join(format!("f{i:05}.bin"))).unwrap();
        let mut left = size;
        while left > 0 {
            let n = left.min(buf.len());
            for b in buf[..n].chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
            }
            out.write_all(&buf[..n]).unwrap();
            left -= n;
        }
    }
    size
}

/// Writes into `out`, at their relative paths, changed copies of `n` files
/// of `data` spread over the tree (same size, new first 4 KiB).
fn changed_copies(data: &Path, n: usize, out: &Path) {
    use std::os::unix::fs::FileExt;
    let mut all = Vec::new();
    walk(data, &mut all);
    all.sort();
    let step = (all.len() / n).max(1);
    for path in all.iter().step_by(step).take(n) {
        let to = out.join(path.strip_prefix(data).unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(path, &to).unwrap();
        let file = std::fs::OpenOptions::new().read(true).write(true).open(&to).unwrap();
        let mut head = vec![0u8; 4096];
        let got = file.read_at(&mut head, 0).unwrap();
        for b in &mut head[..got] {
            *b = b.wrapping_add(1);
        }
        file.write_all_at(&head[..got], 0).unwrap();
    }
}

/// Copies `from`'s contents over `to` (made if missing), in place, with
/// their times.
fn overlay(from: &Path, to: &Path) {
    cp_into(from, to, "-a");
}

/// Writes `from`'s files over `to`'s as a user's edit does: in place, the
/// time of the change their modification time.
fn edit(from: &Path, to: &Path) {
    cp_into(from, to, "-r");
}

fn cp_into(from: &Path, to: &Path, how: &str) {
    std::fs::create_dir_all(to).unwrap();
    let ok = Command::new("cp")
        .arg(how)
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp {how} failed");
}

/// `local` holds what the cloud place `remote` holds: a folder compared
/// file by file, a server through `rclone check`.
/// Whether sides left different fail the bench (cloudsync's) or are
/// shown beside the row (a peer's).
#[derive(PartialEq)]
enum Strict {
    Yes,
    No,
}

fn verify(local: &Path, remote: &str, strict: Strict) {
    if !remote.starts_with(':') {
        return verify_same(local, Path::new(remote));
    }
    let mut c = Command::new("rclone");
    // Byte for byte: WebDAV states no hash, and sizes alone miss an edit.
    c.arg("check")
        .arg("--download")
        .arg(local)
        .arg(remote)
        .args(["--config", "/dev/null"]);
    clean_env(&mut c);
    let out = c.output().expect("rclone is installed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || strict == Strict::No,
        "{} and {remote} differ: {stderr}",
        local.display()
    );
    if !out.status.success() {
        // A peer that left the two sides different is shown, not timed as
        // if it had synced.
        let differ = stderr.lines().filter(|l| l.contains("differ")).count();
        println!(
            "| (the row below left {differ} files different: {}) | | | | |",
            last_line(&stderr)
        );
    }
}

fn last_line(text: &str) -> &str {
    text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim()
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
        assert!(same_bytes(&a.join(p), &b.join(p)), "{} differs", p.display());
    }
}

/// Compared a chunk at a time (see [`make_data`]).
fn same_bytes(a: &Path, b: &Path) -> bool {
    use std::io::Read;
    let (mut fa, mut fb) = (std::fs::File::open(a).unwrap(), std::fs::File::open(b).unwrap());
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba).unwrap();
        if fb.read_exact(&mut bb[..n]).is_err() || ba[..n] != bb[..n] {
            return false;
        }
        if n == 0 {
            return fb.read(&mut bb).unwrap() == 0;
        }
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
