//! The benchmarked clients and the setup that builds them against one Redis server.
//!
//! Every key-value client runs the same workload: [`GET_PERCENT`] % `GET`, the rest `SET ... PX`
//! with [`SET_TTL`] of a ~1 KiB JSON value, over `keys` preloaded keys. The raw clients get
//! pre-encoded bytes (what an application using redis-rs directly would keep); `cache` goes
//! through the typed API, so it also encodes and decodes the document (the work the cache manager
//! does for its caller).

use std::sync::Arc;

use anyhow::Context as _;
use cache_core::{Bytes, Profile, SetOptions, Store};
use cache_domain::CacheManager;
use cache_memory::MemoryStore;
use cache_redis::{RedisConfig, RedisEndpoint, RedisStore};
use redis::aio::MultiplexedConnection;
use sessions::{CreateOptions, SessionData, SessionManager};

use crate::load::{Client, CpuProbe, Entry};
use crate::workload::{
    doc_id, kv_key, raw_key, session_data, Doc, BATCH, GET_PERCENT, PREFIX, SESSION_TOUCH_INTERVAL,
    SET_TTL,
};

/// Diagnostic clients, run only when named with `--clients`: `store_1conn` is `store` with one
/// shared connection instead of the default (to separate the cost of the library's code from the
/// cost of spreading commands over several sockets); `session_touch` is `session_get` with a touch
/// interval of zero, so that every call also rewrites `last_accessed` (compare-and-swap): the cost
/// of the calls that a default manager makes once per session per minute; `store_session_get` is
/// `raw_session_get` through `RedisStore` (`Store::get_ex` and the same decode), which splits the
/// gap between `session_get` and `raw_session_get` into the store's part and the session layer's;
/// `store_json` is `raw_json` through `RedisStore` (`Store::get` / `set` of the same keys and the
/// same JSON work), which splits the gap between `cache` and `raw_json` likewise.
pub const EXTRA_CLIENTS: [&str; 4] = [
    "store_1conn",
    "session_touch",
    "store_session_get",
    "store_json",
];

/// Every client name of a default run, in schedule order. `raw_json` and `raw_session_get` are
/// reference points, not library clients: raw redis-rs plus the decoding the library's typed
/// answer needs (see their docs), so the report can tell the cost of the library's code from the
/// cost of turning bytes into data. `memory_json`, `memory_cache`, `memory_raw_session_get` and
/// `memory_session_get` are `raw_json`, `cache`, `raw_session_get` and `session_get` on the
/// in-memory store: without a network the CPU per call is the library's own and the decoding's,
/// measured without the kernel's socket work (most of a Redis client's CPU on a small machine, and
/// varying with how the calls happen to batch). `memory_ref` is the reference point of `memory`:
/// the same workload on a well-kept concurrent in-process cache.
pub const CLIENTS: [&str; 17] = [
    "raw",
    "store",
    "raw_json",
    "cache",
    "raw_session_get",
    "session_get",
    "session_update",
    "raw_pipeline64",
    "batch64",
    "memory",
    "memory_ref",
    "memory_json",
    "memory_cache",
    "memory_raw_session_get",
    "memory_session_get",
    "near_cache",
    "near_session_get",
];

const TTL_MS: u64 = SET_TTL.as_millis() as u64;

fn is_get(r: u64) -> bool {
    r % 100 < GET_PERCENT
}

/// `raw`: one shared redis-rs `MultiplexedConnection`, cloned per command (as redis-rs intends).
pub struct Raw {
    conn: MultiplexedConnection,
    value: Arc<[u8]>,
    keys: u64,
}

impl Client for Raw {
    async fn op(&self, r: u64) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        let key = raw_key((r >> 8) % self.keys);
        if is_get(r) {
            let v: Option<Vec<u8>> = redis::cmd("GET")
                .arg(key.as_str())
                .query_async(&mut conn)
                .await?;
            std::hint::black_box(v);
        } else {
            redis::cmd("SET")
                .arg(key.as_str())
                .arg(&*self.value)
                .arg("PX")
                .arg(TTL_MS)
                .query_async::<()>(&mut conn)
                .await?;
        }
        Ok(())
    }
}

/// `raw_json`: `raw` plus what an application does to get a typed value out of the bytes:
/// `serde_json` decodes the [`Doc`] of each `GET` and encodes it for each `SET`. The fair baseline
/// of `cache`, which does the same (plus its small version envelope).
pub struct RawJson {
    conn: MultiplexedConnection,
    doc: Doc,
    keys: u64,
}

