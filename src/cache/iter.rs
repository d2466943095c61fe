//! Iteration: clones of the entries, one shard at a time, each shard copied under its read lock
//! and yielded after the lock is released.

use std::hash::{BuildHasher, Hash};

use super::Cache;

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
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
            let mut time = self.cache.now();
            if state.lagging(&time) {
                drop(state);
                self.cache.catch_up(self.next_shard - 1);
                state = shard.state.read();
                time = self.cache.now();
            }
            let copy: Vec<(K, V)> = state
                .live_entries(&time)
                .map(|e| (e.key.clone(), e.value.clone()))
                .collect();
            drop(state);
            self.buffer = copy.into_iter();
        }
    }
}
