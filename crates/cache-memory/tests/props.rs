//! Property-based tests of pattern building against the Redis-compatible matcher
//! ([`cache_memory::glob_match`], checked against a real server's `SCAN MATCH` in `tests/glob.rs`):
//! an escaped literal matches only itself, a family pattern for an id matches only that id's key,
//! and no pattern or key of one prefix reaches a key of another (issue 12, items 7 and 18).
//!
//! Case counts are proptest's default (256), or `PROPTEST_CASES` when set.

use cache_core::keys::{escape_id, glob_escape, MAX_ID_BYTES};
use cache_core::{ScanCursor, SetOptions, Store, StoreExt};
use cache_memory::{glob_match, MemoryStore};
use proptest::prelude::*;

/// Text heavy in glob metacharacters, or anything.
fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[ab*?\\[\\]\\\\^!:-]{0,10}", any::<String>(),]
}

/// `s` itself, a near miss of it, or anything.
fn candidate(s: String) -> impl Strategy<Value = (String, String)> {
    let near = s.clone();
    prop_oneof![
        Just(s.clone()),
        text(),
        (0..=near.len(), "[ab*?\\[\\]\\\\]").prop_map(move |(at, c)| {
            let mut t = near.clone();
            let at = (0..=at).rev().find(|&i| t.is_char_boundary(i)).unwrap_or(0);
            t.insert_str(at, &c);
            t
        }),
    ]
    .prop_map(move |t| (s.clone(), t))
}

/// A valid prefix (one name) and another one, often an extension of the first (`shop` and
/// `shop.user`, `a` and `ab`), the case that used to overlap.
fn two_prefixes() -> impl Strategy<Value = (String, String)> {
    let name = "[a-zA-Z0-9._-]{1,10}";
    prop_oneof![
        (name, name),
        (name, "[a-zA-Z0-9._-]{1,6}").prop_map(|(n, tail)| {
            let m = format!("{n}{tail}");
            (n, m)
        }),
        (name, name).prop_map(|(n, m)| (n.clone(), format!("{n}.{m}"))),
    ]
    .prop_filter("distinct", |(n, m)| n != m)
}

proptest! {
    #[test]
    fn an_escaped_literal_matches_only_itself((s, t) in text().prop_flat_map(candidate)) {
        prop_assert_eq!(glob_match(&glob_escape(&s), &t), s == t, "{:?} against {:?}", s, t);
        // With a `*` after it, exactly what starts with the literal (like Redis, no pattern but
        // the empty one matches the empty text; keys are never empty).
        let prefix = format!("{}*", glob_escape(&s));
        prop_assert_eq!(
            glob_match(&prefix, &t),
            !t.is_empty() && t.as_bytes().starts_with(s.as_bytes())
        );
    }

    #[test]
    fn a_pattern_for_an_escaped_id_matches_that_key_only(
        a in "[a-z0-9:*?\\[\\]\\\\{}% ]{1,12}",
        b in "[a-z0-9:*?\\[\\]\\\\{}% ]{1,12}",
    ) {
        prop_assume!(a.len() <= MAX_ID_BYTES && b.len() <= MAX_ID_BYTES);
        // What the key builders of both managers do: a literal family prefix and the escaped id,
        // the same text as a key and (escaped once more, a no-op) as a pattern.
        for family in ["user:", "post:keyword:", "crawl:status:"] {
            let key = |id: &str| format!("{family}{}", escape_id(id).unwrap());
            let pattern = glob_escape(&key(&a));
            prop_assert!(glob_match(&pattern, &key(&a)));
            prop_assert_eq!(glob_match(&pattern, &key(&b)), a == b);
            let all = format!("{family}*");
            prop_assert!(glob_match(&all, &key(&b)));
        }
    }

    #[test]
    fn no_pattern_of_one_prefix_matches_a_key_of_another(
        (n, m) in two_prefixes(),
        key in any::<String>(),
        pattern in text(),
    ) {
        // What a store with prefix N sends (scan: `N:{pattern}`; flush: `N:*`) against what a
        // store with prefix M holds (`M:{key}`), both ways.
        for (mine, theirs) in [(&n, &m), (&m, &n)] {
            let full_key = format!("{theirs}:{key}");
            let scan = format!("{}:{pattern}", glob_escape(mine));
            let flush = format!("{}:*", glob_escape(mine));
            prop_assert!(!glob_match(&scan, &full_key), "{scan:?} matched {full_key:?}");
            prop_assert!(!glob_match(&flush, &full_key), "{flush:?} matched {full_key:?}");
        }
    }

    #[test]
    fn stores_with_different_prefixes_never_see_each_others_keys(
        (n, m) in two_prefixes(),
        keys in prop::collection::btree_set("[a-z:*]{1,8}", 1..6),
        pattern in "[a-z:*?]{0,6}",
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let root = MemoryStore::new();
            let (a, b) = (root.with_prefix(&n).unwrap(), root.with_prefix(&m).unwrap());
            for k in &keys {
                b.set(k, b"theirs", SetOptions::new()).await.unwrap();
            }
            let seen = a.scan(&pattern, ScanCursor::start(), 1000).await.unwrap();
            prop_assert!(seen.keys.is_empty(), "{n:?} saw {:?} of {m:?}", seen.keys);
            prop_assert_eq!(a.count_matching("*", 100).await.unwrap(), 0);
            prop_assert_eq!(a.flush_prefix().await.unwrap(), 0);
            prop_assert_eq!(b.count_matching("*", 100).await.unwrap(), keys.len() as u64);
            Ok(())
        })?;
    }
}
