//! # cache-domain
//!
//! The cache manager of the workspace: typed caching for every data family of the application, over
//! any [`cache_core::Store`] (Redis, Redis Cluster, in-memory).
//!
//! - **Typed calls per family**, serde-generic: `cache_user` / `get_user`, `cache_trend_data` /
//!   `get_trend_data`, ... (see [`CacheManager`]), with the seed's TTLs as defaults
//!   ([`config`]), overridable per family (config, `CACHE_TTL_<FAMILY>`) and per call.
//! - **Cache-aside** with [`CacheManager::get_or_load`]: one loader run per key at a time inside the
//!   process (single-flight), an optional cross-process lease, optional negative caching and early
//!   refresh.
//! - **Bulk** reads and writes of one family in one round trip.
//! - **Invalidation** by key, by family helpers (a user's data, a keyword's posts and trends), by
//!   pattern with `SCAN` + `UNLINK` (ids escaped, so invalidating user `*` deletes only user `*`), and
//!   O(1) for a whole family by bumping its namespace version.
//! - **Fail open**: a store outage is a miss on read and a logged, counted event on write; a value
//!   that does not decode is a miss (deleted and counted). Never a panic, never a hang beyond the
//!   store's timeouts.
//! - **Statistics** per family as a [`CacheStats`] snapshot and through the [`metrics`] facade
//!   ([`stats`]).
//!
//! The hot path of `get` / `set` is one store round trip: the namespace version comes from memory,
//! the key is built with one allocation, statistics are relaxed atomic adds.
//!
//! ```
//! use cache_core::Family;
//! use cache_domain::{CacheManager, CrawlError};
//! use cache_memory::MemoryStore;
//!
//! #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
//! struct User { id: u64, name: String }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! let cache = CacheManager::new(MemoryStore::default());
//!
//! // Typed cache / get pairs, with the family's TTL (user: 1 h).
//! cache.cache_user("42", &User { id: 42, name: "ada".into() }).await?;
//! let user: Option<User> = cache.get_user("42").await?;
//! assert_eq!(user.unwrap().name, "ada");
//!
//! // Cache-aside: the loader runs on a miss only.
//! let trends: Vec<(String, f64)> = cache
//!     .keyword_trends()
//!     .get_or_load("rust", || async { Ok::<_, std::io::Error>(vec![("async".into(), 0.42)]) })
//!     .await?;
//! assert_eq!(trends.len(), 1);
//!
//! // Crawl status, updated atomically as the task advances.
//! let status = cache
//!     .update_crawl_status("task-7", |s| {
//!         s.start(Some(100));
//!         s.advance(10);
//!         s.record_error(CrawlError::new("HTTP 429").with_item("r/rust"));
//!     })
//!     .await?;
//! assert_eq!(status.progress(), Some(0.1));
//!
//! // Invalidation: one key, a user's data, or a whole family in O(1).
//! cache.invalidate_trend_data("rust").await?;
//! cache.invalidate_user_data("42").await?;
//! cache.bump_version(Family::Content).await?;
//!
//! let stats = cache.stats();
//! assert_eq!(stats.family(Family::User).hits, 1);
//! # Ok(()) }
//! ```

pub mod config;
pub mod crawl;
pub mod error;
mod flight;
pub mod manager;
pub mod stats;
mod typed;

pub use config::{default_ttl, CacheConfig, LeaseConfig, WritePolicy, CACHE_FAMILIES};
pub use crawl::{CrawlError, CrawlState, CrawlStatus};
pub use error::LoadError;
pub use manager::{CacheManager, KeyMatch, TOMBSTONE};
pub use stats::{CacheStats, FamilyStats};
pub use typed::FamilyCache;
