//! A cache stampede, measured: many callers miss the same keys at once while the loader takes
//! 50 ms (a slow query). With `get_or_load`, each key is loaded once and every caller returns
//! when that one load does.
//!
//! `cargo run --release --example stampede`

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use cachet::Cache;

const LOAD_TIME: Duration = Duration::from_millis(50);

/// `threads` blocking callers over `keys` distinct keys (caller `i` asks for key `i % keys`).
fn blocking(threads: usize, keys: u64) -> (usize, Duration) {
    let cache: Cache<u64, u64> = Cache::new(10_000);
    let loads = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let (cache, loads, start) = (cache.clone(), Arc::clone(&loads), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                let key = i as u64 % keys;
                let v = cache.get_or_load(&key, || {
                    loads.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(LOAD_TIME);
                    key
                });
                assert_eq!(v, key);
                Instant::now()
            })
        })
        .collect();
    start.wait();
    let t0 = Instant::now();
    let last = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .max()
        .unwrap();
    (loads.load(Ordering::Relaxed), last - t0)
}

/// `tasks` async callers on a two-worker tokio runtime.
fn asynchronous(tasks: usize, keys: u64) -> (usize, Duration) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let cache: Cache<u64, u64> = Cache::new(10_000);
        let loads = Arc::new(AtomicUsize::new(0));
        let t0 = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|i| {
                let (cache, loads) = (cache.clone(), Arc::clone(&loads));
                tokio::spawn(async move {
                    let key = i as u64 % keys;
                    let v = cache
                        .get_or_load_async(&key, async {
                            loads.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(LOAD_TIME).await;
                            key
                        })
                        .await;
                    assert_eq!(v, key);
                    Instant::now()
                })
            })
            .collect();
        let mut last = t0;
        for h in handles {
            last = last.max(h.await.unwrap());
        }
        (loads.load(Ordering::Relaxed), last - t0)
    })
}

fn main() {
    println!("loader takes {LOAD_TIME:?}; all callers miss at once\n");
    println!("| callers | distinct keys | loads | slowest caller returned after |");
    println!("|---|---:|---:|---:|");
    for (label, (loads, took), keys) in [
        ("64 threads", blocking(64, 1), 1),
        ("200 threads", blocking(200, 100), 100),
        ("1,000 tokio tasks", asynchronous(1000, 1), 1),
        ("1,000 tokio tasks", asynchronous(1000, 100), 100),
    ] {
        println!(
            "| {label} | {keys} | {loads} | {:.1} ms |",
            took.as_secs_f64() * 1e3
        );
    }
}
