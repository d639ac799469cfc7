//! What the `cachectl` process tests share.

use std::time::Duration;

use assert_cmd::Command;

/// A `cachectl` command with a clean environment: none of the machine's `CACHE_*`, `REDIS_*`,
/// `SESSION_*` or `RUST_LOG` variables leaks in, whatever new setting the library reads. `timeout`
/// bounds the process (a hung command fails the test instead of stalling it).
pub(crate) fn cachectl(timeout: Duration) -> Command {
    let mut cmd =
        Command::cargo_bin("cachectl").expect("the cachectl binary is built by cargo test");
    for (var, _) in std::env::vars_os() {
        let name = var.to_string_lossy();
        if ["CACHE_", "REDIS_", "SESSION_"]
            .iter()
            .any(|p| name.starts_with(p))
            || name == "RUST_LOG"
        {
            cmd.env_remove(&var);
        }
    }
    cmd.timeout(timeout);
    cmd
}
