//! Model-based tests of expiration: random sequences of operations, with the mock clock moved
//! between them, run against a `Cache<u64, u64>` and checked against a reference model.
//!
//! The model holds, per key, the value last stored and its deadline (plus, for time-to-idle,
//! the latest deadline its last write allows). Every inserted value is unique, so each
//! notification names exactly one value. The model mirrors the cache's entries exactly, expired
//! ones not yet removed included: a value leaves the model only when the listener reports it.
//!
//! Checked on every step:
//! - reads (`get`, `peek`, `contains_key`, `iter`, `len`) return exactly the model's unexpired
//!   entries: a value is absent only if the listener already reported it, and never returned
//!   once its deadline has passed;
//! - `insert` and `remove` return the previous value exactly when it had not expired;
//! - every notification is for a value still in the model (or one the step displaced), once,
//!   with the right cause: `Replaced` for an overwritten live value, `Explicit` for `remove`,
//!   `retain` and `invalidate_all` of a live value, `Expired` exactly when the value's deadline
//!   is at or before now, `Evicted` otherwise (and, in a one-shard cache, only as far as the
//!   capacity requires);
//! - after `len`, `run_pending_maintenance`, `retain` and `invalidate_all`, no expired value is
//!   left unreported;
//! - `validate()` is Ok.
//!
//! Two variants aim at the hardest cases: `tti_with_insert_with_ttl_matches_model` (reads that
//! move a deadline earlier) and `month_long_jumps_match_model` (shards idle past 2^31 ms).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cachet::{Cache, Clock, MockClock, RemovalCause};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::TestCaseError;

const KEYS: u64 = 24;
/// The longest lifetime, in milliseconds.
const MAX_LIFE: u64 = 1 << 30;
const DAY: u64 = 24 * 60 * 60 * 1000;
/// `InsertWithTtl` with this lifetime passes `Duration::MAX`.
const FOREVER: u64 = u64::MAX;

// ---------------------------------------------------------------------------------------------
// A deterministic, seedable hasher, so a failing case replays with the same shard assignment.

#[derive(Clone, Debug)]
struct Seeded(u64);

struct SeededHasher(u64);

impl Hasher for SeededHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^ (x >> 33)
    }
}

impl BuildHasher for Seeded {
    type Hasher = SeededHasher;
    fn build_hasher(&self) -> SeededHasher {
        SeededHasher(0xcbf2_9ce4_8422_2325 ^ self.0)
    }
}

// ---------------------------------------------------------------------------------------------
// Operations.

#[derive(Clone, Copy, Debug)]
enum Op {
    Advance(u64),
    Get(u64),
    Peek(u64),
    ContainsKey(u64),
    Insert(u64),
    /// Key and lifetime in ms (`FOREVER`: `Duration::MAX`).
    InsertWithTtl(u64, u64),
    Remove(u64),
    /// Keeps keys that are not multiples of the argument.
    Retain(u64),
    InvalidateAll,
    Len,
    Maintain,
    Iter,
}

fn key() -> impl Strategy<Value = u64> {
    prop_oneof![5 => 0..6u64, 5 => 0..KEYS]
}

/// Time steps: none, a tick, small, around the configured lifetimes, and big jumps (past the
/// wheel's lag bound of 2^29 ms included).
fn advance(big: impl Strategy<Value = u64> + 'static) -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => Just(0u64),
        3 => 1..=3u64,
        4 => 4..=30u64,
        6 => 40..=160u64,
        3 => 900..=1100u64,
        2 => 5_000..=200_000u64,
        1 => big,
    ]
}

fn big_jump() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just((1 << 29) + 1),
        (1u64 << 20)..(1 << 30),
        Just(MAX_LIFE),
        Just(7 * DAY)
    ]
}

fn lifetime() -> impl Strategy<Value = u64> {
    prop_oneof![
        2 => Just(0u64),
        3 => 1..=5u64,
        5 => 40..=160u64,
        2 => 900..=1100u64,
        1 => 1_000_000..=100_000_000u64,
        1 => Just(12 * DAY),
        1 => Just(FOREVER),
    ]
}

