//! The environment variables a configuration reader asks for, recorded, so that a property test
//! can draw from exactly the variables the code reads instead of a list written by hand that falls
//! behind it.
//!
//! ```
//! use cache_testing::env::variables_read;
//!
//! // A reader that needs `URL` and then reads `TIMEOUT` when it is given one.
//! let read = |lookup: &dyn Fn(&str) -> Option<String>| {
//!     let url = lookup("URL").ok_or("URL is missing")?;
//!     let _timeout = lookup("TIMEOUT");
//!     Ok::<_, &str>(url)
//! };
//! assert_eq!(variables_read(&[&[("URL", "redis://x")]], read), ["TIMEOUT", "URL"]);
//! ```

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt::Debug;

/// The names `read` asks its lookup for, over every environment of `selectors` (each a list of
/// `(name, value)`; the lookup answers `None` for any other name), sorted and without repeats.
///
/// Pick selectors that take the reader down each of its branches (one per backend or endpoint,
/// say): a reader only asks for what the branch it takes reads.
///
/// # Panics
///
/// When `read` fails in one of the selector environments: a selector that does not configure a
/// working setup records only the names read before the failure.
pub fn variables_read<T, E: Debug>(
    selectors: &[&[(&str, &str)]],
    read: impl Fn(&dyn Fn(&str) -> Option<String>) -> Result<T, E>,
) -> Vec<String> {
    let asked = RefCell::new(BTreeSet::new());
    for env in selectors {
        let lookup = |name: &str| {
            asked.borrow_mut().insert(name.to_owned());
            env.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        };
        if let Err(e) = read(&lookup) {
            panic!("cache-testing: reading the selector environment {env:?} failed: {e:?}");
        }
    }
    asked.into_inner().into_iter().collect()
}
