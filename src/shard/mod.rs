//! One shard: the index, the entries and the policy, behind one lock. This is the only place
//! cache state changes; the handle hashes a key once, picks a shard, and calls in here. It uses
//! the slab, the policy, the timer wheel and the flight type; it knows nothing of loaders,
//! loading caches, the builder or metrics.
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
// poison, and the cache stays usable. The same holds for the user's `Expiry`: its hooks run
// before the write they decide, and expired entries are removed at the end of a write.
//
// Expiration: a shard gets a timer wheel (`expiry/wheel.rs`) when its cache has a lifetime
// configured, or on its first `insert_with_ttl`; until then it pays nothing for it. Every write
// ends by expiring what is due, at most `EXPIRE_BUDGET` entries, before evicting for size; reads
// compare the entry's deadline with the clock and never return an expired entry.
//
// Files: this one holds the state and the index; `read.rs` the lookups under the read lock,
// `write.rs` inserts, removals and eviction, `timers.rs` the wheel glue, `inflight.rs` loads in
// flight, negative entries and refreshes, `validate.rs` the invariant checker.

mod budget;
mod inflight;
mod read;
mod timers;
#[cfg(any(test, feature = "_test-hooks"))]
mod validate;
mod write;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use equivalent::Equivalent;
use hashbrown::HashTable;

use crate::expiry::Wheel;
use crate::policy::{Policy, SharedWindow};
use crate::slab::{Entry, MAX_ENTRIES, Slab, Token};

pub(crate) use budget::Budget;
pub(crate) use inflight::Begin;
use inflight::{InFlight, Pending};
pub(crate) use read::Read;
pub(crate) use write::WriteCtx;

/// Most expired entries (or wheel entries refiled) a single operation handles. Each costs about
/// as much as an eviction, so this bounds the extra latency an operation can pay for expiration
/// (`examples/expiry_backlog.rs` measures it); a backlog larger than this is worked off over
/// the following operations.
pub(crate) const EXPIRE_BUDGET: u32 = 1024;

/// Shards with room for at most this many entries never shrink: too small to matter.
const MIN_SHRINK_ROOM: usize = 64;

/// Index tokens with this bit set are in-flight loads (`pending[token & !PENDING]`), not entries.
/// Entry tokens stay below it (`MAX_ENTRIES`).
pub(crate) const PENDING: Token = 1 << 31;
// A pending token is past the end of every slab, which `lookup` relies on.
const _: () = assert!(MAX_ENTRIES <= PENDING as usize);

/// The full tick of a stored 32-bit deadline, relative to `now`.
#[inline]
fn widen(d: u32, now: u64) -> u64 {
    now.saturating_add_signed(i64::from(d.wrapping_sub(now as u32) as i32))
}

/// The index hash of a 32-bit key hash. hashbrown takes its 7-bit tag from the top 7 bits and the
/// bucket from the low bits: rotating puts bits 0..7 in the tag and bits 7.. in the bucket
/// number, so the two are independent for any table under 2^25 buckets per shard. One
/// instruction on the lookup path, cheaper than a 64-bit multiplication.
#[inline]
pub(crate) fn index_hash(hash: u32) -> u64 {
    u64::from(hash).rotate_right(7)
}

/// What is left of a 64-byte cache line after the lock word (a `usize`) and `ShardState::hits`.
const LOCK_LINE_REST: usize = 64 - std::mem::size_of::<usize>() - 4;