fn op(with_ttl: bool, big: fn() -> BoxedStrategy<u64>) -> impl Strategy<Value = Op> {
    prop_oneof![
        7 => advance(big()).prop_map(Op::Advance),
        6 => key().prop_map(Op::Get),
        2 => key().prop_map(Op::Peek),
        2 => key().prop_map(Op::ContainsKey),
        8 => key().prop_map(Op::Insert),
        5 => (key(), lifetime()).prop_map(move |(k, l)| if with_ttl {
            Op::InsertWithTtl(k, l)
        } else {
            Op::Insert(k)
        }),
        2 => key().prop_map(Op::Remove),
        1 => (2..5u64).prop_map(Op::Retain),
        1 => Just(Op::InvalidateAll),
        1 => Just(Op::Len),
        1 => Just(Op::Maintain),
        1 => Just(Op::Iter),
    ]
}

fn big_boxed() -> BoxedStrategy<u64> {
    big_jump().boxed()
}

/// Jumps of a month and more: past 2^31 ms, where 32-bit deadlines wrap.
fn huge_boxed() -> BoxedStrategy<u64> {
    prop_oneof![big_jump(), Just(30 * DAY), Just(45 * DAY)].boxed()
}

// ---------------------------------------------------------------------------------------------
// The model.

#[derive(Clone, Copy, Debug)]
struct Config {
    capacity: u64,
    shards: usize,
    ttl: Option<u64>,
    tti: Option<u64>,
    /// Run maintenance before the clock gets 2^31 ms ahead of the last full maintenance, so that
    /// only `month_long_jumps_match_model` (which turns it off) covers shards idle past that.
    sync_before_wrap: bool,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    value: u64,
    /// `u64::MAX`: no deadline.
    deadline: u64,
    /// The latest a read may push the deadline to.
    cap: u64,
}

type Log = Arc<Mutex<Vec<(u64, u64, RemovalCause)>>>;

struct Harness {
    cfg: Config,
    cache: Cache<u64, u64, Seeded>,
    time: MockClock,
    log: Log,
    now: u64,
    /// Time of the last operation that removed every expired entry.
    synced: u64,
    model: HashMap<u64, Entry>,
    /// Values this step displaced, with the key and cause their notification must carry.
    displaced: HashMap<u64, (u64, RemovalCause)>,
    next_value: u64,
    step: usize,
}

use RemovalCause::{Evicted, Expired, Explicit, Replaced};

impl Harness {
    fn new(cfg: Config, seed: u64) -> Harness {
        let time = MockClock::new();
        let log: Log = Arc::default();
        let sink = Arc::clone(&log);
        let mut b = Cache::builder()
            .max_capacity(cfg.capacity)
            .shards(cfg.shards)
            .hasher(Seeded(seed))
            .clock(Clock::mock(&time))
            .eviction_listener(move |k, v, cause| sink.lock().unwrap().push((k, v, cause)));
        if let Some(ttl) = cfg.ttl {
            b = b.time_to_live(Duration::from_millis(ttl));
        }
        if let Some(tti) = cfg.tti {
            b = b.time_to_idle(Duration::from_millis(tti));
        }
        Harness {
            cfg,
            cache: b.build().expect("valid configuration"),
            time,
            log,
            now: 0,
            synced: 0,
            model: HashMap::new(),
            displaced: HashMap::new(),
            next_value: 0,
            step: 0,
        }
    }

    fn live(&self, e: &Entry) -> bool {
        e.deadline > self.now
    }

    fn live_entries(&self) -> HashMap<u64, u64> {
        self.model
            .iter()
            .filter(|(_, e)| self.live(e))
            .map(|(&k, e)| (k, e.value))
            .collect()
    }

    /// The deadline of a write by `insert` (`None` lifetime) or `insert_with_ttl`.
    fn written(&self, value: u64, fixed: Option<u64>) -> Entry {
        let now = self.now;
        match fixed {
            Some(ms) => {
                let d = now + ms.min(MAX_LIFE);
                Entry {
                    value,
                    deadline: d,
                    cap: d,
                }
            }
            None => {
                let ttl = self.cfg.ttl.map(|t| now + t);
                let tti = self.cfg.tti.map(|t| now + t);
                let deadline = match (ttl, tti) {
                    (Some(a), Some(b)) => a.min(b),
                    (a, b) => a.or(b).unwrap_or(u64::MAX),
                };
                Entry {
                    value,
                    deadline,
                    cap: ttl.unwrap_or(u64::MAX),
                }
            }
        }
    }

