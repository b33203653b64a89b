//! Putting downloaded content in place, shared by `CloudFileCache` and sync:
//! verify the temp file, keep whatever local content may not be replaced as
//! a visible conflict copy, and rename the temp into place atomically.

use super::records::LocalStamp;
use super::{CloudError, CloudErrorKind, DownloadErrorType, IoError, IoErrorKind, MoveMode, Platform, SwapOutcome};

/// Files up to this size are hashed when placed (when the cloud gave no
/// hash), so that a later same-size edit within the clock's resolution can
/// still be told apart. Larger ones are hashed only when needed.
const HASH_ON_PLACE_MAX: u64 = 16 << 20;

/// Downloaded content waiting in the staging area.
pub struct Arrived<'a> {
    pub bundle: &'a str,
    pub temp: &'a str,
    /// Where it goes, in the bundle's local area.
    pub target: &'a str,
    pub size: u64,
    /// `sha256:<hex>` where the cloud gave one.
    pub content_hash: Option<&'a str>,
    /// The sha256 the transfer computed of what it wrote, where it did.
    pub moved_hash: Option<&'a str>,
    /// Renamed into place lazily: the caller flushes before recording it
    /// (and has flushed the temp's bytes already).
    pub lazily: bool,
}

/// What was placed.
pub struct Placed {
    pub stamp: LocalStamp,
    /// sha256 of the content, where it was computed.
    pub hash: Option<String>,
    /// Where local content that could not be replaced was moved.
    pub conflict_copy: Option<String>,
}

/// The local version a placement may overwrite: the one we wrote, or the
/// one the planner saw unchanged, with its content's hash where known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replaceable {
    pub stamp: LocalStamp,
    pub hash: Option<String>,
}

/// A file changed this close (ms) to now may have been edited again within
/// the clock's resolution without its stamp moving: its hash decides.
/// (Not on file systems with fine stamps: there the stamp vouches.)
const RACY_MS: u64 = 2_000;

/// Whether the file at `target` (whose stamp is `replaceable`'s) still
/// holds the content `replaceable` names: by stamp, and by hash when the
/// stamp is too recent to vouch for it.
fn still_replaceable(
    platform: &impl Platform,
    bundle: &str,
    target: &str,
    s: &super::FileStat,
    r: &Replaceable,
) -> Result<bool, Failure> {
    if r.stamp != LocalStamp::from(*s) {
        return Ok(false);
    }
    let changed_ms = s.mtime_ns.max(s.ctime_ns) / 1_000_000;
    if platform.fine_stamps(bundle) || changed_ms + RACY_MS < platform.now_ms() {
        return Ok(true);
    }
    let Some(known) = &r.hash else { return Ok(false) };
    let now = platform.hash_file(bundle, target).map_err(|e| Failure::io(&e))?;
    Ok(now.eq_ignore_ascii_case(known))
}

