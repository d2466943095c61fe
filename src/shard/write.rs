//! Inserts, replacements, removals and eviction, under the write lock. Everything that leaves
//! goes to the operation's `Removed` sink, reported by the cache once the lock is released;
//! eviction order is the policy's decision, not this file's.

use equivalent::Equivalent;
use hashbrown::HashTable;

use crate::clock::Now;
use crate::expiry::{Deadline, ExpireConfig, Lifetime};
use crate::listener::{Panic, RemovalCause, Removed};
use crate::slab::{MAX_ENTRIES, Queue, Token};

use super::{EXPIRE_BUDGET, PENDING, ShardState, hash_of, index_hash, key_of};

/// What a write brings to the shard: the entry, with its key's hash and weight, and how its
/// lifetime is decided.
pub(crate) struct NewEntry<K, V> {
    pub(crate) hash: u32,
    pub(crate) key: K,
    pub(crate) value: V,
    pub(crate) weight: u32,
    pub(crate) life: Lifetime,
}

impl<K, V> ShardState<K, V> {
    /// Inserts or replaces. Returns the replaced value (and records the caller's key in
    /// `removed` for its notification); entries evicted or expired to make room, and an entry
    /// too heavy to store or already expired, go to `removed`.
    ///
    /// `time` is read only if the shard keeps deadlines or the write gives one; `cfg` holds the
    /// cache's configured lifetimes.
    pub(crate) fn insert(
        &mut self,
        new: NewEntry<K, V>,
        time: &Now<'_>,
        cfg: &ExpireConfig<K, V>,
        removed: &mut Removed<K, V>,
    ) -> Option<V>
    where
        K: Eq,
    {
        let NewEntry {
            hash,
            key,
            value,
            weight,
            life,
        } = new;
        // Weight 0 is counted as 1 (documented on `weigher`), so the bound also bounds entries.
        let w = weight.max(1);
        let timed = self.wheel.is_some() || cfg.is_active() || matches!(life, Lifetime::Fixed(_));
        self.catch_up(time, removed);
        self.cancel_refresh(&key);
        if self.slab.len() >= MAX_ENTRIES {
            // Tokens are `u32`: only reachable for weighted shards with billions of light entries.
            if let Some(v) = self.policy.victim(&mut self.slab) {
                self.evict_token(v, time, removed);
            }
        }
        // One probe finds the key or the slot for it. User `Eq` runs here, before any change.
        let found = loop {
            let (slab, pending) = (&self.slab, &self.loads.pending);
            let t = match self.index.entry(
                index_hash(hash),
                |&t| key_of(slab, pending, t) == &key,
                |&t| index_hash(hash_of(slab, pending, t)),
            ) {
                hashbrown::hash_table::Entry::Occupied(o) => *o.get(),
                hashbrown::hash_table::Entry::Vacant(v) => {
                    let deadline = if timed {
                        match decide(cfg, || {
                            cfg.on_write(&key, &value, hash, time.tick(), life, None)
                        }) {
                            Ok(d) => d,
                            Err(p) => {
                                // Nothing changed for this key; what was removed on the way
                                // is still reported, then the panic resumes.
                                removed.set_panic(p);
                                return None;
                            }
                        }
                    } else {
                        None
                    };
                    if deadline.is_some_and(|d| d.when <= time.tick()) {
                        removed.push(key, value, RemovalCause::Expired);
                        return None;
                    }
                    if u64::from(w) > self.capacity {
                        removed.push(key, value, RemovalCause::Evicted);
                        return None;
                    }
                    self.slab.reserve(1, self.max_entries);
                    let t = self.slab.push(key, value, hash, w, Queue::Window);
                    v.insert(t);
                    self.weight += u64::from(w);
                    self.push_timer(t, deadline, time, cfg);
                    self.policy.on_insert(hash, w, self.slab.len());
                    self.finish_write(time, removed);
                    return None;
                }
            };
            if t >= PENDING {
                // A load in flight: this write supersedes it (its leader will not store).
                self.remove_pending(t);
                continue;
            }
            if !self.expired_at(t, time) {
                break t;
            }
            // The old value is gone already: remove it, and insert as a new entry.
            let e = self.remove_token(t);
            removed.push(e.key, e.value, RemovalCause::Expired);
        };
        let deadline = if timed {
            // The user's `Expiry` may panic here: nothing has changed for this key yet.
            let current = self.remaining(found, time);
            match decide(cfg, || {
                cfg.on_write(&key, &value, hash, time.tick(), life, Some(current))
            }) {
                Ok(d) => d,
                Err(p) => {
                    removed.set_panic(p);
                    self.finish_write(time, removed);
                    return None;
                }
            }
        } else {
            None
        };
        let new = NewEntry {
            hash,
            key,
            value,
            weight: w,
            life,
        };
        let old = self.replace(found, new, deadline, time, cfg, removed);
        // An update adds no entry: the policy's queues are as the last insert left them, so
        // only a heavier value can call for an eviction (skipping `fill_main` then).
        self.expire(time, EXPIRE_BUDGET, removed);
        if self.weight > self.capacity {
            self.evict(time, removed);
        }
        old
    }