impl Client for RawJson {
    async fn op(&self, r: u64) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        let key = raw_key((r >> 8) % self.keys);
        if is_get(r) {
            let v: Option<Vec<u8>> = redis::cmd("GET")
                .arg(key.as_str())
                .query_async(&mut conn)
                .await?;
            let doc: Option<Doc> = v.map(|b| serde_json::from_slice(&b)).transpose()?;
            std::hint::black_box(doc);
        } else {
            let bytes = serde_json::to_vec(&self.doc)?;
            redis::cmd("SET")
                .arg(key.as_str())
                .arg(bytes)
                .arg("PX")
                .arg(TTL_MS)
                .query_async::<()>(&mut conn)
                .await?;
        }
        Ok(())
    }
}

/// `raw_session_get`: the minimum work of a session read with sliding expiry, in raw redis-rs:
/// one `GETEX key PX <idle>` of the session's record and a `serde_json` decode of it into a
/// dynamic JSON value. The fair baseline of `session_get` (which also parses and hashes the token,
/// builds the key, checks the deadlines and builds the `Session`).
pub struct RawSessionGet {
    conn: MultiplexedConnection,
    keys: Arc<[String]>,
}

impl Client for RawSessionGet {
    async fn op(&self, r: u64) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        let key = &self.keys[(r % self.keys.len() as u64) as usize];
        let v: Option<Vec<u8>> = redis::cmd("GETEX")
            .arg(key)
            .arg("PX")
            .arg(sessions::DEFAULT_IDLE_TIMEOUT.as_millis() as u64)
            .query_async(&mut conn)
            .await?;
        let bytes = v.context("a preloaded session is missing")?;
        let record: serde_json::Value = serde_json::from_slice(&bytes)?;
        std::hint::black_box(record);
        Ok(())
    }
}

/// `store` and `memory`: a [`Store`] behind `Arc<dyn Store>`, as applications hold it.
pub struct Kv {
    store: Arc<dyn Store>,
    value: Arc<[u8]>,
    keys: u64,
}

impl Client for Kv {
    async fn op(&self, r: u64) -> anyhow::Result<()> {
        let key = kv_key((r >> 8) % self.keys);
        if is_get(r) {
            std::hint::black_box(self.store.get(&key).await?);
        } else {
            self.store
                .set(&key, &self.value, SetOptions::ttl(SET_TTL))
                .await?;
        }
        Ok(())
    }
}

/// `memory_ref`: the `memory` workload (80% reads, 20% writes of the 1 KiB value over the same
/// keys) on `quick_cache::sync::Cache<String, Bytes>`, the sharded concurrent map of the near
/// cache, with room for every key: what a well-kept in-process cache costs on this machine, in the
/// same run. It does less than the store (no TTL, so no clock read and no expiry check; no Redis
/// semantics), so the store at 1.0x of it would be doing its extra work for free. A read hands
/// out a clone of the value (`Bytes`, a reference count), as the store does; a write copies the
/// value into a new `Bytes` and allocates its key, as a caller of a map keyed by `String` does.
pub struct MemoryRef {
    cache: quick_cache::sync::Cache<String, Bytes>,
    value: Arc<[u8]>,
    keys: u64,
}

impl MemoryRef {
    /// A cache holding every one of the `keys` keys (as the store does after its preload).
    pub fn preloaded(value: Arc<[u8]>, keys: u64) -> MemoryRef {
        let capacity = usize::try_from(keys)
            .unwrap_or(usize::MAX)
            .saturating_mul(2);
        let cache = quick_cache::sync::Cache::new(capacity.max(16));
        for i in 0..keys {
            cache.insert(raw_key(i).to_string(), Bytes::copy_from_slice(&value));
        }
        MemoryRef { cache, value, keys }
    }
}

impl Client for MemoryRef {
    async fn op(&self, r: u64) -> anyhow::Result<()> {
        // The key the store holds for `kv_key` (its prefix in front), so both look up the same bytes.
        let key = raw_key((r >> 8) % self.keys);
        if is_get(r) {
            std::hint::black_box(self.cache.get(&*key));
        } else {
            self.cache
                .insert(key.to_string(), Bytes::copy_from_slice(&self.value));
        }
        Ok(())
    }
}

