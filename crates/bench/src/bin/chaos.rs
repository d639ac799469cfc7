//! `cargo xtask chaos`: the library under a crashing and a stalling Redis.
//!
//! ```text
//! chaos [--smoke] [--scenarios kill,freeze,cluster_failover,sentinel_failover,sentinel_manual_failover] [--no-docs]
//! ```
//!
//! Each scenario starts its own `redis-server` (or cluster, or Sentinel topology), puts a steady load of session creates and updates
//! and cache reads and writes on it, injects the fault, observes the recovery, then reads every
//! acknowledged session back (see `bench::chaos`). Writes `target/chaos/report.json` and, on full
//! runs, `docs/reliability.md`. Exits non-zero only when the harness fails; missed goals are
//! printed, not turned into a failure.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{bail, Context as _};
use bench::chaos::{self, Fault, Scenario, ScenarioReport};
use bench::env::{build_profile, docs_file, output_dir, Machine};

/// Notes on the last full run's results, kept with the code.
const NOTES: &str = include_str!("../reliability_notes.md");

/// Every scenario of a full run, in order.
const SCENARIOS: [&str; 5] = [
    "kill",
    "freeze",
    "cluster_failover",
    "sentinel_failover",
    "sentinel_manual_failover",
];

const USAGE: &str = "usage: chaos [--smoke] [--scenarios kill,freeze,cluster_failover,\
                     sentinel_failover,sentinel_manual_failover] [--no-docs]";

struct Args {
    smoke: bool,
    scenarios: Vec<String>,
    docs: bool,
}

