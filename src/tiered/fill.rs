//! The read path after an L1 miss, run once per key at a time in an instance (the L1's
//! coalescing load leads it): Redis, then the fleet lease and the loader.
//
// 1. GET and PTTL of the key, in one MULTI/EXEC round trip, within the command timeout.
//    A hit is kept in L1 for at most the key's remaining time in Redis.
// 2. A miss: take the key's lease (`SET <lease key> <token> NX PX <lease>`). Its holder runs the
//    loader and writes the value back with a script that checks, atomically, that the lease is
//    still its own (an invalidation deletes leases, so a value loaded before one is never
//    written) and that no other client wrote the key meanwhile, and deletes the lease. The others wait for the value: the write sends them an
//    invalidation message, which wakes them, and they poll in between; when the lease is gone
//    (its holder died, or was slower than the lease), one of them takes it.
// 3. Anything that goes wrong (no connection, an error, a timeout, a wait past `lease_wait`):
//    the loader runs here, its value is returned but not written to Redis, and L1 keeps it only
//    for the degraded lifetime, since no invalidation may be coming for a key Redis does not
//    hold.
//
// What L1 may keep, and for how long, is decided here; whether it still may when the fill ends
// is the fence's (fence.rs) and the link's (link.rs) business.

use std::future::Future;
use std::hash::Hash;
use std::sync::LazyLock;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{RedisResult, Script};

use super::Shared;
use super::codec::{Codec, RedisKey};
use super::stats::bump;

/// How long L1 may keep a filled value.
#[derive(Clone, Copy, Debug)]
pub(super) enum Keep {
    /// For at most this long (the key's remaining time in Redis), bounded by the L1 lifetime.
    Within(Duration),
    /// Only for the degraded lifetime: no invalidation of the key is sure to reach this
    /// instance.
    Degraded,
}

/// Writes a loaded value if the lease is still the writer's and no one else has written the key
/// meanwhile (a value written by another client is newer than this load), then releases the
/// lease. KEYS: value, lease. ARGV: token, value, time-to-live in ms. Returns 1 if written.
static WRITE_BACK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end \
         redis.call('DEL', KEYS[2]) \
         if redis.call('SET', KEYS[1], ARGV[2], 'NX', 'PX', ARGV[3]) then return 1 end \
         return 0",
    )
});

/// Deletes a lease if it is still the caller's. KEYS: lease. ARGV: token.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end \
         return 0",
    )
});

/// What a read of Redis found.
enum Found<V> {
    Hit(V, Keep),
    Miss,
    /// A value that does not decode, with the key's remaining time: loaded instead, never
    /// overwritten (another service may own that format).
    Undecodable(Keep),
    /// An error or a timeout.
    Failed,
}

