//! Configuration and validation: [`CacheBuilder`], the user's options, checked and turned into
//! the `Config` a cache is built from, and the entry points that build plain and loading caches.
//! Nothing in the core (cache, shard, slab, policy, expiry) imports it.

use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use std::future::Future;

use crate::DefaultHashBuilder;
use crate::cache::Cache;
use crate::clock::Clock;
use crate::config::{Config, MAX_SHARDS, Weigher, default_shards};
use crate::error::BuildError;
use crate::expiry::{ExpireConfig, Expiry, ticks};
use crate::listener::{Listener, RemovalCause};
use crate::loaded::Loaded;
use crate::loading::{AsyncLoadingCache, BoxFuture, LoadingCache, RefreshRule};
use crate::stats::LoadHook;

/// Refresh threads a blocking [`LoadingCache`] starts at most, by default: enough for one slow
/// refresh not to hold up the others, few enough to be cheap when idle.
const DEFAULT_REFRESH_THREADS: usize = 2;

/// The most refresh threads a blocking [`LoadingCache`] may have.
pub const MAX_REFRESH_THREADS: usize = 64;

/// The refresh option as given (validated by the `build_*` methods).
#[derive(Clone, Copy, Debug)]
enum Refresh {
    After(Duration),
    Early(f64),
}

/// Builds a [`Cache`] with options beyond a capacity.
///
/// ```
/// use cachet::Cache;
///
/// let cache: Cache<String, Vec<u8>> = Cache::builder()
///     .max_capacity(64 * 1024 * 1024) // 64 MiB of values
///     .weigher(|_key, value: &Vec<u8>| value.len().try_into().unwrap_or(u32::MAX))
///     .build()
///     .expect("valid configuration");
/// cache.insert("greeting".to_string(), b"hello".to_vec());
/// assert_eq!(cache.weighted_size(), 5);
/// ```
pub struct CacheBuilder<K, V, S = DefaultHashBuilder> {
    max_capacity: Option<u64>,
    weigher: Option<Weigher<K, V>>,
    listener: Option<Listener<K, V>>,
    shards: Option<usize>,
    hasher: S,
    initial_capacity: usize,
    ttl: Option<Duration>,
    tti: Option<Duration>,
    expiry: Option<Arc<dyn Expiry<K, V>>>,
    jitter: f64,
    clock: Clock,
    record_stats: bool,
    name: Option<Arc<str>>,
    negative_ttl: Option<Duration>,
    refresh: Option<Refresh>,
    refresh_threads: usize,
    _types: PhantomData<fn(K, V)>,
}

impl<K, V> CacheBuilder<K, V, DefaultHashBuilder> {
    fn new() -> Self {
        CacheBuilder {
            max_capacity: None,
            weigher: None,
            listener: None,
            shards: None,
            hasher: DefaultHashBuilder::default(),
            initial_capacity: 0,
            ttl: None,
            tti: None,
            expiry: None,
            jitter: 0.0,
            clock: Clock::default(),
            record_stats: false,
            name: None,
            negative_ttl: None,
            refresh: None,
            refresh_threads: DEFAULT_REFRESH_THREADS,
            _types: PhantomData,
        }
    }
}

impl<K, V, S> CacheBuilder<K, V, S> {
    /// The bound: the most entries the cache holds, or, with a [`weigher`](Self::weigher), the
    /// largest total weight. Required. `0` is valid and makes a cache that stores nothing.
    pub fn max_capacity(mut self, max_capacity: u64) -> Self {
        self.max_capacity = Some(max_capacity);
        self
    }

    /// Weighs entries, so `max_capacity` bounds their total weight instead of their count.
    ///
    /// The weigher runs on every insert, before the shard is locked; it may panic (the insert
    /// then fails and the cache is unchanged). A weight of 0 counts as 1.
    ///
    /// `max_capacity` then bounds the sum of the weights of the whole cache, whatever the shard
    /// count or the machine: the shards claim capacity from one budget as they fill, and evict
    /// only once the cache is full. Any entry up to `max_capacity` may be stored (the other
    /// shards make room for a large one, by their own policies); the eviction policy may still
    /// turn a newcomer away in favour of entries used more often. An entry heavier than
    /// `max_capacity` is not stored (the listener hears [`RemovalCause::Evicted`]), and
    /// inserting it removes any previous value for its key.
    pub fn weigher<F>(mut self, weigher: F) -> Self
    where
        F: Fn(&K, &V) -> u32 + Send + Sync + 'static,
    {
        self.weigher = Some(Arc::new(weigher));
        self
    }

