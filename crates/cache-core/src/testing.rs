//! The conformance suite every [`Store`] backend must pass (feature `testing`).
//!
//! Plain `pub async fn` checks over `&dyn Store`, using nothing but the trait, so that the in-memory
//! store, Redis and Redis Cluster are held to one contract (the [`crate::store`] documentation).
//! A check panics with a message naming the check, the key and what was expected, like `assert!`.
//!
//! # Running it
//!
//! A backend's test builds three stores over **one** backend (one server, one cluster, one shared
//! memory data set) and calls [`run_all`]:
//!
//! - `store`: the store under test, with a non-empty prefix used by nothing else;
//! - `other_prefix`: another prefix (`conformance_a` / `conformance_b`); [`check_prefix_isolation`]
//!   flushes it;
//! - `unprefixed`: an empty prefix; only used to look at the raw keys and to check that
//!   [`Store::flush_prefix`] refuses to run without a prefix.
//!
//! ```
//! use cache_core::testing::{run_all, Capabilities};
//! use cache_core::Store;
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

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use async_trait::async_trait;

use crate::keys::glob_escape;
use crate::store::MAX_KEY_BYTES;
use crate::{CasOutcome, Error, Expiry, KeyTtl, Result, ScanCursor, SetOptions, Store, StoreExt};

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
    /// this size and checks that one byte more fails with [`Error::Capacity`] and writes nothing.
    /// Must be at least 1 MiB + 1 (the suite also writes 1 MiB values). Default 8 MiB, the default of
    /// [`crate::Config::max_value_bytes`].
    pub max_value_bytes: usize,
    /// Whether [`Store::stats`] reports statistics (`Some`, with `backend` equal to
    /// [`Store::backend_name`]) or not (`None`). Default: reports.
    pub reports_stats: bool,
    /// How long after its TTL a key may still be visible before the suite fails (default 2 s; the
    /// suite polls, so a fast backend is not slowed down by a large grace).
    pub expiry_grace: Duration,
    /// How time passes. Default [`RealClock`].
    pub clock: Arc<dyn Clock>,
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
    check_prefix_isolation(store, other_prefix, unprefixed).await;
}

// ------------------------------------------------------------------------------------------------
// Helpers.

/// A namespace of fresh keys for one check: `conformance:<check>:<pid>-<time>-<n>`.
fn namespace(check: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "conformance:{check}:{}-{nanos:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Unwraps a result, panicking with the context and the error.
#[track_caller]
fn must<T>(r: Result<T>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: unexpected error: {e} ({e:?})"),
    }
}

/// Asserts that a result is [`Error::InvalidInput`].
#[track_caller]
fn must_be_invalid<T: Debug>(r: Result<T>, what: &str) {
    match r {
        Err(Error::InvalidInput(_)) => {}
        other => panic!("{what}: expected Error::InvalidInput, got {other:?}"),
    }
}

/// Asserts that a result is [`Error::Capacity`].
#[track_caller]
fn must_be_capacity<T: Debug>(r: Result<T>, what: &str) {
    match r {
        Err(Error::Capacity(_)) => {}
        other => panic!("{what}: expected Error::Capacity, got {other:?}"),
    }
}

/// Asserts that a result is [`Error::WrongType`] naming `key`.
#[track_caller]
fn must_be_wrong_type<T: Debug>(r: Result<T>, key: &str, what: &str) {
    match r {
        Err(Error::WrongType { key: k, .. }) => {
            assert_eq!(k, key, "{what}: WrongType must name the relative key")
        }
        other => panic!("{what}: expected Error::WrongType, got {other:?}"),
    }
}

/// Deletes every key of a check's namespace.
async fn cleanup(store: &dyn Store, ns: &str) {
    let pattern = format!("{}:*", glob_escape(ns));
    must(
        store.delete_matching(&pattern, 500, &|_, _| {}).await,
        "cleanup",
    );
    let left = must(store.scan_all(&pattern, 500).await, "cleanup scan");
    assert!(left.is_empty(), "cleanup left keys behind: {left:?}");
}

async fn set(store: &dyn Store, key: &str, value: &[u8], opts: SetOptions) -> bool {
    must(store.set(key, value, opts).await, &format!("set {key}"))
}

async fn get(store: &dyn Store, key: &str) -> Option<Vec<u8>> {
    must(store.get(key).await, &format!("get {key}"))
}

async fn ttl(store: &dyn Store, key: &str) -> KeyTtl {
    must(store.ttl(key).await, &format!("ttl {key}"))
}

/// Asserts that `key` has a TTL in `(min, max]`.
#[track_caller]
fn assert_ttl_between(t: KeyTtl, min: Duration, max: Duration, what: &str) {
    match t {
        KeyTtl::ExpiresIn(d) => assert!(
            d > min && d <= max,
            "{what}: TTL {d:?} not in ({min:?}, {max:?}]"
        ),
        other => panic!("{what}: expected a TTL in ({min:?}, {max:?}], got {other:?}"),
    }
}

/// Lets `ttl` pass, then polls (bounded by the grace) until `key` is gone. With an exact clock, also
/// checks that the key is still there 1 ms before its deadline and gone right at it.
async fn wait_until_expired(store: &dyn Store, key: &str, ttl: Duration, caps: &Capabilities) {
    let clock = &*caps.clock;
    if clock.is_exact() {
        let almost = ttl.saturating_sub(Duration::from_millis(1));
        clock.wait(almost).await;
        assert!(
            must(store.exists(key).await, "exists before deadline"),
            "{key}: gone 1 ms before its TTL of {ttl:?}"
        );
        clock.wait(ttl - almost).await;
        assert!(
            !must(store.exists(key).await, "exists at deadline"),
            "{key}: still there when its TTL of {ttl:?} has passed (exact clock)"
        );
        return;
    }
    clock.wait(ttl).await;
    poll_until_gone(store, key, ttl, caps).await;
}

/// Polls (bounded by the grace) until `key` is gone, once its TTL of `ttl` has passed.
async fn poll_until_gone(store: &dyn Store, key: &str, ttl: Duration, caps: &Capabilities) {
    let clock = &*caps.clock;
    let step = Duration::from_millis(5);
    let mut waited = Duration::ZERO;
    while must(store.exists(key).await, "exists while waiting for expiry") {
        assert!(
            waited <= caps.expiry_grace,
            "{key}: still there {waited:?} after its TTL of {ttl:?} passed"
        );
        clock.wait(step).await;
        waited += step;
    }
}

/// Polls several futures concurrently in the current task and returns their outputs in order.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (fut, out) in futures.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match fut.as_mut().poll(cx) {
                    Poll::Ready(v) => *out = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|o| o.expect("poll_fn returned Ready only once every output was set"))
        .collect()
}

/// Bytes `0, 1, ..., 250, 0, 1, ...` of the given length (never valid UTF-8 past 128 bytes).
fn pattern_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

const LONG: Duration = Duration::from_secs(600);
const HALF_LONG: Duration = Duration::from_secs(300);
/// A TTL short enough to wait for, long enough to be set reliably.
const SHORT: Duration = Duration::from_millis(30);

// ------------------------------------------------------------------------------------------------
// Checks.

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

/// `get` / `set` basics: missing is `None`, a write is read back, an overwrite replaces.
pub async fn check_get_set(store: &dyn Store) {
    let ns = namespace("get_set");
    let k = format!("{ns}:k");
    assert_eq!(get(store, &k).await, None, "missing key");
    assert!(set(store, &k, b"one", SetOptions::new()).await);
    assert_eq!(get(store, &k).await.as_deref(), Some(&b"one"[..]));
    assert!(set(store, &k, b"two", SetOptions::new()).await);
    assert_eq!(get(store, &k).await.as_deref(), Some(&b"two"[..]));
    assert!(must(store.exists(&k).await, "exists"));
    // Keys may hold any UTF-8, including spaces, braces and glob characters.
    let odd = format!("{ns}:odd key {{tag}} * ? [x] \\ é ✓");
    assert!(set(store, &odd, b"v", SetOptions::new()).await);
    assert_eq!(get(store, &odd).await.as_deref(), Some(&b"v"[..]));
    cleanup(store, &ns).await;
    assert_eq!(get(store, &k).await, None, "after cleanup");
}

