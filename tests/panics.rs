//! Panics in user code — the hasher, the key's `Eq`, the weigher, a `retain` predicate, a
//! value's `Clone`, a key's or value's `Drop`, an `Expiry` hook — must leave the cache
//! consistent and usable: the panic reaches the caller, `validate()` is Ok afterwards, every
//! other entry still reads back its own value, and inserts and removes keep working.
//!
//! Every trigger is checked to really panic (`catch_unwind` returns `Err`), so a test cannot pass
//! by not reaching the user code it is about.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::{BuildHasher, DefaultHasher, Hash, Hasher};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cachet::{Cache, Clock, Expiry, MockClock, RemovalCause};

/// Marker in every intended panic message; the panic hook keeps them out of the test output.
const INTENDED: &str = "[intended panic]";

fn quiet_intended_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or("");
            if !msg.contains(INTENDED) {
                default(info);
            }
        }));
    });
}

/// Runs `f`, which must panic.
fn must_panic<R>(what: &str, f: impl FnOnce() -> R) {
    quiet_intended_panics();
    let r = catch_unwind(AssertUnwindSafe(f));
    assert!(r.is_err(), "{what}: expected a panic, got none");
}

thread_local! {
    /// Per test thread, so tests running in parallel do not arm each other's traps.
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

fn armed() -> bool {
    ARMED.with(Cell::get)
}

/// Arms the traps of this thread while `f` runs (disarmed again even if it panics).
fn with_armed<R>(f: impl FnOnce() -> R) -> R {
    struct Disarm;
    impl Drop for Disarm {
        fn drop(&mut self) {
            ARMED.with(|a| a.set(false));
        }
    }
    ARMED.with(|a| a.set(true));
    let _d = Disarm;
    f()
}

/// Checks the cache holds exactly `expected` and is consistent.
fn assert_holds<K, V, S>(cache: &Cache<K, V, S>, expected: &HashMap<K, V>)
where
    K: Hash + Eq + Clone + Debug,
    V: Clone + PartialEq + Debug,
    S: BuildHasher,
{
    if let Err(e) = cache.validate() {
        panic!("validate: {e}");
    }
    assert!(cache.weighted_size() <= cache.capacity());
    cache.run_pending_maintenance(); // `len` counts expired entries until they are removed
    assert_eq!(cache.len(), expected.len());
    for (k, v) in expected {
        assert_eq!(cache.peek(k).as_ref(), Some(v), "key {k:?}");
        assert_eq!(cache.get(k).as_ref(), Some(v), "key {k:?}");
    }
    let pairs: HashMap<K, V> = cache.iter().collect();
    assert_eq!(&pairs, expected);
}

/// After the panic: more inserts and removes work and the cache stays consistent.
fn still_usable<K, V, S>(
    cache: &Cache<K, V, S>,
    expected: &mut HashMap<K, V>,
    fresh: impl Iterator<Item = (K, V)>,
) where
    K: Hash + Eq + Clone + Debug,
    V: Clone + PartialEq + Debug,
    S: BuildHasher,
{
    for (k, v) in fresh {
        assert_eq!(cache.insert(k.clone(), v.clone()), None);
        expected.insert(k, v);
    }
    let some: Vec<K> = expected.keys().take(5).cloned().collect();
    for k in some {
        let v = expected.remove(&k);
        assert_eq!(cache.remove(&k), v);
    }
    assert_holds(cache, expected);
}

// ---------------------------------------------------------------------------------------------
// A hasher that panics on one key, in `write` or in `finish`.

const POISON: u64 = 0xDEAD_BEEF_0BAD_F00D;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Stage {
    Write,
    Finish,
}

#[derive(Clone)]
struct TrapHasher(Stage);

struct TrapState {
    inner: DefaultHasher,
    stage: Stage,
    saw_poison: bool,
}

impl Hasher for TrapState {
    fn write(&mut self, bytes: &[u8]) {
        if bytes == POISON.to_ne_bytes() {
            if self.stage == Stage::Write {
                panic!("{INTENDED} hashing the poison key");
            }
            self.saw_poison = true;
        }
        self.inner.write(bytes);
    }

    fn finish(&self) -> u64 {
        if self.saw_poison {
            panic!("{INTENDED} finishing the poison key's hash");
        }
        self.inner.finish()
    }
}

impl BuildHasher for TrapHasher {
    type Hasher = TrapState;
    fn build_hasher(&self) -> TrapState {
        TrapState {
            inner: DefaultHasher::new(),
            stage: self.0,
            saw_poison: false,
        }
    }
}

#[test]
fn panicking_hasher_leaves_cache_intact() {
    for stage in [Stage::Write, Stage::Finish] {
        for shards in [1, 4] {
            let cache: Cache<u64, u64, TrapHasher> = Cache::builder()
                .max_capacity(1000)
                .shards(shards)
                .hasher(TrapHasher(stage))
                .build()
                .unwrap();
            let mut expected: HashMap<u64, u64> = (0..50).map(|k| (k, k * 10)).collect();
            for (&k, &v) in &expected {
                cache.insert(k, v);
            }
            must_panic("get", || cache.get(&POISON));
            must_panic("peek", || cache.peek(&POISON));
            must_panic("contains_key", || cache.contains_key(&POISON));
            must_panic("remove", || cache.remove(&POISON));
            must_panic("insert", || cache.insert(POISON, 1));
            assert_holds(&cache, &expected);
            // Replacing an existing key still works after the failed calls.
            assert_eq!(cache.insert(3, 33), Some(30));
            expected.insert(3, 33);
            still_usable(&cache, &mut expected, (100..120).map(|k| (k, k)));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A key whose `Eq` panics when one side is the poison value and the trap is armed. The hasher
// sends every key to one of three hashes, so lookups always compare keys.

#[derive(Clone, Debug)]
struct Touchy(u64);

impl Hash for Touchy {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.0.hash(h);
    }
}

impl PartialEq for Touchy {
    fn eq(&self, other: &Self) -> bool {
        if armed() && (self.0 == POISON || other.0 == POISON) {
            panic!("{INTENDED} comparing with the poison key");
        }
        self.0 == other.0
    }
}

impl Eq for Touchy {}

#[derive(Clone, Default)]
struct ThreeHashes;

struct ThreeState(u64);

impl Hasher for ThreeState {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.wrapping_add(u64::from(b));
        }
    }
    fn finish(&self) -> u64 {
        // Spread the class over all bits so the shard and index choices vary between classes.
        (self.0 % 3 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
}

impl BuildHasher for ThreeHashes {
    type Hasher = ThreeState;
    fn build_hasher(&self) -> ThreeState {
        ThreeState(0)
    }
}

fn touchy_cache(shards: usize) -> (Cache<Touchy, u64, ThreeHashes>, HashMap<Touchy, u64>) {
    let cache = Cache::builder()
        .max_capacity(1000)
        .shards(shards)
        .hasher(ThreeHashes)
        .build()
        .unwrap();
    let expected: HashMap<Touchy, u64> = (0..30).map(|k| (Touchy(k), k + 7)).collect();
    for (k, &v) in &expected {
        cache.insert(k.clone(), v);
    }
    (cache, expected)
}

#[test]
fn panicking_eq_on_lookup_key_leaves_cache_intact() {
    for shards in [1, 2] {
        let (cache, mut expected) = touchy_cache(shards);
        let p = Touchy(POISON);
        must_panic("get", || with_armed(|| cache.get(&p)));
        must_panic("peek", || with_armed(|| cache.peek(&p)));
        must_panic("contains_key", || with_armed(|| cache.contains_key(&p)));
        must_panic("remove", || with_armed(|| cache.remove(&p)));
        must_panic("insert", || with_armed(|| cache.insert(p.clone(), 1)));
        // The failed insert stored nothing.
        assert!(!cache.contains_key(&p));
        assert_holds(&cache, &expected);
        still_usable(&cache, &mut expected, (100..110).map(|k| (Touchy(k), k)));
        // Without the trap the poison key is an ordinary key.
        assert_eq!(cache.insert(p.clone(), 5), None);
        assert_eq!(cache.get(&p), Some(5));
    }
}

#[test]
fn panicking_eq_on_stored_key_leaves_cache_intact() {
    for shards in [1, 2] {
        let (cache, mut expected) = touchy_cache(shards);
        let p = Touchy(POISON);
        cache.insert(p.clone(), 99);
        expected.insert(p.clone(), 99);
        // Keys that are absent must be compared with every key of their hash, the poison included.
        // Some absent key shares the poison's hash; find one that trips the trap for every call.
        let tripping: Vec<Touchy> = (1000..1010)
            .map(Touchy)
            .filter(|k| {
                quiet_intended_panics();
                catch_unwind(AssertUnwindSafe(|| with_armed(|| cache.contains_key(k)))).is_err()
            })
            .collect();
        assert!(
            !tripping.is_empty(),
            "no absent key was compared with the poison key"
        );
        for k in &tripping {
            must_panic("get", || with_armed(|| cache.get(k)));
            must_panic("remove", || with_armed(|| cache.remove(k)));
            must_panic("insert", || with_armed(|| cache.insert(k.clone(), 1)));
            assert!(!cache.contains_key(k), "a failed insert stored {k:?}");
        }
        assert_holds(&cache, &expected);
        still_usable(&cache, &mut expected, (2000..2010).map(|k| (Touchy(k), k)));
    }
}

// ---------------------------------------------------------------------------------------------
// A `retain` predicate that panics halfway.

#[test]
fn retain_panicking_halfway_settles_what_it_visited() {
    for shards in [1, 4] {
        for panic_at in [0, 1, 17, 59] {
            let cache: Cache<u64, u64> = Cache::builder()
                .max_capacity(1000)
                .shards(shards)
                .build()
                .unwrap();
            let mut expected: HashMap<u64, u64> = (0..60).map(|k| (k, k * 3)).collect();
            for (&k, &v) in &expected {
                cache.insert(k, v);
            }
            let mut visited: Vec<(u64, u64, bool)> = Vec::new();
            must_panic("retain", || {
                cache.retain(|&k, &v| {
                    if visited.len() == panic_at {
                        panic!("{INTENDED} in the retain predicate");
                    }
                    let keep = k % 2 == 0;
                    visited.push((k, v, keep));
                    keep
                });
            });
            assert_eq!(visited.len(), panic_at);
            let mut keys: Vec<u64> = visited.iter().map(|&(k, _, _)| k).collect();
            keys.sort_unstable();
            keys.dedup();
            assert_eq!(keys.len(), visited.len(), "retain visited a key twice");
            for &(k, v, keep) in &visited {
                assert_eq!(expected.get(&k), Some(&v), "retain saw a wrong value");
                if !keep {
                    expected.remove(&k);
                }
            }
            // Rejected entries are gone, all the others (kept or never visited) are still there.
            assert_holds(&cache, &expected);
            // A later retain works normally.
            cache.retain(|&k, _| k % 3 != 0);
            expected.retain(|&k, _| k % 3 != 0);
            assert_holds(&cache, &expected);
            still_usable(&cache, &mut expected, (100..110).map(|k| (k, k)));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A weigher that panics for one value.

const BAD_VALUE: u64 = 666;

#[test]
fn panicking_weigher_leaves_cache_intact() {
    for shards in [1, 2] {
        let cache: Cache<u64, u64> = Cache::builder()
            .max_capacity(1000)
            .shards(shards)
            .weigher(|_k, &v: &u64| {
                if v == BAD_VALUE {
                    panic!("{INTENDED} in the weigher");
                }
                (v % 4) as u32
            })
            .build()
            .unwrap();
        let mut expected: HashMap<u64, u64> = (0..40).map(|k| (k, k + 1)).collect();
        for (&k, &v) in &expected {
            cache.insert(k, v);
        }
        let size = cache.weighted_size();
        // Replacing an existing key: the old value stays.
        must_panic("insert over an existing key", || cache.insert(5, BAD_VALUE));
        // A new key: nothing is stored.
        must_panic("insert of a new key", || cache.insert(500, BAD_VALUE));
        assert!(!cache.contains_key(&500));
        assert_eq!(cache.weighted_size(), size);
        assert_holds(&cache, &expected);
        still_usable(&cache, &mut expected, (100..110).map(|k| (k, k)));
    }
}

// ---------------------------------------------------------------------------------------------
// A value whose `Clone` panics.

#[derive(Debug, PartialEq)]
struct Fragile(u64);

impl Clone for Fragile {
    fn clone(&self) -> Self {
        if armed() && self.0 == POISON {
            panic!("{INTENDED} cloning the poison value");
        }
        Fragile(self.0)
    }
}

#[test]
fn panicking_value_clone_only_fails_the_caller() {
    for shards in [1, 4] {
        let cache: Cache<u64, Fragile> = Cache::builder()
            .max_capacity(1000)
            .shards(shards)
            .build()
            .unwrap();
        let mut expected: HashMap<u64, Fragile> = (0..40).map(|k| (k, Fragile(k))).collect();
        expected.insert(7, Fragile(POISON));
        for (&k, v) in &expected {
            cache.insert(k, v.clone());
        }
        must_panic("get", || with_armed(|| cache.get(&7)));
        must_panic("peek", || with_armed(|| cache.peek(&7)));
        must_panic("iter", || with_armed(|| cache.iter().count()));
        // Other entries read fine while the trap is armed.
        with_armed(|| {
            for k in (0..40).filter(|&k| k != 7) {
                assert_eq!(cache.get(&k), Some(Fragile(k)));
            }
            assert!(cache.contains_key(&7));
        });
        assert_holds(&cache, &expected);
        still_usable(&cache, &mut expected, (100..110).map(|k| (k, Fragile(k))));
    }
}

// ---------------------------------------------------------------------------------------------
// `Drop` panics: a duplicate key dropped by an insert, an evicted value dropped after the insert.

#[derive(Debug)]
struct DropBomb {
    id: u64,
    armed: Arc<AtomicBool>,
}

impl Hash for DropBomb {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.id.hash(h);
    }
}

impl PartialEq for DropBomb {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for DropBomb {}

impl Drop for DropBomb {
    fn drop(&mut self) {
        if self.armed.swap(false, Ordering::Relaxed) {
            panic!("{INTENDED} dropping {}", self.id);
        }
    }
}

fn bomb(id: u64, armed: bool) -> DropBomb {
    DropBomb {
        id,
        armed: Arc::new(AtomicBool::new(armed)),
    }
}

#[test]
fn panicking_drop_of_duplicate_key_leaves_cache_consistent() {
    let cache: Cache<DropBomb, u64> = Cache::builder().max_capacity(100).build().unwrap();
    for id in 0..20 {
        cache.insert(bomb(id, false), id);
    }
    // The key passed in equals the stored one and is dropped by the insert.
    must_panic("insert of a duplicate key", || {
        cache.insert(bomb(5, true), 555)
    });
    cache.validate().unwrap();
    assert_eq!(cache.len(), 20);
    let v = cache.get(&bomb(5, false));
    assert!(v == Some(5) || v == Some(555), "key 5 holds {v:?}");
    for id in (0..20).filter(|&id| id != 5) {
        assert_eq!(cache.get(&bomb(id, false)), Some(id));
    }
    assert_eq!(cache.insert(bomb(50, false), 50), None);
    assert_eq!(cache.remove(&bomb(0, false)), Some(0));
    cache.validate().unwrap();
}

#[test]
fn panicking_drop_of_evicted_value_leaves_cache_consistent() {
    let cache: Cache<u64, DropBomb> = Cache::builder().max_capacity(1).shards(1).build().unwrap();
    let trap = Arc::new(AtomicBool::new(true));
    cache.insert(
        0,
        DropBomb {
            id: 0,
            armed: Arc::clone(&trap),
        },
    );
    let mut panics = 0;
    for k in 1..100 {
        quiet_intended_panics();
        let r = catch_unwind(AssertUnwindSafe(|| cache.insert(k, bomb(k, false))));
        panics += usize::from(r.is_err());
        // Whether or not the drop of the evicted value panicked, the insert itself completed.
        cache.validate().unwrap();
        assert_eq!(cache.len(), 1);
        if !trap.load(Ordering::Relaxed) {
            break; // The bomb went off (its drop disarms it).
        }
    }
    assert!(
        !trap.load(Ordering::Relaxed),
        "the first entry was never evicted"
    );
    assert_eq!(panics, 1);
    assert!(!cache.contains_key(&0));
    assert_eq!(cache.insert(500, bomb(500, false)).map(|b| b.id), None);
    cache.validate().unwrap();
}

// ---------------------------------------------------------------------------------------------
// An `Expiry` whose hooks panic: on create and update for one value, on read for one key.

/// The key whose reads trip the read hook.
const TOUCHY_KEY: u64 = 7;

/// Create: 60 s. Update: 120 s. Read: no opinion. Each panics when armed: create and update
/// for `BAD_VALUE`, read for `TOUCHY_KEY`.
struct TrapExpiry;

impl Expiry<u64, u64> for TrapExpiry {
    fn expire_after_create(&self, _key: &u64, value: &u64) -> Option<Duration> {
        if armed() && *value == BAD_VALUE {
            panic!("{INTENDED} in expire_after_create");
        }
        Some(Duration::from_secs(60))
    }

    fn expire_after_update(&self, _: &u64, value: &u64, _: Option<Duration>) -> Option<Duration> {
        if armed() && *value == BAD_VALUE {
            panic!("{INTENDED} in expire_after_update");
        }
        Some(Duration::from_secs(120))
    }

    fn expire_after_read(&self, key: &u64, _: &u64, _: Option<Duration>) -> Option<Duration> {
        if armed() && *key == TOUCHY_KEY {
            panic!("{INTENDED} in expire_after_read");
        }
        None
    }
}

type ExpiryLog = Arc<Mutex<Vec<(u64, u64, RemovalCause)>>>;

fn trap_expiry_cache(shards: usize) -> (Cache<u64, u64>, MockClock, ExpiryLog) {
    let time = MockClock::new();
    let log: ExpiryLog = Arc::default();
    let sink = Arc::clone(&log);
    let cache = Cache::builder()
        .max_capacity(1000)
        .shards(shards)
        .expiry(TrapExpiry)
        .clock(Clock::mock(&time))
        .eviction_listener(move |k, v, cause| sink.lock().unwrap().push((k, v, cause)))
        .build()
        .unwrap();
    (cache, time, log)
}

#[test]
fn panicking_expiry_leaves_cache_intact() {
    for shards in [1, 4] {
        let (cache, time, log) = trap_expiry_cache(shards);
        let mut expected: HashMap<u64, u64> = (0..40).map(|k| (k, k + 1)).collect();
        for (&k, &v) in &expected {
            cache.insert(k, v); // deadline 60 s
        }
        time.advance(Duration::from_secs(10));
        must_panic("create", || with_armed(|| cache.insert(500, BAD_VALUE)));
        assert!(
            !cache.contains_key(&500),
            "a failed create stored the entry"
        );
        must_panic("update", || with_armed(|| cache.insert(5, BAD_VALUE)));
        must_panic("read", || with_armed(|| cache.get(&TOUCHY_KEY)));
        // Armed, other keys read and write normally.
        with_armed(|| {
            assert_eq!(cache.get(&8), Some(9));
            assert_eq!(cache.insert(9, 99), Some(10));
        });
        expected.insert(9, 99);
        assert_eq!(*log.lock().unwrap(), [(9, 10, RemovalCause::Replaced)]);
        log.lock().unwrap().clear();
        assert_holds(&cache, &expected);
        // The failed update left key 5's deadline at 60 s, not the update's 130 s. Key 9, updated
        // at 10 s, lives to 130 s.
        time.advance(Duration::from_secs(50));
        assert!(
            !cache.contains_key(&5),
            "the failed update moved the deadline"
        );
        assert_eq!(cache.get(&9), Some(99));
        expected.retain(|&k, _| k == 9);
        assert_holds(&cache, &expected);
        let mut gone: Vec<(u64, u64, RemovalCause)> = std::mem::take(&mut *log.lock().unwrap());
        gone.sort_unstable_by_key(|&(k, _, _)| k);
        let want: Vec<_> = (0..40)
            .filter(|&k| k != 9)
            .map(|k| (k, k + 1, RemovalCause::Expired))
            .collect();
        assert_eq!(gone, want);
        still_usable(&cache, &mut expected, (100..110).map(|k| (k, k)));
    }
}

/// A create hook that panics for a key whose previous entry had expired: that entry is gone
/// either way, but its removal must still be reported.
#[test]
fn panicking_expiry_create_over_an_expired_entry_still_reports_it() {
    for shards in [1, 4] {
        let (cache, time, log) = trap_expiry_cache(shards);
        cache.insert(1, 10);
        cache.insert(2, 20);
        time.advance(Duration::from_secs(61));
        must_panic("create over an expired entry", || {
            with_armed(|| cache.insert(1, BAD_VALUE))
        });
        assert!(!cache.contains_key(&1));
        cache.validate().unwrap();
        cache.run_pending_maintenance();
        cache.invalidate_all();
        let mut got = std::mem::take(&mut *log.lock().unwrap());
        got.sort_unstable_by_key(|&(k, _, _)| k);
        assert_eq!(
            got,
            [
                (1, 10, RemovalCause::Expired),
                (2, 20, RemovalCause::Expired)
            ],
            "{shards} shards"
        );
    }
}
