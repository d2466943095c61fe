//! Expiration: time-to-live, time-to-idle, `Expiry`, `insert_with_ttl`, jitter, and how expired
//! entries leave the cache. One behaviour per test, all on a `MockClock` (no test sleeps).
//!
//! Conventions: deadlines are whole milliseconds of the cache's clock; an entry is visible while
//! `now < deadline` and never from `now >= deadline`. Every test that can checks the eviction
//! listener too: each value that leaves is reported once, with its cause.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cachet::{BuildError, Cache, CacheBuilder, Clock, Expiry, MockClock, RemovalCause};

type Log = Arc<Mutex<Vec<(u64, u64, RemovalCause)>>>;
type Configure = fn(CacheBuilder<u64, u64>) -> CacheBuilder<u64, u64>;

const DAY: u64 = 24 * 60 * 60 * 1000;
/// The longest lifetime, in milliseconds (`MAX_LIFETIME` inside the crate).
const MAX_LIFE: u64 = 1 << 30;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A cache on a mock clock that logs every removal.
struct Timed {
    cache: Cache<u64, u64>,
    time: MockClock,
    log: Log,
}

impl Timed {
    /// `configure` gets a builder with a capacity of 100,000, `shards`, the mock clock and the
    /// listener already set.
    fn new(
        shards: usize,
        configure: impl FnOnce(CacheBuilder<u64, u64>) -> CacheBuilder<u64, u64>,
    ) -> Timed {
        Self::at(0, shards, configure)
    }

    /// Like `new`, with the clock moved to `start_ms` before the cache is built.
    fn at(
        start_ms: u64,
        shards: usize,
        configure: impl FnOnce(CacheBuilder<u64, u64>) -> CacheBuilder<u64, u64>,
    ) -> Timed {
        let time = MockClock::new();
        time.advance(ms(start_ms));
        let log: Log = Arc::default();
        let sink = Arc::clone(&log);
        let b = Cache::builder()
            .max_capacity(100_000)
            .shards(shards)
            .clock(Clock::mock(&time))
            .eviction_listener(move |k, v, cause| sink.lock().unwrap().push((k, v, cause)));
        let cache = configure(b).build().expect("valid configuration");
        Timed { cache, time, log }
    }

    /// The mock clock's time in whole milliseconds.
    fn now(&self) -> u64 {
        self.time.elapsed().as_millis() as u64
    }

    /// Moves the clock to exactly `t` milliseconds (never backwards).
    fn advance_to(&self, t: u64) {
        let now = self.time.elapsed();
        let target = ms(t);
        assert!(target >= now, "clock at {now:?}, asked for {target:?}");
        self.time.advance(target - now);
    }

    /// The removals reported since the last call, sorted.
    fn take(&self) -> Vec<(u64, u64, RemovalCause)> {
        let mut got = std::mem::take(&mut *self.log.lock().unwrap());
        got.sort_unstable_by_key(|&(k, v, c)| (k, v, c as u8));
        got
    }

    fn valid(&self) {
        if let Err(e) = self.cache.validate() {
            panic!("validate at {} ms: {e}", self.now());
        }
    }

    /// `key` reads back `value` through peek and contains_key (neither moves deadlines).
    fn assert_present(&self, key: u64, value: u64) {
        let t = self.now();
        assert_eq!(self.cache.peek(&key), Some(value), "peek({key}) at {t} ms");
        assert!(
            self.cache.contains_key(&key),
            "contains_key({key}) at {t} ms"
        );
    }

    /// `key` reads back `value` until the millisecond before `deadline`, and is invisible from
    /// `deadline` on. Leaves the clock at `deadline`.
    fn expires_at(&self, key: u64, value: u64, deadline: u64) {
        self.advance_to(deadline - 1);
        self.assert_present(key, value);
        self.advance_to(deadline);
        self.assert_absent(key);
    }

    /// `key` is invisible to every read.
    fn assert_absent(&self, key: u64) {
        let t = self.now();
        assert_eq!(self.cache.peek(&key), None, "peek({key}) at {t} ms");
        assert!(
            !self.cache.contains_key(&key),
            "contains_key({key}) at {t} ms"
        );
        assert_eq!(self.cache.get(&key), None, "get({key}) at {t} ms");
        assert!(
            self.cache.iter().all(|(k, _)| k != key),
            "iter yielded {key} at {t} ms"
        );
    }
}

use RemovalCause::{Evicted, Expired, Explicit, Replaced};

// ---------------------------------------------------------------------------------------------
// Deadlines and the exact boundary.

#[test]
fn ttl_boundary_is_exact() {
    for shards in [1, 4] {
        let t = Timed::new(shards, |b| b.time_to_live(Duration::from_micros(1_000_700)));
        // Inserted at 0.4 ms: tick 0; the lifetime rounds down to 1000 ms: deadline 1000.
        t.time.advance(Duration::from_micros(400));
        assert_eq!(t.cache.insert(1, 10), None);
        t.time.advance(Duration::from_micros(999_500)); // 999.9 ms
        assert_eq!(t.cache.get(&1), Some(10));
        t.assert_present(1, 10);
        assert_eq!(t.cache.iter().collect::<Vec<_>>(), [(1, 10)]);
        assert_eq!(t.cache.len(), 1);
        assert!(t.take().is_empty(), "nothing expired yet");
        t.time.advance(Duration::from_micros(100)); // exactly 1000 ms
        t.assert_absent(1);
        assert_eq!(t.cache.len(), 0);
        assert_eq!(t.cache.weighted_size(), 0);
        assert_eq!(t.take(), [(1, 10, Expired)]);
        t.valid();
    }
}

#[test]
fn tti_is_refreshed_by_get_only() {
    let t = Timed::new(1, |b| b.time_to_idle(ms(100)));
    for k in 1..=4 {
        t.cache.insert(k, k * 10);
    }
    t.advance_to(60);
    assert_eq!(t.cache.get(&1), Some(10)); // 1 now lives to 160
    assert_eq!(t.cache.peek(&2), Some(20));
    assert!(t.cache.contains_key(&3));
    assert_eq!(t.cache.iter().count(), 4);
    t.advance_to(99);
    t.assert_present(2, 20);
    t.assert_present(3, 30);
    t.assert_present(4, 40);
    t.advance_to(100);
    for k in 2..=4 {
        assert_eq!(
            t.cache.peek(&k),
            None,
            "key {k} was refreshed by a non-get read"
        );
    }
    t.advance_to(159);
    t.assert_present(1, 10);
    t.advance_to(160);
    assert_eq!(t.cache.peek(&1), None);
    t.cache.run_pending_maintenance();
    assert_eq!(t.cache.len(), 0);
    assert_eq!(
        t.take(),
        [
            (1, 10, Expired),
            (2, 20, Expired),
            (3, 30, Expired),
            (4, 40, Expired)
        ]
    );
    t.valid();
}

