//! Cache-aside loading: [`FamilyCache::get_or_load`](crate::FamilyCache::get_or_load) and
//! [`FamilyCache::get_or_load_optional`](crate::FamilyCache::get_or_load_optional).
//!
//! - **Single-flight** per key inside the process (`flight.rs`): one leader runs the loader,
//!   the callers that miss the same key meanwhile wait for its outcome.
//! - **Cross-process lease** when configured: before loading, the leader takes `lease:{key}` with
//!   `SET NX PX`; an instance that finds it taken polls for the holder's value for at most the
//!   lease wait, then loads itself. The leader gives the lease back on every exit path: after
//!   writing (or failing), and also when its caller's future is dropped mid-load or its loader
//!   panics (`HeldLease`'s drop spawns the release); the lease TTL only covers a crashed process.
//! - **Negative caching** when configured: a loader that finds nothing leaves [`TOMBSTONE`] for the
//!   negative TTL.
//! - **Early refresh** when configured: a hit in the last fraction of its TTL makes one caller
//!   reload it while the others keep the cached value.
//!
//! Reads fail open: a store error is a miss, the loader runs and the caller gets its data; after a
//! failed read the cache write and the lease are skipped (the store is most likely down, and trying
//! would make the caller wait out a second timeout).
//!
//! The call timeout (`CACHE_CALL_TIMEOUT`) is a `Budget` spent by the store calls of the load
//! (version, reads, lease, polls, write, release), not by the loader's run nor by the wait for
//! another caller's load: a slow database does not keep its value out of the cache, and a stalled
//! store cannot make the call wait more than the budget in all. A store call cut by the budget
//! counts as failed (a read is a miss, the lease is skipped, the write follows the write policy).
//!
//! # Known limit
//!
//! Like every cache-aside cache, a load that read the database *before* an update and writes the
//! cache *after* that update's invalidation leaves the old value cached until its TTL. Keep TTLs
//! as short as the data's staleness tolerance, or bump the family version after bulk changes.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cache_core::{codec, Bytes, Error, Expiry, SetOptions, Store};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::time::Instant;

use crate::budget::Budget;
use crate::config::LeaseConfig;
use crate::engine::{FamilyState, Inner, Read, TOMBSTONE};
use crate::error::LoadError;
use crate::family::{data_key, lease_key, Family, Id};
use crate::flight::{self, Join, LeaderGuard, Outcome};

enum Lookup<T> {
    Found(T, Bytes, Option<Duration>),
    Absent,
    Missing,
    Failed,
    Closed(Error),
}

enum Polled<T> {
    Found(T, Bytes),
    Absent,
    GiveUp,
    Failed,
}

fn lease_token() -> String {
    match (getrandom::u64(), getrandom::u64()) {
        (Ok(a), Ok(b)) => format!("{a:016x}{b:016x}"),
        // No OS randomness: still unique enough for a lease (pid + time), which only guards
        // against releasing another instance's lease.
        _ => format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ),
    }
}

impl<S: Store> Inner<S> {
    async fn lookup<T: DeserializeOwned>(
        &self,
        fs: &FamilyState,
        key: &str,
        optional: bool,
        with_ttl: bool,
    ) -> Lookup<T> {
        let (read, remaining) = if with_ttl {
            let (read, ttl) = tokio::join!(self.read(fs, key), self.store.ttl(key));
            (read, ttl.ok().and_then(|t| t.remaining()))
        } else {
            (self.read(fs, key).await, None)
        };
        match read {
            Read::Hit(bytes) => match codec::decode(&bytes) {
                Ok(v) => Lookup::Found(v, bytes, remaining),
                Err(e) => {
                    self.discard_corrupt(fs, key, &bytes, &e).await;
                    Lookup::Missing
                }
            },
            Read::Tombstone if optional => Lookup::Absent,
            Read::Tombstone | Read::Miss => Lookup::Missing,
            Read::Failed => Lookup::Failed,
            Read::Closed(e) => Lookup::Closed(e),
        }
    }

