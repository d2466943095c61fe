//! The API a moka or quick_cache user reaches for: borrowed keys everywhere, loaders that can
//! say "not found", the entry API (blocking and async), `remove_if`, `set_capacity`, and the
//! loading caches' own surface.

#[path = "common/loaders.rs"]
mod loaders;

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::Duration;

use cachet::{AsyncLoadingCache, Cache, Compute, LoadingCache};
use loaders::{blocked_leader, until_waiting};

fn block_on<F: Future>(fut: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(fut)
}

fn poll_once<F: Future + ?Sized>(fut: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn string_keys_are_loaded_computed_and_batched_by_str() {
    let cache: Cache<String, usize> = Cache::new(100);
    assert_eq!(cache.get_or_load("ada", || 3), 3);
    assert_eq!(block_on(cache.get_or_load_async("bob", async { 4 })), 4);
    assert_eq!(
        cache.compute("ada", |n| Compute::Put(n.unwrap() + 1)),
        Some(4)
    );
    assert_eq!(cache.entry("eve").or_insert(5), 5);
    let found = cache.get_all_or_load(["ada", "zed"], |missing: &[String]| {
        assert_eq!(missing, ["zed".to_string()]);
        missing
            .iter()
            .map(|k| (k.clone(), k.len()))
            .collect::<Vec<_>>()
    });
    assert_eq!((found["ada"], found["zed"]), (4, 3));
    assert_eq!(cache.len(), 4);
}

#[test]
fn not_found_is_returned_and_not_stored() {
    let cache: Cache<u64, String> = Cache::new(100);
    assert_eq!(cache.get_or_load(&1, || None), None);
    assert!(!cache.contains_key(&1));
    let r: Result<Option<String>, _> = cache.get_or_load(&1, || Ok::<_, String>(None));
    assert_eq!(r, Ok(None));
    assert_eq!(
        cache.get_or_load(&1, || Some("one".to_string())).as_deref(),
        Some("one")
    );
    assert_eq!(cache.get(&1).as_deref(), Some("one"));
}

/// A waiter whose loader can say "not found" gets the leader's `None`; one whose loader must
/// produce a value loads the key itself.
#[test]
fn not_found_reaches_the_waiters_that_can_take_it() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let (leader, release) = blocked_leader(&cache, |c, gate| {
        c.get_or_load(&1, || {
            gate();
            None
        })
    });
    let optional = {
        let cache = cache.clone();
        thread::spawn(move || cache.get_or_load(&1, || -> Option<u64> { panic!("joined") }))
    };
    let total = {
        let cache = cache.clone();
        thread::spawn(move || cache.get_or_load(&1, || 7))
    };
    until_waiting(&cache, &1, 2);
    release.send(()).unwrap();
    assert_eq!(leader.join().unwrap(), None);
    assert_eq!(optional.join().unwrap(), None);
    assert_eq!(total.join().unwrap(), 7, "a value-only caller loads itself");
    assert_eq!(cache.get(&1), Some(7));
}

#[test]
fn negative_ttl_remembers_not_found_until_a_value_replaces_it() {
    let time = cachet::MockClock::new();
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(100)
        .negative_ttl(Duration::from_secs(5))
        .clock(cachet::Clock::mock(&time))
        .build()
        .unwrap();
    let calls = AtomicU64::new(0);
    let missing = || {
        calls.fetch_add(1, Ordering::SeqCst);
        None
    };
    assert_eq!(cache.get_or_load(&1, missing), None);
    assert_eq!(cache.get_or_load(&1, missing), None);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "remembered");
    time.advance(Duration::from_secs(5));
    assert_eq!(cache.get_or_load(&1, missing), None);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "forgotten after the ttl");
    // A caller that must have a value loads, and its value replaces the remembered absence.
    assert_eq!(cache.get_or_load(&1, || 10), 10);
    assert_eq!(cache.get_or_load(&1, missing), Some(10));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn the_entry_api_inserts_if_absent_upserts_and_computes() {
    let cache: Cache<&str, u32> = Cache::new(100);
    assert_eq!(cache.entry(&"a").or_insert(1), 1);
    assert_eq!(cache.entry(&"a").or_insert(2), 1);
    assert_eq!(
        cache
            .entry(&"a")
            .and_upsert(|v| v.copied().unwrap_or(0) + 10),
        11
    );
    assert_eq!(
        cache
            .entry(&"b")
            .and_upsert(|v| v.copied().unwrap_or(0) + 10),
        10
    );
    assert_eq!(cache.entry(&"b").and_compute(|_| Compute::Remove), None);
    assert_eq!(cache.get("a"), Some(11));
    assert_eq!(cache.get("b"), None);
    // Async forms.
    block_on(async {
        assert_eq!(cache.entry(&"c").or_insert_async(3).await, 3);
        assert_eq!(
            cache.entry(&"c").and_upsert_async(|v| v.unwrap() * 2).await,
            6
        );
        assert_eq!(
            cache.entry(&"c").and_compute_async(|_| Compute::Keep).await,
            Some(6)
        );
    });
}

