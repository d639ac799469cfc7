//! House rules that a machine can check, run as ordinary tests (in the spirit of rust-analyzer's
//! `tidy.rs`): they read the workspace's sources and docs, so a rule broken in any crate fails
//! `cargo xtask ci` with the file and line to fix.
//!
//! - Library code never sends `KEYS`, `FLUSHDB` or `FLUSHALL` (invalidation is SCAN + UNLINK under
//!   the store's prefix; see `docs/ARCHITECTURE.md`, invariants).
//! - Every environment variable the code reads is documented in `docs/operations.md`.
//! - No library source file is longer than 600 lines unless its opening doc says why.
//! - `CHANGELOG.md` keeps the Keep a Changelog shape.

use std::fs;
use std::path::{Path, PathBuf};

/// The workspace root (this crate lives in `<root>/tests`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives one level below the workspace root")
        .to_path_buf()
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Library sources: `crates/*/src/**.rs` and `examples/*/src/**.rs`, except the test harness
/// (`test-redis` drives throwaway servers) and the bench/chaos load generators, which are tools.
fn library_sources() -> Vec<PathBuf> {
    let root = root();
    let mut files = Vec::new();
    for parent in ["crates", "examples"] {
        let Ok(entries) = fs::read_dir(root.join(parent)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if matches!(name.as_str(), "test-redis" | "bench") {
                continue;
            }
            files.extend(rust_files(&entry.path().join("src")));
        }
    }
    assert!(
        files.len() > 20,
        "found only {} library sources: is the layout still crates/*/src?",
        files.len()
    );
    files
}

fn rel(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Code lines only: drops `//` comments (doc comments included), so prose may name a command.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter_map(|(i, line)| {
        let code = match line.find("//") {
            Some(pos) => &line[..pos],
            None => line,
        };
        (!code.trim().is_empty()).then_some((i + 1, code))
    })
}

#[test]
fn library_code_never_sends_keys_or_flush_commands() {
    let mut offences = Vec::new();
    for file in library_sources() {
        let text = fs::read_to_string(&file).expect("read source");
        for (line_no, code) in code_lines(&text) {
            for command in ["KEYS", "FLUSHDB", "FLUSHALL"] {
                // The command as an upper-case literal, or in any case as redis-rs's `cmd(...)`.
                let literal = code.contains(&format!("\"{command}\""));
                let as_cmd = code
                    .to_ascii_uppercase()
                    .contains(&format!("CMD(\"{command}\")"));
                if literal || as_cmd {
                    offences.push(format!("{}:{line_no}: {}", rel(&file), code.trim()));
                }
            }
        }
    }
    assert!(
        offences.is_empty(),
        "library code must not send KEYS/FLUSHDB/FLUSHALL (use SCAN + UNLINK under the prefix):\n{}",
        offences.join("\n")
    );
}

/// Names that look like settings: `CACHE_*`, `REDIS_*`, `SESSION_*` string literals.
fn env_var_literals(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(start) = text[i..].find('"').map(|p| p + i) {
        let Some(end) = text[start + 1..].find('"').map(|p| p + start + 1) else {
            break;
        };
        let lit = &text[start + 1..end];
        let looks_like_var = ["CACHE_", "REDIS_", "SESSION_"]
            .iter()
            .any(|p| lit.starts_with(p))
            && lit.len() > 6
            && lit
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if looks_like_var {
            out.push(lit.to_owned());
        }
        i = end + 1;
        if i >= bytes.len() {
            break;
        }
    }
    out
}

#[test]
fn every_environment_variable_is_documented() {
    let operations =
        fs::read_to_string(root().join("docs/operations.md")).expect("docs/operations.md exists");
    let mut missing = Vec::new();
    for file in library_sources() {
        let text = fs::read_to_string(&file).expect("read source");
        for var in env_var_literals(&text) {
            // Per-family TTL variables are documented as a pattern plus the family table.
            let documented = operations.contains(&format!("`{var}`"))
                || (var.starts_with("CACHE_TTL_") && operations.contains("`CACHE_TTL_<FAMILY>`"));
            if !documented {
                missing.push(format!("{var} (read in {})", rel(&file)));
            }
        }
    }
    missing.sort();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "environment variables read by the code but not documented in docs/operations.md:\n{}",
        missing.join("\n")
    );
}

#[test]
fn long_library_files_say_why() {
    let mut offences = Vec::new();
    for file in library_sources() {
        let text = fs::read_to_string(&file).expect("read source");
        let lines = text.lines().count();
        if lines <= 600 {
            continue;
        }
        // The reason lives in the file's opening doc comment and mentions its length.
        let opening: String = text
            .lines()
            .take_while(|l| l.starts_with("//!") || l.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n")
            .to_ascii_lowercase();
        if !(opening.contains("600 lines") || opening.contains("long file")) {
            offences.push(format!("{} ({lines} lines)", rel(&file)));
        }
    }
    assert!(
        offences.is_empty(),
        "library files over 600 lines must say why at the top (\"... over 600 lines because ...\"), \
         or be split by responsibility:\n{}",
        offences.join("\n")
    );
}

#[test]
fn changelog_keeps_its_shape() {
    let changelog = fs::read_to_string(root().join("CHANGELOG.md")).expect("CHANGELOG.md exists");
    assert!(changelog.starts_with("# Changelog"), "CHANGELOG.md title");
    assert!(
        changelog.contains("## [Unreleased]"),
        "CHANGELOG.md needs an [Unreleased] section for the next change"
    );
    assert!(
        changelog.contains("Keep a Changelog"),
        "CHANGELOG.md says which convention it follows"
    );
}
