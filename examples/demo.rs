//! A product-catalog HTTP service (tokio + axum) over an embedded SQLite database, under load,
//! with and without cachet in front of the database.
//!
//! `cargo run --release --example demo` (`-- --help` for the options, `-- --short` for CI)
//!
//! On first run for a catalog size the demo generates the catalog (products, their categories,
//! about five reviews each) into a file in the OS temporary directory, and reuses it afterwards.
//! A product page is a join and an aggregate costing about a millisecond of SQLite. A built-in
//! load generator then drives the service over real HTTP on 127.0.0.1 with many concurrent
//! keep-alive clients asking for Zipf-distributed products, in four scenarios, one after another:
//!
//! 1. no cache: every request queries the database;
//! 2. cachet with a time-to-live and a coalescing loader (`get_or_load_async`), measured in
//!    a steady state, once the same traffic has warmed the cache up;
//! 3. a stampede: a set of hot pages expires at one instant (a `MockClock` is advanced) while
//!    every client asks for them; with the coalescing loader the database sees one query per
//!    expired page...
//! 4. ...and without it (a plain `get`, then query and `insert`), one per waiting request.
//!
//! Each scenario prints a table (requests per second, latency percentiles, database queries, the
//! cache's hit ratio from `Cache::stats`), and a last line checks the figures against the bars
//! the demo is meant to show.
//!
//! Why the default catalog is small (5,000 products): the cached p99 is a hit's latency only if
//! well under 1% of requests miss. Under Zipf popularity (exponent 1) the tail of rarely asked
//! products is long, and each of them misses once when first asked for: over 100,000 products
//! about 12% of requests still ask for a product never asked for before after the first 100,000
//! requests, so a warm-up of a few seconds cannot reach a steady state, and those misses keep the
//! database, and the p99, as busy as without a cache. `--products 100000` shows that.

#[path = "demo/db.rs"]
mod db;
#[cfg(feature = "redis")]
#[path = "demo/fleet.rs"]
mod fleet;
#[path = "demo/load.rs"]
mod load;
#[path = "demo/options.rs"]
mod options;
#[path = "demo/prices.rs"]
mod prices;
#[cfg(feature = "redis")]
#[path = "common/redis_server.rs"]
mod redis_server;
#[path = "demo/service.rs"]
mod service;

use std::error::Error;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cachet::{Cache, CacheStats, Clock, MockClock};

use crate::db::Db;
use crate::load::{Keys, Load, Outcome, Summary};
use crate::options::{Command, Options};
use crate::service::{Catalog, Server, Strategy};

/// Scenario 2's pages live this long: a stale page is at most this old.
const TTL: Duration = Duration::from_secs(60);
/// Scenario 2 is measured in a steady state: its traffic first warms the cache up until the hit
/// ratio over the last `STEADY_WINDOW` reaches `STEADY_HIT_RATIO` (for at most twice the
/// scenario's duration). A cold cache's misses would otherwise saturate SQLite for a while.
const STEADY_HIT_RATIO: f64 = 0.995;
const STEADY_WINDOW: Duration = Duration::from_millis(500);

/// The stampede: this many of the most popular pages are cached, then expire together.
const HOT_PAGES: u64 = 16;
/// Clients ask for hot pages for this long before the pages expire...
const CALM: Duration = Duration::from_millis(300);
/// ...and for this long after: the window in which the reloads are counted.
const STORM: Duration = Duration::from_millis(1_000);
/// The stampede's time-to-live, on a mock clock that only moves once, to expire the hot pages.
const STAMPEDE_TTL: Duration = Duration::from_secs(60);

/// The bar for scenario 2: its p99 at least this many times lower than without a cache.
const P99_BAR: f64 = 5.0;

/// All scenarios draw product ids from the same seeded streams.
const SEED: u64 = 42;

type Fallible<T> = Result<T, Box<dyn Error>>;

