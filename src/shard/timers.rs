//! The shard's side of expiration: filing entries in the timer wheel, moving their deadlines,
//! and removing what is due, a bounded batch at a time. The wheel itself is `expiry/wheel.rs`.

use equivalent::Equivalent;

use crate::clock::Now;
use crate::expiry::{Deadline, ExpireConfig, Wheel, is_due};
use crate::listener::{RemovalCause, Removed};
use crate::slab::{Slab, Token, storable};

use super::{ShardState, widen};

impl<K, V> ShardState<K, V> {
    /// The operation's tick, if this shard keeps deadlines (`None`: there is no deadline to
    /// compare, and the clock is not read). Shard operations resolve their `Now` to this once.
    #[inline]
    pub(super) fn tick_if_timed(&self, time: &Now<'_>) -> Option<u64> {
        self.wheel.is_some().then(|| time.tick())
    }

    /// Whether entry `t` has a deadline that has passed at `now`.
    #[inline]
    pub(super) fn expired_at(&self, t: Token, now: Option<u64>) -> bool {
        match now {
            Some(now) if self.wheel.is_some() => {
                self.slab.get(t).deadline().is_some_and(|d| is_due(d, now))
            }
            _ => false,
        }
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
    pub(crate) fn refile<Q>(&mut self, hash: u32, key: &Q, when: u64, time: &Now<'_>)
    where
        Q: ?Sized + Equivalent<K>,
    {
        let Some((t, _)) = self.lookup(hash, key) else {
            return;
        };
        let Some(w) = &self.wheel else { return };
        let now = time.tick();
        if w.lagging(now) || self.expired_at(t, Some(now)) {
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
    /// `start` is the current tick.
    pub(super) fn wheel_for(&mut self, start: u64, cfg: &ExpireConfig<K, V>) -> &mut Wheel {
        let (len, room) = (self.slab.len(), self.slab.capacity());
        self.wheel.get_or_insert_with(|| {
            let mut w = Wheel::new(start, cfg.caps_upfront());
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
        cfg: &ExpireConfig<K, V>,
    ) {
        let room = self.slab.capacity();
        match (&mut self.wheel, deadline) {
            (None, None) => {}
            (Some(w), None) => w.push(room),
            (Some(w), Some(d)) => file(w, &mut self.slab, t, d, cfg, Some(room)),
            (None, Some(d)) => {
                // Created with a timer for every entry, `t` included.
                self.wheel_for(d.from, cfg);
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
        cfg: &ExpireConfig<K, V>,
    ) {
        match deadline {
            Some(d) => {
                // Created if need be; `file` also borrows the slab, hence the second look.
                self.wheel_for(d.from, cfg);
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

    /// Removes up to `budget` entries whose deadline has passed. A wheel that has fallen more
    /// than `MAX_LAG` behind is brought up to date whatever the budget, so stored 32-bit
    /// deadlines never become ambiguous.
    #[inline]
    pub(crate) fn expire(&mut self, time: &Now<'_>, budget: u32, removed: &mut Removed<K, V>) {
        let now = self.tick_if_timed(time);
        self.expire_at(now, budget, removed);
    }

    /// `expire` at a tick already read (`None`: the shard keeps no deadlines).
    #[inline]
    pub(super) fn expire_at(&mut self, now: Option<u64>, budget: u32, removed: &mut Removed<K, V>) {
        // Nothing due (the common case on a write): one comparison.
        let (Some(w), Some(now)) = (self.wheel.as_mut(), now) else {
            return;
        };
        if w.idle_until(now) {
            return;
        }
        self.expire_due(now, budget, removed);
    }

    fn expire_due(&mut self, now: u64, budget: u32, removed: &mut Removed<K, V>) {
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
            let (old_key, old_value) = self.remove_token(t);
            removed.push(old_key, old_value, RemovalCause::Expired);
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
    /// idle for days) is brought up to date, all due entries going to `removed`.
    #[inline]
    pub(super) fn catch_up(&mut self, now: Option<u64>, removed: &mut Removed<K, V>) {
        let Some(now) = now else { return };
        if self.wheel.as_ref().is_some_and(|w| w.lagging(now)) {
            self.expire_due(now, u32::MAX, removed);
        }
    }

    /// Whether deadlines cannot be compared before catching up (see `catch_up`).
    #[inline]
    pub(crate) fn lagging(&self, time: &Now<'_>) -> bool {
        self.wheel.as_ref().is_some_and(|w| w.lagging(time.tick()))
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
            // memory (callgrind, update with a TTL: 478 instructions and no L1 write miss, against
            // 569 and 1.8 with them).
            Some(old) if is_due(old, when) => w.set_cap(t, d.cap),
            _ => w.schedule(t, when, d.cap),
        },
    }
    slab.get_mut(t).set_deadline(Some(when));
}
