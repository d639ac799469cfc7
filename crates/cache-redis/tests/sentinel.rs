//! `RedisStore` under Redis Sentinel, against a real topology of `test-redis` (one primary, two
//! replicas, three `redis-server --sentinel`): the conformance suite, configuration from the
//! environment with separate passwords for sentinels and data nodes, the errors that name what to
//! fix, and reads from replicas. Failovers under load: `tests/sentinel_faults.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::{Bytes, Error, ErrorKind, Profile, SetOptions, Store};
use cache_redis::{
    PoolConfig, RedisConfig, RedisEndpoint, RedisStore, RetryConfig, SentinelEndpoint,
};
use cache_testing::conformance::{self, run_all, Capabilities};
use test_redis::RedisSentinel;

const MAX_VALUE: usize = 2 * 1024 * 1024;

/// A near-cache listener that ignores everything.
struct Nobody;

impl cache_core::tracking::InvalidationListener for Nobody {
    fn invalidate(&self, _key: &str) {}
    fn flush(&self) {}
    fn tracking_lost(&self) {}
    fn tracking_ready(&self) {}
}

/// The endpoint of `t`, with its passwords.
fn endpoint(t: &RedisSentinel) -> SentinelEndpoint {
    let mut e = SentinelEndpoint::new(t.sentinel_addrs(), t.service_name());
    if let Some(pw) = t.sentinel_password() {
        e = e.with_sentinel_credentials(None, pw);
    }
    if let Some(pw) = t.password() {
        e = e.with_credentials(None, pw);
    }
    e
}

/// Production defaults with short timeouts and prefix `t`, on `endpoint`.
fn config(endpoint: SentinelEndpoint) -> RedisConfig {
    RedisConfig::new(Profile::Production, RedisEndpoint::Sentinel(endpoint))
        .with_key_prefix("t")
        .with_connect_timeout(Duration::from_millis(500))
        .with_response_timeout(Duration::from_millis(500))
        .with_pool(
            PoolConfig::default()
                .with_max_open(8)
                .with_health_check_interval(Duration::from_millis(200)),
        )
        .with_retry(RetryConfig::default().with_budget(Duration::from_millis(1000)))
}

