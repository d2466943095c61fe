//! The timer wheel: which slab tokens expire when. It links tokens, never entries, and knows
//! nothing of shards or the cache.

// A hierarchical timer wheel over slab tokens (the design of tokio's timer wheel and Caffeine's
// `TimerWheel`, with token links instead of pointers).
//
// Time is in ticks of one millisecond, as a `u64` inside the wheel. An entry's deadline lives in
// the entry itself (`Entry::deadline`, 4 bytes that fit in the entry's padding), so a hit reads
// it from the line it loaded for the key. Per entry the wheel keeps a `Timer`, in a vector
// parallel to the slab's entries (so a cache without expiration has no timers at all): the two
// 24-bit links of the bucket list the entry is filed in. The wheel reads deadlines through the
// `deadline` function its callers pass in.
//
// Levels. Level `l` has 64 slots of 64^l ticks each, so it spans 64^(l+1) ticks:
//
//   level 0: 1 ms slots, 64 ms      level 3: 4.4 min slots, 4.7 h
//   level 1: 64 ms slots, 4.1 s     level 4: 4.7 h slots, 12.4 days
//   level 2: 4.1 s slots, 4.4 min   level 5: 12.4 day slots, 2.2 years
//
// An entry with deadline `when` is filed at the level of the highest bit in which `when` and the
// wheel's time `elapsed` differ (so level 0 holds the current 64 ms, level 1 the rest of the
// current 4.1 s, and so on), in slot `(when >> 6 * level) % 64`. When `elapsed` reaches the
// start of an occupied slot, its entries are either expired (their deadline has passed) or filed
// again relative to the new time, which puts them on a lower level: an entry moves at most five
// times before it expires. Lifetimes are capped at `MAX_LIFETIME` (2^30 ticks), so with the
// wheel's time at most `MAX_LAG` behind the present, every deadline is less than 2^31 ticks
// ahead of `elapsed`, far inside the top level's 2^36.
//
// Deadlines are stored as `u32` (the low 32 bits of the tick) and compared with wrapping
// arithmetic, which is exact while a deadline is within 2^31 ticks (24.8 days) of the time it is
// compared with: lifetimes are capped at 2^30 ticks, and an expired entry never stays more than
// `MAX_LAG` (2^29 ticks) past its deadline because the shard flushes the wheel before it falls
// that far behind.
//
// Time-to-idle: a read under the shard's *read* lock may push a deadline later. It stores the new
// deadline into the entry's atomic but cannot move the entry between buckets; the entry is found
// in its old, earlier bucket, sees its new deadline, and is filed again. Readers compare the atomic
// deadline, so no read ever returns an entry past its deadline, filed or not.
//
// Links: `next` is the following token in the bucket or `NONE`; `prev` is the preceding token,
// or `head_tag(bucket)` for the first entry of a bucket, or `DETACHED` for an entry that is not
// filed (no deadline, or just taken out to be expired). Knowing the bucket from the head's tag is
// what lets an entry be unlinked in O(1) without storing which bucket it is in. Links are 24
// bits (the slab's `Link`); tokens must stay below `FIRST_HEAD_TAG`, and the slab's
// `MAX_ENTRIES` guarantees it.
//
// Memory: 6 bytes per entry (two links; the deadline is in the entry's padding), plus 4 bytes for
// the time-to-live cap when time-to-live is combined with time-to-idle or an `Expiry`, plus
// 1.6 KB of bucket heads per shard.

use crate::slab::{Link, NIL, Token};

const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;
const LEVELS: usize = 6;
const BUCKETS: usize = LEVELS * SLOTS;

/// The longest lifetime, in ticks: 2^30 ms, about 12.4 days. Longer ones are shortened to it.
pub(crate) const MAX_LIFETIME: u64 = 1 << 30;

/// How far the wheel's time may fall behind the present before the shard processes everything
/// that is due at once (only after about 6 days without any operation on that shard).
pub(crate) const MAX_LAG: u64 = 1 << 29;

