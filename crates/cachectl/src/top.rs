//! `cachectl top`: a live view of the Redis server(s) and of the library instances that publish a
//! fleet heartbeat, refreshed every `--interval` (1 s).
//!
//! Three outputs:
//! - on a terminal, a full-screen view (alternate screen, raw mode) that quits on `q`, `Esc` or
//!   Ctrl-C with exit code 0;
//! - with `--json`, one JSON snapshot per line on stdout (for scripts), forever or `--count N`
//!   times;
//! - on anything else (a pipe, a file), the text frames one after the other.
//!
//! Each refresh sends one `INFO all` per server (every primary on a cluster) and reads the fleet
//! with `SCAN fleet:*` + `MGET` under the prefix: a handful of commands per second, which show up in
//! the view's own ops/s and `info`/`scan`/`mget` command counts. A failing source is shown as an
//! error line and retried at the next refresh, so the view survives an outage.

mod render;
mod server;
mod term;

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cachekit::core::{BackendConfig, Config};
use cachekit::fleet::{read_fleet, FleetView};
use cachekit::{DynStore, RedisStore};
use clap::Args;
use serde::Serialize;

use self::server::{NodeSample, ServerView};
use self::term::{Input, Screen};
use crate::output::Out;

/// Arguments of `cachectl top`.
#[derive(Debug, Args)]
pub(crate) struct TopArgs {
    /// Time between refreshes (`1s`, `500ms`).
    #[arg(long, default_value = "1s", value_parser = parse_interval)]
    interval: Duration,
    /// Stop after this many snapshots (default: run until `q`, Ctrl-C or the end of the pipe).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// How many commands the per-command table shows (busiest first; `--json` has them all).
    #[arg(long, value_name = "N", default_value_t = 10)]
    commands: usize,
}

fn parse_interval(v: &str) -> Result<Duration, String> {
    let d = cachekit::core::config::parse_duration("--interval", v).map_err(|e| e.to_string())?;
    if d < Duration::from_millis(50) {
        return Err("the interval must be at least 50ms".to_owned());
    }
    Ok(d)
}

/// One refresh: what `--json` prints on one line, and what a frame shows.
#[derive(Debug, Serialize)]
pub(crate) struct Snapshot {
    /// When the snapshot was taken, Unix milliseconds.
    pub(crate) at_ms: u64,
    /// The backend, as `cachectl stats` names it (no credentials).
    pub(crate) backend: String,
    /// The key prefix the fleet is read under.
    pub(crate) prefix: String,
    /// The refresh interval, ms.
    pub(crate) interval_ms: u64,
    /// The server view; `None` on the in-memory backend or when `INFO` failed.
    pub(crate) server: Option<ServerView>,
    /// Why the server view is missing, when `INFO` failed.
    pub(crate) server_error: Option<String>,
    /// The live instances and their totals; `None` when the read failed.
    pub(crate) fleet: Option<FleetView>,
    /// Why the fleet view is missing.
    pub(crate) fleet_error: Option<String>,
}

/// Where the snapshots come from, and the previous server samples for the rates.
struct Sources {
    redis: Option<RedisStore>,
    store: DynStore,
    scan_count: u32,
    previous: Vec<NodeSample>,
    backend: String,
    interval: Duration,
}

impl Sources {
    async fn connect(config: &Config, backend: String, interval: Duration) -> anyhow::Result<Self> {
        let (redis, store): (Option<RedisStore>, DynStore) = match &config.backend {
            BackendConfig::Redis { .. } | BackendConfig::Cluster { .. } => {
                let redis = RedisStore::connect(&cachekit::RedisConfig::from_core(config)?).await?;
                (Some(redis.clone()), Arc::new(redis))
            }
            _ => (None, cachekit::connect(config).await?),
        };
        Ok(Self {
            redis,
            store,
            scan_count: config.scan_count,
            previous: Vec::new(),
            backend,
            interval,
        })
    }

