//! The scenarios every backend runs: each is an `async fn(impl Fixture)`, and
//! [`session_scenarios!`](super::session_scenarios) turns each into one `#[tokio::test]` per
//! backend. A scenario opens its managers through the fixture, so it sees the backend's usual
//! settings and, with [`Fixture::connect`], as many connections to the same data as it needs.

use std::sync::Arc;
use std::time::Duration;

use cache_core::{Store, StoreExt};
use serde_json::{json, Value};
use sessions::keys::{index_key, session_key, SESSION, SESSION_INDEX};
use sessions::{CreateOptions, LimitLost, SessionManager};

use super::pausing::{self, Gate, PausingStore, Read};
use super::{
    assert_no_token_in_store, cancel_after_polls, exercise_every_operation, obj, tick, Fixture,
    OffsetClock,
};

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
        Value::Object((*s.data).clone()),
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
    assert_eq!(
        Value::Object(std::sync::Arc::unwrap_or_clone(s.data)),
        json!({"only": 1})
    );

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
    assert_eq!(Value::Object((*s.data).clone()), json!({"only": 1}));
    assert_eq!(s.created_at, created.session.created_at);
    assert_eq!(s.absolute_deadline, created.session.absolute_deadline);
    assert_eq!(s.idle_timeout, Duration::from_secs(7200));

    // list: exactly the rotated session, by handle
    let listed = m.list_user_sessions("alice").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].handle, rotated.session.handle);
    assert_eq!(Value::Object((*listed[0].data).clone()), json!({"only": 1}));

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
        Value::Object(std::sync::Arc::unwrap_or_clone(s.data)),
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
    let clock = f.clock();
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
        .with_clock(f.clock())
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
    let (gated_store, gate) = pausing::gated(f.connect().await);
    let gated = SessionManager::builder(gated_store)
        .with_clock(Arc::clone(plain.clock()))
        .build()
        .unwrap();
    (gated, gate, plain)
}

