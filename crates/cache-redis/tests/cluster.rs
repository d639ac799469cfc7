//! `RedisStore` in cluster mode on a real Redis Cluster (3 primaries, 3 replicas) spawned by the
//! test binary once and shared by its tests, each under its own key prefix: the whole conformance
//! suite, batches across slots, scan and `flush_prefix` across primaries, per-node health and
//! stats, reads from replicas, configuration from the environment.
//!
//! Faults (failover, slot migration) run in `cluster_faults.rs`, on clusters of their own.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use cache_core::{Bytes, Error, Expiry, Profile, ScanCursor, SetOptions, Store, StoreExt};
use cache_redis::{NodeRole, RedisConfig, RedisEndpoint, RedisStore};
use cache_testing::conformance::{self, run_all, Capabilities};
use common::cluster_config;
use test_redis::RedisCluster;

const MAX_VALUE: usize = 2 * 1024 * 1024;

fn cluster() -> &'static RedisCluster {
    RedisCluster::shared()
}

async fn store(prefix: &str) -> RedisStore {
    let mut cfg = cluster_config(cluster());
    cfg.key_prefix = prefix.into();
    RedisStore::connect(&cfg)
        .await
        .expect("connect to the cluster")
}

async fn stores(tag: &str) -> (RedisStore, RedisStore, RedisStore) {
    let mut cfg = cluster_config(cluster());
    cfg.max_value_bytes = MAX_VALUE;
    // Large values (2 MiB) need more than the fault tests' short timeouts on a loaded machine.
    cfg.response_timeout = Duration::from_secs(2);
    cfg.key_prefix = format!("{tag}_a");
    let store = RedisStore::connect(&cfg).await.unwrap();
    cfg.key_prefix = format!("{tag}_b");
    let other = RedisStore::connect(&cfg).await.unwrap();
    // The suite's unprefixed store only touches keys it names itself (its own, unique ones).
    cfg.key_prefix = String::new();
    let unprefixed = RedisStore::connect(&cfg).await.unwrap();
    (store, other, unprefixed)
}

fn caps() -> Capabilities {
    Capabilities::new().with_max_value_bytes(MAX_VALUE)
}

