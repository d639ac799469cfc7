//! The per-user index (`sessions:user:{user_id}`, a sorted set of handles scored by absolute
//! deadline): listing a user's sessions, removing entries of sessions that are gone, pruning entries
//! past their deadline, and the periodic [`SessionManager::cleanup`].

use cache_core::keys::Key;
use cache_core::{codec, Bytes, Error, Result, ScanCursor, Store};

use crate::events::SessionEvent;
use crate::keys::{index_key, index_user, session_key, SESSION_INDEX};
use crate::manager::{SessionManager, BATCH};
use crate::read::Judged;
use crate::record::{Record, Session};
use crate::token::SessionHandle;

/// The counter of things the index code skipped because it could not read them, labelled `what`:
/// `record` (a session record that does not decode), `index_member` (a member that is not a
/// handle), `index` (an index key that cannot be visited).
pub const UNREADABLE_METRIC: &str = "sessions_unreadable_total";

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
    /// Records that did not decode (corrupt, or written by a newer version), skipped and left to
    /// their TTL; their entries stay.
    pub undecodable_records_skipped: u64,
    /// Index members that are not session handles, skipped and left in place.
    pub malformed_entries_skipped: u64,
    /// Keys under the index prefix that could not be visited (an id that is no valid escape, or a
    /// key that is not a sorted set), skipped.
    pub malformed_indexes_skipped: u64,
}

/// Which index entries a listing found in what state.
pub(crate) struct Scan {
    pub(crate) live: Vec<(SessionHandle, Record)>,
    /// Entries removed because the session was missing or belonged to someone else.
    pub(crate) orphans_removed: u64,
    /// Sessions past their deadline, deleted.
    pub(crate) expired_deleted: u64,
    /// Records that did not decode, skipped.
    pub(crate) undecodable: u64,
    /// Index members that are not handles, skipped.
    pub(crate) malformed: u64,
}

impl<S: Store> SessionManager<S> {
    /// The live sessions of `user_id`, oldest first, with their data. Never includes an expired
    /// session; entries of sessions that are gone are removed from the index on the way.
    pub async fn list_user_sessions(&self, user_id: &str) -> Result<Vec<Session>> {
        self.bounded(
            "list_user_sessions",
            self.list_user_sessions_unbounded(user_id),
        )
        .await
    }

