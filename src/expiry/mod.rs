//! Expiration: the [`Expiry`] trait and how lifetimes become deadlines; the timer wheel is in
//! `wheel.rs`. It works on ticks and slab tokens only: it knows nothing of shards, the cache or
//! its front-ends.
//
// An entry has at most one deadline, a tick of the cache's clock. It is computed from the
// configured sources, taking the earliest:
//
// - `time_to_live`: on every write (create or update), `now + ttl`;
// - `time_to_idle`: on every write and every `get`, `now + tti`;
// - an `Expiry`: its hooks on create, update and read; `None` means "no opinion".
// - `insert_with_ttl`: `now + ttl` for that write, instead of the sources above.
//
// Reads can move a deadline later (time-to-idle, `Expiry::expire_after_read`). A time-to-live (or
// an `insert_with_ttl` lifetime) must still bound the entry, so when reads can move deadlines
// each entry also keeps a *cap*: the latest deadline its last write allows. Caps are kept only
// when both exist (from the start with time-to-live plus time-to-idle or an `Expiry`; from the
// first `insert_with_ttl` otherwise, entries written before that getting a cap of the longest
// lifetime). An `Expiry`'s own write lifetime does not cap reads: its read hook decides.
//
// Lifetimes are whole ticks (milliseconds, rounded down), at most `MAX_LIFETIME` (about 12.4
// days; longer ones, `Duration::MAX` included, are shortened to it, so an entry may be refreshed
// early but never served late). A lifetime of zero means "already expired": the entry is not
// stored.
//
// Jitter: `ttl_jitter(f)` shortens each lifetime that comes from `time_to_live` or from an
// `Expiry` on a write by a pseudo-random fraction in `[0, f)` of itself, derived from the key's
// hash and the time, so entries written together spread their expirations over a window.

pub(crate) mod wheel;

use std::sync::Arc;
use std::time::Duration;

use crate::clock::millis;
pub(crate) use wheel::{MAX_LIFETIME, NO_CAP, Wheel, is_due};

/// Decides entries' lifetimes one by one, on create, update and read.
///
/// Each method returns the entry's lifetime from now, or `None` for no opinion: on create, the
/// entry gets no deadline from this `Expiry` (only from `time_to_live` / `time_to_idle`, if
/// set); on update and read, the current deadline is kept unless `time_to_live` or
/// `time_to_idle` move it. When several sources give a deadline, the earliest wins. `remaining`
/// is the time the entry had left (`None` if it had no deadline).
///
/// The methods run while the entry's shard is locked (the read lock for
/// [`expire_after_read`](Self::expire_after_read)): keep them short and do not call back into
/// the cache. If one panics, the operation that called it leaves the cache unchanged and the
/// panic resumes in its caller.
///
/// ```
/// use std::time::Duration;
/// use cachet::{Cache, Expiry};
///
/// /// Sessions live 30 minutes; "guest" sessions only one.
/// struct SessionExpiry;
/// impl Expiry<String, String> for SessionExpiry {
///     fn expire_after_create(&self, key: &String, _: &String) -> Option<Duration> {
///         let minutes = if key.starts_with("guest") { 1 } else { 30 };
///         Some(Duration::from_secs(60 * minutes))
///     }
/// }
///
/// let cache: Cache<String, String> = Cache::builder()
///     .max_capacity(10_000)
///     .expiry(SessionExpiry)
///     .build()
///     .unwrap();
/// cache.insert("guest-7".to_string(), "cart".to_string());
/// ```
pub trait Expiry<K, V>: Send + Sync {
    /// Lifetime of a newly inserted entry.
    fn expire_after_create(&self, key: &K, value: &V) -> Option<Duration> {
        let _ = (key, value);
        None
    }

    /// Lifetime of an entry whose value was just replaced by an insert.
    fn expire_after_update(
        &self,
        key: &K,
        value: &V,
        remaining: Option<Duration>,
    ) -> Option<Duration> {
        let _ = (key, value, remaining);
        None
    }

    /// Lifetime of an entry just read by [`get`](crate::Cache::get) (not by `peek` or
    /// `contains_key`).
    fn expire_after_read(
        &self,
        key: &K,
        value: &V,
        remaining: Option<Duration>,
    ) -> Option<Duration> {
        let _ = (key, value, remaining);
        None
    }
}

