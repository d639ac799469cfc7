//! `docs/operations.md` lists every metric the library emits: this test reads the workspace's
//! sources and fails when a metric is missing from the list, listed with another type or other
//! labels, or listed but no longer emitted.
//!
//! Two checks, because names are not always literals at the call site (the cache manager
//! registers its counters through a helper taking the name as a variable):
//!
//! 1. **Sources**: every `counter!` / `gauge!` / `histogram!` (and `describe_*!`) invocation under
//!    `crates/*/src` and `examples/*/src` is found. A literal first argument is a metric name, with
//!    the macro's type and the `"label" =>` keys of the call. A non-literal first argument makes
//!    every string literal of that file shaped like a metric name (snake case ending in a unit
//!    suffix, the naming rule in the doc) a metric of that macro's type and labels; a file with a
//!    non-literal name and no such literal fails the test, so a new helper cannot hide its names.
//! 2. **Runtime**: a recorder captures what the cache manager and the instrumented store really
//!    register (name, type, label keys) while they run, and each must match the doc: this catches
//!    what the text scan could misread.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Metric name suffixes the naming rule allows (see the doc's "Metrics" section).
const UNIT_SUFFIXES: [&str; 4] = ["_total", "_seconds", "_bytes", "_ratio"];

#[derive(Debug, Clone, PartialEq, Eq)]
struct Documented {
    kind: String,
    labels: BTreeSet<String>,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/cachekit lives two levels below the workspace root")
        .to_path_buf()
}

/// The rows of the table under `## Metrics` in docs/operations.md.
fn documented() -> BTreeMap<String, Documented> {
    let path = workspace_root().join("docs/operations.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let section = text
        .split("\n## Metrics")
        .nth(1)
        .unwrap_or_else(|| panic!("{} has no `## Metrics` section", path.display()));
    let section = section.split("\n## ").next().unwrap_or_default();
    let mut rows = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        assert!(
            cells.len() >= 4,
            "metric row needs name | type | labels | meaning: {line}"
        );
        let name = cells[0].trim_matches('`').to_owned();
        let labels = cells[2]
            .split(',')
            .map(|l| l.trim().trim_matches('`').to_owned())
            .filter(|l| !l.is_empty() && l != "-" && l != "—")
            .collect();
        let row = Documented {
            kind: cells[1].to_owned(),
            labels,
        };
        assert!(
            rows.insert(name.clone(), row).is_none(),
            "{name} listed twice"
        );
    }
    assert!(
        !rows.is_empty(),
        "no metric rows found in the Metrics section"
    );
    rows
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every library source file: `crates/*/src`, `examples/*/src`.
fn source_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for group in ["crates", "examples"] {
        for entry in std::fs::read_dir(workspace_root().join(group))
            .unwrap()
            .flatten()
        {
            rust_files(&entry.path().join("src"), &mut files);
        }
    }
    assert!(files.len() > 20, "found only {} source files", files.len());
    files
}

/// One metrics macro invocation: its type, first argument, and label keys.
#[derive(Debug)]
struct Call {
    kind: &'static str,
    name: Option<String>,
    labels: BTreeSet<String>,
}

/// The text of a macro's arguments, from after `(` to the matching `)`.
fn arguments(text: &str) -> &str {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            '(' | '[' | '{' if !in_string => depth += 1,
            ')' | ']' | '}' if !in_string => {
                if depth == 0 {
                    return &text[..i];
                }
                depth -= 1;
            }
            _ => {}
        }
    }
    text
}

/// Every string literal in `text` (simple ones: what metric names and labels are).
fn literals(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('"') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('"') else { break };
        out.push(&after[..end]);
        rest = &after[end + 1..];
    }
    out
}

fn calls_in(text: &str) -> Vec<Call> {
    let mut calls = Vec::new();
    for kind in ["counter", "gauge", "histogram"] {
        let needle = format!("{kind}!(");
        let mut from = 0;
        while let Some(pos) = text[from..].find(&needle) {
            let start = from + pos + needle.len();
            from = start;
            let args = arguments(&text[start..]);
            let first = args.split(',').next().unwrap_or_default().trim();
            let name = first
                .strip_prefix('"')
                .and_then(|f| f.strip_suffix('"'))
                .map(str::to_owned);
            // Each `=>` has its label key as the last literal before it.
            let segments: Vec<&str> = args.split("=>").collect();
            let labels = segments[..segments.len() - 1]
                .iter()
                .filter_map(|before| literals(before).last().map(|l| (*l).to_owned()))
                .collect();
            calls.push(Call {
                kind: if kind == "counter" {
                    "counter"
                } else if kind == "gauge" {
                    "gauge"
                } else {
                    "histogram"
                },
                name,
                labels,
            });
        }
    }
    calls
}

fn metric_shaped(s: &str) -> bool {
    s.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && UNIT_SUFFIXES.iter().any(|suffix| s.ends_with(suffix))
}

