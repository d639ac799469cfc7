//! The scenarios every backend runs: each is an `async fn(impl Fixture)`, and
//! [`session_scenarios!`](super::session_scenarios) turns each into one `#[tokio::test]` per
//! backend. A scenario opens its managers through the fixture, so it sees the backend's usual
//! settings and, with [`Fixture::connect`], as many connections to the same data as it needs.

use std::sync::Arc;
use std::time::Duration;

use cache_core::{Store, StoreExt};
use serde_json::{json, Value};
use sessions::keys::{index_key, session_key, SESSION};
use sessions::{Clock, CreateOptions, SessionManager, TokioClock};

use super::pausing::{pausing, Gate, PausingStore};
use super::{assert_no_token_in_store, exercise_every_operation, obj, tick, Fixture};

/// The whole lifecycle on one manager.
pub async fn lifecycle(f: impl Fixture) {
    let m = &f.manager().await;
    let created = m
        .create(
            "alice",
            CreateOptions::new().with_data(obj(json!({"cart": [1], "profile": {"lang": "en"}}))),
        )
        .await
        .unwrap();
    let token = created.token.expose().to_owned();
    assert_eq!(created.session.user_id, "alice");
    assert_eq!(created.session.handle, *created.token.handle());

    // get
    let s = m.get(&token).await.unwrap().expect("live after create");
    assert_eq!(s.data["cart"], json!([1]));
    assert_eq!(s.handle, created.session.handle);
    assert_eq!(s.created_at, created.session.created_at);

    // update: merge patch
    let s = m
        .update(
            &token,
            &obj(json!({"cart": [1, 2], "profile": {"tz": "UTC"}, "flag": true})),
        )
        .await
        .unwrap()
        .expect("update of a live session");
    assert_eq!(
        Value::Object(s.data.clone()),
        json!({"cart": [1, 2], "profile": {"lang": "en", "tz": "UTC"}, "flag": true})
    );
    let s = m
        .update(&token, &obj(json!({"flag": null})))
        .await
        .unwrap()
        .unwrap();
    assert!(!s.data.contains_key("flag"));
    assert_eq!(
        m.get(&token).await.unwrap().unwrap().data,
        s.data,
        "get sees the update"
    );

    // replace
    let s = m
        .replace(&token, obj(json!({"only": 1})))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(Value::Object(s.data), json!({"only": 1}));

    // extend: a new idle timeout, never past the absolute deadline
    let s = m
        .extend(&token, Duration::from_secs(7200))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.idle_timeout, Duration::from_secs(7200));
    assert!(s.expires_at() <= s.absolute_deadline);
    let got = m.get(&token).await.unwrap().unwrap();
    assert_eq!(got.idle_timeout, Duration::from_secs(7200));

    // rotate: new token, same session, old token dead
    let rotated = m
        .rotate(&token)
        .await
        .unwrap()
        .expect("rotate a live session");
    let new_token = rotated.token.expose().to_owned();
    assert_ne!(new_token, token);
    assert_ne!(rotated.session.handle, created.session.handle);
    assert!(m.get(&token).await.unwrap().is_none(), "old token dead");
    assert!(m
        .update(&token, &obj(json!({"x": 1})))
        .await
        .unwrap()
        .is_none());
    let s = m.get(&new_token).await.unwrap().expect("new token works");
    assert_eq!(Value::Object(s.data.clone()), json!({"only": 1}));
    assert_eq!(s.created_at, created.session.created_at);
    assert_eq!(s.absolute_deadline, created.session.absolute_deadline);
    assert_eq!(s.idle_timeout, Duration::from_secs(7200));

    // list: exactly the rotated session, by handle
    let listed = m.list_user_sessions("alice").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].handle, rotated.session.handle);
    assert_eq!(Value::Object(listed[0].data.clone()), json!({"only": 1}));

    // delete
    assert!(m.delete(&new_token).await.unwrap());
    assert!(m.get(&new_token).await.unwrap().is_none());
    assert!(!m.delete(&new_token).await.unwrap());
    assert!(m.list_user_sessions("alice").await.unwrap().is_empty());
    let index = index_key("alice").unwrap();
    assert_eq!(m.store().zcard(&index).await.unwrap(), 0);
}

