//! The per-user index (`sessions:user:{user_id}`, a sorted set of handles scored by absolute
//! deadline): listing a user's sessions, removing entries of sessions that are gone (and restoring
//! any that reappeared), pruning entries past their deadline, and the periodic
//! [`SessionManager::cleanup`].

use cache_core::keys::Key;
use cache_core::{codec, Result, ScanCursor, Store};

use crate::events::SessionEvent;
use crate::keys::{index_key, index_user, session_key, SESSION_INDEX};
use crate::manager::{SessionManager, BATCH};
use crate::record::{Record, Session};
use crate::token::SessionHandle;

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

/// Which index entries a listing found in what state.
pub(crate) struct Scan {
    pub(crate) live: Vec<(SessionHandle, Record)>,
    /// Entries removed because the session was missing or belonged to someone else.
    pub(crate) orphans_removed: u64,
    /// Sessions past their deadline, deleted.
    pub(crate) expired_deleted: u64,
}

impl<S: Store> SessionManager<S> {
    /// The live sessions of `user_id`, oldest first, with their data. Never includes an expired
    /// session; entries of sessions that are gone are removed from the index on the way.
    pub async fn list_user_sessions(&self, user_id: &str) -> Result<Vec<Session>> {
        let index = index_key(user_id)?;
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
        let pattern = SESSION_INDEX.pattern();
        let mut report = CleanupReport::default();
        let mut cursor = ScanCursor::start();
        loop {
            let page = store.scan(&pattern, cursor, 100).await?;
            for index in page.keys {
                let index = Key::new(index)?;
                let Some(user_id) = index_user(&index) else {
                    continue;
                };
                let user_id = user_id?;
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
    pub(crate) async fn prune(&self, index: &Key, now: i64) -> Result<u64> {
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
    pub(crate) async fn scan_index(&self, index: &Key, user_id: &str, now: i64) -> Result<Scan> {
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
        let mut missing: Vec<SessionHandle> = Vec::new();
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
                .map(session_key)
                .collect::<Result<Vec<_>>>()?;
            let refs: Vec<&str> = keys.iter().map(Key::as_str).collect();
            let values = store.get_many(&refs).await?;
            for (handle, value) in handles.into_iter().zip(values) {
                let Some(bytes) = value else {
                    missing.push(handle);
                    continue;
                };
                let record: Record = codec::decode(&bytes)?;
                if record.user_id != user_id {
                    // Another user's session under this index (only a handle collision could do
                    // this): drop the entry, keep the session.
                    missing.push(handle);
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
    async fn remove_orphans(
        &self,
        index: &Key,
        user_id: &str,
        missing: &[SessionHandle],
    ) -> Result<u64> {
        let store = &self.inner.store;
        let mut removed = 0;
        for chunk in missing.chunks(BATCH) {
            let members: Vec<&str> = chunk.iter().map(SessionHandle::as_str).collect();
            removed += store.zrem(index, &members).await?;
            let keys = chunk.iter().map(session_key).collect::<Result<Vec<_>>>()?;
            let refs: Vec<&str> = keys.iter().map(Key::as_str).collect();
            for (handle, value) in chunk.iter().zip(store.get_many(&refs).await?) {
                let Some(bytes) = value else { continue };
                let Ok(record) = codec::decode::<Record>(&bytes) else {
                    continue;
                };
                if record.user_id == user_id {
                    store
                        .zadd(index, handle.as_str(), record.absolute_deadline_ms as f64)
                        .await?;
                    removed = removed.saturating_sub(1);
                }
            }
        }
        Ok(removed)
    }
}