/// The end of a bucket list.
const NONE: u32 = NIL;
/// A cap meaning "no cap" (a real cap that happens to equal it is stored a tick earlier).
pub(crate) const NO_CAP: u32 = u32::MAX;
/// `prev` of an entry that is not filed.
const DETACHED: u32 = NIL - 1;
/// `prev` of the first entry of bucket `b` is `FIRST_HEAD_TAG + b`.
pub(crate) const FIRST_HEAD_TAG: u32 = DETACHED - BUCKETS as u32;
const _: () = assert!(crate::slab::MAX_ENTRIES <= FIRST_HEAD_TAG as usize);

#[inline]
fn head_tag(bucket: usize) -> u32 {
    FIRST_HEAD_TAG + bucket as u32
}

/// The stored form of a cap (`None`: no cap; a real cap equal to `NO_CAP` is a tick earlier).
#[inline]
fn cap_word(cap: Option<u64>) -> u32 {
    match cap {
        Some(c) if c as u32 == NO_CAP => NO_CAP - 1,
        Some(c) => c as u32,
        None => NO_CAP,
    }
}

/// Whether the deadline `d` (low 32 bits of a tick) has passed at tick `now`.
#[inline]
pub(crate) fn is_due(d: u32, now: u64) -> bool {
    (now as u32).wrapping_sub(d) as i32 >= 0
}

/// An entry's links in its bucket list, 6 bytes.
#[derive(Clone, Copy)]
pub(crate) struct Timer {
    next: Link,
    prev: Link,
}

impl Timer {
    const DETACHED: Timer = Timer {
        next: Link::new(NONE),
        prev: Link::new(DETACHED),
    };

    #[inline]
    fn filed(self) -> bool {
        self.prev.get() != DETACHED
    }
}

pub(crate) struct Wheel {
    timers: Vec<Timer>,
    /// Per entry, the latest its deadline may be pushed by reads (time-to-live since the last
    /// write), low 32 bits of the tick. Only when reads can extend a deadline that a
    /// time-to-live bounds; otherwise empty.
    caps: Vec<u32>,
    capped: bool,
    heads: Box<[u32; BUCKETS]>,
    /// Per level, a bit per non-empty slot.
    occupied: [u64; LEVELS],
    /// The wheel's time: every slot that starts before it has been processed.
    elapsed: u64,
    filed: usize,
    /// A tick at or before which the wheel next has work (`u64::MAX`: none): kept as the
    /// earliest deadline filed since the last look, so a write updates it in O(1); a lower
    /// bound is enough, since it only says when to look.
    due: u64,
}

impl Wheel {
    pub(crate) fn new(now: u64, capped: bool) -> Self {
        Wheel {
            timers: Vec::new(),
            caps: Vec::new(),
            capped,
            heads: Box::new([NONE; BUCKETS]),
            occupied: [0; LEVELS],
            elapsed: now,
            filed: 0,
            due: u64::MAX,
        }
    }

    /// Gives the timers the same room as the slab (`reserve` mirrors the slab's growth).
    pub(crate) fn reserve_exact(&mut self, additional: usize) {
        self.timers.reserve_exact(additional);
        if self.capped {
            self.caps.reserve_exact(additional);
        }
    }

    pub(crate) fn try_reserve_exact(&mut self, additional: usize) {
        if self.timers.try_reserve_exact(additional).is_ok() && self.capped {
            let _ = self.caps.try_reserve_exact(additional);
        }
    }

    /// Grows the timers' room to `room` entries (the slab's capacity), so both grow alike.
    pub(crate) fn match_capacity(&mut self, room: usize) {
        if self.timers.capacity() < room {
            self.reserve_exact(room - self.timers.len());
        }
    }

    /// Adds an unfiled timer for the entry the slab just pushed; `room` is the slab's capacity,
    /// which the timers' grows to match when they are full.
    #[inline]
    pub(crate) fn push(&mut self, room: usize) {
        self.room_for_one(room);
        self.timers.push(Timer::DETACHED);
        if self.capped {
            self.caps.push(NO_CAP);
        }
    }

    /// Room for one more timer: when full, grows to the slab's capacity `room`.
    #[inline]
    fn room_for_one(&mut self, room: usize) {
        if self.timers.len() == self.timers.capacity() {
            self.match_capacity(room);
        }
    }

