//! Where outputs go, and what machine and build a run happened on.

use std::path::PathBuf;
use std::process::Command;

use serde::Serialize;

/// The workspace root (two levels above this crate's manifest), where `target/` and `docs/` are.
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.ancestors().nth(2).map(PathBuf::from).unwrap_or(here)
}

/// `target/<name>` under the workspace root, created if missing. `CARGO_TARGET_DIR` is honoured,
/// so the outputs sit next to the build artifacts wherever those are.
pub fn output_dir(name: &str) -> anyhow::Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                workspace_root().join(p)
            }
        })
        .unwrap_or_else(|| workspace_root().join("target"));
    let dir = target.join(name);
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

/// `docs/<file>` under the workspace root.
pub fn docs_file(file: &str) -> PathBuf {
    workspace_root().join("docs").join(file)
}

/// The build profile of this binary: `release` or `dev` (debug assertions on). Numbers of a dev
/// build say nothing about speed.
pub fn build_profile() -> &'static str {
    if cfg!(debug_assertions) {
        "dev"
    } else {
        "release"
    }
}

/// The machine a run happened on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPU model (`/proc/cpuinfo`).
    pub cpu: String,
    /// Logical cores available to this process.
    pub cores: usize,
    /// `redis-server --version`.
    pub redis_server: String,
    /// Kernel release.
    pub kernel: String,
    /// `rustc --version`, when a `rustc` is on the path.
    pub rustc: String,
    /// Load average over the last minute when the run started: other work on the machine.
    pub load_avg_1m: Option<f64>,
    /// Start of the run (UTC, RFC 3339).
    pub date: String,
    /// Build profile of the binary.
    pub profile: &'static str,
}

fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}

impl Machine {
    /// Describes this machine now.
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        let load_avg_1m = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()));
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            redis_server: command_line(&test_redis::server_bin(), &["--version"]),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "unknown".to_owned()),
            rustc: command_line("rustc", &["--version"]),
            load_avg_1m,
            date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            profile: build_profile(),
        }
    }

    /// A Markdown list of the facts.
    pub fn markdown(&self) -> String {
        let load = self
            .load_avg_1m
            .map_or_else(|| "unknown".to_owned(), |l| format!("{l:.2}"));
        format!(
            "- Date: {}\n- CPU: {}, {} logical cores (client and server share them)\n\
             - Redis: {}\n- Kernel: {}\n- Rust: {}, `{}` profile\n\
             - Load average (1 min) at the start: {}\n",
            self.date,
            self.cpu,
            self.cores,
            self.redis_server,
            self.kernel,
            self.rustc,
            self.profile,
            load
        )
    }
}

/// CPU time this process has used so far, over all its threads (the sum of the first field of
/// `/proc/self/task/*/schedstat`, nanoseconds on the CPU), or `None` where that is not available.
/// A round's delta divided by its operations is the client's CPU per operation: unlike ops/s, it
/// does not move when another tenant of the machine takes the cores for a while.
pub fn process_cpu() -> Option<std::time::Duration> {
    let mut total: u64 = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let Ok(task) = task else { continue };
        // A thread that ended between the listing and the read has nothing more to add.
        let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(std::time::Duration::from_nanos(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_cpu_grows_with_work() {
        let before = process_cpu().expect("Linux has /proc/self/task/*/schedstat");
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(20) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let after = process_cpu().expect("still there");
        assert!(after > before, "{before:?} -> {after:?}");
    }

    #[test]
    fn root_holds_the_workspace_manifest() {
        assert!(workspace_root().join("Cargo.toml").is_file());
        assert!(workspace_root().join("crates").is_dir());
    }

    #[test]
    fn machine_is_described() {
        let m = Machine::detect();
        assert!(m.cores >= 1);
        assert!(m.markdown().contains("logical cores"));
    }
}
