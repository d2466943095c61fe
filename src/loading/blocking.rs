//! [`LoadingCache`]: a cache with a registered blocking loader, and refreshes on a pool of
//! threads.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::time::Instant;

use equivalent::Equivalent;

use crate::DefaultHashBuilder;
use crate::cache::{Cache, Hashed};
use crate::flight::Leading;
use crate::loaded::Loaded;

use super::pool::Pool;
use super::{RefreshJob, RefreshRule, Refresher, handle_impls};

/// The registered loader of a [`LoadingCache`].
pub(crate) type Load<K, L> = dyn Fn(&K) -> L + Send + Sync;

struct Blocking<K, L> {
    load: Box<Load<K, L>>,
    refresher: Refresher,
    pool: Pool,
}

/// A cache with a registered blocking loader: [`get`](Self::get) loads misses with it
/// (coalesced: one load per key at a time), and refreshes entries ahead of their deadline
/// in the background when [`refresh_after`](crate::CacheBuilder::refresh_after) or
/// [`refresh_early`](crate::CacheBuilder::refresh_early) is set.
///
/// Built with [`CacheBuilder::build_loading`](crate::CacheBuilder::build_loading). `L` is what
/// the loader returns, and so what [`get`](Self::get) returns (see [`Loaded`]): a value, an
/// `Option` (`None`: not found), a `Result`, or a `Result` of an `Option`. The plain cache is
/// one call away ([`cache`](Self::cache)) for everything else (`insert`, `stats`...). Cloning
/// gives another handle to the same cache and loader.
///
/// ```
/// use std::time::Duration;
/// use cachet::{Cache, Clock, LoadingCache, MockClock};
///
/// let time = MockClock::new();
/// let users: LoadingCache<u64, String, Result<String, std::io::Error>> = Cache::builder()
///     .max_capacity(10_000)
///     .time_to_live(Duration::from_secs(60))
///     .refresh_after(Duration::from_secs(45)) // refreshed in the background after 45 s
///     .clock(Clock::mock(&time))
///     .build_loading(|id: &u64| Ok(format!("user {id}"))) // a database query
///     .unwrap();
/// assert_eq!(users.get(&7).unwrap(), "user 7"); // a miss: loaded now
/// time.advance(Duration::from_secs(50));
/// assert_eq!(users.get(&7).unwrap(), "user 7"); // served at once; a refresh reloads it
/// assert_eq!(users.get_if_present(&8), None); // no load
/// users.invalidate(&7);
/// assert_eq!(users.cache().len(), 0);
/// ```
pub struct LoadingCache<K, V, L, S = DefaultHashBuilder> {
    cache: Cache<K, V, S>,
    loader: Arc<Blocking<K, L>>,
}

handle_impls!(LoadingCache);

