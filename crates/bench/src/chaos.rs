//! The chaos scenarios: steady load of session and cache calls against a real `redis-server`,
//! a fault injected into the server (crash and restart, or a stall), and the measurements that
//! say how the library behaved.
//!
//! This file is over 600 lines because it is one harness: a scenario's run, the load it drives and
//! the read-back of every acknowledged write fill one report. What it measures over time is in
//! `chaos/timeline.rs`, the goals it is judged by in `chaos/goals.rs`.
//!
//! # What is measured
//!
//! - Every library call (`SessionManager::create` / `update`, `get` / `set` on the cache's content
//!   family) is timed; so is every store call underneath it, through [`Instrumented`], a [`Store`]
//!   wrapper between the managers and the `RedisStore`.
//! - A call is **ok** when it returned `Ok` *and* no store call under it failed: the cache manager
//!   fails open (a store error on read is a miss, on write a counted `Ok`), and such a degraded
//!   answer must not count as served. The task-local counter [`STORE_FAILURES`] carries that
//!   information from the wrapper to the load task.
//! - Completions are counted in 50 ms buckets. **Recovery** is the time from the server's return
//!   (restart answered `PING`, or `SIGCONT` sent) to the end of the first 250 ms window whose ok
//!   throughput is at least 90 % of the throughput before the fault.
//! - **Acknowledged writes**: each load task owns its sessions and remembers, per session, the
//!   last `n` the library acknowledged (create: 0, `update` returning the session: its patch), when
//!   it was acknowledged, and the values of later attempts that failed (they may or may not have
//!   been applied). After the scenario every acknowledged session is read back: it must exist and
//!   hold the acknowledged `n` or one of the later attempted ones. Anything else is an acknowledged
//!   write lost. In a planned Sentinel failover (`SENTINEL FAILOVER`) the old primary keeps
//!   acknowledging writes after the replica's promotion, which the failover then discards (Redis
//!   replicates asynchronously and Sentinel does not pause writes): a lost write acknowledged after
//!   the promotion (as the harness saw it, polling the replicas' `ROLE` every millisecond) is
//!   counted apart, in `writes_lost_after_promotion`, and not as an acknowledged write lost.
//! - **Panics**: load tasks are plain tokio tasks; a panic anywhere in the library under them
//!   shows up as a `JoinError` and is counted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use cache_core::{Profile, Store};
use cache_domain::{CacheConfig, CacheManager};
use cache_redis::{RedisConfig, RedisEndpoint, RedisStore, SentinelEndpoint};
use serde::Serialize;
use sessions::{CreateOptions, SessionData, SessionManager};
use test_redis::{RedisSentinel, RedisServer};

use crate::workload::{Doc, Rng};

mod goals;
mod timeline;

pub use goals::{goals, Goal};
use timeline::bucket_of;
pub use timeline::{Instrumented, StoreTimer, Timeline, TimelineData, BUCKET, WINDOW_BUCKETS};

tokio::task_local! {
    /// Store calls that failed in the current load task since the counter was last reset.
    pub static STORE_FAILURES: std::cell::Cell<u64>;
}

/// Fraction of the pre-fault throughput that counts as recovered.
pub const RECOVERED_FRACTION: f64 = 0.9;
/// Allowed wait beyond a call's configured timeout.
pub const TIMEOUT_SLACK: Duration = Duration::from_millis(100);
/// The deadline of one library call in the scenarios: the managers' default
/// (`CACHE_CALL_TIMEOUT`, `SESSION_CALL_TIMEOUT`), set explicitly so the report states what it
/// checked.
pub const LIBRARY_CALL_DEADLINE: Duration = sessions::DEFAULT_CALL_TIMEOUT;
/// Allowed time from the server's return until throughput has recovered.
pub const RECOVERY_GOAL: Duration = Duration::from_secs(2);

