//! Health checks cost the same few commands whatever the keyspace size: each check is counted with
//! the server's own `INFO commandstats` on an empty Redis and on one holding a million keys
//! (`DEBUG POPULATE`), and the self-test leaves no key behind and never one without a TTL.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use cache_core::health::{self, SELF_TEST_KEYS, SELF_TEST_LOCK};
use cache_core::{Expiry, SetOptions, Store};
use cache_redis::{PoolConfig, RedisStore};
use test_redis::RedisServer;

/// A server that allows `DEBUG POPULATE` from loopback.
fn server() -> RedisServer {
    RedisServer::builder()
        .args(["--enable-debug-command", "local"])
        .start()
}

/// A store whose background check stays quiet during the test (it would add `PING`s to the count).
async fn quiet_store(server: &RedisServer) -> RedisStore {
    let config = common::config(&server.url()).with_pool(
        PoolConfig::default()
            .with_max_open(8)
            .with_health_check_interval(Duration::from_secs(600)),
    );
    RedisStore::connect(&config).await.unwrap()
}

/// The commands `check` sends, per command name.
async fn commands_of<F: std::future::Future>(
    server: &RedisServer,
    check: F,
) -> (F::Output, BTreeMap<String, u64>) {
    server.cli(["CONFIG", "RESETSTAT"]);
    let out = check.await;
    (out, server.commandstats())
}

fn total(stats: &BTreeMap<String, u64>) -> u64 {
    stats.values().sum()
}

/// Every check, counted: (liveness, readiness, connectivity, self-test).
async fn count_every_check(server: &RedisServer, store: &RedisStore) -> [BTreeMap<String, u64>; 4] {
    let (live, liveness) = commands_of(server, health::liveness(store)).await;
    assert!(live.alive, "{live:?}");
    let (ready, readiness) = commands_of(server, health::readiness(store)).await;
    assert!(ready.ready, "{ready:?}");
    assert!(ready.pool.is_some(), "the pool state is part of readiness");
    let (conn, connectivity) = commands_of(server, health::connectivity(store)).await;
    assert!(conn.reachable, "{conn:?}");
    let (report, self_test) = commands_of(server, health::self_test(store)).await;
    assert!(report.passed(), "{report:#?}");
    [liveness, readiness, connectivity, self_test]
}

#[tokio::test]
async fn every_check_sends_the_same_few_commands_on_an_empty_redis_and_on_a_million_keys() {
    let server = server();
    let store = quiet_store(&server).await;
    // A first round opens the second shared connection and loads the Lua scripts (`EVAL` once,
    // then `EVALSHA`): one-time costs of a new store, not of a check.
    count_every_check(&server, &store).await;
    let empty = count_every_check(&server, &store).await;

    server.cli(["DEBUG", "POPULATE", "1000000"]);
    let dbsize: u64 = server.cli(["DBSIZE"]).parse().unwrap();
    assert!(dbsize >= 1_000_000, "{dbsize}");
    let full = count_every_check(&server, &store).await;

    assert_eq!(empty, full, "the keyspace size changed what a check sends");
    let [liveness, readiness, connectivity, self_test] = &full;
    assert_eq!(total(liveness), 1, "{liveness:?}");
    assert_eq!(liveness.get("ping"), Some(&1));
    assert_eq!(total(readiness), 2, "{readiness:?}");
    assert_eq!(readiness.get("get"), Some(&1));
    assert_eq!(total(connectivity), 2, "{connectivity:?}");
    assert_eq!(connectivity.get("info"), Some(&1));
    // About 40 round trips; the server counts the commands its Lua scripts run as well.
    assert!(
        total(self_test) <= 70,
        "{} commands: {self_test:?}",
        total(self_test)
    );
    assert_eq!(self_test.get("scan"), Some(&1), "one page, never a walk");
    assert!(!self_test.contains_key("keys"));
    assert_eq!(
        server.cli(["DBSIZE"]).parse::<u64>().unwrap(),
        dbsize,
        "the self-test left keys behind"
    );
}

/// Every key the self-test writes gets a TTL, checked by watching the server's own view of each key
/// after every command (`MONITOR` would show the commands, the keyspace is what matters).
#[tokio::test]
async fn the_self_test_deletes_its_keys_by_name_and_cleans_up_after_a_crashed_run() {
    let server = server();
    let store = quiet_store(&server).await;
    // What a run that crashed before its cleanup leaves: a key of each kind, one without a TTL
    // (the sorted set between its ZADD and EXPIRE), and no lock (its TTL ran out).
    store
        .set(
            SELF_TEST_KEYS[0],
            b"left",
            SetOptions::ttl(Duration::from_secs(30)),
        )
        .await
        .unwrap();
    store.zadd("__selftest:zset", "m", 1.0).await.unwrap();
    server.cli(["SET", "t:keep", "mine"]);
    let (report, stats) = commands_of(&server, health::self_test(&store)).await;
    assert!(report.passed(), "{report:#?}");
    assert_eq!(report.scope, "__selftest");
    let names: Vec<_> = report.steps.iter().map(|st| st.name).collect();
    assert_eq!(names.first(), Some(&"lock"));
    assert_eq!(names.last(), Some(&"cleanup"));
    assert!(
        !stats.contains_key("scan") || stats["scan"] == 1,
        "{stats:?}"
    );
    assert_eq!(server.cli(["DBSIZE"]), "1", "only the foreign key is left");
    assert_eq!(server.cli(["GET", "t:keep"]), "mine");
}

