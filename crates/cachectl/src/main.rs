//! `cachectl`: the command-line tool of cachekit, for developers and operators.
//!
//! Backend selection, highest priority first: `--cluster NODES`, `--redis URL`, then the environment
//! (`REDIS_CLUSTER_NODES`, `REDIS_URL`, `CACHE_BACKEND`, see `docs/operations.md`), and with nothing
//! configured the embedded in-memory backend.
//!
//! Exit codes: `0` success (for `health`: healthy), `1` the operation failed (or `get` found no such
//! key), `2` usage error, `3` `health` found the backend unhealthy or unreachable, `4` the backend
//! could not be reached or refused our credentials (commands other than `health`), `5` invalid
//! configuration.

mod demo;
mod invalidate;
mod output;
mod top;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use cachekit::core::{
    codec, config::redact_url, BackendConfig, Config, Error, ErrorKind, KeyTtl, Store, StoreExt,
};
use cachekit::sessions::SessionHandle;
use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::invalidate::InvalidateArgs;
use crate::output::Out;

/// cachectl: health checks, statistics, session administration and a guided demo of cachekit.
#[derive(Debug, Parser)]
#[command(name = "cachectl", version, about, long_about = None)]
struct Cli {
    /// Redis URL (`redis://[user:password@]host:port[/db]`, `rediss://` for TLS). Overrides REDIS_URL.
    #[arg(long, global = true, value_name = "URL")]
    redis: Option<String>,
    /// Redis Cluster seed nodes, comma-separated `host:port`. Overrides REDIS_CLUSTER_NODES.
    #[arg(long, global = true, value_name = "NODES", conflicts_with = "redis")]
    cluster: Option<String>,
    /// Global key prefix. Overrides CACHE_KEY_PREFIX.
    #[arg(long, global = true, value_name = "PREFIX")]
    prefix: Option<String>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Log level for the library's tracing output (e.g. `info`, `debug`); also RUST_LOG.
    #[arg(long, global = true, value_name = "LEVEL")]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Walk through the whole system: sessions, typed caching, cache-aside, invalidation, statistics.
    Demo,
    /// Connectivity, latency, operations self-test and key counts; exit 0 only when healthy.
    Health,
    /// Server INFO, pool state, key counts per family.
    Stats,
    /// Session administration.
    #[command(subcommand)]
    Sessions(SessionsCmd),
    /// Delete cached keys by family (and id) or by pattern, SCAN + UNLINK in batches.
    Invalidate(InvalidateArgs),
    /// Live view of the server (ops/s, hit ratio, memory, per-command latency) and of the library
    /// instances publishing a fleet heartbeat; quit with `q`.
    Top(top::TopArgs),
    /// Show a key's decoded value and its TTL.
    Get(GetArgs),
}

#[derive(Debug, Args)]
struct GetArgs {
    /// The key, relative to the prefix (e.g. `user:42`).
    #[arg(required_unless_present = "family", conflicts_with = "family")]
    key: Option<String>,
    /// Instead of a key: the cache family of the value (with --id); the live key under the
    /// family's current version is shown.
    #[arg(long, requires = "id")]
    family: Option<String>,
    /// The id within --family (a metrics id is `TYPE:DATE`).
    #[arg(long, requires = "family")]
    id: Option<String>,
}

#[derive(Debug, Subcommand)]
enum SessionsCmd {
    /// List a user's live sessions.
    List {
        /// The user id.
        #[arg(long)]
        user: String,
    },
    /// Revoke all sessions of a user, or one session by its handle.
    Revoke {
        /// Revoke every session of this user.
        #[arg(long, conflicts_with = "handle", required_unless_present = "handle")]
        user: Option<String>,
        /// Revoke the session with this handle (as shown by `sessions list`).
        #[arg(long)]
        handle: Option<String>,
    },
    /// Prune index entries of expired sessions and report what was found and removed.
    Cleanup,
}

/// Exit codes, documented in the module docs and `docs/cli.md`.
mod exit {
    pub(crate) const FAILURE: u8 = 1;
    pub(crate) const UNHEALTHY: u8 = 3;
    pub(crate) const UNREACHABLE: u8 = 4;
    pub(crate) const CONFIG: u8 = 5;
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log.as_deref());
    let out = Out::new(cli.json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            out.error(&format!("cannot start the async runtime: {e}"));
            return ExitCode::from(exit::FAILURE);
        }
    };
    match runtime.block_on(run(cli, &out)) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            out.error(&format!("{err:#}"));
            ExitCode::from(exit_code_for(&err))
        }
    }
}

