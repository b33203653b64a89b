//! `cloudsync watch`: keeps a folder in sync. Local changes come from the
//! file system's notifications (inotify, through `notify`), debounced; the
//! cloud's by polling, backing off while it cannot be reached. One run at a
//! time: changes seen during a run start another after it. The wall clock
//! is checked every second, so a machine that slept polls when it wakes.
//! Ctrl-C or `cloudsync stop` stops the running run and ends the watch.
//! After a run that could not start or failed as a whole, the cloud is
//! opened afresh: a folder cloud replaced or a drive remounted under the
//! watch is the one at its path again, never the old one held open.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use cloudsync::{codes, Confirm, SyncState};
use notify::Watcher;
use tokio::sync::mpsc;

use crate::control::StopSignal;
use crate::{pid_file, progress_events, run_once, Failure, Opener, Syncer, Target};

pub struct Options {
    /// How often the cloud is looked at.
    pub interval: Duration,
    /// Quiet after a local change before a run starts.
    pub debounce: Duration,
    pub confirm: Confirm,
    pub json: bool,
}

/// A run waits at most this many debounce periods for quiet: a folder
/// written to without pause still syncs.
const MAX_DEBOUNCES: u32 = 10;
/// Backoff while the cloud cannot be reached: up to this times the interval.
const MAX_BACKOFF: u32 = 16;

/// The folder's notifications, and what is watched (re-armed when the
/// folder is made or replaced).
struct LocalChanges {
    folder: PathBuf,
    tx: mpsc::UnboundedSender<()>,
    rx: mpsc::UnboundedReceiver<()>,
    watcher: Option<(notify::RecommendedWatcher, u64)>,
    said: bool,
}

impl LocalChanges {
    fn new(folder: &Path) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        LocalChanges {
            folder: folder.to_path_buf(),
            tx,
            rx,
            watcher: None,
            said: false,
        }
    }

    /// Watches the folder as it is now; a folder not there yet (a first
    /// sync makes it) or one that cannot be watched is polled only.
    fn arm(&mut self) {
        use std::os::unix::fs::MetadataExt;
        let inode = std::fs::symlink_metadata(&self.folder)
            .ok()
            .filter(|m| m.is_dir())
            .map(|m| m.ino());
        if self.watcher.as_ref().map(|(_, i)| *i) == inode && inode.is_some() {
            return;
        }
        self.watcher = None;
        let Some(inode) = inode else { return };
        let tx = self.tx.clone();
        let made = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // Reads change nothing; anything else (an overflow included) may.
            if !matches!(&event, Ok(e) if e.kind.is_access()) {
                let _ = tx.send(());
            }
        })
        .and_then(|mut w| w.watch(&self.folder, notify::RecursiveMode::Recursive).map(|_| w));
        match made {
            Ok(w) => {
                tracing::info!(folder = %self.folder.display(), "watching for local changes");
                self.watcher = Some((w, inode));
            }
            Err(e) if !self.said => {
                self.said = true;
                tracing::warn!(
                    folder = %self.folder.display(),
                    "cannot watch the folder ({e}); local changes are found when the cloud is polled"
                );
            }
            Err(_) => {}
        }
    }

    /// Whether anything changed since the last call.
    fn drain(&mut self) -> bool {
        let mut any = false;
        while self.rx.try_recv().is_ok() {
            any = true;
        }
        any
    }
}