/// Verifies `a` and renames it to its target. `replaceable` is the local
/// version that may be overwritten; anything else there is kept as a
/// conflict copy unless it is byte-identical.
pub fn verify_and_place(
    platform: &impl Platform,
    a: &Arrived<'_>,
    replaceable: Option<&Replaceable>,
) -> Result<Placed, Failure> {
    let bundle = a.bundle;
    let temp_stat = platform.stat(bundle, a.temp).map_err(|e| Failure::io(&e))?;
    let got = temp_stat.map_or(0, |s| s.size);
    if got != a.size {
        return Err(Failure::unknown(format!(
            "the cloud sent {got} bytes of {}: the content was cut short",
            a.size
        )));
    }
    let mut hash = a.moved_hash.map(str::to_ascii_lowercase);
    if let Some(expected) = a.content_hash.and_then(|h| h.strip_prefix("sha256:")) {
        let actual = match &hash {
            Some(h) => h.clone(),
            None => platform.hash_file(bundle, a.temp).map_err(|e| Failure::io(&e))?,
        };
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(Failure::unknown(format!(
                "content hash {actual} is not the cloud's {expected}"
            )));
        }
        hash = Some(actual);
    } else if hash.is_none() && a.size <= HASH_ON_PLACE_MAX {
        hash = Some(platform.hash_file(bundle, a.temp).map_err(|e| Failure::io(&e))?);
    }

    let target = a.target;
    if let Some(parent) = target.rsplit_once('/').map(|(p, _)| p) {
        platform.create_dir_all(bundle, parent).map_err(|e| Failure::io(&e))?;
    }
    let mut conflict_copy = None;
    let mut may_replace: Option<LocalStamp> = None;
    match platform.stat(bundle, target).map_err(|e| Failure::io(&e))? {
        None => {}
        Some(s) if s.is_dir() => return Err(Failure::unknown(format!("a folder is in the way at {target}"))),
        Some(s) => {
            let ours = match replaceable {
                Some(r) => still_replaceable(platform, bundle, target, &s, r)?,
                None => false,
            };
            let same = !ours && s.size == a.size && {
                let local = platform.hash_file(bundle, target).map_err(|e| Failure::io(&e))?;
                let remote = match &hash {
                    Some(h) => h.clone(),
                    None => platform.hash_file(bundle, a.temp).map_err(|e| Failure::io(&e))?,
                };
                local.eq_ignore_ascii_case(&remote)
            };
            if ours || same {
                may_replace = Some(s.into());
            } else {
                conflict_copy = Some(move_aside(platform, bundle, target)?);
            }
        }
    }
    // Whatever is at the target when the rename happens is either the
    // version that may be replaced — swapped out atomically, then checked —
    // or kept: nothing saved there a moment ago is replaced unseen.
    let durable = !a.lazily;
    let mv = |from: &str, to: &str, mode| platform.move_file(bundle, from, to, mode, durable);
    let mut in_place = false;
    if let Some(expected) = may_replace {
        // Swapped in only if the target is still what was checked, under a
        // write lease from the check to the swap: an editor opening it in
        // between, or holding it open, is seen, and the old file is then
        // kept as a conflict copy rather than removed under its writes.
        match platform.swap_if_unchanged(bundle, a.temp, target, expected, durable) {
            Ok(SwapOutcome::Clean) => {
                in_place = true;
                let _ = platform.remove_file(bundle, a.temp);
            }
            Ok(SwapOutcome::InUse) => {
                in_place = true;
                conflict_copy = Some(move_aside_from(platform, bundle, a.temp, target)?);
            }
            // Written since it was checked: the user's, kept.
            Ok(SwapOutcome::Changed) => match platform.stat(bundle, target).map_err(|e| Failure::io(&e))? {
                Some(now) if now.is_dir() => {
                    return Err(Failure::unknown(format!("a folder is in the way at {target}")))
                }
                Some(_) => conflict_copy = Some(move_aside(platform, bundle, target)?),
                None => {}
            },
            // Gone meanwhile: placed below, replacing nothing.
            Err(e) if e.kind == IoErrorKind::NotFound => {}
            Err(e) if e.kind == IoErrorKind::NotSupported => {}
            Err(e) => return Err(Failure::io(&e)),
        }
    }
    let mut tries = 0;
    while !in_place {
        match mv(a.temp, target, MoveMode::NoReplace) {
            Ok(()) => in_place = true,
            // Saved there since: kept as a conflict copy, then try again.
            Err(e) if e.kind == IoErrorKind::AlreadyExists && tries < 4 => {
                tries += 1;
                match platform.stat(bundle, target).map_err(|e| Failure::io(&e))? {
                    Some(s) if s.is_dir() => {
                        return Err(Failure::unknown(format!("a folder is in the way at {target}")))
                    }
                    Some(s) if may_replace == Some(s.into()) => {
                        // The replaceable version, where no swap is possible.
                        mv(a.temp, target, MoveMode::Replace).map_err(|e| Failure::io(&e))?;
                        in_place = true;
                    }
                    Some(_) => conflict_copy = Some(move_aside(platform, bundle, target)?),
                    None => {}
                }
            }
            Err(e) if e.kind == IoErrorKind::NotSupported => {
                // A file system without renameat2: checked, then replaced.
                if let Some(now) = platform.stat(bundle, target).map_err(|e| Failure::io(&e))? {
                    if now.is_dir() {
                        return Err(Failure::unknown(format!("a folder is in the way at {target}")));
                    }
                    if may_replace != Some(now.into()) {
                        conflict_copy = Some(move_aside(platform, bundle, target)?);
                    }
                }
                mv(a.temp, target, MoveMode::Replace).map_err(|e| Failure::io(&e))?;
                in_place = true;
            }
            Err(e) => return Err(Failure::io(&e)),
        }
    }
    let placed = platform
        .stat(bundle, target)
        .map_err(|e| Failure::io(&e))?
        .ok_or_else(|| Failure::unknown(format!("{target} vanished right after it was placed")))?;
    // The rename moved ctime; anything else moved means a write landed
    // between the rename and this stat: the temp's stamp, which no later
    // stat can match, makes the next scan look at the content.
    let moved = |t: &super::FileStat| (t.inode, t.size, t.mtime_ns) != (placed.inode, placed.size, placed.mtime_ns);
    let stamp = match temp_stat {
        Some(t) if moved(&t) => LocalStamp::from(t),
        _ => placed.into(),
    };
    Ok(Placed {
        stamp,
        hash,
        conflict_copy,
    })
}

