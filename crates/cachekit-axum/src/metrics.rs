//! Counters of the layer, through the `metrics` facade (any exporter publishes them; without a
//! recorder they cost nothing):
//!
//! | counter | labels | counts |
//! |---|---|---|
//! | `session_layer_logins_total` | | sessions created by [`crate::SessionContext::login`] |
//! | `session_layer_logins_rejected_total` | | logins refused by the per-user limit |
//! | `session_layer_logouts_total` | `scope` = `session`, `everywhere`, `others` | logouts |
//! | `session_layer_unavailable_total` | | requests failed closed because the store could not answer |
//! | `session_layer_rejected_tokens_total` | | malformed tokens and undecodable records treated as "no session" |

use std::sync::Once;

fn describe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        use metrics::{describe_counter, Unit};
        describe_counter!(
            "session_layer_logins_total",
            Unit::Count,
            "Sessions created by a login."
        );
        describe_counter!(
            "session_layer_logins_rejected_total",
            Unit::Count,
            "Logins refused by the per-user session limit."
        );
        describe_counter!(
            "session_layer_logouts_total",
            Unit::Count,
            "Logouts, by scope."
        );
        describe_counter!(
            "session_layer_unavailable_total",
            Unit::Count,
            "Session operations failed closed because the store could not answer."
        );
        describe_counter!(
            "session_layer_rejected_tokens_total",
            Unit::Count,
            "Malformed tokens and undecodable records treated as no session."
        );
    });
}

pub(crate) fn login() {
    describe();
    metrics::counter!("session_layer_logins_total").increment(1);
}

pub(crate) fn login_rejected() {
    describe();
    metrics::counter!("session_layer_logins_rejected_total").increment(1);
}

pub(crate) fn logout(scope: &'static str) {
    describe();
    metrics::counter!("session_layer_logouts_total", "scope" => scope).increment(1);
}

pub(crate) fn unavailable() {
    describe();
    metrics::counter!("session_layer_unavailable_total").increment(1);
}

pub(crate) fn rejected_token() {
    describe();
    metrics::counter!("session_layer_rejected_tokens_total").increment(1);
}
