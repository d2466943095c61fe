//! The load generator: `clients` concurrent keep-alive HTTP/1.1 clients, each sending its next
//! request as soon as the previous answer has arrived (a closed loop), for a fixed time. Every
//! request's latency, from sending to the last byte of the body, goes into an HDR histogram.
//! With several addresses (instances of the service behind a load balancer), each client sends
//! its requests to them in turn; an optional check counts the answers it finds stale.

use std::io::{IsTerminal, Write as _};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{StatusCode, Uri};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use rand_distr::Zipf;

/// Which products the clients ask for.
#[derive(Clone, Copy, Debug)]
pub enum Keys {
    /// Zipf-distributed popularity over products `1..=n`: product 1 is the most popular, product
    /// `k` is asked for about `1 / k^s` as often.
    Zipf { products: u64, dist: Zipf<f64> },
    /// Uniform over the hot products `1..=k` (the stampede).
    Hot(u64),
}

impl Keys {
    pub fn zipf(products: u64, exponent: f64) -> Result<Keys, String> {
        let dist = Zipf::new(products as f64, exponent)
            .map_err(|e| format!("Zipf over {products} products, exponent {exponent}: {e}"))?;
        Ok(Keys::Zipf { products, dist })
    }

    /// How many products may be asked for.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub fn len(&self) -> u64 {
        match *self {
            Keys::Zipf { products, .. } => products,
            Keys::Hot(k) => k,
        }
    }

    /// The next product id, in `1..=n`.
    pub fn sample(&self, rng: &mut SmallRng) -> u64 {
        match *self {
            // The distribution yields whole numbers as floats in 1..=n.
            Keys::Zipf { products, dist } => (rng.sample(dist) as u64).clamp(1, products),
            Keys::Hot(k) => rng.random_range(1..=k.max(1)),
        }
    }
}

/// One measured run.
#[derive(Clone, Debug)]
pub struct Load {
    pub clients: usize,
    pub duration: Duration,
    pub keys: Keys,
    /// Client `i` draws its keys from a generator seeded with `seed + i`.
    pub seed: u64,
    /// Tells whether an answer is stale: product id, body, when the request was sent.
    pub check: Option<Check>,
}

/// A staleness check of answers.
#[derive(Clone)]
pub struct Check(pub Arc<StaleFn>);

/// Whether the answer (product id, body) to a request sent at the given instant is stale.
pub type StaleFn = dyn Fn(u64, &[u8], Instant) -> bool + Send + Sync;

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Check")
    }
}

/// What a run measured.
pub struct Outcome {
    /// Latencies of the successful requests, in microseconds.
    pub latency: Histogram<u64>,
    /// Requests that failed or were not answered `200 OK`.
    pub errors: u64,
    /// Answers the check found stale.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub stale: u64,
    pub elapsed: Duration,
}

/// A histogram of microseconds, from 1 µs to 60 s at 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// Runs `load` against the service at `addrs` (in turn), showing `label` in the progress line.
pub async fn run(addrs: &[SocketAddr], load: &Load, label: &str) -> Outcome {
    run_until(addrs, load, label, &Arc::new(AtomicBool::new(false))).await
}

/// [`run`], ending early once `stop` is set: each client finishes the request it is waiting on.
pub async fn run_until(
    addrs: &[SocketAddr],
    load: &Load,
    label: &str,
    stop: &Arc<AtomicBool>,
) -> Outcome {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(load.clients)
        .build(connector);
    let done = Arc::new(AtomicU64::new(0));
    let ticker = Ticker::start(label, load.duration, Arc::clone(&done));
    let started = Instant::now();
    let deadline = started + load.duration;
    let tasks: Vec<_> = (0..load.clients)
        .map(|i| {
            let (client, done, keys) = (client.clone(), Arc::clone(&done), load.keys);
            let stop = Arc::clone(stop);
            let rng = SmallRng::seed_from_u64(load.seed.wrapping_add(i as u64));
            let run = LoadClient {
                client,
                addrs: addrs.to_vec(),
                first: i,
                keys,
                check: load.check.clone(),
            };
            tokio::spawn(run.requests(rng, deadline, stop, done))
        })
        .collect();
    let mut latency = histogram();
    let (mut errors, mut stale) = (0, 0);
    for task in tasks {
        let (h, e, s) = task.await.expect("client task panicked");
        latency.add(&h).expect("histograms with the same bounds");
        errors += e;
        stale += s;
    }
    let elapsed = started.elapsed();
    ticker.finish();
    Outcome {
        latency,
        errors,
        stale,
        elapsed,
    }
}

