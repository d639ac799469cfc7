//! `cachectl invalidate`: deletes cached values by family (and id) through the cache manager, or by
//! a raw glob pattern.
//!
//! A family and an id never become a key or a pattern here: the manager builds them from its family
//! table, under the family's *current* namespace version read from the store, and with the family's
//! id rule (a metrics id is `TYPE:DATE`). Re-deriving keys in the tool is how
//! `--family metrics --id api:2026-11-01` and `--family user --id 42` after a version bump once
//! deleted nothing and reported success.
//!
//! The session families are refused: session keys are managed by `cachectl sessions ...`, and
//! deleting a session index would break "sign out everywhere" (its sessions could no longer be
//! listed or revoked). For the same reason a raw pattern never deletes session keys: those it
//! matches are counted and left alone (`*` clears the caches, not the logins).

use std::sync::Arc;

use anyhow::bail;
use cachekit::{Config, Family, KeyMatch, Store, StoreExt};
use clap::Args;
use indicatif::ProgressBar;
use serde_json::json;

use crate::output::Out;

/// The arguments of `cachectl invalidate`.
#[derive(Debug, Args)]
pub(crate) struct InvalidateArgs {
    /// The cache family to invalidate (user, user_keywords, keyword_posts, keyword_trends,
    /// crawl_status, content, deploy_status, metrics). Sessions: see `cachectl sessions`.
    #[arg(long, conflicts_with = "pattern", required_unless_present = "pattern")]
    pub(crate) family: Option<String>,
    /// Only this id of the family, taken literally (`*` means the id `*`, not everything); a
    /// metrics id is `TYPE:DATE`. The live key under the family's current version is deleted.
    #[arg(long, requires = "family")]
    pub(crate) id: Option<String>,
    /// A raw glob pattern relative to the prefix (e.g. `post:keyword:*`). Use with care. Session
    /// keys it matches are left alone (and counted): see `cachectl sessions`.
    #[arg(long)]
    pub(crate) pattern: Option<String>,
    /// Count what would be deleted, delete nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

/// Parses a cache family named on the command line; the session families are refused with the
/// command that manages them.
pub(crate) fn cache_family(name: &str) -> anyhow::Result<Family> {
    if cachekit::sessions::SessionFamily::from_name(name).is_some() || name.trim() == "sessions" {
        bail!(
            "{name:?} is not a cache family: session keys are managed by `cachectl sessions \
             list|revoke|cleanup` (deleting them here would bypass the session index, and deleting \
             the index would break \"sign out everywhere\")"
        );
    }
    Ok(Family::from_name(name)?)
}

pub(crate) async fn run(
    args: InvalidateArgs,
    config: &Config,
    store: Arc<dyn Store>,
    out: &Out,
) -> anyhow::Result<u8> {
    match (args.family, args.pattern) {
        (Some(family), _) => {
            let family = cache_family(&family)?;
            match args.id {
                Some(id) => by_id(family, &id, args.dry_run, config, store, out).await,
                None => whole_family(family, args.dry_run, config, store, out).await,
            }
        }
        (None, Some(pattern)) => {
            by_pattern(&pattern, args.dry_run, config, store.as_ref(), out).await
        }
        (None, None) => unreachable!("clap requires --family or --pattern"),
    }
}

/// A progress bar for a run over `pattern`, and the callback that advances it.
fn progress_bar(out: &Out, pattern: &str) -> (ProgressBar, impl Fn(u64, u64) + Send + Sync) {
    let bar = out.progress_bar(&format!("invalidating {pattern}"));
    let advance = {
        let bar = bar.clone();
        move |scanned: u64, deleted: u64| {
            bar.set_position(scanned);
            bar.set_message(format!("{deleted} deleted"));
        }
    };
    (bar, advance)
}

async fn by_id(
    family: Family,
    id: &str,
    dry_run: bool,
    config: &Config,
    store: Arc<dyn Store>,
    out: &Out,
) -> anyhow::Result<u8> {
    let cache = cachekit::cache_manager(store.clone(), config)?;
    let handle = cache.family(family);
    let key = handle.key_of(id).await?;
    if dry_run {
        let n = u64::from(store.exists(&key).await?);
        out.report(
            &json!({"family": family, "id": id, "key": key.as_str(), "dry_run": true, "matched": n}),
            &format!("dry run: {n} key(s) match {family} id {id:?} (key {key}); nothing deleted"),
        );
        return Ok(0);
    }
    let deleted = u64::from(handle.invalidate(id).await?);
    out.report(
        &json!({"family": family, "id": id, "key": key.as_str(), "dry_run": false, "deleted": deleted}),
        &format!("deleted {deleted} key(s): {family} id {id:?} (key {key})"),
    );
    Ok(0)
}

async fn whole_family(
    family: Family,
    dry_run: bool,
    config: &Config,
    store: Arc<dyn Store>,
    out: &Out,
) -> anyhow::Result<u8> {
    let cache = cachekit::cache_manager(store, config)?;
    let handle = cache.family(family);
    // Every key of the family, of every namespace version.
    let pattern = family.all_keys_pattern();
    if dry_run {
        let n = handle.count_matching(KeyMatch::All).await?;
        out.report(
            &json!({"family": family, "pattern": pattern, "dry_run": true, "matched": n}),
            &format!("dry run: {n} key(s) match {pattern:?}; nothing deleted"),
        );
        return Ok(0);
    }
    let (bar, progress) = progress_bar(out, &pattern);
    let deleted = handle
        .invalidate_matching_with_progress(KeyMatch::All, &progress)
        .await?;
    bar.finish_and_clear();
    out.report(
        &json!({"family": family, "pattern": pattern, "dry_run": false, "deleted": deleted}),
        &format!("deleted {deleted} key(s) matching {pattern:?}"),
    );
    Ok(0)
}

/// Whether `key` (relative to the prefix) belongs to the session manager: a raw pattern leaves it
/// alone.
fn is_session_key(key: &str) -> bool {
    cachekit::sessions::keys::FAMILIES
        .iter()
        .any(|f| key.starts_with(f.prefix))
}

async fn by_pattern(
    pattern: &str,
    dry_run: bool,
    config: &Config,
    store: &dyn Store,
    out: &Out,
) -> anyhow::Result<u8> {
    let not_sessions = |key: &str| !is_session_key(key);
    let kept = |n: u64| {
        if n == 0 {
            String::new()
        } else {
            format!("; {n} session key(s) left alone (see `cachectl sessions`)")
        }
    };
    if dry_run {
        let n = store
            .count_matching_where(pattern, config.cache.scan_count(), &not_sessions)
            .await?;
        out.report(
            &json!({"pattern": pattern, "dry_run": true, "matched": n.deleted,
                    "session_keys_left": n.passed_over}),
            &format!(
                "dry run: {} key(s) match {pattern:?}; nothing deleted{}",
                n.deleted,
                kept(n.passed_over)
            ),
        );
        return Ok(0);
    }
    let (bar, progress) = progress_bar(out, pattern);
    let done = store
        .delete_matching_where(pattern, config.cache.scan_count(), &not_sessions, &progress)
        .await?;
    bar.finish_and_clear();
    out.report(
        &json!({"pattern": pattern, "dry_run": false, "deleted": done.deleted,
                "session_keys_left": done.passed_over}),
        &format!(
            "deleted {} key(s) matching {pattern:?}{}",
            done.deleted,
            kept(done.passed_over)
        ),
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    //! The command's own code path, in process, on the in-memory backend (a `cachectl` process
    //! would start with an empty in-memory store of its own). `tests/cli.rs` runs the binary against
    //! a real `redis-server`.

    use super::*;

    fn sample_id(family: Family) -> &'static str {
        match family {
            Family::Metrics => "api:2026-11-01",
            _ => "42",
        }
    }

    fn args(family: &str, id: Option<&str>) -> InvalidateArgs {
        InvalidateArgs {
            family: Some(family.to_owned()),
            id: id.map(str::to_owned),
            pattern: None,
            dry_run: false,
        }
    }

    #[tokio::test]
    async fn invalidate_removes_the_live_key_of_every_family_before_and_after_a_bump() {
        let config = Config::memory();
        let store = cachekit::connect(&config).await.unwrap();
        // The service whose cache is invalidated, with its own manager.
        let service = cachekit::cache_manager(store.clone(), &config).unwrap();
        let out = Out::new(true);
        for family in Family::ALL {
            let id = sample_id(family);
            let handle = service.family(family);
            for version in [0, 1] {
                if version == 1 {
                    assert_eq!(handle.bump_version().await.unwrap(), 1);
                }
                handle.set(id, &"cached").await.unwrap();
                let live = handle.key_of(id).await.unwrap();
                assert!(store.exists(&live).await.unwrap(), "{live}");

                run(args(family.name(), Some(id)), &config, store.clone(), &out)
                    .await
                    .unwrap();
                assert!(
                    !store.exists(&live).await.unwrap(),
                    "{family} v{version}: {live} survived"
                );
                assert_eq!(handle.get::<String>(id).await.unwrap(), None);
            }
            // Without an id: every key of the family.
            handle.set(id, &"cached").await.unwrap();
            let before = handle.count_matching(KeyMatch::All).await.unwrap();
            assert_eq!(before, 1, "{family}");
            run(args(family.name(), None), &config, store.clone(), &out)
                .await
                .unwrap();
            assert_eq!(handle.count_matching(KeyMatch::All).await.unwrap(), 0);
        }
    }

    #[tokio::test]
    async fn a_dry_run_deletes_nothing_and_session_families_are_refused() {
        let config = Config::memory();
        let store = cachekit::connect(&config).await.unwrap();
        let service = cachekit::cache_manager(store.clone(), &config).unwrap();
        service.metrics().set("api:2026-11-01", &1).await.unwrap();
        let out = Out::new(true);
        let mut dry = args("metrics", Some("api:2026-11-01"));
        dry.dry_run = true;
        run(dry, &config, store.clone(), &out).await.unwrap();
        let mut dry = args("metrics", None);
        dry.dry_run = true;
        run(dry, &config, store.clone(), &out).await.unwrap();
        assert!(service
            .metrics()
            .get::<i32>("api:2026-11-01")
            .await
            .unwrap()
            .is_some());

        for name in ["session", "session_index", "Session-Index"] {
            let err = run(args(name, Some("x")), &config, store.clone(), &out)
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains("cachectl sessions"), "{err}");
        }
        let err = run(args("nope", None), &config, store.clone(), &out)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown cache family"), "{err}");
        // A malformed metrics id is refused before anything is deleted.
        assert!(run(
            args("metrics", Some("no-date")),
            &config,
            store.clone(),
            &out
        )
        .await
        .is_err());
        assert_eq!(
            service
                .metrics()
                .count_matching(KeyMatch::All)
                .await
                .unwrap(),
            1
        );
    }
}
