//! After a crash (or a trapped instance): partial downloads that were not
//! kept are removed, and evictions cut short are settled, before anything
//! else touches a bundle.

use super::layout::STAGING_DIR;
use super::records::{self, EvictingRecord, PartialRecord, EVICTING, PARTIAL};
use super::{ApiError, AppFile, Platform};

/// Removes `bundle`'s partial downloads that a crash (or a trapped
/// instance) left behind; those kept on purpose by `stop(uri, false)` stay.
pub fn recover_bundle(platform: &impl Platform, bundle: &str) -> Result<(), ApiError> {
    let mut stale = Vec::new();
    for kind in [PARTIAL, records::SYNC_PARTIAL] {
        let prefix = format!("{kind}/{bundle}/");
        let rows = platform
            .meta_scan(&prefix)
            .map_err(|e| ApiError::service(format!("metadata scan failed: {e}")))?;
        stale.extend(rows);
    }
    let mut changes = Vec::new();
    // Evictions a crash cut short are settled first: what they set aside is
    // removed or put back, never swept away unseen.
    let mut kept_temps = recover_evictions(platform, bundle)?;
    for (key, value) in stale {
        let record: Option<PartialRecord> = serde_json::from_slice(&value).ok();
        if let Some(r) = record.as_ref().filter(|r| r.kept) {
            kept_temps.insert(r.temp.clone());
            continue;
        }
        // Only ever a file of ours in the staging area, whatever a
        // record says.
        if let Some(r) = record.filter(|r| r.temp.starts_with(&format!("{STAGING_DIR}/"))) {
            platform
                .remove_file(bundle, &r.temp)
                .map_err(|e| ApiError::service(format!("cannot remove {}: {e}", r.temp)))?;
        }
        changes.push((key, None));
    }
    if !changes.is_empty() {
        platform
            .meta_commit(changes)
            .map_err(|e| ApiError::service(format!("metadata write failed: {e}")))?;
    }
    // Temp files no record names (a power cut between a temp's creation and
    // its record's, say): nothing refers to them, they go too.
    let orphans = platform
        .scan_tree(bundle, STAGING_DIR)
        .map_err(|e| ApiError::service(format!("cannot list the staging area: {e}")))?
        .unwrap_or_default();
    for entry in orphans {
        if entry.stat.is_dir() || entry.problem.is_some() {
            continue;
        }
        let temp = format!("{STAGING_DIR}/{}", entry.path);
        if !kept_temps.contains(&temp) {
            platform
                .remove_file(bundle, &temp)
                .map_err(|e| ApiError::service(format!("cannot remove {temp}: {e}")))?;
        }
    }
    Ok(())
}

/// Settles a file an eviction set aside: the very file checked (inode, size
/// and mtime; its ctime moved with the rename) is removed — the cloud holds
/// it; anything else (a save that landed in the instant of the rename) goes
/// back under its name, or beside it as a conflict copy if a new file is
/// there already. Never removes a file that was not checked.
pub fn resolve_aside(p: &impl Platform, file: &AppFile, note: &EvictingRecord) -> Result<(), super::IoError> {
    let Some(s) = p.stat(&file.bundle, &note.aside)? else {
        return Ok(());
    };
    if note.stamp.same_file_moved(&s) {
        return p.remove_file(&file.bundle, &note.aside);
    }
    let target = match p.stat(&file.bundle, &file.local_path())? {
        None => file.local_path(),
        Some(_) => super::place::conflict_copy_name(p, &file.bundle, &file.local_path()),
    };
    p.rename(&file.bundle, &note.aside, &target)
}

/// After a crash: every eviction that was under way is settled (see
/// [`resolve_aside`]). Returns the files still set aside (their settling
/// failed): they stay, and are never swept away as stray temp files.
pub fn recover_evictions(p: &impl Platform, bundle: &str) -> Result<std::collections::BTreeSet<String>, ApiError> {
    let mut kept = std::collections::BTreeSet::new();
    let mut done = Vec::new();
    for (path, note) in records::scan::<EvictingRecord>(p, EVICTING, bundle)? {
        let file = AppFile {
            bundle: bundle.to_string(),
            path,
        };
        match resolve_aside(p, &file, &note) {
            Ok(()) => done.push((records::key(EVICTING, &file), None)),
            Err(_) => {
                kept.insert(note.aside);
            }
        }
    }
    if !done.is_empty() {
        p.meta_commit(done)
            .map_err(|e| ApiError::service(format!("metadata write failed: {e}")))?;
    }
    Ok(kept)
}
