//! Statistics (`record_stats`, `Cache::stats`): every counter moves when it should and only
//! then, by exact amounts. Removal counters are cross-checked against an eviction listener's
//! tally per cause. No test sleeps or asserts on how long anything took: loads that must be in
//! flight block on channels, and waiters are counted with `loaders_waiting`.

#[path = "common/loaders.rs"]
mod loaders;

use std::collections::HashMap;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Barrier, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::Duration;

use cachet::{Cache, CacheBuilder, CacheStats, Clock, MockClock, RemovalCause};
use loaders::{blocked_leader, until_waiting};

const CAUSES: [RemovalCause; 4] = [
    RemovalCause::Evicted,
    RemovalCause::Expired,
    RemovalCause::Explicit,
    RemovalCause::Replaced,
];

/// What the eviction listener was told, counted per cause.
#[derive(Clone, Default)]
struct Tally(Arc<Mutex<HashMap<RemovalCause, u64>>>);

impl Tally {
    fn count(&self, cause: RemovalCause) -> u64 {
        self.0.lock().unwrap().get(&cause).copied().unwrap_or(0)
    }

    /// Asserts that the cache's removal counters equal the listener's tally, cause by cause, and
    /// returns them in the order of `CAUSES` (evicted, expired, explicit, replaced).
    fn agrees(&self, cache: &Cache<u64, u64>) -> [u64; 4] {
        let s = cache.stats();
        CAUSES.map(|cause| {
            assert_eq!(
                s.removals(cause),
                self.count(cause),
                "stats and listener disagree on {cause:?}"
            );
            s.removals(cause)
        })
    }
}

/// A `record_stats` cache of `capacity` in `shards` shards whose listener feeds a `Tally`.
/// `configure` may add more (a clock, a weigher, lifetimes).
fn tallied(
    capacity: u64,
    shards: usize,
    configure: impl FnOnce(CacheBuilder<u64, u64>) -> CacheBuilder<u64, u64>,
) -> (Cache<u64, u64>, Tally) {
    let tally = Tally::default();
    let sink = tally.clone();
    let b = Cache::builder()
        .max_capacity(capacity)
        .shards(shards)
        .record_stats()
        .eviction_listener(move |_, _, cause| {
            *sink.0.lock().unwrap().entry(cause).or_default() += 1
        });
    (configure(b).build().unwrap(), tally)
}

fn recording(capacity: u64) -> Cache<u64, u64> {
    Cache::builder()
        .max_capacity(capacity)
        .record_stats()
        .build()
        .unwrap()
}