    /// The shared core of `get_or_load` (`optional == false`: the loader never returns `None`)
    /// and `get_or_load_optional`.
    pub(crate) async fn load<T, E, F, Fut>(
        self: &Arc<Self>,
        family: Family,
        id: Id<'_>,
        ttl: Option<Duration>,
        optional: bool,
        loader: F,
    ) -> Result<Option<T>, LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send,
        E: Send + Sync + 'static,
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = Result<Option<T>, E>> + Send,
    {
        let ttl = self.ttl(family, ttl)?;
        let fs = self.fs(family);
        let mut budget = Budget::new(
            self.config.call_timeout(),
            self.store.ends_calls_at_deadline(),
        );
        let version = budget
            .spend(self.version(fs))
            .await
            .unwrap_or_else(|| Err(budget.timeout("read namespace version")));
        let (key, mut store_ok) = match version {
            Ok(v) => (data_key(family, v, id)?, true),
            Err(e) if crate::engine::is_closed(&e) => return Err(LoadError::Cache(e)),
            Err(e) => {
                // Without the version we cannot address the cache; the key (at version 0) only
                // names the in-process flight.
                self.store_failed(fs, "read namespace version", &e);
                (data_key(family, 0, id)?, false)
            }
        };
        let mut loader = Some(loader);
        let mut first = true;
        loop {
            if store_ok {
                let early = if first {
                    self.config.early_refresh()
                } else {
                    None
                };
                let lookup = budget
                    .spend(self.lookup::<T>(fs, &key, optional, early.is_some()))
                    .await
                    .unwrap_or_else(|| self.cut(fs, &budget, "read"));
                match lookup {
                    Lookup::Found(value, bytes, remaining) => {
                        if first {
                            fs.stats.hits.inc();
                        }
                        if let (Some(fraction), Some(left)) = (early, remaining) {
                            if left.as_secs_f64() < ttl.as_secs_f64() * fraction {
                                if let Some(f) = loader.take() {
                                    return Ok(Some(
                                        self.refresh_early(fs, &key, ttl, value, bytes, f, budget)
                                            .await,
                                    ));
                                }
                            }
                        }
                        return Ok(Some(value));
                    }
                    Lookup::Absent => {
                        if first {
                            fs.stats.hits.inc();
                        }
                        return Ok(None);
                    }
                    Lookup::Missing => {}
                    Lookup::Failed => store_ok = false,
                    Lookup::Closed(e) => return Err(LoadError::Cache(e)),
                }
            }
            if first {
                fs.stats.misses.inc();
                first = false;
            }
            let guard = match self.flights.join(&key) {
                Join::Waiter(rx) => {
                    fs.stats.coalesced.inc();
                    match flight::wait(rx).await {
                        Some(outcome) => match adopt::<T, E>(&outcome, optional) {
                            Some(result) => return result,
                            None => continue,
                        },
                        // The leader panicked or was cancelled: retry (maybe as the leader).
                        None => continue,
                    }
                }
                Join::Leader(guard) => guard,
            };
            let Some(f) = loader.take() else {
                // Unreachable: a caller leads at most once, since leading always returns.
                return Err(LoadError::Cache(Error::backend(
                    "internal: get_or_load loader already used",
                )));
            };
            return self
                .lead(fs, &key, ttl, optional, store_ok, guard, f, budget)
                .await;
        }
    }