/// Lifetime of `d` in ticks, capped.
#[inline]
pub(crate) fn ticks(d: Duration) -> u64 {
    millis(d).min(MAX_LIFETIME)
}

/// The lifetime the cache keeps for `d`: whole milliseconds, capped at `MAX_LIFETIME`.
pub(crate) fn kept_lifetime(d: Duration) -> Duration {
    Duration::from_millis(ticks(d))
}

/// The configured sources of deadlines.
pub(crate) struct ExpireConfig<K, V> {
    pub(crate) ttl: Option<u64>,
    pub(crate) tti: Option<u64>,
    pub(crate) expiry: Option<Arc<dyn Expiry<K, V>>>,
    /// Jitter as a fraction of 2^16.
    jitter: u32,
}

/// A deadline for a write: the entry's deadline, and its cap: the latest that reads may push
/// it to, when a time-to-live or an `insert_with_ttl` lifetime bounds the entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Deadline {
    /// The tick the deadline was decided at (the write's time).
    pub(crate) from: u64,
    pub(crate) when: u64,
    pub(crate) cap: Option<u64>,
}

/// How a write's lifetime is decided.
#[derive(Clone, Copy)]
pub(crate) enum Lifetime {
    /// From the cache's configuration.
    Configured,
    /// `insert_with_ttl`: exactly this many ticks.
    Fixed(u64),
}

impl<K, V> ExpireConfig<K, V> {
    /// Whether a read never moves a deadline: no time-to-idle and no `Expiry` read hook.
    pub(crate) fn ttl_only(&self) -> bool {
        self.tti.is_none() && self.expiry.is_none()
    }

    pub(crate) fn new(
        ttl: Option<Duration>,
        tti: Option<Duration>,
        expiry: Option<Arc<dyn Expiry<K, V>>>,
        jitter: f64,
    ) -> Self {
        ExpireConfig {
            ttl: ttl.map(ticks),
            tti: tti.map(ticks),
            expiry,
            jitter: (jitter.clamp(0.0, 1.0) * 65536.0) as u32,
        }
    }

    /// Whether any source gives deadlines; a cache without one never reads the clock unless
    /// `insert_with_ttl` is used.
    pub(crate) fn is_active(&self) -> bool {
        self.ttl.is_some() || self.tti.is_some() || self.expiry.is_some()
    }

    /// Whether reads may move deadlines.
    #[inline]
    pub(crate) fn reads_extend(&self) -> bool {
        self.tti.is_some() || self.expiry.is_some()
    }

    /// Whether entries need caps from the start: reads move deadlines that a time-to-live
    /// bounds. (An `insert_with_ttl` in a cache whose reads move deadlines adds caps later.)
    pub(crate) fn caps_upfront(&self) -> bool {
        self.reads_extend() && self.ttl.is_some()
    }