async fn stores(t: &RedisSentinel) -> (RedisStore, RedisStore, RedisStore) {
    let mut cfg = config(endpoint(t));
    cfg.max_value_bytes = MAX_VALUE;
    // Large values (2 MiB) need more than 500 ms on a loaded machine.
    cfg.response_timeout = Duration::from_secs(2);
    cfg.key_prefix = "conformance_a".into();
    let store = RedisStore::connect(&cfg).await.unwrap();
    cfg.key_prefix = "conformance_b".into();
    let other = RedisStore::connect(&cfg).await.unwrap();
    cfg.key_prefix = String::new();
    let unprefixed = RedisStore::connect(&cfg).await.unwrap();
    (store, other, unprefixed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_store_passes_the_suite() {
    let t = RedisSentinel::builder()
        .password("data-pw")
        .sentinel_password("sentinel-pw")
        .start();
    let (store, other, unprefixed) = stores(&t).await;
    assert!(store.is_sentinel() && !store.is_cluster());
    assert_eq!(store.backend_name(), "redis");
    let caps = Capabilities::new().with_max_value_bytes(MAX_VALUE);
    run_all(&store, &other, &unprefixed, &caps).await;
    // Near caches are refused clearly (the suite checked `Unsupported`): a tracking connection
    // that does not follow a failover would leave them on a demoted or dead primary.
    let nobody: std::sync::Weak<dyn cache_core::tracking::InvalidationListener> =
        std::sync::Weak::<Nobody>::new();
    let err = store.track_changes("user:", nobody).await.unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err}");
    assert!(err.to_string().contains("Sentinel"), "{err}");
    assert!(store.tracking_stats().is_none());
    let as_dyn: Arc<dyn Store> = Arc::new(store.clone());
    conformance::check_compare_and_swap_contention(&store).await;
    assert!(as_dyn.ping().await.is_ok());
    conformance::check_incr_by_concurrent(&store).await;
    assert_eq!(
        t.primary().cli(["--scan", "--pattern", "conformance_a:*"]),
        "",
        "checks left keys behind"
    );
}

#[tokio::test]
async fn connects_from_the_environment_with_separate_passwords() {
    let t = RedisSentinel::builder()
        .password("data-pw")
        .sentinel_password("sentinel-pw")
        .start();
    let env = [
        ("REDIS_SENTINEL_NODES", t.sentinels_env()),
        ("REDIS_SENTINEL_SERVICE", t.service_name().to_owned()),
        ("REDIS_SENTINEL_PASSWORD", "sentinel-pw".to_owned()),
        ("REDIS_PASSWORD", "data-pw".to_owned()),
        ("REDIS_DB", "2".to_owned()),
        ("CACHE_KEY_PREFIX", "envform".to_owned()),
        // A REDIS_URL next to the sentinels is not used.
        ("REDIS_URL", "redis://127.0.0.1:1".to_owned()),
    ];
    let cfg = RedisConfig::from_lookup(Profile::Production, |k| {
        env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    })
    .unwrap();
    assert!(cfg.endpoint.is_sentinel());
    let debug = format!("{cfg:?}");
    assert!(
        !debug.contains("data-pw") && !debug.contains("sentinel-pw"),
        "{debug}"
    );
    let store = RedisStore::connect(&cfg).await.unwrap();
    assert_eq!(store.database(), 2);
    assert_eq!(
        store.target(),
        format!(
            "sentinel service {} via [{}]",
            t.service_name(),
            t.sentinel_addrs().join(", ")
        )
    );
    assert_eq!(store.sentinel_primary(), Some(t.primary().addr()));
    assert_eq!(store.sentinel_switches(), 0);
    store.set("x", b"1", SetOptions::new()).await.unwrap();
    assert_eq!(t.primary().cli(["-n", "2", "GET", "envform:x"]), "1");
    assert!(store.connectivity().await.reachable);
    assert_eq!(store.flush_prefix().await.unwrap(), 1);

    // Sentinel URLs may carry their own credentials, and one live sentinel is enough.
    let url = format!("redis://:sentinel-pw@{}", t.sentinel_nodes()[2].addr());
    let one = SentinelEndpoint::new(["127.0.0.1:1".to_owned(), url], t.service_name())
        .with_credentials(None, "data-pw");
    let store = RedisStore::connect(&config(one)).await.unwrap();
    assert!(store.ping().await.is_ok());
}

#[tokio::test]
async fn errors_name_what_to_fix() {
    let t = RedisSentinel::builder()
        .password("data-pw")
        .sentinel_password("sentinel-pw")
        .start();
    let connect = |e: SentinelEndpoint| async move {
        let started = Instant::now();
        let r = RedisStore::connect(&config(e)).await;
        (r.map(|_| ()), started.elapsed())
    };

    let mut e = endpoint(&t);
    e.service = "nope".into();
    let (r, _) = connect(e).await;
    let err = r.unwrap_err();
    eprintln!("unknown service: {err}");
    assert!(
        matches!(&err, Error::Config { setting, .. } if setting == "REDIS_SENTINEL_SERVICE"),
        "{err}"
    );
    assert!(err.to_string().contains(t.service_name()), "{err}");

    let dead = SentinelEndpoint::new(["127.0.0.1:1", "127.0.0.1:2"], t.service_name());
    let (r, took) = connect(dead).await;
    let err = r.unwrap_err();
    eprintln!("no sentinel: {err}");
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    assert!(err.to_string().contains("no sentinel answered"), "{err}");
    assert!(err.to_string().contains("REDIS_SENTINEL_NODES"), "{err}");
    // Connection refused is immediate: nothing waits for a timeout (a bound, not a measurement).
    assert!(took < Duration::from_secs(3), "{took:?}");

    let wrong = endpoint(&t).with_sentinel_credentials(None, "wrong");
    let (r, _) = connect(wrong).await;
    let err = r.unwrap_err();
    eprintln!("wrong sentinel password: {err}");
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    assert!(err.to_string().contains("REDIS_SENTINEL_PASSWORD"), "{err}");
    assert!(!err.to_string().contains("wrong"), "password leaked: {err}");

    let wrong = endpoint(&t).with_credentials(None, "wrong");
    let (r, _) = connect(wrong).await;
    let err = r.unwrap_err();
    eprintln!("wrong data password: {err}");
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    assert!(err.to_string().contains("REDIS_PASSWORD"), "{err}");

    let data_node = SentinelEndpoint::new([t.primary().addr()], t.service_name())
        .with_sentinel_credentials(None, "data-pw");
    let (r, _) = connect(data_node).await;
    let err = r.unwrap_err();
    eprintln!("a data node as sentinel: {err}");
    assert!(
        matches!(&err, Error::Config { setting, .. } if setting == "REDIS_SENTINEL_NODES"),
        "{err}"
    );

    let bad = SentinelEndpoint::new(["127.0.0.1:notaport"], t.service_name());
    let (r, _) = connect(bad).await;
    let err = r.unwrap_err();
    assert!(
        matches!(&err, Error::Config { setting, .. } if setting == "REDIS_SENTINEL_NODES"),
        "{err}"
    );
    let empty = SentinelEndpoint::new(Vec::<String>::new(), t.service_name());
    assert!(config(empty).validate().is_err());
}

#[tokio::test]
async fn a_primary_the_sentinels_name_but_we_cannot_reach() {
    // No automatic failover during the test: the sentinels keep naming the dead primary.
    let t = RedisSentinel::builder()
        .down_after(Duration::from_secs(60))
        .start();
    let store = RedisStore::connect(&config(endpoint(&t))).await.unwrap();
    store.set("k", b"v", SetOptions::new()).await.unwrap();
    let port = t.primary().port();
    t.primary().kill();
    let err = store.get("k").await.unwrap_err();
    eprintln!("primary down, store running: {err}");
    assert!(err.is_transient(), "{err}");

    let err = RedisStore::connect(&config(endpoint(&t)))
        .await
        .unwrap_err();
    eprintln!("primary down, new store: {err}");
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.contains("cannot be reached"), "{text}");
}

