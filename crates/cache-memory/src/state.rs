//! The data behind a [`crate::MemoryStore`]: one ordered map of entries plus the indexes that make
//! expiry and eviction cheap. Everything here runs under the store's lock and never awaits.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use cache_core::{Error, Result};
use tokio::time::Instant;

/// Bytes counted for a sorted-set member besides its name (the score).
const MEMBER_OVERHEAD: usize = 8;

/// A sorted-set score. Scores are never NaN (rejected on input), which makes the order total;
/// `-0.0` and `0.0` compare equal, as in Redis.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Score(pub(crate) f64);

impl PartialEq for Score {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Score {}
impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Score {
    fn cmp(&self, other: &Self) -> Ordering {
        // NaN never gets in (checked by every method taking a score), so `partial_cmp` is total here.
        self.0.partial_cmp(&other.0).unwrap_or(Ordering::Equal)
    }
}

/// A sorted set: members by name and by (score, name).
#[derive(Debug, Clone, Default)]
pub(crate) struct ZSet {
    scores: HashMap<String, f64>,
    ordered: BTreeSet<(Score, String)>,
    /// Member names plus [`MEMBER_OVERHEAD`] each, kept up to date.
    bytes: usize,
}

impl ZSet {
    /// Adds or updates a member; returns whether it is new.
    pub(crate) fn insert(&mut self, member: &str, score: f64) -> bool {
        match self.scores.get_mut(member) {
            Some(old) => {
                if old.to_bits() != score.to_bits() {
                    self.ordered.remove(&(Score(*old), member.to_owned()));
                    self.ordered.insert((Score(score), member.to_owned()));
                    *old = score;
                }
                false
            }
            None => {
                self.scores.insert(member.to_owned(), score);
                self.ordered.insert((Score(score), member.to_owned()));
                self.bytes += member.len() + MEMBER_OVERHEAD;
                true
            }
        }
    }

    /// Removes a member; returns whether it was present.
    pub(crate) fn remove(&mut self, member: &str) -> bool {
        match self.scores.remove(member) {
            Some(score) => {
                self.ordered.remove(&(Score(score), member.to_owned()));
                self.bytes -= member.len() + MEMBER_OVERHEAD;
                true
            }
            None => false,
        }
    }

    pub(crate) fn contains(&self, member: &str) -> bool {
        self.scores.contains_key(member)
    }

    /// Members with `min <= score <= max` in order, at most `limit`.
    pub(crate) fn range(&self, min: f64, max: f64, limit: usize) -> Vec<(String, f64)> {
        if min > max {
            return Vec::new();
        }
        self.ordered
            .range((Score(min), String::new())..)
            .take_while(|(s, _)| s.0 <= max)
            .take(limit)
            .map(|(s, m)| (m.clone(), s.0))
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.scores.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    /// Bytes counted for this set: member names plus a score each.
    pub(crate) fn size(&self) -> usize {
        self.bytes
    }

    /// The size after adding `member` (unchanged if it is present).
    pub(crate) fn size_with(&self, member: &str) -> usize {
        if self.contains(member) {
            self.bytes
        } else {
            self.bytes + member.len() + MEMBER_OVERHEAD
        }
    }
}

/// What a key holds.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Str(Vec<u8>),
    ZSet(ZSet),
}

impl Value {
    fn size(&self) -> usize {
        match self {
            Value::Str(v) => v.len(),
            Value::ZSet(z) => z.size(),
        }
    }
}

/// One key's entry.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) value: Value,
    pub(crate) expires_at: Option<Instant>,
    /// Position in the LRU order (only maintained in a bounded store).
    used: u64,
    /// Bytes counted for this entry: key plus value.
    size: usize,
}

impl Entry {
    fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }
}

/// Counters reported by `stats()`.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counters {
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    pub(crate) expired: u64,
    pub(crate) evicted: u64,
}

/// Size bounds of a store.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_entries: Option<usize>,
    pub(crate) max_bytes: Option<usize>,
    pub(crate) max_value_bytes: usize,
}

impl Limits {
    fn bounded(&self) -> bool {
        self.max_entries.is_some() || self.max_bytes.is_some()
    }
}

/// The whole data set, shared by every store built from the same root (whatever its prefix).
#[derive(Debug)]
pub(crate) struct State {
    /// Entries by full key (prefix included).
    map: BTreeMap<Arc<str>, Entry>,
    /// Keys with a TTL, soonest deadline first: the background reaper pops from the front.
    expiries: BTreeSet<(Instant, Arc<str>)>,
    /// Keys by last use, least recent first; `None` in an unbounded store (no bookkeeping cost).
    lru: Option<BTreeMap<u64, Arc<str>>>,
    tick: u64,
    bytes: usize,
    limits: Limits,
    pub(crate) counters: Counters,
}

