//! Wrapping a store with an around-hook: [`Layered`] runs a [`StoreHook`] before and after every call
//! of the store under it, so that timing, failure injection or a gate that holds a chosen call is a
//! few lines of hook instead of a hand-written forwarder of every [`Store`](crate::Store) method.
//!
//! - [`StoreHook::before`] runs before the call and may wait (a gate, an injected delay) or fail it
//!   (an injected error): an `Err` is returned to the caller and the inner store is not called.
//! - [`StoreHook::after`] runs when the inner store has answered, with the call's duration and
//!   whether it failed.
//! - [`StoreHook::hold`] may then hand back a future that the answer waits on before the caller sees
//!   it (a test gate staging a race "after the read, before its reader acts"); by default there is
//!   none, and nothing is allocated.
//! - Each call is described by an [`Op`]: the [`Method`] and the key(s) or pattern it touches.
//!
//! `prefix()`, `backend_name()` and `pool_stats()` are answered by the inner store without the hook:
//! they do no I/O.
//!
//! ```
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::time::Duration;
//! use cache_core::layer::{Layered, Method, Op, StoreHook};
//! use cache_core::{async_trait, Error, Result};
//!
//! /// Counts failed calls and refuses every `flush_prefix`.
//! #[derive(Debug, Default)]
//! struct Guard {
//!     failures: AtomicU64,
//! }
//!
//! #[async_trait]
//! impl StoreHook for Guard {
//!     async fn before(&self, op: &Op<'_>) -> Result<()> {
//!         if op.method == Method::FlushPrefix {
//!             return Err(Error::Unsupported("flush_prefix is disabled here".into()));
//!         }
//!         Ok(())
//!     }
//!     fn after(&self, _op: &Op<'_>, _elapsed: Duration, outcome: Result<(), &Error>) {
//!         if outcome.is_err() {
//!             self.failures.fetch_add(1, Ordering::Relaxed);
//!         }
//!     }
//! }
//!
//! # fn wrap<S: cache_core::Store>(store: S) -> Layered<S, Guard> {
//! // Any store, `Arc<dyn Store>` included; the result is a store again.
//! Layered::new(store, Guard::default())
//! # }
//! ```

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::error::{Error, Result};

/// Which [`Store`](crate::Store) method a call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Method {
    /// [`Store::get`](crate::Store::get).
    Get,
    /// [`Store::get_many`](crate::Store::get_many).
    GetMany,
    /// [`Store::get_ex`](crate::Store::get_ex).
    GetEx,
    /// [`Store::set`](crate::Store::set).
    Set,
    /// [`Store::set_many`](crate::Store::set_many).
    SetMany,
    /// [`Store::delete`](crate::Store::delete).
    Delete,
    /// [`Store::exists`](crate::Store::exists).
    Exists,
    /// [`Store::expire`](crate::Store::expire).
    Expire,
    /// [`Store::persist`](crate::Store::persist).
    Persist,
    /// [`Store::ttl`](crate::Store::ttl).
    Ttl,
    /// [`Store::incr_by`](crate::Store::incr_by).
    IncrBy,
    /// [`Store::compare_and_swap`](crate::Store::compare_and_swap).
    CompareAndSwap,
    /// [`Store::scan`](crate::Store::scan).
    Scan,
    /// [`Store::zadd`](crate::Store::zadd).
    Zadd,
    /// [`Store::zrem`](crate::Store::zrem).
    Zrem,
    /// [`Store::zrange_by_score`](crate::Store::zrange_by_score).
    ZrangeByScore,
    /// [`Store::zrem_range_by_score`](crate::Store::zrem_range_by_score).
    ZremRangeByScore,
    /// [`Store::zcard`](crate::Store::zcard).
    Zcard,
    /// [`Store::ping`](crate::Store::ping).
    Ping,
    /// [`Store::flush_prefix`](crate::Store::flush_prefix).
    FlushPrefix,
    /// [`Store::stats`](crate::Store::stats).
    Stats,
    /// [`Store::close`](crate::Store::close).
    Close,
    /// [`Store::get_with_ttl`](crate::Store::get_with_ttl).
    GetWithTtl,
    /// [`Store::track_changes`](crate::Store::track_changes).
    TrackChanges,
}