#[test]
fn ttl_and_tti_earliest_wins_and_tti_never_extends_past_ttl() {
    let t = Timed::new(1, |b| b.time_to_live(ms(1000)).time_to_idle(ms(300)));
    t.cache.insert(1, 1); // idle deadline 300 comes first
    t.cache.insert(2, 2); // read every 250 ms: idle keeps it, up to the TTL at 1000
    t.advance_to(250);
    assert_eq!(t.cache.get(&2), Some(2));
    t.advance_to(299);
    t.assert_present(1, 1);
    t.advance_to(300);
    assert_eq!(t.cache.peek(&1), None, "1 idled out at 300");
    for now in [500, 750] {
        t.advance_to(now);
        assert_eq!(t.cache.get(&2), Some(2), "at {now}");
    }
    t.advance_to(999);
    assert_eq!(t.cache.get(&2), Some(2));
    t.advance_to(1000);
    assert_eq!(
        t.cache.get(&2),
        None,
        "idle extensions must stop at the TTL"
    );
    assert_eq!(t.cache.len(), 0);
    assert_eq!(t.take(), [(1, 1, Expired), (2, 2, Expired)]);

    // TTL shorter than TTI: the TTL deadline applies from the start.
    let t = Timed::new(1, |b| b.time_to_live(ms(200)).time_to_idle(ms(300)));
    t.cache.insert(1, 1);
    t.advance_to(150);
    assert_eq!(t.cache.get(&1), Some(1));
    t.advance_to(199);
    assert_eq!(t.cache.get(&1), Some(1));
    t.advance_to(200);
    t.assert_absent(1);

    // An idle entry at exactly its idle deadline is gone, even though the TTL is far.
    let t = Timed::new(1, |b| b.time_to_live(ms(10_000)).time_to_idle(ms(300)));
    t.cache.insert(1, 1);
    t.expires_at(1, 1, 300);
    t.valid();
}

#[test]
fn update_resets_ttl() {
    let t = Timed::new(1, |b| b.time_to_live(ms(1000)));
    t.cache.insert(1, 10);
    t.advance_to(800);
    assert_eq!(t.cache.insert(1, 11), Some(10));
    assert_eq!(t.take(), [(1, 10, Replaced)]);
    t.advance_to(1000);
    t.assert_present(1, 11);
    t.expires_at(1, 11, 1800);
    assert_eq!(t.take(), [(1, 11, Expired)]);
}

#[test]
fn insert_with_ttl_shortens_and_extends_on_update() {
    let t = Timed::new(1, |b| b.time_to_live(ms(1000)));
    // Shortening: 5 s, then 50 ms from 100.
    t.cache.insert_with_ttl(1, 10, ms(5000));
    // Extending: 100 ms, then 10 s from 50 (past the configured 1 s TTL).
    t.cache.insert_with_ttl(2, 20, ms(100));
    t.advance_to(50);
    assert_eq!(t.cache.insert_with_ttl(2, 21, ms(10_000)), Some(20));
    t.advance_to(100);
    assert_eq!(t.cache.insert_with_ttl(1, 11, ms(50)), Some(10));
    t.expires_at(1, 11, 150);
    t.advance_to(10_049);
    t.assert_present(2, 21);
    // A plain insert goes back to the configured TTL: 1 s from 10,049.
    assert_eq!(t.cache.insert(2, 22), Some(21));
    t.expires_at(2, 22, 11_049);
    assert_eq!(
        t.take(),
        [
            (1, 10, Replaced),
            (1, 11, Expired),
            (2, 20, Replaced),
            (2, 21, Replaced),
            (2, 22, Expired)
        ]
    );
    t.valid();
}

#[test]
fn an_update_that_extends_a_deadline_is_reclaimed_at_the_new_one_not_the_old() {
    // The update leaves the entry in the wheel bucket of its old deadline (it is filed again
    // when that bucket comes up): maintenance at the old deadline must keep it, at the new one
    // remove it.
    let t = Timed::new(1, |b| b.time_to_live(ms(100)));
    t.cache.insert(1, 10);
    t.cache.insert(2, 20);
    t.advance_to(60);
    assert_eq!(t.cache.insert(1, 11), Some(10)); // now due at 160
    t.advance_to(100);
    t.cache.run_pending_maintenance();
    t.valid();
    t.assert_present(1, 11);
    t.assert_absent(2);
    assert_eq!(t.take(), [(1, 10, Replaced), (2, 20, Expired)]);
    t.advance_to(159);
    t.cache.run_pending_maintenance();
    t.assert_present(1, 11);
    assert_eq!(t.take(), []);
    t.advance_to(160);
    t.cache.run_pending_maintenance();
    assert_eq!(t.take(), [(1, 11, Expired)]);
    assert_eq!(t.cache.len(), 0);
    t.valid();
}

#[test]
fn insert_with_ttl_works_without_configured_expiration() {
    for shards in [1, 4] {
        let t = Timed::new(shards, |b| b);
        for k in 0..100 {
            t.cache.insert(k, k);
        }
        // New keys with deadlines, an existing plain key given one, and a key with a deadline
        // that a plain insert takes away again.
        for k in 1000..1010 {
            assert_eq!(t.cache.insert_with_ttl(k, k, ms(500)), None);
        }
        assert_eq!(t.cache.insert_with_ttl(5, 55, ms(700)), Some(5));
        t.cache.insert_with_ttl(7, 77, ms(100));
        assert_eq!(t.cache.insert(7, 78), Some(77));
        t.valid();
        t.advance_to(499);
        for k in 1000..1010 {
            t.assert_present(k, k);
        }
        t.advance_to(500);
        for k in 1000..1010 {
            t.assert_absent(k);
        }
        t.assert_present(5, 55);
        t.advance_to(700);
        t.assert_absent(5);
        // Plain entries never expire.
        t.advance_to(40 * DAY);
        assert_eq!(t.cache.len(), 99);
        for k in (0..100).filter(|&k| k != 5) {
            let v = if k == 7 { 78 } else { k };
            assert_eq!(t.cache.get(&k), Some(v), "key {k}");
        }
        let mut want: Vec<_> = (1000..1010).map(|k| (k, k, Expired)).collect();
        want.extend([
            (5, 5, Replaced),
            (5, 55, Expired),
            (7, 7, Replaced),
            (7, 77, Replaced),
        ]);
        want.sort_unstable_by_key(|&(k, v, c)| (k, v, c as u8));
        assert_eq!(t.take(), want);
        t.valid();
    }
}

