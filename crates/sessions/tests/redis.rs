//! The session manager on a real `redis-server` started by each test (`test_redis`): the shared
//! scenarios, expiry with short real TTLs, a scan of everything Redis holds and saw (`MONITOR`) for
//! tokens, and a stopped server.

mod common;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use cache_core::{Config, Store};
use cache_redis::{RedisConfig, RedisStore};
use common::*;
use serde_json::json;
use sessions::keys::{index_key, session_key};
use sessions::{CreateOptions, SessionManager};
use test_redis::RedisServer;

async fn connect(server: &RedisServer) -> RedisStore {
    let config = Config::builder()
        .redis_url(server.url())
        .key_prefix("sess")
        .response_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    RedisStore::connect(&RedisConfig::from_core(&config).unwrap())
        .await
        .unwrap()
}

async fn manager(server: &RedisServer) -> SessionManager<RedisStore> {
    SessionManager::new(connect(server).await)
}

/// A `redis-server` of the test's own; every store is a new connection to it.
struct RedisFixture {
    server: RedisServer,
}

impl Fixture for RedisFixture {
    type Store = RedisStore;

    async fn connect(&self) -> RedisStore {
        connect(&self.server).await
    }
}

fn redis_fixture(_test: &str) -> RedisFixture {
    RedisFixture {
        server: RedisServer::start(),
    }
}

common::session_scenarios! {
    fixture: redis_fixture,
    sequential: #[tokio::test(flavor = "multi_thread", worker_threads = 2)],
    concurrent: #[tokio::test(flavor = "multi_thread", worker_threads = 2)],
}

/// `redis-cli MONITOR`, recording every command the server receives into a file.
struct Monitor {
    child: Child,
    out: std::path::PathBuf,
}

impl Monitor {
    fn start(server: &RedisServer) -> Monitor {
        let out = server.dir().join("monitor.txt");
        let file = std::fs::File::create(&out).unwrap();
        let child = Command::new(test_redis::cli_bin())
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &server.port().to_string(),
                "monitor",
            ])
            .stdout(Stdio::from(file))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let m = Monitor { child, out };
        // MONITOR answers OK once it is listening.
        let start = Instant::now();
        while !m.contents().contains("OK") {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "MONITOR did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }

    fn contents(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.out) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every key and value Redis holds (whatever the prefix), and every command it received, contains no
/// token, neither as text nor as its raw bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_in_redis_keys_values_or_commands() {
    let server = RedisServer::start();
    let monitor = Monitor::start(&server);
    let store = connect(&server).await;
    let m = SessionManager::new(store.clone());
    let tokens = exercise_every_operation(&m).await;

    // Through the Store, and then raw, across the whole database.
    assert_no_token_in_store(&store, &tokens).await;
    let needles: Vec<Vec<u8>> = tokens
        .iter()
        .flat_map(|t| {
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t)
                .unwrap();
            [t.as_bytes().to_vec(), raw]
        })
        .collect();
    let client = redis::Client::open(server.url()).unwrap();
    let mut con = client.get_connection().unwrap();
    let keys: Vec<Vec<u8>> = redis::cmd("SCAN")
        .arg(0)
        .arg("COUNT")
        .arg(10_000)
        .query::<(u64, Vec<Vec<u8>>)>(&mut con)
        .unwrap()
        .1;
    assert!(keys.len() >= 4, "the scan sees the sessions and indexes");
    let mut haystack = Vec::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE").arg(&key).query(&mut con).unwrap();
        haystack.extend_from_slice(&key);
        match kind.as_str() {
            "string" => {
                let v: Vec<u8> = redis::cmd("GET").arg(&key).query(&mut con).unwrap();
                haystack.extend_from_slice(&v);
            }
            "zset" => {
                let v: Vec<Vec<u8>> = redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .query(&mut con)
                    .unwrap();
                v.iter().for_each(|m| haystack.extend_from_slice(m));
            }
            other => panic!("unexpected key type {other}"),
        }
    }
    let monitor_log = monitor.contents();
    assert!(monitor_log.contains("GETEX"), "MONITOR saw the traffic");
    let monitor_log = monitor_log.into_bytes();
    for n in &needles {
        assert!(!contains(&haystack, n), "a token is stored in Redis");
        assert!(!contains(&monitor_log, n), "a token was sent to Redis");
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Polls `f` every 20 ms until it returns true, for at most `limit`.
async fn poll_until<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f().await
}

