//! [`SessionManager`]: the struct every operation hangs off, its builder, its settings and the small
//! helpers the operations share.
//!
//! The operations themselves live next to each other by what they do, each file adding an
//! `impl SessionManager` block: [`create`](crate::create) (new sessions, the per-user maximum),
//! [`read`](crate::read) (`get`, sliding expiry), [`write`](crate::write) (update, replace, extend,
//! rotate), [`revoke`](crate::revoke) (delete, revoke by handle, revoke all) and
//! [`index`](crate::index) (the per-user index: listing, orphan repair, pruning, cleanup). The crate
//! documentation explains the model; those files' comments explain, operation by operation, why each
//! store call happens in the order it does.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cache_core::cas::CasPolicy;
use cache_core::deadline;
use cache_core::store::ttl_millis;
use cache_core::{codec, Error, Result, Store};
use tokio::sync::broadcast;

use crate::clock::{Clock, SystemClock};
use crate::config::{SessionConfig, CALL_TIMEOUT_VAR};
use crate::events::SessionEvent;
use crate::record::Record;

/// Default idle timeout: 1 hour.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60 * 60);
/// Default absolute lifetime: 24 hours.
pub const DEFAULT_ABSOLUTE_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
/// Default touch interval: `last_accessed` is rewritten at most once a minute per session.
pub const DEFAULT_TOUCH_INTERVAL: Duration = Duration::from_secs(60);
/// Default tolerance for clock differences between instances when pruning the per-user index.
pub const DEFAULT_CLOCK_SKEW_TOLERANCE: Duration = Duration::from_secs(60);
/// Default limit of an encoded session record (data included): 64 KiB.
pub const DEFAULT_MAX_SESSION_BYTES: usize = 64 * 1024;
/// Default number of compare-and-swap attempts of one update before giving up.
pub const DEFAULT_MAX_UPDATE_ATTEMPTS: u32 = 64;
/// Default deadline of one manager call, shared by all its store calls: 2 seconds.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Stripes of the per-process lock that serialises updates of one session inside this process (a
/// writer of this process never loses a race to another writer of this process).
const UPDATE_LOCK_STRIPES: usize = 64;

/// How many keys one batch call (`get_many`, `delete`) carries at most.
pub(crate) const BATCH: usize = 256;
/// How many fresh tokens `create` / `rotate` try when `SET NX` finds the key taken (it never happens
/// with 256-bit tokens unless the RNG is broken; the bound turns a broken RNG into an error).
pub(crate) const MAX_TOKEN_ATTEMPTS: u32 = 3;

/// Builds a [`SessionManager`]; start with [`SessionManager::builder`].
#[derive(Debug)]
pub struct SessionManagerBuilder<S> {
    store: S,
    settings: Settings,
    clock: Option<Arc<dyn Clock>>,
    event_capacity: usize,
    near: Option<cache_near::NearConfig>,
}

/// The manager's settings, as the builder checked them. Read by every operation file, hence
/// `pub(crate)`.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) idle_timeout: Duration,
    pub(crate) absolute_lifetime: Duration,
    pub(crate) touch_interval: Duration,
    pub(crate) clock_skew_tolerance: Duration,
    pub(crate) max_sessions_per_user: Option<usize>,
    pub(crate) max_session_bytes: usize,
    pub(crate) max_update_attempts: u32,
    pub(crate) call_timeout: Duration,
}

impl<S: Store> SessionManagerBuilder<S> {
    /// Default idle timeout of new sessions ([`DEFAULT_IDLE_TIMEOUT`]): a session not accessed for
    /// this long ends. This is also the TTL `get` sets with its one `GETEX`.
    pub fn with_idle_timeout(mut self, ttl: Duration) -> Self {
        self.settings.idle_timeout = ttl;
        self
    }

    /// Default absolute lifetime of new sessions ([`DEFAULT_ABSOLUTE_LIFETIME`]): a session ends this
    /// long after creation however often it is used.
    pub fn with_absolute_lifetime(mut self, lifetime: Duration) -> Self {
        self.settings.absolute_lifetime = lifetime;
        self
    }

