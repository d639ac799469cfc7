//! The [`Store`] implementation of [`MemoryStore`]: each method validates its input, takes the
//! shard of its key (one at a time for batches and walks) and applies Redis's rules to the entry.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cache_core::store::ttl_millis;
use cache_core::{
    BackendStats, Bytes, CasOutcome, Error, Expiry, KeyTtl, Result, ScanCursor, ScanPage,
    SetCondition, SetOptions, Store,
};
use tokio::time::Instant;

use crate::glob::{self, glob_match};
use crate::rules::{check_expiry, check_score, deadline, parse_redis_int};
use crate::state::{Counters, Now, Shard, Value, ZSet};
use crate::{Hasher, MemoryStore, BATCH, MAX_SCAN_WORK, SHARDS};

#[async_trait]
impl Store for MemoryStore {
    fn prefix(&self) -> &str {
        &self.prefix
    }

    fn backend_name(&self) -> &'static str {
        "memory"
    }

    /// No call waits for anything but a shard lock held for one operation.
    fn ends_calls_at_deadline(&self) -> bool {
        true
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let k = self.key(key)?;
        let found = {
            let mut sh = self.lock(&k)?;
            let mut now = Now::default();
            let found = match sh.lookup(&k, &mut now) {
                None => None,
                Some(entry) => match &entry.value {
                    Value::Str(v) => Some(v.clone()),
                    Value::ZSet(_) => return Err(Self::wrong_type(key)),
                },
            };
            match found {
                Some(_) => sh.counters.hits += 1,
                None => sh.counters.misses += 1,
            }
            found
        };
        Ok(found)
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        let fulls = keys
            .iter()
            .map(|k| self.key(k))
            .collect::<Result<Vec<_>>>()?;
        let mut out = Vec::with_capacity(fulls.len());
        let mut now = Now::default();
        for k in &fulls {
            let found = {
                let mut sh = self.lock(k)?;
                // Like MGET, a key of another type reads as missing.
                let found = match sh.lookup(k, &mut now) {
                    Some(entry) => match &entry.value {
                        Value::Str(v) => Some(v.clone()),
                        Value::ZSet(_) => None,
                    },
                    None => None,
                };
                match found {
                    Some(_) => sh.counters.hits += 1,
                    None => sh.counters.misses += 1,
                }
                found
            };
            out.push(found);
        }
        Ok(out)
    }

    async fn get_ex(&self, key: &str, ttl: Duration) -> Result<Option<Bytes>> {
        let k = self.key(key)?;
        ttl_millis(ttl)?;
        let value = {
            let mut sh = self.lock(&k)?;
            let mut now = Now::default();
            let at = deadline(now.get(), ttl)?;
            let value = match sh.lookup(&k, &mut now) {
                None => {
                    sh.counters.misses += 1;
                    return Ok(None);
                }
                Some(entry) => match &entry.value {
                    Value::Str(v) => v.clone(),
                    Value::ZSet(_) => return Err(Self::wrong_type(key)),
                },
            };
            sh.counters.hits += 1;
            sh.set_expiry(&k, Some(at));
            value
        };
        Ok(Some(value))
    }

    async fn set(&self, key: &str, value: &[u8], opts: SetOptions) -> Result<bool> {
        let k = self.key(key)?;
        self.check_value(key, value)?;
        check_expiry(opts.expiry)?;
        self.check_fits(key, Shard::<Hasher>::entry_size(k.len(), value.len()))?;
        // The value is copied before the shard's lock is taken, the replaced one freed after.
        let value = Value::string(value);
        let replaced = {
            let mut sh = self.lock(&k)?;
            let mut now = Now::default();
            let existing = sh.lookup(&k, &mut now).map(|e| e.expires_at);
            let allowed = match opts.condition {
                SetCondition::IfAbsent => existing.is_none(),
                SetCondition::IfPresent => existing.is_some(),
                // `SetCondition` is non-exhaustive upstream; `Always` and anything new write.
                _ => true,
            };
            if !allowed {
                return Ok(false);
            }
            let expires_at = match opts.expiry {
                Expiry::In(ttl) => Some(deadline(now.get(), ttl)?),
                Expiry::Keep => existing.flatten(),
                _ => None,
            };
            sh.put(&k, value, expires_at)
        };
        drop(replaced);
        self.enforce_bounds(&k);
        Ok(true)
    }

    async fn set_many(&self, entries: &[(&str, &[u8])], expiry: Expiry) -> Result<()> {
        if matches!(expiry, Expiry::Keep) {
            return Err(Error::invalid_input(
                "set_many does not accept Expiry::Keep (MSET has no KEEPTTL)",
            ));
        }
        check_expiry(expiry)?;
        let mut fulls = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let k = self.key(key)?;
            self.check_value(key, value)?;
            self.check_fits(key, Shard::<Hasher>::entry_size(k.len(), value.len()))?;
            fulls.push(k);
        }
        // One deadline for the whole batch, as MSET followed by PEXPIRE would give.
        let expires_at = match expiry {
            Expiry::In(ttl) => Some(deadline(Instant::now(), ttl)?),
            _ => None,
        };
        for ((_, value), k) in entries.iter().zip(&fulls) {
            let value = Value::string(value);
            let replaced = self.lock(k)?.put(k, value, expires_at);
            drop(replaced);
            self.enforce_bounds(k);
        }
        Ok(())
    }

    async fn delete(&self, keys: &[&str]) -> Result<u64> {
        let fulls = keys
            .iter()
            .map(|k| self.key(k))
            .collect::<Result<Vec<_>>>()?;
        let mut deleted = 0;
        let mut now = Now::default();
        for k in &fulls {
            let (live, value) = self.lock(k)?.remove_live(k, &mut now);
            drop(value);
            deleted += u64::from(live);
        }
        Ok(deleted)
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        let k = self.key(key)?;
        let mut now = Now::default();
        let found = self.lock(&k)?.peek(&k, &mut now).is_some();
        Ok(found)
    }

    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        let k = self.key(key)?;
        ttl_millis(ttl)?;
        let mut sh = self.lock(&k)?;
        let mut now = Now::default();
        let at = deadline(now.get(), ttl)?;
        if sh.lookup(&k, &mut now).is_none() {
            return Ok(false);
        }
        sh.set_expiry(&k, Some(at));
        Ok(true)
    }

    async fn persist(&self, key: &str) -> Result<bool> {
        let k = self.key(key)?;
        let mut sh = self.lock(&k)?;
        let mut now = Now::default();
        match sh.peek(&k, &mut now) {
            Some(entry) if entry.expires_at.is_some() => {
                sh.set_expiry(&k, None);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        let k = self.key(key)?;
        let mut sh = self.lock(&k)?;
        let mut now = Now::default();
        Ok(match sh.peek(&k, &mut now) {
            None => KeyTtl::Missing,
            Some(entry) => match entry.expires_at {
                None => KeyTtl::Persistent,
                Some(at) => KeyTtl::ExpiresIn(at - now.get()),
            },
        })
    }

    async fn incr_by(
        &self,
        key: &str,
        delta: i64,
        ttl_if_created: Option<Duration>,
    ) -> Result<i64> {
        let k = self.key(key)?;
        if let Some(ttl) = ttl_if_created {
            ttl_millis(ttl)?;
        }
        let replaced = {
            let mut sh = self.lock(&k)?;
            let mut now = Now::default();
            let current = match sh.lookup(&k, &mut now) {
                None => None,
                Some(entry) => match &entry.value {
                    Value::Str(v) => Some(parse_redis_int(v).ok_or_else(|| {
                        Error::invalid_input(format!(
                            "value of {key:?} is not an integer or out of range"
                        ))
                    })?),
                    Value::ZSet(_) => return Err(Self::wrong_type(key)),
                },
            };
            let new = current.unwrap_or(0).checked_add(delta).ok_or_else(|| {
                Error::invalid_input(format!(
                    "incrementing {key:?} by {delta} would overflow an i64"
                ))
            })?;
            let bytes = Value::string(new.to_string().as_bytes());
            let replaced = match current {
                Some(_) => {
                    let old = sh
                        .lookup(&k, &mut now)
                        .map(|entry| std::mem::replace(&mut entry.value, bytes));
                    sh.resized(&k);
                    old
                }
                None => {
                    self.check_fits(key, Shard::<Hasher>::entry_size(k.len(), bytes.size()))?;
                    let at = ttl_if_created
                        .map(|ttl| deadline(now.get(), ttl))
                        .transpose()?;
                    sh.put(&k, bytes, at)
                }
            };
            (new, replaced)
        };
        self.enforce_bounds(&k);
        Ok(replaced.0)
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expiry: Expiry,
    ) -> Result<CasOutcome> {
        let k = self.key(key)?;
        if let Some(v) = new {
            self.check_value(key, v)?;
        }
        check_expiry(expiry)?;
        let new: Option<Value> = new.map(Value::string);
        let replaced = {
            let mut sh = self.lock(&k)?;
            let mut now = Now::default();
            let (current, old_deadline) = match sh.lookup(&k, &mut now) {
                None => (None, None),
                Some(entry) => match &entry.value {
                    Value::Str(v) => (Some(v.clone()), entry.expires_at),
                    Value::ZSet(_) => return Err(Self::wrong_type(key)),
                },
            };
            if current.as_deref() != expected {
                return Ok(CasOutcome::Conflict { current });
            }
            match new {
                None => sh.remove(&k).map(|(_, e)| e.value),
                Some(v) => {
                    self.check_fits(key, Shard::<Hasher>::entry_size(k.len(), v.size()))?;
                    let at = match expiry {
                        Expiry::In(ttl) => Some(deadline(now.get(), ttl)?),
                        Expiry::Keep => old_deadline,
                        _ => None,
                    };
                    sh.put(&k, v, at)
                }
            }
        };
        drop(replaced);
        self.enforce_bounds(&k);
        Ok(CasOutcome::Swapped)
    }

    async fn scan(&self, pattern: &str, cursor: ScanCursor, count: u32) -> Result<ScanPage> {
        if count == 0 {
            return Err(Error::invalid_input("scan count must be at least 1"));
        }
        let work = usize::try_from(count)
            .unwrap_or(usize::MAX)
            .min(MAX_SCAN_WORK);
        // Every match starts with the pattern's literal part: start (and stop) there.
        let within = format!("{}{}", self.key_base, glob::literal_prefix(pattern));
        // The cursor is the shard (two hex digits) and the last key examined in it.
        let (mut shard, mut after) = if cursor.is_start() {
            (0, None)
        } else {
            let state = cursor.as_backend();
            let shard = state
                .get(..2)
                .and_then(|s| usize::from_str_radix(s, 16).ok())
                .filter(|s| *s < SHARDS)
                .ok_or_else(|| Error::invalid_input("scan cursor of another store"))?;
            (shard, Some(format!("{}{}", self.key_base, &state[2..])))
        };
        self.open()?;
        let base = self.key_base.len();
        let mut keys = Vec::new();
        let mut examined = 0usize;
        let mut last: Option<(usize, Arc<str>)> = None;
        let mut more = false;
        'shards: while shard < SHARDS {
            let (start, exclusive) = match &after {
                Some(after) if after.as_str() >= within.as_str() => (after.as_str(), true),
                _ => (within.as_str(), false),
            };
            let mut sh = self.lock_shard(shard)?;
            let now = Instant::now();
            // One entry more than the budget: it tells whether the scan goes on.
            let batch = sh.keys_from(start, exclusive, &within, work - examined + 1, now);
            for (full, expired) in batch {
                if examined == work {
                    more = true;
                    break 'shards;
                }
                examined += 1;
                if expired {
                    sh.remove_key(&full, now);
                } else {
                    let rel = &full[base..];
                    if glob_match(pattern, rel) {
                        keys.push(rel.to_owned());
                    }
                }
                last = Some((shard, full));
            }
            drop(sh);
            shard += 1;
            after = None;
        }
        let next = match (more, last) {
            (true, Some((shard, last))) => Some(ScanCursor::from_backend(format!(
                "{shard:02x}{}",
                &last[base..]
            ))),
            _ => None,
        };
        Ok(ScanPage { keys, next })
    }

    async fn zadd(&self, key: &str, member: &str, score: f64) -> Result<bool> {
        let k = self.key(key)?;
        check_score("score", score)?;
        let added = {
            let mut sh = self.lock(&k)?;
            let mut now = Now::default();
            let size = match sh.lookup(&k, &mut now) {
                None => None,
                Some(entry) => match &entry.value {
                    Value::ZSet(z) => {
                        Some(Shard::<Hasher>::entry_size(k.len(), z.size_with(member)))
                    }
                    Value::Str(_) => return Err(Self::wrong_type(key)),
                },
            };
            match size {
                None => {
                    let mut z = ZSet::default();
                    z.insert(member, score);
                    self.check_fits(key, Shard::<Hasher>::entry_size(k.len(), z.size()))?;
                    sh.put(&k, Value::ZSet(Box::new(z)), None);
                    true
                }
                Some(size) => {
                    self.check_fits(key, size)?;
                    let added = match sh.lookup(&k, &mut now).map(|e| &mut e.value) {
                        Some(Value::ZSet(z)) => z.insert(member, score),
                        _ => false,
                    };
                    sh.resized(&k);
                    added
                }
            }
        };
        self.enforce_bounds(&k);
        Ok(added)
    }

    async fn zrem(&self, key: &str, members: &[&str]) -> Result<u64> {
        let k = self.key(key)?;
        let mut sh = self.lock(&k)?;
        let mut now = Now::default();
        let (removed, empty) = match sh.lookup(&k, &mut now) {
            None => return Ok(0),
            Some(entry) => match &mut entry.value {
                Value::ZSet(z) => {
                    let removed = members.iter().filter(|m| z.remove(m)).count() as u64;
                    (removed, z.is_empty())
                }
                Value::Str(_) => return Err(Self::wrong_type(key)),
            },
        };
        if empty {
            sh.remove(&k);
        } else if removed > 0 {
            sh.resized(&k);
        }
        Ok(removed)
    }

    async fn zrange_by_score(
        &self,
        key: &str,
        min: f64,
        max: f64,
        limit: Option<usize>,
    ) -> Result<Vec<(String, f64)>> {
        let k = self.key(key)?;
        check_score("min", min)?;
        check_score("max", max)?;
        let mut sh = self.lock(&k)?;
        let mut now = Now::default();
        match sh.lookup(&k, &mut now) {
            None => Ok(Vec::new()),
            Some(entry) => match &entry.value {
                Value::ZSet(z) => Ok(z.range(min, max, limit.unwrap_or(usize::MAX))),
                Value::Str(_) => Err(Self::wrong_type(key)),
            },
        }
    }

    async fn zrem_range_by_score(&self, key: &str, min: f64, max: f64) -> Result<u64> {
        let k = self.key(key)?;
        check_score("min", min)?;
        check_score("max", max)?;
        let mut sh = self.lock(&k)?;
        let mut now = Now::default();
        let (removed, empty) = match sh.lookup(&k, &mut now) {
            None => return Ok(0),
            Some(entry) => match &mut entry.value {
                Value::ZSet(z) => {
                    let doomed = z.range(min, max, usize::MAX);
                    for (member, _) in &doomed {
                        z.remove(member);
                    }
                    (doomed.len() as u64, z.is_empty())
                }
                Value::Str(_) => return Err(Self::wrong_type(key)),
            },
        };
        if empty {
            sh.remove(&k);
        } else if removed > 0 {
            sh.resized(&k);
        }
        Ok(removed)
    }

    async fn zcard(&self, key: &str) -> Result<u64> {
        let k = self.key(key)?;
        let mut sh = self.lock(&k)?;
        let mut now = Now::default();
        match sh.lookup(&k, &mut now) {
            None => Ok(0),
            Some(entry) => match &entry.value {
                Value::ZSet(z) => Ok(z.len() as u64),
                Value::Str(_) => Err(Self::wrong_type(key)),
            },
        }
    }

    async fn ping(&self) -> Result<Duration> {
        let started = std::time::Instant::now();
        self.open()?;
        drop(self.lock_shard(0)?);
        Ok(started.elapsed())
    }

    async fn flush_prefix(&self) -> Result<u64> {
        if self.prefix.is_empty() {
            return Err(Error::invalid_input(
                "flush_prefix refuses to run without a key prefix: it would delete every key",
            ));
        }
        self.open()?;
        let mut deleted = 0u64;
        for i in 0..SHARDS {
            loop {
                let batch_len = {
                    let mut sh = self.lock_shard(i)?;
                    let now = Instant::now();
                    let batch = sh.keys_from(&self.key_base, false, &self.key_base, BATCH, now);
                    for (key, _) in &batch {
                        if sh.remove_key(key, now) {
                            deleted += 1;
                        }
                    }
                    batch.len()
                };
                if batch_len < BATCH {
                    break;
                }
                // Let other tasks use the store between batches.
                tokio::task::yield_now().await;
            }
        }
        Ok(deleted)
    }

    async fn stats(&self) -> Result<Option<BackendStats>> {
        self.open()?;
        let now = Instant::now();
        let (mut counters, mut bytes, mut len) = (Counters::default(), 0usize, 0usize);
        for i in 0..SHARDS {
            let mut sh = self.lock_shard(i)?;
            sh.purge_expired(now, usize::MAX);
            counters.add(&sh.counters);
            bytes += sh.bytes();
            len += sh.len();
        }
        let mut stats = BackendStats::new("memory");
        stats.used_memory_bytes = Some(bytes as u64);
        stats.keyspace_hits = Some(counters.hits);
        stats.keyspace_misses = Some(counters.misses);
        stats.expired_keys = Some(counters.expired);
        stats.evicted_keys = Some(counters.evicted);
        stats.keys_per_db.insert("memory".to_owned(), len as u64);
        Ok(Some(stats))
    }

    /// Refuses every later call (through any clone or re-prefixed sibling: they share one data
    /// set) with [`Error::Closed`], drops the data and stops the reaper. Idempotent.
    async fn close(&self) -> Result<()> {
        self.close_now();
        Ok(())
    }
}
