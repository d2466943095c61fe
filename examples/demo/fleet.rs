//! The Redis scenarios (with the `redis` feature, against a `redis-server` the demo starts on a
//! free port of 127.0.0.1), under the same traffic as the others plus a stream of price changes:
//!
//! 5. Redis as the only cache: one service, cache-aside over loopback (GET; on a miss, query and
//!    SET with a time-to-live; a price change deletes the page's key);
//! 6. cachet in front of Redis: three instances of the service, each with its own tiered cache
//!    and connection, behind a round-robin client (the load balancer); each price change goes
//!    to a random instance, which invalidates the page fleet-wide.
//!
//! Besides the usual figures each prints the Redis round trips per request, the stale reads the
//! clients saw (a page older than a price change that had reached every cache before the
//! request was sent: must be 0), and, for the fleet, how long an invalidation took to reach the
//! other instances (from `invalidate` returning to the page leaving their L1, as their eviction
//! listeners saw it).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use cachet::tiered::{Raw, TieredCache};
use cachet::{Cache, RemovalCause};
use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use redis::aio::MultiplexedConnection;

use crate::db::Db;
use crate::load::{self, Check, Load};
use crate::prices::{Prices, version_of};
use crate::redis_server::RedisServer;
use crate::service::{Catalog, PageError, Server, Strategy};
use crate::{Fallible, Row, WarmUp, thousands};

/// Pages live this long in Redis (and, in the fleet, at most this long in L1).
const TTL: Duration = Duration::from_secs(60);
/// A price changes this often, on a product drawn from the same popularity as the requests.
const UPDATE_EVERY: Duration = Duration::from_millis(10);
/// Instances of the service behind the load balancer.
const INSTANCES: usize = 3;
/// Before measuring, the same traffic warms the caches up, as in scenario 2: until the requests
/// of the last `STEADY_WINDOW` needed at most this share of database queries (the caches
/// together answered the rest), for at most twice the scenario's duration.
const STEADY_QUERY_SHARE: f64 = 1.0 - crate::STEADY_HIT_RATIO;
/// The bar on invalidation propagation.
const PROPAGATION_P99_BAR: Duration = Duration::from_millis(5);

/// Redis as the only cache: cache-aside on one multiplexed connection, its round trips counted.
pub struct RedisAside {
    conn: MultiplexedConnection,
    round_trips: AtomicU64,
}

impl RedisAside {
    fn key(id: u64) -> String {
        format!("aside:{id}")
    }

    /// GET; on a miss, `load` and SET with the time-to-live.
    pub async fn page(
        &self,
        id: u64,
        load: impl Future<Output = Result<Bytes, PageError>>,
    ) -> Result<Bytes, Arc<PageError>> {
        let mut conn = self.conn.clone();
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let mut get = redis::cmd("GET");
        get.arg(Self::key(id));
        if let Ok(Some(page)) = get.query_async::<Option<Vec<u8>>>(&mut conn).await {
            return Ok(Bytes::from(page));
        }
        let page = load.await.map_err(Arc::new)?;
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let mut set = redis::cmd("SET");
        set.arg(Self::key(id))
            .arg(&page[..])
            .arg("EX")
            .arg(TTL.as_secs());
        let _: Result<(), _> = set.query_async(&mut conn).await;
        Ok(page)
    }

    async fn invalidate(&self, id: u64) -> bool {
        let mut conn = self.conn.clone();
        let mut del = redis::cmd("DEL");
        del.arg(Self::key(id));
        del.query_async::<()>(&mut conn).await.is_ok()
    }
}

/// When instances' L1s dropped the pages being watched, recorded by their eviction listeners,
/// which run where the invalidation is applied (so the time does not depend on when the task
/// that changed the price gets to look).
#[derive(Clone, Default)]
struct Removals(Arc<Mutex<HashMap<u64, Vec<Removal>>>>);

/// Instance `.0` dropped the page at `.1`.
type Removal = (usize, Instant);