/// Polls `fut` once with a waker that does nothing.
fn poll_once<F: Future + ?Sized>(fut: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn a_new_cache_reports_zero_and_neutral_ratios() {
    let cache = recording(100);
    let s = cache.stats();
    assert_eq!(s, CacheStats::default());
    assert_eq!(s.requests(), 0);
    assert_eq!(s.hit_ratio(), 1.0);
    assert_eq!(s.miss_ratio(), 0.0);
    assert_eq!(s.average_load_time(), None);
    for cause in CAUSES {
        assert_eq!(s.removals(cause), 0);
    }
}

#[test]
fn get_counts_hits_and_misses_and_the_ratios_follow() {
    let cache = recording(100);
    cache.insert(1, 10);
    for _ in 0..3 {
        assert_eq!(cache.get(&1), Some(10));
    }
    assert_eq!(cache.get(&2), None);
    let s = cache.stats();
    assert_eq!((s.hits, s.misses, s.requests()), (3, 1, 4));
    assert_eq!(s.hit_ratio(), 0.75);
    assert_eq!(s.miss_ratio(), 0.25);
    // Lookups change no other counter.
    assert_eq!((s.inserts, s.loads, s.load_failures), (1, 0, 0));
    assert_eq!(s.weighted_size, 1);
}

#[test]
fn peek_contains_key_iter_and_len_are_not_lookups() {
    let cache = recording(100);
    cache.insert(1, 10);
    assert_eq!(cache.peek(&1), Some(10));
    assert_eq!(cache.peek(&2), None);
    assert!(cache.contains_key(&1));
    assert!(!cache.contains_key(&2));
    assert_eq!(cache.iter().count(), 1);
    assert_eq!(cache.len(), 1);
    let s = cache.stats();
    assert_eq!((s.hits, s.misses), (0, 0));
    // Then a real lookup does count.
    assert_eq!(cache.get(&1), Some(10));
    assert_eq!(cache.stats().hits, 1);
}

#[test]
fn get_of_an_expired_entry_is_a_miss_and_its_removal_is_expired() {
    let time = MockClock::new();
    let (cache, tally) = tallied(100, 1, |b| b.clock(Clock::mock(&time)));
    cache.insert_with_ttl(1, 10, Duration::from_millis(100));
    assert_eq!(cache.get(&1), Some(10));
    time.advance(Duration::from_millis(100));
    assert_eq!(cache.get(&1), None);
    cache.run_pending_maintenance();
    let s = cache.stats();
    assert_eq!((s.hits, s.misses, s.inserts), (1, 1, 1));
    assert_eq!(tally.agrees(&cache), [0, 1, 0, 0]);
    assert_eq!(s.weighted_size, 0);
}

#[test]
fn inserts_count_insert_insert_with_ttl_and_loads_that_store() {
    let cache = recording(100);
    cache.insert(1, 10);
    cache.insert_with_ttl(2, 20, Duration::from_secs(60));
    cache.insert(1, 11); // a replacement is an insert too
    assert_eq!(cache.stats().inserts, 3);
    assert_eq!(cache.get_or_load(&3, || 30), 30); // stored
    assert_eq!(cache.stats().inserts, 4);
    assert_eq!(cache.get_or_load(&3, || -> u64 { unreachable!() }), 30); // a hit: no load, no insert
    let s = cache.stats();
    assert_eq!((s.inserts, s.loads, s.load_failures), (4, 1, 0));
    // Misses: the load's first lookup; hits: the loader that found key 3.
    assert_eq!((s.hits, s.misses), (1, 1));
    assert_eq!(s.replaced, 1);
    assert_eq!(s.weighted_size, 3);
}

/// `CacheStats::inserts` counts "values stored"; a failed load stores nothing, but `end_load`
/// counts an insert whenever the load was not superseded, with or without a value.
#[test]
fn a_failed_load_counts_no_insert() {
    let cache = recording(100);
    assert_eq!(
        cache.get_or_load(&1, || Err::<u64, _>("down")),
        Err(Arc::new("down"))
    );
    assert_eq!(cache.peek(&1), None);
    let s = cache.stats();
    assert_eq!((s.loads, s.load_failures, s.weighted_size), (0, 1, 0));
    assert_eq!(s.inserts, 0, "a failed load stores nothing");
}

#[test]
fn a_load_superseded_by_an_insert_counts_a_load_but_no_insert() {
    let cache = recording(100);
    let (leader, release) = blocked_leader(&cache, |c, gate| {
        c.get_or_load(&1, || {
            gate();
            100
        })
    });
    cache.insert(1, 7); // supersedes the load in flight
    release.send(()).unwrap();
    assert_eq!(leader.join().unwrap(), 100); // the leader still gets its value
    assert_eq!(cache.peek(&1), Some(7)); // but did not store it
    let s = cache.stats();
    assert_eq!((s.loads, s.load_failures, s.loads_in_flight), (1, 0, 0));
    assert_eq!(s.inserts, 1, "only the insert stored a value");
    assert_eq!(s.replaced, 0, "the load replaced nothing");
}

#[test]
fn loads_and_failures_by_outcome_and_the_load_times() {
    let cache = recording(100);
    let before = cache.stats();
    assert_eq!(before.average_load_time(), None);

    assert_eq!(cache.get_or_load(&1, || 10), 10);
    let s = cache.stats();
    assert_eq!((s.loads, s.load_failures), (1, 0));
    assert!(s.average_load_time().is_some());
    assert!(s.max_load_time <= s.total_load_time);

    let err = cache.get_or_load(&2, || Err::<u64, _>(5u8));
    assert_eq!(err, Err(Arc::new(5u8)));
    assert_eq!(
        (cache.stats().loads, cache.stats().load_failures),
        (1, 1),
        "an error is a failure"
    );

    let panicked = catch_unwind(AssertUnwindSafe(|| {
        cache.get_or_load(&3, || -> u64 { panic!("loader panics") })
    }));
    assert!(panicked.is_err());
    let s = cache.stats();
    assert_eq!((s.loads, s.load_failures), (1, 2), "a panic is a failure");
    assert_eq!(s.loads_in_flight, 0, "the panicking load is over");
    assert!(s.max_load_time <= s.total_load_time);
    assert!(s.average_load_time().unwrap() <= s.max_load_time);
    // The failed keys can be loaded again (and those loads are counted).
    assert_eq!(cache.get_or_load(&3, || 30), 30);
    let s = cache.stats();
    assert_eq!((s.loads, s.load_failures), (2, 2));
    assert_eq!(s.weighted_size, 2, "only the two successful loads stored");
    // Every load began with one miss; nothing was a hit.
    assert_eq!((s.hits, s.misses), (0, 4));
}

#[test]
fn a_dropped_async_leader_is_a_failure_and_no_longer_in_flight() {
    let cache = recording(100);
    let mut fut = Box::pin(cache.get_or_load_async(&1, std::future::pending::<u64>()));
    assert!(poll_once(fut.as_mut()).is_pending());
    let s = cache.stats();
    assert_eq!((s.loads_in_flight, s.loads, s.load_failures), (1, 0, 0));
    assert_eq!(s.misses, 1);
    drop(fut);
    let s = cache.stats();
    assert_eq!((s.loads_in_flight, s.loads, s.load_failures), (0, 0, 1));
    assert_eq!((s.inserts, s.misses), (0, 1));
    // A finished async load counts like a blocking one.
    let mut fut = Box::pin(cache.get_or_load_async(&1, async { 10 }));
    assert_eq!(poll_once(fut.as_mut()), Poll::Ready(10));
    let s = cache.stats();
    assert_eq!(
        (s.loads_in_flight, s.loads, s.load_failures, s.inserts),
        (0, 1, 1, 1)
    );
}

#[test]
fn an_aborted_tokio_leader_is_a_failure_and_its_waiter_loads_once() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let cache = recording(100);
    rt.block_on(async {
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let leader = tokio::spawn({
            let cache = cache.clone();
            async move {
                cache
                    .get_or_load_async(&1, async move {
                        started_tx.send(()).unwrap();
                        std::future::pending::<u64>().await
                    })
                    .await
            }
        });
        started_rx.await.unwrap();
        let waiter = tokio::spawn({
            let cache = cache.clone();
            async move { cache.get_or_load_async(&1, async { 10 }).await }
        });
        while cache.loaders_waiting(&1) != Some(1) {
            tokio::task::yield_now().await;
        }
        assert_eq!(cache.stats().loads_in_flight, 1);
        leader.abort();
        assert!(leader.await.unwrap_err().is_cancelled());
        assert_eq!(waiter.await.unwrap(), 10);
    });
    let s = cache.stats();
    assert_eq!((s.loads, s.load_failures, s.loads_in_flight), (1, 1, 0));
    assert_eq!(s.inserts, 1);
    assert_eq!(cache.peek(&1), Some(10));
}

