//! A panicking eviction listener never reaches a cache caller: its panics are caught and
//! counted, it keeps being called for later removals, and read-only inspection (`len`,
//! `is_empty`, `Debug`, `stats`) runs no user callback at all.

use std::sync::Arc;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cachet::{Cache, Clock, MockClock, RemovalCause};

/// Marker in the listener's panic messages; the panic hook keeps them out of the test output.
const INTENDED: &str = "[intended panic]";

fn quiet_intended_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or("");
            if !msg.contains(INTENDED) {
                default(info);
            }
        }));
    });
}

/// A cache with a 10-second time-to-live on `time`, whose listener counts its calls in `calls`
/// and panics on every one.
fn panicking(time: &MockClock, shards: usize) -> (Cache<u64, u64>, Arc<AtomicU64>) {
    quiet_intended_panics();
    let calls = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&calls);
    let cache = Cache::builder()
        .max_capacity(1_000)
        .shards(shards)
        .time_to_live(Duration::from_secs(10))
        .clock(Clock::mock(time))
        .record_stats()
        .eviction_listener(move |_: u64, _: u64, _: RemovalCause| {
            counted.fetch_add(1, Ordering::SeqCst);
            panic!("{INTENDED} listener");
        })
        .build()
        .unwrap();
    (cache, calls)
}

#[test]
fn reads_of_other_keys_survive_a_listener_that_always_panics() {
    for shards in [1, 8] {
        let time = MockClock::new();
        let (cache, calls) = panicking(&time, shards);
        for k in 0..100 {
            cache.insert(k, k);
        }
        time.advance(Duration::from_secs(11));
        cache.insert(1_000, 1); // lives on
        // Each of these may find expired entries to remove: the listener panics on each.
        assert_eq!(cache.get(&5_000), None);
        assert_eq!(cache.get(&1_000), Some(1));
        assert_eq!(cache.peek(&1_000), Some(1));
        assert!(cache.contains_key(&1_000));
        let _ = cache.len();
        let _ = cache.is_empty();
        let _ = format!("{cache:?}");
        let seen: Vec<(u64, u64)> = cache.iter().collect();
        assert_eq!(seen, [(1_000, 1)]);
        cache.run_pending_maintenance();
        assert_eq!(cache.len(), 1);
        assert_eq!(calls.load(Ordering::SeqCst), 100, "{shards} shards");
        cache.validate().unwrap();
    }
}

#[test]
fn writes_and_loads_survive_a_listener_that_always_panics() {
    let time = MockClock::new();
    let (cache, calls) = panicking(&time, 4);
    cache.insert(1, 1);
    assert_eq!(cache.insert(1, 2), Some(1)); // Replaced: the listener panics
    assert_eq!(cache.remove(&1), Some(2)); // Explicit: it panics again
    for k in 0..50 {
        cache.insert(k, k);
    }
    time.advance(Duration::from_secs(11));
    // The loader's value is stored by a write that also removes expired entries.
    assert_eq!(cache.get_or_load(&500, || 7), 7);
    assert_eq!(cache.get(&500), Some(7));
    assert_eq!(cache.compute(&501, |_| cachet::Compute::Put(8)), Some(8));
    cache.retain(|_, _| true);
    cache.invalidate_all();
    assert!(cache.is_empty());
    assert_eq!(calls.load(Ordering::SeqCst), 2 + 50 + 2);
    cache.validate().unwrap();
}

#[test]
fn listener_panics_are_counted_and_the_listener_keeps_being_called() {
    let time = MockClock::new();
    let (cache, calls) = panicking(&time, 1);
    for k in 0..10 {
        cache.insert(k, k);
        cache.remove(&k);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 10);
    assert_eq!(cache.stats().listener_panics, 10);
}

/// `len`, `is_empty`, `weighted_size`, `stats` and `Debug` look without touching: expired
/// entries stay where they are (and are counted) until something removes them, and no listener
/// runs.
#[test]
fn inspection_runs_no_listener() {
    let time = MockClock::new();
    let calls = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&calls);
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(1_000)
        .time_to_live(Duration::from_secs(10))
        .clock(Clock::mock(&time))
        .eviction_listener(move |_, _, _| {
            counted.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    for k in 0..10 {
        cache.insert(k, k);
    }
    time.advance(Duration::from_secs(11));
    let _ = format!("{cache:?}");
    let _ = cache.len();
    let _ = cache.is_empty();
    let _ = cache.weighted_size();
    let _ = cache.stats();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "inspection ran the listener"
    );
    cache.run_pending_maintenance();
    assert_eq!(calls.load(Ordering::SeqCst), 10);
    assert!(cache.is_empty());
}