/// An entry operation waits for a load of its key in flight; the async form does so without
/// blocking its task's thread.
#[test]
fn an_async_entry_waits_for_a_load_in_flight_without_blocking() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let (leader, release) = blocked_leader(&cache, |c, gate| {
        c.get_or_load(&1, || {
            gate();
            10
        })
    });
    let mut upsert = pin!(
        cache
            .entry(&1)
            .and_upsert_async(|v| v.copied().unwrap_or(0) + 1)
    );
    assert!(
        poll_once(upsert.as_mut()).is_pending(),
        "it waits for the load"
    );
    release.send(()).unwrap();
    assert_eq!(leader.join().unwrap(), 10);
    assert_eq!(block_on(upsert), 11, "applied to the loaded value");
    assert_eq!(cache.get(&1), Some(11));
}

#[test]
fn remove_if_removes_only_what_its_predicate_accepts() {
    let cache: Cache<String, u32> = Cache::new(100);
    cache.insert("a".to_string(), 1);
    assert_eq!(cache.remove_if("a", |&v| v > 1), None);
    assert_eq!(cache.get("a"), Some(1));
    assert_eq!(cache.remove_if("a", |&v| v == 1), Some(1));
    assert_eq!(cache.get("a"), None);
    assert_eq!(cache.remove_if("missing", |_| true), None);
}

#[test]
fn set_capacity_shrinks_and_grows_a_count_bounded_cache() {
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(1_000)
        .shards(4)
        .build()
        .unwrap();
    for k in 0..10_000 {
        cache.insert(k, k);
    }
    assert_eq!(cache.len(), 1_000, "every shard full");
    cache.set_capacity(100);
    assert_eq!(cache.capacity(), 100);
    assert!(cache.len() <= 100, "{}", cache.len());
    cache.validate().unwrap();
    cache.set_capacity(2_000);
    for k in 0..20_000 {
        cache.insert(k, k);
    }
    assert_eq!(cache.len(), 2_000);
    cache.validate().unwrap();
}

#[test]
fn set_capacity_keeps_a_weighted_cache_within_its_new_bound() {
    let cache: Cache<u64, u32> = Cache::builder()
        .max_capacity(10_000)
        .weigher(|_, w: &u32| *w)
        .shards(16)
        .build()
        .unwrap();
    for k in 0..2_000 {
        cache.insert(k, (k % 10 + 1) as u32);
    }
    cache.set_capacity(3_000);
    assert!(cache.weighted_size() <= 3_000, "{}", cache.weighted_size());
    cache.validate().unwrap();
    cache.set_capacity(20_000);
    cache.insert(1_000_000, 15_000); // an entry larger than the old capacity
    assert_eq!(cache.get(&1_000_000), Some(15_000));
    assert!(cache.weighted_size() <= 20_000);
    cache.validate().unwrap();
}