    /// How stale `last_accessed` may get before a `get` rewrites it ([`DEFAULT_TOUCH_INTERVAL`];
    /// capped at half a session's idle timeout). Larger means fewer writes; the price is that a session
    /// may be judged idle up to this much early. Zero rewrites on every `get`.
    pub fn with_touch_interval(mut self, interval: Duration) -> Self {
        self.settings.touch_interval = interval;
        self
    }

    /// At most `max` sessions per user: creating one more revokes the oldest (by creation time).
    pub fn with_max_sessions_per_user(mut self, max: usize) -> Self {
        self.settings.max_sessions_per_user = Some(max);
        self
    }

    /// How far instances' clocks may disagree ([`DEFAULT_CLOCK_SKEW_TOLERANCE`]): index entries are
    /// pruned only this long after their deadline, so a fast clock elsewhere cannot drop a live
    /// session from its user's index.
    pub fn with_clock_skew_tolerance(mut self, tolerance: Duration) -> Self {
        self.settings.clock_skew_tolerance = tolerance;
        self
    }

    /// Largest encoded session record accepted ([`DEFAULT_MAX_SESSION_BYTES`]); a write that would
    /// exceed it fails with [`Error::Capacity`] and changes nothing.
    pub fn with_max_session_bytes(mut self, bytes: usize) -> Self {
        self.settings.max_session_bytes = bytes;
        self
    }

    /// Compare-and-swap attempts of one update under contention before it fails with a transient
    /// error ([`DEFAULT_MAX_UPDATE_ATTEMPTS`]). Every failed attempt means another writer succeeded.
    pub fn with_max_update_attempts(mut self, attempts: u32) -> Self {
        self.settings.max_update_attempts = attempts;
        self
    }