fn parse_args() -> anyhow::Result<Option<Args>> {
    let mut args = Args {
        smoke: false,
        scenarios: Vec::new(),
        docs: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--smoke" => args.smoke = true,
            "--no-docs" => args.docs = false,
            "--scenarios" => {
                args.scenarios = it
                    .next()
                    .context("--scenarios needs a value")?
                    .split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect();
                if let Some(bad) = args
                    .scenarios
                    .iter()
                    .find(|s| !SCENARIOS.contains(&s.as_str()))
                {
                    bail!("unknown scenario {bad:?}\n{USAGE}");
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok(Some(args))
}

fn scenarios(args: &Args) -> Vec<Scenario> {
    if args.smoke {
        // One short scenario with low load: proves the harness works end to end.
        return vec![Scenario {
            name: "freeze",
            fault: Fault::Freeze {
                stopped: Duration::from_secs(1),
            },
            concurrency: 8,
            warmup: Duration::from_millis(300),
            baseline: Duration::from_millis(700),
            after: Duration::from_millis(1500),
            cache_keys: 200,
            sessions_per_task: 5,
        }];
    }
    let base = Scenario {
        name: "kill",
        fault: Fault::Kill {
            down: Duration::from_secs(2),
        },
        concurrency: 64,
        warmup: Duration::from_secs(1),
        baseline: Duration::from_secs(3),
        after: Duration::from_secs(5),
        cache_keys: 1_000,
        sessions_per_task: 20,
    };
    let all = vec![
        base.clone(),
        Scenario {
            name: "freeze",
            fault: Fault::Freeze {
                stopped: Duration::from_secs(3),
            },
            ..base.clone()
        },
        Scenario {
            name: "cluster_failover",
            fault: Fault::ClusterFailover,
            ..base.clone()
        },
        Scenario {
            name: "sentinel_failover",
            fault: Fault::SentinelFailover,
            ..base.clone()
        },
        Scenario {
            name: "sentinel_manual_failover",
            fault: Fault::SentinelManualFailover,
            ..base
        },
    ];
    all.into_iter()
        .filter(|s| args.scenarios.is_empty() || args.scenarios.iter().any(|n| n == s.name))
        .collect()
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

fn summary(r: &ScenarioReport) -> String {
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
    format!(
        "| {} | {} | {} | {} | {} ({} returned, {} degraded) | {} | {} | {} | {} | {} |",
        r.scenario,
        r.fault,
        r.ops,
        r.ok,
        r.errors,
        r.errors_returned,
        r.degraded,
        opt(r.max_call_ms_during_outage),
        opt(r.max_store_call_ms_during_outage),
        opt(r.recovery_ms),
        r.acknowledged_writes_lost,
        r.panics
    )
}

const TABLE_HEAD: &str =
    "| scenario | fault | ops | ok | errors | max call ms | max store call ms | \
                          recovery ms | acked writes lost | panics |\n\
                          |---|---|---:|---:|---|---:|---:|---:|---:|---:|\n";

async fn run(args: Args, machine: Machine) -> anyhow::Result<()> {
    let list = scenarios(&args);
    println!(
        "chaos{}: {} build, {} cores, {}; scenarios: {}",
        if args.smoke { " --smoke" } else { "" },
        build_profile(),
        machine.cores,
        machine.redis_server,
        list.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
    );
    let mut reports = Vec::new();
    for s in &list {
        println!("scenario {} (C={}) ...", s.name, s.concurrency);
        let r = chaos::run(s)
            .await
            .with_context(|| format!("scenario {}", s.name))?;
        println!(
            "  ops {} ok {} errors {} | max call {:?} ms (deadline {} ms; store {:?} ms, bound {} ms) | \
             recovery {:?} ms | {} sessions checked, {} acknowledged writes lost | {} panics",
            r.ops,
            r.ok,
            r.errors,
            r.max_call_ms_during_outage,
            r.library_deadline_ms,
            r.max_store_call_ms_during_outage,
            r.call_timeout_ms,
            r.recovery_ms,
            r.sessions_checked,
            r.acknowledged_writes_lost,
            r.panics
        );
        reports.push(r);
    }

    let dir = output_dir("chaos")?;
    let path = dir.join("report.json");
    std::fs::write(&path, serde_json::to_string_pretty(&reports)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;

    let mut missed = Vec::new();
    for r in reports.iter().filter(|r| r.run) {
        for g in r.goals.iter().filter(|g| !g.met) {
            missed.push(format!(
                "MISSED [{}]: {}: measured {}",
                r.scenario, g.goal, g.measured
            ));
        }
    }
    println!();
    print!("{TABLE_HEAD}");
    for r in reports.iter().filter(|r| r.run) {
        println!("{}", summary(r));
    }
    println!();
    for line in &missed {
        println!("{line}");
    }
    if missed.is_empty() {
        println!("every goal met");
    }
    println!("wrote {}", path.display());

    if args.smoke {
        println!("smoke run: docs/reliability.md left alone (full runs write it)");
    } else if !args.docs {
        println!("--no-docs: docs/reliability.md left alone");
    } else {
        let path = docs_file("reliability.md");
        std::fs::write(&path, markdown(&reports, &machine))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn markdown(reports: &[ScenarioReport], machine: &Machine) -> String {
    let mut out = String::from("# Reliability\n\n");
    out.push_str(
        "Produced by `cargo xtask chaos` (crate `crates/bench`, binary `chaos`); every full run \
         rewrites this file. Raw data: `target/chaos/report.json`.\n\n## Machine\n\n",
    );
    out.push_str(&machine.markdown());
    out.push_str(
        "\n## Goals\n\n\
         - No call waits longer than its configured timeout plus 100 ms. A store call's bound is \
         `max(REDIS_RETRY_BUDGET, REDIS_CONNECT_TIMEOUT + REDIS_RESPONSE_TIMEOUT)` (the \
         `production` profile: 1 s, 1 s + 500 ms, so 1.5 s); a library call's is its deadline, \
         shared by all its store calls (`CACHE_CALL_TIMEOUT` / `SESSION_CALL_TIMEOUT`, 2 s by \
         default).\n\
         - Throughput back to 90 % of its pre-fault level within 2 s of the server's return.\n\
         - Zero acknowledged session writes lost.\n\
         - Zero panics.\n\n\
         ## Method\n\n\
         `kill` and `freeze` start their own `redis-server --appendonly yes --appendfsync always` \
         on a free loopback port; `cluster_failover` starts a Redis Cluster of 3 primaries with 1 \
         replica each (`test-redis`, node timeout 1 s, no persistence: the replica is the copy \
         that survives); `sentinel_failover` and `sentinel_manual_failover` start one primary, 2 \
         replicas and 3 `redis-server --sentinel` (`test-redis`, `down-after-milliseconds` 1000, \
         no persistence) and kill the primary (`SIGKILL`) or run `SENTINEL FAILOVER`; their \
         \"return\" is the promotion: when a replica first answers `ROLE master` (polled every \
         millisecond; every sentinel names it about a second later). \
         Each connects a `RedisStore` (production profile, standalone, cluster or Sentinel \
         mode) wrapped in a timing `Store`, shared by a `SessionManager` and a \
         `CacheManager`. `C` load tasks loop over: session create 10 %, session update (merge \
         patch `{\"n\": k}` on one of the task's own sessions) 30 %, cache read 40 %, cache write \
         20 % (1 KiB documents over 1,000 keys). A call counts as ok when it returned `Ok` and no \
         store call under it failed (the cache fails open, so a read during the outage returns a \
         miss, which is counted as degraded, not ok). Completions are counted in 50 ms buckets; \
         recovery is measured from the server's return (restart answering `PING`, `SIGCONT`, \
         or the replica's promotion) \
         to the end of the first 250 ms window at 90 % of the throughput measured before the \
         fault. \"Max call\" is the longest call in flight between the fault and 2 s after the \
         return. Every session a task created is read back at the end: it must exist and hold \
         the last acknowledged `n` (or the `n` of a later update that returned an error, which \
         may have been applied). In `sentinel_manual_failover`, lost writes that the old primary \
         acknowledged after the replica's promotion (seen by polling the replicas' `ROLE` every \
         millisecond) are reported apart (`writes_lost_after_promotion` in `report.json`): Redis \
         replicates asynchronously and Sentinel does not pause writes during a failover, so no \
         client can keep them.\n\n## Results\n\n",
    );
    out.push_str(TABLE_HEAD);
    for r in reports.iter().filter(|r| r.run) {
        out.push_str(&summary(r));
        out.push('\n');
    }
    out.push_str(
        "\nLongest call of each kind over the whole scenario, ms:\n\n\
         | scenario | session_create | session_update | cache_get | cache_set |\n\
         |---|---:|---:|---:|---:|\n",
    );
    for r in reports.iter().filter(|r| r.run) {
        let k = |name: &str| {
            r.max_call_ms_by_kind
                .get(name)
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"))
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            r.scenario,
            k("session_create"),
            k("session_update"),
            k("cache_get"),
            k("cache_set")
        );
    }
    for r in reports.iter().filter(|r| !r.run) {
        let _ = writeln!(
            out,
            "\n`{}`: not run: {}.",
            r.scenario,
            r.not_run_reason.as_deref().unwrap_or("no reason given")
        );
    }
    out.push_str("\n## Goals met\n\n| scenario | goal | measured | met |\n|---|---|---|---|\n");
    for r in reports.iter().filter(|r| r.run) {
        for g in &r.goals {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                r.scenario,
                g.goal,
                g.measured,
                if g.met { "yes" } else { "**NO**" }
            );
        }
    }
    out.push_str("\n## Notes\n\n");
    out.push_str(NOTES);
    if !NOTES.ends_with('\n') {
        out.push('\n');
    }
    out
}
