//! The command line in the world users have: a server that dies mid-upload,
//! Ctrl-C during an upload, links to outside folders on either side, names
//! like the engine's own, a damaged metadata store, bad input.

mod support;

use std::time::{Duration, Instant};

use support::{result, CloudSide, Device, Kind, APP};

fn world(kind: Kind) -> (tempfile::TempDir, CloudSide, Device) {
    let dir = tempfile::tempdir().unwrap();
    let cloud = CloudSide::start(kind, dir.path());
    let device = Device::new(dir.path().join("device"), &cloud);
    (dir, cloud, device)
}

fn pattern_file(path: &std::path::Path, len: u64) {
    use std::io::Write;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for word in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes()[..word.len()]);
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    f.flush().unwrap();
}

/// Waits until the cloud's staging area holds a file that is growing (an
/// upload under way).
fn wait_for_an_upload(cloud: &CloudSide, child: &mut std::process::Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let staging = cloud.data_dir.join(".cloudsync/staging");
    while Instant::now() < deadline {
        let growing = support::files_under(&staging).values().any(|d| d.len() > 1 << 20);
        if growing {
            return;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the sync ended before its upload was seen"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("no upload was seen");
}

fn wait_exit(child: &mut std::process::Child, within: Duration) -> (i32, String) {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            use std::io::Read;
            child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
            return (status.code().unwrap_or(-1), out);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the command did not end within {within:?}: it hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A sync of a large new file, returned once its upload is under way.
fn start_uploading_a_video(cloud: &CloudSide, device: &Device) -> std::process::Child {
    pattern_file(&device.folder().join("video.bin"), 768 << 20);
    let mut child = device
        .command(&["sync"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_an_upload(cloud, &mut child);
    child
}

#[test]
fn a_webdav_server_dying_mid_upload_ends_the_sync_promptly_with_its_reason() {
    let (_dir, mut cloud, device) = world(Kind::WebDav);
    let mut child = start_uploading_a_video(&cloud, &device);
    let killed = Instant::now();
    cloud.server.take(); // the server dies
    let (code, out) = wait_exit(&mut child, Duration::from_secs(60));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("UPLOAD_FAILED") || out.contains("DOWNLOAD_FAILED"),
        "{out}"
    );
    assert!(
        out.contains("video.bin") || out.contains("last failure"),
        "a reason is given: {out}"
    );
    assert!(killed.elapsed() < Duration::from_secs(60));
}

#[test]
fn ctrl_c_during_an_upload_stops_promptly_and_leaves_nothing_half_written() {
    let (_dir, cloud, device) = world(Kind::WebDav);
    let mut child = start_uploading_a_video(&cloud, &device);
    assert!(std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let (code, out) = wait_exit(&mut child, Duration::from_secs(30));
    assert_eq!(code, 130, "{out}");
    assert!(out.starts_with("STOPPED"), "{out}");
    assert!(cloud.files().is_empty(), "nothing half written reached the cloud");
    // The next run cleans what is left of the stop, and finishes.
    let out = device.run(&["--json", "sync"]);
    assert_eq!(
        result(&out)["result"]["state"],
        "COMPLETED",
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        result(&out)["report"]
    );
    assert_eq!(cloud.staging(), Vec::<String>::new());
    assert_eq!(cloud.files()["video.bin"].len(), 768 << 20);
}

#[test]
fn links_to_outside_folders_on_either_side_are_never_followed() {
    let (dir, cloud, device) = world(Kind::Folder);
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), b"not synced").unwrap();
    // In the cloud: a link to a folder outside it, and one to a file.
    let bundle = cloud.data_dir.join(APP);
    std::fs::create_dir_all(&bundle).unwrap();
    std::os::unix::fs::symlink(&outside, bundle.join("docs")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret.txt"), bundle.join("secret-link.txt")).unwrap();
    cloud.put("plain.txt", b"plain");
    // On the device: the same.
    device.write("mine.txt", b"mine");
    std::os::unix::fs::symlink(&outside, device.folder().join("out")).unwrap();
    let out = device.run(&["--json", "sync"]);
    let r = result(&out);
    assert_eq!(r["result"]["state"], "COMPLETED", "{r}");
    let skipped: Vec<String> = r["report"]["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_str().unwrap().to_string())
        .collect();
    for name in ["docs", "secret-link.txt", "out"] {
        assert!(skipped.iter().any(|s| s == name), "{name} not reported: {skipped:?}");
    }
    assert_eq!(device.files().keys().collect::<Vec<_>>(), ["mine.txt", "plain.txt"]);
    assert_eq!(cloud.files().keys().collect::<Vec<_>>(), ["mine.txt", "plain.txt"]);
    // Deleting on one side never deletes through a link on the other.
    device.remove("plain.txt");
    std::fs::remove_file(bundle.join("mine.txt")).unwrap();
    let r = result(&device.run(&["--json", "sync"]));
    assert_eq!(r["result"]["state"], "COMPLETED", "{r}");
    let names: Vec<_> = std::fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["secret.txt"]);
    assert_eq!(std::fs::read(outside.join("secret.txt")).unwrap(), b"not synced");
    // `status` names what it does not sync, and why.
    let out = device.run(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("SKIPPED") && text.contains("out") && text.contains("symlink"),
        "{text}"
    );
}

#[test]
fn links_among_the_roots_own_entries_are_refused() {
    let (dir, cloud, device) = world(Kind::Folder);
    cloud.put("fc.txt", b"from the cloud");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(outside.join(format!("apps/{APP}/cloud"))).unwrap();
    std::fs::write(outside.join(format!("apps/{APP}/cloud/p.txt")), b"outside").unwrap();
    std::fs::write(outside.join("store"), b"not a store").unwrap();
    for (name, target) in [("apps", outside.join("apps")), ("meta.redb", outside.join("store"))] {
        std::fs::create_dir_all(&device.root).unwrap();
        let link = device.root.join(name);
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let out = device.run(&["sync"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains("is a symlink"), "{name}: {err}");
        std::fs::remove_file(&link).unwrap();
    }
    // Nothing outside was read, written or renamed.
    assert_eq!(std::fs::read(outside.join("store")).unwrap(), b"not a store");
    let outside_files: Vec<_> = support::files_under(&outside).into_keys().collect();
    assert_eq!(outside_files, [format!("apps/{APP}/cloud/p.txt"), "store".to_string()]);
    assert!(!cloud.files().contains_key("p.txt"));
}

#[test]
fn names_like_the_engines_own_are_synced_like_any_other() {
    let (_dir, cloud, device) = world(Kind::Folder);
    cloud.put(".cloudsync-put-4242-0", b"a cloud file named like a staging object");
    device.write(".cloudsync-evict-1-2", b"a device file named like an eviction leftover");
    device.write(".staging/x", b"a folder named like the staging area");
    let r = result(&device.run(&["--json", "sync"]));
    assert_eq!(r["result"]["state"], "COMPLETED", "{r}");
    assert_eq!(device.files(), cloud.files());
    assert_eq!(device.files().len(), 3);
    let r = result(&device.run(&["--json", "sync"]));
    assert_eq!(
        (r["report"]["planned"].as_u64(), r["report"]["deleted_local"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(device.files().len(), 3, "and nothing deletes them later");
}

#[test]
fn a_damaged_or_lost_metadata_store_is_said_and_deletes_nothing() {
    let (_dir, cloud, device) = world(Kind::Folder);
    for i in 0..8 {
        device.write(&format!("f{i}.txt"), format!("file {i}").as_bytes());
    }
    assert_eq!(result(&device.run(&["--json", "sync"]))["result"]["state"], "COMPLETED");
    device.remove("f0.txt"); // deleted here, while the store is damaged
    cloud.remove("f1.txt");
    let store = device.root.join("meta.redb");
    let len = std::fs::metadata(&store).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&store)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let out = device.run(&["--json", "sync"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "no panic: {err}");
    assert!(err.contains("warning") && err.contains("damaged"), "{err}");
    let r = result(&out);
    assert_eq!(
        (
            r["report"]["deleted_local"].as_u64(),
            r["report"]["deleted_remote"].as_u64()
        ),
        (Some(0), Some(0))
    );
    assert_eq!(device.files().len(), 8, "nothing deleted for want of a record");
    assert_eq!(device.files(), cloud.files());
    // Emptied (removed) entirely: said too.
    std::fs::remove_file(&store).unwrap();
    let out = device.run(&["sync"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("emptied or replaced"));
    assert_eq!(device.files().len(), 8);
}

#[test]
fn bad_input_is_a_usage_error_and_reading_creates_nothing() {
    let (dir, _cloud, device) = world(Kind::Folder);
    let bare = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_cloudsync"))
            .arg("--root")
            .arg(&device.root)
            .args(args)
            .env_remove("CLOUDSYNC_APP")
            .env_remove("CLOUDSYNC_CLOUD")
            .output()
            .unwrap()
    };
    let out = bare(&["--cloud", &device.url, "--app", "", "status"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a bundle name"));
    let out = bare(&["--cloud", "dir://relative/folder", "sync"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("absolute path"));
    assert!(!std::path::Path::new("relative").exists());
    // A state query for another app's file creates no folder for it.
    let out = device.run(&["state", "file://com.other.app/data/storage/el2/cloud/x.txt"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!device.root.join("apps/com.other.app").exists());
    // A folder cloud that is not there (a drive not mounted) is an error,
    // never an empty cloud made on the spot.
    let unmounted = dir.path().join("mnt/usb/cloud");
    let out = bare(&["--cloud", &format!("dir://{}", unmounted.display()), "status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    assert!(!dir.path().join("mnt").exists());
    // The gallery's area is no app, and --app cannot quietly override the
    // policy's caller.
    let out = bare(&["--cloud", &device.url, "--app", "media", "status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("gallery"));
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "bundle = \"com.example.notes\"\n").unwrap();
    let out = bare(&[
        "--cloud",
        &device.url,
        "--policy",
        policy.to_str().unwrap(),
        "--app",
        "com.x",
        "status",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not the policy's caller"));
    drop(dir);
}

#[test]
fn a_config_files_relative_root_is_beside_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    std::fs::create_dir(&conf).unwrap();
    std::fs::write(conf.join("config.toml"), "root = \"state\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cloudsync"))
        .current_dir(dir.path())
        .arg("--config")
        .arg(conf.join("config.toml"))
        .arg("status")
        .env_remove("CLOUDSYNC_ROOT")
        .env_remove("CLOUDSYNC_APP")
        .env_remove("CLOUDSYNC_CLOUD")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(conf.join("state/cloud").is_dir(), "the default cloud beside the config");
    assert!(!dir.path().join("state").exists());
}
