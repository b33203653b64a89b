//! The engine on WASI alone: `target/cloudsync-wasi.wasm` (the engine built
//! for `cloudsync-core`, the WASI adapter and the command, composed with
//! wac) run by a runtime that links WASI and nothing else, as
//! `wasmtime run --dir DEVICE::/device --dir CLOUD::/cloud cloudsync-wasi.wasm
//! --root /device --cloud dir:///cloud sync` runs it.

use std::path::{Path, PathBuf};

use cloudsync::{ErrorType, FileSync, SyncProgress, SyncState};
use cloudsync_tests::wasi::{imports, run, Run};
use cloudsync_tests::{bytes, list_files, servers, Backend, Harness, SyncRecorder, APP};

/// One device that runs the composed component.
struct WasiDevice {
    root: PathBuf,
    cloud: PathBuf,
    /// A `webdav://` cloud (through wasi:http) instead of the folder.
    cloud_url: Option<String>,
}

impl WasiDevice {
    fn new(root: PathBuf, cloud: &Path) -> Self {
        std::fs::create_dir_all(root.join(format!("apps/{APP}/cloud"))).unwrap();
        WasiDevice {
            root,
            cloud: cloud.to_path_buf(),
            cloud_url: None,
        }
    }

    /// A device whose cloud is the WebDAV server at `url`.
    fn on_webdav(root: PathBuf, url: &str) -> Self {
        let mut device = Self::new(root.clone(), &root);
        device.cloud_url = Some(url.to_string());
        device
    }

    fn folder(&self) -> PathBuf {
        self.root.join(format!("apps/{APP}/cloud"))
    }

    fn put(&self, path: &str, data: &[u8]) {
        let p = self.folder().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }

    fn read(&self, path: &str) -> Vec<u8> {
        std::fs::read(self.folder().join(path)).unwrap()
    }

    async fn cloudsync(&self, args: &[&str]) -> Run {
        let (root, cloud) = (self.root.clone(), self.cloud.clone());
        let url = self.cloud_url.clone().unwrap_or_else(|| "dir:///cloud".into());
        let mut all: Vec<String> = ["cloudsync", "--root", "/device", "--cloud", &url, "--app", APP]
            .map(String::from)
            .to_vec();
        all.extend(args.iter().map(|a| a.to_string()));
        let web = self.cloud_url.is_some();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = all.iter().map(String::as_str).collect();
            let mut dirs = vec![(root.as_path(), "/device")];
            let mut env = Vec::new();
            if web {
                env.push(("CLOUDSYNC_WEBDAV_USERNAME", servers::DAV_USER));
                env.push(("CLOUDSYNC_WEBDAV_PASSWORD", servers::DAV_PASSWORD));
            } else {
                dirs.push((cloud.as_path(), "/cloud"));
            }
            run(&args, &dirs, &env).expect("the component runs")
        })
        .await
        .unwrap()
    }

    async fn sync(&self) -> Run {
        let run = self.cloudsync(&["sync"]).await;
        assert_eq!(run.code, 0, "{run:?}");
        assert!(run.stdout.starts_with("COMPLETED"), "{run:?}");
        run
    }
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    list_files(dir)
        .into_iter()
        .map(|p| {
            let data = std::fs::read(dir.join(&p)).unwrap();
            (p, data)
        })
        .collect()
}

async fn native_sync(h: &Harness) -> SyncProgress {
    let sync = FileSync::new(&h.rt);
    let rec = SyncRecorder::default();
    sync.on("progress", rec.callback()).unwrap();
    sync.start().await.unwrap();
    rec.terminal(1).await
}

const COMPLETED: SyncProgress = SyncProgress {
    state: SyncState::Completed,
    error: ErrorType::NoError,
};