    /// Calls `listener(key, value, cause)` once for every entry that leaves the cache, whatever
    /// the [`RemovalCause`].
    ///
    /// It runs in the thread whose operation removed the entry, after the shard's lock is
    /// released, so it may call back into the cache. For a value that [`insert`](Cache::insert)
    /// or [`remove`](Cache::remove) also returns to its caller, the listener gets a clone.
    ///
    /// A panic of the listener never reaches the caller (whose operation may have nothing to do
    /// with the entry: a `get` that removed an unrelated expired entry on its way): it is
    /// caught, counted in [`CacheStats::listener_panics`](crate::CacheStats::listener_panics),
    /// and the listener is still called for the next removals. The default panic hook prints
    /// it as usual.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use cachet::{Cache, RemovalCause};
    ///
    /// let log = Arc::new(Mutex::new(Vec::new()));
    /// let seen = Arc::clone(&log);
    /// let cache: Cache<u32, &str> = Cache::builder()
    ///     .max_capacity(100)
    ///     .eviction_listener(move |k, v, cause| seen.lock().unwrap().push((k, v, cause)))
    ///     .build()
    ///     .unwrap();
    /// cache.insert(1, "one");
    /// cache.insert(1, "uno");
    /// cache.remove(&1);
    /// assert_eq!(
    ///     *log.lock().unwrap(),
    ///     [(1, "one", RemovalCause::Replaced), (1, "uno", RemovalCause::Explicit)]
    /// );
    /// ```
    pub fn eviction_listener<F>(mut self, listener: F) -> Self
    where
        V: Clone,
        F: Fn(K, V, RemovalCause) + Send + Sync + 'static,
    {
        self.listener = Some(crate::listener::wrap(listener));
        self
    }

    /// Overrides the shard count (a power of two, at most [`MAX_SHARDS`]).
    ///
    /// By default it is picked from the capacity and the machine: up to four per hardware
    /// thread, but never so many that a shard would hold less than 4,096 entries' worth of
    /// capacity, and, without a weigher, at least enough for the capacity to fit
    /// [`MAX_ENTRIES_PER_SHARD`] entries per shard. Each shard gets an equal share of
    /// `max_capacity`.
    ///
    /// A count-bounded cache has at most `max_capacity` shards (fewer if `shards` asks for
    /// more: a shard with no share of the capacity could store nothing). A weighted cache's
    /// shards share its capacity as they need it: the sum of the weights is bounded by
    /// `max_capacity` whatever the shard count, and any entry up to `max_capacity` can be
    /// stored.
    ///
    /// A shard holds at most [`MAX_ENTRIES_PER_SHARD`] entries whatever its share of the
    /// capacity: a full shard evicts before it inserts. So a cache never holds more than
    /// `shards * MAX_ENTRIES_PER_SHARD` entries (about 17 billion with [`MAX_SHARDS`]); with
    /// an explicit shard count or a weigher, that can be fewer than the capacity allows.
    ///
    /// [`MAX_ENTRIES_PER_SHARD`]: crate::MAX_ENTRIES_PER_SHARD
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// Entries to allocate room for up front (spread over the shards). A hint: it is clamped to
    /// `max_capacity` (every entry weighs at least 1), and if the allocator refuses the room, the
    /// cache starts small instead of aborting. Without it, room grows as entries arrive.
    pub fn initial_capacity(mut self, entries: usize) -> Self {
        self.initial_capacity = entries;
        self
    }

