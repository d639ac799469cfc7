//! The session manager's integration suite on a real Redis Cluster (3 primaries, 3 replicas), shared
//! by the tests of this binary, each under its own key prefix.
//!
//! Session keys and per-user index keys hash to different slots (no hash tags: a session is found by
//! its token alone); these tests show that the ordering rules of the crate keep every guarantee there.

mod common;

use std::sync::Arc;
use std::time::Duration;

use cache_core::config::{PoolConfig, Profile};
use cache_core::{Config, KeySchema};
use cache_redis::RedisStore;
use common::*;
use serde_json::json;
use sessions::{Clock, CreateOptions, SessionManager, TokioClock};
use test_redis::RedisCluster;

async fn connect(prefix: &str) -> RedisStore {
    let cluster = RedisCluster::shared();
    let config = Config::builder()
        .profile(Profile::Production)
        .cluster_nodes(cluster.seed_urls())
        .key_prefix(prefix)
        .connect_timeout(Duration::from_millis(1000))
        .response_timeout(Duration::from_millis(1000))
        .pool(PoolConfig::default().with_max_open(8))
        .build()
        .unwrap();
    RedisStore::connect(&config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_and_no_resurrection_on_cluster() {
    let m = SessionManager::new(connect("s_life").await);
    lifecycle(&m).await;
    no_resurrection(&m).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn races_on_cluster() {
    let plain = SessionManager::new(connect("s_race").await);
    let (gated_store, gate) = pausing(connect("s_race").await);
    let gated = SessionManager::builder(gated_store)
        .with_clock(Arc::clone(plain.clock()))
        .build()
        .unwrap();
    late_update_does_not_resurrect(gated.clone(), Arc::clone(&gate), &plain).await;
    update_during_rotation_is_kept(gated.clone(), Arc::clone(&gate), &plain).await;
    delete_during_rotation_wins(gated, gate, &plain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_merges_on_cluster() {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let a = SessionManager::builder(connect("s_merge").await)
        .with_clock(Arc::clone(&clock))
        .build()
        .unwrap();
    let b = SessionManager::builder(connect("s_merge").await)
        .with_clock(clock)
        .build()
        .unwrap();
    concurrent_merges(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_operations_on_cluster() {
    per_user_operations(&SessionManager::new(connect("s_user").await)).await;
    let m = SessionManager::builder(connect("s_max").await)
        .with_max_sessions_per_user(2)
        .build()
        .unwrap();
    max_sessions_rule(&m).await;
}

/// Sessions of one user spread over several slots (and so nodes), and the index still finds,
/// lists, revokes and cleans all of them; no token is stored on any node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_slot_index_and_no_token_on_cluster() {
    let cluster = RedisCluster::shared();
    let store = connect("s_slots").await;
    let m = SessionManager::new(store.clone());
    let mut tokens = Vec::new();
    let mut slots = std::collections::BTreeSet::new();
    for _ in 0..12 {
        let c = m
            .create("zoe", CreateOptions::new().with_data(obj(json!({"k": 1}))))
            .await
            .unwrap();
        let key = KeySchema::session(c.token.handle().as_str()).unwrap();
        slots.insert(cluster.slot_of(&format!("s_slots:{key}")));
        tokens.push(c.token.expose().to_owned());
    }
    assert!(slots.len() > 1, "sessions spread over slots");
    assert_eq!(m.list_user_sessions("zoe").await.unwrap().len(), 12);
    assert_no_token_in_store(&store, &tokens).await;
    assert_eq!(m.cleanup().await.unwrap().entries_remaining, 12);
    assert_eq!(m.revoke_all("zoe").await.unwrap(), 12);
    for t in &tokens {
        assert!(m.get(t).await.unwrap().is_none());
    }
}
