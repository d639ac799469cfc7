//! Glob matching agrees with a real Redis server on recorded cases (`tests/data/glob_redis_7.0.txt`:
//! 400 random patterns over 60 keys built from `ab-]^![*?\`, answered by `KEYS` on Redis 7.0.15).

use cache_memory::glob_match;

#[test]
fn glob_matches_recorded_redis_answers() {
    let data = include_str!("data/glob_redis_7.0.txt");
    let mut keys = Vec::new();
    let mut checked = 0;
    for line in data.lines().filter(|l| !l.starts_with('#')) {
        let (left, right) = line.split_once('\t').expect("fixture lines have a tab");
        if left == "key" {
            keys.push(right);
            continue;
        }
        assert_eq!(right.len(), keys.len(), "fixture row for {left:?}");
        for (key, bit) in keys.iter().zip(right.bytes()) {
            assert_eq!(
                glob_match(left, key),
                bit == b'1',
                "pattern {left:?} on key {key:?}: Redis says {}",
                bit == b'1'
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 400 * 60);
}