    /// Adds the timer of the entry the slab just pushed, `t`, filed at `when` with `cap` (as
    /// `schedule`): `push` and `schedule` in one, for every insert of an expiring cache.
    #[inline(always)]
    pub(crate) fn push_filed(&mut self, room: usize, t: Token, when: u64, cap: Option<u64>) {
        debug_assert_eq!(t as usize, self.timers.len());
        self.room_for_one(room);
        if self.capped {
            self.caps.push(cap_word(cap));
        }
        let timer = self.attach(t, when);
        self.timers.push(timer);
    }

    /// Whether reads must respect a time-to-live cap.
    pub(crate) fn capped(&self) -> bool {
        self.capped
    }

    /// Whether `t` is filed (has a deadline). Tests only: the entry's deadline word says it.
    #[cfg(test)]
    pub(crate) fn is_filed(&self, t: Token) -> bool {
        self.timers[t as usize].filed()
    }

    /// The time-to-live cap of `t` (low 32 bits), or `NO_CAP`; only when `capped`.
    #[inline]
    pub(crate) fn cap(&self, t: Token) -> u32 {
        self.caps[t as usize]
    }

    /// Whether the wheel is more than `MAX_LAG` behind `now`, so stored deadlines may have
    /// wrapped: it must be brought up to date before any deadline is compared.
    #[inline]
    pub(crate) fn lagging(&self, now: u64) -> bool {
        now.saturating_sub(self.elapsed) > MAX_LAG
    }

    /// The full tick of a stored deadline, relative to the wheel's time.
    #[inline]
    fn widen(&self, d: u32) -> u64 {
        let delta = i64::from(d.wrapping_sub(self.elapsed as u32) as i32);
        self.elapsed.saturating_add_signed(delta)
    }

    /// Starts keeping caps; existing entries get none.
    pub(crate) fn enable_caps(&mut self) {
        if self.capped {
            return;
        }
        self.capped = true;
        self.caps = vec![NO_CAP; self.timers.len()];
        self.caps
            .reserve_exact(self.timers.capacity() - self.timers.len());
    }

    /// Files `t` to expire at tick `when` (which must not be before the wheel's time), refiling
    /// it if it was filed. When the wheel keeps caps, `cap` is the entry's new cap (`None`: the
    /// longest lifetime). The caller stores `when` in the entry's deadline word.
    #[inline(always)]
    pub(crate) fn schedule(&mut self, t: Token, when: u64, cap: Option<u64>) {
        if self.timers[t as usize].filed() {
            self.unlink(t);
        }
        self.store_cap(t, cap);
        self.link(t, when);
    }

    /// Sets the cap of `t`, filed already, whose deadline moved later without refiling
    /// (`None`: the longest lifetime); only when the wheel keeps caps.
    #[inline]
    pub(crate) fn set_cap(&mut self, t: Token, cap: Option<u64>) {
        debug_assert!(self.timers[t as usize].filed());
        self.store_cap(t, cap);
    }

    #[inline]
    fn store_cap(&mut self, t: Token, cap: Option<u64>) {
        if self.capped {
            self.caps[t as usize] = cap_word(cap);
        }
    }

    /// Files `t` again at `when` (a read moved its deadline earlier, or gave it one), keeping
    /// its cap. The caller stores `when` in the entry's deadline word.
    pub(crate) fn refile(&mut self, t: Token, when: u64) {
        if self.timers[t as usize].filed() {
            self.unlink(t);
        }
        self.link(t, when);
    }

    /// Takes `t` out of the wheel: it no longer expires (the caller clears its deadline word).
    pub(crate) fn unschedule(&mut self, t: Token) {
        if self.timers[t as usize].filed() {
            self.unlink(t);
        }
    }

    #[inline]
    fn bucket_for(&self, when: u64) -> usize {
        let when = when.max(self.elapsed);
        let masked = (self.elapsed ^ when) | (SLOTS as u64 - 1);
        let top = 63 - masked.leading_zeros();
        let level = ((top / SLOT_BITS) as usize).min(LEVELS - 1);
        let slot = (when >> (SLOT_BITS as usize * level)) as usize & (SLOTS - 1);
        level * SLOTS + slot
    }

