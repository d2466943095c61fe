//! Model-based tests: random sequences of operations run against a `Cache<u64, u64>` and checked
//! against two reference models.
//!
//! - `history`: for every key that *may* be present, the last value inserted for it. A key leaves
//!   it when it is removed (`remove`, `retain`, `invalidate_all`, an insert too heavy to store) or
//!   when the cache is seen without it. Evictions are not predicted: "absent" is always allowed,
//!   but a value the cache returns must be the key's last inserted value.
//! - `snapshot`: the exact contents after the previous step (read back with `iter`). Reads,
//!   `remove`, `retain` and `invalidate_all` change the contents in a fully known way; only an
//!   insert may evict, and then only entries that were there (or the new one), and, in a
//!   single-shard cache, only as much as the capacity requires.
//!
//! After every step: `validate()` is Ok, `weighted_size() <= capacity()`, `len()` equals the
//! number of pairs `iter()` yields, those pairs have unique keys and agree with both models, and
//! `weighted_size()` is the sum of their weights.
//!
//! Hashing is deterministic (a seeded hasher, the seed drawn by proptest) so a failing case
//! replays; a variant squeezes all keys into a few hash values so the index's key comparison runs
//! on every lookup.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};

use cachet::Cache;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::TestCaseError;

// ---------------------------------------------------------------------------------------------
// A deterministic, seedable hasher (FNV-1a over the bytes, then a 64-bit finaliser), optionally
// folding every key into a handful of hash values.

#[derive(Clone, Debug)]
struct Seeded {
    seed: u64,
    /// When set, the hash only depends on `fnv(bytes) % classes`.
    classes: Option<u64>,
}

struct SeededHasher {
    state: u64,
    classes: Option<u64>,
}

fn fmix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

impl Hasher for SeededHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.state = (self.state ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        match self.classes {
            Some(c) => fmix64(self.state % c + 1),
            None => fmix64(self.state),
        }
    }
}

impl BuildHasher for Seeded {
    type Hasher = SeededHasher;

