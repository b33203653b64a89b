use std::time::Duration;

mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "command",
    });
}

use bindings::ohos::cloudsync::engine::{self, EventBody, TickResult};
use bindings::ohos::cloudsync::file_cache::CloudFileCache;
use bindings::ohos::cloudsync::on_demand;
use bindings::ohos::cloudsync::sync::{self as sync_api, Confirmation, SyncObject};
use bindings::ohos::cloudsync::types::{self, State, SyncState};

const USAGE: &str = "usage: cloudsync-wasi [--root DIR] [--cloud dir:///DIR] [--app BUNDLE] [--json] [-v] COMMAND
commands:
  sync [--gallery] [--dry-run] [--yes] [--confirm-empty-device] [--confirm-empty-cloud]
  download URI|PATH
  status [--gallery]
  state URI|PATH...";

/// The listener id this command registers.
const LISTENER: u64 = 1;
/// How long to wait between ticks while the engine waits on nothing it can do.
const WAIT: Duration = Duration::from_millis(5);

struct Args {
    app: String,
    /// The device root (`--root`, else `CLOUDSYNC_ROOT`), for its lock.
    root: Option<String>,
    json: bool,
    /// Each decision of a sync run on stderr.
    verbose: bool,
    command: String,
    flags: Vec<String>,
    operands: Vec<String>,
}

fn parse() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut app = std::env::var("CLOUDSYNC_APP").unwrap_or_else(|_| "cloudsync.cli".to_string());
    let mut root = std::env::var("CLOUDSYNC_ROOT").ok();
    let mut json = false;
    let mut verbose = false;
    let mut command = None;
    let mut flags = Vec::new();
    let mut operands = Vec::new();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        match name.as_str() {
            // Read by the adapter (the root here too, for its lock).
            "--root" => root = Some(inline.map_or_else(|| args.next().ok_or("--root needs a value".to_string()), Ok)?),
            "--cloud" | "--permission" => {
                if inline.is_none() {
                    args.next().ok_or_else(|| format!("{name} needs a value"))?;
                }
            }
            "--app" => app = inline.map_or_else(|| args.next().ok_or("--app needs a value".to_string()), Ok)?,
            "--json" => json = true,
            "-v" | "-vv" | "--verbose" => verbose = true,
            "--not-system-app" => {}
            "-h" | "--help" => return Err(String::new()),
            f if f.starts_with("--") => flags.push(f.to_string()),
            _ if command.is_none() => command = Some(arg),
            _ => operands.push(arg),
        }
    }
    let command = command.ok_or_else(|| "no command given".to_string())?;
    Ok(Args {
        app,
        root: root.map(|r| r.trim_end_matches('/').to_string()),
        json,
        verbose,
        command,
        flags,
        operands,
    })
}

pub fn main() -> i32 {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("cloudsync: {e}");
            }
            eprintln!("{USAGE}");
            return 2;
        }
    };
    // Before the engine recovers or writes anything: one run per root.
    match args.root.as_deref().map(crate::lock::RootLock::take) {
        Some(Ok(lock)) => HELD.with(|h| *h.borrow_mut() = Some(lock)),
        Some(Err(why)) => {
            eprintln!("cloudsync: {why}");
            return 1;
        }
        None => {}
    }
    let code = run_locked(&args);
    if let Some(lock) = HELD.with(|h| h.borrow_mut().take()) {
        lock.release();
    }
    code
}

thread_local! {
    /// The root's lock while the command runs, refreshed as it drives the engine.
    static HELD: std::cell::RefCell<Option<crate::lock::RootLock>> = const { std::cell::RefCell::new(None) };
}

fn run_locked(args: &Args) -> i32 {
    if let Err(e) = engine::init() {
        return fail(&e);
    }
    let known: &[&str] = match args.command.as_str() {
        "sync" => &[
            "--gallery",
            "--dry-run",
            "--yes",
            "--confirm-empty-device",
            "--confirm-empty-cloud",
        ],
        "status" => &["--gallery"],
        _ => &[],
    };
    if let Some(f) = args.flags.iter().find(|f| !known.contains(&f.as_str())) {
        eprintln!("cloudsync: {} takes no {f}\n{USAGE}", args.command);
        return 2;
    }
    let has = |f: &str| args.flags.iter().any(|g| g == f);
    let result = match args.command.as_str() {
        "sync" => sync(
            args,
            has("--gallery"),
            has("--dry-run"),
            Confirmation {
                deletions: has("--yes"),
                empty_device: has("--confirm-empty-device"),
                empty_cloud: has("--confirm-empty-cloud"),
            },
        ),
        "download" => match args.operands.as_slice() {
            [target] => download(args, target),
            _ => Err(usage("download takes one URI or path")),
        },
        "status" => status(args, has("--gallery")),
        "state" if !args.operands.is_empty() => state(args),
        "state" => Err(usage("state takes URIs or paths")),
        other => Err(usage(&format!("no command {other:?}"))),
    };
    match result {
        Ok(code) => code,
        Err(e) if e.code == 2 => {
            eprintln!("cloudsync: {}\n{USAGE}", e.message);
            2
        }
        Err(e) => fail(&e),
    }
}

