//! The cloudSync engine.
//!
//! [`engine`] is plain Rust: it validates calls, decides what to transfer,
//! verifies what arrived and keeps per-file records, talking to the outside
//! world only through the [`engine::Platform`] trait. It is tested natively
//! with `cargo test -p cloudsync-guest` against an in-memory platform.
//!
//! On `wasm32` the `component` module implements `Platform` with the WIT
//! imports and the WIT exports with the engine; it only converts types.

pub mod engine;

#[cfg(target_arch = "wasm32")]
mod component;
