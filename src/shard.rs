// One shard: the index, the entries and the policy, behind one lock. This is the only place cache
// state changes; `Cache` hashes a key once, picks a shard, and calls in here.
//
// Hashing: the handle computes the key's 64-bit hash once; its high half picks the shard and its
// low half comes here. The index hash and the sketch hash are derived from those 32 bits, and the
// entry stores them, so neither a table resize nor an eviction ever calls the user's hasher again.
//
// User code and the lock: the only user code that runs while the write lock is held is `Eq`
// (inside lookups, before anything is changed) and the `retain` predicate (between two complete
// removals). Removed entries, and the caller's duplicate key on a replacement, are handed back in
// a `Removed` batch and reported or dropped after the lock is released. So a panic in user
// code can unwind through a shard, but never leaves it half-changed; `parking_lot` locks do not
// poison, and the cache stays usable.

use equivalent::Equivalent;
use hashbrown::HashTable;

use crate::hits::HitCounter;
use crate::listener::{RemovalCause, Removed};
use crate::policy::Policy;
use crate::slab::{Entry, MAX_ENTRIES, Queue, Slab, Token};

/// The index hash of a 32-bit key hash. hashbrown takes its 7-bit tag from the top 7 bits and the
/// bucket from the low bits: rotating puts bits 0..7 in the tag and bits 7.. in the bucket
/// number, so the two are independent for any table under 2^25 buckets per shard. One
/// instruction on the lookup path, where a 64-bit multiplication used to be.
#[inline]
pub(crate) fn index_hash(hash: u32) -> u64 {
    u64::from(hash).rotate_right(7)
}

/// The state behind a shard's lock. Readers write nothing here but entries' access counters;
/// hits are counted beside the lock, in a [`HitCounter`].
pub(crate) struct ShardState<K, V> {
    index: HashTable<Token>,
    slab: Slab<K, V>,
    policy: Policy,
    weight: u64,
    capacity: u64,
    /// Most entries this shard's slab is allowed to grow to: its capacity plus the one entry that
    /// is briefly over the bound during an insert, when count-bounded. Sizes allocations.
    max_entries: usize,
}

impl<K, V> ShardState<K, V> {
    pub(crate) fn new(capacity: u64, weighted: bool, initial: usize, seed: u64) -> Self {
        let max_entries = if weighted {
            MAX_ENTRIES
        } else {
            usize::try_from(capacity.saturating_add(1))
                .unwrap_or(MAX_ENTRIES)
                .min(MAX_ENTRIES)
        };
        // Every entry weighs at least 1, so no shard ever holds more entries than its capacity.
        let fits = usize::try_from(capacity).unwrap_or(usize::MAX);
        let initial = initial.min(max_entries).min(fits);
        // `initial_capacity` is a hint: if the allocator refuses it, start small instead.
        let mut slab = Slab::new(weighted);
        slab.try_reserve_initial(initial);
        let mut index = HashTable::new();
        if index.try_reserve(initial, |_: &Token| 0).is_err() {
            index = HashTable::new();
        }
        // The sketch grows with the entries; start it at the room actually obtained.
        let sketch_entries = slab.capacity().max(16);
        ShardState {
            index,
            slab,
            policy: Policy::new(capacity, sketch_entries, seed),
            weight: 0,
            capacity,
            max_entries,
        }
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.slab.len()
    }

    #[inline]
    pub(crate) fn weight(&self) -> u64 {
        self.weight
    }

    #[inline]
    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    #[inline]
    fn find<Q>(&self, hash: u32, key: &Q) -> Option<Token>
    where
        Q: ?Sized + Equivalent<K>,
    {
        let slab = &self.slab;
        self.index
            .find(index_hash(hash), |&t| key.equivalent(&slab.get(t).key))
            .copied()
    }

