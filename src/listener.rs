//! Removal notifications: [`RemovalCause`], the `Removed` sink every removal goes to under a
//! shard lock, and its delivery to the listener once the lock is released. It knows nothing of
//! shards or the cache.

// Design notes
// - Entries leave a shard only under its write lock, but the user's listener must never run
//   there: it may be slow, take other locks, or call back into the cache. So every removal is
//   collected in a `Removed` batch while the lock is held, and delivered by the thread that caused
//   it once the lock is released. The same batch carries the entries to be dropped outside the
//   lock when there is no listener.
// - `insert` and `remove` hand the old value back to their caller. The listener then gets a
//   clone of it: both promises (the return value, and one notification per removed entry) hold.
//   The clone runs inside the listener's wrapper, so only a cache with a listener needs
//   `V: Clone`, and a panicking `Clone` counts as a panicking listener.
//   The key for a replacement is the caller's own key (equal to the stored one), so keys are
//   never cloned.
// - A panicking listener never reaches the caller: the operation that removed the entry is
//   someone else's (a `get` that happened to expire an unrelated entry), and its result must
//   not be lost to the listener. Each panic is caught, counted (`CacheStats::listener_panics`),
//   and the next notification is delivered as usual. The default panic hook still prints it.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why an entry left the cache, as told to the
/// [`eviction_listener`](crate::CacheBuilder::eviction_listener).
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
/// use cachet::{Cache, Clock, MockClock, RemovalCause};
///
/// let time = MockClock::new();
/// let causes = Arc::new(Mutex::new(Vec::new()));
/// let seen = Arc::clone(&causes);
/// let cache: Cache<&str, u32> = Cache::builder()
///     .max_capacity(2)
///     .time_to_live(Duration::from_secs(10))
///     .clock(Clock::mock(&time))
///     .eviction_listener(move |key, _, cause| seen.lock().unwrap().push((key, cause)))
///     .build()
///     .unwrap();
/// cache.insert("a", 1);
/// cache.insert("a", 2); // Replaced: the old value
/// cache.remove("a"); // Explicit
/// cache.insert("b", 1);
/// time.advance(Duration::from_secs(10));
/// cache.run_pending_maintenance(); // Expired: its lifetime ran out
/// for k in ["c", "d", "e"] {
///     cache.insert(k, 0); // Evicted: the policy made room (capacity 2)
/// }
/// let causes = causes.lock().unwrap();
/// assert_eq!(causes[..3], [("a", RemovalCause::Replaced), ("a", RemovalCause::Explicit), ("b", RemovalCause::Expired)]);
/// assert!(causes[3..].iter().all(|&(_, c)| c == RemovalCause::Evicted));
/// assert!(RemovalCause::Expired.was_evicted() && !RemovalCause::Explicit.was_evicted());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RemovalCause {
    /// The eviction policy removed it to make room for other entries, or it was too heavy to
    /// be stored at all (heavier than the cache's whole capacity).
    Evicted,
    /// The user removed it: [`remove`](crate::Cache::remove),
    /// [`invalidate_all`](crate::Cache::invalidate_all) or [`retain`](crate::Cache::retain).
    Explicit,
    /// An [`insert`](crate::Cache::insert) for the same key replaced its value.
    Replaced,
    /// Its deadline passed (time-to-live, time-to-idle, an [`Expiry`](crate::Expiry), or
    /// [`insert_with_ttl`](crate::Cache::insert_with_ttl)). Also the cause for a value inserted
    /// with a lifetime of zero, which is never stored.
    Expired,
}

impl RemovalCause {
    /// Whether the cache removed the entry on its own, for size or time (rather than the
    /// user's code asking).
    pub fn was_evicted(self) -> bool {
        matches!(self, RemovalCause::Evicted | RemovalCause::Expired)
    }
}

/// A removed value as handed to the stored listener: owned, or the value that `insert` or
/// `remove` also returns to its caller (the wrapper built by `eviction_listener`, where `V: Clone`
/// is known, clones it; so only caches with a listener need `V: Clone`).
pub(crate) enum Value<'a, V> {
    Owned(V),
    Returned(&'a V),
}

