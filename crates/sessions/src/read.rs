//! Reading a session: [`SessionManager::get`], one `GETEX` that also slides the idle expiry, the
//! occasional touch of `last_accessed`, and the clean-up of a record found past its deadline (by
//! compare-and-swap against the bytes judged, so a record refreshed meanwhile is never deleted).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use cache_core::keys::Key;
use cache_core::{codec, Bytes, CasOutcome, Expiry, KeyTtl, Result, Store};
use cache_near::NearCache;

use crate::events::SessionEvent;
use crate::keys::{index_key, session_key};
use crate::manager::{duration_ms, SessionManager};
use crate::record::{Record, Session};
use crate::token::{SessionHandle, SessionToken};

/// How much shorter than the session's remaining lifetime the key's TTL may be before a near-cache
/// miss slides it: a key whose TTL was set by the last touch ends with the session, give or take
/// the milliseconds of rounding, which must not cost a write (and an invalidation) per miss.
const SLIDE_TOLERANCE: std::time::Duration = std::time::Duration::from_secs(1);

impl<S: Store> SessionManager<S> {
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
    /// only collects garbage. A malformed token is [`cache_core::Error::InvalidInput`] before any
    /// store call; a store failure is an error, never `None`.
    pub async fn get(&self, token: &str) -> Result<Option<Session>> {
        self.bounded("get", self.get_unbounded(token)).await
    }

