//! Statistics: [`CacheStats`], counted per shard and summed only when a snapshot is taken, and
//! the `LoadHook` a finished load is reported to. It knows nothing of the cache or its shards.

// Design notes
// - Counting is off unless the builder's `record_stats` asks for it: a cache without it carries a
//   `None` per shard and pays one predictable branch per operation.
// - Reads (hits and misses) are the hot counters, written by many threads under a shared read
//   lock. Each shard has a few stripes of them on their own cache lines, and a thread always adds
//   to the stripe its thread-local number picks, so threads on different stripes never share a
//   line. The adds are `fetch_add`: exact, even when two threads share a stripe.
// - Everything else (inserts, loads, removals) happens on write paths that already took the
//   shard's write lock or ran a loader; one padded block of counters per shard is enough.
// - A snapshot sums the stripes and shards with relaxed loads: each counter is exact, but a
//   snapshot taken during traffic is not an atomic cut across counters.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_utils::CachePadded;

use crate::listener::RemovalCause;

/// Told of every finished load of a cache that records statistics: the cache's name, how long
/// the load took, and whether it produced a value. The `metrics` feature's histogram is one.
pub(crate) type LoadHook = fn(label: &str, took: Duration, ok: bool);

/// Read-counter stripes per shard. Four covers the common case of a few threads hammering the
/// same hot shard; each costs one cache line per shard.
const STRIPES: usize = 4;

/// Hands out stripe numbers to threads, round robin.
static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's stripe number, below `STRIPES`.
#[inline]
fn stripe() -> usize {
    STRIPE.with(|s| {
        let v = s.get();
        if v < STRIPES {
            v
        } else {
            let v = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES;
            s.set(v);
            v
        }
    })
}

#[derive(Default)]
struct Reads {
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Default)]
struct Writes {
    inserts: AtomicU64,
    coalesced: AtomicU64,
    loads_ok: AtomicU64,
    loads_failed: AtomicU64,
    load_nanos: AtomicU64,
    load_max_nanos: AtomicU64,
    /// Removals by cause, indexed by `cause_index`.
    removed: [AtomicU64; 4],
}

/// One shard's counters.
#[derive(Default)]
pub(crate) struct ShardStats {
    reads: [CachePadded<Reads>; STRIPES],
    writes: CachePadded<Writes>,
}

fn cause_index(cause: RemovalCause) -> usize {
    match cause {
        RemovalCause::Evicted => 0,
        RemovalCause::Expired => 1,
        RemovalCause::Explicit => 2,
        RemovalCause::Replaced => 3,
    }
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl ShardStats {
    #[inline]
    pub(crate) fn hit(&self) {
        add(&self.reads[stripe()].hits, 1);
    }

    #[inline]
    pub(crate) fn miss(&self) {
        add(&self.reads[stripe()].misses, 1);
    }

    pub(crate) fn inserted(&self) {
        add(&self.writes.inserts, 1);
    }

    /// A loader call joined another caller's load.
    pub(crate) fn coalesced(&self) {
        add(&self.writes.coalesced, 1);
    }

    /// Counts removals, one per cause given.
    pub(crate) fn removed(&self, causes: impl Iterator<Item = RemovalCause>) {
        let mut n = [0u64; 4];
        for c in causes {
            n[cause_index(c)] += 1;
        }
        for (counter, n) in self.writes.removed.iter().zip(n) {
            if n > 0 {
                add(counter, n);
            }
        }
    }

    /// A load ended after `took`: with a value (`ok`), or with an error, a panic or a dropped
    /// future.
    pub(crate) fn loaded(&self, ok: bool, took: Duration) {
        let w = &self.writes;
        add(if ok { &w.loads_ok } else { &w.loads_failed }, 1);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        w.load_nanos.fetch_add(nanos, Ordering::Relaxed);
        w.load_max_nanos.fetch_max(nanos, Ordering::Relaxed);
    }

    /// Adds this shard's counters to `into`.
    pub(crate) fn sum_into(&self, into: &mut CacheStats) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        for r in &self.reads {
            into.hits += get(&r.hits);
            into.misses += get(&r.misses);
        }
        let w = &self.writes;
        into.inserts += get(&w.inserts);
        into.coalesced += get(&w.coalesced);
        into.loads += get(&w.loads_ok);
        into.load_failures += get(&w.loads_failed);
        into.total_load_time += Duration::from_nanos(get(&w.load_nanos));
        into.max_load_time = into
            .max_load_time
            .max(Duration::from_nanos(get(&w.load_max_nanos)));
        into.evicted += get(&w.removed[0]);
        into.expired += get(&w.removed[1]);
        into.invalidated += get(&w.removed[2]);
        into.replaced += get(&w.removed[3]);
    }
}

