//! The read path after an L1 miss, run once per key at a time in an instance (the L1's
//! coalescing load leads it): Redis, then the fleet lease and the loader.
//
// 1. One round trip (a script, within the command timeout): the key's value and PTTL, or, if it
//    is missing, its lease (`SET <lease key> <token> NX PX <lease>`). A hit is kept in L1 for at
//    most the key's remaining time in Redis.
// 2. A miss with the lease taken: this instance runs the loader and writes the value back with
//    a script that checks, atomically, that the lease is still its own (an invalidation
//    deletes leases, so a value loaded before one is never written) and that no other client
//    wrote the key meanwhile, and deletes the lease. The server reports a script's writes to
//    the connection that ran it too (NOLOOP does not cover scripts), so the loading instance's
//    L1 drops the value again and its next miss reads it from Redis. A loader that finds
//    nothing or fails gives the lease back at once and writes nothing; its "not found" or
//    error goes to the callers and no further (the L1 keeps no negative entries).
//    A miss with the lease held elsewhere waits for the value: the holder's write sends an
//    invalidation message, which wakes the waiter, and it reads again every `lease_poll` in
//    between; when the lease is gone (its holder died, or was slower than the lease), the next
//    read takes it.
// 3. Anything that goes wrong (no connection, an error, a timeout, a wait past `lease_wait`):
//    the loader runs here, its value is returned but not written to Redis, and L1 keeps it only
//    for the degraded lifetime, since no invalidation may be coming for a key Redis does not
//    hold.
//
// What L1 may keep, and for how long, is decided here; whether it still may when the fill ends
// is the fence's (fence.rs) and the link's (link.rs) business.

use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{RedisResult, Script};

use super::Shared;
use super::codec::{Codec, RedisKey};
use super::link::Waiter;
use super::stats::bump;
use crate::Loaded;

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

/// Reads a value and its remaining time; if there is none, takes the lease if it is free.
/// KEYS: value, lease. ARGV: token, lease time in ms. Returns {1, value, pttl} for a hit,
/// {2, nil, 0} if the lease was taken, {3, nil, 0} if another holds it. Reading and taking the lease in one
/// step is what keeps a holder that has just written the value (and released its lease) from
/// being followed by a second load.
static READ_OR_LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local v = redis.call('GET', KEYS[1]) \
         if v then return {1, v, redis.call('PTTL', KEYS[1])} end \
         if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2, false, 0} end \
         return {3, false, 0}",
    )
});
const HIT: i64 = 1;
const LEASED: i64 = 2;

/// What a read of Redis found.
enum Found<V> {
    Hit(V, Keep),
    /// No value, and this read took the lease: load and write back.
    Leased,
    /// No value, and another instance holds the lease.
    Held,
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
    /// returns it in the loader's shape. Runs as the leader of L1's coalesced load of `key`.
    /// A "not found" or an error from `load` is neither written to Redis nor stored.
    pub(super) async fn fill<L, F>(&self, key: &K, load: F) -> L
    where
        L: Loaded<V>,
        F: Future<Output = L>,
    {
        // Before anything is read: an invalidation from here on keeps this fill out of L1.
        let ticket = self.fences.ticket(key);
        let (loaded, keep) = self.fetch(key, load).await;
        if let Some(value) = loaded.value() {
            let life = self.lifetime(keep);
            self.fences.store_if_current(ticket, |current| {
                // Always an insert, even one that keeps nothing (a zero lifetime): it
                // supersedes the coalesced load, which would otherwise store the value with
                // L1's own lifetime.
                let life = if current { life } else { Duration::ZERO };
                self.l1.insert_with_ttl(key.clone(), value.clone(), life);
            });
        }
        loaded
    }

    /// The lifetime L1 gives a value that may be kept as `keep` says, if the bus is up now.
    pub(super) fn lifetime(&self, keep: Keep) -> Duration {
        match keep {
            Keep::Within(d) if self.link.is_up() => d.min(self.cfg.l1_ttl),
            _ => self.cfg.degraded_l1_ttl,
        }
    }

