//! Entries of one shard, stored densely in a `Vec` and addressed by `u32` tokens, with the
//! intrusive lists the policy links them into. It knows nothing of the index, the policy's
//! decisions, expiration or the cache.

// Entries of one shard, stored densely in a `Vec` and addressed by `u32` tokens.
//
// Design notes
// - Tokens, not pointers: every list (the policy's queues, the timer wheel's buckets) links
//   entries by token. No `unsafe` and no per-entry allocation. The policy links are stored in
//   24 bits each (`Link`), which caps a shard at about 16.7 million entries (`MAX_ENTRIES`) and
//   frees the 4 bytes an entry needs for its deadline: an expiring cache reads an entry's
//   deadline from the cache line it already loaded for the key, and a 32-byte `u64 -> u64`
//   entry stays 32 bytes with or without expiration.
// - The vector is kept dense: removing an entry moves the last entry into the hole
//   (`swap_remove`). The moved entry's token changes, so the caller must repoint whatever refers to
//   it (the index, via `Slab::remove`'s return value). Being dense means no free list, no
//   `Option` around the key and value, and `len()` is exact. An insert into a full shard gives
//   the new entry its victim's slot instead (`Slab::reuse`): under eviction no entry moves.
// - Per-entry policy state that readers update lives in one `AtomicU8` (`access`), so a hit can
//   record itself under the shard's *read* lock. Everything else changes under the write lock.
// - Weights are stored in a parallel vector only when the cache has a weigher, so a count-bounded
//   cache pays nothing for them.

use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};

/// Index of an entry in its shard's slab.
pub(crate) type Token = u32;

/// Bits of a stored link.
const LINK_BITS: u32 = 24;

/// The "no entry" token that ends a list: the largest value a 24-bit link holds.
pub(crate) const NIL: Token = (1 << LINK_BITS) - 1;

/// Largest number of entries a shard can hold: links are 24 bits, and the top values of that
/// range are markers (`NIL`, the timer wheel's bucket tags). A shard that reaches it evicts
/// before it inserts, so a cache holds at most `shards * MAX_ENTRIES` entries whatever its
/// capacity; the builder picks enough shards for a count-bounded capacity.
pub(crate) const MAX_ENTRIES: usize = (1 << LINK_BITS) - 512;

/// A token stored in 24 bits (little-endian), so that two links, the access counter and the
/// queue tag fit in 8 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Link([u8; 3]);

impl Link {
    pub(crate) const NIL: Link = Link::new(NIL);

    /// Stores `t`, which must be at most `NIL` (every token and marker is).
    #[inline]
    pub(crate) const fn new(t: Token) -> Link {
        debug_assert!(t <= NIL);
        let [a, b, c, _] = t.to_le_bytes();
        Link([a, b, c])
    }

    #[inline]
    pub(crate) const fn get(self) -> Token {
        let [a, b, c] = self.0;
        u32::from_le_bytes([a, b, c, 0])
    }
}

/// The deadline word of an entry that has none (see `Entry::deadline`).
pub(crate) const NO_DEADLINE: u32 = u32::MAX;

/// The tick a deadline at `tick` really takes effect: `tick`, except that a deadline whose low
/// 32 bits are `NO_DEADLINE` takes effect one tick earlier (1 ms early, once in 2^32 ticks,
/// rather than never). The wheel files entries by it, so that removal, `len` and reads agree.
#[inline]
pub(crate) fn storable(tick: u64) -> u64 {
    if tick as u32 == NO_DEADLINE {
        tick - 1
    } else {
        tick
    }
}

/// The deadline word for a deadline at `tick`: the low 32 bits of `storable(tick)`.
#[inline]
pub(crate) fn deadline_word(tick: u64) -> u32 {
    storable(tick) as u32
}

/// Which policy queue an entry is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Queue {
    Window = 0,
    Probation = 1,
    Protected = 2,
}

