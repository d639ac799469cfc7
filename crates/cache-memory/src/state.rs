//! The data behind a [`crate::MemoryStore`]: the entries, split over shards by the hash of their key,
//! each shard with the indexes that make scans, expiry and eviction cheap. A shard runs under its own
//! lock and never awaits; nothing here locks two shards at once.
//!
//! What costs what (the reason for each structure):
//!
//! - Reads and writes of an existing key are one hash-table probe with the hash the store computed
//!   once (it also picked the shard), no key allocation and no tree walk.
//! - The ordered key index (`ordered`, for `SCAN` pages and `flush_prefix`) changes only when a key is
//!   created or removed, never on a read or an overwrite.
//! - The deadline index (`expiries`, for the reaper and for "expired first" eviction) changes only
//!   when a deadline moves earlier or a key is created or removed: overwriting a live key with a
//!   later deadline (the common `SET ... PX`, a sliding `GETEX`) leaves it alone.
//! - The LRU order exists only in bounded stores; uses are stamped with a store-wide tick so that the
//!   oldest use over all shards is the smallest head.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::Arc;

use hashbrown::HashTable;
use tokio::time::Instant;

pub(crate) use crate::key::FullKey;
use crate::key::{hash_of, same_head, HEAD};
pub(crate) use crate::value::Value;
pub(crate) use crate::zset::ZSet;

/// One key's entry.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) value: Value,
    pub(crate) expires_at: Option<Instant>,
    /// The time of this key's record in the deadline index, if it has one (never later than
    /// `expires_at`; see [`Shard::index_deadline`]).
    indexed_at: Option<Instant>,
    /// The store-wide tick of its last use (only maintained in a bounded store).
    used: u64,
    /// Bytes counted for this entry: key plus value.
    size: usize,
}

impl Entry {
    pub(crate) fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }
}

/// A key with its entry, as stored in a shard's table.
#[derive(Debug)]
struct Slot {
    key: Arc<str>,
    /// The key's hash: growing the table rehashes without reading the keys.
    hash: u64,
    /// The key's first [`HEAD`] bytes (zero-padded), compared in the slot a lookup has just read
    /// instead of in the key's own allocation: in a table larger than the CPU caches, that read
    /// missed the caches on every lookup (~19% of a profile of 1 KiB reads, under `memcmp`).
    head: [u8; HEAD],
    entry: Entry,
}

impl Slot {
    fn new(key: Arc<str>, hash: u64, entry: Entry) -> Self {
        let mut head = [0; HEAD];
        let n = key.len().min(HEAD);
        head[..n].copy_from_slice(&key.as_bytes()[..n]);
        Slot {
            key,
            hash,
            head,
            entry,
        }
    }

    /// Whether this slot holds `key`. The length is in the slot (the `Arc<str>`'s own length) and
    /// both heads are zero-padded, so the heads compare whole, as five words (see [`same_head`]),
    /// and only a key longer than [`HEAD`] whose head matches reads the key's allocation. (Walks
    /// over the indexes, which hold the stored key itself, compare `Slot::key` directly.)
    fn is(&self, key: &FullKey<'_>) -> bool {
        let len = self.key.len();
        len == key.len()
            && same_head(&self.head, key.head())
            && (len <= HEAD || self.key.as_bytes()[HEAD..] == key.bytes()[HEAD..])
    }
}

/// Counters reported by `stats()`, per shard (summed by the store).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counters {
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    pub(crate) expired: u64,
    pub(crate) evicted: u64,
}

impl Counters {
    pub(crate) fn add(&mut self, other: &Counters) {
        self.hits += other.hits;
        self.misses += other.misses;
        self.expired += other.expired;
        self.evicted += other.evicted;
    }
}

/// Size bounds of a store.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_entries: Option<usize>,
    pub(crate) max_bytes: Option<usize>,
    pub(crate) max_value_bytes: usize,
}

impl Limits {
    pub(crate) fn bounded(&self) -> bool {
        self.max_entries.is_some() || self.max_bytes.is_some()
    }
}

