//! Unit tests of the fleet heartbeat on the in-memory store, under tokio's paused clock (the
//! in-memory store expires keys on that clock, so TTLs pass without sleeping).

use std::time::Duration;

use super::*;

fn lookup(value: Option<&'static str>) -> impl Fn(&str) -> Option<String> {
    move |name| {
        (name == HEARTBEAT_ENV)
            .then_some(value)
            .flatten()
            .map(str::to_owned)
    }
}

#[test]
fn the_environment_turns_the_heartbeat_on_with_its_interval() {
    assert_eq!(FleetConfig::from_lookup(lookup(None)).unwrap(), None);
    for off in ["", "off", "OFF", "false", "0"] {
        let leaked: &'static str = Box::leak(off.to_owned().into_boxed_str());
        assert_eq!(
            FleetConfig::from_lookup(lookup(Some(leaked))).unwrap(),
            None,
            "{off:?}"
        );
    }
    let on = FleetConfig::from_lookup(lookup(Some("5s")))
        .unwrap()
        .unwrap();
    assert_eq!(on.interval, Duration::from_secs(5));
    assert_eq!(on.ttl, Duration::from_secs(15));
    assert!(on
        .instance_id
        .ends_with(&format!("-{}", std::process::id())));

    let err = FleetConfig::from_lookup(lookup(Some("soon"))).unwrap_err();
    assert_eq!(err.kind(), cache_core::ErrorKind::Config);
    assert!(err.to_string().contains(HEARTBEAT_ENV), "{err}");
}

#[test]
fn a_ttl_that_does_not_outlive_the_interval_is_refused() {
    let c = FleetConfig::new(Duration::from_secs(5)).with_ttl(Duration::from_secs(5));
    let err = c.validate().unwrap_err();
    assert!(
        err.to_string().contains("longer than its interval"),
        "{err}"
    );
    assert!(FleetConfig::new(Duration::ZERO).validate().is_err());
    assert!(FleetConfig::new(Duration::from_secs(1))
        .with_instance_id("")
        .validate()
        .is_err());
}

#[test]
fn instance_ids_are_escaped_in_the_key() {
    assert_eq!(instance_key("web-1").unwrap(), "fleet:web-1");
    assert_eq!(instance_key("a:b*").unwrap(), "fleet:a%3Ab%2A");
}

#[cfg(feature = "memory")]
mod memory {
    use super::*;
    use crate::{CacheManager, Config};

    async fn instance(id: &str, store: DynStore) -> (Fleet, CacheManager<DynStore>) {
        let fleet = Fleet::wrap(
            store,
            Some(
                FleetConfig::new(Duration::from_secs(1))
                    .with_ttl(Duration::from_secs(3))
                    .with_instance_id(id),
            ),
        );
        let cache = crate::cache_manager(fleet.store(), &memory_config()).unwrap();
        (fleet, cache)
    }

