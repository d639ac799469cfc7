//! Secrets out of output: connection URLs with their passwords replaced, for every message, log
//! line, `Debug` and report that names a server.
//!
//! [`redact_url`] handles every form a Redis URL (or a cluster seed) carries a password in:
//!
//! - the user-info part, with or without a scheme: `redis://user:pw@host`, `rediss://:pw@host`,
//!   `redis://pw@host`, `user:pw@host:7000`, a password that itself contains `@`, `/`, `?` or `#`;
//! - the query string of socket URLs: `redis+unix:///run/redis.sock?pass=pw`, `unix://...?password=pw`.
//!
//! Anything after the last `@` of the address is kept (host, port, database, path), so the result
//! still says where the server is.
//!
//! ```
//! use cache_core::redact::redact_url;
//! assert_eq!(redact_url("redis://app:s3cret@10.0.0.1:6379/2"), "redis://app:***@10.0.0.1:6379/2");
//! assert_eq!(redact_url("unix:///tmp/r.sock?db=1&pass=s3cret"), "unix:///tmp/r.sock?db=1&pass=***");
//! assert_eq!(redact_url(":s3cret@10.0.0.1:7000"), ":***@10.0.0.1:7000");
//! assert_eq!(redact_url("10.0.0.1:7000"), "10.0.0.1:7000");
//! ```

/// What replaces a secret.
pub const REDACTED: &str = "***";

/// Query parameters whose value is a secret (compared without case).
const SECRET_PARAMS: [&str; 2] = ["pass", "password"];

/// `url` with every password replaced by [`REDACTED`] (see the [module documentation](self)).
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let rest = match rest.rsplit_once('@') {
        Some((auth, host)) => {
            let auth = match auth.split_once(':') {
                Some((user, _)) => format!("{user}:{REDACTED}"),
                None => REDACTED.to_owned(),
            };
            format!("{auth}@{}", redact_query(host))
        }
        None => redact_query(rest),
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{rest}"),
        None => rest,
    }
}

/// Several URLs, redacted and joined with `,` (the form of `REDIS_CLUSTER_NODES`).
pub fn redact_urls<I, S>(urls: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    urls.into_iter()
        .map(|u| redact_url(u.as_ref()))
        .collect::<Vec<_>>()
        .join(",")
}

/// The secret values of the query string of `s` (after its first `?`) replaced.
fn redact_query(s: &str) -> String {
    let Some((base, query)) = s.split_once('?') else {
        return s.to_owned();
    };
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    let params: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if SECRET_PARAMS.iter().any(|p| name.eq_ignore_ascii_case(p)) => {
                format!("{name}={REDACTED}")
            }
            _ => pair.to_owned(),
        })
        .collect();
    let mut out = format!("{base}?{}", params.join("&"));
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_of_password_is_redacted() {
        let cases = [
            ("redis://u:pw1@h:1/0", "redis://u:***@h:1/0"),
            ("rediss://:pw1@h:1", "rediss://:***@h:1"),
            ("redis://pw1@h:1", "redis://***@h:1"),
            ("redis://u:p@w1@h:1", "redis://u:***@h:1"),
            ("redis://u:p/w?1#x@h:1", "redis://u:***@h:1"),
            ("u:pw1@h:7000", "u:***@h:7000"),
            (":pw1@h:7000", ":***@h:7000"),
            (
                "redis+unix:///tmp/r.sock?db=1&pass=pw1",
                "redis+unix:///tmp/r.sock?db=1&pass=***",
            ),
            (
                "unix:///tmp/r.sock?PASSWORD=pw1&user=u",
                "unix:///tmp/r.sock?PASSWORD=***&user=u",
            ),
            ("redis://h:1/0", "redis://h:1/0"),
            ("h:1", "h:1"),
            ("", ""),
        ];
        for (input, want) in cases {
            let got = redact_url(input);
            assert_eq!(got, want, "{input}");
            assert!(!got.contains("pw1"), "{input} -> {got}");
        }
        assert_eq!(
            redact_urls(["redis://:a1@h:1", "redis://:a1@h:2"]),
            "redis://:***@h:1,redis://:***@h:2"
        );
    }
}
