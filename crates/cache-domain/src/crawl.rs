//! The status of a crawl task (seed requirement 3.4): state, progress and error details, and its
//! read-modify-write update as the task advances
//! ([`CacheManager::update_crawl_status`](crate::CacheManager::update_crawl_status)), on
//! [`cache_core::cas::update`] like every read-modify-write in the system.
//!
//! ```
//! use cache_domain::{CrawlError, CrawlState, CrawlStatus};
//! let mut s = CrawlStatus::new("task-1");
//! s.start(Some(200));
//! s.advance(50);
//! s.record_error(CrawlError::new("r/rust: HTTP 429").with_item("r/rust").retryable());
//! assert_eq!(s.state, CrawlState::Running);
//! assert_eq!(s.progress(), Some(0.25));
//! assert_eq!(s.error_count, 1);
//! s.complete();
//! assert!(s.is_finished());
//! ```

use cache_core::cas::{self, Decision};
use cache_core::{codec, ErrorKind, Expiry, Result, Store};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::engine::Inner;
use crate::family::{data_key, Family};

/// How many error details a status keeps (the newest); [`CrawlStatus::error_count`] counts them
/// all. Keeps a status small however many items fail.
pub const MAX_ERROR_DETAILS: usize = 20;

/// Where a crawl task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CrawlState {
    /// Queued, not started.
    #[default]
    Pending,
    /// Running.
    Running,
    /// Finished successfully (possibly with some item errors).
    Completed,
    /// Finished with a failure.
    Failed,
    /// Stopped before the end on request.
    Cancelled,
}

impl CrawlState {
    /// Whether the task has ended (completed, failed or cancelled).
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            CrawlState::Completed | CrawlState::Failed | CrawlState::Cancelled
        )
    }
}

/// One error a crawl task met.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CrawlError {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What went wrong.
    pub message: String,
    /// The item concerned (a URL, a subreddit, a post id), when there is one.
    #[serde(default)]
    pub item: Option<String>,
    /// Whether retrying the item may succeed.
    #[serde(default)]
    pub retryable: bool,
}

impl CrawlError {
    /// An error happening now.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            at: Utc::now(),
            message: message.into(),
            item: None,
            retryable: false,
        }
    }

    /// Names the item concerned.
    pub fn with_item(mut self, item: impl Into<String>) -> Self {
        self.item = Some(item.into());
        self
    }

    /// Marks the error as worth retrying.
    pub fn retryable(mut self) -> Self {
        self.retryable = true;
        self
    }
}

/// The cached status of a crawl task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CrawlStatus {
    /// The task's id.
    pub task_id: String,
    /// Where the task is.
    pub state: CrawlState,
    /// Items processed so far.
    #[serde(default)]
    pub processed: u64,
    /// Items in all, when known.
    #[serde(default)]
    pub total: Option<u64>,
    /// A human-readable note on the current step (or the failure).
    #[serde(default)]
    pub message: Option<String>,
    /// The newest error details, at most [`MAX_ERROR_DETAILS`].
    #[serde(default)]
    pub errors: Vec<CrawlError>,
    /// How many errors were recorded in all.
    #[serde(default)]
    pub error_count: u64,
    /// When the status was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When the task ended.
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
}

impl CrawlStatus {
    /// A pending task.
    pub fn new(task_id: impl Into<String>) -> Self {
        let now = Utc::now();
        Self {
            task_id: task_id.into(),
            state: CrawlState::Pending,
            processed: 0,
            total: None,
            message: None,
            errors: Vec::new(),
            error_count: 0,
            created_at: now,
            updated_at: now,
            finished_at: None,
        }
    }

    /// Marks the task running, with the number of items when known.
    pub fn start(&mut self, total: Option<u64>) {
        self.state = CrawlState::Running;
        self.total = total;
        self.touch();
    }

    /// Counts `n` more items processed.
    pub fn advance(&mut self, n: u64) {
        self.processed = self.processed.saturating_add(n);
        self.touch();
    }

    /// Sets the progress outright.
    pub fn set_progress(&mut self, processed: u64, total: Option<u64>) {
        self.processed = processed;
        self.total = total;
        self.touch();
    }

    /// Sets the note on the current step.
    pub fn set_message(&mut self, message: impl Into<String>) {
        self.message = Some(message.into());
        self.touch();
    }