    /// The deadline of one manager call ([`DEFAULT_CALL_TIMEOUT`], `SESSION_CALL_TIMEOUT`): every
    /// public `async` method except [`SessionManager::cleanup`] (which walks every index) answers
    /// within it, shared by all its store calls and counted from the first of them (see
    /// `cache_core::deadline::scope_after`); when it passes, the call
    /// fails with a transient [`Error::Timeout`] naming `SESSION_CALL_TIMEOUT`. A store that knows
    /// the deadline (the Redis store) ends its own calls at it. A call cut between two store calls
    /// leaves what a crash there would leave, which the index rules of the crate documentation
    /// tolerate: an entry without a record (skipped and removed by listings) or a record whose
    /// token was never handed out (unusable, collected by its TTL), never a live session missing
    /// from its index.
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.settings.call_timeout = timeout;
        self
    }

    /// The clock for timestamps and expiry decisions (default: [`SystemClock`], the wall clock).
    /// Tests on a paused tokio clock pass a shared [`TokioClock`](crate::TokioClock).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Capacity of the event channel (default 1024).
    pub fn with_event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity;
        self
    }

    /// Takes the settings that come from the environment ([`SessionConfig`]): `CACHE_TTL_SESSION`
    /// becomes the idle timeout, `SESSION_CALL_TIMEOUT` the call timeout, `CACHE_NEAR_SESSIONS` the
    /// near cache. As with every `with_*` method, the last call that sets a value wins.
    pub fn with_config(mut self, config: &SessionConfig) -> Self {
        if let Some(ttl) = config.idle_timeout {
            self.settings.idle_timeout = ttl;
        }
        if let Some(timeout) = config.call_timeout {
            self.settings.call_timeout = timeout;
        }
        if let Some(near) = config.near_cache {
            self.near = Some(near);
        }
        self
    }

    /// Turns on the near cache of session records with these bounds (off by default; also
    /// `CACHE_NEAR_SESSIONS` through [`SessionConfig`]). A read that hits it costs no round trip
    /// and no decode, and still enforces the idle and absolute deadlines and slides the TTL at most
    /// once per touch interval; a logout or revocation anywhere reaches it within one invalidation
    /// delivery (see the user guide's consistency model). It needs a store that reports changes
    /// (Redis on one server): [`SessionManagerBuilder::build`] refuses it on Redis Cluster, the
    /// memory backend ignores it (it needs none), and a store that cannot report changes (Redis
    /// Sentinel) turns it off at first use (logged); `cachekit::Config` refuses it on both.
    pub fn with_near_cache(mut self, config: cache_near::NearConfig) -> Self {
        self.near = Some(config);
        self
    }

    /// Checks the settings and builds the manager.
    pub fn build(self) -> Result<SessionManager<S>> {
        let s = &self.settings;
        positive_ms("session idle timeout", s.idle_timeout)?;
        positive_ms("session absolute lifetime", s.absolute_lifetime)?;
        if s.max_sessions_per_user == Some(0) {
            return Err(Error::config(
                "max_sessions_per_user",
                "must be at least 1 (leave it unset for no limit)",
            ));
        }
        if s.max_update_attempts == 0 {
            return Err(Error::config("max_update_attempts", "must be at least 1"));
        }
        if s.max_session_bytes == 0 {
            return Err(Error::config("max_session_bytes", "must be at least 1"));
        }
        if s.call_timeout.is_zero() {
            return Err(Error::config(CALL_TIMEOUT_VAR, "must be greater than zero"));
        }
        let near =
            match (self.near, self.store.backend_name()) {
                (None, _) => None,
                // In process already: a near cache would only copy it.
                (Some(_), "memory") => None,
                (Some(_), "redis-cluster") => return Err(Error::config(
                    "CACHE_NEAR_SESSIONS",
                    "the near cache needs server-assisted invalidation, which is implemented for \
                     one Redis server, not for Redis Cluster: turn it off",
                )),
                (Some(config), _) => Some(crate::near::Near::new(
                    cache_near::NearCache::new("sessions", config)
                        .map_err(|e| Error::config("CACHE_NEAR_SESSIONS", e.to_string()))?,
                )),
            };
        let (events, _) = broadcast::channel(self.event_capacity.max(1));
        let cas = CasPolicy::new(tokio::time::sleep)
            .with_max_attempts(self.settings.max_update_attempts)
            .with_local_lock(UPDATE_LOCK_STRIPES);
        Ok(SessionManager {
            inner: Arc::new(Inner {
                near,
                store: self.store,
                idle_ms: positive_ms("session idle timeout", s.idle_timeout)?,
                settings: self.settings,
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                cas,
                events,
            }),
        })
    }
}

/// The session manager: create, read, update, rotate and revoke sessions stored in `S`.
///
/// Cheap to clone (clones share the store handle, settings, clock and event channel). Several
/// managers, in one process or many, may work on the same store at once: every read-modify-write is a
/// compare-and-swap, so no update is lost and no deleted session comes back.
pub struct SessionManager<S> {
    pub(crate) inner: Arc<Inner<S>>,
}

/// What clones of a manager share. The operation files read it directly, hence `pub(crate)`.
pub(crate) struct Inner<S> {
    pub(crate) store: S,
    /// The near cache of records, when on.
    pub(crate) near: Option<crate::near::Near>,
    pub(crate) settings: Settings,
    /// The default idle timeout in ms, the TTL of `get`'s `GETEX`.
    pub(crate) idle_ms: i64,
    pub(crate) clock: Arc<dyn Clock>,
    /// How `update`/`replace`/`extend` run their compare-and-swap (see `write.rs`).
    pub(crate) cas: CasPolicy,
    pub(crate) events: broadcast::Sender<SessionEvent>,
}

impl<S> Clone for SessionManager<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S: Store> std::fmt::Debug for SessionManager<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionManager")
            .field("store", &self.inner.store)
            .field("settings", &self.inner.settings)
            .field("clock", &self.inner.clock)
            .finish()
    }
}