/// Store-wide totals and the LRU clock of a bounded store, shared by its shards. An unbounded store
/// has none, so its writes touch no shared cache line.
#[derive(Debug, Default)]
pub(crate) struct Totals {
    pub(crate) entries: AtomicUsize,
    pub(crate) bytes: AtomicUsize,
    tick: AtomicU64,
}

impl Totals {
    fn next_tick(&self) -> u64 {
        self.tick.fetch_add(1, AtomicOrdering::Relaxed) + 1
    }
}

/// "Now" on tokio's clock, read at most once per operation and only when a deadline needs it.
#[derive(Debug, Default)]
pub(crate) struct Now(Option<Instant>);

impl Now {
    pub(crate) fn get(&mut self) -> Instant {
        *self.0.get_or_insert_with(Instant::now)
    }
}

/// The parts of a shard besides its table, borrowed together.
struct Indexes<'a> {
    ordered: &'a mut BTreeSet<Arc<str>>,
    expiries: &'a mut BTreeSet<(Instant, Arc<str>)>,
    lru: &'a mut Option<BTreeMap<u64, Arc<str>>>,
    bytes: &'a mut usize,
    totals: &'a Option<Arc<Totals>>,
}

impl Indexes<'_> {
    /// Removes the index records and counts of a slot just taken out of the table.
    fn unindex(self, slot: Slot) -> (Arc<str>, Entry) {
        let Slot { key, entry, .. } = slot;
        self.ordered.remove(&key);
        if let Some(at) = entry.indexed_at {
            self.expiries.remove(&(at, key.clone()));
        }
        if let Some(lru) = self.lru {
            lru.remove(&entry.used);
        }
        *self.bytes -= entry.size;
        if let Some(t) = self.totals {
            t.entries.fetch_sub(1, AtomicOrdering::Relaxed);
            t.bytes.fetch_sub(entry.size, AtomicOrdering::Relaxed);
        }
        (key, entry)
    }
}

/// One shard of the data set.
///
/// Laid out in declaration order (`repr(C)`) so that what every call touches shares the cache line
/// of the shard's lock, which the call has just taken: the counters a read increments and the
/// table's header come first. In the compiler's own order the counters sat two lines further on,
/// one more line for a read to fetch from the core that used the shard last.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Shard<H> {
    pub(crate) counters: Counters,
    table: HashTable<Slot>,
    /// Every key of the shard in order: scans and `flush_prefix` walk it.
    ordered: BTreeSet<Arc<str>>,
    /// Keys with a TTL, soonest deadline first: the reaper pops from the front.
    expiries: BTreeSet<(Instant, Arc<str>)>,
    /// Keys by the tick of their last use; `None` in an unbounded store.
    lru: Option<BTreeMap<u64, Arc<str>>>,
    bytes: usize,
    totals: Option<Arc<Totals>>,
    hasher: H,
}