    /// Records an error detail (keeping the newest [`MAX_ERROR_DETAILS`]).
    pub fn record_error(&mut self, error: CrawlError) {
        self.error_count += 1;
        self.errors.push(error);
        if self.errors.len() > MAX_ERROR_DETAILS {
            let excess = self.errors.len() - MAX_ERROR_DETAILS;
            self.errors.drain(..excess);
        }
        self.touch();
    }

    /// Marks the task completed.
    pub fn complete(&mut self) {
        self.finish(CrawlState::Completed);
    }

    /// Marks the task failed with a message (also recorded as an error detail).
    pub fn fail(&mut self, message: impl Into<String>) {
        let message = message.into();
        self.message = Some(message.clone());
        self.record_error(CrawlError::new(message));
        self.finish(CrawlState::Failed);
    }

    /// Marks the task cancelled.
    pub fn cancel(&mut self) {
        self.finish(CrawlState::Cancelled);
    }

    /// `processed / total` in `0.0..=1.0`, when the total is known and non-zero.
    pub fn progress(&self) -> Option<f64> {
        match self.total {
            Some(t) if t > 0 => Some((self.processed as f64 / t as f64).min(1.0)),
            _ => None,
        }
    }

    /// Whether the task has ended.
    pub fn is_finished(&self) -> bool {
        self.state.is_finished()
    }

    fn finish(&mut self, state: CrawlState) {
        self.state = state;
        let now = Utc::now();
        self.finished_at = Some(now);
        self.updated_at = now;
    }

    fn touch(&mut self) {
        self.updated_at = Utc::now();
    }
}

impl<S: Store> Inner<S> {
    /// See [`CacheManager::update_crawl_status`](crate::CacheManager::update_crawl_status).
    ///
    /// The read-modify-write is [`cache_core::cas::update`] with the manager's policy (bounded
    /// attempts, jittered backoff, striped per-process lock), the same helper session updates use.
    pub(crate) async fn update_crawl_status<F>(
        &self,
        task_id: &str,
        mut update: F,
    ) -> Result<CrawlStatus>
    where
        F: FnMut(&mut CrawlStatus) + Send,
    {
        let family = Family::CrawlStatus;
        let id = family.parse_id(task_id)?;
        let fs = self.fs(family);
        let ttl = self.config.ttl(family);
        let v = self
            .version(fs)
            .await
            .inspect_err(|e| self.store_failed(fs, "read namespace version", e))?;
        let key = data_key(family, v, id)?;
        // Whether the error that ends the update came from deciding (already reported) rather than
        // from the store.
        let mut refused = false;
        let result = cas::update(&self.store, &key, &self.cas, |current| {
            let mut status = match current.map(codec::decode::<CrawlStatus>) {
                Some(Ok(s)) => s,
                // A status in a format version this build does not read is another build's
                // progress, not garbage: refuse to overwrite it (the caller learns why).
                Some(Err(e)) if e.kind() == ErrorKind::UnknownFormatVersion => {
                    self.note_unknown_version(fs, &key, &e);
                    refused = true;
                    return Err(e);
                }
                Some(Err(e)) => {
                    self.note_decode_failure(fs, &key, &e);
                    CrawlStatus::new(task_id)
                }
                None => CrawlStatus::new(task_id),
            };
            update(&mut status);
            let value = codec::encode(&status).inspect_err(|_| refused = true)?;
            Ok(Decision::Write {
                value,
                expiry: Expiry::In(ttl),
                output: status,
            })
        })
        .await;
        // The family's near copy (if it has a near cache) goes before this returns, whatever the
        // answer: read-your-writes here.
        self.near_forget(family, [key.as_str()]);
        match result {
            Ok(status) => {
                fs.stats.writes.inc();
                Ok(status)
            }
            Err(e) => {
                if !refused {
                    self.store_failed(fs, "update", &e);
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_and_bounded_errors() {
        let mut s = CrawlStatus::new("t");
        assert_eq!(s.progress(), None);
        s.start(Some(10));
        s.advance(20);
        assert_eq!(s.progress(), Some(1.0));
        for i in 0..30 {
            s.record_error(CrawlError::new(format!("e{i}")));
        }
        assert_eq!(s.errors.len(), MAX_ERROR_DETAILS);
        assert_eq!(s.error_count, 30);
        assert_eq!(s.errors.last().unwrap().message, "e29");
        s.fail("boom");
        assert_eq!(s.state, CrawlState::Failed);
        assert_eq!(s.error_count, 31);
        assert!(s.finished_at.is_some());
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains(r#""state":"failed""#), "{json}");
        let back: CrawlStatus = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
    }
}
