//! Configuration of a tiered cache: every default a named constant with its reason.

use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::time::Duration;

use redis::{IntoConnectionInfo, ProtocolVersion};

use super::blocking::BlockingTieredCache;
use super::codec::{Codec, MsgPack, RedisKey};
use super::{Config, TieredCache};
use crate::{BuildError, Cache, CacheBuilder};

/// Values written to Redis live this long unless [`redis_ttl`](TieredBuilder::redis_ttl) says
/// otherwise: long enough to spare the database most reloads, short enough that a value
/// nobody invalidates is eventually reloaded.
pub const DEFAULT_REDIS_TTL: Duration = Duration::from_secs(300);
/// L1 keeps a value at most this long (and never longer than the key has left in Redis): the
/// bound on staleness when an invalidation is lost in a way no heartbeat detects (a writer
/// that could not reach Redis).
pub const DEFAULT_L1_TTL: Duration = Duration::from_secs(60);
/// A Redis command that takes longer is given up and the read falls through to the loader: a
/// loopback round trip takes well under a millisecond, a remote one a few.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_millis(100);
/// Connecting (TCP, `HELLO`, tracking on) is given up after this long, then retried.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A PING every period, to be answered within the next: a silent connection is found within
/// two periods, which bounds how long a lost invalidation can go unnoticed.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_millis(250);
/// How long the fleet-wide lease on a missing key lasts: the time one instance's loader may take
/// before another instance loads the key too (also how long waiters wait if its holder dies).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(3);
/// Waiters for another instance's load read Redis again at least this often (besides being
/// woken by the value's arrival).
pub const DEFAULT_LEASE_POLL: Duration = Duration::from_millis(25);

/// Why a tiered cache could not be built.
#[derive(Debug)]
#[non_exhaustive]
pub enum TieredBuildError {
    /// The Redis address did not parse.
    InvalidAddress(String),
    /// The key prefix is empty: tracking it would send this instance every change to every key.
    EmptyPrefix,
    /// A duration that must be positive is zero.
    ZeroDuration(&'static str),
    /// The in-process tier's configuration was refused.
    Cache(BuildError),
    /// The thread of the cache's connection could not be started.
    Runtime(std::io::Error),
}

impl fmt::Display for TieredBuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TieredBuildError::InvalidAddress(e) => write!(f, "invalid Redis address: {e}"),
            TieredBuildError::EmptyPrefix => f.write_str("the key prefix must not be empty"),
            TieredBuildError::ZeroDuration(what) => write!(f, "{what} must be positive"),
            TieredBuildError::Cache(e) => write!(f, "in-process tier: {e}"),
            TieredBuildError::Runtime(e) => {
                write!(f, "could not start the connection's thread: {e}")
            }
        }
    }
}

impl std::error::Error for TieredBuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TieredBuildError::Cache(e) => Some(e),
            TieredBuildError::Runtime(e) => Some(e),
            _ => None,
        }
    }
}

/// Builds a [`TieredCache`] (async) or a [`BlockingTieredCache`]; made by
/// [`TieredCache::builder`].
pub struct TieredBuilder<K, V, C = MsgPack> {
    address: String,
    prefix: Vec<u8>,
    l1: CacheBuilder<K, V>,
    cfg: Config,
    codec: C,
    _values: PhantomData<fn() -> V>,
}

impl<K, V> TieredBuilder<K, V, MsgPack>
where
    K: Hash + Eq,
{
    pub(super) fn new(address: &str, prefix: &str) -> Self {
        TieredBuilder {
            address: address.to_owned(),
            prefix: prefix.as_bytes().to_vec(),
            l1: Cache::builder().max_capacity(10_000),
            cfg: Config {
                redis_ttl: DEFAULT_REDIS_TTL,
                l1_ttl: DEFAULT_L1_TTL,
                degraded_l1_ttl: Duration::ZERO,
                command_timeout: DEFAULT_COMMAND_TIMEOUT,
                connect_timeout: DEFAULT_CONNECT_TIMEOUT,
                heartbeat: DEFAULT_HEARTBEAT,
                lease: DEFAULT_LEASE,
                lease_wait: DEFAULT_LEASE,
                lease_poll: DEFAULT_LEASE_POLL,
            },
            codec: MsgPack,
            _values: PhantomData,
        }
    }
}

impl<K, V, C> TieredBuilder<K, V, C> {
    /// The in-process tier's configuration (capacity, weigher, statistics, name, clock...).
    /// Its lifetimes are overridden: every value gets its own, as described on
    /// [`TieredCache`], and its [`negative_ttl`](CacheBuilder::negative_ttl) is turned off: a
    /// "not found" or an error is not in Redis, so no invalidation would reach a copy of it.
    /// Its eviction listener must not call back into the tiered cache.
    /// Default: `Cache::builder().max_capacity(10_000)`.
    pub fn l1(mut self, l1: CacheBuilder<K, V>) -> Self {
        self.l1 = l1;
        self
    }

    /// The time-to-live of values this cache writes to Redis. Default [`DEFAULT_REDIS_TTL`].
    pub fn redis_ttl(mut self, ttl: Duration) -> Self {
        self.cfg.redis_ttl = ttl;
        self
    }

