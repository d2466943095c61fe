//! The public handle: hash once, route to a shard, delegate. It owns the shards and what
//! crosses them (statistics, expiration scheduling, delivery of removals); it is built from a
//! validated `Config` and knows nothing of the builder, the loaders or the loading caches.
//
// Files: this one holds the handle and its construction; `read.rs` the lookups, `write.rs`
// inserts, `compute` and removals, `entry.rs` the entry API over `compute`, `maintain.rs` expiration scheduling and delivery of removals,
// `loads.rs` the cache's side of loads and refreshes in flight, `iter.rs` the iterator.

mod entry;
mod iter;
mod loads;
mod maintain;
mod read;
mod write;

use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

use crate::DefaultHashBuilder;
use crate::clock::Clock;
use crate::config::{Config, Weigher};
use crate::expiry::ExpireConfig;
use crate::listener::{Listener, RemovalCause};
use crate::policy::shared_window;
use crate::shard::{Budget, ShardState};
use crate::stats::{CacheStats, LoadHook, ShardStats};
use crate::sync::{Mutex, RwLock};

pub use entry::Entry;
pub use iter::Iter;
use read::ReadMode;
pub use write::Compute;

/// A concurrent, size-bounded cache.
///
/// `Cache` is a cheap handle: `clone` it to share the same cache between threads and tasks.
/// Values are returned by clone, so wrap large values in an `Arc`.
///
/// ```
/// use cachet::Cache;
///
/// let cache = Cache::new(10_000);
/// cache.insert("user:42".to_string(), "Ada".to_string());
/// assert_eq!(cache.get("user:42").as_deref(), Some("Ada")); // look up with a &str
/// assert_eq!(cache.remove("user:42").as_deref(), Some("Ada"));
/// assert!(cache.get("user:42").is_none());
/// ```
pub struct Cache<K, V, S = DefaultHashBuilder> {
    inner: Arc<Inner<K, V, S>>,
}

/// A key's hash as the cache uses it, computed once per operation: the shard the key lives in,
/// and the 32 bits that shard keeps for its index and sketch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Hashed {
    pub(crate) shard: usize,
    pub(crate) hash: u32,
}

/// A shard on its own cache lines, so that two shards' locks never share one. The lock comes
/// first, so one pointer reaches it and the fields after it.
struct Shard<K, V> {
    state: CachePadded<RwLock<ShardState<K, V>>>,
    /// The clock tick at which this shard next has expiration work (`u64::MAX`: none), read
    /// without the lock so that operations can tell cheaply whether to help.
    due: AtomicU64,
    /// This shard's counters, with `record_stats` (in the shard, so a hit reaches them
    /// through the pointer it already holds for the lock).
    stats: Option<Box<ShardStats>>,
    /// This shard's number in `Inner::shards`.
    index: usize,
    /// Whether the cache is weighted: its shards claim and give back capacity.
    weighted: bool,
}

impl<K, V> Shard<K, V> {
    /// The tick at or after which this shard has expiration work, if it has any (no lock).
    #[inline]
    fn pending_due(&self) -> Option<u64> {
        let due = self.due.load(Ordering::Relaxed);
        (due != u64::MAX).then_some(due)
    }

    /// The end of every write (write lock held): gives back the capacity a weighted shard no
    /// longer needs, and publishes when the shard next has expiration work.
    #[inline]
    fn after_write(&self, state: &mut ShardState<K, V>) {
        if self.weighted {
            state.give_back_spare();
        }
        self.publish_due(state);
    }

    /// `after_write` for an insert: also returns the room the insert still needs from the
    /// other shards (a weighted cache's large entry; 0 otherwise), to `lend` it once the lock
    /// is released.
    #[inline]
    fn after_insert(&self, state: &mut ShardState<K, V>) -> u64 {
        let short = if self.weighted {
            state.take_shortfall()
        } else {
            0
        };
        self.after_write(state);
        short
    }

    /// Publishes when the shard next has expiration work (write lock held).
    #[inline]
    fn publish_due(&self, state: &ShardState<K, V>) {
        if state.is_timed() {
            let due = state.next_due();
            if self.due.load(Ordering::Relaxed) != due {
                self.due.store(due, Ordering::Relaxed);
            }
        }
    }
}