    #[inline(always)]
    fn link(&mut self, t: Token, when: u64) {
        self.timers[t as usize] = self.attach(t, when);
    }

    /// Puts `t` at the head of the bucket for `when` and returns the timer `t` must store.
    #[inline(always)]
    fn attach(&mut self, t: Token, when: u64) -> Timer {
        let b = self.bucket_for(when);
        let old = self.heads[b];
        self.heads[b] = t;
        if old == NONE {
            self.occupied[b / SLOTS] |= 1 << (b % SLOTS);
        } else {
            self.timers[old as usize].prev = Link::new(t);
        }
        self.filed += 1;
        self.due = self.due.min(when);
        Timer {
            next: Link::new(old),
            prev: Link::new(head_tag(b)),
        }
    }

    #[inline(always)]
    fn unlink(&mut self, t: Token) {
        let Timer { next, prev } = self.timers[t as usize];
        debug_assert_ne!(prev.get(), DETACHED);
        if prev.get() >= FIRST_HEAD_TAG {
            let b = (prev.get() - FIRST_HEAD_TAG) as usize;
            self.heads[b] = next.get();
            if next.get() == NONE {
                self.occupied[b / SLOTS] &= !(1 << (b % SLOTS));
            }
        } else {
            self.timers[prev.get() as usize].next = next;
        }
        if next.get() != NONE {
            self.timers[next.get() as usize].prev = prev;
        }
        self.timers[t as usize] = Timer::DETACHED;
        self.filed -= 1;
    }

    /// Removes `t`'s timer; the last timer moves into its place, as the slab's last entry does.
    #[inline]
    pub(crate) fn swap_remove(&mut self, t: Token) {
        if self.timers[t as usize].filed() {
            self.unlink(t);
        }
        if self.capped {
            self.caps.swap_remove(t as usize);
        }
        let Some(moved) = self.timers.pop() else {
            return;
        };
        if t as usize >= self.timers.len() {
            return; // `t` was the last
        }
        self.timers[t as usize] = moved;
        let (next, prev) = (moved.next.get(), moved.prev.get());
        if prev == DETACHED {
            return;
        }
        if prev >= FIRST_HEAD_TAG {
            self.heads[(prev - FIRST_HEAD_TAG) as usize] = t;
        } else {
            self.timers[prev as usize].next = Link::new(t);
        }
        if next != NONE {
            self.timers[next as usize].prev = Link::new(t);
        }
    }

    /// Gives back room beyond `room` timers (the slab shrank).
    pub(crate) fn shrink_to(&mut self, room: usize) {
        self.timers.shrink_to(room);
        if self.capped {
            self.caps.shrink_to(room);
        }
    }

    /// Removes every timer.
    pub(crate) fn clear(&mut self) {
        self.timers = Vec::new();
        self.caps = Vec::new();
        *self.heads = [NONE; BUCKETS];
        self.occupied = [0; LEVELS];
        self.filed = 0;
        self.due = u64::MAX;
    }

    /// The earliest occupied slot: (bucket, start tick). Usually the lowest occupied level's
    /// next slot, but a higher slot interrupted half-way (by the budget, or because the entries
    /// it refiled were not due yet) starts earlier, so every level is looked at.
    fn next_slot(&self) -> Option<(usize, u64)> {
        let mut best: Option<(usize, u64)> = None;
        for level in 0..LEVELS {
            let bits = self.occupied[level];
            if bits == 0 {
                continue;
            }
            let shift = SLOT_BITS as usize * level;
            let pos = (self.elapsed >> shift) as usize & (SLOTS - 1);
            let slot =
                (pos + bits.rotate_right(pos as u32).trailing_zeros() as usize) & (SLOTS - 1);
            let span_bits = shift + SLOT_BITS as usize;
            let mut start = (self.elapsed >> span_bits << span_bits) + ((slot as u64) << shift);
            if slot < pos {
                // Past the end of the current span: the slot is in the next one.
                start += 1 << span_bits;
            }
            if best.is_none_or(|(_, s)| start < s) {
                best = Some((level * SLOTS + slot, start));
            }
        }
        best
    }

