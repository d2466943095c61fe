//! Helpers for the loader tests: force interleavings of in-flight loads without sleeping.

// Each test file uses a subset of these.
#![allow(dead_code)]

use std::hash::Hash;
use std::sync::mpsc;
use std::thread;

use cachet::Cache;

/// Spins (yielding) until `n` callers wait on the load in flight for `key`.
pub fn until_waiting<K: Hash + Eq>(cache: &Cache<K, u64>, key: &K, n: usize) {
    while cache.loaders_waiting(key) != Some(n) {
        thread::yield_now();
    }
}

/// Starts a leader: `lead` runs on its own thread with a clone of `cache` and a `gate` that its
/// loader must call. Returns once the loader has reached the gate; the loader then stays there,
/// in flight, until the returned sender releases it.
pub fn blocked_leader<T: Send + 'static>(
    cache: &Cache<u64, u64>,
    lead: impl FnOnce(Cache<u64, u64>, &dyn Fn()) -> T + Send + 'static,
) -> (thread::JoinHandle<T>, mpsc::Sender<()>) {
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let cache = cache.clone();
    let leader = thread::spawn(move || {
        let gate = || {
            started_tx.send(()).unwrap();
            release_rx.recv().unwrap();
        };
        lead(cache, &gate)
    });
    started_rx.recv().unwrap();
    (leader, release_tx)
}
