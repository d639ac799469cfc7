//! Changing a session: [`SessionManager::update`], [`SessionManager::replace`] and
//! [`SessionManager::extend`] (one compare-and-swap loop) and [`SessionManager::rotate`] (a new token,
//! the old one retired by compare-and-swap so no concurrent update is lost).

use std::sync::Arc;
use std::time::Duration;

use cache_core::cas::{self, Decision};
use cache_core::keys::Key;
use cache_core::{codec, Bytes, CasOutcome, Error, Expiry, Result, SetOptions, Store};

use crate::create::NewSession;
use crate::events::SessionEvent;
use crate::keys::{index_key, session_key};
use crate::manager::{positive_ms, SessionManager};
use crate::record::{merge_patch, Record, Session, SessionData};
use crate::token::SessionToken;

impl<S: Store> SessionManager<S> {
    /// Merges `patch` into the session's data (JSON merge patch, RFC 7386: members replace, `null`
    /// removes, objects merge recursively) and returns the session as written. `None`: no live
    /// session (nothing is written, nothing is created).
    ///
    /// Atomic and lossless under concurrency: a compare-and-swap loop against the exact bytes read,
    /// where a conflict hands back the current value so a retry costs one round trip. The TTL is kept
    /// (`KEEPTTL`): an update does not count as an access.
    pub async fn update(&self, token: &str, patch: &SessionData) -> Result<Option<Session>> {
        self.bounded("update", self.update_unbounded(token, patch))
            .await
    }

    /// The body of [`SessionManager::update`], without its deadline.
    async fn update_unbounded(&self, token: &str, patch: &SessionData) -> Result<Option<Session>> {
        self.modify(token, |rec, _now| {
            merge_patch(Arc::make_mut(&mut rec.data), patch);
            Ok(Expiry::Keep)
        })
        .await
    }

    /// Replaces the session's data wholesale (same guarantees as [`SessionManager::update`]).
    pub async fn replace(&self, token: &str, data: SessionData) -> Result<Option<Session>> {
        self.bounded("replace", self.replace_unbounded(token, data))
            .await
    }

    /// The body of [`SessionManager::replace`], without its deadline.
    async fn replace_unbounded(&self, token: &str, data: SessionData) -> Result<Option<Session>> {
        let data = Arc::new(data);
        self.modify(token, move |rec, _now| {
            rec.data = Arc::clone(&data);
            Ok(Expiry::Keep)
        })
        .await
    }

    /// Sets the session's idle timeout to `idle_timeout` and restarts its idle countdown now. The
    /// absolute deadline is never moved: the store TTL is clamped to it. `None`: no live session.
    pub async fn extend(&self, token: &str, idle_timeout: Duration) -> Result<Option<Session>> {
        self.bounded("extend", self.extend_unbounded(token, idle_timeout))
            .await
    }

    /// The body of [`SessionManager::extend`], without its deadline.
    async fn extend_unbounded(
        &self,
        token: &str,
        idle_timeout: Duration,
    ) -> Result<Option<Session>> {
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

    /// The read-modify-write behind update, replace and extend: `cache_core::cas::update` (the one
    /// compare-and-swap loop of the workspace, shared with the cache manager's crawl status) against
    /// the exact bytes read, with the manager's [`CasPolicy`](cache_core::cas::CasPolicy): one
    /// immediate retry on the value a conflict hands back, then jittered backoff with a fresh read,
    /// bounded attempts, and updates of one session serialised inside this process.
    async fn modify<F>(&self, token: &str, mut change: F) -> Result<Option<Session>>
    where
        F: FnMut(&mut Record, i64) -> Result<Expiry>,
    {
        /// What the loop found; side effects (the expired record's removal) follow the loop.
        enum Step {
            Missing,
            Expired(Vec<u8>, Record),
            Written(Session),
        }
        let token = SessionToken::parse(token)?;
        let handle = token.handle();
        let key = session_key(handle)?;
        let step = cas::update(&self.inner.store, &key, &self.inner.cas, |current| {
            // Absent: never created, deleted, or expired. A CAS against "absent" would create the
            // key, so we stop here: an update never resurrects a session.
            let Some(bytes) = current else {
                return Ok(Decision::Stop(Step::Missing));
            };
            let record: Record = codec::decode(bytes)?;
            let now = self.now_ms();
            if record.is_expired_at(now) {
                return Ok(Decision::Stop(Step::Expired(bytes.to_vec(), record)));
            }
            let mut next = record;
            let expiry = change(&mut next, now)?;
            let value = self.encode(&next)?;
            Ok(Decision::Write {
                value,
                expiry,
                output: Step::Written(next.into_session(handle.clone())),
            })
        })
        .await;
        // Whatever happened (a write may have been applied before an error), this instance's own
        // copy goes before the call returns: it reads its writes.
        self.near_forget(&[key.as_str()]);
        match step? {
            Step::Missing => Ok(None),
            Step::Expired(bytes, record) => {
                self.expired_on_access(handle, &key, &bytes, &record).await;
                Ok(None)
            }
            Step::Written(session) => Ok(Some(session)),
        }
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
        self.bounded("rotate", self.rotate_unbounded(token)).await
    }

    /// The body of [`SessionManager::rotate`], without its deadline.
    async fn rotate_unbounded(&self, token: &str) -> Result<Option<NewSession>> {
        let old = SessionToken::parse(token)?;
        let old_key = session_key(old.handle())?;
        let store = &self.inner.store;
        let Some(bytes) = store.get(&old_key).await? else {
            return Ok(None);
        };
        let Some((record, now)) = self.live_record(old.handle(), &old_key, &bytes).await? else {
            return Ok(None);
        };
        let index = index_key(&record.user_id)?;
        let mut next = record;
        next.last_accessed_ms = now;
        next.rotated_from = Some(old.handle().as_str().to_owned());
        next.lineage = Some(next.lineage_of_successor(old.handle()));
        let Some(ttl) = next.ttl_at(now) else {
            return Ok(None);
        };
        let new_token = self
            .insert_new(&index, &next, &self.encode(&next)?, ttl)
            .await?;
        let new_key = session_key(new_token.handle())?;
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
        mut expected: Bytes,
        next: &mut Record,
        now: i64,
    ) -> Result<bool> {
        let store = &self.inner.store;
        for _ in 0..self.inner.settings.max_update_attempts {
            let outcome = store
                .compare_and_swap(old_key, Some(&expected), None, Expiry::Keep)
                .await;
            self.near_forget(&[old_key.as_str(), new_key.as_str()]);
            match outcome? {
                CasOutcome::Swapped => return Ok(true),
                CasOutcome::Conflict { current: None } => return Ok(false),
                CasOutcome::Conflict {
                    current: Some(newer),
                } => {
                    let rec: Record = codec::decode(&newer)?;
                    // The copy is still the successor of the old session, not of its predecessor.
                    *next = Record {
                        last_accessed_ms: now,
                        rotated_from: next.rotated_from.take(),
                        lineage: next.lineage.take(),
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
}
