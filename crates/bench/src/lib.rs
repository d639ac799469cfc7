//! # bench
//!
//! The measuring tools of the workspace (never published):
//!
//! - `cargo xtask bench` runs the `bench` binary: a load generator against a `redis-server` it starts
//!   itself, comparing the library's clients (`store`, `cache`, `session_get`, `session_update`,
//!   `batch64`, `memory`) with raw redis-rs on the same workload, in the same run, interleaved.
//!   Output: `target/bench/results.jsonl`, a table on stdout and, on full runs,
//!   `docs/benchmarks.md`.
//! - `cargo xtask chaos` runs the `chaos` binary: load against servers it kills, restarts and
//!   freezes, measuring how long calls wait, how fast throughput comes back, and whether any
//!   acknowledged session write was lost. Output: `target/chaos/report.json` and, on full runs,
//!   `docs/reliability.md`.
//!
//! Both take `--smoke` (what `cargo xtask ci` runs): a few seconds of load that exercises every
//! client and writes the output files under `target/`, but never the documents under `docs/`.
//! The binaries exit non-zero only when the harness itself fails; a missed target or goal is a
//! measurement, printed clearly, not a failure.

pub mod chaos;
pub mod chart;
pub mod clients;
pub mod env;
pub mod hist;
pub mod load;
pub mod near;
pub mod report;
pub mod workload;
