//! What a key holds.

use cache_core::Bytes;

use crate::zset::ZSet;

/// What a key holds.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    /// Built by [`Value::string`]: a read hands out a clone (a reference count, taken under the
    /// shard's lock), never a copy of the bytes.
    Str(Bytes),
    ZSet(Box<ZSet>),
}

impl Value {
    /// A string value holding a copy of `bytes`, made before any lock is taken. Its clones share
    /// one reference count in the value's own allocation ([`Bytes::from_owner`]): a plain
    /// `Bytes::from(Vec)` would allocate that count on the first clone, that is, in the first
    /// read after every write.
    pub(crate) fn string(bytes: &[u8]) -> Value {
        Value::Str(Bytes::from_owner(bytes.to_vec()))
    }

    /// The bytes the value counts for in the store's bounds.
    pub(crate) fn size(&self) -> usize {
        match self {
            Value::Str(v) => v.len(),
            Value::ZSet(z) => z.size(),
        }
    }
}