/// The fault a scenario injects.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// `SIGKILL` the server, wait `down`, start it again on the same port (same data directory).
    Kill {
        /// Time between the kill and the restart.
        down: Duration,
    },
    /// `SIGSTOP` the server for this long, then `SIGCONT`.
    Freeze {
        /// Time frozen.
        stopped: Duration,
    },
    /// Against a Redis Cluster of 3 primaries with 1 replica each (node timeout 1 s): `SIGKILL` the
    /// primary of slot 0 and wait until its replica has taken over (the "return").
    ClusterFailover,
    /// Against Redis Sentinel (1 primary, 2 replicas, 3 sentinels, `down-after-milliseconds`
    /// 1000): `SIGKILL` the primary and wait until the sentinels have promoted a replica (every
    /// sentinel names it and it answers `ROLE master`: the "return").
    SentinelFailover,
    /// Against the same topology: `SENTINEL FAILOVER` (a planned switch), and wait until every
    /// sentinel names the promoted replica (the "return").
    SentinelManualFailover,
}

/// The server(s) a scenario runs against.
enum Target {
    Single(Arc<RedisServer>),
    Cluster(Arc<test_redis::RedisCluster>),
    Sentinel(Arc<RedisSentinel>),
}

/// One scenario: load, fault, observation.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Name in the report (`kill`, `freeze`).
    pub name: &'static str,
    /// The fault.
    pub fault: Fault,
    /// Concurrent load tasks.
    pub concurrency: usize,
    /// Unmeasured time at the start (connections, caches warm up).
    pub warmup: Duration,
    /// Time over which the pre-fault throughput is measured.
    pub baseline: Duration,
    /// Observation time after the server's return.
    pub after: Duration,
    /// Cache keys the load reads and writes.
    pub cache_keys: u64,
    /// Sessions each load task creates at most (then it only updates them).
    pub sessions_per_task: usize,
}

/// A session a load task created, and what the library acknowledged about it.
#[derive(Debug, Clone)]
pub struct Tracked {
    /// The session's token.
    pub token: String,
    /// The `n` of the last acknowledged write (create: 0).
    pub acked: u64,
    /// When that write was acknowledged.
    pub acked_at: Instant,
    /// `n` values of writes attempted after that one which returned an error: each may or may not
    /// have been applied.
    pub uncertain: Vec<u64>,
}

impl Tracked {
    /// Whether a read-back value of `n` is consistent with what was acknowledged.
    pub fn accepts(&self, n: u64) -> bool {
        n == self.acked || self.uncertain.contains(&n)
    }
}

/// The kinds of library call the load makes, for per-kind maxima.
pub const CALL_KINDS: [&str; 4] = ["session_create", "session_update", "cache_get", "cache_set"];

#[derive(Debug, Default)]
struct TaskResult {
    longest: [Duration; 4],
    ops: u64,
    ok: u64,
    errors_returned: u64,
    degraded: u64,
    vanished: u64,
    sessions: Vec<Tracked>,
}

