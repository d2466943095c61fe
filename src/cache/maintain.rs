//! Expiration scheduling and delivery of removals: which shard's due entries an operation
//! removes (its own, and one other it helps), and how removals are counted and reported once
//! the shard lock is released.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use crate::clock::Now;
use crate::listener::Removed;
use crate::shard::{EXPIRE_BUDGET, WriteCtx};

use super::read::ReadKind;
use super::{Cache, Hashed};

/// How much expiration work `maintain` does in a shard.
#[derive(Clone, Copy)]
pub(super) enum Maintain<'a> {
    /// One batch, at the time the calling operation sees, if the shard's lock is free (its
    /// holder does the work otherwise).
    Batch(&'a Now<'a>),
    /// Batches until nothing is due, waiting for the lock.
    All,
}

impl<K, V, S> Cache<K, V, S> {
    /// Removes every entry whose deadline has passed, now.
    ///
    /// Never required: every write (and every read that misses) already removes a bounded
    /// number of expired entries, so memory is given back under any traffic. This is for an
    /// idle cache whose memory should be released anyway, or before measuring it. The work is
    /// done in batches of at most a thousand entries per shard lock, and removals are reported
    /// to the eviction listener as they go.
    pub fn run_pending_maintenance(&self) {
        let mut panic = None;
        for i in 0..self.inner.shards.len() {
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| self.maintain(i, Maintain::All))) {
                panic.get_or_insert(p);
            }
        }
        if let Some(p) = panic {
            resume_unwind(p);
        }
    }

    /// Expires what is due in shard `i`: one batch, or everything (see `Maintain`).
    pub(super) fn maintain(&self, i: usize, work: Maintain<'_>) {
        let shard = &self.inner.shards[i];
        loop {
            let Some(due) = shard.pending_due() else {
                return;
            };
            let fresh;
            let time = match work {
                Maintain::Batch(time) => time,
                Maintain::All => {
                    fresh = Now::new(&self.inner.clock);
                    &fresh
                }
            };
            if due > time.tick() {
                return;
            }
            let mut removed = Removed::new();
            {
                let mut state = match work {
                    Maintain::All => shard.state.write(),
                    Maintain::Batch(_) => match shard.state.try_write() {
                        Some(s) => s,
                        None => return, // the lock holder does the work
                    },
                };
                state.expire(time, EXPIRE_BUDGET, &mut removed);
                shard.after_write(&mut state);
            }
            self.deliver(i, removed, None);
            if let Maintain::Batch(_) = work {
                return;
            }
        }
    }

    /// After a write to `at.shard`: also help one other shard, picked by the key's hash, if it
    /// has expired entries waiting and its lock is free, so a backlog in a shard that is
    /// rarely written still drains with the cache's overall traffic.
    #[inline]
    pub(super) fn help_other(&self, at: Hashed, time: &Now<'_>) {
        // Reads are plain while no shard keeps deadlines: there is nothing to help with (an
        // insert that gives a shard its first deadline switches them before it returns).
        if matches!(
            self.inner.read.get(),
            ReadKind::Plain | ReadKind::PlainCounted
        ) {
            return;
        }
        let j = (at.shard ^ (at.hash >> 16) as usize) & self.inner.mask;
        if j == at.shard {
            return;
        }
        // With the time known (any write to an expiring cache), most calls end here.
        let due = self.inner.shards[j].pending_due();
        if due.is_some_and(|due| time.if_read().is_none_or(|now| due <= now)) {
            self.maintain(j, Maintain::Batch(time));
        }
    }

    /// The wheel of shard `i` is too far behind the clock for its deadlines to be read:
    /// bring it up to date (the shard does it in one go in that case).
    #[cold]
    pub(super) fn catch_up(&self, i: usize) {
        let shard = &self.inner.shards[i];
        let mut removed = Removed::new();
        {
            let mut state = shard.state.write();
            state.expire(&self.now(), EXPIRE_BUDGET, &mut removed);
            shard.after_write(&mut state);
        }
        self.deliver(i, removed, None);
    }

    /// Counts (with `record_stats`) and reports what left shard `i`, with no lock held.
    /// `returned` is the value the operation gives back to its caller, if any.
    #[inline(always)]
    pub(super) fn deliver(&self, i: usize, removed: Removed<K, V>, returned: Option<&V>) {
        // No listener, no statistics, no panic to resume (most writes): just drop what left,
        // here, without moving it into a call.
        if self.inner.listener.is_none() && !self.inner.record_stats && !removed.panicked() {
            drop(removed);
            return;
        }
        self.deliver_slow(i, removed, returned);
    }

    #[inline(never)]
    pub(super) fn deliver_slow(&self, i: usize, removed: Removed<K, V>, returned: Option<&V>) {
        self.count_removed(i, removed.causes());
        let panics = &self.inner.listener_panics;
        removed.deliver(self.inner.listener.as_ref(), returned, panics);
    }

    /// The context of a write that starts now: its time, the configured lifetimes, and an
    /// empty removal sink.
    #[inline]
    pub(super) fn write_ctx(&self) -> WriteCtx<'_, K, V> {
        WriteCtx {
            time: self.now(),
            expire: &self.inner.expire,
            removed: Removed::new(),
        }
    }

    /// The time of an operation that starts now (the clock is read on first need).
    #[inline]
    pub(super) fn now(&self) -> Now<'_> {
        Now::new(&self.inner.clock)
    }
}