impl<K, V, C> Shared<K, V, C>
where
    K: RedisKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    C: Codec<V>,
{
    /// Finds `key`'s value (Redis, the lease holder, or `load`), stores it in L1 if it may, and
    /// returns it. Runs as the leader of L1's coalesced load of `key`.
    pub(super) async fn fill<F, E>(&self, key: &K, load: F) -> Result<V, E>
    where
        F: Future<Output = Result<V, E>>,
    {
        // Before anything is read: an invalidation from here on keeps this fill out of L1.
        let ticket = self.fences.ticket(key);
        let (value, keep) = self.fetch(key, load).await?;
        let life = self.lifetime(keep);
        self.fences.store_if_current(ticket, |current| {
            // Always an insert, even one that keeps nothing (a zero lifetime): it supersedes
            // the coalesced load, which would otherwise store the value with L1's own lifetime.
            let life = if current { life } else { Duration::ZERO };
            self.l1.insert_with_ttl(key.clone(), value.clone(), life);
        });
        Ok(value)
    }

    /// The lifetime L1 gives a value that may be kept as `keep` says, if the bus is up now.
    pub(super) fn lifetime(&self, keep: Keep) -> Duration {
        match keep {
            Keep::Within(d) if self.link.is_up() => d.min(self.cfg.l1_ttl),
            _ => self.cfg.degraded_l1_ttl,
        }
    }

    async fn fetch<F, E>(&self, key: &K, load: F) -> Result<(V, Keep), E>
    where
        F: Future<Output = Result<V, E>>,
    {
        let Some(mut conn) = self.link.current() else {
            return self.load_degraded(load).await;
        };
        let name = self.redis_key(key);
        match self.read(&mut conn, &name).await {
            Found::Hit(v, keep) => Ok((v, keep)),
            Found::Undecodable(keep) => Ok((self.run(load).await?, keep)),
            Found::Failed => self.load_degraded(load).await,
            Found::Miss => self.lead_or_wait(conn, &name, load).await,
        }
    }

    /// Runs the loader for a value that is not written to Redis.
    async fn load_degraded<F, E>(&self, load: F) -> Result<(V, Keep), E>
    where
        F: Future<Output = Result<V, E>>,
    {
        Ok((self.run(load).await?, Keep::Degraded))
    }

    async fn run<F, E>(&self, load: F) -> Result<V, E>
    where
        F: Future<Output = Result<V, E>>,
    {
        bump(&self.counters.loads);
        load.await
    }

    /// Step 2: a miss in Redis. Takes the lease and loads, or waits for the holder's value.
    async fn lead_or_wait<F, E>(
        &self,
        mut conn: MultiplexedConnection,
        name: &[u8],
        load: F,
    ) -> Result<(V, Keep), E>
    where
        F: Future<Output = Result<V, E>>,
    {
        let lease = lease_key(name);
        let token = self.token();
        let give_up = Instant::now() + self.cfg.lease_wait;
        let mut waiter = None;
        loop {
            let mut take = redis::cmd("SET");
            take.arg(&lease[..])
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(millis(self.cfg.lease));
            match self
                .command(take.query_async::<Option<()>>(&mut conn))
                .await
            {
                Some(Some(())) => {
                    return self.load_and_write(conn, name, &lease, &token, load).await;
                }
                Some(None) => {}
                None => return self.load_degraded(load).await,
            }
            // Another instance holds the lease: wait for its value.
            let waiter = waiter.get_or_insert_with(|| {
                bump(&self.counters.lease_waits);
                self.waiters.register(name)
            });
            let left = give_up.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bump(&self.counters.lease_timeouts);
                return self.load_degraded(load).await;
            }
            let notified = waiter.notify.notified();
            tokio::pin!(notified);
            // Registered before the read below, so a write landing after it still wakes us.
            notified.as_mut().enable();
            match self.read(&mut conn, name).await {
                Found::Hit(v, keep) => return Ok((v, keep)),
                Found::Miss => {}
                Found::Undecodable(keep) => return Ok((self.run(load).await?, keep)),
                Found::Failed => return self.load_degraded(load).await,
            }
            if !self.link.is_up() {
                return self.load_degraded(load).await;
            }
            let nap = self.cfg.lease_poll.min(left);
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep(nap) => {}
            }
            // Read again: a hit ends the wait, a miss tries the lease again.
            match self.read(&mut conn, name).await {
                Found::Hit(v, keep) => return Ok((v, keep)),
                Found::Miss => {}
                Found::Undecodable(keep) => return Ok((self.run(load).await?, keep)),
                Found::Failed => return self.load_degraded(load).await,
            }
        }
    }

    /// The lease holder: loads, writes the value back if the lease is still its own.
    async fn load_and_write<F, E>(
        &self,
        mut conn: MultiplexedConnection,
        name: &[u8],
        lease: &[u8],
        token: &str,
        load: F,
    ) -> Result<(V, Keep), E>
    where
        F: Future<Output = Result<V, E>>,
    {
        let value = match self.run(load).await {
            Ok(v) => v,
            Err(e) => {
                self.release(&mut conn, lease, token).await;
                return Err(e);
            }
        };
        let Ok(bytes) = self.codec.encode(&value) else {
            bump(&self.counters.l2_errors);
            self.release(&mut conn, lease, token).await;
            return Ok((value, Keep::Degraded));
        };
        let ttl = self.cfg.redis_ttl;
        let mut write = WRITE_BACK.prepare_invoke();
        write
            .key(name)
            .key(lease)
            .arg(token)
            .arg(bytes)
            .arg(millis(ttl));
        let keep = match self.command(write.invoke_async::<i64>(&mut conn)).await {
            Some(1) => Keep::Within(ttl),
            // The lease was deleted (an invalidation) or expired, or another client wrote the
            // key: this value may be older than what Redis holds.
            _ => Keep::Degraded,
        };
        Ok((value, keep))
    }

    /// Gives the lease back after a failed load, so that a waiter takes it without waiting for
    /// it to expire.
    async fn release(&self, conn: &mut MultiplexedConnection, lease: &[u8], token: &str) {
        let mut call = RELEASE.prepare_invoke();
        call.key(lease).arg(token);
        let _ = self.command(call.invoke_async::<i64>(conn)).await;
    }

    /// GET and PTTL of `name` in one round trip.
    async fn read(&self, conn: &mut MultiplexedConnection, name: &[u8]) -> Found<V> {
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("GET").arg(name).cmd("PTTL").arg(name);
        let found = self.command(pipe.query_async::<(Option<Vec<u8>>, i64)>(conn));
        match found.await {
            None => Found::Failed,
            Some((None, _)) => {
                bump(&self.counters.l2_misses);
                Found::Miss
            }
            Some((Some(bytes), pttl)) => {
                // -1: no expiry in Redis, L1's own lifetime bounds the value.
                let keep = Keep::Within(match u64::try_from(pttl) {
                    Ok(ms) => Duration::from_millis(ms),
                    Err(_) => Duration::MAX,
                });
                match self.codec.decode(bytes) {
                    Ok(v) => {
                        bump(&self.counters.l2_hits);
                        Found::Hit(v, keep)
                    }
                    Err(_) => {
                        bump(&self.counters.l2_errors);
                        bump(&self.counters.l2_misses);
                        Found::Undecodable(keep)
                    }
                }
            }
        }
    }

    /// A Redis command within the command timeout; `None` (counted) if it failed or timed out.
    pub(super) async fn command<T>(&self, cmd: impl Future<Output = RedisResult<T>>) -> Option<T> {
        match timed(self.cfg.command_timeout, cmd).await {
            Ok(v) => Some(v),
            Err(Failure::Timeout) => {
                bump(&self.counters.l2_timeouts);
                None
            }
            Err(Failure::Error) => {
                bump(&self.counters.l2_errors);
                None
            }
        }
    }

    /// A token no other lease holder in the fleet uses: this instance's random id and a count.
    fn token(&self) -> String {
        let n = self.next_token.fetch_add(1, Ordering::Relaxed);
        format!("{:016x}-{n}", self.instance)
    }
}

/// Why a command gave no answer.
#[derive(Debug)]
pub(super) enum Failure {
    Timeout,
    Error,
}

/// `cmd` within `limit`.
pub(super) async fn timed<T>(
    limit: Duration,
    cmd: impl Future<Output = RedisResult<T>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(limit, cmd).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(_)) => Err(Failure::Error),
        Err(_) => Err(Failure::Timeout),
    }
}

/// The lease key of the Redis key `name`, outside the cache's prefix (taking or releasing a
/// lease sends no invalidation message).
pub(super) fn lease_key(name: &[u8]) -> Vec<u8> {
    let mut key = b"cachet-lease:".to_vec();
    key.extend_from_slice(name);
    key
}

/// A duration in whole milliseconds, at least one (Redis refuses `PX 0`).
pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}