    /// The end of every insert: expire what is due (bounded), then evict down to capacity.
    #[inline]
    pub(super) fn finish_write(&mut self, time: &Now<'_>, removed: &mut Removed<K, V>) {
        self.expire(time, EXPIRE_BUDGET, removed);
        self.evict(time, removed);
    }

    /// Replaces the value of entry `t` with `new`'s (whose weight is at least 1); `insert`
    /// decided its new deadline.
    pub(super) fn replace(
        &mut self,
        t: Token,
        new: NewEntry<K, V>,
        deadline: Option<Deadline>,
        time: &Now<'_>,
        cfg: &ExpireConfig<K, V>,
        removed: &mut Removed<K, V>,
    ) -> Option<V> {
        let NewEntry {
            key,
            value,
            weight: w,
            ..
        } = new;
        if u64::from(w) > self.capacity || deadline.is_some_and(|d| d.when <= time.tick()) {
            // Too heavy to keep, or expired at once: the old value must not survive either. It
            // was replaced; the new one leaves at once.
            let cause = if u64::from(w) > self.capacity {
                RemovalCause::Evicted
            } else {
                RemovalCause::Expired
            };
            let e = self.remove_token(t);
            removed.push_returned(e.key, RemovalCause::Replaced);
            removed.push(key, value, cause);
            return Some(e.value);
        }
        let old_w = self.slab.weight(t);
        self.slab.set_weight(t, w);
        self.weight = self.weight - old_w + u64::from(w);
        let e = self.slab.get_mut(t);
        e.replaced();
        let old = std::mem::replace(&mut e.value, value);
        self.set_deadline(t, deadline, time, cfg);
        // The caller's key (equal to the stored one) goes with the replaced value's notification.
        removed.push_returned(key, RemovalCause::Replaced);
        Some(old)
    }

    /// Removes `t` for the policy: an entry past its deadline is reported as expired.
    #[inline]
    pub(super) fn evict_token(&mut self, t: Token, time: &Now<'_>, removed: &mut Removed<K, V>) {
        let cause = if self.expired_at(t, time) {
            RemovalCause::Expired
        } else {
            RemovalCause::Evicted
        };
        let e = self.remove_token(t);
        removed.push(e.key, e.value, cause);
    }

    #[inline]
    pub(super) fn evict(&mut self, time: &Now<'_>, removed: &mut Removed<K, V>) {
        self.policy.fill_main(&mut self.slab);
        while self.weight > self.capacity {
            let Some(v) = self.policy.victim(&mut self.slab) else {
                debug_assert!(false, "over capacity with no entry to evict");
                break;
            };
            self.evict_token(v, time, removed);
        }
    }