    /// The longest L1 keeps a value (never longer than the key has left in Redis). Default
    /// [`DEFAULT_L1_TTL`].
    pub fn l1_ttl(mut self, ttl: Duration) -> Self {
        self.cfg.l1_ttl = ttl;
        self
    }

    /// How long L1 keeps a value while invalidations are not sure to arrive: while the bus is
    /// down, and for values loaded without Redis's help (an error, a timeout, a lease wait
    /// given up). Default zero: L1 is bypassed then, and a value is never stale for longer than
    /// it takes to notice a lost bus.
    pub fn degraded_l1_ttl(mut self, ttl: Duration) -> Self {
        self.cfg.degraded_l1_ttl = ttl;
        self
    }

    /// How long a Redis command may take before the read falls through to the loader. Default
    /// [`DEFAULT_COMMAND_TIMEOUT`].
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.cfg.command_timeout = timeout;
        self
    }

    /// How long connecting may take before it is retried. Default [`DEFAULT_CONNECT_TIMEOUT`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.cfg.connect_timeout = timeout;
        self
    }

    /// The heartbeat period: a PING unanswered for one period marks the bus lost (L1 flushed,
    /// reads go to the loader until the connection is back). Default [`DEFAULT_HEARTBEAT`].
    pub fn heartbeat(mut self, period: Duration) -> Self {
        self.cfg.heartbeat = period;
        self
    }

    /// The fleet-wide lease on a missing key, and how long others wait for its holder's value
    /// before loading it themselves (`wait`, at most `lease` is useful). Default
    /// [`DEFAULT_LEASE`] for both.
    pub fn lease(mut self, lease: Duration, wait: Duration) -> Self {
        self.cfg.lease = lease;
        self.cfg.lease_wait = wait;
        self
    }

    /// The codec of values in Redis. Default [`MsgPack`].
    pub fn codec<C2: Codec<V>>(self, codec: C2) -> TieredBuilder<K, V, C2> {
        TieredBuilder {
            address: self.address,
            prefix: self.prefix,
            l1: self.l1,
            cfg: self.cfg,
            codec,
            _values: PhantomData,
        }
    }
}

impl<K, V, C> TieredBuilder<K, V, C>
where
    K: RedisKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    C: Codec<V>,
{
    /// Builds the cache and starts its connection on a thread of its own. Returns at once: until
    /// the first connection is up, reads go to the loader ([`TieredCache::wait_connected`] waits
    /// for it). The cache's futures need a tokio runtime with time enabled.
    ///
    /// # Errors
    ///
    /// [`TieredBuildError`]: an address that does not parse, an empty prefix, a zero
    /// duration, an L1 configuration the cache builder refuses, or a thread that could not
    /// start.
    pub fn build(self) -> Result<TieredCache<K, V, C>, TieredBuildError> {
        TieredCache::start(self.parts()?)
    }

    /// Builds a [`BlockingTieredCache`], for threaded services (no runtime needed).
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build).
    pub fn build_blocking(self) -> Result<BlockingTieredCache<K, V, C>, TieredBuildError> {
        Ok(BlockingTieredCache::new(self.build()?))
    }

    /// Checks the configuration and opens the (not yet connected) client.
    fn parts(self) -> Result<Parts<K, V, C>, TieredBuildError> {
        if self.prefix.is_empty() {
            return Err(TieredBuildError::EmptyPrefix);
        }
        let cfg = self.cfg;
        for (d, what) in [
            (cfg.redis_ttl, "redis_ttl"),
            (cfg.command_timeout, "command_timeout"),
            (cfg.connect_timeout, "connect_timeout"),
            (cfg.heartbeat, "heartbeat"),
            (cfg.lease, "lease"),
        ] {
            if d.is_zero() {
                return Err(TieredBuildError::ZeroDuration(what));
            }
        }
        let info = self
            .address
            .as_str()
            .into_connection_info()
            .map_err(|e| TieredBuildError::InvalidAddress(e.to_string()))?;
        // RESP3: invalidation messages arrive as pushes on the connection itself.
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(settings))
            .map_err(|e| TieredBuildError::InvalidAddress(e.to_string()))?;
        let l1 = self
            .l1
            .negative_ttl(Duration::ZERO)
            .build()
            .map_err(TieredBuildError::Cache)?;
        Ok(Parts {
            client,
            l1,
            prefix: self.prefix,
            cfg,
            codec: self.codec,
        })
    }
}

/// What a built cache is made of.
pub(super) struct Parts<K, V, C> {
    pub(super) client: redis::Client,
    pub(super) l1: Cache<K, V>,
    pub(super) prefix: Vec<u8>,
    pub(super) cfg: Config,
    pub(super) codec: C,
}

impl<K, V, C: fmt::Debug> fmt::Debug for TieredBuilder<K, V, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TieredBuilder")
            .field("address", &self.address)
            .field("prefix", &String::from_utf8_lossy(&self.prefix))
            .field("config", &self.cfg)
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}