    fn build_hasher(&self) -> SeededHasher {
        SeededHasher {
            state: 0xcbf2_9ce4_8422_2325 ^ if self.classes.is_some() { 0 } else { self.seed },
            classes: self.classes,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Operations.

#[derive(Clone, Copy, Debug)]
enum Pred {
    EvenKeys,
    ValuesBelow(u64),
    KeyNotMultipleOf(u64),
    Nothing,
    Everything,
}

impl Pred {
    fn keep(self, k: u64, v: u64) -> bool {
        match self {
            Pred::EvenKeys => k % 2 == 0,
            Pred::ValuesBelow(x) => v < x,
            Pred::KeyNotMultipleOf(m) => k % m != 0,
            Pred::Nothing => false,
            Pred::Everything => true,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Get(u64),
    Peek(u64),
    ContainsKey(u64),
    Insert(u64, u64),
    Remove(u64),
    Retain(Pred),
    InvalidateAll,
    Len,
    Iter,
}

/// Keys in 0..64, with a hot subset so some keys are read and rewritten often.
fn key() -> impl Strategy<Value = u64> {
    prop_oneof![3 => 0..8u64, 7 => 0..64u64]
}

fn value() -> impl Strategy<Value = u64> {
    0..1000u64
}

fn pred() -> impl Strategy<Value = Pred> {
    prop_oneof![
        Just(Pred::EvenKeys),
        (0..1000u64).prop_map(Pred::ValuesBelow),
        (2..5u64).prop_map(Pred::KeyNotMultipleOf),
        Just(Pred::Nothing),
        Just(Pred::Everything),
    ]
}

/// Every operation.
fn any_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => key().prop_map(Op::Get),
        2 => key().prop_map(Op::Peek),
        2 => key().prop_map(Op::ContainsKey),
        8 => (key(), value()).prop_map(|(k, v)| Op::Insert(k, v)),
        2 => key().prop_map(Op::Remove),
        1 => pred().prop_map(Op::Retain),
        1 => Just(Op::InvalidateAll),
        1 => Just(Op::Len),
        1 => Just(Op::Iter),
    ]
}

/// Operations that never remove anything explicitly.
fn additive_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => key().prop_map(Op::Get),
        2 => key().prop_map(Op::Peek),
        2 => key().prop_map(Op::ContainsKey),
        8 => (key(), value()).prop_map(|(k, v)| Op::Insert(k, v)),
        1 => Just(Op::Len),
        1 => Just(Op::Iter),
    ]
}

// ---------------------------------------------------------------------------------------------
// The harness.

/// Weight of a value in the weighted variant: 0..=4, so 0 weights (counted as 1) are common.
fn weigh_value(v: u64) -> u32 {
    (v % 5) as u32
}

struct Harness {
    cache: Cache<u64, u64, Seeded>,
    capacity: u64,
    shards: usize,
    weighted: bool,
    /// No entry may ever be evicted (the capacity covers every key at its heaviest).
    never_evicts: bool,
    history: HashMap<u64, u64>,
    snapshot: HashMap<u64, u64>,
    step: usize,
}

impl Harness {
    fn new(
        capacity: u64,
        shards: usize,
        weighted: bool,
        hasher: Seeded,
        never_evicts: bool,
    ) -> Self {
        let b = Cache::builder()
            .max_capacity(capacity)
            .shards(shards)
            .hasher(hasher);
        let cache = if weighted {
            b.weigher(|_k: &u64, v: &u64| weigh_value(*v)).build()
        } else {
            b.build()
        }
        .expect("valid configuration");
        assert_eq!(cache.capacity(), capacity);
        // A count-bounded cache has no more shards than entries of capacity.
        let shards = if weighted {
            shards
        } else {
            shards.min(1 << capacity.max(1).ilog2())
        };
        assert_eq!(cache.shard_count(), shards);
        Harness {
            cache,
            capacity,
            shards,
            weighted,
            never_evicts,
            history: HashMap::new(),
            snapshot: HashMap::new(),
            step: 0,
        }
    }

    /// The weight the cache charges for `v` (0 counts as 1).
    fn weight(&self, v: u64) -> u64 {
        if self.weighted {
            u64::from(weigh_value(v).max(1))
        } else {
            1
        }
    }

    /// A value the cache returned for `k` must be the last one inserted for it.
    fn check_history(&self, what: &str, k: u64, v: u64) -> Result<(), TestCaseError> {
        prop_assert_eq!(
            self.history.get(&k),
            Some(&v),
            "step {}: {} returned {} for key {} which the history does not allow",
            self.step,
            what,
            v,
            k
        );
        Ok(())
    }

    fn check_read(&mut self, what: &str, k: u64, got: Option<u64>) -> Result<(), TestCaseError> {
        prop_assert_eq!(
            got,
            self.snapshot.get(&k).copied(),
            "step {}: {}({}) disagrees with the contents",
            self.step,
            what,
            k
        );
        match got {
            Some(v) => self.check_history(what, k, v)?,
            None => {
                self.history.remove(&k);
            }
        }
        Ok(())
    }