struct Inner<K, V, S> {
    shards: Box<[Shard<K, V>]>,
    mask: usize,
    hasher: S,
    weigher: Option<Weigher<K, V>>,
    listener: Option<Listener<K, V>>,
    /// The `max_capacity` (changed by `set_capacity`).
    capacity: AtomicU64,
    clock: Clock,
    expire: ExpireConfig<K, V>,
    /// Whether the cache keeps statistics (`record_stats`; the counters are in the shards).
    record_stats: bool,
    /// How `get` reads (whether entries can expire, and how).
    read: ReadMode,
    name: Option<Arc<str>>,
    /// How long a failed or empty load is remembered (`negative_ttl`), in clock ticks.
    negative_ttl: Option<u64>,
    /// Told of every finished load's time, with statistics on.
    on_load: Option<LoadHook>,
    /// The cache's label in published figures: its name, or `cachet-<n>` for the n-th cache
    /// the process built, so that two unnamed caches never share one.
    label: Arc<str>,
    /// Panics of the eviction listener, caught where the notifications are delivered.
    listener_panics: AtomicU64,
    /// The capacity no shard holds, when weighted (see `shard/budget.rs`).
    budget: Option<Arc<Budget>>,
    /// Serialises the shards' lending to an entry too large for its own shard (`lend`).
    lending: Mutex<()>,
}

/// Numbers the caches of the process, so that unnamed ones get distinct labels.
static CACHES_BUILT: AtomicU64 = AtomicU64::new(0);

impl<K, V, S> Clone for Cache<K, V, S> {
    fn clone(&self) -> Self {
        Cache {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    /// Builds the cache `config` describes.
    pub(crate) fn from_config(config: Config<K, V, S>) -> Self {
        let Config {
            capacity,
            shards,
            hasher,
            weigher,
            listener,
            initial_capacity,
            expire,
            clock,
            record_stats,
            name,
            negative_ttl,
            on_load,
        } = config;
        let n = shards as u64;
        let budget = weigher.is_some().then(|| Arc::new(Budget::new(capacity)));
        let initial = initial_capacity.div_ceil(shards);
        // Only an expiring cache reads the clock (and so starts the ticker) up front.
        let timed = expire
            .is_active()
            .then(|| (clock.now_ticks(), expire.caps_upfront()));
        // One window target and protected share for the whole cache (`policy/window.rs`).
        let window = Arc::new(shared_window(capacity));
        let shards: Box<[_]> = (0..shards)
            .map(|i| {
                // Spread the remainder so shard capacities differ by at most one.
                let cap = capacity / n + u64::from((i as u64) < capacity % n);
                let seed = hasher.hash_one(i);
                Shard {
                    state: CachePadded::new(RwLock::new(ShardState::new(
                        cap,
                        budget.clone(),
                        initial,
                        seed,
                        timed,
                        Arc::clone(&window),
                    ))),
                    due: AtomicU64::new(u64::MAX),
                    stats: record_stats.then(Box::default),
                    index: i,
                    weighted: budget.is_some(),
                }
            })
            .collect();
        Cache {
            inner: Arc::new(Inner {
                mask: shards.len() - 1,
                shards,
                hasher,
                weigher,
                listener,
                capacity: AtomicU64::new(capacity),
                clock,
                read: ReadMode::new(timed.is_some(), expire.ttl_only(), record_stats),
                expire,
                record_stats,
                label: match &name {
                    Some(name) => Arc::clone(name),
                    None => {
                        let n = CACHES_BUILT.fetch_add(1, Ordering::Relaxed) + 1;
                        Arc::from(format!("cachet-{n}"))
                    }
                },
                name,
                negative_ttl,
                on_load,
                listener_panics: AtomicU64::new(0),
                budget,
                lending: Mutex::new(()),
            }),
        }
    }

    /// Hashes `key` once. The high 32 bits pick the shard; the low 32 bits are what the shard
    /// stores and derives its index and sketch positions from.
    #[inline]
    pub(crate) fn hash<Q: ?Sized + Hash>(&self, key: &Q) -> Hashed {
        let h = self.inner.hasher.hash_one(key);
        Hashed {
            shard: (h >> 32) as usize & self.inner.mask,
            hash: h as u32,
        }
    }
}

/// Sizes, settings and maintenance: they need neither hashing nor comparing keys.
impl<K, V, S> Cache<K, V, S> {
    /// Number of entries stored.
    ///
    /// Entries whose deadline has passed count until they are removed: they are never returned,
    /// and writes (and reads that miss) remove them as they go, but `len` only looks. For a
    /// count without them, call [`run_pending_maintenance`](Self::run_pending_maintenance)
    /// first. `len` takes each shard's read lock in turn and runs no user code.
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|s| s.state.read().len()).sum()
    }

