//! Who calls the API: the app the engine acts for, and what it was granted.

use std::collections::BTreeSet;

/// `ohos.permission.CLOUDFILE_SYNC`: needed by the system APIs.
pub const CLOUDFILE_SYNC: &str = "ohos.permission.CLOUDFILE_SYNC";
/// `ohos.permission.CLOUDFILE_SYNC_MANAGER`: needed to act for another bundle.
pub const CLOUDFILE_SYNC_MANAGER: &str = "ohos.permission.CLOUDFILE_SYNC_MANAGER";

/// The gallery's own area (its items are `file://media/Photo/<id>/<name>`).
pub const GALLERY_BUNDLE: &str = "media";

/// The calling app and its grants; the component asks about them through
/// the `permission` import.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub bundle: String,
    pub permissions: BTreeSet<String>,
    pub system_app: bool,
}

impl Identity {
    /// An ordinary app: no permissions, not a system app.
    pub fn app(bundle: impl Into<String>) -> Self {
        Identity {
            bundle: bundle.into(),
            permissions: BTreeSet::new(),
            system_app: false,
        }
    }

    /// The device's owner: a system app holding every cloud-sync permission.
    pub fn system(bundle: impl Into<String>) -> Self {
        Identity {
            bundle: bundle.into(),
            permissions: [CLOUDFILE_SYNC, CLOUDFILE_SYNC_MANAGER]
                .into_iter()
                .map(String::from)
                .collect(),
            system_app: true,
        }
    }

    pub fn has_permission(&self, name: &str) -> bool {
        self.permissions.contains(name)
    }

    /// Whether the caller may touch `bundle`'s files: its own, any with
    /// `CLOUDFILE_SYNC_MANAGER`, and the gallery's as a system app holding
    /// `CLOUDFILE_SYNC`.
    pub fn may_act_for(&self, bundle: &str) -> bool {
        bundle == self.bundle
            || self.has_permission(CLOUDFILE_SYNC_MANAGER)
            || (bundle == GALLERY_BUNDLE && self.system_app && self.has_permission(CLOUDFILE_SYNC))
    }
}

/// A bundle name that is safe as a folder name: `[A-Za-z0-9._-]+`, not `.`/`..`.
pub fn is_valid_bundle(bundle: &str) -> bool {
    !bundle.is_empty()
        && bundle != "."
        && bundle != ".."
        && bundle.len() <= 128
        && bundle
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}
