//! Failovers under load on a real Sentinel topology (one primary, two replicas, three sentinels):
//! cache writes and reads (`CacheManager`) and session creates and reads (`SessionManager`) run
//! steadily on one `RedisStore` while the sentinels move the primary, first by `SENTINEL FAILOVER`,
//! then by a `SIGKILL` of the primary. After each, every operation succeeds again on the same store
//! (no restart, no new configuration), everything written and replicated before the fault is still
//! there, and the test prints how long operations failed (the interruption).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cache_core::{Profile, Store};
use cache_domain::{CacheConfig, CacheManager, WritePolicy};
use cache_redis::{PoolConfig, RedisConfig, RedisEndpoint, RedisStore, RetryConfig};
use sessions::{CreateOptions, SessionManager};
use test_redis::{Promotion, RedisSentinel};

use common::Log;

struct Load {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Log>>,
    rounds: Arc<AtomicU64>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// 4 workers, each a cache write + read and a session create + read per round.
    fn start(
        cache: &Arc<CacheManager<RedisStore>>,
        sessions: &Arc<SessionManager<RedisStore>>,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Log::default()));
        let rounds = Arc::new(AtomicU64::new(0));
        let workers = (0..4)
            .map(|w| {
                let (cache, sessions, stop, log, rounds) = (
                    cache.clone(),
                    sessions.clone(),
                    stop.clone(),
                    log.clone(),
                    rounds.clone(),
                );
                tokio::spawn(async move {
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
                            let r = r.and_then(|s| {
                                s.ok_or_else(|| cache_core::Error::backend("session lost"))
                            });
                            log.lock().unwrap().record(&r);
                        }
                        rounds.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        Load {
            stop,
            log,
            rounds,
            workers,
        }
    }

    async fn wait_rounds(&self, n: u64) {
        let target = self.rounds.load(Ordering::Relaxed) + n;
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.rounds.load(Ordering::Relaxed) < target {
            assert!(
                Instant::now() < deadline,
                "the load stalled: {:?}",
                self.log.lock().unwrap().last_error
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits (bounded) until 100 consecutive rounds ran without a failed operation; returns the
    /// log of everything since the last call and resets it.
    async fn wait_clean(&self) -> Log {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let failed_before = self.log.lock().unwrap().failed;
            self.wait_rounds(100).await;
            if self.log.lock().unwrap().failed == failed_before {
                return std::mem::take(&mut *self.log.lock().unwrap());
            }
            assert!(
                Instant::now() < deadline,
                "operations did not resume: {:?}",
                self.log.lock().unwrap().last_error
            );
        }
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            w.await.unwrap();
        }
    }
}

/// Prints what the load saw around a fault injected at `at`; returns the interruption (first to
/// last failed operation).
fn report(what: &str, at: Instant, promotion: &Promotion, log: &Log) -> Duration {
    let interruption = log
        .last_failure
        .map(|last| last.saturating_duration_since(log.first_failure.unwrap_or(last)))
        .unwrap_or_default();
    eprintln!(
        "{what}: primary :{} -> :{} (all sentinels agree, new primary answers ROLE master) after \
         {:?}; {} of {} operations failed, from +{:?} to +{:?} after the fault (interruption \
         {interruption:?}); last error: {:?}",
        promotion.from,
        promotion.to,
        promotion.elapsed,
        log.failed,
        log.ok + log.failed,
        log.first_failure.map(|t| t.saturating_duration_since(at)),
        log.last_failure.map(|t| t.saturating_duration_since(at)),
        log.last_error,
    );
    interruption
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_store_follows_a_manual_failover_and_a_crash_of_the_primary() {
    let t = Arc::new(
        RedisSentinel::builder()
            .password("data-pw")
            .sentinel_password("sentinel-pw")
            .start(),
    );
    let endpoint = cache_redis::SentinelEndpoint::new(t.sentinel_addrs(), t.service_name())
        .with_sentinel_credentials(None, "sentinel-pw")
        .with_credentials(None, "data-pw");
    let cfg = RedisConfig::new(Profile::Production, RedisEndpoint::Sentinel(endpoint))
        .with_key_prefix("failover")
        .with_connect_timeout(Duration::from_millis(500))
        .with_response_timeout(Duration::from_millis(500))
        .with_pool(
            PoolConfig::default()
                .with_max_open(8)
                .with_health_check_interval(Duration::from_millis(200)),
        )
        .with_retry(RetryConfig::default().with_budget(Duration::from_millis(1000)));
    let store = RedisStore::connect(&cfg).await.unwrap();
    let cache = Arc::new(
        CacheManager::builder(store.clone())
            .with_config(&CacheConfig::default().with_write_policy(WritePolicy::Propagate))
            .build()
            .unwrap(),
    );
    let sessions = Arc::new(SessionManager::new(store.clone()));

    // Data that exists before the faults.
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
    let check_before = || async {
        for (user, token) in &before {
            let v: Option<serde_json::Value> = cache.user().get(user).await.unwrap();
            assert!(v.is_some(), "cache entry of {user} lost");
            let s = sessions.get(token).await.unwrap();
            assert_eq!(s.map(|s| s.user_id), Some(user.clone()), "session lost");
        }
    };

    let load = Load::start(&cache, &sessions);
    load.wait_rounds(40).await;
    load.wait_clean().await;

    // 1. SENTINEL FAILOVER.
    t.primary().wait_replicated();
    let at = Instant::now();
    let topology = Arc::clone(&t);
    let manual = tokio::task::spawn_blocking(move || topology.failover())
        .await
        .unwrap();
    let log = load.wait_clean().await;
    let manual_gap = report("SENTINEL FAILOVER", at, &manual, &log);
    assert_eq!(
        store.sentinel_primary(),
        Some(format!("127.0.0.1:{}", manual.to))
    );
    assert!(store.sentinel_switches() >= 1);
    check_before().await;

    // 2. SIGKILL of the (new) primary, once the topology is stable again.
    let topology = Arc::clone(&t);
    tokio::task::spawn_blocking(move || topology.wait_until_ready())
        .await
        .unwrap();
    t.primary().wait_replicated();
    let at = Instant::now();
    let topology = Arc::clone(&t);
    let crash = tokio::task::spawn_blocking(move || topology.kill_primary())
        .await
        .unwrap();
    let log = load.wait_clean().await;
    let crash_gap = report("SIGKILL of the primary", at, &crash, &log);
    assert!(log.failed > 0, "a crash is seen by the load");
    assert_eq!(
        store.sentinel_primary(),
        Some(format!("127.0.0.1:{}", crash.to))
    );
    assert!(store.sentinel_switches() >= 2);
    load.stop().await;
    check_before().await;

    // Operations failed for about the promotion, never "until a restart": bounded by the
    // promotion plus a few retry budgets (a generous bound, not a measurement).
    assert!(
        crash_gap < crash.elapsed + Duration::from_secs(5),
        "{crash_gap:?}"
    );
    assert!(
        manual_gap < manual.elapsed + Duration::from_secs(5),
        "{manual_gap:?}"
    );
    assert!(store.ping().await.is_ok());
}