fn move_aside(platform: &impl Platform, bundle: &str, target: &str) -> Result<String, Failure> {
    move_aside_from(platform, bundle, target, target)
}

/// Moves `from` to a conflict copy named after `target`, durably.
fn move_aside_from(platform: &impl Platform, bundle: &str, from: &str, target: &str) -> Result<String, Failure> {
    let copy = conflict_copy_name(platform, bundle, target);
    platform
        .move_file(bundle, from, &copy, MoveMode::NoReplace, true)
        .map_err(|e| Failure::io(&e))?;
    Ok(copy)
}

/// Longest name (one path component) file systems and clouds take, in bytes.
pub const NAME_MAX: usize = 255;

/// `dir/name (conflict <device> <YYYY-MM-DD HHMMSS>).ext`, not yet taken,
/// and never longer than [`NAME_MAX`] bytes: a long stem is shortened (at a
/// character boundary) so that the copy can always be made.
pub fn conflict_copy_name(platform: &impl Platform, bundle: &str, path: &str) -> String {
    let (dir, name) = match path.rsplit_once('/') {
        Some((d, n)) => (format!("{d}/"), n),
        None => (String::new(), path),
    };
    let (stem, ext) = match name.rfind('.') {
        // An extension is kept only while it is short (`.tar.gz`, `.jpeg`).
        Some(i) if i > 0 && name.len() - i <= 16 => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    let when = format_utc(platform.now_ms());
    let device = truncate(&platform.device_name(), 40).replace('/', "_");
    let mut n = 1;
    loop {
        let suffix = if n == 1 { String::new() } else { format!(" {n}") };
        let tail = format!(" (conflict {device} {when}{suffix}){ext}");
        let stem = truncate(stem, NAME_MAX.saturating_sub(tail.len()));
        let candidate = format!("{dir}{stem}{tail}");
        if !matches!(platform.stat(bundle, &candidate), Ok(Some(_))) {
            return candidate;
        }
        n += 1;
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends at a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `YYYY-MM-DD HHMMSS` in UTC (civil-from-days, Howard Hinnant's algorithm).
pub fn format_utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Why a transfer failed: the seed's download error type, the cloud's or
/// file system's kind, and their words, for people.
#[derive(Clone, Debug)]
pub struct Failure {
    pub kind: DownloadErrorType,
    pub cloud: Option<CloudErrorKind>,
    pub reason: String,
}

impl Failure {
    pub fn unknown(reason: impl Into<String>) -> Self {
        Failure {
            kind: DownloadErrorType::UnknownError,
            cloud: None,
            reason: reason.into(),
        }
    }
    pub fn cloud(e: &CloudError) -> Self {
        Failure {
            kind: error_type(e),
            cloud: Some(e.kind),
            reason: e.message.clone(),
        }
    }
    pub fn io(e: &IoError) -> Self {
        let (kind, cloud) = match e.kind {
            IoErrorKind::NoSpace => (DownloadErrorType::LocalStorageFull, Some(CloudErrorKind::LocalNoSpace)),
            _ => (DownloadErrorType::UnknownError, None),
        };
        Failure {
            kind,
            cloud,
            reason: e.to_string(),
        }
    }
}

pub fn error_type(e: &CloudError) -> DownloadErrorType {
    match e.kind {
        CloudErrorKind::NotFound => DownloadErrorType::ContentNotFound,
        CloudErrorKind::Network => DownloadErrorType::NetworkUnavailable,
        CloudErrorKind::Throttled => DownloadErrorType::FrequentUserRequests,
        CloudErrorKind::LocalNoSpace => DownloadErrorType::LocalStorageFull,
        _ => DownloadErrorType::UnknownError,
    }
}
