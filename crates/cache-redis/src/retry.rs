//! The retry policy: what may be repeated ([`Idempotency`]), the backoff (exponential with full
//! jitter), and the single decision whether a failed attempt is followed by another ([`retry_delay`]).
//!
//! The rule is in the [crate documentation](crate#retries): any call whose command was never sent
//! may be retried; after it may have reached the server, only a call whose effect and answer are the
//! same the second time. The call runner (`call.rs`) asks [`retry_delay`] after every failed
//! attempt; nothing else decides.

use std::time::Duration;

use cache_core::Error;

use crate::config::RetryConfig;

/// Whether a call may be repeated after its command may have reached the server.
///
/// The rule: repeat only when both the effect and the returned value are the same the second time.
/// Any call may be retried when it failed before its command was sent (no connection could be had).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idempotency {
    /// Reads, unconditional writes with a fixed value, TTL settings whose answer does not change.
    Repeatable,
    /// Counters, compare-and-swap, conditional writes, and commands whose answer would change
    /// (`UNLINK` counts, `ZADD` "new member"): retried only if the command was never sent.
    Once,
}

/// One failed attempt of a call, as the retry decision sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Failed<'a> {
    /// The mapped error.
    pub(crate) error: &'a Error,
    /// The attempt's number, 1-based.
    pub(crate) attempt: u32,
    /// Whether the command may have reached the server (false: no connection could be had).
    pub(crate) sent: bool,
    /// Whether the call may be repeated once sent.
    pub(crate) idempotency: Idempotency,
    /// Time since the call started.
    pub(crate) elapsed: Duration,
    /// For an attempt that was not sent: how long until the earliest empty slot may reconnect.
    /// Retrying before then would only replay the slot's last error.
    pub(crate) reconnect_in: Option<Duration>,
}

/// Whether a failed attempt is followed by another, and after how long: only for a transient error,
/// only when the command was not sent or repeating it is harmless, only while attempts are left, and
/// only when the next attempt still starts within the budget. `None`: give up with this error.
pub(crate) fn retry_delay(policy: &RetryConfig, failed: Failed<'_>) -> Option<Duration> {
    let may_repeat = !failed.sent || failed.idempotency == Idempotency::Repeatable;
    if !(failed.error.is_transient() && may_repeat && failed.attempt < policy.max_attempts) {
        return None;
    }
    let mut delay = full_jitter(policy, failed.attempt);
    if !failed.sent {
        // Every slot may be in its reconnect backoff (failing fast with the last error): wait until
        // the earliest may reconnect when that fits in the budget, so a server that just came back
        // is reached at once.
        if let Some(wait) = failed.reconnect_in {
            delay = delay.max(wait);
        }
    }
    if failed.elapsed + delay >= policy.budget {
        return None;
    }
    Some(delay)
}

/// The backoff ceiling of attempt `n` (1-based): `base * 2^(n-1)`, at most `max_delay`. Also the
/// reconnect backoff of a slot after `n` failed reconnects.
pub(crate) fn backoff_ceiling(retry: &RetryConfig, n: u32) -> Duration {
    let factor = 1u32
        .checked_shl(n.saturating_sub(1).min(16))
        .unwrap_or(u32::MAX);
    retry.base_delay.saturating_mul(factor).min(retry.max_delay)
}

/// Exponential backoff with full jitter: uniform in `[0, ceiling]`.
fn full_jitter(retry: &RetryConfig, attempt: u32) -> Duration {
    let ceiling = backoff_ceiling(retry, attempt);
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(rand::random_range(0..=nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_max_and_jitter_stays_below() {
        let retry = RetryConfig::default();
        assert_eq!(backoff_ceiling(&retry, 1), Duration::from_millis(20));
        assert_eq!(backoff_ceiling(&retry, 2), Duration::from_millis(40));
        assert_eq!(backoff_ceiling(&retry, 3), Duration::from_millis(80));
        assert_eq!(backoff_ceiling(&retry, 10), Duration::from_millis(200));
        assert_eq!(
            backoff_ceiling(&retry, u32::MAX),
            Duration::from_millis(200)
        );
        for attempt in 1..6 {
            assert!(full_jitter(&retry, attempt) <= backoff_ceiling(&retry, attempt));
        }
    }

    fn transient() -> Error {
        Error::Timeout {
            operation: "GET".into(),
            elapsed: Duration::ZERO,
            setting: "REDIS_RESPONSE_TIMEOUT",
        }
    }

    fn failed(error: &Error, sent: bool, idempotency: Idempotency) -> Failed<'_> {
        Failed {
            error,
            attempt: 1,
            sent,
            idempotency,
            elapsed: Duration::ZERO,
            reconnect_in: None,
        }
    }

    #[test]
    fn only_transient_errors_of_repeatable_or_unsent_calls_are_retried() {
        let policy = RetryConfig::default();
        let (t, permanent) = (transient(), Error::invalid_input("bad"));
        let retried = |f: Failed<'_>| retry_delay(&policy, f).is_some();
        assert!(retried(failed(&t, true, Idempotency::Repeatable)));
        assert!(retried(failed(&t, false, Idempotency::Once)));
        assert!(!retried(failed(&t, true, Idempotency::Once)));
        assert!(!retried(failed(&permanent, false, Idempotency::Repeatable)));
    }

    #[test]
    fn attempts_and_budget_bound_the_retries() {
        let policy = RetryConfig::default().with_max_attempts(3);
        let t = transient();
        let base = failed(&t, true, Idempotency::Repeatable);
        let at = |attempt| retry_delay(&policy, Failed { attempt, ..base });
        assert!(at(2).is_some());
        assert!(at(3).is_none(), "the third attempt was the last");
        assert!(retry_delay(&RetryConfig::none(), base).is_none());
        let late = Failed {
            elapsed: policy.budget,
            ..base
        };
        assert!(retry_delay(&policy, late).is_none(), "budget spent");
    }

    #[test]
    fn an_unsent_attempt_waits_for_the_earliest_reconnect() {
        let policy = RetryConfig::default();
        let t = transient();
        let wait = Duration::from_millis(300);
        let unsent = Failed {
            reconnect_in: Some(wait),
            ..failed(&t, false, Idempotency::Once)
        };
        assert_eq!(retry_delay(&policy, unsent), Some(wait));
        let sent = Failed {
            reconnect_in: Some(wait),
            ..failed(&t, true, Idempotency::Repeatable)
        };
        assert!(retry_delay(&policy, sent).is_some_and(|d| d < wait));
        let too_late = Failed {
            reconnect_in: Some(policy.budget),
            ..unsent
        };
        assert!(retry_delay(&policy, too_late).is_none());
    }
}
