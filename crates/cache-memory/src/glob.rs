//! Glob matching with exactly the rules of Redis (`stringmatchlen` in Redis's `util.c`), so that a
//! pattern selects the same keys in memory as `SCAN MATCH` selects on a server.
//!
//! - `*` matches any sequence of bytes (also the empty one), `?` exactly one byte;
//! - `[abc]` one byte of the set, `[a-z]` a range (a reversed range `[z-a]` is the same range),
//!   `[^a]` negates (only `^`: `[!a]` is the set of `!` and `a`, as in Redis);
//! - `\x` matches `x` literally, outside and inside brackets; a trailing `\` matches a backslash;
//! - an unterminated `[` takes the rest of the pattern as its set.
//!
//! Matching is on bytes (a `?` matches one byte of a multi-byte UTF-8 character, as in Redis), and
//! bytes compare as unsigned values in ranges. Like Redis, recursion depth is capped (a pattern with
//! more than 1000 `*` groups never matches) and a failed `*` does not retry with longer matches for
//! earlier `*`s, which keeps the worst case polynomial.

/// Whether `text` matches the Redis glob `pattern`.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let mut skip_longer = false;
    match_at(
        pattern.as_bytes(),
        0,
        text.as_bytes(),
        0,
        &mut skip_longer,
        0,
    )
}

/// The literal part of `pattern` before its first metacharacter: every matching key starts with it,
/// so a scan can begin there.
pub(crate) fn literal_prefix(pattern: &str) -> &str {
    let end = pattern.find(['*', '?', '[', '\\']).unwrap_or(pattern.len());
    &pattern[..end]
}

