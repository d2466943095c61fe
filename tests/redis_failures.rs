//! The tiered cache while Redis fails: frozen (`kill -STOP`) and resumed; killed and restarted
//! on the same port; the bus connection killed from the server side while another instance
//! writes. Readers run throughout, and every read is checked: none fails, and none returns a
//! version older than one whose write was confirmed before the read began.

#![cfg(feature = "redis")]

#[path = "../examples/common/redis_server.rs"]
mod redis_server;
#[path = "common/redis.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cachet::tiered::TieredCache;
use redis_server::RedisServer;
use support::{Db, PATIENCE, eventually, server, tiered};
use tokio::task::JoinHandle;

/// Short enough that a lost server is noticed quickly, long enough for a busy test machine.
const HEARTBEAT: Duration = Duration::from_millis(200);
const TIMEOUT: Duration = Duration::from_millis(200);

type Tiered = TieredCache<u64, u64>;

fn instance(server: &RedisServer, name: &str) -> Tiered {
    tiered(server, name)
        .heartbeat(HEARTBEAT)
        .command_timeout(TIMEOUT)
        .connect_timeout(TIMEOUT)
        .build()
        .unwrap()
}

/// Two instances, connected, both holding version 1 of key 1 in L1.
async fn warm(server: &RedisServer, db: &Db) -> (Tiered, Tiered) {
    let (a, b) = (instance(server, "a"), instance(server, "b"));
    assert!(a.wait_connected(PATIENCE).await && b.wait_connected(PATIENCE).await);
    db.bump();
    assert_eq!(a.get_or_load(&1, db.load()).await, 1);
    assert!(a.sync_invalidations().await && b.sync_invalidations().await);
    for cache in [&a, &b] {
        assert_eq!(cache.get_or_load(&1, db.load()).await, 1);
        assert_eq!(cache.get_if_present(&1), Some(1));
    }
    (a, b)
}

