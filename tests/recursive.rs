//! A loader that asks the cache for its own key would wait for itself forever. The cache
//! detects it, for blocking callers on the same thread and async callers in the same task, and
//! reports it with a panic that names the recursive load. Each test runs the call on a thread
//! of its own under a watchdog, so a regression fails within seconds instead of hanging.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use cachet::Cache;

/// How long a recursive load may take to be reported.
const WATCHDOG: Duration = Duration::from_secs(2);

/// Runs `f` on its own thread and returns its panic message, or fails if it does not end
/// within the watchdog's bound (the thread is left behind, hung) or ends without a panic.
fn panic_message<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> String {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let outcome = catch_unwind(AssertUnwindSafe(f));
        let _ = tx.send(outcome.err().map(|p| {
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        }));
    });
    match rx.recv_timeout(WATCHDOG) {
        Ok(Some(msg)) => msg,
        Ok(None) => panic!("the recursive load returned instead of being reported"),
        Err(_) => panic!("the recursive load hung (still waiting after {WATCHDOG:?})"),
    }
}

fn assert_recursive(msg: &str) {
    assert!(
        msg.contains("recursive load"),
        "the panic does not name the recursive load: {msg:?}"
    );
}

/// Polls `fut` to completion on this thread (the loads here never wait on another thread).
fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(fut)
}

#[test]
fn a_blocking_loader_asking_for_its_own_key_is_reported() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let c = cache.clone();
    let msg = panic_message(move || c.get_or_load(&1, || c.get_or_load(&1, || 2)));
    assert_recursive(&msg);
    // The key is free again: the next caller loads it.
    assert_eq!(cache.get_or_load(&1, || 3), 3);
    cache.validate().unwrap();
}

#[test]
fn a_fallible_blocking_loader_asking_for_its_own_key_is_reported() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let c = cache.clone();
    let msg = panic_message(move || {
        c.get_or_load(&1, || {
            c.get_or_load(&1, || Ok::<u64, String>(2))
                .map_err(|e| e.to_string())
        })
    });
    assert_recursive(&msg);
}

#[test]
fn a_loader_computing_its_own_key_is_reported() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let c = cache.clone();
    let msg = panic_message(move || {
        c.get_or_load(&1, || {
            c.compute(&1, |_| cachet::Compute::Put(2)).unwrap_or(0)
        })
    });
    assert_recursive(&msg);
}

#[test]
fn an_async_loader_awaiting_its_own_key_is_reported() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let c = cache.clone();
    let msg = panic_message(move || {
        block_on(async {
            c.get_or_load_async(&1, async { c.get_or_load_async(&1, async { 2 }).await })
                .await
        })
    });
    assert_recursive(&msg);
    assert_eq!(cache.get_or_load(&1, || 3), 3);
}

#[test]
fn a_loading_cache_whose_loader_asks_for_its_own_key_is_reported() {
    use std::sync::{Arc, OnceLock};
    type Users = cachet::LoadingCache<u64, u64, Result<u64, String>>;
    let slot: Arc<OnceLock<Users>> = Arc::new(OnceLock::new());
    let inner = Arc::clone(&slot);
    let users: Users = Cache::builder()
        .max_capacity(100)
        .build_loading(move |k: &u64| {
            let me = inner.get().expect("set before the first get");
            me.get(k).map_err(|e| e.to_string())
        })
        .unwrap();
    let _ = slot.set(users.clone());
    let msg = panic_message(move || users.get(&1));
    assert_recursive(&msg);
}

/// Nested loads of other keys are fine, blocking or async.
#[test]
fn a_loader_may_load_other_keys() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let v = cache.get_or_load(&1, || cache.get_or_load(&2, || 20) + 1);
    assert_eq!((v, cache.get(&2)), (21, Some(20)));
    let v = block_on(cache.get_or_load_async(&3, async {
        cache.get_or_load_async(&4, async { 40 }).await + 1
    }));
    assert_eq!((v, cache.get(&4)), (41, Some(40)));
}

#[test]
fn a_batch_loader_asking_for_a_key_it_loads_is_reported() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let c = cache.clone();
    let msg = panic_message(move || {
        c.get_all_or_load(&[1, 2], |keys: &[u64]| {
            let inner = c.get_or_load(&2, || 20);
            keys.iter().map(|&k| (k, inner + k)).collect::<Vec<_>>()
        })
    });
    assert_recursive(&msg);
    cache.validate().unwrap();
}
