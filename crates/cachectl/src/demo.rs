//! `cachectl demo`: a guided tour of the whole system, as a user meets it.
//!
//! It runs on whatever backend is configured (the embedded in-memory store by default), under a key
//! prefix of its own (`cachectl-demo-{pid}`, inside the configured prefix), and removes its keys at the
//! end, so it is safe to point at a shared Redis.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context};
use cachekit::sessions::keys;
use cachekit::store::KeyTtl;
use cachekit::{CacheManager, SessionManager};
use cachekit::{Config, CrawlError, CreateOptions, Family, KeyMatch, SessionData, Store, StoreExt};
use serde_json::{json, Value};

use crate::output::{human_duration, Out};

/// The demo's findings, printed as one JSON document with `--json`.
#[derive(Default)]
struct Findings(serde_json::Map<String, Value>);

impl Findings {
    fn add(&mut self, key: &str, value: Value) {
        self.0.insert(key.to_string(), value);
    }
}

fn section(out: &Out, title: &str) {
    out.line(&format!("\n== {title} =="));
}

fn object(v: Value) -> SessionData {
    match v {
        Value::Object(m) => m,
        _ => SessionData::new(),
    }
}

async fn ttl_text(store: &dyn Store, key: &str) -> String {
    match store.ttl(key).await {
        Ok(KeyTtl::ExpiresIn(d)) => format!("TTL {}", human_duration(d)),
        Ok(KeyTtl::Persistent) => "no TTL".into(),
        Ok(KeyTtl::Missing) => "missing".into(),
        Err(e) => format!("TTL unknown ({e})"),
    }
}

pub(crate) async fn run(config: &Config, base: Arc<dyn Store>, out: &Out) -> anyhow::Result<u8> {
    // A key space of our own, so that the demo never touches anybody's data and can clean up.
    let scope = format!("cachectl-demo-{}", std::process::id());
    // A scope of the configured prefix (`{prefix}.{scope}`): one name, so isolated from it.
    let demo_config = config
        .clone()
        .with_key_prefix(cachekit::store::keys::sub_prefix(
            config.key_prefix(),
            &scope,
        )?);
    // The connection was checked by the caller; the demo's own store shares nothing with it (an
    // in-memory store is created fresh, a Redis store reconnects under the demo prefix).
    drop(base);
    let store = cachekit::connect(&demo_config).await?;
    let result = tour(&demo_config, store.clone(), out).await;
    // Clean up whatever happened.
    let removed = store.flush_prefix().await;
    match (&result, removed) {
        (Ok(_), Ok(n)) => out.line(&format!(
            "\nCleaned up: removed the demo's {n} key(s) under prefix {:?}.",
            demo_config.key_prefix()
        )),
        (_, Err(e)) => out.line(&format!("\nWarning: cleanup failed: {e}")),
        _ => {}
    }
    let findings = result?;
    if out.is_json() {
        out.report(&Value::Object(findings.0), "");
    }
    Ok(0)
}

async fn tour(config: &Config, store: Arc<dyn Store>, out: &Out) -> anyhow::Result<Findings> {
    let mut f = Findings::default();
    out.line("cachekit demo: caching and sessions, as a service uses them.");
    out.line(&format!(
        "Backend: {} (key prefix {:?}). Every key below is relative to that prefix.",
        crate::describe_backend(config),
        store.prefix()
    ));
    f.add("backend", json!(store.backend_name()));
    f.add("prefix", json!(store.prefix()));

    sessions_tour(config, store.clone(), out, &mut f).await?;
    let cache = cachekit::cache_manager(store.clone(), config)?;
    cache_tour(&cache, store.as_ref(), out, &mut f).await?;
    cache_aside_tour(&cache, out, &mut f).await?;
    invalidation_tour(&cache, out, &mut f).await?;
    stats_tour(&cache, out, &mut f);

    section(out, "9. Health report");
    let health =
        cachekit::health::check(store.as_ref(), cachekit::health::HealthCheck::SelfTest).await;
    out.line(&health.to_text(&crate::describe_backend(config)));
    ensure!(health.healthy, "the health check failed: see above");
    f.add("health", serde_json::to_value(&health)?);
    Ok(f)
}