#[test]
fn loads_in_flight_is_one_while_a_leader_blocks_and_zero_after() {
    let cache = recording(100);
    let (leader, release) = blocked_leader(&cache, |c, gate| {
        c.get_or_load(&1, || {
            gate();
            10
        })
    });
    let s = cache.stats();
    assert_eq!((s.loads_in_flight, s.loads, s.load_failures), (1, 0, 0));
    assert_eq!(s.average_load_time(), None, "no load has finished");
    assert_eq!(s.weighted_size, 0, "a pending load weighs nothing");
    release.send(()).unwrap();
    assert_eq!(leader.join().unwrap(), 10);
    let s = cache.stats();
    assert_eq!((s.loads_in_flight, s.loads, s.load_failures), (0, 1, 0));
    // The loader was parked until this thread released it: its time cannot be zero.
    assert!(s.max_load_time > Duration::ZERO);
    assert_eq!(s.max_load_time, s.total_load_time, "one load: max is total");
    assert_eq!(s.average_load_time(), Some(s.total_load_time));
}

#[test]
fn evictions_are_counted_as_the_listener_sees_them() {
    let (cache, tally) = tallied(10, 1, |b| b);
    for k in 0..50 {
        cache.insert(k, k);
    }
    assert_eq!(cache.len(), 10);
    assert_eq!(tally.agrees(&cache), [40, 0, 0, 0]);
    assert_eq!(cache.stats().inserts, 50);
}