#[test]
fn zero_lifetime_is_never_stored() {
    for zero in [Duration::ZERO, Duration::from_micros(999)] {
        // A cache whose configured TTL is zero.
        let t = Timed::new(1, |b| b.time_to_live(zero));
        assert_eq!(t.cache.insert(1, 10), None);
        assert_eq!(t.take(), [(1, 10, Expired)]);
        t.assert_absent(1);
        assert_eq!(t.cache.len(), 0);
        // A live value (given a real lifetime) is replaced and returned by a zero-TTL insert.
        assert_eq!(t.cache.insert_with_ttl(2, 20, ms(1000)), None);
        t.assert_present(2, 20);
        assert_eq!(t.cache.insert(2, 21), Some(20));
        assert_eq!(t.take(), [(2, 20, Replaced), (2, 21, Expired)]);
        t.assert_absent(2);
        t.valid();

        // insert_with_ttl(zero) on a cache with a normal TTL.
        let t = Timed::new(2, |b| b.time_to_live(ms(1000)));
        assert_eq!(t.cache.insert_with_ttl(1, 10, zero), None);
        assert_eq!(t.take(), [(1, 10, Expired)]);
        t.assert_absent(1);
        t.cache.insert(2, 20);
        assert_eq!(t.cache.insert_with_ttl(2, 21, zero), Some(20));
        assert_eq!(t.take(), [(2, 20, Replaced), (2, 21, Expired)]);
        t.assert_absent(2);
        assert_eq!(t.cache.len(), 0);
        t.valid();

        // ... and on a cache without expiration.
        let t = Timed::new(1, |b| b);
        t.cache.insert(3, 30);
        assert_eq!(t.cache.insert_with_ttl(3, 31, zero), Some(30));
        assert_eq!(t.cache.insert_with_ttl(4, 40, zero), None);
        assert_eq!(
            t.take(),
            [(3, 30, Replaced), (3, 31, Expired), (4, 40, Expired)]
        );
        assert_eq!(t.cache.len(), 0);
        t.valid();
    }
}

#[test]
fn zero_tti_is_never_stored() {
    let t = Timed::new(1, |b| b.time_to_idle(Duration::ZERO));
    assert_eq!(t.cache.insert(1, 10), None);
    assert_eq!(t.take(), [(1, 10, Expired)]);
    assert_eq!(t.cache.len(), 0);
}