/// The state behind a shard's lock. Readers write nothing here but entries' access counters
/// and `hits`.
#[repr(C)]
pub(crate) struct ShardState<K, V> {
    /// Reads recorded in an entry's access count (`hit`), for the policy's shift detector: a
    /// read of an entry whose count is at its maximum is not counted. Wraps. First, and the
    /// struct `repr(C)`, so that it shares the cache line of the lock word in front of it, which
    /// every reader writes anyway: counting costs readers no extra line.
    hits: AtomicU32,
    /// The rest of the lock word's line, so that the fields below, which readers only read,
    /// never share a line that other readers' lock operations keep taking away.
    _lock_line: [u8; LOCK_LINE_REST],
    index: HashTable<Token>,
    slab: Slab<K, V>,
    policy: Policy,
    weight: u64,
    /// The bound on `weight`: a fixed share of the cache's capacity when count-bounded, what
    /// the shard has claimed from the `budget` when weighted.
    capacity: u64,
    /// The shard's even share of the cache's capacity (its policy is sized for it).
    base: u64,
    /// Where a weighted shard claims its capacity (`None` when count-bounded).
    budget: Option<Arc<Budget>>,
    /// Capacity this shard's last insert still needs and could not claim: an entry larger than
    /// what the shard holds, which the other shards must make room for (`take_shortfall`).
    shortfall: u64,
    /// Most entries this shard's slab is allowed to grow to: its capacity plus the one entry that
    /// is briefly over the bound during an insert, when count-bounded. Sizes allocations.
    max_entries: usize,
    /// Deadlines, once any entry of this shard has one.
    wheel: Option<Wheel>,
    /// Loads in flight, negative entries and background refreshes.
    loads: InFlight<K, V>,
    /// The index bucket of the entry the last insert added, which is the slab's last entry
    /// until something else is pushed or removed: the entry that the eviction right after the
    /// insert moves into the victim's slot. A hint, checked before use (`repoint`).
    last_bucket: usize,
}

impl<K, V> ShardState<K, V> {
    /// `timed` is `Some((now, capped))` to start with a timer wheel; `budget` is where a
    /// weighted shard claims its capacity (it starts with none of it).
    pub(crate) fn new(
        capacity: u64,
        budget: Option<Arc<Budget>>,
        initial: usize,
        seed: u64,
        timed: Option<(u64, bool)>,
        window: Arc<SharedWindow>,
    ) -> Self {
        let weighted = budget.is_some();
        let max_entries = entries_for(weighted, capacity);
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
        let wheel = timed.map(|(now, capped)| {
            let mut w = Wheel::new(now, capped);
            w.try_reserve_exact(slab.capacity());
            w
        });
        ShardState {
            hits: AtomicU32::new(0),
            _lock_line: [0; LOCK_LINE_REST],
            index,
            slab,
            policy: Policy::new(capacity, sketch_entries, seed, window, !weighted),
            weight: 0,
            capacity: if weighted { 0 } else { capacity },
            base: capacity,
            budget,
            shortfall: 0,
            max_entries,
            wheel,
            loads: InFlight::new(),
            last_bucket: 0,
        }
    }

    /// `max_entries` for a shard of `capacity`.
    pub(super) fn entries_for(&self, capacity: u64) -> usize {
        entries_for(self.budget.is_some(), capacity)
    }

    /// Whether entries of this shard may have deadlines.
    #[inline]
    pub(crate) fn is_timed(&self) -> bool {
        self.wheel.is_some()
    }

    /// A tick at or before which this shard next has expiration work (`u64::MAX`: none).
    #[inline]
    pub(crate) fn next_due(&self) -> u64 {
        self.wheel.as_ref().map_or(u64::MAX, Wheel::next_due)
    }

