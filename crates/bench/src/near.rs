//! The near-cache clients and the invalidation-latency measurement.
//!
//! - `near_cache`: typed reads of the `content` family through `FamilyCache::get_shared` with the
//!   family's near cache on, keys drawn from a Zipf distribution over documents of its own (hot
//!   keys, as real traffic has; no other client writes them), and [`NEAR_WRITE_PERCENT`] % writes made through *another*
//!   manager (its own store and tracking connection), so that every write reaches the reader's
//!   copy only through the server's invalidation, as between two service instances.
//! - `near_session_get`: `SessionManager::get` with the session near cache on, over as many
//!   sessions as `session_get` but its own (the other session clients touch and rewrite theirs).
//! - [`invalidation_latency`]: instance A writes a key instance B holds; the time until B has
//!   dropped its copy (so it stops serving the old value).
//! - [`revocation_latency`]: instance A logs a session out that instance B holds in its session near
//!   cache; the time until B answers that the session is gone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use cache_core::Store;
use cache_domain::{CacheConfig, CacheManager, Family};
use cache_near::NearConfig;
use cache_redis::{RedisConfig, RedisStore};
use sessions::{CreateOptions, SessionManager};

use crate::hist::Histogram;
use crate::load::Client;
use crate::workload::{near_doc_id, Doc, SET_TTL};

/// Percentage of writes in the `near_cache` workload.
pub const NEAR_WRITE_PERCENT: u64 = 5;

/// Zipf exponent of the `near_cache` key distribution (the classic web-cache skew).
pub const ZIPF_EXPONENT: f64 = 0.99;

/// Keys drawn from a Zipf distribution over `0..n`: key `k` with probability proportional to
/// `1 / (k + 1)^s`.
///
/// Sampling inverts the cumulative distribution through a guide table (one bucket per key: the
/// first key whose cumulative probability reaches the bucket's start) and a short forward scan,
/// instead of a binary search over all `n` (14 dependent, mostly mispredicted steps over 80 KB
/// at 10k keys: 2.3% of a `near_cache` profile at C=64, harness work charged to the client).
#[derive(Debug, Clone)]
pub struct Zipf {
    cdf: Vec<f64>,
    guide: Vec<u32>,
}

