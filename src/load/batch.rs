//! Batch loads: many keys, one call of the loader for all the misses, coalesced key by key with
//! every other load in flight.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use equivalent::Equivalent;

use crate::cache::{Cache, Hashed};
use crate::flight::{Flight, Leading, Outcome, Wait, check_not_leading};
use crate::shard::Begin;

use super::{Lead, Next};

/// One round of a batch: the keys this caller leads (to pass to its batch loader) and the
/// loads in flight it joined.
struct Round<K, V> {
    lead_keys: Vec<K>,
    /// Per led key, in the same order: its hash and flight.
    leads: Vec<(Hashed, Arc<Flight<V>>)>,
    joins: Vec<Joined<K, V>>,
}

/// A load a batch joined.
struct Joined<K, V> {
    key: K,
    at: Hashed,
    flight: Arc<Flight<V>>,
}

/// What a batch returns: per key, its value or its load's error.
type BatchResult<K, V, E> = HashMap<K, Result<V, Arc<E>>>;

/// A batch whose loader cannot fail: every result is a value.
fn infallible<K: Hash + Eq, V>(results: BatchResult<K, V, Infallible>) -> HashMap<K, V> {
    results
        .into_iter()
        .map(|(k, r)| match r {
            Ok(v) => (k, v),
            Err(e) => match *e {},
        })
        .collect()
}

