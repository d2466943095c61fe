//! The entry API: one key's read-modify-write operations, blocking and async, all through
//! `compute`.

use std::fmt;
use std::hash::{BuildHasher, Hash};

use equivalent::Equivalent;

use super::Cache;
use super::write::Compute;

/// One key of a cache, for a read-modify-write that no other write to the key interleaves
/// with: insert if absent, upsert, or any [`Compute`]. Made by [`Cache::entry`].
///
/// Each operation waits for a load of the key in flight first, so it sees the loaded value
/// rather than racing the loader: the blocking forms block the thread meanwhile, the `_async`
/// forms wait without blocking it (use those from async tasks). The closures run under the
/// shard's write lock: keep them short, and do not call back into the cache from them.
///
/// ```
/// use cachet::{Cache, Compute};
///
/// let stock: Cache<String, u32> = Cache::new(1_000);
/// assert_eq!(stock.entry("apple").or_insert(10), 10);
/// assert_eq!(stock.entry("apple").or_insert(99), 10); // already there
/// assert_eq!(stock.entry("apple").and_upsert(|n| n.map_or(1, |n| n - 1)), 9);
/// let left = stock.entry("apple").and_compute(|n| match n {
///     Some(&n) if n > 5 => Compute::Put(n - 5),
///     _ => Compute::Remove,
/// });
/// assert_eq!(left, Some(4));
/// ```
pub struct Entry<'a, K, V, S, Q: ?Sized> {
    cache: &'a Cache<K, V, S>,
    key: &'a Q,
}

impl<K, V, S, Q: ?Sized> fmt::Debug for Entry<'_, K, V, S, Q> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq,
    V: Clone,
    S: BuildHasher,
{
    /// The entry of `key`, for insert-if-absent, upsert and compute (blocking or async). The
    /// key may be borrowed (`&str` for a `Cache<String, _>`); it is turned into a `K` only to
    /// store a value.
    pub fn entry<'a, Q>(&'a self, key: &'a Q) -> Entry<'a, K, V, S, Q>
    where
        Q: ?Sized + Hash + Equivalent<K> + ToOwned<Owned = K>,
    {
        Entry { cache: self, key }
    }
}

impl<K, V, S, Q> Entry<'_, K, V, S, Q>
where
    K: Hash + Eq,
    V: Clone,
    S: BuildHasher,
    Q: ?Sized + Hash + Equivalent<K> + ToOwned<Owned = K>,
{
    /// Inserts `value` if the key has no (live) value, and returns the key's value: the one
    /// it had, or `value` (returned even if it could not be stored: heavier than the cache, or
    /// a zero lifetime).
    ///
    /// # Panics
    ///
    /// As [`Cache::compute`].
    pub fn or_insert(self, value: V) -> V {
        let mut given = None;
        let after = self.cache.compute(self.key, |current| {
            insert_if_absent(current, value, &mut given)
        });
        after.or(given).expect("a value was kept or given")
    }

    /// Stores `f(current value)` (`None` if absent) and returns it (even if it could not be
    /// stored).
    ///
    /// # Panics
    ///
    /// As [`Cache::compute`].
    pub fn and_upsert<F>(self, f: F) -> V
    where
        F: FnOnce(Option<&V>) -> V,
    {
        let mut new = None;
        self.cache
            .compute(self.key, |current| upsert(current, f, &mut new));
        new.expect("f ran")
    }

    /// Runs `f` on the current value (`None` if absent) and applies its [`Compute`]; returns
    /// the key's value afterwards. The same as [`Cache::compute`].
    ///
    /// # Panics
    ///
    /// As [`Cache::compute`].
    pub fn and_compute<F>(self, f: F) -> Option<V>
    where
        F: FnOnce(Option<&V>) -> Compute<V>,
    {
        self.cache.compute(self.key, f)
    }

    /// [`or_insert`](Self::or_insert) that waits for a load in flight without blocking the
    /// thread.
    ///
    /// # Panics
    ///
    /// As [`Cache::compute`].
    pub async fn or_insert_async(self, value: V) -> V {
        let mut given = None;
        let after = self
            .cache
            .compute_async(self.key, |current| {
                insert_if_absent(current, value, &mut given)
            })
            .await;
        after.or(given).expect("a value was kept or given")
    }

    /// [`and_upsert`](Self::and_upsert) that waits for a load in flight without blocking the
    /// thread.
    ///
    /// # Panics
    ///
    /// As [`Cache::compute`].
    pub async fn and_upsert_async<F>(self, f: F) -> V
    where
        F: FnOnce(Option<&V>) -> V,
    {
        let mut new = None;
        self.cache
            .compute_async(self.key, |current| upsert(current, f, &mut new))
            .await;
        new.expect("f ran")
    }

    /// [`and_compute`](Self::and_compute) that waits for a load in flight without blocking
    /// the thread.
    ///
    /// # Panics
    ///
    /// As [`Cache::compute`].
    pub async fn and_compute_async<F>(self, f: F) -> Option<V>
    where
        F: FnOnce(Option<&V>) -> Compute<V>,
    {
        self.cache.compute_async(self.key, f).await
    }
}

/// `or_insert`'s decision: keep a value, or put `value` (a copy kept in `given`).
fn insert_if_absent<V: Clone>(current: Option<&V>, value: V, given: &mut Option<V>) -> Compute<V> {
    match current {
        Some(_) => Compute::Keep,
        None => {
            *given = Some(value.clone());
            Compute::Put(value)
        }
    }
}

/// `and_upsert`'s decision: put `f(current)` (a copy kept in `new`).
fn upsert<V: Clone>(
    current: Option<&V>,
    f: impl FnOnce(Option<&V>) -> V,
    new: &mut Option<V>,
) -> Compute<V> {
    let v = f(current);
    *new = Some(v.clone());
    Compute::Put(v)
}
