//! Campaigns with the built binary, as users and their machines treat it:
//!
//! - **crashes**: the command line killed with SIGKILL at random moments
//!   during sync, download and optimize, with edits on both sides between
//!   runs, on the folder cloud and the WebDAV and S3 servers;
//! - **several devices**: three roots on one cloud syncing the same files
//!   at the same moment, round after round, on each backend;
//! - **faults**: a proxy in front of the WebDAV and S3 servers breaking a
//!   share of the requests (resets, drops, lost answers, delays, throttling,
//!   answers cut mid-stream).
//!
//! After every step: no version a user wrote (and did not replace) is lost
//! and no file is torn; at the end both trees are equal and nothing is left
//! in staging on either side. `CAMPAIGN_SCALE=n` multiplies the rounds (the
//! `campaigns` make target runs a longer one); `CAMPAIGN_SEED=n` changes the
//! seed. Figures are printed for the closing notes.

mod support;

use std::collections::BTreeMap;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use support::{proxy::Proxy, result, settle, CloudSide, Device, Kind, Rng, Versions, APP};

fn scale() -> usize {
    std::env::var("CAMPAIGN_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

fn seed(base: u64) -> u64 {
    std::env::var("CAMPAIGN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(base)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        | 1
}

const PATHS: [&str; 14] = [
    "a.txt",
    "b.txt",
    "notes/c.md",
    "notes/d.md",
    "photos/e.jpg",
    "photos/f.jpg",
    "photos/2026/g.raw",
    "big/h.bin",
    "big/i.bin",
    "deep/er/still/j.txt",
    "k l m.txt",
    "üñí.txt",
    ".cloudsync-put-1-1",
    "shared.txt",
];

fn size(rng: &mut Rng, path: &str) -> usize {
    if path.starts_with("big/") {
        (1 << 20) + rng.below(3 << 20) as usize
    } else {
        64 + rng.below(60_000) as usize
    }
}

/// A user edits a file on the device or, as another client, in the cloud.
fn edit(rng: &mut Rng, v: &mut Versions, device: &Device, cloud: &CloudSide, in_cloud_percent: u64) {
    let path = PATHS[rng.below(PATHS.len() as u64) as usize];
    if rng.chance(in_cloud_percent) {
        let old = cloud.files().get(path).cloned();
        if rng.chance(20) {
            if old.is_some() {
                v.replace(old.as_deref());
                cloud.remove(path);
            }
        } else {
            v.replace(old.as_deref());
            let len = size(rng, path);
            let data = v.new_version(rng, len);
            cloud.put(path, &data);
        }
        return;
    }
    let old = device.files().get(path).cloned();
    match rng.below(10) {
        0 | 1 => {
            if old.is_some() {
                v.replace(old.as_deref());
                device.remove(path);
            }
        }
        2 | 3 if old.is_some() => {
            // Same size, and the mtime put back: only ctime tells.
            let len = old.as_ref().unwrap().len();
            let data = v.new_version(rng, len);
            v.replace(old.as_deref());
            device.write_keeping_mtime(path, &data);
        }
        _ => {
            v.replace(old.as_deref());
            let len = size(rng, path);
            let data = v.new_version(rng, len);
            device.write(path, &data);
        }
    }
}

fn spawn(device: &Device, args: &[&str]) -> Child {
    device
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `child` at most `within`; a command still running then hangs.
fn wait(mut child: Child, within: Duration, what: &str) -> std::process::Output {
    let deadline = Instant::now() + within;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what}: the command did not end within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait_with_output().unwrap()
}

/// The cloud-only files the device records (evicted copies).
fn cloud_only(device: &Device) -> Vec<String> {
    let out = device.run(&["--json", "status"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["cloud_only"] == true)
        .filter_map(|v| {
            v["uri"]
                .as_str()
                .map(|u| u.rsplit_once("/cloud/").unwrap().1.to_string())
        })
        .map(|p| cloudsync::percent_decode(&p).unwrap())
        .collect()
}

/// Both trees equal (but for evicted files, which only the cloud holds),
/// nothing in staging on either side.
fn assert_settled(what: &str, device: &Device, cloud: &CloudSide) {
    let (local, remote) = (device.files(), cloud.files());
    let evicted = cloud_only(device);
    for (path, data) in &remote {
        match local.get(path) {
            Some(l) => assert!(l == data, "{what}: {path} differs between the device and the cloud"),
            None => assert!(evicted.contains(path), "{what}: {path} is only in the cloud"),
        }
    }
    for path in local.keys() {
        assert!(remote.contains_key(path), "{what}: {path} is only on the device");
    }
    assert_eq!(
        device.staging(),
        Vec::<String>::new(),
        "{what}: the device's staging area"
    );
    assert_eq!(
        cloud.staging(),
        Vec::<String>::new(),
        "{what}: the cloud's staging area"
    );
}

/// Kills the command line at random moments; returns (kills, runs).
fn crash_campaign(kind: Kind, target_kills: usize, base_seed: u64) -> (usize, usize) {
    let mut rng = Rng(seed(base_seed));
    let dir = tempfile::tempdir().unwrap();
    let cloud = CloudSide::start(kind, dir.path());
    let device = Device::new(dir.path().join("device"), &cloud);
    let mut v = Versions::default();
    for _ in 0..10 {
        edit(&mut rng, &mut v, &device, &cloud, 40);
    }
    // Warm: the component is compiled once and cached.
    let _ = device.run(&["status"]);
    let (mut kills, mut runs) = (0, 0);
    while kills < target_kills {
        for _ in 0..rng.below(4) {
            edit(&mut rng, &mut v, &device, &cloud, 30);
        }
        let path = PATHS[rng.below(PATHS.len() as u64) as usize];
        let args: Vec<&str> = match rng.below(20) {
            0..=13 => vec!["sync", "--yes"],
            14..=16 => vec!["download", path],
            _ => vec!["optimize", "--aging-days", "0", "--total-size", "2M"],
        };
        let child = spawn(&device, &args);
        runs += 1;
        // Most runs on the folder cloud end within tens of ms.
        let max = if kind == Kind::Folder { 45 } else { 160 };
        let delay = Duration::from_millis(rng.below(max));
        std::thread::sleep(delay);
        let mut child = child;
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        let _ = wait(child, Duration::from_secs(120), "a killed run");
        v.check(
            &format!("{kind:?} after run {runs} ({args:?}, killed after {delay:?})"),
            &[&device.files(), &cloud.files(), &evicted_bytes(&device)],
        );
    }
    settle(&device, 8);
    v.check(&format!("{kind:?} settled"), &[&device.files(), &cloud.files()]);
    assert_settled(&format!("{kind:?} crash campaign"), &device, &cloud);
    // A kill is an unclean shutdown redb repairs; it never reads as damage.
    let set_aside: Vec<_> = std::fs::read_dir(&device.root)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.contains(".damaged-"))
        .collect();
    assert!(
        set_aside.is_empty(),
        "{kind:?}: stores set aside as damaged: {set_aside:?}"
    );
    (kills, runs)
}

/// Files an eviction cut short set aside in the device's staging area: the
/// user's bytes, until recovery settles them.
fn evicted_bytes(device: &Device) -> BTreeMap<String, Vec<u8>> {
    support::files_under(&device.root.join("apps").join(APP).join(".staging"))
        .into_iter()
        .filter(|(k, _)| k.starts_with("evict-"))
        .collect()
}

#[test]
fn killed_at_random_moments_the_command_line_loses_nothing() {
    let s = scale();
    let mut total = 0;
    for (kind, kills, base) in [(Kind::Folder, 120, 1), (Kind::WebDav, 60, 2), (Kind::S3, 60, 3)] {
        let started = Instant::now();
        let (k, runs) = crash_campaign(kind, kills * s, base);
        total += k;
        println!(
            "crash campaign {kind:?}: {k} kills in {runs} runs, {:.0?}",
            started.elapsed()
        );
    }
    assert!(total >= 200);
}

/// Several devices on one cloud syncing the same files at the same moment.
fn devices_campaign(kind: Kind, rounds: usize, base_seed: u64) -> (u64, usize) {
    let mut rng = Rng(seed(base_seed));
    let dir = tempfile::tempdir().unwrap();
    let cloud = CloudSide::start(kind, dir.path());
    let devices: Vec<Device> = (0..3)
        .map(|i| Device::new(dir.path().join(format!("device{i}")), &cloud))
        .collect();
    let mut v = Versions::default();
    let _ = devices[0].run(&["status"]);
    let shared = ["shared.txt", "notes/c.md", "photos/e.jpg", "a.txt"];
    let mut conflicts = 0u64;
    for round in 0..rounds {
        for d in &devices {
            for _ in 0..1 + rng.below(3) {
                // Mostly the same few files, edited on every device at once.
                let path = if rng.chance(70) {
                    shared[rng.below(shared.len() as u64) as usize]
                } else {
                    PATHS[rng.below(PATHS.len() as u64) as usize]
                };
                let old = d.files().get(path).cloned();
                v.replace(old.as_deref());
                if rng.chance(15) {
                    d.remove(path);
                } else {
                    let len = 64 + rng.below(4000) as usize;
                    let data = v.new_version(&mut rng, len);
                    if rng.chance(30) {
                        d.write_keeping_mtime(path, &data);
                    } else {
                        d.write(path, &data);
                    }
                }
            }
        }
        if rng.chance(20) {
            let path = shared[rng.below(shared.len() as u64) as usize];
            let old = cloud.files().get(path).cloned();
            v.replace(old.as_deref());
            let data = v.new_version(&mut rng, 200);
            cloud.put(path, &data);
        }
        let children: Vec<Child> = devices.iter().map(|d| spawn(d, &["--json", "sync", "--yes"])).collect();
        for c in children {
            let out = wait(c, Duration::from_secs(180), "a device's sync");
            conflicts += result(&out)["report"]["conflicts"].as_u64().unwrap_or(0);
        }
        let mut places: Vec<BTreeMap<String, Vec<u8>>> = devices.iter().map(Device::files).collect();
        places.push(cloud.files());
        v.check(
            &format!("{kind:?} devices, round {round}"),
            &places.iter().collect::<Vec<_>>(),
        );
    }
    // Edits stop: every device converges with the cloud.
    for cycle in 0.. {
        let mut planned = 0;
        for d in &devices {
            let out = d.run(&["--json", "sync", "--yes"]);
            let r = result(&out);
            assert_eq!(r["result"]["state"], "COMPLETED", "{kind:?}: {r}");
            planned += r["report"]["planned"].as_u64().unwrap();
        }
        if planned == 0 {
            break;
        }
        assert!(cycle < 6, "{kind:?}: the devices do not converge");
    }
    for (i, d) in devices.iter().enumerate() {
        assert_settled(&format!("{kind:?} device {i}"), d, &cloud);
    }
    let mut places: Vec<BTreeMap<String, Vec<u8>>> = devices.iter().map(Device::files).collect();
    places.push(cloud.files());
    v.check(&format!("{kind:?} devices settled"), &places.iter().collect::<Vec<_>>());
    // Every version a user wrote and did not replace is on every device.
    (conflicts, v.written.len())
}

#[test]
fn three_devices_on_one_cloud_keep_every_concurrent_edit() {
    let rounds = 50 * scale();
    for (kind, base) in [(Kind::Folder, 11), (Kind::WebDav, 12), (Kind::S3, 13)] {
        let started = Instant::now();
        let (conflicts, versions) = devices_campaign(kind, rounds, base);
        println!(
            "devices campaign {kind:?}: 3 devices, {rounds} rounds, {versions} versions written, \
             {conflicts} conflict copies, 0 lost, {:.0?}",
            started.elapsed()
        );
    }
}

/// Syncs through a proxy breaking `rate` percent of what passes.
fn faults_campaign(kind: Kind, rounds: usize, rate: u64, base_seed: u64) -> (u64, u64, usize) {
    let mut rng = Rng(seed(base_seed));
    let dir = tempfile::tempdir().unwrap();
    let cloud = CloudSide::start(kind, dir.path());
    let port = cloud.server.as_ref().unwrap().port;
    let proxy = Proxy::start(port, rate, seed(base_seed + 100));
    let url = cloud.url.replace(&format!(":{port}"), &format!(":{}", proxy.port));
    let devices: Vec<Device> = (0..2)
        .map(|i| Device {
            root: dir.path().join(format!("device{i}")),
            url: url.clone(),
            env: cloud.env.clone(),
        })
        .collect();
    let mut v = Versions::default();
    let mut runs = 0;
    for round in 0..rounds {
        for d in &devices {
            for _ in 0..1 + rng.below(3) {
                edit(&mut rng, &mut v, d, &cloud, 20);
            }
        }
        for d in &devices {
            // Every run ends, whatever the proxy does: no hang.
            let out = wait(
                spawn(d, &["--json", "sync", "--yes"]),
                Duration::from_secs(240),
                "a faulted run",
            );
            runs += 1;
            let r = result(&out);
            assert!(
                !r.is_null(),
                "{kind:?} round {round}: a run ended without its result: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut places: Vec<BTreeMap<String, Vec<u8>>> = devices.iter().map(Device::files).collect();
        places.push(cloud.files());
        v.check(
            &format!("{kind:?} faults, round {round}"),
            &places.iter().collect::<Vec<_>>(),
        );
    }
    // Still faulted, the devices converge (runs that fail are run again).
    for d in devices.iter().chain(devices.iter()) {
        let mut done = false;
        for _ in 0..40 {
            let out = wait(
                spawn(d, &["--json", "sync", "--yes"]),
                Duration::from_secs(240),
                "a settling run",
            );
            runs += 1;
            let r = result(&out);
            if std::env::var("CAMPAIGN_TRACE").is_ok() {
                eprintln!(
                    "settling: {} {} {}",
                    r["result"], r["report"]["planned"], r["report"]["last_error"]
                );
            }
            if r["report"]["planned"] == 0 && r["result"]["state"] == "COMPLETED" {
                done = true;
                break;
            }
        }
        assert!(done, "{kind:?}: no convergence through the faults");
    }
    // (Staging objects that broken requests left go with each device's
    // next start.)
    proxy.set_rate(0);
    for d in &devices {
        settle(d, 4);
    }
    let mut places: Vec<BTreeMap<String, Vec<u8>>> = devices.iter().map(Device::files).collect();
    places.push(cloud.files());
    v.check(&format!("{kind:?} faults settled"), &places.iter().collect::<Vec<_>>());
    for d in &devices {
        assert_settled(&format!("{kind:?} faults"), d, &cloud);
    }
    let c = &proxy.counts;
    (
        c.requests.load(std::sync::atomic::Ordering::Relaxed),
        c.faults.load(std::sync::atomic::Ordering::Relaxed),
        runs,
    )
}

#[test]
fn through_a_proxy_breaking_requests_every_run_ends_and_nothing_is_lost() {
    let rounds = 12 * scale();
    for (kind, base) in [(Kind::WebDav, 21), (Kind::S3, 22)] {
        let started = Instant::now();
        let (requests, faults, runs) = faults_campaign(kind, rounds, 15, base);
        println!(
            "faults campaign {kind:?}: {runs} runs, {requests} requests, {faults} broken ({:.1} %), {:.0?}",
            faults as f64 * 100.0 / requests.max(1) as f64,
            started.elapsed()
        );
        assert!(faults * 100 >= requests * 10, "at least 10 % broken");
    }
}
