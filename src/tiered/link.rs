//! The connection to Redis, owned and supervised: it carries this instance's reads and writes
//! and, through server-assisted client tracking, the invalidation bus.
//
// One RESP3 connection per instance, multiplexed. Right after connecting (before anything reads
// through it) the supervisor turns on `CLIENT TRACKING ON BCAST PREFIX <prefix> NOLOOP`: the
// server then pushes an `invalidate` message on this connection for every change to a key under
// the prefix made by any other connection (writes, deletions, expiry, eviction, and a null for
// FLUSHALL / FLUSHDB), at no per-key cost on the server. NOLOOP leaves out this connection's own
// writes, which the instance applies to L1 itself; a separate listening connection would hear
// them and drop every value this instance has just written. Pushes are handled inside the
// connection's reader task, in order with the replies.
//
// The supervisor's states, and what L1 may hold in each:
//
// | state | reads | L1 |
// |---|---|---|
// | down (connecting, or retrying with backoff) | loader only | degraded lifetime (default: not kept) |
// | up (tracking on, heartbeat answered) | L1, then Redis, then loader | lifetime <= the key's PTTL |
//
// down -> up: tracking is on, then L1 is flushed (what was kept while down may have missed
// invalidations), then the connection is published. up -> down (the connection reports a
// disconnection, or a PING goes unanswered for one heartbeat period): the connection is
// withdrawn, then L1 is flushed. Fills in flight across either flush never store (fence.rs).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, PushInfo, PushKind, Value};
use tokio::sync::{Notify, watch};

use super::Shared;
use super::codec::{Codec, RedisKey};
use super::fill::timed;
use super::stats::bump;

/// Reconnection backoff: the first retry comes soon (a restarted server is usually back within
/// a second); later ones double up to the cap, so a long outage costs little.
const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The published connection: `Some` while the bus is up and trusted.
#[derive(Default)]
pub(super) struct Link {
    conn: RwLock<Option<MultiplexedConnection>>,
}

impl Link {
    /// The connection to read and write through, if the bus is up.
    pub(super) fn current(&self) -> Option<MultiplexedConnection> {
        self.conn.read().clone()
    }

    pub(super) fn is_up(&self) -> bool {
        self.conn.read().is_some()
    }
}

/// L1 misses waiting for another instance's load of their key: woken when an invalidation
/// message names the key (the loader's write to Redis sends one).
#[derive(Default)]
pub(super) struct Waiters {
    count: AtomicUsize,
    map: Mutex<HashMap<Vec<u8>, Waiting>>,
}

/// The waiters for one Redis key.
struct Waiting {
    notify: Arc<Notify>,
    count: usize,
}

/// A registered waiter; deregisters when dropped.
pub(super) struct Waiter<'a> {
    waiters: &'a Waiters,
    key: Vec<u8>,
    pub(super) notify: Arc<Notify>,
}