/// Issue 12, item 1: "sign out everywhere" while another request lists the user's sessions. One
/// task logs in repeatedly, another lists (and so repairs) the index the whole time, half of its
/// listings cancelled part-way, and after each completed login `revoke_all` runs while the listing
/// still goes on: no completed login survives it, in any of many rounds.
pub async fn sign_out_everywhere_while_listing(f: impl Fixture) {
    const ROUNDS: usize = 300;
    let clock = f.clock();
    let on = |store| {
        SessionManager::builder(store)
            .with_clock(Arc::clone(&clock))
            .build()
            .unwrap()
    };
    // Yielding stores: on memory, whose calls never wait, the tasks interleave between store
    // calls as they do on Redis.
    let login = on(pausing::yielding(f.connect().await, 8));
    let lister = on(pausing::yielding(f.connect().await, 8));
    let revoker = on(pausing::yielding(f.connect().await, 8));
    let user = "everywhere";
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listing = {
        let (lister, stop) = (lister.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut listings = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                // Every other listing is dropped part-way, as when a client goes away.
                let polls = if listings % 2 == 0 {
                    u32::MAX
                } else {
                    1 + (listings % 16) as u32
                };
                if let Some(listed) =
                    cancel_after_polls(lister.list_user_sessions(user), polls).await
                {
                    listed.unwrap();
                }
                listings += 1;
                tokio::task::yield_now().await;
            }
            listings
        })
    };
    let mut survivors = 0;
    for _ in 0..ROUNDS {
        let c = login.create(user, CreateOptions::new()).await.unwrap();
        // The login has completed; the listing is still running.
        revoker.revoke_all(user).await.unwrap();
        if revoker.get(c.token.expose()).await.unwrap().is_some() {
            survivors += 1;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(listing.await.unwrap() > 0, "the listing ran");
    assert_eq!(
        survivors, 0,
        "completed logins that survived sign-out-everywhere, of {ROUNDS}"
    );
}

/// Issue 12, item 2: simultaneous logins of one user with a per-user limit, each on its own
/// instance. With a limit of 1 and two logins, or a limit of 3 and four, exactly the limit survives
/// in every round: the newest by `(created_at, handle)`, whose callers got `Ok`; every other caller
/// either got `Ok` and was then outranked by a newer login, or learned it lost
/// (`LimitLost`), its session already removed.
pub async fn concurrent_logins_respect_the_limit(f: impl Fixture) {
    const ROUNDS: usize = 20;
    for (max, logins) in [(1usize, 2usize), (3, 4)] {
        let clock = f.clock();
        let mut managers = Vec::new();
        for _ in 0..logins {
            managers.push(
                SessionManager::builder(pausing::yielding(f.connect().await, 4))
                    .with_clock(Arc::clone(&clock))
                    .with_max_sessions_per_user(max)
                    .build()
                    .unwrap(),
            );
        }
        let m = &managers[0];
        for round in 0..ROUNDS {
            let user = format!("limit-{max}-{round}");
            let start = Arc::new(tokio::sync::Barrier::new(logins));
            let tasks: Vec<_> = managers
                .iter()
                .map(|m| {
                    let (m, user, start) = (m.clone(), user.clone(), Arc::clone(&start));
                    tokio::spawn(async move {
                        start.wait().await;
                        m.create(&user, CreateOptions::new()).await
                    })
                })
                .collect();
            let mut outcomes = Vec::new();
            for t in tasks {
                outcomes.push(t.await.unwrap());
            }
            // (created_at, handle) of every session created, and which of them were handed out.
            let mut created = Vec::new();
            for outcome in &outcomes {
                match outcome {
                    Ok(c) => created.push((
                        c.session.created_at,
                        c.session.handle.clone(),
                        Some(c.token.expose().to_owned()),
                    )),
                    Err(e) => {
                        let lost = LimitLost::find(e)
                            .unwrap_or_else(|| panic!("round {round}: unexpected error {e}"));
                        assert!(e.is_transient());
                        assert_eq!(lost.max, max);
                        assert!(
                            !m.store()
                                .exists(&session_key(&lost.handle).unwrap())
                                .await
                                .unwrap(),
                            "round {round}: the losing login's record is removed"
                        );
                    }
                }
            }
            let listed = m.list_user_sessions(&user).await.unwrap();
            assert_eq!(
                listed.len(),
                max,
                "round {round}: {logins} simultaneous logins with a limit of {max}"
            );
            // The survivors are the newest handed-out sessions, and their tokens work.
            created.sort_by(|a, b| (&b.0, b.1.as_str()).cmp(&(&a.0, a.1.as_str())));
            let mut newest: Vec<_> = created.iter().take(max).map(|c| c.1.clone()).collect();
            let mut survivors: Vec<_> = listed.iter().map(|s| s.handle.clone()).collect();
            newest.sort_by(|a, b| a.as_str().cmp(b.as_str()));
            survivors.sort_by(|a, b| a.as_str().cmp(b.as_str()));
            assert_eq!(survivors, newest, "round {round}: the newest survive");
            for (_, _, token) in created.iter().take(max) {
                let token = token.as_deref().unwrap();
                assert!(m.get(token).await.unwrap().is_some(), "round {round}");
            }
        }
    }
}

/// Issue 12, item 3: "sign out everywhere" racing a rotation. `revoke_all` reads the user's index,
/// and before it deletes anything the session is rotated (a new token, a new entry, the old record
/// retired): the rotated session existed when `revoke_all` was called, so it must not survive it.
pub async fn sign_out_everywhere_during_rotation(f: impl Fixture) {
    let (gated, gate, plain) = gated_and_plain(&f).await;
    let c = plain.create("rita", CreateOptions::new()).await.unwrap();
    let other = plain.create("rita", CreateOptions::new()).await.unwrap();
    gate.arm_after(Read::ZrangeByScore);
    let revoking = tokio::spawn(async move { gated.revoke_all("rita").await });
    // `revoke_all` has read the index (the two sessions) and waits.
    gate.reached().await;
    let rotated = plain
        .rotate(c.token.expose())
        .await
        .unwrap()
        .expect("rotated");
    gate.release();
    let revoked = revoking.await.unwrap().unwrap();
    assert!(
        plain.get(rotated.token.expose()).await.unwrap().is_none(),
        "the rotated session survived sign-out-everywhere"
    );
    assert!(plain.get(c.token.expose()).await.unwrap().is_none());
    assert!(plain.get(other.token.expose()).await.unwrap().is_none());
    assert_eq!(revoked, 2, "the other session and the rotated one");
    assert!(plain.list_user_sessions("rita").await.unwrap().is_empty());
}

/// "Sign out the other devices" racing a rotation of the session that asked for it, in both
/// orders: the rotation has written its new record and waits to retire the old one while
/// `revoke_all_except` runs; or `revoke_all_except` has read the index (the old handle, the other
/// session) and waits while the rotation completes. Either way the rotated session (the one the
/// user now holds) survives and the other device is signed out.
pub async fn sign_out_others_during_rotation_keeps_the_current_session(f: impl Fixture) {
    // Order 1: the rotation is held before its compare-and-swap retires the old record.
    let (gated, gate, plain) = gated_and_plain(&f).await;
    let current = plain.create("sven", CreateOptions::new()).await.unwrap();
    let other = plain.create("sven", CreateOptions::new()).await.unwrap();
    let token = current.token.expose().to_owned();
    gate.arm();
    let t = token.clone();
    let rotation = tokio::spawn(async move { gated.rotate(&t).await });
    gate.reached().await;
    let revoked = plain.revoke_all_except("sven", &token).await.unwrap();
    gate.release();
    let rotated = rotation.await.unwrap().unwrap().expect("rotated");
    assert_eq!(revoked, 1, "only the other device");
    assert!(
        plain.get(rotated.token.expose()).await.unwrap().is_some(),
        "signing out the other devices signed out the rotated current session"
    );
    assert!(plain.get(&token).await.unwrap().is_none(), "old token dead");
    assert!(plain.get(other.token.expose()).await.unwrap().is_none());
    let listed = plain.list_user_sessions("sven").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].handle, *rotated.token.handle());

    // Order 2: `revoke_all_except` is held after reading the index; the rotation completes, twice.
    let (gated, gate, plain) = gated_and_plain(&f).await;
    let current = plain.create("tess", CreateOptions::new()).await.unwrap();
    let other = plain.create("tess", CreateOptions::new()).await.unwrap();
    let token = current.token.expose().to_owned();
    gate.arm_after(Read::ZrangeByScore);
    let t = token.clone();
    let revoking = tokio::spawn(async move { gated.revoke_all_except("tess", &t).await });
    gate.reached().await;
    let once = plain.rotate(&token).await.unwrap().expect("rotated");
    let twice = plain
        .rotate(once.token.expose())
        .await
        .unwrap()
        .expect("rotated again");
    gate.release();
    assert_eq!(revoking.await.unwrap().unwrap(), 1, "only the other device");
    assert!(
        plain.get(twice.token.expose()).await.unwrap().is_some(),
        "signing out the other devices signed out the twice-rotated current session"
    );
    assert!(plain.get(other.token.expose()).await.unwrap().is_none());
    let listed = plain.list_user_sessions("tess").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].handle, *twice.token.handle());
}

