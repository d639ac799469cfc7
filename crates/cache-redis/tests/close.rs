//! `close()` on real Redis: calls after it are refused with `Error::Closed`, a call in flight when it
//! is called completes, every connection is gone from the server's `CLIENT LIST` when it returns,
//! the background task ends, and closing twice (or through another view) is fine. Under Sentinel,
//! `close()` also stops the watcher (its subscriptions to the sentinels end), drops the connection
//! that asks the sentinels, and closes the replica connections of the replica-reads view.

mod common;

use std::time::{Duration, Instant};

use cache_core::{ErrorKind, Profile, SetOptions, Store};
use cache_redis::{
    PoolConfig, RedisConfig, RedisEndpoint, RedisStore, SentinelEndpoint, CLIENT_NAME,
};
use test_redis::{RedisCluster, RedisSentinel, RedisServer};

/// The server's `CLIENT LIST` lines of our connections (named [`CLIENT_NAME`]).
fn our_clients(server: &RedisServer) -> Vec<String> {
    server
        .cli(["CLIENT", "LIST"])
        .lines()
        .filter(|l| l.contains(&format!(" name={CLIENT_NAME} ")))
        .map(str::to_owned)
        .collect()
}

/// Polls `cond` (a server-side observation) every 10 ms until it holds, failing after `limit`.
async fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(
            started.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_lets_the_call_in_flight_finish_then_ends_every_connection() {
    let server = RedisServer::start();
    // A response timeout longer than the server's pause below, so the paused write can finish.
    let config = common::config(&server.url()).with_response_timeout(Duration::from_secs(8));
    let store = RedisStore::connect(&config).await.unwrap();
    let view = store.scoped("view").unwrap();
    for _ in 0..4 {
        store.get("warm").await.unwrap();
    }
    assert_eq!(
        our_clients(&server).len(),
        store.shared_connections(),
        "every shared connection is open and named"
    );

    // A write the server holds (CLIENT PAUSE WRITE) while close() is called.
    server.cli(["CLIENT", "PAUSE", "2000", "WRITE"]);
    let writer = tokio::spawn({
        let store = store.clone();
        async move { store.set("in-flight", b"done", SetOptions::new()).await }
    });
    wait_until(
        "the write held by the server",
        Duration::from_secs(10),
        || {
            server
                .cli(["INFO", "clients"])
                .contains("blocked_clients:1")
        },
    )
    .await;
    let closing = tokio::spawn({
        let store = store.clone();
        async move { store.close().await }
    });

    // From the moment close() runs, new calls are refused (the write is still held). A probe
    // admitted before that waits behind the paused write on the shared connection, so each probe
    // gets a short bound: a refused call answers at once, without touching a connection.
    let started = Instant::now();
    while !tokio::time::timeout(Duration::from_millis(50), store.exists("other"))
        .await
        .is_ok_and(|r| r.is_err_and(|e| e.kind() == ErrorKind::Closed))
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "close() did not start"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !writer.is_finished(),
        "the write is still held by the server"
    );
    let err = view.get("k").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed, "{err}");
    assert!(!err.is_transient(), "a closed store stays closed");
    assert!(err.to_string().contains("close()"), "{err}");

    // The call in flight completes, then close() ends every connection.
    assert!(
        writer.await.unwrap().unwrap(),
        "the write in flight completed"
    );
    closing.await.unwrap().unwrap();
    assert_eq!(server.cli(["GET", "t:in-flight"]), "done");
    assert_eq!(our_clients(&server), Vec::<String>::new());

    // Idempotent, through any view; every call stays refused.
    store.close().await.unwrap();
    view.close().await.unwrap();
    for result in [
        store.ping().await.map(|_| ()),
        store.stats().await.map(|_| ()),
    ] {
        assert_eq!(result.unwrap_err().kind(), ErrorKind::Closed);
    }
    assert_eq!(
        store
            .set("k", b"v", SetOptions::new())
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Closed
    );
    assert_eq!(
        our_clients(&server),
        Vec::<String>::new(),
        "nothing reconnected"
    );
}

