//! The Lua scripts behind the atomic operations.
//!
//! Each script touches exactly one key, passed as `KEYS[1]`, so it runs unchanged on Redis Cluster
//! (one hash slot, routed to that slot's primary). They are sent with `EVALSHA`; on `NOSCRIPT` the
//! call is repeated once as `EVAL` with the body, which also caches the script on that server. So
//! the body crosses the network once per server, not per call, and nothing depends on `SCRIPT
//! LOAD`, which in a cluster goes to every node and fails while one of them is down.

use std::sync::LazyLock;

use redis::aio::ConnectionLike;
use redis::{Cmd, FromRedisValue, RedisError, Script};

/// A Lua script over one key: its body and its SHA1.
pub(crate) struct Lua {
    code: &'static str,
    sha: String,
}

impl Lua {
    fn new(code: &'static str) -> Self {
        let sha = Script::new(code).get_hash().to_owned();
        Self { code, sha }
    }

    /// Runs the script on `key` (`KEYS[1]`); `args` appends `ARGV`.
    pub(crate) async fn invoke<T: FromRedisValue>(
        &self,
        conn: &mut impl ConnectionLike,
        key: &str,
        args: impl Fn(&mut Cmd),
    ) -> Result<T, RedisError> {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&self.sha).arg(1).arg(key);
        args(&mut cmd);
        match cmd.query_async(conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                let mut cmd = redis::cmd("EVAL");
                cmd.arg(self.code).arg(1).arg(key);
                args(&mut cmd);
                cmd.query_async(conn).await
            }
            other => other,
        }
    }
}

/// Compare-and-swap on one key.
///
/// `ARGV`: `[1]` `"1"` if a value is expected, `"0"` if the key must be missing; `[2]` the expected
/// value; `[3]` `"1"` to write `[4]`, `"0"` to delete; `[5]` `"never"`, `"px"` or `"keep"`; `[6]`
/// the TTL in milliseconds for `"px"`.
///
/// Returns `{1}` when swapped, `{0}` on conflict with a missing key, `{0, current}` on conflict
/// with a present key. A key of another type fails with `WRONGTYPE` (from `GET`).
pub(crate) static COMPARE_AND_SWAP: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
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
/// `ARGV`: `[1]` the delta, `[2]` the TTL in milliseconds. Returns the new value **as the stored
/// decimal string** (a bulk reply), which the caller parses as an `i64`. Returning `INCRBY`'s
/// reply from Lua would pass it through a Lua number, a double, which rounds beyond 2^53 and turns
/// `i64::MAX` into `i64::MIN` (issue 12, item 8); the string Redis stored is exact. Errors as
/// `INCRBY` does (not an integer, overflow, `WRONGTYPE`) and then changes nothing.
pub(crate) static INCR_BY_WITH_TTL: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r"
local existed = redis.call('EXISTS', KEYS[1])
redis.call('INCRBY', KEYS[1], ARGV[1])
if existed == 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return redis.call('GET', KEYS[1])
",
    )
});