fn init_tracing(level: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(l) => EnvFilter::new(l),
        // Quiet by default: failures are reported as one readable line, not as log records.
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("off")),
    };
    // Logs go to stderr so that `--json` output on stdout stays parseable.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn exit_code_for(err: &anyhow::Error) -> u8 {
    match err.downcast_ref::<Error>().map(Error::kind) {
        Some(ErrorKind::Connection | ErrorKind::Timeout | ErrorKind::Auth | ErrorKind::Tls) => {
            exit::UNREACHABLE
        }
        Some(ErrorKind::Config) => exit::CONFIG,
        _ => exit::FAILURE,
    }
}

/// Builds the configuration from the environment and the command line.
fn config(cli: &Cli) -> Result<Config, Error> {
    let mut builder = Config::builder().env();
    if let Some(nodes) = &cli.cluster {
        builder = builder.cluster_nodes(nodes.split(','));
    } else if let Some(url) = &cli.redis {
        builder = builder.redis_url(url.clone());
    }
    if let Some(prefix) = &cli.prefix {
        builder = builder.key_prefix(prefix.clone());
    }
    builder.build()
}

fn describe_backend(config: &Config) -> String {
    match &config.backend {
        BackendConfig::Memory => "embedded in-memory store".to_string(),
        BackendConfig::Redis { url } => format!("Redis at {}", redact_url(url)),
        BackendConfig::Cluster { nodes } => format!("Redis Cluster via {}", nodes.join(",")),
        other => format!("{other:?}"),
    }
}

async fn run(cli: Cli, out: &Out) -> anyhow::Result<u8> {
    let config = config(&cli)?;
    if let Command::Health = cli.command {
        // Health reports connection failures as an unhealthy verdict, not as an error.
        return health(&config, out).await;
    }
    if let Command::Top(args) = cli.command {
        // Top connects on its own: it needs the Redis store itself for per-node INFO.
        return top::run(args, &config, describe_backend(&config), out).await;
    }
    let store = cachekit::connect(&config).await?;
    match cli.command {
        Command::Demo => demo::run(&config, store, out).await,
        Command::Health | Command::Top(_) => unreachable!("handled above"),
        Command::Stats => stats(&config, store, out).await,
        Command::Sessions(cmd) => sessions(cmd, &config, store, out).await,
        Command::Invalidate(args) => invalidate::run(args, &config, store, out).await,
        Command::Get(args) => {
            let key = match (args.key, args.family, args.id) {
                (Some(key), _, _) => key,
                (None, Some(family), Some(id)) => {
                    let family = invalidate::cache_family(&family)?;
                    let cache = cachekit::cache_manager(store.clone(), &config)?;
                    cache.family(family).key_of(&id).await?.into_string()
                }
                _ => unreachable!("clap requires a key or --family with --id"),
            };
            get(&key, store, out).await
        }
    }
}

async fn health(config: &Config, out: &Out) -> anyhow::Result<u8> {
    let started = Instant::now();
    let backend = describe_backend(config);
    let store = match cachekit::connect(config).await {
        Ok(s) => s,
        Err(e) => {
            out.report(
                &json!({
                    "healthy": false, "backend": backend, "reachable": false,
                    "error": e.to_string(), "elapsed_ms": started.elapsed().as_millis() as u64,
                }),
                &format!("UNHEALTHY: {backend} is not reachable: {e}"),
            );
            return Ok(exit::UNHEALTHY);
        }
    };
    let report = cachekit::health::check(store.as_ref()).await;
    let text = report.to_text(&backend);
    out.report(&serde_json::to_value(&report)?, &text);
    Ok(if report.healthy { 0 } else { exit::UNHEALTHY })
}