    /// The body of [`SessionManager::get`], without its deadline.
    async fn get_unbounded(&self, token: &str) -> Result<Option<Session>> {
        let token = SessionToken::parse(token)?;
        let handle = token.handle();
        let key = session_key(handle)?;
        if let Some(near) = self.near().await? {
            if let Some(hit) = near.get(&key) {
                if let Some(answer) = self.serve_hit(&hit, handle, &key).await? {
                    return Ok(answer);
                }
            }
            // Boxed: a miss makes a round trip anyway, and held inline its state (most of this
            // future's size) would be carried, and moved, by every call without the near cache.
            return Box::pin(self.get_near_miss(near, handle, &key)).await;
        }
        let store = &self.inner.store;
        let Some(bytes) = store.get_ex(&key, self.default_idle()).await? else {
            return Ok(None);
        };
        let Some((record, now)) = self.live_record(handle, &key, &bytes).await? else {
            return Ok(None);
        };
        let Some(ttl) = record.ttl_at(now) else {
            // Unreachable: not expired implies now < absolute deadline. Treat as expired anyway.
            self.expired_on_access(handle, &key, &bytes, &record).await;
            return Ok(None);
        };
        let ttl_differs = duration_ms(ttl) != self.inner.idle_ms;
        if self.touch_due(&record, now) {
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

    /// Whether `last_accessed` is old enough to be rewritten: older than the touch interval, or than
    /// half the session's idle timeout if that is shorter.
    fn touch_due(&self, record: &Record, now: i64) -> bool {
        let touch_after = self
            .inner
            .settings
            .touch_interval
            .as_millis()
            .min(u128::from(record.idle_timeout_ms.unsigned_abs() / 2));
        u128::from(
            now.saturating_sub(record.last_accessed_ms)
                .max(0)
                .unsigned_abs(),
        ) >= touch_after
    }

    /// A near-cache hit of [`SessionManager::get`] (see [`crate::near`] for why each rule still
    /// holds): the answer, or `None` when the store must answer (the record held here is past a
    /// deadline, or its touch is due and the store holds other bytes).
    async fn serve_hit(
        &self,
        hit: &Record,
        handle: &SessionHandle,
        key: &Key,
    ) -> Result<Option<Option<Session>>> {
        let now = self.now_ms();
        if hit.is_expired_at(now) {
            // Past a deadline here; the store decides, with the bytes it holds: the record judged
            // expired is deleted only if it is still the one stored (a touch elsewhere may have
            // revived it), as without the near cache.
            self.near_forget(&[key.as_str()]);
            return Ok(None);
        }
        if !self.touch_due(hit, now) {
            let mut session = hit.clone().into_session(handle.clone());
            session.last_accessed = crate::record::ms_to_datetime(now);
            return Ok(Some(Some(session)));
        }
        // Due: swapped in one round trip, or `None` to read (and touch) through the store.
        self.touch_hit(hit, handle, key, now).await
    }

    /// [`SessionManager::get`] with the near cache on, when the near cache could not answer: read
    /// through the store, and keep the record for the next reads when its key's TTL allows.
    async fn get_near_miss(
        &self,
        near: &NearCache<Record>,
        handle: &SessionHandle,
        key: &Key,
    ) -> Result<Option<Session>> {
        let ticket = near.ticket(key);
        let started = tokio::time::Instant::now();
        let store = &self.inner.store;
        let Some((bytes, redis_ttl)) = store.get_with_ttl(key).await? else {
            return Ok(None);
        };
        let Some((record, now)) = self.live_record(handle, key, &bytes).await? else {
            self.near_forget(&[key.as_str()]);
            return Ok(None);
        };
        let Some(ttl) = record.ttl_at(now) else {
            // Unreachable: not expired implies now < absolute deadline. Treat as expired anyway.
            self.expired_on_access(handle, key, &bytes, &record).await;
            return Ok(None);
        };
        if self.touch_due(&record, now) {
            let mut touched = record.clone();
            touched.last_accessed_ms = now;
            let new = self.encode(&touched)?;
            let outcome = store
                .compare_and_swap(key, Some(&bytes), Some(&new), Expiry::In(ttl))
                .await?;
            self.near_forget(&[key.as_str()]);
            return Ok(match outcome {
                CasOutcome::Conflict { current: None } => None,
                // Swapped, or a concurrent writer won (theirs is newer): the session is live.
                _ => {
                    let mut session = touched.into_session(handle.clone());
                    session.last_accessed = crate::record::ms_to_datetime(now);
                    Some(session)
                }
            });
        }
        // The key must outlive the session's deadline; between touches its TTL is left alone
        // (a TTL change is a change of the key, which would empty every instance's near cache).
        let deadline_in = std::time::Duration::from_millis(
            record
                .expires_at_ms()
                .saturating_sub(now)
                .max(0)
                .unsigned_abs(),
        );
        let left = match redis_ttl {
            KeyTtl::ExpiresIn(left) => Some(left),
            KeyTtl::Persistent => None,
            KeyTtl::Missing => return Ok(None),
        };
        if left.is_none_or(|left| left + SLIDE_TOLERANCE < deadline_in) {
            if !store.expire(key, ttl).await? {
                return Ok(None);
            }
            self.near_forget(&[key.as_str()]);
        } else if let Some(left) = left {
            // Served until the earlier of the key's TTL and the session's deadline (both measured
            // from before the read).
            let until = started + left.min(deadline_in);
            near.insert(
                ticket,
                key,
                Arc::new(record.clone()),
                Some(until),
                bytes.len(),
            );
        }
        let mut session = record.into_session(handle.clone());
        session.last_accessed = crate::record::ms_to_datetime(now);
        Ok(Some(session))
    }

    /// A due touch on a near-cache hit, without reading first. The record held here is the one the
    /// store held when it was cached (no invalidation has come since), so its encoding is the
    /// expected value of the compare-and-swap that rewrites `last_accessed`: one round trip where
    /// a read and a swap took two. `None` when the store holds other bytes (a write elsewhere whose
    /// invalidation has not arrived yet, or a record from another version that encodes
    /// differently): nothing was written, and the caller reads and touches through the store.
    async fn touch_hit(
        &self,
        hit: &Record,
        handle: &SessionHandle,
        key: &Key,
        now: i64,
    ) -> Result<Option<Option<Session>>> {
        let Some(ttl) = hit.ttl_at(now) else {
            return Ok(None);
        };
        let expected = codec::encode(hit)?;
        let mut touched = hit.clone();
        touched.last_accessed_ms = now;
        let new = self.encode(&touched)?;
        let outcome = self
            .inner
            .store
            .compare_and_swap(key, Some(&expected), Some(&new), Expiry::In(ttl))
            .await?;
        // Swapped or not, the copy held here is no longer the stored record.
        self.near_forget(&[key.as_str()]);
        Ok(match outcome {
            CasOutcome::Swapped => {
                let mut session = touched.into_session(handle.clone());
                session.last_accessed = crate::record::ms_to_datetime(now);
                Some(Some(session))
            }
            // Deleted (logout, rotation, revocation) elsewhere: gone.
            CasOutcome::Conflict { current: None } => Some(None),
            CasOutcome::Conflict { current: Some(_) } => None,
        })
    }

    /// Decodes the record read under `key` and checks it against the clock: `None` when it is past
    /// its idle or absolute deadline (it is removed on the way, see `expired_on_access`), else the
    /// record and the time it was checked at. Every operation on a token reads through here.
    pub(crate) async fn live_record(
        &self,
        handle: &SessionHandle,
        key: &Key,
        bytes: &[u8],
    ) -> Result<Option<(Record, i64)>> {
        let record: Record = codec::decode(bytes)?;
        let now = self.now_ms();
        if record.is_expired_at(now) {
            self.expired_on_access(handle, key, bytes, &record).await;
            return Ok(None);
        }
        Ok(Some((record, now)))
    }

    /// Deletes a record judged expired when it was read (see [`Self::delete_judged_expired`]) and
    /// tells the event listeners. Boxed: it is the rare path of every read, and held inline its
    /// state would be carried by each read's future.
    pub(crate) fn expired_on_access<'a>(
        &'a self,
        handle: &'a SessionHandle,
        key: &'a Key,
        bytes: &'a [u8],
        record: &'a Record,
    ) -> Pin<Box<impl Future<Output = ()> + 'a>> {
        Box::pin(self.delete_expired_on_access(handle, key, bytes, record))
    }

