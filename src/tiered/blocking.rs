//! The blocking front-end: the same cache, driven from threads. A blocking call that needs Redis
//! waits on the cache's bus thread (`bus_thread.rs`), which runs the connection, its push handler
//! (the invalidation listener) and the supervisor; an L1 hit does not touch it.

use std::fmt;
use std::hash::Hash;
use std::time::Duration;

use super::codec::{Codec, MsgPack, RedisKey};
use super::{TieredCache, TieredError, TieredStats};
use equivalent::Equivalent;

use crate::{Cache, Loaded};

/// A [`TieredCache`] for threaded services: the same guarantees, blocking calls. Built with
/// [`TieredBuilder::build_blocking`](super::TieredBuilder::build_blocking); cheap to clone.
///
/// Do not call its methods from an async task (they block the thread; use [`TieredCache`]
/// there).
pub struct BlockingTieredCache<K, V, C = MsgPack> {
    cache: TieredCache<K, V, C>,
}

impl<K, V, C> Clone for BlockingTieredCache<K, V, C> {
    fn clone(&self) -> Self {
        BlockingTieredCache {
            cache: self.cache.clone(),
        }
    }
}

impl<K, V, C> BlockingTieredCache<K, V, C>
where
    K: RedisKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    C: Codec<V>,
{
    pub(super) fn new(cache: TieredCache<K, V, C>) -> Self {
        BlockingTieredCache { cache }
    }

    /// Blocking [`TieredCache::get_or_load`], with the loaders of [`Cache::get_or_load`]:
    /// `load` runs on the calling thread, only if this instance loads the key, and may return
    /// the value, an `Option` or a `Result` of either (the call returns the same shape).
    /// Concurrent misses of the key, from threads or tasks, share one Redis read and one load.
    pub fn get_or_load<Q, L, F>(&self, key: &Q, load: F) -> L::Output
    where
        Q: ?Sized + Hash + Equivalent<K> + ToOwned<Owned = K>,
        L: Loaded<V>,
        F: FnOnce() -> L,
    {
        if let Some(v) = self.cache.lookup(key) {
            return L::join(Ok(Some(v)));
        }
        let key = key.to_owned();
        let shared = self.cache.shared();
        self.cache.l1.load_missed(&key, || {
            let load = async { load() };
            self.cache.bus().block_on(shared.fill(&key, load))
        })
    }

    /// The value of `key` if L1 holds it (no network).
    pub fn get_if_present<Q>(&self, key: &Q) -> Option<V>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        self.cache.get_if_present(key)
    }

    /// Blocking [`TieredCache::insert`].
    ///
    /// # Errors
    ///
    /// As [`TieredCache::insert`].
    pub fn insert(&self, key: K, value: V) -> Result<(), TieredError> {
        self.cache.bus().block_on(self.cache.insert(key, value))
    }

    /// Blocking [`TieredCache::invalidate`].
    ///
    /// # Errors
    ///
    /// As [`TieredCache::invalidate`].
    pub fn invalidate<Q>(&self, key: &Q) -> Result<(), TieredError>
    where
        Q: ?Sized + ToOwned<Owned = K>,
    {
        self.cache.bus().block_on(self.cache.invalidate(key))
    }

    /// Whether the invalidation bus is up.
    pub fn is_connected(&self) -> bool {
        self.cache.is_connected()
    }

    /// Waits until the invalidation bus is up, for at most `timeout`; returns whether it is.
    pub fn wait_connected(&self, timeout: Duration) -> bool {
        self.cache
            .bus()
            .block_on(self.cache.wait_connected(timeout))
    }

    /// Blocking [`TieredCache::sync_invalidations`].
    pub fn sync_invalidations(&self) -> bool {
        self.cache.bus().block_on(self.cache.sync_invalidations())
    }

    /// A snapshot of the statistics.
    pub fn stats(&self) -> TieredStats {
        self.cache.stats()
    }

    /// As [`TieredCache::publish_metrics`].
    #[cfg(feature = "metrics")]
    pub fn publish_metrics(&self) {
        self.cache.publish_metrics();
    }

    /// The in-process tier (see [`TieredCache::l1`]).
    pub fn l1(&self) -> &Cache<K, V> {
        self.cache.l1()
    }

    /// The async cache behind this one, for code that has both threads and tasks.
    pub fn as_async(&self) -> &TieredCache<K, V, C> {
        &self.cache
    }
}

impl<K, V, C> fmt::Debug for BlockingTieredCache<K, V, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BlockingTieredCache")
            .field(&self.cache)
            .finish()
    }
}
