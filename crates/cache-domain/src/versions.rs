//! Namespace versions: O(1) invalidation of a whole family.
//!
//! The version of each family is an integer at `nsversion:{family}` (no TTL), raised by
//! [`FamilyCache::bump_version`](crate::FamilyCache::bump_version) with one `INCRBY`: every key of
//! the old version becomes unreachable at once and ages out by its TTL (the key layout per version
//! is in [`crate::family`]).
//!
//! Reading the version costs no round trip per call: each manager keeps it in memory and re-reads
//! it at most once per [`CacheConfig::with_version_refresh`](crate::CacheConfig::with_version_refresh)
//! interval (default 1 s), by one caller while the others go on with the known value. So after a
//! bump, **other processes may read the old version for up to one refresh interval** (plus one
//! round trip); the bumping process switches at once. Invalidation calls always read the versions
//! fresh from the store (`Inner::fresh_versions`).
//!
//! # Never backwards
//!
//! The version a process uses only grows. A read can answer a value older than the one the process
//! already has: a read that ran before a local bump and returned after it, two refreshes that
//! overtake each other, or a lagging replica behind `RedisStore::replica_reads`. Publishing it
//! would send reads and writes back to a namespace that was invalidated, for a whole refresh
//! interval. So every version is published with a maximum (`VersionSlot`), and a read below the
//! known version is checked against the primary with a compare-and-swap of the bytes read:
//!
//! - the primary holds something else: the read was stale; the process keeps the higher version
//!   (or takes the primary's, if higher still);
//! - the primary still holds the lower value: the key was **reset** (deleted by `flush_prefix`,
//!   evicted, overwritten), and other processes may have bumped from the reset value to invalidate
//!   data. Going back would serve data they invalidated; staying put would ignore their bumps. So
//!   the process moves the store to its version + 1, a namespace nobody wrote in, and every process
//!   follows it within a refresh interval (at the cost of one cold family).
//!
//! A bump whose `INCRBY` answers a value not above the known version (the key was reset) raises the
//! key past the known version with a second `INCRBY`, so a bump always invalidates.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use cache_core::keys::Key;
use cache_core::{CasOutcome, Error, Expiry, Result, Store};

use crate::engine::{FamilyState, Inner};
use crate::family::{data_key, Family, Id};

/// The in-memory copy of one family's namespace version. `version` only grows: it is written with
/// `fetch_max`, so a late publisher of an older value never takes it back.
#[derive(Debug, Default)]
pub(crate) struct VersionSlot {
    version: AtomicU64,
    /// Milliseconds since the manager's epoch (+1) when `version` was read; 0: never.
    fetched_at: AtomicU64,
    /// Set while one caller re-reads the version.
    refreshing: AtomicBool,
}

impl VersionSlot {
    /// The version as this process knows it, `None` before the first read.
    pub(crate) fn known(&self) -> Option<u64> {
        (self.fetched_at.load(Ordering::Acquire) != 0).then(|| self.version.load(Ordering::Acquire))
    }
}

struct ClearOnDrop<'a>(&'a AtomicBool);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

fn parse_version(key: &str, raw: Option<&[u8]>) -> Result<u64> {
    let Some(raw) = raw else { return Ok(0) };
    std::str::from_utf8(raw)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .ok_or_else(|| {
            Error::Decode(format!(
                "namespace version key {key} holds {:?}, not a non-negative integer; delete it \
                 to start again from version 0",
                String::from_utf8_lossy(raw)
            ))
        })
}

impl<S: Store> Inner<S> {
    /// The known version while it is fresh (within the refresh interval), without a store call.
    pub(crate) fn known_version(&self, fs: &FamilyState) -> Option<u64> {
        let slot = &fs.version;
        let fetched = slot.fetched_at.load(Ordering::Acquire);
        if fetched != 0 && self.now_ms().saturating_sub(fetched) < self.refresh_ms {
            return Some(slot.version.load(Ordering::Acquire));
        }
        None
    }

    /// The family's namespace version: from memory while fresh; re-read by one caller per refresh
    /// interval (the others use the known value); read by the caller when never read before.
    pub(crate) async fn version(&self, fs: &FamilyState) -> Result<u64> {
        if let Some(fresh) = self.known_version(fs) {
            return Ok(fresh);
        }
        // Boxed where it is read: once per refresh interval, and held inline its state would be
        // carried (and moved) by every read and write of the family.
        let slot = &fs.version;
        if slot.fetched_at.load(Ordering::Acquire) == 0 {
            return Box::pin(self.fetch_version(fs)).await;
        }
        let known = slot.version.load(Ordering::Acquire);
        if slot.refreshing.swap(true, Ordering::AcqRel) {
            return Ok(known);
        }
        let _clear = ClearOnDrop(&slot.refreshing);
        match Box::pin(self.fetch_version(fs)).await {
            Ok(v) => Ok(v),
            Err(e) => {
                // Other calls keep the known version and the refresh is tried again after another
                // interval. This call returns the error (the caller counts it and treats it as a
                // miss or a failed write) instead of going on to a second store call: a call must
                // not wait out two store timeouts in an outage.
                slot.fetched_at.store(self.now_ms(), Ordering::Release);
                Err(e)
            }
        }
    }

    async fn fetch_version(&self, fs: &FamilyState) -> Result<u64> {
        let raw = self.store.get(&fs.version_key).await?;
        self.settle(fs, raw.as_deref()).await
    }

