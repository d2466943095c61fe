//! Loads in flight, negative entries and background refreshes. A load for a key that has no
//! entry sits in the index as a *pending slot* (a token with `PENDING` set), so "miss, then lead
//! or join" is one probe under the write lock; its `Flight` is what callers wait on.

use std::collections::VecDeque;
use std::sync::Arc;

use equivalent::Equivalent;

use crate::clock::Now;
use crate::flight::Flight;
use crate::listener::{RemovalCause, Removed};
use crate::slab::Token;

use super::{PENDING, ShardState, hash_of, index_hash, key_of, unindex};

/// A load in flight for a key that has no entry: it sits in the index like an entry, so a
/// miss, and the decision to lead or join a load, is one probe under the write lock.
pub(super) struct Pending<K, V> {
    pub(super) key: K,
    pub(super) hash: u32,
    flight: Arc<Flight<V>>,
    /// `None` while the load runs. Otherwise the load failed and, with `negative_ttl`, its
    /// error is served to callers of the key until this clock tick (a negative entry).
    failed_until: Option<u64>,
}

/// What a caller that missed should do.
pub(crate) enum Begin<V> {
    /// The key was there after all (or loaded meanwhile).
    Hit(V),
    /// Wait on a load in flight.
    Join(Arc<Flight<V>>),
    /// A failed or empty load remembered (`negative_ttl`): its flight holds the outcome.
    Remembered(Arc<Flight<V>>),
    /// Run the loader: a new load was registered.
    Lead(Arc<Flight<V>>),
}

/// The loads of one shard that are not entries: loads in flight (pending slots, indexed by
/// `PENDING | position`), failed loads kept as negative entries, and background refreshes.
pub(super) struct InFlight<K, V> {
    /// Loads in flight and negative entries, indexed by `PENDING | position`.
    pub(super) pending: Vec<Pending<K, V>>,
    /// Generation of the next load, so a leader can tell its own slot from a newer one.
    next_generation: u64,
    /// Negative entries (failed loads kept with `negative_ttl`) in the order they were
    /// made, which is the order they end in (one lifetime for all): `(until, generation,
    /// hash)`. A queued one whose slot was since replaced is skipped when it comes up.
    negative: VecDeque<(u64, u64, u32)>,
    /// Background refreshes in flight (loading caches): the keys keep their entries, so the
    /// loads cannot be pending slots in the index. Few at a time; searched linearly.
    pub(super) refreshing: Vec<Pending<K, V>>,
}

impl<K, V> InFlight<K, V> {
    pub(super) fn new() -> Self {
        InFlight {
            pending: Vec::new(),
            next_generation: 0,
            negative: VecDeque::new(),
            refreshing: Vec::new(),
        }
    }

    /// A new flight, with the next generation.
    fn flight(&mut self) -> Arc<Flight<V>> {
        let generation = self.next_generation;
        self.next_generation += 1;
        Arc::new(Flight::new(generation))
    }

    /// The pending slot of index token `t` (`PENDING | position`).
    #[inline]
    fn slot(&self, t: Token) -> &Pending<K, V> {
        &self.pending[(t & !PENDING) as usize]
    }

    /// The pending slot of index token `t`, to change.
    #[inline]
    fn slot_mut(&mut self, t: Token) -> &mut Pending<K, V> {
        &mut self.pending[(t & !PENDING) as usize]
    }

    /// Forgets every load, negative entry and refresh (their flights settle on their own).
    pub(super) fn clear(&mut self) {
        self.pending.clear();
        self.negative.clear();
        self.refreshing.clear();
    }
}