/// `memory_json` (and `store_json`): what `raw_json` does, on a [`Store`] (the in-memory one, or
/// `RedisStore`): the bytes of each `get` decoded into a [`Doc`], each `set` encoded from one.
pub struct KvJson {
    store: Arc<dyn Store>,
    doc: Doc,
    keys: u64,
}

impl Client for KvJson {
    async fn op(&self, r: u64) -> anyhow::Result<()> {
        let key = kv_key((r >> 8) % self.keys);
        if is_get(r) {
            let v = self.store.get(&key).await?;
            let doc: Option<Doc> = v.map(|b| serde_json::from_slice(&b)).transpose()?;
            std::hint::black_box(doc);
        } else {
            let bytes = serde_json::to_vec(&self.doc)?;
            self.store
                .set(&key, &bytes, SetOptions::ttl(SET_TTL))
                .await?;
        }
        Ok(())
    }
}

/// `memory_raw_session_get`: what `raw_session_get` does, on a [`Store`] (the in-memory one).
pub struct StoreSessionGet {
    store: Arc<dyn Store>,
    keys: Arc<[String]>,
}

impl Client for StoreSessionGet {
    async fn op(&self, r: u64) -> anyhow::Result<()> {
        let key = &self.keys[(r % self.keys.len() as u64) as usize];
        let v = self
            .store
            .get_ex(key, sessions::DEFAULT_IDLE_TIMEOUT)
            .await?;
        let bytes = v.context("a preloaded session is missing")?;
        let record: serde_json::Value = serde_json::from_slice(&bytes)?;
        std::hint::black_box(record);
        Ok(())
    }
}

/// `cache`: typed `get` / `set` of [`Doc`]s in the `content` family.
pub struct Cache {
    cache: CacheManager<Arc<dyn Store>>,
    doc: Doc,
    keys: u64,
}

impl Client for Cache {
    async fn op(&self, r: u64) -> anyhow::Result<()> {
        let id = doc_id((r >> 8) % self.keys);
        if is_get(r) {
            let doc: Option<Doc> = self.cache.content().get(&id).await?;
            std::hint::black_box(doc);
        } else {
            self.cache
                .content()
                .with_ttl(SET_TTL)
                .set(&id, &self.doc)
                .await?;
        }
        Ok(())
    }
}

/// `session_get`: `SessionManager::get` (one `GETEX` sliding the idle expiry) of a random session.
pub struct SessionGet {
    sessions: SessionManager<Arc<dyn Store>>,
    tokens: Arc<[String]>,
}

impl Client for SessionGet {
    async fn op(&self, r: u64) -> anyhow::Result<()> {
        let token = &self.tokens[(r % self.tokens.len() as u64) as usize];
        let s = self.sessions.get(token).await?;
        anyhow::ensure!(s.is_some(), "a preloaded session is missing");
        Ok(())
    }
}

/// `session_update`: `SessionManager::update` (atomic merge: `GET` + compare-and-swap) of a random
/// session with a one-field patch.
pub struct SessionUpdate {
    sessions: SessionManager<Arc<dyn Store>>,
    tokens: Arc<[String]>,
}

impl Client for SessionUpdate {
    async fn op(&self, r: u64) -> anyhow::Result<()> {
        let token = &self.tokens[(r % self.tokens.len() as u64) as usize];
        let mut patch = SessionData::new();
        patch.insert("n".into(), serde_json::Value::from(r >> 12));
        let s = self.sessions.update(token, &patch).await?;
        anyhow::ensure!(s.is_some(), "a preloaded session is missing");
        Ok(())
    }
}

/// `batch64`: `Store::get_many` of 64 consecutive keys (one `MGET`).
pub struct Batch {
    store: Arc<dyn Store>,
    keys: u64,
}

impl Client for Batch {
    async fn op(&self, r: u64) -> anyhow::Result<()> {
        let first = r % self.keys;
        let keys: Vec<String> = (0..BATCH as u64)
            .map(|i| kv_key((first + i) % self.keys).to_string())
            .collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let values = self.store.get_many(&refs).await?;
        anyhow::ensure!(
            values.len() == BATCH,
            "get_many answered {} values",
            values.len()
        );
        Ok(())
    }
}

/// `raw_pipeline64`: one redis-rs pipeline of 64 `GET`s on the shared connection.
pub struct RawPipeline {
    conn: MultiplexedConnection,
    keys: u64,
}

