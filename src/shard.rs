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
// poison, and the cache stays usable. The same holds for the user's `Expiry`: its hooks run
// before the write they decide, and expired entries are removed at the end of a write.
//
// Expiration: a shard gets a timer wheel (`expiry/wheel.rs`) when its cache has a lifetime
// configured, or on its first `insert_with_ttl`; until then it pays nothing for it. Every write
// ends by expiring what is due, at most `EXPIRE_BUDGET` entries, before evicting for size; reads
// compare the entry's deadline with the clock and never return an expired entry.

use equivalent::Equivalent;
use hashbrown::HashTable;

use crate::clock::Clock;
use crate::expiry::{Deadline, ExpireConfig, Lifetime, MAX_LIFETIME, NO_CAP, Wheel, is_due};
use crate::listener::Panic;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::listener::{RemovalCause, Removed};
use crate::loader::Flight;
use crate::policy::{Policy, SharedWindow};
use crate::slab::{Entry, MAX_ENTRIES, Queue, Slab, Token, deadline_word, storable};

/// Most expired entries (or wheel entries refiled) a single operation handles. Each costs about
/// as much as an eviction, so this bounds the extra latency an operation can pay for expiration
/// (the README's expiration table measures it); a backlog larger than this is worked off over
/// the following operations.
pub(crate) const EXPIRE_BUDGET: u32 = 1024;

/// Shards with room for at most this many entries never shrink: too small to matter.
const MIN_SHRINK_ROOM: usize = 64;

/// What an operation needs to know about time. The clock is read at most once per operation.
pub(crate) struct Timing<'a, K, V> {
    pub(crate) clock: &'a Clock,
    pub(crate) cfg: &'a ExpireConfig<K, V>,
    pub(crate) read: std::cell::Cell<Option<u64>>,
}

impl<K, V> Timing<'_, K, V> {
    /// The current tick, read once per operation.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        match self.read.get() {
            Some(now) => now,
            None => {
                let now = self.clock.now_ticks();
                self.read.set(Some(now));
                now
            }
        }
    }
}