#[test]
fn duration_max_is_capped_not_overflowed() {
    let configs: [Configure; 3] = [
        |b| b.time_to_live(Duration::MAX),
        |b| b.time_to_live(Duration::MAX).time_to_idle(Duration::MAX),
        |b| b,
    ];
    for (i, configure) in configs.into_iter().enumerate() {
        // Also far from zero, so `now + lifetime` crosses 2^32.
        for start in [0, (1 << 32) - 1000] {
            let t = Timed::at(start, 1, configure);
            if i < 2 {
                t.cache.insert(1, 10);
            } else {
                t.cache.insert_with_ttl(1, 10, Duration::MAX);
            }
            t.cache.insert_with_ttl(2, 20, Duration::MAX);
            t.advance_to(start + 12 * DAY);
            assert_eq!(t.cache.get(&1), Some(10), "config {i}, start {start}");
            assert_eq!(t.cache.get(&2), Some(20), "config {i}, start {start}");
            t.advance_to(start + MAX_LIFE - 1);
            t.assert_present(1, 10);
            t.assert_present(2, 20);
            assert!(t.take().is_empty());
            t.advance_to(start + MAX_LIFE);
            t.assert_absent(1);
            t.assert_absent(2);
            assert_eq!(t.cache.len(), 0);
            assert_eq!(t.take(), [(1, 10, Expired), (2, 20, Expired)]);
            t.valid();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The timer wheel: deadlines on every level, past its top levels, and across 2^32 ms.

/// An `Expiry` with no opinion: it makes every shard keep a wheel from the start (so the wheel's
/// time lags behind a clock that moves before the first insert) while plain inserts get no
/// deadline.
struct NoOpinion;
impl Expiry<u64, u64> for NoOpinion {}

/// Lifetimes on every level of the wheel and at its slot and span boundaries.
const LIFETIMES: [u64; 17] = [
    1,
    2,
    63,
    64,
    65,
    4095,
    4096,
    4097,
    262_143,
    262_144,
    3_600_000,
    1 << 24,
    DAY,
    11 * DAY,
    12 * DAY,
    MAX_LIFE - 1,
    MAX_LIFE,
];

/// Inserts one entry per lifetime at `t.now()`, then walks the clock to each deadline and checks
/// the entry is visible one millisecond before and gone (and reported, by maintenance or by an
/// unrelated write) at it.
fn walk_deadlines(t: &Timed) {
    let start = t.now();
    for (i, &life) in LIFETIMES.iter().enumerate() {
        assert_eq!(t.cache.insert_with_ttl(i as u64, life, ms(life)), None);
    }
    t.valid();
    let mut filler = 1_000_000;
    for (i, &life) in LIFETIMES.iter().enumerate() {
        let key = i as u64;
        let deadline = start + life;
        t.advance_to(deadline - 1);
        for (j, &later) in LIFETIMES.iter().enumerate().skip(i) {
            t.assert_present(j as u64, later);
        }
        t.cache.run_pending_maintenance();
        assert!(t.take().is_empty(), "reported before {deadline}");
        t.advance_to(deadline);
        assert_eq!(t.cache.peek(&key), None, "lifetime {life} from {start}");
        if i % 2 == 0 {
            t.cache.run_pending_maintenance();
        } else {
            // An unrelated write to the same (single) shard removes what is due.
            filler += 1;
            t.cache.insert(filler, filler);
        }
        assert_eq!(t.take(), [(key, life, Expired)], "at deadline {deadline}");
    }
    t.valid();
    assert_eq!(t.cache.len() as u64, filler - 1_000_000);
}

#[test]
fn deadlines_on_every_wheel_level_expire_exactly() {
    // Starts near 2^32 ms (49.7 days) make deadlines cross it; 50 days starts beyond it.
    for start in [
        0,
        (1 << 32) - 5000,
        (1 << 32) - (1 << 29),
        50 * DAY,
        3 << 32,
    ] {
        // Built at `start`: the wheel starts there.
        walk_deadlines(&Timed::at(start, 1, |b| b));
        walk_deadlines(&Timed::at(start, 1, |b| b.expiry(NoOpinion)));
        // Built at 0 with a wheel, then left alone until `start`: the wheel's time lags.
        let t = Timed::new(1, |b| b.expiry(NoOpinion));
        t.advance_to(start);
        walk_deadlines(&t);
    }
}

#[test]
fn a_read_of_a_shard_idle_for_a_week_catches_up_first() {
    // More than 2^29 ms (6.2 days) without an operation: the first read finds the wheel too far
    // behind to compare 32-bit deadlines, brings it up to date, then reads.
    let t = Timed::new(1, |b| b.time_to_live(ms(10 * DAY)));
    t.cache.insert(1, 10);
    t.cache.insert_with_ttl(2, 20, ms(DAY));
    t.advance_to(7 * DAY);
    assert_eq!(t.cache.get(&1), Some(10));
    assert_eq!(t.cache.get(&2), None);
    assert_eq!(t.take(), [(2, 20, Expired)]);
    t.valid();
    // The same after another idle week, the entry now past its 10 days.
    t.advance_to(14 * DAY);
    assert_eq!(t.cache.get(&1), None);
    assert_eq!(t.take(), [(1, 10, Expired)]);
    assert_eq!(t.cache.len(), 0);
    t.valid();
}

#[test]
fn ttl_lifetimes_crossing_2_pow_32_ms() {
    let start = (1u64 << 32) - 3000;
    let t = Timed::at(start, 4, |b| b.time_to_live(ms(5000)));
    for k in 0..200 {
        t.cache.insert(k, k);
    }
    // Idle entries cross 2^32 while their deadline is still ahead.
    let t2 = Timed::at(start, 4, |b| b.time_to_idle(ms(5000)));
    for k in 0..200 {
        t2.cache.insert(k, k);
    }
    t.advance_to(start + 4999);
    t2.advance_to(start + 4000);
    for k in 0..200 {
        t.assert_present(k, k);
        assert_eq!(t2.cache.get(&k), Some(k)); // idle deadline: start + 9000
    }
    t.advance_to(start + 5000);
    t.cache.run_pending_maintenance();
    assert_eq!(t.cache.len(), 0);
    assert_eq!(t.take().len(), 200);
    t2.advance_to(start + 8999);
    t2.cache.run_pending_maintenance();
    assert_eq!(t2.cache.len(), 200);
    t2.advance_to(start + 9000);
    t2.cache.run_pending_maintenance();
    assert_eq!(t2.cache.len(), 0);
    assert!(t2.take().iter().all(|&(_, _, c)| c == Expired));
    t.valid();
    t2.valid();
}

/// A deadline whose low 32 bits are all ones is the one value the entry's deadline word cannot
/// hold as is (it means "no deadline"): it is stored a tick earlier, so the entry expires 1 ms
/// early rather than never. Neighbouring deadlines are exact.
#[test]
fn a_deadline_at_the_no_deadline_word_expires_one_tick_early_not_never() {
    let special = (1u64 << 32) - 1; // low 32 bits = u32::MAX
    for (offset, expected) in [(special, special - 1), (special + 1, special + 1)] {
        for extra in [0, 1u64 << 32] {
            let deadline = offset + extra;
            let start = deadline - 5000;
            let t = Timed::at(start, 1, |b| b.time_to_live(ms(5000)));
            t.cache.insert(1, 1);
            t.advance_to(expected + extra - 1);
            t.assert_present(1, 1);
            assert_eq!(t.cache.len(), 1);
            t.advance_to(expected + extra);
            t.assert_absent(1);
            // Removal agrees with reads: the wheel filed it at the tick its word says.
            assert_eq!(t.cache.len(), 0, "deadline {deadline}");
            assert_eq!(t.take(), [(1, 1, Expired)], "deadline {deadline}");
            t.valid();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// `Expiry`: per-entry lifetimes.

#[derive(Clone, Debug, PartialEq)]
enum Call {
    Create(u64),
    Update(u64, Option<Duration>),
    Read(u64, Option<Duration>),
}

/// Create: the value is the lifetime in ms, 0 for none. Update: the same, 0 for "no opinion".
/// Read: keys >= 100 get 5 ms left (a read *shortens* them), others no opinion.
#[derive(Clone, Default)]
struct ByValue {
    calls: Arc<Mutex<Vec<Call>>>,
}

impl ByValue {
    fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

impl Expiry<u64, u64> for ByValue {
    fn expire_after_create(&self, key: &u64, value: &u64) -> Option<Duration> {
        self.calls.lock().unwrap().push(Call::Create(*key));
        (*value != 0).then(|| ms(*value))
    }

    fn expire_after_update(
        &self,
        key: &u64,
        value: &u64,
        remaining: Option<Duration>,
    ) -> Option<Duration> {
        self.calls
            .lock()
            .unwrap()
            .push(Call::Update(*key, remaining));
        (*value != 0).then(|| ms(*value))
    }

    fn expire_after_read(
        &self,
        key: &u64,
        _value: &u64,
        remaining: Option<Duration>,
    ) -> Option<Duration> {
        self.calls.lock().unwrap().push(Call::Read(*key, remaining));
        (*key >= 100).then(|| ms(5))
    }
}

#[test]
fn expiry_hooks_decide_per_entry() {
    let hooks = ByValue::default();
    let h = hooks.clone();
    let t = Timed::new(1, move |b| b.expiry(h));
    t.cache.insert(1, 1000); // deadline 1000
    t.cache.insert(2, 0); // no deadline
    t.cache.insert(100, 10_000); // deadline 10,000 until read
    t.cache.insert(3, 500); // 500, then extended by an update
    assert_eq!(
        hooks.take(),
        [
            Call::Create(1),
            Call::Create(2),
            Call::Create(100),
            Call::Create(3)
        ]
    );
    // peek, contains_key and iter call no hook.
    t.assert_present(1, 1000);
    assert_eq!(t.cache.iter().count(), 4);
    assert_eq!(hooks.take(), []);

    t.advance_to(400);
    // Update with no opinion keeps the current deadline; the hook sees the time left.
    assert_eq!(t.cache.insert(1, 0), Some(1000));
    // Update with an opinion replaces the deadline: 400 + 2000.
    assert_eq!(t.cache.insert(3, 2000), Some(500));
    assert_eq!(t.cache.get(&1), Some(0));
    assert_eq!(
        hooks.take(),
        [
            Call::Update(1, Some(ms(600))),
            Call::Update(3, Some(ms(100))),
            Call::Read(1, Some(ms(600))),
        ]
    );
    t.expires_at(1, 0, 1000);
    t.assert_present(3, 2000);

    // A read that shortens: 100 had 9,000 ms left and now has 5.
    assert_eq!(t.cache.get(&100), Some(10_000));
    assert_eq!(hooks.take(), [Call::Read(100, Some(ms(9000)))]);
    t.expires_at(100, 10_000, 1005);

    t.expires_at(3, 2000, 2400);

    // No deadline from the hook: 2 lives on.
    t.advance_to(30 * DAY);
    assert_eq!(t.cache.get(&2), Some(0));
    t.valid();
}

#[test]
fn expiry_read_hook_sees_entries_without_a_deadline() {
    // The trait documents `remaining: None` for an entry without a deadline, for reads too:
    // a read hook may give such an entry its first deadline.
    let hooks = ByValue::default();
    let h = hooks.clone();
    let t = Timed::new(1, move |b| b.expiry(h));
    t.cache.insert(200, 0); // no deadline from create
    assert_eq!(t.cache.get(&200), Some(0));
    assert_eq!(hooks.take(), [Call::Create(200), Call::Read(200, None)]);
    t.advance_to(5); // the read hook gave keys >= 100 five milliseconds
    t.assert_absent(200);
}

#[test]
fn expiry_and_ttl_earliest_wins() {
    let t = Timed::new(1, |b| b.time_to_live(ms(1000)).expiry(ByValue::default()));
    t.cache.insert(1, 500); // Expiry says 500, TTL 1000
    t.cache.insert(2, 5000); // Expiry says 5000, TTL 1000
    t.cache.insert(3, 0); // Expiry has no opinion: TTL
    t.expires_at(1, 500, 500);
    t.advance_to(999);
    t.assert_present(2, 5000);
    t.assert_present(3, 0);
    t.advance_to(1000);
    t.assert_absent(2);
    t.assert_absent(3);
    assert_eq!(t.cache.len(), 0);
    assert_eq!(
        t.take(),
        [(1, 500, Expired), (2, 5000, Expired), (3, 0, Expired)]
    );
}

/// Create: 100 ms; read: 1000 ms from the read.
struct ReadExtends;
impl Expiry<u64, u64> for ReadExtends {
    fn expire_after_create(&self, _: &u64, _: &u64) -> Option<Duration> {
        Some(ms(100))
    }
    fn expire_after_read(&self, _: &u64, _: &u64, _: Option<Duration>) -> Option<Duration> {
        Some(ms(1000))
    }
}

/// An `Expiry`'s write lifetime does not cap what its read hook gives (only a time-to-live or an
/// `insert_with_ttl` lifetime does).
#[test]
fn expiry_read_hook_can_extend_past_the_create_lifetime() {
    // The trait: each hook returns "the entry's lifetime from now"; there is no time-to-live
    // here to bound it. A read at 50 should give 1050.
    let t = Timed::new(1, |b| b.expiry(ReadExtends));
    t.cache.insert(1, 1);
    t.advance_to(50);
    assert_eq!(t.cache.get(&1), Some(1));
    t.advance_to(500);
    assert_eq!(t.cache.peek(&1), Some(1), "read at 50 gave 1000 ms more");
    t.advance_to(1049);
    assert_eq!(t.cache.get(&1), Some(1)); // now to 2049
    t.expires_at(1, 1, 2049);

    // With a time-to-live as well, reads stop at the TTL deadline.
    let t = Timed::new(1, |b| b.time_to_live(ms(1500)).expiry(ReadExtends));
    t.cache.insert(1, 1); // 100
    t.advance_to(50);
    assert_eq!(t.cache.get(&1), Some(1)); // 1050
    t.advance_to(1000);
    assert_eq!(t.cache.get(&1), Some(1)); // 2000, capped at 1500
    t.expires_at(1, 1, 1500);
}

#[test]
fn read_shortened_deadline_is_reclaimed_by_maintenance() {
    // Through an Expiry read hook.
    let t = Timed::new(1, |b| b.expiry(ByValue::default()));
    t.cache.insert(100, 3_600_000); // one hour
    assert_eq!(t.cache.get(&100), Some(3_600_000)); // now 5 ms
    t.advance_to(10);
    t.assert_absent(100);
    t.cache.run_pending_maintenance();
    assert_eq!(t.take(), [(100, 3_600_000, Expired)]);
    assert_eq!(t.cache.len(), 0);

    // Through time-to-idle after insert_with_ttl (whose deadline replaces the idle one at the
    // write; the first read applies the idle time).
    let t = Timed::new(1, |b| b.time_to_idle(ms(5)));
    t.cache.insert_with_ttl(1, 1, ms(3_600_000));
    assert_eq!(t.cache.get(&1), Some(1)); // idle deadline: 5
    t.advance_to(10);
    t.assert_absent(1);
    assert_eq!(t.cache.len(), 0, "len counts an expired entry");
    assert_eq!(t.take(), [(1, 1, Expired)]);
}

/// The 2^30 ms cap applies to each idle period, not to an idle entry's whole life.
#[test]
fn tti_entry_read_regularly_lives_past_the_lifetime_cap() {
    // Time-to-idle only: an entry read every 30 minutes with a one-hour idle time never idles.
    let t = Timed::new(1, |b| b.time_to_idle(ms(3_600_000)));
    t.cache.insert(1, 1);
    let now = read_key_1_every_half_hour_for_two_weeks(&t);
    t.expires_at(1, 1, now + 3_600_000);
}

/// Reads key 1 (value 1) every 30 minutes for 14 days, checking each read finds it; returns
/// the time of the last read.
fn read_key_1_every_half_hour_for_two_weeks(t: &Timed) -> u64 {
    let mut now = t.now();
    let end = now + 14 * DAY;
    while now < end {
        now += 1_800_000;
        t.advance_to(now);
        assert_eq!(
            t.cache.get(&1),
            Some(1),
            "read every 30 min, gone at {now} ms ({:.2} days)",
            now as f64 / DAY as f64
        );
    }
    now
}

#[test]
fn tti_entry_read_regularly_lives_past_the_lifetime_cap_after_insert_with_ttl() {
    // As above, but another key of the (single) shard was once given a lifetime: that makes the
    // shard keep caps, and entries without a time-to-live get one of 2^30 ms past their deadline.
    let t = Timed::new(1, |b| b.time_to_idle(ms(3_600_000)));
    t.cache.insert_with_ttl(50, 50, ms(10));
    t.cache.insert(1, 1);
    read_key_1_every_half_hour_for_two_weeks(&t);
}

// ---------------------------------------------------------------------------------------------
// Jitter.

#[test]
fn invalid_jitter_is_rejected() {
    for bad in [
        -0.1,
        1.5,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0001,
    ] {
        let r = Cache::<u64, u64>::builder()
            .max_capacity(10)
            .time_to_live(ms(1000))
            .ttl_jitter(bad)
            .build();
        match r {
            Err(e) => {
                assert_eq!(e, BuildError::InvalidJitter, "{bad}");
                assert!(e.to_string().contains("ttl_jitter"), "{e}");
            }
            Ok(_) => panic!("jitter {bad} accepted"),
        }
    }
    for good in [0.0, 0.5, 1.0] {
        assert!(
            Cache::<u64, u64>::builder()
                .max_capacity(10)
                .ttl_jitter(good)
                .build()
                .is_ok(),
            "{good}"
        );
    }
}

#[test]
fn jitter_spreads_expirations_over_the_fraction() {
    const TTL: u64 = 10_000;
    let t = Timed::new(4, |b| b.time_to_live(ms(TTL)).ttl_jitter(0.5));
    for k in 0..1000 {
        t.cache.insert(k, k);
    }
    // insert_with_ttl lifetimes are not jittered.
    for k in 5000..5100 {
        t.cache.insert_with_ttl(k, k, ms(TTL));
    }
    t.advance_to(TTL / 2);
    assert_eq!(t.cache.len(), 1100, "an entry expired before half its TTL");
    assert!(t.take().is_empty());
    let mut counts = Vec::new();
    for now in (TTL / 2..TTL).step_by(500) {
        t.advance_to(now);
        counts.push((0..1000).filter(|k| t.cache.contains_key(k)).count());
    }
    assert!(
        counts.windows(2).all(|w| w[0] >= w[1]),
        "expired entries came back: {counts:?}"
    );
    let distinct: HashSet<_> = counts.iter().collect();
    assert!(distinct.len() >= 6, "not spread: {counts:?}");
    let mid = counts[counts.len() / 2]; // at 7.5 s
    assert!(
        (200..=800).contains(&mid),
        "{mid} of 1000 left at 3/4 of the TTL: {counts:?}"
    );
    t.advance_to(TTL - 1);
    for k in 5000..5100 {
        t.assert_present(k, k);
    }
    t.advance_to(TTL);
    t.cache.run_pending_maintenance();
    assert_eq!(t.cache.len(), 0);
    let got = t.take();
    assert_eq!(got.len(), 1100);
    assert!(got.iter().all(|&(k, v, c)| k == v && c == Expired));
    t.valid();
}

// ---------------------------------------------------------------------------------------------
// Reclaiming expired entries.

#[derive(Default)]
struct Counter {
    expired: AtomicUsize,
    other: AtomicUsize,
}

fn counting_cache(time: &MockClock, shards: usize) -> (Cache<u64, u64>, Arc<Counter>) {
    let counter = Arc::new(Counter::default());
    let c = Arc::clone(&counter);
    let cache = Cache::builder()
        .max_capacity(200_000)
        .shards(shards)
        .time_to_live(ms(1000))
        .clock(Clock::mock(time))
        .eviction_listener(move |_k, _v, cause| {
            if cause == Expired {
                c.expired.fetch_add(1, Ordering::Relaxed);
            } else {
                c.other.fetch_add(1, Ordering::Relaxed);
            }
        })
        .build()
        .unwrap();
    (cache, counter)
}

/// Per operation and shard, at most this many expired entries are removed (the crate's
/// `EXPIRE_BUDGET`); a write also helps one other shard.
const BUDGET: usize = 1024;

#[test]
fn writes_reclaim_expired_entries_without_reads() {
    const N: u64 = 50_000;
    const SHARDS: usize = 8;
    let time = MockClock::new();
    let (cache, counter) = counting_cache(&time, SHARDS);
    for k in 0..N {
        cache.insert(k, k);
    }
    cache.validate().unwrap();
    time.advance(ms(2000));
    let mut ops = 0;
    let mut before = 0;
    while counter.expired.load(Ordering::Relaxed) < N as usize {
        ops += 1;
        assert!(
            ops <= 400,
            "only {before} of {N} expired entries removed after 400 writes"
        );
        cache.insert(N + ops, 0);
        let now = counter.expired.load(Ordering::Relaxed);
        assert!(
            now - before <= 2 * BUDGET,
            "one write removed {} entries",
            now - before
        );
        before = now;
    }
    // Each of the 8 shards holds about 6,250 entries: 7 batches each, 56 in all, at two per write.
    assert!(
        ops >= (N as usize).div_ceil(2 * BUDGET) as u64,
        "{ops} writes"
    );
    assert_eq!(counter.other.load(Ordering::Relaxed), 0);
    cache.validate().unwrap();
    // `len` (which also runs maintenance) finds nothing more to report.
    assert_eq!(cache.len() as u64, ops);
    assert_eq!(counter.expired.load(Ordering::Relaxed), N as usize);
}

#[test]
fn missing_reads_reclaim_expired_entries_of_their_shard() {
    const N: u64 = 20_000;
    let time = MockClock::new();
    let (cache, counter) = counting_cache(&time, 1);
    for k in 0..N {
        cache.insert(k, k);
    }
    time.advance(ms(2000));
    let mut reads = 0;
    while counter.expired.load(Ordering::Relaxed) < N as usize {
        reads += 1;
        assert!(reads <= 40, "reads that miss do not reclaim");
        assert_eq!(cache.get(&(N + reads)), None);
    }
    assert!(reads >= (N as usize).div_ceil(BUDGET) as u64);
    cache.validate().unwrap();
    assert_eq!(cache.len(), 0);
}

#[test]
fn run_pending_maintenance_removes_everything_due_once() {
    let t = Timed::new(4, |b| b.time_to_live(ms(1000)));
    for k in 0..5000 {
        t.cache.insert(k, k);
    }
    t.advance_to(500);
    for k in 5000..6000 {
        t.cache.insert(k, k); // expire at 1500
    }
    for k in 6000..6100 {
        t.cache.insert_with_ttl(k, k, ms(10 * DAY)); // far away
    }
    t.advance_to(1500);
    t.cache.run_pending_maintenance();
    let got = t.take();
    assert_eq!(got.len(), 6000);
    let keys: HashSet<u64> = got.iter().map(|&(k, _, _)| k).collect();
    assert_eq!(keys.len(), 6000, "an entry was reported twice");
    assert!(
        got.iter()
            .all(|&(k, v, c)| k == v && k < 6000 && c == Expired)
    );
    t.cache.run_pending_maintenance();
    assert!(t.take().is_empty(), "a second pass reported again");
    t.valid();
    assert_eq!(t.cache.len(), 100);
    for k in 6000..6100 {
        t.assert_present(k, k);
    }
}

/// Two shards, a 1 s time-to-live, keys 0..20 (each its own value) written at 0 ms (0..10) and
/// 600 ms (10..20), and the clock at 1,200 ms: 0..10 have expired but are not removed yet.
fn half_expired() -> Timed {
    let t = Timed::new(2, |b| b.time_to_live(ms(1000)));
    for k in 0..10 {
        t.cache.insert(k, k);
    }
    t.advance_to(600);
    for k in 10..20 {
        t.cache.insert(k, k);
    }
    t.advance_to(1200);
    t
}

#[test]
fn invalidate_all_reports_expired_and_live_entries_apart() {
    let t = half_expired();
    t.cache.invalidate_all();
    let want: Vec<_> = (0..20)
        .map(|k| (k, k, if k < 10 { Expired } else { Explicit }))
        .collect();
    assert_eq!(t.take(), want);
    assert_eq!(t.cache.len(), 0);
    t.valid();
}

#[test]
fn retain_does_not_show_expired_entries() {
    let t = half_expired();
    let mut seen = Vec::new();
    t.cache.retain(|&k, _| {
        seen.push(k);
        k % 2 == 0
    });
    seen.sort_unstable();
    assert_eq!(
        seen,
        (10..20).collect::<Vec<_>>(),
        "retain saw expired entries"
    );
    let want: Vec<_> = (0..20)
        .filter(|&k| k < 10 || k % 2 == 1)
        .map(|k| (k, k, if k < 10 { Expired } else { Explicit }))
        .collect();
    assert_eq!(t.take(), want);
    let left: HashMap<u64, u64> = t.cache.iter().collect();
    assert_eq!(
        left,
        (10..20).filter(|k| k % 2 == 0).map(|k| (k, k)).collect()
    );
    t.valid();
}

#[test]
fn expired_entry_evicted_for_size_is_reported_expired() {
    // Weighted, one shard. 10,000 light entries expire together; one heavy insert can only
    // remove 1,024 of them by expiration, so once the heavy key wins admission the policy
    // evicts the rest, all already expired.
    let t = Timed::new(1, |b| {
        b.max_capacity(10_000)
            .weigher(|_, &v| v as u32)
            .time_to_live(ms(1000))
    });
    let cache = &t.cache;
    for k in 0..10_000 {
        cache.insert(k, 1);
    }
    assert_eq!(cache.weighted_size(), 10_000);
    assert!(t.take().is_empty());
    t.advance_to(2000);
    let mut past_budget = false;
    let mut reported: HashSet<u64> = HashSet::new();
    for _ in 0..10 {
        cache.insert(1_000_000, 9_500);
        let got = t.take();
        let fillers: Vec<_> = got.iter().filter(|&&(k, _, _)| k < 10_000).collect();
        for &&(k, v, c) in &fillers {
            assert_eq!((v, c), (1, Expired), "key {k}");
            assert!(reported.insert(k), "key {k} reported twice");
        }
        past_budget |= fillers.len() > BUDGET;
        cache.validate().unwrap();
        if reported.len() == 10_000 {
            break;
        }
    }
    assert_eq!(reported.len(), 10_000);
    assert!(past_budget, "no expired entry was ever evicted for size");
    assert_eq!(cache.get(&1_000_000), Some(9_500));

    // An entry whose deadline a read moved earlier is still filed for its old deadline, so
    // the policy may pick it as a victim while it is expired.
    let t = Timed::new(1, |b| b.max_capacity(1).expiry(ByValue::default()));
    t.cache.insert(100, 3_600_000);
    assert_eq!(t.cache.get(&100), Some(3_600_000)); // 5 ms left
    t.advance_to(10);
    for k in 0..100 {
        t.cache.insert(k, 3_600_000);
        if t.take().iter().any(|&(k, _, c)| k == 100 && c == Expired) {
            return;
        }
    }
    panic!("key 100 was never reported as expired");
}

#[test]
fn a_full_cache_makes_room_by_expiring_before_it_evicts() {
    // One shard of 100 entries, full; one of them is due. A new key takes the room that entry
    // leaves: nothing live is evicted, whichever entry the policy would have picked.
    for life in [Some(ms(1000)), None] {
        let t = Timed::new(1, |b| {
            let b = b.max_capacity(100);
            match life {
                Some(ttl) => b.time_to_live(ttl),
                None => b,
            }
        });
        let cache = &t.cache;
        cache.insert_with_ttl(0, 0, ms(100));
        for k in 1..100 {
            cache.insert_with_ttl(k, k, ms(10_000));
        }
        assert_eq!(cache.len(), 100);
        t.advance_to(500);
        cache.insert(1_000, 0);
        assert_eq!(t.take(), vec![(0, 0, Expired)], "{life:?}");
        assert_eq!(cache.len(), 100);
        assert!((1..100).all(|k| cache.get(&k) == Some(k)));
        cache.validate().unwrap();
        // Full again and nothing due: the next new key evicts one entry.
        cache.insert(1_001, 0);
        let got = t.take();
        assert!(matches!(got[..], [(_, _, Evicted)]), "{life:?}: {got:?}");
        assert_eq!(cache.len(), 100);
        cache.validate().unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// A shard left alone for longer than the wheel's lag bound (2^29 ms, about 6.2 days).

#[derive(Clone, Copy, Debug)]
enum IdleOp {
    Get,
    Peek,
    ContainsKey,
    Len,
    Insert,
    Remove,
    Iter,
    Retain,
    InvalidateAll,
}

/// Builds a cache with entries 0..20 (1 s TTL) and 100 (the longest lifetime), leaves it alone
/// for `idle` ms, then runs `op` as the first operation and checks that no expired entry shows.
fn idle_then(idle: u64, shards: usize, op: IdleOp) {
    let t = Timed::new(shards, |b| b.time_to_live(ms(1000)));
    for k in 0..20 {
        t.cache.insert(k, k);
    }
    t.cache.insert_with_ttl(100, 100, Duration::MAX);
    t.advance_to(idle);
    let long_lived = idle < MAX_LIFE;
    let ctx = format!(
        "{op:?} after {:.1} days, {shards} shards",
        idle as f64 / DAY as f64
    );
    match op {
        IdleOp::Get => {
            for k in 0..20 {
                assert_eq!(t.cache.get(&k), None, "{ctx}: key {k}");
            }
            assert_eq!(t.cache.get(&100).is_some(), long_lived, "{ctx}");
        }
        IdleOp::Peek => {
            for k in 0..20 {
                assert_eq!(t.cache.peek(&k), None, "{ctx}: key {k}");
            }
            assert_eq!(t.cache.peek(&100).is_some(), long_lived, "{ctx}");
        }
        IdleOp::ContainsKey => {
            for k in 0..20 {
                assert!(!t.cache.contains_key(&k), "{ctx}: key {k}");
            }
            assert_eq!(t.cache.contains_key(&100), long_lived, "{ctx}");
        }
        IdleOp::Len => {
            t.cache.run_pending_maintenance();
            assert_eq!(t.cache.len(), usize::from(long_lived), "{ctx}");
        }
        IdleOp::Insert => {
            assert_eq!(
                t.cache.insert(5, 55),
                None,
                "{ctx}: insert over an expired key"
            );
            let got = t.take();
            assert!(got.contains(&(5, 5, Expired)), "{ctx}: {got:?}");
            assert_eq!(t.cache.get(&5), Some(55), "{ctx}");
        }
        IdleOp::Remove => {
            assert_eq!(t.cache.remove(&5), None, "{ctx}: remove of an expired key");
            let got = t.take();
            assert!(got.contains(&(5, 5, Expired)), "{ctx}: {got:?}");
        }
        IdleOp::Iter => {
            let keys: Vec<u64> = t.cache.iter().map(|(k, _)| k).collect();
            let want: Vec<u64> = if long_lived { vec![100] } else { vec![] };
            assert_eq!(keys, want, "{ctx}");
        }
        IdleOp::Retain => {
            let mut seen = Vec::new();
            t.cache.retain(|&k, _| {
                seen.push(k);
                true
            });
            let want: Vec<u64> = if long_lived { vec![100] } else { vec![] };
            assert_eq!(seen, want, "{ctx}: retain saw expired entries");
        }
        IdleOp::InvalidateAll => {
            t.cache.invalidate_all();
            for (k, _, c) in t.take() {
                let live = k == 100 && long_lived;
                assert_eq!(c, if live { Explicit } else { Expired }, "{ctx}: key {k}");
            }
        }
    }
    // Whatever the first operation, the cache ends consistent and reports each entry once.
    t.valid();
    t.cache.run_pending_maintenance();
    t.cache.invalidate_all();
    t.take();
    t.valid();
}

/// Idle times past the lag bound: under 2^31 ms (24.8 days), just over it, and past 2^32.
const IDLE: [u64; 6] = [
    7 * DAY,
    13 * DAY,
    (1 << 31) + 1000,
    30 * DAY,
    45 * DAY,
    60 * DAY,
];

#[test]
fn reads_after_a_long_idle_never_return_expired_entries() {
    for idle in IDLE {
        for shards in [1, 4] {
            for op in [IdleOp::Get, IdleOp::Peek, IdleOp::ContainsKey, IdleOp::Len] {
                idle_then(idle, shards, op);
            }
        }
    }
}

#[test]
fn writes_after_a_long_idle_under_2_pow_31_ms() {
    // Every expired deadline (keys 0..20 at 1 s, key 100 at 2^30 ms) is at most 2^31 ms old.
    for idle in [7 * DAY, 13 * DAY, 20 * DAY, 1 << 31] {
        for shards in [1, 4] {
            for op in [
                IdleOp::Insert,
                IdleOp::Remove,
                IdleOp::Iter,
                IdleOp::Retain,
                IdleOp::InvalidateAll,
            ] {
                idle_then(idle, shards, op);
            }
        }
    }
}

#[test]
fn writes_after_a_long_idle_past_2_pow_31_ms() {
    // Keys 0..20 expired at 1 s; key 100 at 2^30 ms (12.4 days): at 60 days, 1 s deadlines are
    // 2^32 + 0.9 days old (and read as just due by luck) but key 100's is 47.6 days old.
    for idle in [(1 << 31) + 1000, 30 * DAY, 45 * DAY, 60 * DAY] {
        for shards in [1, 4] {
            for op in [
                IdleOp::Insert,
                IdleOp::Remove,
                IdleOp::Iter,
                IdleOp::Retain,
                IdleOp::InvalidateAll,
            ] {
                idle_then(idle, shards, op);
            }
        }
    }
}