impl Method {
    /// Every method, in declaration order: `Method::ALL[m.index()] == m`. For tables with one entry
    /// per method (e.g. a metrics handle each, registered once). A method added to the trait is
    /// appended here, so indices stay stable.
    pub const ALL: &'static [Method] = &[
        Method::Get,
        Method::GetMany,
        Method::GetEx,
        Method::Set,
        Method::SetMany,
        Method::Delete,
        Method::Exists,
        Method::Expire,
        Method::Persist,
        Method::Ttl,
        Method::IncrBy,
        Method::CompareAndSwap,
        Method::Scan,
        Method::Zadd,
        Method::Zrem,
        Method::ZrangeByScore,
        Method::ZremRangeByScore,
        Method::Zcard,
        Method::Ping,
        Method::FlushPrefix,
        Method::Stats,
        Method::Close,
        Method::GetWithTtl,
        Method::TrackChanges,
    ];

    /// This method's position in [`Method::ALL`]: an index for per-method tables (a cast outside
    /// this crate is not allowed, the enum being `#[non_exhaustive]`).
    pub fn index(self) -> usize {
        // The variants carry no data and no explicit discriminants, so the discriminant is the
        // declaration position, which is the position in `ALL` (tested).
        self as usize
    }

    /// The trait method's name (`get`, `compare_and_swap`, ...), stable across releases: fit for
    /// metrics labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::GetMany => "get_many",
            Method::GetEx => "get_ex",
            Method::Set => "set",
            Method::SetMany => "set_many",
            Method::Delete => "delete",
            Method::Exists => "exists",
            Method::Expire => "expire",
            Method::Persist => "persist",
            Method::Ttl => "ttl",
            Method::IncrBy => "incr_by",
            Method::CompareAndSwap => "compare_and_swap",
            Method::Scan => "scan",
            Method::Zadd => "zadd",
            Method::Zrem => "zrem",
            Method::ZrangeByScore => "zrange_by_score",
            Method::ZremRangeByScore => "zrem_range_by_score",
            Method::Zcard => "zcard",
            Method::Ping => "ping",
            Method::FlushPrefix => "flush_prefix",
            Method::Stats => "stats",
            Method::Close => "close",
            Method::GetWithTtl => "get_with_ttl",
            Method::TrackChanges => "track_changes",
        }
    }
}

/// The keys a call touches, relative to the store's prefix as the caller passed them.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Target<'a> {
    /// No key (`ping`, `flush_prefix`, `stats`, `close`, `track_changes`).
    None,
    /// One key (every single-key method, sorted sets included).
    Key(&'a str),
    /// Several keys (`get_many`, `delete`).
    Keys(&'a [&'a str]),
    /// Several keys with their values (`set_many`).
    Entries(&'a [(&'a str, &'a [u8])]),
    /// A glob pattern (`scan`).
    Pattern(&'a str),
}

/// One call through a [`Layered`] store: the method and what it touches.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Op<'a> {
    /// The method.
    pub method: Method,
    /// The key(s) or pattern.
    pub target: Target<'a>,
}

impl<'a> Op<'a> {
    /// Describes a call.
    pub fn new(method: Method, target: Target<'a>) -> Self {
        Self { method, target }
    }

    /// The key of a single-key call, `None` for the others.
    pub fn key(&self) -> Option<&'a str> {
        match self.target {
            Target::Key(k) => Some(k),
            _ => None,
        }
    }
}