    /// The leader's part: check the cache again, take the lease, load, write, hand over.
    #[allow(clippy::too_many_arguments)] // A private step of `load`, called once.
    async fn lead<T, E, F, Fut>(
        self: &Arc<Self>,
        fs: &FamilyState,
        key: &str,
        ttl: Duration,
        optional: bool,
        mut store_ok: bool,
        guard: LeaderGuard<'_>,
        loader: F,
        mut budget: Budget,
    ) -> Result<Option<T>, LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send,
        E: Send + Sync + 'static,
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = Result<Option<T>, E>> + Send,
    {
        // A flight that ended between our read and our join may have filled the cache.
        if store_ok {
            let lookup = budget
                .spend(self.lookup::<T>(fs, key, optional, false))
                .await
                .unwrap_or_else(|| self.cut(fs, &budget, "read"));
            match lookup {
                Lookup::Found(v, bytes, _) => {
                    guard.complete(Outcome::Value(bytes));
                    return Ok(Some(v));
                }
                Lookup::Absent => {
                    guard.complete(Outcome::Absent);
                    return Ok(None);
                }
                Lookup::Missing => {}
                Lookup::Failed => store_ok = false,
                // Dropped without an outcome: the waiters retry and find the store closed too.
                Lookup::Closed(e) => return Err(LoadError::Cache(e)),
            }
        }
        let mut lease = None;
        if let (true, Some(cfg)) = (store_ok, self.config.lease()) {
            let lease_key = lease_key(key);
            let token = lease_token();
            let opts = SetOptions::ttl(cfg.ttl).if_absent();
            let taken = budget
                .spend(self.store.set(&lease_key, token.as_bytes(), opts))
                .await
                .unwrap_or_else(|| Err(budget.timeout("take lease")));
            match taken {
                Ok(true) => {
                    lease = Some(HeldLease {
                        inner: Arc::clone(self),
                        key: lease_key,
                        token,
                        held: true,
                    })
                }
                Ok(false) => match self
                    .poll_for_value::<T>(fs, key, &lease_key, optional, cfg, &mut budget)
                    .await
                {
                    Polled::Found(v, bytes) => {
                        fs.stats.coalesced.inc();
                        guard.complete(Outcome::Value(bytes));
                        return Ok(Some(v));
                    }
                    Polled::Absent => {
                        fs.stats.coalesced.inc();
                        guard.complete(Outcome::Absent);
                        return Ok(None);
                    }
                    Polled::GiveUp => {}
                    Polled::Failed => store_ok = false,
                },
                Err(e) => {
                    self.store_failed(fs, "take lease", &e);
                    store_ok = false;
                }
            }
        }
        fs.stats.loads.inc();
        let loaded = loader().await;
        let result = match loaded {
            Ok(Some(value)) => match codec::encode(&value) {
                Ok(bytes) => {
                    let written = if store_ok {
                        self.write_within(&mut budget, fs, key, &bytes, ttl).await
                    } else {
                        Ok(())
                    };
                    guard.complete(Outcome::Value(bytes.into()));
                    written.map(|()| Some(value)).map_err(LoadError::Cache)
                }
                Err(e) => {
                    guard.complete(Outcome::EncodeError(e.to_string()));
                    Err(LoadError::Cache(e))
                }
            },
            Ok(None) => {
                let written = match (store_ok && optional, self.config.negative_ttl()) {
                    (true, Some(nttl)) => {
                        self.write_within(&mut budget, fs, key, TOMBSTONE, nttl)
                            .await
                    }
                    _ => Ok(()),
                };
                guard.complete(Outcome::Absent);
                written.map(|()| None).map_err(LoadError::Cache)
            }
            Err(e) => {
                fs.stats.load_errors.inc();
                let e = Arc::new(e);
                guard.complete(Outcome::LoaderError(e.clone()));
                Err(LoadError::Loader(e))
            }
        };
        match lease {
            // Cut by the budget, the release is left to the guard's drop, which spawns it.
            Some(mut lease) if !budget.is_spent() => {
                let _ = budget.spend(lease.release()).await;
            }
            _ => {}
        }
        result
    }

    /// A lookup cut by the budget: a failed read.
    fn cut<T>(&self, fs: &FamilyState, budget: &Budget, op: &str) -> Lookup<T> {
        self.store_failed(fs, "read", &budget.timeout(op));
        Lookup::Failed
    }

    /// [`Inner::write`] within what is left of the budget; a write cut by it follows the write
    /// policy like any failed write.
    async fn write_within(
        &self,
        budget: &mut Budget,
        fs: &FamilyState,
        key: &str,
        bytes: &[u8],
        ttl: Duration,
    ) -> cache_core::Result<()> {
        match budget.spend(self.write(fs, key, bytes, ttl)).await {
            Some(written) => written,
            None => self.write_timed_out(fs.family, budget.timeout("write")),
        }
    }

