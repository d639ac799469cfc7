//! `SCAN`: complete over many pages, relative keys, glob patterns, and escaping of user input.

use std::collections::BTreeSet;

use super::support::*;
use cache_core::keys::glob_escape;
use cache_core::{Expiry, ScanCursor, Store, StoreExt};

/// Collects a whole scan, checking every page on the way.
async fn scan_everything(store: &dyn Store, pattern: &str, count: u32) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut cursor = ScanCursor::start();
    for _ in 0..100_000 {
        let page = must(
            store.scan(pattern, cursor, count).await,
            &format!("scan {pattern}"),
        );
        keys.extend(page.keys);
        match page.next {
            Some(next) => {
                assert!(!next.is_start(), "a continuing cursor must not restart");
                cursor = next;
            }
            None => return keys,
        }
    }
    panic!("scan of {pattern:?} did not finish in 100000 pages");
}

/// `SCAN`: complete over many pages, relative keys, patterns with `*`, `?` and classes.
pub async fn check_scan(store: &dyn Store) {
    let ns = namespace("scan");
    let esc = glob_escape(&ns);
    let keys: Vec<String> = (0..120).map(|i| format!("{ns}:item:{i:03}")).collect();
    let entries: Vec<(&str, &[u8])> = keys.iter().map(|k| (k.as_str(), &b"v"[..])).collect();
    must(store.set_many(&entries, Expiry::Never).await, "set_many");
    let z = format!("{ns}:zset");
    must(store.zadd(&z, "m", 1.0).await, "zadd");

    let all: BTreeSet<String> = keys.iter().cloned().chain([z.clone()]).collect();
    for count in [1, 7, 1000] {
        assert_eq!(
            scan_everything(store, &format!("{esc}:*"), count).await,
            all,
            "full scan with count {count}"
        );
    }
    assert_eq!(
        scan_everything(store, &format!("{esc}:item:*"), 10)
            .await
            .len(),
        120
    );
    let want: BTreeSet<String> = (100..120).map(|i| format!("{ns}:item:{i}")).collect();
    assert_eq!(
        scan_everything(store, &format!("{esc}:item:1??"), 10).await,
        want,
        "? matches one character"
    );
    let want: BTreeSet<String> = [0, 1, 2, 10, 11, 12, 20, 21, 22]
        .iter()
        .map(|i| format!("{ns}:item:0{i:02}"))
        .collect();
    assert_eq!(
        scan_everything(store, &format!("{esc}:item:0[0-2][0-2]"), 10).await,
        want,
        "character ranges"
    );
    let want: BTreeSet<String> = (0..10).map(|i| format!("{ns}:item:00{i}")).collect();
    assert_eq!(
        scan_everything(store, &format!("{esc}:item:00[^x]"), 10).await,
        want,
        "negated class"
    );
    assert_eq!(
        scan_everything(store, &format!("{esc}:item:042"), 5).await,
        BTreeSet::from([format!("{ns}:item:042")]),
        "a pattern without metacharacters"
    );
    assert!(
        scan_everything(store, &format!("{esc}:nothing:*"), 10)
            .await
            .is_empty(),
        "no match"
    );
    // The whole keyspace of the prefix contains our keys, relative, without the prefix.
    let everything = must(store.scan_all("*", 1000).await, "scan *");
    for k in &all {
        assert!(everything.contains(k), "scan * misses {k}");
    }
    let prefix = format!("{}:", store.prefix());
    assert!(
        everything.iter().all(|k| !k.starts_with(&prefix)),
        "scan must return keys relative to the prefix"
    );
    // Keys deleted are not returned by a new scan.
    must(store.delete(&[&keys[0]]).await, "delete");
    assert_eq!(
        scan_everything(store, &format!("{esc}:item:*"), 50)
            .await
            .len(),
        119
    );
    // `count_matching` / `delete_matching` over the same scan.
    assert_eq!(
        must(
            store.count_matching(&format!("{esc}:item:*"), 13).await,
            "count_matching"
        ),
        119
    );
    // A selection over the same scan: only the keys it accepts are deleted, the others counted.
    let odd = |k: &str| k.ends_with(['1', '3', '5', '7', '9']);
    let dry = must(
        store
            .count_matching_where(&format!("{esc}:item:*"), 13, &odd)
            .await,
        "count_matching_where",
    );
    assert_eq!((dry.deleted, dry.passed_over), (60, 59), "119 keys, 60 odd");
    let done = must(
        store
            .delete_matching_where(&format!("{esc}:item:*"), 13, &odd, &|_, _| {})
            .await,
        "delete_matching_where",
    );
    assert_eq!((done.deleted, done.passed_over), (60, 59));
    let left = scan_everything(store, &format!("{esc}:item:*"), 50).await;
    assert_eq!(left.len(), 59);
    assert!(left.iter().all(|k| !odd(k)), "only the selected keys went");
    cleanup(store, &ns).await;
}

/// Glob characters in keys are matched literally once escaped with [`glob_escape`], and only then.
pub async fn check_scan_escaping(store: &dyn Store) {
    let ns = namespace("scan_escape");
    let names = ["a*b", "a?b", "a[b]c", "a\\b", "axb", "ab", "a[^b]c", "a]b"];
    let keys: Vec<String> = names.iter().map(|n| format!("{ns}:{n}")).collect();
    let entries: Vec<(&str, &[u8])> = keys.iter().map(|k| (k.as_str(), &b"v"[..])).collect();
    must(store.set_many(&entries, Expiry::Never).await, "set_many");
    for key in &keys {
        assert_eq!(
            scan_everything(store, &glob_escape(key), 10).await,
            BTreeSet::from([key.clone()]),
            "an escaped key matches exactly itself"
        );
    }
    // Unescaped, the same characters are wildcards.
    let esc = glob_escape(&ns);
    let want: BTreeSet<String> = ["a*b", "a?b", "a\\b", "axb", "a]b"]
        .iter()
        .map(|n| format!("{ns}:{n}"))
        .collect();
    assert_eq!(
        scan_everything(store, &format!("{esc}:a?b"), 10).await,
        want,
        "unescaped ? is a wildcard"
    );
    // A user-supplied "*" escaped cannot widen a pattern.
    let user_input = "*";
    assert!(
        scan_everything(store, &format!("{esc}:{}", glob_escape(user_input)), 10)
            .await
            .is_empty(),
        "an escaped * must not match other keys"
    );
    cleanup(store, &ns).await;
}
