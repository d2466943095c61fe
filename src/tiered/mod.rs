//! cachet in front of Redis (the `redis` feature): a [`TieredCache`] keeps hot values in
//! process (L1, a [`Cache`]) and shares them through Redis (L2), which is also the bus that
//! invalidates every instance's L1 when a key changes, whoever changes it.
//!
//! ```no_run
//! # async fn service() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use cachet::tiered::TieredCache;
//!
//! # async fn query_price(_: u64) -> Result<u64, std::io::Error> { Ok(1999) }
//! let prices: TieredCache<u64, u64> = TieredCache::builder("redis://127.0.0.1/", "price:")
//!     .redis_ttl(Duration::from_secs(600))
//!     .build()?;
//! // An L1 hit, or Redis, or one query for the whole fleet:
//! let cents = prices.get_or_load(&42, query_price(42)).await?;
//! // After changing the price in the database: gone from Redis and from every instance's L1.
//! prices.invalidate(&42).await?;
//! # let _ = cents; Ok(()) }
//! ```
//!
//! Its loaders are the core's: [`get_or_load`](TieredCache::get_or_load) takes a loader that
//! returns the value, an `Option` or a `Result` of either ([`Loaded`]), as
//! [`Cache::get_or_load_async`] does, and returns the same shape; keys may be borrowed.
//!
//! # What it guarantees
//!
//! - **An L1 hit never touches the network.** An L1 miss is coalesced per key within the
//!   instance (one Redis round trip however many callers miss), and a key missing from Redis
//!   is loaded by one instance of the fleet while the others wait for its value (a lease in
//!   Redis, taken with `SET NX PX`).
//! - **No stale value after an invalidation has reached the instance**, even in races: a fill
//!   that began before an invalidation of its key is never stored in L1. The invalidation
//!   reaches other instances through the server's key tracking (`CLIENT TRACKING ON BCAST
//!   PREFIX`), which reports every writer of a key under the prefix, cachet or not, and key
//!   expiry and `FLUSHALL` too.
//! - **Redis failures degrade to the loader, never to an error or a stale value.** Reads fall
//!   through to the loader within the command timeout. A loader's "not found" or error is
//!   returned to its callers and stored nowhere, neither in Redis nor in L1. While the invalidation bus is down or
//!   silent (a heartbeat missed) L1 is flushed and bypassed; it is flushed again when tracking
//!   is back, since invalidations may have been missed.
//! - **Staleness is bounded**: after a change to a key in Redis, an instance may serve the old
//!   value until the invalidation message arrives (a loopback round trip), or, if its bus was
//!   silently lost, for at most two heartbeat periods; a value is never kept longer than the
//!   key's remaining time in Redis nor longer than [`l1_ttl`](TieredBuilder::l1_ttl).
//!
//! Each cache runs its connection (and the invalidations it receives, and its heartbeats) on a
//! thread of its own; [`TieredCache`]'s futures run on the caller's tokio runtime (time
//! enabled), and [`BlockingTieredCache`] serves threaded services. The design, the failure cases
//! one by one and the measured figures are in the repository's `docs/redis.md`.

mod blocking;
mod builder;
mod bus_thread;
mod codec;
mod fence;
mod fill;
mod link;
mod stats;

use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use equivalent::Equivalent;
use tokio::sync::watch;

pub use blocking::BlockingTieredCache;
pub use builder::{
    DEFAULT_COMMAND_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_HEARTBEAT, DEFAULT_L1_TTL,
    DEFAULT_LEASE, DEFAULT_LEASE_POLL, DEFAULT_REDIS_TTL, TieredBuildError, TieredBuilder,
};
pub use codec::{Codec, CodecError, MsgPack, Raw, RedisKey};
pub use stats::TieredStats;

use builder::Parts;
use bus_thread::BusThread;
use fence::Fences;
use fill::{Keep, lease_key, millis};
use link::{Link, Waiters};

use crate::{Cache, Loaded};

/// The settings a built cache runs with (see the builder's methods).
#[derive(Clone, Copy, Debug)]
struct Config {
    redis_ttl: Duration,
    l1_ttl: Duration,
    degraded_l1_ttl: Duration,
    command_timeout: Duration,
    connect_timeout: Duration,
    heartbeat: Duration,
    lease: Duration,
    lease_wait: Duration,
    lease_poll: Duration,
}

