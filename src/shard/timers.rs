//! The shard's side of expiration: filing entries in the timer wheel, moving their deadlines,
//! and removing what is due, a bounded batch at a time.

use equivalent::Equivalent;

use crate::clock::Clock;
use crate::expiry::{Deadline, ExpireConfig, Wheel, is_due};
use crate::listener::{RemovalCause, Removed};
use crate::slab::{Slab, Token, storable};

use super::{ShardState, widen};

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

impl<K, V> ShardState<K, V> {
    /// Whether entry `t` has a deadline that has passed at `now`.
    #[inline]
    pub(super) fn expired_at(&self, t: Token, now: u64) -> bool {
        self.wheel.is_some() && self.slab.get(t).deadline().is_some_and(|d| is_due(d, now))
    }

    /// The remaining lifetime of `t` at `now`: `None` without a deadline.
    pub(super) fn remaining(&self, t: Token, now: u64) -> Option<u64> {
        self.wheel.as_ref()?;
        self.slab
            .get(t)
            .deadline()
            .map(|d| widen(d, now).saturating_sub(now))
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

    /// The wheel, created on the first deadline with a timer for each existing entry.
    pub(super) fn wheel_for(&mut self, now: u64, cfg: &ExpireConfig<K, V>) -> &mut Wheel {
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
    pub(super) fn push_timer(
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
    pub(super) fn set_deadline(
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

    pub(super) fn expire_with(&mut self, now: u64, budget: u32, sink: &mut dyn FnMut(K, V)) {
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
    pub(super) fn catch_up(&mut self, now: u64, sink: &mut dyn FnMut(K, V)) {
        if self.wheel.as_ref().is_some_and(|w| w.lagging(now)) {
            self.expire_with(now, u32::MAX, sink);
        }
    }

    /// Whether deadlines cannot be compared at `now` before catching up (see `catch_up`).
    #[inline]
    pub(crate) fn lagging(&self, now: u64) -> bool {
        self.wheel.as_ref().is_some_and(|w| w.lagging(now))
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
