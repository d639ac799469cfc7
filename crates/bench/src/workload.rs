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
pub fn kv_key(i: u64) -> String {
    format!("kv:{i}")
}

/// The full Redis key of key-value entry `i`, as the raw clients write it (`bench:kv:{i}`), the
/// same key the store client reaches through its prefix.
pub fn raw_key(i: u64) -> String {
    format!("{PREFIX}:kv:{i}")
}

/// The cache id of entry `i` (family `content`).
pub fn doc_id(i: u64) -> String {
    format!("doc-{i}")
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
    fn rng_is_spread() {
        let mut r = Rng::new(0);
        let gets = (0..10_000).filter(|_| r.below(100) < GET_PERCENT).count();
        assert!((7_600..8_400).contains(&gets), "{gets}");
    }
}
