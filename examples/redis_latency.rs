//! cachet in front of Redis, measured: the cost of a lookup (an L1 hit through the tiered
//! cache, a plain `Cache::get` hit, a Redis GET over loopback) and how long an invalidation
//! takes to reach the other instances, against a `redis-server` this example starts on a free
//! port of 127.0.0.1.
//!
//! `cargo run --release --features redis --example redis_latency -- [--rounds 9] [--ops 2000000] [--updates 1000]`
//!
//! Instructions per lookup, deterministic on a noisy machine (`--updates 0` skips propagation):
//! `valgrind --tool=callgrind --toggle-collect='*plain_hits*' --toggle-collect='*tiered_hits*'
//! target/release/examples/redis_latency --rounds 1 --ops 1000000 --updates 0`, then
//! `callgrind_annotate` (the Redis GETs are not collected).
//!
//! Lookups: 10,000 keys with 128-byte values (`bytes::Bytes`, so a hit clones a reference, not
//! the bytes), read in a fixed uniform stream. Every round times each of the three once, in a
//! rotating order, so the noise of a shared machine falls on all of them alike; the table shows
//! the median nanoseconds per lookup over the rounds and the median of the per-round ratios.
//! The tiered hit is `TieredCache::get_or_load` polled once (it completes at once on a hit);
//! the plain cache has a time-to-live, as every entry of the tiered L1 has a deadline. The
//! Redis GET is a blocking round trip on one connection, as cache-aside code does it.
//!
//! Propagation: three instances (each with its own connection and runtime thread); for each
//! update, the two readers hold the key in L1, the writer invalidates it, and the time from
//! `invalidate` returning (and from its call) to the key being gone from each reader's L1
//! (polled) is recorded.

#[path = "../benches/common/mod.rs"]
#[macro_use]
#[allow(unused_macros)]
mod common;
#[path = "common/redis_server.rs"]
mod redis_server;

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cachet::Cache;
use cachet::tiered::{BlockingTieredCache, Raw, TieredCache};
use common::{arg, median};
use redis_server::RedisServer;

const KEYS: u64 = 10_000;
const VALUE_BYTES: usize = 128;
const STREAM_LEN: usize = 1 << 16;
/// Redis GETs are timed over this fraction of the lookups (a round trip is ~1,000x a hit).
const REDIS_SHARE: usize = 200;

type Tiered = TieredCache<u64, Bytes, Raw>;

#[inline(never)]
fn plain_hits(cache: &Cache<u64, Bytes>, keys: &[u64], ops: usize) -> f64 {
    let started = Instant::now();
    for i in 0..ops {
        black_box(cache.get(black_box(&keys[i & (STREAM_LEN - 1)])));
    }
    started.elapsed().as_nanos() as f64 / ops as f64
}

#[inline(never)]
fn tiered_hits(cache: &Tiered, keys: &[u64], ops: usize) -> f64 {
    let mut cx = Context::from_waker(Waker::noop());
    let started = Instant::now();
    for i in 0..ops {
        let key = black_box(&keys[i & (STREAM_LEN - 1)]);
        let lookup = pin!(cache.get_or_load(key, std::future::pending::<Bytes>()));
        match lookup.poll(&mut cx) {
            Poll::Ready(v) => {
                black_box(v);
            }
            Poll::Pending => panic!("key {key} is not in L1"),
        }
    }
    started.elapsed().as_nanos() as f64 / ops as f64
}