/// The most accesses an entry accumulates between two visits of the policy.
///
/// Reads increment the counter until it reaches this value and then only load it, so a hot entry's
/// cache line stops being written by readers. 15 is the largest value a frequency-sketch counter
/// holds, so nothing is lost when the counter is folded into the sketch.
pub(crate) const MAX_ACCESS: u8 = 15;

/// The bits of `access` that count accesses: the high four, so that "below the maximum" is
/// one unsigned comparison of the whole byte (`touch`: 2 instructions fewer per hit than
/// masking the low four).
const ACCESS_COUNT: u8 = 0xf0;

/// One access, in `access`.
const ACCESS_ONE: u8 = 0x10;
const _: () = assert!(ACCESS_COUNT == MAX_ACCESS * ACCESS_ONE);

/// The bit of `access` that says a refresh of this value was claimed (see `loading/`).
const REFRESHING: u8 = 0x01;
const _: () = assert!(REFRESHING & ACCESS_COUNT == 0);

/// The bit of `access` the policy sets on a new entry whose key it had seen at most once (see
/// `policy`). Readers and taking the reads keep it: the policy only looks at it on an unread
/// entry at the window's head.
const RARE: u8 = 0x02;
const _: () = assert!(RARE & (ACCESS_COUNT | REFRESHING) == 0);

/// The bit of `access` the policy sets on an entry it promotes to protected. It stays when the
/// entry goes back to probation, so that the ghost an eviction leaves says whether protected
/// once held the entry (see `policy`).
const PROTECTED: u8 = 0x04;
const _: () = assert!(PROTECTED & (ACCESS_COUNT | REFRESHING | RARE) == 0);

pub(crate) struct Entry<K, V> {
    pub(crate) key: K,
    pub(crate) value: V,
    /// The key's 32-bit hash, from which the index hash and the sketch hash are derived without
    /// calling the user's hasher again.
    pub(crate) hash: u32,
    /// The low 32 bits of the tick at which the entry expires, or `NO_DEADLINE`. Only read when
    /// the shard has a timer wheel, whose buckets file the entry by it. Readers store into it
    /// (time-to-idle) under the read lock.
    pub(crate) deadline: AtomicU32,
    next: Link,
    prev: Link,
    /// Accesses since the policy last looked at this entry (saturating at `MAX_ACCESS`).
    pub(crate) access: AtomicU8,
    pub(crate) queue: Queue,
}

// The layout the memory figures (`examples/memory.rs`) rely on: the deadline costs a
// `u64 -> u64` entry nothing.
const _: () = assert!(std::mem::size_of::<Entry<u64, u64>>() == 32);

impl<K, V> Entry<K, V> {
    /// The entry's deadline word, if it has a deadline (meaningful only in a shard with a
    /// wheel). Safe under the read lock.
    #[inline]
    pub(crate) fn deadline(&self) -> Option<u32> {
        let d = self.deadline.load(Ordering::Relaxed);
        (d != NO_DEADLINE).then_some(d)
    }

    /// Moves the deadline to `tick` (read lock: time-to-idle). The wheel refiles the entry
    /// when its old bucket comes due.
    #[inline]
    pub(crate) fn touch_deadline(&self, tick: u64) {
        self.deadline.store(deadline_word(tick), Ordering::Relaxed);
    }

    /// Sets (`Some(tick)`) or clears the deadline (write lock).
    #[inline]
    pub(crate) fn set_deadline(&mut self, tick: Option<u64>) {
        *self.deadline.get_mut() = tick.map_or(NO_DEADLINE, deadline_word);
    }

    /// Records a read. Called under the shard's read lock, possibly by many threads at once: a
    /// lost increment is harmless, a torn one impossible. `false` if the count was at its
    /// maximum already (the read adds nothing the policy will see).
    #[inline]
    pub(crate) fn touch(&self) -> bool {
        let a = self.access.load(Ordering::Relaxed);
        // The flags (`REFRESHING`, `RARE`) are below `ACCESS_ONE`: below `ACCESS_COUNT` means
        // the count is below its maximum.
        let counted = a < ACCESS_COUNT;
        if counted {
            self.access.store(a + ACCESS_ONE, Ordering::Relaxed);
        }
        counted
    }

