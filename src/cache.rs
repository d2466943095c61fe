//! The public handle: hash once, route to a shard, delegate.

use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;

use crossbeam_utils::CachePadded;
use equivalent::Equivalent;
use parking_lot::RwLock;

use crate::DefaultHashBuilder;
use crate::builder::{CacheBuilder, Weigher, default_shards};
use crate::hits::HitCounter;
use crate::listener::{self, Listener, RemovalCause, Removed};
use crate::shard::ShardState;

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

/// A shard on its own cache lines, so that two shards' locks never share one, with its hit
/// counter beside (not behind) the lock.
struct Shard<K, V> {
    state: CachePadded<RwLock<ShardState<K, V>>>,
    hits: HitCounter,
}

struct Inner<K, V, S> {
    shards: Box<[Shard<K, V>]>,
    mask: usize,
    hasher: S,
    weigher: Option<Weigher<K, V>>,
    listener: Option<Listener<K, V>>,
    capacity: u64,
}

impl<K, V, S> Clone for Cache<K, V, S> {
    fn clone(&self) -> Self {
        Cache {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K: Hash + Eq, V> Cache<K, V, DefaultHashBuilder> {
    /// A cache holding at most `max_capacity` entries, with the default configuration.
    pub fn new(max_capacity: u64) -> Self {
        let shards = default_shards(max_capacity);
        let builder = CacheBuilder::new().max_capacity(max_capacity);
        Cache::from_builder(builder, max_capacity, shards)
    }

    /// A builder for options beyond a capacity: a weigher, the shard count, the hasher.
    pub fn builder() -> CacheBuilder<K, V, DefaultHashBuilder> {
        CacheBuilder::new()
    }
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    pub(crate) fn from_builder(b: CacheBuilder<K, V, S>, capacity: u64, shards: usize) -> Self {
        let n = shards as u64;
        let weighted = b.weigher.is_some();
        let initial = b.initial_capacity.div_ceil(shards);
        let shards: Box<[_]> = (0..shards)
            .map(|i| {
                // Spread the remainder so shard capacities differ by at most one.
                let cap = capacity / n + u64::from((i as u64) < capacity % n);
                let seed = b.hasher.hash_one(i);
                Shard {
                    state: CachePadded::new(RwLock::new(ShardState::new(
                        cap, weighted, initial, seed,
                    ))),
                    hits: HitCounter::new(),
                }
            })
            .collect();
        Cache {
            inner: Arc::new(Inner {
                mask: shards.len() - 1,
                shards,
                hasher: b.hasher,
                weigher: b.weigher,
                listener: b.listener,
                capacity,
            }),
        }
    }

    /// Hashes `key` once. The high 32 bits pick the shard; the low 32 bits are what the shard
    /// stores and derives its index and sketch positions from.
    #[inline]
    fn hash<Q: ?Sized + Hash>(&self, key: &Q) -> (usize, u32) {
        let h = self.inner.hasher.hash_one(key);
        ((h >> 32) as usize & self.inner.mask, h as u32)
    }

    /// Returns a clone of the value for `key`, and records the access for the eviction policy.
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        Q: ?Sized + Hash + Equivalent<K>,
        V: Clone,
    {
        let (i, h) = self.hash(key);
        let shard = &self.inner.shards[i];
        let value = shard.state.read().get(h, key).cloned();
        if value.is_some() {
            shard.hits.record();
        }
        value
    }

    /// Returns a clone of the value for `key` without counting it as an access: the entry is no
    /// more likely to stay than before.
    #[inline]
    pub fn peek<Q>(&self, key: &Q) -> Option<V>
    where
        Q: ?Sized + Hash + Equivalent<K>,
        V: Clone,
    {
        let (i, h) = self.hash(key);
        self.inner.shards[i].state.read().peek(h, key).cloned()
    }

    /// Whether `key` is present. Does not count as an access.
    #[inline]
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        let (i, h) = self.hash(key);
        self.inner.shards[i].state.read().peek(h, key).is_some()
    }

    /// Inserts `value` for `key`, returning the value it replaced.
    ///
    /// The entry may be evicted at once: a new entry always enters, but to make room the policy
    /// may later prefer an older, more frequently used entry over it. An entry heavier than its
    /// shard's share of the capacity is not stored; the previous value for `key`, if any, is then
    /// removed and returned. Removals are reported to the eviction listener, if any, before this
    /// returns.
    pub fn insert(&self, key: K, value: V) -> Option<V> {
        let (i, h) = self.hash(&key);
        let w = match &self.inner.weigher {
            Some(weigh) => weigh(&key, &value),
            None => 1,
        };
        let mut removed = Removed::new();
        let shard = &self.inner.shards[i];
        let old = shard
            .state
            .write()
            .insert(h, key, value, w, &shard.hits, &mut removed);
        // The lock is released: report (or just drop) what left the cache.
        removed.deliver(self.inner.listener.as_ref(), old.as_ref());
        old
    }

    /// Removes `key`, returning its value.
    ///
    /// The eviction listener, if any, gets the key and a clone of the value.
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        let (i, h) = self.hash(key);
        let (k, v) = self.inner.shards[i].state.write().remove(h, key)?;
        let mut removed = Removed::new();
        removed.push_returned(k, RemovalCause::Explicit);
        removed.deliver(self.inner.listener.as_ref(), Some(&v));
        Some(v)
    }

    /// Removes every entry. Shards are cleared one at a time; entries inserted concurrently into
    /// an already cleared shard stay. A panicking eviction listener does not stop it: every shard
    /// is cleared and every entry reported, then the first panic resumes.
    pub fn invalidate_all(&self) {
        let mut panic = None;
        for shard in self.inner.shards.iter() {
            let entries = shard.state.write().clear();
            let delivered = catch_unwind(AssertUnwindSafe(|| {
                listener::deliver_all(
                    self.inner.listener.as_ref(),
                    entries.into_iter().map(|e| (e.key, e.value)),
                    RemovalCause::Explicit,
                )
            }));
            if let Err(p) = delivered {
                panic.get_or_insert(p);
            }
        }
        if let Some(p) = panic {
            resume_unwind(p);
        }
    }

    /// Keeps only the entries for which `keep(&key, &value)` returns `true`.
    ///
    /// `keep` runs under each shard's write lock in turn: keep it short, and do not call back into
    /// this cache from it (that deadlocks on the shard being visited). If `keep` panics, the
    /// entries it already rejected are removed and reported, the rest are kept, and the panic
    /// resumes. A panicking eviction listener does not stop the visit: the first of its panics
    /// resumes once every shard is done.
    pub fn retain<F>(&self, mut keep: F)
    where
        F: FnMut(&K, &V) -> bool,
    {
        let mut removed = Vec::new();
        let mut panic = None;
        for shard in self.inner.shards.iter() {
            // The guard is dropped (the lock is free) before the removed entries are reported.
            let visited = catch_unwind(AssertUnwindSafe(|| {
                shard.state.write().retain(&mut keep, &mut removed)
            }));
            let delivered = catch_unwind(AssertUnwindSafe(|| {
                listener::deliver_all(
                    self.inner.listener.as_ref(),
                    removed.drain(..),
                    RemovalCause::Explicit,
                )
            }));
            if let Err(p) = visited {
                // The predicate's own panic comes first and ends the visit.
                resume_unwind(p);
            }
            if let Err(p) = delivered {
                panic.get_or_insert(p);
            }
        }
        if let Some(p) = panic {
            resume_unwind(p);
        }
    }

    /// Iterates over clones of the entries, one shard at a time: each shard is copied under its
    /// read lock, which is released before its entries are yielded, so writers are never blocked
    /// for longer than one shard's copy. An entry present for the whole iteration is yielded
    /// exactly once; entries inserted or removed meanwhile may or may not be.
    pub fn iter(&self) -> Iter<'_, K, V, S>
    where
        K: Clone,
        V: Clone,
    {
        Iter {
            cache: self,
            next_shard: 0,
            buffer: Vec::new().into_iter(),
        }
    }

    /// Checks every internal invariant of every shard (queue links and weights, index and slab
    /// agreement, the capacity bound) and returns the first violation found. For tests; it locks
    /// each shard in turn and walks all of it.
    #[doc(hidden)]
    pub fn validate(&self) -> Result<(), String> {
        let mut total = 0;
        for (i, shard) in self.inner.shards.iter().enumerate() {
            let s = shard.state.read();
            s.validate().map_err(|e| format!("shard {i}: {e}"))?;
            total += s.capacity();
        }
        if total != self.inner.capacity {
            return Err(format!(
                "shard capacities sum to {total}, not {}",
                self.inner.capacity
            ));
        }
        Ok(())
    }
}

/// Iterator returned by [`Cache::iter`].
pub struct Iter<'a, K, V, S> {
    cache: &'a Cache<K, V, S>,
    next_shard: usize,
    buffer: std::vec::IntoIter<(K, V)>,
}

