//! Single-flight per key inside the process, with the semantics of moka's `get_with`.
//!
//! - The first caller that misses a key becomes its **leader** and runs the loader; callers that
//!   miss the same key meanwhile become **waiters** and receive the leader's outcome.
//! - The outcome is shared, not cached here: a loader error reaches every waiter of that flight, and
//!   the next caller starts a new flight.
//! - A leader that panics or whose future is dropped (cancelled, timed out) drops its
//!   [`LeaderGuard`] without an outcome: the channel closes, every waiter wakes up and retries, and
//!   one of them becomes the new leader. Nobody is left waiting for a leader that is gone.
//! - Per key, never one lock for the cache: the map of flights is sharded, and its mutexes are held
//!   for a map insert or removal only, never across an `.await`.
//!
//! Values travel between leader and waiters as their encoded bytes (the leader encodes them anyway
//! to write the cache), so the value type needs no `Clone` bound and two call sites using one key
//! with different types cannot confuse each other: a waiter whose type does not fit retries.

use std::any::Any;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use cache_core::Bytes;
use tokio::sync::watch;

const SHARDS: usize = 32;

/// What a leader hands to its waiters.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The value, encoded with `cache_core::codec`.
    Value(Bytes),
    /// The loader found nothing (`get_or_load_optional`).
    Absent,
    /// The loader failed: an `Arc<E>` behind `dyn Any`, downcast by each waiter.
    LoaderError(Arc<dyn Any + Send + Sync>),
    /// The loaded value could not be encoded; the message of the `Encode` error.
    EncodeError(String),
}

type Slot = Option<Arc<Outcome>>;

#[derive(Debug)]
struct Entry {
    id: u64,
    rx: watch::Receiver<Slot>,
}

type Shard = Mutex<HashMap<Box<str>, Entry>>;

/// The in-flight loads of one manager.
#[derive(Debug)]
pub(crate) struct Flights {
    shards: Box<[Shard]>,
    hasher: std::collections::hash_map::RandomState,
    next_id: AtomicU64,
}

/// The result of [`Flights::join`].
pub(crate) enum Join<'a> {
    /// This caller runs the loader.
    Leader(LeaderGuard<'a>),
    /// Another caller is loading: wait with [`wait`].
    Waiter(watch::Receiver<Slot>),
}

impl Flights {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
            next_id: AtomicU64::new(1),
        }
    }

    fn shard(&self, key: &str) -> (usize, MutexGuard<'_, HashMap<Box<str>, Entry>>) {
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        // A poisoned shard only means a thread panicked while holding the guard, during a plain
        // map insert or removal that cannot leave the map half-updated: keep using it.
        let guard = self.shards[i].lock().unwrap_or_else(|e| e.into_inner());
        (i, guard)
    }

    /// Joins the flight of `key`, or starts one.
    pub(crate) fn join(&self, key: &str) -> Join<'_> {
        let (shard, mut map) = self.shard(key);
        if let Some(e) = map.get(key) {
            return Join::Waiter(e.rx.clone());
        }
        Join::Leader(self.lead(shard, &mut map, key))
    }

    /// Starts a flight of `key` unless one is running (then `None`: someone else is loading).
    pub(crate) fn try_lead(&self, key: &str) -> Option<LeaderGuard<'_>> {
        let (shard, mut map) = self.shard(key);
        if map.contains_key(key) {
            return None;
        }
        Some(self.lead(shard, &mut map, key))
    }

    fn lead(&self, shard: usize, map: &mut HashMap<Box<str>, Entry>, key: &str) -> LeaderGuard<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(None);
        map.insert(key.into(), Entry { id, rx });
        LeaderGuard {
            flights: self,
            shard,
            key: key.into(),
            id,
            tx,
        }
    }

    /// Number of keys being loaded right now.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

/// Held by the leader of a flight. Dropping it without [`LeaderGuard::complete`] (panic,
/// cancellation) releases the waiters, who then retry.
#[derive(Debug)]
pub(crate) struct LeaderGuard<'a> {
    flights: &'a Flights,
    shard: usize,
    key: Box<str>,
    id: u64,
    tx: watch::Sender<Slot>,
}

impl LeaderGuard<'_> {
    /// Hands the outcome to every waiter and ends the flight.
    pub(crate) fn complete(self, outcome: Outcome) {
        self.tx.send_replace(Some(Arc::new(outcome)));
        // Drop removes the entry.
    }
}

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.flights.shards[self.shard]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if map.get(&*self.key).is_some_and(|e| e.id == self.id) {
            map.remove(&*self.key);
        }
        // `self.tx` drops after this: waiters still waiting see the channel close.
    }
}

/// Waits for the leader's outcome; `None` when the leader went away without one (it panicked or
/// was cancelled): the caller should retry.
pub(crate) async fn wait(mut rx: watch::Receiver<Slot>) -> Option<Arc<Outcome>> {
    loop {
        let current = rx.borrow_and_update().clone();
        if current.is_some() {
            return current;
        }
        if rx.changed().await.is_err() {
            // Closed: the leader is gone. It may have completed just before, so look once more.
            return rx.borrow().clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_get_the_outcome_and_the_entry_is_removed() {
        let f = Flights::new();
        let Join::Leader(lead) = f.join("k") else {
            panic!("first caller leads")
        };
        let Join::Waiter(rx) = f.join("k") else {
            panic!("second caller waits")
        };
        assert!(f.try_lead("k").is_none());
        assert_eq!(f.len(), 1);
        lead.complete(Outcome::Value(Bytes::from_static(b"x")));
        assert_eq!(f.len(), 0);
        match wait(rx).await.as_deref() {
            Some(Outcome::Value(v)) => assert_eq!(v, &b"x"[..]),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_dropped_leader_releases_waiters() {
        let f = Flights::new();
        let lead = match f.join("k") {
            Join::Leader(l) => l,
            Join::Waiter(_) => panic!("first caller leads"),
        };
        let Join::Waiter(rx) = f.join("k") else {
            panic!("second caller waits")
        };
        drop(lead);
        assert!(wait(rx).await.is_none());
        assert!(matches!(f.join("k"), Join::Leader(_)));
    }
}
