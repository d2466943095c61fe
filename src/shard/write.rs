//! Inserts, replacements, removals and eviction, under the write lock. Everything that leaves
//! goes to the operation's `Removed` sink, reported by the cache once the lock is released;
//! eviction order is the policy's decision, not this file's.

use equivalent::Equivalent;
use hashbrown::HashTable;

use crate::clock::Now;
use crate::expiry::{Deadline, ExpireConfig, Lifetime};
use crate::listener::{Panic, RemovalCause, Removed};
use crate::slab::{MAX_ENTRIES, Queue, Token};

use super::{EXPIRE_BUDGET, PENDING, ShardState, hash_of, index_hash, key_of, unindex};

/// What a write works with besides its entry: the time it sees, the cache's configured
/// lifetimes, and the sink its removals go to (reported by the cache once the lock is released).
pub(crate) struct WriteCtx<'a, K, V> {
    pub(crate) time: Now<'a>,
    pub(crate) expire: &'a ExpireConfig<K, V>,
    pub(crate) removed: Removed<K, V>,
}

impl<K, V> ShardState<K, V> {
    /// Inserts or replaces. Returns the replaced value (and records the caller's key in
    /// `removed` for its notification); entries evicted or expired to make room, and an entry
    /// too heavy to store or already expired, go to `removed`.
    ///
    /// The clock is read only if the shard keeps deadlines or the write gives one.
    pub(crate) fn insert(
        &mut self,
        hash: u32,
        key: K,
        value: V,
        weight: u32,
        life: Lifetime,
        op: &mut WriteCtx<'_, K, V>,
    ) -> Option<V>
    where
        K: Eq,
    {
        let (cfg, removed) = (op.expire, &mut op.removed);
        // Weight 0 is counted as 1 (documented on `weigher`), so the bound also bounds entries.
        let w = weight.max(1);
        let timed = self.wheel.is_some() || cfg.is_active() || matches!(life, Lifetime::Fixed(_));
        let now = timed.then(|| op.time.tick());
        self.catch_up(now, removed);
        self.cancel_refresh(&key);
        if self.slab.len() >= MAX_ENTRIES {
            // Tokens are `u32`: only reachable for weighted shards with billions of light entries.
            if let Some(v) = self.policy.victim(&mut self.slab) {
                self.evict_token(v, now, removed);
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
                    let deadline = if let Some(now) = now {
                        match decide(cfg, || cfg.on_write(&key, &value, hash, now, life, None)) {
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
                    if deadline.is_some_and(|d| d.when <= d.from) {
                        removed.push(key, value, RemovalCause::Expired);
                        return None;
                    }
                    // Heavier than the shard may store: its capacity, or (weighted) the cache's.
                    let heavy = u64::from(w) > self.capacity
                        && u64::from(w) > self.budget.as_ref().map_or(self.capacity, |b| b.total());
                    if heavy {
                        removed.push(key, value, RemovalCause::Evicted);
                        return None;
                    }
                    let rare = self.policy.on_new_key(&self.slab, &self.hits, hash, w);
                    if self.budget.is_none() && self.weight == self.capacity && now.is_none() {
                        // A full count-bounded shard without deadlines (the common insert):
                        // the new entry takes its victim's slot (`v` is left unused). Full
                        // means at least one entry: a shard of capacity 0 found it too heavy.
                        self.insert_into_victim(hash, key, value, rare, removed);
                        return None;
                    }
                    self.slab.reserve(1, self.max_entries);
                    let t = self.slab.push(key, value, hash, w, Queue::Window);
                    if rare {
                        self.slab.get_mut(t).mark_rare();
                    }
                    self.last_bucket = v.insert(t).bucket_index();
                    self.weight += u64::from(w);
                    self.push_timer(t, deadline, cfg);
                    self.finish_write(now, w, removed);
                    return None;
                }
            };
            if t >= PENDING {
                // A load in flight: this write supersedes it (its leader will not store).
                self.remove_pending(t);
                continue;
            }
            if !self.expired_at(t, now) {
                break t;
            }
            // The old value is gone already: remove it, and insert as a new entry.
            let (old_key, old_value) = self.remove_token(t);
            removed.push(old_key, old_value, RemovalCause::Expired);
        };
        let deadline = if let Some(now) = now {
            // The user's `Expiry` may panic here: nothing has changed for this key yet.
            let current = self.remaining(found, now);
            match decide(cfg, || {
                cfg.on_write(&key, &value, hash, now, life, Some(current))
            }) {
                Ok(d) => d,
                Err(p) => {
                    removed.set_panic(p);
                    self.finish_write(Some(now), 0, removed);
                    return None;
                }
            }
        } else {
            None
        };
        let old = self.replace(found, key, value, w, deadline, op);
        // An update adds no entry: the policy's queues are as the last insert left them, so
        // only a heavier value can call for an eviction (skipping `fill_main` then).
        self.expire_at(now, EXPIRE_BUDGET, &mut op.removed);
        if self.weight > self.capacity {
            self.evict(now, w, &mut op.removed);
        }
        old
    }

    /// Inserts a new key, which the policy has counted (`Policy::on_new_key`: `rare`), into a
    /// full count-bounded shard without deadlines: the policy picks a victim as if the entry
    /// were already at the window's tail, and the entry takes the victim's slot, so no other
    /// entry moves and the index is not repointed. The shard must hold at least one entry.
    #[inline]
    fn insert_into_victim(
        &mut self,
        hash: u32,
        key: K,
        value: V,
        rare: bool,
        removed: &mut Removed<K, V>,
    ) {
        debug_assert!(self.slab.len() > 0);
        self.policy.fill_main_for(&mut self.slab, 1);
        let Some(v) = self.policy.victim_for(&mut self.slab, 1) else {
            // Unreachable (a shard with entries has a victim); were it reached, the new entry
            // would be the one left out.
            debug_assert!(false, "a shard with entries found no victim");
            removed.push(key, value, RemovalCause::Evicted);
            return;
        };
        unindex(&mut self.index, self.slab.get(v).hash, v);
        let (old_key, old_value) = self.slab.reuse(v, key, value, hash, 1, Queue::Window);
        if rare {
            self.slab.get_mut(v).mark_rare();
        }
        let (slab, pending) = (&self.slab, &self.loads.pending);
        self.index.insert_unique(index_hash(hash), v, |&t| {
            index_hash(hash_of(slab, pending, t))
        });
        removed.push(old_key, old_value, RemovalCause::Evicted);
    }

    /// The end of every insert (of weight `written`; 0: none): expire what is due (bounded),
    /// then evict down to capacity.
    #[inline]
    pub(super) fn finish_write(
        &mut self,
        now: Option<u64>,
        written: u32,
        removed: &mut Removed<K, V>,
    ) {
        self.expire_at(now, EXPIRE_BUDGET, removed);
        self.evict(now, written, removed);
    }

    /// Replaces the value of entry `t` (with weight `w`, at least 1); `insert` decided its new
    /// deadline.
    pub(super) fn replace(
        &mut self,
        t: Token,
        key: K,
        value: V,
        w: u32,
        deadline: Option<Deadline>,
        op: &mut WriteCtx<'_, K, V>,
    ) -> Option<V> {
        let (cfg, removed) = (op.expire, &mut op.removed);
        let too_heavy = u64::from(w) > self.capacity && u64::from(w) > self.limit();
        if too_heavy || deadline.is_some_and(|d| d.when <= d.from) {
            // Too heavy to keep, or expired at once: the old value must not survive either. It
            // was replaced; the new one leaves at once.
            let cause = if too_heavy {
                RemovalCause::Evicted
            } else {
                RemovalCause::Expired
            };
            let (old_key, old_value) = self.remove_token(t);
            removed.push_returned(old_key, RemovalCause::Replaced);
            removed.push(key, value, cause);
            return Some(old_value);
        }
        let old_w = self.slab.weight(t);
        self.slab.set_weight(t, w);
        self.weight = self.weight - old_w + u64::from(w);
        let e = self.slab.get_mut(t);
        e.replaced();
        let old = std::mem::replace(&mut e.value, value);
        self.set_deadline(t, deadline, cfg);
        // The caller's key (equal to the stored one) goes with the replaced value's notification.
        removed.push_returned(key, RemovalCause::Replaced);
        Some(old)
    }

    /// Removes `t` for the policy: an entry past its deadline is reported as expired.
    #[inline]
    pub(super) fn evict_token(&mut self, t: Token, now: Option<u64>, removed: &mut Removed<K, V>) {
        let cause = if self.expired_at(t, now) {
            RemovalCause::Expired
        } else {
            RemovalCause::Evicted
        };
        let (old_key, old_value) = self.remove_token(t);
        removed.push(old_key, old_value, cause);
    }

    /// Evicts down to capacity after an insert of weight `written` (0: none). A weighted shard
    /// first claims what it lacks from the cache's budget; if the entry just written is larger
    /// than all this shard can hold, it evicts nothing and leaves the rest to the other shards
    /// (`shortfall`). Inlined into `insert` (its only callers are there): as a call it cost an
    /// insert about 13 instructions.
    #[inline(always)]
    pub(super) fn evict(&mut self, now: Option<u64>, written: u32, removed: &mut Removed<K, V>) {
        self.policy.fill_main(&mut self.slab);
        if self.weight > self.capacity && self.budget.is_some() && self.claim(written) {
            return;
        }
        self.evict_to_capacity(now, removed);
    }

    /// Evicts, by the policy, until the weight is within the capacity.
    #[inline(always)]
    pub(super) fn evict_to_capacity(&mut self, now: Option<u64>, removed: &mut Removed<K, V>) {
        while self.weight > self.capacity {
            let Some(v) = self.policy.victim(&mut self.slab) else {
                debug_assert!(false, "over capacity with no entry to evict");
                break;
            };
            self.evict_token(v, now, removed);
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
        let now = self.tick_if_timed(time);
        self.catch_up(now, removed);
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
        let expired = self.expired_at(t, now);
        let (old_key, old_value) = self.remove_token(t);
        self.shrink_if_sparse();
        Some((old_key, old_value, expired))
    }

    /// Keeps the entries for which `keep` returns true. Removed entries go to `removed`;
    /// entries already expired are removed as such without asking `keep`. If `keep` panics,
    /// the entries already visited are settled and the rest are kept.
    ///
    /// Every load in flight is superseded first (its value will not be stored), and negative
    /// entries are dropped: a load has no value for `keep` to judge yet, and it may have read
    /// what the caller is about to filter out.
    pub(crate) fn retain<F>(&mut self, keep: &mut F, time: &Now<'_>, removed: &mut Removed<K, V>)
    where
        K: Eq,
        F: FnMut(&K, &V) -> bool,
    {
        let now = self.tick_if_timed(time);
        self.catch_up(now, removed);
        self.supersede_loads();
        let mut t: Token = 0;
        while (t as usize) < self.slab.len() {
            let cause = if self.expired_at(t, now) {
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
            let (old_key, old_value) = self.remove_token(t);
            removed.push(old_key, old_value, cause);
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
        let now = self.tick_if_timed(time);
        self.catch_up(now, removed);
        let causes: Vec<RemovalCause> = (0..self.slab.len() as Token)
            .map(|t| {
                if self.expired_at(t, now) {
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