/// Sliding and absolute expiry with real TTLs of a few hundred milliseconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliding_and_absolute_expiry_on_redis() {
    let server = RedisServer::start();
    let store = connect(&server).await;
    let m = SessionManager::builder(store.clone())
        .with_idle_timeout(Duration::from_millis(1000))
        .with_absolute_lifetime(Duration::from_millis(3000))
        .with_touch_interval(Duration::from_millis(50))
        .build()
        .unwrap();
    let started = Instant::now();
    let busy = m.create("u", CreateOptions::new()).await.unwrap();
    let idle = m.create("u", CreateOptions::new()).await.unwrap();
    let idle_key = session_key(idle.token.handle()).unwrap();
    let busy_key = session_key(busy.token.handle()).unwrap();

    // Sliding: touched every 150 ms for 2 s, twice the idle timeout (generous margins, so that a
    // loaded CI machine cannot starve the touches past the idle timeout).
    while started.elapsed() < Duration::from_millis(2000) {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(
            m.get(busy.token.expose()).await.unwrap().is_some(),
            "busy session alive at {:?}",
            started.elapsed()
        );
    }
    // The untouched one is gone, and Redis collected its key.
    assert!(m.get(idle.token.expose()).await.unwrap().is_none());
    assert!(
        poll_until(Duration::from_secs(2), || async {
            !store.exists(&idle_key).await.unwrap()
        })
        .await
    );
    // The listing shows only the busy one; the index healed.
    let listed = m.list_user_sessions("u").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].handle, *busy.token.handle());
    let index = index_key("u").unwrap();
    assert_eq!(store.zcard(&index).await.unwrap(), 1);

    // Absolute: however often it is used, the busy session ends at 3 s.
    let mut ended_at = None;
    while started.elapsed() < Duration::from_secs(6) {
        if m.get(busy.token.expose()).await.unwrap().is_none() {
            ended_at = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ended_at = ended_at.expect("the absolute deadline ends the session");
    assert!(
        ended_at >= Duration::from_millis(2900),
        "ended by the absolute deadline, not the idle timeout: {ended_at:?}"
    );
    assert!(
        poll_until(Duration::from_secs(2), || async {
            !store.exists(&busy_key).await.unwrap()
        })
        .await
    );
    assert!(m.list_user_sessions("u").await.unwrap().is_empty());
}

/// A killed server gives errors, never `None`; once it is back, the same manager works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_redis_is_an_error_not_none() {
    let server = RedisServer::start();
    let m = manager(&server).await;
    let c = m.create("u", CreateOptions::new()).await.unwrap();
    let token = c.token.expose().to_owned();
    assert!(m.get(&token).await.unwrap().is_some());

    server.kill();
    let err = m.get(&token).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(m.update(&token, &obj(json!({"a": 1}))).await.is_err());
    assert!(m.rotate(&token).await.is_err());
    assert!(m.delete(&token).await.is_err());
    assert!(m.create("u", CreateOptions::new()).await.is_err());
    assert!(m.list_user_sessions("u").await.is_err());

    // A frozen server: a timeout error, within the configured response timeout plus slack.
    server.restart();
    let recovered = poll_until(Duration::from_secs(5), || {
        let m = m.clone();
        async move { m.ping_create().await }
    })
    .await;
    assert!(recovered, "the same manager works again after the restart");
    let c = m.create("u", CreateOptions::new()).await.unwrap();
    server.freeze();
    let t0 = Instant::now();
    let err = m.get(c.token.expose()).await.unwrap_err();
    let waited = t0.elapsed();
    server.thaw();
    assert!(err.is_transient(), "{err}");
    assert!(
        waited < Duration::from_secs(5),
        "fail fast, waited {waited:?}"
    );
    assert!(m.get(c.token.expose()).await.unwrap().is_some());
}

trait PingCreate {
    async fn ping_create(&self) -> bool;
}

impl PingCreate for SessionManager<RedisStore> {
    async fn ping_create(&self) -> bool {
        self.create("u", CreateOptions::new()).await.is_ok()
    }
}
