//! The family tables written by hand in the docs (and in `src/family.rs`'s module docs) say what the
//! family table in the code says: key template, default TTL and environment variable of every
//! family. A change to the table that forgets a doc fails here, with the row to fix.

use std::time::Duration;

use cache_domain::Family;

/// "1 h", "30 min": how the docs write a TTL.
fn ttl_text(d: Duration) -> String {
    match d.as_secs() {
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s => format!("{} min", s / 60),
    }
}

fn read(rel: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_documented_family_table_agrees_with_the_code() {
    let docs = [
        "src/family.rs",
        "../../docs/key-schema.md",
        "../../docs/user-guide-cache.md",
    ];
    for doc in docs {
        let text = read(doc);
        for family in Family::ALL {
            let template = format!("`{}`", family.template());
            let row = text
                .lines()
                .find(|l| l.contains(&template) && l.contains('|'))
                .unwrap_or_else(|| panic!("{doc} has no table row for {template}"));
            let ttl = format!("| {} |", ttl_text(family.default_ttl()));
            let env = format!("`{}`", family.ttl_env_var());
            assert!(row.contains(&ttl), "{doc}: {row}\nshould say {ttl}");
            assert!(row.contains(&env), "{doc}: {row}\nshould name {env}");
        }
    }
}

#[test]
fn names_parse_and_serialise_as_documented() {
    for family in Family::ALL {
        assert_eq!(Family::from_name(family.name()).unwrap(), family);
        let json = serde_json::to_string(&family).unwrap();
        assert_eq!(json, format!("\"{}\"", family.name()));
        assert_eq!(
            family.ttl_env_var(),
            format!("CACHE_TTL_{}", family.name().to_ascii_uppercase())
        );
    }
    assert_eq!(
        Family::from_name("Keyword-Posts").unwrap(),
        Family::KeywordPosts
    );
    let err = Family::from_name("session").unwrap_err().to_string();
    assert!(
        err.contains("user_keywords") && err.contains("session"),
        "{err}"
    );
}