    /// The entry for `key`, if present.
    #[inline]
    fn lookup<Q>(&self, hash: u32, key: &Q) -> Option<&Entry<K, V>>
    where
        Q: ?Sized + Equivalent<K>,
    {
        let slab = &self.slab;
        let mut found = None;
        self.index.find(index_hash(hash), |&t| {
            let e = slab.get(t);
            let hit = key.equivalent(&e.key);
            if hit {
                found = Some(e);
            }
            hit
        });
        found
    }

    /// Looks up `key` and records the access (read lock).
    #[inline]
    pub(crate) fn get<Q>(&self, hash: u32, key: &Q) -> Option<&V>
    where
        Q: ?Sized + Equivalent<K>,
    {
        let e = self.lookup(hash, key)?;
        e.touch();
        Some(&e.value)
    }

    /// Looks up `key` without recording an access.
    #[inline]
    pub(crate) fn peek<Q>(&self, hash: u32, key: &Q) -> Option<&V>
    where
        Q: ?Sized + Equivalent<K>,
    {
        self.lookup(hash, key).map(|e| &e.value)
    }

    /// Inserts or replaces. Returns the replaced value (and records the caller's key in
    /// `removed` for its notification); entries evicted to make room, and an entry
    /// too heavy to store, go to `removed`.
    pub(crate) fn insert(
        &mut self,
        hash: u32,
        key: K,
        value: V,
        weight: u32,
        hits: &HitCounter,
        removed: &mut Removed<K, V>,
    ) -> Option<V>
    where
        K: Eq,
    {
        // Weight 0 is counted as 1 (documented on `weigher`), so the bound also bounds entries.
        let w = weight.max(1);
        if self.slab.len() >= MAX_ENTRIES {
            // Tokens are `u32`: only reachable for weighted shards with billions of light entries.
            if let Some(v) = self.policy.victim(&mut self.slab, hits) {
                let e = self.remove_token(v);
                removed.push(e.key, e.value, RemovalCause::Evicted);
            }
        }
        // One probe finds the key or the slot for it. User `Eq` runs here, before any change.
        let slab = &self.slab;
        let existing = match self.index.entry(
            index_hash(hash),
            |&t| slab.get(t).key == key,
            |&t| index_hash(slab.get(t).hash),
        ) {
            hashbrown::hash_table::Entry::Occupied(o) => *o.get(),
            hashbrown::hash_table::Entry::Vacant(v) => {
                if u64::from(w) > self.capacity {
                    removed.push(key, value, RemovalCause::Evicted);
                    return None;
                }
                self.slab.reserve(1, self.max_entries);
                let t = self.slab.push(key, value, hash, w, Queue::Window);
                v.insert(t);
                self.weight += u64::from(w);
                self.policy.on_insert(hash, hits, self.slab.len());
                self.evict(hits, removed);
                return None;
            }
        };
        let t = existing;
        if u64::from(w) > self.capacity {
            // Too heavy to keep: the old value must not survive either. It was replaced; the new
            // one is evicted at once.
            let e = self.remove_token(t);
            removed.push_returned(e.key, RemovalCause::Replaced);
            removed.push(key, value, RemovalCause::Evicted);
            return Some(e.value);
        }
        let old_w = self.slab.weight(t);
        self.slab.set_weight(t, w);
        self.weight = self.weight - old_w + u64::from(w);
        let e = self.slab.get_mut(t);
        let a = e.access.get_mut();
        *a = (*a + 1).min(crate::slab::MAX_ACCESS);
        let old = std::mem::replace(&mut e.value, value);
        // The caller's key (equal to the stored one) goes with the replaced value's notification.
        removed.push_returned(key, RemovalCause::Replaced);
        self.evict(hits, removed);
        Some(old)
    }

    fn evict(&mut self, hits: &HitCounter, removed: &mut Removed<K, V>) {
        self.policy.fill_main(&mut self.slab);
        while self.weight > self.capacity {
            let Some(v) = self.policy.victim(&mut self.slab, hits) else {
                debug_assert!(false, "over capacity with no entry to evict");
                break;
            };
            let e = self.remove_token(v);
            removed.push(e.key, e.value, RemovalCause::Evicted);
        }
    }