/// Issue 12, item 4: a reader that judged a session expired deletes only the record it judged. Here
/// an instance whose clock runs 30 minutes ahead reads a session idle for 10 minutes (expired, by
/// its clock) and, before it deletes it, another instance extends the session: the extended session
/// stays, with its index entry. Checked on the two paths that delete expired records: `get` and a
/// listing.
pub async fn expired_on_access_deletes_only_what_it_judged(f: impl Fixture) {
    let plain = SessionManager::builder(f.connect().await)
        .with_clock(f.clock())
        .build()
        .unwrap();
    let (store, gate) = pausing::gated(f.connect().await);
    let ahead = SessionManager::builder(store)
        .with_clock(Arc::new(OffsetClock {
            base: f.clock(),
            offset: chrono::TimeDelta::minutes(30),
        }))
        .build()
        .unwrap();
    let opts = || {
        CreateOptions::new()
            .with_idle_timeout(Duration::from_secs(10 * 60))
            .with_absolute_lifetime(Duration::from_secs(60 * 60))
    };
    for (path, read) in [("listing", Read::GetMany), ("get", Read::GetEx)] {
        let user = format!("judged-{path}");
        let c = plain.create(&user, opts()).await.unwrap();
        let token = c.token.expose().to_owned();
        gate.arm_after(read);
        let judge = {
            let (ahead, token, user) = (ahead.clone(), token.clone(), user.clone());
            tokio::spawn(async move {
                if path == "get" {
                    assert!(
                        ahead.get(&token).await.unwrap().is_none(),
                        "expired by its clock"
                    );
                } else {
                    // Empty (as judged), or the session revived meanwhile: both are right.
                    ahead.list_user_sessions(&user).await.unwrap();
                }
            })
        };
        // The ahead instance has read the record and judged nothing yet.
        gate.reached().await;
        plain
            .extend(&token, Duration::from_secs(2 * 60 * 60))
            .await
            .unwrap()
            .expect("live for the instance with the right time");
        gate.release();
        judge.await.unwrap();
        assert!(
            plain.get(&token).await.unwrap().is_some(),
            "{path}: the extended session was deleted by a reader that judged the old record"
        );
        let listed = plain.list_user_sessions(&user).await.unwrap();
        assert_eq!(listed.len(), 1, "{path}: its index entry stays");
    }
}

