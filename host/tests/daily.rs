//! Daily use, as a user runs it: `watch` keeping a folder in sync both
//! ways, `stop` from another terminal, a dry run that changes nothing on
//! either side, logs that give each decision's reason, `last-sync`,
//! another bundle's folder, the single-file state, and completions.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const APP: &str = "com.example.daily";

#[path = "support/folder.rs"]
mod folder;
use folder::Setup;

fn put(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

/// Every file below `dir`, with its bytes and mtime (a dry run must leave
/// both trees exactly so).
fn tree(dir: &Path) -> BTreeMap<String, (Vec<u8>, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, (std::fs::read(&p).unwrap_or_default(), m.modified().unwrap()));
            }
        }
    }
    out
}

fn wait_for(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what}: not within {within:?}");
}

/// A `watch` in the background, its stdout lines on a channel.
fn start_watch(s: &Setup, extra: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut args = vec!["watch", "--interval", "1", "--debounce-ms", "100"];
    args.extend_from_slice(extra);
    s.spawn_lines(&args)
}

#[test]
fn watch_carries_changes_both_ways_within_seconds_and_stop_ends_it() {
    let s = Setup::new(APP);
    put(&s.in_cloud("first.txt"), b"from the cloud");
    let (mut child, lines) = start_watch(&s, &["--json"]);
    wait_for("the first run's download", Duration::from_secs(30), || {
        std::fs::read(s.local("first.txt")).is_ok_and(|b| b == b"from the cloud")
    });
    // A local edit goes up, by the file system's notification.
    put(&s.local("notes/new.txt"), b"written here");
    wait_for("the local file in the cloud", Duration::from_secs(10), || {
        std::fs::read(s.in_cloud("notes/new.txt")).is_ok_and(|b| b == b"written here")
    });
    // A cloud change comes down by polling.
    put(&s.in_cloud("later.txt"), b"put in the cloud later");
    wait_for("the cloud file here", Duration::from_secs(10), || {
        std::fs::read(s.local("later.txt")).is_ok_and(|b| b == b"put in the cloud later")
    });
    // A local delete is carried out in the cloud.
    std::fs::remove_file(s.local("first.txt")).unwrap();
    wait_for("the cloud copy deleted", Duration::from_secs(10), || {
        !s.in_cloud("first.txt").exists()
    });

    // Only one command runs on a root: a second one says so.
    let (code, _, err) = s.run_text(&["sync"]);
    assert_ne!(code, 0);
    assert!(err.contains("in use by another cloudsync"), "{err}");

    let (code, out, err) = s.run_text(&["stop"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("stopped the watch"), "{out}");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!s.root().join("cloudsync.pid").exists());
    // Each run's end came as JSON, with the seed's events before it.
    let lines: Vec<String> = lines.try_iter().collect();
    let results = lines.iter().filter(|l| l.contains("\"result\"")).count();
    assert!(results >= 3, "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("\"state\":\"COMPLETED\"")), "{lines:?}");
    // Nothing runs any more.
    let (code, out, _) = s.run_text(&["stop"]);
    assert_eq!(code, 1);
    assert!(out.contains("nothing runs"), "{out}");
}