/// One client.
struct LoadClient {
    client: HttpClient,
    /// Asked in turn, from `addrs[first % len]` on.
    addrs: Vec<SocketAddr>,
    first: usize,
    keys: Keys,
    check: Option<Check>,
}

impl LoadClient {
    /// Requests until `deadline` (or `stop`), then hands back its latencies, error count and
    /// stale count.
    async fn requests(
        self,
        mut rng: SmallRng,
        deadline: Instant,
        stop: Arc<AtomicBool>,
        done: Arc<AtomicU64>,
    ) -> (Histogram<u64>, u64, u64) {
        let mut latency = histogram();
        let (mut errors, mut stale) = (0, 0);
        let mut turn = self.first;
        while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
            let id = self.keys.sample(&mut rng);
            let addr = self.addrs[turn % self.addrs.len()];
            turn += 1;
            let uri: Uri = format!("http://{addr}/products/{id}")
                .parse()
                .expect("a valid URI");
            let start = Instant::now();
            match fetch(&self.client, uri).await {
                Some(body) => {
                    latency.saturating_record(start.elapsed().as_micros() as u64);
                    done.fetch_add(1, Ordering::Relaxed);
                    if self.check.as_ref().is_some_and(|c| (c.0)(id, &body, start)) {
                        stale += 1;
                    }
                }
                None => errors += 1,
            }
        }
        (latency, errors, stale)
    }
}

/// GETs `uri` and reads the whole body; the body on `200 OK`.
async fn fetch(client: &HttpClient, uri: Uri) -> Option<Bytes> {
    let response = client.get(uri).await.ok()?;
    let ok = response.status() == StatusCode::OK;
    let body = response.into_body().collect().await.ok()?.to_bytes();
    ok.then_some(body)
}

/// The figures a scenario's table shows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub requests: u64,
    pub errors: u64,
    pub per_second: f64,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub p999: Duration,
    pub max: Duration,
}

impl Summary {
    pub fn new(outcome: &Outcome) -> Summary {
        let h = &outcome.latency;
        let at = |q: f64| Duration::from_micros(h.value_at_quantile(q));
        let seconds = outcome.elapsed.as_secs_f64();
        Summary {
            requests: h.len(),
            errors: outcome.errors,
            per_second: if seconds > 0.0 {
                h.len() as f64 / seconds
            } else {
                0.0
            },
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
            max: Duration::from_micros(h.max()),
        }
    }
}

