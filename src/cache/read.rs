//! Lookups: `get` and its variants, `peek`, `contains_key`. How a cache reads is chosen once,
//! at build time (and at the first `insert_with_ttl`), as a `ReadKind`, so that a cache without
//! expiration pays nothing for deadlines on a hit.

use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU8, Ordering};

use equivalent::Equivalent;

use crate::clock::Now;
use crate::shard::Read;

use super::maintain::Maintain;
use super::{Cache, Hashed, Shard};

/// How a cache's `get` reads: decided at build time, except that a cache built without
/// expiration goes from `Plain` (or `PlainCounted`) to `Ttl` at its first
/// [`insert_with_ttl`](Cache::insert_with_ttl).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum ReadKind {
    /// Nothing expires (yet), no statistics: `read_plain`, which takes an entry with a
    /// deadline for a miss.
    Plain = 0,
    /// Nothing moves a deadline on a read (no time-to-idle, no `Expiry`): `get_ttl`.
    Ttl = 1,
    /// Time-to-idle or an `Expiry`: `read_timed`.
    Full = 2,
    /// `Plain` with statistics (out of line, so that `Plain` does not test for counters).
    PlainCounted = 3,
}

/// The cache's `ReadKind`, in an atomic: it changes once at most, and a read that sees the old
/// kind is still correct (see `read_plain`).
pub(super) struct ReadMode(AtomicU8);

impl ReadMode {
    pub(super) fn new(timed: bool, ttl_only: bool, record_stats: bool) -> Self {
        let kind = match (timed, ttl_only) {
            (false, _) if record_stats => ReadKind::PlainCounted,
            (false, _) => ReadKind::Plain,
            (true, true) => ReadKind::Ttl,
            (true, false) => ReadKind::Full,
        };
        ReadMode(AtomicU8::new(kind as u8))
    }

    #[inline(always)]
    pub(super) fn get(&self) -> ReadKind {
        match self.0.load(Ordering::Relaxed) {
            0 => ReadKind::Plain,
            1 => ReadKind::Ttl,
            2 => ReadKind::Full,
            _ => ReadKind::PlainCounted,
        }
    }

    #[inline]
    pub(super) fn set(&self, kind: ReadKind) {
        self.0.store(kind as u8, Ordering::Relaxed);
    }
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    /// Returns a clone of the value for `key`, and records the access for the eviction policy.
    ///
    /// An entry past its deadline is never returned. With
    /// [`time_to_idle`](crate::CacheBuilder::time_to_idle) (or an [`Expiry`](crate::Expiry) with a
    /// read hook) a hit also moves the entry's deadline.
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        Q: ?Sized + Hash + Equivalent<K>,
        V: Clone,
    {
        // An expiring cache branches off before hashing, so this function saves no
        // registers on its way out (the branch is a jump).
        match self.inner.read.get() {
            ReadKind::Plain => {
                let at = self.hash(key);
                self.read_plain::<_, false, false>(at, key)
            }
            ReadKind::Ttl => self.get_ttl(key),
            ReadKind::Full => self.get_timed(key),
            _ => self.get_counted(key),
        }
    }

    /// [`get`](Self::get) of a cache without expiration that keeps statistics.
    #[inline(never)]
    pub(super) fn get_counted<Q>(&self, key: &Q) -> Option<V>
    where
        Q: ?Sized + Hash + Equivalent<K>,
        V: Clone,
    {
        let at = self.hash(key);
        self.read_plain::<_, true, true>(at, key)
    }

    /// A loader's first look: [`get`](Self::get) with the key already hashed to `at`, counting
    /// a hit but not a miss (`begin_load` counts how the call goes on).
    #[inline]
    pub(crate) fn get_at<Q>(&self, at: Hashed, key: &Q) -> Option<V>
    where
        Q: ?Sized + Equivalent<K>,
        V: Clone,
    {
        match self.inner.read.get() {
            ReadKind::Plain => self.read_plain::<_, false, false>(at, key),
            ReadKind::PlainCounted => self.read_plain::<_, true, false>(at, key),
            _ => self.get_timed_at(at, key),
        }
    }