    /// Takes `k`'s entry out of the model as displaced by this step: a live value with
    /// `live_cause`, an expired one as expired. Returns the live value, if any.
    fn displace(&mut self, k: u64, live_cause: RemovalCause) -> Option<u64> {
        let e = self.model.remove(&k)?;
        let live = self.live(&e);
        let cause = if live { live_cause } else { Expired };
        self.displaced.insert(e.value, (k, cause));
        live.then_some(e.value)
    }

    fn insert(&mut self, k: u64, fixed: Option<u64>) -> Result<(), TestCaseError> {
        self.next_value += 1;
        let v = self.next_value;
        let expected = self.displace(k, Replaced);
        let e = self.written(v, fixed);
        if e.deadline <= self.now {
            self.displaced.insert(v, (k, Expired)); // a zero lifetime: never stored
        } else {
            self.model.insert(k, e);
        }
        let got = match fixed {
            None => self.cache.insert(k, v),
            Some(FOREVER) => self.cache.insert_with_ttl(k, v, Duration::MAX),
            Some(ms) => self.cache.insert_with_ttl(k, v, Duration::from_millis(ms)),
        };
        prop_assert_eq!(got, expected, "step {}: insert({}) returned", self.step, k);
        Ok(())
    }

    fn apply(&mut self, op: Op) -> Result<(), TestCaseError> {
        self.step += 1;
        let step = self.step;
        let before = self.model.len();
        let mut clean_after = false;
        match op {
            Op::Advance(ms) => {
                if self.cfg.sync_before_wrap && self.now + ms - self.synced >= 1 << 31 {
                    self.apply(Op::Maintain)?;
                    self.step += 1;
                }
                self.time.advance(Duration::from_millis(ms));
                self.now += ms;
            }
            Op::Get(k) => {
                let want = self.model.get(&k).filter(|e| self.live(e)).map(|e| e.value);
                let got = self.cache.get(&k);
                prop_assert_eq!(got, want, "step {}: get({}) at {}", step, k, self.now);
                if let (Some(_), Some(tti)) = (got, self.cfg.tti) {
                    let e = self.model.get_mut(&k).unwrap();
                    e.deadline = (self.now + tti).min(e.cap);
                }
            }
            Op::Peek(k) => {
                let want = self.model.get(&k).filter(|e| self.live(e)).map(|e| e.value);
                let got = self.cache.peek(&k);
                prop_assert_eq!(got, want, "step {}: peek({}) at {}", step, k, self.now);
            }
            Op::ContainsKey(k) => {
                let want = self.model.get(&k).is_some_and(|e| self.live(e));
                let got = self.cache.contains_key(&k);
                prop_assert_eq!(got, want, "step {}: contains_key({})", step, k);
            }
            Op::Insert(k) => self.insert(k, None)?,
            Op::InsertWithTtl(k, ms) => self.insert(k, Some(ms))?,
            Op::Remove(k) => {
                let want = self.displace(k, Explicit);
                let got = self.cache.remove(&k);
                prop_assert_eq!(got, want, "step {}: remove({}) at {}", step, k, self.now);
            }
            Op::Retain(m) => {
                let live = self.live_entries();
                for (&k, e) in &self.model.clone() {
                    if !self.live(e) || k % m == 0 {
                        self.displace(k, Explicit);
                    }
                }
                let mut seen = HashMap::new();
                self.cache.retain(|&k, &v| {
                    seen.insert(k, v);
                    k % m != 0
                });
                prop_assert_eq!(seen, live, "step {}: retain visited", step);
                clean_after = true;
            }
            Op::InvalidateAll => {
                for k in self.model.keys().copied().collect::<Vec<_>>() {
                    self.displace(k, Explicit);
                }
                self.cache.invalidate_all();
            }
            Op::Len => {
                // `len` only looks: it counts what is stored, live or expired (some expired
                // entries may be removed already, reported but not yet settled), and reports
                // nothing. Once the expired entries are removed, it counts the live ones.
                let reported = self.log.lock().unwrap().len();
                let len = self.cache.len();
                let (live, stored) = (self.live_entries().len(), self.model.len());
                prop_assert!(
                    live <= len && len <= stored,
                    "step {}: len {} at {}, {} live, {} stored",
                    step,
                    len,
                    self.now,
                    live,
                    stored
                );
                let after = self.log.lock().unwrap().len();
                prop_assert_eq!(after, reported, "step {}: len reported removals", step);
                self.cache.run_pending_maintenance();
                let want = self.live_entries().len();
                prop_assert_eq!(self.cache.len(), want, "step {}: len at {}", step, self.now);
                clean_after = true;
            }
            Op::Maintain => {
                self.cache.run_pending_maintenance();
                clean_after = true;
            }
            Op::Iter => {} // `iter` runs after every step below.
        }
        self.settle(op, before)?;
        if clean_after {
            let left: Vec<_> = self
                .model
                .iter()
                .filter(|(_, e)| !self.live(e))
                .map(|(k, e)| (*k, *e))
                .collect();
            prop_assert!(
                left.is_empty(),
                "step {}: expired entries not removed by {:?} at {}: {:?}",
                step,
                op,
                self.now,
                left
            );
            self.synced = self.now;
        }
        self.check()
    }

