//! The device side: each app's sandboxed local area, and the durable
//! metadata store the engine keeps its records in.

mod evict;
mod meta;
mod sandbox;
pub(crate) mod walk;

pub use evict::{evict, swap_if_unchanged, EvictError, Swap};
pub use meta::{MetaError, MetaStore, Metadata};
pub use sandbox::{AppAreas, SandboxError};
pub use walk::{Found, SortedWalk};
