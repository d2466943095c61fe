//! The invariant checker: recounts queue links and weights, index and slab agreement, and the
//! capacity bound. For tests only.

use super::{PENDING, ShardState, index_hash, key_of};
use crate::slab::{Queue, Token};

impl<K, V> ShardState<K, V> {
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
        if self.index.len() != self.slab.len() + self.loads.pending.len() {
            return Err(format!(
                "index holds {} tokens, slab {} entries and {} loads",
                self.index.len(),
                self.slab.len(),
                self.loads.pending.len()
            ));
        }
        for (i, p) in self.loads.pending.iter().enumerate() {
            let t = PENDING | i as Token;
            if self.index.find(index_hash(p.hash), |&x| x == t).is_none() {
                return Err(format!("load {i} is not indexed under its hash"));
            }
            // A load removes its slot before it settles; only negative entries outlive that.
            if self.ended_but_indexed(t) {
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
                key_of(&self.slab, &self.loads.pending, x) == &e.key
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