    /// A read of a loading cache: also says whether this reader claimed the entry's refresh
    /// (`refresh` decides from the ticks the entry has left), which it must then start. Like
    /// `get_at`, it counts a hit but not a miss.
    #[inline]
    pub(crate) fn get_refreshing<Q>(
        &self,
        at: Hashed,
        key: &Q,
        refresh: &dyn Fn(u64) -> bool,
    ) -> Option<(V, bool)>
    where
        Q: ?Sized + Equivalent<K>,
        V: Clone,
    {
        match self.inner.read.get() {
            ReadKind::Plain => self
                .read_plain::<_, false, false>(at, key)
                .map(|v| (v, false)),
            ReadKind::PlainCounted => self
                .read_plain::<_, true, false>(at, key)
                .map(|v| (v, false)),
            _ => self.read_timed(at, key, Some(refresh), false),
        }
    }

    /// Counts a hit on `shard` in its statistics, if kept.
    #[inline]
    pub(super) fn record_hit(&self, shard: &Shard<K, V>) {
        if let Some(stats) = &shard.stats {
            stats.hit();
        }
    }

    /// A read of a cache without expiration, inline and with nothing kept alive across the
    /// probe but the shard pointer (its lock and counters), so that a hit costs about as many
    /// instructions as quick_cache's. An expiring cache reads through `read_timed` instead,
    /// out of line, so that its deadline and refresh handling does not widen this function's
    /// register use (with both in one function, a plain hit paid for six saved registers and
    /// as many spills: 125 instructions instead of 110).
    ///
    /// An entry with a deadline reads as a miss: the caller read the cache's read kind before
    /// the cache's first `insert_with_ttl` (which moves it to `Ttl`) was visible, so this read
    /// may be ordered before that insert, and before every later one whose entry it finds.
    ///
    /// `COUNTED`: whether the cache keeps statistics; `MISSES`: whether a miss is counted here
    /// (not for a loader, whose call is counted by how it goes on).
    #[inline(always)]
    pub(super) fn read_plain<Q, const COUNTED: bool, const MISSES: bool>(
        &self,
        at: Hashed,
        key: &Q,
    ) -> Option<V>
    where
        Q: ?Sized + Equivalent<K>,
        V: Clone,
    {
        let shard = &self.inner.shards[at.shard];
        let state = shard.state.read();
        let v = state.get_untimed(at.hash, key).cloned();
        drop(state);
        if COUNTED {
            if let Some(s) = &shard.stats {
                if v.is_some() {
                    s.hit();
                } else if MISSES {
                    s.miss();
                }
            }
        }
        v
    }

    /// [`get`](Self::get) of an expiring cache, out of line (see `read_plain`).
    #[inline(never)]
    pub(super) fn get_timed<Q>(&self, key: &Q) -> Option<V>
    where
        Q: ?Sized + Hash + Equivalent<K>,
        V: Clone,
    {
        let at = self.hash(key);
        self.read_timed(at, key, None, true).map(|(v, _)| v)
    }

    /// [`get`](Self::get) of a cache whose only expiration is a time-to-live: like
    /// `read_plain`, with one deadline check; anything unusual (a wheel far behind) takes the
    /// full `read_timed`. Out of line, like `get_timed`.
    #[inline(never)]
    pub(super) fn get_ttl<Q>(&self, key: &Q) -> Option<V>
    where
        Q: ?Sized + Hash + Equivalent<K>,
        V: Clone,
    {
        let at = self.hash(key);
        let shard = &self.inner.shards[at.shard];
        // The time is read first, so that past the probe only `shard`, `key` and `now` are
        // live (the uncommon ends find the shard's number in it, or hash again): an instant
        // earlier than under the lock, which no caller can tell apart.
        let now = self.inner.clock.now_ticks();
        let state = shard.state.read();
        match state.get_ttl(at.hash, key, &Now::at(&self.inner.clock, now)) {
            Read::Hit(v) => {
                let v = v.clone();
                drop(state);
                self.record_hit(shard);
                Some(v)
            }
            Read::Miss => {
                drop(state);
                self.timed_miss(shard, &Now::at(&self.inner.clock, now), true);
                None
            }
            _ => {
                drop(state);
                self.get_timed(key)
            }
        }
    }