    /// Removes `key`, returning its entry and whether it had already expired (its value is
    /// then no longer the caller's to see).
    pub(crate) fn remove<Q>(
        &mut self,
        hash: u32,
        key: &Q,
        time: &Now<'_>,
        removed: &mut Removed<K, V>,
    ) -> Option<(K, V, bool)>
    where
        Q: ?Sized + Equivalent<K>,
    {
        self.catch_up(time, removed);
        self.cancel_refresh(key);
        let (slab, pending) = (&self.slab, &self.loads.pending);
        let t = *self.index.find(index_hash(hash), |&t| {
            key.equivalent(key_of(slab, pending, t))
        })?;
        if t >= PENDING {
            // A load in flight: cancel its result, so it cannot undo this removal.
            self.remove_pending(t);
            return None;
        }
        let expired = self.expired_at(t, time);
        let e = self.remove_token(t);
        self.shrink_if_sparse();
        Some((e.key, e.value, expired))
    }

    /// Keeps the entries for which `keep` returns true. Removed entries go to `removed`;
    /// entries already expired are removed as such without asking `keep`. If `keep` panics,
    /// the entries already visited are settled and the rest are kept.
    pub(crate) fn retain<F>(&mut self, keep: &mut F, time: &Now<'_>, removed: &mut Removed<K, V>)
    where
        K: Eq,
        F: FnMut(&K, &V) -> bool,
    {
        self.catch_up(time, removed);
        let mut t: Token = 0;
        while (t as usize) < self.slab.len() {
            let cause = if self.expired_at(t, time) {
                RemovalCause::Expired
            } else {
                let e = self.slab.get(t);
                if keep(&e.key, &e.value) {
                    t += 1;
                    continue;
                }
                RemovalCause::Explicit
            };
            // The last entry moves into `t`; look at `t` again.
            let e = self.remove_token(t);
            removed.push(e.key, e.value, cause);
        }
        // A refresh of a removed key must not bring it back.
        if !self.loads.refreshing.is_empty() {
            let live: Vec<bool> = (self.loads.refreshing.iter())
                .map(|r| self.lookup(r.hash, &r.key).is_some())
                .collect();
            let mut live = live.into_iter();
            self.loads
                .refreshing
                .retain(|_| live.next().unwrap_or(false));
        }
        self.shrink_if_sparse();
    }

    /// Removes every entry into `removed`, with its cause (expired, or explicit), to be
    /// reported and dropped outside the lock.
    pub(crate) fn clear(&mut self, time: &Now<'_>, removed: &mut Removed<K, V>) {
        self.catch_up(time, removed);
        let causes: Vec<RemovalCause> = (0..self.slab.len() as Token)
            .map(|t| {
                if self.expired_at(t, time) {
                    RemovalCause::Expired
                } else {
                    RemovalCause::Explicit
                }
            })
            .collect();
        self.index = HashTable::new();
        self.loads.clear();
        self.weight = 0;
        if let Some(w) = &mut self.wheel {
            w.clear();
        }
        for (e, cause) in self.slab.take_all().into_iter().zip(causes) {
            removed.push(e.key, e.value, cause);
        }
    }
}

/// Runs user code that may panic (an `Expiry` hook) under the lock, before any change: the
/// panic is caught so the caller can report what was already removed, then resume it.
#[inline]
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, Panic> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
}

/// A write's deadline from `f` (`on_write`), `guarded` only when it can run user code (an
/// `Expiry`): a plain time-to-live or time-to-idle is arithmetic, and skipping the unwinding
/// frame keeps it inline on every insert.
#[inline]
fn decide<K, V>(
    cfg: &ExpireConfig<K, V>,
    f: impl FnOnce() -> Option<Deadline>,
) -> Result<Option<Deadline>, Panic> {
    if cfg.expiry.is_some() {
        guarded(f)
    } else {
        Ok(f())
    }
}