    /// Publishes `v` unless the known version is higher; returns the version now in force. Also
    /// marks the version fresh.
    fn publish_version(&self, fs: &FamilyState, v: u64) -> u64 {
        let before = fs.version.version.fetch_max(v, Ordering::AcqRel);
        fs.version
            .fetched_at
            .store(self.now_ms(), Ordering::Release);
        before.max(v)
    }

    /// Takes the version the store answered (`raw`, the bytes read) into account, never going back:
    /// see the [module documentation](self#never-backwards).
    async fn settle(&self, fs: &FamilyState, raw: Option<&[u8]>) -> Result<u64> {
        let read = parse_version(&fs.version_key, raw)?;
        match fs.version.known() {
            Some(known) if read < known => Ok(self.behind(fs, raw, read, known).await),
            _ => Ok(self.publish_version(fs, read)),
        }
    }

    /// The store answered `read`, below the `known` version: a stale read, or a reset of the key.
    /// A compare-and-swap of the bytes read tells them apart (and repairs a reset in the same
    /// step). Whatever happens, the result is at least `known`.
    async fn behind(&self, fs: &FamilyState, raw: Option<&[u8]>, read: u64, known: u64) -> u64 {
        let fresh = known.saturating_add(1);
        let swap = self
            .store
            .compare_and_swap(
                &fs.version_key,
                raw,
                Some(fresh.to_string().as_bytes()),
                Expiry::Never,
            )
            .await;
        let current = match swap {
            Ok(CasOutcome::Swapped) => {
                self.warn_reset(fs, read, known, fresh);
                return self.publish_version(fs, fresh);
            }
            Ok(CasOutcome::Conflict { current }) => {
                match parse_version(&fs.version_key, current.as_deref()) {
                    Ok(v) => v,
                    Err(e) => {
                        self.store_failed(fs, "check the namespace version", &e);
                        return self.publish_version(fs, known);
                    }
                }
            }
            Err(e) => {
                self.store_failed(fs, "check the namespace version", &e);
                return self.publish_version(fs, known);
            }
        };
        if current >= known {
            // The read was stale (it ran before a bump, or came from a lagging replica).
            tracing::debug!(
                family = fs.family.name(),
                read,
                known,
                current,
                "a namespace version read was older than the known version; kept the newer"
            );
            return self.publish_version(fs, current);
        }
        // Reset, and moving meanwhile (another process bumped from the reset value).
        match self.raise(fs, current, known).await {
            Ok(v) => {
                self.warn_reset(fs, read, known, v);
                self.publish_version(fs, v)
            }
            Err(e) => {
                self.store_failed(fs, "raise the namespace version", &e);
                self.publish_version(fs, known)
            }
        }
    }

    /// `INCRBY` of the version key from `seen` (a value below `known`) to at least `known + 1`;
    /// the new value. Concurrent raises and bumps only add to it.
    async fn raise(&self, fs: &FamilyState, seen: u64, known: u64) -> Result<u64> {
        let delta = i64::try_from(known.saturating_add(1).saturating_sub(seen)).map_err(|_| {
            Error::Decode(format!(
                "namespace version key {} cannot be raised past {known}",
                fs.version_key
            ))
        })?;
        let n = self.store.incr_by(&fs.version_key, delta, None).await?;
        self.non_negative(fs, n)
    }

    fn warn_reset(&self, fs: &FamilyState, read: u64, known: u64, now: u64) {
        tracing::warn!(
            family = fs.family.name(),
            read,
            known,
            now,
            "the namespace version key was reset (deleted, evicted or overwritten); moved the \
             family to a fresh version above the one this process used"
        );
    }

    fn non_negative(&self, fs: &FamilyState, n: i64) -> Result<u64> {
        u64::try_from(n).map_err(|_| {
            Error::Decode(format!(
                "namespace version key {} went negative ({n}); delete it to start again",
                fs.version_key
            ))
        })
    }

    /// Reads the versions of these families from the store in one round trip and publishes them
    /// (never backwards, as [`Self::version`] does).
    pub(crate) async fn fresh_versions(&self, families: &[Family]) -> Result<Vec<u64>> {
        let keys: Vec<&str> = families
            .iter()
            .map(|f| self.fs(*f).version_key.as_str())
            .collect();
        let raw = self.store.get_many(&keys).await?;
        let mut out = Vec::with_capacity(families.len());
        for (f, r) in families.iter().zip(raw) {
            out.push(self.settle(self.fs(*f), r.as_deref()).await?);
        }
        Ok(out)
    }

    /// Raises the family's version by one; the new version. If the key was reset (the `INCRBY`
    /// answers a version not above the known one), raises it past the known version, so that a
    /// bump always moves to a namespace this process has not used.
    pub(crate) async fn bump(&self, family: Family) -> Result<u64> {
        let fs = self.fs(family);
        let n = self.store.incr_by(&fs.version_key, 1, None).await?;
        let mut n = self.non_negative(fs, n)?;
        if let Some(known) = fs.version.known().filter(|known| n <= *known) {
            let answered = n;
            n = self.raise(fs, answered, known).await?;
            self.warn_reset(fs, answered, known, n);
        }
        let n = self.publish_version(fs, n);
        self.near_flush(family);
        tracing::info!(
            family = fs.family.name(),
            version = n,
            "namespace version bumped"
        );
        Ok(n)
    }

    /// The key of `id` under the family's current version, read fresh from the store.
    pub(crate) async fn live_key(&self, family: Family, id: Id<'_>) -> Result<Key> {
        let version = self.fresh_versions(&[family]).await?[0];
        data_key(family, version, id)
    }
}