impl Removals {
    /// Instance `i`'s eviction listener.
    fn listener(&self, i: usize) -> impl Fn(u64, Bytes, RemovalCause) + Send + Sync + 'static {
        let removals = self.clone();
        move |id, _, cause| {
            if cause == RemovalCause::Explicit {
                if let Some(seen) = removals.0.lock().get_mut(&id) {
                    seen.push((i, Instant::now()));
                }
            }
        }
    }

    fn watch(&self, id: u64) {
        self.0.lock().insert(id, Vec::new());
    }

    /// The removals of `id` since `watch`, which ends.
    fn take(&self, id: u64) -> Vec<Removal> {
        self.0.lock().remove(&id).unwrap_or_default()
    }
}

/// What a Redis scenario measured besides the usual row.
pub struct Figures {
    pub row: Row,
    pub round_trips_per_request: f64,
    pub stale: u64,
    pub updates: u64,
    /// Times an instance emptied its L1 (a lost bus or a missed heartbeat; 0 expected).
    pub flushes: u64,
    /// Invalidation propagation times (the fleet only), sorted.
    pub propagation: Vec<Duration>,
}

impl Figures {
    fn print(&self, title: &str) {
        self.row.print(title);
        let mut line = format!(
            "  Redis round trips per request {:.3}; {} price changes; stale reads {}; L1 flushes {}",
            self.round_trips_per_request,
            thousands(self.updates),
            thousands(self.stale),
            self.flushes,
        );
        if let (Some(p50), Some(p99)) = (self.percentile(0.50), self.percentile(0.99)) {
            line += &format!(
                "; propagation to the other instances p50 {:.3} ms, p99 {:.3} ms ({} samples)",
                p50.as_secs_f64() * 1e3,
                p99.as_secs_f64() * 1e3,
                thousands(self.propagation.len() as u64),
            );
        }
        println!("{line}\n");
    }

    fn percentile(&self, p: f64) -> Option<Duration> {
        let n = self.propagation.len();
        (n > 0).then(|| self.propagation[((n - 1) as f64 * p).round() as usize])
    }
}

