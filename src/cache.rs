//! The public handle: hash once, route to a shard, delegate.

use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_utils::CachePadded;
use equivalent::Equivalent;

use crate::DefaultHashBuilder;
use crate::builder::{CacheBuilder, Weigher, default_shards};
use crate::clock::Clock;
use crate::expiry::{ExpireConfig, Lifetime, ticks};
use crate::listener::{self, Listener, RemovalCause, Removed};
use crate::policy::{SharedWindow, initial_window};
use crate::shard::{Begin, Budget, EXPIRE_BUDGET, Read, ShardState, Timing};
use crate::stats::{CacheStats, ShardStats};
use crate::sync::{Mutex, RwLock};

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

/// What [`Cache::compute`] does with a key, decided from its current value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compute<V> {
    /// Leave the key as it is.
    Keep,
    /// Store this value (inserting or replacing).
    Put(V),
    /// Remove the key.
    Remove,
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
        state.give_back_spare();
        if state.is_timed() {
            let due = state.next_due();
            if self.due.load(Ordering::Relaxed) != due {
                self.due.store(due, Ordering::Relaxed);
            }
        }
    }
}

/// How a cache's `get` reads (`Inner::read`, as a `u8`): decided at build time, except that a
/// cache built without expiration goes from `PLAIN` to `TTL` at its first
/// [`insert_with_ttl`](Cache::insert_with_ttl).
mod read_kind {
    /// Nothing expires (yet), no statistics: `read_plain`, which takes an entry with a
    /// deadline for a miss.
    pub(super) const PLAIN: u8 = 0;
    /// `PLAIN` with statistics (out of line, so that `PLAIN` does not test for counters).
    pub(super) const PLAIN_COUNTED: u8 = 3;
    /// Nothing moves a deadline on a read (no time-to-idle, no `Expiry`): `get_ttl`.
    pub(super) const TTL: u8 = 1;
    /// Time-to-idle or an `Expiry`: `read_timed`.
    pub(super) const FULL: u8 = 2;
}
use read_kind::{FULL, PLAIN, PLAIN_COUNTED, TTL};

struct Inner<K, V, S> {
    shards: Box<[Shard<K, V>]>,
    mask: usize,
    hasher: S,
    weigher: Option<Weigher<K, V>>,
    listener: Option<Listener<K, V>>,
    capacity: u64,
    clock: Clock,
    expire: ExpireConfig<K, V>,
    /// Whether the cache keeps statistics (`record_stats`; the counters are in the shards).
    record_stats: bool,
    /// How `get` reads (whether entries can expire, and how).
    read: AtomicU8,
    name: Option<Arc<str>>,
    /// How long a failed load's error is served (`cache_errors_for`), in clock ticks; 0: not.
    negative_ttl: u64,
    /// Panics of the eviction listener, caught where the notifications are delivered.
    listener_panics: AtomicU64,
    /// This cache's number among the caches the process built (from 1): the metrics label of
    /// a cache without a name.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    serial: u64,
    /// The capacity no shard holds, when weighted (see `Budget`).
    budget: Option<Arc<Budget>>,
    /// Serialises the shards' lending to an entry too large for its own shard (`lend`).
    lending: Mutex<()>,
}