/// Empty and over-long keys are [`Error::InvalidInput`] for every method taking keys.
pub async fn check_key_validation(store: &dyn Store) {
    let long = "k".repeat(MAX_KEY_BYTES + 1);
    for bad in ["", long.as_str()] {
        let what = format!("key of {} bytes", bad.len());
        must_be_invalid(store.get(bad).await, &what);
        must_be_invalid(store.set(bad, b"v", SetOptions::new()).await, &what);
        must_be_invalid(store.get_many(&[bad]).await, &what);
        must_be_invalid(store.set_many(&[(bad, b"v")], Expiry::Never).await, &what);
        must_be_invalid(store.delete(&[bad]).await, &what);
        must_be_invalid(store.exists(bad).await, &what);
        must_be_invalid(store.ttl(bad).await, &what);
        must_be_invalid(store.incr_by(bad, 1, None).await, &what);
        must_be_invalid(
            store
                .compare_and_swap(bad, None, Some(b"v"), Expiry::Never)
                .await,
            &what,
        );
        must_be_invalid(store.zadd(bad, "m", 1.0).await, &what);
        must_be_invalid(store.zcard(bad).await, &what);
    }
    // The longest accepted key works.
    let ns = namespace("keys");
    let max = format!("{ns}:{}", "k".repeat(MAX_KEY_BYTES - ns.len() - 1));
    assert_eq!(max.len(), MAX_KEY_BYTES);
    assert!(set(store, &max, b"v", SetOptions::new()).await);
    assert_eq!(get(store, &max).await.as_deref(), Some(&b"v"[..]));
    cleanup(store, &ns).await;
}

/// Values are binary-safe; the empty value is a value, not a missing key.
pub async fn check_binary_and_empty_values(store: &dyn Store) {
    let ns = namespace("binary");
    let all: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    let cases: [(&str, &[u8]); 4] = [
        ("all-bytes", &all),
        ("nul", b"\0\0a\0"),
        ("crlf", b"*1\r\n$3\r\nGET\r\n"),
        ("empty", b""),
    ];
    for (name, value) in cases {
        let k = format!("{ns}:{name}");
        assert!(set(store, &k, value, SetOptions::new()).await);
        assert_eq!(get(store, &k).await.as_deref(), Some(value), "{name}");
    }
    let empty = format!("{ns}:empty");
    assert!(must(store.exists(&empty).await, "empty value exists"));
    assert_eq!(ttl(store, &empty).await, KeyTtl::Persistent);
    assert!(
        !set(store, &empty, b"x", SetOptions::new().if_absent()).await,
        "NX on an empty value: the key exists"
    );
    let keys: Vec<String> = cases.iter().map(|(n, _)| format!("{ns}:{n}")).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let many = must(store.get_many(&refs).await, "get_many binary");
    let expected: Vec<Option<Vec<u8>>> = cases.iter().map(|(_, v)| Some(v.to_vec())).collect();
    assert_eq!(many, expected, "get_many of binary and empty values");
    // CAS distinguishes "empty" from "missing".
    let missing = format!("{ns}:missing");
    assert_eq!(
        must(
            store
                .compare_and_swap(&missing, Some(b""), Some(b"x"), Expiry::Never)
                .await,
            "cas empty vs missing"
        ),
        CasOutcome::Conflict { current: None }
    );
    assert_eq!(
        must(
            store
                .compare_and_swap(&empty, None, Some(b"x"), Expiry::Never)
                .await,
            "cas missing vs empty"
        ),
        CasOutcome::Conflict {
            current: Some(Vec::new())
        }
    );
    assert_eq!(
        must(
            store
                .compare_and_swap(&empty, Some(b""), Some(&all), Expiry::Never)
                .await,
            "cas from empty"
        ),
        CasOutcome::Swapped
    );
    assert_eq!(get(store, &empty).await.as_deref(), Some(&all[..]));
    cleanup(store, &ns).await;
}

/// 1 MiB values round-trip through every write path; a value of exactly the limit is accepted and one
/// byte more is [`Error::Capacity`] without writing anything.
pub async fn check_large_values(store: &dyn Store, caps: &Capabilities) {
    let ns = namespace("large");
    let mib = pattern_bytes(1024 * 1024);
    let (k1, k2, k3) = (
        format!("{ns}:set"),
        format!("{ns}:many"),
        format!("{ns}:cas"),
    );
    assert!(set(store, &k1, &mib, SetOptions::new()).await);
    assert_eq!(
        get(store, &k1).await.as_deref(),
        Some(&mib[..]),
        "1 MiB via set"
    );
    must(
        store.set_many(&[(&k2, &mib)], Expiry::In(LONG)).await,
        "set_many 1 MiB",
    );
    let many = must(store.get_many(&[&k1, &k2]).await, "get_many 1 MiB");
    assert!(many.iter().all(|v| v.as_deref() == Some(&mib[..])));
    assert_eq!(
        must(
            store
                .compare_and_swap(&k3, None, Some(&mib), Expiry::Never)
                .await,
            "cas 1 MiB"
        ),
        CasOutcome::Swapped
    );
    assert_eq!(
        must(
            store
                .compare_and_swap(&k3, Some(&mib), Some(b"small"), Expiry::Never)
                .await,
            "cas against 1 MiB"
        ),
        CasOutcome::Swapped
    );

    let max = caps.max_value_bytes;
    let at_limit = vec![b'x'; max];
    let k_max = format!("{ns}:at-limit");
    assert!(set(store, &k_max, &at_limit, SetOptions::new()).await);
    assert_eq!(
        get(store, &k_max).await.map(|v| v.len()),
        Some(max),
        "a value of exactly max_value_bytes"
    );
    drop(at_limit);
    let over = vec![b'y'; max + 1];
    let k_over = format!("{ns}:over");
    must_be_capacity(
        store.set(&k_over, &over, SetOptions::new()).await,
        "set one byte over",
    );
    assert_eq!(
        get(store, &k_over).await,
        None,
        "oversize set wrote nothing"
    );
    let k_batch = format!("{ns}:batch-ok");
    must_be_capacity(
        store
            .set_many(&[(&k_batch, b"small"), (&k_over, &over)], Expiry::Never)
            .await,
        "set_many with one oversize value",
    );
    assert_eq!(
        must(store.get_many(&[&k_batch, &k_over]).await, "get_many"),
        vec![None, None],
        "set_many with an oversize value must write nothing"
    );
    must_be_capacity(
        store
            .compare_and_swap(&k3, Some(b"small"), Some(&over), Expiry::Never)
            .await,
        "cas one byte over",
    );
    assert_eq!(get(store, &k3).await.as_deref(), Some(&b"small"[..]));
    cleanup(store, &ns).await;
}

/// `NX` / `XX`: the write happens only when the condition holds, and a refused write changes nothing
/// (value and TTL).
pub async fn check_set_conditions(store: &dyn Store) {
    let ns = namespace("nx_xx");
    let k = format!("{ns}:k");
    assert!(
        !set(store, &k, b"x", SetOptions::new().if_present()).await,
        "XX on a missing key"
    );
    assert_eq!(get(store, &k).await, None, "XX must not create");
    assert!(
        set(store, &k, b"1", SetOptions::ttl(LONG).if_absent()).await,
        "NX on a missing key"
    );
    assert_ttl_between(ttl(store, &k).await, HALF_LONG, LONG, "NX with TTL");
    assert!(
        !set(store, &k, b"2", SetOptions::new().if_absent()).await,
        "NX on an existing key"
    );
    assert_eq!(get(store, &k).await.as_deref(), Some(&b"1"[..]));
    assert_ttl_between(
        ttl(store, &k).await,
        HALF_LONG,
        LONG,
        "refused NX keeps TTL",
    );
    assert!(
        set(store, &k, b"3", SetOptions::new().if_present()).await,
        "XX on an existing key"
    );
    assert_eq!(get(store, &k).await.as_deref(), Some(&b"3"[..]));
    assert_eq!(
        ttl(store, &k).await,
        KeyTtl::Persistent,
        "XX with Expiry::Never removes the TTL"
    );
    // A plain write removes an existing TTL; a write with a TTL sets it.
    assert!(set(store, &k, b"4", SetOptions::ttl(LONG)).await);
    assert_ttl_between(ttl(store, &k).await, HALF_LONG, LONG, "SET PX");
    assert!(set(store, &k, b"5", SetOptions::new()).await);
    assert_eq!(
        ttl(store, &k).await,
        KeyTtl::Persistent,
        "plain SET clears TTL"
    );
    cleanup(store, &ns).await;
}

