//! The conformance suite every [`Store`] backend must pass.
//!
//! Plain `pub async fn` checks over `&dyn Store`, using nothing but the trait, so that the in-memory
//! store, Redis and Redis Cluster are held to one contract (the [`cache_core::store`] documentation).
//! A check panics with a message naming the check, the key and what was expected, like `assert!`.
//!
//! The checks are grouped by topic, one file each: strings (`get`/`set`, conditions), values (binary,
//! large, size limit), TTLs and expiry (`get_with_ttl` too), batches, counters, compare-and-swap,
//! scan, sorted sets, the server (`ping`, `stats`, `track_changes`) and prefixes. All are
//! re-exported here.
//!
//! # Running it
//!
//! A backend's test builds three stores over **one** backend (one server, one cluster, one shared
//! memory data set) and calls [`run_all`]:
//!
//! - `store`: the store under test, with a non-empty prefix used by nothing else;
//! - `other_prefix`: another prefix (`conformance_a` / `conformance_b`; prefixes are single names, so
//!   two different ones never nest); [`check_prefix_isolation`] flushes it;
//! - `unprefixed`: an empty prefix; only used to look at the raw keys and to check that
//!   [`Store::flush_prefix`] refuses to run without a prefix.
//!
//! ```
//! use cache_core::Store;
//! use cache_testing::conformance::{run_all, Capabilities};
//!
//! // In a backend's `#[tokio::test]`, with three stores over one fresh server:
//! async fn conformance(store: &dyn Store, other_prefix: &dyn Store, unprefixed: &dyn Store) {
//!     run_all(store, other_prefix, unprefixed, &Capabilities::new()).await;
//! }
//! ```
//!
//! Each check uses its own fresh keys (`conformance:<check>:<nonce>:...`) and deletes them when it
//! passes, so checks may run against a server other tests use, and individual checks may be called on
//! their own. [`run_all`] runs them one after the other.
//!
//! # Time
//!
//! Expiry checks use TTLs of a few milliseconds and let time pass through [`Capabilities::clock`]:
//! [`RealClock`] sleeps (on a real server; also fine under a paused tokio clock, which auto-advances),
//! a backend on tokio's clock can pass a [`Clock`] that calls `tokio::time::advance` and says it is
//! [exact](Clock::is_exact), which makes the checks also assert that keys live until their deadline.
//! After a TTL has passed, the suite polls (bounded by [`Capabilities::expiry_grace`]) until the key
//! is gone, so a loaded machine causes no flakiness.
//!
//! # Capabilities
//!
//! Differences between backends are explicit fields of [`Capabilities`]; the suite never skips a
//! check silently: a backend without statistics, for instance, is checked to return `Ok(None)`.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use cache_core::{async_trait, Store};

mod batch;
mod cas;
mod counters;
mod prefix;
mod scan;
mod server;
mod strings;
mod support;
mod ttl;
mod values;
mod zset;

pub use batch::{check_delete, check_get_many, check_set_many};
pub use cas::{check_compare_and_swap, check_compare_and_swap_contention};
pub use counters::{check_incr_by, check_incr_by_concurrent, check_incr_by_exact_beyond_2_pow_53};
pub use prefix::check_prefix_isolation;
pub use scan::{check_scan, check_scan_escaping};
pub use server::{check_ping, check_stats, check_track_changes};
pub use strings::{check_get_set, check_keep_ttl, check_key_validation, check_set_conditions};
pub use ttl::{
    check_expire_and_persist, check_expired_keys_are_absent_everywhere, check_expiry, check_get_ex,
    check_get_with_ttl, check_sub_second_ttls, check_ttl_three_way, check_ttl_validation,
};
pub use values::{check_binary_and_empty_values, check_large_values};
pub use zset::{check_sorted_set_edges, check_sorted_sets, check_wrong_type};

/// How the suite lets time pass for a backend.
#[async_trait]
pub trait Clock: Send + Sync + Debug {
    /// Lets `d` of the backend's time pass.
    async fn wait(&self, d: Duration);

    /// Whether the backend's time moves only through [`Clock::wait`] (a paused tokio clock). Exact
    /// clocks get stricter checks: a key must still be there one millisecond before its deadline and
    /// TTLs must read back exactly.
    fn is_exact(&self) -> bool {
        false
    }
}

/// A [`Clock`] that sleeps on tokio's clock: real time on a real server (under a paused tokio clock
/// the sleep auto-advances).
#[derive(Debug, Clone, Copy, Default)]
pub struct RealClock;

#[async_trait]
impl Clock for RealClock {
    async fn wait(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }
}

