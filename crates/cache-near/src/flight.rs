//! One store read per key at a time: [`NearCache::miss`] and what it hands out (see the [crate
//! documentation](crate#one-store-read-per-key-at-a-time)).

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::{NearCache, Ticket};

/// What a store read in flight answers its waiters.
pub(crate) enum Answer<V: ?Sized> {
    Pending,
    Found(Arc<V>),
    Absent,
}

/// A store read in flight ([`NearCache::miss`]).
pub(crate) struct Flight<V: ?Sized> {
    key: Box<str>,
    /// Tells flights apart, so that a leader removes its own entry only.
    id: u64,
    /// The stripe sequence and tracking epoch when the read started: joined only while both are
    /// still current.
    seq: u64,
    epoch: u64,
    rx: watch::Receiver<Answer<V>>,
}

/// One stripe of keys: its invalidation sequence and the store reads of its keys in flight.
pub(crate) struct Stripe<V: ?Sized> {
    pub(crate) seq: u64,
    pub(crate) flights: Vec<Flight<V>>,
}

/// What a caller does after a miss: see [`NearCache::miss`].
pub enum Miss<V: ?Sized + Send + Sync + 'static> {
    /// Read the store, then [`Fill::finish`] with what it holds.
    Lead(Fill<V>),
    /// Another caller is reading the key: [`Wait::wait`] for its answer.
    Wait(Wait<V>),
}

impl<V: ?Sized + Send + Sync + 'static> fmt::Debug for Miss<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Miss::Lead(fill) => f.debug_tuple("Lead").field(fill).finish(),
            Miss::Wait(_) => f.write_str("Wait"),
        }
    }
}

/// The one store read of a key in flight; see [`NearCache::miss`]. Dropping it without
/// [`Fill::finish`] wakes its waiters with nothing (they read for themselves).
#[must_use = "a Fill is finished with what the store holds"]
pub struct Fill<V: ?Sized + Send + Sync + 'static> {
    cache: NearCache<V>,
    key: Box<str>,
    id: u64,
    ticket: Ticket,
    tx: Option<watch::Sender<Answer<V>>>,
}

impl<V: ?Sized + Send + Sync + 'static> fmt::Debug for Fill<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fill")
            .field("key", &self.key)
            .field("ticket", &self.ticket)
            .finish_non_exhaustive()
    }
}

impl<V: ?Sized + Send + Sync + 'static> Fill<V> {
    /// The ticket of this read (taken when it started).
    pub fn ticket(&self) -> Ticket {
        self.ticket
    }

    /// Ends the read with what the store held: `Some((value, expires_at, bytes))` as for
    /// [`NearCache::insert`] (inserted unless a change was told since the read started), `None` for
    /// no value. The waiters get the same answer. Returns whether the value was inserted.
    pub fn finish(mut self, found: Option<(Arc<V>, Option<Instant>, usize)>) -> bool {
        let (answer, inserted) = match found {
            Some((value, expires_at, bytes)) => {
                let inserted = self.cache.insert(
                    self.ticket,
                    &self.key,
                    Arc::clone(&value),
                    expires_at,
                    bytes,
                );
                (Answer::Found(value), inserted)
            }
            None => (Answer::Absent, false),
        };
        self.cache.land(self.ticket.stripe, self.id);
        if let Some(tx) = self.tx.take() {
            // No receiver left is fine: nobody waited.
            let _ = tx.send(answer);
        }
        inserted
    }
}

impl<V: ?Sized + Send + Sync + 'static> Drop for Fill<V> {
    fn drop(&mut self) {
        if self.tx.is_some() {
            // Not finished: leave the map, and dropping the sender wakes the waiters empty-handed.
            self.cache.land(self.ticket.stripe, self.id);
        }
    }
}

/// A caller waiting for another caller's store read of the same key; see [`NearCache::miss`].
#[must_use = "a Wait is awaited with Wait::wait"]
pub struct Wait<V: ?Sized> {
    rx: watch::Receiver<Answer<V>>,
}

impl<V: ?Sized> Wait<V> {
    /// The leader's answer: `Some(Some(value))`, `Some(None)` when the store held nothing, `None`
    /// when the leader went away without answering (read the store yourself).
    pub async fn wait(mut self) -> Option<Option<Arc<V>>> {
        let answer = self
            .rx
            .wait_for(|a| !matches!(a, Answer::Pending))
            .await
            .ok()?;
        match &*answer {
            Answer::Found(v) => Some(Some(Arc::clone(v))),
            Answer::Absent => Some(None),
            Answer::Pending => None,
        }
    }
}

impl<V: ?Sized + Send + Sync + 'static> NearCache<V> {
    /// After a [`NearCache::get`] that missed: whether this caller reads the store for `key`
    /// ([`Miss::Lead`]) or waits for a read of it already in flight ([`Miss::Wait`]); see [one
    /// store read per key at a time](crate#one-store-read-per-key-at-a-time).
    pub fn miss(&self, key: &str) -> Miss<V> {
        self.start(key, true)
    }

    /// A [`Fill`] for `key` that joins no read in flight (a caller that cannot use the answer of
    /// the read in flight, e.g. because it reads another type).
    pub fn lead(&self, key: &str) -> Fill<V> {
        match self.start(key, false) {
            Miss::Lead(fill) => fill,
            // `join == false` never answers `Wait`.
            Miss::Wait(_) => unreachable!("start(_, false) always leads"),
        }
    }

    fn start(&self, key: &str, join: bool) -> Miss<V> {
        let inner = &*self.inner;
        let stripe_ix = self.stripe(key);
        let mut stripe = inner.stripes[stripe_ix].lock();
        let epoch = inner.epoch.load(Ordering::Acquire);
        if join {
            let seq = stripe.seq;
            if let Some(f) = stripe
                .flights
                .iter()
                .find(|f| f.seq == seq && f.epoch == epoch && &*f.key == key)
            {
                let rx = f.rx.clone();
                drop(stripe);
                inner.counters.coalesced.add(1);
                inner.meters.coalesced.increment(1);
                return Miss::Wait(Wait { rx });
            }
        }
        let id = inner.next_flight.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(Answer::Pending);
        let ticket = Ticket {
            epoch,
            stripe: stripe_ix,
            seq: stripe.seq,
        };
        stripe.flights.push(Flight {
            key: key.into(),
            id,
            seq: ticket.seq,
            epoch,
            rx,
        });
        drop(stripe);
        Miss::Lead(Fill {
            cache: self.clone(),
            key: key.into(),
            id,
            ticket,
            tx: Some(tx),
        })
    }

    /// Removes flight `id` of `key`'s stripe.
    fn land(&self, stripe: usize, id: u64) {
        self.inner.stripes[stripe]
            .lock()
            .flights
            .retain(|f| f.id != id);
    }
}