#[test]
fn a_watch_outlives_a_cloud_that_goes_away_and_comes_back() {
    let s = Setup::new(APP);
    let cloud = s.cloud();
    let (mut child, _lines) = start_watch(&s, &[]);
    put(&s.local("a.txt"), b"a");
    wait_for("a.txt up", Duration::from_secs(15), || s.in_cloud("a.txt").exists());
    // The cloud's drive is unmounted: runs fail, the watch goes on.
    let away = s.dir.path().join("away");
    std::fs::rename(&cloud, &away).unwrap();
    put(&s.local("b.txt"), b"b");
    std::thread::sleep(Duration::from_secs(3));
    assert!(child.try_wait().unwrap().is_none(), "the watch ended");
    std::fs::rename(&away, &cloud).unwrap();
    wait_for("b.txt up once the cloud is back", Duration::from_secs(40), || {
        s.in_cloud("b.txt").exists()
    });
    // The cloud folder replaced by a copy (another inode: a drive mounted
    // again): the watch writes to the folder at the path, never the old one.
    let copy = s.dir.path().join("copy");
    assert!(Command::new("cp")
        .arg("-a")
        .arg(&cloud)
        .arg(&copy)
        .status()
        .unwrap()
        .success());
    std::fs::rename(&cloud, &away).unwrap();
    std::fs::rename(&copy, &cloud).unwrap();
    put(&s.local("c.txt"), b"c");
    wait_for("c.txt in the cloud at its path", Duration::from_secs(40), || {
        s.in_cloud("c.txt").exists()
    });
    assert!(!away.join(APP).join("c.txt").exists(), "written to the old folder");
    // Ctrl-C ends it cleanly too.
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_dry_run_prints_the_plan_and_changes_nothing_on_either_side() {
    let s = Setup::new(APP);
    put(&s.local("both.txt"), b"base");
    put(&s.local("gone-here.txt"), b"x");
    put(&s.local("gone-there.txt"), b"y");
    let (code, _, err) = s.run_text(&["sync"]);
    assert_eq!(code, 0, "{err}");
    // Then on both sides: new files, an edit on each, one edit on both, a
    // delete on each.
    put(&s.local("new-here.txt"), b"new here");
    put(&s.in_cloud("new-there.txt"), b"new there");
    put(&s.local("both.txt"), b"edited here");
    put(&s.in_cloud("both.txt"), b"edited there");
    std::fs::remove_file(s.local("gone-here.txt")).unwrap();
    std::fs::remove_file(s.in_cloud("gone-there.txt")).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    // The app's area (its folder, staging, thumbnails) and the cloud.
    let area = s.root().join("apps");
    let local_before = tree(&area);
    let cloud_before = tree(&s.cloud());

    let (code, out, err) = s.run_text(&["sync", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    for (action, path) in [
        ("upload", "new-here.txt"),
        ("download", "new-there.txt"),
        ("conflict", "both.txt"),
        ("delete-cloud", "gone-here.txt"),
        ("delete-local", "gone-there.txt"),
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(action) && l.contains(path)),
            "{action} {path} in:\n{out}"
        );
    }
    assert!(
        out.contains("1 to upload, 1 to download, 1 to delete here, 1 to delete in the cloud, 1 conflicts"),
        "{out}"
    );
    assert!(tree(&area) == local_before, "the device changed");
    assert!(tree(&s.cloud()) == cloud_before, "the cloud changed");

    // As JSON, each step with its reason; the records are still untouched:
    // a real run after it does what the plan said.
    let (code, out, _) = s.run_text(&["--json", "sync", "--dry-run"]);
    assert_eq!(code, 0);
    let steps: Vec<serde_json::Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("plan").is_some())
        .collect();
    let upload = steps.iter().find(|v| v["path"] == "new-here.txt").unwrap();
    assert_eq!(
        (upload["plan"].as_str(), upload["reason"].as_str()),
        (Some("upload"), Some("new on this device"))
    );
    assert!(tree(&area) == local_before && tree(&s.cloud()) == cloud_before);
    let (code, out, err) = s.run_text(&["sync"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("COMPLETED: 2 uploaded, 2 downloaded, 1 deleted here, 1 deleted in the cloud"),
        "{out}"
    );
}

#[test]
fn a_dry_run_of_a_first_sync_makes_no_folder_and_a_refused_plan_says_why() {
    let s = Setup::new(APP);
    put(&s.in_cloud("a.txt"), b"a");
    let (code, out, err) = s.run_text(&["sync", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("download") && out.contains("a.txt"), "{out}");
    assert!(!s.local("").exists(), "a dry run made the app's folder");
    // Synced, then the device's folder emptied: the guard refuses, the dry
    // run says so (exit 3) and deletes nothing.
    for i in 0..4 {
        put(&s.in_cloud(&format!("f{i}.txt")), b"f");
    }
    assert_eq!(s.run_text(&["sync"]).0, 0);
    std::fs::remove_dir_all(s.local("")).unwrap();
    let (code, out, _) = s.run_text(&["sync", "--dry-run"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("refused"), "{out}");
    assert!(s.in_cloud("f0.txt").exists());
}

#[test]
fn verbose_logs_say_each_decision_and_why_as_text_or_json() {
    let s = Setup::new(APP);
    put(&s.local("up.txt"), b"up");
    put(&s.in_cloud("down.txt"), b"down");
    let (code, _, err) = s.run_text(&["-v", "sync"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("up.txt") && err.contains("new on this device"), "{err}");
    assert!(err.contains("down.txt") && err.contains("new in the cloud"), "{err}");

    // To a file, as JSON lines; a failure is a warning with its reason.
    let log = s.dir.path().join("sync.log");
    std::fs::write(s.local("up.txt"), b"changed").unwrap();
    let (code, _, err) = s.run_text(&[
        "-v",
        "--log-format",
        "json",
        "--log-file",
        log.to_str().unwrap(),
        "sync",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("changed on this device"), "the log went to stderr: {err}");
    let text = std::fs::read_to_string(&log).unwrap();
    let entries: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let upload = entries
        .iter()
        .find(|e| e["fields"]["path"] == "up.txt")
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(upload["fields"]["action"], "upload");
    assert_eq!(upload["fields"]["message"], "changed on this device");
    assert_eq!(upload["level"], "INFO");
    // Without -v only warnings: a quiet run logs nothing.
    let (_, _, err) = s.run_text(&["sync"]);
    assert!(err.is_empty(), "{err}");
}

#[test]
fn status_last_sync_state_bundle_and_completions_from_the_command_line() {
    let s = Setup::new(APP);
    let (code, out, _) = s.run_text(&["last-sync"]);
    assert_eq!((code, out.trim()), (0, "never synced completely"));
    put(&s.local("a.txt"), b"a");
    put(&s.local("b.txt"), b"b");
    assert_eq!(s.run_text(&["sync"]).0, 0);
    let (code, out, _) = s.run_text(&["--json", "last-sync"]);
    assert_eq!(code, 0);
    let ms = serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()["last_sync_ms"]
        .as_u64()
        .unwrap();
    assert!(ms > 0);

    // status: counts by state and the last run, from a new process.
    put(&s.local("c.txt"), b"c");
    let (code, out, err) = s.run_text(&["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("2 UPLOAD_SUCCESS") && out.contains("1 TO_BE_UPLOADED"),
        "{out}"
    );
    assert!(
        out.contains("last run: COMPLETED") && out.contains("2 uploaded"),
        "{out}"
    );

    // The single-file state, with the single form's own codes.
    let (code, out, _) = s.run_text(&["state", "c.txt"]);
    assert_eq!((code, out.split_whitespace().next()), (0, Some("TO_BE_UPLOADED")));
    std::fs::create_dir(s.local("folder")).unwrap();
    let (code, _, err) = s.run_text(&["state", "folder"]);
    assert_eq!(code, 1);
    assert!(err.contains("13900042"), "{err}");

    // Another app's folder, as the manager does.
    let other = "com.example.other";
    put(&s.cloud().join(other).join("o.txt"), b"other");
    let (code, _, err) = s.run_text(&["sync", "--bundle", other]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read(s.root().join("apps").join(other).join("cloud/o.txt")).unwrap(),
        b"other"
    );
    let (code, _, err) = s.run_text(&[
        "--permission",
        "ohos.permission.CLOUDFILE_SYNC",
        "sync",
        "--bundle",
        other,
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("error 201"), "{err}");
    let (code, _, err) = s.run_text(&["--not-system-app", "sync", "--bundle", other]);
    assert_eq!(code, 1);
    assert!(err.contains("error 202"), "{err}");

    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(env!("CARGO_BIN_EXE_cloudsync"))
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("watch") && text.contains("dry-run"), "{shell}: {text}");
    }
}

#[test]
fn device_signals_from_the_system_stop_a_run_with_the_seeds_errors() {
    let s = Setup::new(APP);
    put(&s.in_cloud("a.txt"), b"a");
    let sys = s.dir.path().join("sys");
    // Only a mobile modem is up.
    put(&sys.join("net/wwan0/operstate"), b"up\n");
    put(&sys.join("net/wlan0/operstate"), b"down\n");
    let with_sys = |args: &[&str]| {
        let out = s
            .command(args)
            .env("CLOUDSYNC_SYS_NET", sys.join("net"))
            .env("CLOUDSYNC_SYS_THERMAL", sys.join("thermal"))
            .env("CLOUDSYNC_SYS_POWER", sys.join("power"))
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = with_sys(&["--wifi-only", "sync"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("DOWNLOAD_FAILED (WIFI_UNAVAILABLE)"), "{out}");
    assert!(!s.local("a.txt").exists(), "a file came over the metered network");

    // Too hot: its zone at its `hot` trip point.
    put(&sys.join("net/wlan0/operstate"), b"up\n");
    put(&sys.join("thermal/thermal_zone0/temp"), b"80000\n");
    put(&sys.join("thermal/thermal_zone0/trip_point_0_type"), b"hot\n");
    put(&sys.join("thermal/thermal_zone0/trip_point_0_temp"), b"80000\n");
    let (code, out) = with_sys(&["--wifi-only", "sync"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("(DEVICE_TEMPERATURE_TOO_HIGH)"), "{out}");
    assert!(!s.local("a.txt").exists());

    // A battery at 5 % that does not charge: the seed's 22400003 at start.
    put(&sys.join("thermal/thermal_zone0/temp"), b"40000\n");
    put(&sys.join("power/BAT0/type"), b"Battery\n");
    put(&sys.join("power/BAT0/capacity"), b"5\n");
    put(&sys.join("power/BAT0/status"), b"Discharging\n");
    let (code, _) = with_sys(&["sync"]);
    assert_eq!(code, 1);
    // Cooled, on Wi-Fi, charging: it syncs.
    put(&sys.join("power/BAT0/status"), b"Charging\n");
    let (code, out) = with_sys(&["--wifi-only", "sync"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(std::fs::read(s.local("a.txt")).unwrap(), b"a");
}