    /// A tick at or before which the wheel next has work (`u64::MAX` if nothing is filed).
    #[inline]
    pub(crate) fn next_due(&self) -> u64 {
        self.due
    }

    /// If nothing filed can be due at `now` (the common case on a write), moves the wheel's time
    /// to `now` and returns `true`; `pop_expired` would return `None`. A slot starting before
    /// `now` then holds only entries due after it, so it cannot be passed over, only entered.
    #[inline]
    pub(crate) fn idle_until(&mut self, now: u64) -> bool {
        if now < self.due && !self.lagging(now) {
            self.elapsed = self.elapsed.max(now);
            true
        } else {
            false
        }
    }

    /// Advances the wheel's time towards `now` and returns the next entry whose deadline has
    /// passed, unlinked (its timer stays until `swap_remove`). `deadline(t)` is entry `t`'s
    /// deadline word. Each entry looked at, expired or refiled, costs one unit of `budget`;
    /// returns `None` when nothing more is due or the budget is spent.
    pub(crate) fn pop_expired(
        &mut self,
        now: u64,
        budget: &mut u32,
        deadline: impl Fn(Token) -> u32,
    ) -> Option<Token> {
        if self.idle_until(now) {
            return None;
        }
        while *budget > 0 {
            let Some((b, start)) = self.next_slot() else {
                self.elapsed = self.elapsed.max(now);
                self.due = u64::MAX;
                return None;
            };
            if start > now {
                self.elapsed = self.elapsed.max(now);
                self.due = start;
                return None;
            }
            self.elapsed = self.elapsed.max(start);
            *budget -= 1;
            let t = self.heads[b];
            self.unlink(t);
            let when = self.widen(deadline(t));
            if when <= now {
                return Some(t);
            }
            // A read moved its deadline, or it waited on a higher level: file it again.
            self.link(t, when);
        }
        None
    }

    /// Checks links, bucket placement and counts (tests only). `len` is the slab's length;
    /// `has_deadline(t)` says whether entry `t`'s deadline word holds a deadline, which must be
    /// exactly when it is filed.
    #[cfg(any(test, feature = "_test-hooks"))]
    pub(crate) fn validate(
        &self,
        len: usize,
        has_deadline: impl Fn(Token) -> bool,
    ) -> Result<(), String> {
        if self.timers.len() != len {
            return Err(format!("{} timers for {len} entries", self.timers.len()));
        }
        if self.capped && self.caps.len() != len {
            return Err(format!("{} caps for {len} entries", self.caps.len()));
        }
        let mut seen = vec![false; len];
        let mut filed = 0;
        for b in 0..BUCKETS {
            let bit = self.occupied[b / SLOTS] >> (b % SLOTS) & 1 == 1;
            if bit != (self.heads[b] != NONE) {
                return Err(format!(
                    "bucket {b}: occupancy bit {bit} disagrees with its head"
                ));
            }
            let (mut prev, mut t) = (head_tag(b), self.heads[b]);
            while t != NONE {
                let timer = self
                    .timers
                    .get(t as usize)
                    .ok_or_else(|| format!("bucket {b}: token {t} out of range"))?;
                if std::mem::replace(&mut seen[t as usize], true) {
                    return Err(format!("token {t} filed twice"));
                }
                if timer.prev.get() != prev {
                    let p = timer.prev.get();
                    return Err(format!("token {t}: prev {p} not {prev}"));
                }
                // A bucket may only hold entries due at or after its start (reads only move
                // deadlines later), unless the bucket is already due.
                filed += 1;
                prev = t;
                t = timer.next.get();
            }
        }
        if filed != self.filed {
            return Err(format!("{} filed recorded, {filed} counted", self.filed));
        }
        for (t, timer) in self.timers.iter().enumerate() {
            if !seen[t] && timer.filed() {
                return Err(format!("token {t} is linked but in no bucket"));
            }
            if seen[t] != has_deadline(t as Token) {
                return Err(format!(
                    "token {t}: filed {} but has a deadline {}",
                    seen[t],
                    has_deadline(t as Token)
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
