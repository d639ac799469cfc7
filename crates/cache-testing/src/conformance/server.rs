//! What the backend says about itself: `ping`, `stats`, and whether it reports key changes
//! (`track_changes`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cache_core::tracking::InvalidationListener;
use cache_core::{Error, SetOptions, Store};

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

/// `track_changes` does what [`Capabilities::tracks_changes`] says: the backend registers the
/// listener, which hears `tracking_ready` and then the change of a key under its prefix (waits
/// are bounded by 20 s, for a loaded machine), or it answers [`Error::Unsupported`] (the default of
/// the trait: no near cache on this backend). Any other answer fails.
pub async fn check_track_changes(store: &dyn Store, caps: &Capabilities) {
    let ns = namespace("track_changes");
    let prefix = format!("{ns}:");
    let key = format!("{ns}:k");
    let heard = Arc::new(Heard::default());
    let listener: Arc<dyn InvalidationListener> = heard.clone();
    let answer = store
        .track_changes(&prefix, Arc::downgrade(&listener))
        .await;
    match (caps.tracks_changes, answer) {
        (false, Err(Error::Unsupported(_))) => return,
        (false, other) => panic!(
            "track_changes: declared without change tracking, expected Error::Unsupported, got \
             {other:?}"
        ),
        (true, Err(e)) => panic!("track_changes: declared with change tracking, got {e} ({e:?})"),
        (true, Ok(())) => {}
    }
    wait_for("tracking_ready", || heard.ready()).await;
    assert!(set(store, &key, b"v", SetOptions::new()).await);
    wait_for("the change of the key", || heard.saw(&key)).await;
    drop(listener);
    cleanup(store, &ns).await;
}

/// What a [`check_track_changes`] listener heard.
#[derive(Debug, Default)]
struct Heard {
    keys: Mutex<Vec<String>>,
    ready: Mutex<bool>,
}

impl Heard {
    fn ready(&self) -> bool {
        self.ready.lock().map(|r| *r).unwrap_or(false)
    }
    fn saw(&self, key: &str) -> bool {
        self.keys
            .lock()
            .map(|k| k.iter().any(|k| k == key))
            .unwrap_or(false)
    }
}

impl InvalidationListener for Heard {
    fn invalidate(&self, key: &str) {
        if let Ok(mut keys) = self.keys.lock() {
            keys.push(key.to_owned());
        }
    }
    fn flush(&self) {}
    fn tracking_lost(&self) {
        if let Ok(mut ready) = self.ready.lock() {
            *ready = false;
        }
    }
    fn tracking_ready(&self) {
        if let Ok(mut ready) = self.ready.lock() {
            *ready = true;
        }
    }
}

/// Polls `cond` every millisecond until it holds; fails after 20 s of real time.
async fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "track_changes: never saw {what}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
