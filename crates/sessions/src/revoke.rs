//! Ending sessions on purpose: [`SessionManager::delete`] (logout), revocation by handle (with or
//! without an owner check), [`SessionManager::revoke_all`] ("sign out everywhere"), and the one
//! removal routine that deletes records before their index entries.

use std::collections::HashSet;

use cache_core::keys::Key;
use cache_core::{codec, Error, Result, Store};

use crate::events::{RevokeReason, SessionEvent};
use crate::keys::{index_key, session_key};
use crate::manager::{SessionManager, BATCH};
use crate::record::Record;
use crate::token::{SessionHandle, SessionToken};

/// How many readings of a user's index [`SessionManager::revoke_all`] makes at most while new
/// sessions keep appearing in it, before it gives up with a transient error.
pub const MAX_REVOKE_ROUNDS: usize = 16;

impl<S: Store> SessionManager<S> {
    /// Deletes the session of `token` (logout). `true`: a stored session was deleted.
    pub async fn delete(&self, token: &str) -> Result<bool> {
        self.bounded("delete", self.delete_unbounded(token)).await
    }

    /// The body of [`SessionManager::delete`], without its deadline.
    async fn delete_unbounded(&self, token: &str) -> Result<bool> {
        let token = SessionToken::parse(token)?;
        self.revoke_handle(token.handle(), None, RevokeReason::Deleted)
            .await
    }

    /// Revokes a session by its handle (from a listing or an admin tool). `true`: a stored session
    /// was deleted. Does not check who owns it: for handles that come from end users, use
    /// [`SessionManager::revoke_for_user`].
    pub async fn revoke(&self, handle: &SessionHandle) -> Result<bool> {
        self.bounded("revoke", self.revoke_unbounded(handle)).await
    }

    /// The body of [`SessionManager::revoke`], without its deadline.
    async fn revoke_unbounded(&self, handle: &SessionHandle) -> Result<bool> {
        self.revoke_handle(handle, None, RevokeReason::Revoked)
            .await
    }

    /// Revokes a session by handle only if it belongs to `user_id` (for "sign out that device" pages,
    /// where the handle comes from the user). `false`: no such session of this user; nothing changed.
    pub async fn revoke_for_user(&self, user_id: &str, handle: &SessionHandle) -> Result<bool> {
        self.bounded(
            "revoke_for_user",
            self.revoke_for_user_unbounded(user_id, handle),
        )
        .await
    }

    /// The body of [`SessionManager::revoke_for_user`], without its deadline.
    async fn revoke_for_user_unbounded(
        &self,
        user_id: &str,
        handle: &SessionHandle,
    ) -> Result<bool> {
        // Validates the user id (empty, too long) before any store call.
        index_key(user_id)?;
        self.revoke_handle(handle, Some(user_id), RevokeReason::Revoked)
            .await
    }