/// `KEEPTTL`: an existing key keeps its TTL, a new key gets none.
pub async fn check_keep_ttl(store: &dyn Store) {
    let ns = namespace("keepttl");
    let k = format!("{ns}:k");
    assert!(set(store, &k, b"1", SetOptions::new().keep_ttl()).await);
    assert_eq!(
        ttl(store, &k).await,
        KeyTtl::Persistent,
        "KEEPTTL on a new key"
    );
    must(store.expire(&k, LONG).await, "expire");
    assert!(set(store, &k, b"2", SetOptions::new().keep_ttl()).await);
    assert_eq!(get(store, &k).await.as_deref(), Some(&b"2"[..]));
    assert_ttl_between(ttl(store, &k).await, HALF_LONG, LONG, "KEEPTTL keeps");
    assert!(set(store, &k, b"3", SetOptions::new().keep_ttl().if_present()).await);
    assert_ttl_between(ttl(store, &k).await, HALF_LONG, LONG, "XX KEEPTTL keeps");
    assert!(
        !set(store, &k, b"4", SetOptions::new().keep_ttl().if_absent()).await,
        "NX KEEPTTL on an existing key"
    );
    assert_eq!(get(store, &k).await.as_deref(), Some(&b"3"[..]));
    cleanup(store, &ns).await;
}

/// A zero TTL is [`Error::InvalidInput`] everywhere a TTL is taken, and changes nothing; so is an
/// absurdly large one.
pub async fn check_ttl_validation(store: &dyn Store) {
    let ns = namespace("ttl_validation");
    let k = format!("{ns}:k");
    assert!(set(store, &k, b"v", SetOptions::new()).await);
    for bad in [Duration::ZERO, Duration::MAX] {
        let what = format!("TTL {bad:?}");
        must_be_invalid(store.set(&k, b"new", SetOptions::ttl(bad)).await, &what);
        must_be_invalid(
            store
                .set(&k, b"new", SetOptions::ttl(bad).if_present())
                .await,
            &what,
        );
        must_be_invalid(
            store.set_many(&[(&k, b"new")], Expiry::In(bad)).await,
            &what,
        );
        must_be_invalid(store.get_ex(&k, bad).await, &what);
        must_be_invalid(store.expire(&k, bad).await, &what);
        must_be_invalid(store.incr_by(&format!("{ns}:n"), 1, Some(bad)).await, &what);
        must_be_invalid(
            store
                .compare_and_swap(&k, Some(b"v"), Some(b"new"), Expiry::In(bad))
                .await,
            &what,
        );
        assert_eq!(get(store, &k).await.as_deref(), Some(&b"v"[..]), "{what}");
        assert_eq!(ttl(store, &k).await, KeyTtl::Persistent, "{what}");
        assert_eq!(get(store, &format!("{ns}:n")).await, None, "{what}");
    }
    must_be_invalid(
        store.set_many(&[(&k, b"new")], Expiry::Keep).await,
        "set_many with Expiry::Keep",
    );
    assert_eq!(get(store, &k).await.as_deref(), Some(&b"v"[..]));
    cleanup(store, &ns).await;
}

/// `ttl` answers the three cases apart, for strings and sorted sets.
pub async fn check_ttl_three_way(store: &dyn Store) {
    let ns = namespace("ttl3");
    let (p, e, z) = (format!("{ns}:p"), format!("{ns}:e"), format!("{ns}:z"));
    assert_eq!(ttl(store, &p).await, KeyTtl::Missing);
    assert!(set(store, &p, b"v", SetOptions::new()).await);
    assert_eq!(ttl(store, &p).await, KeyTtl::Persistent);
    assert!(set(store, &e, b"v", SetOptions::ttl(LONG)).await);
    assert_ttl_between(ttl(store, &e).await, HALF_LONG, LONG, "ExpiresIn");
    assert_eq!(
        ttl(store, &e).await.remaining().map(|d| d <= LONG),
        Some(true)
    );
    must(store.zadd(&z, "m", 1.0).await, "zadd");
    assert_eq!(ttl(store, &z).await, KeyTtl::Persistent, "zset");
    assert!(must(store.expire(&z, LONG).await, "expire zset"));
    assert_ttl_between(ttl(store, &z).await, HALF_LONG, LONG, "zset with TTL");
    cleanup(store, &ns).await;
}

/// A key written with a short TTL disappears after it (and not before, on an exact clock).
pub async fn check_expiry(store: &dyn Store, caps: &Capabilities) {
    let ns = namespace("expiry");
    let (k, keep) = (format!("{ns}:short"), format!("{ns}:long"));
    assert!(set(store, &keep, b"v", SetOptions::ttl(LONG)).await);
    assert!(set(store, &k, b"v", SetOptions::ttl(SHORT)).await);
    if caps.clock.is_exact() {
        assert_eq!(ttl(store, &k).await, KeyTtl::ExpiresIn(SHORT), "exact TTL");
    }
    wait_until_expired(store, &k, SHORT, caps).await;
    assert_eq!(get(store, &k).await, None);
    assert_eq!(ttl(store, &k).await, KeyTtl::Missing);
    assert_eq!(
        get(store, &keep).await.as_deref(),
        Some(&b"v"[..]),
        "long TTL"
    );
    // Sorted sets expire too.
    let z = format!("{ns}:z");
    must(store.zadd(&z, "m", 1.0).await, "zadd");
    assert!(must(store.expire(&z, SHORT).await, "expire zset"));
    wait_until_expired(store, &z, SHORT, caps).await;
    assert_eq!(must(store.zcard(&z).await, "zcard"), 0);
    cleanup(store, &ns).await;
}

