//! The durable metadata store: one redb database per root. Each commit is
//! one ACID transaction, fsynced, so a record is old or new after a crash,
//! never half written.
//!
//! A damaged store (truncated, overwritten, emptied) is detected when it is
//! opened and never taken for a first sync in silence: it is moved aside
//! (`meta.redb.damaged-<time>`, for whoever wants to look at it), a new one
//! is made, and the caller is told. With no records the engine compares both
//! sides afresh, as Unison does after losing its archive: every difference
//! becomes a conflict copy or a download, and nothing is deleted for want
//! of a record.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, TableDefinition};

const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
/// The store's identity, also kept in a file beside it: a store that lost
/// it (emptied, replaced) is told apart from a new one.
const STORE_ID: &str = "host/store/id";
/// redb's page cache, bounded so memory does not grow with the records.
const META_CACHE: usize = 4 << 20;

/// A failure of the metadata store.
#[derive(Debug, thiserror::Error)]
#[error("metadata store: {0}")]
pub struct MetaError(String);

impl MetaError {
    /// A failure, in words.
    pub fn new(message: impl Into<String>) -> Self {
        MetaError(message.into())
    }
}

/// Where the engine's records are kept: keys and values, each commit all
/// or nothing. The root's redb store (`meta.redb`) is one; a layer over
/// it (see `RuntimeBuilder::wrap_metadata`) may mirror, count or fail it.
pub trait Metadata: Send + Sync {
    /// The value of `key`, if any.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, MetaError>;
    /// At most `max` keys with `prefix` after `after` (from the first with
    /// `prefix` when none), in key order.
    fn scan_page(&self, prefix: &str, after: Option<&str>, max: usize) -> Result<Vec<(String, Vec<u8>)>, MetaError>;
    /// Applies all changes (`None`: remove) in one durable transaction.
    fn commit(&self, changes: &[(String, Option<Vec<u8>>)]) -> Result<(), MetaError>;
}

impl Metadata for MetaStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, MetaError> {
        MetaStore::get(self, key)
    }
    fn scan_page(&self, prefix: &str, after: Option<&str>, max: usize) -> Result<Vec<(String, Vec<u8>)>, MetaError> {
        MetaStore::scan_page(self, prefix, after, max)
    }
    fn commit(&self, changes: &[(String, Option<Vec<u8>>)]) -> Result<(), MetaError> {
        MetaStore::commit(self, changes)
    }
}

fn err(e: impl std::fmt::Display) -> MetaError {
    MetaError(e.to_string())
}

/// The root's store: one redb database (`meta.redb`), held by one process.
pub struct MetaStore {
    db: Database,
}

/// A store as opened, and what a person should know about it.
pub struct OpenedStore {
    pub store: MetaStore,
    /// Set when the store was found damaged or lost and made anew.
    pub warning: Option<String>,
}

impl MetaStore {
    /// Opens (or creates) the store at `path`; only one process may hold it.
    /// A damaged or lost one is set aside and made anew, with a warning
    /// saying so.
    pub fn open_checked(path: &Path) -> Result<OpenedStore, MetaError> {
        let id_file = id_file(path);
        let known_id = std::fs::read_to_string(&id_file).ok().map(|s| s.trim().to_string());
        let mut warning = None;
        let store = match try_open(path) {
            Ok(store) => store,
            Err(Damage::InUse(m)) => return Err(MetaError(m)),
            Err(Damage::Broken(why)) => {
                let aside = set_aside(path).map_err(err)?;
                warning = Some(format!(
                    "the metadata store {} was damaged ({why}); it was moved to {} and made anew. \
                     The next sync compares both sides afresh: every difference is kept as a conflict \
                     copy or downloaded, and nothing is deleted on either side",
                    path.display(),
                    aside.display()
                ));
                try_open(path).map_err(|d| MetaError(d.to_string()))?
            }
        };
        match (known_id, store.get(STORE_ID)?) {
            (Some(known), Some(id)) if known.as_bytes() == id.as_slice() => {}
            (known, None) => {
                // The id file says a store was here: this one lost it.
                if warning.is_none() && known.is_some() && store.scan_page("synced/", None, 1)?.is_empty() {
                    warning = Some(format!(
                        "the metadata store {} was emptied or replaced; the next sync compares both sides \
                         afresh: every difference is kept as a conflict copy or downloaded, and nothing is \
                         deleted on either side",
                        path.display()
                    ));
                }
                let id = new_id();
                store.commit(&[(STORE_ID.to_string(), Some(id.clone().into_bytes()))])?;
                write_id(&id_file, &id).map_err(err)?;
            }
            (_, Some(id)) => {
                // The file beside it was lost or is stale: the store is the truth.
                write_id(&id_file, &String::from_utf8_lossy(&id)).map_err(err)?;
            }
        }
        Ok(OpenedStore { store, warning })
    }

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, MetaError> {
        let txn = self.db.begin_read().map_err(err)?;
        let table = txn.open_table(TABLE).map_err(err)?;
        Ok(table.get(key).map_err(err)?.map(|v| v.value().to_vec()))
    }