fn usage(message: &str) -> types::Error {
    types::Error {
        code: 2,
        message: message.to_string(),
    }
}

fn fail(e: &types::Error) -> i32 {
    eprintln!("cloudsync: {} (code {})", e.message, e.code);
    1
}

fn uri_of(args: &Args, target: &str) -> String {
    if target.starts_with("file://") {
        target.to_string()
    } else {
        let path: String = target
            .trim_start_matches('/')
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        format!("file://{}/data/storage/el2/cloud/{path}", args.app)
    }
}

/// Ticks the engine until it is idle, showing each event to `seen` (and
/// why a download failed, to people; a sync's decisions to `seen` too).
fn drive(mut seen: impl FnMut(&EventBody)) {
    loop {
        HELD.with(|h| h.borrow_mut().as_mut().map(crate::lock::RootLock::refresh));
        let outcome = engine::tick();
        for event in &outcome.events {
            if let EventBody::FailureReason((uri, reason)) = &event.body {
                eprintln!("cloudsync: {uri}: {reason}");
            } else if event.listener == LISTENER || matches!(event.body, EventBody::Decision(_)) {
                seen(&event.body);
            }
        }
        match outcome.next {
            TickResult::More => {}
            TickResult::Waiting => std::thread::sleep(WAIT),
            TickResult::Idle => return,
        }
    }
}

/// The seed's name of an error type (as the native command line prints it).
fn error_type(e: types::ErrorType) -> &'static str {
    use types::ErrorType as E;
    match e {
        E::NoError => "NO_ERROR",
        E::NetworkUnavailable => "NETWORK_UNAVAILABLE",
        E::WifiUnavailable => "WIFI_UNAVAILABLE",
        E::BatteryLevelLow => "BATTERY_LEVEL_LOW",
        E::BatteryLevelWarning => "BATTERY_LEVEL_WARNING",
        E::CloudStorageFull => "CLOUD_STORAGE_FULL",
        E::LocalStorageFull => "LOCAL_STORAGE_FULL",
        E::DeviceTemperatureTooHigh => "DEVICE_TEMPERATURE_TOO_HIGH",
    }
}

fn sync_state(s: SyncState) -> &'static str {
    match s {
        SyncState::Uploading => "UPLOADING",
        SyncState::UploadFailed => "UPLOAD_FAILED",
        SyncState::Downloading => "DOWNLOADING",
        SyncState::DownloadFailed => "DOWNLOAD_FAILED",
        SyncState::Completed => "COMPLETED",
        SyncState::Stopped => "STOPPED",
    }
}

fn sync_action(a: types::SyncAction) -> &'static str {
    use types::SyncAction as A;
    match a {
        A::Upload => "upload",
        A::Download => "download",
        A::DeleteLocal => "delete-local",
        A::DeleteCloud => "delete-cloud",
        A::Conflict => "conflict",
        A::Record => "record",
        A::Placeholder => "placeholder",
        A::Forget => "forget",
        A::Skip => "skip",
        A::Refuse => "refuse",
        A::Fail => "fail",
    }
}