    /// Claims the entry's refresh (read lock): `true` for the one caller that set the flag.
    /// A racing `touch` may clear it again; the shard's list of refreshes in flight is what
    /// keeps a key to one refresh, the flag only keeps the readers off the write lock.
    #[inline]
    pub(crate) fn claim_refresh(&self) -> bool {
        self.access.load(Ordering::Relaxed) & REFRESHING == 0
            && self.access.fetch_or(REFRESHING, Ordering::Relaxed) & REFRESHING == 0
    }

    /// Whether a refresh was claimed for this value (and not yet replaced by a new value).
    #[inline]
    pub(crate) fn refresh_claimed(&self) -> bool {
        self.access.load(Ordering::Relaxed) & REFRESHING != 0
    }

    /// Whether accesses were recorded since the policy last took them (write lock held).
    #[inline]
    pub(crate) fn was_read(&self) -> bool {
        self.access.load(Ordering::Relaxed) & ACCESS_COUNT != 0
    }

    /// Takes the accesses recorded since the last call (write lock held).
    #[inline]
    pub(crate) fn take_access(&mut self) -> u8 {
        let a = self.access.get_mut();
        let count = *a / ACCESS_ONE;
        *a &= !ACCESS_COUNT;
        count
    }

    /// Takes half of the accesses recorded since the last call, rounded up, and leaves the rest
    /// for the next (write lock held): a CLOCK hand that passes an entry read `a` times leaves
    /// it `a / 2`, so without new reads it survives about log2(a) more passes. Returns the
    /// accesses taken (0 when there were none).
    #[inline]
    pub(crate) fn take_half_access(&mut self) -> u8 {
        let a = self.access.get_mut();
        let count = *a / ACCESS_ONE;
        let kept = count / 2;
        *a = (*a & !ACCESS_COUNT) | (kept * ACCESS_ONE);
        count - kept
    }

    /// Marks a new entry whose key the policy had seen at most once (write lock).
    #[inline]
    pub(crate) fn mark_rare(&mut self) {
        *self.access.get_mut() |= RARE;
    }

    /// Marks an entry promoted to protected (write lock).
    #[inline]
    pub(crate) fn mark_protected(&mut self) {
        *self.access.get_mut() |= PROTECTED;
    }

    /// Whether the entry was ever promoted to protected (write lock).
    #[inline]
    pub(crate) fn was_protected(&mut self) -> bool {
        *self.access.get_mut() & PROTECTED != 0
    }

    /// Whether the entry was marked rare when inserted (write lock).
    #[inline]
    pub(crate) fn is_rare(&mut self) -> bool {
        *self.access.get_mut() & RARE != 0
    }

    /// Reads recorded since the policy last took them (tests).
    #[cfg(test)]
    pub(crate) fn pending_access(&self) -> u8 {
        self.access.load(Ordering::Relaxed) / ACCESS_ONE
    }

    /// A new value (write lock): counted as one more access, and a refresh claimed for the old
    /// value is done. Whether protected held the entry is a fact about its key, and stays.
    #[inline]
    pub(crate) fn replaced(&mut self) {
        let a = self.access.get_mut();
        *a = ((*a / ACCESS_ONE + 1).min(MAX_ACCESS) * ACCESS_ONE) | (*a & PROTECTED);
    }
}

/// A doubly linked list of tokens, with the total weight of its members.
#[derive(Clone, Copy, Debug)]
pub(crate) struct List {
    pub(crate) head: Token,
    pub(crate) tail: Token,
    pub(crate) len: usize,
    pub(crate) weight: u64,
}

impl List {
    pub(crate) const EMPTY: List = List {
        head: NIL,
        tail: NIL,
        len: 0,
        weight: 0,
    };
}