/// Runs scenarios 5 and 6, if a `redis-server` is installed; returns the closing line.
pub async fn scenarios(db: &Db, load: &Load, first: usize, total: usize) -> Fallible<String> {
    let server = RedisServer::start();
    let url = server.url();

    let prices = Prices::default();
    let conn = redis::Client::open(url.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    let aside = Arc::new(Strategy::RedisAside(RedisAside {
        conn,
        round_trips: AtomicU64::new(0),
    }));
    let label = format!("[{first}/{total}] Redis only");
    let alone = measure(db, load, &prices, &Removals::default(), &[aside], &label).await?;
    alone.print(&format!(
        "{first}/{total} Redis as the only cache: cache-aside over loopback, TTL {} s{}",
        TTL.as_secs(),
        alone.row.warmed()
    ));

    let (prices, removals) = (Prices::default(), Removals::default());
    let mut fleet = Vec::new();
    for i in 0..INSTANCES {
        let cache = TieredCache::builder(&url, "page:")
            .codec(Raw)
            .l1(Cache::builder()
                .max_capacity(load.keys.len())
                .name(format!("instance-{i}"))
                .eviction_listener(removals.listener(i))
                .record_stats())
            .redis_ttl(TTL)
            .l1_ttl(TTL)
            .build()?;
        if !cache.wait_connected(Duration::from_secs(10)).await {
            return Err("the tiered cache could not connect to redis-server".into());
        }
        fleet.push(Arc::new(Strategy::Tiered(cache)));
    }
    let n = first + 1;
    let label = format!("[{n}/{total}] cachet + Redis");
    let tiered = measure(db, load, &prices, &removals, &fleet, &label).await?;
    tiered.print(&format!(
        "{n}/{total} cachet in front of Redis: {INSTANCES} instances behind a round-robin client, \
         get_or_load{}",
        tiered.row.warmed()
    ));
    Ok(verdict(&alone, &tiered))
}

/// Serves one catalog per strategy, warms them up, then measures `load` across them while a
/// price changes every `UPDATE_EVERY` at a random instance.
async fn measure(
    db: &Db,
    load: &Load,
    prices: &Prices,
    removals: &Removals,
    strategies: &[Arc<Strategy>],
    label: &str,
) -> Fallible<Figures> {
    let catalogs: Vec<Catalog> = strategies
        .iter()
        .map(|s| Catalog::shared(db.clone(), Arc::clone(s)).with_prices(prices.clone()))
        .collect();
    let mut servers = Vec::new();
    for catalog in &catalogs {
        servers.push(Server::start(catalog.clone()).await?);
    }
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let warm_up = warm_up(db, &addrs, load, &format!("{label}, warming up")).await;

    let checked = prices.clone();
    let measured = Load {
        check: Some(Check(Arc::new(move |id, body, sent| {
            version_of(body).is_some_and(|v| checked.is_stale(id, v, sent))
        }))),
        ..load.clone()
    };
    let queries = db.queries();
    let (round_trips, stats) = (total_round_trips(strategies), fleet_stats(&catalogs));
    let flushes = total_flushes(strategies);
    let stop = Arc::new(AtomicBool::new(false));
    let updates = update(strategies, prices, removals, load, &stop);
    let outcome = async {
        let outcome = load::run(&addrs, &measured, label).await;
        stop.store(true, Ordering::Relaxed);
        outcome
    };
    let (outcome, (updates, update_round_trips, mut propagation)) = tokio::join!(outcome, updates);
    propagation.sort();
    let mut row = Row::from_outcome(&outcome, db.queries() - queries);
    row.hit_ratio = stats
        .zip(fleet_stats(&catalogs))
        .map(|(before, after)| crate::hit_ratio(&before, &after));
    let read_round_trips = total_round_trips(strategies) - round_trips - update_round_trips;
    for server in servers {
        server.stop().await?;
    }
    row.warm_up = Some(warm_up);
    Ok(Figures {
        round_trips_per_request: read_round_trips as f64 / row.summary.requests.max(1) as f64,
        stale: outcome.stale,
        updates,
        flushes: total_flushes(strategies) - flushes,
        propagation,
        row,
    })
}

/// Sends `load`'s traffic (other seeds) until the database answers at most `STEADY_QUERY_SHARE`
/// of the requests of a `STEADY_WINDOW`, or for twice the scenario's duration.
async fn warm_up(db: &Db, addrs: &[SocketAddr], load: &Load, label: &str) -> WarmUp {
    let requests = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&requests);
    let warm = Load {
        duration: load.duration * 2,
        seed: load.seed.wrapping_add(1 << 32),
        // Counts the answers; none is judged.
        check: Some(Check(Arc::new(move |_, _, _| {
            counted.fetch_add(1, Ordering::Relaxed);
            false
        }))),
        ..load.clone()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let run = load::run_until(addrs, &warm, label, &stop);
    tokio::pin!(run);
    let mut last = (requests.load(Ordering::Relaxed), db.queries());
    loop {
        tokio::select! {
            _ = &mut run => break,
            () = tokio::time::sleep(crate::STEADY_WINDOW) => {
                let now = (requests.load(Ordering::Relaxed), db.queries());
                let (asked, queried) = (now.0 - last.0, now.1 - last.1);
                if asked >= 1_000 && queried as f64 <= asked as f64 * STEADY_QUERY_SHARE {
                    stop.store(true, Ordering::Relaxed);
                }
                last = now;
            }
        }
    }
    WarmUp {
        took: started.elapsed(),
        steady: stop.load(Ordering::Relaxed),
    }
}

/// The price changes, until `stop`: returns how many, the Redis round trips they made, and the
/// propagation times of the fleet's invalidations.
async fn update(
    strategies: &[Arc<Strategy>],
    prices: &Prices,
    removals: &Removals,
    load: &Load,
    stop: &AtomicBool,
) -> (u64, u64, Vec<Duration>) {
    let mut rng = SmallRng::seed_from_u64(load.seed ^ 0x5eed);
    let (mut updates, mut round_trips, mut propagation) = (0, 0, Vec::new());
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(UPDATE_EVERY).await;
        let id = load.keys.sample(&mut rng);
        let at = rng.random_range(0..strategies.len());
        let version = prices.change(id);
        match &*strategies[at] {
            Strategy::RedisAside(redis) => {
                if !redis.invalidate(id).await {
                    continue;
                }
            }
            Strategy::Tiered(writer) => {
                let holders: Vec<usize> = (0..strategies.len())
                    .filter(|&i| match &*strategies[i] {
                        Strategy::Tiered(c) => i != at && c.get_if_present(&id).is_some(),
                        _ => false,
                    })
                    .collect();
                removals.watch(id);
                if writer.invalidate(&id).await.is_err() {
                    removals.take(id);
                    continue;
                }
                let returned = Instant::now();
                // Every instance has applied the change (or lost its bus, flushing L1): from
                // now on no request may see the old price.
                for s in strategies {
                    if let Strategy::Tiered(c) = &**s {
                        c.sync_invalidations().await;
                    }
                }
                // From `invalidate` returning to the page leaving each other instance that
                // held it, as that instance's L1 recorded it (0 if it was first).
                for (i, at) in removals.take(id) {
                    if holders.contains(&i) {
                        propagation.push(at.saturating_duration_since(returned));
                    }
                }
                round_trips += 1 + strategies.len() as u64;
            }
            _ => continue,
        }
        prices.confirm(id, version);
        updates += 1;
    }
    (updates, round_trips, propagation)
}