/// What the sources emit: name → (type, labels, where).
fn emitted() -> BTreeMap<String, (Documented, String)> {
    let root = workspace_root();
    let mut found: BTreeMap<String, (Documented, String)> = BTreeMap::new();
    for file in source_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let rel = file
            .strip_prefix(&root)
            .unwrap_or(&file)
            .display()
            .to_string();
        let calls = calls_in(&text);
        let mut add = |name: String, kind: &str, labels: &BTreeSet<String>| {
            let entry = found.entry(name.clone()).or_insert_with(|| {
                (
                    Documented {
                        kind: kind.to_owned(),
                        labels: BTreeSet::new(),
                    },
                    rel.clone(),
                )
            });
            assert_eq!(entry.0.kind, kind, "{name} is emitted as two types ({rel})");
            entry.0.labels.extend(labels.iter().cloned());
        };
        for call in calls.iter().filter(|c| c.name.is_some()) {
            add(
                call.name.clone().unwrap_or_default(),
                call.kind,
                &call.labels,
            );
        }
        let dynamic: Vec<&Call> = calls.iter().filter(|c| c.name.is_none()).collect();
        if dynamic.is_empty() {
            continue;
        }
        let literal_names: BTreeSet<&str> =
            calls.iter().filter_map(|c| c.name.as_deref()).collect();
        let candidates: BTreeSet<&str> = literals(&text)
            .into_iter()
            .filter(|l| metric_shaped(l) && !literal_names.contains(l))
            .collect();
        assert!(
            !candidates.is_empty(),
            "{rel} passes a non-literal name to a metrics macro, and no string literal in the file \
             is shaped like a metric name (ending in one of {UNIT_SUFFIXES:?}): name metrics so that \
             this test can find them"
        );
        let kinds: BTreeSet<&str> = dynamic.iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds.len(),
            1,
            "{rel} registers metrics of several types through non-literal names; this test cannot \
             tell which name has which type: use literal names"
        );
        let labels: BTreeSet<String> = dynamic.iter().flat_map(|c| c.labels.clone()).collect();
        for name in candidates {
            add(name.to_owned(), dynamic[0].kind, &labels);
        }
    }
    found
}

#[test]
fn every_emitted_metric_is_documented_with_its_type_and_labels() {
    let doc = documented();
    let emitted = emitted();
    assert!(
        emitted.contains_key("cache_hits_total"),
        "the scan no longer finds the cache manager's counters: {emitted:?}"
    );
    let mut problems = Vec::new();
    for (name, (metric, file)) in &emitted {
        match doc.get(name) {
            None => problems.push(format!(
                "{name} ({}, labels {:?}, emitted in {file}) is not listed in docs/operations.md",
                metric.kind, metric.labels
            )),
            Some(d) if d != metric => problems.push(format!(
                "{name}: docs say {} with labels {:?}, {file} emits {} with labels {:?}",
                d.kind, d.labels, metric.kind, metric.labels
            )),
            Some(_) => {}
        }
    }
    for name in doc.keys() {
        if !emitted.contains_key(name) {
            problems.push(format!(
                "{name} is listed in docs/operations.md but no source emits it"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_scanner_reads_literal_and_labelled_calls() {
    let calls = calls_in(
        r#"metrics::counter!("a_total", "op" => op.name(), "kind" => k).increment(1);
           let h = metrics::histogram!(name, "family" => f.name());"#,
    );
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].name.as_deref(), Some("a_total"));
    assert_eq!(
        calls[0].labels,
        BTreeSet::from(["op".to_owned(), "kind".to_owned()])
    );
    assert_eq!(calls[1].name, None);
    assert_eq!(calls[1].labels, BTreeSet::from(["family".to_owned()]));
    assert!(metric_shaped("cache_hits_total"));
    assert!(!metric_shaped("cache_hits"));
    assert!(!metric_shaped("Cache_total"));
}

/// The run-time check needs a backend to run on: the in-memory one.
#[cfg(feature = "memory")]
mod runtime {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// What a recorder saw registered: name → (type, label keys).
    #[derive(Default)]
    struct Capture(Mutex<BTreeMap<String, (String, BTreeSet<String>)>>);

    impl Capture {
        fn note(&self, key: &metrics::Key, kind: &str) {
            let labels = key.labels().map(|l| l.key().to_owned()).collect();
            self.0
                .lock()
                .unwrap()
                .insert(key.name().to_owned(), (kind.to_owned(), labels));
        }
    }

    impl metrics::Recorder for Capture {
        fn describe_counter(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
        fn describe_gauge(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
        fn describe_histogram(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
        fn register_counter(
            &self,
            key: &metrics::Key,
            _: &metrics::Metadata<'_>,
        ) -> metrics::Counter {
            self.note(key, "counter");
            metrics::Counter::noop()
        }
        fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
            self.note(key, "gauge");
            metrics::Gauge::noop()
        }
        fn register_histogram(
            &self,
            key: &metrics::Key,
            _: &metrics::Metadata<'_>,
        ) -> metrics::Histogram {
            self.note(key, "histogram");
            metrics::Histogram::noop()
        }
    }

    #[test]
    fn what_the_library_registers_at_run_time_is_documented() {
        use cachekit::core::{Error, Store};
        use cachekit::fleet::InstrumentedStore;

        let recorder = Arc::new(Capture::default());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        metrics::with_local_recorder(recorder.as_ref(), || {
            let store = InstrumentedStore::new(cachekit::MemoryStore::default());
            let cache = cachekit::CacheManager::new(cachekit::MemoryStore::default());
            runtime.block_on(async {
                cache.user().set("1", &1).await.unwrap();
                cache.user().get::<i32>("1").await.unwrap();
                store.get("k").await.unwrap();
                // An error, so that the error counter is registered too.
                let err: Error = store.get("").await.unwrap_err();
                assert_eq!(err.kind(), cachekit::ErrorKind::InvalidInput);
            });
        });
        let seen = recorder.0.lock().unwrap().clone();
        assert!(seen.contains_key("cache_hits_total"), "{seen:?}");
        assert!(
            seen.contains_key("cache_store_call_duration_seconds"),
            "{seen:?}"
        );
        assert!(
            seen.contains_key("cache_store_call_errors_total"),
            "{seen:?}"
        );
        let doc = documented();
        for (name, (kind, labels)) in seen {
            let d = doc
                .get(&name)
                .unwrap_or_else(|| panic!("{name} is registered at run time but not documented"));
            assert_eq!(d.kind, kind, "{name}");
            assert_eq!(d.labels, labels, "{name}");
        }
    }
}