    fn memory_config() -> Config {
        Config::builder()
            .memory()
            .key_prefix("fleet-test")
            .build()
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn off_means_no_instrumentation_and_no_heartbeat() {
        let fleet = Fleet::connect_with(&memory_config(), None).await.unwrap();
        assert!(fleet.config().is_none());
        assert!(fleet.call_stats().is_none());
        assert!(fleet.start().await.unwrap().is_none());
        let view = read_fleet(fleet.store().as_ref(), 100).await.unwrap();
        assert!(view.instances.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn instances_publish_and_disappear_when_they_stop() {
        let store = crate::connect(&memory_config()).await.unwrap();
        let (a, cache_a) = instance("a", store.clone()).await;
        let (b, cache_b) = instance("b", store.clone()).await;

        let hb_a = a.start_with_cache(&cache_a).await.unwrap().unwrap();
        let hb_b = b.start_with_cache(&cache_b).await.unwrap().unwrap();
        assert_eq!(hb_a.key(), "fleet:a");
        // The first heartbeats are written by `start` itself.
        let view = read_fleet(store.as_ref(), 100).await.unwrap();
        assert_eq!(view.instances.len(), 2);
        assert!(view.instances[0].families.is_empty());

        cache_a.user().set("1", &1).await.unwrap();
        assert_eq!(cache_a.user().get::<i32>("1").await.unwrap(), Some(1));
        assert_eq!(cache_a.user().get::<i32>("2").await.unwrap(), None);
        assert_eq!(cache_b.content().get::<i32>("9").await.unwrap(), None);
        // The second heartbeats (one interval later) carry that traffic in their window.
        tokio::time::sleep(Duration::from_millis(1010)).await;

        let view = read_fleet(store.as_ref(), 100).await.unwrap();
        let ids: Vec<&str> = view.instances.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        let ra = &view.instances[0];
        assert_eq!(ra.families["user"].hits, 1);
        assert_eq!(ra.families["user"].misses, 1);
        assert_eq!(ra.families["user"].hit_ratio, Some(0.5));
        assert!(!ra.families.contains_key("content"));
        assert_eq!(ra.pid, std::process::id());
        assert_eq!(ra.near_cache_hit_ratio, None);
        assert_eq!(ra.ttl_ms, 3000);
        let calls = ra.store.as_ref().unwrap();
        // One set and two gets, plus the manager's namespace-version read.
        let app_calls = a.call_stats().unwrap().snapshot().calls;
        assert!(app_calls >= 3, "{app_calls}");
        assert_eq!(calls.calls, app_calls);
        assert_eq!((calls.errors, calls.timeouts), (0, 0));
        assert!(calls.p50_us.is_some() && calls.p99_us >= calls.p50_us);
        assert_eq!(view.totals.instances, 2);
        assert_eq!(view.totals.cache.hits, 1);
        assert_eq!(view.totals.cache.misses, 2);
        assert_eq!(view.totals.families["content"].misses, 1);
        assert_eq!(
            view.totals.store_calls,
            app_calls + b.call_stats().unwrap().snapshot().calls
        );

        // The heartbeat's own writes are not application calls.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(a.call_stats().unwrap().snapshot().calls, app_calls);

        // The next heartbeat's window holds only what happened since the previous one.
        cache_a.user().get::<i32>("1").await.unwrap();
        let window_calls = a.call_stats().unwrap().snapshot().calls - app_calls;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let view = read_fleet(store.as_ref(), 100).await.unwrap();
        let ra = &view.instances[0];
        assert_eq!(ra.families["user"].recent_hits, 1);
        assert_eq!(ra.families["user"].recent_hit_ratio, Some(1.0));
        assert_eq!(ra.store.as_ref().unwrap().recent_calls, window_calls);

        // A clean shutdown removes the key at once; a crash (drop) leaves it to its TTL.
        hb_a.shutdown().await.unwrap();
        drop(hb_b);
        let view = read_fleet(store.as_ref(), 100).await.unwrap();
        assert_eq!(view.instances.len(), 1);
        assert_eq!(view.instances[0].id, "b");
        tokio::time::sleep(Duration::from_millis(3001)).await;
        let view = read_fleet(store.as_ref(), 100).await.unwrap();
        assert!(view.instances.is_empty(), "{view:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn undecodable_fleet_keys_are_counted_not_fatal() {
        let store = crate::connect(&memory_config()).await.unwrap();
        store
            .set("fleet:junk", b"not json", Default::default())
            .await
            .unwrap();
        let view = read_fleet(store.as_ref(), 100).await.unwrap();
        assert!(view.instances.is_empty());
        assert_eq!(view.unreadable, 1);
    }

    #[test]
    fn starting_outside_a_runtime_is_an_error_not_a_panic() {
        let store: DynStore = std::sync::Arc::new(crate::MemoryStore::default());
        let fleet = Fleet::wrap(store, Some(FleetConfig::new(Duration::from_secs(1))));
        use std::future::Future;
        // Polled once by hand, with no tokio runtime around: it fails before its first await.
        let mut start = std::pin::pin!(fleet.start());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let std::task::Poll::Ready(result) = start.as_mut().poll(&mut cx) else {
            panic!("start waited for something outside a runtime");
        };
        let err = result.unwrap_err();
        assert!(err.to_string().contains("tokio runtime"), "{err}");
    }
}
