//! A store wrapper that can hold one call at a chosen moment (the next compare-and-swap before it
//! runs, or the next read of a chosen kind after it answered), to stage races deterministically,
//! and can yield to the scheduler before every call, so that tasks on the
//! in-memory store (whose calls never wait) interleave between store calls as they do on Redis.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cache_core::{
    async_trait, BackendStats, CasOutcome, Expiry, KeyTtl, Result, ScanCursor, ScanPage,
    SetOptions, Store,
};
use tokio::sync::Notify;

/// A read the gate can hold after it answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    Get,
    GetEx,
    GetMany,
    ZrangeByScore,
}

/// Holds the next compare-and-swap after [`Gate::arm`], or the next read of a kind after
/// [`Gate::arm_after`], until [`Gate::release`].
#[derive(Debug, Default)]
pub struct Gate {
    armed: AtomicBool,
    armed_after: std::sync::Mutex<Option<Read>>,
    calls: AtomicU64,
    reached: Notify,
    release: Notify,
}

impl Gate {
    /// Holds the next compare-and-swap before it runs.
    pub fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }
    /// Holds the next read of kind `read` after it answered (the caller has the answer but has not
    /// seen it yet).
    pub fn arm_after(&self, read: Read) {
        *self.armed_after.lock().unwrap() = Some(read);
    }
    async fn hold_after(&self, read: Read) {
        let hit = {
            let mut armed = self.armed_after.lock().unwrap();
            let hit = *armed == Some(read);
            if hit {
                *armed = None;
            }
            hit
        };
        if hit {
            self.reached.notify_one();
            self.release.notified().await;
        }
    }
    pub async fn reached(&self) {
        self.reached.notified().await;
    }
    pub fn release(&self) {
        self.release.notify_one();
    }
}

/// Forwards every call to `inner`; holds a compare-and-swap when the gate is armed; yields before
/// every call when built with [`PausingStore::yielding`].
#[derive(Debug, Clone)]
pub struct PausingStore<S> {
    pub inner: S,
    pub gate: Arc<Gate>,
    /// Yield up to this many times before every call (0: never).
    max_yields: u64,
}

impl<S> PausingStore<S> {
    pub fn new(inner: S) -> (Self, Arc<Gate>) {
        let gate = Arc::new(Gate::default());
        (
            Self {
                inner,
                gate: Arc::clone(&gate),
                max_yields: 0,
            },
            gate,
        )
    }

    /// A wrapper that yields to the scheduler 1 to `max_yields` times before every store call (and
    /// holds nothing). A larger `max_yields` makes a task slower between its calls than others.
    pub fn yielding(inner: S, max_yields: u64) -> Self {
        Self {
            inner,
            gate: Arc::default(),
            max_yields,
        }
    }

    /// Before a call: when yielding, yields a varying number of times (from 1 to `max_yields`, so
    /// that the racing tasks' calls are shuffled against each other rather than lined up in
    /// lockstep).
    async fn step(&self) {
        if self.max_yields > 0 {
            let n = self.gate.calls.fetch_add(1, Ordering::Relaxed);
            // A cheap deterministic scramble of the call counter.
            let times = 1 + n.wrapping_mul(0x9E37_79B9_7F4A_7C15) % self.max_yields;
            for _ in 0..times {
                tokio::task::yield_now().await;
            }
        }
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
        self.step().await;
        let answer = self.inner.get(key).await;
        self.gate.hold_after(Read::Get).await;
        answer
    }
    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
        self.step().await;
        let answer = self.inner.get_many(keys).await;
        self.gate.hold_after(Read::GetMany).await;
        answer
    }
    async fn get_ex(&self, key: &str, ttl: Duration) -> Result<Option<Vec<u8>>> {
        self.step().await;
        let answer = self.inner.get_ex(key, ttl).await;
        self.gate.hold_after(Read::GetEx).await;
        answer
    }
    async fn set(&self, key: &str, value: &[u8], opts: SetOptions) -> Result<bool> {
        self.step().await;
        self.inner.set(key, value, opts).await
    }
    async fn set_many(&self, entries: &[(&str, &[u8])], expiry: Expiry) -> Result<()> {
        self.step().await;
        self.inner.set_many(entries, expiry).await
    }
    async fn delete(&self, keys: &[&str]) -> Result<u64> {
        self.step().await;
        self.inner.delete(keys).await
    }
    async fn exists(&self, key: &str) -> Result<bool> {
        self.step().await;
        self.inner.exists(key).await
    }
    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        self.step().await;
        self.inner.expire(key, ttl).await
    }
    async fn persist(&self, key: &str) -> Result<bool> {
        self.step().await;
        self.inner.persist(key).await
    }
    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        self.step().await;
        self.inner.ttl(key).await
    }
    async fn incr_by(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64> {
        self.step().await;
        self.inner.incr_by(key, delta, ttl).await
    }
    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expiry: Expiry,
    ) -> Result<CasOutcome> {
        self.step().await;
        if self.gate.armed.swap(false, Ordering::SeqCst) {
            self.gate.reached.notify_one();
            self.gate.release.notified().await;
        }
        self.inner
            .compare_and_swap(key, expected, new, expiry)
            .await
    }
    async fn scan(&self, pattern: &str, cursor: ScanCursor, count: u32) -> Result<ScanPage> {
        self.step().await;
        self.inner.scan(pattern, cursor, count).await
    }
    async fn zadd(&self, key: &str, member: &str, score: f64) -> Result<bool> {
        self.step().await;
        self.inner.zadd(key, member, score).await
    }
    async fn zrem(&self, key: &str, members: &[&str]) -> Result<u64> {
        self.step().await;
        self.inner.zrem(key, members).await
    }
    async fn zrange_by_score(
        &self,
        key: &str,
        min: f64,
        max: f64,
        limit: Option<usize>,
    ) -> Result<Vec<(String, f64)>> {
        self.step().await;
        let answer = self.inner.zrange_by_score(key, min, max, limit).await;
        self.gate.hold_after(Read::ZrangeByScore).await;
        answer
    }
    async fn zrem_range_by_score(&self, key: &str, min: f64, max: f64) -> Result<u64> {
        self.step().await;
        self.inner.zrem_range_by_score(key, min, max).await
    }
    async fn zcard(&self, key: &str) -> Result<u64> {
        self.step().await;
        self.inner.zcard(key).await
    }
    async fn ping(&self) -> Result<Duration> {
        self.step().await;
        self.inner.ping().await
    }
    async fn flush_prefix(&self) -> Result<u64> {
        self.step().await;
        self.inner.flush_prefix().await
    }
    async fn stats(&self) -> Result<Option<BackendStats>> {
        self.step().await;
        self.inner.stats().await
    }
}