/// What the backend under test can do and how the suite lets time pass. Build with
/// [`Capabilities::new`] and the `with_*` / `without_*` methods.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Capabilities {
    /// The largest value the store accepts (its `max_value_bytes`): the suite writes one of exactly
    /// this size and checks that one byte more fails with [`cache_core::Error::Capacity`] and writes nothing.
    /// Must be at least 1 MiB + 1 (the suite also writes 1 MiB values). Default 8 MiB, the backends'
    /// default (`CACHE_MAX_VALUE_BYTES`).
    pub max_value_bytes: usize,
    /// Whether [`Store::stats`] reports statistics (`Some`, with `backend` equal to
    /// [`Store::backend_name`]) or not (`None`). Default: reports.
    pub reports_stats: bool,
    /// How long after its TTL a key may still be visible before the suite fails (default 2 s; the
    /// suite polls, so a fast backend is not slowed down by a large grace).
    pub expiry_grace: Duration,
    /// How time passes. Default [`RealClock`].
    pub clock: Arc<dyn Clock>,
    /// Whether [`Store::track_changes`] registers listeners and reports changes to them (Redis on
    /// one server) or answers [`cache_core::Error::Unsupported`] (the trait's default). Default: it
    /// does not.
    pub tracks_changes: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Self::new()
    }
}

impl Capabilities {
    /// The defaults: 8 MiB values, statistics reported, 2 s grace, real time.
    pub fn new() -> Self {
        Self {
            max_value_bytes: 8 * 1024 * 1024,
            reports_stats: true,
            expiry_grace: Duration::from_secs(2),
            clock: Arc::new(RealClock),
            tracks_changes: false,
        }
    }

    /// Sets [`Capabilities::max_value_bytes`].
    pub fn with_max_value_bytes(mut self, max: usize) -> Self {
        self.max_value_bytes = max;
        self
    }

    /// The backend reports no statistics ([`Store::stats`] returns `Ok(None)`).
    pub fn without_stats(mut self) -> Self {
        self.reports_stats = false;
        self
    }

    /// Sets [`Capabilities::expiry_grace`].
    pub fn with_expiry_grace(mut self, grace: Duration) -> Self {
        self.expiry_grace = grace;
        self
    }

    /// Sets [`Capabilities::clock`].
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The backend reports key changes ([`Capabilities::tracks_changes`]).
    pub fn with_change_tracking(mut self) -> Self {
        self.tracks_changes = true;
        self
    }
}

/// Runs every check, one after the other. See the [module documentation](self) for the three
/// stores. Panics on the first failure.
pub async fn run_all(
    store: &dyn Store,
    other_prefix: &dyn Store,
    unprefixed: &dyn Store,
    caps: &Capabilities,
) {
    check_setup(store, other_prefix, unprefixed, caps);
    check_get_set(store).await;
    check_key_validation(store).await;
    check_binary_and_empty_values(store).await;
    check_large_values(store, caps).await;
    check_set_conditions(store).await;
    check_keep_ttl(store).await;
    check_ttl_validation(store).await;
    check_ttl_three_way(store).await;
    check_expiry(store, caps).await;
    check_expired_keys_are_absent_everywhere(store, caps).await;
    check_sub_second_ttls(store, caps).await;
    check_get_ex(store, caps).await;
    check_get_with_ttl(store).await;
    check_expire_and_persist(store, caps).await;
    check_get_many(store).await;
    check_set_many(store).await;
    check_delete(store).await;
    check_incr_by(store, caps).await;
    check_incr_by_exact_beyond_2_pow_53(store).await;
    check_incr_by_concurrent(store).await;
    check_compare_and_swap(store).await;
    check_compare_and_swap_contention(store).await;
    check_scan(store).await;
    check_scan_escaping(store).await;
    check_sorted_sets(store).await;
    check_sorted_set_edges(store).await;
    check_wrong_type(store).await;
    check_ping(store).await;
    check_stats(store, caps).await;
    check_track_changes(store, caps).await;
    check_prefix_isolation(store, other_prefix, unprefixed).await;
}

/// The three stores are set up as [`run_all`] requires.
pub fn check_setup(
    store: &dyn Store,
    other_prefix: &dyn Store,
    unprefixed: &dyn Store,
    caps: &Capabilities,
) {
    let (a, b) = (store.prefix(), other_prefix.prefix());
    assert!(!a.is_empty(), "the store under test needs a prefix");
    assert!(!b.is_empty(), "the other store needs a prefix");
    assert_ne!(a, b, "the two prefixes must differ");
    assert!(
        !a.starts_with(&format!("{b}:")) && !b.starts_with(&format!("{a}:")),
        "prefixes {a:?} and {b:?} must not be nested"
    );
    assert_eq!(
        unprefixed.prefix(),
        "",
        "the third store must have no prefix"
    );
    assert_eq!(store.backend_name(), other_prefix.backend_name());
    assert_eq!(store.backend_name(), unprefixed.backend_name());
    assert!(
        caps.max_value_bytes > 1024 * 1024,
        "the suite writes 1 MiB values: max_value_bytes must be larger"
    );
}