/// What one scenario measured: one object of `target/chaos/report.json`.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ScenarioReport {
    /// Scenario name.
    pub scenario: String,
    /// Whether the scenario ran (cluster failover does not run without cluster support).
    pub run: bool,
    /// Why it did not run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_run_reason: Option<String>,
    /// Library calls made.
    pub ops: u64,
    /// Calls that returned `Ok` with no failed store call under them.
    pub ok: u64,
    /// `ops - ok`: calls that returned an error or were answered in degraded mode.
    pub errors: u64,
    /// Calls that returned an error.
    pub errors_returned: u64,
    /// Calls that returned `Ok` although a store call under them failed (the cache failing open).
    pub degraded: u64,
    /// Longest library call in flight between the fault and 2 s after the server's return, ms.
    pub max_call_ms_during_outage: Option<f64>,
    /// Longest single store call in flight in the same window, ms.
    pub max_store_call_ms_during_outage: Option<f64>,
    /// Longest call of each kind over the whole scenario, ms (`session_create`, `session_update`,
    /// `cache_get`, `cache_set`).
    pub max_call_ms_by_kind: std::collections::BTreeMap<String, f64>,
    /// The bound a store call is configured to respect:
    /// `max(REDIS_RETRY_BUDGET, REDIS_CONNECT_TIMEOUT + REDIS_RESPONSE_TIMEOUT)`, ms.
    pub call_timeout_ms: f64,
    /// The deadline of one library call (`CACHE_CALL_TIMEOUT` / `SESSION_CALL_TIMEOUT`), shared
    /// by all its store calls, ms.
    pub library_deadline_ms: f64,
    /// Time from the server's return until throughput was back to 90 % of before, ms (`None`:
    /// not within the observation time).
    pub recovery_ms: Option<f64>,
    /// Ok calls per second before the fault.
    pub baseline_ops_per_s: f64,
    /// Acknowledged sessions that an `update` during the run found missing, or that it answered
    /// with data other than the patch just written (each is also counted as lost when the final
    /// check confirms it).
    pub sessions_vanished_during_run: u64,
    /// Sessions whose acknowledged writes were checked afterwards.
    pub sessions_checked: u64,
    /// Acknowledged session writes not found afterwards (session missing or holding an older value).
    /// In a planned Sentinel failover, those acknowledged after the replica's promotion are left
    /// out (see `writes_lost_after_promotion`).
    pub acknowledged_writes_lost: u64,
    /// Planned Sentinel failover only: acknowledged session writes lost that the old primary
    /// acknowledged after the replica's promotion. Redis replicates asynchronously and Sentinel's
    /// failover does not pause writes, so such writes cannot survive; the number says how quickly
    /// the store stopped writing to the old primary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writes_lost_after_promotion: Option<u64>,
    /// Sessions that could not be read back (the check itself failed).
    pub sessions_unverified: u64,
    /// Load-task panics.
    pub panics: u64,
    /// When the fault was injected, ms after the load started.
    pub fault_at_ms: f64,
    /// When the server was back, ms after the load started (a failover: when the promoted replica
    /// first answered `ROLE master`).
    pub returned_at_ms: f64,
    /// The fault, in words.
    pub fault: String,
    /// Concurrent load tasks.
    pub concurrency: usize,
    /// Completions around the fault, for diagnosis: one entry per 50 ms bucket from 1 s before the
    /// fault to 3 s after the server's return, starting at `timeline_from_ms`.
    pub timeline_from_ms: f64,
    /// Ok completions per 50 ms bucket (see `timeline_from_ms`).
    pub ok_per_50ms: Vec<u64>,
    /// Failed or degraded completions per 50 ms bucket.
    pub failed_per_50ms: Vec<u64>,
    /// Each goal and whether it was met.
    pub goals: Vec<Goal>,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

/// The library configuration of the scenarios: the production profile (tight timeouts) against
/// `url` (the Sentinel scenarios use [`sentinel_config`]).
pub fn config(url: &str) -> anyhow::Result<RedisConfig> {
    let config =
        RedisConfig::new(Profile::Production, RedisEndpoint::server(url)).with_key_prefix("chaos");
    config
        .validate()
        .context("building the library configuration")?;
    Ok(config)
}

/// The library configuration of the Sentinel scenarios: the production profile on the topology's
/// sentinels and service.
pub fn sentinel_config(topology: &RedisSentinel) -> RedisConfig {
    let endpoint = SentinelEndpoint::new(topology.sentinel_addrs(), topology.service_name());
    RedisConfig::new(Profile::Production, RedisEndpoint::Sentinel(endpoint))
        .with_key_prefix("chaos")
}

/// The configured bound of one store call (see [`ScenarioReport::call_timeout_ms`]).
pub fn call_timeout(config: &RedisConfig) -> Duration {
    config
        .retry
        .budget
        .max(config.connect_timeout + config.response_timeout)
}

async fn blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .with_context(|| format!("{what} failed"))
}

