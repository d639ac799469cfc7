//! Benchmark results: one row per (client, concurrency), the targets, and their renderings (JSON
//! lines, a text table, the Markdown of `docs/benchmarks.md`).

use std::fmt::Write as _;

use serde::Serialize;

use crate::env::Machine;
use crate::load::{Cell, Measured};

/// One line of `target/bench/results.jsonl`.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Client name.
    pub client: String,
    /// Concurrent tasks.
    pub concurrency: usize,
    /// Operations per second (for the 64-key batch clients: batches per second).
    pub ops_per_s: f64,
    /// Median latency, microseconds.
    pub p50_us: f64,
    /// 99th percentile latency, microseconds.
    pub p99_us: f64,
    /// Throughput relative to the baseline at the same concurrency: `raw`, or `raw_pipeline64` for
    /// `batch64` and `raw_pipeline64`. `None` when the baseline was not measured.
    pub ratio_vs_raw: Option<f64>,
    /// p99 relative to the same baseline.
    pub p99_ratio_vs_raw: Option<f64>,
    /// For `cache` and `session_get` (and their in-process twins): throughput relative to the raw
    /// client that does the same decoding work (`raw_json`, `raw_session_get`), which isolates the
    /// cost of the library's own code; for `memory`: relative to `memory_ref`. `None` for other
    /// clients or when the reference was not measured.
    pub ratio_vs_reference: Option<f64>,
    /// The middle half of the per-round ratios behind `ratio_vs_raw` (first and third quartile),
    /// when it is a median over rounds: how far one round's ratio moves on this machine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_vs_raw_spread: Option<[f64; 2]>,
    /// The same for `ratio_vs_reference`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_vs_reference_spread: Option<[f64; 2]>,
    /// Server CPU per operation (`INFO cpu` delta over the rounds / operations), microseconds.
    pub server_us_per_op: Option<f64>,
    /// Server CPU per operation relative to the baseline's at the same concurrency.
    pub server_cpu_vs_raw: Option<f64>,
    /// This process's CPU per operation (all its threads over the rounds / operations),
    /// microseconds: the client's own cost, steadier than ops/s on a shared machine.
    pub client_us_per_op: Option<f64>,
    /// Operations measured.
    pub ops: u64,
    /// Operations that failed (should be 0).
    pub errors: u64,
    /// The first error, when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// Build profile of the run.
    pub profile: &'static str,
}

/// The baseline a client is compared with.
pub fn baseline_of(client: &str) -> &'static str {
    match client {
        "batch64" | "raw_pipeline64" => "raw_pipeline64",
        _ => "raw",
    }
}

/// The raw client doing the same decoding work as a library client, when there is one.
pub fn reference_of(client: &str) -> Option<&'static str> {
    match client {
        "cache" | "store_json" => Some("raw_json"),
        "session_get" | "store_session_get" => Some("raw_session_get"),
        "memory" => Some("memory_ref"),
        "memory_cache" => Some("memory_json"),
        "memory_session_get" => Some("memory_raw_session_get"),
        _ => None,
    }
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

/// Throughput of `a` relative to `b`: the median of their per-round ratios when both ran the same
/// rounds (at least three), else the ratio of their totals. Every round runs each client once, one
/// after the other, so the two figures of a round were measured within a few seconds of each
/// other: the median of those pairs is not moved by a few seconds in which another tenant of the
/// machine took the cores, which the ratio of totals is (raw alone ran at C=1 at 6.7k-15.9k ops/s
/// within one hour on the 2-core machine).
pub fn throughput_ratio(a: &Measured, b: &Measured) -> Option<f64> {
    if let Some(ratios) = round_ratios(a, b) {
        return Some(quantile(&ratios, 0.5));
    }
    let b = b.ops_per_s();
    (b > 0.0).then(|| a.ops_per_s() / b)
}

/// The first and third quartile of the per-round ratios [`throughput_ratio`] takes the median of;
/// `None` when it uses the ratio of totals.
pub fn throughput_ratio_spread(a: &Measured, b: &Measured) -> Option<[f64; 2]> {
    let ratios = round_ratios(a, b)?;
    Some([quantile(&ratios, 0.25), quantile(&ratios, 0.75)])
}

