//! # cache-domain
//!
//! The cache manager of the workspace: typed caching for every data family of the application, over
//! any [`cache_core::Store`] (Redis, Redis Cluster, in-memory).
//!
//! - **One way to reach a family**: its [`FamilyCache`] handle, from a named accessor
//!   (`cache.user()`, `cache.keyword_trends()`, ...) or from [`CacheManager::family`] when the family
//!   is data. The handle has every typed call: `get` / `set`, bulk `get_many` / `set_many`,
//!   cache-aside `get_or_load`, invalidation, version bumps, the family's statistics, and a per-call
//!   TTL ([`FamilyCache::with_ttl`]).
//! - **One table of families** ([`family`]): key layout, id rule, default TTL (the seed's) and
//!   environment override (`CACHE_TTL_<FAMILY>`) of each family, defined once; every key the manager
//!   writes is built from it by one function.
//! - **Cache-aside** with single-flight inside the process, an optional cross-process lease,
//!   optional negative caching and early refresh ([`loading`]).
//! - **Invalidation** by id, by family helpers (a user's data, a keyword's posts and trends), by
//!   selection with `SCAN` + `UNLINK` (ids escaped, so invalidating user `*` deletes only user `*`),
//!   and O(1) for a whole family by bumping its namespace version ([`versions`]).
//! - **Fail open**: a store outage is a miss on read and a logged, counted event on write; a value
//!   that does not decode is a miss (deleted and counted), and a value in a format version this
//!   build does not read is a miss left in place (counted), so builds of a rolling upgrade do not
//!   delete each other's values. Never a panic, never a hang beyond the store's timeouts
//!   ([`engine`]).
//! - **Statistics** per family as a [`CacheStats`] snapshot and through the [`metrics`] facade
//!   ([`stats`]).
//!
//! The hot path of `get` / `set` is one store round trip: the namespace version comes from memory,
//! statistics are relaxed atomic adds.
//!
//! ```
//! use cache_domain::{CacheManager, CrawlError, Family};
//! use cache_memory::MemoryStore;
//!
//! #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
//! struct User { id: u64, name: String }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! let cache = CacheManager::new(MemoryStore::default());
//!
//! // Typed set / get on the family's handle, with the family's TTL (user: 1 h).
//! cache.user().set("42", &User { id: 42, name: "ada".into() }).await?;
//! let user: Option<User> = cache.user().get("42").await?;
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
//! cache.keyword_trends().invalidate("rust").await?;
//! cache.invalidate_user_data("42").await?;
//! cache.content().bump_version().await?;
//!
//! // A tool that gets the family as text.
//! let family = Family::from_name("metrics")?;
//! cache.family(family).set("api:2026-11-26", &[12, 85]).await?;
//!
//! assert_eq!(cache.user().stats().hits, 1);
//! assert_eq!(cache.stats().family(Family::Metrics).writes, 1);
//! # Ok(()) }
//! ```
//!
//! # The seed's operations
//!
//! Every operation of the original design is one call on a handle (`v` is any `serde` value, `T` the
//! type to read back):
//!
//! | seed operation | call |
//! |---|---|
//! | `cache_user` / `get_user` | `cache.user().set(id, &v)` / `cache.user().get::<T>(id)` |
//! | `cache_user_keywords` / `get_user_keywords` | `cache.user_keywords().set(id, &v)` / `.get::<T>(id)` |
//! | `cache_keyword_posts` / `get_keyword_posts` | `cache.keyword_posts().set(id, &v)` / `.get::<T>(id)` |
//! | `cache_trend_data` / `get_trend_data` | `cache.keyword_trends().set(id, &v)` / `.get::<T>(id)` |
//! | `cache_crawl_status` / `get_crawl_status` | `cache.crawl_status().set(&s.task_id, &s)` / `.get::<CrawlStatus>(id)`; as the task advances: [`CacheManager::update_crawl_status`] |
//! | `cache_content` / `get_content` | `cache.content().set(id, &v)` / `.get::<T>(id)` |
//! | `cache_deploy_status` / `get_deploy_status` | `cache.deploy_status().set(id, &v)` / `.get::<T>(id)` |
//! | `cache_metrics(type, date)` / `get_metrics` | `cache.metrics().set("TYPE:DATE", &v)` / `.get::<T>("TYPE:DATE")` |
//! | set with another TTL | `cache.user().with_ttl(ttl).set(id, &v)` |
//! | cache first, database on a miss | `cache.keyword_trends().get_or_load(id, loader)` |
//! | `invalidate_trend_data` | `cache.keyword_trends().invalidate(id)` |
//! | invalidate all trend data | `cache.keyword_trends().bump_version()` (O(1)) |
//! | `invalidate_user_data` | [`CacheManager::invalidate_user_data`] |
//! | `invalidate_keyword_data` | [`CacheManager::invalidate_keyword_data`] |
//! | `invalidate_pattern` | `cache.user().invalidate_matching(KeyMatch::IdPrefix(p))` or `KeyMatch::All` |
//! | `get_stats` | [`CacheManager::stats`], `cache.user().stats()`, [`CacheManager::backend_stats`], [`CacheManager::key_counts`] |

mod budget;
pub mod config;
pub mod crawl;
pub mod engine;
pub mod error;
pub mod family;
mod flight;
pub mod invalidate;
pub mod loading;
pub mod manager;
mod near;
pub mod stats;
mod typed;
pub mod versions;

pub use cache_near::{NearConfig, NearStats};
pub use config::{CacheConfig, LeaseConfig, WritePolicy, DEFAULT_CALL_TIMEOUT};
pub use crawl::{CrawlError, CrawlState, CrawlStatus};
pub use engine::TOMBSTONE;
pub use error::LoadError;
pub use family::{Family, IdRule, KeyMatch};
pub use manager::{CacheManager, CacheManagerBuilder};
pub use stats::{CacheStats, FamilyStats};
pub use typed::FamilyCache;