fn patch(n: u64) -> SessionData {
    let mut p = SessionData::new();
    p.insert("n".into(), serde_json::Value::from(n));
    p
}

fn n_of(data: &SessionData) -> Option<u64> {
    data.get("n").and_then(serde_json::Value::as_u64)
}

/// One load task: loops until `stop`, mixing session creates (10 %), session updates (30 %),
/// cache reads (40 %) and cache writes (20 %).
async fn load_task(
    id: u64,
    scenario: Scenario,
    sessions: SessionManager<Arc<dyn Store>>,
    cache: CacheManager<Arc<dyn Store>>,
    timeline: Arc<Timeline>,
    stop: Arc<AtomicBool>,
) -> TaskResult {
    let mut r = TaskResult::default();
    let mut rng = Rng::new(id);
    let mut active: Vec<Tracked> = Vec::new();
    let mut seq = 0u64;
    let doc = Doc::sample(id);
    while !stop.load(Ordering::Relaxed) {
        STORE_FAILURES.with(|c| c.set(0));
        let choice = rng.below(100);
        let t0 = Instant::now();
        let create = choice < 10 || (choice < 40 && active.is_empty());
        let kind;
        let returned_ok = if create && active.len() < scenario.sessions_per_task {
            kind = 0;
            let data = patch(0);
            match sessions
                .create(&format!("user-{id}"), CreateOptions::new().with_data(data))
                .await
            {
                Ok(new) => {
                    active.push(Tracked {
                        token: new.token.expose().to_owned(),
                        acked: 0,
                        acked_at: Instant::now(),
                        uncertain: Vec::new(),
                    });
                    true
                }
                Err(_) => false,
            }
        } else if choice < 40 && !active.is_empty() {
            kind = 1;
            seq += 1;
            let i = rng.below(active.len() as u64) as usize;
            let t = &mut active[i];
            match sessions.update(&t.token, &patch(seq)).await {
                Ok(Some(s)) => {
                    if n_of(&s.data) == Some(seq) {
                        t.acked = seq;
                        t.acked_at = Instant::now();
                        t.uncertain.clear();
                    } else {
                        // The library says it wrote our patch but hands back other data.
                        t.uncertain.push(seq);
                        r.vanished += 1;
                    }
                    true
                }
                Ok(None) => {
                    // An acknowledged session is gone: keep it for the final check (which counts
                    // it as lost) and stop writing to it.
                    r.vanished += 1;
                    let gone = active.swap_remove(i);
                    r.sessions.push(gone);
                    true
                }
                Err(_) => {
                    t.uncertain.push(seq);
                    false
                }
            }
        } else if choice < 80 {
            kind = 2;
            let key = format!("doc-{}", rng.below(scenario.cache_keys));
            cache.content().get::<Doc>(&key).await.is_ok()
        } else {
            kind = 3;
            let key = format!("doc-{}", rng.below(scenario.cache_keys));
            cache.content().set(&key, &doc).await.is_ok()
        };
        let t1 = Instant::now();
        r.longest[kind] = r.longest[kind].max(t1 - t0);
        let store_failed = STORE_FAILURES.with(std::cell::Cell::get) > 0;
        let ok = returned_ok && !store_failed;
        r.ops += 1;
        if ok {
            r.ok += 1;
        } else if returned_ok {
            r.degraded += 1;
        } else {
            r.errors_returned += 1;
        }
        timeline.call(t0, t1, ok);
    }
    r.sessions.extend(active);
    r
}

/// What [`verify`] found.
#[derive(Debug, Default)]
struct Verified {
    checked: u64,
    lost: u64,
    /// Lost writes acknowledged at or after the `after` instant given to [`verify`].
    lost_after: u64,
    unverified: u64,
}

