//! A key whose `Eq` panics while a finished load is being stored: the panic reaches the leading
//! caller only, the index is left consistent, and every later caller of the key (and every
//! waiter of that load) gets a value without spinning. Later calls run under a watchdog, so a
//! caller stuck in a retry loop fails the test within seconds instead of hanging it.

use std::cell::Cell;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Once, mpsc};
use std::thread;
use std::time::Duration;

use cachet::Cache;

const INTENDED: &str = "[intended panic]";
const WATCHDOG: Duration = Duration::from_secs(2);

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

thread_local! {
    /// Per thread, so that only the leader's completion meets the trap.
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

/// A key whose `Eq` panics on a thread that armed the trap.
#[derive(Clone, Debug)]
struct Touchy(u64);

impl Hash for Touchy {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.0.hash(h);
    }
}

impl PartialEq for Touchy {
    fn eq(&self, other: &Self) -> bool {
        if ARMED.with(Cell::get) {
            panic!("{INTENDED} Eq during completion");
        }
        self.0 == other.0
    }
}

impl Eq for Touchy {}

/// Every key hashes alike, so storing one key compares it with the others (its `Eq` runs).
#[derive(Default)]
struct Constant;

impl Hasher for Constant {
    fn write(&mut self, _: &[u8]) {}
    fn finish(&self) -> u64 {
        0x5555_5555_5555_5555
    }
}

type Touchies = Cache<Touchy, u64, BuildHasherDefault<Constant>>;

/// A cache of `shards` holding `Touchy(2)`, whose keys all collide.
fn touchies(shards: usize) -> Touchies {
    let cache = Cache::builder()
        .max_capacity(100)
        .shards(shards)
        .hasher(BuildHasherDefault::<Constant>::default())
        .build()
        .unwrap();
    cache.insert(Touchy(2), 20);
    cache
}

/// Runs `f` on a thread of its own; fails if it does not return within the watchdog's bound.
fn within_watchdog<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(WATCHDOG)
        .unwrap_or_else(|_| panic!("the call did not return within {WATCHDOG:?}: spinning?"))
}

/// The leader's loader arms the trap as it returns, so the `Eq` calls of the completion (and of
/// whatever cleans up after it) panic on the leader's thread; the trap is disarmed once the
/// leader's call has unwound.
fn lead_into_the_trap(cache: &Touchies, key: u64) {
    quiet_intended_panics();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        cache.get_or_load(&Touchy(key), || {
            ARMED.with(|a| a.set(true));
            10
        })
    }));
    ARMED.with(|a| a.set(false));
    assert!(
        outcome.is_err(),
        "the trap did not fire: the test reaches no completion"
    );
}

#[test]
fn a_panicking_eq_during_completion_leaves_no_caller_spinning() {
    for shards in [1, 4] {
        let cache = touchies(shards);
        lead_into_the_trap(&cache, 1);
        cache.validate().unwrap();
        let c = cache.clone();
        assert_eq!(
            within_watchdog(move || c.get_or_load(&Touchy(1), || 11)),
            11
        );
        let c = cache.clone();
        assert_eq!(within_watchdog(move || c.get(&Touchy(1))), Some(11));
        assert_eq!(cache.get(&Touchy(2)), Some(20));
        cache.validate().unwrap();
    }
}

#[test]
fn async_and_batch_callers_after_a_panicking_completion_do_not_spin() {
    let cache = touchies(1);
    lead_into_the_trap(&cache, 1);
    let c = cache.clone();
    let v = within_watchdog(move || {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(c.get_or_load_async(&Touchy(1), async { 12 }))
    });
    assert_eq!(v, 12);
    lead_into_the_trap(&cache, 3);
    let c = cache.clone();
    let found = within_watchdog(move || {
        c.get_all_or_load(&[Touchy(3)], |keys: &[Touchy]| {
            keys.iter().map(|k| (k.clone(), 30)).collect::<Vec<_>>()
        })
    });
    assert_eq!(found.len(), 1);
    let c = cache.clone();
    assert_eq!(
        within_watchdog(move || c.compute(&Touchy(1), |v| cachet::Compute::Put(
            v.copied().unwrap_or(0) + 1
        ))),
        Some(13)
    );
    cache.validate().unwrap();
}

/// A caller that waited on the load whose completion panicked gets a value too.
#[test]
fn a_waiter_of_a_panicking_completion_gets_a_value() {
    quiet_intended_panics();
    let cache = touchies(1);
    let (joined_tx, joined_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let leader = {
        let cache = cache.clone();
        thread::spawn(move || {
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                cache.get_or_load(&Touchy(1), || {
                    joined_tx.send(()).unwrap();
                    release_rx.recv().unwrap();
                    ARMED.with(|a| a.set(true));
                    10
                })
            }));
            ARMED.with(|a| a.set(false));
            outcome.is_err()
        })
    };
    joined_rx.recv().unwrap();
    let waiter = {
        let cache = cache.clone();
        thread::spawn(move || cache.get_or_load(&Touchy(1), || 11))
    };
    while cache.loaders_waiting(&Touchy(1)) != Some(1) {
        thread::yield_now();
    }
    release_tx.send(()).unwrap();
    assert!(leader.join().unwrap(), "the trap did not fire");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(waiter.join());
    });
    let got = rx
        .recv_timeout(WATCHDOG)
        .expect("the waiter did not return: spinning?")
        .unwrap();
    assert!(got == 10 || got == 11, "waiter got {got}");
    cache.validate().unwrap();
}
