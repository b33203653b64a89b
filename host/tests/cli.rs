//! The `cloudsync` command line, run as a user runs it: exit codes, JSON
//! events, Ctrl-C with and without `--keep-partial`, and a killed process.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const APP: &str = "com.example.cli";

#[path = "support/folder.rs"]
mod folder;
use folder::Setup;

fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// Starts a slow JSON download and returns once it has written some bytes.
/// The caller waits on the child.
#[allow(clippy::zombie_processes)]
fn start_slow(s: &Setup, extra: &[&str]) -> (Child, mpsc::Receiver<serde_json::Value>) {
    let mut args = vec!["--json", "--bwlimit", "1M", "download", "big.bin"];
    args.extend_from_slice(extra);
    let (child, lines) = s.spawn_lines(&args);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in lines {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    loop {
        let ev = rx.recv_timeout(Duration::from_secs(60)).expect("progress events");
        if ev["state"] == "RUNNING" && ev["processed"].as_u64().unwrap() > 0 {
            return (child, rx);
        }
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

fn rest(rx: mpsc::Receiver<serde_json::Value>) -> Vec<serde_json::Value> {
    rx.into_iter().collect()
}

#[test]
fn download_prints_json_events_and_places_the_file() {
    let s = Setup::new(APP);
    s.put_cloud("docs/a.txt", b"hello");
    let (code, events, _) = s.run(&["--json", "download", "docs/a.txt"]);
    assert_eq!(code, 0);
    let last = events.last().unwrap();
    assert_eq!(last["state"], "COMPLETED");
    assert_eq!(last["error"], "NO_ERROR");
    assert_eq!(last["size"], 5);
    assert_eq!(last["uri"], format!("file://{APP}/data/storage/el2/cloud/docs/a.txt"));
    assert_eq!(std::fs::read(s.local("docs/a.txt")).unwrap(), b"hello");

    let (code, _, _) = s.run(&["download", &format!("file://{APP}/data/storage/el2/cloud/docs/a.txt")]);
    assert_eq!(code, 0, "a full URI works too");
}

#[test]
fn failures_exit_non_zero_with_the_seeds_code() {
    let s = Setup::new(APP);
    let (code, _, err) = s.run(&["download", "missing.txt"]);
    assert_eq!(code, 1);
    assert!(err.contains("error 13900002"), "{err}");
    let (code, events, err) = s.run(&["--json", "download", "file://other.app/data/storage/el2/cloud/x"]);
    assert_eq!(code, 1);
    assert!(err.contains("error 14000002"), "{err}");
    assert_eq!(events[0]["error"]["code"], 14000002);
    let out = Command::new(env!("CARGO_BIN_EXE_cloudsync"))
        .args([
            "--root",
            s.root().to_str().unwrap(),
            "--cloud",
            "ftp://x",
            "download",
            "a",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn ctrl_c_stops_and_deletes_the_partial_data() {
    let s = Setup::new(APP);
    s.put_cloud("big.bin", &content(8 << 20));
    let (child, rx) = start_slow(&s, &[]);
    signal(&child, "-INT");
    let status = child.wait_with_output().unwrap().status;
    let events = rest(rx);
    assert_eq!(status.code(), Some(130));
    assert_eq!(events.last().unwrap()["state"], "STOPPED");
    assert_eq!(s.staging(), 0);
    assert!(!s.local("big.bin").exists());
}

#[test]
fn ctrl_c_with_keep_partial_then_running_again_resumes() {
    let s = Setup::new(APP);
    let data = content(8 << 20);
    s.put_cloud("big.bin", &data);
    let (child, rx) = start_slow(&s, &["--keep-partial"]);
    signal(&child, "-INT");
    assert_eq!(child.wait_with_output().unwrap().status.code(), Some(130));
    let stopped = rest(rx).last().unwrap().clone();
    assert_eq!(stopped["state"], "STOPPED");
    assert_eq!(s.staging(), 1);

    let (code, events, _) = s.run(&["--json", "download", "big.bin"]);
    assert_eq!(code, 0);
    assert!(events[0]["processed"].as_u64().unwrap() >= stopped["processed"].as_u64().unwrap());
    assert!(events[0]["processed"].as_u64().unwrap() > 0, "resumed, not restarted");
    assert_eq!(events.last().unwrap()["state"], "COMPLETED");
    assert_eq!(std::fs::read(s.local("big.bin")).unwrap(), data);
    assert_eq!(s.staging(), 0);
}

#[test]
fn a_killed_process_loses_nothing_and_the_next_run_completes() {
    let s = Setup::new(APP);
    let data = content(8 << 20);
    s.put_cloud("big.bin", &data);
    std::fs::create_dir_all(s.local("")).unwrap();
    std::fs::write(s.local("keep.txt"), b"mine").unwrap();
    let (child, _rx) = start_slow(&s, &[]);
    signal(&child, "-KILL");
    let _ = child.wait_with_output();
    assert!(!s.local("big.bin").exists(), "nothing partial under the name");

    let (code, events, _) = s.run(&["--json", "download", "big.bin"]);
    assert_eq!(code, 0, "{events:?}");
    assert_eq!(std::fs::read(s.local("big.bin")).unwrap(), data);
    assert_eq!(std::fs::read(s.local("keep.txt")).unwrap(), b"mine");
    assert_eq!(s.staging(), 0, "the killed run's partial data was cleaned");
}

#[test]
fn sync_status_and_state_as_a_user_runs_them() {
    let s = Setup::new(APP);
    s.put_cloud("from-cloud.txt", b"cloud");
    let local = s.local("notes/mine.txt");
    std::fs::create_dir_all(local.parent().unwrap()).unwrap();
    std::fs::write(&local, b"mine").unwrap();

    let (code, lines, err) = s.run(&["--json", "sync"]);
    assert_eq!(code, 0, "{err}");
    let last = lines.last().unwrap();
    assert_eq!(last["result"]["state"], "COMPLETED");
    assert_eq!(last["report"]["uploaded"], 1);
    assert_eq!(last["report"]["downloaded"], 1);
    assert!(lines.iter().any(|l| l["state"] == "DOWNLOADING"));
    assert_eq!(
        std::fs::read(s.cloud().join(APP).join("notes/mine.txt")).unwrap(),
        b"mine"
    );
    assert_eq!(std::fs::read(s.local("from-cloud.txt")).unwrap(), b"cloud");

    // Nothing changed: nothing moves.
    let out = s.command(&["sync"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("COMPLETED: 0 uploaded, 0 downloaded"), "{text}");

    std::fs::write(&local, b"edited").unwrap();
    let (code, lines, err) = s.run(&["--json", "status"]);
    assert_eq!(code, 0, "{err}");
    let state_of = |p: &str| {
        let uri = format!("file://{APP}/data/storage/el2/cloud/{p}");
        lines.iter().find(|r| r["uri"] == uri.as_str()).unwrap()["state"].clone()
    };
    assert_eq!(state_of("from-cloud.txt"), "COMPLETED");
    assert_eq!(state_of("notes/mine.txt"), "TO_BE_UPLOADED");

    let (code, lines, _) = s.run(&["--json", "state", "notes/mine.txt"]);
    assert_eq!((code, lines[0]["state"].as_str()), (0, Some("TO_BE_UPLOADED")));
    let (code, _, err) = s.run(&["state", "no-such-file"]);
    assert_eq!(code, 1);
    assert!(err.contains("13900002"), "{err}");
}

#[test]
fn a_policy_file_or_flags_decide_who_calls() {
    let s = Setup::new(APP);
    let policy = s.dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!("bundle = \"{APP}\"\nsystem_app = false\npermissions = [\"ohos.permission.CLOUDFILE_SYNC\"]\n"),
    )
    .unwrap();
    let p = policy.to_str().unwrap();
    s.put_cloud("a.txt", b"a");
    // An ordinary app may sync its own folder but not read states (202).
    let (code, _, err) = s.run(&["--policy", p, "sync"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = s.run(&["--policy", p, "status"]);
    assert_eq!(code, 1);
    assert!(err.contains("error 202"), "{err}");
    let (code, _, err) = s.run(&["--permission", "ohos.permission.CLOUDFILE_SYNC_MANAGER", "status"]);
    assert_eq!(code, 1);
    assert!(err.contains("error 201"), "{err}");
    // The app's cloud switch off: 22400001.
    std::fs::write(&policy, format!("cloud_switch_off = [\"{APP}\"]\n")).unwrap();
    let (code, _, err) = s.run(&["--policy", p, "sync"]);
    assert_eq!(code, 1);
    assert!(err.contains("error 22400001"), "{err}");
    std::fs::write(&policy, "admin = true\n").unwrap();
    let (code, _, err) = s.run(&["--policy", p, "sync"]);
    assert_eq!(code, 2);
    assert!(err.contains("admin"), "{err}");
}

#[test]
fn sync_refuses_mass_deletion_until_yes() {
    let s = Setup::new(APP);
    for i in 0..6 {
        s.put_cloud(&format!("f{i}"), b"x");
    }
    assert_eq!(s.run(&["sync"]).0, 0);
    for i in 0..5 {
        std::fs::remove_file(s.local(&format!("f{i}"))).unwrap();
    }
    let out = s.command(&["sync"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "a refusal has an exit status of its own");
    assert!(text.starts_with("REFUSED"), "{text}");
    assert!(
        text.contains("nothing was changed: this run would delete 5 of 6"),
        "{text}"
    );
    assert!(text.contains("--yes"), "{text}");
    assert_eq!(std::fs::read_dir(s.cloud().join(APP)).unwrap().count(), 6);
    assert_eq!(s.run(&["sync", "--yes"]).0, 0);
    assert_eq!(std::fs::read_dir(s.cloud().join(APP)).unwrap().count(), 1);
}

#[test]
fn gallery_sync_and_status_show_cloud_photos_by_their_thumbnails() {
    let s = Setup::new(APP);
    let photo = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 200]));
    let in_cloud = s.cloud().join("media/Photo/7/beach.png");
    std::fs::create_dir_all(in_cloud.parent().unwrap()).unwrap();
    photo.save(&in_cloud).unwrap();
    let (code, _, err) = s.run(&["sync", "--gallery"]);
    assert_eq!(code, 0, "{err}");
    let thumb = s.root().join("apps/media/.thumbs/Photo/7/beach.png.jpg");
    assert!(image::open(&thumb).is_ok(), "a thumbnail at {}", thumb.display());
    assert!(!s.root().join("apps/media/cloud/Photo/7/beach.png").exists());
    let (code, lines, err) = s.run(&["--json", "status", "--gallery"]);
    assert_eq!(code, 0, "{err}");
    // The entries, then the summary.
    let summary = lines.last().unwrap();
    assert_eq!(summary["summary"]["files"], 1, "{lines:?}");
    let lines: Vec<_> = lines.iter().filter(|l| l.get("uri").is_some()).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["uri"], "file://media/Photo/7/beach.png");
    assert_eq!(lines[0]["state"], "COMPLETED");
}

#[test]
fn clean_cache_optimize_and_fetching_again_as_a_user_runs_them() {
    let s = Setup::new(APP);
    for (name, len) in [("small.txt", 100usize), ("big.bin", 3000), ("mid.bin", 2000)] {
        s.put_cloud(name, &content(len));
    }
    assert_eq!(s.run(&["sync"]).0, 0);
    let (code, lines, err) = s.run(&["--json", "clean-cache", "small.txt"]);
    assert_eq!(code, 0, "{err}");
    assert!(lines[0]["evicted"].as_str().unwrap().ends_with("/small.txt"));
    assert!(!s.local("small.txt").exists());
    let out = s.command(&["status"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("cloud-only") && text.contains("small.txt"), "{text}");
    assert!(text.contains("(1 only in the cloud, 0 names skipped)"), "{text}");
    // A dirty file is refused with the seed's code.
    std::fs::write(s.local("mid.bin"), b"edited").unwrap();
    let (code, _, err) = s.run(&["clean-cache", "mid.bin"]);
    assert_eq!(code, 1);
    assert!(err.contains("error 13900002"), "{err}");
    // Free 1K of files not used for 0 days: the least recently used goes.
    let (code, lines, err) = s.run(&["--json", "optimize", "--aging-days", "0", "--total-size", "1K"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines.last().unwrap()["state"], "COMPLETED");
    assert_eq!(lines.last().unwrap()["progress"], 100);
    assert!(!s.local("big.bin").exists(), "big.bin was evicted");
    assert_eq!(
        std::fs::read(s.local("mid.bin")).unwrap(),
        b"edited",
        "the dirty file stays"
    );
    // Fetched again on demand.
    let (code, _, err) = s.run(&["download", "big.bin"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(s.local("big.bin")).unwrap(), content(3000));
    // The aging policy (optimizeStorage): nothing here is 30 days unused
    // and the disk has room, so nothing goes.
    let (code, lines, err) = s.run(&["--json", "optimize"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines.last().unwrap()["state"], "COMPLETED");
    assert!(s.local("big.bin").exists());
}

#[test]
fn a_closed_stdout_stops_the_output_not_the_sync() {
    let s = Setup::new(APP);
    for i in 0..30 {
        s.put_cloud(&format!("f{i}.txt"), format!("file {i}").as_bytes());
    }
    // `cloudsync --json sync | head -1`: the reader goes after one line.
    let mut child = s
        .command(&["--json", "--bwlimit", "200", "sync"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("standard output failed"), "{err}");
    for i in 0..30 {
        assert_eq!(
            std::fs::read(s.local(&format!("f{i}.txt"))).unwrap(),
            format!("file {i}").as_bytes()
        );
    }
    assert_eq!(s.staging(), 0, "nothing half done");
}

/// The app's folder moved away and made anew (a run re-creating it, an app
/// writing into it, a backup put back) is not the folder that was synced:
/// what it lacks is not deleted in the cloud until the user confirms.
#[test]
fn a_folder_made_anew_is_not_taken_for_deletions() {
    let s = Setup::new(APP);
    for i in 0..10 {
        s.put_cloud(&format!("f{i}.txt"), format!("v{i}").as_bytes());
    }
    let (code, _, err) = s.run(&["sync"]);
    assert_eq!(code, 0, "{err}");
    let folder = s.local("");
    std::fs::rename(&folder, s.dir.path().join("away")).unwrap();
    std::fs::create_dir_all(&folder).unwrap();
    // Most of the files are back, one new one came: the folder is not
    // empty, and three deletions are fewer than the mass-deletion guard's.
    for i in 0..7 {
        let name = format!("f{i}.txt");
        std::fs::copy(s.dir.path().join("away").join(&name), folder.join(&name)).unwrap();
    }
    std::fs::write(folder.join("new.txt"), b"new").unwrap();

    let (code, lines, err) = s.run(&["--json", "sync"]);
    assert_ne!(code, 0, "refused: {lines:?}");
    let said = format!("{lines:?}{err}");
    assert!(said.contains("not the one that was synced"), "{said}");
    let cloud = std::fs::read_dir(s.cloud().join(APP)).unwrap().count();
    assert_eq!(cloud, 10, "nothing deleted in the cloud");

    // Confirmed, the deletions go ahead and the new folder is the synced one.
    let (code, _, err) = s.run(&["sync", "--confirm-empty-device"]);
    assert_eq!(code, 0, "{err}");
    let mut names: Vec<String> = std::fs::read_dir(s.cloud().join(APP))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut want: Vec<String> = (0..7).map(|i| format!("f{i}.txt")).collect();
    want.push("new.txt".into());
    assert_eq!(names, want);
    let (code, _, err) = s.run(&["sync"]);
    assert_eq!(code, 0, "then syncs as usual: {err}");
}