    async fn delete_expired_on_access(
        &self,
        handle: &SessionHandle,
        key: &Key,
        bytes: &[u8],
        record: &Record,
    ) {
        // The answer ("no session") is right whatever happens here; a failure only delays garbage
        // collection (the key's TTL and the index pruning catch it), so it is logged, not returned.
        match self
            .delete_judged_expired(key, bytes, &record.user_id, handle)
            .await
        {
            Ok(Judged::Deleted) => self.emit(SessionEvent::ExpiredOnAccess {
                handle: handle.clone(),
                user_id: record.user_id.clone(),
            }),
            Ok(Judged::Gone | Judged::Changed(_)) => {}
            Err(e) => tracing::warn!(%handle, error = %e, "could not delete an expired session"),
        }
    }

    /// Deletes the record under `key` only if it still holds `bytes`, the value that was judged
    /// expired (compare-and-swap to absent), and then its index entry. A record that changed since
    /// (a concurrent `get` on an instance whose clock is behind touched it, an `extend` restarted its
    /// idle countdown) is left alone with its entry: only the exact record judged is deleted.
    pub(crate) async fn delete_judged_expired(
        &self,
        key: &Key,
        bytes: &[u8],
        user_id: &str,
        handle: &SessionHandle,
    ) -> Result<Judged> {
        let store = &self.inner.store;
        let swapped = store
            .compare_and_swap(key, Some(bytes), None, Expiry::Keep)
            .await;
        // Whatever the answer, the copy this instance may hold is of no use any more.
        self.near_forget(&[key.as_str()]);
        let judged = match swapped? {
            CasOutcome::Swapped => Judged::Deleted,
            CasOutcome::Conflict { current: None } => Judged::Gone,
            CasOutcome::Conflict {
                current: Some(newer),
            } => return Ok(Judged::Changed(newer)),
        };
        // The record is gone (by us or before): its entry names nothing, remove it.
        store.zrem(&index_key(user_id)?, &[handle.as_str()]).await?;
        Ok(judged)
    }
}

/// What [`SessionManager::delete_judged_expired`] did.
pub(crate) enum Judged {
    /// The record judged expired was deleted, and its index entry.
    Deleted,
    /// The record was already gone; its index entry was removed.
    Gone,
    /// The record changed since it was judged: nothing was deleted. Its current value.
    Changed(Bytes),
}