/// An expired key is indistinguishable from a missing one for every method.
pub async fn check_expired_keys_are_absent_everywhere(store: &dyn Store, caps: &Capabilities) {
    let ns = namespace("expired");
    let names = [
        "get", "many", "getex", "exists", "expire", "persist", "delete", "nx", "xx", "incr", "cas",
        "scan",
    ];
    let keys: Vec<String> = names.iter().map(|n| format!("{ns}:{n}")).collect();
    let entries: Vec<(&str, &[u8])> = keys.iter().map(|k| (k.as_str(), &b"7"[..])).collect();
    must(
        store.set_many(&entries, Expiry::In(SHORT)).await,
        "set_many with TTL",
    );
    let z = format!("{ns}:zset");
    must(store.zadd(&z, "m", 1.0).await, "zadd");
    must(store.expire(&z, SHORT).await, "expire zset");
    // Wait for the last one; they share the deadline.
    wait_until_expired(store, &keys[keys.len() - 1], SHORT, caps).await;
    poll_until_gone(store, &z, SHORT, caps).await;
    let key = |n: &str| format!("{ns}:{n}");
    assert_eq!(get(store, &key("get")).await, None);
    assert_eq!(
        must(store.get_many(&[&key("many")]).await, "get_many"),
        vec![None]
    );
    assert_eq!(
        must(store.get_ex(&key("getex"), LONG).await, "get_ex"),
        None
    );
    assert!(!must(store.exists(&key("exists")).await, "exists"));
    assert!(!must(store.expire(&key("expire"), LONG).await, "expire"));
    assert!(!must(store.persist(&key("persist")).await, "persist"));
    assert_eq!(must(store.delete(&[&key("delete")]).await, "delete"), 0);
    assert!(set(store, &key("nx"), b"new", SetOptions::new().if_absent()).await);
    assert_eq!(
        ttl(store, &key("nx")).await,
        KeyTtl::Persistent,
        "NX over expired"
    );
    assert!(!set(store, &key("xx"), b"new", SetOptions::new().if_present()).await);
    assert_eq!(get(store, &key("xx")).await, None);
    assert_eq!(must(store.incr_by(&key("incr"), 1, None).await, "incr"), 1);
    assert_eq!(
        must(
            store
                .compare_and_swap(&key("cas"), None, Some(b"x"), Expiry::Never)
                .await,
            "cas"
        ),
        CasOutcome::Swapped,
        "an expired key is missing for CAS"
    );
    let scanned = must(
        store
            .scan_all(&format!("{}:s*", glob_escape(&ns)), 100)
            .await,
        "scan",
    );
    assert!(
        scanned.is_empty(),
        "scan returned expired keys: {scanned:?}"
    );
    assert_eq!(must(store.zcard(&z).await, "zcard"), 0);
    assert!(must(store.zadd(&z, "n", 2.0).await, "zadd recreates"));
    assert_eq!(
        must(
            store
                .zrange_by_score(&z, f64::NEG_INFINITY, f64::INFINITY, None)
                .await,
            "zrange"
        ),
        vec![("n".to_owned(), 2.0)],
        "a sorted set recreated after expiry has only the new member"
    );
    assert_eq!(ttl(store, &z).await, KeyTtl::Persistent);
    cleanup(store, &ns).await;
}

/// Sub-second and sub-millisecond TTLs: rounded up to whole milliseconds, never down to zero.
pub async fn check_sub_second_ttls(store: &dyn Store, caps: &Capabilities) {
    let ns = namespace("subsecond");
    let exact = caps.clock.is_exact();
    // 1.5 ms rounds up to 2 ms; 1 ns rounds up to 1 ms (not to "no TTL", not to an error).
    for (name, asked, effective) in [
        ("us", Duration::from_micros(1500), Duration::from_millis(2)),
        ("ns", Duration::from_nanos(1), Duration::from_millis(1)),
    ] {
        let k = format!("{ns}:{name}");
        assert!(set(store, &k, b"v", SetOptions::ttl(asked)).await);
        match ttl(store, &k).await {
            KeyTtl::ExpiresIn(d) if exact => assert_eq!(d, effective, "{name}"),
            KeyTtl::ExpiresIn(d) => assert!(d <= effective, "{name}: {d:?} > {effective:?}"),
            // On a real clock the key may already be gone.
            KeyTtl::Missing if !exact => {}
            other => panic!("{name}: expected a TTL of at most {effective:?}, got {other:?}"),
        }
        wait_until_expired(store, &k, effective, caps).await;
    }
    let k = format!("{ns}:ms");
    let asked = Duration::from_millis(250);
    assert!(set(store, &k, b"v", SetOptions::ttl(asked)).await);
    match ttl(store, &k).await {
        KeyTtl::ExpiresIn(d) if exact => assert_eq!(d, asked),
        KeyTtl::ExpiresIn(d) => assert!(d <= asked && d > Duration::ZERO),
        KeyTtl::Missing if !exact => {}
        other => panic!("250 ms: unexpected {other:?}"),
    }
    wait_until_expired(store, &k, asked, caps).await;
    cleanup(store, &ns).await;
}

/// `GETEX`: returns the value and sets the TTL (longer or shorter); a missing key stays missing.
pub async fn check_get_ex(store: &dyn Store, caps: &Capabilities) {
    let ns = namespace("getex");
    let k = format!("{ns}:k");
    assert_eq!(must(store.get_ex(&k, LONG).await, "get_ex missing"), None);
    assert!(
        !must(store.exists(&k).await, "exists"),
        "GETEX must not create"
    );
    assert!(set(store, &k, b"v", SetOptions::ttl(Duration::from_secs(5))).await);
    assert_eq!(
        must(store.get_ex(&k, LONG).await, "get_ex").as_deref(),
        Some(&b"v"[..])
    );
    assert_ttl_between(ttl(store, &k).await, HALF_LONG, LONG, "GETEX extends");
    let p = format!("{ns}:persistent");
    assert!(set(store, &p, b"p", SetOptions::new()).await);
    assert_eq!(
        must(store.get_ex(&p, SHORT).await, "get_ex short").as_deref(),
        Some(&b"p"[..])
    );
    wait_until_expired(store, &p, SHORT, caps).await;
    cleanup(store, &ns).await;
}

/// `EXPIRE` / `PERSIST`: create nothing, report whether they acted.
pub async fn check_expire_and_persist(store: &dyn Store, caps: &Capabilities) {
    let ns = namespace("expire");
    let k = format!("{ns}:k");
    assert!(!must(store.expire(&k, LONG).await, "expire missing"));
    assert!(
        !must(store.exists(&k).await, "exists"),
        "EXPIRE must not create"
    );
    assert!(!must(store.persist(&k).await, "persist missing"));
    assert!(set(store, &k, b"v", SetOptions::new()).await);
    assert!(
        !must(store.persist(&k).await, "persist persistent"),
        "PERSIST on a key without TTL"
    );
    assert!(must(store.expire(&k, LONG).await, "expire"));
    assert_ttl_between(ttl(store, &k).await, HALF_LONG, LONG, "EXPIRE");
    assert!(must(store.persist(&k).await, "persist"));
    assert_eq!(ttl(store, &k).await, KeyTtl::Persistent);
    assert!(!must(store.persist(&k).await, "persist twice"));
    assert_eq!(get(store, &k).await.as_deref(), Some(&b"v"[..]));
    // Shortening a TTL makes the key expire.
    assert!(must(store.expire(&k, SHORT).await, "expire short"));
    wait_until_expired(store, &k, SHORT, caps).await;
    cleanup(store, &ns).await;
}

/// `MGET`: one answer per key, in order, duplicates answered twice, missing keys `None`.
pub async fn check_get_many(store: &dyn Store) {
    let ns = namespace("get_many");
    let (a, b, c) = (format!("{ns}:a"), format!("{ns}:b"), format!("{ns}:c"));
    assert!(set(store, &a, b"A", SetOptions::new()).await);
    assert!(set(store, &c, b"C", SetOptions::new()).await);
    assert_eq!(
        must(store.get_many(&[]).await, "get_many empty"),
        Vec::<Option<Vec<u8>>>::new()
    );
    let got = must(store.get_many(&[&c, &b, &a, &c, &a]).await, "get_many");
    assert_eq!(
        got,
        vec![
            Some(b"C".to_vec()),
            None,
            Some(b"A".to_vec()),
            Some(b"C".to_vec()),
            Some(b"A".to_vec())
        ]
    );
    // Many keys at once (spread over slots on a cluster).
    let keys: Vec<String> = (0..100).map(|i| format!("{ns}:n{i}")).collect();
    let values: Vec<Vec<u8>> = (0..100).map(|i| format!("v{i}").into_bytes()).collect();
    let entries: Vec<(&str, &[u8])> = keys
        .iter()
        .zip(&values)
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    must(store.set_many(&entries, Expiry::Never).await, "set_many");
    let refs: Vec<&str> = keys.iter().rev().map(String::as_str).collect();
    let got = must(store.get_many(&refs).await, "get_many 100");
    let want: Vec<Option<Vec<u8>>> = values.iter().rev().cloned().map(Some).collect();
    assert_eq!(got, want, "get_many keeps the order of the input");
    cleanup(store, &ns).await;
}

