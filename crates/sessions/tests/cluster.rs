//! The session manager's integration suite on a real Redis Cluster (3 primaries, 3 replicas), shared
//! by the tests of this binary, each under its own key prefix.
//!
//! Session keys and per-user index keys hash to different slots (no hash tags: a session is found by
//! its token alone); these tests show that the ordering rules of the crate keep every guarantee there.

mod common;

use std::time::Duration;

use cache_core::config::{PoolConfig, Profile};
use cache_core::Config;
use cache_redis::{RedisConfig, RedisStore};
use common::*;
use serde_json::json;
use sessions::keys::session_key;
use sessions::{CreateOptions, SessionManager};
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
    RedisStore::connect(&RedisConfig::from_core(&config).unwrap())
        .await
        .unwrap()
}

/// The shared cluster under a key prefix of the test's own (`s_{test name}`); every store is a new
/// connection.
struct ClusterFixture {
    prefix: String,
}

impl Fixture for ClusterFixture {
    type Store = RedisStore;

    async fn connect(&self) -> RedisStore {
        connect(&self.prefix).await
    }
}

fn cluster_fixture(test: &str) -> ClusterFixture {
    ClusterFixture {
        prefix: format!("s_{test}"),
    }
}

common::session_scenarios! {
    fixture: cluster_fixture,
    sequential: #[tokio::test(flavor = "multi_thread", worker_threads = 2)],
    concurrent: #[tokio::test(flavor = "multi_thread", worker_threads = 2)],
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
        let key = session_key(c.token.handle()).unwrap();
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