    /// Another instance holds the lease: read the value and the lease together (one round trip)
    /// every poll interval until the value arrives, the lease disappears without a value (its
    /// holder failed), or the wait is over.
    async fn poll_for_value<T: DeserializeOwned>(
        &self,
        fs: &FamilyState,
        key: &str,
        lease_key: &str,
        optional: bool,
        cfg: &LeaseConfig,
        budget: &mut Budget,
    ) -> Polled<T> {
        let deadline = Instant::now() + cfg.wait;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Polled::GiveUp;
            }
            tokio::time::sleep(cfg.poll_interval.min(deadline - now)).await;
            // The sleeps wait for another instance's load and are not counted; the reads are.
            let read = budget
                .spend(self.store.get_many(&[key, lease_key]))
                .await
                .unwrap_or_else(|| Err(budget.timeout("read")));
            match read {
                Ok(mut r) if r.len() == 2 => {
                    let lease_held = r[1].is_some();
                    match r[0].take() {
                        Some(b) if b == TOMBSTONE && optional => return Polled::Absent,
                        Some(b) if b == TOMBSTONE => {}
                        Some(b) => match codec::decode(&b) {
                            Ok(v) => return Polled::Found(v, b),
                            Err(e) => {
                                let _ = budget.spend(self.discard_corrupt(fs, key, &b, &e)).await;
                            }
                        },
                        None => {}
                    }
                    if !lease_held {
                        return Polled::GiveUp;
                    }
                }
                Ok(_) => return Polled::GiveUp,
                Err(e) => {
                    self.store_failed(fs, "read", &e);
                    return Polled::Failed;
                }
            }
        }
    }

    /// Early refresh of a hit close to expiry: only one caller per key reloads (the others keep the
    /// cached value); a failed reload returns the cached value.
    #[allow(clippy::too_many_arguments)] // A private step of `load`, called once.
    async fn refresh_early<T, E, F, Fut>(
        &self,
        fs: &FamilyState,
        key: &str,
        ttl: Duration,
        cached: T,
        cached_bytes: Bytes,
        loader: F,
        mut budget: Budget,
    ) -> T
    where
        T: Serialize + DeserializeOwned + Send,
        E: Send + Sync + 'static,
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = Result<Option<T>, E>> + Send,
    {
        let Some(guard) = self.flights.try_lead(key) else {
            return cached;
        };
        fs.stats.loads.inc();
        match loader().await {
            Ok(Some(fresh)) => match codec::encode(&fresh) {
                Ok(bytes) => {
                    // The write policy cannot surface here: the caller gets a value either way.
                    let _ = self.write_within(&mut budget, fs, key, &bytes, ttl).await;
                    guard.complete(Outcome::Value(bytes.into()));
                    fresh
                }
                Err(_) => {
                    guard.complete(Outcome::Value(cached_bytes));
                    cached
                }
            },
            Ok(None) => {
                // The source no longer has it: drop the cached copy so the next read misses.
                let deleted = budget
                    .spend(self.store.delete(&[key]))
                    .await
                    .unwrap_or_else(|| Err(budget.timeout("delete")));
                self.near_forget(fs.family, [key]);
                if let Err(e) = deleted {
                    self.store_failed(fs, "delete", &e);
                }
                guard.complete(Outcome::Value(cached_bytes));
                cached
            }
            Err(_) => {
                fs.stats.load_errors.inc();
                guard.complete(Outcome::Value(cached_bytes));
                cached
            }
        }
    }
}

/// A cross-process lease this instance holds. The leader releases it with [`HeldLease::release`]
/// when it is done; if the leader's future is dropped first (its caller was cancelled or timed out)
/// or unwinds (the loader panicked), dropping this spawns the release on the current runtime, so
/// other instances do not wait out the lease TTL for a load nobody is doing any more.
struct HeldLease<S: Store> {
    inner: Arc<Inner<S>>,
    key: String,
    token: String,
    held: bool,
}

impl<S: Store> HeldLease<S> {
    async fn release(&mut self) {
        release_lease(&self.inner.store, &self.key, &self.token).await;
        // Only now: a release cancelled halfway is spawned again by `drop` (harmless: it swaps
        // only our own token).
        self.held = false;
    }
}

impl<S: Store> Drop for HeldLease<S> {
    fn drop(&mut self) {
        if !self.held {
            return;
        }
        let (inner, key, token) = (
            Arc::clone(&self.inner),
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.token),
        );
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { release_lease(&inner.store, &key, &token).await });
            }
            Err(_) => {
                tracing::debug!(key = %key, "no runtime to release the lease of an abandoned load; it will expire");
            }
        }
    }
}

/// Deletes the lease if it still holds our token; if it expired and another instance holds it now,
/// the swap fails and leaves theirs alone.
async fn release_lease<S: Store>(store: &S, key: &str, token: &str) {
    if let Err(e) = store
        .compare_and_swap(key, Some(token.as_bytes()), None, Expiry::Never)
        .await
    {
        tracing::debug!(key = %key, error = %e, "lease release failed; it will expire");
    }
}

/// Turns a leader's outcome into this waiter's result; `None`: it does not fit this caller (other
/// value or error type, or "absent" for a caller that needs a value), so the caller retries.
fn adopt<T: DeserializeOwned, E: Send + Sync + 'static>(
    outcome: &Outcome,
    optional: bool,
) -> Option<Result<Option<T>, LoadError<E>>> {
    match outcome {
        Outcome::Value(b) => codec::decode::<T>(b).ok().map(|v| Ok(Some(v))),
        Outcome::Absent => optional.then_some(Ok(None)),
        Outcome::LoaderError(e) => Arc::clone(e)
            .downcast::<E>()
            .ok()
            .map(|e| Err(LoadError::Loader(e))),
        Outcome::EncodeError(m) => Some(Err(LoadError::Cache(Error::Encode(m.clone())))),
    }
}
