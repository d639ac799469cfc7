//! The Lua scripts behind the atomic operations.
//!
//! Each script touches exactly one key, passed as `KEYS[1]`, so it runs unchanged on Redis Cluster
//! (one hash slot). They are sent with `EVALSHA` and loaded on `NOSCRIPT` (`redis::Script`), so the
//! script body crosses the network once per server, not per call.

use std::sync::LazyLock;

use redis::Script;

/// Compare-and-swap on one key.
///
/// `ARGV`: `[1]` `"1"` if a value is expected, `"0"` if the key must be missing; `[2]` the expected
/// value; `[3]` `"1"` to write `[4]`, `"0"` to delete; `[5]` `"never"`, `"px"` or `"keep"`; `[6]`
/// the TTL in milliseconds for `"px"`.
///
/// Returns `{1}` when swapped, `{0}` on conflict with a missing key, `{0, current}` on conflict
/// with a present key. A key of another type fails with `WRONGTYPE` (from `GET`).
pub(crate) static COMPARE_AND_SWAP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local cur = redis.call('GET', KEYS[1])
local ok
if ARGV[1] == '0' then
  ok = (cur == false)
else
  ok = (cur ~= false and cur == ARGV[2])
end
if not ok then
  if cur == false then return {0} end
  return {0, cur}
end
if ARGV[3] == '0' then
  redis.call('DEL', KEYS[1])
elseif ARGV[5] == 'px' then
  redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[6])
elseif ARGV[5] == 'keep' then
  redis.call('SET', KEYS[1], ARGV[4], 'KEEPTTL')
else
  redis.call('SET', KEYS[1], ARGV[4])
end
return {1}
",
    )
});

/// `INCRBY` that sets a TTL when the call creates the key.
///
/// `ARGV`: `[1]` the delta, `[2]` the TTL in milliseconds. Returns the new value. Errors as
/// `INCRBY` does (not an integer, overflow, `WRONGTYPE`) and then changes nothing.
pub(crate) static INCR_BY_WITH_TTL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local existed = redis.call('EXISTS', KEYS[1])
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if existed == 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return v
",
    )
});