/// `MSET`: every entry written with the same expiry; the last duplicate wins.
pub async fn check_set_many(store: &dyn Store) {
    let ns = namespace("set_many");
    let (a, b) = (format!("{ns}:a"), format!("{ns}:b"));
    must(store.set_many(&[], Expiry::Never).await, "set_many empty");
    assert!(set(store, &a, b"old", SetOptions::ttl(LONG)).await);
    must(
        store
            .set_many(&[(&a, b"1"), (&b, b"2"), (&a, b"3")], Expiry::Never)
            .await,
        "set_many",
    );
    assert_eq!(
        get(store, &a).await.as_deref(),
        Some(&b"3"[..]),
        "last wins"
    );
    assert_eq!(get(store, &b).await.as_deref(), Some(&b"2"[..]));
    assert_eq!(
        ttl(store, &a).await,
        KeyTtl::Persistent,
        "Expiry::Never clears the TTL"
    );
    must(
        store
            .set_many(&[(&a, b"x"), (&b, b"y")], Expiry::In(LONG))
            .await,
        "set_many with TTL",
    );
    assert_ttl_between(ttl(store, &a).await, HALF_LONG, LONG, "a");
    assert_ttl_between(ttl(store, &b).await, HALF_LONG, LONG, "b");
    assert_eq!(get(store, &b).await.as_deref(), Some(&b"y"[..]));
    cleanup(store, &ns).await;
}

/// `DEL`: counts the keys that existed (a duplicate once), of any type.
pub async fn check_delete(store: &dyn Store) {
    let ns = namespace("delete");
    let (a, b, z, m) = (
        format!("{ns}:a"),
        format!("{ns}:b"),
        format!("{ns}:z"),
        format!("{ns}:missing"),
    );
    assert_eq!(must(store.delete(&[]).await, "delete nothing"), 0);
    assert!(set(store, &a, b"1", SetOptions::new()).await);
    assert!(set(store, &b, b"", SetOptions::ttl(LONG)).await);
    must(store.zadd(&z, "m", 1.0).await, "zadd");
    assert_eq!(
        must(store.delete(&[&a, &m, &a, &b, &z]).await, "delete"),
        3,
        "three keys existed"
    );
    for k in [&a, &b, &z] {
        assert!(!must(store.exists(k).await, "exists"), "{k} deleted");
    }
    assert_eq!(must(store.delete(&[&a]).await, "delete again"), 0);
    cleanup(store, &ns).await;
}

/// `INCRBY`: Redis's integer rules; `ttl_if_created` only on creation; errors change nothing.
pub async fn check_incr_by(store: &dyn Store, caps: &Capabilities) {
    let ns = namespace("incr");
    let k = format!("{ns}:n");
    assert_eq!(must(store.incr_by(&k, 5, None).await, "incr new"), 5);
    assert_eq!(ttl(store, &k).await, KeyTtl::Persistent);
    assert_eq!(must(store.incr_by(&k, -8, Some(SHORT)).await, "decr"), -3);
    assert_eq!(
        ttl(store, &k).await,
        KeyTtl::Persistent,
        "ttl_if_created leaves an existing key alone"
    );
    assert_eq!(get(store, &k).await.as_deref(), Some(&b"-3"[..]), "decimal");
    assert_eq!(must(store.incr_by(&k, 0, None).await, "incr 0"), -3);

    let t = format!("{ns}:ttl");
    assert_eq!(must(store.incr_by(&t, 1, Some(LONG)).await, "create"), 1);
    assert_ttl_between(ttl(store, &t).await, HALF_LONG, LONG, "ttl_if_created");
    assert_eq!(must(store.incr_by(&t, 1, Some(SHORT)).await, "again"), 2);
    assert_ttl_between(ttl(store, &t).await, HALF_LONG, LONG, "TTL not reset");
    let s = format!("{ns}:short");
    assert_eq!(must(store.incr_by(&s, 1, Some(SHORT)).await, "short"), 1);
    wait_until_expired(store, &s, SHORT, caps).await;
    assert_eq!(
        must(store.incr_by(&s, 1, Some(LONG)).await, "after expiry"),
        1,
        "an expired counter restarts"
    );

    let v = format!("{ns}:text");
    for bad in [
        &b"abc"[..],
        b"1.5",
        b" 1",
        b"+1",
        b"",
        b"12345678901234567890",
    ] {
        assert!(set(store, &v, bad, SetOptions::new()).await);
        must_be_invalid(
            store.incr_by(&v, 1, None).await,
            &format!("incr on {bad:?}"),
        );
        assert_eq!(get(store, &v).await.as_deref(), Some(bad), "unchanged");
    }
    let max = format!("{ns}:max");
    assert!(
        set(
            store,
            &max,
            i64::MAX.to_string().as_bytes(),
            SetOptions::new()
        )
        .await
    );
    must_be_invalid(store.incr_by(&max, 1, None).await, "overflow");
    assert_eq!(
        get(store, &max).await,
        Some(i64::MAX.to_string().into_bytes()),
        "overflow changes nothing"
    );
    let min = format!("{ns}:min");
    assert_eq!(
        must(store.incr_by(&min, i64::MIN, None).await, "to MIN"),
        i64::MIN
    );
    must_be_invalid(store.incr_by(&min, -1, None).await, "underflow");
    cleanup(store, &ns).await;
}

/// `incr_by` answers the exact 64-bit result, with and without `ttl_if_created`: beyond 2^53 (where
/// a double, such as a Lua number, rounds), at `i64::MAX` and `i64::MIN`, and overflow in either
/// direction is [`Error::InvalidInput`] that changes nothing.
pub async fn check_incr_by_exact_beyond_2_pow_53(store: &dyn Store) {
    let ns = namespace("incr_exact");
    const ABOVE_2_POW_53: i64 = 9_007_199_254_740_993; // 2^53 + 1: no double holds it.
    for ttl in [None, Some(LONG)] {
        let with = if ttl.is_some() {
            "with TTL"
        } else {
            "without TTL"
        };
        let k = format!("{ns}:big:{}", ttl.is_some());
        assert_eq!(
            must(store.incr_by(&k, ABOVE_2_POW_53, ttl).await, with),
            ABOVE_2_POW_53,
            "incr_by(2^53 + 1) {with} on a new key"
        );
        assert_eq!(
            must(store.incr_by(&k, 2, ttl).await, with),
            ABOVE_2_POW_53 + 2,
            "incr_by(2) {with} above 2^53"
        );
        assert_eq!(
            get(store, &k).await,
            Some((ABOVE_2_POW_53 + 2).to_string().into_bytes()),
            "stored {with}"
        );

        let max = format!("{ns}:max:{}", ttl.is_some());
        assert_eq!(
            must(store.incr_by(&max, i64::MAX, ttl).await, with),
            i64::MAX,
            "incr_by(i64::MAX) {with} on a new key"
        );
        must_be_invalid(
            store.incr_by(&max, 1, ttl).await,
            &format!("overflow {with}"),
        );
        assert_eq!(
            get(store, &max).await,
            Some(i64::MAX.to_string().into_bytes()),
            "overflow {with} changes nothing"
        );
        assert_eq!(
            must(store.incr_by(&max, -1, ttl).await, with),
            i64::MAX - 1,
            "below i64::MAX {with}"
        );

        let min = format!("{ns}:min:{}", ttl.is_some());
        assert_eq!(
            must(store.incr_by(&min, i64::MIN, ttl).await, with),
            i64::MIN,
            "incr_by(i64::MIN) {with} on a new key"
        );
        must_be_invalid(
            store.incr_by(&min, -1, ttl).await,
            &format!("underflow {with}"),
        );
        assert_eq!(
            get(store, &min).await,
            Some(i64::MIN.to_string().into_bytes()),
            "underflow {with} changes nothing"
        );
        assert_eq!(
            must(store.incr_by(&min, 1, ttl).await, with),
            i64::MIN + 1,
            "above i64::MIN {with}"
        );
    }
    cleanup(store, &ns).await;
}