/// What the handles, the supervisor and the connection's push handler share.
struct Shared<K, V, C> {
    l1: Cache<K, V>,
    client: redis::Client,
    prefix: Vec<u8>,
    codec: C,
    cfg: Config,
    fences: Fences,
    link: Link,
    waiters: Waiters,
    counters: stats::Counters,
    /// This instance's random id, in its lease tokens.
    instance: u64,
    /// The connection's name in `CLIENT LIST`: `cachet-<L1's name or "cache">-<instance id>`.
    client_name: String,
    next_token: AtomicU64,
}

/// Why a write through the tiered cache did not reach Redis. The key is out of this
/// instance's L1 either way; other instances may keep their copy until their L1 lifetime
/// ends (or their bus is lost).
#[derive(Debug)]
#[non_exhaustive]
pub enum TieredError {
    /// No connection to Redis now (the bus is down).
    NotConnected,
    /// Redis did not answer within the command timeout (it may still apply the command).
    Timeout,
    /// Redis answered with an error, or the connection failed.
    Redis,
    /// The value could not be encoded.
    Codec(CodecError),
}

impl fmt::Display for TieredError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TieredError::NotConnected => f.write_str("not connected to Redis"),
            TieredError::Timeout => f.write_str("Redis did not answer in time"),
            TieredError::Redis => f.write_str("the Redis command failed"),
            TieredError::Codec(e) => write!(f, "could not encode the value: {e}"),
        }
    }
}

impl std::error::Error for TieredError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TieredError::Codec(e) => Some(&**e),
            _ => None,
        }
    }
}

/// A two-tier cache: a [`Cache`] in process, Redis shared by the fleet, invalidated across
/// instances (see the [module docs](self)). Async; cheap to clone (clones share everything).
///
/// Keys name Redis keys as `prefix + key` ([`RedisKey`]); values cross the network through a
/// [`Codec`] ([`MsgPack`] by default). L1 keeps a value for at most the key's remaining time in
/// Redis, and at most [`l1_ttl`](TieredBuilder::l1_ttl).
pub struct TieredCache<K, V, C = MsgPack> {
    /// The in-process tier, here so that a hit follows the same pointer as a plain `Cache`.
    l1: Cache<K, V>,
    inner: Arc<Handle<K, V, C>>,
}

/// Owned by the handles only: when the last one goes, `stop`'s drop ends the supervisor, then
/// the bus thread ends (fields drop in this order).
struct Handle<K, V, C> {
    shared: Arc<Shared<K, V, C>>,
    _stop: watch::Sender<()>,
    bus: BusThread,
}

