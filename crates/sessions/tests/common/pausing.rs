//! A store wrapper that can hold one compare-and-swap at a chosen moment, to stage races
//! deterministically.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cache_core::{
    async_trait, BackendStats, CasOutcome, Expiry, KeyTtl, Result, ScanCursor, ScanPage,
    SetOptions, Store,
};
use tokio::sync::Notify;

/// Holds the next compare-and-swap after [`Gate::arm`] until [`Gate::release`].
#[derive(Debug, Default)]
pub struct Gate {
    armed: AtomicBool,
    reached: Notify,
    release: Notify,
}

impl Gate {
    pub fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }
    pub async fn reached(&self) {
        self.reached.notified().await;
    }
    pub fn release(&self) {
        self.release.notify_one();
    }
}

/// Forwards every call to `inner`; holds a compare-and-swap when the gate is armed.
#[derive(Debug, Clone)]
pub struct PausingStore<S> {
    pub inner: S,
    pub gate: Arc<Gate>,
}

impl<S> PausingStore<S> {
    pub fn new(inner: S) -> (Self, Arc<Gate>) {
        let gate = Arc::new(Gate::default());
        (
            Self {
                inner,
                gate: Arc::clone(&gate),
            },
            gate,
        )
    }
}

#[async_trait]
impl<S: Store> Store for PausingStore<S> {
    fn prefix(&self) -> &str {
        self.inner.prefix()
    }
    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.inner.get(key).await
    }
    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
        self.inner.get_many(keys).await
    }
    async fn get_ex(&self, key: &str, ttl: Duration) -> Result<Option<Vec<u8>>> {
        self.inner.get_ex(key, ttl).await
    }
    async fn set(&self, key: &str, value: &[u8], opts: SetOptions) -> Result<bool> {
        self.inner.set(key, value, opts).await
    }
    async fn set_many(&self, entries: &[(&str, &[u8])], expiry: Expiry) -> Result<()> {
        self.inner.set_many(entries, expiry).await
    }
    async fn delete(&self, keys: &[&str]) -> Result<u64> {
        self.inner.delete(keys).await
    }
    async fn exists(&self, key: &str) -> Result<bool> {
        self.inner.exists(key).await
    }
    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        self.inner.expire(key, ttl).await
    }
    async fn persist(&self, key: &str) -> Result<bool> {
        self.inner.persist(key).await
    }
    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        self.inner.ttl(key).await
    }
    async fn incr_by(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64> {
        self.inner.incr_by(key, delta, ttl).await
    }
    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expiry: Expiry,
    ) -> Result<CasOutcome> {
        if self.gate.armed.swap(false, Ordering::SeqCst) {
            self.gate.reached.notify_one();
            self.gate.release.notified().await;
        }
        self.inner
            .compare_and_swap(key, expected, new, expiry)
            .await
    }
    async fn scan(&self, pattern: &str, cursor: ScanCursor, count: u32) -> Result<ScanPage> {
        self.inner.scan(pattern, cursor, count).await
    }
    async fn zadd(&self, key: &str, member: &str, score: f64) -> Result<bool> {
        self.inner.zadd(key, member, score).await
    }
    async fn zrem(&self, key: &str, members: &[&str]) -> Result<u64> {
        self.inner.zrem(key, members).await
    }
    async fn zrange_by_score(
        &self,
        key: &str,
        min: f64,
        max: f64,
        limit: Option<usize>,
    ) -> Result<Vec<(String, f64)>> {
        self.inner.zrange_by_score(key, min, max, limit).await
    }
    async fn zrem_range_by_score(&self, key: &str, min: f64, max: f64) -> Result<u64> {
        self.inner.zrem_range_by_score(key, min, max).await
    }
    async fn zcard(&self, key: &str) -> Result<u64> {
        self.inner.zcard(key).await
    }
    async fn ping(&self) -> Result<Duration> {
        self.inner.ping().await
    }
    async fn flush_prefix(&self) -> Result<u64> {
        self.inner.flush_prefix().await
    }
    async fn stats(&self) -> Result<Option<BackendStats>> {
        self.inner.stats().await
    }
}