/// 50 concurrent `incr_by(1)` all count.
pub async fn check_incr_by_concurrent(store: &dyn Store) {
    let ns = namespace("incr_concurrent");
    let k = format!("{ns}:n");
    let results = join_all((0..50).map(|_| store.incr_by(&k, 1, None)).collect()).await;
    let mut seen: Vec<i64> = results.into_iter().map(|r| must(r, "incr")).collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=50).collect::<Vec<i64>>(),
        "each incr sees its own value"
    );
    assert_eq!(get(store, &k).await.as_deref(), Some(&b"50"[..]));
    cleanup(store, &ns).await;
}

/// Compare-and-swap: create, conflict with the current value, swap, delete, expiry modes.
pub async fn check_compare_and_swap(store: &dyn Store) {
    let ns = namespace("cas");
    let k = format!("{ns}:k");
    let cas = |expected: Option<&'static [u8]>, new: Option<&'static [u8]>, expiry| {
        let k = k.clone();
        async move {
            must(
                store.compare_and_swap(&k, expected, new, expiry).await,
                "compare_and_swap",
            )
        }
    };
    assert_eq!(
        cas(Some(b"a"), Some(b"b"), Expiry::Never).await,
        CasOutcome::Conflict { current: None },
        "expected a value, key missing"
    );
    assert_eq!(get(store, &k).await, None, "a conflict writes nothing");
    assert_eq!(
        cas(None, None, Expiry::Never).await,
        CasOutcome::Swapped,
        "missing -> missing"
    );
    assert_eq!(
        cas(None, Some(b"a"), Expiry::In(LONG)).await,
        CasOutcome::Swapped,
        "create"
    );
    assert_ttl_between(ttl(store, &k).await, HALF_LONG, LONG, "create with TTL");
    assert_eq!(
        cas(None, Some(b"x"), Expiry::Never).await,
        CasOutcome::Conflict {
            current: Some(b"a".to_vec())
        },
        "expected missing, key exists"
    );
    assert_eq!(
        cas(Some(b"z"), Some(b"x"), Expiry::Never).await,
        CasOutcome::Conflict {
            current: Some(b"a".to_vec())
        },
        "wrong expected value"
    );
    assert_ttl_between(ttl(store, &k).await, HALF_LONG, LONG, "conflict keeps TTL");
    assert_eq!(
        cas(Some(b"a"), Some(b"b"), Expiry::Keep).await,
        CasOutcome::Swapped
    );
    assert_eq!(get(store, &k).await.as_deref(), Some(&b"b"[..]));
    assert_ttl_between(ttl(store, &k).await, HALF_LONG, LONG, "Expiry::Keep");
    assert_eq!(
        cas(Some(b"b"), Some(b"c"), Expiry::Never).await,
        CasOutcome::Swapped
    );
    assert_eq!(ttl(store, &k).await, KeyTtl::Persistent, "Expiry::Never");
    assert_eq!(
        cas(Some(b"c"), None, Expiry::Never).await,
        CasOutcome::Swapped,
        "delete"
    );
    assert!(
        !must(store.exists(&k).await, "exists"),
        "CAS to None deletes"
    );
    assert_eq!(
        cas(None, Some(b"d"), Expiry::Keep).await,
        CasOutcome::Swapped,
        "Keep on a new key"
    );
    assert_eq!(
        ttl(store, &k).await,
        KeyTtl::Persistent,
        "Keep on a new key: no TTL"
    );
    cleanup(store, &ns).await;
}

/// Increments a counter with a read / compare-and-swap loop; returns the number of conflicts.
async fn cas_increment(store: &dyn Store, key: &str) -> u32 {
    let mut current = get(store, key).await;
    let mut conflicts = 0;
    loop {
        // Let the other tasks read the same value, so that swaps really compete.
        tokio::task::yield_now().await;
        let n: u64 = match &current {
            None => 0,
            Some(v) => std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("{key}: counter holds {v:?}")),
        };
        let next = (n + 1).to_string();
        match must(
            store
                .compare_and_swap(
                    key,
                    current.as_deref(),
                    Some(next.as_bytes()),
                    Expiry::Never,
                )
                .await,
            "cas increment",
        ) {
            CasOutcome::Swapped => return conflicts,
            CasOutcome::Conflict { current: now } => {
                conflicts += 1;
                assert!(conflicts < 10_000, "{key}: CAS loop does not converge");
                current = now;
            }
        }
    }
}

/// 50 concurrent read-modify-write loops over compare-and-swap: no update is lost.
pub async fn check_compare_and_swap_contention(store: &dyn Store) {
    let ns = namespace("cas_contention");
    let k = format!("{ns}:counter");
    let tasks = 50;
    join_all((0..tasks).map(|_| cas_increment(store, &k)).collect()).await;
    assert_eq!(
        get(store, &k).await,
        Some(tasks.to_string().into_bytes()),
        "every increment survived"
    );
    cleanup(store, &ns).await;
}

/// Collects a whole scan, checking every page on the way.
async fn scan_everything(store: &dyn Store, pattern: &str, count: u32) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut cursor = ScanCursor::start();
    for _ in 0..100_000 {
        let page = must(
            store.scan(pattern, cursor, count).await,
            &format!("scan {pattern}"),
        );
        keys.extend(page.keys);
        match page.next {
            Some(next) => {
                assert!(!next.is_start(), "a continuing cursor must not restart");
                cursor = next;
            }
            None => return keys,
        }
    }
    panic!("scan of {pattern:?} did not finish in 100000 pages");
}

/// `SCAN`: complete over many pages, relative keys, patterns with `*`, `?` and classes.
pub async fn check_scan(store: &dyn Store) {
    let ns = namespace("scan");
    let esc = glob_escape(&ns);
    let keys: Vec<String> = (0..120).map(|i| format!("{ns}:item:{i:03}")).collect();
    let entries: Vec<(&str, &[u8])> = keys.iter().map(|k| (k.as_str(), &b"v"[..])).collect();
    must(store.set_many(&entries, Expiry::Never).await, "set_many");
    let z = format!("{ns}:zset");
    must(store.zadd(&z, "m", 1.0).await, "zadd");

    let all: BTreeSet<String> = keys.iter().cloned().chain([z.clone()]).collect();
    for count in [1, 7, 1000] {
        assert_eq!(
            scan_everything(store, &format!("{esc}:*"), count).await,
            all,
            "full scan with count {count}"
        );
    }
    assert_eq!(
        scan_everything(store, &format!("{esc}:item:*"), 10)
            .await
            .len(),
        120
    );
    let want: BTreeSet<String> = (100..120).map(|i| format!("{ns}:item:{i}")).collect();
    assert_eq!(
        scan_everything(store, &format!("{esc}:item:1??"), 10).await,
        want,
        "? matches one character"
    );
    let want: BTreeSet<String> = [0, 1, 2, 10, 11, 12, 20, 21, 22]
        .iter()
        .map(|i| format!("{ns}:item:0{i:02}"))
        .collect();
    assert_eq!(
        scan_everything(store, &format!("{esc}:item:0[0-2][0-2]"), 10).await,
        want,
        "character ranges"
    );
    let want: BTreeSet<String> = (0..10).map(|i| format!("{ns}:item:00{i}")).collect();
    assert_eq!(
        scan_everything(store, &format!("{esc}:item:00[^x]"), 10).await,
        want,
        "negated class"
    );
    assert_eq!(
        scan_everything(store, &format!("{esc}:item:042"), 5).await,
        BTreeSet::from([format!("{ns}:item:042")]),
        "a pattern without metacharacters"
    );
    assert!(
        scan_everything(store, &format!("{esc}:nothing:*"), 10)
            .await
            .is_empty(),
        "no match"
    );
    // The whole keyspace of the prefix contains our keys, relative, without the prefix.
    let everything = must(store.scan_all("*", 1000).await, "scan *");
    for k in &all {
        assert!(everything.contains(k), "scan * misses {k}");
    }
    let prefix = format!("{}:", store.prefix());
    assert!(
        everything.iter().all(|k| !k.starts_with(&prefix)),
        "scan must return keys relative to the prefix"
    );
    // Keys deleted are not returned by a new scan.
    must(store.delete(&[&keys[0]]).await, "delete");
    assert_eq!(
        scan_everything(store, &format!("{esc}:item:*"), 50)
            .await
            .len(),
        119
    );
    // `count_matching` / `delete_matching` over the same scan.
    assert_eq!(
        must(
            store.count_matching(&format!("{esc}:item:*"), 13).await,
            "count_matching"
        ),
        119
    );
    cleanup(store, &ns).await;
}