impl<S: Store> SessionManager<S> {
    /// A manager with the default settings.
    pub fn new(store: S) -> Self {
        Self::builder(store)
            .build()
            // The defaults are constants that pass every check of `build`.
            .expect("default session settings are valid")
    }

    /// A builder, starting from the defaults.
    pub fn builder(store: S) -> SessionManagerBuilder<S> {
        SessionManagerBuilder {
            store,
            settings: Settings {
                idle_timeout: DEFAULT_IDLE_TIMEOUT,
                absolute_lifetime: DEFAULT_ABSOLUTE_LIFETIME,
                touch_interval: DEFAULT_TOUCH_INTERVAL,
                clock_skew_tolerance: DEFAULT_CLOCK_SKEW_TOLERANCE,
                max_sessions_per_user: None,
                max_session_bytes: DEFAULT_MAX_SESSION_BYTES,
                max_update_attempts: DEFAULT_MAX_UPDATE_ATTEMPTS,
                call_timeout: DEFAULT_CALL_TIMEOUT,
            },
            clock: None,
            event_capacity: 1024,
            near: None,
        }
    }

    /// The store the sessions live in.
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// The manager's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// Subscribes to this manager's in-process [`SessionEvent`]s.
    pub fn subscribe(&self) -> broadcast::Receiver<SessionEvent> {
        self.inner.events.subscribe()
    }

    // ----------------------------------------------------------------------------------------------
    // Helpers shared by the operation files
    // ----------------------------------------------------------------------------------------------

    pub(crate) fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    pub(crate) fn default_idle(&self) -> Duration {
        self.inner.settings.idle_timeout
    }

    pub(crate) fn encode(&self, record: &Record) -> Result<Vec<u8>> {
        let bytes = codec::encode(record)?;
        let max = self.inner.settings.max_session_bytes;
        if bytes.len() > max {
            return Err(Error::Capacity(format!(
                "session record would be {} bytes, the limit is {max} (max_session_bytes)",
                bytes.len()
            )));
        }
        Ok(bytes)
    }

    /// Runs one public call (`op` names it in the timeout error) within the call timeout: inside a
    /// [`deadline::scope`], so that the store can end its own calls at the deadline, and cut by the
    /// runtime's timer at the same deadline for stores that do not.
    ///
    /// A plain function returning [`deadline::bound_after`]'s future: an `async fn` would hold
    /// the call's future twice, and a session call's future is over a kilobyte.
    ///
    /// No clock read here on the hot path: the deadline starts when the call's first store call
    /// asks for it (`deadline::scope_after`).
    pub(crate) fn bounded<'a, T: 'a>(
        &'a self,
        op: &'static str,
        call: impl Future<Output = Result<T>> + 'a,
    ) -> impl Future<Output = Result<T>> + 'a {
        let timeout = self.inner.settings.call_timeout;
        // A store that ends its calls at the deadline itself needs no timer of ours (one timer
        // fewer per call on the hot path). Relative, not `sleep_until`: a std instant would sit
        // in the past of a paused and advanced tokio clock.
        let timer =
            (!self.inner.store.ends_calls_at_deadline()).then(|| tokio::time::sleep(timeout));
        deadline::bound_after(timeout, CALL_TIMEOUT_VAR, timer, call, move |elapsed| {
            Err(Error::Timeout {
                operation: format!("session {op}"),
                elapsed,
                setting: CALL_TIMEOUT_VAR,
            })
        })
    }

    pub(crate) fn emit(&self, event: SessionEvent) {
        // No receiver is not an error: events are optional.
        let _ = self.inner.events.send(event);
    }
}

/// A duration as whole milliseconds (rounded up, as stores do), validated as a TTL.
pub(crate) fn positive_ms(what: &str, d: Duration) -> Result<i64> {
    let ms = ttl_millis(d).map_err(|e| Error::invalid_input(format!("{what}: {e}")))?;
    i64::try_from(ms).map_err(|_| Error::invalid_input(format!("{what} is too large")))
}

pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(i64::MAX)
}
