//! The cache's side of loads and refreshes in flight: registering, ending, failing and
//! abandoning them in their shard, and storing what they loaded. The loaders (`load/`) and the
//! loading caches (`loading/`) drive these; the cache does not call them.

use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use equivalent::Equivalent;

use crate::expiry::Lifetime;
use crate::flight::Flight;
use crate::listener::{RemovalCause, Removed};
use crate::shard::{Begin, ShardState};

use super::{Cache, Hashed};

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    /// After a miss on `key` (hashed to `at`): a hit after all, a load to join, or a load to
    /// lead (see `load/`). `first`: this is the caller's first decision, which its statistics
    /// count: a hit (a value, or a remembered failure), a miss (it leads the load) or a
    /// coalesced wait (it joins another caller's load).
    pub(crate) fn begin_load<Q>(&self, at: Hashed, key: &Q, first: bool) -> Begin<V>
    where
        Q: ?Sized + Equivalent<K> + ToOwned<Owned = K>,
        V: Clone,
    {
        let shard = &self.inner.shards[at.shard];
        let mut removed = Removed::new();
        let begin = {
            let mut state = shard.state.write();
            let begin = state.begin_load(at.hash, key, &self.now(), &mut removed);
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
        self.deliver(at.shard, removed, None);
        begin
    }

    /// Ends the load of `generation` for `key`; stores `value` if the load was not superseded
    /// meanwhile. Returns whether it was stored.
    pub(crate) fn end_load(&self, at: Hashed, key: K, generation: u64, value: V) -> bool {
        self.store_loaded(at, key, Some(value), |state| {
            state.end_load(at.hash, generation)
        })
    }

    /// Ends the background refresh of `generation` for `key`, unless a write or removal of the
    /// key superseded it: stores `Some(value)`; with `None` (the loader found nothing), removes
    /// the key. Returns whether the refresh was still current.
    pub(crate) fn end_refresh(&self, at: Hashed, key: &K, generation: u64, value: Option<V>) -> bool
    where
        K: Clone,
    {
        match value {
            Some(v) => self.store_loaded(at, key.clone(), Some(v), |state| {
                state.end_refresh(generation)
            }),
            None => self.remove_refreshed(at, key, generation),
        }
    }

    /// Ends the background refresh of `generation` with nothing to store (its loader failed,
    /// panicked or was dropped): the current value stays.
    pub(crate) fn abandon_refresh(&self, at: Hashed, generation: u64) {
        self.inner.shards[at.shard]
            .state
            .write()
            .end_refresh(generation);
    }

    /// Ends a refresh of `generation` whose loader found nothing: removes `key`, as
    /// [`remove`](Cache::remove) would, if the refresh is still current.
    fn remove_refreshed(&self, at: Hashed, key: &K, generation: u64) -> bool {
        let shard = &self.inner.shards[at.shard];
        let mut removed = Removed::new();
        let current = {
            let mut state = shard.state.write();
            let current = state.end_refresh(generation);
            if current {
                let time = self.now();
                if let Some((k, v, expired)) = state.remove(at.hash, key, &time, &mut removed) {
                    let cause = if expired {
                        RemovalCause::Expired
                    } else {
                        RemovalCause::Explicit
                    };
                    removed.push(k, v, cause);
                }
            }
            shard.after_write(&mut state);
            current
        };
        self.deliver(at.shard, removed, None);
        current
    }

    /// Registers a background refresh of `key` (whose refresh this caller claimed): returns
    /// the key and the flight other callers may join, or `None` if one is already running.
    pub(crate) fn begin_refresh<Q>(&self, at: Hashed, key: &Q) -> Option<(K, Arc<Flight<V>>)>
    where
        Q: ?Sized + Equivalent<K>,
        K: Clone,
    {
        let mut state = self.inner.shards[at.shard].state.write();
        state.begin_refresh(at.hash, key, &K::clone)
    }

    /// Ends a load or a refresh (`current` takes its slot under the write lock and says if it
    /// is still current) and stores its value if so.
    pub(super) fn store_loaded(
        &self,
        at: Hashed,
        key: K,
        value: Option<V>,
        current: impl FnOnce(&mut ShardState<K, V>) -> bool,
    ) -> bool {
        // The weigher runs before the lock, as for `insert`.
        let w = match (&self.inner.weigher, &value) {
            (Some(weigh), Some(v)) => weigh(&key, v),
            _ => 1,
        };
        let shard = &self.inner.shards[at.shard];
        let mut op = self.write_ctx();
        let (stored, short) = {
            let mut state = shard.state.write();
            let current = current(&mut state);
            let stored_value = value.is_some();
            if let (true, Some(v)) = (current, value) {
                let life = Lifetime::Configured;
                state.insert(at.hash, key, v, w, life, &mut op);
            }
            let short = shard.after_insert(&mut state);
            (current && stored_value, short)
        };
        if let (true, Some(stats)) = (stored, self.shard_stats(at.shard)) {
            stats.inserted();
        }
        self.deliver(at.shard, op.removed, None);
        if short > 0 {
            self.lend(at.shard, short);
        }
        stored
    }

    /// Ends a failed load: with `negative_ttl`, its slot stays as a negative entry;
    /// otherwise the key is freed for a new leader.
    pub(crate) fn fail_load(&self, at: Hashed, generation: u64) {
        let mut state = self.inner.shards[at.shard].state.write();
        if let Some(ttl) = self.inner.negative_ttl {
            let until = self.inner.clock.now_ticks().saturating_add(ttl);
            state.keep_failed(at.hash, generation, until);
        } else {
            state.end_load(at.hash, generation);
        }
    }

    /// Ends an abandoned load (no value): frees the key for a new leader.
    pub(crate) fn abandon_load(&self, at: Hashed, generation: u64) {
        let shard = &self.inner.shards[at.shard];
        shard.state.write().end_load(at.hash, generation);
    }

    /// Records a finished load of shard `i` that took `took`, if the cache records statistics.
    pub(crate) fn record_load(&self, i: usize, ok: bool, took: std::time::Duration) {
        if let Some(stats) = self.shard_stats(i) {
            stats.loaded(ok, took);
            if let Some(on_load) = self.inner.on_load {
                on_load(self.label(), took, ok);
            }
        }
    }
}