    /// Uses `hasher` instead of the default, randomly seeded [`DefaultHashBuilder`].
    ///
    /// The hash decides the shard, the index slot and the frequency-sketch counters, so it must be
    /// well distributed over all 64 bits; a hasher that an outsider can predict lets them flood
    /// one shard and the sketch.
    pub fn hasher<S2>(self, hasher: S2) -> CacheBuilder<K, V, S2> {
        CacheBuilder {
            max_capacity: self.max_capacity,
            weigher: self.weigher,
            listener: self.listener,
            shards: self.shards,
            hasher,
            initial_capacity: self.initial_capacity,
            ttl: self.ttl,
            tti: self.tti,
            expiry: self.expiry,
            jitter: self.jitter,
            clock: self.clock,
            record_stats: self.record_stats,
            name: self.name,
            negative_ttl: self.negative_ttl,
            refresh: self.refresh,
            refresh_threads: self.refresh_threads,
            _types: PhantomData,
        }
    }

    /// Entries expire `ttl` after they were inserted or last replaced.
    ///
    /// Deadlines are kept in whole milliseconds of the cache's [`clock`](Self::clock) (a
    /// lifetime is rounded down to whole milliseconds): an entry is returned while the clock is
    /// before its deadline and never from the deadline on, even if it has not been removed yet.
    /// Expired entries are removed without anyone reading them: every write removes a bounded
    /// batch of them, and [`RemovalCause::Expired`] is reported to the listener.
    ///
    /// - `Duration::ZERO` (or anything under a millisecond) is accepted and makes a cache whose
    ///   inserts are expired at once: nothing is stored, and the listener hears of each value.
    /// - Lifetimes are capped at about 12.4 days (2^30 ms): a longer one, `Duration::MAX`
    ///   included, is shortened to that, so an entry may be reloaded early but is never served
    ///   late.
    ///
    /// With [`time_to_idle`](Self::time_to_idle) too, whichever deadline comes first applies.
    /// Expiration costs 6 bytes per entry (10 when a time-to-live is combined with
    /// time-to-idle or an [`Expiry`]; the deadline itself lives in the entry, where a
    /// `u64 -> u64` entry had padding), and about 1 ns per hit with the default clock.
    pub fn time_to_live(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Entries expire `tti` after they were last inserted, replaced or read by
    /// [`get`](Cache::get). [`peek`](Cache::peek), [`contains_key`](Cache::contains_key) and
    /// [`iter`](Cache::iter) do not count as reads. Same rules for zero and long durations
    /// as [`time_to_live`](Self::time_to_live).
    pub fn time_to_idle(mut self, tti: Duration) -> Self {
        self.tti = Some(tti);
        self
    }

    /// Decides lifetimes entry by entry; see [`Expiry`]. Combined with
    /// [`time_to_live`](Self::time_to_live) or [`time_to_idle`](Self::time_to_idle), the
    /// earliest deadline applies.
    pub fn expiry<E>(mut self, expiry: E) -> Self
    where
        E: Expiry<K, V> + 'static,
    {
        self.expiry = Some(Arc::new(expiry));
        self
    }

    /// Shortens each lifetime that comes from [`time_to_live`](Self::time_to_live) or an
    /// [`Expiry`] by a pseudo-random fraction in `[0, fraction)` of it, so entries loaded
    /// together do not all expire together and send a burst of misses to the database.
    /// `0.1` spreads a 60-second TTL over 54 to 60 seconds. `fraction` must be in `[0, 1]`;
    /// [`build`](Self::build) rejects anything else. Lifetimes given to
    /// [`insert_with_ttl`](Cache::insert_with_ttl) and idle deadlines are not jittered.
    pub fn ttl_jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction;
        self
    }

