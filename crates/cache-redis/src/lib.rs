//! # cache-redis
//!
//! The Redis backend of [`cache_core::Store`]: [`RedisStore`], on redis-rs 1.8 and a mobc 0.9 pool
//! with this crate's own `mobc::Manager`.
//!
//! ```no_run
//! use cache_core::{Profile, SetOptions, Store};
//! use cache_redis::{RedisConfig, RedisEndpoint, RedisStore};
//! use std::time::Duration;
//!
//! # async fn demo() -> cache_core::Result<()> {
//! let config = RedisConfig::new(Profile::Production, RedisEndpoint::server("redis://127.0.0.1:6379/0"))
//!     .with_key_prefix("shop");
//! // Or from REDIS_URL / REDIS_SENTINEL_NODES / REDIS_CLUSTER_NODES and the other variables of
//! // docs/operations.md:
//! // let config = RedisConfig::from_env(Profile::Production)?;
//! let store = RedisStore::connect(&config).await?; // fails here on a wrong URL or password
//! store.set("user:42", b"{}", SetOptions::ttl(Duration::from_secs(60))).await?;
//! assert_eq!(store.get("user:42").await?.as_deref(), Some(&b"{}"[..]));
//! println!("{:?}", store.connectivity().await);
//! # Ok(()) }
//! ```
//!
//! ## Configuration
//!
//! [`RedisConfig`] holds every setting of the backend: the [`RedisEndpoint`] (one server by URL, a
//! Sentinel service by its sentinels ([`SentinelEndpoint`]), or a cluster by seed nodes), database,
//! key prefix, connect and response timeouts, [`PoolConfig`], [`RetryConfig`], the number of shared
//! connections, replica reads, the `SCAN` count and the largest value. [`RedisConfig::new`] gives a
//! profile's defaults, [`RedisConfig::from_lookup`] / [`RedisConfig::from_env`] read the same
//! environment variables as the rest of the workspace (`REDIS_URL`, `REDIS_SENTINEL_*`,
//! `REDIS_CLUSTER_NODES`, `REDIS_DB`, `REDIS_*_TIMEOUT`, `REDIS_POOL_*`, `REDIS_RETRY_*`,
//! `REDIS_SHARED_CONNECTIONS`, ...), `with_*` methods override, and [`RedisConfig::validate`] (also
//! run by `connect`) names the setting that is wrong. `Debug` never shows a password. The `cachekit`
//! facade reads it from the same environment as the other parts (`cachekit::Config::from_env`).
//!
//! ## Where things are
//!
//! | file | what it does |
//! |---|---|
//! | `config.rs` | [`RedisConfig`], [`RedisEndpoint`], [`SentinelEndpoint`], [`PoolConfig`], [`RetryConfig`]: defaults, environment, validation |
//! | `builder.rs` | [`RedisStoreBuilder`]: URL, sentinel and cluster seed parsing, the cluster client, the Sentinel discovery, TLS provider |
//! | `sentinel.rs` | Redis Sentinel: finding the primary (or a replica) through the sentinels, following failovers |
//! | `store.rs` | [`RedisStore`]: constructors, accessors, and `impl Store` (one command per method) |
//! | `route.rs` | where a command goes (one server, a slot, a node, any node) and the store's `query` helpers |
//! | `batch.rs` | `get_many` / `set_many` / `delete`, split per hash slot on a cluster |
//! | `scan.rs` | `scan` and `flush_prefix`, across every primary on a cluster (the cluster scan cursor) |
//! | `cluster.rs` | `CLUSTER NODES` parsing, per-node `PING` / `INFO`, [`RedisStore::cluster_health`] |
//! | `call.rs` | the call runner: fast path, outer timer, retry loop, the library call's deadline; the time limits |
//! | `close.rs` | the call gate and `close()`: refuse, drain, end every connection |
//! | `retry.rs` | the retry policy: what may be repeated, backoff with jitter, the one retry decision |
//! | `slots.rs` | the shared connections: pool, slots, refill, retire, suspect, rotate, background task |
//! | `manager.rs` | the `mobc::Manager`: open (under Sentinel: discover, then open) and check a connection, diagnose a failed connect |
//! | `conn.rs` | `Conn`: one server's multiplexed connection or a cluster connection |
//! | `scripts.rs` | the Lua scripts of compare-and-swap and `incr_by` with a TTL |
//! | `error.rs` | redis-rs errors mapped into [`cache_core::Error`], and what they say about a connection |
//! | `info.rs` | parsing of `INFO` into [`cache_core::BackendStats`] |
//! | `health.rs` | [`RedisStore::connectivity`] and [`RedisStore::self_test`] (liveness and readiness are [`cache_core::health`]'s) |
//!
//! ## Why not mobc-redis
//!
//! `mobc-redis` 0.9 pins `redis = "^0.28"`; next to redis 1.x it compiles a second copy of redis
//! whose types do not match ours, and redis 0.28 has no connect or response timeouts (a `GET`
//! against a frozen server never returns). Its manager is ~35 lines (connect, `PING` on check), so
//! this crate has its own (`manager.rs`): connect with `AsyncConnectionConfig`'s connect and
//! response timeouts, `PING` with a timeout on check, and `validate` that refuses connections found
//! broken.
//!
//! ## Connections: pool lifecycle, multiplexed hot path
//!
//! A pool checkout and a `PING` per command cost 2-5x throughput (measured; see
//! `shared/field-notes.md`), and holding a checked-out multiplexed connection per command caps
//! concurrency at the pool size. So the pool and the hot path have different jobs:
//!
//! - **mobc owns the connection lifecycle**: it opens connections (with the connect timeout, AUTH,
//!   SELECT, TLS), enforces `REDIS_POOL_MAX_OPEN`, health-checks idle connections on checkout and
//!   closes connections past `REDIS_CONN_MAX_LIFETIME` or marked broken.
//! - **The store keeps a few long-lived checked-out connections in *slots*** (1 by default,
//!   `REDIS_SHARED_CONNECTIONS`, [`RedisConfig::with_shared_connections`]). A command picks a slot round-robin and clones
//!   its `MultiplexedConnection` (a few reference counts) under a read lock: no checkout, no `PING`,
//!   and any number of concurrent commands pipeline on one socket.
//! - **Replacement**: a connection-level error (reset, broken pipe, EOF, protocol error) retires
//!   the slot's connection (it goes back to mobc marked broken, which closes it) and asks the other
//!   slots to check theirs (a restart drops them all). A response timeout makes the slot *suspect*:
//!   a background `PING` decides whether to retire it, so one slow command does not tear down a
//!   healthy connection. The next command on an empty slot refills it from the pool; one task
//!   refills at a time, and while reconnects keep failing the slot fails fast with the last error
//!   for an exponentially growing backoff (`REDIS_RETRY_BASE_DELAY` .. `REDIS_RETRY_MAX_DELAY`), so
//!   an outage does not become a connect storm.
//! - **A background task** (every `REDIS_HEALTH_CHECK_INTERVAL`) `PING`s each slot's connection,
//!   replaces the ones that fail, rotates the ones past `REDIS_CONN_MAX_LIFETIME` (the new one is
//!   opened first, so traffic does not stall), and refills empty slots, so the store recovers after
//!   an outage even without traffic. It holds a weak reference and ends with the store.
//!
//! The connection type is an internal enum over `redis::aio::ConnectionLike` (a multiplexed
//! connection, or a cluster connection), and every command is written against that trait; the
//! cluster-specific parts are listed in [Redis Cluster](#redis-cluster).
//!
//! ## Timeouts
//!
//! Every command has redis-rs's per-command response timeout (`REDIS_RESPONSE_TIMEOUT`); opening a
//! connection has `REDIS_CONNECT_TIMEOUT` (TCP, TLS, AUTH and SELECT together). On top, reconnects
//! and retries (and every cluster call) run under one `tokio::time::timeout` of
//! `max(REDIS_RETRY_BUDGET, REDIS_CONNECT_TIMEOUT + REDIS_RESPONSE_TIMEOUT)` counted from the start of
//! the call, so no call can hang whatever the server does. The first attempt on a ready connection
//! to one server skips that outer timer (its response timeout bounds it already): a second timer per
//! call was a measurable share of the client's CPU. [`cache_core::Error::Timeout`] names the setting
//! that fired.
//!
//! When a store call runs inside a library call's deadline ([`cache_core::deadline`]: the cache and
//! session managers set one per public call), the call ends at that deadline if it comes first: the
//! first attempt's response timeout and the retry budget are cut to the time left, no retry starts
//! after it, and the timeout error names the deadline's setting.
//!
//! ## Retries
//!
//! Transient errors ([`cache_core::Error::is_transient`]: connection errors, timeouts, `LOADING`,
//! `TRYAGAIN`, `BUSY`, ...) are retried with exponential backoff and full jitter (uniform in
//! `[0, min(REDIS_RETRY_MAX_DELAY, REDIS_RETRY_BASE_DELAY * 2^(n-1))]`), at most
//! `REDIS_RETRY_ATTEMPTS` attempts, and only while the next attempt still starts within
//! `REDIS_RETRY_BUDGET`. The rule for what may be repeated:
//!
//! - **any** call whose command was never sent (no connection could be had), or that the server
//!   refused without applying it (`READONLY`: a write that reached a primary turned replica, as
//!   after a failover), may be retried;
//! - after the command may have reached the server (its first attempt may have been applied although
//!   the reply was lost), a call is repeated only when it is idempotent **and** not order-sensitive:
//!   a repeat landing after another client's write can neither undo that write nor bring back what it
//!   removed. That leaves reads and TTL refreshes. A value write is never repeated once sent, not
//!   even an unconditional `SET`: repeated after another client's `DEL`, it writes the deleted value
//!   back (shown on a real server by `tests/retries.rs`). Such a call returns its transient error
//!   (`Error::is_transient`), and the caller decides whether writing again is right.
//!
//! | repeated after sending | not repeated after sending |
//! |---|---|
//! | `get`, `get_many`, `exists`, `ttl`, `scan`, `zrange_by_score`, `zcard`, `ping`, `stats` (reads) | `set` in every form and `set_many` (a repeat can undo a concurrent delete or overwrite) |
//! | `get_ex`, `expire` (TTL refreshes: a repeat only moves the deadline of a key that still exists; it never brings a key back) | `incr_by` (would add twice), `compare_and_swap` (a repeat would report a conflict with our own write) |
//! | | `delete`, `zrem`, `zrem_range_by_score` (counts would be lower), `persist`, `zadd` (would answer "not new") |
//!
//! ## Closing
//!
//! [`Store::close`](cache_core::Store::close) (`close.rs`) refuses every call that starts after it
//! with [`cache_core::Error::Closed`], lets calls already in flight finish for up to the longest one
//! call may take (`max(REDIS_RETRY_BUDGET, REDIS_CONNECT_TIMEOUT + REDIS_RESPONSE_TIMEOUT)`), then
//! stops the background task (under Sentinel also the watcher, whose subscriptions to the sentinels
//! end with it) and ends every shared and idle pooled connection: on one server (also a node found
//! through Sentinel) with `QUIT` first, so that the server's `CLIENT LIST` no longer shows them when
//! `close` returns; a cluster connection is dropped, and its node connections close when redis-rs's
//! drivers see their last handle go. Clones and views ([`RedisStore::scoped`],
//! [`RedisStore::replica_reads`], with its replica connections under Sentinel) share the
//! connections, so closing one closes them all. Idempotent. Connections to one server, and the
//! connection kept for asking a sentinel, name themselves [`CLIENT_NAME`] (`CLIENT SETNAME`) so
//! that they can be told apart in `CLIENT LIST`.
//!
//! ## Errors
//!
//! redis-rs errors are mapped into [`cache_core::Error`] with a message that says what to fix:
//! wrong password / `NOAUTH` / `WRONGPASS` / `NOPERM` → `Auth`; an unknown host → `Connection`
//! saying the DNS lookup failed; a refused connection → `Connection` saying nothing listens there;
//! a TLS failure (e.g. `rediss://` against a plain server) → `Tls`; a malformed URL →
//! `Config { setting: "REDIS_URL" }`; a database out of range → `Config { setting: "REDIS_DB" }`;
//! timeouts → `Timeout` naming the setting; `WRONGTYPE` → `WrongType`; `LOADING`, `TRYAGAIN`,
//! `CLUSTERDOWN`, `MASTERDOWN`, `READONLY`, `BUSY` → transient `Backend`. Passwords never appear in
//! messages or logs ([`cache_core::config::redact_url`]).
//!
//! ## Keys
//!
//! Every key is stored as `{prefix}:{key}` (`CACHE_KEY_PREFIX`, one name without `:`: see
//! [`cache_core::keys::validate_prefix`]; no prefix when empty). Scan patterns
//! get the glob-escaped prefix in front and results come back without it, so no method can reach a
//! key outside the prefix. [`Store::flush_prefix`](cache_core::Store::flush_prefix) is `SCAN` +
//! batched `UNLINK` and refuses an empty prefix.
//!
//! ## Redis Cluster
//!
//! With [`RedisEndpoint::Cluster`] (`REDIS_CLUSTER_NODES`)
//! the same [`RedisStore`] runs on redis-rs's async cluster connection
//! (`redis::cluster_async::ClusterConnection`), under the same mobc manager, slots, timeouts,
//! retries and error mapping as above. A cluster connection holds a multiplexed connection per node,
//! routes each single-key command to its slot's primary, follows `MOVED` and `ASK` (and refreshes
//! its slot map), and reconnects to nodes by itself; so a node's error never retires the shared
//! connection, and the background check `PING`s any one node and replaces the connection (new one
//! opened first) only when that fails. Seeds, credentials and TLS come from the node URLs
//! (`host:port`, or `redis://user:password@host:port`, `rediss://` for TLS; every node the same).
//!
//! What the store adds on top (`scan.rs`, `batch.rs`, `cluster.rs`):
//!
//! - **scan** visits every primary: the primaries are listed (`CLUSTER NODES`), scanned one after
//!   the other by address, and the opaque [`ScanCursor`](cache_core::ScanCursor) carries the node
//!   list, the position and the node's own cursor. `flush_prefix` does the same per primary;
//! - **batches are split by hash slot**: `get_many` (`MGET`), `set_many` (a pipeline of `SET`) and
//!   `delete` (`UNLINK`) send one command per slot concurrently and put the answers back in the
//!   caller's order; any failed part fails the call (redis-rs 1.8 splits `MGET`/`UNLINK` itself but
//!   silently leaves out a slot whose node has no connection at that moment, and cannot split a
//!   pipeline);
//! - **atomic operations touch one key**: every Lua script has one `KEYS[1]`, so it runs on one
//!   slot; scripts go as `EVALSHA`, falling back to `EVAL` on `NOSCRIPT` (no `SCRIPT LOAD`, which
//!   goes to every node and fails while one is down);
//! - **per-node health and stats**: [`Store::ping`](cache_core::Store::ping) `PING`s every primary
//!   and an error names the node that did not answer; [`RedisStore::cluster_health`] reports every
//!   node (role, slots, the cluster's failure flag, our own `PING`); `stats` sums the primaries'
//!   `INFO` and lists each one in `BackendStats::nodes` (whose `backend` field holds the node's
//!   `host:port`);
//! - **reads from replicas** are opt-in twice: `REDIS_READ_FROM_REPLICAS=true` lets the client
//!   route reads to replicas, and only the view [`RedisStore::replica_reads`] uses it (for cache
//!   data); the store itself keeps reading from primaries, because sessions must read their own
//!   writes.
//!
//! The cluster connection re-sends a command whose node connection dropped (that is how it follows
//! a failover), for every command: so unlike on one server, an `incr_by`, `compare_and_swap` or
//! `SET NX` in flight at the moment a primary dies may be applied twice or answer as if it had not
//! been applied. See `docs/scaling.md` for what else changes for users.
//!
//! ## Redis Sentinel
//!
//! With [`RedisEndpoint::Sentinel`] (`REDIS_SENTINEL_NODES`, `REDIS_SENTINEL_SERVICE`; see
//! [`SentinelEndpoint`]) the store runs on the primary of a Sentinel service, with the same
//! manager, slots, timeouts, retries, TLS and ACL handling as on one server. What differs
//! (`sentinel.rs`, which says why it is our own and not redis-rs's `sentinel` module):
//!
//! - **every new connection is a discovery**: the sentinels are asked in turn (the one that answered
//!   last first) for the primary's address (`SENTINEL GET-MASTER-ADDR-BY-NAME`), the connection is
//!   opened to it with the data nodes' credentials, database and TLS, and `ROLE` on that connection
//!   must say `master`. A slot refill (after a connection error, a `READONLY`, a switch) is such a
//!   connect, bounded by twice the connect and response timeouts; calls stay bounded by the same
//!   call cap as on one server;
//! - **switches are followed without traffic and without a restart**: a task subscribes on every
//!   sentinel to the promotion of a replica (`+failover-state-wait-promotion`) and to
//!   `+switch-master`, and asks the sentinels for the primary every second (or every
//!   `REDIS_HEALTH_CHECK_INTERVAL` when shorter); a new primary retires every shared connection, so
//!   the next commands go to it. A `READONLY` reply (the node was turned into a replica) does the
//!   same, and counts as not applied, so the call is retried on the new primary;
//! - **errors say which part failed**: no sentinel answered (`Connection`, every sentinel and why),
//!   the sentinels refused our credentials (`Auth`, naming `REDIS_SENTINEL_PASSWORD`), an address is
//!   not a sentinel or no sentinel knows the service (`Config`, listing the services they do
//!   monitor), the primary they name cannot be reached (`Connection` naming the node and the
//!   sentinel), the data nodes refused our credentials (`Auth`, naming `REDIS_PASSWORD`);
//! - **reads from replicas**: with `REDIS_READ_FROM_REPLICAS=true` the [`RedisStore::replica_reads`]
//!   view reads over connections of its own to a healthy replica the sentinels list (the primary
//!   when there is none);
//! - [`RedisStore::sentinel_primary`] and [`RedisStore::sentinel_switches`] say where the store is
//!   and how often it moved.
//!
//! Replication is asynchronous: what the old primary acknowledged after the replica's promotion, and
//! before the store moved, is lost by the failover (`docs/scaling.md`, `docs/reliability.md`).
//!
//! ## TLS
//!
//! `rediss://` uses rustls with the `ring` crypto provider, installed once per process unless the
//! application installed a provider already. Server certificates are checked against the system
//! roots.

mod batch;
mod builder;
mod call;
mod close;
mod cluster;
mod config;
mod conn;
mod error;
mod health;
pub mod info;
mod introspect;
mod manager;
mod reply;
mod retry;
mod route;
mod scan;
mod scripts;
mod sentinel;
mod slots;
mod store;
mod tracking;

pub use builder::RedisStoreBuilder;
pub use cache_core::health::{Connectivity, SelfTestReport, SelfTestStep};
pub use cluster::{NodeHealth, NodeRole};
pub use config::{
    PoolConfig, RedisConfig, RedisEndpoint, RetryConfig, SentinelEndpoint,
    DEFAULT_SHARED_CONNECTIONS,
};
pub use introspect::NodeInfo;
pub use manager::CLIENT_NAME;
pub use store::RedisStore;
pub use tracking::TrackingStats;