async fn sessions_tour(
    config: &Config,
    store: Arc<dyn Store>,
    out: &Out,
    f: &mut Findings,
) -> anyhow::Result<()> {
    let sessions: SessionManager<Arc<dyn Store>> =
        cachekit::session_manager(store.clone(), config)?;

    section(out, "1. A user logs in: a session is created");
    let login = sessions
        .create(
            "ada",
            CreateOptions::new().with_data(object(json!({"theme": "dark", "cart": []}))),
        )
        .await?;
    let token = login.token.expose().to_string();
    let handle = login.session.handle.clone();
    out.line(&format!(
        "Token for the cookie: {}... ({} chars, 256 random bits, shown truncated here)",
        &token[..8],
        token.len()
    ));
    let key = keys::session_key(&handle)?;
    out.line(&format!(
        "Store key: {key}: a SHA-256 of the token, so a Redis dump holds no usable token."
    ));
    let pattern = keys::SESSION.pattern();
    let found = store.scan_all(&pattern, 100).await?;
    let leaks = found.iter().filter(|k| k.contains(&token)).count();
    out.line(&format!(
        "Keys under {pattern} : {} (containing the token: {leaks})",
        found.len()
    ));
    ensure!(leaks == 0, "a store key contains the session token");
    f.add(
        "session_created",
        json!({"handle": handle.as_str(), "token_in_keys": leaks}),
    );

    section(out, "2. Each request reads the session (sliding expiry)");
    let s = sessions
        .get(&token)
        .await?
        .context("the session just created is missing")?;
    out.line(&format!(
        "get -> user {}, data {}, idle timeout {}, expires at {} unless used again",
        s.user_id,
        Value::Object((*s.data).clone()),
        human_duration(s.idle_timeout),
        s.expires_at().format("%H:%M:%S UTC"),
    ));
    // A short-lived session shows the sliding window: reading it pushes its expiry forward.
    let short = sessions
        .create(
            "ada",
            CreateOptions::new().with_idle_timeout(Duration::from_secs(3)),
        )
        .await?;
    let short_key = keys::session_key(&short.session.handle)?;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let before = ttl_text(store.as_ref(), &short_key).await;
    sessions
        .get(short.token.expose())
        .await?
        .context("the short session expired too early")?;
    let after = ttl_text(store.as_ref(), &short_key).await;
    out.line(&format!(
        "a session with a 3s idle timeout, read after 1.2s: {before} before the read, {after} after"
    ));
    sessions.delete(short.token.expose()).await?;
    f.add("sliding_expiry", json!({"before": before, "after": after}));

    section(
        out,
        "3. Two service instances update the session concurrently",
    );
    let other_instance: SessionManager<Arc<dyn Store>> =
        cachekit::session_manager(store.clone(), config)?;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (a, b, token) = (sessions.clone(), other_instance.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let m = if i % 2 == 0 { a } else { b };
            m.update(&token, &object(json!({ format!("field_{i}"): i })))
                .await
        }));
    }
    for t in tasks {
        t.await??.context("the session vanished during updates")?;
    }
    let s = sessions.get(&token).await?.context("session missing")?;
    let present = (0..40)
        .filter(|i| s.data.contains_key(&format!("field_{i}")))
        .count();
    out.line(&format!(
        "40 merges from 2 managers (compare-and-swap, no last-write-wins): {present}/40 fields present"
    ));
    ensure!(present == 40, "concurrent updates were lost");
    f.add(
        "concurrent_updates",
        json!({"sent": 40, "present": present}),
    );

    section(
        out,
        "4. After login the token is rotated (defence against session fixation)",
    );
    let rotated = sessions
        .rotate(&token)
        .await?
        .context("rotation found no session")?;
    let old_works = sessions.get(&token).await?.is_some();
    let new_works = sessions.get(rotated.token.expose()).await?.is_some();
    out.line(&format!(
        "old token works: {old_works}; new token works: {new_works}; data kept: {} fields",
        rotated.session.data.len()
    ));
    ensure!(
        !old_works && new_works,
        "rotation did not replace the token"
    );
    let current = rotated.token.expose().to_string();
    f.add(
        "rotation",
        json!({"old_token_works": old_works, "new_token_works": new_works}),
    );

    section(
        out,
        "5. The user logs in from two more devices; list and revoke",
    );
    for device in ["phone", "tablet"] {
        sessions
            .create(
                "ada",
                CreateOptions::new().with_data(object(json!({"device": device}))),
            )
            .await?;
    }
    let list = sessions.list_user_sessions("ada").await?;
    for s in &list {
        let data = if s.data.len() > 3 {
            format!("{} fields", s.data.len())
        } else {
            Value::Object((*s.data).clone()).to_string()
        };
        out.line(&format!(
            "  handle {}...  created {}  last access {}  expires {}  data {data}",
            &s.handle.as_str()[..12],
            s.created_at.format("%H:%M:%S"),
            s.last_accessed.format("%H:%M:%S"),
            s.expires_at().format("%H:%M:%S"),
        ));
    }
    let revoked = sessions.revoke_all_except("ada", &current).await?;
    let remaining = sessions.list_user_sessions("ada").await?.len();
    out.line(&format!(
        "{} live sessions; 'log out other devices' revoked {revoked}; {remaining} left (this one)",
        list.len()
    ));
    ensure!(
        list.len() == 3 && remaining == 1,
        "listing or revocation is wrong"
    );
    sessions.delete(&current).await?;
    f.add(
        "per_user",
        json!({"listed": list.len(), "revoked": revoked, "remaining": remaining}),
    );
    Ok(())
}

