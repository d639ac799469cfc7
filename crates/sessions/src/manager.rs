//! [`SessionManager`]: the session lifecycle on top of any [`Store`].
//!
//! The crate documentation explains the model; this module's comments explain, operation by
//! operation, why each store call happens in the order it does.

use std::sync::Arc;
use std::time::Duration;

use cache_core::keys::Key;
use cache_core::store::ttl_millis;
use cache_core::{codec, CasOutcome, Error, Expiry, KeySchema, Result, SetOptions, Store};
use tokio::sync::broadcast;

use crate::clock::{Clock, TokioClock};
use crate::events::{RevokeReason, SessionEvent};
use crate::record::{merge_patch, Record, Session, SessionData};
use crate::token::{SessionHandle, SessionToken};

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
pub const DEFAULT_MAX_UPDATE_ATTEMPTS: u32 = 1_000;

/// How many keys one batch call (`get_many`, `delete`) carries at most.
const BATCH: usize = 256;
/// How many fresh tokens `create` / `rotate` try when `SET NX` finds the key taken (it never happens
/// with 256-bit tokens unless the RNG is broken; the bound turns a broken RNG into an error).
const MAX_TOKEN_ATTEMPTS: u32 = 3;

/// Options of [`SessionManager::create`]. Build with the `with_*` methods.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct CreateOptions {
    /// Initial data (a JSON object), empty by default.
    pub data: SessionData,
    /// Idle timeout of this session; the manager's default when `None`.
    pub idle_timeout: Option<Duration>,
    /// Absolute lifetime of this session; the manager's default when `None`.
    pub absolute_lifetime: Option<Duration>,
}

impl CreateOptions {
    /// No data, the manager's timeouts.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the initial data.
    pub fn with_data(mut self, data: SessionData) -> Self {
        self.data = data;
        self
    }

    /// Sets this session's idle timeout (its TTL between accesses).
    pub fn with_idle_timeout(mut self, ttl: Duration) -> Self {
        self.idle_timeout = Some(ttl);
        self
    }

    /// Sets this session's absolute lifetime (counted from creation, never extended).
    pub fn with_absolute_lifetime(mut self, lifetime: Duration) -> Self {
        self.absolute_lifetime = Some(lifetime);
        self
    }
}

/// A session together with its token: what [`SessionManager::create`] and
/// [`SessionManager::rotate`] return. The token is the only copy of the secret: send it to the
/// client and drop it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewSession {
    /// The secret for the client.
    pub token: SessionToken,
    /// The session.
    pub session: Session,
}

/// What [`SessionManager::cleanup`] found and removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CleanupReport {
    /// Per-user index keys visited.
    pub indexes_scanned: u64,
    /// Index entries seen in them.
    pub entries_found: u64,
    /// Entries removed because their absolute deadline had passed.
    pub expired_entries_removed: u64,
    /// Entries removed because their session no longer exists (idle expiry, deleted, evicted).
    pub orphan_entries_removed: u64,
    /// Sessions found past their deadline but still stored, deleted.
    pub expired_sessions_deleted: u64,
    /// Entries left: live sessions.
    pub entries_remaining: u64,
}

/// Builds a [`SessionManager`]; start with [`SessionManager::builder`].
#[derive(Debug)]
pub struct SessionManagerBuilder<S> {
    store: S,
    settings: Settings,
    clock: Option<Arc<dyn Clock>>,
    event_capacity: usize,
}

#[derive(Debug, Clone)]
struct Settings {
    idle_timeout: Duration,
    absolute_lifetime: Duration,
    touch_interval: Duration,
    clock_skew_tolerance: Duration,
    max_sessions_per_user: Option<usize>,
    max_session_bytes: usize,
    max_update_attempts: u32,
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

