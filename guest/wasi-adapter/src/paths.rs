//! Paths the engine names, resolved beneath a folder: no `.`/`..` or empty
//! parts, no absolute path, and no symlink followed anywhere in a path.

use crate::{lstat, FileKind, IoError, IoErrorKind};

/// Checks a relative, `/`-separated path (an empty one names the folder itself).
pub fn check(rel: &str) -> Result<(), IoError> {
    if rel.is_empty() {
        return Ok(());
    }
    let bad = rel.starts_with('/')
        || rel.contains('\0')
        || rel
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..");
    if bad {
        return Err(IoError::new(
            IoErrorKind::PermissionDenied,
            format!("{rel:?} is not a relative path without . or .. parts"),
        ));
    }
    Ok(())
}

/// `base/rel`, after checking that `rel` is a clean path and that none of
/// its folders (the last part aside) is a symlink or a file.
pub fn beneath(base: &str, rel: &str) -> Result<String, IoError> {
    check(rel)?;
    if rel.is_empty() {
        return Ok(base.to_string());
    }
    let mut at = base.to_string();
    let parts: Vec<&str> = rel.split('/').collect();
    for part in &parts[..parts.len() - 1] {
        at.push('/');
        at.push_str(part);
        match lstat(&at)? {
            None => break, // the rest is missing: nothing to follow
            Some(s) if s.kind == FileKind::Folder => {}
            Some(s) if s.kind == FileKind::Symlink => {
                return Err(IoError::new(
                    IoErrorKind::EscapesSandbox,
                    format!("{rel}: {part} is a symlink; links are never followed"),
                ))
            }
            Some(_) => {
                return Err(IoError::new(
                    IoErrorKind::NotAFile,
                    format!("{rel}: {part} is not a folder"),
                ))
            }
        }
    }
    Ok(format!("{base}/{rel}"))
}

pub use cloudsync_contract::is_bundle_name as is_bundle;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clean_paths_beneath_and_no_link_on_the_way() {
        for bad in ["/etc", "a/../b", "..", "a//b", "a/", "./a"] {
            assert!(check(bad).is_err(), "{bad}");
        }
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_str().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("link")).unwrap();
        assert_eq!(beneath(base, "real/x").unwrap(), format!("{base}/real/x"));
        assert_eq!(
            beneath(base, "link/passwd").unwrap_err().kind,
            IoErrorKind::EscapesSandbox
        );
        // The last part may be a link: it is stat'ed, never followed.
        assert!(beneath(base, "link").is_ok());
        assert!(is_bundle("com.a-b_c") && !is_bundle("..") && !is_bundle("a/b") && !is_bundle(".cloudsync"));
    }
}
