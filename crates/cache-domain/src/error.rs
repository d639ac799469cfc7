//! The error of the cache-aside calls ([`FamilyCache::get_or_load`](crate::FamilyCache::get_or_load)
//! and friends): either the caller's loader failed, or the cache refused the call itself.

use std::fmt;
use std::sync::Arc;

/// Why a `get_or_load` call failed.
///
/// Store outages are *not* in here under the default [`WritePolicy`](crate::WritePolicy): a read
/// error is a miss (the loader runs) and a write error is logged and counted.
#[derive(Debug)]
#[non_exhaustive]
pub enum LoadError<E> {
    /// The loader returned an error. It is shared with every caller that waited for the same load
    /// (hence the `Arc`), and it is not cached: the next call runs the loader again.
    Loader(Arc<E>),
    /// The cache refused the call: invalid input (an empty or too long id, a session family), a
    /// value that cannot be encoded, or a store error on write under
    /// [`WritePolicy::Propagate`](crate::WritePolicy::Propagate).
    Cache(cache_core::Error),
}

impl<E> LoadError<E> {
    /// The loader's error, when that is what failed.
    pub fn loader_error(&self) -> Option<&E> {
        match self {
            LoadError::Loader(e) => Some(e),
            LoadError::Cache(_) => None,
        }
    }

    /// The cache's error, when that is what failed.
    pub fn cache_error(&self) -> Option<&cache_core::Error> {
        match self {
            LoadError::Cache(e) => Some(e),
            LoadError::Loader(_) => None,
        }
    }
}

impl<E> From<cache_core::Error> for LoadError<E> {
    fn from(e: cache_core::Error) -> Self {
        LoadError::Cache(e)
    }
}

impl<E: fmt::Display> fmt::Display for LoadError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Loader(e) => write!(f, "loader failed: {e}"),
            LoadError::Cache(e) => write!(f, "cache: {e}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for LoadError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Loader(e) => Some(&**e),
            LoadError::Cache(e) => Some(e),
        }
    }
}