impl Client for RawPipeline {
    async fn op(&self, r: u64) -> anyhow::Result<()> {
        let first = r % self.keys;
        let mut pipe = redis::pipe();
        for i in 0..BATCH as u64 {
            pipe.cmd("GET")
                .arg(raw_key((first + i) % self.keys).as_str());
        }
        let mut conn = self.conn.clone();
        let values: Vec<Option<Vec<u8>>> = pipe.query_async(&mut conn).await?;
        anyhow::ensure!(
            values.len() == BATCH,
            "pipeline answered {} values",
            values.len()
        );
        Ok(())
    }
}

/// Reads the server's CPU time from `INFO cpu` over a connection of its own.
pub struct RedisCpu {
    conn: MultiplexedConnection,
}

impl RedisCpu {
    /// A probe of the server at `url`.
    pub async fn connect(url: &str) -> anyhow::Result<RedisCpu> {
        let conn = redis::Client::open(url)?
            .get_multiplexed_async_connection()
            .await
            .context("opening the INFO connection")?;
        Ok(RedisCpu { conn })
    }
}

/// `used_cpu_sys + used_cpu_user` of an `INFO cpu` answer.
pub fn parse_info_cpu(info: &str) -> anyhow::Result<std::time::Duration> {
    let field = |name: &str| -> anyhow::Result<f64> {
        info.lines()
            .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':'))
            .with_context(|| format!("INFO cpu has no {name}"))?
            .parse::<f64>()
            .with_context(|| format!("INFO cpu: {name} is not a number"))
    };
    let secs = field("used_cpu_sys")? + field("used_cpu_user")?;
    Ok(std::time::Duration::from_secs_f64(secs.max(0.0)))
}

impl CpuProbe for RedisCpu {
    fn cpu(
        &self,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = anyhow::Result<std::time::Duration>> + Send + '_>,
    > {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let info: String = redis::cmd("INFO").arg("cpu").query_async(&mut conn).await?;
            parse_info_cpu(&info)
        })
    }
}

/// The library configuration the benchmark uses: the production profile against `url`, with the
/// benchmark's key prefix.
pub fn config(url: &str) -> anyhow::Result<RedisConfig> {
    let config =
        RedisConfig::new(Profile::Production, RedisEndpoint::server(url)).with_key_prefix(PREFIX);
    config
        .validate()
        .context("building the library configuration")?;
    Ok(config)
}

/// The store keys of the sessions of `tokens` (relative: the store adds its prefix).
fn session_store_keys(tokens: &[String]) -> anyhow::Result<Arc<[String]>> {
    tokens
        .iter()
        .map(|t| {
            let token = sessions::SessionToken::parse(t)?;
            let key = sessions::keys::session_key(token.handle())?;
            anyhow::Ok(key.as_str().to_owned())
        })
        .collect()
}

