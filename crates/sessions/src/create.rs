//! Creating sessions: [`SessionManager::create`], the index-record-index write order that keeps the
//! per-user index a superset of live sessions, and the per-user maximum.

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
    /// Store calls: prune the user's index, add the new handle to it, `SET NX PX` the record, add the
    /// handle again (see the crate docs for why the index is written before and after); with a
    /// per-user maximum, a listing and the revocation of the oldest sessions beyond it.
    pub async fn create(&self, user_id: &str, opts: CreateOptions) -> Result<NewSession> {
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
            let handle = token.handle().as_str();
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
}