    fn jittered(&self, life: u64, hash: u32, now: u64) -> u64 {
        if self.jitter == 0 || life == 0 {
            return life;
        }
        // A 64-bit mix of the key's hash and the time: different for keys written together, and
        // the same for the same key at the same tick (deterministic under a mock clock).
        let mut x =
            (u64::from(hash) << 32 | (now & 0xffff_ffff)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        x ^= x >> 29;
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^= x >> 32;
        let fraction = ((x & 0xffff) * u64::from(self.jitter)) >> 16; // in [0, jitter) of 2^16
        let cut = ((u128::from(life) * u128::from(fraction)) >> 16) as u64;
        life - cut
    }

    /// The deadline of a write at `now`. `current` is the remaining lifetime of the entry
    /// being updated (`None` for a create, `Some(None)` for an update of an entry without a
    /// deadline). Returns `None` when the entry gets no deadline. May call the user's `Expiry`.
    #[inline]
    pub(crate) fn on_write(
        &self,
        key: &K,
        value: &V,
        hash: u32,
        now: u64,
        life: Lifetime,
        current: Option<Option<u64>>,
    ) -> Option<Deadline> {
        let mut when: Option<u64> = None;
        let mut cap: Option<u64> = None;
        let earliest = |d: u64, when: &mut Option<u64>| {
            *when = Some(when.map_or(d, |w| w.min(d)));
        };
        match life {
            Lifetime::Fixed(t) => {
                earliest(now + t, &mut when);
                cap = Some(now + t);
            }
            Lifetime::Configured => {
                if let Some(ttl) = self.ttl {
                    let d = now + self.jittered(ttl, hash, now);
                    earliest(d, &mut when);
                    cap = Some(d);
                }
                if let Some(tti) = self.tti {
                    earliest(now + tti, &mut when);
                }
                if let Some(expiry) = &self.expiry {
                    let chosen = match current {
                        None => expiry.expire_after_create(key, value),
                        Some(remaining) => expiry.expire_after_update(
                            key,
                            value,
                            remaining.map(Duration::from_millis),
                        ),
                    };
                    match chosen {
                        Some(d) => {
                            let d = now + self.jittered(ticks(d), hash, now);
                            earliest(d, &mut when);
                        }
                        None => {
                            // No opinion: keep the current deadline unless another source set one.
                            if when.is_none() {
                                if let Some(Some(r)) = current {
                                    earliest(now + r, &mut when);
                                }
                            }
                        }
                    }
                }
            }
        }
        when.map(|when| Deadline {
            from: now,
            when,
            cap,
        })
    }

    /// The new deadline after a read at `now`, if the read moves it. `deadline` is the current
    /// one and `cap` the latest allowed. May call the user's `Expiry`.
    #[inline]
    pub(crate) fn on_read(
        &self,
        key: &K,
        value: &V,
        now: u64,
        deadline: Option<u64>,
        cap: u64,
    ) -> Option<u64> {
        let mut when = self.tti.map(|tti| now + tti);
        if let Some(expiry) = &self.expiry {
            let remaining = deadline.map(|d| Duration::from_millis(d.saturating_sub(now)));
            if let Some(d) = expiry.expire_after_read(key, value, remaining) {
                let d = now + ticks(d);
                when = Some(when.map_or(d, |w| w.min(d)));
            }
        }
        let when = when?.min(cap);
        (Some(when) != deadline).then_some(when)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(ttl: Option<u64>, tti: Option<u64>, jitter: f64) -> ExpireConfig<u32, u32> {
        ExpireConfig::new(
            ttl.map(Duration::from_millis),
            tti.map(Duration::from_millis),
            None,
            jitter,
        )
    }

    #[test]
    fn earliest_source_wins_and_ttl_caps_idle_extension() {
        let c = cfg(Some(1000), Some(100), 0.0);
        let d = c
            .on_write(&1, &1, 7, 50, Lifetime::Configured, None)
            .unwrap();
        assert_eq!(
            d,
            Deadline {
                from: 50,
                when: 150,
                cap: Some(1050)
            }
        );
        // A read at 140 pushes to 240; a read at 1000 may not pass the cap.
        let cap = d.cap.unwrap();
        assert_eq!(c.on_read(&1, &1, 140, Some(150), cap), Some(240));
        assert_eq!(c.on_read(&1, &1, 1000, Some(1040), cap), Some(1050));
        assert_eq!(c.on_read(&1, &1, 1000, Some(1050), cap), None);
    }

    #[test]
    fn lifetimes_are_capped_not_overflowed() {
        let c = cfg(None, None, 0.0);
        let huge = ExpireConfig::<u32, u32>::new(Some(Duration::MAX), None, None, 0.0);
        let d = huge
            .on_write(&1, &1, 1, u64::from(u32::MAX), Lifetime::Configured, None)
            .unwrap();
        assert_eq!(d.when, u64::from(u32::MAX) + MAX_LIFETIME);
        assert_eq!(c.on_write(&1, &1, 1, 5, Lifetime::Configured, None), None);
        assert_eq!(ticks(Duration::MAX), MAX_LIFETIME);
    }

    #[test]
    fn jitter_shortens_within_the_fraction_and_spreads() {
        let c = cfg(Some(10_000), None, 0.2);
        let mut seen = std::collections::HashSet::new();
        for h in 0..1000u32 {
            let d = c.on_write(
                &1,
                &1,
                h.wrapping_mul(2_654_435_761),
                0,
                Lifetime::Configured,
                None,
            );
            let w = d.unwrap().when;
            assert!((8_000..=10_000).contains(&w), "{w}");
            seen.insert(w);
        }
        assert!(seen.len() > 500, "only {} distinct deadlines", seen.len());
    }
}
