//! Who may call what: the seed's permission checks and event names, shared
//! by every API object.

use super::{codes, ApiError, Platform, PROGRESS_EVENT};

pub use cloudsync_contract::{CLOUDFILE_SYNC, CLOUDFILE_SYNC_MANAGER};

/// 201 without CLOUDFILE_SYNC (or CLOUDFILE_SYNC_MANAGER for another
/// bundle), then 202 for an app that is not a system app.
pub fn check_system_api(p: &impl Platform, other_bundle: bool) -> Result<(), ApiError> {
    if !p.has_permission(CLOUDFILE_SYNC) {
        return Err(ApiError::new(
            codes::PERMISSION_DENIED,
            format!("permission denied: the caller lacks {CLOUDFILE_SYNC}"),
        ));
    }
    if other_bundle && !p.has_permission(CLOUDFILE_SYNC_MANAGER) {
        return Err(ApiError::new(
            codes::PERMISSION_DENIED,
            format!("permission denied: acting for another bundle needs {CLOUDFILE_SYNC_MANAGER}"),
        ));
    }
    if !p.is_system_app() {
        return Err(ApiError::new(
            codes::NOT_SYSTEM_APP,
            "this is a system API and the caller is not a system app",
        ));
    }
    Ok(())
}

pub fn check_event(event: &str) -> Result<(), ApiError> {
    if event == PROGRESS_EVENT {
        Ok(())
    } else {
        Err(ApiError::invalid_parameter(format!(
            "unknown event {event:?}; the only event is \"progress\""
        )))
    }
}