#[tokio::test]
async fn a_second_self_test_while_one_runs_is_refused_and_touches_nothing() {
    let server = server();
    let store = quiet_store(&server).await;
    // Another operator's run holds the lock and has written a key.
    store
        .set(
            SELF_TEST_LOCK,
            b"someone-else",
            SetOptions::ttl(Duration::from_secs(30)).if_absent(),
        )
        .await
        .unwrap();
    store
        .set_many(
            &[(SELF_TEST_KEYS[0], b"theirs")],
            Expiry::In(Duration::from_secs(30)),
        )
        .await
        .unwrap();
    let report = health::self_test(&store).await;
    assert!(!report.passed());
    assert_eq!(report.steps.len(), 1, "{report:#?}");
    assert_eq!(report.steps[0].name, "lock");
    assert!(
        report.steps[0]
            .error
            .as_deref()
            .unwrap()
            .contains("another self-test"),
        "{report:#?}"
    );
    assert_eq!(
        store.get(SELF_TEST_KEYS[0]).await.unwrap().as_deref(),
        Some(&b"theirs"[..]),
        "the other run's key is not ours to delete"
    );
    assert_eq!(
        store.get(SELF_TEST_LOCK).await.unwrap().as_deref(),
        Some(&b"someone-else"[..])
    );
}

/// Stops a self-test after its `n`-th write as a crash would: every later call fails, the cleanup
/// included.
#[derive(Debug)]
struct CrashAfter {
    n: usize,
    writes: std::sync::atomic::AtomicUsize,
    last_write: std::sync::Mutex<Option<cache_core::layer::Method>>,
}

#[cache_core::async_trait]
impl cache_core::layer::StoreHook for CrashAfter {
    async fn before(&self, _: &cache_core::layer::Op<'_>) -> cache_core::Result<()> {
        if self.writes.load(std::sync::atomic::Ordering::SeqCst) >= self.n {
            return Err(cache_core::Error::backend("crashed"));
        }
        Ok(())
    }
    fn after(
        &self,
        op: &cache_core::layer::Op<'_>,
        _: Duration,
        _: cache_core::Result<(), &cache_core::Error>,
    ) {
        use cache_core::layer::Method;
        if matches!(
            op.method,
            Method::Set | Method::SetMany | Method::IncrBy | Method::CompareAndSwap | Method::Zadd
        ) {
            self.writes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            *self.last_write.lock().unwrap() = Some(op.method);
        }
    }
}

/// A run cut after each of its writes in turn leaves only keys that expire: every key is written
/// with a TTL, except the sorted set between its first `ZADD` and the `EXPIRE` that follows (the
/// one exception, documented), and nothing a run leaves blocks the next one for long.
#[tokio::test]
async fn a_self_test_cut_after_any_write_leaves_only_keys_with_a_ttl() {
    let server = server();
    let store = quiet_store(&server).await;
    let mut cuts = 0;
    for n in 1.. {
        let hook = CrashAfter {
            n,
            writes: std::sync::atomic::AtomicUsize::new(0),
            last_write: std::sync::Mutex::new(None),
        };
        let crashing = cache_core::layer::Layered::new(store.clone(), hook);
        let report = health::self_test(&crashing).await;
        if report.passed() {
            // `n` is past the last write: the run was not cut.
            break;
        }
        cuts += 1;
        let keys = server.cli(["--scan", "--pattern", "t:__selftest:*"]);
        let (_, hook) = crashing.into_parts();
        let zadd_just_before =
            *hook.last_write.lock().unwrap() == Some(cache_core::layer::Method::Zadd);
        for key in keys.lines().filter(|k| !k.is_empty()) {
            let pttl: i64 = server.cli(["PTTL", key]).parse().unwrap();
            if pttl == -1 && key == "t:__selftest:zset" && zadd_just_before {
                // The documented exception; the next run deletes it by name.
                continue;
            }
            assert!(
                pttl > 0 && pttl <= 30_000,
                "cut after write {n}: {key} has PTTL {pttl}: {report:#?}"
            );
        }
        // The next cut starts clean, as after the lock's TTL.
        server.cli(["DEL", "t:__selftest:lock"]);
        assert!(health::self_test(&store).await.passed());
    }
    assert!(
        cuts >= 10,
        "the self-test writes at least 10 times ({cuts})"
    );
    assert_eq!(server.cli(["DBSIZE"]), "0");
}
