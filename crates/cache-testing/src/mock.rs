//! [`MockStore`]: a mockall mock of the `Store` trait, for failure injection (documented on the type).

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use async_trait::async_trait;
use cache_core::{
    BackendStats, Bytes, CasOutcome, Expiry, KeyTtl, Result, ScanCursor, ScanPage, SetOptions,
    Store,
};

mockall::mock! {
    /// The expectations of a [`MockStore`]: one `expect_<method>()` per [`Store`] method (except
    /// `prefix` and `backend_name`), with nested references turned into owned values.
    pub StoreCalls {
        /// [`Store::get`].
        pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;
        /// [`Store::get_many`], keys owned.
        pub fn get_many(&self, keys: Vec<String>) -> Result<Vec<Option<Vec<u8>>>>;
        /// [`Store::get_ex`].
        pub fn get_ex(&self, key: &str, ttl: Duration) -> Result<Option<Vec<u8>>>;
        /// [`Store::set`].
        pub fn set(&self, key: &str, value: &[u8], opts: SetOptions) -> Result<bool>;
        /// [`Store::set_many`], entries owned.
        pub fn set_many(&self, entries: Vec<(String, Vec<u8>)>, expiry: Expiry) -> Result<()>;
        /// [`Store::delete`], keys owned.
        pub fn delete(&self, keys: Vec<String>) -> Result<u64>;
        /// [`Store::exists`].
        pub fn exists(&self, key: &str) -> Result<bool>;
        /// [`Store::expire`].
        pub fn expire(&self, key: &str, ttl: Duration) -> Result<bool>;
        /// [`Store::persist`].
        pub fn persist(&self, key: &str) -> Result<bool>;
        /// [`Store::ttl`].
        pub fn ttl(&self, key: &str) -> Result<KeyTtl>;
        /// [`Store::incr_by`].
        pub fn incr_by(&self, key: &str, delta: i64, ttl_if_created: Option<Duration>) -> Result<i64>;
        /// [`Store::compare_and_swap`], values owned.
        pub fn compare_and_swap(
            &self,
            key: &str,
            expected: Option<Vec<u8>>,
            new: Option<Vec<u8>>,
            expiry: Expiry,
        ) -> Result<CasOutcome>;
        /// [`Store::scan`].
        pub fn scan(&self, pattern: &str, cursor: ScanCursor, count: u32) -> Result<ScanPage>;
        /// [`Store::zadd`].
        pub fn zadd(&self, key: &str, member: &str, score: f64) -> Result<bool>;
        /// [`Store::zrem`], members owned.
        pub fn zrem(&self, key: &str, members: Vec<String>) -> Result<u64>;
        /// [`Store::zrange_by_score`].
        pub fn zrange_by_score(
            &self,
            key: &str,
            min: f64,
            max: f64,
            limit: Option<usize>,
        ) -> Result<Vec<(String, f64)>>;
        /// [`Store::zrem_range_by_score`].
        pub fn zrem_range_by_score(&self, key: &str, min: f64, max: f64) -> Result<u64>;
        /// [`Store::zcard`].
        pub fn zcard(&self, key: &str) -> Result<u64>;
        /// [`Store::ping`].
        pub fn ping(&self) -> Result<Duration>;
        /// [`Store::flush_prefix`].
        pub fn flush_prefix(&self) -> Result<u64>;
        /// [`Store::stats`].
        pub fn stats(&self) -> Result<Option<BackendStats>>;
    }
}

/// A [mockall](https://docs.rs/mockall) mock of [`cache_core::Store`], for tests of
/// the layers above the trait that need a store to fail in a chosen way (timeouts, connection loss,
/// capacity errors) or to check exactly which calls are made. Tests of storage behaviour use a real
/// `cache_memory::MemoryStore` or Redis instead; a store that should only *sometimes* fail or
/// pause is a real store wrapped in [`cache_core::layer::Layered`] with a hook.
///
/// Set expectations with `expect_<method>()` (through `DerefMut` to [`MockStoreCalls`]), then use
/// the mock as any store, `Arc<dyn Store>` included. Methods whose arguments nest references
/// (`get_many`, `set_many`, `delete`, `zrem`, `compare_and_swap`) see them as owned values
/// (`Vec<String>`, `Vec<(String, Vec<u8>)>`, `Option<Vec<u8>>`): mockall cannot mock nested
/// references under `async_trait`. The reads' expectations answer `Vec<u8>` values (the store hands
/// them out as [`cache_core::Bytes`]). `prefix()` and `backend_name()` are not mocked: they answer the
/// prefix given to [`MockStore::with_prefix`] (empty by default) and `"mock"`.
///
/// # Why this is a hand-written forwarder
///
/// Every other type that hands `Store` calls to something else is written from the one method list
/// in `cache_core` (the `Arc` / `Box` impls and [`cache_core::layer::Layered`]). This one cannot be:
/// it forwards to mockall's `MockStoreCalls`, which is not a `Store` (`#[automock]` cannot mock the
/// trait's nested references such as `&[&str]` or `Option<&[u8]>` under `async_trait`), and each
/// method converts those arguments to owned values on the way.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use cache_core::{Error, Store};
/// use cache_testing::MockStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut mock = MockStore::new();
/// mock.expect_get().returning(|_| {
///     Err(Error::Timeout {
///         operation: "GET".into(),
///         elapsed: Duration::from_millis(500),
///         setting: "REDIS_RESPONSE_TIMEOUT",
///     })
/// });
/// mock.expect_delete()
///     .withf(|keys| *keys == ["a", "b"])
///     .times(1)
///     .returning(|_| Ok(2));
/// let store: Arc<dyn Store> = Arc::new(mock);
/// assert!(store.get("user:1").await.unwrap_err().is_transient());
/// assert_eq!(store.delete(&["a", "b"]).await.unwrap(), 2);
/// # }
/// ```
#[derive(Default)]
pub struct MockStore {
    prefix: String,
    calls: MockStoreCalls,
}

