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
        for (name, help) in [
            ("session_layer_logins_total", "Sessions created by a login."),
            (
                "session_layer_logins_rejected_total",
                "Logins refused by the per-user session limit.",
            ),
            ("session_layer_logouts_total", "Logouts, by scope."),
            (
                "session_layer_unavailable_total",
                "Session operations failed closed because the store could not answer.",
            ),
            (
                "session_layer_rejected_tokens_total",
                "Malformed tokens and undecodable records treated as no session.",
            ),
        ] {
            metrics::describe_counter!(name, metrics::Unit::Count, help);
        }
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
