//! A real `redis-server` as a child process, on a free port of 127.0.0.1, killed when dropped;
//! it can be frozen, resumed, killed and restarted on the same port. Used by the tiered cache's
//! tests (`tests/redis_*.rs`), its benchmark (`examples/redis_latency.rs`) and the demo,
//! included with `#[path = ".../examples/common/redis_server.rs"] mod redis_server;`.

// Each user needs a subset.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to start answering.
const STARTUP: Duration = Duration::from_secs(10);

/// A `redis-server` child process.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
}

impl RedisServer {
    /// Whether a `redis-server` binary is on the PATH.
    pub fn installed() -> bool {
        Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok()
    }

    /// Starts a server on a free port (see [`installed`](Self::installed) first).
    ///
    /// # Panics
    ///
    /// If no server could be started on any of five free ports.
    pub fn start() -> RedisServer {
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
                return server;
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
        let deadline = Instant::now() + STARTUP;
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
            "redis-server on port {} did not answer within {STARTUP:?}",
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