impl Waiters {
    pub(super) fn register(&self, key: &[u8]) -> Waiter<'_> {
        let mut map = self.map.lock();
        let entry = map.entry(key.to_vec()).or_insert_with(|| Waiting {
            notify: Arc::new(Notify::new()),
            count: 0,
        });
        entry.count += 1;
        self.count.fetch_add(1, Ordering::SeqCst);
        Waiter {
            waiters: self,
            key: key.to_vec(),
            notify: Arc::clone(&entry.notify),
        }
    }

    fn wake(&self, key: &[u8]) {
        if self.count.load(Ordering::SeqCst) == 0 {
            return;
        }
        if let Some(waiting) = self.map.lock().get(key) {
            waiting.notify.notify_waiters();
        }
    }

    fn wake_all(&self) {
        if self.count.load(Ordering::SeqCst) == 0 {
            return;
        }
        for waiting in self.map.lock().values() {
            waiting.notify.notify_waiters();
        }
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut map = self.waiters.map.lock();
        if let Some(entry) = map.get_mut(&self.key) {
            entry.count -= 1;
            if entry.count == 0 {
                map.remove(&self.key);
            }
        }
        self.waiters.count.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Why the supervisor stopped trusting a connection.
#[derive(Debug, PartialEq, Eq)]
enum Lost {
    /// The connection reported a disconnection.
    Disconnected,
    /// A PING went unanswered for a heartbeat period.
    Silent,
    /// The cache was dropped.
    Stopped,
}

/// The supervisor: connects, turns tracking on, publishes the connection, watches it, and
/// starts over when it is lost, until `stop`'s sender is dropped (the last handle of the cache).
pub(super) async fn supervise<K, V, C>(shared: Arc<Shared<K, V, C>>, mut stop: watch::Receiver<()>)
where
    K: RedisKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    C: Codec<V>,
{
    let mut backoff = BACKOFF_MIN;
    loop {
        let lost = Arc::new(Notify::new());
        let attempt = tokio::select! {
            _ = stop.changed() => return,
            attempt = connect(&shared, &lost) => attempt,
        };
        let Some(conn) = attempt else {
            tokio::select! {
                _ = stop.changed() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
            continue;
        };
        backoff = BACKOFF_MIN;
        shared.flush();
        *shared.link.conn.write() = Some(conn.clone());
        shared.counters.came_up();
        bump(&shared.counters.connects);

        let why = watch_over(&shared, conn, &lost, &mut stop).await;

        *shared.link.conn.write() = None;
        shared.counters.went_down();
        shared.flush();
        // Waiters for other instances' loads stop waiting on a bus that is gone.
        shared.waiters.wake_all();
        if why == Lost::Stopped {
            return;
        }
    }
}

/// Opens a connection with tracking on, or `None` if Redis cannot be reached (or refuses).
async fn connect<K, V, C>(
    shared: &Arc<Shared<K, V, C>>,
    lost: &Arc<Notify>,
) -> Option<MultiplexedConnection>
where
    K: RedisKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    C: Codec<V>,
{
    let weak = Arc::downgrade(shared);
    let lost_here = Arc::clone(lost);
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(shared.cfg.connect_timeout))
        .set_response_timeout(None)
        .set_push_sender(move |push: PushInfo| {
            on_push(&weak, &lost_here, push);
            Ok::<(), std::convert::Infallible>(())
        });
    let connecting = shared
        .client
        .get_multiplexed_async_connection_with_config(&config);
    let mut conn = tokio::time::timeout(shared.cfg.connect_timeout, connecting)
        .await
        .ok()?
        .ok()?;
    // Named, so that an operator's CLIENT LIST shows which connections are cachet's.
    let mut name = redis::cmd("CLIENT");
    name.arg("SETNAME").arg(&shared.client_name);
    let named = name.query_async::<()>(&mut conn);
    tokio::time::timeout(shared.cfg.connect_timeout, named)
        .await
        .ok()?
        .ok()?;
    let mut tracking = redis::cmd("CLIENT");
    tracking
        .arg("TRACKING")
        .arg("ON")
        .arg("BCAST")
        .arg("PREFIX")
        .arg(&shared.prefix[..])
        .arg("NOLOOP");
    let on = tracking.query_async::<()>(&mut conn);
    tokio::time::timeout(shared.cfg.connect_timeout, on)
        .await
        .ok()?
        .ok()?;
    Some(conn)
}

/// Watches a published connection until it is lost: a PING every heartbeat period must be
/// answered within the next one.
async fn watch_over<K, V, C>(
    shared: &Shared<K, V, C>,
    mut conn: MultiplexedConnection,
    lost: &Notify,
    stop: &mut watch::Receiver<()>,
) -> Lost {
    let period = shared.cfg.heartbeat;
    loop {
        let ping = async {
            tokio::time::sleep(period).await;
            timed(period, redis::cmd("PING").query_async::<()>(&mut conn)).await
        };
        tokio::select! {
            _ = stop.changed() => return Lost::Stopped,
            () = lost.notified() => return Lost::Disconnected,
            answered = ping => if answered.is_err() {
                return Lost::Silent;
            },
        }
    }
}

/// A push message on the connection, handled in its reader task (so before any later reply).
fn on_push<K, V, C>(shared: &Weak<Shared<K, V, C>>, lost: &Notify, push: PushInfo)
where
    K: RedisKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    C: Codec<V>,
{
    match push.kind {
        PushKind::Disconnection => lost.notify_one(),
        PushKind::Invalidate => {
            if let Some(shared) = shared.upgrade() {
                // A panicking eviction listener must not kill the connection's reader.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    shared.on_invalidate(push.data)
                }));
            }
        }
        _ => {}
    }
}

impl<K, V, C> Shared<K, V, C>
where
    K: RedisKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    C: Codec<V>,
{
    /// An `invalidate` message: an array of Redis keys, or null for a flush of the database.
    fn on_invalidate(&self, data: Vec<Value>) {
        match data.into_iter().next() {
            Some(Value::Array(keys)) | Some(Value::Set(keys)) => {
                for key in keys {
                    if let Value::BulkString(name) = key {
                        self.invalidated(&name);
                    }
                }
            }
            _ => {
                self.flush();
                self.waiters.wake_all();
            }
        }
    }

    /// The Redis key `name` changed: drop the key it names from L1, wake waiters for it.
    fn invalidated(&self, name: &[u8]) {
        if let Some(key) = name.strip_prefix(&self.prefix[..]).and_then(K::read_key) {
            self.invalidate_local(&key);
        }
        bump(&self.counters.invalidations);
        self.waiters.wake(name);
    }
}
