//! [`AsyncLoadingCache`]: a cache with a registered async loader, and refreshes spawned on the
//! caller's executor.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::time::Instant;

use equivalent::Equivalent;

use crate::DefaultHashBuilder;
use crate::cache::{Cache, Hashed};
use crate::flight::Leading;
use crate::loaded::Loaded;

use super::{BoxFuture, RefreshJob, RefreshRule, Refresher, handle_impls};

/// The registered loader of an [`AsyncLoadingCache`], its future boxed.
pub(crate) type AsyncLoad<K, L> = dyn Fn(&K) -> BoxFuture<L> + Send + Sync;
/// Where background refreshes are spawned.
pub(crate) type Spawn = dyn Fn(BoxFuture<()>) + Send + Sync;

struct Async<K, L> {
    load: Box<AsyncLoad<K, L>>,
    spawn: Box<Spawn>,
    refresher: Refresher,
}

/// A cache with a registered async loader: [`get`](Self::get) loads misses with it, and
/// background refreshes run on the executor given by the spawn function (with the `tokio`
/// feature, `CacheBuilder::build_tokio_loading` spawns on the current tokio runtime). The
/// loader takes `&K`, as a [`LoadingCache`](crate::LoadingCache)'s does, and returns a future
/// that owns what it needs. See [`LoadingCache`](crate::LoadingCache) for the rules.
///
/// Built with [`CacheBuilder::build_async_loading`](crate::CacheBuilder::build_async_loading).
///
/// ```
/// use std::time::Duration;
/// use cachet::{AsyncLoadingCache, Cache};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let products: AsyncLoadingCache<u64, String, Option<String>> = Cache::builder()
///     .max_capacity(10_000)
///     .time_to_live(Duration::from_secs(60))
///     .refresh_after(Duration::from_secs(45))
///     .build_async_loading(
///         |refresh| { tokio::spawn(refresh); },
///         |id: &u64| {
///             let id = *id;
///             async move { (id != 0).then(|| format!("product {id}")) } // e.g. a query
///         },
///     )
///     .unwrap();
/// assert_eq!(products.get(&3).await.as_deref(), Some("product 3"));
/// assert_eq!(products.get(&0).await, None); // not found: not cached
/// assert_eq!(products.cache().len(), 1);
/// # }
/// ```
pub struct AsyncLoadingCache<K, V, L, S = DefaultHashBuilder> {
    cache: Cache<K, V, S>,
    loader: Arc<Async<K, L>>,
}

handle_impls!(AsyncLoadingCache);

impl<K, V, L, S> AsyncLoadingCache<K, V, L, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    L: Loaded<V> + Send + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    pub(crate) fn new(
        cache: Cache<K, V, S>,
        load: Box<AsyncLoad<K, L>>,
        spawn: Box<Spawn>,
        rule: Option<RefreshRule>,
    ) -> Self {
        AsyncLoadingCache {
            cache,
            loader: Arc::new(Async {
                load,
                spawn,
                refresher: Refresher::new(rule),
            }),
        }
    }

    /// The value for `key`, as [`LoadingCache::get`](crate::LoadingCache::get), awaiting the
    /// loader on a miss.
    ///
    /// # Panics
    ///
    /// As [`LoadingCache::get`](crate::LoadingCache::get): a loader that awaits this cache's
    /// load of its own key, in the same task, panics.
    pub async fn get<Q>(&self, key: &Q) -> L::Output
    where
        Q: ?Sized + Hash + Equivalent<K> + ToOwned<Owned = K>,
    {
        let at = self.cache.hash(key);
        if let Some(v) = self.read(at, key) {
            return L::join(Ok(Some(v)));
        }
        let load = self.load(&key.to_owned());
        self.cache.load_missed_async(key, load).await
    }

    /// The value for `key` if the cache holds it, without loading (a hit may start a
    /// background refresh).
    pub fn get_if_present<Q>(&self, key: &Q) -> Option<V>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        self.read(self.cache.hash(key), key)
    }

    /// [`get`](Self::get) for each of `keys` (duplicates answered once), in order.
    ///
    /// # Panics
    ///
    /// As [`get`](Self::get).
    pub async fn get_all<'q, Q, I>(&self, keys: I) -> HashMap<K, L::Output>
    where
        Q: ?Sized + Hash + Equivalent<K> + ToOwned<Owned = K> + 'q,
        I: IntoIterator<Item = &'q Q>,
    {
        let mut out = HashMap::new();
        for key in keys {
            let key = key.to_owned();
            if let std::collections::hash_map::Entry::Vacant(slot) = out.entry(key) {
                let got = self.get(slot.key()).await;
                slot.insert(got);
            }
        }
        out
    }

    /// Loads `key` again now and returns the outcome, as
    /// [`LoadingCache::refresh`](crate::LoadingCache::refresh), awaiting the loader in this
    /// task.
    ///
    /// # Panics
    ///
    /// As [`get`](Self::get).
    pub async fn refresh<Q>(&self, key: &Q) -> L::Output
    where
        Q: ?Sized + Hash + Equivalent<K> + ToOwned<Owned = K>,
    {
        let at = self.cache.hash(key);
        match RefreshJob::begin(&self.cache, at, key) {
            Some(job) => {
                let load = self.load(&job.key);
                let loaded = Leading::run(vec![job.flight.id()], load).await;
                L::join(job.finish(loaded.split().map_err(Arc::new)))
            }
            None => self.get(key).await,
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

    /// A hit (spawning its refresh if this read claimed it), or `None`.
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

    /// The loader's future for `key`, timed for `refresh_early`.
    fn load(&self, key: &K) -> impl Future<Output = L> + Send + 'static {
        let load = (self.loader.load)(key);
        let loader = Arc::clone(&self.loader);
        async move {
            let started = Instant::now();
            let loaded = load.await;
            loader.refresher.observe(started.elapsed());
            loaded
        }
    }

    fn refresh_in_background<Q>(&self, at: Hashed, key: &Q)
    where
        Q: ?Sized + Equivalent<K>,
    {
        let Some(job) = RefreshJob::begin(&self.cache, at, key) else {
            return;
        };
        let load = self.load(&job.key);
        (self.loader.spawn)(Box::pin(async move {
            let loaded = Leading::run(vec![job.flight.id()], load).await;
            let _ = job.finish(loaded.split().map_err(Arc::new)); // for the waiters
        }));
    }
}