/// The progress line: on a terminal, one stderr line rewritten with `\r` four times a second
/// (scenario, time elapsed, requests answered), erased at the end. Elsewhere (a CI log), one
/// plain line per scenario instead of hundreds of carriage returns.
struct Ticker {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Ticker {
    fn start(label: &str, total: Duration, done: Arc<AtomicU64>) -> Ticker {
        if !std::io::stderr().is_terminal() {
            eprintln!("running {label} (up to {:.1} s)", total.as_secs_f64());
            return Ticker { task: None };
        }
        let label = label.to_string();
        let started = Instant::now();
        let task = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(250));
            loop {
                every.tick().await;
                let elapsed = started.elapsed().min(total).as_secs_f64();
                let mut err = std::io::stderr().lock();
                let _ = write!(
                    err,
                    "\r\x1b[2K{label}  {elapsed:4.1} / {:.1} s  {} requests",
                    total.as_secs_f64(),
                    done.load(Ordering::Relaxed)
                );
                let _ = err.flush();
            }
        });
        Ticker { task: Some(task) }
    }

    fn finish(self) {
        if let Some(task) = self.task {
            task.abort();
            eprint!("\r\x1b[2K");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(latencies_us: impl IntoIterator<Item = u64>, elapsed: Duration) -> Outcome {
        let mut latency = histogram();
        for v in latencies_us {
            latency.record(v).unwrap();
        }
        Outcome {
            latency,
            errors: 0,
            stale: 0,
            elapsed,
        }
    }

    /// `a` within 0.1% (the histogram's 3 significant digits) of `b` microseconds.
    fn close(a: Duration, b: u64) -> bool {
        (a.as_micros() as f64 - b as f64).abs() <= b as f64 * 0.001
    }

    #[test]
    fn percentiles_of_a_uniform_spread() {
        // 1 ms, 2 ms, ..., 10 s.
        let s = Summary::new(&outcome(
            (1..=10_000).map(|ms| ms * 1_000),
            Duration::from_secs(4),
        ));
        assert_eq!(s.requests, 10_000);
        assert_eq!(s.per_second, 2_500.0);
        assert!(close(s.p50, 5_000_000), "{:?}", s.p50);
        assert!(close(s.p90, 9_000_000), "{:?}", s.p90);
        assert!(close(s.p99, 9_900_000), "{:?}", s.p99);
        assert!(close(s.p999, 9_990_000), "{:?}", s.p999);
        assert!(close(s.max, 10_000_000), "{:?}", s.max);
    }

    #[test]
    fn percentiles_see_the_tail() {
        // 990 fast requests and 10 slow ones: p99 is still fast, p99.9 is slow.
        let fast = std::iter::repeat_n(100, 990);
        let slow = std::iter::repeat_n(50_000, 10);
        let s = Summary::new(&outcome(fast.chain(slow), Duration::from_secs(1)));
        assert!(close(s.p50, 100) && close(s.p90, 100) && close(s.p99, 100));
        assert!(close(s.p999, 50_000), "{:?}", s.p999);
    }

    #[test]
    fn empty_run() {
        let s = Summary::new(&outcome([], Duration::ZERO));
        assert_eq!((s.requests, s.per_second, s.p99), (0, 0.0, Duration::ZERO));
    }

    #[test]
    fn zipf_favours_low_ids() {
        let keys = Keys::zipf(1_000, 1.0).unwrap();
        let mut rng = SmallRng::seed_from_u64(7);
        let mut counts = vec![0u32; 1_001];
        let n = 200_000;
        for _ in 0..n {
            let id = keys.sample(&mut rng);
            assert!((1..=1_000).contains(&id));
            counts[id as usize] += 1;
        }
        assert_eq!(counts[0], 0);
        assert!(counts[1] > counts[2] && counts[2] > counts[10] && counts[10] > counts[100]);
        // P(1) = 1 / H(1000) with H(1000) = 7.4855 for exponent 1.
        let p1 = f64::from(counts[1]) / f64::from(n);
        assert!((p1 - 1.0 / 7.4855).abs() < 0.005, "P(1) = {p1}");
    }

    #[test]
    fn zipf_is_seeded() {
        let keys = Keys::zipf(100_000, 0.9).unwrap();
        let draw = |seed| {
            let mut rng = SmallRng::seed_from_u64(seed);
            (0..100).map(|_| keys.sample(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
    }

    #[test]
    fn bad_zipf_parameters_are_reported() {
        assert!(Keys::zipf(0, 1.0).is_err());
        assert!(Keys::zipf(10, -1.0).unwrap_err().contains("exponent -1"));
    }

    #[test]
    fn hot_keys_cover_exactly_the_hot_set() {
        let mut rng = SmallRng::seed_from_u64(3);
        let mut seen = [false; 9];
        for _ in 0..1_000 {
            let id = Keys::Hot(8).sample(&mut rng);
            seen[id as usize] = true;
        }
        assert_eq!(
            seen,
            [false, true, true, true, true, true, true, true, true]
        );
    }
}
