//! `cargo xtask bench`: throughput and latency of the library's clients against raw redis-rs.
//!
//! ```text
//! bench [--smoke] [--clients raw,store,...] [--rounds N] [--round-ms MS] [--keys N]
//!       [--concurrency 1,16,64] [--no-docs]
//! ```
//!
//! Starts its own `redis-server` (never the one on port 6379), preloads the keys, runs the plan
//! (see `bench::load`), writes `target/bench/results.jsonl`, prints a table and the targets, and on
//! full runs rewrites `docs/benchmarks.md`. Exits non-zero only when the harness fails, never
//! because a target was missed.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bench::clients::{self, CLIENTS, EXTRA_CLIENTS};
use bench::env::{build_profile, docs_file, output_dir, Machine};
use bench::load::{run_plan, Plan};
use bench::report::{self, DocInput};

/// The human analysis of the last full run's results, kept with the code (see `analysis.md`).
const ANALYSIS: &str = include_str!("../analysis.md");

#[derive(Debug)]
struct Args {
    smoke: bool,
    clients: Vec<String>,
    rounds: Option<usize>,
    round_ms: Option<u64>,
    keys: Option<u64>,
    concurrency: Option<&'static [usize]>,
    docs: bool,
}

/// The usage text, with the client names of the schedule and the diagnostic ones.
fn usage() -> String {
    format!(
        "usage: bench [--smoke] [--clients a,b,...] [--rounds N] [--round-ms MS] [--keys N] \
         [--concurrency 1,16,64] [--no-docs]\nclients: {} (default: all of these); diagnostic: {}",
        CLIENTS.join(", "),
        EXTRA_CLIENTS.join(", ")
    )
}

fn parse_args() -> anyhow::Result<Option<Args>> {
    let mut args = Args {
        smoke: false,
        clients: Vec::new(),
        rounds: None,
        round_ms: None,
        keys: None,
        concurrency: None,
        docs: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match a.as_str() {
            "--smoke" => args.smoke = true,
            "--no-docs" => args.docs = false,
            "--clients" => {
                args.clients = value("--clients")?
                    .split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect();
                if let Some(bad) = args.clients.iter().find(|c| {
                    !CLIENTS.contains(&c.as_str()) && !EXTRA_CLIENTS.contains(&c.as_str())
                }) {
                    bail!("unknown client {bad:?}\n{}", usage());
                }
            }
            "--rounds" => args.rounds = Some(value("--rounds")?.parse().context("--rounds")?),
            "--round-ms" => {
                args.round_ms = Some(value("--round-ms")?.parse().context("--round-ms")?)
            }
            "--keys" => args.keys = Some(value("--keys")?.parse().context("--keys")?),
            "--concurrency" => {
                let levels = value("--concurrency")?
                    .split(',')
                    .map(|s| s.trim().parse::<usize>().context("--concurrency"))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                // Parsed once per process: leaking it gives the plan its `'static` slice.
                args.concurrency = Some(levels.leak());
            }
            "-h" | "--help" => {
                println!("{}", usage());
                return Ok(None);
            }
            other => bail!("unknown argument {other:?}\n{}", usage()),
        }
    }
    Ok(Some(args))
}

fn main() -> anyhow::Result<()> {
    let Some(args) = parse_args()? else {
        return Ok(());
    };
    let machine = Machine::detect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(machine.cores.max(1))
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    rt.block_on(run(args, machine))
}