pub(crate) struct Slab<K, V> {
    entries: Vec<Entry<K, V>>,
    /// Per-entry weights, parallel to `entries`; empty when the cache has no weigher.
    weights: Vec<u32>,
    weighted: bool,
    /// The three policy queues, indexed by `Queue as usize`.
    pub(crate) lists: [List; 3],
}

impl<K, V> Slab<K, V> {
    pub(crate) fn new(weighted: bool) -> Self {
        Slab {
            entries: Vec::new(),
            weights: Vec::new(),
            weighted,
            lists: [List::EMPTY; 3],
        }
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    #[inline]
    pub(crate) fn get(&self, t: Token) -> &Entry<K, V> {
        &self.entries[t as usize]
    }

    /// The entry of `t`, or `None` for a token past the end (such as an index's in-flight-load
    /// token, which has the top bit set): one bounds check serves as both tests.
    #[inline]
    pub(crate) fn try_get(&self, t: Token) -> Option<&Entry<K, V>> {
        self.entries.get(t as usize)
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, t: Token) -> &mut Entry<K, V> {
        &mut self.entries[t as usize]
    }

    #[inline]
    pub(crate) fn weight(&self, t: Token) -> u64 {
        if self.weighted {
            u64::from(self.weights[t as usize])
        } else {
            1
        }
    }

    #[inline]
    pub(crate) fn list(&self, q: Queue) -> &List {
        &self.lists[q as usize]
    }

    pub(crate) fn entries(&self) -> &[Entry<K, V>] {
        &self.entries
    }

    /// Entries the slab has room for without reallocating.
    #[inline]
    pub(crate) fn capacity(&self) -> usize {
        self.entries.capacity()
    }

    /// Tries to reserve room for `entries` entries up front; on allocation failure the slab simply
    /// starts smaller and grows as entries arrive.
    pub(crate) fn try_reserve_initial(&mut self, entries: usize) {
        if self.entries.try_reserve_exact(entries).is_ok() && self.weighted {
            let _ = self.weights.try_reserve_exact(entries);
        }
    }

    /// Reserves room for `additional` more entries, growing by doubling but never past `limit`
    /// entries in total, so a count-bounded shard ends with no slack at its capacity.
    #[inline]
    pub(crate) fn reserve(&mut self, additional: usize, limit: usize) {
        if self.entries.capacity() - self.entries.len() < additional {
            self.grow(additional, limit);
        }
    }

    #[cold]
    fn grow(&mut self, additional: usize, limit: usize) {
        let len = self.entries.len();
        let want = (len * 2).max(len + additional).max(4);
        let want = if limit >= len + additional {
            want.min(limit)
        } else {
            want
        };
        self.entries.reserve_exact(want - len);
        if self.weighted {
            self.weights.reserve_exact(want - self.weights.len());
        }
    }

    /// Adds an entry at the tail of queue `q` and returns its token.
    #[inline]
    pub(crate) fn push(&mut self, key: K, value: V, hash: u32, weight: u32, q: Queue) -> Token {
        debug_assert!(self.entries.len() < MAX_ENTRIES);
        let t = self.entries.len() as Token;
        self.entries.push(Entry {
            key,
            value,
            hash,
            deadline: AtomicU32::new(NO_DEADLINE),
            next: Link::NIL,
            prev: Link::NIL,
            access: AtomicU8::new(0),
            queue: q,
        });
        if self.weighted {
            self.weights.push(weight);
        }
        self.link_tail(t, q);
        t
    }

    /// Unlinks entry `t` and gives its slot to a new entry at the tail of queue `q`, returning
    /// the old key and value. No token moves and the slab stays dense: an insert into a full
    /// shard reuses its victim's slot instead of pushing and then moving the last entry.
    #[inline]
    pub(crate) fn reuse(
        &mut self,
        t: Token,
        key: K,
        value: V,
        hash: u32,
        weight: u32,
        q: Queue,
    ) -> (K, V) {
        self.unlink(t);
        if self.weighted {
            self.weights[t as usize] = weight;
        }
        let e = &mut self.entries[t as usize];
        let old_key = std::mem::replace(&mut e.key, key);
        let old_value = std::mem::replace(&mut e.value, value);
        e.hash = hash;
        *e.deadline.get_mut() = NO_DEADLINE;
        *e.access.get_mut() = 0;
        self.link_tail(t, q);
        (old_key, old_value)
    }

    /// Changes the weight of entry `t` (only meaningful for weighted slabs).
    pub(crate) fn set_weight(&mut self, t: Token, weight: u32) {
        if self.weighted {
            let old = std::mem::replace(&mut self.weights[t as usize], weight);
            let l = &mut self.lists[self.entries[t as usize].queue as usize];
            l.weight = l.weight - u64::from(old) + u64::from(weight);
        }
    }

    /// Unlinks `t` from its queue (the entry stays in the slab).
    #[inline(always)]
    pub(crate) fn unlink(&mut self, t: Token) {
        let w = self.weight(t);
        let e = &self.entries[t as usize];
        let (prev, next, q) = (e.prev.get(), e.next.get(), e.queue as usize);
        if prev == NIL {
            self.lists[q].head = next;
        } else {
            self.entries[prev as usize].next = Link::new(next);
        }
        if next == NIL {
            self.lists[q].tail = prev;
        } else {
            self.entries[next as usize].prev = Link::new(prev);
        }
        self.lists[q].len -= 1;
        self.lists[q].weight -= w;
    }

    /// Links `t` (currently unlinked) at the tail of queue `q`.
    #[inline]
    pub(crate) fn link_tail(&mut self, t: Token, q: Queue) {
        let w = self.weight(t);
        let l = &mut self.lists[q as usize];
        let old_tail = l.tail;
        l.tail = t;
        if old_tail == NIL {
            l.head = t;
        }
        l.len += 1;
        l.weight += w;
        if old_tail != NIL {
            self.entries[old_tail as usize].next = Link::new(t);
        }
        let e = &mut self.entries[t as usize];
        e.prev = Link::new(old_tail);
        e.next = Link::NIL;
        e.queue = q;
    }

    /// Moves `t` to the tail of queue `q`.
    pub(crate) fn move_to_tail(&mut self, t: Token, q: Queue) {
        self.unlink(t);
        self.link_tail(t, q);
    }

    /// Unlinks and removes `t`. The last entry moves into its slot: when that happens the return
    /// value is `Some((old_token, hash))` of the moved entry, so the caller can repoint its index.
    #[inline]
    pub(crate) fn remove(&mut self, t: Token) -> (Entry<K, V>, Option<(Token, u32)>) {
        self.unlink(t);
        let last = (self.entries.len() - 1) as Token;
        let removed = self.entries.swap_remove(t as usize);
        if self.weighted {
            self.weights.swap_remove(t as usize);
        }
        if t == last {
            return (removed, None);
        }
        // The entry that was at `last` now lives at `t`: repoint its neighbours and its queue.
        let (prev, next, q, hash) = {
            let e = &self.entries[t as usize];
            (e.prev.get(), e.next.get(), e.queue as usize, e.hash)
        };
        if prev == NIL {
            self.lists[q].head = t;
        } else {
            self.entries[prev as usize].next = Link::new(t);
        }
        if next == NIL {
            self.lists[q].tail = t;
        } else {
            self.entries[next as usize].prev = Link::new(t);
        }
        (removed, Some((last, hash)))
    }

    /// Gives back room beyond `room` entries.
    pub(crate) fn shrink_to(&mut self, room: usize) {
        self.entries.shrink_to(room);
        if self.weighted {
            self.weights.shrink_to(room);
        }
    }

    /// Removes every entry, returning them so they can be dropped outside the shard lock.
    pub(crate) fn take_all(&mut self) -> Vec<Entry<K, V>> {
        self.weights = Vec::new();
        self.lists = [List::EMPTY; 3];
        std::mem::take(&mut self.entries)
    }

    /// Recounts every list and checks links, queue tags and weights (tests only).
    #[cfg(any(test, feature = "_test-hooks"))]
    pub(crate) fn validate(&self) -> Result<(), String> {
        let mut seen = vec![false; self.entries.len()];
        for q in [Queue::Window, Queue::Probation, Queue::Protected] {
            let l = self.list(q);
            let (mut len, mut weight, mut prev, mut t) = (0usize, 0u64, NIL, l.head);
            while t != NIL {
                let e = self
                    .entries
                    .get(t as usize)
                    .ok_or_else(|| format!("{q:?}: token {t} out of range"))?;
                if seen[t as usize] {
                    return Err(format!("{q:?}: token {t} linked twice"));
                }
                seen[t as usize] = true;
                if e.queue != q {
                    return Err(format!("token {t} in {q:?} is tagged {:?}", e.queue));
                }
                if e.prev.get() != prev {
                    let p = e.prev.get();
                    return Err(format!("{q:?}: token {t} has prev {p} not {prev}"));
                }
                len += 1;
                weight += self.weight(t);
                prev = t;
                t = e.next.get();
            }
            if l.tail != prev {
                return Err(format!("{q:?}: tail {} but last linked is {prev}", l.tail));
            }
            if l.len != len || l.weight != weight {
                return Err(format!(
                    "{q:?}: recorded len/weight {}/{} but counted {len}/{weight}",
                    l.len, l.weight
                ));
            }
        }
        if let Some(t) = seen.iter().position(|s| !s) {
            return Err(format!("token {t} is in no queue"));
        }
        if self.weighted && self.weights.len() != self.entries.len() {
            return Err("weights and entries differ in length".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_hold_every_token_and_marker() {
        for t in [
            0,
            1,
            255,
            256,
            65_535,
            65_536,
            MAX_ENTRIES as Token - 1,
            NIL - 1,
            NIL,
        ] {
            assert_eq!(Link::new(t).get(), t);
        }
        assert_eq!(Link::NIL.get(), NIL);
        // The markers the timer wheel needs sit above every entry token.
        assert!(MAX_ENTRIES < NIL as usize - 386);
    }

    #[test]
    fn the_access_byte_counts_to_its_maximum_beside_the_refresh_flag() {
        let mut slab: Slab<u32, u32> = Slab::new(false);
        let t = slab.push(1, 1, 0, 1, Queue::Window);
        let e = slab.get_mut(t);
        assert_eq!(e.take_access(), 0);
        for _ in 0..3 {
            e.touch();
        }
        assert!(!e.refresh_claimed());
        assert!(e.claim_refresh() && !e.claim_refresh() && e.refresh_claimed());
        for _ in 0..20 {
            e.touch(); // saturates at the maximum, the flag untouched
        }
        assert!(e.refresh_claimed());
        assert_eq!(e.take_access(), MAX_ACCESS);
        assert!(e.refresh_claimed()); // taking the count keeps the claim
        e.touch();
        e.replaced(); // a new value: one more access, the claim done
        assert!(!e.refresh_claimed());
        assert_eq!(e.take_access(), 2);
        for _ in 0..20 {
            e.touch();
        }
        e.replaced();
        assert_eq!(e.take_access(), MAX_ACCESS);
    }

    #[test]
    fn the_protected_mark_outlives_reads_and_new_values() {
        let mut slab: Slab<u32, u32> = Slab::new(false);
        let t = slab.push(1, 1, 0, 1, Queue::Window);
        let e = slab.get_mut(t);
        assert!(!e.was_protected());
        e.mark_protected();
        for _ in 0..20 {
            e.touch();
        }
        assert_eq!(e.take_access(), MAX_ACCESS);
        assert!(e.was_protected() && !e.was_read());
        e.replaced();
        assert!(e.was_protected());
        assert_eq!(e.take_half_access(), 1);
        assert!(e.was_protected() && !e.is_rare() && !e.refresh_claimed());
    }

    #[test]
    fn a_clock_pass_takes_half_of_the_reads_rounded_up() {
        let mut slab: Slab<u32, u32> = Slab::new(false);
        let t = slab.push(1, 1, 0, 1, Queue::Window);
        let e = slab.get_mut(t);
        assert_eq!(e.take_half_access(), 0);
        for _ in 0..5 {
            e.touch();
        }
        assert!(e.claim_refresh());
        assert_eq!(e.pending_access(), 5);
        // 5 reads: 3 taken, 2 left for the next pass; then 1 and 1; then none.
        assert_eq!(e.take_half_access(), 3);
        assert_eq!(e.pending_access(), 2);
        assert_eq!(e.take_half_access(), 1);
        assert_eq!(e.take_half_access(), 1);
        assert_eq!((e.take_half_access(), e.pending_access()), (0, 0));
        assert!(e.refresh_claimed()); // the claim is not a read
        for _ in 0..20 {
            e.touch();
        }
        assert_eq!(e.take_half_access(), MAX_ACCESS - MAX_ACCESS / 2);
        assert_eq!(e.take_access(), MAX_ACCESS / 2);
    }

    #[test]
    fn deadline_words_never_read_as_no_deadline() {
        assert_eq!(deadline_word(5), 5);
        assert_eq!(deadline_word((1 << 32) + 5), 5);
        assert_eq!(deadline_word(u64::from(u32::MAX)), u32::MAX - 1);
        assert_eq!(deadline_word((1 << 33) - 1), u32::MAX - 1);
        assert_eq!(deadline_word(1 << 32), 0);
        for tick in [5, u64::from(u32::MAX), (1 << 33) - 1, 1 << 32] {
            assert_eq!(deadline_word(storable(tick)), storable(tick) as u32);
            assert!(tick - storable(tick) <= 1);
        }
    }

    #[test]
    fn links_survive_removal_of_every_position() {
        // Remove from the head, the middle and the tail, so the moved last entry is repointed
        // from each neighbour position, with tokens beyond one byte.
        let mut slab: Slab<u32, u32> = Slab::new(false);
        for i in 0..600u32 {
            let q = [Queue::Window, Queue::Probation, Queue::Protected][i as usize % 3];
            slab.push(i, i, i, 1, q);
        }
        slab.validate().unwrap();
        for t in [0, 299, 597, 5, 500, 256, 1] {
            let (e, _) = slab.remove(t);
            assert!(e.key < 600);
            slab.validate().unwrap();
        }
        assert_eq!(slab.len(), 593);
    }

    #[test]
    fn a_reused_slot_holds_a_fresh_entry_at_its_queues_tail() {
        let mut slab: Slab<u32, u32> = Slab::new(false);
        for i in 0..6u32 {
            let q = [Queue::Window, Queue::Probation][i as usize % 2];
            slab.push(i, i * 10, i, 1, q);
        }
        // Entry 3 (probation, between 1 and 5), read and given a deadline.
        slab.get(3).touch();
        slab.get_mut(3).set_deadline(Some(99));
        let (k, v) = slab.reuse(3, 100, 1000, 7, 1, Queue::Window);
        assert_eq!((k, v), (3, 30));
        slab.validate().unwrap();
        assert_eq!(slab.len(), 6);
        let e = slab.get(3);
        assert_eq!(
            (e.key, e.value, e.hash, e.queue),
            (100, 1000, 7, Queue::Window)
        );
        assert!(!e.was_read());
        assert_eq!(e.deadline(), None);
        assert_eq!(slab.list(Queue::Window).tail, 3);
        assert_eq!(slab.list(Queue::Window).len, 4);
        assert_eq!(slab.list(Queue::Probation).len, 2);
    }
}