    /// The clock for timestamps and expiry decisions (default: a new [`TokioClock`]).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Capacity of the event channel (default 1024).
    pub fn with_event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity;
        self
    }

    /// Takes the settings that live in the library configuration: the session TTL override
    /// (`CACHE_TTL_SESSION`) becomes the idle timeout.
    pub fn with_config(mut self, config: &cache_core::Config) -> Self {
        if let Some(ttl) = config.ttl_overrides.get(&cache_core::Family::Session) {
            self.settings.idle_timeout = *ttl;
        }
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
        let (events, _) = broadcast::channel(self.event_capacity.max(1));
        Ok(SessionManager {
            inner: Arc::new(Inner {
                store: self.store,
                idle_ms: positive_ms("session idle timeout", s.idle_timeout)?,
                settings: self.settings,
                clock: self.clock.unwrap_or_else(|| Arc::new(TokioClock::new())),
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
    inner: Arc<Inner<S>>,
}

struct Inner<S> {
    store: S,
    settings: Settings,
    /// The default idle timeout in ms, the TTL of `get`'s `GETEX`.
    idle_ms: i64,
    clock: Arc<dyn Clock>,
    events: broadcast::Sender<SessionEvent>,
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

/// Which index entries a listing found in what state.
struct Scan {
    live: Vec<(SessionHandle, Record)>,
    /// Entries removed because the session was missing or belonged to someone else.
    orphans_removed: u64,
    /// Sessions past their deadline, deleted.
    expired_deleted: u64,
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
            },
            clock: None,
            event_capacity: 1024,
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
    // Create
    // ----------------------------------------------------------------------------------------------

    /// Creates a session for `user_id` and returns it with its token.
    ///
    /// Store calls: prune the user's index, add the new handle to it, `SET NX PX` the record, add the
    /// handle again (see the crate docs for why the index is written before and after); with a
    /// per-user maximum, a listing and the revocation of the oldest sessions beyond it.
    pub async fn create(&self, user_id: &str, opts: CreateOptions) -> Result<NewSession> {
        let index = KeySchema::session_index(user_id)?;
        let s = &self.inner.settings;
        let idle_ms = positive_ms(
            "session idle timeout",
            opts.idle_timeout.unwrap_or(s.idle_timeout),
        )?;
        let lifetime_ms = positive_ms(
            "session absolute lifetime",
            opts.absolute_lifetime.unwrap_or(s.absolute_lifetime),
        )?;
        let now = self.now_ms();
        let record = Record {
            user_id: user_id.to_owned(),
            data: opts.data,
            created_at_ms: now,
            last_accessed_ms: now,
            idle_timeout_ms: idle_ms,
            absolute_deadline_ms: now.saturating_add(lifetime_ms),
        };
        let bytes = self.encode(&record)?;
        let ttl = record
            .ttl_at(now)
            .ok_or_else(|| Error::invalid_input("session lifetime must be positive"))?;

        self.prune(&index, now).await?;
        let token = self.insert_new(&index, &record, &bytes, ttl).await?;
        let handle = token.handle().clone();

        if let Some(max) = s.max_sessions_per_user {
            if let Err(e) = self
                .enforce_max_sessions(&index, user_id, &handle, max)
                .await
            {
                // Do not hand out a session that may break the per-user limit: undo (best effort;
                // the token was never returned, so a leftover record is unusable and expires).
                let _ = self.remove_sessions(&index, &[handle]).await;
                return Err(e);
            }
        }
        tracing::debug!(%handle, user_id, "session created");
        self.emit(SessionEvent::Created {
            handle: handle.clone(),
            user_id: user_id.to_owned(),
        });
        Ok(NewSession {
            token,
            session: record.into_session(handle),
        })
    }

    /// Stores `record` under a fresh token: index entry, `SET NX`, index entry again. Returns the
    /// token. On a (practically impossible) key collision a new token is drawn.
    async fn insert_new(
        &self,
        index: &Key,
        record: &Record,
        bytes: &[u8],
        ttl: Duration,
    ) -> Result<SessionToken> {
        let store = &self.inner.store;
        let score = record.absolute_deadline_ms as f64;
        for _ in 0..MAX_TOKEN_ATTEMPTS {
            let token = SessionToken::generate()?;
            let handle = token.handle().as_str();
            let key = KeySchema::session(handle)?;
            // Index first: if we crash after the SET, the session is still findable by
            // `revoke_all`. The index may hold entries for sessions that do not exist; never the
            // other way round.
            let added = store.zadd(index, handle, score).await?;
            let created = store
                .set(&key, bytes, SetOptions::ttl(ttl).if_absent())
                .await?;
            if !created {
                // Someone holds this handle already. Only undo our index entry if we added it.
                tracing::error!("session key collision: the random number generator is suspect");
                if added {
                    store.zrem(index, &[handle]).await?;
                }
                continue;
            }
            // Again after the SET: a concurrent listing may have seen our entry before the SET,
            // found no session, and removed it. Re-adding is idempotent.
            store.zadd(index, handle, score).await?;
            return Ok(token);
        }
        Err(Error::backend(
            "could not find a free session key: the random number generator is broken",
        ))
    }

    async fn enforce_max_sessions(
        &self,
        index: &Key,
        user_id: &str,
        keep: &SessionHandle,
        max: usize,
    ) -> Result<()> {
        let scan = self.scan_index(index, user_id, self.now_ms()).await?;
        let mut others: Vec<_> = scan.live.into_iter().filter(|(h, _)| h != keep).collect();
        if others.len() < max {
            return Ok(());
        }
        // Newest first; the new session always stays, plus the newest `max - 1` others. Concurrent
        // creates converge: each keeps the newest sessions it sees.
        others.sort_by(|(ha, a), (hb, b)| {
            (b.created_at_ms, hb.as_str()).cmp(&(a.created_at_ms, ha.as_str()))
        });
        let victims: Vec<_> = others.split_off(max - 1);
        let handles: Vec<_> = victims.iter().map(|(h, _)| h.clone()).collect();
        self.remove_sessions(index, &handles).await?;
        for (handle, rec) in victims {
            tracing::debug!(%handle, user_id, "session revoked: over the per-user maximum");
            self.emit(SessionEvent::Revoked {
                handle,
                user_id: Some(rec.user_id),
                reason: RevokeReason::MaxSessions,
            });
        }
        Ok(())
    }

    // ----------------------------------------------------------------------------------------------
    // Read
    // ----------------------------------------------------------------------------------------------

    /// The session of `token`, with its idle expiry slid forward; `None` when there is no such live
    /// session.
    ///
    /// One round trip in the common case: `GETEX key PX idle` reads the record and slides its TTL at
    /// once. A second call happens only when `last_accessed` is older than the touch interval (a
    /// compare-and-swap that rewrites it, so it never overwrites a concurrent update), or when the
    /// session's TTL must differ from the default idle timeout (a per-session idle timeout, or the
    /// last idle window before the absolute deadline, where the TTL is clamped to the deadline).
    ///
    /// The idle and absolute deadlines are checked here against the manager's clock; the store's TTL
    /// only collects garbage. A malformed token is [`Error::InvalidInput`] before any store call; a
    /// store failure is an error, never `None`.
    pub async fn get(&self, token: &str) -> Result<Option<Session>> {
        let token = SessionToken::parse(token)?;
        let handle = token.handle();
        let key = KeySchema::session(handle.as_str())?;
        let store = &self.inner.store;
        let Some(bytes) = store.get_ex(&key, self.default_idle()).await? else {
            return Ok(None);
        };
        let record: Record = codec::decode(&bytes)?;
        let now = self.now_ms();
        if record.is_expired_at(now) {
            self.expired_on_access(handle, &key, &record).await;
            return Ok(None);
        }
        let Some(ttl) = record.ttl_at(now) else {
            // Unreachable: not expired implies now < absolute deadline. Treat as expired anyway.
            self.expired_on_access(handle, &key, &record).await;
            return Ok(None);
        };
        let ttl_differs = duration_ms(ttl) != self.inner.idle_ms;
        let touch_after = self
            .inner
            .settings
            .touch_interval
            .as_millis()
            .min(u128::from(record.idle_timeout_ms.unsigned_abs() / 2));
        let stale = u128::from(
            now.saturating_sub(record.last_accessed_ms)
                .max(0)
                .unsigned_abs(),
        ) >= touch_after;
        if stale {
            let mut touched = record.clone();
            touched.last_accessed_ms = now;
            let new = self.encode(&touched)?;
            match store
                .compare_and_swap(&key, Some(&bytes), Some(&new), Expiry::In(ttl))
                .await?
            {
                CasOutcome::Swapped => {}
                // Deleted (logout, rotation, revocation) since our read: it is gone now.
                CasOutcome::Conflict { current: None } => return Ok(None),
                // A concurrent writer won; our touch is dropped (theirs is newer). Still clamp.
                CasOutcome::Conflict { current: Some(_) } => {
                    if ttl_differs && !store.expire(&key, ttl).await? {
                        return Ok(None);
                    }
                }
            }
        } else if ttl_differs && !store.expire(&key, ttl).await? {
            return Ok(None);
        }
        let mut session = record.into_session(handle.clone());
        session.last_accessed = crate::record::ms_to_datetime(now);
        Ok(Some(session))
    }

    async fn expired_on_access(&self, handle: &SessionHandle, key: &Key, record: &Record) {
        // The answer ("no session") is right whatever happens here; a failure only delays garbage
        // collection (the key's TTL and the index pruning catch it), so it is logged, not returned.
        let store = &self.inner.store;
        if let Err(e) = store.delete(&[key]).await {
            tracing::warn!(%handle, error = %e, "could not delete an expired session");
            return;
        }
        if let Ok(index) = KeySchema::session_index(&record.user_id) {
            if let Err(e) = store.zrem(&index, &[handle.as_str()]).await {
                tracing::warn!(%handle, error = %e, "could not unindex an expired session");
            }
        }
        self.emit(SessionEvent::ExpiredOnAccess {
            handle: handle.clone(),
            user_id: record.user_id.clone(),
        });
    }

    // ----------------------------------------------------------------------------------------------
    // Write
    // ----------------------------------------------------------------------------------------------

    /// Merges `patch` into the session's data (JSON merge patch, RFC 7386: members replace, `null`
    /// removes, objects merge recursively) and returns the session as written. `None`: no live
    /// session (nothing is written, nothing is created).
    ///
    /// Atomic and lossless under concurrency: a compare-and-swap loop against the exact bytes read,
    /// where a conflict hands back the current value so a retry costs one round trip. The TTL is kept
    /// (`KEEPTTL`): an update does not count as an access.
    pub async fn update(&self, token: &str, patch: &SessionData) -> Result<Option<Session>> {
        self.modify(token, |rec, _now| {
            merge_patch(&mut rec.data, patch);
            Ok(Expiry::Keep)
        })
        .await
    }

    /// Replaces the session's data wholesale (same guarantees as [`SessionManager::update`]).
    pub async fn replace(&self, token: &str, data: SessionData) -> Result<Option<Session>> {
        self.modify(token, move |rec, _now| {
            rec.data.clone_from(&data);
            Ok(Expiry::Keep)
        })
        .await
    }

    /// Sets the session's idle timeout to `idle_timeout` and restarts its idle countdown now. The
    /// absolute deadline is never moved: the store TTL is clamped to it. `None`: no live session.
    pub async fn extend(&self, token: &str, idle_timeout: Duration) -> Result<Option<Session>> {
        let idle_ms = positive_ms("session idle timeout", idle_timeout)?;
        self.modify(token, move |rec, now| {
            rec.idle_timeout_ms = idle_ms;
            rec.last_accessed_ms = now;
            rec.ttl_at(now)
                .map(Expiry::In)
                .ok_or_else(|| Error::invalid_input("session is past its absolute deadline"))
        })
        .await
    }

    /// The compare-and-swap loop behind update, replace and extend.
    async fn modify<F>(&self, token: &str, mut change: F) -> Result<Option<Session>>
    where
        F: FnMut(&mut Record, i64) -> Result<Expiry>,
    {
        let token = SessionToken::parse(token)?;
        let handle = token.handle();
        let key = KeySchema::session(handle.as_str())?;
        let store = &self.inner.store;
        let mut current = store.get(&key).await?;
        for _ in 0..self.inner.settings.max_update_attempts {
            // Absent: never created, deleted, or expired. A CAS against "absent" would create the
            // key, so we stop here: an update never resurrects a session.
            let Some(bytes) = current else {
                return Ok(None);
            };
            let record: Record = codec::decode(&bytes)?;
            let now = self.now_ms();
            if record.is_expired_at(now) {
                self.expired_on_access(handle, &key, &record).await;
                return Ok(None);
            }
            let mut next = record;
            let expiry = change(&mut next, now)?;
            let new = self.encode(&next)?;
            match store
                .compare_and_swap(&key, Some(&bytes), Some(&new), expiry)
                .await?
            {
                CasOutcome::Swapped => return Ok(Some(next.into_session(handle.clone()))),
                CasOutcome::Conflict { current: c } => current = c,
            }
        }
        Err(Error::Backend {
            message: format!(
                "session update gave up after {} conflicting attempts (too many concurrent writers)",
                self.inner.settings.max_update_attempts
            ),
            transient: true,
            source: None,
        })
    }

    /// Gives the session a new token and returns it; the old token stops working before this
    /// returns. Data, user, creation time, idle timeout and absolute deadline carry over (rotation never
    /// extends a session's life). `None`: no live session. Call it whenever privileges change (login,
    /// sudo mode): it defeats session fixation.
    ///
    /// Order: the new record is written first (under a token nobody knows yet), then the old key is
    /// deleted by compare-and-swap against the bytes that were copied. If a concurrent update changed
    /// the old record in between, the delete fails, the newer record is copied over and the delete is
    /// retried, so no acknowledged update is lost; updates that arrive after the delete find no session
    /// and say so. If the old session vanishes meanwhile (logout, revocation), the new one is removed
    /// and `None` returned: rotation never resurrects a session.
    pub async fn rotate(&self, token: &str) -> Result<Option<NewSession>> {
        let old = SessionToken::parse(token)?;
        let old_key = KeySchema::session(old.handle().as_str())?;
        let store = &self.inner.store;
        let Some(bytes) = store.get(&old_key).await? else {
            return Ok(None);
        };
        let record: Record = codec::decode(&bytes)?;
        let now = self.now_ms();
        if record.is_expired_at(now) {
            self.expired_on_access(old.handle(), &old_key, &record)
                .await;
            return Ok(None);
        }
        let index = KeySchema::session_index(&record.user_id)?;
        let mut next = record.clone();
        next.last_accessed_ms = now;
        let Some(ttl) = next.ttl_at(now) else {
            return Ok(None);
        };
        let new_token = self
            .insert_new(&index, &next, &self.encode(&next)?, ttl)
            .await?;
        let new_key = KeySchema::session(new_token.handle().as_str())?;
        match self
            .retire_old(&old_key, &new_key, bytes, &mut next, now)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                // The old session is gone (or the new one was revoked): undo, report no session.
                self.remove_sessions(&index, &[old.handle().clone(), new_token.handle().clone()])
                    .await?;
                return Ok(None);
            }
            Err(e) => {
                // Best effort: the new token was never handed out, so its record is dead weight.
                let _ = self
                    .remove_sessions(&index, &[new_token.handle().clone()])
                    .await;
                return Err(e);
            }
        }
        // The old entry is now stale, which the index tolerates: a failure here must not turn a
        // completed rotation (old token dead, new one live) into an error that loses the new token.
        if let Err(e) = store.zrem(&index, &[old.handle().as_str()]).await {
            tracing::warn!(handle = %old.handle(), error = %e, "could not unindex a rotated-out token");
        }
        tracing::debug!(old = %old.handle(), new = %new_token.handle(), "session rotated");
        self.emit(SessionEvent::Rotated {
            old: old.handle().clone(),
            new: new_token.handle().clone(),
            user_id: next.user_id.clone(),
        });
        let session = next.into_session(new_token.handle().clone());
        Ok(Some(NewSession {
            token: new_token,
            session,
        }))
    }

    /// Deletes the old key of a rotation by CAS, copying concurrent updates to the new key. `false`:
    /// the old session disappeared, or the new key was revoked, meanwhile.
    async fn retire_old(
        &self,
        old_key: &Key,
        new_key: &Key,
        mut expected: Vec<u8>,
        next: &mut Record,
        now: i64,
    ) -> Result<bool> {
        let store = &self.inner.store;
        for _ in 0..self.inner.settings.max_update_attempts {
            match store
                .compare_and_swap(old_key, Some(&expected), None, Expiry::Keep)
                .await?
            {
                CasOutcome::Swapped => return Ok(true),
                CasOutcome::Conflict { current: None } => return Ok(false),
                CasOutcome::Conflict {
                    current: Some(newer),
                } => {
                    let rec: Record = codec::decode(&newer)?;
                    *next = Record {
                        last_accessed_ms: now,
                        ..rec
                    };
                    let Some(ttl) = next.ttl_at(now) else {
                        return Ok(false);
                    };
                    let bytes = self.encode(next)?;
                    // XX: the new key must still exist (nobody but a revocation touches it).
                    if !store
                        .set(new_key, &bytes, SetOptions::ttl(ttl).if_present())
                        .await?
                    {
                        return Ok(false);
                    }
                    expected = newer;
                }
            }
        }
        Err(Error::Backend {
            message: "session rotation gave up: the session changes faster than it can be copied"
                .into(),
            transient: true,
            source: None,
        })
    }

    // ----------------------------------------------------------------------------------------------
    // Delete and revoke
    // ----------------------------------------------------------------------------------------------

    /// Deletes the session of `token` (logout). `true`: a stored session was deleted.
    pub async fn delete(&self, token: &str) -> Result<bool> {
        let token = SessionToken::parse(token)?;
        self.revoke_handle(token.handle(), None, RevokeReason::Deleted)
            .await
    }

    /// Revokes a session by its handle (from a listing or an admin tool). `true`: a stored session
    /// was deleted. Does not check who owns it: for handles that come from end users, use
    /// [`SessionManager::revoke_for_user`].
    pub async fn revoke(&self, handle: &SessionHandle) -> Result<bool> {
        self.revoke_handle(handle, None, RevokeReason::Revoked)
            .await
    }

    /// Revokes a session by handle only if it belongs to `user_id` (for "sign out that device" pages,
    /// where the handle comes from the user). `false`: no such session of this user; nothing changed.
    pub async fn revoke_for_user(&self, user_id: &str, handle: &SessionHandle) -> Result<bool> {
        KeySchema::session_index(user_id)?;
        self.revoke_handle(handle, Some(user_id), RevokeReason::Revoked)
            .await
    }

    async fn revoke_handle(
        &self,
        handle: &SessionHandle,
        owner: Option<&str>,
        reason: RevokeReason,
    ) -> Result<bool> {
        let key = KeySchema::session(handle.as_str())?;
        let store = &self.inner.store;
        let Some(bytes) = store.get(&key).await? else {
            return Ok(false);
        };
        let user_id = match codec::decode::<Record>(&bytes) {
            Ok(rec) => Some(rec.user_id),
            Err(e) => {
                // A record we cannot read still gets deleted (a logout must work); its index entry
                // is healed by the next listing or cleanup.
                tracing::warn!(%handle, error = %e, "deleting an undecodable session");
                None
            }
        };
        if let Some(owner) = owner {
            if user_id.as_deref() != Some(owner) {
                return Ok(false);
            }
        }
        // Session first, index entry second: the index stays a superset of live sessions.
        let deleted = store.delete(&[&key]).await? > 0;
        if let Some(user_id) = &user_id {
            store
                .zrem(&KeySchema::session_index(user_id)?, &[handle.as_str()])
                .await?;
        }
        if deleted {
            tracing::debug!(%handle, ?reason, "session revoked");
            self.emit(SessionEvent::Revoked {
                handle: handle.clone(),
                user_id,
                reason,
            });
        }
        Ok(deleted)
    }

    /// Revokes every session of `user_id` ("sign out everywhere") and returns how many were deleted.
    /// Sessions created concurrently with this call may survive it.
    pub async fn revoke_all(&self, user_id: &str) -> Result<u64> {
        self.revoke_all_inner(user_id, None).await
    }

    /// Revokes every session of `user_id` except the one of `current_token` ("sign out other
    /// devices"). A malformed token is [`Error::InvalidInput`] and revokes nothing.
    pub async fn revoke_all_except(&self, user_id: &str, current_token: &str) -> Result<u64> {
        let keep = SessionToken::parse(current_token)?;
        self.revoke_all_inner(user_id, Some(keep.handle())).await
    }

    async fn revoke_all_inner(&self, user_id: &str, keep: Option<&SessionHandle>) -> Result<u64> {
        let index = KeySchema::session_index(user_id)?;
        let store = &self.inner.store;
        self.prune(&index, self.now_ms()).await?;
        let handles: Vec<SessionHandle> = store
            .zrange_by_score(&index, f64::NEG_INFINITY, f64::INFINITY, None)
            .await?
            .into_iter()
            .filter_map(|(member, _)| SessionHandle::parse(&member).ok())
            .filter(|h| Some(h) != keep)
            .collect();
        let deleted = self.remove_sessions(&index, &handles).await?;
        for handle in handles {
            self.emit(SessionEvent::Revoked {
                handle,
                user_id: Some(user_id.to_owned()),
                reason: RevokeReason::RevokedAll,
            });
        }
        tracing::debug!(user_id, deleted, "all sessions of a user revoked");
        Ok(deleted)
    }

    /// Deletes sessions, then their index entries (in that order), in batches. Returns how many
    /// session keys existed.
    async fn remove_sessions(&self, index: &Key, handles: &[SessionHandle]) -> Result<u64> {
        let store = &self.inner.store;
        let mut deleted = 0;
        for chunk in handles.chunks(BATCH) {
            let keys = chunk
                .iter()
                .map(|h| KeySchema::session(h.as_str()))
                .collect::<Result<Vec<_>>>()?;
            let refs: Vec<&str> = keys.iter().map(Key::as_str).collect();
            deleted += store.delete(&refs).await?;
            let members: Vec<&str> = chunk.iter().map(SessionHandle::as_str).collect();
            store.zrem(index, &members).await?;
        }
        Ok(deleted)
    }

    // ----------------------------------------------------------------------------------------------
    // Per-user index
    // ----------------------------------------------------------------------------------------------

    /// The live sessions of `user_id`, oldest first, with their data. Never includes an expired
    /// session; entries of sessions that are gone are removed from the index on the way.
    pub async fn list_user_sessions(&self, user_id: &str) -> Result<Vec<Session>> {
        let index = KeySchema::session_index(user_id)?;
        let scan = self.scan_index(&index, user_id, self.now_ms()).await?;
        let mut live = scan.live;
        live.sort_by(|(ha, a), (hb, b)| {
            (a.created_at_ms, ha.as_str()).cmp(&(b.created_at_ms, hb.as_str()))
        });
        Ok(live
            .into_iter()
            .map(|(handle, rec)| rec.into_session(handle))
            .collect())
    }

    /// Removes index entries of sessions that are gone, for every user, and reports what it did.
    /// Safe to run from several instances at once; meant to run periodically (e.g. hourly) so that
    /// indexes of users who never come back do not linger. Visits index keys with `SCAN`.
    pub async fn cleanup(&self) -> Result<CleanupReport> {
        let store = &self.inner.store;
        let pattern = cache_core::Family::SessionIndex.pattern();
        let mut report = CleanupReport::default();
        let mut cursor = cache_core::ScanCursor::start();
        loop {
            let page = store.scan(&pattern, cursor, 100).await?;
            for index in page.keys {
                let index = Key::new(index)?;
                let Some(escaped) = index
                    .as_str()
                    .strip_prefix(cache_core::Family::SessionIndex.key_prefix())
                else {
                    continue;
                };
                let user_id = cache_core::keys::unescape_id(escaped)?;
                let now = self.now_ms();
                report.indexes_scanned += 1;
                report.entries_found += store.zcard(&index).await?;
                report.expired_entries_removed += self.prune(&index, now).await?;
                let scan = self.scan_index(&index, &user_id, now).await?;
                report.orphan_entries_removed += scan.orphans_removed;
                report.expired_sessions_deleted += scan.expired_deleted;
                report.entries_remaining += scan.live.len() as u64;
            }
            match page.next {
                Some(next) => cursor = next,
                None => break,
            }
        }
        tracing::info!(?report, "session index cleanup done");
        Ok(report)
    }

    /// Drops index entries whose absolute deadline passed more than the skew tolerance ago.
    async fn prune(&self, index: &Key, now: i64) -> Result<u64> {
        let tolerance =
            i64::try_from(self.inner.settings.clock_skew_tolerance.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now.saturating_sub(tolerance);
        // Scores are deadlines; a deadline equal to `cutoff` has passed.
        self.inner
            .store
            .zrem_range_by_score(index, f64::NEG_INFINITY, cutoff as f64)
            .await
    }

    /// Reads every session the index names, removes entries of sessions that are gone (re-adding any
    /// that appeared meanwhile), deletes sessions past their deadline, and returns the live ones.
    async fn scan_index(&self, index: &Key, user_id: &str, now: i64) -> Result<Scan> {
        let store = &self.inner.store;
        self.prune(index, now).await?;
        let entries = store
            .zrange_by_score(index, f64::NEG_INFINITY, f64::INFINITY, None)
            .await?;
        let mut scan = Scan {
            live: Vec::new(),
            orphans_removed: 0,
            expired_deleted: 0,
        };
        let mut missing: Vec<String> = Vec::new();
        let mut expired: Vec<(SessionHandle, Record)> = Vec::new();
        for chunk in entries.chunks(BATCH) {
            let mut handles = Vec::with_capacity(chunk.len());
            for (member, _) in chunk {
                match SessionHandle::parse(member) {
                    Ok(h) => handles.push(h),
                    // Not ours (written by something else): leave it alone.
                    Err(_) => tracing::warn!(index = %index, "foreign member in a session index"),
                }
            }
            let keys = handles
                .iter()
                .map(|h| KeySchema::session(h.as_str()))
                .collect::<Result<Vec<_>>>()?;
            let refs: Vec<&str> = keys.iter().map(Key::as_str).collect();
            let values = store.get_many(&refs).await?;
            for (handle, value) in handles.into_iter().zip(values) {
                let Some(bytes) = value else {
                    missing.push(handle.as_str().to_owned());
                    continue;
                };
                let record: Record = codec::decode(&bytes)?;
                if record.user_id != user_id {
                    // Another user's session under this index (only a handle collision could do
                    // this): drop the entry, keep the session.
                    missing.push(handle.as_str().to_owned());
                } else if record.is_expired_at(now) {
                    expired.push((handle, record));
                } else {
                    scan.live.push((handle, record));
                }
            }
        }
        if !expired.is_empty() {
            let handles: Vec<_> = expired.iter().map(|(h, _)| h.clone()).collect();
            scan.expired_deleted = self.remove_sessions(index, &handles).await?;
            for (handle, record) in expired {
                self.emit(SessionEvent::ExpiredOnAccess {
                    handle,
                    user_id: record.user_id,
                });
            }
        }
        if !missing.is_empty() {
            scan.orphans_removed = self.remove_orphans(index, user_id, &missing).await?;
        }
        Ok(scan)
    }

    /// Removes index entries whose session was missing, then looks again: a session created between
    /// our read and our removal (its `create` wrote the entry, we saw no record yet) gets its entry
    /// back. Together with `create` writing the entry before and after the record, this keeps the
    /// index a superset of live sessions without multi-key transactions.
    async fn remove_orphans(&self, index: &Key, user_id: &str, missing: &[String]) -> Result<u64> {
        let store = &self.inner.store;
        let mut removed = 0;
        for chunk in missing.chunks(BATCH) {
            let members: Vec<&str> = chunk.iter().map(String::as_str).collect();
            removed += store.zrem(index, &members).await?;
            let keys = chunk
                .iter()
                .map(|h| KeySchema::session(h))
                .collect::<Result<Vec<_>>>()?;
            let refs: Vec<&str> = keys.iter().map(Key::as_str).collect();
            for (member, value) in chunk.iter().zip(store.get_many(&refs).await?) {
                let Some(bytes) = value else { continue };
                let Ok(record) = codec::decode::<Record>(&bytes) else {
                    continue;
                };
                if record.user_id == user_id {
                    store
                        .zadd(index, member, record.absolute_deadline_ms as f64)
                        .await?;
                    removed = removed.saturating_sub(1);
                }
            }
        }
        Ok(removed)
    }

    // ----------------------------------------------------------------------------------------------
    // Helpers
    // ----------------------------------------------------------------------------------------------

    fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    fn default_idle(&self) -> Duration {
        self.inner.settings.idle_timeout
    }

    fn encode(&self, record: &Record) -> Result<Vec<u8>> {
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

    fn emit(&self, event: SessionEvent) {
        // No receiver is not an error: events are optional.
        let _ = self.inner.events.send(event);
    }
}

/// A duration as whole milliseconds (rounded up, as stores do), validated as a TTL.
fn positive_ms(what: &str, d: Duration) -> Result<i64> {
    let ms = ttl_millis(d).map_err(|e| Error::invalid_input(format!("{what}: {e}")))?;
    i64::try_from(ms).map_err(|_| Error::invalid_input(format!("{what} is too large")))
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(i64::MAX)
}