    async fn fetch<L, F>(&self, key: &K, load: F) -> (L, Keep)
    where
        L: Loaded<V>,
        F: Future<Output = L>,
    {
        let Some(mut conn) = self.link.current() else {
            return self.load_degraded(load).await;
        };
        let name = self.redis_key(key);
        let lease = lease_key(&name);
        let token = self.token();
        let give_up = Instant::now() + self.cfg.lease_wait;
        let mut waiter: Option<Waiter<'_>> = None;
        loop {
            // Woken by a change to the key from here on (once waiting).
            let notify = waiter.as_ref().map(|w| Arc::clone(&w.notify));
            let notified = notify.as_ref().map(|n| n.notified());
            tokio::pin!(notified);
            if let Some(n) = notified.as_mut().as_pin_mut() {
                n.enable();
            }
            match self.read_or_lease(&mut conn, &name, &lease, &token).await {
                Found::Hit(v, keep) => return (L::found(v), keep),
                Found::Undecodable(keep) => return (self.run(load).await, keep),
                Found::Failed => return self.load_degraded(load).await,
                Found::Leased => {
                    return self.load_and_write(conn, &name, &lease, &token, load).await;
                }
                Found::Held => {}
            }
            // Another instance is loading the key: wait for its value.
            if waiter.is_none() {
                bump(&self.counters.lease_waits);
                waiter = Some(self.waiters.register(&name));
                // Read again, now that a write landing from here on wakes this wait.
                continue;
            }
            let left = give_up.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.link.is_up() {
                bump(&self.counters.lease_timeouts);
                return self.load_degraded(load).await;
            }
            let nap = tokio::time::sleep(self.cfg.lease_poll.min(left));
            match notified.as_pin_mut() {
                Some(notified) => tokio::select! {
                    () = notified => {}
                    () = nap => {}
                },
                None => nap.await,
            }
        }
    }

    /// Runs the loader for a value that is not written to Redis.
    async fn load_degraded<L, F>(&self, load: F) -> (L, Keep)
    where
        F: Future<Output = L>,
    {
        (self.run(load).await, Keep::Degraded)
    }

    async fn run<L, F>(&self, load: F) -> L
    where
        F: Future<Output = L>,
    {
        bump(&self.counters.loads);
        load.await
    }

    /// The lease holder: loads, writes the value back if the lease is still its own.
    /// A "not found" or an error gives the lease back, and writes nothing.
    async fn load_and_write<L, F>(
        &self,
        mut conn: MultiplexedConnection,
        name: &[u8],
        lease: &[u8],
        token: &str,
        load: F,
    ) -> (L, Keep)
    where
        L: Loaded<V>,
        F: Future<Output = L>,
    {
        let loaded = self.run(load).await;
        let Some(value) = loaded.value() else {
            self.release(&mut conn, lease, token).await;
            return (loaded, Keep::Degraded);
        };
        let Ok(bytes) = self.codec.encode(value) else {
            bump(&self.counters.l2_errors);
            self.release(&mut conn, lease, token).await;
            return (loaded, Keep::Degraded);
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
        (loaded, keep)
    }

    /// Gives the lease back after a failed load, so that a waiter takes it without waiting for
    /// it to expire.
    async fn release(&self, conn: &mut MultiplexedConnection, lease: &[u8], token: &str) {
        let mut call = RELEASE.prepare_invoke();
        call.key(lease).arg(token);
        let _ = self.command(call.invoke_async::<i64>(conn)).await;
    }

    /// One round trip: the value of `name` and its remaining time if Redis has it, else the
    /// lease, if no one holds it.
    async fn read_or_lease(
        &self,
        conn: &mut MultiplexedConnection,
        name: &[u8],
        lease: &[u8],
        token: &str,
    ) -> Found<V> {
        let mut call = READ_OR_LEASE.prepare_invoke();
        call.key(name)
            .key(lease)
            .arg(token)
            .arg(millis(self.cfg.lease));
        let found = self.command(call.invoke_async::<(i64, Option<Vec<u8>>, i64)>(conn));
        match found.await {
            None => Found::Failed,
            Some((LEASED, _, _)) => {
                bump(&self.counters.l2_misses);
                Found::Leased
            }
            Some((HIT, Some(bytes), pttl)) => {
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
            Some(_) => Found::Held,
        }
    }

    /// A Redis command within the command timeout; `None` if it failed or timed out.
    pub(super) async fn command<T>(&self, cmd: impl Future<Output = RedisResult<T>>) -> Option<T> {
        self.counted(cmd).await.ok()
    }

    /// A Redis command within the command timeout, counted as a round trip, and as an error or
    /// a timeout if it is one.
    pub(super) async fn counted<T>(
        &self,
        cmd: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, Failure> {
        bump(&self.counters.round_trips);
        let outcome = timed(self.cfg.command_timeout, cmd).await;
        match outcome {
            Err(Failure::Timeout) => bump(&self.counters.l2_timeouts),
            Err(Failure::Error) => bump(&self.counters.l2_errors),
            Ok(_) => {}
        }
        outcome
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
