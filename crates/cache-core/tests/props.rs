//! Property-based tests of what `cache-core` parses or builds from input it does not control: the
//! codec envelope (stored bytes), id escaping (user ids), prefixes, durations and the environment.
//!
//! Case counts are proptest's default (256), or `PROPTEST_CASES` when set, so `cargo xtask ci` stays
//! fast; a failure prints the minimal input.

use std::collections::BTreeMap;
use std::time::Duration;

use cache_core::codec::{self, FORMAT_VERSION};
use cache_core::config::parse_duration;
use cache_core::keys::{
    escape_id, sub_prefix, unescape_id, validate_prefix, Family, KeySchema, MAX_ID_BYTES,
    MAX_PREFIX_BYTES,
};
use cache_core::{Config, Error, ErrorKind};
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
        // The key of a family is its literal prefix and the escaped id, nothing else.
        let key = KeySchema::user(&id).unwrap();
        prop_assert_eq!(key.as_str().strip_prefix("user:"), Some(e.as_str()));
        prop_assert_eq!(Family::User.pattern_for(&id).unwrap(), key.as_str());
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
    fn the_environment_never_panics_and_errors_name_a_setting(env in environment()) {
        let lookup = |k: &str| env.get(k).cloned();
        if let Err(e) = Config::from_lookup(lookup) {
            let Error::Config { setting, message } = &e else {
                return Err(TestCaseError::fail(format!("not a config error: {e}")));
            };
            prop_assert!(
                names_a_setting_that_was_given(setting, message, &env),
                "{e} (environment {env:?})"
            );
        }
    }
}

/// The variables [`Config::from_lookup`] reads.
const VARIABLES: &[&str] = &[
    "CACHE_PROFILE",
    "CACHE_BACKEND",
    "REDIS_URL",
    "REDIS_CLUSTER_NODES",
    "CACHE_KEY_PREFIX",
    "REDIS_DB",
    "REDIS_CONNECT_TIMEOUT",
    "REDIS_RESPONSE_TIMEOUT",
    "REDIS_POOL_WAIT_TIMEOUT",
    "REDIS_HEALTH_CHECK_INTERVAL",
    "REDIS_CONN_MAX_LIFETIME",
    "REDIS_RETRY_BASE_DELAY",
    "REDIS_RETRY_MAX_DELAY",
    "REDIS_RETRY_BUDGET",
    "REDIS_POOL_MAX_OPEN",
    "REDIS_POOL_MAX_IDLE",
    "REDIS_RETRY_ATTEMPTS",
    "REDIS_SCAN_COUNT",
    "CACHE_MAX_VALUE_BYTES",
    "REDIS_READ_FROM_REPLICAS",
    "CACHE_TTL_USER",
    "CACHE_TTL_METRICS",
];

/// A value for any variable: plausible ones (so that parsing goes deep) and arbitrary text.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,4}(ms|s|m|h|d)?",
        prop::sample::select(
            &[
                "redis://127.0.0.1:6379/0",
                "rediss://:pw@host:6380",
                "127.0.0.1:7000,127.0.0.1:7001",
                "memory",
                "redis",
                "cluster",
                "production",
                "dev",
                "true",
                "off",
                "shop",
                "shop:user",
                "0",
                "-1",
            ][..]
        )
        .prop_map(str::to_owned),
        any::<String>(),
    ]
}

fn environment() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(
        prop::sample::select(VARIABLES).prop_map(str::to_owned),
        value(),
        0..8,
    )
}

/// Whether an error about `setting` points at what the user gave: the setting itself, another
/// variable the message names (`REDIS_RETRY_BASE_DELAY` "must not exceed REDIS_RETRY_MAX_DELAY"), or
/// the endpoint that is missing.
fn names_a_setting_that_was_given(
    setting: &str,
    message: &str,
    env: &BTreeMap<String, String>,
) -> bool {
    let given = |k: &str| env.get(k).is_some_and(|v| !v.trim().is_empty());
    VARIABLES.contains(&setting)
        && (given(setting)
            || VARIABLES.iter().any(|v| given(v) && message.contains(v))
            || matches!(setting, "REDIS_URL" | "REDIS_CLUSTER_NODES"))
}