    /// Whether the cache stores no entry (see [`len`](Self::len) about expired entries).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total weight of the entries stored (their count when there is no weigher); like
    /// [`len`](Self::len), it counts expired entries until they are removed, and runs no user
    /// code.
    pub fn weighted_size(&self) -> u64 {
        self.inner
            .shards
            .iter()
            .map(|s| s.state.read().weight())
            .sum()
    }

    /// Shard `i`'s counters, if the cache records statistics.
    #[inline]
    pub(crate) fn shard_stats(&self, i: usize) -> Option<&ShardStats> {
        self.inner.shards[i].stats.as_deref()
    }

    /// Counts removals of shard `i` by cause, if the cache records statistics.
    fn count_removed(&self, i: usize, causes: impl Iterator<Item = RemovalCause>) {
        if let Some(stats) = self.shard_stats(i) {
            stats.removed(causes);
        }
    }

    /// A snapshot of the cache's statistics: hits, misses, loads, removals by cause, and
    /// sizes. The counters stay at zero unless the builder's
    /// [`record_stats`](crate::CacheBuilder::record_stats) turned them on. Takes each shard's read
    /// lock in turn, briefly.
    pub fn stats(&self) -> CacheStats {
        let mut out = CacheStats::default();
        for (i, shard) in self.inner.shards.iter().enumerate() {
            if let Some(stats) = self.shard_stats(i) {
                stats.sum_into(&mut out);
            }
            let state = shard.state.read();
            out.weighted_size += state.weight();
            out.loads_in_flight += state.loads_in_flight() as u64;
        }
        out.listener_panics = self.inner.listener_panics.load(Ordering::Relaxed);
        out
    }

    /// The name given by the builder's [`name`](crate::CacheBuilder::name), if any.
    pub fn name(&self) -> Option<&str> {
        self.inner.name.as_deref()
    }

    /// The cache's label in published figures: its name, or `cachet-<n>` for the n-th cache
    /// the process built.
    pub(crate) fn label(&self) -> &str {
        &self.inner.label
    }

    /// The `max_capacity`: as configured, or as last set by
    /// [`set_capacity`](Self::set_capacity).
    pub fn capacity(&self) -> u64 {
        self.inner.capacity.load(Ordering::Relaxed)
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.inner.shards.len()
    }
}

/// Test hooks: not part of the public API (compiled for the crate's own tests, or with the
/// `_test-hooks` feature that its integration tests turn on).
#[cfg(any(test, feature = "_test-hooks"))]
impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    /// Checks every internal invariant of every shard (queue links and weights, index and slab
    /// agreement, the capacity bound) and returns the first violation found. For tests; it holds
    /// every shard's read lock while it walks all of them.
    ///
    /// # Errors
    ///
    /// The first invariant found broken, described.
    pub fn validate(&self) -> Result<(), String> {
        // Capacity moves between a weighted cache's shards and its budget under the shards'
        // locks (and the lending lock while in transit): with all of them held, it adds up.
        let _no_lending = self.inner.lending.lock();
        let states: Vec<_> = self.inner.shards.iter().map(|s| s.state.read()).collect();
        let mut total = 0;
        for (i, s) in states.iter().enumerate() {
            s.validate().map_err(|e| format!("shard {i}: {e}"))?;
            total += s.capacity();
        }
        // A weighted cache's capacity not held by a shard is in its budget.
        total += self.inner.budget.as_ref().map_or(0, |b| b.free());
        let capacity = self.inner.capacity.load(Ordering::Relaxed);
        if total != capacity {
            return Err(format!(
                "shard capacities (and free budget) sum to {total}, not {capacity}"
            ));
        }
        Ok(())
    }

    /// How many callers are waiting on the load in flight for `key`, or `None` if no load is
    /// in flight. For tests that must force an interleaving (all waiters joined) without
    /// sleeping.
    pub fn loaders_waiting(&self, key: &K) -> Option<usize> {
        let at = self.hash(key);
        self.inner.shards[at.shard]
            .state
            .read()
            .waiting(at.hash, key)
    }
}

impl<K, V, S> fmt::Debug for Cache<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("name", &self.inner.name)
            .field("len", &self.len())
            .field("capacity", &self.inner.capacity.load(Ordering::Relaxed))
            .field("shards", &self.inner.shards.len())
            .finish_non_exhaustive()
    }
}
