//! One command at a time on a root: `<root>/wasi.lock`, made exclusively
//! before the engine touches anything and removed when the command ends.
//! WASI gives no process identity to tell a killed holder by, so the
//! holder keeps the lock fresh (its mtime, every few seconds while it
//! runs); one not refreshed for [`STALE`] was left by a killed run and is
//! taken over.

use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::time::{Duration, Instant, SystemTime};

/// A lock older than this was left by a run that was killed (one step of
/// the engine, hashing a big file, may keep a live holder from refreshing
/// for a while).
pub const STALE: Duration = Duration::from_secs(60);
/// How often a holder refreshes its lock.
const REFRESH: Duration = Duration::from_secs(5);

pub struct RootLock {
    path: String,
    token: String,
    refreshed: Instant,
}

impl RootLock {
    /// Takes the lock of `root` (made if missing), or says who holds it.
    pub fn take(root: &str) -> Result<RootLock, String> {
        std::fs::create_dir_all(root).map_err(|e| format!("cannot make {root}: {e}"))?;
        let path = format!("{root}/wasi.lock");
        let token = format!(
            "{:016x}",
            std::collections::hash_map::RandomState::new().build_hasher().finish()
        );
        for _ in 0..2 {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    f.write_all(token.as_bytes())
                        .map_err(|e| format!("cannot write {path}: {e}"))?;
                    return Ok(RootLock {
                        path,
                        token,
                        refreshed: Instant::now(),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let meta = std::fs::symlink_metadata(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
                    if !meta.is_file() {
                        return Err(format!("{path} is not a regular file (links are never followed)"));
                    }
                    // A stamp ahead of the clock (the clock stepped back) is
                    // no proof of a live holder: only a recent one is.
                    let age = meta
                        .modified()
                        .ok()
                        .map(|m| match SystemTime::now().duration_since(m) {
                            Ok(age) => age,
                            Err(ahead) if ahead.duration() < STALE => Duration::ZERO,
                            Err(_) => STALE,
                        })
                        .unwrap_or_default();
                    if age < STALE {
                        return Err(format!(
                            "{root} is in use by another cloudsync run ({path} was refreshed {}s ago); \
                             wait for it to end (a killed run's lock is taken over after {}s)",
                            age.as_secs(),
                            STALE.as_secs()
                        ));
                    }
                    // Left by a killed run: set aside (one taker wins the
                    // rename), then made anew.
                    let aside = format!("{path}.stale-{token}");
                    if std::fs::rename(&path, &aside).is_ok() {
                        let _ = std::fs::remove_file(&aside);
                    }
                }
                Err(e) => return Err(format!("cannot make {path}: {e}")),
            }
        }
        Err(format!(
            "{root} is in use by another cloudsync run, which has just taken {path}"
        ))
    }

    /// Keeps the lock fresh while the command runs (cheap between
    /// refreshes). A lock taken over meanwhile (this run was stopped past
    /// [`STALE`], say) is another run's now: this one ends at once, as a
    /// crash would, which loses nothing.
    pub fn refresh(&mut self) {
        if self.refreshed.elapsed() < REFRESH {
            return;
        }
        self.refreshed = Instant::now();
        if !std::fs::read_to_string(&self.path).is_ok_and(|t| t == self.token) {
            eprintln!(
                "cloudsync: {} was taken over by another run (this one was stopped too long); ending",
                self.path
            );
            std::process::exit(1);
        }
        if let Ok(mut f) = std::fs::OpenOptions::new().write(true).truncate(true).open(&self.path) {
            let _ = f.write_all(self.token.as_bytes());
        }
    }

    /// Ends the hold: the lock goes if it is still this command's.
    pub fn release(self) {
        if std::fs::read_to_string(&self.path).is_ok_and(|t| t == self.token) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