    /// Gives memory back once the shard holds less than 1/16 of the entries it has room for
    /// (the room then drops to four times the entries, so growing again is amortised): expired
    /// or removed entries must not pin their slots. It copies and rehashes the entries left,
    /// at most 1/16 of the room: about as much work as one expiry batch, paid for by the 15/16
    /// removed. (At 1/4, a shrink of a 125,000-entry shard takes 2 ms.)
    pub(super) fn shrink_if_sparse(&mut self) {
        let (len, room) = (self.slab.len(), self.slab.capacity());
        if room <= MIN_SHRINK_ROOM || len >= room / 16 {
            return;
        }
        let target = (len * 4).max(MIN_SHRINK_ROOM / 2);
        self.slab.shrink_to(target);
        if let Some(w) = &mut self.wheel {
            w.shrink_to(self.slab.capacity());
        }
        let (slab, pending) = (&self.slab, &self.loads.pending);
        self.index
            .shrink_to(target, |&t| index_hash(hash_of(slab, pending, t)));
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

    /// Records a read of `e` (read lock): the entry's access for the policy and, if that
    /// raised its count, a read for the shift detector. A racy increment, not a
    /// read-modify-write: a lost count is harmless. A read of an entry already at its maximum
    /// count stores nothing at all.
    #[inline(always)]
    pub(super) fn hit(&self, e: &Entry<K, V>) {
        if e.touch() {
            let h = self.hits.load(Ordering::Relaxed);
            self.hits.store(h.wrapping_add(1), Ordering::Relaxed);
        }
    }

    /// The read counter, for tests.
    #[cfg(test)]
    pub(crate) fn hits(&self) -> &AtomicU32 {
        &self.hits
    }

    /// Where the first field after the lock word's line lies, for tests.
    #[cfg(test)]
    pub(crate) fn index_address(&self) -> usize {
        &self.index as *const HashTable<Token> as usize
    }

    /// The entry for `key`, if present (expired or not).
    #[inline]
    pub(super) fn lookup<Q>(&self, hash: u32, key: &Q) -> Option<(Token, &Entry<K, V>)>
    where
        Q: ?Sized + Equivalent<K>,
    {
        let slab = &self.slab;
        let mut found = None;
        self.index.find(index_hash(hash), |&t| {
            // A load in flight (`t >= PENDING`) is past the slab's end too.
            let Some(e) = slab.try_get(t) else {
                return false;
            };
            let hit = key.equivalent(&e.key);
            if hit {
                found = Some((t, e));
            }
            hit
        });
        found
    }

    /// Removes entry `t` from the index, its queue, the wheel and the slab, repointing the
    /// entry that moves into its slot. Returns its key and value.
    #[inline]
    pub(super) fn remove_token(&mut self, t: Token) -> (K, V) {
        unindex(&mut self.index, self.slab.get(t).hash, t);
        self.weight -= self.slab.weight(t);
        if let Some(w) = &mut self.wheel {
            w.swap_remove(t);
        }
        let (e, moved) = self.slab.remove(t);
        if let Some((from, moved_hash)) = moved {
            self.repoint(from, t, moved_hash);
        }
        (e.key, e.value)
    }

    /// Repoints the index from token `from` (of hash `hash`) to `to`. The bucket `last_bucket`
    /// names is tried first: after an insert it holds the entry an eviction then moves, which
    /// saves a probe. A token is in one bucket only, so finding `from` there is proof enough.
    #[inline]
    fn repoint(&mut self, from: Token, to: Token, hash: u32) {
        if let Some(slot) = self.index.get_bucket_mut(self.last_bucket) {
            if *slot == from {
                *slot = to;
                return;
            }
        }
        match self.index.find_mut(index_hash(hash), |&x| x == from) {
            Some(slot) => *slot = to,
            None => debug_assert!(false, "moved token {from} missing from the index"),
        }
    }
}

/// Most entries a shard of `capacity` grows its slab to: its capacity plus the one entry that
/// is briefly over the bound during an insert when count-bounded; no bound when weighted.
fn entries_for(weighted: bool, capacity: u64) -> usize {
    if weighted {
        MAX_ENTRIES
    } else {
        usize::try_from(capacity.saturating_add(1))
            .unwrap_or(MAX_ENTRIES)
            .min(MAX_ENTRIES)
    }
}

/// Takes index token `t` (an entry's or an in-flight load's), filed under `hash`, out of the
/// index.
#[inline]
fn unindex(index: &mut HashTable<Token>, hash: u32, t: Token) {
    match index.find_entry(index_hash(hash), |&x| x == t) {
        Ok(o) => {
            o.remove();
        }
        Err(_) => debug_assert!(false, "token {t} missing from the index"),
    }
}

/// The key behind index token `t`: an entry's or an in-flight load's.
#[inline]
fn key_of<'a, K, V>(slab: &'a Slab<K, V>, pending: &'a [Pending<K, V>], t: Token) -> &'a K {
    if t < PENDING {
        &slab.get(t).key
    } else {
        &pending[(t & !PENDING) as usize].key
    }
}

/// The 32-bit hash behind index token `t`.
#[inline]
fn hash_of<K, V>(slab: &Slab<K, V>, pending: &[Pending<K, V>], t: Token) -> u32 {
    if t < PENDING {
        slab.get(t).hash
    } else {
        pending[(t & !PENDING) as usize].hash
    }
}