fn total_round_trips(strategies: &[Arc<Strategy>]) -> u64 {
    strategies
        .iter()
        .map(|s| match &**s {
            Strategy::RedisAside(r) => r.round_trips.load(Ordering::Relaxed),
            Strategy::Tiered(c) => c.stats().round_trips,
            _ => 0,
        })
        .sum()
}

fn total_flushes(strategies: &[Arc<Strategy>]) -> u64 {
    strategies
        .iter()
        .map(|s| match &**s {
            Strategy::Tiered(c) => c.stats().flushes,
            _ => 0,
        })
        .sum()
}

/// The L1 statistics of the fleet, summed (`None` without an in-process tier).
fn fleet_stats(catalogs: &[Catalog]) -> Option<cachet::CacheStats> {
    catalogs
        .iter()
        .filter_map(Catalog::stats)
        .reduce(|mut sum, s| {
            sum.hits += s.hits;
            sum.misses += s.misses;
            sum
        })
}

/// The closing line of the Redis scenarios.
fn verdict(alone: &Figures, fleet: &Figures) -> String {
    let mark = |ok: bool| if ok { "PASS" } else { "FAIL" };
    let p99 = fleet.percentile(0.99).unwrap_or_default();
    format!(
        "redis: stale reads {} alone, {} with cachet (bar: 0 with cachet: {}); invalidation \
         propagation p99 {:.3} ms (bar < {} ms: {}); Redis round trips per request {:.3} alone vs \
         {:.3} with cachet; p99 {:.3} ms alone vs {:.3} ms with cachet",
        alone.stale,
        fleet.stale,
        mark(fleet.stale == 0),
        p99.as_secs_f64() * 1e3,
        PROPAGATION_P99_BAR.as_millis(),
        mark(!fleet.propagation.is_empty() && p99 < PROPAGATION_P99_BAR),
        alone.round_trips_per_request,
        fleet.round_trips_per_request,
        alone.row.summary.p99.as_secs_f64() * 1e3,
        fleet.row.summary.p99.as_secs_f64() * 1e3,
    )
}