/// Batch loaders: many keys, one call for all the misses.
impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
{
    /// Returns the values for `keys`, loading all the missing ones with one call to `load`
    /// (one `IN (...)` query instead of one query per key).
    ///
    /// Keys found in the cache are answered from it. Keys whose load is already in flight
    /// (another caller's [`get_or_load`](Self::get_or_load) or batch) join that load. All the
    /// others go to one call of `load`, which returns the pairs it found, in any order. A key
    /// `load` does not return is absent from the result (and nothing is stored for it); pairs
    /// for keys it was not asked for are ignored. `load` is called again only if a load this
    /// caller joined was abandoned (its leader panicked or was cancelled), for those keys.
    ///
    /// Every key is led by this caller before it waits on others, so two batches that share
    /// keys never wait on each other in a cycle. Duplicate keys are answered once.
    ///
    /// # Panics
    ///
    /// If `load` panics, the loads this caller led are handed to their waiters and the panic
    /// resumes. A `load` that asks this cache for one of the keys it is loading panics (it
    /// would wait for itself).
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use cachet::Cache;
    ///
    /// let cache: Cache<u64, String> = Cache::new(1_000);
    /// cache.insert(1, "cached".to_string());
    /// let found = cache.get_all_or_load(&[1, 2, 3], |missing: &[u64]| {
    ///     assert_eq!(missing, &[2, 3]); // one query for both, e.g. `WHERE id IN (2, 3)`
    ///     missing.iter().filter(|&&id| id != 3).map(|&id| (id, format!("row {id}"))).collect::<Vec<_>>()
    /// });
    /// assert_eq!(found.len(), 2); // key 3 was not found
    /// assert_eq!(found[&2], "row 2");
    /// assert_eq!(cache.get(&2).as_deref(), Some("row 2"));
    /// ```
    pub fn get_all_or_load<'q, Q, I, F, R>(&self, keys: I, mut load: F) -> HashMap<K, V>
    where
        Q: ?Sized + Hash + Equivalent<K> + ToOwned<Owned = K> + 'q,
        I: IntoIterator<Item = &'q Q>,
        F: FnMut(&[K]) -> R,
        R: IntoIterator<Item = (K, V)>,
    {
        infallible(self.get_all_or_try_load(keys, |missing| Ok::<R, Infallible>(load(missing))))
    }

    /// Like [`get_all_or_load`](Self::get_all_or_load), for a fallible batch loader. Each key
    /// gets its value or the error of the load that covered it: when `load` fails, every key
    /// it was asked for gets that error (shared, `Arc<E>`), as do the other callers waiting on
    /// those keys; a key that joined another caller's failed load gets that load's error.
    ///
    /// # Panics
    ///
    /// As [`get_all_or_load`](Self::get_all_or_load).
    pub fn get_all_or_try_load<'q, Q, I, F, R, E>(
        &self,
        keys: I,
        mut load: F,
    ) -> BatchResult<K, V, E>
    where
        Q: ?Sized + Hash + Equivalent<K> + ToOwned<Owned = K> + 'q,
        I: IntoIterator<Item = &'q Q>,
        F: FnMut(&[K]) -> Result<R, E>,
        R: IntoIterator<Item = (K, V)>,
        E: Send + Sync + 'static,
    {
        let mut out = HashMap::new();
        let mut todo: Vec<K> = keys.into_iter().map(ToOwned::to_owned).collect();
        let mut first = true;
        while !todo.is_empty() {
            let round = self.begin_round(todo, std::mem::take(&mut first), &mut out);
            if !round.lead_keys.is_empty() {
                let leads = self.leads(&round);
                let result = {
                    let _leading = Leading::enter(round.leads.iter().map(|l| &*l.1));
                    load(&round.lead_keys)
                };
                Self::finish_round(leads, result, &mut out);
            }
            todo = Vec::new();
            for join in round.joins {
                check_not_leading(&join.flight);
                let outcome = join.flight.wait(None).expect("no deadline was given");
                self.joined(join, outcome, &mut out, &mut todo);
            }
        }
        out
    }

    /// Async [`get_all_or_load`](Self::get_all_or_load): `load` gets the missing keys (owned)
    /// and returns a future.
    ///
    /// # Panics
    ///
    /// As [`get_all_or_load`](Self::get_all_or_load) (a loader that awaits this cache's load
    /// of one of its keys, in the same task, panics).
    pub async fn get_all_or_load_async<'q, Q, I, F, Fut, R>(
        &self,
        keys: I,
        mut load: F,
    ) -> HashMap<K, V>
    where
        Q: ?Sized + Hash + Equivalent<K> + ToOwned<Owned = K> + 'q,
        I: IntoIterator<Item = &'q Q>,
        F: FnMut(Vec<K>) -> Fut,
        Fut: Future<Output = R>,
        R: IntoIterator<Item = (K, V)>,
    {
        let load = |missing| {
            let fut = load(missing);
            async move { Ok::<R, Infallible>(fut.await) }
        };
        infallible(self.get_all_or_try_load_async(keys, load).await)
    }

    /// Async [`get_all_or_try_load`](Self::get_all_or_try_load). If this future is dropped
    /// while its loader runs, the loads it led are handed to their waiters.
    ///
    /// # Panics
    ///
    /// As [`get_all_or_load_async`](Self::get_all_or_load_async).
    pub async fn get_all_or_try_load_async<'q, Q, I, F, Fut, R, E>(
        &self,
        keys: I,
        mut load: F,
    ) -> BatchResult<K, V, E>
    where
        Q: ?Sized + Hash + Equivalent<K> + ToOwned<Owned = K> + 'q,
        I: IntoIterator<Item = &'q Q>,
        F: FnMut(Vec<K>) -> Fut,
        Fut: Future<Output = Result<R, E>>,
        R: IntoIterator<Item = (K, V)>,
        E: Send + Sync + 'static,
    {
        let mut out = HashMap::new();
        let mut todo: Vec<K> = keys.into_iter().map(ToOwned::to_owned).collect();
        let mut first = true;
        while !todo.is_empty() {
            let round = self.begin_round(todo, std::mem::take(&mut first), &mut out);
            if !round.lead_keys.is_empty() {
                let leads = self.leads(&round);
                let ids = round.leads.iter().map(|l| l.1.id()).collect();
                let result = Leading::run(ids, load(round.lead_keys.clone())).await;
                Self::finish_round(leads, result, &mut out);
            }
            todo = Vec::new();
            for join in round.joins {
                check_not_leading(&join.flight);
                let wait = Wait::new(&join.flight);
                let outcome = wait.await;
                self.joined(join, outcome, &mut out, &mut todo);
            }
        }
        out
    }

    /// Sorts `keys` into hits (straight into `out`), loads to join and loads to lead. `first`:
    /// the batch's first round, whose lookups the statistics count (a later round retries keys
    /// whose loads were abandoned, already counted).
    fn begin_round<E>(
        &self,
        keys: Vec<K>,
        first: bool,
        out: &mut BatchResult<K, V, E>,
    ) -> Round<K, V> {
        let mut round = Round {
            lead_keys: Vec::new(),
            leads: Vec::new(),
            joins: Vec::new(),
        };
        let sorted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for k in keys {
                if out.contains_key(&k) {
                    continue; // a duplicate
                }
                let at = self.hash(&k);
                if first {
                    if let Some(v) = self.get_at(at, &k) {
                        out.insert(k, Ok(v));
                        continue;
                    }
                }
                match self.begin_load(at, &k, first) {
                    Begin::Hit(v) => {
                        out.insert(k, Ok(v));
                    }
                    Begin::Join(flight) | Begin::Remembered(flight) => {
                        round.joins.push(Joined { key: k, at, flight })
                    }
                    Begin::Lead(flight) => {
                        round.lead_keys.push(k);
                        round.leads.push((at, flight));
                    }
                }
            }
        }));
        if let Err(panic) = sorted {
            // User code (a hash, `Eq`, a `Clone`) panicked part-way: the loads this round
            // registered would never be settled, so free them before unwinding.
            drop(self.leads(&round));
            std::panic::resume_unwind(panic);
        }
        round
    }

    /// The guards of the loads a round leads (dropped unsettled, they hand the loads over).
    fn leads<'a>(&'a self, round: &'a Round<K, V>) -> Vec<Lead<'a, K, V, S, K>> {
        round
            .lead_keys
            .iter()
            .zip(&round.leads)
            .map(|(k, (at, f))| Lead::new(self, *at, k, Arc::clone(f)))
            .collect()
    }

    /// Settles every load a round led with the batch loader's answer.
    fn finish_round<R, E>(
        leads: Vec<Lead<'_, K, V, S, K>>,
        result: Result<R, E>,
        out: &mut BatchResult<K, V, E>,
    ) where
        R: IntoIterator<Item = (K, V)>,
        E: Send + Sync + 'static,
    {
        match result {
            Ok(found) => {
                let mut found: HashMap<K, V> = found.into_iter().collect();
                for lead in leads {
                    let key = lead.key.clone();
                    match found.remove(&key) {
                        Some(v) => {
                            if let Ok(Some(v)) = lead.settle::<E>(Ok(Some(v))) {
                                out.insert(key, Ok(v));
                            }
                        }
                        None => {
                            let _ = lead.settle::<E>(Ok(None)); // not found: no entry in `out`
                        }
                    }
                }
            }
            Err(e) => {
                let e = Arc::new(e);
                for lead in leads {
                    let key = lead.key.clone();
                    let _ = lead.settle::<E>(Err(Arc::clone(&e)));
                    out.insert(key, Err(Arc::clone(&e)));
                }
            }
        }
    }

    /// Handles the outcome of a load a batch joined: an answer, "not found", or a retry.
    fn joined<E>(
        &self,
        Joined { key: k, at, flight }: Joined<K, V>,
        outcome: Outcome<V>,
        out: &mut BatchResult<K, V, E>,
        todo: &mut Vec<K>,
    ) where
        E: Send + Sync + 'static,
    {
        match outcome.next::<E>(true) {
            Next::Done(Ok(Some(v))) => {
                out.insert(k, Ok(v));
            }
            Next::Done(Ok(None)) => {} // not found
            Next::Done(Err(e)) => {
                out.insert(k, Err(e));
            }
            Next::Retry => todo.push(k),
            Next::RetryOwn => {
                self.abandon_load(at, flight.generation);
                todo.push(k);
            }
        }
    }
}
