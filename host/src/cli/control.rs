//! One running `sync` or `watch` per root, and `cloudsync stop` from
//! another terminal: the running command keeps `<root>/cloudsync.pid`
//! (its pid and the kernel's start time of that pid, so a pid reused by
//! another process is never signalled); `stop` sends it SIGTERM, which it
//! takes as Ctrl-C: the run stops cleanly, and the command exits.
//!
//! Ctrl-C and SIGTERM reach a running loop through [`StopSignal`]; outside
//! one (opening a cloud that does not answer, say), or the second time, they
//! end the process at once: every step is crash-safe, so nothing is lost.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

pub const PID_FILE: &str = "cloudsync.pid";
const PID_TEMP: &str = "cloudsync.pid.tmp";

/// Loops that stop their work cleanly on a signal, running now.
static STOPPABLE: AtomicUsize = AtomicUsize::new(0);
static SIGNALS: std::sync::OnceLock<watch::Sender<u32>> = std::sync::OnceLock::new();

/// Listens for Ctrl-C and SIGTERM for the whole process.
pub fn listen_for_signals() {
    let (tx, _) = watch::channel(0u32);
    let _ = SIGNALS.set(tx);
    tokio::spawn(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).ok();
        // The terminal closed: as SIGTERM, so the run ends cleanly.
        let mut hangup = signal(SignalKind::hangup()).ok();
        let mut seen = 0;
        loop {
            let name = tokio::select! {
                r = tokio::signal::ctrl_c() => { if r.is_err() { return; } "interrupted" }
                Some(()) = async { match term.as_mut() { Some(t) => t.recv().await, None => None } } => "stopped (SIGTERM)",
                Some(()) = async { match hangup.as_mut() { Some(t) => t.recv().await, None => None } } => "stopped (SIGHUP)",
            };
            seen += 1;
            if seen >= 2 || STOPPABLE.load(Ordering::SeqCst) == 0 {
                eprintln!("cloudsync: {name}");
                std::process::exit(130);
            }
            tracing::info!("{name}: stopping the run");
            if let Some(tx) = SIGNALS.get() {
                tx.send_modify(|n| *n += 1);
            }
        }
    });
}

/// Held while a loop that stops cleanly runs; `stopped()` resolves on the
/// first Ctrl-C or SIGTERM after it was made.
pub struct StopSignal {
    rx: Option<watch::Receiver<u32>>,
}

impl StopSignal {
    pub fn claim() -> Self {
        STOPPABLE.fetch_add(1, Ordering::SeqCst);
        let rx = SIGNALS.get().map(|tx| {
            let mut rx = tx.subscribe();
            rx.mark_unchanged();
            rx
        });
        StopSignal { rx }
    }

    /// Resolves when a stop is asked for (never, without a listener).
    pub async fn stopped(&mut self) {
        match self.rx.as_mut() {
            Some(rx) => {
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await
                }
            }
            None => std::future::pending::<()>().await,
        }
    }
}