#[tokio::test]
async fn close_through_a_trait_object_ends_connections_and_the_background_task() {
    let server = RedisServer::start();
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let before = tasks();
    // The background task runs every 200 ms in this configuration.
    let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(common::store(&server).await);
    store.get("warm").await.unwrap();
    store.get("warm").await.unwrap();
    assert!(
        tasks() > before,
        "the store runs tasks (connection drivers, health check)"
    );
    assert!(!our_clients(&server).is_empty());

    store.close().await.unwrap();
    assert_eq!(our_clients(&server), Vec::<String>::new());
    // Every task of the store ends (the aborted health check, the connections' drivers, the
    // pool's returns); they finish on their next poll, so give them polls, not time.
    let started = Instant::now();
    while tasks() > before {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{} tasks still alive after close (before: {before})",
            tasks()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    store.close().await.unwrap();
    assert_eq!(store.get("k").await.unwrap_err().kind(), ErrorKind::Closed);
}

#[tokio::test]
async fn a_lazy_store_closed_before_its_first_call_opens_nothing() {
    let server = RedisServer::start();
    let store = RedisStore::builder(&common::config(&server.url()))
        .with_lazy_connect()
        .connect()
        .await
        .unwrap();
    store.close().await.unwrap();
    assert_eq!(store.get("k").await.unwrap_err().kind(), ErrorKind::Closed);
    assert_eq!(our_clients(&server), Vec::<String>::new());
    let received: u64 = server
        .cli(["INFO", "stats"])
        .lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The harness's readiness PING and the redis-cli calls of this test; none of ours.
    assert!(received <= 3, "{received} connections received");
}

/// Normal client connections on a cluster node other than the `CLIENT LIST` call itself.
fn clients_on(node: &RedisServer) -> usize {
    node.cli(["CLIENT", "LIST"])
        .lines()
        .filter(|l| l.contains(" flags=N ") && !l.contains(" cmd=client|list "))
        .count()
}

#[tokio::test]
async fn close_on_a_cluster_ends_the_connections_to_every_node() {
    let cluster = RedisCluster::builder()
        .primaries(3)
        .replicas_per_primary(0)
        .start();
    let store = RedisStore::connect(&common::cluster_config(&cluster))
        .await
        .unwrap();
    for i in 0..30 {
        store
            .set(&format!("k{i}"), b"v", SetOptions::new())
            .await
            .unwrap();
    }
    let open: usize = cluster.nodes().iter().map(clients_on).sum();
    assert!(open >= 3, "connections to every primary: {open}");
    store.close().await.unwrap();
    assert_eq!(store.get("k1").await.unwrap_err().kind(), ErrorKind::Closed);
    // A cluster connection's node connections close when redis-rs's drivers see their last handle
    // dropped, just after close() returns (no QUIT: it would reach one node and reconnect).
    wait_until(
        "every node connection to close",
        Duration::from_secs(10),
        || cluster.nodes().iter().map(clients_on).sum::<usize>() == 0,
    )
    .await;
    store.close().await.unwrap();
}

/// Subscribed clients (`sub=` above 0) on one sentinel: the store's watcher (sentinels do not
/// subscribe on each other; they use the data nodes' hello channel).
fn subscribers_on(sentinel: &test_redis::SentinelNode) -> usize {
    sentinel
        .cli(["CLIENT", "LIST"])
        .lines()
        .filter(|l| !l.contains(" sub=0 "))
        .count()
}

#[tokio::test]
async fn close_under_sentinel_stops_the_watcher_and_ends_primary_and_replica_connections() {
    let t = RedisSentinel::start();
    let config = RedisConfig::new(
        Profile::Production,
        RedisEndpoint::Sentinel(SentinelEndpoint::new(t.sentinel_addrs(), t.service_name())),
    )
    .with_key_prefix("t")
    .with_read_from_replicas(true)
    .with_pool(PoolConfig::default().with_health_check_interval(Duration::from_millis(200)));
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let before = tasks();
    let store = RedisStore::connect(&config).await.unwrap();
    let reader = store.replica_reads();
    store.set("k", b"v", SetOptions::new()).await.unwrap();
    for _ in 0..4 {
        reader.get("k").await.unwrap();
    }
    // The watcher subscribes on every sentinel in the background.
    wait_until(
        "the watcher to subscribe on every sentinel",
        Duration::from_secs(10),
        || t.sentinel_nodes().iter().all(|s| subscribers_on(s) >= 1),
    )
    .await;
    // The connection kept for questions to a sentinel (discovery asked one), named like ours.
    let asking = || -> usize {
        t.sentinel_nodes()
            .iter()
            .map(|s| {
                s.cli(["CLIENT", "LIST"])
                    .lines()
                    .filter(|l| l.contains(&format!(" name={CLIENT_NAME} ")))
                    .count()
            })
            .sum()
    };
    assert_eq!(asking(), 1, "one named connection asking a sentinel");
    let ours = || -> usize { t.data_nodes().iter().map(|n| our_clients(n).len()).sum() };
    assert!(
        !our_clients(t.primary()).is_empty(),
        "named connections to the primary"
    );
    // The replica-reads view has connections of its own (to a replica, or to the primary when no
    // replica was ready): at least one besides the store's.
    assert!(ours() >= 2, "the view's connections: {}", ours());

    store.close().await.unwrap();
    assert_eq!(reader.get("k").await.unwrap_err().kind(), ErrorKind::Closed);
    assert_eq!(store.ping().await.unwrap_err().kind(), ErrorKind::Closed);
    assert_eq!(ours(), 0, "no connection of ours to any data node");
    // The watcher's subscriptions end with its task, and the connection asking the sentinels is
    // dropped, as the sentinels see the sockets close.
    wait_until(
        "the watcher's subscriptions to end",
        Duration::from_secs(10),
        || t.sentinel_nodes().iter().all(|s| subscribers_on(s) == 0),
    )
    .await;
    wait_until(
        "the connection asking the sentinels to close",
        Duration::from_secs(10),
        || asking() == 0,
    )
    .await;
    let started = Instant::now();
    while tasks() > before {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{} tasks still alive after close (before: {before})",
            tasks()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    reader.close().await.unwrap();
}
