//! Multi-key operations: `get_many` (`MGET`), `set_many` (a pipeline of `SET`s) and `delete`
//! (`UNLINK`). On one server each is one command or pipeline. On a cluster the keys are split by
//! hash slot, one command (or pipeline) per slot is sent concurrently, any failed part fails the
//! call, and the answers are put back in the caller's order.
//!
//! redis-rs 1.8 splits a multi-slot `MGET`/`UNLINK` itself, but it drops the part of a slot whose
//! node has no connection at that moment, so an `UNLINK` could answer a smaller count without an
//! error (read in `cluster_async::execute_on_multiple_nodes`, "we ignore nodes that are missing"),
//! and it cannot split a pipeline at all (`CROSSSLOT`). Hence the split here.

use std::collections::HashMap;

use cache_core::{Bytes, Error, Result};
use redis::cluster_routing::{Route, SlotAddr};
use redis::{Cmd, Pipeline, RedisError};

use crate::conn::Conn;
use crate::retry::Idempotency;
use crate::route::Target;
use crate::store::RedisStore;

impl RedisStore {
    /// `MGET` of `keys` (relative, at least one).
    pub(crate) async fn get_many_batch(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        if !self.is_cluster() {
            let mut cmd = redis::cmd("MGET");
            for k in keys {
                cmd.arg(self.full_key(k)?);
            }
            let values: Vec<Option<Bytes>> = self
                .query_on(
                    self.read_conns(),
                    "MGET",
                    keys.first().copied(),
                    Target::Auto,
                    Idempotency::Repeatable,
                    &cmd,
                )
                .await?;
            if values.len() != keys.len() {
                return Err(Error::backend(format!(
                    "MGET of {} keys answered {} values",
                    keys.len(),
                    values.len()
                )));
            }
            return Ok(values);
        }
        let fulls = keys
            .iter()
            .map(|k| self.full_key(k))
            .collect::<Result<Vec<_>>>()?;
        let cmds: Vec<(Route, Vec<usize>, Cmd)> = group_by_slot(&fulls, self.read_addr())
            .into_iter()
            .map(|(route, idx)| {
                let mut cmd = redis::cmd("MGET");
                for &i in &idx {
                    cmd.arg(&fulls[i]);
                }
                (route, idx, cmd)
            })
            .collect();
        let (cmds, n) = (&cmds, keys.len());
        self.conns
            .run(
                "MGET",
                keys.first().copied(),
                Idempotency::Repeatable,
                |c: Conn| async move {
                    let parts =
                        futures::future::try_join_all(cmds.iter().map(|(route, idx, cmd)| {
                            let mut c = c.clone();
                            async move {
                                let values: Vec<Option<Bytes>> =
                                    c.query(cmd, Target::Slot(*route)).await?;
                                Ok::<_, RedisError>((idx, values))
                            }
                        }))
                        .await?;
                    let mut out = vec![None; n];
                    for (idx, values) in parts {
                        if values.len() != idx.len() {
                            return Err(RedisError::from((
                                redis::ErrorKind::UnexpectedReturnType,
                                "MGET answered a different number of values",
                            )));
                        }
                        for (&i, v) in idx.iter().zip(values) {
                            out[i] = v;
                        }
                    }
                    Ok(out)
                },
            )
            .await
    }

    /// Unconditional `SET`s of `entries` (at least one), with a TTL of `px` milliseconds if given.
    pub(crate) async fn set_many_batch(
        &self,
        entries: &[(&str, &[u8])],
        px: Option<u64>,
    ) -> Result<()> {
        let mut fulls = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            fulls.push(self.full_key(key)?);
            self.check_value(value)?;
        }
        let pipes: Vec<Pipeline> = if self.is_cluster() {
            group_by_slot(&fulls, SlotAddr::Master)
                .into_iter()
                .map(|(_, idx)| {
                    set_pipeline(idx.into_iter().map(|i| (&fulls[i], entries[i].1)), px)
                })
                .collect()
        } else {
            vec![set_pipeline(
                fulls.iter().zip(entries).map(|(full, e)| (full, e.1)),
                px,
            )]
        };
        let pipes = &pipes;
        // Value writes: never repeated once sent (a repeat could bring back a value another client
        // deleted in between; see `Idempotency`). A pipeline of one slot goes to that slot's
        // primary (redis-rs routes it by its first key).
        self.conns
            .run(
                "SET (pipeline)",
                entries.first().map(|e| e.0),
                Idempotency::Once,
                |c: Conn| async move {
                    futures::future::try_join_all(pipes.iter().map(|pipe| {
                        let mut c = c.clone();
                        async move { pipe.query_async::<()>(&mut c).await }
                    }))
                    .await
                    .map(|_| ())
                },
            )
            .await
    }

    /// `UNLINK` of full keys; the count is never short without an error. `first` is the relative
    /// key named in errors.
    pub(crate) async fn unlink(&self, first: Option<&str>, fulls: &[String]) -> Result<u64> {
        if fulls.is_empty() {
            return Ok(0);
        }
        if !self.is_cluster() {
            let mut cmd = redis::cmd("UNLINK");
            cmd.arg(fulls);
            // The count would be lower on a repeat: not repeated once sent.
            return self.query("UNLINK", first, Idempotency::Once, &cmd).await;
        }
        let cmds: Vec<(Route, Cmd)> = group_by_slot(fulls, SlotAddr::Master)
            .into_iter()
            .map(|(route, idx)| {
                let mut cmd = redis::cmd("UNLINK");
                for i in idx {
                    cmd.arg(&fulls[i]);
                }
                (route, cmd)
            })
            .collect();
        let cmds = &cmds;
        self.conns
            .run("UNLINK", first, Idempotency::Once, |c: Conn| async move {
                let parts = futures::future::try_join_all(cmds.iter().map(|(route, cmd)| {
                    let mut c = c.clone();
                    async move { c.query::<u64>(cmd, Target::Slot(*route)).await }
                }))
                .await?;
                Ok(parts.into_iter().sum())
            })
            .await
    }
}

/// A pipeline of `SET full value [PX px]`, replies ignored.
fn set_pipeline<'a>(
    entries: impl Iterator<Item = (&'a String, &'a [u8])>,
    px: Option<u64>,
) -> Pipeline {
    let mut pipe = redis::pipe();
    for (full, value) in entries {
        let cmd = pipe.cmd("SET").arg(full).arg(value);
        if let Some(ms) = px {
            cmd.arg("PX").arg(ms);
        }
        cmd.ignore();
    }
    pipe
}

/// Groups `keys` (full keys) by hash slot: one route per slot (to `addr`) and the positions of its
/// keys, in first-seen order.
fn group_by_slot<S: AsRef<str>>(keys: &[S], addr: SlotAddr) -> Vec<(Route, Vec<usize>)> {
    let mut index: HashMap<Route, usize> = HashMap::new();
    let mut groups: Vec<(Route, Vec<usize>)> = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let route = Route::with_key(k.as_ref().as_bytes(), addr);
        match index.get(&route) {
            Some(&g) => groups[g].1.push(i),
            None => {
                index.insert(route, groups.len());
                groups.push((route, vec![i]));
            }
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_keep_first_seen_order_and_duplicates() {
        let keys = ["{a}1", "{b}1", "{a}2", "{a}1"];
        let g = group_by_slot(&keys, SlotAddr::Master);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].1, vec![0, 2, 3]);
        assert_eq!(g[1].1, vec![1]);
    }
}