/// The per-round ratios of `a` to `b`, sorted, when both ran the same rounds (at least three) and
/// every one of `b`'s measured something.
fn round_ratios(a: &Measured, b: &Measured) -> Option<Vec<f64>> {
    if a.rounds.len() < 3 || a.rounds.len() != b.rounds.len() {
        return None;
    }
    let mut ratios: Vec<f64> = a
        .rounds
        .iter()
        .zip(&b.rounds)
        .filter(|(_, b)| **b > 0.0)
        .map(|(a, b)| a / b)
        .collect();
    if ratios.len() != a.rounds.len() {
        return None;
    }
    ratios.sort_by(f64::total_cmp);
    Some(ratios)
}

/// The `q` quantile of sorted, non-empty `values`, interpolated between the two nearest (the
/// median of an even count is the mean of the middle two).
fn quantile(values: &[f64], q: f64) -> f64 {
    let pos = q * (values.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    values[lo] + (values[hi] - values[lo]) * (pos - lo as f64)
}

/// Turns measured cells into rows with their ratios.
pub fn rows(cells: &[Cell]) -> Vec<Row> {
    let find = |client: &str, c: usize| {
        cells
            .iter()
            .find(|x| x.client == client && x.concurrency == c)
    };
    cells
        .iter()
        .map(|cell| {
            let m = &cell.measured;
            let ops_per_s = m.ops_per_s();
            let p99 = m.hist.quantile(0.99) as f64 / 1_000.0;
            let base = find(baseline_of(cell.client), cell.concurrency);
            let ratio = base
                .and_then(|b| throughput_ratio(m, &b.measured))
                .map(|r| round(r, 3));
            let p99_ratio = base
                .map(|b| b.measured.hist.quantile(0.99) as f64 / 1_000.0)
                .filter(|b| *b > 0.0)
                .map(|b| round(p99 / b, 3));
            let reference_cell = reference_of(cell.client).and_then(|r| find(r, cell.concurrency));
            let reference = reference_cell
                .and_then(|r| throughput_ratio(m, &r.measured))
                .map(|r| round(r, 3));
            let spread = |b: Option<&Cell>| {
                b.and_then(|b| throughput_ratio_spread(m, &b.measured))
                    .map(|[lo, hi]| [round(lo, 3), round(hi, 3)])
            };
            let server = m.server_us_per_op();
            let server_ratio = base
                .and_then(|b| b.measured.server_us_per_op())
                .filter(|b| *b > 0.0)
                .and_then(|b| server.map(|s| round(s / b, 3)));
            Row {
                client: cell.client.to_owned(),
                concurrency: cell.concurrency,
                ops_per_s: round(ops_per_s, 0),
                p50_us: round(m.hist.quantile(0.5) as f64 / 1_000.0, 1),
                p99_us: round(p99, 1),
                ratio_vs_raw: ratio,
                p99_ratio_vs_raw: p99_ratio,
                ratio_vs_reference: reference,
                ratio_vs_raw_spread: spread(base),
                ratio_vs_reference_spread: spread(reference_cell),
                server_us_per_op: server.map(|s| round(s, 2)),
                server_cpu_vs_raw: server_ratio,
                client_us_per_op: m.client_us_per_op().map(|s| round(s, 2)),
                ops: m.ops,
                errors: m.errors,
                first_error: m.first_error.clone(),
                profile: crate::env::build_profile(),
            }
        })
        .collect()
}

/// The JSON-lines file content.
pub fn jsonl(rows: &[Row]) -> anyhow::Result<String> {
    let mut out = String::new();
    for r in rows {
        out.push_str(&serde_json::to_string(r)?);
        out.push('\n');
    }
    Ok(out)
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
}

/// A Markdown table of the rows (also readable as plain text on a terminal).
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| client | C | ops/s | p50 µs | p99 µs | vs baseline | p99 vs baseline | vs reference | server µs/op | server CPU vs baseline | client µs/op | errors |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.1} | {:.1} | {} | {} | {} | {} | {} | {} | {} |",
            r.client,
            r.concurrency,
            r.ops_per_s,
            r.p50_us,
            r.p99_us,
            opt(r.ratio_vs_raw, 2),
            opt(r.p99_ratio_vs_raw, 2),
            opt(r.ratio_vs_reference, 2),
            opt(r.server_us_per_op, 2),
            opt(r.server_cpu_vs_raw, 2),
            opt(r.client_us_per_op, 2),
            r.errors
        );
    }
    out
}