    /// Reads the server(s) and the fleet concurrently.
    async fn sample(&mut self) -> Snapshot {
        let server = async {
            match &self.redis {
                Some(r) => Some(r.info_per_node(&["all"]).await),
                None => None,
            }
        };
        let fleet = read_fleet(self.store.as_ref(), self.scan_count);
        let (server, fleet) = tokio::join!(server, fleet);
        let at = Instant::now();
        let (server, server_error) = match server {
            None => (None, None),
            Some(Ok(nodes)) => {
                let samples: Vec<NodeSample> = nodes
                    .iter()
                    .map(|n| NodeSample::parse(&n.address, &n.text, at))
                    .collect();
                let view = ServerView::compute(&self.previous, &samples);
                self.previous = samples;
                (Some(view), None)
            }
            Some(Err(e)) => (None, Some(e.to_string())),
        };
        let (fleet, fleet_error) = match fleet {
            Ok(f) => (Some(f), None),
            Err(e) => (None, Some(e.to_string())),
        };
        Snapshot {
            at_ms: unix_ms(),
            backend: self.backend.clone(),
            prefix: self.store.prefix().to_owned(),
            interval_ms: u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX),
            server,
            server_error,
            fleet,
            fleet_error,
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Runs `cachectl top`; the exit code is 0 when the user quits or `--count` is reached.
pub(crate) async fn run(
    args: TopArgs,
    config: &Config,
    backend: String,
    out: &Out,
) -> anyhow::Result<u8> {
    let mut sources = Sources::connect(config, backend, args.interval).await?;
    if out.is_json() {
        stream(&mut sources, &args, |s| {
            println!("{}", serde_json::to_string(s)?);
            Ok(())
        })
        .await
    } else if std::io::stdout().is_terminal() {
        interactive(&mut sources, &args).await
    } else {
        stream(&mut sources, &args, |s| {
            println!(
                "{}\n",
                render::frame(s, usize::MAX, args.commands).join("\n")
            );
            Ok(())
        })
        .await
    }
}

/// Prints a snapshot per interval until `--count` or Ctrl-C.
async fn stream(
    sources: &mut Sources,
    args: &TopArgs,
    mut print: impl FnMut(&Snapshot) -> anyhow::Result<()>,
) -> anyhow::Result<u8> {
    let mut ticker = tokio::time::interval(args.interval);
    let mut printed = 0u64;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(0),
            _ = ticker.tick() => {}
        }
        let snapshot = sources.sample().await;
        print(&snapshot)?;
        printed += 1;
        if args.count.is_some_and(|n| printed >= n) {
            return Ok(0);
        }
    }
}

/// The full-screen view: draws a frame per interval, quits on a key.
async fn interactive(sources: &mut Sources, args: &TopArgs) -> anyhow::Result<u8> {
    let mut screen = Screen::enter()?;
    let (mut keys, stop) = term::keys();
    let result = async {
        let mut ticker = tokio::time::interval(args.interval);
        let mut last: Option<Snapshot> = None;
        let mut drawn = 0u64;
        loop {
            // A refresh in progress is abandoned when a key asks to quit (its store calls are
            // cancelled), so `q` answers at once even while a server is slow to reply.
            let refresh = async {
                ticker.tick().await;
                sources.sample().await
            };
            tokio::select! {
                // No more keys (no terminal to read from) disables this branch; Ctrl-C still quits.
                Some(input) = keys.recv() => match input {
                    Input::Quit => return Ok(0),
                    Input::Redraw => {
                        if let Some(s) = &last {
                            let (width, _) = Screen::size();
                            screen.draw(&render::frame(s, width, args.commands))?;
                        }
                    }
                },
                _ = tokio::signal::ctrl_c() => return Ok(0),
                snapshot = refresh => {
                    let (width, _) = Screen::size();
                    screen.draw(&render::frame(&snapshot, width, args.commands))?;
                    last = Some(snapshot);
                    drawn += 1;
                    if args.count.is_some_and(|n| drawn >= n) {
                        return Ok(0);
                    }
                }
            }
        }
    }
    .await;
    stop.store(true, Ordering::Relaxed);
    drop(screen);
    result
}