async fn cache_tour(
    cache: &CacheManager<Arc<dyn Store>>,
    store: &dyn Store,
    out: &Out,
    f: &mut Findings,
) -> anyhow::Result<()> {
    section(out, "6. Typed caching per data family, each with its TTL");
    cache
        .user()
        .set("42", &json!({"id": 42, "name": "Ada", "plan": "pro"}))
        .await?;
    cache
        .user_keywords()
        .set("42", &json!(["rust", "redis"]))
        .await?;
    cache
        .keyword_posts()
        .set("rust", &json!([{"id": "p1", "title": "Async Rust"}]))
        .await?;
    cache
        .keyword_trends()
        .set(
            "rust",
            &json!({"tfidf": [["tokio", 0.41], ["async", 0.37]]}),
        )
        .await?;
    cache
        .content()
        .set("c-9", &json!({"title": "Weekly digest", "words": 812}))
        .await?;
    cache
        .deploy_status()
        .set("d-3", &json!({"stage": "rolling out", "percent": 40}))
        .await?;
    cache
        .metrics()
        .set(
            "api_latency:2026-11-26",
            &json!({"p50_ms": 12, "p99_ms": 85}),
        )
        .await?;
    let status = cache
        .update_crawl_status("task-7", |s| {
            s.start(Some(200));
            s.advance(50);
        })
        .await?;
    let status = cache
        .update_crawl_status("task-7", |s| {
            s.advance(30);
            s.record_error(CrawlError::new("HTTP 429 Too Many Requests").with_item("r/rust"));
        })
        .await
        .map(|s| (status, s))?
        .1;
    let mut rows = Vec::new();
    for family in Family::ALL {
        for key in store.scan_all(&family.all_keys_pattern(), 100).await? {
            let ttl = ttl_text(store, &key).await;
            out.line(&format!("  {:<16} {key:<32} {ttl}", family.name()));
            rows.push(json!({"family": family.name(), "key": key, "ttl": ttl}));
        }
    }
    out.line(&format!(
        "Crawl task-7: {:?}, progress {:.0}%, {} error(s) recorded",
        status.state,
        status.progress().unwrap_or(0.0) * 100.0,
        status.errors.len()
    ));
    let user: Option<Value> = cache.user().get("42").await?;
    out.line(&format!(
        "cache.user().get(42) -> {}",
        user.clone().unwrap_or(Value::Null)
    ));
    ensure!(user.is_some(), "the cached user is missing");
    f.add("cached_keys", json!(rows));
    Ok(())
}