    /// Reads every record once, holding none (opening's check).
    fn read_through(&self) -> Result<(), MetaError> {
        let txn = self.db.begin_read().map_err(err)?;
        let table = txn.open_table(TABLE).map_err(err)?;
        for row in redb::ReadableTable::iter(&table).map_err(err)? {
            let (k, v) = row.map_err(err)?;
            std::hint::black_box((k.value().len(), v.value().len()));
        }
        Ok(())
    }

    /// At most `max` keys with `prefix` after `after` (from the first with
    /// `prefix` when none), in key order.
    pub fn scan_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        max: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, MetaError> {
        use std::ops::Bound;
        let txn = self.db.begin_read().map_err(err)?;
        let table = txn.open_table(TABLE).map_err(err)?;
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ => Bound::Included(prefix),
        };
        let mut out = Vec::new();
        for row in table.range::<&str>((start, Bound::Unbounded)).map_err(err)? {
            let (k, v) = row.map_err(err)?;
            if !k.value().starts_with(prefix) || out.len() == max {
                break;
            }
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Applies all changes in one durable transaction.
    pub fn commit(&self, changes: &[(String, Option<Vec<u8>>)]) -> Result<(), MetaError> {
        let txn = self.db.begin_write().map_err(err)?;
        {
            let mut table = txn.open_table(TABLE).map_err(err)?;
            for (key, value) in changes {
                match value {
                    Some(v) => {
                        table.insert(key.as_str(), v.as_slice()).map_err(err)?;
                    }
                    None => {
                        table.remove(key.as_str()).map_err(err)?;
                    }
                }
            }
        }
        txn.commit().map_err(err)
    }
}

#[derive(Debug, thiserror::Error)]
enum Damage {
    #[error("{0}")]
    InUse(String),
    #[error("{0}")]
    Broken(String),
}

/// Opens the database and reads it through once: a store that cannot be
/// opened, fails its integrity check or cannot be read (redb may panic on
/// some damage) is broken.
fn try_open(path: &Path) -> Result<MetaStore, Damage> {
    // A panic here is a finding, reported as damage: its default message
    // and backtrace on stderr would only alarm.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let opened = std::panic::catch_unwind(|| -> Result<MetaStore, Damage> {
        // redb's read cache defaults to 1 GiB: a scan of a million records
        // would fill it; a small one keeps memory flat (the OS caches pages).
        let mut db = Database::builder()
            .set_cache_size(META_CACHE)
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => {
                    Damage::InUse(format!(
                        "{} is in use by another cloudsync on this root (wait for it to end; a `sync` or `watch` can be ended with `cloudsync stop`)",
                        path.display()
                    ))
                }
                other => Damage::Broken(other.to_string()),
            })?;
        // `Ok(false)`: redb found an unclean shutdown (a kill, a power cut)
        // and repaired it, which is what it is for; only what it cannot
        // repair is damage.
        if let Err(e) = db.check_integrity() {
            return Err(Damage::Broken(e.to_string()));
        }
        let txn = db.begin_write().map_err(|e| Damage::Broken(e.to_string()))?;
        txn.open_table(TABLE).map_err(|e| Damage::Broken(e.to_string()))?;
        txn.commit().map_err(|e| Damage::Broken(e.to_string()))?;
        let store = MetaStore { db };
        store.read_through().map_err(|e| Damage::Broken(e.to_string()))?;
        Ok(store)
    });
    std::panic::set_hook(hook);
    match opened {
        Ok(r) => r,
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "it could not be read".into());
            Err(Damage::Broken(why))
        }
    }
}