/// An update, replace, extend or rotate after a delete finds nothing and creates nothing.
pub async fn no_resurrection(f: impl Fixture) {
    let m = &f.manager().await;
    let c = m.create("bob", CreateOptions::new()).await.unwrap();
    let token = c.token.expose().to_owned();
    let key = session_key(c.token.handle()).unwrap();
    assert!(m.delete(&token).await.unwrap());
    assert!(m
        .update(&token, &obj(json!({"a": 1})))
        .await
        .unwrap()
        .is_none());
    assert!(m
        .replace(&token, obj(json!({"a": 1})))
        .await
        .unwrap()
        .is_none());
    assert!(m
        .extend(&token, Duration::from_secs(60))
        .await
        .unwrap()
        .is_none());
    assert!(m.rotate(&token).await.unwrap().is_none());
    assert!(m.get(&token).await.unwrap().is_none());
    assert!(
        !m.store().exists(&key).await.unwrap(),
        "nothing was recreated"
    );
    assert!(m.list_user_sessions("bob").await.unwrap().is_empty());
}

/// A late update (its read before a delete, its write after) does not bring the session back.
pub async fn late_update_does_not_resurrect(f: impl Fixture) {
    let (gated, gate, plain) = gated_and_plain(&f).await;
    let c = plain.create("carol", CreateOptions::new()).await.unwrap();
    let token = c.token.expose().to_owned();
    gate.arm();
    let t = token.clone();
    let late = tokio::spawn(async move { gated.update(&t, &obj(json!({"late": true}))).await });
    gate.reached().await; // The update has read the record and waits before its CAS.
    assert!(plain.delete(&token).await.unwrap());
    gate.release();
    let outcome = late.await.unwrap().unwrap();
    assert!(outcome.is_none(), "the late update reports no session");
    let key = session_key(c.token.handle()).unwrap();
    assert!(
        !plain.store().exists(&key).await.unwrap(),
        "not resurrected"
    );
    assert!(plain.get(&token).await.unwrap().is_none());
}

/// An update that lands on the old token while a rotation copies the session is carried over.
pub async fn update_during_rotation_is_kept(f: impl Fixture) {
    let (gated, gate, plain) = gated_and_plain(&f).await;
    let c = plain
        .create("dave", CreateOptions::new().with_data(obj(json!({"a": 1}))))
        .await
        .unwrap();
    let token = c.token.expose().to_owned();
    gate.arm();
    let t = token.clone();
    let rotation = tokio::spawn(async move { gated.rotate(&t).await });
    // The rotation wrote the new record and waits before deleting the old one by CAS.
    gate.reached().await;
    let updated = plain
        .update(&token, &obj(json!({"b": 2})))
        .await
        .unwrap()
        .expect("old token still valid until the rotation returns");
    assert_eq!(updated.data["b"], 2);
    gate.release();
    let rotated = rotation.await.unwrap().unwrap().expect("rotated");
    assert!(plain.get(&token).await.unwrap().is_none(), "old token dead");
    let s = plain
        .get(rotated.token.expose())
        .await
        .unwrap()
        .expect("new token works");
    assert_eq!(
        Value::Object(s.data),
        json!({"a": 1, "b": 2}),
        "update kept"
    );
    let listed = plain.list_user_sessions("dave").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].handle, *rotated.token.handle());
}

/// A session deleted while a rotation copies it stays deleted, and the copy is removed.
pub async fn delete_during_rotation_wins(f: impl Fixture) {
    let (gated, gate, plain) = gated_and_plain(&f).await;
    let before = plain
        .store()
        .scan_all(&SESSION.pattern(), 100)
        .await
        .unwrap();
    let c = plain.create("erin", CreateOptions::new()).await.unwrap();
    let token = c.token.expose().to_owned();
    gate.arm();
    let t = token.clone();
    let rotation = tokio::spawn(async move { gated.rotate(&t).await });
    gate.reached().await;
    assert!(plain.delete(&token).await.unwrap());
    gate.release();
    assert!(rotation.await.unwrap().unwrap().is_none());
    assert!(plain.list_user_sessions("erin").await.unwrap().is_empty());
    let keys = plain
        .store()
        .scan_all(&SESSION.pattern(), 100)
        .await
        .unwrap();
    assert_eq!(keys, before, "no copy left behind");
}