#[inline(never)]
fn redis_gets(conn: &mut redis::Connection, keys: &[u64], ops: usize) -> f64 {
    let started = Instant::now();
    for i in 0..ops {
        let key = format!("bench:{}", keys[i & (STREAM_LEN - 1)]);
        let v: Vec<u8> = redis::cmd("GET").arg(key).query(conn).expect("GET");
        black_box(v);
    }
    started.elapsed().as_nanos() as f64 / ops as f64
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("usage: redis_latency [--rounds 9] [--ops 2000000] [--updates 1000 (0: none)]");
        return;
    }
    let rounds: usize = arg(&args, "--rounds").unwrap_or(9).max(1);
    let ops: usize = arg(&args, "--ops").unwrap_or(2_000_000).max(REDIS_SHARE);
    let updates: usize = arg(&args, "--updates").unwrap_or(1_000);
    if !RedisServer::installed() {
        eprintln!("this example needs redis-server (apt-get install redis-server)");
        std::process::exit(2);
    }
    let server = RedisServer::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let value = Bytes::from(vec![7u8; VALUE_BYTES]);
    let keys = common::uniform_keys(0..KEYS, STREAM_LEN, common::SEED);

    let plain: Cache<u64, Bytes> = Cache::builder()
        .max_capacity(2 * KEYS)
        .time_to_live(Duration::from_secs(3600))
        .build()
        .expect("a cache");
    let tiered: Tiered = runtime.block_on(async {
        let tiered = TieredCache::builder(&server.url(), "bench:")
            .codec(Raw)
            .l1(Cache::builder().max_capacity(2 * KEYS))
            .redis_ttl(Duration::from_secs(3600))
            .l1_ttl(Duration::from_secs(3600))
            // Under callgrind the process runs ~50x slower: a missed heartbeat would flush L1.
            .heartbeat(Duration::from_secs(60))
            .build()
            .expect("a tiered cache");
        assert!(tiered.wait_connected(Duration::from_secs(10)).await);
        for k in 0..KEYS {
            tiered
                .insert(k, value.clone())
                .await
                .expect("a write to Redis");
        }
        tiered
    });
    for k in 0..KEYS {
        plain.insert(k, value.clone());
        assert!(tiered.get_if_present(&k).is_some(), "key {k} is in L1");
    }
    let mut conn = server.raw().expect("a plain Redis connection");

    let names = ["Cache::get", "tiered L1 hit", "Redis GET"];
    let mut ns: [Vec<f64>; 3] = Default::default();
    let (mut tiered_over_plain, mut redis_over_tiered) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let mut this = [0.0; 3];
        for i in 0..3 {
            let which = (i + r) % 3;
            this[which] = match which {
                0 => plain_hits(&plain, &keys, ops),
                1 => tiered_hits(&tiered, &keys, ops),
                _ => redis_gets(&mut conn, &keys, ops / REDIS_SHARE),
            };
            ns[which].push(this[which]);
        }
        tiered_over_plain.push(this[1] / this[0]);
        redis_over_tiered.push(this[2] / this[1]);
    }
    let m: Vec<f64> = ns.iter_mut().map(|v| median(v)).collect();
    println!("| lookup | ns (median of {rounds} rounds) |");
    println!("|---|---:|");
    for (name, ns) in names.iter().zip(&m) {
        println!("| {name} | {ns:.1} |");
    }
    println!(
        "\ntiered L1 hit / Cache::get: {:.2}x (bar <= 1.2x); Redis GET / tiered L1 hit: {:.0}x \
         (bar >= 50x); medians of per-round ratios",
        median(&mut tiered_over_plain),
        median(&mut redis_over_tiered)
    );
    drop(tiered);
    drop(runtime);
    if updates == 0 {
        return;
    }

    // Propagation: one writer, two readers.
    let fleet: Vec<BlockingTieredCache<u64, Bytes, Raw>> = (0..3)
        .map(|_| {
            let cache = TieredCache::builder(&server.url(), "prop:")
                .codec(Raw)
                .build_blocking()
                .expect("a tiered cache");
            assert!(cache.wait_connected(Duration::from_secs(10)));
            cache
        })
        .collect();
    let (writer, readers) = (&fleet[0], &fleet[1..]);
    // A reader often has the invalidation before the writer has the reply: 0 from the return.
    let (mut after_return, mut after_call) = (Vec::new(), Vec::new());
    for i in 0..updates {
        let key = (i % 64) as u64;
        writer.insert(key, value.clone()).expect("a write to Redis");
        for reader in readers {
            // The writer's invalidation reached the reader before it reads the key into L1.
            let deadline = Instant::now() + Duration::from_secs(10);
            while reader.get_if_present(&key).is_none() {
                assert!(reader.sync_invalidations() && Instant::now() < deadline);
                reader.get_or_load(&key, || -> Bytes { unreachable!("the writer wrote it") });
            }
        }
        let called = Instant::now();
        writer.invalidate(&key).expect("an invalidation");
        let returned = Instant::now();
        let mut gone: [Option<Instant>; 2] = [None; 2];
        while gone.iter().any(Option::is_none) {
            for (g, reader) in gone.iter_mut().zip(readers) {
                if g.is_none() && reader.get_if_present(&key).is_none() {
                    *g = Some(Instant::now());
                }
            }
            std::thread::yield_now();
        }
        for at in gone.into_iter().flatten() {
            after_return.push(at.saturating_duration_since(returned));
            after_call.push(at - called);
        }
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("\ninvalidation propagation, {updates} updates x 2 readers (us):");
    println!("| from | p50 | p99 | max |");
    println!("|---|---:|---:|---:|");
    for (from, samples) in [
        (
            "`invalidate` returning (bar: p99 < 5,000)",
            &mut after_return,
        ),
        ("`invalidate` called", &mut after_call),
    ] {
        samples.sort();
        println!(
            "| {from} | {:.0} | {:.0} | {:.0} |",
            us(percentile(samples, 0.50)),
            us(percentile(samples, 0.99)),
            us(*samples.last().expect("samples")),
        );
    }
}