impl Zipf {
    /// The distribution over `n` keys (at most `u32::MAX`) with exponent `s`.
    pub fn new(n: u64, s: f64) -> Zipf {
        let n = n.clamp(1, u64::from(u32::MAX)) as usize;
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for k in 0..n {
            sum += 1.0 / ((k + 1) as f64).powf(s);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        let mut guide = Vec::with_capacity(n);
        let mut k = 0;
        for b in 0..n {
            let start = b as f64 / n as f64;
            while k < n - 1 && cdf[k] < start {
                k += 1;
            }
            guide.push(k as u32);
        }
        Zipf { cdf, guide }
    }

    /// The key for a uniform random number `r`: the first key whose cumulative probability
    /// reaches `u = r / 2^64` (53 bits of it).
    pub fn sample(&self, r: u64) -> u64 {
        let u = (r >> 11) as f64 / (1u64 << 53) as f64;
        let n = self.cdf.len();
        // `u < 1`, so the bucket is below `n`; `min` keeps that true whatever rounding does, and
        // the step back keeps the bucket's start (computed as in `new`) at or below `u` when
        // `u * n` rounded up to the next bucket: the scan only goes forward.
        let mut b = ((u * n as f64) as usize).min(n - 1);
        if b > 0 && u < b as f64 / n as f64 {
            b -= 1;
        }
        let mut k = self.guide[b] as usize;
        while k < n - 1 && self.cdf[k] < u {
            k += 1;
        }
        k as u64
    }
}

/// The key prefix of the near-cache clients' stores (`CACHE_KEY_PREFIX`). Not the other clients'
/// [`PREFIX`](crate::workload::PREFIX): a tracking connection is told of every write under its
/// broadcast prefixes, so sharing the prefix would push every write of `cache` (same family) and
/// every sliding read of `session_get` (a `GETEX` changes the key's TTL) to the near clients'
/// tracking connections, and charge that server and client work to the clients it measures.
pub const NEAR_PREFIX: &str = "benchnear";

/// A store of its own (its own connections and tracking connection): one "instance", with the
/// near clients' [`NEAR_PREFIX`].
async fn instance_store(config: &RedisConfig) -> anyhow::Result<Arc<dyn Store>> {
    let config = config.clone().with_key_prefix(NEAR_PREFIX);
    Ok(Arc::new(
        RedisStore::connect(&config)
            .await
            .context("connecting a near-cache instance")?,
    ))
}

/// A cache manager with the `content` family's near cache on.
async fn near_manager(
    config: &RedisConfig,
    entries: usize,
) -> anyhow::Result<CacheManager<Arc<dyn Store>>> {
    let near = NearConfig::default().with_max_entries(entries);
    Ok(CacheManager::builder(instance_store(config).await?)
        .with_config(&CacheConfig::default().with_near_cache(Family::Content, near))
        .build()?)
}

/// `near_cache`: see the [module documentation](self).
pub struct NearCacheClient {
    reader: CacheManager<Arc<dyn Store>>,
    writer: CacheManager<Arc<dyn Store>>,
    doc: Doc,
    zipf: Arc<Zipf>,
}

impl NearCacheClient {
    /// Two managers on `config`'s server over `keys` documents of their own, preloaded here.
    pub async fn new(config: &RedisConfig, keys: u64) -> anyhow::Result<Self> {
        let writer = CacheManager::new(instance_store(config).await?);
        let doc = Doc::sample(1);
        let mut start = 0;
        while start < keys {
            let end = (start + 500).min(keys);
            let batch: Vec<(String, &Doc)> = (start..end).map(|i| (near_doc_id(i), &doc)).collect();
            writer.content().with_ttl(SET_TTL).set_many(&batch).await?;
            start = end;
        }
        Ok(Self {
            reader: near_manager(config, 2 * keys as usize).await?,
            writer,
            doc,
            zipf: Arc::new(Zipf::new(keys, ZIPF_EXPONENT)),
        })
    }
}

impl Client for NearCacheClient {
    async fn op(&self, r: u64) -> anyhow::Result<()> {
        let id = near_doc_id(self.zipf.sample(r >> 8));
        if r % 100 >= NEAR_WRITE_PERCENT {
            let doc = self.reader.content().get_shared::<Doc>(&id).await?;
            std::hint::black_box(doc);
        } else {
            self.writer
                .content()
                .with_ttl(SET_TTL)
                .set(&id, &self.doc)
                .await?;
        }
        Ok(())
    }
}

/// `near_session_get`: see the [module documentation](self).
pub struct NearSessionGet {
    sessions: SessionManager<Arc<dyn Store>>,
    tokens: Arc<[String]>,
}

impl NearSessionGet {
    /// A session manager with its near cache on, over `n` sessions of its own (created here), sized
    /// to hold them all twice over: S3-FIFO keeps a tenth of its capacity for newcomers, so a
    /// uniformly read working set as large as the cache would keep evicting itself.
    pub async fn new(config: &RedisConfig, n: u64) -> anyhow::Result<Self> {
        let near = NearConfig::default()
            .with_max_entries(2 * n.max(1) as usize)
            .with_max_bytes(256 * 1024 * 1024);
        let store = instance_store(config).await?;
        let sessions = SessionManager::builder(Arc::clone(&store))
            .with_touch_interval(crate::workload::SESSION_TOUCH_INTERVAL)
            .with_near_cache(near)
            .build()?;
        let tokens = crate::clients::create_sessions(&store, n).await?.into();
        Ok(Self { sessions, tokens })
    }
}

impl Client for NearSessionGet {
    async fn op(&self, r: u64) -> anyhow::Result<()> {
        let token = &self.tokens[(r % self.tokens.len() as u64) as usize];
        let s = self.sessions.get(token).await?;
        anyhow::ensure!(s.is_some(), "a preloaded session is missing");
        Ok(())
    }
}

/// Instance A writes a key instance B holds in its near cache, `samples` times; the histogram of
/// the time from the start of A's write until B has dropped its copy (B polls its counters without
/// sleeping, so the figure is the delivery time plus A's write round trip).
pub async fn invalidation_latency(
    config: &RedisConfig,
    samples: usize,
) -> anyhow::Result<Histogram> {
    let a = CacheManager::new(instance_store(config).await?);
    let b = near_manager(config, 16).await?;
    let id = "latency-probe";
    let mut hist = Histogram::new();
    a.content().set(id, &0u64).await?;
    for i in 0..samples as u64 {
        // B reads until its near cache holds the key (the first read after a change misses).
        let warm_until = Instant::now() + Duration::from_secs(10);
        loop {
            let before = b.content().near_cache_stats().map_or(0, |s| s.hits);
            b.content().get_shared::<u64>(id).await?;
            if b.content().near_cache_stats().map_or(0, |s| s.hits) > before {
                break;
            }
            anyhow::ensure!(
                Instant::now() < warm_until,
                "B's near cache never served the key"
            );
        }
        let before = b
            .content()
            .near_cache_stats()
            .map_or(0, |s| s.invalidations);
        let t0 = Instant::now();
        a.content().set(id, &(i + 1)).await?;
        let give_up = t0 + Duration::from_secs(10);
        while b
            .content()
            .near_cache_stats()
            .map_or(0, |s| s.invalidations)
            == before
        {
            anyhow::ensure!(Instant::now() < give_up, "B never heard A's write");
            tokio::task::yield_now().await;
        }
        hist.record_duration(t0.elapsed());
    }
    Ok(hist)
}

/// Instance A logs out (`SessionManager::delete`) a session instance B holds in its session near
/// cache, `samples` times; the histogram of the time from the start of A's logout until B's
/// `get` answers that the session is gone. B calls `get` in a loop without sleeping: each call is a
/// near-cache hit until the server's invalidation arrives, then a store read that finds nothing,
/// so the figure is what a request on B would see, not a counter.
pub async fn revocation_latency(config: &RedisConfig, samples: usize) -> anyhow::Result<Histogram> {
    let a = SessionManager::builder(instance_store(config).await?).build()?;
    let b = SessionManager::builder(instance_store(config).await?)
        .with_near_cache(NearConfig::default().with_max_entries(64))
        .build()?;
    let mut hist = Histogram::new();
    for i in 0..samples {
        let created = a
            .create(&format!("latency-{i}"), CreateOptions::new())
            .await?;
        let token = created.token.expose();
        // B reads until its near cache serves the session (the first read after a change misses).
        let warm_until = Instant::now() + Duration::from_secs(10);
        loop {
            let before = b.near_cache_stats().map_or(0, |s| s.hits);
            anyhow::ensure!(b.get(token).await?.is_some(), "B lost a live session");
            if b.near_cache_stats().map_or(0, |s| s.hits) > before {
                break;
            }
            anyhow::ensure!(
                Instant::now() < warm_until,
                "B's near cache never served the session"
            );
        }
        let t0 = Instant::now();
        anyhow::ensure!(a.delete(token).await?, "A's logout found no session");
        let give_up = t0 + Duration::from_secs(10);
        while b.get(token).await?.is_some() {
            anyhow::ensure!(Instant::now() < give_up, "B never heard A's logout");
            tokio::task::yield_now().await;
        }
        hist.record_duration(t0.elapsed());
    }
    Ok(hist)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::Rng;

    #[test]
    fn zipf_is_skewed_and_in_range() {
        let z = Zipf::new(10_000, ZIPF_EXPONENT);
        let mut rng = Rng::new(1);
        let mut top = 0;
        for _ in 0..100_000 {
            let k = z.sample(rng.next_u64());
            assert!(k < 10_000);
            if k < 100 {
                top += 1;
            }
        }
        // The hottest 1% of keys take roughly half of the traffic at s = 0.99.
        assert!((35_000..65_000).contains(&top), "{top}");
    }

    #[test]
    fn zipf_guide_table_samples_what_a_binary_search_of_the_cdf_finds() {
        for (n, s) in [(1, 0.99), (2, 0.5), (10_000, ZIPF_EXPONENT), (777, 1.5)] {
            let z = Zipf::new(n, s);
            let search = |r: u64| {
                let u = (r >> 11) as f64 / (1u64 << 53) as f64;
                z.cdf.partition_point(|c| *c < u).min(z.cdf.len() - 1) as u64
            };
            let mut rng = Rng::new(n);
            let edges = [0, 1 << 11, u64::MAX >> 1, u64::MAX - (1 << 11), u64::MAX];
            for r in edges.into_iter().chain((0..50_000).map(|_| rng.next_u64())) {
                assert_eq!(z.sample(r), search(r), "n {n}, s {s}, r {r}");
            }
            // Every bucket boundary, where the guide table's start matters most.
            for b in 0..n {
                let r = ((b as f64 / n as f64) * (1u64 << 53) as f64) as u64;
                for r in [r.saturating_sub(1), r, r + 1] {
                    let r = r << 11;
                    assert_eq!(z.sample(r), search(r), "n {n}, s {s}, bucket {b}");
                }
            }
        }
    }
}