/// One target of the issue, checked at one concurrency level.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What is required, in words.
    pub target: String,
    /// Concurrency level.
    pub concurrency: usize,
    /// What was measured, in words.
    pub measured: String,
    /// Whether the target was met (`None`: not measured).
    pub met: Option<bool>,
}

/// What a target compares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Measure {
    /// ops/s relative to the baseline ([`baseline_of`]), optionally with a p99 limit relative to it.
    VsBaseline {
        /// Largest accepted p99 ratio.
        max_p99: Option<f64>,
    },
    /// ops/s relative to the raw client doing the same decoding ([`reference_of`]).
    VsReference,
    /// Server CPU per operation relative to the baseline's: the value is a *maximum*.
    ServerCpuVsBaseline,
    /// ops/s per core used: the machine has the given number of cores, and `C` tasks keep at most
    /// `C` of them busy.
    PerCore(usize),
}

/// One target: a client, what is compared, the threshold, and at which concurrency levels (empty:
/// all).
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Client name.
    pub client: &'static str,
    /// What is compared.
    pub measure: Measure,
    /// The threshold (a minimum, except for [`Measure::ServerCpuVsBaseline`]).
    pub threshold: f64,
    /// Concurrency levels the target applies to (empty: every level measured).
    pub levels: &'static [usize],
}

/// The targets of issue 13 for a machine with `cores` cores: `store` >= 0.95x `raw` (p99 <= 1.5x)
/// costing the server <= 1.1x `raw`'s CPU per operation; `cache` >= 0.9x `raw_json`;
/// `session_get` >= 0.9x `raw_session_get`; `batch64` >= 0.8x `raw_pipeline64`; the near-cache
/// clients >= 5x (`near_cache`, at C=16 and 64) and >= 3x (`near_session_get`) `raw`; `memory` >=
/// 2M ops/s per core.
pub fn targets(cores: usize) -> Vec<Target> {
    vec![
        Target {
            client: "store",
            measure: Measure::VsBaseline { max_p99: Some(1.5) },
            threshold: 0.95,
            levels: &[],
        },
        Target {
            client: "store",
            measure: Measure::ServerCpuVsBaseline,
            threshold: 1.1,
            levels: &[],
        },
        Target {
            client: "cache",
            measure: Measure::VsReference,
            threshold: 0.9,
            levels: &[],
        },
        Target {
            client: "session_get",
            measure: Measure::VsReference,
            threshold: 0.9,
            levels: &[],
        },
        Target {
            client: "batch64",
            measure: Measure::VsBaseline { max_p99: None },
            threshold: 0.8,
            levels: &[],
        },
        Target {
            client: "near_cache",
            measure: Measure::VsBaseline { max_p99: None },
            threshold: 5.0,
            levels: &[16, 64],
        },
        Target {
            client: "near_session_get",
            measure: Measure::VsBaseline { max_p99: None },
            threshold: 3.0,
            levels: &[],
        },
        Target {
            client: "memory",
            measure: Measure::PerCore(cores.max(1)),
            threshold: 2_000_000.0,
            levels: &[],
        },
    ]
}