    /// The time source for deadlines: by default [`Clock::ticking`]. Pass
    /// [`Clock::mock`] to control time in tests.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Remembers a load that found nothing (`None`) or failed (`Err`) for `ttl`: callers of
    /// [`get_or_load`](Cache::get_or_load) (and its async, bounded and batch forms, and a
    /// loading cache's `get`) that ask for the key meanwhile get the same outcome at once
    /// instead of loading again. This is negative caching, for the stampede on a key that does
    /// not exist: the database sees one query per missing key per `ttl`. Without it, "not found"
    /// and errors are never stored.
    ///
    /// An error is shared (`Arc<E>`) by every caller in the window. A caller that cannot
    /// receive the outcome (its loader cannot say "not found", or fails with another error
    /// type) loads again, and its value replaces the remembered outcome. An
    /// [`insert`](Cache::insert) or [`remove`](Cache::remove) of the key, a
    /// [`retain`](Cache::retain) or an [`invalidate_all`](Cache::invalidate_all) ends the
    /// window early. `ttl` is kept in whole milliseconds of the cache's clock, capped like
    /// lifetimes; under a millisecond turns negative caching off.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cachet::Cache;
    ///
    /// let users: Cache<u64, String> = Cache::builder()
    ///     .max_capacity(1_000)
    ///     .negative_ttl(Duration::from_secs(30))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(users.get_or_load(&404, || None), None); // a query that found nothing
    /// // Remembered: the next caller gets `None` without running its loader.
    /// assert_eq!(users.get_or_load(&404, || -> Option<String> { unreachable!() }), None);
    /// ```
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = Some(ttl);
        self
    }

    /// Refreshes an entry in the background once it is older than `after`, while still
    /// serving it: a hit on such an entry returns at once, and exactly one background load
    /// (with the loader registered by [`build_loading`](Self::build_loading) or
    /// [`build_async_loading`](Self::build_async_loading)) replaces it. If the refresh fails,
    /// the old value is served until its deadline (stale-if-error).
    ///
    /// Needs a [`time_to_live`](Self::time_to_live) longer than `after`: an entry's age is
    /// read from its deadline, so an entry is refreshed once at most `time_to_live - after` is
    /// left of its life (with [`ttl_jitter`](Self::ttl_jitter), up to the jitter earlier).
    /// Only hits count: an entry nobody reads is left to expire. A refreshed value gets the
    /// configured lifetime, whatever lifetime the value it replaces had.
    pub fn refresh_after(mut self, after: Duration) -> Self {
        self.refresh = Some(Refresh::After(after));
        self
    }

    /// Refreshes entries early with the probabilistic rule of XFetch (Vattani, Chierichetti
    /// and Lowenstein, VLDB 2015), instead of at a fixed age: each hit refreshes with a
    /// probability that grows as the entry's deadline nears and with the loader's measured
    /// duration, so a hot key is refreshed shortly before it expires, and a cold one is not.
    /// `beta` scales how early (1.0 is the paper's default; above 1 favours earlier
    /// refreshes). Works with any deadline (time-to-live, [`Expiry`], `insert_with_ttl`);
    /// needs a loader, as [`refresh_after`](Self::refresh_after) does.
    pub fn refresh_early(mut self, beta: f64) -> Self {
        self.refresh = Some(Refresh::Early(beta));
        self
    }

    /// How many threads a blocking [`LoadingCache`] may run refreshes on (default 2, at most
    /// [`MAX_REFRESH_THREADS`]). They start when there
    /// is work and end after a few idle seconds; at most a thousand refreshes wait in the
    /// queue, and past that, refreshes are skipped (the entries are served until they expire).
    pub fn refresh_threads(mut self, threads: usize) -> Self {
        self.refresh_threads = threads;
        self
    }

    /// Keeps statistics for [`Cache::stats`]: hits, misses, inserts, loads and their times,
    /// and removals by cause. Off by default; it costs a relaxed atomic add per lookup (on a
    /// per-thread stripe of the shard's counters) and a few per write.
    pub fn record_stats(mut self) -> Self {
        self.record_stats = true;
        self
    }

    /// A name for the cache: shown by its `Debug` output, and the `cache` label of the figures
    /// published with the `metrics` feature.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(Arc::from(name.into()));
        self
    }

    /// Validates the configuration and builds the cache.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the option at fault: [`BuildError::MissingCapacity`] without
    /// [`max_capacity`](Self::max_capacity); [`BuildError::ZeroShards`],
    /// [`BuildError::ShardsNotPowerOfTwo`] or [`BuildError::TooManyShards`] for a bad
    /// [`shards`](Self::shards); [`BuildError::InvalidJitter`] for a
    /// [`ttl_jitter`](Self::ttl_jitter) outside `[0, 1]`; [`BuildError::RefreshNeedsLoader`]
    /// with [`refresh_after`](Self::refresh_after) or [`refresh_early`](Self::refresh_early),
    /// which need a registered loader: use [`build_loading`](Self::build_loading) or
    /// [`build_async_loading`](Self::build_async_loading) for those.
    pub fn build(self) -> Result<Cache<K, V, S>, BuildError>
    where
        K: Hash + Eq,
        S: BuildHasher,
    {
        if self.refresh.is_some() {
            return Err(BuildError::RefreshNeedsLoader);
        }
        self.build_cache()
    }

    /// Builds a [`LoadingCache`]: a cache with `load` registered as its loader, for misses
    /// and for background refreshes (see [`refresh_after`](Self::refresh_after)). `load` takes
    /// the key by reference and returns a value, an `Option`, a `Result` or a `Result` of an
    /// `Option` (see [`Loaded`]); the cache's `get` returns the same shape.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build), and [`BuildError::InvalidRefreshThreads`] for a
    /// [`refresh_threads`](Self::refresh_threads) of 0 or above [`MAX_REFRESH_THREADS`];
    /// [`BuildError::RefreshNeedsTtl`], [`BuildError::InvalidRefreshAfter`] or
    /// [`BuildError::InvalidRefreshEarly`] for a refresh option that cannot apply.
    pub fn build_loading<L, F>(self, load: F) -> Result<LoadingCache<K, V, L, S>, BuildError>
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
        L: Loaded<V> + 'static,
        S: BuildHasher + Send + Sync + 'static,
        F: Fn(&K) -> L + Send + Sync + 'static,
    {
        let rule = self.refresh_rule()?;
        let threads = self.refresh_threads;
        if threads == 0 || threads > MAX_REFRESH_THREADS {
            return Err(BuildError::InvalidRefreshThreads(threads));
        }
        let cache = self.build_cache()?;
        Ok(LoadingCache::new(cache, Box::new(load), rule, threads))
    }

    /// Builds an [`AsyncLoadingCache`]: `load` takes the key by reference, as
    /// [`build_loading`](Self::build_loading)'s does, and returns a future that owns what it
    /// needs (copy the key into it); background refreshes are handed to `spawn` to run on the
    /// caller's executor (for tokio: `|refresh| { tokio::spawn(refresh); }`). No particular
    /// runtime is needed.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build), and [`BuildError::RefreshNeedsTtl`],
    /// [`BuildError::InvalidRefreshAfter`] or [`BuildError::InvalidRefreshEarly`] for a
    /// refresh option that cannot apply.
    pub fn build_async_loading<L, F, Fut, Sp>(
        self,
        spawn: Sp,
        load: F,
    ) -> Result<AsyncLoadingCache<K, V, L, S>, BuildError>
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
        L: Loaded<V> + Send + 'static,
        S: BuildHasher + Send + Sync + 'static,
        F: Fn(&K) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = L> + Send + 'static,
        Sp: Fn(BoxFuture<()>) + Send + Sync + 'static,
    {
        let rule = self.refresh_rule()?;
        let cache = self.build_cache()?;
        let load = move |k: &K| -> BoxFuture<L> { Box::pin(load(k)) };
        Ok(AsyncLoadingCache::new(
            cache,
            Box::new(load),
            Box::new(spawn),
            rule,
        ))
    }

    /// [`build_async_loading`](Self::build_async_loading) with refreshes spawned on the tokio
    /// runtime this is called from.
    ///
    /// # Errors
    ///
    /// As [`build_async_loading`](Self::build_async_loading), and
    /// [`BuildError::NoTokioRuntime`] outside a tokio runtime.
    #[cfg(feature = "tokio")]
    pub fn build_tokio_loading<L, F, Fut>(
        self,
        load: F,
    ) -> Result<AsyncLoadingCache<K, V, L, S>, BuildError>
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
        L: Loaded<V> + Send + 'static,
        S: BuildHasher + Send + Sync + 'static,
        F: Fn(&K) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = L> + Send + 'static,
    {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoTokioRuntime)?;
        self.build_async_loading(
            move |refresh| {
                runtime.spawn(refresh);
            },
            load,
        )
    }

    /// Checks the refresh option against the lifetimes and turns it into the rule the loading
    /// caches apply.
    fn refresh_rule(&self) -> Result<Option<RefreshRule>, BuildError> {
        match self.refresh {
            None => Ok(None),
            Some(Refresh::After(after)) => {
                let time_to_live = self.ttl.ok_or(BuildError::RefreshNeedsTtl)?;
                let (ttl, ticks_after) = (ticks(time_to_live), ticks(after));
                if ticks_after == 0 || ticks_after >= ttl {
                    return Err(BuildError::InvalidRefreshAfter {
                        refresh_after: after,
                        time_to_live,
                    });
                }
                Ok(Some(RefreshRule::Window(ttl - ticks_after)))
            }
            Some(Refresh::Early(beta)) if beta.is_finite() && beta > 0.0 => {
                Ok(Some(RefreshRule::Early(beta)))
            }
            Some(Refresh::Early(_)) => Err(BuildError::InvalidRefreshEarly),
        }
    }

    fn build_cache(self) -> Result<Cache<K, V, S>, BuildError>
    where
        K: Hash + Eq,
        S: BuildHasher,
    {
        let capacity = self.max_capacity.ok_or(BuildError::MissingCapacity)?;
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(BuildError::InvalidJitter);
        }
        let shards = match self.shards {
            Some(0) => return Err(BuildError::ZeroShards),
            Some(n) if n > MAX_SHARDS => {
                return Err(BuildError::TooManyShards {
                    requested: n,
                    max: MAX_SHARDS,
                });
            }
            Some(n) if !n.is_power_of_two() => return Err(BuildError::ShardsNotPowerOfTwo(n)),
            // A count-bounded shard with no share of the capacity could store nothing.
            Some(n) if self.weigher.is_none() && n as u64 > capacity.max(1) => {
                1 << capacity.max(1).ilog2()
            }
            Some(n) => n,
            None => default_shards(capacity, self.weigher.is_some()),
        };
        Ok(Cache::from_config(self.into_config(capacity, shards)))
    }

    /// The configuration of a cache of `capacity` in `shards` shards (both already checked).
    fn into_config(self, capacity: u64, shards: usize) -> Config<K, V, S> {
        // With the `metrics` feature, finished loads' times also go to its histogram.
        #[cfg(feature = "metrics")]
        let on_load: Option<LoadHook> = Some(crate::metrics_export::record_load);
        #[cfg(not(feature = "metrics"))]
        let on_load: Option<LoadHook> = None;
        Config {
            capacity,
            shards,
            hasher: self.hasher,
            weigher: self.weigher,
            listener: self.listener,
            initial_capacity: self.initial_capacity,
            expire: ExpireConfig::new(self.ttl, self.tti, self.expiry, self.jitter),
            clock: self.clock,
            record_stats: self.record_stats,
            name: self.name,
            // Under a millisecond turns negative caching off.
            negative_ttl: self.negative_ttl.map(ticks).filter(|&t| t > 0),
            on_load,
        }
    }
}