impl<K, V, C> Clone for TieredCache<K, V, C> {
    fn clone(&self) -> Self {
        TieredCache {
            l1: self.l1.clone(),
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, V> TieredCache<K, V, MsgPack>
where
    K: Hash + Eq,
{
    /// A builder for a cache over the Redis server at `address` (`redis://host:port/db`),
    /// whose keys live under `prefix` (`"price:"`: key 42 is the Redis key `price:42`).
    pub fn builder(address: &str, prefix: &str) -> TieredBuilder<K, V, MsgPack> {
        TieredBuilder::new(address, prefix)
    }
}

impl<K, V, C> TieredCache<K, V, C>
where
    K: RedisKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    C: Codec<V>,
{
    fn start(parts: Parts<K, V, C>) -> Result<Self, TieredBuildError> {
        let bus = BusThread::start().map_err(TieredBuildError::Runtime)?;
        let l1 = parts.l1;
        let instance = crate::DefaultHashBuilder::default().hash_one(Instant::now());
        // Client names cannot hold spaces.
        let label: String = l1
            .name()
            .unwrap_or("cache")
            .chars()
            .map(|c| if c.is_ascii_graphic() { c } else { '-' })
            .collect();
        let shared = Arc::new(Shared {
            client_name: format!("cachet-{label}-{instance:016x}"),
            l1: l1.clone(),
            client: parts.client,
            prefix: parts.prefix,
            codec: parts.codec,
            cfg: parts.cfg,
            fences: Fences::new(),
            link: Link::default(),
            waiters: Waiters::default(),
            counters: stats::Counters::new(),
            instance,
            next_token: AtomicU64::new(0),
        });
        let (stop, stopped) = watch::channel(());
        bus.handle
            .spawn(link::supervise(Arc::clone(&shared), stopped));
        Ok(TieredCache {
            l1,
            inner: Arc::new(Handle {
                shared,
                _stop: stop,
                bus,
            }),
        })
    }

    /// The runtime of the bus thread (blocking callers wait on it).
    fn bus(&self) -> &tokio::runtime::Handle {
        &self.inner.bus.handle
    }

    fn shared(&self) -> &Shared<K, V, C> {
        &self.inner.shared
    }

    /// Returns the value of `key`: from L1, else from Redis, else from `load` (awaited only if
    /// this instance loads the key for the fleet, or Redis cannot help), which is then written
    /// to Redis. Concurrent misses of the key in this instance, async or blocking, share one
    /// Redis read and one load. A Redis failure never fails the call: the value is loaded
    /// instead.
    ///
    /// `load` may return the value, an `Option` or a `Result` of either, and the call returns
    /// the same shape, as [`Cache::get_or_load_async`] does (see [`Loaded`]): a
    /// "not found" or an error is returned to every caller of that load in this instance, and
    /// is neither written to Redis nor kept in L1 (another instance then loads the key itself).
    /// The key may be borrowed (`&str` for a `String` key); it is turned into a `K` only on a
    /// miss.
    ///
    /// ```no_run
    /// # async fn service(prices: cachet::tiered::TieredCache<u64, u64>) {
    /// # async fn query_price(_: u64) -> Result<Option<u64>, std::io::Error> { Ok(Some(1999)) }
    /// let known: u64 = prices.get_or_load(&1, async { 1999 }).await;
    /// let row: Result<Option<u64>, _> = prices.get_or_load(&2, query_price(2)).await;
    /// # }
    /// ```
    pub async fn get_or_load<Q, L, F>(&self, key: &Q, load: F) -> L::Output
    where
        Q: ?Sized + Hash + Equivalent<K> + ToOwned<Owned = K>,
        L: Loaded<V>,
        F: Future<Output = L>,
    {
        // Checked here, before the fill's future is built: a hit costs what `Cache::get` does.
        if let Some(v) = self.lookup(key) {
            return L::join(Ok(Some(v)));
        }
        let key = key.to_owned();
        let fill = self.shared().fill(&key, load);
        self.l1.load_missed_async(&key, fill).await
    }

    /// A loading call's look in L1: a hit is counted, a miss is left for the load to count.
    #[inline]
    fn lookup<Q>(&self, key: &Q) -> Option<V>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        self.l1.get_at(self.l1.hash(key), key)
    }

    /// The value of `key` if L1 holds it (no network).
    pub fn get_if_present<Q>(&self, key: &Q) -> Option<V>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        self.l1.get(key)
    }

    /// Writes `value` to Redis (with the configured time-to-live) and to this instance's L1;
    /// every other instance drops its copy when Redis tells it of the change.
    ///
    /// # Errors
    ///
    /// [`TieredError`] when Redis was not written (not connected, a timeout, an error) or the
    /// value did not encode: the key is then out of this instance's L1, and the next read
    /// loads it.
    pub async fn insert(&self, key: K, value: V) -> Result<(), TieredError> {
        self.shared().insert(key, value).await
    }

    /// Removes `key` from Redis and from this instance's L1; every other instance drops its
    /// copy when Redis tells it of the deletion. A load of the key in flight anywhere in the
    /// fleet will not write its (possibly older) value to Redis.
    ///
    /// # Errors
    ///
    /// [`TieredError`] when Redis did not confirm the deletion (the key is out of this
    /// instance's L1 all the same).
    pub async fn invalidate<Q>(&self, key: &Q) -> Result<(), TieredError>
    where
        Q: ?Sized + ToOwned<Owned = K>,
    {
        self.shared().invalidate(&key.to_owned()).await
    }

    /// Whether the invalidation bus is up (L1 in use).
    pub fn is_connected(&self) -> bool {
        self.shared().link.is_up()
    }

    /// Waits until the invalidation bus is up, for at most `timeout`; returns whether it is.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let until = tokio::time::Instant::now() + timeout;
        while !self.is_connected() {
            if tokio::time::Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5).min(timeout)).await;
        }
        true
    }

    /// Waits until every invalidation message Redis sent this instance before now has been
    /// applied to L1 (one round trip on the bus connection, whose replies follow its messages).
    /// Returns `false` if the bus is down (L1 is then flushed and bypassed) or did not answer
    /// within the command timeout.
    ///
    /// Another instance's write is visible here, from L1 or Redis, once its `insert` or
    /// `invalidate` has returned and this returns `true`: read-your-writes across instances.
    pub async fn sync_invalidations(&self) -> bool {
        let shared = self.shared();
        let Some(mut conn) = shared.link.current() else {
            return false;
        };
        let ping = redis::cmd("PING");
        shared
            .command(ping.query_async::<()>(&mut conn))
            .await
            .is_some()
    }

    /// A snapshot of the statistics.
    pub fn stats(&self) -> TieredStats {
        let shared = self.shared();
        shared
            .counters
            .snapshot(shared.link.is_up(), self.l1.stats())
    }

    /// Publishes the [`stats`](Self::stats) through the `metrics` facade: L1's as
    /// [`Cache::publish_metrics`] does, and `cachet_l2_*` counters (hits, misses, errors,
    /// timeouts, loads, invalidations, flushes, lease waits and timeouts, connects) with the
    /// gauges `cachet_l2_degraded_seconds` and `cachet_l2_connected`, all labelled `cache =
    /// <L1's name>` (or `"cachet"`).
    #[cfg(feature = "metrics")]
    pub fn publish_metrics(&self) {
        self.l1.publish_metrics();
        self.stats().publish(self.l1.name().unwrap_or("cachet"));
    }

    /// The in-process tier. Reading it is safe; writing to it directly bypasses Redis and the
    /// invalidation protocol.
    pub fn l1(&self) -> &Cache<K, V> {
        &self.l1
    }
}