/// Builds the clients named in `only` (all of [`CLIENTS`] when empty) against the server at `url`
/// and preloads `keys` key-value entries, `keys` cache entries and `sessions` sessions. Returns
/// the schedule entries in [`CLIENTS`] order.
pub async fn setup(
    url: &str,
    keys: u64,
    sessions: u64,
    only: &[String],
) -> anyhow::Result<Vec<Entry>> {
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    let value: Arc<[u8]> = Doc::sample(1).json().into();
    let doc = Doc::sample(1);

    let client = redis::Client::open(url).context("parsing the server URL")?;
    let conn = client
        .get_multiplexed_async_connection()
        .await
        .context("opening the raw redis-rs connection")?;
    let cfg = config(url)?;
    let redis_store: Arc<dyn Store> = Arc::new(
        RedisStore::connect(&cfg)
            .await
            .context("connecting RedisStore")?,
    );
    let memory: Arc<dyn Store> = Arc::new(
        MemoryStore::builder()
            .with_prefix(PREFIX)
            .build()
            .context("building MemoryStore")?,
    );
    // The `memory` client's own store, holding only its key-value entries, like `memory_ref`'s
    // map: the shared one above also holds the cache entries and sessions of the other in-process
    // clients, three times the data, which would compare a larger table with a smaller one.
    let memory_kv: Arc<dyn Store> = Arc::new(
        MemoryStore::builder()
            .with_prefix(PREFIX)
            .build()
            .context("building MemoryStore")?,
    );

    // Preload in chunks: the raw keys (shared by raw, store, batch64, raw_pipeline64) and the same
    // keys in the memory stores of the clients that read them (a store nobody reads stays empty).
    let (memory_json, memory_own) = (wanted("memory_json"), wanted("memory"));
    let chunk = 500u64;
    let mut start = 0;
    while start < keys {
        let end = (start + chunk).min(keys);
        let names: Vec<String> = (start..end).map(|i| kv_key(i).to_string()).collect();
        let entries: Vec<(&str, &[u8])> = names.iter().map(|k| (k.as_str(), &*value)).collect();
        let expiry = cache_core::Expiry::In(SET_TTL);
        redis_store.set_many(&entries, expiry).await?;
        if memory_json {
            memory.set_many(&entries, expiry).await?;
        }
        if memory_own {
            memory_kv.set_many(&entries, expiry).await?;
        }
        start = end;
    }

    let mut entries = Vec::new();
    let cache = CacheManager::new(Arc::clone(&redis_store));
    if wanted("cache") {
        let mut start = 0;
        while start < keys {
            let end = (start + chunk).min(keys);
            let batch: Vec<(String, &Doc)> = (start..end)
                .map(|i| (doc_id(i).to_string(), &doc))
                .collect();
            cache.content().set_many(&batch).await?;
            start = end;
        }
    }
    let memory_cache = CacheManager::new(Arc::clone(&memory));
    if wanted("memory_cache") {
        let mut start = 0;
        while start < keys {
            let end = (start + chunk).min(keys);
            let batch: Vec<(String, &Doc)> = (start..end)
                .map(|i| (doc_id(i).to_string(), &doc))
                .collect();
            memory_cache.content().set_many(&batch).await?;
            start = end;
        }
    }
    let memory_sessions = session_manager(&memory)?;
    let mut memory_tokens: Arc<[String]> = Arc::from(Vec::new());
    if wanted("memory_session_get") || wanted("memory_raw_session_get") {
        memory_tokens = create_sessions(&memory, sessions).await?.into();
    }
    let memory_session_keys = session_store_keys(&memory_tokens)?;
    let mut tokens: Arc<[String]> = Arc::from(Vec::new());
    let manager = session_manager(&redis_store)?;
    if wanted("session_get")
        || wanted("session_update")
        || wanted("raw_session_get")
        || wanted("session_touch")
        || wanted("store_session_get")
    {
        tokens = create_sessions(&redis_store, sessions).await?.into();
    }
    let one_conn: Option<Arc<dyn Store>> = if only.iter().any(|o| o == "store_1conn") {
        Some(Arc::new(
            RedisStore::connect(&cfg.clone().with_shared_connections(1))
                .await
                .context("connecting RedisStore with one shared connection")?,
        ))
    } else {
        None
    };
    let store_session_keys = session_store_keys(&tokens)?;
    // The Redis keys of the sessions, for raw_session_get: `bench:session:{handle}`.
    let session_keys: Arc<[String]> = store_session_keys
        .iter()
        .map(|k| format!("{PREFIX}:{k}"))
        .collect();
    for name in CLIENTS.into_iter().chain(EXTRA_CLIENTS) {
        if !wanted(name) || (EXTRA_CLIENTS.contains(&name) && only.is_empty()) {
            continue;
        }
        let entry = match name {
            "raw" => Entry::new(
                name,
                Raw {
                    conn: conn.clone(),
                    value: Arc::clone(&value),
                    keys,
                },
            ),
            "store" => Entry::new(
                name,
                Kv {
                    store: Arc::clone(&redis_store),
                    value: Arc::clone(&value),
                    keys,
                },
            ),
            "raw_json" => Entry::new(
                name,
                RawJson {
                    conn: conn.clone(),
                    doc: doc.clone(),
                    keys,
                },
            ),
            "raw_session_get" => Entry::new(
                name,
                RawSessionGet {
                    conn: conn.clone(),
                    keys: Arc::clone(&session_keys),
                },
            ),
            "cache" => Entry::new(
                name,
                Cache {
                    cache: cache.clone(),
                    doc: doc.clone(),
                    keys,
                },
            ),
            "session_get" => Entry::new(
                name,
                SessionGet {
                    sessions: manager.clone(),
                    tokens: Arc::clone(&tokens),
                },
            ),
            "session_update" => Entry::new(
                name,
                SessionUpdate {
                    sessions: manager.clone(),
                    tokens: Arc::clone(&tokens),
                },
            ),
            "raw_pipeline64" => Entry::new(
                name,
                RawPipeline {
                    conn: conn.clone(),
                    keys,
                },
            ),
            "batch64" => Entry::new(
                name,
                Batch {
                    store: Arc::clone(&redis_store),
                    keys,
                },
            ),
            "memory" => Entry::in_process(
                name,
                Kv {
                    store: Arc::clone(&memory_kv),
                    value: Arc::clone(&value),
                    keys,
                },
            ),
            "memory_ref" => Entry::in_process(name, MemoryRef::preloaded(Arc::clone(&value), keys)),
            "store_1conn" => Entry::new(
                name,
                Kv {
                    store: one_conn
                        .clone()
                        .context("store_1conn was requested, so its store was built")?,
                    value: Arc::clone(&value),
                    keys,
                },
            ),
            "session_touch" => Entry::new(
                name,
                SessionGet {
                    sessions: SessionManager::builder(Arc::clone(&redis_store))
                        .with_touch_interval(std::time::Duration::ZERO)
                        .build()?,
                    tokens: Arc::clone(&tokens),
                },
            ),
            "store_json" => Entry::new(
                name,
                KvJson {
                    store: Arc::clone(&redis_store),
                    doc: doc.clone(),
                    keys,
                },
            ),
            "memory_json" => Entry::in_process(
                name,
                KvJson {
                    store: Arc::clone(&memory),
                    doc: doc.clone(),
                    keys,
                },
            ),
            "memory_cache" => Entry::in_process(
                name,
                Cache {
                    cache: memory_cache.clone(),
                    doc: doc.clone(),
                    keys,
                },
            ),
            "store_session_get" => Entry::new(
                name,
                StoreSessionGet {
                    store: Arc::clone(&redis_store),
                    keys: Arc::clone(&store_session_keys),
                },
            ),
            "memory_raw_session_get" => Entry::in_process(
                name,
                StoreSessionGet {
                    store: Arc::clone(&memory),
                    keys: Arc::clone(&memory_session_keys),
                },
            ),
            "memory_session_get" => Entry::in_process(
                name,
                SessionGet {
                    sessions: memory_sessions.clone(),
                    tokens: Arc::clone(&memory_tokens),
                },
            ),
            // The near clients' hits are in process: timed like the `memory*` clients.
            "near_cache" => {
                Entry::in_process(name, crate::near::NearCacheClient::new(&cfg, keys).await?)
            }
            // Sessions of its own, under a prefix of its own: `session_get` touches and
            // `session_update` rewrites the shared ones, which would invalidate this client's
            // copies between its rounds.
            "near_session_get" => Entry::in_process(
                name,
                crate::near::NearSessionGet::new(&cfg, sessions).await?,
            ),
            _ => unreachable!("every name of CLIENTS and EXTRA_CLIENTS is matched"),
        };
        entries.push(entry);
    }
    Ok(entries)
}

