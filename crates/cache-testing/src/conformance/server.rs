//! What the backend says about itself: `ping` and `stats`.

use std::time::Duration;

use cache_core::Store;

use super::support::*;
use super::Capabilities;

/// `PING` answers.
pub async fn check_ping(store: &dyn Store) {
    let rtt = must(store.ping().await, "ping");
    assert!(rtt < Duration::from_secs(60), "ping took {rtt:?}");
}

/// `stats` reports as [`Capabilities::reports_stats`] says.
pub async fn check_stats(store: &dyn Store, caps: &Capabilities) {
    let stats = must(store.stats().await, "stats");
    match (caps.reports_stats, stats) {
        (true, Some(stats)) => assert_eq!(
            stats.backend,
            store.backend_name(),
            "stats.backend must be the backend name"
        ),
        (true, None) => panic!("stats: the backend declares statistics but returned None"),
        (false, None) => {}
        (false, Some(s)) => panic!("stats: declared without statistics but returned {s:?}"),
    }
}
