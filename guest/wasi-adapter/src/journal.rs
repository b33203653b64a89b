//! The metadata store as one journal file: an ordered map in memory, and on
//! disk a sequence of records, each one whole commit:
//! `[body length: u32 LE][first 8 bytes of the body's sha256][body]`, the
//! body a list of changes (`[key length: u32][key][1 = put, 0 = delete]`
//! then for a put `[value length: u32][value]`).
//!
//! A commit is appended and synced before it is applied in memory, so after
//! a crash a commit is there whole or not at all: a torn or damaged record
//! at the end is cut off when the journal is opened (and said on stderr).
//! When the journal holds much more than the map, it is rewritten as one
//! record beside itself, synced, and renamed over itself.

use std::collections::BTreeMap;
use std::io::Write;

use sha2::{Digest, Sha256};

use crate::{IoError, IoErrorKind};

pub type Change = (String, Option<Vec<u8>>);

pub struct Journal {
    path: String,
    map: BTreeMap<String, Vec<u8>>,
    file: std::fs::File,
    /// Bytes in the file.
    len: u64,
    /// What the map would take as one record.
    live: u64,
}

impl Journal {
    /// Opens (or makes) the journal at `path`, replaying every whole record.
    /// A torn record at the end (a crash mid-append) is cut off. Damage
    /// inside (a record whose checksum fails with whole records after it)
    /// makes the journal untrustworthy: it is kept beside
    /// (`meta.journal.damaged-<ms>`) and started anew, empty.
    pub fn open(path: &str) -> Result<Journal, IoError> {
        // Never through a link: a journal that is one would be written
        // wherever it points.
        match crate::lstat(path)? {
            None => {}
            Some(s) if s.kind == crate::FileKind::File => {}
            Some(_) => {
                return Err(IoError::new(
                    IoErrorKind::EscapesSandbox,
                    format!("{path} is not a regular file (links are never followed)"),
                ))
            }
        }
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(crate::io_error(path, e)),
        };
        let mut map = BTreeMap::new();
        let mut at = 0usize;
        let mut damaged = 0usize;
        loop {
            if let Some((changes, next)) = record_at(&bytes, at) {
                apply(&mut map, changes);
                at = next;
                continue;
            }
            // The next whole record after damaged bytes, if any.
            match (at + 1..bytes.len()).find(|&k| record_at(&bytes, k).is_some()) {
                Some(k) => {
                    damaged += k - at;
                    at = k;
                }
                None => break,
            }
        }
        let torn = bytes.len() - at;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| crate::io_error(path, e))?;
        let live = size_of(&map);
        let mut journal = Journal {
            path: path.to_string(),
            map,
            file,
            len: at as u64,
            live,
        };
        if damaged > 0 {
            // What the damaged record changed is unknown, so what the records
            // after it say never was: like a damaged store on the native
            // host, the journal starts empty and the next sync compares both
            // sides afresh (every difference kept or downloaded, nothing
            // deleted for want of a record).
            journal.map.clear();
            journal.live = 0;
            let keep = format!("{path}.damaged-{}", now_ms());
            let mut copy = crate::fresh_file(&keep)?;
            std::io::copy(
                &mut std::fs::File::open(path).map_err(|e| crate::io_error(path, e))?,
                &mut copy,
            )
            .and_then(|_| copy.sync_all())
            .map_err(|e| crate::io_error(&keep, e))?;
            eprintln!(
                "cloudsync: warning: {path}: {damaged} bytes inside it were damaged; it was kept as {keep} and made anew, empty. The next sync compares both sides afresh: every difference is kept as a conflict copy or downloaded, and nothing is deleted on either side"
            );
            journal.compact()?;
        } else if torn > 0 {
            eprintln!(
                "cloudsync: {path}: {torn} bytes after the last whole commit (a torn or damaged write) were cut off"
            );
            journal.file.set_len(at as u64).map_err(|e| crate::io_error(path, e))?;
            journal.file.sync_all().map_err(|e| crate::io_error(path, e))?;
        }
        Ok(journal)
    }

    pub fn get(&self, key: &str) -> Option<&Vec<u8>> {
        self.map.get(key)
    }

    /// At most `max` keys with `prefix` after `after`, in key order.
    pub fn scan_page(&self, prefix: &str, after: Option<&str>, max: usize) -> Vec<(String, Vec<u8>)> {
        use std::ops::Bound;
        let from = match after {
            Some(a) if a >= prefix => Bound::Excluded(a.to_string()),
            _ => Bound::Included(prefix.to_string()),
        };
        self.map
            .range((from, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(max)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Applies `changes` at once, durably.
    pub fn commit(&mut self, changes: Vec<Change>) -> Result<(), IoError> {
        let record = encode(&changes);
        let written = self.file.write_all(&record).and_then(|_| self.file.sync_data());
        if let Err(e) = written {
            // Nothing half-written stays behind to be read as a commit.
            let _ = self.file.set_len(self.len);
            return Err(crate::io_error(&self.path, e));
        }
        self.len += record.len() as u64;
        // Kept as it changes: summing the map on every commit made a sync
        // of n files cost n² (every upload commits its record).
        self.live = self.live.saturating_add_signed(apply(&mut self.map, changes));
        if self.len > 1 << 20 && self.len > 4 * self.live {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrites the journal as one record of the whole map.
    fn compact(&mut self) -> Result<(), IoError> {
        let all: Vec<Change> = self.map.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect();
        let record = encode(&all);
        let temp = format!("{}.new", self.path);
        let io = |e| crate::io_error(&temp, e);
        let mut f = crate::fresh_file(&temp)?;
        f.write_all(&record).and_then(|_| f.sync_all()).map_err(io)?;
        std::fs::rename(&temp, &self.path).map_err(io)?;
        if let Some((dir, _)) = self.path.rsplit_once('/') {
            crate::sync_dir(if dir.is_empty() { "/" } else { dir });
        }
        self.file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| crate::io_error(&self.path, e))?;
        self.len = record.len() as u64;
        Ok(())
    }
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// Applies `changes`; returns by how much the map's record size grew.
fn apply(map: &mut BTreeMap<String, Vec<u8>>, changes: Vec<Change>) -> i64 {
    let entry = |k: &str, v: &[u8]| 9 + k.len() as i64 + v.len() as i64;
    let mut grown = 0i64;
    for (key, value) in changes {
        let added = value.as_ref().map_or(0, |v| entry(&key, v));
        let old = match value {
            Some(v) => map.insert(key.clone(), v),
            None => map.remove(&key),
        };
        grown += added - old.map_or(0, |v| entry(&key, &v));
    }
    grown
}

fn size_of(map: &BTreeMap<String, Vec<u8>>) -> u64 {
    map.iter()
        .map(|(k, v)| 9 + k.len() as u64 + v.len() as u64)
        .sum::<u64>()
        + 12
}

fn encode(changes: &[Change]) -> Vec<u8> {
    let mut body = Vec::new();
    for (key, value) in changes {
        body.extend_from_slice(&(key.len() as u32).to_le_bytes());
        body.extend_from_slice(key.as_bytes());
        match value {
            Some(v) => {
                body.push(1);
                body.extend_from_slice(&(v.len() as u32).to_le_bytes());
                body.extend_from_slice(v);
            }
            None => body.push(0),
        }
    }
    let mut record = Vec::with_capacity(body.len() + 12);
    record.extend_from_slice(&(body.len() as u32).to_le_bytes());
    record.extend_from_slice(&Sha256::digest(&body)[..8]);
    record.extend_from_slice(&body);
    record
}

/// The whole record at `at` and where the next starts; `None` at the end or
/// at a torn or damaged record.
fn record_at(bytes: &[u8], at: usize) -> Option<(Vec<Change>, usize)> {
    let header = bytes.get(at..at + 12)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    let body = bytes.get(at + 12..(at + 12).checked_add(len)?)?;
    if Sha256::digest(body)[..8] != header[4..12] {
        return None;
    }
    let mut changes = Vec::new();
    let mut i = 0usize;
    let mut take = |n: usize| -> Option<&[u8]> {
        let s = body.get(i..i.checked_add(n)?)?;
        i += n;
        Some(s)
    };
    while let Some(klen) = take(4) {
        let klen = u32::from_le_bytes(klen.try_into().ok()?) as usize;
        let key = String::from_utf8(take(klen)?.to_vec()).ok()?;
        let value = match take(1)?[0] {
            1 => {
                let vlen = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
                Some(take(vlen)?.to_vec())
            }
            0 => None,
            _ => return None,
        };
        changes.push((key, value));
    }
    Some((changes, at + 12 + len))
}

/// A key is `<kind>/<bundle>/…`: an app reaches only the records of
/// bundles it may act for.
pub fn bundle_of(key: &str) -> Result<&str, IoError> {
    match key.split('/').nth(1) {
        Some(bundle) if !bundle.is_empty() && key.matches('/').count() >= 2 => Ok(bundle),
        _ => Err(IoError::new(
            IoErrorKind::PermissionDenied,
            format!("metadata key {key:?} is not <kind>/<bundle>/…"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_survive_reopening_whole_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.journal");
        let path = path.to_str().unwrap();
        let mut j = Journal::open(path).unwrap();
        j.commit(vec![
            ("s/a/1".into(), Some(b"one".to_vec())),
            ("s/a/2".into(), Some(b"two".to_vec())),
        ])
        .unwrap();
        j.commit(vec![("s/a/1".into(), None), ("s/a/3".into(), Some(vec![]))])
            .unwrap();
        drop(j);
        let good = std::fs::metadata(path).unwrap().len();
        // A commit cut short by a power cut: half its bytes reached the disk.
        let torn = encode(&[("s/a/4".into(), Some(vec![7; 100]))]);
        let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        f.write_all(&torn[..torn.len() / 2]).unwrap();
        drop(f);
        let mut j = Journal::open(path).unwrap();
        assert_eq!(std::fs::metadata(path).unwrap().len(), good, "the torn tail is cut");
        let all = j.scan_page("s/a/", None, 10);
        assert_eq!(all, vec![("s/a/2".into(), b"two".to_vec()), ("s/a/3".into(), vec![])]);
        assert_eq!(j.scan_page("s/a/", Some("s/a/2"), 10).len(), 1);
        assert_eq!(j.scan_page("s/a/", None, 1).len(), 1);
        // Damaged bytes inside the last record: it is not taken.
        j.commit(vec![("s/a/5".into(), Some(b"five".to_vec()))]).unwrap();
        drop(j);
        let mut bytes = std::fs::read(path).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 0xff;
        std::fs::write(path, &bytes).unwrap();
        let j = Journal::open(path).unwrap();
        assert!(j.get("s/a/5").is_none() && j.get("s/a/2").is_some());
    }

    #[test]
    fn damage_inside_sets_the_journal_aside_and_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.journal");
        let path = path.to_str().unwrap();
        let mut j = Journal::open(path).unwrap();
        for i in 0..10u8 {
            j.commit(vec![(format!("s/a/{i}"), Some(vec![i; 50]))]).unwrap();
        }
        drop(j);
        let mut bytes = std::fs::read(path).unwrap();
        bytes[3 * 76 + 20] ^= 0xff; // inside the fourth record's body
        std::fs::write(path, &bytes).unwrap();
        let j = Journal::open(path).unwrap();
        // Records after the damage describe a state that never was.
        assert!(j.scan_page("s/a/", None, 100).is_empty());
        let kept: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("damaged"))
            .collect();
        assert_eq!(kept.len(), 1, "the damaged journal is kept beside it");
        assert_eq!(std::fs::read(kept[0].path()).unwrap(), bytes, "as it was");
        drop(j);
        // Written anew: it opens clean, and commits go on.
        let mut j = Journal::open(path).unwrap();
        j.commit(vec![("s/a/x".into(), Some(vec![1]))]).unwrap();
        drop(j);
        assert_eq!(Journal::open(path).unwrap().scan_page("s/a/", None, 100).len(), 1);
    }

    #[test]
    fn a_journal_that_is_a_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("private"), b"another app's").unwrap();
        std::os::unix::fs::symlink(dir.path().join("private"), dir.path().join("meta.journal")).unwrap();
        let path = dir.path().join("meta.journal");
        assert_eq!(
            Journal::open(path.to_str().unwrap()).err().unwrap().kind,
            IoErrorKind::EscapesSandbox
        );
        assert_eq!(std::fs::read(dir.path().join("private")).unwrap(), b"another app's");
    }

    #[test]
    fn a_long_journal_is_rewritten_as_its_map() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.journal");
        let path = path.to_str().unwrap();
        let mut j = Journal::open(path).unwrap();
        for i in 0..3000u32 {
            j.commit(vec![("s/a/k".into(), Some(vec![i as u8; 1000]))]).unwrap();
        }
        assert!(std::fs::metadata(path).unwrap().len() < 1 << 21);
        drop(j);
        let j = Journal::open(path).unwrap();
        assert_eq!(j.get("s/a/k"), Some(&vec![(2999u32 % 256) as u8; 1000]));
        assert_eq!(bundle_of("s/com.a/x").unwrap(), "com.a");
        assert!(bundle_of("nobundle").is_err());
    }
}