/// A loading cache's own surface: no `Deref` to the plain cache, which is one call away.
#[test]
fn a_loading_cache_gets_refreshes_and_invalidates() {
    let version = Arc::new(AtomicU64::new(1));
    let v = Arc::clone(&version);
    let users: LoadingCache<String, u64, Option<u64>> = Cache::builder()
        .max_capacity(100)
        .build_loading(move |name: &String| (name != "nobody").then(|| v.load(Ordering::SeqCst)))
        .unwrap();
    assert_eq!(users.get_if_present("ada"), None);
    assert_eq!(users.get("ada"), Some(1));
    assert_eq!(users.get("nobody"), None);
    assert_eq!(users.get_if_present("ada"), Some(1));
    version.store(2, Ordering::SeqCst);
    assert_eq!(users.get("ada"), Some(1), "cached");
    assert_eq!(users.refresh("ada"), Some(2), "loaded again now");
    assert_eq!(users.get("ada"), Some(2));
    let all = users.get_all(["ada", "bob", "nobody", "ada"]);
    assert_eq!(all.len(), 3);
    assert_eq!((all["bob"], all["nobody"]), (Some(2), None));
    users.invalidate("ada");
    assert_eq!(users.get_if_present("ada"), None);
    assert_eq!(users.cache().len(), 1); // bob
    users.invalidate_all();
    assert!(users.cache().is_empty());
}

/// A refresh whose loader finds nothing removes the key; one that fails keeps the value.
#[test]
fn a_refresh_that_finds_nothing_removes_and_one_that_fails_keeps() {
    let answer = Arc::new(AtomicU64::new(1)); // 0: not found, u64::MAX: fails
    let a = Arc::clone(&answer);
    let cache: LoadingCache<u64, u64, Result<Option<u64>, String>> = Cache::builder()
        .max_capacity(100)
        .build_loading(move |_: &u64| match a.load(Ordering::SeqCst) {
            0 => Ok(None),
            u64::MAX => Err("down".to_string()),
            n => Ok(Some(n)),
        })
        .unwrap();
    assert_eq!(cache.get(&1), Ok(Some(1)));
    answer.store(u64::MAX, Ordering::SeqCst);
    assert!(cache.refresh(&1).is_err());
    assert_eq!(
        cache.get_if_present(&1),
        Some(1),
        "a failed refresh keeps the value"
    );
    answer.store(0, Ordering::SeqCst);
    assert_eq!(cache.refresh(&1), Ok(None));
    assert_eq!(
        cache.get_if_present(&1),
        None,
        "not found any more: removed"
    );
}

#[test]
fn an_async_loading_cache_takes_its_key_by_reference() {
    block_on(async {
        let cache: AsyncLoadingCache<String, usize, Result<usize, String>> = Cache::builder()
            .max_capacity(100)
            .build_async_loading(
                |refresh| {
                    tokio::spawn(refresh);
                },
                |name: &String| {
                    let name = name.clone();
                    async move { Ok(name.len()) }
                },
            )
            .unwrap();
        assert_eq!(cache.get("four").await, Ok(4));
        assert_eq!(cache.get_if_present("four"), Some(4));
        assert_eq!(cache.refresh("four").await, Ok(4));
        let all = cache.get_all(["a", "bb"]).await;
        assert_eq!((all["a"].clone(), all["bb"].clone()), (Ok(1), Ok(2)));
        cache.invalidate("a");
        assert_eq!(cache.cache().len(), 2);
    });
}

/// The futures of the async forms are `Send` (they can be spawned on a multi-threaded runtime),
/// and the loading caches are `Send + Sync + Clone` handles.
#[test]
fn async_forms_are_send_and_loading_caches_are_handles() {
    fn send<T: Send>(_: &T) {}
    fn handle<T: Send + Sync + Clone + 'static>() {}
    let cache: Cache<String, u64> = Cache::new(10);
    send(&cache.get_or_load_async("k", async { 1 }));
    send(&cache.entry("k").or_insert_async(1));
    send(
        &cache
            .entry("k")
            .and_upsert_async(|v| v.copied().unwrap_or(0)),
    );
    send(&cache.entry("k").and_compute_async(|_| Compute::Keep));
    handle::<LoadingCache<String, u64, Option<u64>>>();
    handle::<AsyncLoadingCache<String, u64, Result<u64, String>>>();
    let loading: AsyncLoadingCache<String, u64, Option<u64>> = Cache::builder()
        .max_capacity(10)
        .build_async_loading(
            |_| {},
            |k: &String| std::future::ready(Some(k.len() as u64)),
        )
        .unwrap();
    send(&loading.get("k"));
    send(&loading.refresh("k"));
    assert!(format!("{:?}", cache.entry("k")).starts_with("Entry"));
}
