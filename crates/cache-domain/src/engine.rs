//! The engine under every typed call: the manager's shared state (`Inner`, one `FamilyState` per
//! family), typed reads and writes of one or many ids through the codec, and what happens when the
//! store fails or holds bad bytes.
//!
//! # Failure behaviour
//!
//! - A store error on read is a miss (`Ok(None)`), counted and logged.
//! - A store error on write is logged (at most once per second and family, with the number of
//!   suppressed messages) and counted; [`WritePolicy::Propagate`] returns it instead. Invalid input,
//!   a value that cannot be encoded and a value over the store's size limit are the caller's
//!   mistakes and are always returned.
//! - A closed store ([`ErrorKind::Closed`], after `Store::close`) is never a miss or a counted write:
//!   every call returns the error, since failing open would run loaders and drop writes for ever.
//! - A stored value that does not decode is a miss: it is deleted (with a compare-and-swap, so a
//!   good value written meanwhile survives), counted in `decode_failures`, and logged.
//! - A stored value in a format version this build does not read
//!   ([`Error::UnknownFormatVersion`]) is a miss too, but it is not corrupt: most likely a newer
//!   build wrote it during a rolling upgrade, and the instances of that build read it. So it is left
//!   in place, counted in `unknown_format_versions` and logged; deleting it would make old and new
//!   instances delete each other's values for the whole upgrade.
//!
//! The namespace version of the family comes from memory ([`crate::versions`]), so the hot path of
//! a `get` or `set` is one store round trip.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cache_core::cas::CasPolicy;
use cache_core::{codec, Bytes, Error, ErrorKind, Expiry, Result, SetOptions, Store};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::time::Instant;

use crate::config::{CacheConfig, WritePolicy};
use crate::family::{data_key, version_key, Family, Id};
use crate::flight::Flights;
use crate::near::FamilyNear;
use crate::stats::FamilyCounters;
use crate::versions::VersionSlot;

/// What negative caching stores for "the loader found nothing": a codec envelope without data. Every
/// read path compares the bytes with this marker before decoding, so it is never mistaken for a
/// value; plain reads treat it as a miss.
pub const TOMBSTONE: &[u8] = br#"{"v":1,"absent":true}"#;

/// The minimum time between two warnings of one family (store errors, decode failures).
const WARN_INTERVAL_MS: u64 = 1000;

/// Stripes of the in-process update locks (see [`Inner::cas`]).
const UPDATE_LOCK_STRIPES: usize = 64;

/// Compare-and-swap attempts of one read-modify-write update (see [`Inner::cas`]).
const UPDATE_MAX_ATTEMPTS: u32 = 64;

/// Rate-limits warnings: one per interval, counting those it suppressed.
#[derive(Debug, Default)]
pub(crate) struct LogLimiter {
    last: AtomicU64,
    suppressed: AtomicU64,
}

impl LogLimiter {
    /// `Some(suppressed since the last warning)` when a warning may be logged now.
    fn allow(&self, now: u64) -> Option<u64> {
        let last = self.last.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= WARN_INTERVAL_MS)
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// What the manager keeps per family.
#[derive(Debug)]
pub(crate) struct FamilyState {
    pub(crate) family: Family,
    pub(crate) version: VersionSlot,
    pub(crate) version_key: String,
    pub(crate) stats: FamilyCounters,
    log: LogLimiter,
}

/// The state every clone of a [`CacheManager`](crate::CacheManager) shares.
#[derive(Debug)]
pub(crate) struct Inner<S> {
    pub(crate) store: S,
    pub(crate) config: CacheConfig,
    families: [FamilyState; Family::COUNT],
    pub(crate) flights: Flights,
    epoch: Instant,
    pub(crate) refresh_ms: u64,
    /// How read-modify-write updates retry: bounded attempts, jittered backoff, and striped locks
    /// that serialise updates of one key inside this process, so that its own writers never race
    /// each other's compare-and-swap (only other processes' do).
    pub(crate) cas: CasPolicy,
    /// The near cache of each family, when on ([`crate::near`]).
    near: Vec<Option<FamilyNear>>,
}

/// One raw read.
pub(crate) enum Read {
    Hit(Bytes),
    Tombstone,
    Miss,
    Failed,
    /// The store is closed: the caller gets the error (see the module documentation).
    Closed(Error),
}

/// Errors no write policy swallows: the caller's mistakes, and a closed store.
fn is_caller_error(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::InvalidInput | ErrorKind::Encode | ErrorKind::Capacity | ErrorKind::Closed
    )
}