/// The session manager of the benchmark's session clients over `store`: defaults, but for a
/// touch interval of [`SESSION_TOUCH_INTERVAL`].
pub(crate) fn session_manager(
    store: &Arc<dyn Store>,
) -> anyhow::Result<SessionManager<Arc<dyn Store>>> {
    Ok(SessionManager::builder(Arc::clone(store))
        .with_touch_interval(SESSION_TOUCH_INTERVAL)
        .build()?)
}

/// Creates `n` sessions in `store` (spread over 64 concurrent tasks and `n / 10` users) and
/// returns their tokens.
pub(crate) async fn create_sessions(store: &Arc<dyn Store>, n: u64) -> anyhow::Result<Vec<String>> {
    let manager = session_manager(store)?;
    let tasks = 64u64;
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let manager = manager.clone();
            tokio::spawn(async move {
                let mut tokens = Vec::new();
                let mut i = t;
                while i < n {
                    let user = format!("user-{}", i % (n / 10).max(1));
                    let created = manager
                        .create(&user, CreateOptions::new().with_data(session_data(i)))
                        .await?;
                    tokens.push(created.token.expose().to_owned());
                    i += tasks;
                }
                anyhow::Ok(tokens)
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.context("a session-creating task panicked")??);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::parse_info_cpu;

    #[test]
    fn info_cpu_is_parsed() {
        let info = "# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:2.250000\r\n\
                    used_cpu_sys_children:0.000000\r\nused_cpu_sys_main_thread:1.4\r\n";
        assert_eq!(
            parse_info_cpu(info).unwrap(),
            std::time::Duration::from_millis(3750)
        );
        assert!(parse_info_cpu("# CPU\r\n").is_err());
    }
}