#[test]
fn too_heavy_entries_are_counted_as_evicted() {
    let (cache, tally) = tallied(10, 1, |b| b.weigher(|_, v| *v as u32));
    cache.insert(1, 3);
    cache.insert(2, 11); // heavier than the cache: not stored
    assert_eq!(tally.agrees(&cache), [1, 0, 0, 0]);
    cache.insert(1, 12); // too heavy: the old value is replaced, the new one leaves at once
    assert_eq!(cache.get(&1), None);
    assert_eq!(tally.agrees(&cache), [2, 0, 0, 1]);
    assert_eq!(cache.stats().weighted_size, 0);
}

#[test]
fn expirations_are_counted_as_the_listener_sees_them() {
    let time = MockClock::new();
    let (cache, tally) = tallied(100, 4, |b| {
        b.clock(Clock::mock(&time))
            .time_to_live(Duration::from_millis(100))
    });
    for k in 0..5 {
        cache.insert(k, k);
    }
    time.advance(Duration::from_millis(99));
    cache.run_pending_maintenance();
    assert_eq!(tally.agrees(&cache), [0, 0, 0, 0]);
    time.advance(Duration::from_millis(1));
    assert_eq!(
        cache.stats().weighted_size,
        5,
        "expired but not yet removed entries still weigh"
    );
    cache.run_pending_maintenance();
    assert_eq!(tally.agrees(&cache), [0, 5, 0, 0]);
    assert_eq!(cache.stats().weighted_size, 0);
    // Removing an entry that had expired is an expiration, not an explicit removal.
    cache.insert(9, 9);
    time.advance(Duration::from_millis(100));
    assert_eq!(cache.remove(&9), None);
    assert_eq!(tally.agrees(&cache), [0, 6, 0, 0]);
    // A lifetime of zero: counted as an insert that expired at once.
    cache.insert_with_ttl(10, 10, Duration::ZERO);
    assert_eq!(tally.agrees(&cache), [0, 7, 0, 0]);
    assert_eq!(cache.stats().inserts, 7);
}

#[test]
fn explicit_removals_are_counted_as_the_listener_sees_them() {
    let (cache, tally) = tallied(100, 4, |b| b);
    for k in 0..10 {
        cache.insert(k, k);
    }
    assert_eq!(cache.remove(&0), Some(0));
    assert_eq!(cache.remove(&0), None); // absent: nothing removed
    assert_eq!(tally.agrees(&cache), [0, 0, 1, 0]);
    cache.retain(|k, _| k % 3 != 0); // removes 3, 6, 9
    assert_eq!(tally.agrees(&cache), [0, 0, 4, 0]);
    cache.retain(|_, _| true);
    assert_eq!(tally.agrees(&cache), [0, 0, 4, 0]);
    cache.invalidate_all(); // the 6 left
    assert_eq!(tally.agrees(&cache), [0, 0, 10, 0]);
    cache.invalidate_all();
    assert_eq!(tally.agrees(&cache), [0, 0, 10, 0]);
    let s = cache.stats();
    assert_eq!((s.weighted_size, s.inserts), (0, 10));
}