impl<K, V, C> Shared<K, V, C>
where
    K: RedisKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    C: Codec<V>,
{
    /// `prefix + key`.
    fn redis_key(&self, key: &K) -> Vec<u8> {
        let mut name = self.prefix.clone();
        key.write_key(&mut name);
        name
    }

    /// Drops `key` from L1, and keeps fills of it that began before now out of it.
    fn invalidate_local(&self, key: &K) {
        self.fences.bump(key);
        self.l1.remove(key);
    }

    /// Empties L1, and keeps every fill in flight out of it.
    fn flush(&self) {
        self.fences.bump_all();
        self.l1.invalidate_all();
        stats::bump(&self.counters.flushes);
    }

    async fn insert(&self, key: K, value: V) -> Result<(), TieredError> {
        let ticket = self.fences.ticket(&key);
        let outcome = self.write_through(&key, &value).await;
        match outcome {
            Ok(()) => {
                let life = self.lifetime(Keep::Within(self.cfg.redis_ttl));
                self.fences.write_if_current(ticket, |current| {
                    let life = if current { life } else { Duration::ZERO };
                    self.l1.insert_with_ttl(key, value, life);
                });
            }
            Err(_) => self.invalidate_local(&key),
        }
        outcome
    }

    /// `SET key value PX ttl`, and the key's lease deleted (a load in flight must not write
    /// its older value over this one), in one transaction.
    async fn write_through(&self, key: &K, value: &V) -> Result<(), TieredError> {
        let bytes = self.codec.encode(value).map_err(TieredError::Codec)?;
        let mut conn = self.link.current().ok_or(TieredError::NotConnected)?;
        let name = self.redis_key(key);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(&name[..])
            .arg(bytes)
            .arg("PX")
            .arg(millis(self.cfg.redis_ttl))
            .ignore()
            .cmd("DEL")
            .arg(lease_key(&name))
            .ignore();
        self.confirm(pipe.query_async::<()>(&mut conn)).await
    }

    async fn invalidate(&self, key: &K) -> Result<(), TieredError> {
        let outcome = match self.link.current() {
            Some(mut conn) => {
                let name = self.redis_key(key);
                let mut del = redis::cmd("DEL");
                del.arg(&name[..]).arg(lease_key(&name));
                self.confirm(del.query_async::<()>(&mut conn)).await
            }
            None => Err(TieredError::NotConnected),
        };
        // After the deletion: a fill that read the old value before it is fenced out here.
        self.invalidate_local(key);
        outcome
    }

    /// A write command within the command timeout, as a `TieredError`.
    async fn confirm(
        &self,
        cmd: impl Future<Output = redis::RedisResult<()>>,
    ) -> Result<(), TieredError> {
        self.counted(cmd).await.map_err(|failure| match failure {
            fill::Failure::Timeout => TieredError::Timeout,
            fill::Failure::Error => TieredError::Redis,
        })
    }
}

impl<K, V, C> fmt::Debug for TieredCache<K, V, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = &self.inner.shared;
        f.debug_struct("TieredCache")
            .field("prefix", &String::from_utf8_lossy(&shared.prefix))
            .field("connected", &shared.link.is_up())
            .field("l1", &self.l1)
            .finish_non_exhaustive()
    }
}