#[tokio::test]
async fn replica_reads_go_to_a_replica_and_writes_to_the_primary() {
    let t = RedisSentinel::start();
    let mut cfg = config(endpoint(&t));
    cfg.read_from_replicas = true;
    cfg.key_prefix = "replica".into();
    let store = RedisStore::connect(&cfg).await.unwrap();
    let reader = store.replica_reads();
    assert!(reader.reads_from_replicas() && !store.reads_from_replicas());
    store
        .set("k", b"v", SetOptions::ttl(Duration::from_secs(60)))
        .await
        .unwrap();
    // Replication is asynchronous: poll (bounded) until a replica has it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if reader.get("k").await.unwrap().as_deref() == Some(&b"v"[..]) {
            break;
        }
        assert!(Instant::now() < deadline, "the replica never saw the write");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        reader.get_many(&["k", "missing"]).await.unwrap(),
        vec![Some(Bytes::from_static(b"v")), None]
    );
    // Writes through the view go to the primary (a replica would answer READONLY).
    assert!(reader.set("k2", b"w", SetOptions::new()).await.unwrap());
    assert_eq!(store.get("k2").await.unwrap().as_deref(), Some(&b"w"[..]));
    // The reads really went to a replica: its command stats count them.
    let calls = |node: &test_redis::RedisServer, cmd: &str| -> u64 {
        node.cli(["INFO", "commandstats"])
            .lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{cmd}:calls=")))
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let replica_reads: u64 = t
        .replicas()
        .iter()
        .map(|r| calls(r, "get") + calls(r, "mget"))
        .sum();
    assert!(replica_reads > 0, "no read reached a replica");
    assert_eq!(calls(t.primary(), "mget"), 0, "MGET went to the primary");
    store.flush_prefix().await.unwrap();
}