pub(crate) type Listener<K, V> = Arc<dyn Fn(K, Value<'_, V>, RemovalCause) + Send + Sync>;

/// Wraps the user's listener for storage.
pub(crate) fn wrap<K, V, F>(listener: F) -> Listener<K, V>
where
    V: Clone,
    F: Fn(K, V, RemovalCause) + Send + Sync + 'static,
{
    Arc::new(move |k, v, cause| {
        let v = match v {
            Value::Owned(v) => v,
            Value::Returned(v) => v.clone(),
        };
        listener(k, v, cause)
    })
}

/// Entries removed under a shard lock, to be reported and dropped after it is released. Holds the
/// common single eviction inline so an insert does not allocate for it.
pub(crate) struct Removed<K, V> {
    first: Option<(K, V, RemovalCause)>,
    rest: Vec<(K, V, RemovalCause)>,
    /// The key and cause for the value the operation returns to its caller (`insert`'s replaced
    /// value, `remove`'s removed one): its notification gets a clone of that value.
    returned: Option<(K, RemovalCause)>,
    /// A panic of user code (an `Expiry` hook) caught under the lock, to resume once the
    /// removals that happened before it have been reported.
    panic: Option<Panic>,
}

impl<K, V> Removed<K, V> {
    pub(crate) fn new() -> Self {
        Removed {
            first: None,
            rest: Vec::new(),
            returned: None,
            panic: None,
        }
    }

    /// Whether a panic waits to be resumed once the removals are delivered.
    #[inline]
    pub(crate) fn panicked(&self) -> bool {
        self.panic.is_some()
    }

    /// Keeps a caught panic, to resume after delivery.
    pub(crate) fn set_panic(&mut self, p: Panic) {
        self.panic.get_or_insert(p);
    }

    pub(crate) fn push(&mut self, k: K, v: V, cause: RemovalCause) {
        if self.first.is_none() {
            self.first = Some((k, v, cause));
        } else {
            self.rest.push((k, v, cause));
        }
    }

    /// Records that the value the operation returns to its caller left the cache for `cause`,
    /// under key `k`.
    pub(crate) fn push_returned(&mut self, k: K, cause: RemovalCause) {
        self.returned = Some((k, cause));
    }

    /// The cause of every removal in the batch, for statistics.
    pub(crate) fn causes(&self) -> impl Iterator<Item = RemovalCause> + '_ {
        let returned = self.returned.as_ref().map(|(_, c)| *c);
        let first = self.first.as_ref().map(|(_, _, c)| *c);
        returned
            .into_iter()
            .chain(first)
            .chain(self.rest.iter().map(|(_, _, c)| *c))
    }

    /// Reports everything to `listener` (if any) and drops it. Call with no lock held.
    /// `returned` is the value the operation gives back to its caller, if any. Listener panics
    /// are caught and added to `panics`; a panic of the operation's own user code (an `Expiry`
    /// hook, kept by `set_panic`) resumes once everything is delivered.
    #[inline]
    pub(crate) fn deliver(
        self,
        listener: Option<&Listener<K, V>>,
        returned: Option<&V>,
        panics: &AtomicU64,
    ) {
        if let Some(listener) = listener {
            if let (Some((k, cause)), Some(v)) = (self.returned, returned) {
                notify(listener, k, Value::Returned(v), cause, panics);
            }
            for (k, v, cause) in self.first.into_iter().chain(self.rest) {
                notify(listener, k, Value::Owned(v), cause, panics);
            }
        } else {
            drop((self.first, self.rest)); // dropped here, outside the lock
        }
        if let Some(p) = self.panic {
            resume_unwind(p);
        }
    }
}

pub(crate) type Panic = Box<dyn std::any::Any + Send + 'static>;

/// Calls the listener once; a panic is caught and counted in `panics`.
fn notify<K, V>(
    listener: &Listener<K, V>,
    k: K,
    v: Value<'_, V>,
    cause: RemovalCause,
    panics: &AtomicU64,
) {
    if catch_unwind(AssertUnwindSafe(|| listener(k, v, cause))).is_err() {
        panics.fetch_add(1, Ordering::Relaxed);
    }
}