    /// Matches this step's notifications against the model.
    fn settle(&mut self, op: Op, before: usize) -> Result<(), TestCaseError> {
        let step = self.step;
        let got = std::mem::take(&mut *self.log.lock().unwrap());
        let mut evicted = 0;
        for (k, v, cause) in got {
            if let Some((dk, dc)) = self.displaced.remove(&v) {
                prop_assert_eq!(
                    (k, cause),
                    (dk, dc),
                    "step {}: value {} ({:?})",
                    step,
                    v,
                    op
                );
                continue;
            }
            let e = self.model.get(&k).copied();
            prop_assert!(
                e.is_some_and(|e| e.value == v),
                "step {}: {:?} reported ({}, {}, {:?}), not in the model (reported twice?)",
                step,
                op,
                k,
                v,
                cause
            );
            let e = e.unwrap();
            let want = if self.live(&e) { Evicted } else { Expired };
            prop_assert_eq!(
                cause,
                want,
                "step {}: {:?}: ({}, {}) with deadline {} at {}",
                step,
                op,
                k,
                v,
                e.deadline,
                self.now
            );
            if cause == Evicted {
                prop_assert!(
                    matches!(op, Op::Insert(_) | Op::InsertWithTtl(..)),
                    "step {}: {:?} evicted",
                    step,
                    op
                );
                evicted += 1;
            }
            self.model.remove(&k);
        }
        prop_assert!(
            self.displaced.is_empty(),
            "step {}: {:?} did not report {:?}",
            step,
            op,
            self.displaced
        );
        // One shard owns the whole capacity: eviction stops as soon as the entries fit.
        if evicted > 0 && self.cfg.shards == 1 {
            prop_assert_eq!(
                self.model.len() as u64,
                self.cfg.capacity,
                "step {}: evicted {} of {} entries, capacity {}",
                step,
                evicted,
                before,
                self.cfg.capacity
            );
        }
        Ok(())
    }

    /// Read-only checks (no maintenance, no deadline moved).
    fn check(&self) -> Result<(), TestCaseError> {
        if let Err(e) = self.cache.validate() {
            return Err(TestCaseError::fail(format!(
                "step {}: validate: {e}",
                self.step
            )));
        }
        let mut pairs = HashMap::new();
        for (k, v) in self.cache.iter() {
            prop_assert!(
                pairs.insert(k, v).is_none(),
                "step {}: iter repeated {}",
                self.step,
                k
            );
        }
        prop_assert_eq!(
            pairs,
            self.live_entries(),
            "step {}: iter at {}",
            self.step,
            self.now
        );
        if self.cfg.shards == 1 {
            prop_assert!(self.model.len() as u64 <= self.cfg.capacity);
        }
        Ok(())
    }
}