fn main() -> ExitCode {
    let options = match options::parse(std::env::args().skip(1)) {
        Ok(Command::Run(options)) => options,
        Ok(Command::Help) => {
            println!("{}", options::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{}", options::USAGE);
            return ExitCode::from(2);
        }
    };
    match demo(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn demo(options: &Options) -> Fallible<()> {
    let started = Instant::now();
    let keys = Keys::zipf(options.products, options.zipf)?;
    let db = open_catalog(options.products)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "{} clients, {:.1} s per scenario, {} products, Zipf exponent {}\n",
        options.clients,
        options.duration.as_secs_f64(),
        thousands(options.products),
        options.zipf
    );
    // The cache is sized for the whole catalog. With Zipf popularity the tail of rarely asked
    // products is long: every product left out is a query whenever it is asked for.
    let capacity = options.products;
    let load = Load {
        clients: options.clients,
        duration: options.duration,
        keys,
        seed: SEED,
        check: None,
    };
    let redis = redis_scenarios();
    let n = if redis.is_ok() { 6 } else { 4 };
    runtime.block_on(async {
        let catalog = Catalog::new(db.clone(), Strategy::Uncached);
        let uncached = scenario(catalog, &load, None, &format!("[1/{n}] no cache")).await?;
        uncached.print(&format!("1/{n} no cache: every request queries SQLite"));

        let cache = Cache::builder()
            .max_capacity(capacity)
            .time_to_live(TTL)
            .record_stats()
            .build()?;
        let catalog = Catalog::new(db.clone(), Strategy::Coalescing(cache));
        let limit = options.duration * 2;
        let cached = scenario(catalog, &load, Some(limit), &format!("[2/{n}] cachet")).await?;
        cached.print(&format!(
            "2/{n} cachet: capacity {}, TTL {} s, get_or_load_async{}",
            thousands(capacity),
            TTL.as_secs(),
            cached.warmed(),
        ));

        let label = format!("[3/{n}] stampede, coalescing");
        let coalesced = stampede(&db, true, options.clients, &label).await?;
        coalesced.row.print(&format!(
            "3/{n} stampede: {HOT_PAGES} hot pages expire at once under {} clients, \
             get_or_load_async",
            options.clients
        ));
        coalesced.print_reloads();

        let label = format!("[4/{n}] stampede, naive");
        let naive = stampede(&db, false, options.clients, &label).await?;
        naive.row.print(&format!(
            "4/{n} the same stampede, naive cache-aside: get, then query and insert"
        ));
        naive.print_reloads();

        let closing: Option<String> = match redis {
            #[cfg(feature = "redis")]
            Ok(()) => Some(fleet::scenarios(&db, &load, 5, n).await?),
            #[cfg(not(feature = "redis"))]
            Ok(()) => None,
            Err(why) => {
                println!("{why}\n");
                None
            }
        };

        println!();
        println!("{}", verdict(&uncached, &cached, &coalesced, &naive));
        if let Some(closing) = closing {
            println!("{closing}");
        }
        Fallible::Ok(())
    })?;
    println!("total time {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Whether the Redis scenarios can run: `Err` says why not and how to get them.
fn redis_scenarios() -> Result<(), String> {
    #[cfg(feature = "redis")]
    {
        if redis_server::RedisServer::installed() {
            Ok(())
        } else {
            Err(
                "5-6 (Redis scenarios) skipped: no redis-server on the PATH; install it \
                 (`apt-get install redis-server`, `brew install redis`) to run them"
                    .into(),
            )
        }
    }
    #[cfg(not(feature = "redis"))]
    Err(
        "5-6 (Redis scenarios) skipped: they need the `redis` feature \
         (`cargo run --release --features redis --example demo`) and a redis-server"
            .into(),
    )
}

/// Opens the catalog, generating it first if this is the first run for this size, and prints
/// what a product-page query costs.
fn open_catalog(products: u64) -> Fallible<Db> {
    let path = db::default_path(products);
    let t = Instant::now();
    if db::create_if_missing(&path, products)? {
        println!(
            "created {} in {:.1} s",
            path.display(),
            t.elapsed().as_secs_f64()
        );
    } else {
        println!("using {} (delete it to start over)", path.display());
    }
    let cost = db::query_cost(&path, products)?;
    println!(
        "a product-page query costs {:.2} ms on one connection (mean of {} queries)",
        cost.mean.as_secs_f64() * 1e3,
        cost.queries
    );
    // One connection per core: SQLite work is CPU-bound here, more would only queue in the OS.
    let connections = std::thread::available_parallelism().map_or(2, |n| n.get());
    Ok(Db::open(&path, connections)?)
}

/// One scenario's figures.
struct Row {
    summary: Summary,
    /// Database queries run during the scenario.
    queries: u64,
    /// `None` without a cache.
    hit_ratio: Option<f64>,
    /// How the cache was warmed up before the measurement.
    warm_up: Option<WarmUp>,
}

/// What a warm-up did.
#[derive(Clone, Copy)]
struct WarmUp {
    took: Duration,
    /// Whether it reached a steady state (rather than its time limit).
    steady: bool,
}

impl Row {
    /// The figures of `outcome`, which ran `queries` database queries (no hit ratio yet).
    fn from_outcome(outcome: &Outcome, queries: u64) -> Row {
        Row {
            summary: Summary::new(outcome),
            queries,
            hit_ratio: None,
            warm_up: None,
        }
    }

    /// The figures of `outcome`, from the database's query count and the cache's statistics
    /// taken when it started.
    fn new(
        catalog: &Catalog,
        outcome: &Outcome,
        queries_before: u64,
        stats_before: Option<CacheStats>,
    ) -> Row {
        let mut row = Row::from_outcome(outcome, catalog.db().queries() - queries_before);
        row.hit_ratio = stats_before
            .zip(catalog.stats())
            .map(|(before, after)| hit_ratio(&before, &after));
        row
    }

    /// "; measured after N s of warm-up", if the row was warmed up.
    fn warmed(&self) -> String {
        self.warm_up.map_or(String::new(), |w| {
            let steady = if w.steady { "" } else { ", no steady state" };
            format!(
                "; measured after {:.1} s of warm-up{steady}",
                w.took.as_secs_f64()
            )
        })
    }

    fn print(&self, title: &str) {
        let s = &self.summary;
        let ms = |d: Duration| format!("{:.3}", d.as_secs_f64() * 1e3);
        let ratio = self
            .hit_ratio
            .map_or("-".to_string(), |r| format!("{:.2}%", r * 100.0));
        println!("{title}");
        println!(
            "  {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>11} {:>10}",
            "req/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9 ms",
            "requests",
            "db queries",
            "hit ratio"
        );
        println!(
            "  {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>11} {:>10}",
            thousands(s.per_second.round() as u64),
            ms(s.p50),
            ms(s.p90),
            ms(s.p99),
            ms(s.p999),
            thousands(s.requests),
            thousands(self.queries),
            ratio
        );
        if s.errors > 0 {
            println!("  ({} requests failed)", thousands(s.errors));
        }
        println!();
    }

    /// Database queries per answered request.
    fn queries_per_request(&self) -> f64 {
        self.queries as f64 / self.summary.requests.max(1) as f64
    }
}

/// The cache's hit ratio between two snapshots of its statistics: hits over lookups (every
/// request is one lookup, with either strategy).
fn hit_ratio(before: &CacheStats, after: &CacheStats) -> f64 {
    let lookups = after.requests() - before.requests();
    if lookups == 0 {
        return 1.0;
    }
    (after.hits - before.hits) as f64 / lookups as f64
}

/// Serves `catalog` and measures it under `load`, after warming its cache up with
/// [`warm_up`] if `warm_up_limit` is given.
async fn scenario(
    catalog: Catalog,
    load: &Load,
    warm_up_limit: Option<Duration>,
    label: &str,
) -> Fallible<Row> {
    let server = Server::start(catalog.clone()).await?;
    let warmed = match warm_up_limit {
        Some(limit) => Some(warm_up(&catalog, server.addr, load, limit, label).await),
        None => None,
    };
    let (queries, stats) = (catalog.db().queries(), catalog.stats());
    let outcome = load::run(&[server.addr], load, label).await;
    let mut row = Row::new(&catalog, &outcome, queries, stats);
    row.warm_up = warmed;
    server.stop().await?;
    Ok(row)
}

/// Sends the same traffic as `load` (with other seeds: the measured requests are not a replay
/// of the warm-up's) until the cache is in a steady state, its hit ratio over the last
/// `STEADY_WINDOW` at least `STEADY_HIT_RATIO`, or for `limit` at most.
async fn warm_up(
    catalog: &Catalog,
    addr: SocketAddr,
    load: &Load,
    limit: Duration,
    label: &str,
) -> WarmUp {
    let warm = Load {
        duration: limit,
        seed: load.seed.wrapping_add(1 << 32),
        ..load.clone()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let label = format!("{label}, warming up");
    let addrs = [addr];
    let run = load::run_until(&addrs, &warm, &label, &stop);
    tokio::pin!(run);
    let mut last = catalog.stats();
    loop {
        tokio::select! {
            _ = &mut run => break,
            _ = tokio::time::sleep(STEADY_WINDOW) => {
                let now = catalog.stats();
                if steady(last.as_ref(), now.as_ref()) {
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

/// Whether the cache answered at least `STEADY_HIT_RATIO` of a meaningful number of lookups
/// between two snapshots (a window in which every client waited on the database has few).
fn steady(before: Option<&CacheStats>, after: Option<&CacheStats>) -> bool {
    match (before, after) {
        (Some(before), Some(after)) => {
            after.requests() - before.requests() >= 1_000
                && hit_ratio(before, after) >= STEADY_HIT_RATIO
        }
        _ => true,
    }
}

/// A stampede's figures.
struct Stampede {
    row: Row,
    /// Queries run after the hot pages expired.
    reloads: u64,
}

impl Stampede {
    fn print_reloads(&self) {
        println!(
            "  after expiry: {} queries for {HOT_PAGES} expired pages ({:.2} per page)\n",
            thousands(self.reloads),
            self.reloads as f64 / HOT_PAGES as f64
        );
    }
}

/// The hot pages `1..=HOT_PAGES` are cached (with a time-to-live on a mock clock), then `clients`
/// clients ask for them for `CALM` (every request a hit), then the clock jumps past the deadline:
/// every hot page expires at that instant, and the queries in the following `STORM` are counted.
/// The clients only ask for hot pages, so every query after the jump reloads one of them.
async fn stampede(db: &Db, coalescing: bool, clients: usize, label: &str) -> Fallible<Stampede> {
    let time = MockClock::new();
    let cache = Cache::builder()
        .max_capacity(1_000)
        .time_to_live(STAMPEDE_TTL)
        .clock(Clock::mock(&time))
        .record_stats()
        .build()?;
    let strategy = if coalescing {
        Strategy::Coalescing(cache)
    } else {
        Strategy::Naive(cache)
    };
    let catalog = Catalog::new(db.clone(), strategy);
    for id in 1..=HOT_PAGES {
        catalog.page(id).await.map_err(|e| e.to_string())?;
    }
    let server = Server::start(catalog.clone()).await?;
    let load = Load {
        clients,
        duration: CALM + STORM,
        keys: Keys::Hot(HOT_PAGES),
        seed: SEED,
        check: None,
    };
    let (queries, stats) = (db.queries(), catalog.stats());
    let expire = async {
        tokio::time::sleep(CALM).await;
        // Nothing queries the database before the jump (every hot page is cached and the mock
        // clock stands still), so this count is exact.
        let at_expiry = db.queries();
        time.advance(STAMPEDE_TTL);
        at_expiry
    };
    let addrs = [server.addr];
    let (outcome, at_expiry) = tokio::join!(load::run(&addrs, &load, label), expire);
    let row = Row::new(&catalog, &outcome, queries, stats);
    server.stop().await?;
    Ok(Stampede {
        reloads: db.queries() - at_expiry,
        row,
    })
}

/// The closing line: the three bars, their figures, and whether each holds.
fn verdict(uncached: &Row, cached: &Row, coalesced: &Stampede, naive: &Stampede) -> String {
    let mark = |ok: bool| if ok { "PASS" } else { "FAIL" };
    let p99_ratio = uncached.summary.p99.as_secs_f64() / cached.summary.p99.as_secs_f64().max(1e-9);
    // Queries per request fall from 1 (every request) to the cached scenario's rate.
    let reduction = 1.0 - cached.queries_per_request() / uncached.queries_per_request().max(1e-9);
    let hit = cached.hit_ratio.unwrap_or(0.0);
    format!(
        "summary: p99 {p99_ratio:.1}x lower with cachet (bar >= {P99_BAR}x: {}); \
         db queries per request -{:.2}% vs hit ratio {:.2}% (bar: reduction >= hit ratio: {}); \
         stampede {} queries for {HOT_PAGES} expired pages coalesced vs {} naive (bar: exactly 1 \
         per page: {})",
        mark(p99_ratio >= P99_BAR),
        reduction * 100.0,
        hit * 100.0,
        mark(reduction + 1e-9 >= hit),
        coalesced.reloads,
        naive.reloads,
        mark(coalesced.reloads == HOT_PAGES),
    )
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() * 4 / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn hit_ratio_between_snapshots() {
        let mut before = CacheStats::default();
        assert_eq!(
            hit_ratio(&before, &before),
            1.0,
            "nothing looked up, nothing missed"
        );
        before.hits = 400;
        before.misses = 100;
        let mut after = before.clone();
        after.hits += 950;
        after.misses += 50;
        assert_eq!(hit_ratio(&before, &after), 0.95);
    }

    /// The whole stack on a tiny in-memory catalog: HTTP in, JSON out, one query per page with
    /// the coalescing cache.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn service_answers_and_caches_over_http() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        db::create(&mut conn, 300).unwrap();
        let db = Db::from_connections(vec![conn]);
        let cache = Cache::builder().max_capacity(100).build().unwrap();
        let server = Server::start(Catalog::new(db.clone(), Strategy::Coalescing(cache)))
            .await
            .unwrap();
        let load = Load {
            clients: 4,
            duration: Duration::ZERO,
            keys: Keys::Hot(3),
            seed: 1,
            check: None,
        };
        // A zero-length run sends nothing: the plumbing works and nothing was queried.
        let outcome = load::run(&[server.addr], &load, "test").await;
        assert_eq!((outcome.latency.len(), outcome.errors), (0, 0));

        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Empty<axum::body::Bytes>>();
        let get = |id: u64| {
            let client = client.clone();
            let uri = format!("http://{}/products/{id}", server.addr);
            async move {
                use http_body_util::BodyExt;
                let response = client.get(uri.parse().unwrap()).await.unwrap();
                let status = response.status().as_u16();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                (status, String::from_utf8(body.to_vec()).unwrap())
            }
        };
        let (status, body) = get(7).await;
        assert_eq!(status, 200);
        assert!(body.starts_with(r#"{"id":7,"name":"#), "{body}");
        assert_eq!(get(7).await, (status, body));
        assert_eq!(db.queries(), 1, "the second request is a hit");
        assert_eq!(get(301).await.0, 404);
        assert_eq!(get(301).await.0, 404);
        assert_eq!(db.queries(), 3, "a missing product is not cached");
        drop(client);
        server.stop().await.unwrap();
    }
}