/// Reads every tracked session back. A lost write acknowledged at or after `after` (a planned
/// failover's promotion) is counted in `lost_after` instead of `lost`.
async fn verify(
    sessions: &SessionManager<Arc<dyn Store>>,
    tracked: &[Tracked],
    after: Option<Instant>,
) -> Verified {
    let mut v = Verified {
        checked: tracked.len() as u64,
        ..Verified::default()
    };
    for t in tracked {
        let mut lose = || {
            if after.is_some_and(|at| t.acked_at >= at) {
                v.lost_after += 1;
            } else {
                v.lost += 1;
            }
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            match sessions.get(&t.token).await {
                Ok(Some(s)) => {
                    if !n_of(&s.data).is_some_and(|n| t.accepts(n)) {
                        lose();
                    }
                    break;
                }
                Ok(None) => {
                    lose();
                    break;
                }
                Err(_) if attempt < 20 => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(_) => {
                    v.unverified += 1;
                    break;
                }
            }
        }
    }
    v
}

/// Runs one scenario against a fresh server and returns its report. Fails only when the harness
/// fails (the server cannot start, a fault cannot be injected).
pub async fn run(scenario: &Scenario) -> anyhow::Result<ScenarioReport> {
    let (target, cfg) = match scenario.fault {
        Fault::ClusterFailover => {
            let cluster = Arc::new(
                blocking("starting a Redis Cluster", test_redis::RedisCluster::start).await?,
            );
            let cfg = RedisConfig::new(
                Profile::Production,
                RedisEndpoint::cluster(cluster.seed_urls()),
            )
            .with_key_prefix("chaos");
            cfg.validate()
                .context("building the cluster configuration")?;
            (Target::Cluster(cluster), cfg)
        }
        Fault::SentinelFailover | Fault::SentinelManualFailover => {
            let topology =
                Arc::new(blocking("starting a Sentinel topology", RedisSentinel::start).await?);
            let cfg = sentinel_config(&topology);
            (Target::Sentinel(topology), cfg)
        }
        _ => {
            let server = Arc::new(
                blocking("starting redis-server", || {
                    RedisServer::builder()
                        .args(["--appendonly", "yes", "--appendfsync", "always"])
                        .start()
                })
                .await?,
            );
            let cfg = config(&server.url())?;
            (Target::Single(server), cfg)
        }
    };
    let bound = call_timeout(&cfg);
    let fault_len = match scenario.fault {
        Fault::Kill { down } => down,
        Fault::Freeze { stopped } => stopped,
        Fault::ClusterFailover => test_redis::CLUSTER_READY_TIMEOUT,
        Fault::SentinelFailover | Fault::SentinelManualFailover => {
            test_redis::SENTINEL_READY_TIMEOUT
        }
    };
    let span =
        scenario.warmup + scenario.baseline + fault_len + scenario.after + Duration::from_secs(30);
    let timeline = Arc::new(Timeline::new(span));
    let redis_store = RedisStore::connect(&cfg)
        .await
        .context("connecting RedisStore")?;
    let redis: Arc<dyn Store> = Arc::new(redis_store.clone());
    let store: Arc<dyn Store> = Arc::new(Instrumented::new(
        redis,
        StoreTimer::new(Arc::clone(&timeline)),
    ));
    let sessions = SessionManager::builder(Arc::clone(&store))
        .with_call_timeout(LIBRARY_CALL_DEADLINE)
        .build()?;
    let cache = CacheManager::builder(Arc::clone(&store))
        .with_config(&CacheConfig::default().with_call_timeout(LIBRARY_CALL_DEADLINE))
        .build()?;
    let docs: Vec<(String, Doc)> = (0..scenario.cache_keys)
        .map(|i| (format!("doc-{i}"), Doc::sample(i)))
        .collect();
    for chunk in docs.chunks(500) {
        cache.content().set_many(chunk).await?;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..scenario.concurrency as u64)
        .map(|id| {
            let fut = load_task(
                id,
                scenario.clone(),
                sessions.clone(),
                cache.clone(),
                Arc::clone(&timeline),
                Arc::clone(&stop),
            );
            tokio::spawn(STORE_FAILURES.scope(std::cell::Cell::new(0), fut))
        })
        .collect();

    tokio::time::sleep(scenario.warmup + scenario.baseline).await;
    let fault_at = Instant::now();
    // A planned failover's promotion: lost writes acknowledged from then on are counted apart.
    let mut promoted_at: Option<Instant> = None;
    // Under Sentinel the "return" is the promotion (a primary serves again), which comes before
    // every sentinel names it; the store may follow it before the harness's wait ends.
    let mut returned: Option<Instant> = None;
    let fault_desc = match (scenario.fault, &target) {
        (Fault::ClusterFailover, Target::Cluster(cluster)) => {
            let c = Arc::clone(cluster);
            let (port, waited) =
                blocking("killing a primary and waiting for failover", move || {
                    let port = c.kill_primary_of_slot(0);
                    (port, c.wait_for_failover(0, port))
                })
                .await?;
            format!(
                "SIGKILL of the primary of slot 0 (port {port}, 1 of 3 primaries); replica \
                 promoted and cluster ok after {} ms (node timeout {} ms)",
                waited.as_millis(),
                cluster.node_timeout().as_millis()
            )
        }
        (Fault::SentinelFailover, Target::Sentinel(topology)) => {
            let t = Arc::clone(topology);
            let p = blocking(
                "killing the primary and waiting for the promotion",
                move || t.kill_primary(),
            )
            .await?;
            returned = Some(fault_at + p.promoted.unwrap_or(p.elapsed));
            format!(
                "SIGKILL of the primary (port {}); replica :{} promoted after {}, named by every \
                 sentinel after {} ms (down-after 1000 ms); the store saw {} switch(es)",
                p.from,
                p.to,
                p.promoted
                    .map_or_else(|| "?".to_owned(), |d| format!("{} ms", d.as_millis())),
                p.elapsed.as_millis(),
                redis_store.sentinel_switches()
            )
        }
        (Fault::SentinelManualFailover, Target::Sentinel(topology)) => {
            let t = Arc::clone(topology);
            let p = blocking("SENTINEL FAILOVER", move || t.failover()).await?;
            promoted_at = p.promoted.map(|d| fault_at + d);
            returned = Some(fault_at + p.promoted.unwrap_or(p.elapsed));
            format!(
                "SENTINEL FAILOVER (primary :{}); replica :{} promoted after {}, named by every \
                 sentinel after {} ms; the store saw {} switch(es)",
                p.from,
                p.to,
                p.promoted
                    .map_or_else(|| "?".to_owned(), |d| format!("{} ms", d.as_millis())),
                p.elapsed.as_millis(),
                redis_store.sentinel_switches()
            )
        }
        (Fault::ClusterFailover, _)
        | (_, Target::Cluster(_))
        | (Fault::SentinelFailover | Fault::SentinelManualFailover, _)
        | (_, Target::Sentinel(_)) => {
            anyhow::bail!(
                "scenario {} has a fault that does not fit its target",
                scenario.name
            )
        }
        (Fault::Kill { down }, Target::Single(server)) => {
            let s = Arc::clone(server);
            blocking("SIGKILL", move || s.kill()).await?;
            tokio::time::sleep(down).await;
            let s = Arc::clone(server);
            blocking("restarting redis-server", move || s.restart()).await?;
            format!(
                "SIGKILL, restart on the same port after {down:?} (appendonly yes, appendfsync always)"
            )
        }
        (Fault::Freeze { stopped }, Target::Single(server)) => {
            let s = Arc::clone(server);
            blocking("SIGSTOP", move || s.freeze()).await?;
            tokio::time::sleep(stopped).await;
            let s = Arc::clone(server);
            blocking("SIGCONT", move || s.thaw()).await?;
            format!("SIGSTOP for {stopped:?}, then SIGCONT")
        }
    };
    let returned_at = returned.unwrap_or_else(Instant::now);
    tokio::time::sleep(scenario.after).await;
    stop.store(true, Ordering::Relaxed);

    let mut totals = TaskResult::default();
    let mut panics = 0;
    for t in tasks {
        match t.await {
            Ok(r) => {
                for (a, b) in totals.longest.iter_mut().zip(r.longest) {
                    *a = (*a).max(b);
                }
                totals.ops += r.ops;
                totals.ok += r.ok;
                totals.errors_returned += r.errors_returned;
                totals.degraded += r.degraded;
                totals.vanished += r.vanished;
                totals.sessions.extend(r.sessions);
            }
            Err(e) if e.is_panic() => panics += 1,
            Err(e) => anyhow::bail!("a load task was cancelled: {e}"),
        }
    }
    let data = timeline.snapshot();
    let verified = verify(&sessions, &totals.sessions, promoted_at).await;
    // Dropping the target kills the server(s); a cluster's nodes are killed in a blocking task.
    drop(sessions);
    drop(cache);
    drop(store);
    drop(redis_store);
    blocking("stopping the servers", move || drop(target)).await?;

    let fault_off = timeline.offset(fault_at);
    let return_off = timeline.offset(returned_at);
    let baseline_rate = data.ok_rate(bucket_of(scenario.warmup), bucket_of(fault_off));
    let recovery = data.recovery(return_off, baseline_rate, RECOVERED_FRACTION);
    let window_end = return_off + Duration::from_secs(2);
    let max_call = TimelineData::longest_in_flight(&data.longest_call_us, fault_off, window_end);
    let max_store = TimelineData::longest_in_flight(&data.longest_store_us, fault_off, window_end);

    let from = bucket_of(fault_off.saturating_sub(Duration::from_secs(1)));
    let to = bucket_of(return_off + Duration::from_secs(3)).min(data.ok.len());
    let mut report = ScenarioReport {
        timeline_from_ms: ms(BUCKET * from as u32),
        ok_per_50ms: data.ok[from..to].to_vec(),
        failed_per_50ms: data.failed[from..to].to_vec(),
        scenario: scenario.name.to_owned(),
        run: true,
        not_run_reason: None,
        ops: totals.ops,
        ok: totals.ok,
        errors: totals.ops - totals.ok,
        errors_returned: totals.errors_returned,
        degraded: totals.degraded,
        max_call_ms_during_outage: Some(ms(max_call)),
        max_store_call_ms_during_outage: Some(ms(max_store)),
        max_call_ms_by_kind: CALL_KINDS
            .iter()
            .zip(totals.longest)
            .map(|(k, d)| ((*k).to_owned(), ms(d)))
            .collect(),
        call_timeout_ms: ms(bound),
        library_deadline_ms: ms(LIBRARY_CALL_DEADLINE),
        recovery_ms: recovery.map(ms),
        baseline_ops_per_s: baseline_rate.round(),
        sessions_vanished_during_run: totals.vanished,
        sessions_checked: verified.checked,
        acknowledged_writes_lost: verified.lost,
        writes_lost_after_promotion: matches!(scenario.fault, Fault::SentinelManualFailover)
            .then_some(verified.lost_after),
        sessions_unverified: verified.unverified,
        panics,
        fault_at_ms: ms(fault_off),
        returned_at_ms: ms(return_off),
        fault: fault_desc,
        concurrency: scenario.concurrency,
        goals: Vec::new(),
    };
    report.goals = goals(&report);
    Ok(report)
}

/// The report of a scenario that did not run.
pub fn not_run(name: &str, reason: &str) -> ScenarioReport {
    ScenarioReport {
        scenario: name.to_owned(),
        run: false,
        not_run_reason: Some(reason.to_owned()),
        ..ScenarioReport::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracked_accepts_acknowledged_or_uncertain_values() {
        let t = Tracked {
            token: String::new(),
            acked: 4,
            acked_at: Instant::now(),
            uncertain: vec![6, 7],
        };
        assert!(t.accepts(4) && t.accepts(7));
        assert!(!t.accepts(3) && !t.accepts(5));
    }
}