/// Whether a failed read must reach the caller instead of being a miss.
pub(crate) fn is_closed(e: &Error) -> bool {
    e.kind() == ErrorKind::Closed
}

fn check_ttl(ttl: Duration) -> Result<Duration> {
    if ttl < Duration::from_millis(1) {
        return Err(Error::invalid_input(format!(
            "TTL {ttl:?} is below 1 ms (a zero TTL is neither 'delete' nor 'forever')"
        )));
    }
    Ok(ttl)
}

impl<S: Store> Inner<S> {
    /// The shared state; fails when a family's near cache cannot work with this store (on a
    /// cluster) or its bounds are invalid.
    pub(crate) fn new(store: S, config: CacheConfig) -> Result<Self> {
        let near = Family::ALL
            .iter()
            .map(|f| FamilyNear::build(*f, config.near_cache(*f), store.backend_name()))
            .collect::<Result<Vec<_>>>()?;
        let families = Family::ALL.map(|family| FamilyState {
            family,
            version: VersionSlot::default(),
            version_key: version_key(family),
            stats: FamilyCounters::new(family),
            log: LogLimiter::default(),
        });
        let refresh_ms = u64::try_from(config.version_refresh().as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        Ok(Self {
            near,
            store,
            config,
            families,
            flights: Flights::new(),
            epoch: Instant::now(),
            refresh_ms,
            cas: CasPolicy::new(tokio::time::sleep)
                .with_max_attempts(UPDATE_MAX_ATTEMPTS)
                .with_local_lock(UPDATE_LOCK_STRIPES),
        })
    }

    pub(crate) fn near_of(&self, family: Family) -> Option<&FamilyNear> {
        self.near.get(family.index())?.as_ref()
    }

    /// Milliseconds since the manager was built, plus one (so that 0 can mean "never").
    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    pub(crate) fn fs(&self, family: Family) -> &FamilyState {
        &self.families[family.index()]
    }

    pub(crate) fn families(&self) -> &[FamilyState] {
        &self.families
    }

    /// The TTL of a write: the call's, checked, or the family's.
    pub(crate) fn ttl(&self, family: Family, call: Option<Duration>) -> Result<Duration> {
        match call {
            Some(t) => check_ttl(t),
            None => Ok(self.config.ttl(family)),
        }
    }

    // ---- Logging and counting -----------------------------------------------------------------

    pub(crate) fn store_failed(&self, fs: &FamilyState, op: &'static str, e: &Error) {
        fs.stats.store_errors.inc();
        if let Some(suppressed) = fs.log.allow(self.now_ms()) {
            tracing::warn!(
                family = fs.family.name(),
                op,
                error = %e,
                suppressed,
                "cache store call failed; serving without the cache"
            );
        }
    }

    pub(crate) fn note_decode_failure(&self, fs: &FamilyState, key: &str, e: &Error) {
        fs.stats.decode_failures.inc();
        if let Some(suppressed) = fs.log.allow(self.now_ms()) {
            tracing::warn!(
                family = fs.family.name(),
                key,
                error = %e,
                suppressed,
                "cached value does not decode; treating it as a miss"
            );
        }
    }

    /// Counts and logs a value in a format version this build does not read; it stays in place.
    pub(crate) fn note_unknown_version(&self, fs: &FamilyState, key: &str, e: &Error) {
        fs.stats.unknown_format_versions.inc();
        if let Some(suppressed) = fs.log.allow(self.now_ms()) {
            tracing::warn!(
                family = fs.family.name(),
                key,
                error = %e,
                suppressed,
                "cached value is in a format version this build does not read (a newer build?); \
                 treating it as a miss and leaving it in place"
            );
        }
    }

    /// What a read does with a value that did not decode: a value of another format version is
    /// counted and left alone ([`Self::note_unknown_version`]); a corrupt one is counted, logged and
    /// deleted (only if it is still the same bytes). Either way the read is a miss.
    pub(crate) async fn discard_corrupt(
        &self,
        fs: &FamilyState,
        key: &str,
        bytes: &[u8],
        e: &Error,
    ) {
        if e.kind() == ErrorKind::UnknownFormatVersion {
            self.note_unknown_version(fs, key, e);
            return;
        }
        self.note_decode_failure(fs, key, e);
        self.near_forget(fs.family, [key]);
        if let Err(e) = self
            .store
            .compare_and_swap(key, Some(bytes), None, Expiry::Never)
            .await
        {
            self.store_failed(fs, "delete undecodable value", &e);
        }
    }

    pub(crate) fn write_failed(&self, fs: &FamilyState, e: Error) -> Result<()> {
        if is_caller_error(&e) {
            return Err(e);
        }
        self.store_failed(fs, "write", &e);
        match self.config.write_policy() {
            WritePolicy::Propagate => Err(e),
            _ => Ok(()),
        }
    }

    // ---- Raw reads and writes -----------------------------------------------------------------

    pub(crate) async fn write(
        &self,
        fs: &FamilyState,
        key: &str,
        bytes: &[u8],
        ttl: Duration,
    ) -> Result<()> {
        let written = self.store.set(key, bytes, SetOptions::ttl(ttl)).await;
        self.near_forget(fs.family, [key]);
        match written {
            Ok(_) => {
                fs.stats.writes.inc();
                Ok(())
            }
            Err(e) => self.write_failed(fs, e),
        }
    }

    pub(crate) async fn read(&self, fs: &FamilyState, key: &str) -> Read {
        match self.store.get(key).await {
            Ok(Some(b)) if b == TOMBSTONE => Read::Tombstone,
            Ok(Some(b)) => Read::Hit(b),
            Ok(None) => Read::Miss,
            Err(e) if is_closed(&e) => Read::Closed(e),
            Err(e) => {
                self.store_failed(fs, "read", &e);
                Read::Failed
            }
        }
    }

    // ---- Typed reads and writes ---------------------------------------------------------------

    pub(crate) async fn get_one<T: DeserializeOwned + Send>(
        &self,
        family: Family,
        id: Id<'_>,
    ) -> Result<Option<T>> {
        let fs = self.fs(family);
        let version = match self.version(fs).await {
            Ok(v) => v,
            Err(e) if is_closed(&e) => return Err(e),
            Err(e) => {
                self.store_failed(fs, "read namespace version", &e);
                fs.stats.misses.inc();
                return Ok(None);
            }
        };
        let key = data_key(family, version, id)?;
        match self.read(fs, &key).await {
            Read::Hit(bytes) => match codec::decode(&bytes) {
                Ok(v) => {
                    fs.stats.hits.inc();
                    return Ok(Some(v));
                }
                Err(e) => self.discard_corrupt(fs, &key, &bytes, &e).await,
            },
            Read::Closed(e) => return Err(e),
            Read::Tombstone | Read::Miss | Read::Failed => {}
        }
        fs.stats.misses.inc();
        Ok(None)
    }

    pub(crate) async fn set_one<T: Serialize + Sync + ?Sized>(
        &self,
        family: Family,
        id: Id<'_>,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<()> {
        let ttl = self.ttl(family, ttl)?;
        let bytes = codec::encode(value)?;
        let fs = self.fs(family);
        let version = match self.version(fs).await {
            Ok(v) => v,
            Err(e) => return self.write_failed(fs, e),
        };
        let key = data_key(family, version, id)?;
        self.write(fs, &key, &bytes, ttl).await
    }

    pub(crate) async fn get_many<T: DeserializeOwned + Send>(
        &self,
        family: Family,
        ids: &[Id<'_>],
    ) -> Result<Vec<Option<T>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let fs = self.fs(family);
        let n = ids.len() as u64;
        let nothing = || (0..ids.len()).map(|_| None).collect::<Vec<Option<T>>>();
        let version = match self.version(fs).await {
            Ok(v) => v,
            Err(e) if is_closed(&e) => return Err(e),
            Err(e) => {
                self.store_failed(fs, "read namespace version", &e);
                fs.stats.misses.add(n);
                return Ok(nothing());
            }
        };
        let keys = ids
            .iter()
            .map(|id| data_key(family, version, *id))
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&str> = keys.iter().map(|k| k.as_str()).collect();
        let raw = match self.store.get_many(&refs).await {
            Ok(r) => r,
            Err(e) if is_closed(&e) => return Err(e),
            Err(e) => {
                self.store_failed(fs, "read", &e);
                fs.stats.misses.add(n);
                return Ok(nothing());
            }
        };
        let mut out = Vec::with_capacity(ids.len());
        let (mut hits, mut corrupt) = (0u64, Vec::new());
        for (i, r) in raw.into_iter().enumerate() {
            match r {
                Some(b) if b != TOMBSTONE => match codec::decode(&b) {
                    Ok(v) => {
                        hits += 1;
                        out.push(Some(v));
                    }
                    Err(e) => {
                        corrupt.push((i, b, e));
                        out.push(None);
                    }
                },
                _ => out.push(None),
            }
        }
        fs.stats.hits.add(hits);
        fs.stats.misses.add(n - hits);
        for (i, b, e) in corrupt {
            self.discard_corrupt(fs, &keys[i], &b, &e).await;
        }
        Ok(out)
    }

    pub(crate) async fn set_many<T: Serialize + Sync>(
        &self,
        family: Family,
        entries: &[(Id<'_>, &T)],
        ttl: Option<Duration>,
    ) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let ttl = self.ttl(family, ttl)?;
        let encoded = entries
            .iter()
            .map(|(_, v)| codec::encode(*v))
            .collect::<Result<Vec<_>>>()?;
        let fs = self.fs(family);
        let version = match self.version(fs).await {
            Ok(v) => v,
            Err(e) => return self.write_failed(fs, e),
        };
        let keys = entries
            .iter()
            .map(|(id, _)| data_key(family, version, *id))
            .collect::<Result<Vec<_>>>()?;
        let pairs: Vec<(&str, &[u8])> = keys
            .iter()
            .map(|k| k.as_str())
            .zip(encoded.iter().map(Vec::as_slice))
            .collect();
        let written = self.store.set_many(&pairs, Expiry::In(ttl)).await;
        self.near_forget(family, pairs.iter().map(|(k, _)| *k));
        match written {
            Ok(()) => {
                fs.stats.writes.add(pairs.len() as u64);
                Ok(())
            }
            Err(e) => self.write_failed(fs, e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tombstone_is_not_a_value() {
        // (An `Option<T>` would decode it as `None`, which is why every read path compares the
        // bytes with TOMBSTONE before decoding.)
        assert!(codec::decode::<serde_json::Value>(TOMBSTONE).is_err());
        assert!(codec::decode::<u8>(TOMBSTONE).is_err());
    }

    #[test]
    fn log_limiter_lets_one_through_per_interval() {
        let l = LogLimiter::default();
        assert_eq!(l.allow(1), Some(0));
        assert_eq!(l.allow(2), None);
        assert_eq!(l.allow(500), None);
        assert_eq!(l.allow(1001), Some(2));
    }
}
