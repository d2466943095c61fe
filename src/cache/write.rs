//! Writes: `insert`, `compute`, `remove`, `invalidate_all` and `retain`. Each changes one shard
//! under its write lock, then reports what left once the lock is released.

use std::hash::{BuildHasher, Hash};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::time::Duration;

use equivalent::Equivalent;

use crate::expiry::{Lifetime, ticks};
use crate::listener::{RemovalCause, Removed};

use super::Cache;
use super::read::ReadKind;

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
    /// With [`time_to_idle`](crate::CacheBuilder::time_to_idle), reads may keep the entry
    /// alive, but never past `ttl` after this insert. Works on any cache: a cache built without
    /// expiration starts keeping deadlines (12 bytes per entry) in a shard the first time one
    /// of its entries gets one.
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
        let old = {
            let mut state = shard.state.write();
            let old = state.insert(at.hash, key, value, w, life, &mut op);
            shard.publish_due(&state);
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
            old
        };
        // The lock is released: report (or just drop) what left the cache.
        if let Some(stats) = self.shard_stats(at.shard) {
            stats.inserted();
        }
        self.deliver(at.shard, op.removed, old.as_ref());
        self.help_other(at, &op.time);
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
        let at = self.hash(&key);
        let shard = &self.inner.shards[at.shard];
        // Both are used once, in the pass that finds no load in flight.
        let (mut f, mut key) = (Some(f), Some(key));
        loop {
            let mut op = self.write_ctx();
            let outcome = {
                let mut state = shard.state.write();
                let k = key.as_ref().expect("key is used once");
                match state.probe(at.hash, k, &op.time) {
                    Err(flight) => Err(flight),
                    Ok(current) => {
                        let f = f.take().expect("f runs once");
                        let decision = f(current);
                        let mut old = None;
                        let result = match decision {
                            Compute::Keep => current.cloned(),
                            Compute::Put(v) => {
                                let key = key.take().expect("key is used once");
                                let w = match &self.inner.weigher {
                                    Some(weigh) => weigh(&key, &v),
                                    None => 1,
                                };
                                let new = v.clone();
                                let probe = key.clone();
                                let life = Lifetime::Configured;
                                old = state.insert(at.hash, key, v, w, life, &mut op);
                                // Too heavy, or a zero lifetime: the value was not kept.
                                let kept =
                                    matches!(state.probe(at.hash, &probe, &op.time), Ok(Some(_)));
                                if let Some(stats) = self.shard_stats(at.shard) {
                                    stats.inserted();
                                }
                                kept.then_some(new)
                            }
                            Compute::Remove => {
                                if let Some((k, v, expired)) =
                                    state.remove(at.hash, k, &op.time, &mut op.removed)
                                {
                                    let cause = if expired {
                                        RemovalCause::Expired
                                    } else {
                                        RemovalCause::Explicit
                                    };
                                    op.removed.push(k, v, cause);
                                }
                                None
                            }
                        };
                        shard.publish_due(&state);
                        Ok((result, old))
                    }
                }
            };
            match outcome {
                Ok((result, old)) => {
                    // The replaced value (if any) is reported as Replaced.
                    self.deliver(at.shard, op.removed, old.as_ref());
                    return result;
                }
                Err(flight) => {
                    // A load of the key is in flight: let it finish, then look again.
                    let _ = flight.wait(None);
                }
            }
        }
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
            shard.publish_due(&state);
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
    /// an already cleared shard stay. A panicking eviction listener does not stop it: every shard
    /// is cleared and every entry reported, then the first panic resumes.
    pub fn invalidate_all(&self) {
        let mut panic = None;
        for (i, shard) in self.inner.shards.iter().enumerate() {
            let mut removed = Removed::new();
            {
                let mut state = shard.state.write();
                state.clear(&self.now(), &mut removed);
                shard.publish_due(&state);
            }
            let delivered = catch_unwind(AssertUnwindSafe(|| self.deliver_slow(i, removed, None)));
            if let Err(p) = delivered {
                panic.get_or_insert(p);
            }
        }
        if let Some(p) = panic {
            resume_unwind(p);
        }
    }

    /// Keeps only the entries for which `keep(&key, &value)` returns `true`. Expired entries
    /// are removed (as [`RemovalCause::Expired`]) without being shown to `keep`.
    ///
    /// `keep` runs under each shard's write lock in turn: keep it short, and do not call back into
    /// this cache from it (that deadlocks on the shard being visited). If `keep` panics, the
    /// entries it already rejected are removed and reported, the rest are kept, and the panic
    /// resumes. A panicking eviction listener does not stop the visit: the first of its panics
    /// resumes once every shard is done.
    pub fn retain<F>(&self, mut keep: F)
    where
        F: FnMut(&K, &V) -> bool,
    {
        let mut panic = None;
        for (i, shard) in self.inner.shards.iter().enumerate() {
            let mut removed = Removed::new();
            // The guard is dropped (the lock is free) before the removed entries are reported.
            let visited = catch_unwind(AssertUnwindSafe(|| {
                let mut state = shard.state.write();
                state.retain(&mut keep, &self.now(), &mut removed);
                shard.publish_due(&state);
            }));
            let delivered = catch_unwind(AssertUnwindSafe(|| self.deliver_slow(i, removed, None)));
            if let Err(p) = visited {
                // The predicate's own panic comes first and ends the visit.
                resume_unwind(p);
            }
            if let Err(p) = delivered {
                panic.get_or_insert(p);
            }
        }
        if let Some(p) = panic {
            resume_unwind(p);
        }
    }
}