async fn cache_aside_tour(
    cache: &CacheManager<Arc<dyn Store>>,
    out: &Out,
    f: &mut Findings,
) -> anyhow::Result<()> {
    section(
        out,
        "7. Cache-aside with single-flight: 100 requests miss at once",
    );
    let loads = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (cache, loads) = (cache.clone(), loads.clone());
        tasks.push(tokio::spawn(async move {
            cache
                .keyword_trends()
                .get_or_load("redis", || async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    // The "database": a slow TF-IDF query.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok::<_, std::io::Error>(json!({"tfidf": [["cluster", 0.52]]}))
                })
                .await
        }));
    }
    let mut answered = 0;
    for t in tasks {
        t.await?.map_err(|e| anyhow::anyhow!("load failed: {e}"))?;
        answered += 1;
    }
    let loads = loads.load(Ordering::SeqCst);
    out.line(&format!(
        "{answered} callers answered, database queried {loads} time(s); the next call is a cache hit"
    ));
    ensure!(loads == 1, "single-flight ran the loader {loads} times");
    f.add(
        "single_flight",
        json!({"callers": answered, "loads": loads}),
    );
    Ok(())
}

async fn invalidation_tour(
    cache: &CacheManager<Arc<dyn Store>>,
    out: &Out,
    f: &mut Findings,
) -> anyhow::Result<()> {
    section(out, "8. Invalidation");
    let evil = cache
        .user()
        .invalidate_matching(KeyMatch::IdPrefix("*".into()))
        .await?;
    let user_still_there = cache.user().get::<Value>("42").await?.is_some();
    out.line(&format!(
        "invalidate user \"*\": {evil} key(s) deleted; user 42 still cached: {user_still_there} (ids are escaped)"
    ));
    ensure!(evil == 0 && user_still_there, "escaping failed");
    let kw = cache.invalidate_keyword_data("rust").await?;
    out.line(&format!(
        "new trend analysis for keyword rust: its posts and trends invalidated ({kw} key(s))"
    ));
    let before = cache.user().count_matching(KeyMatch::All).await?;
    let version = cache.user().bump_version().await?;
    let after: Option<Value> = cache.user().get("42").await?;
    out.line(&format!(
        "bump the user family's version to {version}: O(1), user 42 now misses ({}); \
         the {before} old user key(s) age out by TTL",
        if after.is_none() { "miss" } else { "hit?!" }
    ));
    ensure!(after.is_none(), "version bump did not invalidate");
    f.add(
        "invalidation",
        json!({"escaped_star_deleted": evil, "keyword_keys": kw, "user_version": version}),
    );
    Ok(())
}

fn stats_tour(cache: &CacheManager<Arc<dyn Store>>, out: &Out, f: &mut Findings) {
    section(out, "Statistics (hits and misses per family)");
    let stats = cache.stats();
    for (family, s) in &stats.families {
        if s.hits + s.misses + s.writes == 0 {
            continue;
        }
        out.line(&format!(
            "  {:<16} hits {:>3}  misses {:>3}  loads {:>2}  coalesced {:>3}  writes {:>2}  hit ratio {}",
            family.name(),
            s.hits,
            s.misses,
            s.loads,
            s.coalesced,
            s.writes,
            s.hit_ratio()
                .map_or("-".into(), |r| format!("{:.0}%", r * 100.0))
        ));
    }
    f.add(
        "cache_stats",
        serde_json::to_value(&stats).unwrap_or(Value::Null),
    );
}