impl<K: Hash + Eq, V> Cache<K, V, DefaultHashBuilder> {
    /// A cache holding at most `max_capacity` entries, with the default configuration.
    pub fn new(max_capacity: u64) -> Self {
        let shards = default_shards(max_capacity, false);
        let builder = CacheBuilder::new().max_capacity(max_capacity);
        Cache::from_config(builder.into_config(max_capacity, shards))
    }

    /// A builder for options beyond a capacity: a weigher, the shard count, the hasher.
    pub fn builder() -> CacheBuilder<K, V, DefaultHashBuilder> {
        CacheBuilder::new()
    }
}

impl<K, V, S: fmt::Debug> fmt::Debug for CacheBuilder<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("max_capacity", &self.max_capacity)
            .field("weigher", &self.weigher.as_ref().map(|_| "<fn>"))
            .field("eviction_listener", &self.listener.as_ref().map(|_| "<fn>"))
            .field("shards", &self.shards)
            .field("hasher", &self.hasher)
            .field("initial_capacity", &self.initial_capacity)
            .field("time_to_live", &self.ttl)
            .field("time_to_idle", &self.tti)
            .field("expiry", &self.expiry.as_ref().map(|_| "<Expiry>"))
            .field("ttl_jitter", &self.jitter)
            .field("clock", &self.clock)
            .field("record_stats", &self.record_stats)
            .field("name", &self.name)
            .field("negative_ttl", &self.negative_ttl)
            .field("refresh", &self.refresh)
            .field("refresh_threads", &self.refresh_threads)
            .finish()
    }
}