/// The outcome of a read.
pub(crate) enum Read<'a, V> {
    Hit(&'a V),
    /// A hit whose read moved the deadline earlier (or gave the entry one): the caller must
    /// refile it under the write lock (`refile`).
    Refile(&'a V, u64),
    /// A hit whose refresh this reader claimed (loading caches only): it must start it.
    Refresh(&'a V),
    Miss,
    /// The shard's wheel is so far behind the clock that stored deadlines may have wrapped: the
    /// caller must run maintenance under the write lock and read again.
    Stale,
}

/// Index tokens with this bit set are in-flight loads (`pending[token & !PENDING]`), not entries.
/// Entry tokens stay below it (`MAX_ENTRIES`).
pub(crate) const PENDING: Token = 1 << 31;
// A pending token is past the end of every slab, which `lookup` relies on.
const _: () = assert!(MAX_ENTRIES <= PENDING as usize);

/// A load in flight for a key that has no entry: it sits in the index like an entry, so a
/// miss, and the decision to lead or join a load, is one probe under the write lock.
struct Pending<K, V> {
    key: K,
    hash: u32,
    flight: Arc<Flight<V>>,
    /// 0 while the load runs. Otherwise the load failed and, with `cache_errors_for`, its
    /// error is served to callers of the key until this clock tick (a negative entry).
    until: u64,
}

/// What a caller that missed should do.
pub(crate) enum Begin<V> {
    /// The key was there after all (or loaded meanwhile).
    Hit(V),
    /// Wait on a load in flight.
    Join(Arc<Flight<V>>),
    /// A failed load remembered (`cache_errors_for`): its flight holds the outcome.
    Remembered(Arc<Flight<V>>),
    /// Run the loader: a new load was registered.
    Lead(Arc<Flight<V>>),
}

/// The full tick of a stored 32-bit deadline, relative to `now`.
#[inline]
fn widen(d: u32, now: u64) -> u64 {
    now.saturating_add_signed(i64::from(d.wrapping_sub(now as u32) as i32))
}

/// The index hash of a 32-bit key hash. hashbrown takes its 7-bit tag from the top 7 bits and the
/// bucket from the low bits: rotating puts bits 0..7 in the tag and bits 7.. in the bucket
/// number, so the two are independent for any table under 2^25 buckets per shard. One
/// instruction on the lookup path, where a 64-bit multiplication used to be.
#[inline]
pub(crate) fn index_hash(hash: u32) -> u64 {
    u64::from(hash).rotate_right(7)
}

/// The capacity of a weighted cache that no shard holds.
///
/// A weighted cache's `max_capacity` is one bound on the sum of all weights, whatever the shard
/// count: an entry may weigh up to all of it. So a weighted shard's capacity is not a fixed
/// share: it is what the shard has *claimed* from this budget, which starts with all of it.
/// A shard that needs room claims it here before it evicts, and gives back what it holds
/// beyond its weight after every write, so the shards evict only once the cache as a whole is
/// full, as one shard would. The part of a claim above the shard's even share (`base`) is only
/// granted while a sixteenth of the cache is still free: near full, capacity flows back to the
/// shards that gave it up instead of drifting to whichever shards write most. An entry larger
/// than what the shard can claim is made room for by the other shards (`Cache::lend`).
/// Capacity moves under the shards' locks and through this counter, never counted twice: the
/// shards' capacities and `free` sum to at most `total`, so the weights do too.
pub(crate) struct Budget {
    free: AtomicU64,
    total: AtomicU64,
}

impl Budget {
    pub(crate) fn new(total: u64) -> Self {
        Budget {
            free: AtomicU64::new(total),
            total: AtomicU64::new(total),
        }
    }

    /// The cache's `max_capacity`.
    pub(crate) fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Capacity no shard holds.
    pub(crate) fn free(&self) -> u64 {
        self.free.load(Ordering::Relaxed)
    }

    /// Takes up to `want` for a shard `below_base` short of its even share (that part freely;
    /// the rest only down to a sixteenth of the total left free). Returns what was taken.
    fn claim(&self, want: u64, below_base: u64) -> u64 {
        let reserve = self.total() / 16;
        let mut free = self.free.load(Ordering::Relaxed);
        loop {
            let owed = want.min(below_base).min(free);
            let extra = (want - owed).min(free.saturating_sub(owed).saturating_sub(reserve));
            let take = owed + extra;
            if take == 0 {
                return 0;
            }
            match self.free.compare_exchange_weak(
                free,
                free - take,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return take,
                Err(now) => free = now,
            }
        }
    }

    fn give_back(&self, n: u64) {
        self.free.fetch_add(n, Ordering::Relaxed);
    }
}

/// The state behind a shard's lock. Readers write nothing here but entries' access counters.
pub(crate) struct ShardState<K, V> {
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
    /// Loads in flight, indexed by `PENDING | position`.
    pending: Vec<Pending<K, V>>,
    /// Generation of the next load, so a leader can tell its own slot from a newer one.
    next_generation: u64,
    /// Negative entries (failed loads kept with `cache_errors_for`) in the order they were
    /// made, which is the order they end in (one lifetime for all): `(until, generation,
    /// hash)`. A queued one whose slot was since replaced is skipped when it comes up.
    negative: VecDeque<(u64, u64, u32)>,
    /// Background refreshes in flight (loading caches): the keys keep their entries, so the
    /// loads cannot be pending slots in the index. Few at a time; searched linearly.
    refreshing: Vec<Pending<K, V>>,
}

impl<K, V> ShardState<K, V> {
    /// `timed` is `Some((now, capped))` to start with a timer wheel.
    /// `budget`: where a weighted shard claims its capacity (it starts with none).
    pub(crate) fn new(
        capacity: u64,
        budget: Option<Arc<Budget>>,
        initial: usize,
        seed: u64,
        timed: Option<(u64, bool)>,
        window: Arc<SharedWindow>,
    ) -> Self {
        let weighted = budget.is_some();
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
        let wheel = timed.map(|(now, capped)| {
            let mut w = Wheel::new(now, capped);
            w.try_reserve_exact(slab.capacity());
            w
        });
        ShardState {
            index,
            slab,
            policy: Policy::new(capacity, sketch_entries, seed, window),
            weight: 0,
            capacity: if weighted { 0 } else { capacity },
            base: capacity,
            budget,
            shortfall: 0,
            max_entries,
            wheel,
            pending: Vec::new(),
            next_generation: 0,
            negative: VecDeque::new(),
            refreshing: Vec::new(),
        }
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
    /// removed. (At 1/4, as first tried, a shrink of a 125,000-entry shard took 2 ms.)
    fn shrink_if_sparse(&mut self) {
        let (len, room) = (self.slab.len(), self.slab.capacity());
        if room <= MIN_SHRINK_ROOM || len >= room / 16 {
            return;
        }
        let target = (len * 4).max(MIN_SHRINK_ROOM / 2);
        self.slab.shrink_to(target);
        if let Some(w) = &mut self.wheel {
            w.shrink_to(self.slab.capacity());
        }
        let (slab, pending) = (&self.slab, &self.pending);
        self.index
            .shrink_to(target, |&t| index_hash(hash_of(slab, pending, t)));
    }

    /// Whether entry `t` has a deadline that has passed at `now`.
    #[inline]
    fn expired_at(&self, t: Token, now: u64) -> bool {
        self.wheel.is_some() && self.slab.get(t).deadline().is_some_and(|d| is_due(d, now))
    }

    /// The remaining lifetime of `t` at `now`: `None` without a deadline.
    fn remaining(&self, t: Token, now: u64) -> Option<u64> {
        self.wheel.as_ref()?;
        self.slab
            .get(t)
            .deadline()
            .map(|d| widen(d, now).saturating_sub(now))
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

    /// The heaviest entry this shard may store: the cache's whole capacity when weighted.
    #[inline]
    fn limit(&self) -> u64 {
        self.budget.as_ref().map_or(self.capacity, |b| b.total())
    }

    /// After a write: a weighted shard gives back the capacity it holds beyond its weight.
    #[inline]
    pub(crate) fn give_back_spare(&mut self) {
        if let Some(b) = &self.budget {
            if self.capacity > self.weight {
                b.give_back(self.capacity - self.weight);
                self.capacity = self.weight;
            }
        }
    }

    /// The room the last insert still needs from the other shards (cleared by reading it, in
    /// the insert's critical section: until then the shard evicts nothing).
    pub(crate) fn take_shortfall(&mut self) -> u64 {
        std::mem::take(&mut self.shortfall)
    }

    /// Lends up to `want` of this shard's capacity to another shard, evicting what no longer
    /// fits (to `removed`). Returns what was lent.
    pub(crate) fn lend(&mut self, want: u64, now: u64, removed: &mut Removed<K, V>) -> u64 {
        let lent = want.min(self.capacity);
        self.capacity -= lent;
        self.policy.fill_main(&mut self.slab);
        self.evict_to_capacity(now, removed);
        lent
    }

    /// Receives capacity lent by other shards for the shortfall of an insert, then evicts
    /// what still does not fit.
    pub(crate) fn receive(&mut self, lent: u64, now: u64, removed: &mut Removed<K, V>) {
        self.capacity += lent;
        self.policy.fill_main(&mut self.slab);
        self.evict_to_capacity(now, removed);
    }

    /// The entry for `key`, if present (expired or not).
    #[inline]
    fn lookup<Q>(&self, hash: u32, key: &Q) -> Option<(Token, &Entry<K, V>)>
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

    /// Looks up `key`, records the access and, with time-to-idle or an `Expiry`, moves the
    /// deadline (read lock).
    ///
    /// `refresh` is for reads of a loading cache: whether an entry with this many ticks left
    /// should be refreshed now (`refresh.rs`). Inlined into `Cache::read_timed` (as a call it
    /// returned `Read` through memory: 40 more instructions per hit).
    #[inline(always)]
    pub(crate) fn get<Q>(
        &self,
        hash: u32,
        key: &Q,
        clock: &Clock,
        cfg: &ExpireConfig<K, V>,
        refresh: Option<&dyn Fn(u64) -> bool>,
    ) -> Read<'_, V>
    where
        Q: ?Sized + Equivalent<K>,
    {
        let Some((t, e)) = self.lookup(hash, key) else {
            return Read::Miss;
        };
        if let Some(w) = &self.wheel {
            match e.deadline() {
                Some(d) => {
                    let now = clock.now_ticks();
                    if w.lagging(now) {
                        return Read::Stale;
                    }
                    if is_due(d, now) {
                        return Read::Miss;
                    }
                    if let Some(due) = refresh {
                        let left = widen(d, now) - now;
                        if !e.refresh_claimed() && due(left) && e.claim_refresh() {
                            e.touch();
                            return Read::Refresh(&e.value);
                        }
                    }
                    // Fast path for plain time-to-idle: within one tick the deadline is
                    // already where this read would put it, and nothing else needs loading.
                    let unchanged = cfg.expiry.is_none()
                        && cfg.tti.is_none_or(|tti| deadline_word(now + tti) == d);
                    if !unchanged {
                        let current = widen(d, now);
                        let cap = match w.capped().then(|| w.cap(t)) {
                            Some(c) if c != NO_CAP => widen(c, now),
                            _ => now + MAX_LIFETIME,
                        };
                        if let Some(when) = cfg.on_read(&e.key, &e.value, now, Some(current), cap) {
                            if when < current {
                                // Earlier: the entry must be refiled, under the write lock.
                                e.touch();
                                return Read::Refile(&e.value, when.max(now));
                            }
                            e.touch_deadline(when);
                        }
                    }
                }
                None if cfg.expiry.is_some() => {
                    // The read hook may give an entry without a deadline one.
                    let now = clock.now_ticks();
                    let cap = now + MAX_LIFETIME;
                    if let Some(when) = cfg.on_read(&e.key, &e.value, now, None, cap) {
                        e.touch();
                        return Read::Refile(&e.value, when.max(now));
                    }
                }
                None => {}
            }
        }
        e.touch();
        Read::Hit(&e.value)
    }

    /// `get` of a cache whose only expiration is a time-to-live (no time-to-idle, no
    /// `Expiry`, no refresh): a hit moves no deadline, so it only checks one and records the
    /// access. `Miss` if absent or expired at `now`; `Stale` (the caller takes the full `get`)
    /// if the wheel is too far behind to read deadlines.
    #[inline(always)]
    pub(crate) fn get_ttl<Q>(&self, hash: u32, key: &Q, now: u64) -> Read<'_, V>
    where
        Q: ?Sized + Equivalent<K>,
    {
        let Some((_, e)) = self.lookup(hash, key) else {
            return Read::Miss;
        };
        if let (Some(w), Some(d)) = (&self.wheel, e.deadline()) {
            if w.lagging(now) {
                return Read::Stale;
            }
            if is_due(d, now) {
                return Read::Miss;
            }
        }
        e.touch();
        Read::Hit(&e.value)
    }

    /// `get` of a cache without expiration: a hit only records the access. An entry with a
    /// deadline is not returned (`Cache::read_plain` says why it may meet one).
    #[inline(always)]
    pub(crate) fn get_untimed<Q>(&self, hash: u32, key: &Q) -> Option<&V>
    where
        Q: ?Sized + Equivalent<K>,
    {
        let (_, e) = self.lookup(hash, key)?;
        if e.deadline().is_some() {
            return None;
        }
        e.touch();
        Some(&e.value)
    }

    /// Files the entry for `key` to expire at `when`, after a read moved its deadline earlier
    /// or gave it one (write lock). Does nothing if the entry left or expired meanwhile.
    pub(crate) fn refile<Q>(&mut self, hash: u32, key: &Q, when: u64, now: u64)
    where
        Q: ?Sized + Equivalent<K>,
    {
        let Some((t, _)) = self.lookup(hash, key) else {
            return;
        };
        if self.wheel.as_ref().is_none_or(|w| w.lagging(now)) || self.expired_at(t, now) {
            return;
        }
        if let Some(w) = &mut self.wheel {
            let e = self.slab.get_mut(t);
            let when = match e.deadline() {
                Some(d) => when.min(widen(d, now)),
                None => when,
            };
            let when = storable(when);
            e.set_deadline(Some(when));
            w.refile(t, when);
        }
    }

    /// Looks up `key` without recording an access or moving its deadline.
    #[inline]
    pub(crate) fn peek<Q>(&self, hash: u32, key: &Q, clock: &Clock) -> Read<'_, V>
    where
        Q: ?Sized + Equivalent<K>,
    {
        let Some((_, e)) = self.lookup(hash, key) else {
            return Read::Miss;
        };
        if let Some(w) = &self.wheel {
            if let Some(d) = e.deadline() {
                let now = clock.now_ticks();
                if w.lagging(now) {
                    return Read::Stale;
                }
                if is_due(d, now) {
                    return Read::Miss;
                }
            }
        }
        Read::Hit(&e.value)
    }

    /// Inserts or replaces. Returns the replaced value (and records the caller's key in
    /// `removed` for its notification); entries evicted or expired to make room, and an entry
    /// too heavy to store or already expired, go to `removed`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert(
        &mut self,
        hash: u32,
        key: K,
        value: V,
        weight: u32,
        life: Lifetime,
        time: &Timing<'_, K, V>,
        removed: &mut Removed<K, V>,
    ) -> Option<V>
    where
        K: Eq,
    {
        // Weight 0 is counted as 1 (documented on `weigher`), so the bound also bounds entries.
        let w = weight.max(1);
        let timed =
            self.wheel.is_some() || time.cfg.is_active() || matches!(life, Lifetime::Fixed(_));
        let now = if timed { time.now() } else { 0 };
        self.catch_up(now, &mut |k, v| removed.push(k, v, RemovalCause::Expired));
        self.cancel_refresh(&key);
        if self.slab.len() >= MAX_ENTRIES {
            // Tokens are `u32`: only reachable for weighted shards with billions of light entries.
            if let Some(v) = self.policy.victim(&mut self.slab) {
                self.evict_token(v, now, removed);
            }
        }
        let limit = self.limit();
        // One probe finds the key or the slot for it. User `Eq` runs here, before any change.
        let found = loop {
            let (slab, pending) = (&self.slab, &self.pending);
            let t = match self.index.entry(
                index_hash(hash),
                |&t| key_of(slab, pending, t) == &key,
                |&t| index_hash(hash_of(slab, pending, t)),
            ) {
                hashbrown::hash_table::Entry::Occupied(o) => *o.get(),
                hashbrown::hash_table::Entry::Vacant(v) => {
                    let deadline = if timed {
                        match decide(time.cfg, || {
                            time.cfg.on_write(&key, &value, hash, now, life, None)
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
                    if deadline.is_some_and(|d| d.when <= now) {
                        removed.push(key, value, RemovalCause::Expired);
                        return None;
                    }
                    if u64::from(w) > limit {
                        removed.push(key, value, RemovalCause::Evicted);
                        return None;
                    }
                    self.slab.reserve(1, self.max_entries);
                    let t = self.slab.push(key, value, hash, w, Queue::Window);
                    v.insert(t);
                    self.weight += u64::from(w);
                    self.push_timer(t, deadline, now, time.cfg);
                    self.policy.on_insert(hash, w, self.slab.len());
                    self.expire(now, EXPIRE_BUDGET, removed);
                    self.evict(now, w, removed);
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
            let e = self.remove_token(t);
            removed.push(e.key, e.value, RemovalCause::Expired);
        };
        let deadline = if timed {
            // The user's `Expiry` may panic here: nothing has changed for this key yet.
            let current = self.remaining(found, now);
            match decide(time.cfg, || {
                time.cfg
                    .on_write(&key, &value, hash, now, life, Some(current))
            }) {
                Ok(d) => d,
                Err(p) => {
                    removed.set_panic(p);
                    self.expire(now, EXPIRE_BUDGET, removed);
                    self.evict(now, 0, removed);
                    return None;
                }
            }
        } else {
            None
        };
        let old = self.replace(found, key, value, w, deadline, now, time.cfg, removed);
        // An update adds no entry: the policy's queues are as the last insert left them, so
        // only a heavier value can call for an eviction (skipping `fill_main` then).
        self.expire(now, EXPIRE_BUDGET, removed);
        if self.weight > self.capacity {
            self.evict(now, w, removed);
        }
        old
    }

    /// Replaces the value of entry `t`; `insert` decided its new deadline.
    #[allow(clippy::too_many_arguments)]
    fn replace(
        &mut self,
        t: Token,
        key: K,
        value: V,
        w: u32,
        deadline: Option<Deadline>,
        now: u64,
        cfg: &ExpireConfig<K, V>,
        removed: &mut Removed<K, V>,
    ) -> Option<V> {
        if u64::from(w) > self.limit() || deadline.is_some_and(|d| d.when <= now) {
            // Too heavy to keep, or expired at once: the old value must not survive either. It
            // was replaced; the new one leaves at once.
            let cause = if u64::from(w) > self.limit() {
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
        self.set_deadline(t, deadline, now, cfg);
        // The caller's key (equal to the stored one) goes with the replaced value's notification.
        removed.push_returned(key, RemovalCause::Replaced);
        Some(old)
    }

    /// The wheel, created on the first deadline with a timer for each existing entry.
    fn wheel_for(&mut self, now: u64, cfg: &ExpireConfig<K, V>) -> &mut Wheel {
        let (len, room) = (self.slab.len(), self.slab.capacity());
        self.wheel.get_or_insert_with(|| {
            let mut w = Wheel::new(now, cfg.caps_upfront());
            w.reserve_exact(room);
            for _ in 0..len {
                w.push(room);
            }
            w
        })
    }

    /// Adds the timer of entry `t`, just pushed to the slab.
    #[inline]
    fn push_timer(
        &mut self,
        t: Token,
        deadline: Option<Deadline>,
        now: u64,
        cfg: &ExpireConfig<K, V>,
    ) {
        let room = self.slab.capacity();
        match (&mut self.wheel, deadline) {
            (None, None) => {}
            (Some(w), None) => w.push(room),
            (Some(w), Some(d)) => file(w, &mut self.slab, t, d, cfg, Some(room)),
            (None, Some(d)) => {
                // Created with a timer for every entry, `t` included.
                self.wheel_for(now, cfg);
                if let Some(w) = &mut self.wheel {
                    file(w, &mut self.slab, t, d, cfg, None);
                }
            }
        }
    }

    /// Sets or clears the deadline of an existing entry.
    fn set_deadline(
        &mut self,
        t: Token,
        deadline: Option<Deadline>,
        now: u64,
        cfg: &ExpireConfig<K, V>,
    ) {
        match deadline {
            Some(d) => {
                // Created if need be; `file` also borrows the slab, hence the second look.
                self.wheel_for(now, cfg);
                if let Some(w) = &mut self.wheel {
                    file(w, &mut self.slab, t, d, cfg, None);
                }
            }
            None => {
                if let Some(w) = &mut self.wheel {
                    w.unschedule(t);
                    self.slab.get_mut(t).set_deadline(None);
                }
            }
        }
    }

    /// Removes up to `budget` entries whose deadline has passed at `now`. A wheel that has
    /// fallen more than `MAX_LAG` behind is brought up to date whatever the budget, so stored
    /// 32-bit deadlines never become ambiguous.
    #[inline]
    pub(crate) fn expire(&mut self, now: u64, budget: u32, removed: &mut Removed<K, V>) {
        // Nothing due (the common case on a write): one comparison.
        if self.wheel.as_mut().is_none_or(|w| w.idle_until(now)) {
            return;
        }
        self.expire_with(now, budget, &mut |k, v| {
            removed.push(k, v, RemovalCause::Expired)
        });
    }

    fn expire_with(&mut self, now: u64, budget: u32, sink: &mut dyn FnMut(K, V)) {
        let Some(w) = &self.wheel else { return };
        let unbounded = w.lagging(now);
        let mut budget = if unbounded { u32::MAX } else { budget };
        let mut any = false;
        while let Some(t) = {
            let slab = &self.slab;
            let deadline = |t| {
                slab.get(t)
                    .deadline
                    .load(std::sync::atomic::Ordering::Relaxed)
            };
            self.wheel
                .as_mut()
                .and_then(|w| w.pop_expired(now, &mut budget, deadline))
        } {
            let e = self.remove_token(t);
            sink(e.key, e.value);
            any = true;
            if unbounded {
                budget = u32::MAX;
            }
        }
        if any {
            self.shrink_if_sparse();
        }
    }

    /// Before comparing any deadline in a write: a wheel more than `MAX_LAG` behind (a shard
    /// idle for days) is brought up to date, all due entries going to `sink`.
    #[inline]
    fn catch_up(&mut self, now: u64, sink: &mut dyn FnMut(K, V)) {
        if self.wheel.as_ref().is_some_and(|w| w.lagging(now)) {
            self.expire_with(now, u32::MAX, sink);
        }
    }

    /// Whether deadlines cannot be compared at `now` before catching up (see `catch_up`).
    #[inline]
    pub(crate) fn lagging(&self, now: u64) -> bool {
        self.wheel.as_ref().is_some_and(|w| w.lagging(now))
    }

    /// Removes `t` for the policy: an entry past its deadline is reported as expired.
    #[inline]
    fn evict_token(&mut self, t: Token, now: u64, removed: &mut Removed<K, V>) {
        let cause = if self.expired_at(t, now) {
            RemovalCause::Expired
        } else {
            RemovalCause::Evicted
        };
        let e = self.remove_token(t);
        removed.push(e.key, e.value, cause);
    }

    /// After an insert of weight `written` (0: none): makes room. A weighted shard first claims
    /// what it lacks from the budget; if the entry just written is larger than all this shard
    /// can hold, it evicts nothing and leaves the rest to the other shards (`shortfall`).
    #[inline]
    fn evict(&mut self, now: u64, written: u32, removed: &mut Removed<K, V>) {
        self.policy.fill_main(&mut self.slab);
        if self.weight > self.capacity && self.budget.is_some() {
            self.claim(written);
            if self.shortfall > 0 {
                return;
            }
        }
        self.evict_to_capacity(now, removed);
    }

    /// Claims from the budget the capacity this shard lacks (`weight - capacity`); records a
    /// shortfall if an entry of weight `written` still does not fit.
    #[cold]
    fn claim(&mut self, written: u32) {
        let Some(b) = &self.budget else { return };
        let lacking = self.weight - self.capacity;
        let below_base = self.base.saturating_sub(self.capacity);
        // An entry larger than the shard could otherwise hold takes all the free capacity.
        let large = u64::from(written) > self.capacity + below_base;
        let claimed = b.claim(lacking, if large { lacking } else { below_base });
        self.capacity += claimed;
        if large && u64::from(written) > self.capacity {
            self.shortfall = self.weight - self.capacity;
        }
    }

    /// Evicts, by the policy, until the weight is within the capacity.
    fn evict_to_capacity(&mut self, now: u64, removed: &mut Removed<K, V>) {
        while self.weight > self.capacity {
            let Some(v) = self.policy.victim(&mut self.slab) else {
                debug_assert!(false, "over capacity with no entry to evict");
                break;
            };
            self.evict_token(v, now, removed);
        }
    }

    /// Removes `key`, returning its entry and whether it had already expired at `now` (its
    /// value is then no longer the caller's to see).
    pub(crate) fn remove<Q>(
        &mut self,
        hash: u32,
        key: &Q,
        clock: &Clock,
        removed: &mut Removed<K, V>,
    ) -> Option<(K, V, bool)>
    where
        Q: ?Sized + Equivalent<K>,
    {
        let now = if self.wheel.is_some() {
            clock.now_ticks()
        } else {
            0
        };
        self.catch_up(now, &mut |k, v| removed.push(k, v, RemovalCause::Expired));
        self.cancel_refresh(key);
        let (slab, pending) = (&self.slab, &self.pending);
        let t = *self.index.find(index_hash(hash), |&t| {
            key.equivalent(key_of(slab, pending, t))
        })?;
        if t >= PENDING {
            // A load in flight: cancel its result, so it cannot undo this removal.
            self.remove_pending(t);
            return None;
        }
        let expired = self.expired_at(t, now);
        let e = self.remove_token(t);
        self.shrink_if_sparse();
        Some((e.key, e.value, expired))
    }

    /// Removes entry `t` from the index, its queue, the wheel and the slab, repointing the
    /// entry that moves into its slot.
    #[inline]
    fn remove_token(&mut self, t: Token) -> Entry<K, V> {
        let hash = self.slab.get(t).hash;
        if let Ok(o) = self.index.find_entry(index_hash(hash), |&x| x == t) {
            o.remove();
        } else {
            debug_assert!(false, "token {t} missing from the index");
        }
        self.weight -= self.slab.weight(t);
        if let Some(w) = &mut self.wheel {
            w.swap_remove(t);
        }
        let (e, moved) = self.slab.remove(t);
        if let Some((from, moved_hash)) = moved {
            match self.index.find_mut(index_hash(moved_hash), |&x| x == from) {
                Some(slot) => *slot = t,
                None => debug_assert!(false, "moved token {from} missing from the index"),
            }
        }
        e
    }

    /// After a miss: finds the entry (a hit after all), joins the load in flight, or registers
    /// a new load for the caller to lead. An expired entry is removed on the way (to `removed`).
    pub(crate) fn begin_load(
        &mut self,
        hash: u32,
        key: &K,
        now: u64,
        removed: &mut Removed<K, V>,
    ) -> Begin<V>
    where
        K: Eq + Clone,
        V: Clone,
    {
        self.catch_up(now, &mut |k, v| removed.push(k, v, RemovalCause::Expired));
        self.purge_negative(now);
        loop {
            let (slab, pending) = (&self.slab, &self.pending);
            let t = match self.index.entry(
                index_hash(hash),
                |&t| key_of(slab, pending, t) == key,
                |&t| index_hash(hash_of(slab, pending, t)),
            ) {
                hashbrown::hash_table::Entry::Occupied(o) => *o.get(),
                hashbrown::hash_table::Entry::Vacant(v) => {
                    // The entry expired (or left) while its refresh runs: wait for that load.
                    if let Some(r) = self.refreshing.iter().find(|r| &r.key == key) {
                        return Begin::Join(Arc::clone(&r.flight));
                    }
                    // Cloned first: a panicking `Clone` must leave nothing half-registered.
                    let key = key.clone();
                    let generation = self.next_generation;
                    self.next_generation += 1;
                    let flight = Arc::new(Flight::new(generation));
                    v.insert(PENDING | self.pending.len() as Token);
                    self.pending.push(Pending {
                        key,
                        hash,
                        flight: Arc::clone(&flight),
                        until: 0,
                    });
                    return Begin::Lead(flight);
                }
            };
            if t >= PENDING {
                let p = &self.pending[(t & !PENDING) as usize];
                // A negative entry that has run its time, or the slot of a load that ended
                // without removing it (its flight settled, not kept as a negative entry):
                // joining it would only send the caller round again.
                let stale = if p.until != 0 {
                    p.until <= now
                } else {
                    p.flight.is_settled()
                };
                if stale {
                    self.remove_pending(t);
                    continue;
                }
                let flight = Arc::clone(&p.flight);
                return if p.until != 0 {
                    Begin::Remembered(flight)
                } else {
                    Begin::Join(flight)
                };
            }
            if !self.expired_at(t, now) {
                let e = self.slab.get(t);
                e.touch();
                return Begin::Hit(e.value.clone());
            }
            let e = self.remove_token(t);
            removed.push(e.key, e.value, RemovalCause::Expired);
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
    fn pending_slot(&self, hash: u32, key: &K) -> Option<Token>
    where
        K: Eq,
    {
        let pending = &self.pending;
        let found = self.index.find(index_hash(hash), |&t| {
            t >= PENDING && &pending[(t & !PENDING) as usize].key == key
        });
        found.copied()
    }

    /// The pending slot of the load of `generation`, if it is still in the index. Generations
    /// are unique in a shard, so the key is never compared.
    fn load_slot(&self, hash: u32, generation: u64) -> Option<Token> {
        let pending = &self.pending;
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
        if self.refreshing.iter().any(|r| key.equivalent(&r.key)) {
            return None;
        }
        let key = clone_key(&e.key);
        let generation = self.next_generation;
        self.next_generation += 1;
        let flight = Arc::new(Flight::new(generation));
        self.refreshing.push(Pending {
            key: clone_key(&key),
            hash,
            flight: Arc::clone(&flight),
            until: 0,
        });
        Some((key, flight))
    }

    /// Ends the refresh of `generation`: `true` if it is still current (no write or removal
    /// of the key superseded it), and then its result may be stored.
    pub(crate) fn end_refresh(&mut self, generation: u64) -> bool {
        match self
            .refreshing
            .iter()
            .position(|r| r.flight.generation == generation)
        {
            Some(i) => {
                self.refreshing.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// A write or removal of `key` supersedes its refresh in flight, if any: the refreshed
    /// value will not be stored over it.
    #[inline]
    fn cancel_refresh<Q>(&mut self, key: &Q)
    where
        Q: ?Sized + Equivalent<K>,
    {
        if !self.refreshing.is_empty() {
            self.refreshing.retain(|r| !key.equivalent(&r.key));
        }
    }

    /// For `compute`: the live value of `key` (`Ok(None)`: absent or expired), or the load in
    /// flight for it, which `compute` waits for.
    pub(crate) fn probe(&self, hash: u32, key: &K, now: u64) -> Result<Option<&V>, Arc<Flight<V>>>
    where
        K: Eq,
    {
        let (slab, pending) = (&self.slab, &self.pending);
        let Some(&t) = self
            .index
            .find(index_hash(hash), |&t| key_of(slab, pending, t) == key)
        else {
            return Ok(None);
        };
        if t >= PENDING {
            let p = &self.pending[(t & !PENDING) as usize];
            // A negative entry (a failed load kept) holds no value.
            return if p.until == 0 {
                Err(Arc::clone(&p.flight))
            } else {
                Ok(None)
            };
        }
        Ok((!self.expired_at(t, now)).then(|| &self.slab.get(t).value))
    }

    /// The load of `generation` for `key` failed: keep its slot, with its settled flight, as
    /// a negative entry until tick `until`, so callers get its error without loading again.
    /// Returns `false` (and keeps nothing) if the slot was superseded meanwhile.
    pub(crate) fn keep_failed(&mut self, hash: u32, generation: u64, until: u64) -> bool {
        let Some(t) = self.load_slot(hash, generation) else {
            return false;
        };
        self.pending[(t & !PENDING) as usize].until = until;
        self.negative.push_back((until, generation, hash));
        true
    }

    /// Drops negative entries whose time has come (a bounded amount of work per call: each
    /// entry is queued once).
    fn purge_negative(&mut self, now: u64) {
        while let Some(&(until, generation, hash)) = self.negative.front() {
            if until > now {
                return;
            }
            self.negative.pop_front();
            if let Some(t) = self.load_slot(hash, generation) {
                self.remove_pending(t);
            }
        }
        if self.negative.is_empty() && self.negative.capacity() > 64 {
            self.negative = VecDeque::new();
        }
    }

    /// Loads in flight in this shard, background refreshes included (negative entries are
    /// not loads).
    pub(crate) fn loads_in_flight(&self) -> usize {
        self.pending.iter().filter(|p| p.until == 0).count() + self.refreshing.len()
    }

    /// How many callers wait on the load in flight for `key` (`None`: no load in flight).
    pub(crate) fn waiting(&self, hash: u32, key: &K) -> Option<usize>
    where
        K: Eq,
    {
        let t = self.pending_slot(hash, key)?;
        let p = &self.pending[(t & !PENDING) as usize];
        // A negative entry is a finished load, not one in flight.
        (p.until == 0).then(|| p.flight.waiting())
    }

    /// Drops every pending slot: loads in flight (their leaders will not store their values)
    /// and negative entries.
    fn supersede_loads(&mut self) {
        for (i, p) in self.pending.iter().enumerate() {
            let t = PENDING | i as Token;
            if let Ok(o) = self.index.find_entry(index_hash(p.hash), |&x| x == t) {
                o.remove();
            } else {
                debug_assert!(false, "load {i} missing from the index");
            }
        }
        self.pending.clear();
        self.negative.clear();
    }

    /// Removes the pending slot of index token `t` (`PENDING | position`).
    fn remove_pending(&mut self, t: Token) {
        let i = (t & !PENDING) as usize;
        let hash = self.pending[i].hash;
        if let Ok(o) = self.index.find_entry(index_hash(hash), |&x| x == t) {
            o.remove();
        } else {
            debug_assert!(false, "load {i} missing from the index");
        }
        self.pending.swap_remove(i);
        if let Some(moved) = self.pending.get(i) {
            let from = PENDING | self.pending.len() as Token;
            match self.index.find_mut(index_hash(moved.hash), |&x| x == from) {
                Some(slot) => *slot = t,
                None => debug_assert!(false, "moved load missing from the index"),
            }
        }
    }

    /// Keeps the entries for which `keep` returns true. Removed entries go to `removed`;
    /// entries already expired at `now` are removed as such without asking `keep`. If `keep`
    /// panics, the entries already visited are settled and the rest are kept.
    ///
    /// Every load in flight is superseded first (its value will not be stored), and negative
    /// entries are dropped: a load has no value for `keep` to judge yet, and it may have read
    /// what the caller is about to filter out.
    pub(crate) fn retain<F>(
        &mut self,
        keep: &mut F,
        now: u64,
        removed: &mut Vec<(K, V, RemovalCause)>,
    ) where
        K: Eq,
        F: FnMut(&K, &V) -> bool,
    {
        self.catch_up(now, &mut |k, v| removed.push((k, v, RemovalCause::Expired)));
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
            let e = self.remove_token(t);
            removed.push((e.key, e.value, cause));
        }
        // A refresh of a removed key must not bring it back.
        if !self.refreshing.is_empty() {
            let live: Vec<bool> = (self.refreshing.iter())
                .map(|r| self.lookup(r.hash, &r.key).is_some())
                .collect();
            let mut live = live.into_iter();
            self.refreshing.retain(|_| live.next().unwrap_or(false));
        }
        self.shrink_if_sparse();
    }

    /// Removes every entry, returning them with their cause (expired at `now`, or explicit),
    /// to be reported and dropped outside the lock.
    pub(crate) fn clear(&mut self, now: u64) -> Vec<(K, V, RemovalCause)> {
        let mut expired = Vec::new();
        self.catch_up(now, &mut |k, v| expired.push((k, v, RemovalCause::Expired)));
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
        self.pending.clear();
        self.negative.clear();
        self.refreshing.clear();
        self.weight = 0;
        if let Some(w) = &mut self.wheel {
            w.clear();
        }
        expired.extend(
            self.slab
                .take_all()
                .into_iter()
                .zip(causes)
                .map(|(e, cause)| (e.key, e.value, cause)),
        );
        expired
    }

    /// The entries not expired at `now`.
    pub(crate) fn live_entries(&self, now: u64) -> impl Iterator<Item = &Entry<K, V>> {
        self.slab
            .entries()
            .iter()
            .enumerate()
            .filter(move |&(t, _)| !self.expired_at(t as Token, now))
            .map(|(_, e)| e)
    }

    /// Recounts every invariant: queue links and weights, index <-> slab agreement, the bound.
    pub(crate) fn validate(&self) -> Result<(), String>
    where
        K: Eq,
    {
        self.slab.validate()?;
        if let Some(w) = &self.wheel {
            let slab = &self.slab;
            w.validate(slab.len(), |t| slab.get(t).deadline().is_some())
                .map_err(|e| format!("wheel: {e}"))?;
        }
        if self.index.len() != self.slab.len() + self.pending.len() {
            return Err(format!(
                "index holds {} tokens, slab {} entries and {} loads",
                self.index.len(),
                self.slab.len(),
                self.pending.len()
            ));
        }
        for (i, p) in self.pending.iter().enumerate() {
            let t = PENDING | i as Token;
            if self.index.find(index_hash(p.hash), |&x| x == t).is_none() {
                return Err(format!("load {i} is not indexed under its hash"));
            }
            // A load removes its slot before it settles; only negative entries outlive that.
            if p.until == 0 && p.flight.is_settled() {
                return Err(format!("load {i} has ended but its slot is still indexed"));
            }
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
            let found = self.index.find(index_hash(e.hash), |&x| {
                key_of(&self.slab, &self.pending, x) == &e.key
            });
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

/// Files entry `t` in `w` at its write's deadline `d` (as the deadline takes effect, see
/// `storable`), and stores the matching deadline word in the entry. `fresh` is `Some(room)`
/// (the slab's capacity) for an entry the slab just pushed, which has no timer yet: it gets
/// one, filed (`Wheel::push_filed`). On every insert of an expiring cache: always inlined (a
/// call costs a fifth of the filing).
#[inline(always)]
fn file<K, V>(
    w: &mut Wheel,
    slab: &mut Slab<K, V>,
    t: Token,
    d: Deadline,
    cfg: &ExpireConfig<K, V>,
    fresh: Option<usize>,
) {
    if d.cap.is_some() && cfg.reads_extend() {
        w.enable_caps();
    }
    let when = storable(d.when);
    match fresh {
        Some(room) => w.push_filed(room, t, when, d.cap),
        None => match slab.get(t).deadline() {
            // Not earlier than the deadline it is filed by (an update, with a time-to-live): it
            // stays in its bucket and is filed again when that bucket comes up, as after a
            // time-to-idle read. The unlink and link would touch neighbours at random places in
            // memory (callgrind, update with a TTL: 569 -> 478 instructions, no L1 write misses
            // left of 1.8).
            Some(old) if is_due(old, when) => w.set_cap(t, d.cap),
            _ => w.schedule(t, when, d.cap),
        },
    }
    slab.get_mut(t).set_deadline(Some(when));
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