async fn run(args: Args, machine: Machine) -> anyhow::Result<()> {
    let plan = if args.smoke {
        Plan {
            concurrency: args.concurrency.unwrap_or(&[1, 16, 64]),
            rounds: args.rounds.unwrap_or(1),
            round: Duration::from_millis(args.round_ms.unwrap_or(60)),
            warmup: Duration::from_millis(20),
        }
    } else {
        Plan {
            concurrency: args.concurrency.unwrap_or(&[1, 16, 64]),
            // Many short rounds rather than a few long ones, in the same time: a ratio is the
            // median of the per-round ratios of two clients run one after the other, and this
            // machine's speed moves within a second. Five alternating runs of each plan (`raw`,
            // `store`, `raw_json`, `cache` at C=1 and 64): the four ratios' medians ranged over
            // 0.09-0.16 from run to run with 30 rounds of 120 ms, 0.09-0.36 with 10 of 350 ms.
            rounds: args.rounds.unwrap_or(30),
            round: Duration::from_millis(args.round_ms.unwrap_or(120)),
            warmup: Duration::from_millis(200),
        }
    };
    let keys = args.keys.unwrap_or(if args.smoke { 1_000 } else { 10_000 });
    let sessions = if args.smoke { 200 } else { 10_000 };
    let n_clients = if args.clients.is_empty() {
        CLIENTS.len()
    } else {
        args.clients.len()
    };
    println!(
        "bench{}: {} build, {} cores ({}), {}; {} clients x C={:?}, {} rounds of {:?} \
         (about {:?} of load)",
        if args.smoke { " --smoke" } else { "" },
        build_profile(),
        machine.cores,
        machine.cpu,
        machine.redis_server,
        n_clients,
        plan.concurrency,
        plan.rounds,
        plan.round,
        plan.estimate(n_clients),
    );
    if build_profile() == "dev" && !args.smoke {
        println!(
            "warning: a dev build measures nothing useful; `cargo xtask bench` builds --release"
        );
    }

    // The server is a plain child process; starting it blocks for a moment, which is fine here.
    let server = tokio::task::spawn_blocking(test_redis::RedisServer::start)
        .await
        .context("starting redis-server")?;
    let t0 = Instant::now();
    let entries = clients::setup(&server.url(), keys, sessions, &args.clients).await?;
    println!(
        "preloaded {keys} keys, {keys} cache entries and {sessions} sessions in {:.1?}",
        t0.elapsed()
    );

    let probe = clients::RedisCpu::connect(&server.url()).await?;
    let t0 = Instant::now();
    let mut last_level = 0;
    let cells = run_plan(&entries, &plan, Some(&probe), &mut |_, c, _| {
        if c != last_level {
            println!("running C={c} ...");
            last_level = c;
        }
    })
    .await?;
    println!("measured in {:.1?}", t0.elapsed());
    drop(entries);
    drop(probe);
    let mut latency = Vec::new();
    if args.clients.is_empty() || args.clients.iter().any(|c| c.starts_with("near")) {
        let samples = if args.smoke { 50 } else { 2_000 };
        let cfg = clients::config(&server.url())?;
        let hist = bench::near::invalidation_latency(&cfg, samples).await?;
        latency.push(report::Latency::of(
            "Invalidation",
            "instance A writes a key instance B holds in its near cache; time until B has \
             dropped it, from the start of A's write",
            samples,
            &hist,
        ));
        let samples = if args.smoke { 50 } else { 1_000 };
        let hist = bench::near::revocation_latency(&cfg, samples).await?;
        latency.push(report::Latency::of(
            "Revocation",
            "instance A logs out a session instance B holds in its session near cache; time \
             until B's `get` answers that it is gone, from the start of A's logout",
            samples,
            &hist,
        ));
        for l in &latency {
            println!(
                "{} latency over {} samples: p50 {:.1} µs, p99 {:.1} µs",
                l.what, l.samples, l.p50_us, l.p99_us
            );
        }
    }
    drop(server);

    let rows = report::rows(&cells);
    let mut checks = report::checks(&rows, &report::targets(machine.cores));
    checks.extend(latency.iter().map(report::latency_check));
    let dir = output_dir("bench")?;
    let results = dir.join("results.jsonl");
    std::fs::write(&results, report::jsonl(&rows)?)
        .with_context(|| format!("writing {}", results.display()))?;
    let table = report::table(&rows);
    println!("\n{table}");
    if args.smoke {
        println!(
            "smoke run: {} build, rounds of {:?}: the targets are not evaluated (these figures \
             only show that every client works)",
            build_profile(),
            plan.round
        );
    } else {
        println!("{}", report::checks_table(&checks));
        for line in report::missed(&checks) {
            println!("{line}");
        }
    }
    let errors: u64 = rows.iter().map(|r| r.errors).sum();
    if errors > 0 {
        println!(
            "WARNING: {errors} operations failed; see first_error in {}",
            results.display()
        );
    }
    println!("wrote {}", results.display());
    let chart = dir.join("chart.svg");
    bench::chart::ops_chart(&rows, &chart)?;
    println!("wrote {}", chart.display());

    if args.smoke {
        println!("smoke run: docs/benchmarks.md left alone (full runs write it)");
    } else if !args.docs {
        println!("--no-docs: docs/benchmarks.md left alone");
    } else {
        let method = format!(
            "One `redis-server` started by the tool on loopback (`--save \"\" --appendonly no`), \
             one multi-threaded tokio runtime with {cores} worker threads for every client. \
             Workload of the key-value clients: {get}% `GET`, {set}% `SET ... PX {ttl}` of a \
             {size}-byte JSON document over {keys} preloaded keys; `session_get` and \
             `session_update` pick one of {sessions} preloaded sessions (~1 KiB of data each; \
             the session managers use a touch interval of {touch:?}, longer than the run, so no \
             `get` rewrites `last_accessed`: in a service that happens once per session per \
             minute at the default, while here each session is read every few seconds in rounds \
             that share the time with the other clients, which would pack a minute's rewrites of \
             every session into the session clients' rounds; the diagnostic client \
             `session_touch` measures a rewriting read); \
             `batch64` / `raw_pipeline64` read 64 consecutive keys per operation. Library clients \
             use the `production` profile (`RedisStore` with its default {shared} shared \
             connections) and are called through `Arc<dyn Store>`; `cache` is \
             `CacheManager<Arc<dyn Store>>` typed `get` / `set` with a per-call TTL of the document (so it \
             also decodes / encodes it), family `content`.\n\n\
             For each C in {levels:?}: one unmeasured warm-up round of {warm:?} per client, then \
             {rounds} rounds of {round:?} in which every client runs once; the rounds go in pairs, the \
             second of a pair running the first's order backwards, and the order rotates by two \
             clients per pair, so that drift spreads over all clients and each of two compared \
             clients runs first in half of the rounds; a client's figures \
             aggregate its rounds. Latency is measured around each call (histogram with < 1% \
             bucket error) of the clients that make round trips, and around one call in {every} \
             of the in-process clients (`memory*`, and the near clients, whose hits are in \
             process): reading the clock twice per call (the vDSO's \
             `clock_gettime`, which orders the CPU's pipeline around its time-stamp read) took \
             about half of a `memory` call's measured time (0.46 against 0.22 µs per call at \
             C=1 in one run), work of the harness, not of the client. `C` tasks call the client \
             in a loop; throughput = operations / wall time of the round (every call counts).\n\n\
             Clients: `raw` = one shared redis-rs `MultiplexedConnection` (the baseline); `store` \
             = `RedisStore`; `cache` = `CacheManager`; `session_get` = `SessionManager::get` \
             (one `GETEX` sliding the idle expiry); `session_update` = `SessionManager::update` \
             (atomic merge: `GET` + compare-and-swap script); `raw_pipeline64` = one redis-rs \
             pipeline of 64 `GET`s; `batch64` = `Store::get_many` of 64 keys (one `MGET`); \
             `memory` = a `MemoryStore` of its own (only these entries), same workload, no \
             network; `memory_ref` = the same \
             workload on `quick_cache::sync::Cache<String, Bytes>` (the concurrent map of the \
             near cache, no TTLs: the reference of `memory`, what a well-kept in-process cache \
             costs on this machine); `memory_json`, \
             `memory_cache`, `memory_raw_session_get`, `memory_session_get` = `raw_json`, \
             `cache`, `raw_session_get`, `session_get` on a `MemoryStore` (their `vs reference` \
             and `client µs/op` show the library's own CPU per call without the kernel's socket \
             work); `near_cache` = \
             `FamilyCache::get_shared` of the `content` family with its near cache on, keys drawn \
             from a Zipf distribution (exponent {zipf}) over {keys} documents of its own, {near_w}% \
             writes made through a second manager with its own connections (so each write reaches \
             the reader's copy only through Redis's invalidation, as between two instances); \
             `near_session_get` = `session_get` with the session near cache on, over {sessions} \
             sessions of its own. Both near clients use a key prefix of their own \
             (`{near_prefix}`): a tracking connection is told of every write under its broadcast \
             prefix, so sharing `{prefix}` with `cache` and `session_get` would push their writes \
             and TTL slides to the near clients and charge that work to them. The invalidation \
             latency is measured after the rounds: instance A writes a key instance B holds, \
             {lat} times, and B polls (without sleeping) until it has dropped its copy; the time \
             counts from the start of A's write. The revocation latency likewise: instance A \
             logs out a session instance B holds in its session near cache, {rev} times, and B \
             calls `get` (without sleeping) until it answers that the session is gone. \
             Reference clients (raw \
             redis-rs doing the decoding a typed answer needs): `raw_json` = `raw` plus \
             `serde_json` decode of each document read and encode of each written (what `cache` \
             does); `raw_session_get` = one `GETEX PX` of a session record plus its decode into a \
             `serde_json::Value` (the least work of a sliding session read).",
            cores = machine.cores,
            touch = bench::workload::SESSION_TOUCH_INTERVAL,
            get = bench::workload::GET_PERCENT,
            set = 100 - bench::workload::GET_PERCENT,
            ttl = bench::workload::SET_TTL.as_millis(),
            size = bench::workload::Doc::sample(1).json().len(),
            shared = cache_redis::DEFAULT_SHARED_CONNECTIONS,
            levels = plan.concurrency,
            warm = plan.warmup,
            rounds = plan.rounds,
            round = plan.round,
            every = bench::load::Timing::SAMPLED_EVERY,
            zipf = bench::near::ZIPF_EXPONENT,
            near_w = bench::near::NEAR_WRITE_PERCENT,
            near_prefix = bench::near::NEAR_PREFIX,
            prefix = bench::workload::PREFIX,
            lat = latency.first().map_or(0, |l| l.samples),
            rev = latency.get(1).map_or(0, |l| l.samples),
        );
        let doc = report::markdown(
            &rows,
            &checks,
            &DocInput {
                machine: &machine,
                method,
                analysis: ANALYSIS,
                latency: latency.clone(),
            },
        );
        let path = docs_file("benchmarks.md");
        std::fs::write(&path, doc).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
        let svg = docs_file("benchmarks.svg");
        bench::chart::ops_chart(&rows, &svg)?;
        println!("wrote {}", svg.display());
    }
    Ok(())
}