impl Drop for StopSignal {
    fn drop(&mut self) {
        STOPPABLE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The kernel's start time of `pid` (clock ticks since boot), which tells
/// one process from a later one given the same pid; `None` once it ended
/// (a zombie waiting for its parent has ended too).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses.
    let mut fields = stat[stat.rfind(')')? + 2..].split(' ');
    if matches!(fields.next(), Some("Z" | "X")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Whether `pid` runs this very program (its executable is ours), or one
/// named `cloudsync` (ours was upgraded since it started).
fn is_cloudsync(pid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let exe = |p: &str| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    if exe(&format!("/proc/{pid}/exe")).is_some_and(|e| Some(e) == exe("/proc/self/exe")) {
        return true;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    let argv0: &std::ffi::OsStr = std::os::unix::ffi::OsStrExt::from_bytes(argv0);
    Path::new(argv0).file_name() == Some("cloudsync".as_ref())
}

/// `<root>/cloudsync.pid` while this command runs; removed when dropped.
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Written fresh (a link left at either name is replaced, never
    /// followed) and renamed into place.
    pub fn write(root: &Path, what: &str) -> std::io::Result<PidFile> {
        let pid = std::process::id();
        let started = start_time(pid).unwrap_or(0);
        let temp = root.join(PID_TEMP);
        let _ = std::fs::remove_file(&temp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&temp)?;
        writeln!(f, "{pid} {started} {what}")?;
        drop(f);
        let path = root.join(PID_FILE);
        std::fs::rename(&temp, &path)?;
        Ok(PidFile { path })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Only ours: another command may have started since (it waited on
        // the metadata store, which this one held).
        if read(&self.path).is_some_and(|r| r.pid == std::process::id()) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

struct Running {
    pid: u32,
    started: u64,
    what: String,
}

fn read(path: &Path) -> Option<Running> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(&mut f, 4096), &mut text).ok()?;
    let mut parts = text.trim().splitn(3, ' ');
    Some(Running {
        pid: parts.next()?.parse().ok()?,
        started: parts.next()?.parse().ok()?,
        what: parts.next().unwrap_or("").to_string(),
    })
}

/// What `stop` found and did.
pub enum Stopped {
    /// Nothing of this root was running.
    NothingRunning,
    /// It ended after the signal.
    Ended(String),
    /// It was signalled but still runs after `wait`.
    StillRunning(String),
}

/// Asks the `sync` or `watch` running on `root` to stop, and waits up to
/// `wait` for it to end.
pub fn stop(root: &Path, wait: Duration) -> std::io::Result<Stopped> {
    let Some(running) = read(&root.join(PID_FILE)) else {
        return Ok(Stopped::NothingRunning);
    };
    // A file left by a process that died (kill -9), a pid now another's,
    // or a file naming some other program: only a cloudsync is signalled.
    if running.pid == 0
        || start_time(running.pid) != Some(running.started)
        || running.pid == std::process::id()
        || !is_cloudsync(running.pid)
    {
        return Ok(Stopped::NothingRunning);
    }
    // SAFETY: kill(2) with a pid checked above to be the recorded process.
    if unsafe { libc::kill(running.pid as libc::pid_t, libc::SIGTERM) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let until = Instant::now() + wait;
    while Instant::now() < until {
        if start_time(running.pid) != Some(running.started) {
            return Ok(Stopped::Ended(running.what));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Stopped::StillRunning(running.what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_file_names_this_process_and_goes_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = PidFile::write(dir.path(), "watch").unwrap();
        let r = read(&dir.path().join(PID_FILE)).unwrap();
        assert_eq!((r.pid, r.what.as_str()), (std::process::id(), "watch"));
        assert_eq!(Some(r.started), start_time(r.pid));
        // Never this very process.
        assert!(matches!(
            stop(dir.path(), Duration::ZERO).unwrap(),
            Stopped::NothingRunning
        ));
        drop(file);
        assert!(!dir.path().join(PID_FILE).exists());
    }

    #[test]
    fn only_a_cloudsync_is_ever_signalled() {
        let dir = tempfile::tempdir().unwrap();
        // A live process that is no cloudsync, named with its true start time.
        let mut other = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let started = start_time(other.id()).unwrap();
        std::fs::write(dir.path().join(PID_FILE), format!("{} {started} watch", other.id())).unwrap();
        assert!(matches!(
            stop(dir.path(), Duration::ZERO).unwrap(),
            Stopped::NothingRunning
        ));
        assert!(other.try_wait().unwrap().is_none(), "the other process was signalled");
        other.kill().unwrap();
        other.wait().unwrap();
    }

    #[test]
    fn a_stale_pid_file_stops_nothing() {
        let dir = tempfile::tempdir().unwrap();
        // pid 1 exists but started at another time than recorded.
        std::fs::write(dir.path().join(PID_FILE), "1 12345678901 sync").unwrap();
        assert!(matches!(
            stop(dir.path(), Duration::ZERO).unwrap(),
            Stopped::NothingRunning
        ));
        std::fs::write(dir.path().join(PID_FILE), "garbage").unwrap();
        assert!(matches!(
            stop(dir.path(), Duration::ZERO).unwrap(),
            Stopped::NothingRunning
        ));
    }

    #[test]
    fn a_link_at_the_pid_file_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, "keep").unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink(&outside, root.join(PID_TEMP)).unwrap();
        std::os::unix::fs::symlink(&outside, root.join(PID_FILE)).unwrap();
        assert!(read(&root.join(PID_FILE)).is_none());
        let f = PidFile::write(&root, "sync").unwrap();
        drop(f);
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep");
    }
}