    /// The body of [`SessionManager::list_user_sessions`], without its deadline.
    async fn list_user_sessions_unbounded(&self, user_id: &str) -> Result<Vec<Session>> {
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
                let now = self.now_ms();
                match self.clean_index(&index, now, &mut report).await {
                    Ok(()) => {}
                    // One index we cannot read (a key name that is no valid escape, a key that is
                    // not a sorted set) must not stop the cleanup of everybody else.
                    Err(e @ (Error::InvalidInput(_) | Error::WrongType { .. })) => {
                        tracing::warn!(index = %index, error = %e, "unreadable session index skipped");
                        metrics::counter!(UNREADABLE_METRIC, "what" => "index").increment(1);
                        report.malformed_indexes_skipped += 1;
                    }
                    Err(e) => return Err(e),
                }
            }
            match page.next {
                Some(next) => cursor = next,
                None => break,
            }
        }
        tracing::info!(?report, "session index cleanup done");
        Ok(report)
    }

    /// Cleans one index key found by `cleanup`'s scan and adds what it found to `report`.
    async fn clean_index(&self, index: &str, now: i64, report: &mut CleanupReport) -> Result<()> {
        let store = &self.inner.store;
        let index = Key::new(index)?;
        let Some(user_id) = index_user(&index) else {
            return Ok(());
        };
        let user_id = user_id?;
        let found = store.zcard(&index).await?;
        let pruned = self.prune(&index, now).await?;
        let scan = self.scan_index(&index, &user_id, now).await?;
        report.indexes_scanned += 1;
        report.entries_found += found;
        report.expired_entries_removed += pruned;
        report.orphan_entries_removed += scan.orphans_removed;
        report.expired_sessions_deleted += scan.expired_deleted;
        report.entries_remaining += scan.live.len() as u64;
        report.undecodable_records_skipped += scan.undecodable;
        report.malformed_entries_skipped += scan.malformed;
        Ok(())
    }

    /// The handle an index member names; `None` for a member that is not a handle, which is logged
    /// and counted (`sessions_unreadable_total{what="index_member"}`) and left in place: it names
    /// no session this version can read, and may be a newer version's.
    pub(crate) fn index_member(&self, index: &Key, member: &str) -> Option<SessionHandle> {
        match SessionHandle::parse(member) {
            Ok(h) => Some(h),
            Err(_) => {
                tracing::warn!(index = %index, "malformed member in a session index, skipped");
                metrics::counter!(UNREADABLE_METRIC, "what" => "index_member").increment(1);
                None
            }
        }
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

    /// Reads every session the index names, removes entries of sessions that are gone, deletes
    /// sessions past their deadline (each only if unchanged since it was read), and returns the live
    /// ones.
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
            undecodable: 0,
            malformed: 0,
        };
        let mut missing: Vec<SessionHandle> = Vec::new();
        let mut expired: Vec<(SessionHandle, Record, Bytes)> = Vec::new();
        for chunk in entries.chunks(BATCH) {
            let mut handles = Vec::with_capacity(chunk.len());
            for (member, _) in chunk {
                match self.index_member(index, member) {
                    Some(h) => handles.push(h),
                    None => scan.malformed += 1,
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
                let record: Record = match codec::decode(&bytes) {
                    Ok(record) => record,
                    Err(e) => {
                        // Corrupt, or written by a newer version: skip it (one unreadable record
                        // must not deny the user listings, logins or cleanup) and leave it and its
                        // entry to its TTL. `revoke_all` still deletes it.
                        tracing::warn!(%handle, index = %index, error = %e, "undecodable session record skipped");
                        metrics::counter!(UNREADABLE_METRIC, "what" => "record").increment(1);
                        scan.undecodable += 1;
                        continue;
                    }
                };
                if record.user_id != user_id {
                    // Another user's session under this index (only a handle collision could do
                    // this): drop the entry, keep the session.
                    missing.push(handle);
                } else if record.is_expired_at(now) {
                    expired.push((handle, record, bytes));
                } else {
                    scan.live.push((handle, record));
                }
            }
        }
        // Sessions judged expired are deleted one by one, each only if it still holds the bytes
        // judged (a concurrent touch or extend on another instance may have revived it). Rare: the
        // store's TTL usually collects them first.
        for (handle, record, bytes) in expired {
            let key = session_key(&handle)?;
            match self
                .delete_judged_expired(&key, &bytes, user_id, &handle)
                .await?
            {
                Judged::Deleted => {
                    scan.expired_deleted += 1;
                    self.emit(SessionEvent::ExpiredOnAccess {
                        handle,
                        user_id: record.user_id,
                    });
                }
                Judged::Gone => scan.orphans_removed += 1,
                Judged::Changed(newer) => {
                    // Revived meanwhile: list it if it is live now; otherwise the next listing
                    // looks again.
                    if let Ok(rec) = codec::decode::<Record>(&newer) {
                        if rec.user_id == user_id && !rec.is_expired_at(now) {
                            scan.live.push((handle, rec));
                        }
                    }
                }
            }
        }
        if !missing.is_empty() {
            // Every entry in `missing` was visible before its record was found absent. An entry is
            // written only after its record (`insert_new`), and a record that is gone never comes
            // back (records are created only by `SET NX` under a fresh random handle; every other
            // write needs the key to exist), so these entries name sessions that are over: removing
            // them can never leave a live session without an entry, whatever runs concurrently and
            // even if this call is dropped half-way.
            for chunk in missing.chunks(BATCH) {
                let members: Vec<&str> = chunk.iter().map(SessionHandle::as_str).collect();
                scan.orphans_removed += store.zrem(index, &members).await?;
            }
        }
        Ok(scan)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use cache_core::SetOptions;
    use metrics::{
        Counter, CounterFn, Gauge, Histogram, Key as MetricKey, KeyName, Metadata, Recorder,
        SharedString, Unit,
    };

    use super::*;
    use crate::CreateOptions;

    /// Counts every counter increment by `name{labels}`.
    #[derive(Default)]
    struct Counts(Mutex<BTreeMap<String, Arc<AtomicU64>>>);

    struct One(Arc<AtomicU64>);

    impl CounterFn for One {
        fn increment(&self, n: u64) {
            self.0.fetch_add(n, Ordering::SeqCst);
        }
        fn absolute(&self, n: u64) {
            self.0.store(n, Ordering::SeqCst);
        }
    }

    impl Counts {
        fn get(&self, name: &str) -> u64 {
            self.0
                .lock()
                .unwrap()
                .get(name)
                .map_or(0, |c| c.load(Ordering::SeqCst))
        }
    }

    impl Recorder for Counts {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &MetricKey, _: &Metadata<'_>) -> Counter {
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            let cell = Arc::clone(self.0.lock().unwrap().entry(name).or_default());
            Counter::from_arc(Arc::new(One(cell)))
        }
        fn register_gauge(&self, _: &MetricKey, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, _: &MetricKey, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    /// Issue 12, item 6: what the listing skips is counted through the `metrics` facade.
    #[test]
    fn skipped_records_and_members_are_counted_in_metrics() {
        let counts = Counts::default();
        metrics::with_local_recorder(&counts, || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            rt.block_on(async {
                let store = cache_memory::MemoryStore::default();
                let m = SessionManager::new(store.clone());
                m.create("u", CreateOptions::new()).await.unwrap();
                let bad = crate::SessionToken::generate().unwrap();
                let index = index_key("u").unwrap();
                store
                    .set(
                        &session_key(bad.handle()).unwrap(),
                        b"garbage",
                        SetOptions::new(),
                    )
                    .await
                    .unwrap();
                store
                    .zadd(&index, bad.handle().as_str(), 1e15)
                    .await
                    .unwrap();
                store.zadd(&index, "not-a-handle", 1e15).await.unwrap();
                assert_eq!(m.list_user_sessions("u").await.unwrap().len(), 1);
            });
        });
        assert_eq!(counts.get("sessions_unreadable_total{what=record}"), 1);
        assert_eq!(
            counts.get("sessions_unreadable_total{what=index_member}"),
            1
        );
    }
}