impl<K, V, L, S> LoadingCache<K, V, L, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    L: Loaded<V> + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    pub(crate) fn new(
        cache: Cache<K, V, S>,
        load: Box<Load<K, L>>,
        rule: Option<RefreshRule>,
        threads: usize,
    ) -> Self {
        LoadingCache {
            cache,
            loader: Arc::new(Blocking {
                load,
                refresher: Refresher::new(rule),
                pool: Pool::new(threads),
            }),
        }
    }

    /// The value for `key`: from the cache, or loaded with the registered loader (one load per
    /// key at a time; waiters share its outcome). A hit on an entry due for refresh returns
    /// the current value at once and starts one background refresh; if that refresh fails,
    /// the current value is served until its deadline.
    ///
    /// # Panics
    ///
    /// If the loader panics, as [`Cache::get_or_load`] (the panic reaches this caller; a
    /// waiter loads again). A loader that asks this cache for the key it is loading panics.
    pub fn get<Q>(&self, key: &Q) -> L::Output
    where
        Q: ?Sized + Hash + Equivalent<K> + ToOwned<Owned = K>,
    {
        let at = self.cache.hash(key);
        if let Some(v) = self.read(at, key) {
            return L::join(Ok(Some(v)));
        }
        self.cache.load_missed(key, || self.load(&key.to_owned()))
    }

    /// The value for `key` if the cache holds it, without loading. Like [`get`](Self::get), a
    /// hit on an entry due for refresh starts its background refresh.
    pub fn get_if_present<Q>(&self, key: &Q) -> Option<V>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        self.read(self.cache.hash(key), key)
    }

    /// [`get`](Self::get) for each of `keys` (duplicates answered once), in order: each key's
    /// load is coalesced with other callers' as usual, and none waits on a load while leading
    /// another, so concurrent `get_all` calls never wait on each other in a cycle.
    ///
    /// # Panics
    ///
    /// As [`get`](Self::get).
    pub fn get_all<'q, Q, I>(&self, keys: I) -> HashMap<K, L::Output>
    where
        Q: ?Sized + Hash + Equivalent<K> + ToOwned<Owned = K> + 'q,
        I: IntoIterator<Item = &'q Q>,
    {
        let mut out = HashMap::new();
        for key in keys {
            let key = key.to_owned();
            if let std::collections::hash_map::Entry::Vacant(slot) = out.entry(key) {
                let got = self.get(slot.key());
                slot.insert(got);
            }
        }
        out
    }

    /// Loads `key` again now, on this thread, and returns the outcome: the value is stored (a
    /// hit meanwhile still gets the current value), "not found" removes the key, and an error
    /// leaves the current value in place. Coalesced with the other loads of the key: if a
    /// refresh of it is already running, or the key is not cached, this is [`get`](Self::get).
    ///
    /// # Panics
    ///
    /// As [`get`](Self::get).
    pub fn refresh<Q>(&self, key: &Q) -> L::Output
    where
        Q: ?Sized + Hash + Equivalent<K> + ToOwned<Owned = K>,
    {
        let at = self.cache.hash(key);
        match RefreshJob::begin(&self.cache, at, key) {
            Some(job) => {
                let loaded = {
                    let _leading = Leading::enter([&*job.flight]);
                    self.load(&job.key)
                };
                L::join(job.finish(loaded.split().map_err(Arc::new)))
            }
            None => self.get(key),
        }
    }

    /// Removes `key` (its load in flight, if any, is not stored). See [`Cache::remove`].
    pub fn invalidate<Q>(&self, key: &Q)
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        self.cache.remove(key);
    }

    /// Removes every entry. See [`Cache::invalidate_all`].
    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }

    /// The cache the loader fills: for inserts, removals, statistics and everything else that
    /// does not load.
    pub fn cache(&self) -> &Cache<K, V, S> {
        &self.cache
    }

    /// A hit (starting its refresh if this read claimed it), or `None`.
    fn read<Q>(&self, at: Hashed, key: &Q) -> Option<V>
    where
        Q: ?Sized + Equivalent<K>,
    {
        let due = |left| self.loader.refresher.due(left);
        let (v, claimed) = self.cache.get_refreshing(at, key, &due)?;
        if claimed {
            self.refresh_in_background(at, key);
        }
        Some(v)
    }

    /// Runs the loader for `key`, timing it for `refresh_early`.
    fn load(&self, key: &K) -> L {
        let started = Instant::now();
        let loaded = (self.loader.load)(key);
        self.loader.refresher.observe(started.elapsed());
        loaded
    }

    fn refresh_in_background<Q>(&self, at: Hashed, key: &Q)
    where
        Q: ?Sized + Equivalent<K>,
    {
        let Some(job) = RefreshJob::begin(&self.cache, at, key) else {
            return;
        };
        let me = self.clone();
        self.loader.pool.execute(Box::new(move || {
            let loaded = {
                let _leading = Leading::enter([&*job.flight]);
                me.load(&job.key)
            };
            let _ = job.finish(loaded.split().map_err(Arc::new)); // for the waiters
        }));
    }
}