    /// Removes `key`, returning its entry.
    pub(crate) fn remove<Q>(&mut self, hash: u32, key: &Q) -> Option<(K, V)>
    where
        Q: ?Sized + Equivalent<K>,
    {
        let t = self.find(hash, key)?;
        let e = self.remove_token(t);
        Some((e.key, e.value))
    }

    /// Removes entry `t` from the index, its queue and the slab, repointing the entry that moves
    /// into its slot.
    fn remove_token(&mut self, t: Token) -> Entry<K, V> {
        let hash = self.slab.get(t).hash;
        if let Ok(o) = self.index.find_entry(index_hash(hash), |&x| x == t) {
            o.remove();
        } else {
            debug_assert!(false, "token {t} missing from the index");
        }
        self.weight -= self.slab.weight(t);
        let (e, moved) = self.slab.remove(t);
        if let Some((from, moved_hash)) = moved {
            match self.index.find_mut(index_hash(moved_hash), |&x| x == from) {
                Some(slot) => *slot = t,
                None => debug_assert!(false, "moved token {from} missing from the index"),
            }
        }
        e
    }

    /// Keeps the entries for which `keep` returns true. Removed entries go to `removed`. If `keep`
    /// panics, the entries already visited are settled and the rest are kept.
    pub(crate) fn retain<F>(&mut self, keep: &mut F, removed: &mut Vec<(K, V)>)
    where
        F: FnMut(&K, &V) -> bool,
    {
        let mut t: Token = 0;
        while (t as usize) < self.slab.len() {
            let e = self.slab.get(t);
            if keep(&e.key, &e.value) {
                t += 1;
            } else {
                // The last entry moves into `t`; look at `t` again.
                let e = self.remove_token(t);
                removed.push((e.key, e.value));
            }
        }
    }

    /// Removes every entry, returning them to be dropped outside the lock.
    pub(crate) fn clear(&mut self) -> Vec<Entry<K, V>> {
        self.index.clear();
        self.weight = 0;
        self.slab.take_all()
    }

    pub(crate) fn entries(&self) -> &[Entry<K, V>] {
        self.slab.entries()
    }

    /// Recounts every invariant: queue links and weights, index <-> slab agreement, the bound.
    pub(crate) fn validate(&self) -> Result<(), String>
    where
        K: Eq,
    {
        self.slab.validate()?;
        if self.index.len() != self.slab.len() {
            return Err(format!(
                "index holds {} tokens, slab {} entries",
                self.index.len(),
                self.slab.len()
            ));
        }
        let mut weight = 0u64;
        for (t, e) in self.slab.entries().iter().enumerate() {
            let t = t as Token;
            weight += self.slab.weight(t);
            match self.index.find(index_hash(e.hash), |&x| x == t) {
                Some(_) => {}
                None => return Err(format!("entry {t} is not indexed under its hash")),
            }
            // The key must find exactly this token.
            let found = self
                .index
                .find(index_hash(e.hash), |&x| self.slab.get(x).key == e.key);
            if found != Some(&t) {
                return Err(format!("key of entry {t} resolves to {found:?}"));
            }
        }
        if weight != self.weight {
            return Err(format!(
                "recorded weight {} but counted {weight}",
                self.weight
            ));
        }
        let queued: u64 = [Queue::Window, Queue::Probation, Queue::Protected]
            .iter()
            .map(|&q| self.slab.list(q).weight)
            .sum();
        if queued != weight {
            return Err(format!("queues weigh {queued}, entries {weight}"));
        }
        if self.weight > self.capacity {
            return Err(format!(
                "weight {} exceeds capacity {}",
                self.weight, self.capacity
            ));
        }
        Ok(())
    }
}
