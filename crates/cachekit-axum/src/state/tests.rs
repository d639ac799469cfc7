//! Unit tests of the per-request session state.

use super::*;
use serde_json::{json, Value};

fn obj(v: Value) -> SessionData {
    match v {
        Value::Object(m) => m,
        _ => unreachable!("test input is an object"),
    }
}

/// Folding is exact: applying the fold equals applying the patches in turn, or it refuses.
#[test]
fn folds_only_when_exact() {
    let base = obj(json!({"a": {"x": 1, "y": 2}, "b": 1, "c": [1]}));
    let cases = [
        (json!({"b": 2}), json!({"c": null}), true),
        (
            json!({"a": {"x": 5}}),
            json!({"a": {"y": null, "z": 3}}),
            true,
        ),
        (json!({"a": 1}), json!({"a": {"z": 3}}), false),
        (json!({"a": null}), json!({"a": {"z": 3}}), false),
        (json!({"a": {"x": 5}}), json!({"a": 7}), true),
        (json!({"n": 1}), json!({"m": {"k": null}}), true),
    ];
    for (p1, p2, exact) in cases {
        let (p1, p2) = (obj(p1), obj(p2));
        let mut stepwise = base.clone();
        merge_patch(&mut stepwise, &p1);
        merge_patch(&mut stepwise, &p2);
        let mut acc = p1.clone();
        assert_eq!(fold(&mut acc, &p2), exact, "{p1:?} then {p2:?}");
        if exact {
            let mut once = base.clone();
            merge_patch(&mut once, &acc);
            assert_eq!(once, stepwise, "{p1:?} then {p2:?}");
        } else {
            assert_eq!(acc, p1);
        }
    }
}

#[test]
fn tokens_from_headers() {
    let token = SessionToken::generate().unwrap();
    let mut h = HeaderMap::new();
    h.insert(
        header::COOKIE,
        HeaderValue::from_str(&format!("a=1; sid=bad; sid={}", token.expose())).unwrap(),
    );
    assert!(matches!(from_cookies(&h, "sid"), Presented::Token(t) if t.handle() == token.handle()));
    assert!(matches!(from_cookies(&h, "other"), Presented::Nothing));
    h.insert(header::COOKIE, HeaderValue::from_static("sid=*; x=y"));
    assert!(matches!(from_cookies(&h, "sid"), Presented::Malformed));

    let mut h = HeaderMap::new();
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("bearer  {}", token.expose())).unwrap(),
    );
    assert!(matches!(from_bearer(&h), Presented::Token(_)));
    h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
    assert!(matches!(from_bearer(&h), Presented::Malformed));
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("Basic dTpw"),
    );
    assert!(matches!(from_bearer(&h), Presented::Nothing));
    assert!(matches!(from_bearer(&HeaderMap::new()), Presented::Nothing));
}