fn run(cfg: Config, seed: u64, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut h = Harness::new(cfg, seed);
    for &op in ops {
        h.apply(op)?;
    }
    // Everything left is reported once, expired or explicit.
    h.apply(Op::InvalidateAll)?;
    prop_assert!(h.model.is_empty());
    prop_assert_eq!(h.cache.len(), 0);
    h.cache.validate().map_err(TestCaseError::fail)?;
    Ok(())
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn capacity() -> impl Strategy<Value = u64> {
    select(vec![0u64, 2, 8, 100, 100])
}

fn shards() -> impl Strategy<Value = usize> {
    select(vec![1usize, 1, 2, 4])
}

proptest! {
    #![proptest_config(config(200))]

    /// Time-to-live, with `insert_with_ttl` mixed in.
    #[test]
    fn ttl_matches_model(
        capacity in capacity(),
        shards in shards(),
        ttl in select(vec![1u64, 7, 100, 1000, 1000]),
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(true, big_boxed), 1..120),
    ) {
        let cfg = Config { capacity, shards, ttl: Some(ttl), tti: None, sync_before_wrap: true };
        run(cfg, seed, &ops)?;
    }

    /// Time-to-idle, alone or under a time-to-live.
    #[test]
    fn tti_matches_model(
        capacity in capacity(),
        shards in shards(),
        tti in select(vec![1u64, 7, 100, 1000, 1000]),
        ttl in proptest::option::of(select(vec![50u64, 150, 2000])),
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(false, big_boxed), 1..120),
    ) {
        let cfg = Config { capacity, shards, ttl, tti: Some(tti), sync_before_wrap: true };
        run(cfg, seed, &ops)?;
    }

    /// No configured expiration: only `insert_with_ttl` gives deadlines.
    #[test]
    fn insert_with_ttl_only_matches_model(
        capacity in capacity(),
        shards in shards(),
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(true, big_boxed), 1..120),
    ) {
        let cfg = Config { capacity, shards, ttl: None, tti: None, sync_before_wrap: true };
        run(cfg, seed, &ops)?;
    }
}

proptest! {
    #![proptest_config(config(200))]

    #[test]
    fn tti_with_insert_with_ttl_matches_model(
        capacity in capacity(),
        shards in shards(),
        tti in select(vec![1u64, 7, 100, 1000]),
        ttl in proptest::option::of(select(vec![50u64, 150, 2000])),
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(true, big_boxed), 1..120),
    ) {
        let cfg = Config { capacity, shards, ttl, tti: Some(tti), sync_before_wrap: true };
        run(cfg, seed, &ops)?;
    }

    #[test]
    fn month_long_jumps_match_model(
        capacity in capacity(),
        shards in shards(),
        ttl in select(vec![1u64, 7, 100, 1000]),
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(true, huge_boxed), 1..120),
    ) {
        let cfg = Config { capacity, shards, ttl: Some(ttl), tti: None, sync_before_wrap: false };
        run(cfg, seed, &ops)?;
    }
}

/// The harness itself must notice wrong answers.
#[test]
fn harness_detects_a_divergence() {
    let cfg = Config {
        capacity: 10,
        shards: 1,
        ttl: Some(100),
        tti: None,
        sync_before_wrap: true,
    };
    // A model that thinks an entry lives longer than it does.
    let mut h = Harness::new(cfg, 1);
    h.apply(Op::Insert(1)).unwrap();
    h.model.get_mut(&1).unwrap().deadline = 200;
    h.apply(Op::Advance(150)).unwrap_err();

    // A notification the model does not expect.
    let mut h = Harness::new(cfg, 1);
    h.apply(Op::Insert(1)).unwrap();
    h.model.clear();
    h.apply(Op::Iter).unwrap_err(); // iter disagrees
    let mut h = Harness::new(cfg, 1);
    h.apply(Op::Insert(1)).unwrap();
    h.model.get_mut(&1).unwrap().value = 99;
    h.apply(Op::Advance(100)).unwrap();
    h.apply(Op::Len).unwrap_err(); // the expired value reported is not the model's

    // An expired entry the model expects to be reported as evicted.
    let mut h = Harness::new(cfg, 1);
    h.apply(Op::Insert(1)).unwrap();
    h.apply(Op::Advance(100)).unwrap();
    h.model.get_mut(&1).unwrap().deadline = 1000;
    h.apply(Op::Maintain).unwrap_err();
}