/// A JSON string literal.
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn sync(args: &Args, gallery: bool, dry_run: bool, confirm: Confirmation) -> Result<i32, types::Error> {
    let syncer = if gallery {
        SyncObject::gallery_sync()?
    } else {
        SyncObject::file_sync(None)?
    };
    let started = std::time::SystemTime::now();
    syncer.on("progress", LISTENER)?;
    if dry_run {
        syncer.plan(confirm)?;
    } else {
        syncer.start(confirm)?;
    }
    let mut last = None;
    let mut planned = 0u64;
    drive(|body| {
        if let EventBody::Decision(d) = body {
            let (action, path) = (sync_action(d.action), &d.path);
            if dry_run && args.json {
                println!(
                    "{{\"plan\":{},\"path\":{},\"reason\":{}}}",
                    quoted(action),
                    quoted(path),
                    quoted(&d.reason)
                );
            } else if dry_run {
                println!("{action:<12} {path}  ({})", d.reason);
            } else if args.verbose {
                eprintln!("cloudsync: {action} {path}: {}", d.reason);
            }
            planned += u64::from(d.dry_run && d.action != types::SyncAction::Record);
            return;
        }
        let EventBody::Sync(p) = body else { return };
        if args.json {
            println!(
                "{{\"state\":\"{}\",\"error\":\"{}\"}}",
                sync_state(p.state),
                error_type(p.error)
            );
        }
        last = Some(*p);
    });
    let report = syncer.report()?;
    let Some(last) = last else {
        eprintln!("cloudsync: the run ended without a final state");
        return Ok(1);
    };
    let refused = report.refusal.is_some() && last.state == SyncState::Stopped;
    if dry_run {
        match &report.refusal {
            Some(refusal) => println!("dry run: refused, nothing would be changed: {refusal}"),
            None => println!("dry run: {planned} steps planned; nothing was changed"),
        }
        return Ok(if refused {
            3
        } else {
            i32::from(last.state != SyncState::Completed)
        });
    }
    let state = if refused { "REFUSED" } else { sync_state(last.state) };
    let error = if last.error == types::ErrorType::NoError {
        String::new()
    } else {
        format!(" ({})", error_type(last.error))
    };
    println!(
        "{state}{error}: {} uploaded, {} downloaded, {} deleted here, {} deleted in the cloud, {} conflicts, {} failed, {} skipped in {:.1?}",
        report.uploaded,
        report.downloaded,
        report.deleted_local,
        report.deleted_remote,
        report.conflicts,
        report.failed,
        report.skipped_total,
        started.elapsed().unwrap_or_default()
    );
    if let Some(refusal) = &report.refusal {
        println!("  refused, nothing was changed: {refusal}");
    }
    for f in report.failures.iter().take(20) {
        println!("  failed: {}: {}", f.path, f.reason);
    }
    for f in report.skipped.iter().take(20) {
        println!("  skipped: {}: {}", f.path, f.reason);
    }
    for n in &report.notes {
        println!("  note: {n}");
    }
    if let Some(e) = &report.last_error {
        if last.state != SyncState::Completed && report.failures.is_empty() {
            println!("  last failure: {e}");
        }
    }
    Ok(match last.state {
        SyncState::Completed => 0,
        SyncState::Stopped if refused => 3,
        SyncState::Stopped => 130,
        _ => 1,
    })
}

fn download(args: &Args, target: &str) -> Result<i32, types::Error> {
    let uri = uri_of(args, target);
    let cache = CloudFileCache::new();
    cache.on("progress", LISTENER)?;
    cache.start(&uri)?;
    let mut last = None;
    drive(|body| {
        let EventBody::Download(p) = body else { return };
        if args.json {
            println!(
                "{{\"state\":\"{:?}\",\"processed\":{},\"size\":{},\"uri\":{:?}}}",
                p.state, p.processed, p.size, p.uri
            );
        }
        last = Some(p.clone());
    });
    match last {
        Some(p) if p.state == State::Completed => {
            println!("downloaded {} ({} bytes)", p.uri, p.size);
            Ok(0)
        }
        Some(p) => {
            println!("{:?} ({:?}): {}", p.state, p.error, p.uri);
            Ok(1)
        }
        None => {
            eprintln!("cloudsync: the download ended without a final state");
            Ok(1)
        }
    }
}

fn file_state(s: types::FileSyncState) -> &'static str {
    use types::FileSyncState as F;
    match s {
        F::Uploading => "UPLOADING",
        F::Downloading => "DOWNLOADING",
        F::Completed => "COMPLETED",
        F::Stopped => "STOPPED",
        F::ToBeUploaded => "TO_BE_UPLOADED",
        F::UploadSuccess => "UPLOAD_SUCCESS",
        F::UploadFailure => "UPLOAD_FAILURE",
    }
}

fn status(_args: &Args, gallery: bool) -> Result<i32, types::Error> {
    let mut after: Option<String> = None;
    loop {
        let page = on_demand::list_files(gallery, after.as_deref(), 1000)?;
        for f in &page.files {
            let place = if f.cloud_only { "cloud only" } else { "local" };
            println!("{:<15} {:>12} {place:<10} {}", file_state(f.state), f.size, f.uri);
        }
        for s in &page.skipped {
            println!("{:<15} {:>12} {:<10} {}: {}", "SKIPPED", "", "", s.path, s.reason);
        }
        match page.next {
            Some(n) => after = Some(n),
            None => return Ok(0),
        }
    }
}

fn state(args: &Args) -> Result<i32, types::Error> {
    let uris: Vec<String> = args.operands.iter().map(|t| uri_of(args, t)).collect();
    let states = sync_api::get_file_sync_states(&uris)?;
    for (uri, s) in uris.iter().zip(states) {
        println!("{} {uri}", file_state(s));
    }
    Ok(0)
}