/// Keys under `pattern` on every node, read with redis-cli (independent of the code under test).
fn keys_on_primaries(pattern: &str) -> BTreeSet<String> {
    let c = cluster();
    let mut all = BTreeSet::new();
    for p in c.primaries() {
        let node = c.node_by_port(p.port).unwrap();
        let out = node.cli(["--scan", "--pattern", pattern]);
        all.extend(out.lines().filter(|l| !l.is_empty()).map(str::to_owned));
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_store_passes_the_suite() {
    let (store, other, unprefixed) = stores("conf1").await;
    assert!(store.is_cluster());
    assert_eq!(store.backend_name(), "redis-cluster");
    run_all(&store, &other, &unprefixed, &caps()).await;
    assert!(
        keys_on_primaries("conf1_a:*").is_empty(),
        "checks left keys behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_store_passes_the_suite_as_dyn_store() {
    let (store, other, unprefixed) = stores("conf2").await;
    let store: Arc<dyn Store> = Arc::new(store);
    let other: Arc<dyn Store> = Arc::new(other);
    let unprefixed: Box<dyn Store> = Box::new(unprefixed);
    run_all(&store, &other, &unprefixed, &caps()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contention_checks_hold_on_the_cluster() {
    let (store, _, _) = stores("conf3").await;
    conformance::check_compare_and_swap_contention(&store).await;
    conformance::check_incr_by_concurrent(&store).await;
}

#[tokio::test]
async fn batches_span_every_primary_and_keep_the_callers_order() {
    let store = store("batch").await;
    let c = cluster();
    // 200 keys land on all three primaries (and on many slots).
    let keys: Vec<String> = (0..200).map(|i| format!("k{i}")).collect();
    let slots: BTreeSet<u16> = keys
        .iter()
        .take(20)
        .map(|k| c.slot_of(&format!("batch:{k}")))
        .collect();
    assert!(slots.len() > 10, "keys spread over slots: {slots:?}");
    let values: Vec<Vec<u8>> = keys.iter().map(|k| format!("v-{k}").into_bytes()).collect();
    let entries: Vec<(&str, &[u8])> = keys
        .iter()
        .zip(&values)
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    store
        .set_many(&entries, Expiry::In(Duration::from_secs(60)))
        .await
        .unwrap();
    for p in c.primaries() {
        let n = c.node_by_port(p.port).unwrap();
        let here = n.cli(["--scan", "--pattern", "batch:*"]).lines().count();
        assert!(here > 0, "primary {} holds some of the keys", p.port);
    }
    // Reversed, with a missing key and a duplicate in between.
    let mut ask: Vec<&str> = keys.iter().rev().map(String::as_str).collect();
    ask.insert(7, "missing");
    ask.insert(20, "k3");
    let got = store.get_many(&ask).await.unwrap();
    assert_eq!(got.len(), ask.len());
    for (k, v) in ask.iter().zip(&got) {
        let expected = (*k != "missing").then(|| Bytes::from(format!("v-{k}")));
        assert_eq!(v, &expected, "value of {k}");
    }
    // Multi-slot UNLINK counts every slot's deletions.
    let del: Vec<&str> = keys.iter().take(150).map(String::as_str).collect();
    assert_eq!(store.delete(&del).await.unwrap(), 150);
    assert_eq!(store.delete(&del).await.unwrap(), 0);
    assert_eq!(store.flush_prefix().await.unwrap(), 50);
    assert!(keys_on_primaries("batch:*").is_empty());
}

#[tokio::test]
async fn scan_visits_every_primary_and_flush_prefix_empties_all_of_them() {
    let store = store("scan").await;
    let c = cluster();
    for i in 0..300 {
        store
            .set(
                &format!("item:{i}"),
                b"x",
                SetOptions::ttl(Duration::from_secs(60)),
            )
            .await
            .unwrap();
    }
    // The keys are spread over the three primaries: a plain SCAN on one node would miss some.
    for p in c.primaries() {
        let n = c.node_by_port(p.port).unwrap();
        let here = n.cli(["--scan", "--pattern", "scan:*"]).lines().count();
        assert!((30..270).contains(&here), "primary {} holds {here}", p.port);
    }
    let all = store.scan_all("item:*", 50).await.unwrap();
    assert_eq!(all.len(), 300);
    // Page by page, with a tiny count: the cursor carries the node and its SCAN cursor.
    let mut cursor = ScanCursor::start();
    let mut seen = BTreeSet::new();
    let mut pages = 0;
    loop {
        let page = store.scan("item:*", cursor, 10).await.unwrap();
        seen.extend(page.keys);
        pages += 1;
        match page.next {
            Some(next) => cursor = next,
            None => break,
        }
    }
    assert_eq!(seen.len(), 300);
    assert!(pages >= 3, "one page at least per primary ({pages})");
    let bad = store
        .scan("item:*", ScanCursor::from_backend("12"), 10)
        .await
        .unwrap_err();
    assert!(matches!(bad, Error::InvalidInput(_)), "{bad}");

    assert_eq!(store.count_matching("item:*", 100).await.unwrap(), 300);
    assert_eq!(store.flush_prefix().await.unwrap(), 300);
    assert!(keys_on_primaries("scan:*").is_empty());
}

#[tokio::test]
async fn health_reports_every_node_with_its_role_and_stats_aggregate_the_primaries() {
    let store = store("health").await;
    let health = store.cluster_health().await.unwrap();
    assert_eq!(health.len(), 6, "{health:#?}");
    assert!(
        health.iter().all(|n| n.reachable && n.rtt_us.is_some()),
        "{health:#?}"
    );
    let primaries: Vec<_> = health
        .iter()
        .filter(|n| n.role == NodeRole::Primary)
        .collect();
    assert_eq!(primaries.len(), 3);
    assert_eq!(primaries.iter().map(|n| n.slots).sum::<u32>(), 16384);
    for r in health.iter().filter(|n| n.role == NodeRole::Replica) {
        let p = r.primary.as_deref().expect("a replica names its primary");
        assert!(primaries.iter().any(|n| n.address == p), "{p}");
    }
    let json = serde_json::to_value(&health).unwrap();
    assert_eq!(
        json[0]["role"]
            .as_str()
            .map(|r| r == "primary" || r == "replica"),
        Some(true)
    );

    for i in 0..30 {
        store
            .set(
                &format!("s{i}"),
                b"1",
                SetOptions::ttl(Duration::from_secs(60)),
            )
            .await
            .unwrap();
    }
    let stats = store.stats().await.unwrap().expect("stats");
    assert_eq!(stats.backend, "redis-cluster");
    assert_eq!(stats.nodes.len(), 3);
    assert!(stats.version.is_some());
    let per_node: u64 = stats
        .nodes
        .iter()
        .map(|n| n.keys_per_db.get("db0").copied().unwrap_or(0))
        .sum();
    assert_eq!(stats.keys_per_db.get("db0").copied(), Some(per_node));
    assert!(per_node >= 30);
    assert_eq!(
        stats.used_memory_bytes,
        Some(
            stats
                .nodes
                .iter()
                .map(|n| n.used_memory_bytes.unwrap())
                .sum()
        )
    );
    for n in &stats.nodes {
        assert!(cluster()
            .primaries()
            .iter()
            .any(|p| n.backend == format!("127.0.0.1:{}", p.port)));
    }
    assert!(stats.pool.is_some());
    let conn = store.connectivity().await;
    assert!(conn.reachable, "{conn:?}");
    assert_eq!(conn.backend, "redis-cluster");
    assert!(store.self_test().await.passed());
    store.flush_prefix().await.unwrap();
}

#[tokio::test]
async fn replica_reads_see_replicated_writes_and_writes_still_go_to_primaries() {
    let mut cfg = cluster_config(cluster());
    cfg.key_prefix = "replica".into();
    cfg.read_from_replicas = true;
    let store = RedisStore::connect(&cfg).await.unwrap();
    let reader = store.replica_reads();
    assert!(reader.reads_from_replicas() && !store.reads_from_replicas());
    store
        .set("k", b"v", SetOptions::ttl(Duration::from_secs(60)))
        .await
        .unwrap();
    // Replication is asynchronous: poll (bounded) until the replica has it.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if reader.get("k").await.unwrap().as_deref() == Some(&b"v"[..]) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the replica never saw the write"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Writes through the view go to the primary (a replica would answer MOVED/READONLY).
    assert!(reader.set("k2", b"w", SetOptions::new()).await.unwrap());
    assert_eq!(store.get("k2").await.unwrap().as_deref(), Some(&b"w"[..]));
    // The read really went to a replica: its command stats count a GET.
    let c = cluster();
    let slot = c.slot_of("replica:k");
    let primary = c.primary_of_slot(slot).port();
    let replica_gets: u64 = c
        .topology()
        .iter()
        .filter(|n| n.role == test_redis::NodeRole::Replica)
        .map(|n| {
            let info = c
                .node_by_port(n.port)
                .unwrap()
                .cli(["INFO", "commandstats"]);
            info.lines()
                .find_map(|l| l.strip_prefix("cmdstat_get:calls="))
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum();
    assert!(
        replica_gets > 0,
        "no GET reached a replica (primary {primary})"
    );
    store.flush_prefix().await.unwrap();
}

#[tokio::test]
async fn connects_from_the_environment_form() {
    let c = cluster();
    let env = [
        ("REDIS_CLUSTER_NODES", c.nodes_env()),
        ("CACHE_KEY_PREFIX", "envform".to_owned()),
    ];
    let cfg = RedisConfig::from_lookup(Profile::Development, |k| {
        env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    })
    .unwrap();
    let store = RedisStore::connect(&cfg).await.unwrap();
    assert!(store.is_cluster());
    assert!(
        store.target().starts_with("cluster [127.0.0.1:"),
        "{}",
        store.target()
    );
    store.set("x", b"1", SetOptions::new()).await.unwrap();
    assert_eq!(store.flush_prefix().await.unwrap(), 1);

    // One seed is enough: the client discovers the others.
    let one = RedisConfig::new(
        Profile::Development,
        RedisEndpoint::cluster([c.nodes()[4].addr()]),
    )
    .with_key_prefix("envform");
    assert!(RedisStore::connect(&one)
        .await
        .unwrap()
        .ping()
        .await
        .is_ok());

    // A node list that is not a cluster node URL names the setting.
    let bad = RedisConfig::new(
        Profile::Development,
        RedisEndpoint::cluster(["redis://127.0.0.1:notaport"]),
    );
    let err = RedisStore::connect(&bad).await.unwrap_err();
    assert!(
        matches!(&err, Error::Config { setting, .. } if setting == "REDIS_CLUSTER_NODES"),
        "{err}"
    );
}

#[tokio::test]
async fn near_cache_tracking_is_refused_clearly_on_a_cluster() {
    struct Nobody;
    impl cache_core::tracking::InvalidationListener for Nobody {
        fn invalidate(&self, _key: &str) {}
        fn flush(&self) {}
        fn tracking_lost(&self) {}
        fn tracking_ready(&self) {}
    }
    let store = store("near_refused").await;
    let listener: Arc<dyn cache_core::tracking::InvalidationListener> = Arc::new(Nobody);
    let err = store
        .track_changes("user:", Arc::downgrade(&listener))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err}");
    assert!(err.to_string().contains("Redis Cluster"), "{err}");
    assert!(store.tracking_stats().is_none());
}