#[test]
fn replacements_are_counted_as_the_listener_sees_them() {
    let (cache, tally) = tallied(100, 4, |b| b);
    cache.insert(1, 1);
    assert_eq!(tally.agrees(&cache), [0, 0, 0, 0]);
    assert_eq!(cache.insert(1, 2), Some(1));
    assert_eq!(cache.insert(1, 3), Some(2));
    cache.insert_with_ttl(1, 4, Duration::from_secs(60));
    assert_eq!(tally.agrees(&cache), [0, 0, 0, 3]);
    let s = cache.stats();
    assert_eq!((s.inserts, s.weighted_size), (4, 1));
}

#[test]
fn every_insert_is_a_live_entry_or_a_counted_removal() {
    let time = MockClock::new();
    let (cache, tally) = tallied(8, 1, |b| {
        b.clock(Clock::mock(&time)).weigher(|_, v| *v as u32 % 10)
    });
    for k in 0..20 {
        cache.insert(k % 12, k); // replacements and evictions
    }
    cache.insert(50, 9); // too heavy
    cache.insert_with_ttl(51, 1, Duration::ZERO); // expired at once
    cache.insert_with_ttl(52, 1, Duration::from_millis(5));
    assert_eq!(cache.get_or_load(&53, || 1), 1);
    cache.remove(&53);
    cache.retain(|k, _| k % 2 == 0);
    time.advance(Duration::from_millis(5));
    let live = cache.len() as u64; // removes the expired entry first
    let s = cache.stats();
    let removed: u64 = tally.agrees(&cache).iter().sum();
    assert_eq!(s.inserts, 24);
    assert_eq!(s.inserts, live + removed, "{s:?}, {live} live");
}

#[test]
fn weighted_size_follows_the_weigher() {
    let (cache, _) = tallied(100, 1, |b| b.weigher(|_, v| *v as u32));
    cache.insert(1, 3);
    cache.insert(2, 5);
    assert_eq!(cache.stats().weighted_size, 8);
    cache.insert(1, 10);
    assert_eq!(cache.stats().weighted_size, 15);
    cache.remove(&2);
    assert_eq!(cache.stats().weighted_size, 10);
    assert_eq!(cache.stats().weighted_size, cache.weighted_size());
    cache.insert(3, 0); // a weight of 0 counts as 1
    assert_eq!(cache.stats().weighted_size, 11);
}

#[test]
fn without_record_stats_the_counters_stay_zero_but_the_sizes_are_reported() {
    let time = MockClock::new();
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(10)
        .shards(1)
        .weigher(|_, v| *v as u32)
        .clock(Clock::mock(&time))
        .build()
        .unwrap();
    cache.insert(1, 4);
    cache.insert(1, 3); // replaced
    cache.insert(2, 5);
    cache.insert(3, 11); // too heavy: evicted
    assert_eq!(cache.get(&1), Some(3));
    assert_eq!(cache.get(&9), None);
    assert_eq!(cache.get_or_load(&4, || 1), 1);
    let _ = cache.get_or_load(&5, || Err::<u64, _>(()));
    cache.insert_with_ttl(6, 1, Duration::from_millis(1));
    time.advance(Duration::from_millis(1));
    cache.run_pending_maintenance(); // expired
    cache.remove(&4); // explicit
    let (leader, release) = blocked_leader(&cache, |c, gate| {
        c.get_or_load(&7, || {
            gate();
            1
        })
    });
    let mut expected = CacheStats::default();
    expected.weighted_size = 8;
    expected.loads_in_flight = 1;
    assert_eq!(cache.stats(), expected);
    release.send(()).unwrap();
    assert_eq!(leader.join().unwrap(), 1);
    expected.weighted_size = 9;
    expected.loads_in_flight = 0;
    assert_eq!(cache.stats(), expected);
    assert_eq!(cache.stats().hit_ratio(), 1.0);
}