fn set_aside(path: &Path) -> std::io::Result<PathBuf> {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let aside = path.with_extension(format!("redb.damaged-{ms}"));
    std::fs::rename(path, &aside)?;
    Ok(aside)
}

fn id_file(path: &Path) -> PathBuf {
    path.with_extension("redb.id")
}

fn new_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes.copy_from_slice(&t.to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_id(file: &Path, id: &str) -> std::io::Result<()> {
    let temp = file.with_extension("id.tmp");
    std::fs::write(&temp, id)?;
    std::fs::File::open(&temp)?.sync_all()?;
    std::fs::rename(&temp, file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_go_on_after_the_last_key_and_stay_in_the_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetaStore::open_checked(&dir.path().join("meta.redb")).unwrap().store;
        let mut changes: Vec<(String, Option<Vec<u8>>)> = (0..25)
            .map(|i| (format!("synced/a/f{i:02}"), Some(vec![i as u8])))
            .collect();
        changes.push(("synced/b/x".into(), Some(vec![9])));
        changes.push(("synced/a".into(), Some(vec![8])));
        store.commit(&changes).unwrap();
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = store.scan_page("synced/a/", after.as_deref(), 10).unwrap();
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 10);
            after = page.last().map(|(k, _)| k.clone());
            seen.extend(page.into_iter().map(|(k, _)| k));
        }
        let want: Vec<String> = (0..25).map(|i| format!("synced/a/f{i:02}")).collect();
        assert_eq!(seen, want);
    }

    #[test]
    fn commits_scans_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redb");
        {
            let m = MetaStore::open_checked(&path).map(|o| o.store).unwrap();
            m.commit(&[
                ("a/1".into(), Some(b"x".to_vec())),
                ("a/2".into(), Some(b"y".to_vec())),
                ("b/1".into(), Some(vec![])),
            ])
            .unwrap();
            m.commit(&[("a/1".into(), None)]).unwrap();
            assert!(
                MetaStore::open_checked(&path).map(|o| o.store).is_err(),
                "a second opener is refused"
            );
        }
        let m = MetaStore::open_checked(&path).unwrap();
        assert!(m.warning.is_none());
        let m = m.store;
        assert_eq!(m.get("a/1").unwrap(), None);
        assert_eq!(
            m.scan_page("a/", None, 100).unwrap(),
            vec![("a/2".to_string(), b"y".to_vec())]
        );
    }

    fn filled(path: &Path) {
        let m = MetaStore::open_checked(path).map(|o| o.store).unwrap();
        for i in 0..2000 {
            m.commit(&[(format!("synced/app/f{i}"), Some(vec![7; 64]))]).unwrap();
        }
    }

    #[test]
    fn a_truncated_or_overwritten_store_is_set_aside_and_made_anew_with_a_warning() {
        for cut in [0.0, 0.1, 0.5, 0.9] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("meta.redb");
            filled(&path);
            let len = std::fs::metadata(&path).unwrap().len();
            let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            f.set_len((len as f64 * cut) as u64).unwrap();
            drop(f);
            let opened = MetaStore::open_checked(&path).unwrap();
            let warning = opened.warning.expect("a warning");
            assert!(warning.contains("nothing is deleted"), "{warning}");
            opened
                .store
                .commit(&[("synced/app/x".into(), Some(b"new".to_vec()))])
                .unwrap();
            let names: Vec<String> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert!(cut == 0.0 || names.iter().any(|n| n.contains("damaged")), "{names:?}");
        }
        // Garbage written over the start.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redb");
        filled(&path);
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            f.write_all(&[0xAB; 4096]).unwrap();
        }
        assert!(MetaStore::open_checked(&path).unwrap().warning.is_some());
    }

    #[test]
    fn a_lost_store_is_told_apart_from_a_first_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redb");
        assert!(MetaStore::open_checked(&path).unwrap().warning.is_none(), "first run");
        filled(&path);
        std::fs::remove_file(&path).unwrap();
        let w = MetaStore::open_checked(&path).unwrap().warning.expect("told");
        assert!(w.contains("emptied or replaced"), "{w}");
        assert!(MetaStore::open_checked(&path).unwrap().warning.is_none(), "told once");
    }
}
