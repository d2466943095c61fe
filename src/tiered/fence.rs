//! Per-key generations, striped: what keeps a fill that began before an invalidation of its key
//! out of the in-process tier.
//
// A fill takes a `Ticket` (its key's stripe and that stripe's generation) before it reads Redis
// or runs the loader, and stores its value through `store_if_current`, which checks the
// generation and inserts under the stripe's lock. An invalidation bumps the generation under the
// same lock, then removes the key from L1. So either the fill's check-and-insert ran before the
// bump (and the removal that follows the bump takes the value out again), or after it (and the
// fill sees a newer generation and stores nothing). A flush bumps every stripe, then clears L1.
//
// Keys share a stripe, so an invalidation may also turn away an unrelated fill of the same
// stripe: that costs a later miss, never a stale value.

use std::hash::{BuildHasher, Hash};

use crossbeam_utils::CachePadded;
use parking_lot::Mutex;

use crate::DefaultHashBuilder;

/// Stripes: enough that concurrent fills of different keys rarely share a lock or turn each
/// other away, few enough that a flush (which takes them all, one at a time) stays cheap.
const STRIPES: usize = 64;

pub(super) struct Fences {
    stripes: Box<[CachePadded<Mutex<u64>>]>,
    hasher: DefaultHashBuilder,
}

/// A fill's view of its key's generation when it began.
#[derive(Clone, Copy, Debug)]
pub(super) struct Ticket {
    stripe: usize,
    generation: u64,
}

impl Fences {
    pub(super) fn new() -> Self {
        Fences {
            stripes: (0..STRIPES)
                .map(|_| CachePadded::new(Mutex::new(0)))
                .collect(),
            hasher: DefaultHashBuilder::default(),
        }
    }

    fn stripe<K: Hash + ?Sized>(&self, key: &K) -> usize {
        (self.hasher.hash_one(key) as usize) % STRIPES
    }

    /// Taken by a fill before it reads anything.
    pub(super) fn ticket<K: Hash + ?Sized>(&self, key: &K) -> Ticket {
        let stripe = self.stripe(key);
        Ticket {
            stripe,
            generation: *self.stripes[stripe].lock(),
        }
    }

    /// Runs `store` under the ticket's stripe lock, telling it whether no invalidation of the
    /// stripe happened since the ticket was taken.
    pub(super) fn store_if_current<R>(&self, ticket: Ticket, store: impl FnOnce(bool) -> R) -> R {
        let generation = self.stripes[ticket.stripe].lock();
        store(*generation == ticket.generation)
    }

    /// A write by this instance that took `ticket` before sending it to Redis, and is now
    /// confirmed: bumps the generation (fills that began before the write will not store) and
    /// runs `store` under the same lock, telling it whether no invalidation came in between
    /// (one that did may be of a later write, which this one must not hide).
    pub(super) fn write_if_current<R>(&self, ticket: Ticket, store: impl FnOnce(bool) -> R) -> R {
        let mut generation = self.stripes[ticket.stripe].lock();
        let current = *generation == ticket.generation;
        *generation += 1;
        store(current)
    }

    /// An invalidation of `key`: fills of it that began before this will not store. The caller
    /// removes the key from L1 afterwards.
    pub(super) fn bump<K: Hash + ?Sized>(&self, key: &K) {
        *self.stripes[self.stripe(key)].lock() += 1;
    }

    /// A flush: no fill that began before this stores. The caller clears L1 afterwards.
    pub(super) fn bump_all(&self) {
        for stripe in self.stripes.iter() {
            *stripe.lock() += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bump_turns_away_earlier_tickets_only() {
        let fences = Fences::new();
        let early = fences.ticket("k");
        fences.bump("k");
        let late = fences.ticket("k");
        assert!(!fences.store_if_current(early, |current| current));
        assert!(fences.store_if_current(late, |current| current));
        fences.bump_all();
        assert!(!fences.store_if_current(late, |current| current));
        let before = fences.ticket("k");
        assert!(fences.write_if_current(before, |current| current));
        assert!(
            !fences.store_if_current(before, |current| current),
            "the write fenced it out"
        );
        let write = fences.ticket("k");
        fences.bump("k");
        assert!(!fences.write_if_current(write, |current| current));
    }
}