impl<K, V, S> Iterator for Iter<'_, K, V, S>
where
    K: Clone,
    V: Clone,
{
    type Item = (K, V);

    fn next(&mut self) -> Option<(K, V)> {
        loop {
            if let Some(item) = self.buffer.next() {
                return Some(item);
            }
            let shard = self.cache.inner.shards.get(self.next_shard)?;
            self.next_shard += 1;
            let copy: Vec<(K, V)> = shard
                .state
                .read()
                .entries()
                .iter()
                .map(|e| (e.key.clone(), e.value.clone()))
                .collect();
            self.buffer = copy.into_iter();
        }
    }
}

/// Sizes and settings: they need neither hashing nor comparing keys.
impl<K, V, S> Cache<K, V, S> {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|s| s.state.read().len()).sum()
    }

    /// Whether the cache holds no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total weight of the entries (their count when there is no weigher).
    pub fn weighted_size(&self) -> u64 {
        self.inner
            .shards
            .iter()
            .map(|s| s.state.read().weight())
            .sum()
    }

    /// The configured `max_capacity`.
    pub fn capacity(&self) -> u64 {
        self.inner.capacity
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.inner.shards.len()
    }
}

impl<K, V, S> fmt::Debug for Cache<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("len", &self.len())
            .field("capacity", &self.inner.capacity)
            .field("shards", &self.inner.shards.len())
            .finish_non_exhaustive()
    }
}