    async fn revoke_handle(
        &self,
        handle: &SessionHandle,
        owner: Option<&str>,
        reason: RevokeReason,
    ) -> Result<bool> {
        let key = session_key(handle)?;
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
        let deleted = store.delete(&[&key]).await;
        self.near_forget(&[key.as_str()]);
        let deleted = deleted? > 0;
        if let Some(user_id) = &user_id {
            store.zrem(&index_key(user_id)?, &[handle.as_str()]).await?;
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
    ///
    /// Complete for every session that existed when it was called, including one rotated to a new
    /// token meanwhile: it reads the user's index, deletes what it lists, and reads the index again
    /// until a reading names nothing it has not already revoked. (A rotation that succeeds retired
    /// its old token before this call deleted it, and wrote the new token's entry before that, so the
    /// next reading sees the new token.) A login that completes while this runs may survive it. When
    /// sessions keep appearing for [`MAX_REVOKE_ROUNDS`] readings in a row (logins or rotations in a
    /// tight loop), it stops with a transient error: everything it saw is revoked, and a retry
    /// continues.
    pub async fn revoke_all(&self, user_id: &str) -> Result<u64> {
        self.bounded("revoke_all", self.revoke_all_unbounded(user_id))
            .await
    }

    /// The body of [`SessionManager::revoke_all`], without its deadline.
    async fn revoke_all_unbounded(&self, user_id: &str) -> Result<u64> {
        self.revoke_all_inner(user_id, None).await
    }

    /// Revokes every session of `user_id` except the one of `current_token` ("sign out other
    /// devices"), with the guarantees of [`SessionManager::revoke_all`]. A malformed token is
    /// [`cache_core::Error::InvalidInput`] and revokes nothing. The kept session stays kept when it
    /// is rotated while this call runs: a session rotated from it (its record names the handle it
    /// was rotated from) is kept too, and so is one rotated from that one.
    pub async fn revoke_all_except(&self, user_id: &str, current_token: &str) -> Result<u64> {
        self.bounded(
            "revoke_all_except",
            self.revoke_all_except_unbounded(user_id, current_token),
        )
        .await
    }

    /// The body of [`SessionManager::revoke_all_except`], without its deadline.
    async fn revoke_all_except_unbounded(&self, user_id: &str, current_token: &str) -> Result<u64> {
        let keep = SessionToken::parse(current_token)?;
        self.revoke_all_inner(user_id, Some(keep.handle())).await
    }

    async fn revoke_all_inner(&self, user_id: &str, keep: Option<&SessionHandle>) -> Result<u64> {
        let index = index_key(user_id)?;
        let store = &self.inner.store;
        self.prune(&index, self.now_ms()).await?;
        let mut revoked: HashSet<SessionHandle> = HashSet::new();
        // The kept session and its successors: a rotation of the kept session while this call runs
        // gives it a new handle (its record names the handle it was rotated from and the login it
        // descends from), and signing out the other devices must not sign out the one that asked.
        let mut kept = Kept::default();
        if let Some(keep) = keep {
            kept.handles.insert(keep.as_str().to_owned());
            kept.lineages.insert(keep.as_str().to_owned());
            let record = store.get(&session_key(keep)?).await?;
            if let Some(record) = record.and_then(|b| codec::decode::<Record>(&b).ok()) {
                kept.lineages.insert(record.lineage_of_successor(keep));
            }
        }
        let mut deleted = 0;
        for _ in 0..MAX_REVOKE_ROUNDS {
            let fresh: Vec<SessionHandle> = store
                .zrange_by_score(&index, f64::NEG_INFINITY, f64::INFINITY, None)
                .await?
                .into_iter()
                .filter_map(|(member, _)| self.index_member(&index, &member))
                .filter(|h| !kept.handles.contains(h.as_str()) && !revoked.contains(h))
                .collect();
            if fresh.is_empty() {
                tracing::debug!(user_id, deleted, "all sessions of a user revoked");
                return Ok(deleted);
            }
            // Read first: to know which records exist (events are for sessions this call ended,
            // not for entries whose session was already gone) and, when one is kept, which of them
            // are its successors.
            let mut existed = Vec::with_capacity(fresh.len());
            for chunk in fresh.chunks(BATCH) {
                let keys = chunk.iter().map(session_key).collect::<Result<Vec<_>>>()?;
                let refs: Vec<&str> = keys.iter().map(Key::as_str).collect();
                existed.extend(store.get_many(&refs).await?);
            }
            if keep.is_some() {
                kept.add_successors(&fresh, &existed);
            }
            let doomed: Vec<(SessionHandle, bool)> = fresh
                .into_iter()
                .zip(existed)
                .filter(|(h, _)| !kept.handles.contains(h.as_str()))
                .map(|(h, value)| (h, value.is_some()))
                .collect();
            for chunk in doomed.chunks(BATCH) {
                let keys = chunk
                    .iter()
                    .map(|(h, _)| session_key(h))
                    .collect::<Result<Vec<_>>>()?;
                let refs: Vec<&str> = keys.iter().map(Key::as_str).collect();
                let removed = store.delete(&refs).await;
                self.near_forget(&refs);
                deleted += removed?;
                let members: Vec<&str> = chunk.iter().map(|(h, _)| h.as_str()).collect();
                store.zrem(&index, &members).await?;
                for (handle, existed) in chunk {
                    if *existed {
                        self.emit(SessionEvent::Revoked {
                            handle: handle.clone(),
                            user_id: Some(user_id.to_owned()),
                            reason: RevokeReason::RevokedAll,
                        });
                    }
                }
            }
            revoked.extend(doomed.into_iter().map(|(h, _)| h));
        }
        Err(Error::Backend {
            message: format!(
                "sign out everywhere: new sessions of this user kept appearing for {MAX_REVOKE_ROUNDS} \
                 readings of its index; every session seen ({deleted}) was revoked, retry to finish"
            ),
            transient: true,
            source: None,
        })
    }

    /// Deletes sessions, then their index entries (in that order), in batches. Returns how many
    /// session keys existed.
    pub(crate) async fn remove_sessions(
        &self,
        index: &Key,
        handles: &[SessionHandle],
    ) -> Result<u64> {
        let store = &self.inner.store;
        let mut deleted = 0;
        for chunk in handles.chunks(BATCH) {
            let keys = chunk.iter().map(session_key).collect::<Result<Vec<_>>>()?;
            let refs: Vec<&str> = keys.iter().map(Key::as_str).collect();
            let removed = store.delete(&refs).await;
            self.near_forget(&refs);
            deleted += removed?;
            let members: Vec<&str> = chunk.iter().map(SessionHandle::as_str).collect();
            store.zrem(index, &members).await?;
        }
        Ok(deleted)
    }
}

/// What [`SessionManager::revoke_all_except`] keeps: the handles of the kept session and of its
/// successors, and the logins they descend from ([`Record::lineage`]).
#[derive(Default)]
struct Kept {
    handles: HashSet<String>,
    lineages: HashSet<String>,
}

impl Kept {
    /// Keeps every handle of `fresh` whose record (in `records`, same order) was rotated from a
    /// kept handle or descends from a kept login, and so on down the chain. A record that is gone
    /// or does not decode is nobody's successor.
    fn add_successors(&mut self, fresh: &[SessionHandle], records: &[Option<cache_core::Bytes>]) {
        let records: Vec<Option<Record>> = records
            .iter()
            .map(|bytes| codec::decode(bytes.as_deref()?).ok())
            .collect();
        loop {
            let mut grew = false;
            for (handle, record) in fresh.iter().zip(&records) {
                let Some(record) = record else { continue };
                let successor = record
                    .rotated_from
                    .as_ref()
                    .is_some_and(|from| self.handles.contains(from))
                    || record
                        .lineage
                        .as_ref()
                        .is_some_and(|login| self.lineages.contains(login));
                if successor && self.handles.insert(handle.as_str().to_owned()) {
                    self.lineages.insert(record.lineage_of_successor(handle));
                    grew = true;
                }
            }
            if !grew {
                return;
            }
        }
    }
}