/// 100 concurrent merges of distinct fields through two managers: all survive.
pub async fn concurrent_merges(f: impl Fixture) {
    // Two managers with their own connections, as two service instances would have, on one clock.
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let a = SessionManager::builder(f.connect().await)
        .with_clock(Arc::clone(&clock))
        .build()
        .unwrap();
    let b = SessionManager::builder(f.connect().await)
        .with_clock(clock)
        .build()
        .unwrap();
    let c = a.create("frank", CreateOptions::new()).await.unwrap();
    let token = c.token.expose().to_owned();
    let mut tasks = Vec::new();
    for i in 0..100 {
        let patch = obj(json!({ format!("f{i}"): i }));
        let t = token.clone();
        if i % 2 == 0 {
            let m = a.clone();
            tasks.push(tokio::spawn(async move { m.update(&t, &patch).await }));
        } else {
            let m = b.clone();
            tasks.push(tokio::spawn(async move { m.update(&t, &patch).await }));
        }
    }
    for t in tasks {
        t.await.unwrap().unwrap().expect("session stays live");
    }
    let s = b.get(&token).await.unwrap().unwrap();
    for i in 0..100 {
        assert_eq!(s.data.get(&format!("f{i}")), Some(&json!(i)), "f{i} lost");
    }
    assert_eq!(s.data.len(), 100);
}

/// Listing, revoking by handle (with and without an owner check), revoking all / all but one.
pub async fn per_user_operations(f: impl Fixture) {
    let m = &f.manager().await;
    let mut tokens = Vec::new();
    for i in 0..3 {
        let c = m
            .create(
                "grace",
                CreateOptions::new().with_data(obj(json!({ "device": i }))),
            )
            .await
            .unwrap();
        tokens.push(c);
        tick().await;
    }
    let other = m.create("heidi", CreateOptions::new()).await.unwrap();

    let listed = m.list_user_sessions("grace").await.unwrap();
    assert_eq!(listed.len(), 3);
    for (i, s) in listed.iter().enumerate() {
        assert_eq!(s.data["device"], i, "oldest first");
        assert_eq!(s.handle, *tokens[i].token.handle());
        assert!(s.expires_at() > s.last_accessed);
        // A handle is not a token.
        assert!(m.get(s.handle.as_str()).await.is_err());
    }

    // Revoke by handle with an owner check: heidi cannot revoke grace's session.
    assert!(!m
        .revoke_for_user("heidi", tokens[0].token.handle())
        .await
        .unwrap());
    assert!(m.get(tokens[0].token.expose()).await.unwrap().is_some());
    assert!(m
        .revoke_for_user("grace", tokens[0].token.handle())
        .await
        .unwrap());
    assert!(m.get(tokens[0].token.expose()).await.unwrap().is_none());
    assert_eq!(m.list_user_sessions("grace").await.unwrap().len(), 2);

    // Revoke by handle (admin).
    assert!(m.revoke(tokens[1].token.handle()).await.unwrap());
    assert!(!m.revoke(tokens[1].token.handle()).await.unwrap());

    // All but the current one.
    let extra = m.create("grace", CreateOptions::new()).await.unwrap();
    assert_eq!(
        m.revoke_all_except("grace", tokens[2].token.expose())
            .await
            .unwrap(),
        1
    );
    assert!(m.get(extra.token.expose()).await.unwrap().is_none());
    assert!(m.get(tokens[2].token.expose()).await.unwrap().is_some());
    assert!(m.revoke_all_except("grace", "not a token").await.is_err());

    // All.
    assert_eq!(m.revoke_all("grace").await.unwrap(), 1);
    assert!(m.list_user_sessions("grace").await.unwrap().is_empty());
    assert!(m.get(tokens[2].token.expose()).await.unwrap().is_none());
    // Other users untouched.
    assert!(m.get(other.token.expose()).await.unwrap().is_some());
    assert_eq!(m.revoke_all("heidi").await.unwrap(), 1);
}

