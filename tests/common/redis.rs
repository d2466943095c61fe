//! Helpers for the tiered cache's tests: a server per test (skipped with one line when none is
//! installed, except under CI), polling with a deadline, and a "database" whose versions every
//! read is checked against.

// Each test file uses a subset of these.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::redis_server::RedisServer;

/// How long a test waits for something that crosses the network (a server starting, an
/// invalidation arriving) before it fails: far above what loopback takes, so only a real
/// failure reaches it.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A server for one test, or `None` (after a line saying why, once per test binary) if no
/// `redis-server` is installed and this is not CI (`CI` set), where a missing server fails the
/// test.
pub fn server() -> Option<RedisServer> {
    if RedisServer::installed() {
        return Some(RedisServer::start());
    }
    if std::env::var_os("CI").is_some() {
        panic!("redis-server is not installed, and CI needs it (apt-get install redis-server)");
    }
    // Once per test binary, and past the test harness's capture (which would hide it).
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "skipped: the tests that need Redis pass without running: no redis-server on the \
             PATH (install it with `apt-get install redis-server`)"
        );
    });
    None
}

/// Polls `done` until it holds, failing the test after [`PATIENCE`].
pub async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The blocking [`eventually`].
pub fn eventually_blocking(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The source of truth behind a cache: a version number per test, which the loader reads and
/// the writers raise. Reads are checked against it: a read must not return a version older
/// than one whose invalidation was confirmed before the read began.
#[derive(Clone, Default)]
pub struct Db {
    inner: Arc<DbInner>,
}

#[derive(Default)]
struct DbInner {
    version: AtomicU64,
    queries: AtomicU64,
    /// The newest version whose invalidation was confirmed, and when.
    confirmed: Mutex<Option<(u64, Instant)>>,
}

impl Db {
    /// The loader: one query.
    pub async fn load(&self) -> u64 {
        self.query()
    }

    pub fn query(&self) -> u64 {
        self.inner.queries.fetch_add(1, Ordering::SeqCst);
        self.inner.version.load(Ordering::SeqCst)
    }

    pub fn queries(&self) -> u64 {
        self.inner.queries.load(Ordering::SeqCst)
    }

    /// Raises the version (a write to the database); returns it.
    pub fn bump(&self) -> u64 {
        self.inner.version.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Records that `version`'s invalidation was confirmed (the write is complete).
    pub fn confirmed(&self, version: u64) {
        let mut c = self.inner.confirmed.lock().unwrap();
        if c.is_none_or(|(v, _)| v < version) {
            *c = Some((version, Instant::now()));
        }
    }

    /// Checks one read that began at `started` and returned `got`: not older than a version
    /// confirmed before it began.
    pub fn check(&self, started: Instant, got: u64) {
        if let Some((v, at)) = *self.inner.confirmed.lock().unwrap() {
            assert!(
                !(at < started && got < v),
                "stale read: got version {got}, but version {v} was confirmed before the read began"
            );
        }
    }
}

/// A tiered cache of `u64 -> u64` under the prefix `t:`, with settings for a test on a busy
/// machine: a heartbeat and timeouts generous enough that scheduling delays never pass for a
/// lost server (tests that lose the server on purpose shorten them).
pub fn tiered(server: &RedisServer, name: &str) -> cachet::tiered::TieredBuilder<u64, u64> {
    cachet::tiered::TieredCache::builder(&server.url(), "t:")
        .l1(cachet::Cache::builder()
            .max_capacity(1_000)
            .name(name)
            .record_stats())
        .heartbeat(Duration::from_secs(1))
        .command_timeout(Duration::from_secs(2))
}

/// The Redis key of key `k` in [`tiered`]'s caches.
pub fn key(k: u64) -> String {
    format!("t:{k}")
}