pub async fn watch(opener: &Opener, target: &Target, o: Options) -> Result<ExitCode, Failure> {
    let mut rt = opener.open().await?;
    let _running = pid_file(&opener.root, "watch");
    let mut syncer = Syncer::open(&rt, target)?;
    let mut events = progress_events(&syncer)?;
    let folder = &opener.folder(&rt, target);
    let mut reopen = false;
    let mut local = LocalChanges::new(folder);
    local.arm();
    let mut stop = StopSignal::claim();
    let mut backoff = 1u32;
    // The first run starts at once.
    let mut due = SystemTime::now();
    let mut dirty = true;
    if !o.json {
        println!(
            "watching {} (the cloud every {}s); Ctrl-C or `cloudsync stop` ends it",
            folder.display(),
            o.interval.as_secs()
        );
    }
    loop {
        // Idle: until a local change, the next poll, or a stop.
        while !dirty && SystemTime::now() < due {
            tokio::select! {
                _ = stop.stopped() => return Ok(ExitCode::SUCCESS),
                Some(()) = local.rx.recv() => dirty = true,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    // A folder that was gone is back: watch it, and sync.
                    if local.watcher.is_none() && folder.is_dir() {
                        local.arm();
                        dirty = true;
                    }
                }
            }
        }
        if dirty {
            // Debounced: a burst of writes is one run.
            let started = Instant::now();
            loop {
                tokio::select! {
                    _ = stop.stopped() => return Ok(ExitCode::SUCCESS),
                    Some(()) = local.rx.recv() => {
                        if started.elapsed() >= o.debounce * MAX_DEBOUNCES {
                            break;
                        }
                        continue;
                    }
                    _ = tokio::time::sleep(o.debounce) => break,
                }
            }
            local.drain();
        }
        dirty = false;
        if reopen {
            // The old runtime (and its hold on the root) goes first.
            drop(events);
            drop(syncer);
            drop(rt);
            rt = match reopened(opener, &mut stop, o.interval, o.json).await? {
                Some(rt) => rt,
                None => return Ok(ExitCode::SUCCESS),
            };
            syncer = Syncer::open(&rt, target)?;
            events = progress_events(&syncer)?;
        }
        let outcome = run_once(&syncer, &mut events, o.json, false, syncer.start(o.confirm)).await;
        let outcome = match outcome {
            Ok(outcome) => outcome,
            // The device or the cloud is not ready: wait, and try again.
            Err(Failure::Api(e))
                if matches!(
                    e.code,
                    codes::NETWORK_UNAVAILABLE | codes::CLOUD_NOT_READY | codes::LOW_BATTERY
                ) =>
            {
                backoff = (backoff * 2).min(MAX_BACKOFF);
                let wait = o.interval * backoff;
                tracing::warn!(
                    code = e.code,
                    retry_in_s = wait.as_secs(),
                    "cannot sync now: {}",
                    e.message
                );
                if o.json {
                    println!(
                        "{}",
                        serde_json::json!({ "error": { "code": e.code, "message": e.message }, "retry_in_s": wait.as_secs() })
                    );
                } else {
                    println!(
                        "{}: cannot sync now ({}); trying again in {}s",
                        now(),
                        e.message,
                        wait.as_secs()
                    );
                }
                due = SystemTime::now() + wait;
                reopen = true;
                continue;
            }
            Err(e) => return Err(e),
        };
        outcome.log();
        if let Some(fault) = rt.last_fault() {
            tracing::error!("the engine failed: {fault}");
        }
        let r = &outcome.report;
        let changed = r.uploaded + r.downloaded + r.deleted_local + r.deleted_remote + r.conflicts + r.failed > 0;
        if o.json {
            println!(
                "{}",
                serde_json::json!({ "result": outcome.last, "refused": outcome.refused, "report": outcome.report })
            );
        } else if changed || outcome.last.state != SyncState::Completed {
            outcome.print(&format!("{}: ", now()));
        }
        if outcome.stopped {
            return Ok(ExitCode::SUCCESS);
        }
        // A failed pull or push of the whole run (no network) backs off;
        // a run that went through polls at the interval again.
        let through = outcome.last.state == SyncState::Completed || outcome.refused;
        backoff = if through { 1 } else { (backoff * 2).min(MAX_BACKOFF) };
        reopen = !through;
        due = SystemTime::now() + o.interval * backoff;
        // The first run made the folder, or it was replaced meanwhile.
        local.arm();
        // Changes seen during the run (its own among them) start another;
        // one that finds nothing to do changes nothing, and it settles.
        dirty = local.drain();
    }
}

/// The runtime opened again: the one before may take a moment to let go
/// of the root, and a cloud that cannot be opened now (its folder gone, a
/// drive not mounted) is waited for, backing off as a failed run does.
/// `None`: a stop was asked for meanwhile.
async fn reopened(
    opener: &Opener,
    stop: &mut StopSignal,
    interval: Duration,
    json: bool,
) -> Result<Option<cloudsync::Runtime>, Failure> {
    let mut wait = Duration::from_millis(100);
    let mut said = false;
    loop {
        let why = match opener.open().await {
            Ok(rt) => return Ok(Some(rt)),
            Err(Failure::Usage(why)) => why,
            Err(Failure::Api(e)) if e.message.contains("in use") => e.message,
            Err(e) => return Err(e),
        };
        if !said && wait >= interval {
            said = true;
            tracing::warn!("cannot open the cloud: {why}; trying again");
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "warning": format!("cannot open the cloud: {why}") })
                );
            } else {
                println!("{}: cannot open the cloud ({why}); trying again", now());
            }
        }
        tokio::select! {
            _ = stop.stopped() => return Ok(None),
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(interval * MAX_BACKOFF);
    }
}

fn now() -> String {
    jiff::Zoned::now().strftime("%Y-%m-%d %H:%M:%S").to_string()
}
