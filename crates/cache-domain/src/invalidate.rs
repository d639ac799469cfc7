//! Invalidation: by id (one `UNLINK` for any number of ids, across families), and by selection
//! ([`KeyMatch`]) with `SCAN` + `UNLINK` in batches, never `KEYS`.
//!
//! Invalidation reads the namespace versions fresh from the store, so it deletes the live keys even
//! when this process has not followed another process's version bump yet, and it always returns
//! store errors: a silently failed invalidation would serve stale data. Whole-family invalidation
//! in O(1) is a version bump ([`crate::versions`]).

use cache_core::{Result, Store, StoreExt};

use crate::engine::Inner;
use crate::family::{data_key, pattern, selects, Family, Id, KeyMatch};

impl<S: Store> Inner<S> {
    /// Deletes the keys of these ids under their families' current versions, read fresh, in one
    /// `UNLINK`; how many existed.
    pub(crate) async fn invalidate_ids(&self, items: &[(Family, Id<'_>)]) -> Result<u64> {
        if items.is_empty() {
            return Ok(0);
        }
        let mut families: Vec<Family> = items.iter().map(|(f, _)| *f).collect();
        families.sort_unstable();
        families.dedup();
        let versions = self.fresh_versions(&families).await?;
        let keys = items
            .iter()
            .map(|(f, id)| {
                // Invariant: every family of `items` is in `families` (built from them above).
                let v = families.binary_search(f).map(|i| versions[i]).unwrap_or(0);
                data_key(*f, v, *id)
            })
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&str> = keys.iter().map(|k| k.as_str()).collect();
        let deleted = self.store.delete(&refs).await;
        for ((family, _), key) in items.iter().zip(&refs) {
            self.near_forget(*family, [*key]);
        }
        deleted
    }

    /// The `SCAN` pattern of `selection` and the version it selects, read fresh when it matters.
    async fn selection_pattern(
        &self,
        family: Family,
        selection: &KeyMatch,
    ) -> Result<(String, u64)> {
        let version = match selection {
            KeyMatch::All => 0,
            _ => self.fresh_versions(&[family]).await?[0],
        };
        Ok((pattern(family, selection, version)?, version))
    }

    /// Deletes the keys `selection` names, calling `progress(scanned, deleted)` after each batch;
    /// how many were deleted.
    pub(crate) async fn invalidate_matching(
        &self,
        family: Family,
        selection: &KeyMatch,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<u64> {
        let (pattern, version) = self.selection_pattern(family, selection).await?;
        let select = |key: &str| selects(family, selection, version, key);
        let deleted = self
            .store
            .delete_matching_where(&pattern, self.config.scan_count(), &select, progress)
            .await
            .map(|done| done.deleted);
        // Which near copies the pattern covered is not known here: the family's near cache is
        // emptied before this returns (the server's invalidations reach the other instances).
        self.near_flush(family);
        let deleted = deleted?;
        tracing::debug!(family = family.name(), %pattern, deleted, "pattern invalidation");
        Ok(deleted)
    }

    /// Counts the keys `selection` names (what [`Inner::invalidate_matching`] would delete now).
    pub(crate) async fn count_matching(&self, family: Family, selection: &KeyMatch) -> Result<u64> {
        let (pattern, version) = self.selection_pattern(family, selection).await?;
        let select = |key: &str| selects(family, selection, version, key);
        Ok(self
            .store
            .count_matching_where(&pattern, self.config.scan_count(), &select)
            .await?
            .deleted)
    }
}
