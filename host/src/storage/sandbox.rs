//! Maps `(bundle, relative path)` to a real path inside that bundle's area
//! and refuses anything that would leave it: absolute paths, `..`, and
//! symlinks whose target lies outside.

use std::io;
use std::path::{Path, PathBuf};

use crate::identity::is_valid_bundle;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{0:?} is not a valid bundle name")]
    InvalidBundle(String),
    #[error("{0:?} is not a valid relative path")]
    InvalidPath(String),
    #[error("{0} leads out of the app's area through a symlink")]
    Escapes(String),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// The folder holding one area per bundle: `<apps>/<bundle>/`.
#[derive(Clone, Debug)]
pub struct AppAreas {
    apps: PathBuf,
}

impl AppAreas {
    pub fn new(apps: impl Into<PathBuf>) -> io::Result<Self> {
        let apps = apps.into();
        std::fs::create_dir_all(&apps)?;
        Ok(AppAreas {
            apps: apps.canonicalize()?,
        })
    }

    /// The bundle's area, created if missing.
    pub fn area(&self, bundle: &str) -> Result<PathBuf, SandboxError> {
        if !is_valid_bundle(bundle) {
            return Err(SandboxError::InvalidBundle(bundle.to_string()));
        }
        let area = self.apps.join(bundle);
        std::fs::create_dir_all(&area)?;
        Ok(area)
    }

    /// The real path of `rel` in `bundle`'s area. Every existing component
    /// is checked: a symlink must resolve inside the area.
    pub fn resolve(&self, bundle: &str, rel: &str) -> Result<PathBuf, SandboxError> {
        let area = self.area(bundle)?;
        if rel.is_empty() || rel.contains('\0') || rel.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
            return Err(SandboxError::InvalidPath(rel.to_string()));
        }
        let mut cur = area.clone();
        for part in rel.split('/') {
            cur.push(part);
            match std::fs::symlink_metadata(&cur) {
                Ok(m) if m.file_type().is_symlink() => check_symlink(&area, &cur, rel)?,
                Ok(_) => {}
                // Nothing exists below a missing component: no symlink either.
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) if e.raw_os_error() == Some(20) => break, // ENOTDIR: a file in the way
                Err(e) => return Err(e.into()),
            }
        }
        Ok(area.join(rel))
    }
}

fn check_symlink(area: &Path, link: &Path, rel: &str) -> Result<(), SandboxError> {
    // A dangling symlink would let a write create a file wherever it points.
    match link.canonicalize() {
        Ok(target) if target.starts_with(area) => Ok(()),
        _ => Err(SandboxError::Escapes(rel.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_paths_and_symlinks_that_leave_the_area() {
        let dir = tempfile::tempdir().unwrap();
        let areas = AppAreas::new(dir.path().join("apps")).unwrap();
        let area = areas.area("com.a").unwrap();
        std::fs::create_dir_all(area.join("cloud/in")).unwrap();
        std::os::unix::fs::symlink(dir.path(), area.join("cloud/out")).unwrap();
        std::os::unix::fs::symlink(area.join("cloud/in"), area.join("cloud/inner")).unwrap();
        std::os::unix::fs::symlink(area.join("nowhere"), area.join("cloud/dangling")).unwrap();

        assert_eq!(
            areas.resolve("com.a", "cloud/in/x/y/z").unwrap(),
            area.join("cloud/in/x/y/z")
        );
        assert!(areas.resolve("com.a", "cloud/inner/x").is_ok());
        assert!(matches!(
            areas.resolve("com.a", "cloud/out/x"),
            Err(SandboxError::Escapes(_))
        ));
        assert!(matches!(
            areas.resolve("com.a", "cloud/dangling"),
            Err(SandboxError::Escapes(_))
        ));
        for bad in ["", "/etc/passwd", "cloud/../../x", "cloud//x", "./x"] {
            assert!(
                matches!(areas.resolve("com.a", bad), Err(SandboxError::InvalidPath(_))),
                "{bad}"
            );
        }
        for bad in ["", "..", "a/b", "a b"] {
            assert!(matches!(areas.area(bad), Err(SandboxError::InvalidBundle(_))), "{bad}");
        }
    }
}