#[test]
fn the_composed_component_imports_wasi_only() {
    let names = imports();
    // (Shown with --nocapture: what the closing notes quote.)
    eprintln!("the composed component imports {names:?}");
    assert!(names.iter().any(|n| n.starts_with("wasi:filesystem/")), "{names:?}");
    let foreign: Vec<&String> = names.iter().filter(|n| !n.starts_with("wasi:")).collect();
    assert!(foreign.is_empty(), "imports beyond WASI: {foreign:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_syncs_both_ways_keeps_both_edits_and_carries_deletions() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = dir.path().join("cloud");
    std::fs::create_dir_all(cloud.join(APP).join("photos")).unwrap();
    let device = WasiDevice::new(dir.path().join("device"), &cloud);
    device.put("notes/todo.txt", b"buy milk");
    device.put("notes/empty", b"");
    // Several steps of the engine's own transfers (1 MiB each).
    let big = bytes(5 << 20 | 12345, 7);
    std::fs::write(cloud.join(APP).join("photos/big.raw"), &big).unwrap();
    std::fs::write(cloud.join(APP).join("plans.md"), b"# plans").unwrap();

    device.sync().await;
    assert_eq!(snapshot(&device.folder()), snapshot(&cloud.join(APP)));
    assert_eq!(device.read("photos/big.raw"), big);
    assert!(
        device.root.join("meta.journal").exists(),
        "the metadata is a journal in the root"
    );

    // No change: nothing moves.
    let again = device.sync().await;
    assert!(
        again.stdout.starts_with("COMPLETED: 0 uploaded, 0 downloaded"),
        "{again:?}"
    );

    // Both sides edited, one deleted in the cloud.
    device.put("notes/todo.txt", b"buy oat milk");
    std::fs::write(cloud.join(APP).join("notes/todo.txt"), b"buy milk and bread").unwrap();
    std::fs::remove_file(cloud.join(APP).join("plans.md")).unwrap();
    let run = device.sync().await;
    assert!(run.stdout.contains("1 conflicts"), "{run:?}");
    let files = snapshot(&device.folder());
    assert_eq!(files, snapshot(&cloud.join(APP)));
    let texts: Vec<&[u8]> = files.iter().map(|(_, d)| d.as_slice()).collect();
    assert!(
        texts.contains(&&b"buy oat milk"[..]) && texts.contains(&&b"buy milk and bread"[..]),
        "both kept"
    );
    assert!(!device.folder().join("plans.md").exists(), "the deletion came down");

    let states = device.cloudsync(&["state", "notes/todo.txt"]).await;
    assert_eq!(states.stdout.split_whitespace().next(), Some("COMPLETED"), "{states:?}");
    let status = device.cloudsync(&["status"]).await;
    assert!(status.stdout.contains("photos/big.raw"), "{status:?}");
    let staged: Vec<String> = list_files(&cloud.join(".cloudsync/staging"));
    assert!(staged.is_empty(), "nothing staged is left: {staged:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_device_and_a_wasi_device_share_one_cloud() {
    let h = Harness::new().await;
    h.put_local("notes/native.txt", b"from the native device");
    assert_eq!(native_sync(&h).await, COMPLETED);

    let device = WasiDevice::new(h.dir.path().join("wasi-device"), &h.cloud_dir);
    device.put("notes/wasi.txt", b"from the WASI device");
    device.sync().await;
    assert_eq!(device.read("notes/native.txt"), b"from the native device");

    assert_eq!(native_sync(&h).await, COMPLETED);
    assert_eq!(
        std::fs::read(h.local("notes/wasi.txt")).unwrap(),
        b"from the WASI device"
    );

    // The same file edited on both devices between syncs: both versions stay.
    h.put_local("notes/shared.txt", b"v1");
    assert_eq!(native_sync(&h).await, COMPLETED);
    device.sync().await;
    h.put_local("notes/shared.txt", b"native edit");
    device.put("notes/shared.txt", b"wasi edit");
    assert_eq!(native_sync(&h).await, COMPLETED);
    device.sync().await;
    assert_eq!(native_sync(&h).await, COMPLETED);
    let native = h.local_snapshot();
    let wasi: std::collections::BTreeMap<String, Vec<u8>> = snapshot(&device.folder()).into_iter().collect();
    assert_eq!(native, wasi, "both devices converge");
    let versions: Vec<&Vec<u8>> = native.values().collect();
    assert!(versions.contains(&&b"native edit".to_vec()) && versions.contains(&&b"wasi edit".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_and_bad_input_change_nothing_outside() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = dir.path().join("cloud");
    std::fs::create_dir_all(cloud.join(APP)).unwrap();
    let device = WasiDevice::new(dir.path().join("device"), &cloud);
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"not the app's").unwrap();
    std::os::unix::fs::symlink(&outside, device.folder().join("out")).unwrap();
    std::os::unix::fs::symlink(&outside, cloud.join(APP).join("cloud-out")).unwrap();
    device.put("ok.txt", b"fine");

    let run = device.sync().await;
    assert!(run.stdout.contains("skipped"), "{run:?}");
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        1,
        "nothing written outside"
    );
    assert!(!cloud.join(APP).join("out").exists(), "a link is never followed up");
    assert!(!device.folder().join("cloud-out").exists(), "nor down");

    // Arguments the command cannot take: usage, a failed exit (WASI 0.2's
    // exit has only success and failure), nothing changed.
    let bad = device.cloudsync(&["sync", "--bogus"]).await;
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(
        bad.stderr.contains("sync takes no --bogus") && bad.stderr.contains("usage:"),
        "{bad:?}"
    );
    let no_cloud = device.cloudsync(&["--cloud", "s3://bucket", "sync"]).await;
    assert_ne!(no_cloud.code, 0, "{no_cloud:?}");
    assert!(no_cloud.stderr.contains("dir://"), "{no_cloud:?}");
    let outside_uri = device
        .cloudsync(&["download", "file://other.app/data/storage/el2/cloud/x"])
        .await;
    assert_ne!(outside_uri.code, 0, "{outside_uri:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_that_keeps_size_and_mtime_is_still_uploaded() {
    // WASI gives no ctime: the engine hashes rather than trust the stamps.
    let dir = tempfile::tempdir().unwrap();
    let cloud = dir.path().join("cloud");
    std::fs::create_dir_all(cloud.join(APP)).unwrap();
    let device = WasiDevice::new(dir.path().join("device"), &cloud);
    device.put("doc.txt", b"AAAA version one");
    let long_ago = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
    let set_old = || {
        let f = std::fs::File::options()
            .write(true)
            .open(device.folder().join("doc.txt"))
            .unwrap();
        f.set_modified(long_ago).unwrap();
    };
    set_old();
    device.sync().await;
    // Rewritten in place, same size, the mtime put back (cp -p, rsync -t, touch -r).
    std::fs::write(device.folder().join("doc.txt"), b"BBBB version two").unwrap();
    set_old();
    let run = device.sync().await;
    assert!(run.stdout.contains("1 uploaded"), "{run:?}");
    assert_eq!(
        std::fs::read(cloud.join(APP).join("doc.txt")).unwrap(),
        b"BBBB version two"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_where_the_roots_keep_their_folders_lead_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("private.txt"), b"another app's").unwrap();

    // The cloud's folder of the app is a link.
    let cloud = dir.path().join("cloud");
    std::fs::create_dir_all(&cloud).unwrap();
    std::os::unix::fs::symlink(&outside, cloud.join(APP)).unwrap();
    let device = WasiDevice::new(dir.path().join("device"), &cloud);
    device.put("up.txt", b"mine");
    let run = device.cloudsync(&["sync"]).await;
    assert_ne!(run.code, 0, "{run:?}");

    // The journal is a link.
    let cloud2 = dir.path().join("cloud2");
    std::fs::create_dir_all(cloud2.join(APP)).unwrap();
    let device2 = WasiDevice::new(dir.path().join("device2"), &cloud2);
    std::os::unix::fs::symlink(outside.join("private.txt"), device2.root.join("meta.journal")).unwrap();
    device2.put("x.txt", b"x");
    let run = device2.cloudsync(&["sync"]).await;
    assert_ne!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("not a regular file"), "{run:?}");

    // A link where the journal's rewrite is written, when the journal is
    // damaged: the rewrite is made there, the link gone, nothing followed.
    let cloud3 = dir.path().join("cloud3");
    std::fs::create_dir_all(cloud3.join(APP)).unwrap();
    let device3 = WasiDevice::new(dir.path().join("device3"), &cloud3);
    device3.put("a.txt", b"a");
    device3.sync().await;
    device3.put("b.txt", b"b");
    device3.sync().await;
    let journal = device3.root.join("meta.journal");
    let mut bytes = std::fs::read(&journal).unwrap();
    bytes[20] ^= 0xff; // inside the first commit, with whole ones after it
    std::fs::write(&journal, &bytes).unwrap();
    std::os::unix::fs::symlink(outside.join("private.txt"), device3.root.join("meta.journal.new")).unwrap();
    device3.put("c.txt", b"c");
    let run = device3.cloudsync(&["sync"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        std::fs::symlink_metadata(&journal).unwrap().is_file(),
        "the journal is a file"
    );

    let names: Vec<String> = list_files(&outside);
    assert_eq!(names, ["private.txt"], "nothing written outside");
    assert_eq!(std::fs::read(outside.join("private.txt")).unwrap(), b"another app's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_is_not_utf8_leaves_its_folder_alone_and_the_rest_syncs() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let cloud = dir.path().join("cloud");
    std::fs::create_dir_all(cloud.join(APP)).unwrap();
    let device = WasiDevice::new(dir.path().join("device"), &cloud);
    for i in 0..20 {
        device.put(&format!("sub/f{i:02}.txt"), b"synced");
    }
    device.sync().await;
    device.put("ok.txt", b"fine");
    let bad = device
        .folder()
        .join("sub")
        .join(std::ffi::OsStr::from_bytes(b"bad\xff"));
    std::fs::write(bad, b"x").unwrap();
    // WASI cannot give the name, and a listing ends at it: the folder is
    // left alone (never read as emptied), the rest syncs.
    let run = device.sync().await;
    assert!(
        run.stdout.contains("1 uploaded") && run.stdout.contains("0 deleted in the cloud"),
        "{run:?}"
    );
    assert!(run.stdout.contains("skipped"), "{run:?}");
    assert_eq!(std::fs::read(cloud.join(APP).join("ok.txt")).unwrap(), b"fine");
    assert_eq!(
        list_files(&cloud.join(APP).join("sub")).len(),
        20,
        "nothing under it deleted"
    );
}

/// The WebDAV URL of a harness's server, as the WASI command takes it.
fn webdav_url(h: &Harness) -> String {
    let url = &h.server.as_ref().expect("a server").url;
    url.replace("http://", "webdav://")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_device_and_a_wasi_device_share_a_webdav_cloud() {
    // Apache's mod_dav and rclone's server: two WebDAV implementations.
    for backend in [Backend::WebDav, Backend::RcloneDav] {
        let h = Harness::on(backend).await;
        h.put_local("notes/native.txt", b"from the native device");
        assert_eq!(native_sync(&h).await, COMPLETED, "{backend:?}");

        let device = WasiDevice::on_webdav(h.dir.path().join("wasi-device"), &webdav_url(&h));
        // Several of the engine's 1 MiB steps, streamed to the server.
        let big = bytes(3 << 20 | 777, 3);
        device.put("photos/big.raw", &big);
        device.put("notes/wasi.txt", b"from the WASI device");
        device.put("notes/a b#1?.txt", b"an odd name");
        let run = device.sync().await;
        assert!(run.stdout.contains("3 uploaded, 1 downloaded"), "{backend:?}: {run:?}");
        assert_eq!(device.read("notes/native.txt"), b"from the native device");

        assert_eq!(native_sync(&h).await, COMPLETED);
        assert_eq!(std::fs::read(h.local("photos/big.raw")).unwrap(), big, "{backend:?}");
        assert_eq!(std::fs::read(h.local("notes/a b#1?.txt")).unwrap(), b"an odd name");

        // The same file edited on both devices between syncs: both versions
        // stay (the conditional writes take the same locks on both hosts).
        h.put_local("notes/shared.txt", b"v1");
        assert_eq!(native_sync(&h).await, COMPLETED);
        device.sync().await;
        h.put_local("notes/shared.txt", b"native edit");
        device.put("notes/shared.txt", b"wasi edit");
        std::fs::remove_file(device.folder().join("notes/wasi.txt")).unwrap();
        assert_eq!(native_sync(&h).await, COMPLETED);
        let run = device.sync().await;
        assert!(run.stdout.contains("1 conflicts"), "{backend:?}: {run:?}");
        assert_eq!(native_sync(&h).await, COMPLETED);
        let native = h.local_snapshot();
        let wasi: std::collections::BTreeMap<String, Vec<u8>> = snapshot(&device.folder()).into_iter().collect();
        assert_eq!(native, wasi, "{backend:?}: both devices converge");
        let versions: Vec<&Vec<u8>> = native.values().collect();
        assert!(versions.contains(&&b"native edit".to_vec()) && versions.contains(&&b"wasi edit".to_vec()));
        assert!(
            !native.contains_key("notes/wasi.txt"),
            "the deletion reached the native device"
        );

        // Nothing staged or locked is left on the server.
        let left: Vec<String> = list_files(&h.cloud_dir.join(".cloudsync"));
        assert!(left.is_empty(), "{backend:?}: left on the server: {left:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webdav_server_that_is_gone_fails_the_run_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let device = WasiDevice::on_webdav(dir.path().join("device"), &format!("webdav://127.0.0.1:{port}/dav"));
    device.put("notes/todo.txt", b"buy milk");
    let before = snapshot(&device.folder());
    let run = device.cloudsync(&["sync"]).await;
    assert_ne!(run.code, 0, "{run:?}");
    assert!(!run.stdout.starts_with("COMPLETED"), "{run:?}");
    assert!(
        format!("{}{}", run.stdout, run.stderr).contains("refused the connection"),
        "the reason is shown: {run:?}"
    );
    assert_eq!(snapshot(&device.folder()), before, "nothing changed on the device");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_run_at_a_time_on_a_root_and_a_killed_runs_lock_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = dir.path().join("cloud");
    std::fs::create_dir_all(cloud.join(APP)).unwrap();
    let device = WasiDevice::new(dir.path().join("device"), &cloud);
    device.put("a.txt", b"a");
    device.sync().await;
    let lock = device.root.join("wasi.lock");
    assert!(!lock.exists(), "a finished run leaves no lock");

    // Another run holds the root (its lock is fresh): refused, nothing done.
    std::fs::write(&lock, b"another run").unwrap();
    device.put("b.txt", b"b");
    let refused = device.cloudsync(&["sync"]).await;
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.contains("in use by another cloudsync run"),
        "{refused:?}"
    );
    assert!(
        !cloud.join(APP).join("b.txt").exists(),
        "the refused run changed nothing"
    );
    assert_eq!(
        std::fs::read(&lock).unwrap(),
        b"another run",
        "and left the holder's lock alone"
    );

    // The holder was killed two minutes ago: its lock is taken over.
    let ok = std::process::Command::new("touch")
        .args(["-m", "-d", "2 minutes ago"])
        .arg(&lock)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    device.sync().await;
    assert_eq!(std::fs::read(cloud.join(APP).join("b.txt")).unwrap(), b"b");
    assert!(!lock.exists(), "released at the end");
    let leftovers: Vec<String> = list_files(&device.root)
        .into_iter()
        .filter(|p| p.contains("wasi.lock"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