async fn stats(config: &Config, store: Arc<dyn Store>, out: &Out) -> anyhow::Result<u8> {
    let backend_stats = store.stats().await?;
    let mut counts = serde_json::Map::new();
    let cache = cachekit::cache_manager(store.clone(), config)?;
    for (family, n) in cache.key_counts().await? {
        counts.insert(family.name().to_string(), json!(n));
    }
    for family in cachekit::sessions::keys::FAMILIES {
        let n = store
            .count_matching(&family.pattern(), config.scan_count)
            .await?;
        counts.insert(family.name.to_string(), json!(n));
    }
    let mut text = format!("backend: {}\n", describe_backend(config));
    if let Some(s) = &backend_stats {
        text.push_str(&output::stats_text(s));
    }
    text.push_str("keys per family:\n");
    for (family, n) in &counts {
        text.push_str(&format!("  {family:<16} {n}\n"));
    }
    out.report(
        &json!({"backend": store.backend_name(), "server": backend_stats, "keys_per_family": counts}),
        text.trim_end(),
    );
    Ok(0)
}

async fn sessions(
    cmd: SessionsCmd,
    config: &Config,
    store: Arc<dyn Store>,
    out: &Out,
) -> anyhow::Result<u8> {
    let manager = cachekit::session_manager(store, config)?;
    match cmd {
        SessionsCmd::List { user } => {
            let list = manager.list_user_sessions(&user).await?;
            let mut text = format!("{} live session(s) of user {user}", list.len());
            for s in &list {
                text.push_str(&format!("\n  {}", output::session_line(s)));
            }
            let json: Vec<_> = list.iter().map(output::session_json).collect();
            out.report(&json!({"user": user, "sessions": json}), &text);
        }
        SessionsCmd::Revoke { user, handle } => {
            let revoked = match (user, handle) {
                (Some(user), _) => manager.revoke_all(&user).await?,
                (None, Some(handle)) => {
                    let handle = SessionHandle::parse(&handle)?;
                    u64::from(manager.revoke(&handle).await?)
                }
                (None, None) => unreachable!("clap requires --user or --handle"),
            };
            out.report(
                &json!({"revoked": revoked}),
                &format!("revoked {revoked} session(s)"),
            );
        }
        SessionsCmd::Cleanup => {
            let r = manager.cleanup().await?;
            out.report(
                &json!({
                    "indexes_scanned": r.indexes_scanned,
                    "entries_found": r.entries_found,
                    "expired_entries_removed": r.expired_entries_removed,
                    "orphan_entries_removed": r.orphan_entries_removed,
                    "expired_sessions_deleted": r.expired_sessions_deleted,
                    "entries_remaining": r.entries_remaining,
                }),
                &format!(
                    "cleanup: {} index(es) scanned, {} entries found; removed {} expired and {} orphaned \
                     entries, deleted {} expired session(s); {} live entries remain",
                    r.indexes_scanned,
                    r.entries_found,
                    r.expired_entries_removed,
                    r.orphan_entries_removed,
                    r.expired_sessions_deleted,
                    r.entries_remaining
                ),
            );
        }
    }
    Ok(0)
}

async fn get(key: &str, store: Arc<dyn Store>, out: &Out) -> anyhow::Result<u8> {
    let (value, ttl) = futures::try_join!(store.get(key), store.ttl(key))?;
    let Some(bytes) = value else {
        out.report(
            &json!({"key": key, "found": false}),
            &format!("{key}: not found"),
        );
        return Ok(exit::FAILURE);
    };
    let ttl_json = match ttl {
        KeyTtl::ExpiresIn(d) => json!(d.as_millis() as u64),
        _ => serde_json::Value::Null,
    };
    let ttl_text = match ttl {
        KeyTtl::ExpiresIn(d) => format!("expires in {}", output::human_duration(d)),
        KeyTtl::Persistent => "no expiry".to_string(),
        KeyTtl::Missing => "expired just now".to_string(),
    };
    let (decoded, note) = match codec::decode::<serde_json::Value>(&bytes) {
        Ok(v) => (v, None),
        Err(e) => (
            json!(String::from_utf8_lossy(&bytes)),
            Some(format!(
                "not in the cachekit format ({e}); showing raw bytes"
            )),
        ),
    };
    let pretty = serde_json::to_string_pretty(&decoded).context("cannot format value")?;
    let mut text = format!("{key} ({ttl_text}, {} bytes)\n{pretty}", bytes.len());
    if let Some(note) = &note {
        text.push_str(&format!("\nnote: {note}"));
    }
    out.report(
        &json!({"key": key, "found": true, "ttl_ms": ttl_json, "bytes": bytes.len(), "value": decoded, "note": note}),
        &text,
    );
    Ok(0)
}