#[test]
fn removals_accessor_matches_the_fields() {
    let time = MockClock::new();
    let (cache, tally) = tallied(2, 1, |b| b.clock(Clock::mock(&time)));
    cache.insert(1, 1);
    cache.insert(1, 2); // replaced: 1
    cache.remove(&1); // explicit: 1
    for k in 10..14 {
        cache.insert_with_ttl(k, k, Duration::from_millis(1)); // evicted: 2
    }
    time.advance(Duration::from_millis(1));
    cache.run_pending_maintenance(); // expired: 2
    let s = cache.stats();
    assert_eq!(tally.agrees(&cache), [2, 2, 1, 1]);
    assert_eq!(s.removals(RemovalCause::Evicted), s.evicted);
    assert_eq!(s.removals(RemovalCause::Expired), s.expired);
    assert_eq!(s.removals(RemovalCause::Explicit), s.invalidated);
    assert_eq!(s.removals(RemovalCause::Replaced), s.replaced);
    assert_eq!(
        (s.evicted, s.expired, s.invalidated, s.replaced),
        (2, 2, 1, 1)
    );
}

#[test]
fn concurrent_hits_and_misses_are_counted_exactly() {
    const THREADS: u64 = 4;
    const HITS: u64 = 2_000;
    const MISSES: u64 = 1_000;
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(10_000)
        .shards(8)
        .record_stats()
        .build()
        .unwrap();
    for k in 0..100 {
        cache.insert(k, k);
    }
    let start = Arc::new(Barrier::new(THREADS as usize));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (cache, start) = (cache.clone(), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                for i in 0..HITS.max(MISSES) {
                    if i < HITS {
                        assert_eq!(cache.get(&(i % 100)), Some(i % 100));
                    }
                    if i < MISSES {
                        assert_eq!(cache.get(&(1_000 + t * MISSES + i)), None);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let s = cache.stats();
    assert_eq!(s.hits, THREADS * HITS);
    assert_eq!(s.misses, THREADS * MISSES);
    assert_eq!((s.inserts, s.weighted_size), (100, 100));
}

#[test]
fn sixty_four_callers_of_one_key_count_one_load_one_miss_and_63_waits() {
    let cache = recording(1_000);
    let (leader, release) = blocked_leader(&cache, |c, gate| {
        c.get_or_load(&7, || {
            gate();
            70
        })
    });
    let waiters: Vec<_> = (0..63)
        .map(|_| {
            let cache = cache.clone();
            thread::spawn(move || cache.get_or_load(&7, || -> u64 { panic!("a waiter loaded") }))
        })
        .collect();
    until_waiting(&cache, &7, 63);
    let s = cache.stats();
    assert_eq!(
        (s.loads_in_flight, s.loads, s.misses, s.coalesced, s.hits),
        (1, 0, 1, 63, 0)
    );
    release.send(()).unwrap();
    assert_eq!(leader.join().unwrap(), 70);
    for w in waiters {
        assert_eq!(w.join().unwrap(), 70);
    }
    let s = cache.stats();
    assert_eq!((s.loads_in_flight, s.loads, s.load_failures), (0, 1, 0));
    assert_eq!((s.misses, s.coalesced, s.hits, s.inserts), (1, 63, 0, 1));
    assert_eq!(cache.get(&7), Some(70));
    assert_eq!(cache.stats().hits, 1);
}

/// A loader call counts once, by how it first went: a waiter whose leader panicked, and which
/// then loads the key itself, is one coalesced wait (and its load is counted in `loads`).
#[test]
fn a_waiter_of_a_panicked_leader_counts_once() {
    let cache = recording(100);
    let (leader, release) = blocked_leader(&cache, |c, gate| {
        catch_unwind(AssertUnwindSafe(|| {
            c.get_or_load(&1, || -> u64 {
                gate();
                panic!("leader panics")
            })
        }))
        .is_err()
    });
    let waiter = {
        let cache = cache.clone();
        thread::spawn(move || cache.get_or_load(&1, || 10))
    };
    until_waiting(&cache, &1, 1);
    release.send(()).unwrap();
    assert!(leader.join().unwrap(), "the leader's loader panicked");
    assert_eq!(waiter.join().unwrap(), 10); // the waiter took the load over
    let s = cache.stats();
    assert_eq!((s.loads, s.load_failures, s.inserts), (1, 1, 1));
    assert_eq!(s.hits, 0);
    assert_eq!(
        (s.misses, s.coalesced),
        (1, 1),
        "one count per get_or_load call"
    );
}