/// The targets checked against the rows, at every concurrency level they apply to.
pub fn checks(rows: &[Row], targets: &[Target]) -> Vec<Check> {
    let mut levels: Vec<usize> = rows.iter().map(|r| r.concurrency).collect();
    levels.sort_unstable();
    levels.dedup();
    let mut out = Vec::new();
    for t in targets {
        for &c in levels
            .iter()
            .filter(|c| t.levels.is_empty() || t.levels.contains(c))
        {
            let row = rows
                .iter()
                .find(|r| r.client == t.client && r.concurrency == c);
            let (client, th) = (t.client, t.threshold);
            let base = baseline_of(client);
            let target = match t.measure {
                Measure::VsBaseline { max_p99: Some(p) } => {
                    format!("{client} >= {th}x {base} ops/s, p99 <= {p}x")
                }
                Measure::VsBaseline { max_p99: None } => format!("{client} >= {th}x {base} ops/s"),
                Measure::VsReference => format!(
                    "{client} >= {th}x {} ops/s",
                    reference_of(client).unwrap_or("-")
                ),
                Measure::ServerCpuVsBaseline => {
                    format!("{client} server CPU/op <= {th}x {base}")
                }
                Measure::PerCore(_) => format!("{client} >= {:.0}M ops/s per core", th / 1e6),
            };
            let value = row.and_then(|r| match t.measure {
                Measure::VsBaseline { .. } => r.ratio_vs_raw,
                Measure::VsReference => r.ratio_vs_reference,
                Measure::ServerCpuVsBaseline => r.server_cpu_vs_raw,
                Measure::PerCore(cores) => Some(r.ops_per_s / cores.min(c).max(1) as f64),
            });
            let (measured, met) = match (row, value) {
                (Some(r), Some(v)) => {
                    let (mut text, mut ok) = match t.measure {
                        Measure::ServerCpuVsBaseline => (format!("{v:.2}x"), v <= th),
                        Measure::PerCore(_) => (format!("{:.2}M", v / 1e6), v >= th),
                        _ => (format!("{v:.2}x"), v >= th),
                    };
                    let spread = match t.measure {
                        Measure::VsBaseline { .. } => r.ratio_vs_raw_spread,
                        Measure::VsReference => r.ratio_vs_reference_spread,
                        _ => None,
                    };
                    if let Some([lo, hi]) = spread {
                        text.push_str(&format!(" (rounds {lo:.2}-{hi:.2})"));
                    }
                    if let Measure::VsBaseline {
                        max_p99: Some(limit),
                    } = t.measure
                    {
                        let p99 = r.p99_ratio_vs_raw;
                        text.push_str(&format!(", p99 {}x", opt(p99, 2)));
                        ok &= p99.is_some_and(|p| p <= limit);
                    }
                    if r.errors > 0 {
                        text.push_str(&format!(", {} errors", r.errors));
                        ok = false;
                    }
                    (text, Some(ok))
                }
                _ => ("not measured".to_owned(), None),
            };
            out.push(Check {
                target,
                concurrency: c,
                measured,
                met,
            });
        }
    }
    out
}

/// The Markdown table of the checks.
pub fn checks_table(checks: &[Check]) -> String {
    let mut out = String::from("| target | C | measured | met |\n|---|---:|---|---|\n");
    for c in checks {
        let met = match c.met {
            Some(true) => "yes",
            Some(false) => "**NO**",
            None => "not measured",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            c.target, c.concurrency, c.measured, met
        );
    }
    out
}

/// Lines naming each missed target, for the terminal.
pub fn missed(checks: &[Check]) -> Vec<String> {
    checks
        .iter()
        .filter(|c| c.met == Some(false))
        .map(|c| {
            format!(
                "MISSED: {} at C={}: measured {}",
                c.target, c.concurrency, c.measured
            )
        })
        .collect()
}

/// A cross-instance latency: how long after instance A starts a write (or a logout) instance B
/// stops serving the old value from its near cache.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// What was measured (`Invalidation`, `Revocation`), as the targets table and the document
    /// name it.
    pub what: &'static str,
    /// What one sample is, in the document's sentence.
    pub description: &'static str,
    /// Writes measured.
    pub samples: usize,
    /// Median, microseconds.
    pub p50_us: f64,
    /// 99th percentile, microseconds.
    pub p99_us: f64,
    /// Longest, microseconds.
    pub max_us: f64,
}

impl Latency {
    /// The figures of `hist` (nanoseconds), named.
    pub fn of(
        what: &'static str,
        description: &'static str,
        samples: usize,
        hist: &crate::hist::Histogram,
    ) -> Latency {
        Latency {
            what,
            description,
            samples,
            p50_us: hist.quantile(0.5) as f64 / 1e3,
            p99_us: hist.quantile(0.99) as f64 / 1e3,
            max_us: hist.max() as f64 / 1e3,
        }
    }
}