/// With a maximum of 2 sessions per user, a third revokes the oldest.
pub async fn max_sessions_rule(f: impl Fixture) {
    let m = &SessionManager::builder(f.connect().await)
        .with_max_sessions_per_user(2)
        .build()
        .unwrap();
    let s1 = m.create("ivan", CreateOptions::new()).await.unwrap();
    tick().await;
    let s2 = m.create("ivan", CreateOptions::new()).await.unwrap();
    tick().await;
    let s3 = m.create("ivan", CreateOptions::new()).await.unwrap();
    assert!(
        m.get(s1.token.expose()).await.unwrap().is_none(),
        "oldest revoked"
    );
    assert!(m.get(s2.token.expose()).await.unwrap().is_some());
    assert!(m.get(s3.token.expose()).await.unwrap().is_some());
    let handles: Vec<_> = m
        .list_user_sessions("ivan")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.handle)
        .collect();
    assert_eq!(
        handles,
        [s2.token.handle().clone(), s3.token.handle().clone()]
    );
    // Another user's limit is separate.
    m.create("judy", CreateOptions::new()).await.unwrap();
    assert_eq!(m.list_user_sessions("ivan").await.unwrap().len(), 2);
    let index = index_key("ivan").unwrap();
    assert_eq!(m.store().zcard(&index).await.unwrap(), 2);
}

/// Malformed tokens are input errors on every token-taking method.
pub async fn malformed_tokens_rejected(f: impl Fixture) {
    assert_malformed_tokens_rejected(&f.manager().await).await;
}

/// The assertions of [`malformed_tokens_rejected`], on any manager (the mock suite runs them on a
/// store that fails the test if it is called at all).
pub async fn assert_malformed_tokens_rejected<S: Store>(m: &SessionManager<S>) {
    let long = "A".repeat(100_000);
    let bad = [
        "",
        "*",
        "session:*",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA?",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA*",
        "[AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        " AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        long.as_str(),
    ];
    for t in bad {
        let is_input = |e: cache_core::Error| matches!(e, cache_core::Error::InvalidInput(_));
        assert!(is_input(m.get(t).await.unwrap_err()), "{t:.50}");
        assert!(is_input(
            m.update(t, &obj(json!({"a": 1}))).await.unwrap_err()
        ));
        assert!(is_input(m.replace(t, obj(json!({}))).await.unwrap_err()));
        assert!(is_input(
            m.extend(t, Duration::from_secs(1)).await.unwrap_err()
        ));
        assert!(is_input(m.rotate(t).await.unwrap_err()));
        assert!(is_input(m.delete(t).await.unwrap_err()));
        assert!(is_input(m.revoke_all_except("u", t).await.unwrap_err()));
    }
}

/// No token anywhere in the store: not in a key, not in a value, not in an index.
pub async fn no_token_in_store(f: impl Fixture) {
    let m = f.manager().await;
    let tokens = exercise_every_operation(&m).await;
    assert_no_token_in_store(m.store(), &tokens).await;
}

/// A manager whose next compare-and-swap can be held (`gated`), the gate that holds it, and the
/// backend's usual manager (`plain`), sharing data and clock.
async fn gated_and_plain<F: Fixture>(
    f: &F,
) -> (
    SessionManager<PausingStore<F::Store>>,
    Arc<Gate>,
    SessionManager<F::Store>,
) {
    let plain = f.manager().await;
    let (gated_store, gate) = pausing(f.connect().await);
    let gated = SessionManager::builder(gated_store)
        .with_clock(Arc::clone(plain.clock()))
        .build()
        .unwrap();
    (gated, gate, plain)
}
