//! The tiered cache against a real Redis: the read path, coalescing, codecs, invalidation across
//! instances (cachet's own writes and other clients'), a fill racing an invalidation, the
//! fleet-wide lease, and the blocking front-end. Each test starts its own `redis-server`.

#![cfg(feature = "redis")]

#[path = "../examples/common/redis_server.rs"]
mod redis_server;
#[path = "common/redis.rs"]
mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cachet::tiered::{Codec, CodecError, MsgPack, Raw, TieredCache};
use cachet::{Cache, Clock, MockClock};
use support::{Db, PATIENCE, eventually, eventually_blocking, key, server, tiered};

fn msgpack(v: u64) -> Vec<u8> {
    MsgPack.encode(&v).unwrap()
}

/// A loader that must not run.
async fn never() -> u64 {
    panic!("the value was in Redis: the loader must not run")
}

/// A blocking loader that must not run.
fn never_blocking() -> u64 {
    panic!("the value was in Redis: the loader must not run")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_everywhere_loads_once_writes_redis_and_fills_l1() {
    let Some(server) = server() else {
        return;
    };
    let cache = tiered(&server, "a")
        .redis_ttl(Duration::from_secs(30))
        .build()
        .unwrap();
    assert!(cache.wait_connected(PATIENCE).await);
    let db = Db::default();
    db.bump();

    assert_eq!(cache.get_or_load(&1, db.load()).await, 1);
    assert_eq!(db.queries(), 1);
    let stored: Option<Vec<u8>> = server.cmd(redis::cmd("GET").arg(key(1)));
    assert_eq!(
        stored,
        Some(msgpack(1)),
        "written to Redis through the codec"
    );
    let pttl: i64 = server.cmd(redis::cmd("PTTL").arg(key(1)));
    assert!(
        (1..=30_000).contains(&pttl),
        "with the configured time-to-live: {pttl}"
    );
    assert_eq!(
        server.cmd::<Option<String>>(redis::cmd("GET").arg("cachet-lease:t:1")),
        None
    );

    // The loading instance's own write comes back as an invalidation (the server reports a
    // script's writes to the connection that ran it), so its next read is from Redis...
    assert!(cache.sync_invalidations().await);
    assert_eq!(cache.get_or_load(&1, never()).await, 1);
    // ...and the ones after are L1 hits: no loader, no Redis.
    let gets = server.calls("get");
    assert_eq!(cache.get_or_load(&1, never()).await, 1);
    assert_eq!(cache.get_if_present(&1), Some(1));
    assert_eq!(server.calls("get"), gets, "an L1 hit does not reach Redis");
    let stats = cache.stats();
    assert_eq!((stats.l2_misses, stats.l2_hits, stats.loads), (1, 1, 1));
    assert!(stats.connected && stats.connects == 1);
    // Each call counted once in L1: two misses (the load, the read from Redis), two hits.
    assert_eq!((stats.l1.misses, stats.l1.hits), (2, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l1_keeps_a_redis_value_no_longer_than_the_key_has_left() {
    let Some(server) = server() else {
        return;
    };
    let time = MockClock::new();
    let l1 = Cache::builder().max_capacity(100).clock(Clock::mock(&time));
    let cache = tiered(&server, "a").l1(l1).build().unwrap();
    assert!(cache.wait_connected(PATIENCE).await);
    let _: () = server.cmd(
        redis::cmd("SET")
            .arg(key(7))
            .arg(msgpack(70))
            .arg("PX")
            .arg(5_000),
    );
    let _: () = server.cmd(redis::cmd("SET").arg(key(8)).arg(msgpack(80)));
    // The writes' invalidations are in, so the reads below are not turned away by them.
    assert!(cache.sync_invalidations().await);

    assert_eq!(cache.get_or_load(&7, never()).await, 70);
    assert_eq!(cache.stats().l2_hits, 1);
    time.advance(Duration::from_millis(4_000));
    assert_eq!(cache.get_if_present(&7), Some(70));
    // The key had at most 5 s left in Redis when it was read.
    time.advance(Duration::from_millis(1_000));
    assert_eq!(cache.get_if_present(&7), None);

    // A key without a deadline in Redis: L1's own lifetime bounds it.
    assert_eq!(cache.get_or_load(&8, never()).await, 80);
    time.advance(cachet::tiered::DEFAULT_L1_TTL - Duration::from_millis(1));
    assert_eq!(cache.get_if_present(&8), Some(80));
    time.advance(Duration::from_millis(1));
    assert_eq!(cache.get_if_present(&8), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_in_an_instance_share_one_redis_read() {
    let Some(server) = server() else {
        return;
    };
    let cache = tiered(&server, "a").build().unwrap();
    assert!(cache.wait_connected(PATIENCE).await);
    let _: () = server.cmd(redis::cmd("SET").arg(key(3)).arg(msgpack(33)));
    let gets = server.calls("get");
    let start = Arc::new(tokio::sync::Barrier::new(64));
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (cache, start) = (cache.clone(), Arc::clone(&start));
            tokio::spawn(async move {
                start.wait().await;
                cache.get_or_load(&3, never()).await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 33);
    }
    assert_eq!(
        server.calls("get") - gets,
        1,
        "one Redis round trip for 64 misses"
    );
    assert_eq!(cache.stats().l2_hits, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_cross_as_msgpack_or_raw_bytes_and_undecodable_ones_are_loaded() {
    let Some(server) = server() else {
        return;
    };
    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Product {
        name: String,
        cents: u64,
    }
    let products: TieredCache<u64, Product> = TieredCache::builder(&server.url(), "product:")
        .build()
        .unwrap();
    let raw: TieredCache<String, Vec<u8>, Raw> = TieredCache::builder(&server.url(), "blob:")
        .codec(Raw)
        .build()
        .unwrap();
    assert!(products.wait_connected(PATIENCE).await && raw.wait_connected(PATIENCE).await);

    let lamp = Product {
        name: "lamp".into(),
        cents: 1999,
    };
    products.insert(1, lamp.clone()).await.unwrap();
    let bytes: Vec<u8> = server.cmd(redis::cmd("GET").arg("product:1"));
    // A map of two named fields: another service can read it without the Rust type.
    assert_eq!(bytes[0], 0x82);
    assert!(bytes.windows(4).any(|w| w == b"name"));

    let _: () = server.cmd(redis::cmd("SET").arg("blob:x").arg(&b"\x00\xffbytes"[..]));
    // The key borrowed: a `&str` for a `String` key.
    let got = raw
        .get_or_load("x", async { panic!("blob:x is in Redis") as Vec<u8> })
        .await;
    assert_eq!(got, b"\x00\xffbytes");

    // Another service's format: loaded instead, and left in Redis as it is.
    let _: () = server.cmd(redis::cmd("SET").arg("product:2").arg("{\"json\": true}"));
    let chair = Product {
        name: "chair".into(),
        cents: 4900,
    };
    let loaded = chair.clone();
    assert_eq!(products.get_or_load(&2, async { loaded }).await, chair);
    let kept: String = server.cmd(redis::cmd("GET").arg("product:2"));
    assert_eq!(kept, "{\"json\": true}");
    assert_eq!(products.stats().loads, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_and_invalidate_reach_every_instance() {
    let Some(server) = server() else {
        return;
    };
    let a = tiered(&server, "a").build().unwrap();
    let b = tiered(&server, "b").build().unwrap();
    assert!(a.wait_connected(PATIENCE).await && b.wait_connected(PATIENCE).await);
    let db = Db::default();
    db.bump();
    assert_eq!(a.get_or_load(&1, db.load()).await, 1);
    // Past the invalidation that A's write sends everyone, itself included (a change that lands
    // while a read or write is in flight keeps its value out of L1, which the assertions below
    // on what L1 holds rule out).
    assert!(a.sync_invalidations().await && b.sync_invalidations().await);
    assert_eq!(b.get_or_load(&1, never()).await, 1);
    assert_eq!(b.get_if_present(&1), Some(1));

    // Write-through on A: B drops its copy and reads the new value from Redis.
    a.insert(1, 2).await.unwrap();
    assert_eq!(
        a.get_if_present(&1),
        Some(2),
        "the writer keeps what it wrote"
    );
    assert!(b.sync_invalidations().await);
    assert_eq!(b.get_if_present(&1), None);
    assert_eq!(b.get_or_load(&1, never()).await, 2);

    // Invalidation on B: gone from Redis, from B, and from A.
    db.bump();
    db.bump();
    b.invalidate(&1).await.unwrap();
    assert_eq!(b.get_if_present(&1), None);
    assert!(a.sync_invalidations().await);
    assert_eq!(a.get_if_present(&1), None);
    assert_eq!(
        server.cmd::<Option<Vec<u8>>>(redis::cmd("GET").arg(key(1))),
        None
    );
    assert_eq!(a.get_or_load(&1, db.load()).await, 3);
    assert!(b.stats().invalidations_received >= 1 && a.stats().invalidations_received >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_by_other_clients_invalidate_l1() {
    let Some(server) = server() else {
        return;
    };
    let a = tiered(&server, "a").build().unwrap();
    assert!(a.wait_connected(PATIENCE).await);
    let db = Db::default();
    db.bump();
    let fill = |k| {
        let db = db.clone();
        let a = a.clone();
        async move { a.get_or_load(&k, db.load()).await }
    };
    assert_eq!(fill(1).await, 1);
    assert_eq!(fill(2).await, 1);

    // A plain SET from another service: the next read sees its value.
    let _: () = server.cmd(redis::cmd("SET").arg(key(1)).arg(msgpack(10)));
    assert!(a.sync_invalidations().await);
    assert_eq!(a.get_if_present(&1), None);
    assert_eq!(a.get_or_load(&1, never()).await, 10);

    // A plain DEL: the next read loads.
    let _: () = server.cmd(redis::cmd("DEL").arg(key(1)));
    db.bump();
    assert!(a.sync_invalidations().await);
    assert_eq!(a.get_if_present(&1), None);
    assert_eq!(fill(1).await, 2);

    // FLUSHALL: everything goes.
    let flushes = a.stats().flushes;
    let _: () = server.cmd(&redis::cmd("FLUSHALL"));
    assert!(a.sync_invalidations().await);
    assert_eq!(a.stats().flushes, flushes + 1);
    assert_eq!((a.get_if_present(&1), a.get_if_present(&2)), (None, None));
    assert_eq!(fill(2).await, 2);
    assert!(a.sync_invalidations().await);
    assert_eq!(a.get_or_load(&2, never()).await, 2);
    assert_eq!(a.get_if_present(&2), Some(2));

    // Keys outside the prefix, or that no key of the cache is named by, change nothing.
    let before = a.stats().l1.removals(cachet::RemovalCause::Explicit);
    let _: () = server.cmd(redis::cmd("SET").arg("other:2").arg(1));
    let _: () = server.cmd(redis::cmd("SET").arg("t:02").arg(1));
    assert!(a.sync_invalidations().await);
    assert_eq!(a.get_if_present(&2), Some(2));
    assert_eq!(
        a.stats().l1.removals(cachet::RemovalCause::Explicit),
        before
    );
}

/// MsgPack, with a gate in `decode`: the read that finds it armed stops there (between Redis's
/// answer and the store into L1) until released.
#[derive(Clone, Default)]
struct Gated {
    gate: Arc<Mutex<Option<Gate>>>,
}

/// Tells that a read reached the gate, then waits for the release.
type Gate = (mpsc::Sender<()>, mpsc::Receiver<()>);

impl Gated {
    /// Arms the gate: returns a receiver told when a read reaches it, and the release.
    fn arm(&self) -> (mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (reached_tx, reached_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        *self.gate.lock().unwrap() = Some((reached_tx, release_rx));
        (reached_rx, release_tx)
    }
}

impl Codec<u64> for Gated {
    fn encode(&self, value: &u64) -> Result<Vec<u8>, CodecError> {
        MsgPack.encode(value)
    }

    fn decode(&self, bytes: Vec<u8>) -> Result<u64, CodecError> {
        let gate = self.gate.lock().unwrap().take();
        if let Some((reached, release)) = gate {
            reached.send(()).unwrap();
            release.recv().unwrap();
        }
        MsgPack.decode(bytes)
    }
}

/// A read has found the old value in Redis and is about to store it in L1 when another
/// instance's write lands and its invalidation arrives: the old value is returned to that read
/// (it began before the write) but never stored.
#[test]
fn a_fill_racing_an_invalidation_is_not_stored() {
    let Some(server) = server() else {
        return;
    };
    let gated = Gated::default();
    // Blocking caches: the gated read blocks its own thread, while the connection's reader
    // (which applies the invalidation) runs on the cache's runtime thread.
    let a = tiered(&server, "a")
        .codec(gated.clone())
        // Even a cache that keeps degraded values must not keep this one.
        .degraded_l1_ttl(Duration::from_secs(60))
        .build_blocking()
        .unwrap();
    let b = tiered(&server, "b").build_blocking().unwrap();
    assert!(a.wait_connected(PATIENCE) && b.wait_connected(PATIENCE));
    b.insert(1, 1).unwrap();

    let (reached, release) = gated.arm();
    let reader = {
        let a = a.clone();
        std::thread::spawn(move || a.get_or_load(&1, never_blocking))
    };
    reached.recv().unwrap();
    let before = a.stats().invalidations_received;
    b.insert(1, 2).unwrap();
    eventually_blocking("A hears of B's write", || {
        a.stats().invalidations_received > before
    });
    release.send(()).unwrap();
    assert_eq!(reader.join().unwrap(), 1, "the read began before the write");
    assert_eq!(a.get_if_present(&1), None, "but its value is not kept");
    assert_eq!(a.get_or_load(&1, never_blocking), 2);

    // The same read with no write in between is kept: the gate alone changes nothing.
    a.invalidate(&1).unwrap();
    b.insert(1, 3).unwrap();
    assert!(a.sync_invalidations());
    assert!(a.as_async().l1().get(&1).is_none());
    let (reached, release) = gated.arm();
    let reader = {
        let a = a.clone();
        std::thread::spawn(move || a.get_or_load(&1, never_blocking))
    };
    reached.recv().unwrap();
    release.send(()).unwrap();
    assert_eq!(reader.join().unwrap(), 3);
    assert_eq!(a.get_if_present(&1), Some(3));
}

/// A load that began before an invalidation of its key (on another instance) is neither
/// written to Redis nor kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_racing_an_invalidation_is_neither_written_nor_kept() {
    let Some(server) = server() else {
        return;
    };
    let a = tiered(&server, "a").build().unwrap();
    let b = tiered(&server, "b").build().unwrap();
    assert!(a.wait_connected(PATIENCE).await && b.wait_connected(PATIENCE).await);
    let db = Db::default();
    db.bump();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let load = {
        let db = db.clone();
        async move {
            let v = db.query();
            started_tx.send(()).unwrap();
            release_rx.await.unwrap();
            v
        }
    };
    let reader = {
        let a = a.clone();
        tokio::spawn(async move { a.get_or_load(&1, load).await })
    };
    started_rx.await.unwrap();
    assert_eq!(db.bump(), 2);
    b.invalidate(&1).await.unwrap();
    release_tx.send(()).unwrap();
    assert_eq!(reader.await.unwrap(), 1, "the read began before the write");
    assert_eq!(a.get_if_present(&1), None);
    assert_eq!(
        server.cmd::<Option<Vec<u8>>>(redis::cmd("GET").arg(key(1))),
        None
    );
    assert_eq!(a.get_or_load(&1, db.load()).await, 2);
    assert_eq!(b.get_or_load(&1, never()).await, 2);
}

/// Three instances, 64 concurrent clients each, one hot key that has just expired everywhere:
/// one load in the whole fleet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_64_clients_one_expired_key_one_load() {
    let Some(server) = server() else {
        return;
    };
    let fleet: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|name| tiered(&server, name).build().unwrap())
        .collect();
    for cache in &fleet {
        assert!(cache.wait_connected(PATIENCE).await);
    }
    let db = Db::default();
    db.bump();
    for cache in &fleet {
        assert_eq!(cache.get_or_load(&1, db.load()).await, 1);
    }
    assert_eq!(db.queries(), 1);

    // The key expires in Redis; expiry is a change that tracking reports to every instance.
    let _: () = server.cmd(redis::cmd("PEXPIRE").arg(key(1)).arg(1));
    eventually("the key expires in Redis", || {
        server.cmd::<i64>(redis::cmd("EXISTS").arg(key(1))) == 0
    })
    .await;
    for cache in &fleet {
        eventually("the expiry reaches every L1", || {
            cache.get_if_present(&1).is_none()
        })
        .await;
    }
    db.bump();
    let before = db.queries();

    let start = Arc::new(tokio::sync::Barrier::new(3 * 64));
    let tasks: Vec<_> = (0..3 * 64)
        .map(|i| {
            let cache = fleet[i % 3].clone();
            let (db, start) = (db.clone(), Arc::clone(&start));
            tokio::spawn(async move {
                start.wait().await;
                let load = async {
                    // A query that takes a while, as a real one does.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    db.query()
                };
                cache.get_or_load(&1, load).await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 2);
    }
    assert_eq!(db.queries() - before, 1, "one load for the whole fleet");
    let waits: u64 = fleet.iter().map(|c| c.stats().lease_waits).sum();
    assert!(
        waits >= 2,
        "the two other instances waited for the lease holder"
    );
}

/// A lease whose holder died (it never writes the value): the waiter loads once the lease
/// expires, and the fleet is not blocked for longer than the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_lease_holder_is_replaced_when_its_lease_expires() {
    let Some(server) = server() else {
        return;
    };
    let a = tiered(&server, "a")
        .lease(Duration::from_secs(2), Duration::from_secs(2))
        .build()
        .unwrap();
    assert!(a.wait_connected(PATIENCE).await);
    let _: () = server.cmd(
        redis::cmd("SET")
            .arg("cachet-lease:t:1")
            .arg("a-holder-that-died")
            .arg("PX")
            .arg(300),
    );
    let db = Db::default();
    db.bump();
    assert_eq!(a.get_or_load(&1, db.load()).await, 1);
    let stats = a.stats();
    assert_eq!(
        (stats.lease_waits, stats.lease_timeouts, stats.loads),
        (1, 0, 1)
    );
    assert_eq!(
        server.cmd::<Option<Vec<u8>>>(redis::cmd("GET").arg(key(1))),
        Some(msgpack(1)),
        "the new holder wrote the value"
    );
}

/// A failing loader gives its lease back: the next caller loads at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_load_releases_the_lease() {
    let Some(server) = server() else {
        return;
    };
    let a = tiered(&server, "a").build().unwrap();
    assert!(a.wait_connected(PATIENCE).await);
    let failed = a
        .get_or_load(&1, async { Err::<u64, _>("database down") })
        .await;
    assert_eq!(*failed.unwrap_err(), "database down");
    assert_eq!(
        server.cmd::<i64>(redis::cmd("EXISTS").arg("cachet-lease:t:1")),
        0
    );
    assert_eq!(a.get_or_load(&1, async { Ok::<_, ()>(5) }).await, Ok(5));
    assert_eq!(a.stats().lease_waits, 0);
}

/// A loader that says "not found": every caller of the load is told so, nothing is written to
/// Redis or kept in L1 (even with the L1 builder asking for negative caching), the lease is
/// given back, and another instance loads the key itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_is_returned_but_neither_written_nor_kept() {
    let Some(server) = server() else {
        return;
    };
    let a = tiered(&server, "a")
        .l1(Cache::builder()
            .max_capacity(100)
            .negative_ttl(Duration::from_secs(60)))
        .build()
        .unwrap();
    let b = tiered(&server, "b").build().unwrap();
    assert!(a.wait_connected(PATIENCE).await && b.wait_connected(PATIENCE).await);
    let loads = AtomicU64::new(0);
    let not_found = || async {
        loads.fetch_add(1, Ordering::SeqCst);
        None::<u64>
    };

    assert_eq!(a.get_or_load(&1, not_found()).await, None);
    assert_eq!(
        server.cmd::<i64>(redis::cmd("EXISTS").arg(key(1)).arg("cachet-lease:t:1")),
        0,
        "neither the value nor the lease is in Redis"
    );
    assert_eq!(a.get_or_load(&1, not_found()).await, None);
    assert_eq!(loads.load(Ordering::SeqCst), 2, "not remembered in L1");
    assert_eq!(b.get_or_load(&1, not_found()).await, None);
    assert_eq!(loads.load(Ordering::SeqCst), 3);
    assert_eq!(b.stats().lease_waits, 0);

    // Once found, every shape reads it: a `Result<Option<_>, _>` loader need not run.
    let row = || async { Ok::<_, std::io::Error>(Some(5)) };
    assert_eq!(a.get_or_load(&1, row()).await.ok(), Some(Some(5)));
    assert!(b.sync_invalidations().await);
    let again = b.get_or_load(&1, async { panic!("1 is in Redis") as Option<u64> });
    assert_eq!(again.await, Some(5));
}

/// No Redis at all: every read is answered by the loader, none fails, nothing is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_reads_go_to_the_loader() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let a: TieredCache<u64, u64> =
        TieredCache::builder(&format!("redis://127.0.0.1:{port}/"), "t:")
            .build()
            .unwrap();
    let loads = AtomicU64::new(0);
    for _ in 0..3 {
        let v = a
            .get_or_load(&1, async { loads.fetch_add(1, Ordering::SeqCst) + 7 })
            .await;
        assert!(v >= 7);
    }
    assert_eq!(
        loads.load(Ordering::SeqCst),
        3,
        "nothing kept without the bus"
    );
    assert!(!a.is_connected() && !a.sync_invalidations().await);
    assert!(a.insert(1, 1).await.is_err() && a.invalidate(&1).await.is_err());
    assert!(a.stats().time_degraded > Duration::ZERO);
}

/// Threads: a blocking cache coalesces its threads' misses and sees an async instance's writes.
#[test]
fn blocking_cache_coalesces_threads_and_sees_other_instances_writes() {
    let Some(server) = server() else {
        return;
    };
    let a = tiered(&server, "a").build_blocking().unwrap();
    let b = tiered(&server, "b").build_blocking().unwrap();
    assert!(a.wait_connected(PATIENCE) && b.wait_connected(PATIENCE));
    let db = Db::default();
    db.bump();
    let start = Arc::new(std::sync::Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (a, db, start) = (a.clone(), db.clone(), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                a.get_or_load(&1, || {
                    std::thread::sleep(Duration::from_millis(20));
                    db.query()
                })
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 1);
    }
    assert_eq!(db.queries(), 1);
    assert_eq!(b.get_or_load(&1, never_blocking), 1);
    b.insert(1, 2).unwrap();
    eventually_blocking("A drops the old value", || a.get_if_present(&1).is_none());
    assert_eq!(a.get_or_load(&1, never_blocking), 2);
}

/// With the `metrics` feature: the L2 figures are published beside L1's, labelled with L1's name.
#[cfg(feature = "metrics")]
#[test]
fn statistics_are_published_through_metrics() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let Some(server) = server() else {
        return;
    };
    let a = tiered(&server, "prices").build_blocking().unwrap();
    assert!(a.wait_connected(PATIENCE));
    assert_eq!(a.get_or_load(&1, || 10), 10);
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || a.publish_metrics());
    let published: Vec<_> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key().clone();
            let labels: Vec<_> = key.labels().map(|l| l.value().to_owned()).collect();
            (key.name().to_owned(), labels, value)
        })
        .collect();
    let value = |name: &str| {
        published
            .iter()
            .find(|(n, labels, _)| n == name && labels == &["prices".to_owned()])
            .map(|(_, _, v)| v)
            .unwrap_or_else(|| panic!("{name} was not published: {published:?}"))
    };
    assert_eq!(value("cachet_l2_misses_total"), &DebugValue::Counter(1));
    assert_eq!(value("cachet_l2_loads_total"), &DebugValue::Counter(1));
    assert_eq!(value("cachet_l2_connects_total"), &DebugValue::Counter(1));
    assert!(matches!(value("cachet_l2_connected"), DebugValue::Gauge(g) if g.into_inner() == 1.0));
    assert_eq!(
        value("cachet_misses_total"),
        &DebugValue::Counter(1),
        "L1's own"
    );
}
