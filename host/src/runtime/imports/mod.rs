//! The component's imports, one file per WIT interface. Each host function
//! checks the capability first (may the caller act for this bundle?), then
//! delegates to a backend (the sandboxed app areas, the metadata store, the
//! cloud, the transfers) and converts. Time spent here is not counted
//! against the guest's per-call budget.

mod cloud;
mod device;
mod files;
mod hashing;
mod identity;
mod leases;
mod metadata;
mod thumbnails;
mod transfers;

use super::bindings::ohos::cloudsync::types;
use super::state::HostState;

impl types::Host for HostState {}