impl std::fmt::Debug for MockStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl MockStore {
    /// A mock without expectations (every call panics until expected) and an empty prefix.
    pub fn new() -> Self {
        Self::default()
    }

    /// A mock whose [`Store::prefix`] answers `prefix`.
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            calls: MockStoreCalls::new(),
        }
    }
}

impl Deref for MockStore {
    type Target = MockStoreCalls;
    fn deref(&self) -> &MockStoreCalls {
        &self.calls
    }
}

impl DerefMut for MockStore {
    fn deref_mut(&mut self) -> &mut MockStoreCalls {
        &mut self.calls
    }
}

fn owned(keys: &[&str]) -> Vec<String> {
    keys.iter().map(|k| (*k).to_owned()).collect()
}

#[async_trait]
impl Store for MockStore {
    fn prefix(&self) -> &str {
        &self.prefix
    }
    fn backend_name(&self) -> &'static str {
        "mock"
    }
    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        Ok(self.calls.get(key)?.map(Bytes::from))
    }
    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        let values = self.calls.get_many(owned(keys))?;
        Ok(values.into_iter().map(|v| v.map(Bytes::from)).collect())
    }
    async fn get_ex(&self, key: &str, ttl: Duration) -> Result<Option<Bytes>> {
        Ok(self.calls.get_ex(key, ttl)?.map(Bytes::from))
    }
    async fn set(&self, key: &str, value: &[u8], opts: SetOptions) -> Result<bool> {
        self.calls.set(key, value, opts)
    }
    async fn set_many(&self, entries: &[(&str, &[u8])], expiry: Expiry) -> Result<()> {
        let entries = entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.to_vec()))
            .collect();
        self.calls.set_many(entries, expiry)
    }
    async fn delete(&self, keys: &[&str]) -> Result<u64> {
        self.calls.delete(owned(keys))
    }
    async fn exists(&self, key: &str) -> Result<bool> {
        self.calls.exists(key)
    }
    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        self.calls.expire(key, ttl)
    }
    async fn persist(&self, key: &str) -> Result<bool> {
        self.calls.persist(key)
    }
    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        self.calls.ttl(key)
    }
    async fn incr_by(
        &self,
        key: &str,
        delta: i64,
        ttl_if_created: Option<Duration>,
    ) -> Result<i64> {
        self.calls.incr_by(key, delta, ttl_if_created)
    }
    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expiry: Expiry,
    ) -> Result<CasOutcome> {
        self.calls.compare_and_swap(
            key,
            expected.map(<[u8]>::to_vec),
            new.map(<[u8]>::to_vec),
            expiry,
        )
    }
    async fn scan(&self, pattern: &str, cursor: ScanCursor, count: u32) -> Result<ScanPage> {
        self.calls.scan(pattern, cursor, count)
    }
    async fn zadd(&self, key: &str, member: &str, score: f64) -> Result<bool> {
        self.calls.zadd(key, member, score)
    }
    async fn zrem(&self, key: &str, members: &[&str]) -> Result<u64> {
        self.calls.zrem(key, owned(members))
    }
    async fn zrange_by_score(
        &self,
        key: &str,
        min: f64,
        max: f64,
        limit: Option<usize>,
    ) -> Result<Vec<(String, f64)>> {
        self.calls.zrange_by_score(key, min, max, limit)
    }
    async fn zrem_range_by_score(&self, key: &str, min: f64, max: f64) -> Result<u64> {
        self.calls.zrem_range_by_score(key, min, max)
    }
    async fn zcard(&self, key: &str) -> Result<u64> {
        self.calls.zcard(key)
    }
    async fn ping(&self) -> Result<Duration> {
        self.calls.ping()
    }
    async fn flush_prefix(&self) -> Result<u64> {
        self.calls.flush_prefix()
    }
    async fn stats(&self) -> Result<Option<BackendStats>> {
        self.calls.stats()
    }
}