    /// A miss of an expiring cache (no lock held): counted (if `count`), and the shard's
    /// expired entries reclaimed if some are due at `now` (checked inline: most misses find
    /// none).
    #[inline(always)]
    pub(super) fn timed_miss(&self, shard: &Shard<K, V>, time: &Now<'_>, count: bool) {
        if let (true, Some(stats)) = (count, &shard.stats) {
            stats.miss();
        }
        if let Some(due) = shard.pending_due() {
            if due <= time.tick() {
                self.maintain(shard.index, Maintain::Batch(time));
            }
        }
    }

    /// [`get_at`](Self::get_at) of an expiring cache, out of line (see `read_plain`).
    #[inline(never)]
    pub(super) fn get_timed_at<Q>(&self, at: Hashed, key: &Q) -> Option<V>
    where
        Q: ?Sized + Equivalent<K>,
        V: Clone,
    {
        self.read_timed(at, key, None, false).map(|(v, _)| v)
    }

    /// A read of an expiring cache: deadlines, time-to-idle and refresh. `miss`: whether a
    /// miss is counted.
    #[inline(always)]
    pub(super) fn read_timed<Q>(
        &self,
        at: Hashed,
        key: &Q,
        refresh: Option<&dyn Fn(u64) -> bool>,
        miss: bool,
    ) -> Option<(V, bool)>
    where
        Q: ?Sized + Equivalent<K>,
        V: Clone,
    {
        let shard = &self.inner.shards[at.shard];
        let state = shard.state.read();
        let inner = &self.inner;
        // A hit: its value, whether this reader claimed its refresh, and an earlier deadline
        // to file under the write lock.
        // The time is read inside, only for an entry with a deadline (a miss reads it again if
        // it must): nothing but a clock pointer stays live across the probe.
        let time = &Now::new(&inner.clock);
        let (v, claimed, refile) = match state.get(at.hash, key, time, &inner.expire, refresh) {
            Read::Hit(v) => (v.clone(), false, None),
            Read::Refresh(v) => (v.clone(), true, None),
            Read::Refile(v, when) => (v.clone(), false, Some(when)),
            Read::Miss => {
                drop(state);
                self.timed_miss(shard, &self.now(), miss);
                return None;
            }
            Read::Stale => {
                drop(state);
                return self.read_stale(at, key, refresh, miss);
            }
        };
        drop(state);
        self.record_hit(shard);
        if let Some(when) = refile {
            self.refile(at, key, when);
        }
        Some((v, claimed))
    }

    /// `read_timed` after the shard's wheel was found too far behind to read deadlines (a shard
    /// idle for days): catch up, then read again. Out of line, rather than a retry loop in
    /// `read_timed`, so the hit path keeps nothing alive across iterations.
    #[cold]
    #[inline(never)]
    pub(super) fn read_stale<Q>(
        &self,
        at: Hashed,
        key: &Q,
        refresh: Option<&dyn Fn(u64) -> bool>,
        miss: bool,
    ) -> Option<(V, bool)>
    where
        Q: ?Sized + Equivalent<K>,
        V: Clone,
    {
        self.catch_up(at.shard);
        self.read_timed(at, key, refresh, miss)
    }

    /// Returns a clone of the value for `key` without counting it as an access: the entry is no
    /// more likely to stay than before, and its time-to-idle deadline does not move.
    #[inline]
    pub fn peek<Q>(&self, key: &Q) -> Option<V>
    where
        Q: ?Sized + Hash + Equivalent<K>,
        V: Clone,
    {
        let at = self.hash(key);
        loop {
            let state = self.inner.shards[at.shard].state.read();
            return match state.peek(at.hash, key, &self.now()) {
                Read::Hit(v) | Read::Refile(v, _) | Read::Refresh(v) => Some(v.clone()),
                Read::Miss => None,
                Read::Stale => {
                    drop(state);
                    self.catch_up(at.shard);
                    continue;
                }
            };
        }
    }

