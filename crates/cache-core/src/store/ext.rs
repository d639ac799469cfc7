//! [`StoreExt`]: conveniences built on [`Store`] alone (whole scans, pattern deletes and counts),
//! available on every store.

use async_trait::async_trait;

use super::{ScanCursor, Store};
use crate::error::Result;

/// What [`StoreExt::delete_matching_where`] did (or, from [`StoreExt::count_matching_where`], would
/// do).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Selected {
    /// Keys deleted (counted, for a dry run).
    pub deleted: u64,
    /// Matching keys the selection left alone.
    pub passed_over: u64,
}

/// Conveniences built on [`Store`] alone, available on every store (blanket impl).
#[async_trait]
pub trait StoreExt: Store {
    /// Runs a whole scan and collects the keys (deduplicated, sorted). For large keyspaces prefer
    /// [`StoreExt::delete_matching`] or drive [`Store::scan`] yourself.
    async fn scan_all(&self, pattern: &str, count: u32) -> Result<Vec<String>> {
        let mut keys = std::collections::BTreeSet::new();
        let mut cursor = ScanCursor::start();
        loop {
            let page = self.scan(pattern, cursor, count).await?;
            keys.extend(page.keys);
            match page.next {
                Some(next) => cursor = next,
                None => break,
            }
        }
        Ok(keys.into_iter().collect())
    }

    /// Deletes every key matching `pattern` (relative glob) in batches: scan with `count`, `UNLINK`
    /// each batch as it arrives. `progress` is called after each batch with the running totals
    /// `(scanned, deleted)`. Returns the number of keys deleted. Keys written during the run may
    /// survive; the call is not atomic.
    async fn delete_matching(
        &self,
        pattern: &str,
        count: u32,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<u64> {
        let all = |_: &str| true;
        Ok(self
            .delete_matching_where(pattern, count, &all, progress)
            .await?
            .deleted)
    }

    /// [`StoreExt::delete_matching`] of only the matching keys `select` accepts (the others are
    /// counted and left alone), e.g. to keep another component's keys out of a broad pattern.
    async fn delete_matching_where(
        &self,
        pattern: &str,
        count: u32,
        select: &(dyn for<'k> Fn(&'k str) -> bool + Send + Sync),
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<Selected> {
        let mut out = Selected::default();
        let mut scanned = 0u64;
        let mut cursor = ScanCursor::start();
        loop {
            let page = self.scan(pattern, cursor, count).await?;
            if !page.keys.is_empty() {
                scanned += page.keys.len() as u64;
                let refs: Vec<&str> = page
                    .keys
                    .iter()
                    .map(String::as_str)
                    .filter(|k| select(k))
                    .collect();
                out.passed_over += (page.keys.len() - refs.len()) as u64;
                if !refs.is_empty() {
                    out.deleted += self.delete(&refs).await?;
                }
                progress(scanned, out.deleted);
            }
            match page.next {
                Some(next) => cursor = next,
                None => break,
            }
        }
        Ok(out)
    }

    /// Counts the matching keys `select` accepts and those it does not, deleting nothing (a dry run
    /// of [`StoreExt::delete_matching_where`]).
    async fn count_matching_where(
        &self,
        pattern: &str,
        count: u32,
        select: &(dyn for<'k> Fn(&'k str) -> bool + Send + Sync),
    ) -> Result<Selected> {
        let keys = self.scan_all(pattern, count).await?;
        let accepted = keys.iter().filter(|k| select(k)).count() as u64;
        Ok(Selected {
            deleted: accepted,
            passed_over: keys.len() as u64 - accepted,
        })
    }

    /// Counts the keys matching `pattern` without deleting them (a dry run of
    /// [`StoreExt::delete_matching`]).
    async fn count_matching(&self, pattern: &str, count: u32) -> Result<u64> {
        Ok(self.scan_all(pattern, count).await?.len() as u64)
    }
}

impl<S: Store + ?Sized> StoreExt for S {}