impl<K, V> ShardState<K, V> {
    /// After a miss: finds the entry (a hit after all), joins the load in flight, or registers
    /// a new load for the caller to lead. An expired entry is removed on the way (to `removed`).
    pub(crate) fn begin_load<Q>(
        &mut self,
        hash: u32,
        key: &Q,
        time: &Now<'_>,
        removed: &mut Removed<K, V>,
    ) -> Begin<V>
    where
        Q: ?Sized + Equivalent<K> + ToOwned<Owned = K>,
        V: Clone,
    {
        let now = self.tick_if_timed(time);
        self.catch_up(now, removed);
        self.purge_negative(time);
        loop {
            let (slab, pending) = (&self.slab, &self.loads.pending);
            let t = match self.index.entry(
                index_hash(hash),
                |&t| key.equivalent(key_of(slab, pending, t)),
                |&t| index_hash(hash_of(slab, pending, t)),
            ) {
                hashbrown::hash_table::Entry::Occupied(o) => *o.get(),
                hashbrown::hash_table::Entry::Vacant(v) => {
                    // The entry expired (or left) while its refresh runs: wait for that load.
                    if let Some(r) = self
                        .loads
                        .refreshing
                        .iter()
                        .find(|r| key.equivalent(&r.key))
                    {
                        return Begin::Join(Arc::clone(&r.flight));
                    }
                    // Built first: a panicking `to_owned` must leave nothing half-registered.
                    let key = key.to_owned();
                    let flight = self.loads.flight();
                    v.insert(PENDING | self.loads.pending.len() as Token);
                    self.loads.pending.push(Pending {
                        key,
                        hash,
                        flight: Arc::clone(&flight),
                        failed_until: None,
                    });
                    return Begin::Lead(flight);
                }
            };
            if t >= PENDING {
                let p = &self.loads.slot(t);
                // A negative entry that has run its time, or the slot of a load that ended
                // without removing it (its flight settled, not kept as a negative entry):
                // joining it would only send the caller round again.
                let stale = match p.failed_until {
                    Some(until) => until <= time.tick(),
                    None => p.flight.is_settled(),
                };
                if stale {
                    self.remove_pending(t);
                    continue;
                }
                let flight = Arc::clone(&p.flight);
                return if p.failed_until.is_some() {
                    Begin::Remembered(flight)
                } else {
                    Begin::Join(flight)
                };
            }
            if !self.expired_at(t, now) {
                let e = self.slab.get(t);
                self.hit(e);
                return Begin::Hit(e.value.clone());
            }
            let (old_key, old_value) = self.remove_token(t);
            removed.push(old_key, old_value, RemovalCause::Expired);
        }
    }

    /// Ends the load of `generation` (of a key with hash `hash`): removes its pending slot and
    /// returns `true`, or returns `false` if the slot is gone (a write, removal, `retain` or
    /// invalidation superseded it). The slot is found by its generation, so no user code (the
    /// key's `Eq`) runs: a load's completion cannot unwind half-way through the index.
    pub(crate) fn end_load(&mut self, hash: u32, generation: u64) -> bool {
        let Some(t) = self.load_slot(hash, generation) else {
            return false;
        };
        self.remove_pending(t);
        true
    }

    /// The index token of the pending slot for `key` (a load in flight, or a negative entry).
    #[cfg(any(test, feature = "_test-hooks"))]
    fn pending_slot(&self, hash: u32, key: &K) -> Option<Token>
    where
        K: Eq,
    {
        let pending = &self.loads.pending;
        let found = self.index.find(index_hash(hash), |&t| {
            t >= PENDING && &pending[(t & !PENDING) as usize].key == key
        });
        found.copied()
    }

    /// The pending slot of the load of `generation`, if it is still in the index. Generations
    /// are unique in a shard, so the key is never compared.
    fn load_slot(&self, hash: u32, generation: u64) -> Option<Token> {
        let pending = &self.loads.pending;
        let found = self.index.find(index_hash(hash), |&t| {
            t >= PENDING && pending[(t & !PENDING) as usize].flight.generation == generation
        });
        found.copied()
    }

    /// Registers a background refresh of `key`, whose live entry a reader claimed the refresh
    /// of. Returns the key (cloned with `clone_key`) and the load's flight, or `None` if the
    /// entry left meanwhile or a refresh of the key is already in flight.
    pub(crate) fn begin_refresh<Q>(
        &mut self,
        hash: u32,
        key: &Q,
        clone_key: &dyn Fn(&K) -> K,
    ) -> Option<(K, Arc<Flight<V>>)>
    where
        Q: ?Sized + Equivalent<K>,
    {
        let (_, e) = self.lookup(hash, key)?;
        if self.loads.refreshing.iter().any(|r| key.equivalent(&r.key)) {
            return None;
        }
        let key = clone_key(&e.key);
        let flight = self.loads.flight();
        self.loads.refreshing.push(Pending {
            key: clone_key(&key),
            hash,
            flight: Arc::clone(&flight),
            failed_until: None,
        });
        Some((key, flight))
    }

