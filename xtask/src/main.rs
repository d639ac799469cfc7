//! `cargo xtask`: the project's task runner (see matklad/cargo-xtask).
//!
//! - `cargo xtask ci`: everything CI runs, in order: formatting, clippy with `-D warnings` on all targets
//!   and features, the feature matrix of the facade crate, every test (unit, integration against
//!   `redis-server` processes the tests spawn themselves, doc tests), `cargo doc` with
//!   `RUSTDOCFLAGS=-D warnings`, the browser test, then the benchmark and chaos runs in smoke mode.
//! - `cargo xtask browser`: the example service's session pages in headless Chromium (WebDriver via
//!   chromedriver) against a real `redis-server`; fails when chromium or chromedriver is missing.
//! - `cargo xtask bench [--smoke]`: the benchmark against raw redis-rs (release build).
//! - `cargo xtask chaos [--smoke]`: the resilience scenarios (release build).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().map(String::as_str).unwrap_or("help");
    let rest = &args[args.len().min(1)..];
    let root = workspace_root();
    std::env::set_current_dir(&root).context("cannot enter the workspace root")?;
    match task {
        "ci" => ci(rest),
        "bench" => bench(rest),
        "chaos" => chaos(rest),
        "browser" => browser(),
        "help" | "--help" | "-h" => {
            println!(
                "usage: cargo xtask <ci [--quick] | bench [--smoke] | chaos [--smoke] | browser>"
            );
            Ok(())
        }
        other => bail!("unknown task {other:?}; try `cargo xtask help`"),
    }
}

fn workspace_root() -> PathBuf {
    // xtask lives in <root>/xtask; CARGO_MANIFEST_DIR is set by `cargo run`.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("xtask"));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Runs one step, printing its name and duration; fails the task if the step fails.
fn step(name: &str, cmd: &mut Command) -> Result<()> {
    println!("\n==> {name}");
    let started = Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("cannot start step {name:?}"))?;
    println!(
        "<== {name}: {} in {:.1}s",
        if status.success() { "ok" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    if !status.success() {
        bail!("step {name:?} failed ({status})");
    }
    Ok(())
}

fn cargo(args: &[&str]) -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.args(args);
    c
}

/// The tests start their own `redis-server` processes (and build clusters with `redis-cli`; the TLS
/// tests make certificates with `openssl`): check that all are installed, and fail with the fix rather
/// than letting fifty tests fail one by one.
fn require_redis_tools() -> Result<()> {
    for (tool, version_arg) in [
        ("redis-server", "--version"),
        ("redis-cli", "--version"),
        ("openssl", "version"),
    ] {
        let ok = Command::new(tool)
            .arg(version_arg)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ok {
            bail!(
                "{tool} is not installed; the tests start their own Redis servers. \
                 Install it (Debian: `apt-get install -y redis-server redis-tools openssl`) and rerun."
            );
        }
    }
    Ok(())
}

fn ci(args: &[String]) -> Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    let started = Instant::now();
    require_redis_tools()?;
    step("fmt", &mut cargo(&["fmt", "--all", "--", "--check"]))?;
    step(
        "clippy",
        &mut cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    feature_matrix()?;
    step(
        "tests (unit, integration against spawned redis-server, doc tests)",
        cargo(&["test", "--workspace", "--all-features", "--no-fail-fast"])
            .env("RUST_BACKTRACE", "1"),
    )?;
    step(
        "docs",
        cargo(&["doc", "--workspace", "--no-deps", "--all-features"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    browser()?;
    if !quick && Path::new("crates/bench").exists() {
        bench(&["--smoke".to_string()])?;
        chaos(&["--smoke".to_string()])?;
    }
    println!(
        "\ncargo xtask ci: all steps passed in {:.0}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Each backend feature of the facade on its own, and no default features, so that a service that
/// enables only one backend still compiles (a `cargo hack --each-feature` without the extra tool).
fn feature_matrix() -> Result<()> {
    let facade = "cachekit";
    if !Path::new("crates").join(facade).exists() {
        return Ok(());
    }
    for features in ["", "memory", "redis", "cluster", "mock"] {
        let mut c = cargo(&[
            "check",
            "-p",
            facade,
            "--no-default-features",
            "--all-targets",
        ]);
        if !features.is_empty() {
            c.args(["--features", features]);
        }
        let label = if features.is_empty() {
            "no default features".to_string()
        } else {
            format!("feature {features} alone")
        };
        step(&format!("facade: {label}"), &mut c)?;
    }
    Ok(())
}

/// The end-to-end browser test (`examples/axum-service/tests/browser.rs`, `test = false` so that the
/// workspace test step does not run it without this check). A missing browser is an error, never a
/// skip: CI installs `chromium` and `chromium-driver` in `.ci/run`.
fn browser() -> Result<()> {
    require_redis_tools()?;
    for (var, tool, package) in [
        ("CHROMIUM_BIN", "chromium", "chromium"),
        ("CHROMEDRIVER_BIN", "chromedriver", "chromium-driver"),
    ] {
        let bin = std::env::var(var).unwrap_or_else(|_| tool.to_string());
        let ok = Command::new(&bin)
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ok {
            bail!(
                "{tool} is not installed (or {var} does not point at it); the browser test needs it. \
                 Install it (Debian: `apt-get install -y {package}`) and rerun `cargo xtask browser`."
            );
        }
    }
    // Same packages and features as the workspace test step, so that `ci` reuses its build instead
    // of compiling the dependency tree again with other features.
    step(
        "browser (headless Chromium against the example service on redis-server)",
        cargo(&["test", "--workspace", "--all-features", "--test", "browser"])
            .env("RUST_BACKTRACE", "1"),
    )
}

fn bench(args: &[String]) -> Result<()> {
    run_bench_bin("bench", args)
}

fn chaos(args: &[String]) -> Result<()> {
    run_bench_bin("chaos", args)
}

/// Full runs build in release mode; smoke runs (CI) reuse the dev-profile artifacts of the test step
/// instead of compiling the whole dependency tree a second time: they prove the tools work, they do not
/// measure anything.
fn run_bench_bin(bin: &str, args: &[String]) -> Result<()> {
    require_redis_tools()?;
    let smoke = args.iter().any(|a| a == "--smoke");
    let mut c = cargo(&["run", "-p", "bench", "--bin", bin]);
    if !smoke {
        c.arg("--release");
    }
    c.arg("--").args(args);
    step(
        &format!("{bin}{}", if smoke { " (smoke)" } else { "" }),
        &mut c,
    )
}