/// A snapshot of a cache's statistics, from [`Cache::stats`](crate::Cache::stats).
///
/// The counters count from the cache's creation and are only kept when the builder's
/// [`record_stats`](crate::CacheBuilder::record_stats) asked for them (otherwise they are zero);
/// `weighted_size` and `loads_in_flight` are always reported. Each counter is exact, but a
/// snapshot taken while other threads use the cache is not an atomic cut: two counters may
/// disagree by the operations that ran while it was summed.
///
/// ```
/// use cachet::Cache;
///
/// let cache = Cache::builder().max_capacity(100).record_stats().build().unwrap();
/// cache.insert(1, "one");
/// assert_eq!(cache.get(&1), Some("one"));
/// assert_eq!(cache.get(&2), None);
/// let stats = cache.stats();
/// assert_eq!((stats.hits, stats.misses, stats.inserts), (1, 1, 1));
/// assert_eq!(stats.hit_ratio(), 0.5);
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Lookups that found a live entry: `get`, and the loaders' lookups (`peek` and
    /// `contains_key` are not counted). A loader call answered from a remembered failure
    /// ([`negative_ttl`](crate::CacheBuilder::negative_ttl)) is a hit too.
    pub hits: u64,
    /// Lookups that found nothing (or an expired entry). A loader call that finds nothing
    /// counts as a miss if it leads the load, and as [`coalesced`](Self::coalesced) if it
    /// waits for another caller's: each loader call counts once, by how it first went.
    pub misses: u64,
    /// Loader calls that found the key's load in flight and waited for it instead of loading.
    pub coalesced: u64,
    /// Values stored: by `insert`, `insert_with_ttl`, and by loads.
    pub inserts: u64,
    /// Loads whose loader returned a value.
    pub loads: u64,
    /// Loads that ended without a value: the loader returned an error or panicked, or the
    /// leading future was dropped.
    pub load_failures: u64,
    /// Time spent in loaders, summed over all finished loads (successful or not).
    pub total_load_time: Duration,
    /// The longest single load.
    pub max_load_time: Duration,
    /// Loads running now.
    pub loads_in_flight: u64,
    /// Entries removed by the policy to respect the capacity ([`RemovalCause::Evicted`]).
    pub evicted: u64,
    /// Entries removed because their deadline passed ([`RemovalCause::Expired`]).
    pub expired: u64,
    /// Entries removed by `remove`, `invalidate_all` or `retain` ([`RemovalCause::Explicit`]).
    pub invalidated: u64,
    /// Values replaced by a newer value for the same key ([`RemovalCause::Replaced`]).
    pub replaced: u64,
    /// The total weight of the entries stored (their count without a weigher), as
    /// [`Cache::weighted_size`](crate::Cache::weighted_size) reports it: expired entries count
    /// until they are removed.
    pub weighted_size: u64,
    /// Panics of the eviction listener, caught where they happened (the caller whose operation
    /// removed the entry never sees them). Counted whether or not statistics are recorded.
    pub listener_panics: u64,
}

impl CacheStats {
    /// Lookups counted: hits, misses and coalesced waits.
    pub fn requests(&self) -> u64 {
        self.hits + self.misses + self.coalesced
    }

    /// Hits over lookups (a coalesced wait is not a hit: the caller waited for a load), from
    /// 0.0 to 1.0; 1.0 when nothing was looked up yet (nothing missed).
    pub fn hit_ratio(&self) -> f64 {
        match self.requests() {
            0 => 1.0,
            n => self.hits as f64 / n as f64,
        }
    }

    /// Misses over lookups, `1.0 - hit_ratio()`.
    pub fn miss_ratio(&self) -> f64 {
        1.0 - self.hit_ratio()
    }

    /// Entries removed for `cause`.
    pub fn removals(&self, cause: RemovalCause) -> u64 {
        match cause {
            RemovalCause::Evicted => self.evicted,
            RemovalCause::Expired => self.expired,
            RemovalCause::Explicit => self.invalidated,
            RemovalCause::Replaced => self.replaced,
        }
    }

    /// Mean time of a finished load (`None` before the first).
    pub fn average_load_time(&self) -> Option<Duration> {
        let n = u128::from(self.loads + self.load_failures);
        let nanos = self.total_load_time.as_nanos().checked_div(n)?;
        Some(Duration::from_nanos(
            u64::try_from(nanos).unwrap_or(u64::MAX),
        ))
    }
}