    /// Ends the refresh of `generation`: `true` if it is still current (no write or removal
    /// of the key superseded it), and then its result may be stored.
    pub(crate) fn end_refresh(&mut self, generation: u64) -> bool {
        match self
            .loads
            .refreshing
            .iter()
            .position(|r| r.flight.generation == generation)
        {
            Some(i) => {
                self.loads.refreshing.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// A write or removal of `key` supersedes its refresh in flight, if any: the refreshed
    /// value will not be stored over it.
    #[inline]
    pub(super) fn cancel_refresh<Q>(&mut self, key: &Q)
    where
        Q: ?Sized + Equivalent<K>,
    {
        if !self.loads.refreshing.is_empty() {
            self.loads.refreshing.retain(|r| !key.equivalent(&r.key));
        }
    }

    /// For `compute`: the live value of `key` (`Ok(None)`: absent or expired), or the load in
    /// flight for it, which `compute` waits for.
    pub(crate) fn probe<Q>(
        &self,
        hash: u32,
        key: &Q,
        time: &Now<'_>,
    ) -> Result<Option<&V>, Arc<Flight<V>>>
    where
        Q: ?Sized + Equivalent<K>,
    {
        let (slab, pending) = (&self.slab, &self.loads.pending);
        let Some(&t) = self.index.find(index_hash(hash), |&t| {
            key.equivalent(key_of(slab, pending, t))
        }) else {
            return Ok(None);
        };
        if t >= PENDING {
            let p = &self.loads.slot(t);
            // A negative entry (a failed load kept) holds no value.
            return if p.failed_until.is_none() {
                Err(Arc::clone(&p.flight))
            } else {
                Ok(None)
            };
        }
        let now = self.tick_if_timed(time);
        Ok((!self.expired_at(t, now)).then(|| &self.slab.get(t).value))
    }

    /// The load of `generation` for `key` failed: keep its slot, with its settled flight, as
    /// a negative entry until tick `until`, so callers get its error without loading again.
    /// Returns `false` (and keeps nothing) if the slot was superseded meanwhile.
    pub(crate) fn keep_failed(&mut self, hash: u32, generation: u64, until: u64) -> bool {
        let Some(t) = self.load_slot(hash, generation) else {
            return false;
        };
        self.loads.slot_mut(t).failed_until = Some(until);
        self.loads.negative.push_back((until, generation, hash));
        true
    }

    /// Drops negative entries whose time has come (a bounded amount of work per call: each
    /// entry is queued once).
    pub(super) fn purge_negative(&mut self, time: &Now<'_>) {
        while let Some(&(until, generation, hash)) = self.loads.negative.front() {
            if until > time.tick() {
                return;
            }
            self.loads.negative.pop_front();
            if let Some(t) = self.load_slot(hash, generation) {
                self.remove_pending(t);
            }
        }
        if self.loads.negative.is_empty() && self.loads.negative.capacity() > 64 {
            self.loads.negative = VecDeque::new();
        }
    }

    /// Loads in flight in this shard, background refreshes included (negative entries are
    /// not loads).
    pub(crate) fn loads_in_flight(&self) -> usize {
        self.loads
            .pending
            .iter()
            .filter(|p| p.failed_until.is_none())
            .count()
            + self.loads.refreshing.len()
    }

    #[cfg(any(test, feature = "_test-hooks"))]
    /// How many callers wait on the load in flight for `key` (`None`: no load in flight).
    pub(crate) fn waiting(&self, hash: u32, key: &K) -> Option<usize>
    where
        K: Eq,
    {
        let t = self.pending_slot(hash, key)?;
        let p = &self.loads.slot(t);
        // A negative entry is a finished load, not one in flight.
        p.failed_until.is_none().then(|| p.flight.waiting())
    }

    /// Drops every pending slot: loads in flight (their leaders will not store their values)
    /// and negative entries.
    pub(super) fn supersede_loads(&mut self) {
        for (i, p) in self.loads.pending.iter().enumerate() {
            unindex(&mut self.index, p.hash, PENDING | i as Token);
        }
        self.loads.pending.clear();
        self.loads.negative.clear();
    }

    /// Whether the pending slot of index token `t` is a load that has ended but is still
    /// indexed (only negative entries outlive their load; `validate` checks it).
    #[cfg(any(test, feature = "_test-hooks"))]
    pub(super) fn ended_but_indexed(&self, t: Token) -> bool {
        let p = self.loads.slot(t);
        p.failed_until.is_none() && p.flight.is_settled()
    }

    /// Removes the pending slot of index token `t` (`PENDING | position`).
    pub(super) fn remove_pending(&mut self, t: Token) {
        let i = (t & !PENDING) as usize;
        unindex(&mut self.index, self.loads.pending[i].hash, t);
        self.loads.pending.swap_remove(i);
        if let Some(moved) = self.loads.pending.get(i) {
            let from = PENDING | self.loads.pending.len() as Token;
            match self.index.find_mut(index_hash(moved.hash), |&x| x == from) {
                Some(slot) => *slot = t,
                None => debug_assert!(false, "moved load missing from the index"),
            }
        }
    }
}
