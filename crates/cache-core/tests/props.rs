//! Property-based tests of what `cache-core` parses or builds from input it does not control: the
//! codec envelope (stored bytes), id escaping (user ids), prefixes, and settings (durations,
//! numbers, flags, the profile). The whole environment, read by `cachekit::Config::from_lookup`, is
//! property-tested in `tests/tests/config_props.rs`.
//!
//! Case counts are proptest's default (256), or `PROPTEST_CASES` when set, so `cargo xtask ci` stays
//! fast; a failure prints the minimal input.

use std::collections::BTreeMap;
use std::time::Duration;

use cache_core::codec::{self, FORMAT_VERSION};
use cache_core::config::{parse_duration, Lookup, Profile};
use cache_core::keys::{
    escape_id, escape_id_into, sub_prefix, unescape_id, validate_prefix, MAX_ID_BYTES,
    MAX_PREFIX_BYTES,
};
use cache_core::{Error, ErrorKind};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Sample {
    id: i64,
    name: String,
    tags: Vec<String>,
    flags: BTreeMap<String, bool>,
    parent: Option<u64>,
}

fn sample() -> impl Strategy<Value = Sample> {
    (
        any::<i64>(),
        any::<String>(),
        prop::collection::vec(any::<String>(), 0..4),
        prop::collection::btree_map(any::<String>(), any::<bool>(), 0..4),
        any::<Option<u64>>(),
    )
        .prop_map(|(id, name, tags, flags, parent)| Sample {
            id,
            name,
            tags,
            flags,
            parent,
        })
}

/// Bytes that look like what a store may hand back: anything, JSON-ish text, and envelopes with
/// any version around any payload.
fn stored_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        "[{}\\[\\]\":,0-9a-z\\- ]{0,40}".prop_map(String::into_bytes),
        (any::<u32>(), "[{}\\[\\]\":,0-9a-z ]{0,20}")
            .prop_map(|(v, d)| format!(r#"{{"v":{v},"d":{d}}}"#).into_bytes()),
    ]
}

/// An id of up to [`MAX_ID_BYTES`] bytes, heavy in the characters escaping is about.
fn id() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9:*?\\[\\]\\\\{}% .@+=_-]{1,24}",
        any::<String>().prop_filter("non-empty, within the limit", |s| {
            !s.is_empty() && s.len() <= MAX_ID_BYTES
        }),
    ]
}

