//! A real `redis-server` per test, on a free port of 127.0.0.1, stopped when the test ends; and
//! a "database" whose versions the tests check reads against.
//!
//! Without a `redis-server` on the PATH a test is skipped with one line saying how to install
//! it, except under CI (`CI` set), where a missing server fails the test.

// Each test file uses a subset of these.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a test waits for something that crosses the network (a server starting, an
/// invalidation arriving) before it fails: far above what loopback takes, so only a real
/// failure reaches it.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A `redis-server` child process.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts a server on a free port, or returns `None` (after saying why) if no
    /// `redis-server` is installed and this is not CI.
    pub fn start() -> Option<RedisServer> {
        if Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "redis-server is not installed, and CI needs it (apt-get install redis-server)"
                );
            }
            eprintln!(
                "skipped: no redis-server on the PATH (install it with `apt-get install redis-server`)"
            );
            return None;
        }
        // A port the OS just handed out is free unless another process takes it in the
        // meantime: then the server fails to start, and another port is tried.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let dir =
                std::env::temp_dir().join(format!("cachet-redis-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("a working directory for the server");
            let mut server = RedisServer {
                port,
                child: None,
                dir,
            };
            if server.launch() {
                return Some(server);
            }
        }
        panic!("could not start redis-server on any of 5 free ports");
    }

    /// Launches the process on `self.port` and waits until it answers; `false` if it exits.
    fn launch(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "no", "--loglevel", "warning"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                return false;
            }
            if let Ok(mut conn) = self.raw() {
                if redis::cmd("PING").query::<String>(&mut conn).is_ok() {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "redis-server on port {} did not answer within {PATIENCE:?}",
            self.port
        );
    }

    /// The address for a tiered cache.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A plain (non-cachet) client connection.
    pub fn raw(&self) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(self.url())?;
        client.get_connection_with_timeout(Duration::from_secs(1))
    }

    /// Runs one command from a plain client.
    pub fn cmd<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
        let mut conn = self.raw().expect("a plain connection");
        cmd.query(&mut conn).expect("the command succeeds")
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("the server runs").id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Freezes the server (`kill -STOP`): connections stay open, nothing is answered.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Resumes a frozen server.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Kills the server (`kill -9`) and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a killed server again on the same port (empty: nothing is persisted).
    pub fn restart(&mut self) {
        self.kill();
        assert!(self.launch(), "redis-server restarts on port {}", self.port);
    }

    /// The ids of the connections whose name starts with `name`.
    pub fn client_ids(&self, name: &str) -> Vec<u64> {
        let list: String = self.cmd(redis::cmd("CLIENT").arg("LIST"));
        list.lines()
            .filter(|line| {
                line.split(' ')
                    .any(|f| f.strip_prefix("name=").is_some_and(|n| n.starts_with(name)))
            })
            .filter_map(|line| {
                line.split(' ')
                    .find_map(|f| f.strip_prefix("id="))
                    .and_then(|id| id.parse().ok())
            })
            .collect()
    }

    /// How many times the server has run `command` (from `INFO commandstats`).
    pub fn calls(&self, command: &str) -> u64 {
        let info: String = self.cmd(redis::cmd("INFO").arg("commandstats"));
        let prefix = format!("cmdstat_{command}:calls=");
        info.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A frozen server ignores SIGKILL's delivery until continued on some systems.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
        }
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
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
