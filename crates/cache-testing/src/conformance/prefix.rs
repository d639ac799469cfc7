//! Prefixes: two prefixes over one backend never see each other's keys, and `flush_prefix` stays
//! inside its own (and refuses to run without one).

use super::support::*;
use cache_core::keys::glob_escape;
use cache_core::{SetOptions, Store, StoreExt};

/// Two prefixes over one backend never see each other's keys; flushing one leaves the other intact;
/// the prefix is `prefix:` in front of the key on the backend; a store without a prefix refuses to
/// flush. **Flushes `other_prefix` entirely.**
pub async fn check_prefix_isolation(
    store: &dyn Store,
    other_prefix: &dyn Store,
    unprefixed: &dyn Store,
) {
    let ns = namespace("prefix");
    let k = format!("{ns}:shared-name");
    assert!(set(store, &k, b"mine", SetOptions::new()).await);
    assert!(set(other_prefix, &k, b"theirs", SetOptions::new()).await);
    assert_eq!(get(store, &k).await.as_deref(), Some(&b"mine"[..]));
    assert_eq!(get(other_prefix, &k).await.as_deref(), Some(&b"theirs"[..]));
    let only_theirs = format!("{ns}:only-theirs");
    assert!(set(other_prefix, &only_theirs, b"x", SetOptions::new()).await);
    must(
        other_prefix.zadd(&format!("{ns}:z"), "m", 1.0).await,
        "zadd",
    );
    assert_eq!(get(store, &only_theirs).await, None);
    assert!(!must(store.exists(&only_theirs).await, "exists"));
    assert_eq!(must(store.zcard(&format!("{ns}:z")).await, "zcard"), 0);

    // The backend key is "<prefix>:<key>".
    let raw = format!("{}:{k}", store.prefix());
    assert_eq!(get(unprefixed, &raw).await.as_deref(), Some(&b"mine"[..]));
    let raw_other = format!("{}:{k}", other_prefix.prefix());
    assert_eq!(
        get(unprefixed, &raw_other).await.as_deref(),
        Some(&b"theirs"[..])
    );

    // Scans stay inside their prefix.
    let mine = must(store.scan_all("*", 100).await, "scan mine");
    assert!(mine.contains(&k));
    assert!(
        !mine.contains(&only_theirs),
        "scan saw another prefix's key"
    );
    let esc = glob_escape(&ns);
    let theirs = must(
        other_prefix.scan_all(&format!("{esc}:*"), 100).await,
        "scan theirs",
    );
    assert_eq!(theirs.len(), 3, "other prefix: {theirs:?}");

    // Deleting in one prefix leaves the other alone.
    assert_eq!(must(store.delete(&[&only_theirs]).await, "delete"), 0);
    assert_eq!(
        get(other_prefix, &only_theirs).await.as_deref(),
        Some(&b"x"[..])
    );

    // Flushing is refused without a prefix, and nothing is deleted.
    must_be_invalid(unprefixed.flush_prefix().await, "flush without prefix");
    assert_eq!(get(store, &k).await.as_deref(), Some(&b"mine"[..]));

    // Flushing one prefix empties it and leaves the other intact.
    let flushed = must(other_prefix.flush_prefix().await, "flush other");
    assert!(
        flushed >= 3,
        "flush_prefix reported {flushed} keys, wrote 3"
    );
    assert!(
        must(other_prefix.scan_all("*", 100).await, "scan after flush").is_empty(),
        "the flushed prefix still has keys"
    );
    assert_eq!(get(other_prefix, &k).await, None);
    assert_eq!(
        get(store, &k).await.as_deref(),
        Some(&b"mine"[..]),
        "survived"
    );
    cleanup(store, &ns).await;
}