impl State {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            map: BTreeMap::new(),
            expiries: BTreeSet::new(),
            lru: limits.bounded().then(BTreeMap::new),
            tick: 0,
            bytes: 0,
            limits,
            counters: Counters::default(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The live entry at `key`, expiring it first if its time has come. Counts as a use for LRU.
    pub(crate) fn lookup(&mut self, key: &str, now: Instant) -> Option<&mut Entry> {
        self.lookup_with(key, now, true)
    }

    /// Like [`State::lookup`] but not a use for LRU, as Redis's `EXISTS`, `TTL` and `PERSIST`
    /// (`LOOKUP_NOTOUCH`).
    pub(crate) fn peek(&mut self, key: &str, now: Instant) -> Option<&mut Entry> {
        self.lookup_with(key, now, false)
    }

    fn lookup_with(&mut self, key: &str, now: Instant, touch: bool) -> Option<&mut Entry> {
        let expired = self.map.get(key)?.is_expired(now);
        if expired {
            self.remove(key);
            self.counters.expired += 1;
            return None;
        }
        let entry = self.map.get_mut(key)?;
        if let (true, Some(lru)) = (touch, &mut self.lru) {
            if let Some(k) = lru.remove(&entry.used) {
                self.tick += 1;
                entry.used = self.tick;
                lru.insert(self.tick, k);
            }
        }
        Some(entry)
    }

    /// Removes an entry with its index records; returns its key and entry.
    pub(crate) fn remove(&mut self, key: &str) -> Option<(Arc<str>, Entry)> {
        let (k, entry) = self.map.remove_entry(key)?;
        if let Some(at) = entry.expires_at {
            self.expiries.remove(&(at, k.clone()));
        }
        if let Some(lru) = &mut self.lru {
            lru.remove(&entry.used);
        }
        self.bytes -= entry.size;
        Some((k, entry))
    }

    /// Removes a live entry; returns whether it existed (an expired one counts as missing).
    pub(crate) fn remove_live(&mut self, key: &str, now: Instant) -> bool {
        match self.remove(key) {
            Some((_, e)) if e.is_expired(now) => {
                self.counters.expired += 1;
                false
            }
            Some(_) => true,
            None => false,
        }
    }

    /// The size an entry for `key` holding `value` is counted as.
    pub(crate) fn entry_size(key: &str, value_size: usize) -> usize {
        key.len() + value_size
    }

    /// Fails with [`Error::Capacity`] when an entry of `size` bytes could never fit the bound.
    pub(crate) fn check_fits(&self, key: &str, size: usize) -> Result<()> {
        match self.limits.max_bytes {
            Some(max) if size > max => Err(Error::Capacity(format!(
                "entry {key:?} would take {size} bytes; the store is bounded to {max} bytes"
            ))),
            _ => Ok(()),
        }
    }

    /// Writes `value` at `key` (replacing whatever is there), then evicts other entries if a bound
    /// is exceeded. The caller has checked [`State::check_fits`].
    pub(crate) fn put(
        &mut self,
        key: &str,
        value: Value,
        expires_at: Option<Instant>,
        now: Instant,
    ) {
        let k = match self.remove(key) {
            Some((k, _)) => k,
            None => Arc::from(key),
        };
        let size = Self::entry_size(key, value.size());
        self.tick += 1;
        if let Some(at) = expires_at {
            self.expiries.insert((at, k.clone()));
        }
        if let Some(lru) = &mut self.lru {
            lru.insert(self.tick, k.clone());
        }
        self.bytes += size;
        self.map.insert(
            k,
            Entry {
                value,
                expires_at,
                used: self.tick,
                size,
            },
        );
        self.enforce_bounds(key, now);
    }

    /// Recounts the size of the entry at `key` after its value changed in place, then evicts others
    /// if a bound is exceeded.
    pub(crate) fn resized(&mut self, key: &str, now: Instant) {
        if let Some(entry) = self.map.get_mut(key) {
            let size = Self::entry_size(key, entry.value.size());
            self.bytes = self.bytes - entry.size + size;
            entry.size = size;
        }
        self.enforce_bounds(key, now);
    }

    /// Changes the deadline of an existing entry.
    pub(crate) fn set_expiry(&mut self, key: &str, at: Option<Instant>) {
        let Some((k, entry)) = self.map.get_key_value(key) else {
            return;
        };
        let (k, old) = (k.clone(), entry.expires_at);
        if old == at {
            return;
        }
        if let Some(old) = old {
            self.expiries.remove(&(old, k.clone()));
        }
        if let Some(at) = at {
            self.expiries.insert((at, k));
        }
        if let Some(entry) = self.map.get_mut(key) {
            entry.expires_at = at;
        }
    }

    /// Removes up to `max` entries whose deadline has passed; returns how many.
    pub(crate) fn purge_expired(&mut self, now: Instant, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            let key = match self.expiries.first() {
                Some((at, key)) if *at <= now => key.clone(),
                _ => break,
            };
            self.remove(&key);
            self.counters.expired += 1;
            n += 1;
        }
        n
    }

    /// Eviction policy: while a bound is exceeded, drop expired entries first, then the least
    /// recently used entry (read or written), never the entry at `protect` that was just written.
    fn enforce_bounds(&mut self, protect: &str, now: Instant) {
        if !self.over_bounds() {
            return;
        }
        self.purge_expired(now, usize::MAX);
        while self.over_bounds() {
            let victim = self.lru.as_ref().and_then(|lru| {
                lru.values()
                    .find(|k| &***k != protect)
                    .map(|k| k.to_string())
            });
            let Some(victim) = victim else {
                break;
            };
            self.remove(&victim);
            self.counters.evicted += 1;
            tracing::trace!(key = %victim, "memory store evicted an entry");
        }
    }

    fn over_bounds(&self) -> bool {
        self.limits.max_entries.is_some_and(|m| self.map.len() > m)
            || self.limits.max_bytes.is_some_and(|m| self.bytes > m)
    }

    /// Iterates keys `>= start` (or `> start` when `exclusive`) that begin with `within`.
    pub(crate) fn keys_from<'a>(
        &'a self,
        start: &'a str,
        exclusive: bool,
        within: &'a str,
    ) -> impl Iterator<Item = (&'a Arc<str>, &'a Entry)> + 'a {
        use std::ops::Bound;
        let lower = if exclusive {
            Bound::Excluded(start)
        } else {
            Bound::Included(start)
        };
        self.map
            .range::<str, _>((lower, Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(within))
    }

    /// Whether `entry` is expired at `now` (for scans that look without touching).
    pub(crate) fn expired(entry: &Entry, now: Instant) -> bool {
        entry.is_expired(now)
    }
}