/// Glob characters in keys are matched literally once escaped with [`glob_escape`], and only then.
pub async fn check_scan_escaping(store: &dyn Store) {
    let ns = namespace("scan_escape");
    let names = ["a*b", "a?b", "a[b]c", "a\\b", "axb", "ab", "a[^b]c", "a]b"];
    let keys: Vec<String> = names.iter().map(|n| format!("{ns}:{n}")).collect();
    let entries: Vec<(&str, &[u8])> = keys.iter().map(|k| (k.as_str(), &b"v"[..])).collect();
    must(store.set_many(&entries, Expiry::Never).await, "set_many");
    for key in &keys {
        assert_eq!(
            scan_everything(store, &glob_escape(key), 10).await,
            BTreeSet::from([key.clone()]),
            "an escaped key matches exactly itself"
        );
    }
    // Unescaped, the same characters are wildcards.
    let esc = glob_escape(&ns);
    let want: BTreeSet<String> = ["a*b", "a?b", "a\\b", "axb", "a]b"]
        .iter()
        .map(|n| format!("{ns}:{n}"))
        .collect();
    assert_eq!(
        scan_everything(store, &format!("{esc}:a?b"), 10).await,
        want,
        "unescaped ? is a wildcard"
    );
    // A user-supplied "*" escaped cannot widen a pattern.
    let user_input = "*";
    assert!(
        scan_everything(store, &format!("{esc}:{}", glob_escape(user_input)), 10)
            .await
            .is_empty(),
        "an escaped * must not match other keys"
    );
    cleanup(store, &ns).await;
}

/// Sorted sets: add/update, ranges with bounds and limits, removal, emptied sets are deleted.
pub async fn check_sorted_sets(store: &dyn Store) {
    let ns = namespace("zset");
    let z = format!("{ns}:z");
    let all = |limit| store.zrange_by_score(&z, f64::NEG_INFINITY, f64::INFINITY, limit);
    assert_eq!(must(store.zcard(&z).await, "zcard missing"), 0);
    assert!(must(all(None).await, "zrange missing").is_empty());
    assert_eq!(must(store.zrem(&z, &["x"]).await, "zrem missing"), 0);
    assert_eq!(
        must(
            store.zrem_range_by_score(&z, 0.0, 1.0).await,
            "zremrange missing"
        ),
        0
    );
    assert!(
        !must(store.exists(&z).await, "exists"),
        "reads create nothing"
    );

    assert!(must(store.zadd(&z, "c", 3.0).await, "zadd c"));
    assert!(must(store.zadd(&z, "a", 1.0).await, "zadd a"));
    assert!(must(store.zadd(&z, "b", 2.0).await, "zadd b"));
    assert!(must(store.zadd(&z, "b2", 2.0).await, "zadd b2"));
    assert!(must(store.zadd(&z, "neg", -1.5).await, "zadd neg"));
    assert!(
        !must(store.zadd(&z, "a", 10.0).await, "update a"),
        "updating a score is not new"
    );
    assert_eq!(must(store.zcard(&z).await, "zcard"), 5);
    assert_eq!(
        ttl(store, &z).await,
        KeyTtl::Persistent,
        "created without TTL"
    );
    let s = |m: &str, x: f64| (m.to_owned(), x);
    assert_eq!(
        must(all(None).await, "zrange all"),
        vec![
            s("neg", -1.5),
            s("b", 2.0),
            s("b2", 2.0),
            s("c", 3.0),
            s("a", 10.0)
        ],
        "by score, ties by member"
    );
    assert_eq!(
        must(all(Some(2)).await, "limit 2"),
        vec![s("neg", -1.5), s("b", 2.0)]
    );
    assert!(must(all(Some(0)).await, "limit 0").is_empty(), "limit 0");
    assert_eq!(
        must(store.zrange_by_score(&z, 2.0, 3.0, None).await, "inclusive"),
        vec![s("b", 2.0), s("b2", 2.0), s("c", 3.0)],
        "bounds are inclusive"
    );
    assert_eq!(
        must(
            store.zrange_by_score(&z, 2.5, f64::INFINITY, Some(1)).await,
            "open max"
        ),
        vec![s("c", 3.0)]
    );
    assert!(
        must(store.zrange_by_score(&z, 3.0, 2.0, None).await, "min > max").is_empty(),
        "min > max is empty"
    );
    // An update moves the member.
    assert!(!must(store.zadd(&z, "neg", 2.5).await, "move neg"));
    assert_eq!(
        must(store.zrange_by_score(&z, 2.1, 2.9, None).await, "moved"),
        vec![s("neg", 2.5)]
    );
    // ZADD leaves an existing TTL alone.
    assert!(must(store.expire(&z, LONG).await, "expire"));
    assert!(must(store.zadd(&z, "d", 4.0).await, "zadd d"));
    assert_ttl_between(ttl(store, &z).await, HALF_LONG, LONG, "ZADD keeps TTL");

    assert_eq!(
        must(store.zrem(&z, &["a", "missing", "a", "d"]).await, "zrem"),
        2,
        "zrem counts members present"
    );
    assert_eq!(
        must(store.zrem_range_by_score(&z, 2.0, 2.5).await, "zremrange"),
        3,
        "b, b2, neg"
    );
    assert_eq!(must(all(None).await, "rest"), vec![s("c", 3.0)]);
    assert_eq!(must(store.zrem(&z, &["c"]).await, "zrem last"), 1);
    assert!(
        !must(store.exists(&z).await, "exists"),
        "an emptied set is deleted"
    );

    let z2 = format!("{ns}:z2");
    for (i, m) in ["x", "y", "z"].iter().enumerate() {
        must(store.zadd(&z2, m, i as f64).await, "zadd");
    }
    assert_eq!(
        must(
            store
                .zrem_range_by_score(&z2, f64::NEG_INFINITY, f64::INFINITY)
                .await,
            "zremrange all"
        ),
        3
    );
    assert!(
        !must(store.exists(&z2).await, "exists"),
        "a set emptied by range removal is deleted"
    );
    cleanup(store, &ns).await;
}

/// Sorted-set edge cases: infinite and extreme scores, many members, NaN rejected.
pub async fn check_sorted_set_edges(store: &dyn Store) {
    let ns = namespace("zset_edges");
    let z = format!("{ns}:z");
    must(store.zadd(&z, "inf", f64::INFINITY).await, "zadd +inf");
    must(store.zadd(&z, "-inf", f64::NEG_INFINITY).await, "zadd -inf");
    must(store.zadd(&z, "big", 1.7e308).await, "zadd big");
    must(store.zadd(&z, "tiny", 5e-324).await, "zadd tiny");
    must(store.zadd(&z, "zero", 0.0).await, "zadd zero");
    let got = must(
        store
            .zrange_by_score(&z, f64::NEG_INFINITY, f64::INFINITY, None)
            .await,
        "zrange",
    );
    let names: Vec<&str> = got.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(names, ["-inf", "zero", "tiny", "big", "inf"]);
    assert_eq!(got[4].1, f64::INFINITY);
    assert_eq!(got[0].1, f64::NEG_INFINITY);
    assert_eq!(got[2].1, 5e-324, "scores round-trip exactly");
    assert_eq!(got[3].1, 1.7e308);
    assert_eq!(
        must(store.zrange_by_score(&z, 0.0, 0.0, None).await, "zero only"),
        vec![("zero".to_owned(), 0.0)]
    );
    must_be_invalid(store.zadd(&z, "nan", f64::NAN).await, "NaN score");
    must_be_invalid(
        store.zrange_by_score(&z, f64::NAN, 1.0, None).await,
        "NaN min",
    );
    must_be_invalid(
        store.zrem_range_by_score(&z, 0.0, f64::NAN).await,
        "NaN max",
    );
    assert_eq!(must(store.zcard(&z).await, "zcard"), 5, "NaN added nothing");
    // Members are arbitrary strings, and many of them page correctly.
    let z2 = format!("{ns}:many");
    for i in 0..300 {
        must(
            store
                .zadd(&z2, &format!("member {i} ✓:*"), f64::from(i % 10))
                .await,
            "zadd many",
        );
    }
    assert_eq!(must(store.zcard(&z2).await, "zcard many"), 300);
    assert_eq!(
        must(store.zrange_by_score(&z2, 9.0, 9.0, None).await, "score 9").len(),
        30
    );
    assert_eq!(
        must(
            store.zrange_by_score(&z2, 0.0, 9.0, Some(250)).await,
            "limit"
        )
        .len(),
        250
    );
    cleanup(store, &ns).await;
}

