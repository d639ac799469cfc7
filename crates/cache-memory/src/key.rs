//! Keys as the memory store handles them: the full key of a call (the store's prefix and the
//! relative key) built on the stack and hashed once, and the zero-padded head a slot keeps so that
//! a lookup compares the key without reading the key's own allocation.

use std::hash::BuildHasher;
use std::sync::Arc;

/// Bytes of a key kept in its slot: keys up to this long are compared without reading their own
/// allocation.
pub(crate) const HEAD: usize = 40;

const _: () = assert!(HEAD % 8 == 0, "heads compare as 8-byte words");

/// Whether two zero-padded heads are equal, compared as 8-byte words without a branch per word
/// (`==` on the byte slices was a call to `memcmp`, 4% of a profile of 1 KiB reads).
pub(crate) fn same_head(a: &[u8; HEAD], b: &[u8; HEAD]) -> bool {
    fn word(head: &[u8; HEAD], i: usize) -> u64 {
        let mut w = [0; 8];
        w.copy_from_slice(&head[i * 8..i * 8 + 8]);
        u64::from_ne_bytes(w)
    }
    let diff = (0..HEAD / 8).fold(0, |diff, i| diff | (word(a, i) ^ word(b, i)));
    diff == 0
}

/// Longest full key kept on the stack while it is hashed and looked up; longer keys use the heap.
const INLINE_KEY: usize = 128;

const _: () = assert!(
    INLINE_KEY >= HEAD,
    "a full key's inline bytes hold its head"
);

/// A full key (store prefix + relative key) and its hash, built without allocating for the usual
/// short key.
#[derive(Debug)]
pub(crate) struct FullKey<'a> {
    base: &'a str,
    rel: &'a str,
    /// The key when it fits, else its first [`INLINE_KEY`] bytes (the whole key is in `heap`);
    /// zero-padded either way, so its first [`HEAD`] bytes are the key's head as a slot keeps it.
    inline: [u8; INLINE_KEY],
    heap: Vec<u8>,
    pub(crate) hash: u64,
}

impl<'a> FullKey<'a> {
    pub(crate) fn new(base: &'a str, rel: &'a str, hasher: &impl BuildHasher) -> Self {
        let len = base.len() + rel.len();
        let mut key = FullKey {
            base,
            rel,
            inline: [0; INLINE_KEY],
            heap: Vec::new(),
            hash: 0,
        };
        if len <= INLINE_KEY {
            key.inline[..base.len()].copy_from_slice(base.as_bytes());
            key.inline[base.len()..len].copy_from_slice(rel.as_bytes());
        } else {
            key.heap.reserve_exact(len);
            key.heap.extend_from_slice(base.as_bytes());
            key.heap.extend_from_slice(rel.as_bytes());
            key.inline.copy_from_slice(&key.heap[..INLINE_KEY]);
        }
        key.hash = hasher.hash_one(key.bytes());
        key
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        let len = self.base.len() + self.rel.len();
        if len <= INLINE_KEY {
            &self.inline[..len]
        } else {
            &self.heap
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.base.len() + self.rel.len()
    }

    /// The key's first [`HEAD`] bytes, zero-padded (see `inline`).
    pub(crate) fn head(&self) -> &[u8; HEAD] {
        let (head, _) = self.inline.split_at(HEAD);
        // `split_at(HEAD)` returns exactly `HEAD` bytes first (`INLINE_KEY >= HEAD` is asserted
        // at compile time), so the conversion cannot fail.
        head.try_into().expect("the head is HEAD bytes")
    }

    pub(crate) fn to_arc(&self) -> Arc<str> {
        let mut s = String::with_capacity(self.len());
        s.push_str(self.base);
        s.push_str(self.rel);
        Arc::from(s)
    }
}

/// The hash of a stored key: the same function [`FullKey::new`] uses.
pub(crate) fn hash_of(hasher: &impl BuildHasher, key: &str) -> u64 {
    hasher.hash_one(key.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key of `len` bytes whose byte `i` is `b'a' + i % 26`, with byte `changed_at` upper-cased.
    fn key(len: usize, changed_at: Option<usize>) -> String {
        (0..len)
            .map(|i| {
                let c = b'a' + (i % 26) as u8;
                char::from(if Some(i) == changed_at {
                    c.to_ascii_uppercase()
                } else {
                    c
                })
            })
            .collect()
    }

    #[test]
    fn a_full_key_holds_the_whole_key_and_its_zero_padded_head_at_every_length() {
        let hasher = foldhash::fast::RandomState::default();
        for len in 0..=200 {
            for base in ["", "app:"] {
                let rel = key(len, None);
                let full = FullKey::new(base, &rel, &hasher);
                let whole = format!("{base}{rel}");
                assert_eq!(full.bytes(), whole.as_bytes(), "length {len}");
                assert_eq!(full.len(), whole.len());
                assert_eq!(full.hash, hash_of(&hasher, &whole));
                assert_eq!(&*full.to_arc(), whole);
                let mut head = [0; HEAD];
                let n = whole.len().min(HEAD);
                head[..n].copy_from_slice(&whole.as_bytes()[..n]);
                assert_eq!(full.head(), &head, "length {len}");
            }
        }
    }

    #[test]
    fn heads_differing_in_any_byte_differ() {
        let hasher = foldhash::fast::RandomState::default();
        let a = key(HEAD, None);
        let ka = FullKey::new("", &a, &hasher);
        assert!(same_head(ka.head(), FullKey::new("", &a, &hasher).head()));
        for at in 0..HEAD {
            let b = key(HEAD, Some(at));
            assert!(
                !same_head(ka.head(), FullKey::new("", &b, &hasher).head()),
                "byte {at}"
            );
        }
        // A shorter key's padding is zeros, which no byte of these keys is.
        let short = key(HEAD - 1, None);
        assert!(!same_head(
            ka.head(),
            FullKey::new("", &short, &hasher).head()
        ));
    }
}