    /// Whether `key` is present (and not expired). Does not count as an access.
    #[inline]
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        let at = self.hash(key);
        let state = self.inner.shards[at.shard].state.read();
        match state.peek(at.hash, key, &self.now()) {
            Read::Hit(_) | Read::Refile(..) | Read::Refresh(_) => true,
            Read::Miss => false,
            Read::Stale => {
                drop(state);
                self.catch_up(at.shard);
                self.contains_key(key)
            }
        }
    }

    /// A read moved the deadline of `key` earlier (or gave it one): refile it (write lock).
    #[cold]
    pub(super) fn refile<Q>(&self, at: Hashed, key: &Q, when: u64)
    where
        Q: ?Sized + Equivalent<K>,
    {
        let shard = &self.inner.shards[at.shard];
        let mut state = shard.state.write();
        state.refile(at.hash, key, when, &self.now());
        shard.after_write(&mut state);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A read that loaded the read kind before the cache's first `insert_with_ttl` was visible
    /// takes the plain path on a shard that has a wheel by then: entries with a deadline must
    /// read as misses there (never as hits that skip the deadline), the others as usual.
    #[test]
    pub(super) fn a_plain_read_of_a_shard_given_a_wheel_misses_entries_with_deadlines() {
        let cache: Cache<u32, u32> = Cache::builder().max_capacity(100).build().unwrap();
        assert_eq!(cache.inner.read.get(), ReadKind::Plain);
        cache.insert(1, 10);
        cache.insert_with_ttl(2, 20, Duration::from_secs(3600));
        assert_eq!(cache.inner.read.get(), ReadKind::Ttl);
        assert_eq!((cache.get(&1), cache.get(&2)), (Some(10), Some(20)));
        // Replay the stale read kind.
        cache.inner.read.set(ReadKind::Plain);
        assert_eq!((cache.get(&1), cache.get(&2)), (Some(10), None));
        let at = cache.hash(&2);
        assert_eq!(cache.get_at(at, &2), None);
        assert!(cache.contains_key(&2)); // still stored; peek reads deadlines itself
    }

    /// A cache with statistics reads through its own plain path, and still moves to the
    /// time-to-live one at its first `insert_with_ttl`; both count hits and misses.
    #[test]
    pub(super) fn read_kinds_follow_statistics_and_the_first_deadline() {
        let cache: Cache<u32, u32> = Cache::builder()
            .max_capacity(100)
            .record_stats()
            .build()
            .unwrap();
        assert_eq!(cache.inner.read.get(), ReadKind::PlainCounted);
        cache.insert(1, 10);
        assert_eq!((cache.get(&1), cache.get(&9)), (Some(10), None));
        let at = cache.hash(&1);
        assert_eq!(cache.get_at(at, &1), Some(10));
        cache.insert_with_ttl(2, 20, Duration::from_secs(3600));
        assert_eq!(cache.inner.read.get(), ReadKind::Ttl);
        assert_eq!((cache.get(&2), cache.get(&9)), (Some(20), None));
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses), (3, 2));
    }

    /// Every read path counts in the shard the reads it records in an entry, for the policy's
    /// shift detector (a read of an entry whose access count is at its maximum writes nothing),
    /// on the cache line of the shard's lock word, which readers write anyway; the rest of the
    /// shard's state starts on the next line.
    #[test]
    pub(super) fn recorded_reads_are_counted_on_the_line_of_the_shard_lock() {
        use std::sync::atomic::Ordering;
        let cache: Cache<u32, u32> = Cache::builder()
            .max_capacity(100)
            .shards(1)
            .build()
            .unwrap();
        let hits = || {
            cache.inner.shards[0]
                .state
                .read()
                .hits()
                .load(Ordering::Relaxed)
        };
        cache.insert(1, 10);
        assert_eq!(
            (cache.get(&1), cache.get(&1), cache.get(&2)),
            (Some(10), Some(10), None)
        );
        assert_eq!(hits(), 2);
        for _ in 0..20 {
            assert_eq!(cache.get(&1), Some(10));
        }
        assert_eq!(hits(), 15, "an entry records at most 15 reads");
        cache.insert_with_ttl(2, 20, Duration::from_secs(3600));
        assert_eq!((cache.get(&2), cache.get(&3)), (Some(20), None));
        assert_eq!(hits(), 16);
        assert_eq!(cache.get_or_load(&2, || 0), 20);
        assert_eq!(hits(), 17);
        let shard = &cache.inner.shards[0];
        let lock = &*shard.state as *const crate::sync::RwLock<_> as usize;
        let state = shard.state.read();
        let counter = state.hits() as *const _ as usize;
        assert_eq!(lock % 64, 0);
        assert!(
            counter > lock && counter + 4 <= lock + 64,
            "{lock:#x} {counter:#x}"
        );
        // What readers only read starts on the next line: other readers' lock operations do not
        // take it away.
        assert_eq!(state.index_address(), lock + 64);
    }
}