proptest! {
    #[test]
    fn decoding_any_bytes_never_panics_and_classifies(bytes in stored_bytes()) {
        for result in [
            codec::decode::<serde_json::Value>(&bytes).map(|_| ()),
            codec::decode::<u64>(&bytes).map(|_| ()),
            codec::decode::<Sample>(&bytes).map(|_| ()),
        ] {
            if let Err(e) = result {
                prop_assert!(
                    matches!(e.kind(), ErrorKind::Decode | ErrorKind::UnknownFormatVersion),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn an_envelope_of_another_version_is_unknown_whatever_its_payload(
        v in any::<u32>().prop_filter("not ours", |v| *v != FORMAT_VERSION),
        payload in "[{}\\[\\]\":,0-9a-z ]{0,20}",
    ) {
        let bytes = format!(r#"{{"v":{v},"d":{payload}}}"#);
        match codec::decode::<serde_json::Value>(bytes.as_bytes()) {
            Err(Error::UnknownFormatVersion { found, supported }) => {
                prop_assert_eq!(found, v);
                prop_assert_eq!(supported, FORMAT_VERSION);
            }
            other => prop_assert!(
                serde_json::from_str::<serde_json::Value>(&bytes).is_err(),
                "{bytes}: {other:?}"
            ),
        }
    }

    #[test]
    fn the_codec_round_trips(value in sample()) {
        let bytes = codec::encode(&value).unwrap();
        prop_assert_eq!(codec::decode::<Sample>(&bytes).unwrap(), value);
        let head: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        prop_assert_eq!(&head["v"], &serde_json::json!(FORMAT_VERSION));
    }

    #[test]
    fn escaping_leaves_no_separator_glob_or_brace_and_round_trips(id in id()) {
        let e = escape_id(&id).unwrap();
        prop_assert!(
            e.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.@+=%".contains(&b)),
            "{id:?} escaped to {e:?}"
        );
        prop_assert!(e.len() <= 3 * id.len());
        prop_assert_eq!(unescape_id(&e).unwrap(), id.clone());
        // Escaping into a key under construction appends exactly the same text.
        let mut key = String::from("user:");
        escape_id_into(&mut key, &id).unwrap();
        prop_assert_eq!(key.strip_prefix("user:"), Some(e.as_str()));
    }

    #[test]
    fn escaping_is_injective(a in id(), b in id()) {
        prop_assume!(a != b);
        prop_assert_ne!(escape_id(&a).unwrap(), escape_id(&b).unwrap());
    }

    #[test]
    fn unescaping_any_text_never_panics(text in any::<String>()) {
        // Whatever unescapes is an id whose escape unescapes to it again (the escaping may be
        // spelled differently: `%61` and `a` both unescape to `a`).
        if let Ok(id) = unescape_id(&text) {
            if !id.is_empty() && id.len() <= MAX_ID_BYTES {
                prop_assert_eq!(unescape_id(&escape_id(&id).unwrap()).unwrap(), id);
            }
        }
    }

    #[test]
    fn ids_out_of_bounds_are_invalid_input(extra in 1usize..64) {
        let e = escape_id(&"x".repeat(MAX_ID_BYTES + extra)).unwrap_err();
        prop_assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn a_valid_prefix_is_one_name(prefix in any::<String>()) {
        match validate_prefix(&prefix) {
            Ok(()) => prop_assert!(
                prefix.len() <= MAX_PREFIX_BYTES
                    && prefix
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
                "{prefix:?} was accepted"
            ),
            Err(Error::Config { setting, .. }) => prop_assert_eq!(setting, "CACHE_KEY_PREFIX"),
            Err(other) => prop_assert!(false, "{other}"),
        }
    }

    #[test]
    fn a_scope_is_a_valid_prefix_distinct_from_its_parent(
        parent in "[a-z0-9._-]{0,20}",
        scope in "[a-z0-9._-]{1,20}",
    ) {
        let nested = sub_prefix(&parent, &scope).unwrap();
        prop_assert!(validate_prefix(&nested).is_ok());
        prop_assert_ne!(nested, parent);
    }

    #[test]
    fn parsing_any_duration_text_never_panics_and_names_the_setting(text in any::<String>()) {
        if let Err(e) = parse_duration("CACHE_TTL_USER", &text) {
            let named = matches!(&e, Error::Config { setting, .. } if setting == "CACHE_TTL_USER");
            prop_assert!(named, "{e}");
            prop_assert!(e.to_string().contains("CACHE_TTL_USER"), "{e}");
        }
    }

    #[test]
    fn durations_parse_to_what_they_say(n in any::<u64>(), unit in prop::sample::select(
        &["", "s", "ms", "m", "min", "h", "d"][..],
    ), pad in "[ ]{0,2}") {
        let text = format!("{pad}{n}{unit}{pad}");
        let secs = |mul: u64| n.checked_mul(mul).map(Duration::from_secs);
        let expected = match unit {
            "ms" => Some(Duration::from_millis(n)),
            "" | "s" => Some(Duration::from_secs(n)),
            "m" | "min" => secs(60),
            "h" => secs(3600),
            _ => secs(86_400),
        };
        match (parse_duration("X", &text), expected) {
            (Ok(d), Some(e)) => prop_assert_eq!(d, e),
            (Err(_), None) => {}
            (got, want) => prop_assert!(false, "{text:?}: {got:?}, expected {want:?}"),
        }
    }

    #[test]
    fn settings_of_any_text_never_panic_and_errors_name_the_setting(text in any::<String>()) {
        let env = |name: &str| (name == "SOME_SETTING").then(|| text.clone());
        let lookup = Lookup::new(&env);
        let named = |e: Error| matches!(&e, Error::Config { setting, .. } if setting == "SOME_SETTING");
        if let Err(e) = lookup.duration("SOME_SETTING") {
            prop_assert!(named(e));
        }
        if let Err(e) = lookup.number::<u64>("SOME_SETTING") {
            prop_assert!(named(e));
        }
        if let Err(e) = lookup.flag("SOME_SETTING") {
            prop_assert!(named(e));
        }
        if text.trim().is_empty() {
            prop_assert_eq!(lookup.get("SOME_SETTING"), None, "blank counts as unset");
        }
        let profile = |name: &str| (name == "CACHE_PROFILE").then(|| text.clone());
        match Profile::from_lookup(Lookup::new(&profile)) {
            Ok(_) => {}
            Err(Error::Config { setting, .. }) => prop_assert_eq!(setting, "CACHE_PROFILE"),
            Err(other) => prop_assert!(false, "{other}"),
        }
    }
}