    fn apply(&mut self, op: Op) -> Result<(), TestCaseError> {
        self.step += 1;
        let pre = self.snapshot.clone();
        // The exact contents expected after the step; `None` for an insert, checked below.
        let mut expected = Some(pre.clone());
        match op {
            Op::Get(k) => {
                let got = self.cache.get(&k);
                self.check_read("get", k, got)?;
            }
            Op::Peek(k) => {
                let got = self.cache.peek(&k);
                self.check_read("peek", k, got)?;
            }
            Op::ContainsKey(k) => {
                let got = self.cache.contains_key(&k);
                prop_assert_eq!(
                    got,
                    pre.contains_key(&k),
                    "step {}: contains_key({})",
                    self.step,
                    k
                );
                if got {
                    prop_assert!(
                        self.history.contains_key(&k),
                        "step {}: phantom key {}",
                        self.step,
                        k
                    );
                } else {
                    self.history.remove(&k);
                }
            }
            Op::Insert(k, v) => {
                let old = self.cache.insert(k, v);
                prop_assert_eq!(
                    old,
                    pre.get(&k).copied(),
                    "step {}: insert({}, {}) returned the wrong previous value",
                    self.step,
                    k,
                    v
                );
                if let Some(o) = old {
                    self.check_history("insert", k, o)?;
                }
                // Heavier than the whole capacity: not stored, and the old value is gone.
                let too_heavy = self.weight(v) > self.capacity;
                if too_heavy {
                    self.history.remove(&k);
                    prop_assert!(
                        !self.cache.contains_key(&k),
                        "step {}: an entry of weight {} was stored with capacity {} / {} shards",
                        self.step,
                        self.weight(v),
                        self.capacity,
                        self.shards
                    );
                } else {
                    self.history.insert(k, v);
                }
                expected = None;
            }
            Op::Remove(k) => {
                let got = self.cache.remove(&k);
                prop_assert_eq!(
                    got,
                    pre.get(&k).copied(),
                    "step {}: remove({})",
                    self.step,
                    k
                );
                if let Some(v) = got {
                    self.check_history("remove", k, v)?;
                }
                self.history.remove(&k);
                prop_assert!(
                    !self.cache.contains_key(&k),
                    "step {}: {} survived remove",
                    self.step,
                    k
                );
                expected.as_mut().unwrap().remove(&k);
            }
            Op::Retain(p) => {
                let mut visited = Vec::new();
                self.cache.retain(|&k, &v| {
                    visited.push((k, v));
                    p.keep(k, v)
                });
                let mut seen = HashMap::new();
                for &(k, v) in &visited {
                    prop_assert!(
                        seen.insert(k, v).is_none(),
                        "step {}: retain visited key {} twice",
                        self.step,
                        k
                    );
                }
                prop_assert_eq!(
                    &seen,
                    &pre,
                    "step {}: retain visited the wrong entries",
                    self.step
                );
                self.history.retain(|&k, &mut v| p.keep(k, v));
                expected.as_mut().unwrap().retain(|&k, &mut v| p.keep(k, v));
            }
            Op::InvalidateAll => {
                self.cache.invalidate_all();
                self.history.clear();
                prop_assert!(
                    self.cache.is_empty(),
                    "step {}: not empty after invalidate_all",
                    self.step
                );
                prop_assert_eq!(self.cache.weighted_size(), 0);
                expected = Some(HashMap::new());
            }
            Op::Len => {
                let n = self.cache.len();
                prop_assert_eq!(n, pre.len(), "step {}: len", self.step);
                prop_assert_eq!(self.cache.is_empty(), n == 0);
            }
            Op::Iter => {} // `iter` runs after every step below.
        }
        let post = self.check_invariants()?;
        match expected {
            Some(e) => prop_assert_eq!(&post, &e, "step {}: contents after {:?}", self.step, op),
            None => {
                let Op::Insert(k, v) = op else { unreachable!() };
                self.check_insert(k, v, &pre, &post)?;
            }
        }
        // The cache was just seen in full: keys it lacks are certainly not present.
        self.history.retain(|k, _| post.contains_key(k));
        self.snapshot = post;
        Ok(())
    }

