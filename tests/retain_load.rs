//! `retain` and the loads in flight: a load has no value for the predicate to judge yet, and it
//! may have read what the `retain` meant to drop, so `retain` supersedes every load in flight in
//! the cache, as `insert`, `remove` and `invalidate_all` supersede the loads of their keys. The
//! callers of a superseded load still receive its value; it is not stored.

#[path = "common/loaders.rs"]
mod loaders;

use cachet::Cache;
use loaders::blocked_leader;

fn retained_during_a_load(keep: fn(&u64, &u64) -> bool) -> Cache<u64, u64> {
    let cache: Cache<u64, u64> = Cache::new(1_000);
    cache.insert(2, 20);
    let (leader, release) = blocked_leader(&cache, |c, gate| {
        c.get_or_load(&1, || {
            gate();
            10
        })
    });
    cache.retain(keep);
    release.send(()).unwrap();
    assert_eq!(leader.join().unwrap(), 10, "the leader receives its value");
    cache.validate().unwrap();
    cache
}

#[test]
fn a_load_in_flight_during_retain_is_not_stored() {
    let cache = retained_during_a_load(|_, _| false);
    assert_eq!(
        cache.get(&1),
        None,
        "retain(|_, _| false) left a loaded value behind"
    );
    assert!(cache.is_empty());
}

#[test]
fn retain_supersedes_loads_whatever_it_keeps() {
    let cache = retained_during_a_load(|_, _| true);
    assert_eq!(cache.get(&1), None);
    assert_eq!(cache.get(&2), Some(20));
}

/// The next caller after the superseded load loads the key afresh.
#[test]
fn the_key_loads_again_after_a_superseded_load() {
    let cache = retained_during_a_load(|_, _| false);
    assert_eq!(cache.get_or_load(&1, || 11), 11);
    assert_eq!(cache.get(&1), Some(11));
}
