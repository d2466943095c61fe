//! Lookups under the read lock: a hit records the access (and, with time-to-idle or an
//! `Expiry`, moves the deadline) and nothing else; anything that must change the shard is
//! handed back to the caller to do under the write lock.

use equivalent::Equivalent;

use crate::clock::Now;
use crate::expiry::{ExpireConfig, MAX_LIFETIME, NO_CAP, is_due};
use crate::slab::{Entry, Token, deadline_word};

use super::{ShardState, widen};

/// The outcome of a read.
pub(crate) enum Read<'a, V> {
    Hit(&'a V),
    /// A hit whose read moved the deadline earlier (or gave the entry one): the caller must
    /// refile it under the write lock (`refile`).
    Refile(&'a V, u64),
    /// A hit whose refresh this reader claimed (loading caches only): it must start it.
    Refresh(&'a V),
    Miss,
    /// The shard's wheel is so far behind the clock that stored deadlines may have wrapped: the
    /// caller must run maintenance under the write lock and read again.
    Stale,
}

impl<K, V> ShardState<K, V> {
    /// Looks up `key`, records the access and, with time-to-idle or an `Expiry`, moves the
    /// deadline (read lock).
    ///
    /// `refresh` is for reads of a loading cache: whether an entry with this many ticks left
    /// should be refreshed now (`loading/`). Inlined into `Cache::read_timed` (as a call it
    /// returned `Read` through memory: 40 more instructions per hit).
    #[inline(always)]
    pub(crate) fn get<Q>(
        &self,
        hash: u32,
        key: &Q,
        time: &Now<'_>,
        cfg: &ExpireConfig<K, V>,
        refresh: Option<&dyn Fn(u64) -> bool>,
    ) -> Read<'_, V>
    where
        Q: ?Sized + Equivalent<K>,
    {
        let Some((t, e)) = self.lookup(hash, key) else {
            return Read::Miss;
        };
        if let Some(w) = &self.wheel {
            match e.deadline() {
                Some(d) => {
                    let now = time.tick();
                    if w.lagging(now) {
                        return Read::Stale;
                    }
                    if is_due(d, now) {
                        return Read::Miss;
                    }
                    if let Some(due) = refresh {
                        let left = widen(d, now) - now;
                        if !e.refresh_claimed() && due(left) && e.claim_refresh() {
                            self.hit(e);
                            return Read::Refresh(&e.value);
                        }
                    }
                    // Fast path for plain time-to-idle: within one tick the deadline is
                    // already where this read would put it, and nothing else needs loading.
                    let unchanged = cfg.expiry.is_none()
                        && cfg.tti.is_none_or(|tti| deadline_word(now + tti) == d);
                    if !unchanged {
                        let current = widen(d, now);
                        let cap = match w.capped().then(|| w.cap(t)) {
                            Some(c) if c != NO_CAP => widen(c, now),
                            _ => now + MAX_LIFETIME,
                        };
                        if let Some(when) = cfg.on_read(&e.key, &e.value, now, Some(current), cap) {
                            if when < current {
                                // Earlier: the entry must be refiled, under the write lock.
                                self.hit(e);
                                return Read::Refile(&e.value, when.max(now));
                            }
                            e.touch_deadline(when);
                        }
                    }
                }
                None if cfg.expiry.is_some() => {
                    // The read hook may give an entry without a deadline one.
                    let now = time.tick();
                    let cap = now + MAX_LIFETIME;
                    if let Some(when) = cfg.on_read(&e.key, &e.value, now, None, cap) {
                        self.hit(e);
                        return Read::Refile(&e.value, when.max(now));
                    }
                }
                None => {}
            }
        }
        self.hit(e);
        Read::Hit(&e.value)
    }

    /// `get` of a cache whose only expiration is a time-to-live (no time-to-idle, no
    /// `Expiry`, no refresh): a hit moves no deadline, so it only checks one and records the
    /// access. `Miss` if absent or expired; `Stale` (the caller takes the full `get`)
    /// if the wheel is too far behind to read deadlines.
    #[inline(always)]
    pub(crate) fn get_ttl<Q>(&self, hash: u32, key: &Q, time: &Now<'_>) -> Read<'_, V>
    where
        Q: ?Sized + Equivalent<K>,
    {
        let Some((_, e)) = self.lookup(hash, key) else {
            return Read::Miss;
        };
        if let (Some(w), Some(d)) = (&self.wheel, e.deadline()) {
            let now = time.tick();
            if w.lagging(now) {
                return Read::Stale;
            }
            if is_due(d, now) {
                return Read::Miss;
            }
        }
        self.hit(e);
        Read::Hit(&e.value)
    }

    /// `get` of a cache without expiration: a hit only records the access. An entry with a
    /// deadline is not returned (`Cache::read_plain` says why it may meet one).
    #[inline(always)]
    pub(crate) fn get_untimed<Q>(&self, hash: u32, key: &Q) -> Option<&V>
    where
        Q: ?Sized + Equivalent<K>,
    {
        let (_, e) = self.lookup(hash, key)?;
        if e.deadline().is_some() {
            return None;
        }
        self.hit(e);
        Some(&e.value)
    }

    /// Looks up `key` without recording an access or moving its deadline.
    #[inline]
    pub(crate) fn peek<Q>(&self, hash: u32, key: &Q, time: &Now<'_>) -> Read<'_, V>
    where
        Q: ?Sized + Equivalent<K>,
    {
        let Some((_, e)) = self.lookup(hash, key) else {
            return Read::Miss;
        };
        if let Some(w) = &self.wheel {
            if let Some(d) = e.deadline() {
                let now = time.tick();
                if w.lagging(now) {
                    return Read::Stale;
                }
                if is_due(d, now) {
                    return Read::Miss;
                }
            }
        }
        Read::Hit(&e.value)
    }

    /// The entries not expired.
    pub(crate) fn live_entries<'a>(
        &'a self,
        time: &'a Now<'_>,
    ) -> impl Iterator<Item = &'a Entry<K, V>> {
        let now = self.tick_if_timed(time);
        self.slab
            .entries()
            .iter()
            .enumerate()
            .filter(move |&(t, _)| !self.expired_at(t as Token, now))
            .map(|(_, e)| e)
    }
}