    /// After `insert(k, v)`: every entry is one that was there (with `k` now mapping to `v`), and
    /// evictions happen only when needed.
    fn check_insert(
        &self,
        k: u64,
        v: u64,
        pre: &HashMap<u64, u64>,
        post: &HashMap<u64, u64>,
    ) -> Result<(), TestCaseError> {
        let mut candidates = pre.clone();
        candidates.insert(k, v);
        for (pk, pv) in post {
            prop_assert_eq!(
                candidates.get(pk),
                Some(pv),
                "step {}: after insert({}, {}) the cache holds {} -> {}",
                self.step,
                k,
                v,
                pk,
                pv
            );
        }
        if self.never_evicts {
            prop_assert_eq!(
                post,
                &candidates,
                "step {}: an entry was evicted",
                self.step
            );
        }
        if self.shards == 1 {
            // One shard owns the whole capacity, so eviction must stop as soon as the rest fits.
            if self.weight(v) > self.capacity {
                candidates.remove(&k);
            }
            let wanted: u64 = candidates.values().map(|&x| self.weight(x)).sum();
            let evicted: Vec<u64> = candidates
                .keys()
                .filter(|c| !post.contains_key(c))
                .copied()
                .collect();
            if wanted <= self.capacity {
                prop_assert!(
                    evicted.is_empty(),
                    "step {}: evicted {:?} although {} fits in {}",
                    self.step,
                    evicted,
                    wanted,
                    self.capacity
                );
            }
            if let Some(heaviest) = evicted.iter().map(|e| self.weight(candidates[e])).max() {
                let left: u64 = post.values().map(|&x| self.weight(x)).sum();
                prop_assert!(
                    left + heaviest > self.capacity,
                    "step {}: evicted {:?} but {} + {} still fits in {}",
                    self.step,
                    evicted,
                    left,
                    heaviest,
                    self.capacity
                );
            }
        }
        Ok(())
    }

