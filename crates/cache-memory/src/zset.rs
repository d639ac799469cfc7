//! Sorted sets of the memory store: members by name and by (score, name), with their byte size.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};

/// Bytes counted for a sorted-set member besides its name (the score).
const MEMBER_OVERHEAD: usize = 8;

/// A sorted-set score. Scores are never NaN (rejected on input), which makes the order total;
/// `-0.0` and `0.0` compare equal, as in Redis.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Score(pub(crate) f64);

impl PartialEq for Score {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Score {}
impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Score {
    fn cmp(&self, other: &Self) -> Ordering {
        // NaN never gets in (checked by every method taking a score), so `partial_cmp` is total here.
        self.0.partial_cmp(&other.0).unwrap_or(Ordering::Equal)
    }
}

/// A sorted set: members by name and by (score, name).
#[derive(Debug, Clone, Default)]
pub(crate) struct ZSet {
    scores: HashMap<String, f64>,
    ordered: BTreeSet<(Score, String)>,
    /// Member names plus [`MEMBER_OVERHEAD`] each, kept up to date.
    bytes: usize,
}

impl ZSet {
    /// Adds or updates a member; returns whether it is new.
    pub(crate) fn insert(&mut self, member: &str, score: f64) -> bool {
        match self.scores.get_mut(member) {
            Some(old) => {
                if old.to_bits() != score.to_bits() {
                    self.ordered.remove(&(Score(*old), member.to_owned()));
                    self.ordered.insert((Score(score), member.to_owned()));
                    *old = score;
                }
                false
            }
            None => {
                self.scores.insert(member.to_owned(), score);
                self.ordered.insert((Score(score), member.to_owned()));
                self.bytes += member.len() + MEMBER_OVERHEAD;
                true
            }
        }
    }

    /// Removes a member; returns whether it was present.
    pub(crate) fn remove(&mut self, member: &str) -> bool {
        match self.scores.remove(member) {
            Some(score) => {
                self.ordered.remove(&(Score(score), member.to_owned()));
                self.bytes -= member.len() + MEMBER_OVERHEAD;
                true
            }
            None => false,
        }
    }

    pub(crate) fn contains(&self, member: &str) -> bool {
        self.scores.contains_key(member)
    }

    /// Members with `min <= score <= max` in order, at most `limit`.
    pub(crate) fn range(&self, min: f64, max: f64, limit: usize) -> Vec<(String, f64)> {
        if min > max {
            return Vec::new();
        }
        self.ordered
            .range((Score(min), String::new())..)
            .take_while(|(s, _)| s.0 <= max)
            .take(limit)
            .map(|(s, m)| (m.clone(), s.0))
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.scores.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    /// Bytes counted for this set: member names plus a score each.
    pub(crate) fn size(&self) -> usize {
        self.bytes
    }

    /// The size after adding `member` (unchanged if it is present).
    pub(crate) fn size_with(&self, member: &str) -> usize {
        if self.contains(member) {
            self.bytes
        } else {
            self.bytes + member.len() + MEMBER_OVERHEAD
        }
    }
}