/// `WRONGTYPE`: string reads and writes against a sorted set fail (a plain `SET` replaces it);
/// sorted-set commands against a string fail; `MGET` reads another type as missing.
pub async fn check_wrong_type(store: &dyn Store) {
    let ns = namespace("wrongtype");
    let (z, s) = (format!("{ns}:zset"), format!("{ns}:string"));
    must(store.zadd(&z, "m", 1.0).await, "zadd");
    assert!(set(store, &s, b"1", SetOptions::new()).await);

    must_be_wrong_type(store.get(&z).await, &z, "GET on a zset");
    must_be_wrong_type(store.get_ex(&z, LONG).await, &z, "GETEX on a zset");
    must_be_wrong_type(store.incr_by(&z, 1, None).await, &z, "INCRBY on a zset");
    must_be_wrong_type(
        store
            .compare_and_swap(&z, None, Some(b"x"), Expiry::Never)
            .await,
        &z,
        "CAS on a zset",
    );
    assert_eq!(
        must(store.get_many(&[&z, &s]).await, "MGET"),
        vec![None, Some(b"1".to_vec())],
        "MGET reads a zset as missing"
    );
    assert!(
        !set(store, &z, b"x", SetOptions::new().if_absent()).await,
        "NX: the zset exists"
    );
    assert_eq!(
        must(store.zcard(&z).await, "zcard"),
        1,
        "refused NX changed nothing"
    );

    must_be_wrong_type(store.zadd(&s, "m", 1.0).await, &s, "ZADD on a string");
    must_be_wrong_type(store.zrem(&s, &["m"]).await, &s, "ZREM on a string");
    must_be_wrong_type(
        store.zrange_by_score(&s, 0.0, 1.0, None).await,
        &s,
        "ZRANGEBYSCORE on a string",
    );
    must_be_wrong_type(
        store.zrem_range_by_score(&s, 0.0, 1.0).await,
        &s,
        "ZREMRANGEBYSCORE on a string",
    );
    must_be_wrong_type(store.zcard(&s).await, &s, "ZCARD on a string");
    assert_eq!(
        get(store, &s).await.as_deref(),
        Some(&b"1"[..]),
        "unchanged"
    );

    // Type-agnostic commands work on both; a plain SET replaces a zset.
    assert!(must(store.exists(&z).await, "exists zset"));
    assert!(set(store, &z, b"now a string", SetOptions::new().if_present()).await);
    assert_eq!(get(store, &z).await.as_deref(), Some(&b"now a string"[..]));
    must_be_wrong_type(store.zcard(&z).await, &z, "ZCARD after SET");
    assert_eq!(must(store.delete(&[&z, &s]).await, "delete"), 2);
    cleanup(store, &ns).await;
}

/// `PING` answers.
pub async fn check_ping(store: &dyn Store) {
    let rtt = must(store.ping().await, "ping");
    assert!(rtt < Duration::from_secs(60), "ping took {rtt:?}");
}

/// `stats` reports as [`Capabilities::reports_stats`] says.
pub async fn check_stats(store: &dyn Store, caps: &Capabilities) {
    let stats = must(store.stats().await, "stats");
    match (caps.reports_stats, stats) {
        (true, Some(stats)) => assert_eq!(
            stats.backend,
            store.backend_name(),
            "stats.backend must be the backend name"
        ),
        (true, None) => panic!("stats: the backend declares statistics but returned None"),
        (false, None) => {}
        (false, Some(s)) => panic!("stats: declared without statistics but returned {s:?}"),
    }
}

/// Two prefixes over one backend never see each other's keys; flushing one leaves the other intact;
/// the prefix is `prefix:` in front of the key on the backend; a store without a prefix refuses to
/// flush. **Flushes `other_prefix` entirely.**
pub async fn check_prefix_isolation(
    store: &dyn Store,
    other_prefix: &dyn Store,
    unprefixed: &dyn Store,
) {
    let ns = namespace("prefix");
    let k = format!("{ns}:shared-name");
    assert!(set(store, &k, b"mine", SetOptions::new()).await);
    assert!(set(other_prefix, &k, b"theirs", SetOptions::new()).await);
    assert_eq!(get(store, &k).await.as_deref(), Some(&b"mine"[..]));
    assert_eq!(get(other_prefix, &k).await.as_deref(), Some(&b"theirs"[..]));
    let only_theirs = format!("{ns}:only-theirs");
    assert!(set(other_prefix, &only_theirs, b"x", SetOptions::new()).await);
    must(
        other_prefix.zadd(&format!("{ns}:z"), "m", 1.0).await,
        "zadd",
    );
    assert_eq!(get(store, &only_theirs).await, None);
    assert!(!must(store.exists(&only_theirs).await, "exists"));
    assert_eq!(must(store.zcard(&format!("{ns}:z")).await, "zcard"), 0);

    // The backend key is "<prefix>:<key>".
    let raw = format!("{}:{k}", store.prefix());
    assert_eq!(get(unprefixed, &raw).await.as_deref(), Some(&b"mine"[..]));
    let raw_other = format!("{}:{k}", other_prefix.prefix());
    assert_eq!(
        get(unprefixed, &raw_other).await.as_deref(),
        Some(&b"theirs"[..])
    );

    // Scans stay inside their prefix.
    let mine = must(store.scan_all("*", 100).await, "scan mine");
    assert!(mine.contains(&k));
    assert!(
        !mine.contains(&only_theirs),
        "scan saw another prefix's key"
    );
    let esc = glob_escape(&ns);
    let theirs = must(
        other_prefix.scan_all(&format!("{esc}:*"), 100).await,
        "scan theirs",
    );
    assert_eq!(theirs.len(), 3, "other prefix: {theirs:?}");

    // Deleting in one prefix leaves the other alone.
    assert_eq!(must(store.delete(&[&only_theirs]).await, "delete"), 0);
    assert_eq!(
        get(other_prefix, &only_theirs).await.as_deref(),
        Some(&b"x"[..])
    );

    // Flushing is refused without a prefix, and nothing is deleted.
    must_be_invalid(unprefixed.flush_prefix().await, "flush without prefix");
    assert_eq!(get(store, &k).await.as_deref(), Some(&b"mine"[..]));

    // Flushing one prefix empties it and leaves the other intact.
    let flushed = must(other_prefix.flush_prefix().await, "flush other");
    assert!(
        flushed >= 3,
        "flush_prefix reported {flushed} keys, wrote 3"
    );
    assert!(
        must(other_prefix.scan_all("*", 100).await, "scan after flush").is_empty(),
        "the flushed prefix still has keys"
    );
    assert_eq!(get(other_prefix, &k).await, None);
    assert_eq!(
        get(store, &k).await.as_deref(),
        Some(&b"mine"[..]),
        "survived"
    );
    cleanup(store, &ns).await;
}