impl<H: BuildHasher> Shard<H> {
    pub(crate) fn new(hasher: H, totals: Option<Arc<Totals>>) -> Self {
        Self {
            table: HashTable::new(),
            ordered: BTreeSet::new(),
            expiries: BTreeSet::new(),
            lru: totals.is_some().then(BTreeMap::new),
            bytes: 0,
            totals,
            hasher,
            counters: Counters::default(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The live entry at `key`, expiring it first if its time has come. Counts as a use for LRU.
    pub(crate) fn lookup(&mut self, key: &FullKey<'_>, now: &mut Now) -> Option<&mut Entry> {
        self.lookup_with(key, now, true)
    }

    /// Like [`Shard::lookup`] but not a use for LRU, as Redis's `EXISTS`, `TTL` and `PERSIST`
    /// (`LOOKUP_NOTOUCH`).
    pub(crate) fn peek(&mut self, key: &FullKey<'_>, now: &mut Now) -> Option<&mut Entry> {
        self.lookup_with(key, now, false)
    }

    fn lookup_with(&mut self, key: &FullKey<'_>, now: &mut Now, touch: bool) -> Option<&mut Entry> {
        // One probe: the entry is either expired (removed through the same probe) or returned.
        // The fields are borrowed apart so that the expired branch may update the indexes while
        // the returned entry borrows the table.
        let Ok(found) = self.table.find_entry(key.hash, |s| s.is(key)) else {
            return None;
        };
        let entry = &found.get().entry;
        if entry.expires_at.is_some() && entry.is_expired(now.get()) {
            let (slot, _) = found.remove();
            Indexes {
                ordered: &mut self.ordered,
                expiries: &mut self.expiries,
                lru: &mut self.lru,
                bytes: &mut self.bytes,
                totals: &self.totals,
            }
            .unindex(slot);
            self.counters.expired += 1;
            return None;
        }
        let slot = found.into_mut();
        if let (true, Some(lru), Some(totals)) = (touch, &mut self.lru, &self.totals) {
            if let Some(k) = lru.remove(&slot.entry.used) {
                let tick = totals.next_tick();
                slot.entry.used = tick;
                lru.insert(tick, k);
            }
        }
        Some(&mut slot.entry)
    }

    /// Removes the index records and counts of a slot just taken out of the table.
    fn unindex(&mut self, slot: Slot) -> (Arc<str>, Entry) {
        Indexes {
            ordered: &mut self.ordered,
            expiries: &mut self.expiries,
            lru: &mut self.lru,
            bytes: &mut self.bytes,
            totals: &self.totals,
        }
        .unindex(slot)
    }

    /// Records a new deadline of the entry of `key` in the deadline index. The index holds one
    /// record per key at a time no later than the key's deadline, so a deadline that moves later
    /// (every `SET ... PX` of a live key, every sliding `GETEX`) costs nothing here: the reaper
    /// finds the early record, sees the later deadline and moves the record then, once.
    fn index_deadline(
        expiries: &mut BTreeSet<(Instant, Arc<str>)>,
        key: &Arc<str>,
        entry: &mut Entry,
    ) {
        let Some(at) = entry.expires_at else {
            // A record left for a key without a deadline is dropped when the reaper reaches it.
            return;
        };
        match entry.indexed_at {
            Some(recorded) if recorded <= at => {}
            recorded => {
                if let Some(recorded) = recorded {
                    expiries.remove(&(recorded, key.clone()));
                }
                expiries.insert((at, key.clone()));
                entry.indexed_at = Some(at);
            }
        }
    }

    fn remove_matching(
        &mut self,
        hash: u64,
        is: impl Fn(&Slot) -> bool,
    ) -> Option<(Arc<str>, Entry)> {
        let Ok(found) = self.table.find_entry(hash, is) else {
            return None;
        };
        let (slot, _) = found.remove();
        Some(self.unindex(slot))
    }

    /// Removes an entry with its index records; returns its key and entry.
    pub(crate) fn remove(&mut self, key: &FullKey<'_>) -> Option<(Arc<str>, Entry)> {
        self.remove_matching(key.hash, |s| s.is(key))
    }

    /// Removes the entry of a stored key (for walks over the indexes).
    fn remove_stored(&mut self, key: &str) -> Option<(Arc<str>, Entry)> {
        let hash = hash_of(&self.hasher, key);
        self.remove_matching(hash, |s| *s.key == *key)
    }

    /// Removes a live entry; returns whether it existed (an expired one counts as missing) and the
    /// removed value, to be dropped after the lock is released.
    pub(crate) fn remove_live(
        &mut self,
        key: &FullKey<'_>,
        now: &mut Now,
    ) -> (bool, Option<Value>) {
        match self.remove(key) {
            Some((_, e)) if e.expires_at.is_some() && e.is_expired(now.get()) => {
                self.counters.expired += 1;
                (false, Some(e.value))
            }
            Some((_, e)) => (true, Some(e.value)),
            None => (false, None),
        }
    }

    /// The size an entry for a key of `key_len` bytes holding `value_size` bytes is counted as.
    pub(crate) fn entry_size(key_len: usize, value_size: usize) -> usize {
        key_len + value_size
    }

    /// Writes `value` at `key` (replacing whatever is there) and returns the value it replaced, to
    /// be dropped after the lock is released. The caller has checked the value fits and enforces
    /// the bounds after releasing the lock.
    pub(crate) fn put(
        &mut self,
        key: &FullKey<'_>,
        value: Value,
        expires_at: Option<Instant>,
    ) -> Option<Value> {
        let size = Self::entry_size(key.len(), value.size());
        let tick = self.totals.as_ref().map_or(0, |t| t.next_tick());
        if let Some(slot) = self.table.find_mut(key.hash, |s| s.is(key)) {
            // Overwrite in place: the key and its ordered-index record stay.
            let entry = &mut slot.entry;
            let old_size = entry.size;
            let old_used = entry.used;
            let old = std::mem::replace(&mut entry.value, value);
            entry.size = size;
            entry.expires_at = expires_at;
            entry.used = tick;
            Self::index_deadline(&mut self.expiries, &slot.key, entry);
            if let Some(lru) = &mut self.lru {
                lru.remove(&old_used);
                lru.insert(tick, slot.key.clone());
            }
            self.bytes = self.bytes - old_size + size;
            if let Some(t) = &self.totals {
                t.bytes.fetch_add(size, AtomicOrdering::Relaxed);
                t.bytes.fetch_sub(old_size, AtomicOrdering::Relaxed);
            }
            return Some(old);
        }
        let k = key.to_arc();
        self.ordered.insert(k.clone());
        let mut entry = Entry {
            value,
            expires_at,
            indexed_at: None,
            used: tick,
            size,
        };
        Self::index_deadline(&mut self.expiries, &k, &mut entry);
        if let Some(lru) = &mut self.lru {
            lru.insert(tick, k.clone());
        }
        self.bytes += size;
        if let Some(t) = &self.totals {
            t.entries.fetch_add(1, AtomicOrdering::Relaxed);
            t.bytes.fetch_add(size, AtomicOrdering::Relaxed);
        }
        self.table
            .insert_unique(key.hash, Slot::new(k, key.hash, entry), |s| s.hash);
        None
    }

    /// Recounts the size of the entry at `key` after its value changed in place.
    pub(crate) fn resized(&mut self, key: &FullKey<'_>) {
        if let Some(slot) = self.table.find_mut(key.hash, |s| s.is(key)) {
            let size = Self::entry_size(key.len(), slot.entry.value.size());
            let old = slot.entry.size;
            self.bytes = self.bytes - old + size;
            slot.entry.size = size;
            if let Some(t) = &self.totals {
                t.bytes.fetch_add(size, AtomicOrdering::Relaxed);
                t.bytes.fetch_sub(old, AtomicOrdering::Relaxed);
            }
        }
    }

    /// Changes the deadline of an existing entry.
    pub(crate) fn set_expiry(&mut self, key: &FullKey<'_>, at: Option<Instant>) {
        if let Some(slot) = self.table.find_mut(key.hash, |s| s.is(key)) {
            slot.entry.expires_at = at;
            Self::index_deadline(&mut self.expiries, &slot.key, &mut slot.entry);
        }
    }

    /// Removes entries whose deadline has passed, looking at up to `max` deadline records; returns
    /// how many entries it removed and whether records are left that are due at `now`. A record
    /// whose key has a later deadline by now is moved there; one whose key has none is dropped.
    pub(crate) fn purge_expired(&mut self, now: Instant, max: usize) -> (usize, bool) {
        let mut removed = 0;
        for _ in 0..max {
            let record = match self.expiries.first() {
                Some((at, _)) if *at <= now => self.expiries.pop_first(),
                _ => return (removed, false),
            };
            let Some((_, key)) = record else {
                return (removed, false);
            };
            let hash = hash_of(&self.hasher, &key);
            let Ok(found) = self.table.find_entry(hash, |s| s.key == key) else {
                continue;
            };
            let entry = &found.get().entry;
            if entry.is_expired(now) {
                let (mut slot, _) = found.remove();
                // The record is already out of the index.
                slot.entry.indexed_at = None;
                self.unindex(slot);
                self.counters.expired += 1;
                removed += 1;
            } else {
                let slot = found.into_mut();
                slot.entry.indexed_at = None;
                Self::index_deadline(&mut self.expiries, &slot.key, &mut slot.entry);
            }
        }
        (removed, self.has_expired(now))
    }

    /// Whether the deadline index holds a record due at `now` (the entry may have a later deadline
    /// by now: then purging only moves the record).
    pub(crate) fn has_expired(&self, now: Instant) -> bool {
        self.expiries.first().is_some_and(|(at, _)| *at <= now)
    }

    /// The tick of the least recently used entry other than `protect` (bounded stores only).
    pub(crate) fn lru_head(&self, protect: &[u8]) -> Option<u64> {
        self.lru
            .as_ref()?
            .iter()
            .find(|(_, k)| k.as_bytes() != protect)
            .map(|(tick, _)| *tick)
    }

    /// Evicts the entry last used at `tick`, if it still is; returns its value (to drop after
    /// unlocking) when it did.
    pub(crate) fn evict(&mut self, tick: u64) -> Option<Value> {
        let key = self.lru.as_ref()?.get(&tick)?.clone();
        let (_, entry) = self.remove_stored(&key)?;
        self.counters.evicted += 1;
        tracing::trace!(key = %key, "memory store evicted an entry");
        Some(entry.value)
    }

    /// Up to `max` keys `>= start` (or `> start` when `exclusive`) that begin with `within`, in
    /// order, each with whether it is expired at `now`.
    pub(crate) fn keys_from(
        &self,
        start: &str,
        exclusive: bool,
        within: &str,
        max: usize,
        now: Instant,
    ) -> Vec<(Arc<str>, bool)> {
        use std::ops::Bound;
        let lower = if exclusive {
            Bound::Excluded(start)
        } else {
            Bound::Included(start)
        };
        self.ordered
            .range::<str, _>((lower, Bound::Unbounded))
            .take_while(|k| k.starts_with(within))
            .take(max)
            .map(|k| {
                let hash = hash_of(&self.hasher, k);
                let expired = self
                    .table
                    .find(hash, |s| s.key == *k)
                    .is_some_and(|s| s.entry.is_expired(now));
                (k.clone(), expired)
            })
            .collect()
    }

    /// Removes a stored key found by [`Shard::keys_from`]; returns whether it was live.
    pub(crate) fn remove_key(&mut self, key: &str, now: Instant) -> bool {
        match self.remove_stored(key) {
            Some((_, e)) if e.is_expired(now) => {
                self.counters.expired += 1;
                false
            }
            Some(_) => true,
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(key: &str) -> Slot {
        let entry = Entry {
            value: Value::string(b"v"),
            expires_at: None,
            indexed_at: None,
            used: 0,
            size: 0,
        };
        Slot::new(Arc::from(key), 0, entry)
    }

    /// Around the head (40 bytes) and the inline key (128): a slot holds exactly its own key,
    /// whichever byte another key of the same length differs in.
    #[test]
    fn a_slot_holds_its_key_and_no_other_of_any_length() {
        let hasher = foldhash::fast::RandomState::default();
        for len in [0, 1, 39, 40, 41, 127, 128, 129, 200] {
            let key: String = (0..len)
                .map(|i| char::from(b'a' + (i % 26) as u8))
                .collect();
            let s = slot(&key);
            assert!(s.is(&FullKey::new("", &key, &hasher)), "length {len}");
            for at in 0..len {
                let mut other = key.clone().into_bytes();
                other[at] = b'#';
                let other = String::from_utf8(other).unwrap();
                assert!(
                    !s.is(&FullKey::new("", &other, &hasher)),
                    "length {len}, byte {at}"
                );
            }
            let longer = format!("{key}a");
            assert!(!s.is(&FullKey::new("", &longer, &hasher)), "length {len}");
        }
    }
}