/// A port of Redis's `stringmatchlen_impl`. `pi` and `si` index the remaining pattern and text;
/// reading past the end of the pattern yields `0`, as reading the C string's terminator does.
fn match_at(
    pat: &[u8],
    mut pi: usize,
    s: &[u8],
    mut si: usize,
    skip_longer: &mut bool,
    nesting: u32,
) -> bool {
    if nesting > 1000 {
        return false;
    }
    let at = |i: usize| pat.get(i).copied().unwrap_or(0);
    while pi < pat.len() && si < s.len() {
        match pat[pi] {
            b'*' => {
                while pi < pat.len() && at(pi + 1) == b'*' {
                    pi += 1;
                }
                if pat.len() - pi == 1 {
                    return true;
                }
                while si < s.len() {
                    if match_at(pat, pi + 1, s, si, skip_longer, nesting + 1) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    si += 1;
                }
                // No match for the rest of the pattern anywhere in the rest of the text: longer
                // matches of earlier `*`s cannot help either.
                *skip_longer = true;
                return false;
            }
            b'?' => si += 1,
            b'[' => {
                pi += 1;
                let negate = at(pi) == b'^';
                if negate {
                    pi += 1;
                }
                let c = s[si];
                let mut matched = false;
                loop {
                    let remaining = pat.len().saturating_sub(pi);
                    if at(pi) == b'\\' && remaining >= 2 {
                        pi += 1;
                        if pat[pi] == c {
                            matched = true;
                        }
                    } else if remaining == 0 {
                        // Unterminated set: step back so that the advance below ends the pattern.
                        pi -= 1;
                        break;
                    } else if pat[pi] == b']' {
                        break;
                    } else if remaining >= 3 && pat[pi + 1] == b'-' {
                        let (lo, hi) = if pat[pi] <= pat[pi + 2] {
                            (pat[pi], pat[pi + 2])
                        } else {
                            (pat[pi + 2], pat[pi])
                        };
                        pi += 2;
                        if (lo..=hi).contains(&c) {
                            matched = true;
                        }
                    } else if pat[pi] == c {
                        matched = true;
                    }
                    pi += 1;
                }
                if negate {
                    matched = !matched;
                }
                if !matched {
                    return false;
                }
                si += 1;
            }
            first => {
                let literal = if first == b'\\' && pat.len() - pi >= 2 {
                    pi += 1;
                    pat[pi]
                } else {
                    first
                };
                if literal != s[si] {
                    return false;
                }
                si += 1;
            }
        }
        pi += 1;
        if si == s.len() {
            while at(pi) == b'*' {
                pi += 1;
            }
            break;
        }
    }
    pi >= pat.len() && si == s.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn yes(p: &str, s: &str) {
        assert!(glob_match(p, s), "{p:?} should match {s:?}");
    }

    #[track_caller]
    fn no(p: &str, s: &str) {
        assert!(!glob_match(p, s), "{p:?} should not match {s:?}");
    }

    #[test]
    fn literals_and_wildcards() {
        yes("abc", "abc");
        no("abc", "abd");
        no("abc", "ab");
        no("ab", "abc");
        yes("*", "anything");
        yes("a*", "a");
        yes("a*", "abc");
        yes("*c", "abc");
        yes("a*c", "ac");
        yes("a*b*c", "aXXbYYc");
        no("a*b*c", "aXXbYY");
        yes("a**c", "abc");
        yes("user:*", "user:42");
        no("user:*", "users:42");
        yes("?", "x");
        no("?", "");
        no("?", "xy");
        yes("a?c", "abc");
        no("a?c", "ac");
        // `?` is one byte, as in Redis: a two-byte character needs two.
        no("?", "é");
        yes("??", "é");
        yes("a*", "a*");
        yes("*:*:*", "a:b:c");
        no("*:*:*", "a:b");
    }

    #[test]
    fn empty_text_never_matches_a_non_empty_pattern_except_stars_after_a_match() {
        // Redis's loop does not run on an empty text, so even `*` does not match "" (keys are never
        // empty, so this never matters in a scan).
        no("*", "");
        yes("", "");
        no("", "a");
        yes("a*", "a");
        yes("a***", "a");
    }

    #[test]
    fn sets_and_ranges() {
        yes("[abc]", "b");
        no("[abc]", "d");
        yes("[a-z]", "m");
        no("[a-z]", "M");
        yes("[z-a]", "m");
        yes("x[0-9][0-9]", "x42");
        no("x[0-9][0-9]", "x4a");
        yes("[^a]", "b");
        no("[^a]", "a");
        yes("[^a-c]", "d");
        no("[^a-c]", "b");
        // `!` is not a negation in Redis.
        yes("[!a]", "!");
        yes("[!a]", "a");
        no("[!a]", "b");
        // A `]` right after `[` closes an empty set.
        no("[]a]", "a");
        no("[]", "]");
        yes("[^]", "x");
        // A leading `-` is literal; a trailing one forms a range with the closing `]`, which
        // leaves the set unterminated: `[a-]` is the range `]`..`a` (reversed), as in Redis.
        yes("[-a]", "-");
        no("[a-]", "-");
        yes("[a-]", "_");
        yes("[a-]", "a");
        yes("[a-]", "]");
        // A set consumes exactly one byte.
        no("[ab]", "ab");
        yes("[ab]*", "ab");
    }

    #[test]
    fn escapes() {
        yes("\\*", "*");
        no("\\*", "a");
        yes("\\?", "?");
        no("\\?", "a");
        yes("\\[x]", "[x]");
        yes("a\\\\b", "a\\b");
        yes("\\a", "a");
        // A trailing backslash matches itself.
        yes("a\\", "a\\");
        no("a\\", "a");
        // Escapes inside a set.
        yes("[\\]]", "]");
        yes("[\\^]", "^");
        no("[\\^]", "a");
        yes("[a\\-z]", "-");
        no("[a\\-z]", "m");
    }

    #[test]
    fn unterminated_sets_take_the_rest_of_the_pattern() {
        yes("[abc", "a");
        yes("[abc", "c");
        no("[abc", "d");
        no("[abc", "ab");
        // A `[` at the very end is an empty set: it matches nothing.
        no("x[", "x[");
        no("x[", "x");
        no("x[", "xa");
        yes("[^", "^");
        yes("[\\", "\\");
    }

    #[test]
    fn escaped_user_input_matches_only_itself() {
        for raw in ["*", "?", "[a-z]", "\\", "a*b?c[d]e\\f", "[^x]", "]"] {
            let pattern = cache_core::keys::glob_escape(raw);
            yes(&pattern, raw);
            no(&pattern, "zz");
            yes(&format!("user:{pattern}:*"), &format!("user:{raw}:tail"));
            no(&format!("user:{pattern}:*"), "user:other:tail");
        }
    }

    #[test]
    fn pathological_patterns_terminate() {
        let text = "a".repeat(200);
        let pattern = format!("{}b", "a*".repeat(50));
        no(&pattern, &text);
        let deep = "*a".repeat(1100);
        no(&deep, &"a".repeat(1100));
    }

    #[test]
    fn literal_prefixes() {
        assert_eq!(literal_prefix("user:*"), "user:");
        assert_eq!(literal_prefix("abc"), "abc");
        assert_eq!(literal_prefix("a?c"), "a");
        assert_eq!(literal_prefix("[ab]"), "");
        assert_eq!(literal_prefix("a\\*b"), "a");
    }
}
