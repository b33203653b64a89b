//! The device side: each app's sandboxed local area, and the durable
//! metadata store the engine keeps its records in.

mod meta;
mod sandbox;

pub use meta::{MetaError, MetaStore};
pub use sandbox::{AppAreas, SandboxError};
