//! # cache-core
//!
//! The foundation every other crate of the workspace stands on, and nothing tied to one backend:
//!
//! - [`Store`]: the async key-value trait with Redis semantics that every backend implements
//!   (in-memory, Redis, Redis Cluster), usable as `S: Store` and as `Arc<dyn Store>`;
//! - [`Error`]: the one error type, with [`Error::is_transient`] for retry decisions;
//! - [`keys`]: [`Key`], the escaping that keeps user input in its place, and the prefix rules (the
//!   key families are defined by the crates whose concept they are: `cache_domain::family`,
//!   `sessions::keys`);
//! - [`codec`]: the versioned JSON value format;
//! - [`config`]: what every layer's settings share: [`Profile`], reading settings by name
//!   ([`config::Lookup`]), duration parsing, [`config::redact_url`] (each layer's settings live in
//!   its own crate; the `cachekit` facade composes them);
//! - [`layer`]: [`Layered`](layer::Layered), the one way to wrap a store with an around-hook
//!   (timing, failure injection, gates);
//! - [`cas`]: [`cas::update`], the one read-modify-write loop over compare-and-swap (bounded
//!   attempts, jittered backoff, optional per-process lock);
//! - [`deadline`]: one deadline per library call, shared by every store call under it;
//! - [`health`]: liveness, readiness and the operator's self-test, on any store.
//!
//! The conformance suite every backend must pass, the `MockStore` and the `backend_tests!` macro
//! live in the `cache-testing` crate. The core picks no async runtime: its runtime dependencies are
//! what the trait and these helpers need.
//!
//! ```
//! use cache_core::{codec, keys, Key};
//! let mut key = String::from("user:");
//! keys::escape_id_into(&mut key, "42")?;
//! let key = Key::new(key)?;
//! assert_eq!(key.as_str(), "user:42");
//! let bytes = codec::encode(&serde_json::json!({"name": "ada"}))?;
//! let value: serde_json::Value = codec::decode(&bytes)?;
//! assert_eq!(value["name"], "ada");
//! # Ok::<(), cache_core::Error>(())
//! ```

// First: the macros that `store` and `layer` use to implement `Store` by delegation.
#[macro_use]
mod delegate;

pub mod cas;
pub mod codec;
pub mod config;
pub mod deadline;
pub mod error;
pub mod health;
pub mod keys;
pub mod layer;
pub mod store;
pub mod striped;
pub mod tracking;

pub use config::Profile;
pub use error::{BoxError, Error, ErrorKind, Result};
pub use keys::Key;
pub use store::{
    BackendStats, Bytes, CasOutcome, Expiry, KeyTtl, PoolStats, ScanCursor, ScanPage, Selected,
    SetCondition, SetOptions, Store, StoreExt,
};

// Re-exported so that backends and users implement the trait with the same macro version.
pub use async_trait::async_trait;
