//! Faults on a real Redis Cluster (3 primaries, 3 replicas), each test on a cluster of its own:
//!
//! - **failover under load**: cache writes and reads (`CacheManager`) and session creates and reads
//!   (`SessionManager`) run steadily while a primary is killed; after a replica is promoted, every
//!   operation succeeds again on the same store (no restart), and the test prints how long
//!   operations failed;
//! - **slot migration**: a slot moves from one primary to another (`CLUSTER SETSLOT ... MIGRATING /
//!   IMPORTING`, `MIGRATE`, `SETSLOT ... NODE`) while its keys are read and written; the client
//!   follows the `ASK` and `MOVED` redirections (counted by the servers' `INFO errorstats`) and no
//!   operation fails.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cache_core::{SetOptions, Store};
use cache_domain::{CacheConfig, CacheManager, WritePolicy};
use cache_redis::RedisStore;
use common::{cluster_config, Log};
use sessions::{CreateOptions, SessionManager};
use test_redis::{NodeRole, RedisCluster, RedisServer};

/// The tests of this binary run one at a time: each starts a cluster of its own, and three clusters
/// at once on a 2-core machine would make failure detection (1 s node timeout) flaky.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_fails_under_load_and_operations_resume_after_the_failover() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let cluster = Arc::new(RedisCluster::start());
    let mut cfg = cluster_config(&cluster);
    cfg.key_prefix = "failover".into();
    let store = RedisStore::connect(&cfg).await.unwrap();
    let cache = Arc::new(
        CacheManager::builder(store.clone())
            .with_config(&CacheConfig::default().with_write_policy(WritePolicy::Propagate))
            .build()
            .unwrap(),
    );
    let sessions = Arc::new(SessionManager::new(store.clone()));

    // Sessions and cache entries that exist before the fault, on every primary.
    let mut before = Vec::new();
    for i in 0..30 {
        let user = format!("u{i}");
        cache
            .user()
            .set(&user, &serde_json::json!({"n": i}))
            .await
            .unwrap();
        let s = sessions.create(&user, CreateOptions::new()).await.unwrap();
        before.push((user, s.token.expose().to_owned()));
    }

    // The steady load: 4 workers, each a cache write + read and a session create + read per
    // round, on ids spread over all slots.
    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(Log::default()));
    let rounds = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (cache, sessions, stop, log, rounds) = (
            cache.clone(),
            sessions.clone(),
            stop.clone(),
            log.clone(),
            rounds.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let user = format!("w{w}-{}", i % 97);
                let r = cache.user().set(&user, &serde_json::json!({"i": i})).await;
                log.lock().unwrap().record(&r);
                let r = cache.user().get::<serde_json::Value>(&user).await;
                log.lock().unwrap().record(&r);
                let r = sessions.create(&user, CreateOptions::new()).await;
                log.lock().unwrap().record(&r);
                if let Ok(s) = r {
                    let r = sessions.get(s.token.expose()).await;
                    let r = r.and_then(|s| s.ok_or_else(|| cache_core::Error::backend("lost")));
                    log.lock().unwrap().record(&r);
                }
                rounds.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Let the load run a little (a number of rounds, not a time).
    while rounds.load(Ordering::Relaxed) < 40 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Kill the primary of the slot of a session-user key, after its replica caught up.
    let slot = cluster.slot_of("failover:user:u1");
    let victim = cluster.primary_of_slot(slot);
    victim.wait_replicated();
    let killed_at = Instant::now();
    let old_port = cluster.kill_primary_of_slot(slot);
    let c = cluster.clone();
    let promotion = tokio::task::spawn_blocking(move || c.wait_for_failover(slot, old_port))
        .await
        .unwrap();

    // Recovery: every operation of the next 100 rounds succeeds (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(20);
    let resumed_from = loop {
        let before_failed = log.lock().unwrap().failed;
        let start_round = rounds.load(Ordering::Relaxed);
        while rounds.load(Ordering::Relaxed) < start_round + 100 {
            assert!(
                Instant::now() < deadline,
                "operations did not resume after the failover: {:?}",
                log.lock().unwrap().last_error
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if log.lock().unwrap().failed == before_failed {
            break start_round;
        }
    };
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }

    let log = std::mem::take(&mut *log.lock().unwrap());
    let interruption = log
        .last_failure
        .map(|last| last.saturating_duration_since(log.first_failure.unwrap_or(last)));
    eprintln!(
        "failover: primary :{old_port} killed; replica promoted and cluster ok after {promotion:?}; \
         {} of {} operations failed, from +{:?} to +{:?} after the kill (interruption {:?}); \
         clean again from round {resumed_from}; last error: {:?}",
        log.failed,
        log.ok + log.failed,
        log.first_failure.map(|t| t.saturating_duration_since(killed_at)),
        log.last_failure.map(|t| t.saturating_duration_since(killed_at)),
        interruption,
        log.last_error,
    );
    assert!(log.ok > 0);
    // The interruption is bounded by the failover plus one retry budget, never "until restart".
    if let Some(last) = log.last_failure {
        assert!(
            last.saturating_duration_since(killed_at) < promotion + Duration::from_secs(5),
            "operations kept failing long after the promotion"
        );
    }
    // Same store, no restart: everything written before the kill is still there.
    for (user, token) in &before {
        let v: Option<serde_json::Value> = cache.user().get(user).await.unwrap();
        assert!(v.is_some(), "cache entry of {user} lost");
        let s = sessions.get(token).await.unwrap();
        assert_eq!(s.map(|s| s.user_id), Some(user.clone()), "session lost");
    }
    assert!(store.ping().await.is_ok());
    let health = store.cluster_health().await.unwrap();
    let dead = health
        .iter()
        .find(|n| n.address.ends_with(&format!(":{old_port}")))
        .expect("the killed node is still listed");
    assert!(!dead.reachable && dead.error.is_some(), "{dead:?}");
    // Bring the old primary back: it rejoins as a replica.
    cluster.restart_node(old_port);
    let back = cluster
        .topology()
        .into_iter()
        .find(|n| n.port == old_port)
        .unwrap();
    assert_eq!(back.role, NodeRole::Replica);
    assert!(store.ping().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_names_the_primary_that_is_down() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let cluster = RedisCluster::builder()
        .replicas_per_primary(0)
        .node_timeout(Duration::from_secs(5))
        .start();
    let mut cfg = cluster_config(&cluster);
    cfg.key_prefix = "ping".into();
    let store = RedisStore::connect(&cfg).await.unwrap();
    assert!(store.ping().await.is_ok());
    let slot = cluster.slot_of("anything");
    let port = cluster.kill_primary_of_slot(slot);
    let err = store.ping().await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "the error names the node: {err}"
    );
    let health = store.cluster_health().await.unwrap();
    let down: Vec<_> = health.iter().filter(|n| !n.reachable).collect();
    assert_eq!(down.len(), 1, "{health:#?}");
    assert!(down[0].address.ends_with(&format!(":{port}")));
    let conn = store.connectivity().await;
    assert!(!conn.reachable);
    assert!(conn.error.unwrap().contains(&port.to_string()));
}

/// Sum of `errorstat_{name}` on a node (`INFO errorstats`).
fn errorstat(node: &RedisServer, name: &str) -> u64 {
    node.cli(["INFO", "errorstats"])
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("errorstat_{name}:count=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirections_are_followed_while_a_slot_migrates() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let cluster = Arc::new(RedisCluster::start());
    let mut cfg = cluster_config(&cluster);
    cfg.key_prefix = "mig".into();
    let store = RedisStore::connect(&cfg).await.unwrap();
    // 60 keys in one slot (hash tag), written before the migration.
    let key = |i: u64| format!("{{hot}}:{i}");
    for i in 0..60 {
        store
            .set(&key(i), i.to_string().as_bytes(), SetOptions::new())
            .await
            .unwrap();
    }
    let slot = cluster.slot_of("mig:{hot}:0");
    let topo = cluster.topology();
    let src = topo
        .iter()
        .find(|n| n.role == NodeRole::Primary && n.serves(slot))
        .unwrap()
        .clone();
    let dst = topo
        .iter()
        .find(|n| n.role == NodeRole::Primary && n.id != src.id)
        .unwrap()
        .clone();
    let src_node = cluster.node_by_port(src.port).unwrap();
    let dst_node = cluster.node_by_port(dst.port).unwrap();

    // Load on the slot: read every key, rewrite it, count with a counter in the slot too.
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let load = {
        let (store, stop, ops, errors) = (store.clone(), stop.clone(), ops.clone(), errors.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let k = key(i % 60);
                let r = async {
                    let v = store.get(&k).await?;
                    assert_eq!(v.as_deref(), Some((i % 60).to_string().as_bytes()));
                    store
                        .set(&k, (i % 60).to_string().as_bytes(), SetOptions::new())
                        .await?;
                    store.incr_by("{hot}:counter", 1, None).await?;
                    store.exists(&format!("{{hot}}:new{i}")).await
                }
                .await;
                if let Err(e) = r {
                    errors.lock().unwrap().push(e.to_string());
                }
                ops.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        })
    };
    let wait_ops = |n: u64| {
        let ops = ops.clone();
        async move {
            let target = ops.load(Ordering::Relaxed) + n;
            let deadline = Instant::now() + Duration::from_secs(20);
            while ops.load(Ordering::Relaxed) < target {
                assert!(Instant::now() < deadline, "the load stalled");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    };
    wait_ops(20).await;

    let slot_s = slot.to_string();
    dst_node.cli(["CLUSTER", "SETSLOT", &slot_s, "IMPORTING", &src.id]);
    src_node.cli(["CLUSTER", "SETSLOT", &slot_s, "MIGRATING", &dst.id]);
    // Move the keys 10 at a time, letting the load run between batches (ASK phase).
    loop {
        let keys = src_node.cli(["CLUSTER", "GETKEYSINSLOT", &slot_s, "10"]);
        let keys: Vec<&str> = keys.lines().filter(|l| !l.is_empty()).collect();
        if keys.is_empty() {
            break;
        }
        let port = dst.port.to_string();
        let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
        args.extend(keys);
        assert_eq!(src_node.cli(&args), "OK");
        wait_ops(10).await;
    }
    // The documented order: the destination first, then the source (otherwise the two answer
    // MOVED to each other for a moment), then the others.
    dst_node.cli(["CLUSTER", "SETSLOT", &slot_s, "NODE", &dst.id]);
    src_node.cli(["CLUSTER", "SETSLOT", &slot_s, "NODE", &dst.id]);
    for n in cluster.nodes() {
        if n.port() != src.port && n.port() != dst.port {
            n.cli(["CLUSTER", "SETSLOT", &slot_s, "NODE", &dst.id]);
        }
    }
    // MOVED phase: the client's slot map still points at the old owner until it follows MOVED.
    wait_ops(100).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();

    let errors = std::mem::take(&mut *errors.lock().unwrap());
    assert!(
        errors.is_empty(),
        "operations failed during the migration: {errors:?}"
    );
    assert!(
        errorstat(src_node, "ASK") > 0,
        "the load met ASK redirections"
    );
    assert!(
        errorstat(src_node, "MOVED") > 0,
        "the load met MOVED redirections"
    );
    assert_eq!(cluster.primary_of_slot(slot).port(), dst.port);
    assert_eq!(dst_node.cli(["CLUSTER", "COUNTKEYSINSLOT", &slot_s]), "61");
    let total = ops.load(Ordering::Relaxed);
    let counter: i64 =
        String::from_utf8(store.get("{hot}:counter").await.unwrap().unwrap().to_vec())
            .unwrap()
            .parse()
            .unwrap();
    assert_eq!(
        counter as u64, total,
        "every increment counted exactly once"
    );
    eprintln!(
        "migration: {total} rounds, ASK {} / MOVED {} redirections followed, 0 errors",
        errorstat(src_node, "ASK"),
        errorstat(src_node, "MOVED")
    );
}