/// The target of issue 13 for a cross-instance latency: p99 <= 5 ms on loopback.
pub fn latency_check(l: &Latency) -> Check {
    Check {
        target: format!(
            "{} visible on the other instance, p99 <= 5 ms",
            l.what.to_lowercase()
        ),
        concurrency: 1,
        measured: format!("p50 {:.0} µs, p99 {:.0} µs", l.p50_us, l.p99_us),
        met: Some(l.p99_us <= 5_000.0),
    }
}

/// What the Markdown document needs besides the rows.
#[derive(Debug, Clone)]
pub struct DocInput<'a> {
    /// The machine.
    pub machine: &'a Machine,
    /// The command that produced the numbers and its plan, in words.
    pub method: String,
    /// Analysis of the results (why targets were missed), Markdown.
    pub analysis: &'a str,
    /// The cross-instance latencies measured (none when no near client ran).
    pub latency: Vec<Latency>,
}

/// The content of `docs/benchmarks.md`.
pub fn markdown(rows: &[Row], checks: &[Check], input: &DocInput<'_>) -> String {
    let mut out = String::new();
    out.push_str("# Benchmarks\n\n");
    out.push_str(
        "Produced by `cargo xtask bench` (crate `crates/bench`, binary `bench`); this file is \
         rewritten by every full run, so the numbers below are the last run's. Raw data: \
         `target/bench/results.jsonl`.\n\n",
    );
    out.push_str("## Machine\n\n");
    out.push_str(&input.machine.markdown());
    out.push_str("\n## Method\n\n");
    out.push_str(&input.method);
    out.push_str("\n\n## Targets\n\n");
    out.push_str(
        "A ratio is the median over the rounds of the two clients' ratio in the same round (see \
         `vs baseline` below); `(rounds a-b)` is the middle half of those per-round ratios (first \
         to third quartile): how far one round moves on this machine.\n\n",
    );
    out.push_str(&checks_table(checks));
    let n_missed = checks.iter().filter(|c| c.met == Some(false)).count();
    if n_missed == 0 {
        out.push_str("\nEvery target was met.\n");
    } else {
        let _ = writeln!(
            out,
            "\n{n_missed} of {} checks missed; see the analysis below.",
            checks.len()
        );
    }
    out.push_str("\n## Results\n\n");
    out.push_str("![ops/s per client and concurrency, log scale](benchmarks.svg)\n\n");
    out.push_str(
        "`vs baseline`: ops/s relative to `raw` at the same concurrency (for `batch64` and \
         `raw_pipeline64`: relative to `raw_pipeline64`, and one op is one batch of 64 keys), as the \
         median over the rounds of the two clients' ratio in the same round (each round runs \
         every client once, one after the other, so a few seconds in which another tenant took \
         the cores move one round's pair, not the median; `vs reference` likewise). \
         `vs reference`: ops/s of `cache` relative to `raw_json`, of `session_get` relative to \
         `raw_session_get`: raw redis-rs doing the same decoding, so the ratio is the cost of the \
         library's own code (likewise their in-process twins); of `memory` relative to \
         `memory_ref`, a well-kept in-process cache on the same workload. `server µs/op`: the server's CPU time (`INFO cpu`, system + user) \
         during the client's rounds divided by its operations: the capacity of the one Redis \
         thread an operation costs. `client µs/op`: the CPU time of the bench process (all its \
         threads, from `/proc/self/task/*/schedstat`) during the client's rounds divided by its \
         operations: the client's own cost, which moves less than ops/s when other tenants of the \
         machine take the cores.\n\n",
    );
    out.push_str(&table(rows));
    for l in &input.latency {
        let _ = writeln!(
            out,
            "\n{} latency ({}), {} samples: p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs.",
            l.what, l.description, l.samples, l.p50_us, l.p99_us, l.max_us
        );
    }
    out.push_str("\n## Analysis\n\n");
    out.push_str(input.analysis);
    if !input.analysis.ends_with('\n') {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rounds(ops_per_s: &[f64]) -> Measured {
        let mut m = Measured::default();
        for &r in ops_per_s {
            m.absorb(Measured {
                ops: r as u64,
                elapsed: Duration::from_secs(1),
                ..Measured::default()
            });
        }
        m
    }

    #[test]
    fn a_few_slow_rounds_of_one_client_do_not_move_the_ratio() {
        // The baseline lost two rounds to another tenant of the machine: the ratio of totals says
        // the client is faster than it is, the median of the rounds' ratios does not.
        let client = rounds(&[90.0, 91.0, 89.0, 90.0, 90.0]);
        let baseline = rounds(&[100.0, 40.0, 100.0, 35.0, 100.0]);
        let median = throughput_ratio(&client, &baseline).unwrap();
        assert!((median - 0.9).abs() < 0.01, "{median}");
        assert!(client.ops_per_s() / baseline.ops_per_s() > 1.15);
        // Fewer than three rounds, or different counts: the ratio of totals.
        let short = rounds(&[50.0, 50.0]);
        assert_eq!(
            throughput_ratio(&short, &rounds(&[100.0, 100.0])),
            Some(0.5)
        );
        assert_eq!(throughput_ratio(&client, &short), Some(1.8));
        // The spread: the quartiles of the same per-round ratios (0.89, 0.9, 0.9, 2.275, 2.571);
        // none when the ratio of totals is used.
        let [lo, hi] = throughput_ratio_spread(&client, &baseline).unwrap();
        assert!(
            (lo - 0.9).abs() < 1e-9 && (hi - 2.275).abs() < 1e-9,
            "{lo} {hi}"
        );
        assert_eq!(throughput_ratio_spread(&client, &short), None);
    }

    #[test]
    fn quantiles_interpolate_between_the_nearest_values() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.5), 2.5);
        assert_eq!(quantile(&v, 0.25), 1.75);
        assert_eq!(quantile(&v, 0.75), 3.25);
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&v, 1.0), 4.0);
        assert_eq!(quantile(&[7.0], 0.25), 7.0);
        assert_eq!(quantile(&[1.0, 2.0, 3.0], 0.5), 2.0);
    }

    fn cell(client: &'static str, c: usize, ops: u64, lat_ns: u64) -> Cell {
        let mut m = Measured {
            ops,
            elapsed: Duration::from_secs(1),
            ..Measured::default()
        };
        for _ in 0..100 {
            m.hist.record(lat_ns);
        }
        Cell {
            client,
            concurrency: c,
            measured: m,
        }
    }

    #[test]
    fn ratios_and_targets() {
        let cells = [
            cell("raw", 1, 1000, 100_000),
            cell("store", 1, 950, 120_000),
            cell("cache", 1, 800, 100_000),
            cell("raw_pipeline64", 1, 100, 1_000_000),
            cell("batch64", 1, 90, 1_000_000),
        ];
        let rows = rows(&cells);
        let store = rows.iter().find(|r| r.client == "store").unwrap();
        assert_eq!(store.ratio_vs_raw, Some(0.95));
        assert!((store.p99_ratio_vs_raw.unwrap() - 1.2).abs() < 0.03);
        let batch = rows.iter().find(|r| r.client == "batch64").unwrap();
        assert_eq!(batch.ratio_vs_raw, Some(0.9));
        let checks = checks(&rows, &targets(2));
        let met = |t: &str| checks.iter().find(|c| c.target.starts_with(t)).unwrap().met;
        assert_eq!(met("store >="), Some(true));
        assert_eq!(met("store server"), None, "no CPU probe in this test");
        assert_eq!(met("cache"), None, "no raw_json measured");
        assert_eq!(met("session_get"), None);
        assert_eq!(met("batch64"), Some(true));
        assert_eq!(missed(&checks).len(), 0);
        let line = jsonl(&rows).unwrap();
        let first: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
        for field in [
            "client",
            "concurrency",
            "ops_per_s",
            "p50_us",
            "p99_us",
            "ratio_vs_raw",
        ] {
            assert!(first.get(field).is_some(), "{field}");
        }
        assert!(table(&rows).contains("| store | 1 | 950 |"));
        assert_eq!(store.ratio_vs_reference, None);
    }
}