/// Numbers the caches of the process, so that unnamed ones get distinct metrics labels.
static CACHES_BUILT: AtomicU64 = AtomicU64::new(0);

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
        let shards = default_shards(max_capacity, false);
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
        let budget = b.weigher.is_some().then(|| Arc::new(Budget::new(capacity)));
        let initial = b.initial_capacity.div_ceil(shards);
        let expire = ExpireConfig::new(b.ttl, b.tti, b.expiry, b.jitter);
        let clock = b.clock;
        let record_stats = b.record_stats;
        // Only an expiring cache reads the clock (and so starts the ticker) up front.
        let timed = expire
            .is_active()
            .then(|| (clock.now_ticks(), expire.caps_upfront()));
        // One window target for the whole cache (`policy/window.rs`).
        let window = Arc::new(SharedWindow::new(capacity, initial_window(capacity)));
        let shards: Box<[_]> = (0..shards)
            .map(|i| {
                // Spread the remainder so shard capacities differ by at most one.
                let cap = capacity / n + u64::from((i as u64) < capacity % n);
                let seed = b.hasher.hash_one(i);
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
                clock,
                read: AtomicU8::new(match (timed.is_some(), expire.ttl_only()) {
                    (false, _) if record_stats => PLAIN_COUNTED,
                    (false, _) => PLAIN,
                    (true, true) => TTL,
                    (true, false) => FULL,
                }),
                expire,
                record_stats,
                name: b.name,
                negative_ttl: b.negative_ttl.map_or(0, ticks),
                listener_panics: AtomicU64::new(0),
                serial: CACHES_BUILT.fetch_add(1, Ordering::Relaxed) + 1,
                budget,
                lending: Mutex::new(()),
            }),
        }
    }

    /// Hashes `key` once. The high 32 bits pick the shard; the low 32 bits are what the shard
    /// stores and derives its index and sketch positions from.
    #[inline]
    pub(crate) fn hash<Q: ?Sized + Hash>(&self, key: &Q) -> (usize, u32) {
        let h = self.inner.hasher.hash_one(key);
        ((h >> 32) as usize & self.inner.mask, h as u32)
    }

    #[inline]
    fn timing(&self) -> Timing<'_, K, V> {
        Timing {
            clock: &self.inner.clock,
            cfg: &self.inner.expire,
            read: std::cell::Cell::new(None),
        }
    }

    /// Returns a clone of the value for `key`, and records the access for the eviction policy.
    ///
    /// An entry past its deadline is never returned. With
    /// [`time_to_idle`](CacheBuilder::time_to_idle) (or an [`Expiry`](crate::Expiry) with a
    /// read hook) a hit also moves the entry's deadline.
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        Q: ?Sized + Hash + Equivalent<K>,
        V: Clone,
    {
        // An expiring cache branches off before hashing, so this function saves no
        // registers on its way out (the branch is a jump).
        match self.inner.read.load(Ordering::Relaxed) {
            PLAIN => {
                let (i, h) = self.hash(key);
                self.read_plain::<_, false, false>(i, h, key)
            }
            TTL => self.get_ttl(key),
            FULL => self.get_timed(key),
            _ => self.get_counted(key),
        }
    }

    /// [`get`](Self::get) of a cache without expiration that keeps statistics.
    #[inline(never)]
    fn get_counted<Q>(&self, key: &Q) -> Option<V>
    where
        Q: ?Sized + Hash + Equivalent<K>,
        V: Clone,
    {
        let (i, h) = self.hash(key);
        self.read_plain::<_, true, true>(i, h, key)
    }

    /// A loader's first look: [`get`](Self::get) with the key already hashed to shard `i` and
    /// hash `h`, counting a hit but not a miss (`begin_load` counts how the call goes on).
    #[inline]
    pub(crate) fn get_at<Q>(&self, i: usize, h: u32, key: &Q) -> Option<V>
    where
        Q: ?Sized + Equivalent<K>,
        V: Clone,
    {
        match self.inner.read.load(Ordering::Relaxed) {
            PLAIN => self.read_plain::<_, false, false>(i, h, key),
            PLAIN_COUNTED => self.read_plain::<_, true, false>(i, h, key),
            _ => self.get_timed_at(i, h, key),
        }
    }

    /// A read of a loading cache: also says whether this reader claimed the entry's refresh
    /// (`refresh` decides from the ticks the entry has left), which it must then start. Like
    /// `get_at`, it counts a hit but not a miss.
    #[inline]
    pub(crate) fn get_refreshing<Q>(
        &self,
        i: usize,
        h: u32,
        key: &Q,
        refresh: &dyn Fn(u64) -> bool,
    ) -> Option<(V, bool)>
    where
        Q: ?Sized + Equivalent<K>,
        V: Clone,
    {
        match self.inner.read.load(Ordering::Relaxed) {
            PLAIN => self
                .read_plain::<_, false, false>(i, h, key)
                .map(|v| (v, false)),
            PLAIN_COUNTED => self
                .read_plain::<_, true, false>(i, h, key)
                .map(|v| (v, false)),
            _ => self.read_timed(i, h, key, Some(refresh), false),
        }
    }

    /// Counts a hit on `shard` in its statistics, if kept.
    #[inline]
    fn record_hit(&self, shard: &Shard<K, V>) {
        if let Some(stats) = &shard.stats {
            stats.hit();
        }
    }

    /// A read of a cache without expiration, inline and with nothing kept alive across the
    /// probe but the shard pointer (its lock and counters), so that a hit costs about as many
    /// instructions as quick_cache's. An expiring cache reads through `read_timed` instead,
    /// out of line, so that its deadline and refresh handling does not widen this function's
    /// register use (with both in one function, a plain hit paid for six saved registers and
    /// as many spills: 125 instructions instead of 110).
    ///
    /// An entry with a deadline reads as a miss: the caller read the cache's read kind before
    /// the cache's first `insert_with_ttl` (which moves it to `TTL`) was visible, so this read
    /// may be ordered before that insert, and before every later one whose entry it finds.
    ///
    /// `COUNTED`: whether the cache keeps statistics; `MISSES`: whether a miss is counted here
    /// (not for a loader, whose call is counted by how it goes on).
    #[inline(always)]
    fn read_plain<Q, const COUNTED: bool, const MISSES: bool>(
        &self,
        i: usize,
        h: u32,
        key: &Q,
    ) -> Option<V>
    where
        Q: ?Sized + Equivalent<K>,
        V: Clone,
    {
        let shard = &self.inner.shards[i];
        let state = shard.state.read();
        let v = state.get_untimed(h, key).cloned();
        drop(state);
        if COUNTED {
            if let Some(s) = &shard.stats {
                if v.is_some() {
                    s.hit();
                } else if MISSES {
                    s.miss();
                }
            }
        }
        v
    }

    /// [`get`](Self::get) of an expiring cache, out of line (see `read_plain`).
    #[inline(never)]
    fn get_timed<Q>(&self, key: &Q) -> Option<V>
    where
        Q: ?Sized + Hash + Equivalent<K>,
        V: Clone,
    {
        let (i, h) = self.hash(key);
        self.read_timed(i, h, key, None, true).map(|(v, _)| v)
    }

    /// [`get`](Self::get) of a cache whose only expiration is a time-to-live: like
    /// `read_plain`, with one deadline check; anything unusual (a wheel far behind) takes the
    /// full `read_timed`. Out of line, like `get_timed`.
    #[inline(never)]
    fn get_ttl<Q>(&self, key: &Q) -> Option<V>
    where
        Q: ?Sized + Hash + Equivalent<K>,
        V: Clone,
    {
        let (i, h) = self.hash(key);
        let shard = &self.inner.shards[i];
        // The time is read first, so that past the probe only `shard`, `key` and `now` are
        // live (the uncommon ends find the shard's number in it, or hash again): an instant
        // earlier than under the lock, which no caller can tell apart.
        let now = self.inner.clock.now_ticks();
        let state = shard.state.read();
        match state.get_ttl(h, key, now) {
            Read::Hit(v) => {
                let v = v.clone();
                drop(state);
                self.record_hit(shard);
                Some(v)
            }
            Read::Miss => {
                drop(state);
                self.timed_miss(shard, Some(now), true);
                None
            }
            _ => {
                drop(state);
                self.get_timed(key)
            }
        }
    }

    /// A miss of an expiring cache (no lock held): counted (if `count`), and the shard's
    /// expired entries reclaimed if some are due at `now` (read here if `None`; checked inline:
    /// most misses find none).
    #[inline(always)]
    fn timed_miss(&self, shard: &Shard<K, V>, now: Option<u64>, count: bool) {
        if let (true, Some(stats)) = (count, &shard.stats) {
            stats.miss();
        }
        if let Some(due) = shard.pending_due() {
            let now = now.unwrap_or_else(|| self.inner.clock.now_ticks());
            if due <= now {
                self.maintain(shard.index, false, Some(now));
            }
        }
    }

    /// [`get_at`](Self::get_at) of an expiring cache, out of line (see `read_plain`).
    #[inline(never)]
    fn get_timed_at<Q>(&self, i: usize, h: u32, key: &Q) -> Option<V>
    where
        Q: ?Sized + Equivalent<K>,
        V: Clone,
    {
        self.read_timed(i, h, key, None, false).map(|(v, _)| v)
    }

    /// A read of an expiring cache: deadlines, time-to-idle and refresh. `miss`: whether a
    /// miss is counted.
    #[inline(always)]
    fn read_timed<Q>(
        &self,
        i: usize,
        h: u32,
        key: &Q,
        refresh: Option<&dyn Fn(u64) -> bool>,
        miss: bool,
    ) -> Option<(V, bool)>
    where
        Q: ?Sized + Equivalent<K>,
        V: Clone,
    {
        let shard = &self.inner.shards[i];
        let state = shard.state.read();
        let inner = &self.inner;
        // A hit: its value, whether this reader claimed its refresh, and an earlier deadline
        // to file under the write lock.
        let (v, claimed, refile) = match state.get(h, key, &inner.clock, &inner.expire, refresh) {
            Read::Hit(v) => (v.clone(), false, None),
            Read::Refresh(v) => (v.clone(), true, None),
            Read::Refile(v, when) => (v.clone(), false, Some(when)),
            Read::Miss => {
                drop(state);
                self.timed_miss(shard, None, miss);
                return None;
            }
            Read::Stale => {
                drop(state);
                return self.read_stale(i, h, key, refresh, miss);
            }
        };
        drop(state);
        self.record_hit(shard);
        if let Some(when) = refile {
            self.refile(i, h, key, when);
        }
        Some((v, claimed))
    }

    /// `read_timed` after the shard's wheel was found too far behind to read deadlines (a shard
    /// idle for days): catch up, then read again. Out of line, rather than a retry loop in
    /// `read_timed`, so the hit path keeps nothing alive across iterations.
    #[cold]
    #[inline(never)]
    fn read_stale<Q>(
        &self,
        i: usize,
        h: u32,
        key: &Q,
        refresh: Option<&dyn Fn(u64) -> bool>,
        miss: bool,
    ) -> Option<(V, bool)>
    where
        Q: ?Sized + Equivalent<K>,
        V: Clone,
    {
        self.catch_up(i);
        self.read_timed(i, h, key, refresh, miss)
    }

    /// Returns a clone of the value for `key` without counting it as an access: the entry is no
    /// more likely to stay than before, and its time-to-idle deadline does not move.
    #[inline]
    pub fn peek<Q>(&self, key: &Q) -> Option<V>
    where
        Q: ?Sized + Hash + Equivalent<K>,
        V: Clone,
    {
        let (i, h) = self.hash(key);
        loop {
            let state = self.inner.shards[i].state.read();
            return match state.peek(h, key, &self.inner.clock) {
                Read::Hit(v) | Read::Refile(v, _) | Read::Refresh(v) => Some(v.clone()),
                Read::Miss => None,
                Read::Stale => {
                    drop(state);
                    self.catch_up(i);
                    continue;
                }
            };
        }
    }

    /// Whether `key` is present (and not expired). Does not count as an access.
    #[inline]
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        let (i, h) = self.hash(key);
        let state = self.inner.shards[i].state.read();
        match state.peek(h, key, &self.inner.clock) {
            Read::Hit(_) | Read::Refile(..) | Read::Refresh(_) => true,
            Read::Miss => false,
            Read::Stale => {
                drop(state);
                self.catch_up(i);
                self.contains_key(key)
            }
        }
    }

    /// Inserts `value` for `key`, returning the value it replaced (`None` if there was none, or
    /// if it had expired).
    ///
    /// The entry may be evicted at once: a new entry always enters, but to make room the policy
    /// may later prefer an older, more frequently used entry over it. An entry heavier than its
    /// shard's share of the capacity is not stored; the previous value for `key`, if any, is then
    /// removed and returned. The same holds for an entry whose configured lifetime is zero.
    /// Removals are reported to the eviction listener, if any, before this returns.
    pub fn insert(&self, key: K, value: V) -> Option<V> {
        self.insert_with(key, value, Lifetime::Configured)
    }

    /// Inserts `value` for `key` to expire `ttl` from now, whatever the cache's configured
    /// lifetimes, and returns the value it replaced.
    ///
    /// `ttl` is rounded down to whole milliseconds and capped at about 12.4 days; a `ttl`
    /// under one millisecond means the value is not stored (and the previous one is removed).
    /// With [`time_to_idle`](CacheBuilder::time_to_idle), reads may keep the entry alive, but
    /// never past `ttl` after this insert. Works on any cache: a cache built without
    /// expiration starts keeping deadlines (6 bytes per entry, see
    /// [`time_to_live`](CacheBuilder::time_to_live)) in a shard the first time one of its
    /// entries gets one.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cachet::{Cache, Clock, MockClock};
    ///
    /// let time = MockClock::new();
    /// let cache = Cache::builder().max_capacity(100).clock(Clock::mock(&time)).build().unwrap();
    /// cache.insert_with_ttl("otp:42", 917_114, Duration::from_secs(30));
    /// cache.insert("config", 7); // no deadline
    /// time.advance(Duration::from_secs(30));
    /// assert_eq!(cache.get("otp:42"), None);
    /// assert_eq!(cache.get("config"), Some(7));
    /// ```
    pub fn insert_with_ttl(&self, key: K, value: V, ttl: Duration) -> Option<V> {
        self.insert_with(key, value, Lifetime::Fixed(ticks(ttl)))
    }

    fn insert_with(&self, key: K, value: V, life: Lifetime) -> Option<V> {
        let (i, h) = self.hash(&key);
        let w = match &self.inner.weigher {
            Some(weigh) => weigh(&key, &value),
            None => 1,
        };
        let mut removed = Removed::new();
        let shard = &self.inner.shards[i];
        let time = self.timing();
        let (old, short) = {
            let mut state = shard.state.write();
            let old = state.insert(h, key, value, w, life, &time, &mut removed);
            let short = state.take_shortfall();
            shard.after_write(&mut state);
            // The first deadline of a cache built without expiration: reads now check them
            // (a read that still took `read_plain` takes an entry with a deadline for a miss).
            if state.is_timed()
                && matches!(
                    self.inner.read.load(Ordering::Relaxed),
                    PLAIN | PLAIN_COUNTED
                )
            {
                self.inner.read.store(TTL, Ordering::Relaxed);
            }
            (old, short)
        };
        // The lock is released: report (or just drop) what left the cache.
        if let Some(stats) = self.shard_stats(i) {
            stats.inserted();
        }
        self.deliver(i, removed, old.as_ref());
        if short > 0 {
            self.lend(i, short);
        }
        self.help_other(i, h, time.read.get());
        old
    }

    /// Reads, changes or removes the value of `key` in one step that no other write to the key
    /// can interleave with: `f` sees the current value (`None` if absent or expired) and
    /// returns what to do. Returns the key's value after the operation.
    ///
    /// If a load of the key is in flight ([`get_or_load`](Self::get_or_load) and friends),
    /// `compute` first waits for it to end, so it sees the loaded value rather than racing the
    /// loader (this call blocks: do not call it from an async task while a slow load of the
    /// same key may be running). A stored value gets the cache's configured lifetime, as with
    /// [`insert`](Self::insert); removals and replacements are reported to the listener.
    ///
    /// `f` runs under the shard's write lock: keep it short, and do not call back into the
    /// cache from it (that deadlocks). If it panics, nothing changes and the panic resumes.
    ///
    /// ```
    /// use cachet::{Cache, Compute};
    ///
    /// let hits: Cache<&str, u64> = Cache::new(100);
    /// for _ in 0..3 {
    ///     hits.compute("/home", |n| Compute::Put(n.copied().unwrap_or(0) + 1));
    /// }
    /// assert_eq!(hits.get("/home"), Some(3));
    /// // Remove the key once it reaches a threshold, atomically with the check.
    /// let after = hits.compute("/home", |n| if n >= Some(&3) { Compute::Remove } else { Compute::Keep });
    /// assert_eq!(after, None);
    /// ```
    pub fn compute<F>(&self, key: K, f: F) -> Option<V>
    where
        K: Clone,
        V: Clone,
        F: FnOnce(Option<&V>) -> Compute<V>,
    {
        let (i, h) = self.hash(&key);
        let shard = &self.inner.shards[i];
        let time = self.timing();
        // Both are used once, in the pass that finds no load in flight.
        let (mut f, mut key) = (Some(f), Some(key));
        loop {
            let mut removed = Removed::new();
            let outcome = {
                let mut state = shard.state.write();
                let now = self.now_if(&state);
                let k = key.as_ref().expect("key is used once");
                match state.probe(h, k, now) {
                    Err(flight) => Err(flight),
                    Ok(current) => {
                        let f = f.take().expect("f runs once");
                        let op = f(current);
                        let mut old = None;
                        let mut short = 0;
                        let result = match op {
                            Compute::Keep => current.cloned(),
                            Compute::Put(v) => {
                                let key = key.take().expect("key is used once");
                                let w = match &self.inner.weigher {
                                    Some(weigh) => weigh(&key, &v),
                                    None => 1,
                                };
                                let new = v.clone();
                                let life = Lifetime::Configured;
                                let probe = key.clone();
                                old = state.insert(h, key, v, w, life, &time, &mut removed);
                                short = state.take_shortfall();
                                // Too heavy, or a zero lifetime: the value was not kept.
                                let kept = matches!(state.probe(h, &probe, now), Ok(Some(_)));
                                if let Some(stats) = self.shard_stats(i) {
                                    stats.inserted();
                                }
                                kept.then_some(new)
                            }
                            Compute::Remove => {
                                if let Some((k, v, expired)) =
                                    state.remove(h, k, &self.inner.clock, &mut removed)
                                {
                                    let cause = if expired {
                                        RemovalCause::Expired
                                    } else {
                                        RemovalCause::Explicit
                                    };
                                    removed.push(k, v, cause);
                                }
                                None
                            }
                        };
                        shard.after_write(&mut state);
                        Ok((result, old, short))
                    }
                }
            };
            match outcome {
                Ok((result, old, short)) => {
                    // The replaced value (if any) is reported as Replaced.
                    self.deliver(i, removed, old.as_ref());
                    if short > 0 {
                        self.lend(i, short);
                    }
                    return result;
                }
                Err(flight) => {
                    // A load of the key is in flight: let it finish, then look again.
                    crate::loader::check_not_leading(&flight);
                    let _ = flight.wait(None);
                }
            }
        }
    }

    /// A read moved the deadline of `key` earlier (or gave it one): refile it (write lock).
    #[cold]
    fn refile<Q>(&self, i: usize, h: u32, key: &Q, when: u64)
    where
        Q: ?Sized + Equivalent<K>,
    {
        let shard = &self.inner.shards[i];
        let mut state = shard.state.write();
        let now = self.now_if(&state);
        state.refile(h, key, when, now);
        shard.after_write(&mut state);
    }

    /// After a miss on `key` (shard `i`, hash `h`): a hit after all, a load to join, or a load to
    /// lead (see `loader.rs`). `first`: this is the caller's first decision, which its
    /// statistics count: a hit (a value, or a remembered failure), a miss (it leads the load)
    /// or a coalesced wait (it joins another caller's load).
    pub(crate) fn begin_load(&self, i: usize, h: u32, key: &K, first: bool) -> Begin<V>
    where
        K: Clone,
        V: Clone,
    {
        let shard = &self.inner.shards[i];
        let mut removed = Removed::new();
        let begin = {
            let mut state = shard.state.write();
            let now = if self.inner.negative_ttl > 0 {
                self.inner.clock.now_ticks()
            } else {
                self.now_if(&state)
            };
            let begin = state.begin_load(h, key, now, &mut removed);
            shard.after_write(&mut state);
            begin
        };
        if let (true, Some(stats)) = (first, &shard.stats) {
            match &begin {
                Begin::Hit(_) | Begin::Remembered(_) => stats.hit(),
                Begin::Lead(_) => stats.miss(),
                Begin::Join(_) => stats.coalesced(),
            }
        }
        self.deliver(i, removed, None);
        begin
    }

    /// Ends the load of `generation` for `key`; stores `value` if the load was not superseded
    /// meanwhile. Returns whether it was stored.
    pub(crate) fn end_load(
        &self,
        i: usize,
        h: u32,
        key: &K,
        generation: u64,
        value: Option<V>,
    ) -> bool
    where
        K: Clone,
    {
        self.store_loaded(i, h, key, value, |state| state.end_load(h, generation))
    }

    /// Ends the background refresh of `generation` for `key`, storing `value` unless a write
    /// or removal of the key superseded the refresh. Returns whether it was stored.
    pub(crate) fn end_refresh(
        &self,
        i: usize,
        h: u32,
        key: &K,
        generation: u64,
        value: Option<V>,
    ) -> bool
    where
        K: Clone,
    {
        self.store_loaded(i, h, key, value, |state| state.end_refresh(generation))
    }

    /// Registers a background refresh of `key` (whose refresh this caller claimed): returns
    /// the key and the flight other callers may join, or `None` if one is already running.
    pub(crate) fn begin_refresh(
        &self,
        i: usize,
        h: u32,
        key: &K,
    ) -> Option<(K, Arc<crate::loader::Flight<V>>)>
    where
        K: Clone,
    {
        let mut state = self.inner.shards[i].state.write();
        state.begin_refresh(h, key, &K::clone)
    }

    /// Ends a load or a refresh (`current` takes its slot under the write lock and says if it
    /// is still current) and stores its value if so.
    fn store_loaded(
        &self,
        i: usize,
        h: u32,
        key: &K,
        value: Option<V>,
        current: impl FnOnce(&mut ShardState<K, V>) -> bool,
    ) -> bool
    where
        K: Clone,
    {
        // The weigher runs before the lock, as for `insert`.
        let w = match (&self.inner.weigher, &value) {
            (Some(weigh), Some(v)) => weigh(key, v),
            _ => 1,
        };
        let shard = &self.inner.shards[i];
        let mut removed = Removed::new();
        let (stored, short) = {
            let mut state = shard.state.write();
            let current = current(&mut state);
            let stored_value = value.is_some();
            if let (true, Some(v)) = (current, value) {
                let life = Lifetime::Configured;
                let key = key.clone();
                state.insert(h, key, v, w, life, &self.timing(), &mut removed);
            }
            let short = state.take_shortfall();
            shard.after_write(&mut state);
            (current && stored_value, short)
        };
        if let (true, Some(stats)) = (stored, self.shard_stats(i)) {
            stats.inserted();
        }
        self.deliver(i, removed, None);
        if short > 0 {
            self.lend(i, short);
        }
        stored
    }

    /// How many callers are waiting on the load in flight for `key`, or `None` if no load is
    /// in flight. For tests that must force an interleaving (all waiters joined) without
    /// sleeping.
    #[doc(hidden)]
    pub fn loaders_waiting(&self, key: &K) -> Option<usize> {
        let (i, h) = self.hash(key);
        self.inner.shards[i].state.read().waiting(h, key)
    }

    /// Ends a failed load: with `cache_errors_for`, its slot stays as a negative entry;
    /// otherwise the key is freed for a new leader.
    pub(crate) fn fail_load(&self, i: usize, h: u32, generation: u64) {
        let ttl = self.inner.negative_ttl;
        let mut state = self.inner.shards[i].state.write();
        if ttl > 0 {
            let until = self.inner.clock.now_ticks().saturating_add(ttl);
            state.keep_failed(h, generation, until);
        } else {
            state.end_load(h, generation);
        }
    }

    /// Ends an abandoned load (no value): frees the key for a new leader.
    pub(crate) fn abandon_load(&self, i: usize, h: u32, generation: u64) {
        let shard = &self.inner.shards[i];
        shard.state.write().end_load(h, generation);
    }

    /// Removes `key`, returning its value (`None` if absent or expired).
    ///
    /// The eviction listener, if any, gets the key and a clone of the value (or the value
    /// itself, with [`RemovalCause::Expired`], if it had expired).
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        let (i, h) = self.hash(key);
        let shard = &self.inner.shards[i];
        let mut removed = Removed::new();
        let found = {
            let mut state = shard.state.write();
            let found = state.remove(h, key, &self.inner.clock, &mut removed);
            shard.after_write(&mut state);
            found
        };
        let Some((k, v, expired)) = found else {
            self.deliver(i, removed, None);
            return None;
        };
        if expired {
            removed.push(k, v, RemovalCause::Expired);
            self.deliver(i, removed, None);
            return None;
        }
        removed.push_returned(k, RemovalCause::Explicit);
        self.deliver(i, removed, Some(&v));
        Some(v)
    }

    /// Removes every entry. Shards are cleared one at a time; entries inserted concurrently into
    /// an already cleared shard stay. Every entry is reported to the eviction listener (as
    /// [`RemovalCause::Explicit`], or [`RemovalCause::Expired`] if its deadline had passed).
    pub fn invalidate_all(&self) {
        for (i, shard) in self.inner.shards.iter().enumerate() {
            let entries = {
                let mut state = shard.state.write();
                let now = self.now_if(&state);
                let entries = state.clear(now);
                shard.after_write(&mut state);
                entries
            };
            self.count_removed(i, entries.iter().map(|e| e.2));
            listener::deliver_all(
                self.inner.listener.as_ref(),
                entries,
                &self.inner.listener_panics,
            );
        }
    }

    /// Keeps only the entries for which `keep(&key, &value)` returns `true`. Expired entries
    /// are removed (as [`RemovalCause::Expired`]) without being shown to `keep`.
    ///
    /// `keep` runs under each shard's write lock in turn: keep it short, and do not call back into
    /// this cache from it (that deadlocks on the shard being visited).
    ///
    /// Loads in flight ([`get_or_load`](Self::get_or_load) and friends) are superseded, as an
    /// [`invalidate_all`](Self::invalidate_all) supersedes them: a load has no value for `keep`
    /// to judge yet, and it may have read what `retain` is filtering out, so its callers get
    /// its value but it is not stored. Failed loads remembered by
    /// [`cache_errors_for`](CacheBuilder::cache_errors_for) are forgotten.
    ///
    /// # Panics
    ///
    /// If `keep` panics, the entries it already rejected are removed and reported, the rest are
    /// kept, and the panic resumes.
    pub fn retain<F>(&self, mut keep: F)
    where
        F: FnMut(&K, &V) -> bool,
    {
        let mut removed = Vec::new();
        for (i, shard) in self.inner.shards.iter().enumerate() {
            // The guard is dropped (the lock is free) before the removed entries are reported.
            let visited = catch_unwind(AssertUnwindSafe(|| {
                let mut state = shard.state.write();
                let now = self.now_if(&state);
                state.retain(&mut keep, now, &mut removed);
                shard.after_write(&mut state);
            }));
            self.count_removed(i, removed.iter().map(|e| e.2));
            listener::deliver_all(
                self.inner.listener.as_ref(),
                removed.drain(..),
                &self.inner.listener_panics,
            );
            if let Err(p) = visited {
                resume_unwind(p);
            }
        }
    }

    /// Iterates over clones of the entries, one shard at a time: each shard is copied under its
    /// read lock, which is released before its entries are yielded, so writers are never blocked
    /// for longer than one shard's copy. An entry present for the whole iteration is yielded
    /// exactly once; entries inserted or removed meanwhile may or may not be. Entries past
    /// their deadline when their shard is copied are not yielded.
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
    /// agreement, the capacity bound) and returns the first violation found. For tests; it holds
    /// every shard's read lock while it walks all of them.
    #[doc(hidden)]
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
        if total != self.inner.capacity {
            return Err(format!(
                "shard capacities (and free budget) sum to {total}, not {}",
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
            let mut state = shard.state.read();
            let mut now = self.cache.now_if(&state);
            if state.lagging(now) {
                drop(state);
                self.cache.catch_up(self.next_shard - 1);
                state = shard.state.read();
                now = self.cache.now_if(&state);
            }
            let copy: Vec<(K, V)> = state
                .live_entries(now)
                .map(|e| (e.key.clone(), e.value.clone()))
                .collect();
            drop(state);
            self.buffer = copy.into_iter();
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

    /// Removes every entry whose deadline has passed, now.
    ///
    /// Never required: every write (and every read that misses) already removes a bounded
    /// number of expired entries, so memory is given back under any traffic. This is for an
    /// idle cache whose memory should be released anyway, or before measuring it. The work is
    /// done in batches of at most a thousand entries per shard lock, and removals are reported
    /// to the eviction listener as they go.
    pub fn run_pending_maintenance(&self) {
        let mut panic = None;
        for i in 0..self.inner.shards.len() {
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| self.maintain(i, true, None))) {
                panic.get_or_insert(p);
            }
        }
        if let Some(p) = panic {
            resume_unwind(p);
        }
    }

    /// The clock tick now, if this shard keeps deadlines (0 otherwise: no deadline to compare).
    #[inline]
    fn now_if(&self, state: &ShardState<K, V>) -> u64 {
        if state.is_timed() {
            self.inner.clock.now_ticks()
        } else {
            0
        }
    }

    /// Expires what is due in shard `i`: one batch (blocking on the lock only if `all`), or
    /// batches until nothing is due (`all`).
    fn maintain(&self, i: usize, all: bool, known_now: Option<u64>) {
        let shard = &self.inner.shards[i];
        loop {
            let Some(due) = shard.pending_due() else {
                return;
            };
            let now = match known_now {
                Some(now) if !all => now,
                _ => self.inner.clock.now_ticks(),
            };
            if due > now {
                return;
            }
            let mut removed = Removed::new();
            {
                let mut state = if all {
                    shard.state.write()
                } else {
                    match shard.state.try_write() {
                        Some(s) => s,
                        None => return, // the lock holder does the work
                    }
                };
                state.expire(now, EXPIRE_BUDGET, &mut removed);
                shard.after_write(&mut state);
            }
            self.deliver(i, removed, None);
            if !all {
                return;
            }
        }
    }

    /// After a write to shard `i`: also help one other shard, picked by the key's hash, if it
    /// has expired entries waiting and its lock is free, so a backlog in a shard that is
    /// rarely written still drains with the cache's overall traffic.
    #[inline]
    fn help_other(&self, i: usize, h: u32, now: Option<u64>) {
        let j = (i ^ (h >> 16) as usize) & self.inner.mask;
        if j == i {
            return;
        }
        // With the time known (any write to an expiring cache), most calls end here.
        let due = self.inner.shards[j].pending_due();
        if due.is_some_and(|due| now.is_none_or(|now| due <= now)) {
            self.maintain(j, false, now);
        }
    }

    /// The wheel of shard `i` is too far behind the clock for its deadlines to be read:
    /// bring it up to date (the shard does it in one go in that case).
    #[cold]
    fn catch_up(&self, i: usize) {
        let shard = &self.inner.shards[i];
        let mut removed = Removed::new();
        {
            let mut state = shard.state.write();
            let now = self.now_if(&state);
            state.expire(now, EXPIRE_BUDGET, &mut removed);
            shard.after_write(&mut state);
        }
        self.deliver(i, removed, None);
    }

    /// An insert into shard `i` left it `need` short of room for an entry larger than all the
    /// capacity it could claim (a weighted cache that is nearly full): the other shards lend
    /// it capacity, each its part of `need` first (then whatever more it holds), evicting by
    /// their own policies what no longer fits. One lender at a time, each under its own lock;
    /// the removals are reported once no lock is held. Rare: it takes every shard's lock once.
    #[cold]
    #[inline(never)]
    fn lend(&self, i: usize, need: u64) {
        let n = self.inner.shards.len();
        let mut batches = Vec::new();
        {
            let _one_at_a_time = self.inner.lending.lock();
            let mut lent = 0;
            let even = need.div_ceil((n as u64 - 1).max(1));
            for pass in [Some(even), None] {
                for j in (1..n).map(|d| (i + d) % n) {
                    if lent >= need {
                        break;
                    }
                    let want = pass.unwrap_or(need).min(need - lent);
                    let shard = &self.inner.shards[j];
                    let mut removed = Removed::new();
                    let mut state = shard.state.write();
                    let now = self.now_if(&state);
                    lent += state.lend(want, now, &mut removed);
                    shard.after_write(&mut state);
                    drop(state);
                    batches.push((j, removed));
                }
            }
            let shard = &self.inner.shards[i];
            let mut removed = Removed::new();
            let mut state = shard.state.write();
            let now = self.now_if(&state);
            state.receive(lent, now, &mut removed);
            shard.after_write(&mut state);
            drop(state);
            batches.push((i, removed));
        }
        for (j, removed) in batches {
            self.deliver(j, removed, None);
        }
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

    /// Counts (with `record_stats`) and reports what left shard `i`, with no lock held.
    /// `returned` is the value the operation gives back to its caller, if any.
    #[inline(always)]
    fn deliver(&self, i: usize, removed: Removed<K, V>, returned: Option<&V>) {
        // No listener, no statistics, no panic to resume (most writes): just drop what left,
        // here, without moving it into a call.
        if self.inner.listener.is_none() && !self.inner.record_stats && !removed.panicked() {
            drop(removed);
            return;
        }
        self.deliver_slow(i, removed, returned);
    }

    #[inline(never)]
    fn deliver_slow(&self, i: usize, removed: Removed<K, V>, returned: Option<&V>) {
        self.count_removed(i, removed.causes());
        let panics = &self.inner.listener_panics;
        removed.deliver(self.inner.listener.as_ref(), returned, panics);
    }

    /// A snapshot of the cache's statistics: hits, misses, loads, removals by cause, and
    /// sizes. The counters stay at zero unless the builder's
    /// [`record_stats`](CacheBuilder::record_stats) turned them on. Takes each shard's read
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

    /// The name given by the builder's [`name`](CacheBuilder::name), if any.
    pub fn name(&self) -> Option<&str> {
        self.inner.name.as_deref()
    }

    /// This cache's number among the caches built in the process, from 1.
    #[cfg(feature = "metrics")]
    pub(crate) fn serial(&self) -> u64 {
        self.inner.serial
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
            .field("name", &self.inner.name)
            .field("len", &self.len())
            .field("capacity", &self.inner.capacity)
            .field("shards", &self.inner.shards.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read that loaded the read kind before the cache's first `insert_with_ttl` was visible
    /// takes the plain path on a shard that has a wheel by then: entries with a deadline must
    /// read as misses there (never as hits that skip the deadline), the others as usual.
    #[test]
    fn a_plain_read_of_a_shard_given_a_wheel_misses_entries_with_deadlines() {
        let cache: Cache<u32, u32> = Cache::builder().max_capacity(100).build().unwrap();
        assert_eq!(cache.inner.read.load(Ordering::Relaxed), PLAIN);
        cache.insert(1, 10);
        cache.insert_with_ttl(2, 20, Duration::from_secs(3600));
        assert_eq!(cache.inner.read.load(Ordering::Relaxed), TTL);
        assert_eq!((cache.get(&1), cache.get(&2)), (Some(10), Some(20)));
        // Replay the stale read kind.
        cache.inner.read.store(PLAIN, Ordering::Relaxed);
        assert_eq!((cache.get(&1), cache.get(&2)), (Some(10), None));
        let (i, h) = cache.hash(&2);
        assert_eq!(cache.get_at(i, h, &2), None);
        assert!(cache.contains_key(&2)); // still stored; peek reads deadlines itself
    }

    /// A slot whose load ended without removing it (no code path leaves one; this guards the
    /// next caller anyway) is taken for free: the caller leads a new load instead of joining a
    /// flight that would only send it round again.
    #[test]
    fn a_settled_load_left_in_the_index_is_replaced_not_joined() {
        let cache: Cache<u32, u32> = Cache::new(100);
        let (i, h) = cache.hash(&1);
        let Begin::Lead(first) = cache.begin_load(i, h, &1, true) else {
            panic!("the first caller leads");
        };
        assert!(cache.validate().is_ok());
        first.abandon(); // settled, slot left behind
        assert!(cache.validate().is_err());
        let Begin::Lead(second) = cache.begin_load(i, h, &1, true) else {
            panic!("the next caller joined a settled load");
        };
        assert_ne!(first.generation, second.generation);
        assert!(cache.validate().is_ok());
        assert!(cache.end_load(i, h, &1, second.generation, Some(5)));
        assert_eq!(cache.get(&1), Some(5));
    }

    /// A cache with statistics reads through its own plain path, and still moves to the
    /// time-to-live one at its first `insert_with_ttl`; both count hits and misses.
    #[test]
    fn read_kinds_follow_statistics_and_the_first_deadline() {
        let cache: Cache<u32, u32> = Cache::builder()
            .max_capacity(100)
            .record_stats()
            .build()
            .unwrap();
        assert_eq!(cache.inner.read.load(Ordering::Relaxed), PLAIN_COUNTED);
        cache.insert(1, 10);
        assert_eq!((cache.get(&1), cache.get(&9)), (Some(10), None));
        let (i, h) = cache.hash(&1);
        assert_eq!(cache.get_at(i, h, &1), Some(10));
        cache.insert_with_ttl(2, 20, Duration::from_secs(3600));
        assert_eq!(cache.inner.read.load(Ordering::Relaxed), TTL);
        assert_eq!((cache.get(&2), cache.get(&9)), (Some(20), None));
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses), (3, 2));
    }
}