/// Readers of key 1 on `cache` until `stop`: each read must succeed and pass `db.check`.
/// Returns the number of reads.
fn readers(cache: &Tiered, db: &Db, stop: &Arc<AtomicBool>) -> Vec<JoinHandle<u64>> {
    (0..4)
        .map(|_| {
            let (cache, db, stop) = (cache.clone(), db.clone(), Arc::clone(stop));
            tokio::spawn(async move {
                let mut reads = 0;
                while !stop.load(Ordering::SeqCst) {
                    let started = Instant::now();
                    let load = async { Ok::<u64, ()>(db.query()) };
                    let got = cache.get_or_load(&1, load).await;
                    let got = got.expect("no read fails, whatever Redis does");
                    db.check(started, got);
                    reads += 1;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                reads
            })
        })
        .collect()
}

async fn stop_readers(stop: &AtomicBool, readers: Vec<JoinHandle<u64>>) -> u64 {
    stop.store(true, Ordering::SeqCst);
    let mut reads = 0;
    for r in readers {
        reads += r.await.expect("a reader panicked: a failed or stale read");
    }
    reads
}

/// How a write reaches the cache.
#[derive(Clone, Copy)]
enum Write {
    /// Invalidate the key (the next read loads the new version).
    Invalidate,
    /// Write the new version through to Redis and the writer's L1.
    Through,
}

/// The write protocol of an application: change the database, then invalidate (or write
/// through), retrying until Redis confirms; the write is complete once every instance in
/// `fleet` has applied the invalidation (or lost its bus and found it again, which flushed its
/// L1).
async fn write(db: &Db, writer: &Tiered, fleet: &[&Tiered], how: Write) -> u64 {
    let v = db.bump();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let done = match how {
            Write::Invalidate => writer.invalidate(&1).await,
            Write::Through => writer.insert(1, v).await,
        };
        if done.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "Redis never confirmed the write");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for cache in fleet {
        while !cache.sync_invalidations().await {
            assert!(Instant::now() < deadline, "the instance never reconnected");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    db.confirmed(v);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_degrades_reads_to_the_loader_and_recovers() {
    let Some(server) = server() else {
        return;
    };
    let db = Db::default();
    let (a, b) = warm(&server, &db).await;
    let stop = Arc::new(AtomicBool::new(false));
    let reading = readers(&a, &db, &stop);

    server.freeze();
    // A missed heartbeat: both instances stop trusting their L1.
    eventually("both instances notice the freeze", || {
        !a.is_connected() && !b.is_connected()
    })
    .await;
    assert_eq!(a.get_if_present(&1), None, "L1 is flushed");
    // The database changes while Redis is frozen: the invalidation cannot be confirmed...
    let v2 = db.bump();
    assert!(b.invalidate(&1).await.is_err());
    // ...but reads are answered by the loader, within the timeout, and see the change.
    for _ in 0..10 {
        let started = Instant::now();
        assert_eq!(a.get_or_load(&1, db.load()).await, v2);
        assert_eq!(b.get_or_load(&1, db.load()).await, v2);
        assert!(started.elapsed() < PATIENCE);
    }
    assert_eq!(
        a.get_if_present(&1),
        None,
        "L1 is bypassed while the bus is down"
    );

    server.resume();
    eventually("both instances reconnect", || {
        a.is_connected() && b.is_connected()
    })
    .await;
    // The write that failed is retried until Redis confirms it; from then on no read is stale.
    assert_eq!(write(&db, &b, &[&a, &b], Write::Invalidate).await, v2 + 1);
    assert_eq!(a.get_or_load(&1, db.load()).await, v2 + 1);
    let reads = stop_readers(&stop, reading).await;
    assert!(reads > 0);
    let stats = a.stats();
    assert!(stats.connects >= 2 && stats.flushes >= 3, "{stats:?}");
    assert!(stats.time_degraded > Duration::ZERO, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_and_restarted_server_is_reconnected_and_refilled() {
    let Some(mut server) = server() else {
        return;
    };
    let db = Db::default();
    let (a, b) = warm(&server, &db).await;
    let stop = Arc::new(AtomicBool::new(false));
    let reading = readers(&a, &db, &stop);

    server.kill();
    eventually("both instances notice the server is gone", || {
        !a.is_connected() && !b.is_connected()
    })
    .await;
    let v2 = db.bump();
    assert!(b.invalidate(&1).await.is_err());
    assert_eq!(a.get_or_load(&1, db.load()).await, v2);
    assert_eq!(a.get_if_present(&1), None);

    // The new server is empty: reads load again, once per key for the fleet.
    server.restart();
    eventually("both instances reconnect", || {
        a.is_connected() && b.is_connected()
    })
    .await;
    let v3 = write(&db, &b, &[&a, &b], Write::Invalidate).await;
    assert_eq!(b.get_or_load(&1, db.load()).await, v3);
    assert_eq!(a.get_or_load(&1, db.load()).await, v3);
    let reads = stop_readers(&stop, reading).await;
    assert!(reads > 0);
    assert!(a.stats().connects >= 2 && b.stats().connects >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_connection_killed_while_another_instance_writes() {
    let Some(server) = server() else {
        return;
    };
    let db = Db::default();
    let (a, b) = warm(&server, &db).await;
    let stop = Arc::new(AtomicBool::new(false));
    let reading = readers(&a, &db, &stop);

    // B writes a stream of versions (write-through) while A's connection is killed twice.
    let writer = {
        let (a, b, db) = (a.clone(), b.clone(), db.clone());
        tokio::spawn(async move {
            let mut last = 0;
            for _ in 0..60 {
                last = write(&db, &b, &[&a], Write::Through).await;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            last
        })
    };
    for _ in 0..2 {
        eventually("A is connected", || a.is_connected()).await;
        let connects = a.stats().connects;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let ids = server.client_ids("cachet-a-");
        assert_eq!(ids.len(), 1, "A has one connection");
        let killed: i64 = server.cmd(redis::cmd("CLIENT").arg("KILL").arg("ID").arg(ids[0]));
        assert_eq!(killed, 1);
        eventually("A reconnects", || a.stats().connects > connects).await;
    }
    let last = writer.await.unwrap();
    assert!(a.sync_invalidations().await);
    assert_eq!(a.get_or_load(&1, db.load()).await, last);
    let reads = stop_readers(&stop, reading).await;
    assert!(reads > 0);
    assert!(a.stats().connects >= 3 && a.stats().flushes >= 5);
}
