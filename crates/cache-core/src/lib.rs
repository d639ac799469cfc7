//! # cache-core
//!
//! The foundation every other crate of the workspace stands on, and nothing tied to one backend:
//!
//! - [`Store`]: the async key-value trait with Redis semantics that every backend implements
//!   (in-memory, Redis, Redis Cluster), usable as `S: Store` and as `Arc<dyn Store>`;
//! - [`Error`]: the one error type, with [`Error::is_transient`] for retry decisions;
//! - [`keys`]: the typed key schema and the escaping that keeps user input in its place;
//! - [`codec`]: the versioned JSON value format;
//! - [`config`]: settings from a builder and the environment, with profiles;
//! - `testing` (feature `testing`): the conformance suite every backend must pass.
//!
//! ```
//! use cache_core::{codec, keys::KeySchema};
//! let key = KeySchema::user("42")?;
//! assert_eq!(key.as_str(), "user:42");
//! let bytes = codec::encode(&serde_json::json!({"name": "ada"}))?;
//! let value: serde_json::Value = codec::decode(&bytes)?;
//! assert_eq!(value["name"], "ada");
//! # Ok::<(), cache_core::Error>(())
//! ```

pub mod codec;
pub mod config;
pub mod error;
pub mod health;
pub mod keys;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::{BackendConfig, Config, Profile};
pub use error::{BoxError, Error, ErrorKind, Result};
pub use keys::{Family, Key, KeySchema};
pub use store::{
    BackendStats, CasOutcome, Expiry, KeyTtl, PoolStats, ScanCursor, ScanPage, SetCondition,
    SetOptions, Store, StoreExt,
};

// Re-exported so that backends and users implement the trait with the same macro version.
pub use async_trait::async_trait;
