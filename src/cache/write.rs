//! Writes: `insert`, `compute`, `remove`, `invalidate_all` and `retain`. Each changes one shard
//! under its write lock, then reports what left once the lock is released.

use std::hash::{BuildHasher, Hash};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;
use std::time::Duration;

use equivalent::Equivalent;

use crate::expiry::{Lifetime, ticks};
use crate::flight::{Flight, Wait, check_not_leading};
use crate::listener::{RemovalCause, Removed};

use std::sync::atomic::Ordering;

use super::read::ReadKind;
use super::{Cache, Hashed};

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

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    /// Inserts `value` for `key`, returning the value it replaced (`None` if there was none, or
    /// if it had expired).
    ///
    /// The entry may be evicted at once: a new entry always enters, but to make room the policy
    /// may later prefer an older, more frequently used entry over it. An entry heavier than the
    /// whole capacity is not stored; the previous value for `key`, if any, is then removed and
    /// returned. The same holds for an entry whose configured lifetime is zero. Removals are
    /// reported to the eviction listener, if any, before this returns.
    ///
    /// # Panics
    ///
    /// If the weigher or an [`Expiry`](crate::Expiry) hook panics, nothing changes for `key`
    /// and the panic resumes (entries removed on the way are still reported).
    pub fn insert(&self, key: K, value: V) -> Option<V> {
        self.insert_with(key, value, Lifetime::Configured)
    }

    /// Inserts `value` for `key` to expire `ttl` from now, whatever the cache's configured
    /// lifetimes, and returns the value it replaced.
    ///
    /// `ttl` is rounded down to whole milliseconds and capped at about 12.4 days; a `ttl`
    /// under one millisecond means the value is not stored (and the previous one is removed).
    /// With [`time_to_idle`](crate::CacheBuilder::time_to_idle), reads may keep the entry
    /// alive, but never past `ttl` after this insert. Works on any cache: a cache built without
    /// expiration starts keeping deadlines (6 bytes per entry, see
    /// [`time_to_live`](crate::CacheBuilder::time_to_live)) in a shard the first time one of
    /// its entries gets one.
    ///
    /// # Panics
    ///
    /// As [`insert`](Self::insert).
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

    pub(super) fn insert_with(&self, key: K, value: V, life: Lifetime) -> Option<V> {
        let at = self.hash(&key);
        let w = match &self.inner.weigher {
            Some(weigh) => weigh(&key, &value),
            None => 1,
        };
        let mut op = self.write_ctx();
        let shard = &self.inner.shards[at.shard];
        let (old, short) = {
            let mut state = shard.state.write();
            let old = state.insert(at.hash, key, value, w, life, &mut op);
            let short = shard.after_insert(&mut state);
            // The first deadline of a cache built without expiration: reads now check them
            // (a read that still took `read_plain` takes an entry with a deadline for a miss).
            if state.is_timed()
                && matches!(
                    self.inner.read.get(),
                    ReadKind::Plain | ReadKind::PlainCounted
                )
            {
                self.inner.read.set(ReadKind::Ttl);
            }
            (old, short)
        };
        // The lock is released: report (or just drop) what left the cache.
        if let Some(stats) = self.shard_stats(at.shard) {
            stats.inserted();
        }
        self.deliver(at.shard, op.removed, old.as_ref());
        if short > 0 {
            self.lend(at.shard, short);
        }
        self.help_other(at, &op.time);
        old
    }

    /// Reads, changes or removes the value of `key` in one step that no other write to the key
    /// can interleave with: `f` sees the current value (`None` if absent or expired) and
    /// returns what to do. Returns the key's value after the operation. The shorthand of
    /// [`entry(key).and_compute(f)`](crate::Entry::and_compute).
    ///
    /// If a load of the key is in flight ([`get_or_load`](Self::get_or_load) and friends),
    /// `compute` first waits for it to end, so it sees the loaded value rather than racing the
    /// loader: this call blocks the thread meanwhile (from an async task, use
    /// [`entry(key).and_compute_async(f)`](crate::Entry::and_compute_async)). A stored value gets
    /// the cache's configured lifetime, as with [`insert`](Self::insert); removals and
    /// replacements are reported to the listener.
    ///
    /// `f` runs under the shard's write lock: keep it short, and do not call back into the
    /// cache from it (that deadlocks).
    ///
    /// # Panics
    ///
    /// If `f` (or the key's `Clone`, to store a value) panics, nothing changes and the panic
    /// resumes. Called from a loader for the key that loader is loading, it panics (it would
    /// wait for itself).
    ///
    /// ```
    /// use cachet::{Cache, Compute};
    ///
    /// let hits: Cache<String, u64> = Cache::new(100);
    /// for _ in 0..3 {
    ///     hits.compute("/home", |n| Compute::Put(n.copied().unwrap_or(0) + 1));
    /// }
    /// assert_eq!(hits.get("/home"), Some(3));
    /// // Remove the key once it reaches a threshold, atomically with the check.
    /// let after = hits.compute("/home", |n| if n >= Some(&3) { Compute::Remove } else { Compute::Keep });
    /// assert_eq!(after, None);
    /// ```
    pub fn compute<Q, F>(&self, key: &Q, f: F) -> Option<V>
    where
        Q: ?Sized + Hash + Equivalent<K> + ToOwned<Owned = K>,
        V: Clone,
        F: FnOnce(Option<&V>) -> Compute<V>,
    {
        let at = self.hash(key);
        let mut f = Some(f);
        loop {
            match self.try_compute(at, key, &mut f) {
                Ok(after) => return after,
                Err(flight) => {
                    // A load of the key is in flight: let it finish, then look again.
                    check_not_leading(&flight);
                    let _ = flight.wait(None);
                }
            }
        }
    }

    /// [`compute`](Self::compute) that waits for a load in flight without blocking the
    /// thread (see [`Entry::and_compute_async`](crate::Entry::and_compute_async)).
    pub(crate) async fn compute_async<Q, F>(&self, key: &Q, f: F) -> Option<V>
    where
        Q: ?Sized + Hash + Equivalent<K> + ToOwned<Owned = K>,
        V: Clone,
        F: FnOnce(Option<&V>) -> Compute<V>,
    {
        let at = self.hash(key);
        let mut f = Some(f);
        loop {
            match self.try_compute(at, key, &mut f) {
                Ok(after) => return after,
                Err(flight) => {
                    check_not_leading(&flight);
                    let _ = Wait::new(&flight).await;
                }
            }
        }
    }

    /// One attempt of `compute`: runs `f` (taken from its `Option`) and applies its decision,
    /// unless a load of the key is in flight, whose flight it returns for the caller to wait on.
    fn try_compute<Q, F>(
        &self,
        at: Hashed,
        key: &Q,
        f: &mut Option<F>,
    ) -> Result<Option<V>, Arc<Flight<V>>>
    where
        Q: ?Sized + Equivalent<K> + ToOwned<Owned = K>,
        V: Clone,
        F: FnOnce(Option<&V>) -> Compute<V>,
    {
        let shard = &self.inner.shards[at.shard];
        let mut op = self.write_ctx();
        let mut old = None;
        let mut short = 0;
        let after = {
            let mut state = shard.state.write();
            let current = state.probe(at.hash, key, &op.time)?;
            let f = f.take().expect("f runs once");
            let after = match f(current) {
                Compute::Keep => current.cloned(),
                Compute::Put(v) => {
                    let owned = key.to_owned();
                    let w = match &self.inner.weigher {
                        Some(weigh) => weigh(&owned, &v),
                        None => 1,
                    };
                    let new = v.clone();
                    let life = Lifetime::Configured;
                    old = state.insert(at.hash, owned, v, w, life, &mut op);
                    short = shard.after_insert(&mut state);
                    if let Some(stats) = self.shard_stats(at.shard) {
                        stats.inserted();
                    }
                    // Too heavy, or a zero lifetime: the value was not kept.
                    let kept = matches!(state.probe(at.hash, key, &op.time), Ok(Some(_)));
                    kept.then_some(new)
                }
                Compute::Remove => {
                    let removed = &mut op.removed;
                    if let Some((k, v, expired)) = state.remove(at.hash, key, &op.time, removed) {
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
            after
        };
        // The replaced value (if any) is reported as Replaced.
        self.deliver(at.shard, op.removed, old.as_ref());
        if short > 0 {
            self.lend(at.shard, short);
        }
        Ok(after)
    }

    /// Removes `key`, returning its value (`None` if absent or expired).
    ///
    /// The eviction listener, if any, gets the key and a clone of the value (or the value
    /// itself, with [`RemovalCause::Expired`], if it had expired).
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        let at = self.hash(key);
        let shard = &self.inner.shards[at.shard];
        let mut removed = Removed::new();
        let found = {
            let mut state = shard.state.write();
            let found = state.remove(at.hash, key, &self.now(), &mut removed);
            shard.after_write(&mut state);
            found
        };
        let Some((k, v, expired)) = found else {
            self.deliver(at.shard, removed, None);
            return None;
        };
        if expired {
            removed.push(k, v, RemovalCause::Expired);
            self.deliver(at.shard, removed, None);
            return None;
        }
        removed.push_returned(k, RemovalCause::Explicit);
        self.deliver(at.shard, removed, Some(&v));
        Some(v)
    }

    /// Removes every entry. Shards are cleared one at a time; entries inserted concurrently into
    /// an already cleared shard stay. Every entry is reported to the eviction listener (as
    /// [`RemovalCause::Explicit`], or [`RemovalCause::Expired`] if its deadline had passed),
    /// and the loads in flight are superseded (their values are not stored).
    pub fn invalidate_all(&self) {
        for (i, shard) in self.inner.shards.iter().enumerate() {
            let mut removed = Removed::new();
            {
                let mut state = shard.state.write();
                state.clear(&self.now(), &mut removed);
                shard.after_write(&mut state);
            }
            self.deliver_slow(i, removed, None);
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
    /// its value but it is not stored. Remembered failures
    /// ([`negative_ttl`](crate::CacheBuilder::negative_ttl)) are forgotten.
    ///
    /// # Panics
    ///
    /// If `keep` panics, the entries it already rejected are removed and reported, the rest are
    /// kept, and the panic resumes.
    pub fn retain<F>(&self, mut keep: F)
    where
        F: FnMut(&K, &V) -> bool,
    {
        for (i, shard) in self.inner.shards.iter().enumerate() {
            let mut removed = Removed::new();
            // The guard is dropped (the lock is free) before the removed entries are reported.
            let visited = catch_unwind(AssertUnwindSafe(|| {
                let mut state = shard.state.write();
                state.retain(&mut keep, &self.now(), &mut removed);
                shard.after_write(&mut state);
            }));
            self.deliver_slow(i, removed, None);
            if let Err(p) = visited {
                resume_unwind(p);
            }
        }
    }

    /// Removes `key` if `remove(&value)` says so, in one step that no other write to the key
    /// can interleave with, and returns the removed value. Waits for a load of the key in
    /// flight first, as [`compute`](Self::compute) does.
    ///
    /// # Panics
    ///
    /// If `remove` panics, nothing changes and the panic resumes.
    ///
    /// ```
    /// use cachet::Cache;
    ///
    /// let sessions: Cache<u64, &str> = Cache::new(100);
    /// sessions.insert(1, "expired-token");
    /// assert_eq!(sessions.remove_if(&1, |token| token.starts_with("expired")), Some("expired-token"));
    /// assert_eq!(sessions.remove_if(&1, |_| true), None);
    /// ```
    pub fn remove_if<Q, F>(&self, key: &Q, remove: F) -> Option<V>
    where
        Q: ?Sized + Hash + Equivalent<K> + ToOwned<Owned = K>,
        V: Clone,
        F: FnOnce(&V) -> bool,
    {
        let mut removed = None;
        self.compute(key, |current| match current {
            Some(v) if remove(v) => {
                removed = Some(v.clone());
                Compute::Remove
            }
            _ => Compute::Keep,
        });
        removed
    }

    /// Changes `max_capacity` now: the cache evicts, by its policy, what no longer fits (and
    /// reports it to the listener as [`RemovalCause::Evicted`]), and grows into a larger one as
    /// entries arrive. The shard count stays as built; a count-bounded cache's shards each get
    /// an even share of the new capacity (a shard with none stores nothing). Every shard is
    /// locked at once while the capacity changes hands: a rare operation.
    ///
    /// ```
    /// use cachet::Cache;
    ///
    /// let cache: Cache<u64, u64> = Cache::new(1_000);
    /// for k in 0..1_000 {
    ///     cache.insert(k, k);
    /// }
    /// cache.set_capacity(100);
    /// assert_eq!(cache.capacity(), 100);
    /// assert!(cache.len() <= 100);
    /// ```
    pub fn set_capacity(&self, max_capacity: u64) {
        let inner = &self.inner;
        let mut batches = Vec::new();
        {
            let _no_lending = inner.lending.lock();
            let mut states: Vec<_> = inner.shards.iter().map(|s| s.state.write()).collect();
            let old = inner.capacity.swap(max_capacity, Ordering::Relaxed);
            let n = states.len() as u64;
            let time = self.now();
            let mut held = 0;
            for (i, state) in states.iter_mut().enumerate() {
                let base = max_capacity / n + u64::from((i as u64) < max_capacity % n);
                // A weighted shard shrinks with the cache, in proportion to what it holds.
                let limit = if max_capacity < old {
                    let scaled = u128::from(state.capacity()) * u128::from(max_capacity);
                    u64::try_from(scaled / u128::from(old)).unwrap_or(u64::MAX)
                } else {
                    u64::MAX
                };
                let mut removed = Removed::new();
                state.set_capacity(base, limit, &time, &mut removed);
                inner.shards[i].after_write(state);
                held += state.capacity();
                batches.push((i, removed));
            }
            if let Some(budget) = &inner.budget {
                budget.reset(max_capacity, held);
            }
        }
        for (i, removed) in batches {
            self.deliver(i, removed, None);
        }
    }

    /// An insert into shard `i` left it `need` short of room for an entry larger than all the
    /// capacity it could claim (a weighted cache that is nearly full): the other shards lend
    /// it capacity, each its part of `need` first (then whatever more it holds), evicting by
    /// their own policies what no longer fits. One lender at a time, each under its own lock;
    /// the removals are reported once no lock is held. Rare: it takes every shard's lock once.
    #[cold]
    #[inline(never)]
    pub(super) fn lend(&self, i: usize, need: u64) {
        let n = self.inner.shards.len();
        let mut batches = Vec::new();
        {
            let _one_at_a_time = self.inner.lending.lock();
            let mut lent = 0;
            let even = need.div_ceil((n as u64 - 1).max(1));
            for part in [Some(even), None] {
                for j in (1..n).map(|d| (i + d) % n) {
                    if lent >= need {
                        break;
                    }
                    let want = part.unwrap_or(need).min(need - lent);
                    let shard = &self.inner.shards[j];
                    let mut removed = Removed::new();
                    let mut state = shard.state.write();
                    lent += state.lend(want, &self.now(), &mut removed);
                    shard.after_write(&mut state);
                    drop(state);
                    batches.push((j, removed));
                }
            }
            let shard = &self.inner.shards[i];
            let mut removed = Removed::new();
            let mut state = shard.state.write();
            state.receive(lent, &self.now(), &mut removed);
            shard.after_write(&mut state);
            drop(state);
            batches.push((i, removed));
        }
        for (j, removed) in batches {
            self.deliver(j, removed, None);
        }
    }
}