/// Issue 12, item 6: one undecodable record, one malformed index member and two malformed index
/// keys deny nothing: the user's listing, a login under a per-user limit, "sign out everywhere" and
/// the cleanup of every user still work; the bad ones are skipped, counted and left for their TTL
/// (an unreadable record may be a newer version's).
pub async fn undecodable_records_deny_nothing(f: impl Fixture) {
    let m = &SessionManager::builder(f.connect().await)
        .with_clock(f.clock())
        .with_max_sessions_per_user(3)
        .build()
        .unwrap();
    let store = m.store();
    let first = m.create("ursula", CreateOptions::new()).await.unwrap();
    tick().await;
    let second = m.create("ursula", CreateOptions::new()).await.unwrap();
    let others = m.create("victor", CreateOptions::new()).await.unwrap();
    let index = index_key("ursula").unwrap();
    // A record that does not decode, indexed as create would index it, and a member that is not a
    // handle at all.
    let bad = sessions::SessionToken::generate().unwrap();
    let bad_key = session_key(bad.handle()).unwrap();
    store
        .set(
            &bad_key,
            b"{\"v\":1,\"d\":\"not a session\"}",
            cache_core::SetOptions::ttl(Duration::from_secs(600)),
        )
        .await
        .unwrap();
    let deadline = first.session.absolute_deadline.timestamp_millis() as f64;
    store
        .zadd(&index, bad.handle().as_str(), deadline)
        .await
        .unwrap();
    store.zadd(&index, "not-a-handle", deadline).await.unwrap();
    // Index keys that are not ours to read: an id that is no valid escape, and a string.
    let odd = cache_core::keys::Key::new(format!("{}%zz", SESSION_INDEX.prefix)).unwrap();
    store.zadd(&odd, "x", deadline).await.unwrap();
    let wrong = index_key("wrong-type").unwrap();
    store
        .set(
            &wrong,
            b"a string",
            cache_core::SetOptions::ttl(Duration::from_secs(600)),
        )
        .await
        .unwrap();

    // Listing: the two good sessions, oldest first.
    let listed = m.list_user_sessions("ursula").await.unwrap();
    let handles: Vec<_> = listed.iter().map(|s| s.handle.clone()).collect();
    assert_eq!(
        handles,
        [first.session.handle.clone(), second.session.handle.clone()]
    );
    // The bad record and the odd member stay (the record may be a newer version's).
    assert!(store.exists(&bad_key).await.unwrap());
    assert_eq!(store.zcard(&index).await.unwrap(), 4);

    // Cleanup visits every index, skipping and counting what it cannot read.
    let report = m.cleanup().await.unwrap();
    assert_eq!(report.undecodable_records_skipped, 1, "{report:?}");
    assert_eq!(report.malformed_entries_skipped, 1, "{report:?}");
    assert_eq!(report.malformed_indexes_skipped, 2, "{report:?}");
    assert_eq!(report.entries_remaining, 3, "{report:?}");

    // A login under the limit of 3: the unreadable record does not count, nobody is revoked.
    tick().await;
    let third = m.create("ursula", CreateOptions::new()).await.unwrap();
    for s in [&first, &second, &third] {
        assert!(m.get(s.token.expose()).await.unwrap().is_some());
    }

    // Sign out everywhere ends the unreadable record too: it is in the user's index.
    assert_eq!(m.revoke_all("ursula").await.unwrap(), 4);
    assert!(!store.exists(&bad_key).await.unwrap());
    assert!(m.list_user_sessions("ursula").await.unwrap().is_empty());
    assert!(m.get(others.token.expose()).await.unwrap().is_some());
}
