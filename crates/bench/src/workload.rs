//! The data of the workload: a ~1 KiB JSON document, session data of the same size, the key
//! names, and a tiny per-task random number generator.

use serde::{Deserialize, Serialize};

/// TTL of every `SET` of the benchmark workload.
pub const SET_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// Touch interval of the benchmark's session managers: longer than a run, so that no `get`
/// rewrites `last_accessed` during one. With the default (a minute) a session read once per
/// minute or more pays one such rewrite per minute; a benchmark that reads each session every few
/// seconds in rounds that share the time with 15 other clients would instead pack a minute's
/// rewrites of all 10000 sessions into its own rounds, a rate no service has. The cost of a
/// rewriting read is measured on its own by the diagnostic client `session_touch`.
pub const SESSION_TOUCH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(600);

/// Percentage of `GET`s in the key-value workload (the rest are `SET`s with [`SET_TTL`]).
pub const GET_PERCENT: u64 = 80;

/// Keys per multi-key read of `batch64` / `raw_pipeline64`.
pub const BATCH: usize = 64;

/// The key prefix of the benchmark's store (`CACHE_KEY_PREFIX`).
pub const PREFIX: &str = "bench";

/// A document of about 1 KiB once encoded as JSON: what the cache and the raw clients store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Doc {
    /// Identifier.
    pub id: u64,
    /// A title.
    pub title: String,
    /// A few tags.
    pub tags: Vec<String>,
    /// A score.
    pub score: f64,
    /// Whether the document is published.
    pub published: bool,
    /// The bulk of the size.
    pub body: String,
}

impl Doc {
    /// The document with this id (deterministic content, ~1 KiB as JSON).
    pub fn sample(id: u64) -> Doc {
        let body: String = "lorem ipsum dolor sit amet, consectetur adipiscing elit. "
            .chars()
            .cycle()
            .take(860)
            .collect();
        Doc {
            id,
            title: format!("Document number {id} of the benchmark workload"),
            tags: ["rust", "redis", "cache", "bench"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            score: id as f64 / 7.0,
            published: id % 2 == 0,
            body,
        }
    }

    /// The document's JSON bytes: what the raw and store clients write.
    pub fn json(&self) -> Vec<u8> {
        // Serializing a struct of strings, numbers and bools cannot fail.
        serde_json::to_vec(self).expect("a Doc always serializes")
    }
}

/// Session data of about 1 KiB: a JSON object as the session manager stores it.
pub fn session_data(n: u64) -> sessions::SessionData {
    let value = serde_json::json!({
        "n": n,
        "theme": "dark",
        "locale": "en-GB",
        "cart": [{"sku": "A-100", "qty": 1}, {"sku": "B-220", "qty": 3}],
        "notes": "x".repeat(800),
    });
    match value {
        serde_json::Value::Object(map) => map,
        // `json!({..})` always builds an object.
        _ => unreachable!("json!({{..}}) is an object"),
    }
}

/// The relative key of key-value entry `i` (`kv:{i}`; the store adds `bench:`).
pub fn kv_key(i: u64) -> Name {
    Name::new("kv:", i)
}

/// The full Redis key of key-value entry `i`, as the raw clients write it (`bench:kv:{i}`), the
/// same key the store client reaches through its prefix.
pub fn raw_key(i: u64) -> Name {
    Name::new(RAW_KV_PREFIX, i)
}

/// What [`raw_key`] puts before the number: the store's prefix and `kv:`.
const RAW_KV_PREFIX: &str = "bench:kv:";

/// The cache id of entry `i` (family `content`).
pub fn doc_id(i: u64) -> Name {
    Name::new("doc-", i)
}

/// A key or id (an ASCII prefix and a number) formatted on the stack: the clients build one per
/// operation, and a `format!` with its allocation would add the harness's work to every client's
/// cost per call. Formatted per operation rather than once for all keys: an id read from a table
/// of ten thousand strings misses the CPU caches, which an id a service has just parsed from a
/// request does not.
pub struct Name {
    buf: [u8; NAME_MAX],
    len: usize,
}

/// The longest [`Name`]: a prefix of up to 20 bytes and the 20 digits of `u64::MAX`.
const NAME_MAX: usize = 40;

impl Name {
    fn new(prefix: &'static str, i: u64) -> Name {
        let mut buf = [0u8; NAME_MAX];
        let p = prefix.len().min(NAME_MAX - 20);
        buf[..p].copy_from_slice(&prefix.as_bytes()[..p]);
        let mut digits = [0u8; 20];
        let (mut n, mut v) = (0, i);
        loop {
            digits[n] = b'0' + (v % 10) as u8;
            n += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        for (k, d) in digits[..n].iter().rev().enumerate() {
            buf[p + k] = *d;
        }
        Name { buf, len: p + n }
    }

    /// The name. The prefixes are ASCII constants and the rest digits, so the bytes are UTF-8.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl std::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The cache id of entry `i` of the near-cache workload: documents of their own, so that the
/// other clients' writes do not invalidate them.
pub fn near_doc_id(i: u64) -> String {
    format!("near-{i}")
}

/// xorshift64*: a few nanoseconds per number, good enough to pick operations and keys, and
/// deterministic per seed so runs are comparable.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (any value, 0 included).
    pub fn new(seed: u64) -> Rng {
        // SplitMix64 step so that neighbouring seeds give unrelated streams and 0 is not a fixpoint.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_about_one_kib() {
        let len = Doc::sample(1234).json().len();
        assert!((900..=1200).contains(&len), "{len}");
        let len = serde_json::to_vec(&session_data(7)).unwrap().len();
        assert!((900..=1200).contains(&len), "{len}");
    }

    #[test]
    fn names_are_the_keys_the_store_and_the_raw_clients_share() {
        for i in [0, 7, 10, 9_999, 123_456_789, u64::MAX] {
            assert_eq!(kv_key(i).as_str(), format!("kv:{i}"));
            assert_eq!(raw_key(i).as_str(), format!("{PREFIX}:kv:{i}"));
            assert_eq!(doc_id(i).as_str(), format!("doc-{i}"));
        }
    }

    #[test]
    fn rng_is_spread() {
        let mut r = Rng::new(0);
        let gets = (0..10_000).filter(|_| r.below(100) < GET_PERCENT).count();
        assert!((7_600..8_400).contains(&gets), "{gets}");
    }
}