/// What a [`Layered`] store runs around every call of its inner store. Both methods have no-op
/// defaults: implement the one you need.
#[async_trait]
pub trait StoreHook: Send + Sync + Debug + 'static {
    /// Runs before the call. It may wait (the call waits with it) or return an error, which the
    /// caller receives instead of the call's result; the inner store is then not called and
    /// [`StoreHook::after`] does not run.
    async fn before(&self, op: &Op<'_>) -> Result<()> {
        let _ = op;
        Ok(())
    }

    /// Runs when the inner store has answered: how long the call took (wall-clock time, from just
    /// before the inner call to its answer, excluding [`StoreHook::before`]) and whether it failed.
    fn after(&self, op: &Op<'_>, elapsed: Duration, outcome: Result<(), &Error>) {
        let _ = (op, elapsed, outcome);
    }

    /// Runs after [`StoreHook::after`]: a future the answer waits on before the caller receives it,
    /// or `None` (the default) to hand it over at once. For staging races in tests ("the reader has
    /// its answer but has not acted on it yet"); a hook that returns `None` costs nothing here.
    fn hold(&self, op: &Op<'_>) -> Option<Hold> {
        let _ = op;
        None
    }
}

/// What [`StoreHook::hold`] hands back: a future the call's answer waits on.
pub type Hold = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

#[async_trait]
impl<H: StoreHook + ?Sized> StoreHook for Arc<H> {
    async fn before(&self, op: &Op<'_>) -> Result<()> {
        (**self).before(op).await
    }
    fn after(&self, op: &Op<'_>, elapsed: Duration, outcome: Result<(), &Error>) {
        (**self).after(op, elapsed, outcome);
    }
    fn hold(&self, op: &Op<'_>) -> Option<Hold> {
        (**self).hold(op)
    }
}

/// A store that runs `H` around every call of the store `S` under it; see the
/// [module documentation](self). It is a [`Store`](crate::Store) itself, so layers stack.
#[derive(Debug, Clone, Default)]
pub struct Layered<S, H> {
    inner: S,
    hook: H,
}

impl<S, H> Layered<S, H> {
    /// Wraps `inner` with `hook`.
    pub fn new(inner: S, hook: H) -> Self {
        Self { inner, hook }
    }

    /// The store under the hook.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The hook.
    pub fn hook(&self) -> &H {
        &self.hook
    }

    /// The store and the hook, taken apart.
    pub fn into_parts(self) -> (S, H) {
        (self.inner, self.hook)
    }
}

impl<S, H: StoreHook> Layered<S, H> {
    /// Runs one call of the inner store between the hook's `before` and `after`.
    async fn around<T>(&self, op: Op<'_>, call: impl Future<Output = Result<T>>) -> Result<T> {
        self.hook.before(&op).await?;
        let started = Instant::now();
        let result = call.await;
        self.hook
            .after(&op, started.elapsed(), result.as_ref().map(|_| ()));
        if let Some(hold) = self.hook.hold(&op) {
            hold.await;
        }
        result
    }
}

delegate_store! {
    impl[S: crate::Store, H: StoreHook] for Layered<S, H>;
    inner: |this| this.inner;
    call: hooked_call;
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::Method;

    #[test]
    fn all_lists_every_method_once_at_its_index() {
        for (i, m) in Method::ALL.iter().enumerate() {
            assert_eq!(m.index(), i, "{m:?} is listed out of declaration order");
        }
        let names: HashSet<&str> = Method::ALL.iter().map(|m| m.as_str()).collect();
        assert_eq!(names.len(), Method::ALL.len(), "a method is listed twice");
        // `TrackChanges` is declared last, so `ALL` holds every variant up to it. This match has
        // no wildcard: a new variant stops it compiling until it is placed here (and appended to
        // `ALL`, which the assertions then check).
        let declared_last = |m: Method| match m {
            Method::TrackChanges => true,
            Method::Get
            | Method::GetMany
            | Method::GetEx
            | Method::Set
            | Method::SetMany
            | Method::Delete
            | Method::Exists
            | Method::Expire
            | Method::Persist
            | Method::Ttl
            | Method::IncrBy
            | Method::CompareAndSwap
            | Method::Scan
            | Method::Zadd
            | Method::Zrem
            | Method::ZrangeByScore
            | Method::ZremRangeByScore
            | Method::Zcard
            | Method::Ping
            | Method::FlushPrefix
            | Method::Stats
            | Method::Close
            | Method::GetWithTtl => false,
        };
        assert!(Method::ALL.last().copied().is_some_and(declared_last));
        assert_eq!(Method::ALL.len(), Method::TrackChanges.index() + 1);
    }
}