    /// Checks what must hold after every step and returns the contents.
    fn check_invariants(&self) -> Result<HashMap<u64, u64>, TestCaseError> {
        let step = self.step;
        if let Err(e) = self.cache.validate() {
            return Err(TestCaseError::fail(format!("step {step}: validate: {e}")));
        }
        let size = self.cache.weighted_size();
        prop_assert!(
            size <= self.cache.capacity(),
            "step {}: weighted_size {} > capacity {}",
            step,
            size,
            self.cache.capacity()
        );
        let pairs: Vec<(u64, u64)> = self.cache.iter().collect();
        prop_assert_eq!(self.cache.len(), pairs.len(), "step {}: len vs iter", step);
        prop_assert_eq!(self.cache.is_empty(), pairs.is_empty());
        let mut contents = HashMap::new();
        for &(k, v) in &pairs {
            prop_assert!(
                contents.insert(k, v).is_none(),
                "step {}: iter yielded {} twice",
                step,
                k
            );
            self.check_history("iter", k, v)?;
        }
        let weight: u64 = pairs.iter().map(|&(_, v)| self.weight(v)).sum();
        prop_assert_eq!(
            size,
            weight,
            "step {}: weighted_size vs the entries' weights",
            step
        );
        if !self.weighted {
            prop_assert!(pairs.len() as u64 <= self.capacity);
        }
        Ok(contents)
    }
}

fn run(mut h: Harness, ops: &[Op]) -> Result<(), TestCaseError> {
    h.check_invariants()?;
    for &op in ops {
        h.apply(op)?;
    }
    // Drain: every key the model allows must read back consistently, then removal empties it.
    for k in 0..64 {
        h.apply(Op::Get(k))?;
    }
    for k in 0..64 {
        h.apply(Op::Remove(k))?;
    }
    prop_assert!(h.cache.is_empty());
    Ok(())
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn hasher(seed: u64) -> Seeded {
    Seeded {
        seed,
        classes: None,
    }
}

proptest! {
    #![proptest_config(config(400))]

    #[test]
    fn unweighted_matches_model(
        capacity in select(vec![0u64, 1, 2, 3, 10, 50]),
        shards in select(vec![1usize, 2, 4]),
        seed in any::<u64>(),
        ops in proptest::collection::vec(any_op(), 1..200),
    ) {
        run(Harness::new(capacity, shards, false, hasher(seed), false), &ops)?;
    }

    #[test]
    fn weighted_matches_model(
        capacity in select(vec![0u64, 1, 2, 7, 30]),
        shards in select(vec![1usize, 2, 4]),
        seed in any::<u64>(),
        ops in proptest::collection::vec(any_op(), 1..200),
    ) {
        run(Harness::new(capacity, shards, true, hasher(seed), false), &ops)?;
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Few distinct hashes: every lookup walks entries with an equal hash and compares keys.
    #[test]
    fn colliding_hashes_match_model(
        capacity in select(vec![1u64, 3, 10, 50]),
        shards in select(vec![1usize, 2, 4]),
        classes in 1..4u64,
        weighted in any::<bool>(),
        ops in proptest::collection::vec(any_op(), 1..200),
    ) {
        let h = Seeded { seed: 0, classes: Some(classes) };
        run(Harness::new(capacity, shards, weighted, h, false), &ops)?;
    }
}

proptest! {
    #![proptest_config(config(150))]

    /// With room for every key in every shard, nothing is evicted and the model is exact:
    /// a get after an insert must return the inserted value.
    #[test]
    fn nothing_is_evicted_when_everything_fits(
        shards in select(vec![1usize, 2, 4]),
        slack in 0..3u64,
        seed in any::<u64>(),
        ops in proptest::collection::vec(additive_op(), 1..200),
    ) {
        // 64 keys; a shard may receive all of them.
        let capacity = 64 * shards as u64 + slack;
        let mut h = Harness::new(capacity, shards, false, hasher(seed), true);
        for &op in &ops {
            h.apply(op)?;
        }
        let inserted: HashMap<u64, u64> = ops.iter().filter_map(|op| match *op {
            Op::Insert(k, v) => Some((k, v)),
            _ => None,
        }).collect();
        for (k, v) in &inserted {
            prop_assert_eq!(h.cache.get(k), Some(*v));
        }
        prop_assert_eq!(h.cache.len(), inserted.len());
    }

    #[test]
    fn nothing_is_evicted_when_everything_fits_weighted(
        shards in select(vec![1usize, 2, 4]),
        seed in any::<u64>(),
        ops in proptest::collection::vec(additive_op(), 1..200),
    ) {
        // 64 keys of weight at most 4 each.
        let capacity = 4 * 64 * shards as u64;
        let mut h = Harness::new(capacity, shards, true, hasher(seed), true);
        for &op in &ops {
            h.apply(op)?;
        }
        let inserted: HashMap<u64, u64> = ops.iter().filter_map(|op| match *op {
            Op::Insert(k, v) => Some((k, v)),
            _ => None,
        }).collect();
        let keys: HashSet<u64> = h.cache.iter().map(|(k, _)| k).collect();
        prop_assert_eq!(keys.len(), inserted.len());
        for (k, v) in &inserted {
            prop_assert_eq!(h.cache.get(k), Some(*v));
        }
        let weight: u64 = inserted.values().map(|&v| u64::from(weigh_value(v).max(1))).sum();
        prop_assert_eq!(h.cache.weighted_size(), weight);
    }
}

/// The harness itself must notice a wrong answer: a model that forgets an insert is caught.
#[test]
fn harness_detects_a_divergence() {
    let mut h = Harness::new(10, 1, false, hasher(1), true);
    h.apply(Op::Insert(1, 5)).unwrap();
    // Pretend the cache should not hold key 1.
    h.snapshot.remove(&1);
    assert!(h.apply(Op::Get(1)).is_err());

    let mut h = Harness::new(10, 1, false, hasher(1), true);
    h.apply(Op::Insert(1, 5)).unwrap();
    h.history.insert(1, 6);
    assert!(h.apply(Op::Peek(1)).is_err());
}

// ---------------------------------------------------------------------------------------------
// Long single-threaded runs: enough requests for the policy's adaptation (which samples hit
// ratios over at least a thousand requests) to resize the window back and forth, with workload
// phases that favour frequency, then recency, then scans. Checked against the history model.

struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn long_run(cache: &Cache<u64, u64, Seeded>, weigh: Option<fn(u64) -> u32>, seed: u64) {
    let mut rng = XorShift(seed | 1);
    let mut history: HashMap<u64, u64> = HashMap::new();
    let mut next_value = 0u64;
    let cap = cache.capacity();
    for step in 0..120_000u64 {
        let phase = (step / 10_000) % 3;
        let key = match phase {
            // Frequency: a hot set and a long tail.
            0 => {
                if rng.below(10) < 7 {
                    rng.below(cap / 2 + 1)
                } else {
                    rng.below(5_000)
                }
            }
            // Recency: keys near a moving point.
            1 => 10_000 + step / 4 + rng.below(cap),
            // Scan mixed with a small hot set.
            _ => {
                if rng.below(2) == 0 {
                    step
                } else {
                    rng.below(cap / 4 + 1)
                }
            }
        };
        match cache.get(&key) {
            Some(v) => assert_eq!(history.get(&key), Some(&v), "step {step}: get({key})"),
            None => {
                next_value += 1;
                let v = next_value;
                if let Some(old) = cache.insert(key, v) {
                    panic!("step {step}: insert({key}) replaced {old} right after a miss");
                }
                history.insert(key, v);
            }
        }
        match rng.below(100) {
            0 => {
                let k = rng.below(5_000);
                if let Some(v) = cache.remove(&k) {
                    assert_eq!(history.get(&k), Some(&v), "step {step}: remove({k})");
                }
                history.remove(&k);
            }
            1 => {
                // Update an existing key (its weight may change).
                let k = rng.below(cap / 2 + 1);
                next_value += 1;
                if let Some(old) = cache.insert(k, next_value) {
                    assert_eq!(history.get(&k), Some(&old), "step {step}: replace({k})");
                }
                history.insert(k, next_value);
            }
            2 => {
                let k = rng.below(5_000);
                if let Some(v) = cache.peek(&k) {
                    assert_eq!(history.get(&k), Some(&v), "step {step}: peek({k})");
                }
            }
            _ => {}
        }
        assert!(cache.weighted_size() <= cap, "step {step}: over capacity");
        if step % 1000 == 0 {
            if let Err(e) = cache.validate() {
                panic!("step {step}: validate: {e}");
            }
            let mut size = 0;
            for (k, v) in cache.iter() {
                assert_eq!(history.get(&k), Some(&v), "step {step}: iter {k}");
                size += weigh.map_or(1, |w| u64::from(w(v).max(1)));
            }
            assert_eq!(size, cache.weighted_size(), "step {step}: weighted_size");
            // Forget what was evicted, so the history stays small.
            history.retain(|k, _| cache.contains_key(k));
        }
    }
    cache.validate().unwrap();
}

#[test]
fn long_runs_keep_invariants() {
    for (cap, shards) in [(1u64, 1usize), (10, 1), (64, 1), (64, 2)] {
        let cache = Cache::builder()
            .max_capacity(cap)
            .shards(shards)
            .hasher(hasher(cap))
            .build()
            .unwrap();
        long_run(&cache, None, cap + 17);
    }
}

fn weigh_long(v: u64) -> u32 {
    (v % 9) as u32
}

#[test]
fn long_runs_keep_invariants_weighted() {
    for (cap, shards) in [(8u64, 1usize), (100, 1), (100, 2)] {
        let cache = Cache::builder()
            .max_capacity(cap)
            .shards(shards)
            .hasher(hasher(cap))
            .weigher(|_k, v: &u64| weigh_long(*v))
            .build()
            .unwrap();
        long_run(&cache, Some(weigh_long), cap + 5);
    }
}