#[test]
fn sentinel_settings_from_the_environment_and_the_builder_agree() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    };
    let from_env = RedisConfig::from_lookup(
        Profile::Production,
        env(&[
            (
                "REDIS_SENTINEL_NODES",
                "10.0.0.1:26379, rediss://10.0.0.2:26379 ,",
            ),
            ("REDIS_SENTINEL_SERVICE", "cache"),
            ("REDIS_SENTINEL_USERNAME", "watcher"),
            ("REDIS_SENTINEL_PASSWORD", "s-pw"),
            ("REDIS_USERNAME", "app"),
            ("REDIS_PASSWORD", "d-pw"),
            ("REDIS_TLS", "true"),
            ("REDIS_DB", "1"),
        ]),
    )
    .unwrap();
    let built = RedisConfig::new(
        Profile::Production,
        RedisEndpoint::Sentinel(
            SentinelEndpoint::new(["10.0.0.1:26379", "rediss://10.0.0.2:26379"], "cache")
                .with_sentinel_credentials(Some("watcher"), "s-pw")
                .with_credentials(Some("app"), "d-pw")
                .with_tls(true),
        ),
    )
    .with_database(1);
    assert_eq!(from_env, built);
    let debug = format!("{from_env:?}");
    assert!(
        !debug.contains("s-pw") && !debug.contains("d-pw"),
        "{debug}"
    );
    assert!(
        debug.contains("watcher") && debug.contains("cache"),
        "{debug}"
    );

    // Precedence: a cluster wins over Sentinel, Sentinel over one server; CACHE_BACKEND=redis
    // takes Sentinel when it is configured.
    let both = RedisConfig::from_lookup(
        Profile::Production,
        env(&[
            ("REDIS_CLUSTER_NODES", "10.0.0.1:7000"),
            ("REDIS_SENTINEL_NODES", "10.0.0.1:26379"),
            ("REDIS_SENTINEL_SERVICE", "cache"),
        ]),
    )
    .unwrap();
    assert!(both.endpoint.is_cluster());
    let redis = RedisConfig::from_lookup(
        Profile::Production,
        env(&[
            ("CACHE_BACKEND", "redis"),
            ("REDIS_URL", "redis://10.0.0.9:6379"),
            ("REDIS_SENTINEL_NODES", "10.0.0.1:26379"),
            ("REDIS_SENTINEL_SERVICE", "cache"),
        ]),
    )
    .unwrap();
    assert_eq!(
        redis.endpoint,
        RedisEndpoint::sentinel(["10.0.0.1:26379"], "cache")
    );

    // Errors name the setting.
    for (pairs, setting) in [
        (
            &[("REDIS_SENTINEL_NODES", "10.0.0.1:26379")][..],
            "REDIS_SENTINEL_SERVICE",
        ),
        (
            &[
                ("REDIS_SENTINEL_NODES", " , "),
                ("REDIS_SENTINEL_SERVICE", "cache"),
            ][..],
            "REDIS_SENTINEL_NODES",
        ),
        (
            &[
                ("REDIS_SENTINEL_NODES", "10.0.0.1:26379"),
                ("REDIS_SENTINEL_SERVICE", "two words"),
            ][..],
            "REDIS_SENTINEL_SERVICE",
        ),
        (
            &[
                ("REDIS_SENTINEL_NODES", "10.0.0.1:26379"),
                ("REDIS_SENTINEL_SERVICE", "cache"),
                ("REDIS_TLS", "maybe"),
            ][..],
            "REDIS_TLS",
        ),
    ] {
        let lookup = |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        };
        let err = RedisConfig::from_lookup(Profile::Production, lookup).unwrap_err();
        assert!(
            matches!(&err, Error::Config { setting: s, .. } if s == setting),
            "{pairs:?}: {err}"
        );
    }
}
