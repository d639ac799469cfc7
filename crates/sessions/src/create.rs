//! Creating sessions: [`SessionManager::create`], the index-record-index write order that keeps the
//! per-user index a superset of live sessions, and the per-user maximum.

use std::sync::Arc;
use std::time::Duration;

use cache_core::keys::Key;
use cache_core::{Error, Result, SetOptions, Store};

use crate::events::{RevokeReason, SessionEvent};
use crate::keys::{index_key, session_key};
use crate::manager::{positive_ms, SessionManager, MAX_TOKEN_ATTEMPTS};
use crate::record::{Record, Session, SessionData};
use crate::token::{SessionHandle, SessionToken};

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

impl<S: Store> SessionManager<S> {
    /// Creates a session for `user_id` and returns it with its token.
    ///
    /// Store calls: prune the user's index, `SET NX PX` the record, add its handle to the index (see
    /// the crate docs for why in this order); with a per-user maximum, a listing and the revocation
    /// of the sessions beyond it.
    ///
    /// With a per-user maximum of `n`, the user's sessions are ranked newest first by
    /// `(created_at, handle)` and those after the first `n` are revoked. Simultaneous logins (on any
    /// number of instances) agree on that ranking, so exactly the `n` newest survive; a login whose
    /// own session ranks after them fails with [`LimitLost`] (inside a transient
    /// [`Error::Backend`]), its session already removed.
    pub async fn create(&self, user_id: &str, opts: CreateOptions) -> Result<NewSession> {
        self.bounded("create", self.create_unbounded(user_id, opts))
            .await
    }

    /// The body of [`SessionManager::create`], without its deadline.
    async fn create_unbounded(&self, user_id: &str, opts: CreateOptions) -> Result<NewSession> {
        let index = index_key(user_id)?;
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
            data: Arc::new(opts.data),
            created_at_ms: now,
            last_accessed_ms: now,
            idle_timeout_ms: idle_ms,
            absolute_deadline_ms: now.saturating_add(lifetime_ms),
            rotated_from: None,
            lineage: None,
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
                // Lost to newer logins ([`LimitLost`], already removed), or could not check: do not
                // hand out a session that may break the per-user limit. Undo (best effort; the token
                // was never returned, so a leftover record is unusable and expires).
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

    /// Stores `record` under a fresh token: the record (`SET NX`), then its index entry. Returns the
    /// token. On a (practically impossible) key collision a new token is drawn.
    ///
    /// The record comes first so that an index entry is only ever visible for a record that was
    /// written: a listing that sees an entry and then finds no record knows the record is gone for
    /// good (see the crate docs, "The per-user index without transactions"). Between the two writes
    /// the session exists without an entry, but nobody holds its token yet: the token leaves this
    /// function only after the entry is written.
    pub(crate) async fn insert_new(
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
            let key = session_key(token.handle())?;
            let created = store
                .set(&key, bytes, SetOptions::ttl(ttl).if_absent())
                .await?;
            if !created {
                // Someone holds this handle already; its index entry is theirs, so nothing to undo.
                tracing::error!("session key collision: the random number generator is suspect");
                continue;
            }
            if let Err(e) = store.zadd(index, token.handle().as_str(), score).await {
                // The token is never handed out, so the record is unusable; remove it (best effort:
                // if this fails too, its TTL collects it).
                let _ = store.delete(&[&key]).await;
                return Err(e);
            }
            return Ok(token);
        }
        Err(Error::backend(
            "could not find a free session key: the random number generator is broken",
        ))
    }

    /// Applies the per-user maximum after `own` was created and indexed: ranks the user's live
    /// sessions newest first by `(created_at, handle)`, keeps the first `max` and revokes the rest.
    /// When `own` is not among the kept ones (or already gone, revoked by a concurrent login), it is
    /// removed and the call fails with [`LimitLost`].
    ///
    /// Why concurrent logins agree: the ranking is a total order every instance computes the same
    /// way from the stored records, so no instance ever revokes a session that ranks within the
    /// first `max` of all the user's sessions (that would need `max` sessions ranked above it). And
    /// each login lists only after its own entry is written, so the last of a group of simultaneous
    /// logins to list sees all of them and revokes everything beyond the first `max`: N + 1
    /// simultaneous logins with a limit of N leave exactly N.
    async fn enforce_max_sessions(
        &self,
        index: &Key,
        user_id: &str,
        own: &SessionHandle,
        max: usize,
    ) -> Result<()> {
        let scan = self.scan_index(index, user_id, self.now_ms()).await?;
        let mut live = scan.live;
        let own_listed = live.iter().any(|(h, _)| h == own);
        if own_listed && live.len() <= max {
            return Ok(());
        }
        live.sort_by(|(ha, a), (hb, b)| {
            (b.created_at_ms, hb.as_str()).cmp(&(a.created_at_ms, ha.as_str()))
        });
        let victims = live.split_off(max.min(live.len()));
        let kept = live.iter().any(|(h, _)| h == own);
        let mut handles: Vec<_> = victims.iter().map(|(h, _)| h.clone()).collect();
        if !kept && !own_listed {
            // Already revoked by a concurrent login (or expired): make sure it is gone.
            handles.push(own.clone());
        }
        self.remove_sessions(index, &handles).await?;
        for (handle, rec) in victims {
            if &handle == own {
                // Never handed out: the caller learns it from the error, not from an event.
                continue;
            }
            tracing::debug!(%handle, user_id, "session revoked: over the per-user maximum");
            self.emit(SessionEvent::Revoked {
                handle,
                user_id: Some(rec.user_id),
                reason: RevokeReason::MaxSessions,
            });
        }
        if kept {
            Ok(())
        } else {
            tracing::debug!(handle = %own, user_id, "new session lost the per-user maximum to newer ones");
            Err(LimitLost {
                handle: own.clone(),
                max,
            }
            .into())
        }
    }
}

/// Why a [`SessionManager::create`] failed when the user's per-user maximum
/// ([`SessionManagerBuilder::with_max_sessions_per_user`](crate::SessionManagerBuilder::with_max_sessions_per_user))
/// was contended: simultaneous logins of the same user filled every slot with sessions that rank
/// before this one (newer, by `(created_at, handle)`), so this one was removed before its token was
/// handed out.
///
/// `create` returns it as the source of a transient [`Error::Backend`] (retrying the login is the
/// right reaction: a new login ranks first); find it with [`LimitLost::find`]:
///
/// ```
/// # fn handle(err: cache_core::Error) {
/// if let Some(lost) = sessions::LimitLost::find(&err) {
///     // Tell the user to try again; `lost.handle` was never handed out and is already gone.
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a simultaneous login took the last of the user's {max} session slots (max_sessions_per_user); \
     this login's session was removed: retry it"
)]
#[non_exhaustive]
pub struct LimitLost {
    /// The handle of the session that was created and removed again (never handed out).
    pub handle: SessionHandle,
    /// The per-user maximum in force.
    pub max: usize,
}

impl LimitLost {
    /// The [`LimitLost`] behind `err`, if `err` (or an error in its source chain) is one.
    pub fn find(err: &Error) -> Option<&LimitLost> {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(e) = cur {
            if let Some(lost) = e.downcast_ref::<LimitLost>() {
                return Some(lost);
            }
            cur = e.source();
        }
        None
    }
}

impl From<LimitLost> for Error {
    fn from(lost: LimitLost) -> Error {
        Error::Backend {
            message: lost.to_string(),
            transient: true,
            source: Some(Box::new(lost)),
        }
    }
}
