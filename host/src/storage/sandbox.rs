//! Each app's area on the device: `<apps>/<bundle>/`, opened beneath the
//! folder of all areas. Every path in it is resolved by [`crate::beneath`]:
//! nothing outside the area is ever reached, whatever symlinks it holds.

use std::io;
use std::path::PathBuf;

use crate::beneath::{BeneathError, Root};
use crate::identity::is_valid_bundle;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{0:?} is not a valid bundle name")]
    InvalidBundle(String),
    #[error(transparent)]
    Path(#[from] BeneathError),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// The folder holding one area per bundle.
#[derive(Clone, Debug)]
pub struct AppAreas {
    apps: std::sync::Arc<Root>,
}

impl AppAreas {
    /// `<root>/apps`, opened beneath the root: never through a link.
    pub fn in_root(root: &std::path::Path) -> io::Result<Self> {
        let root = Root::open(root)?;
        let apps = root
            .child("apps", true)
            .map_err(|e| io::Error::other(format!("{}: {e}", root.display("apps"))))?
            .expect("made");
        Ok(AppAreas {
            apps: std::sync::Arc::new(apps),
        })
    }

    /// The bundle's area, made when `create`; `None` when it does not
    /// exist (reading a bundle's state never creates its folder).
    pub fn area(&self, bundle: &str, create: bool) -> Result<Option<Root>, SandboxError> {
        if !is_valid_bundle(bundle) {
            return Err(SandboxError::InvalidBundle(bundle.to_string()));
        }
        Ok(self.apps.child(bundle, create)?)
    }

    /// Where the bundle's area is (whether or not it exists yet).
    pub fn area_path(&self, bundle: &str) -> PathBuf {
        self.apps.path().join(bundle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn areas_are_made_only_for_writing_and_refuse_bad_bundles() {
        let dir = tempfile::tempdir().unwrap();
        let areas = AppAreas::in_root(dir.path()).unwrap();
        assert!(areas.area("com.a", false).unwrap().is_none());
        assert!(!dir.path().join("apps/com.a").exists(), "a read made nothing");
        let area = areas.area("com.a", true).unwrap().unwrap();
        assert_eq!(area.path(), dir.path().join("apps/com.a").canonicalize().unwrap());
        // An area that is a symlink is never entered.
        std::os::unix::fs::symlink(dir.path(), dir.path().join("apps/com.b")).unwrap();
        assert!(areas.area("com.b", false).is_err());
        for bad in ["", "..", "a/b", "a b", ".cloudsync", "-x"] {
            assert!(
                matches!(areas.area(bad, false), Err(SandboxError::InvalidBundle(_))),
                "{bad}"
            );
        }
    }
}
