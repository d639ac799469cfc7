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
//! If the version key is deleted (e.g. by `flush_prefix`, which deletes every key anyway) the
//! version falls back to 0; a process that still had a higher version cached may write a few keys
//! under it until its next refresh, and they die by their TTL.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use cache_core::keys::Key;
use cache_core::{Error, Result, Store};

use crate::engine::{FamilyState, Inner};
use crate::family::{data_key, Family, Id};

/// The in-memory copy of one family's namespace version.
#[derive(Debug, Default)]
pub(crate) struct VersionSlot {
    version: AtomicU64,
    /// Milliseconds since the manager's epoch (+1) when `version` was read; 0: never.
    fetched_at: AtomicU64,
    /// Set while one caller re-reads the version.
    refreshing: AtomicBool,
    /// Raised by every local bump, so that a re-read that started before a bump does not
    /// overwrite the bumped value with the older one.
    generation: AtomicU64,
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

fn parse_version(key: &str, raw: Option<Vec<u8>>) -> Result<u64> {
    let Some(raw) = raw else { return Ok(0) };
    std::str::from_utf8(&raw)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .ok_or_else(|| {
            Error::Decode(format!(
                "namespace version key {key} holds {:?}, not a non-negative integer; delete it \
                 to start again from version 0",
                String::from_utf8_lossy(&raw)
            ))
        })
}

impl<S: Store> Inner<S> {
    /// The family's namespace version: from memory while fresh; re-read by one caller per refresh
    /// interval (the others use the known value); read by the caller when never read before.
    pub(crate) async fn version(&self, fs: &FamilyState) -> Result<u64> {
        let slot = &fs.version;
        let fetched = slot.fetched_at.load(Ordering::Acquire);
        if fetched != 0 {
            let known = slot.version.load(Ordering::Acquire);
            let now = self.now_ms();
            if now.saturating_sub(fetched) < self.refresh_ms {
                return Ok(known);
            }
            if slot.refreshing.swap(true, Ordering::AcqRel) {
                return Ok(known);
            }
            let _clear = ClearOnDrop(&slot.refreshing);
            return match self.fetch_version(fs).await {
                Ok(v) => Ok(v),
                Err(e) => {
                    // Other calls keep the known version and the refresh is tried again after
                    // another interval. This call returns the error (the caller counts it and
                    // treats it as a miss or a failed write) instead of going on to a second
                    // store call: a call must not wait out two store timeouts in an outage.
                    slot.fetched_at.store(now, Ordering::Release);
                    Err(e)
                }
            };
        }
        self.fetch_version(fs).await
    }

    async fn fetch_version(&self, fs: &FamilyState) -> Result<u64> {
        let generation = fs.version.generation.load(Ordering::Acquire);
        let raw = self.store.get(&fs.version_key).await?;
        let v = parse_version(&fs.version_key, raw)?;
        if fs.version.generation.load(Ordering::Acquire) == generation {
            self.publish_version(fs, v);
            Ok(v)
        } else {
            // A local bump happened meanwhile: it is newer than what we read.
            Ok(fs.version.version.load(Ordering::Acquire))
        }
    }

    fn publish_version(&self, fs: &FamilyState, v: u64) {
        fs.version.version.store(v, Ordering::Release);
        fs.version
            .fetched_at
            .store(self.now_ms(), Ordering::Release);
    }

    /// Reads the versions of these families from the store in one round trip and publishes them.
    pub(crate) async fn fresh_versions(&self, families: &[Family]) -> Result<Vec<u64>> {
        let keys: Vec<&str> = families
            .iter()
            .map(|f| self.fs(*f).version_key.as_str())
            .collect();
        let raw = self.store.get_many(&keys).await?;
        let mut out = Vec::with_capacity(families.len());
        for (f, r) in families.iter().zip(raw) {
            let fs = self.fs(*f);
            let v = parse_version(&fs.version_key, r)?;
            self.publish_version(fs, v);
            out.push(v);
        }
        Ok(out)
    }

    /// Raises the family's version by one; the new version.
    pub(crate) async fn bump(&self, family: Family) -> Result<u64> {
        let fs = self.fs(family);
        let n = self.store.incr_by(&fs.version_key, 1, None).await?;
        let n = u64::try_from(n).map_err(|_| {
            Error::Decode(format!(
                "namespace version key {} went negative ({n}); delete it to start again",
                fs.version_key
            ))
        })?;
        fs.version.generation.fetch_add(1, Ordering::AcqRel);
        self.publish_version(fs, n);
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
