//! Time sources for expiration: [`Clock`], [`MockClock`] for tests, and `Now`, the time one
//! operation sees. A leaf: it depends on nothing else in the crate.
//
// The cache measures time in whole milliseconds ("ticks") since its clock's epoch. Reading the
// time must be cheap, because with expiration every hit checks a deadline. Measured on a 2-core
// VM (`cargo bench --bench clock`, beside a get hit of about 17 ns):
//
//   Instant::now()            23.2 ns     (vDSO clock_gettime(CLOCK_MONOTONIC))
//   SystemTime::now()         23.2 ns
//   CLOCK_MONOTONIC_COARSE     9.3 ns     (needs libc and unsafe; 4 ms resolution)
//   quanta::Instant::now()     9.6 ns     (TSC)
//   an atomic load             ~1 ns
//
// A hit with expiration should cost at most 1.25x one without: about 4 ns to spare, which only
// the last line fits. So the default clock is a *ticker*: one background thread for the whole
// process advances a shared atomic millisecond counter, and the cache only loads it. The thread
// exists only while some clock uses it (clocks register on first read; it exits at the first
// tick after the last one is dropped),
// and only once a clock is first read, so a cache without expiration never starts it. If the
// thread cannot be spawned, the clock falls back to `Instant::now()` on every read.
//
// Precision: time advances in steps of one millisecond, and the ticker's value trails real time
// by up to one tick plus however long the operating system delays the thread.
// `Clock::precise()` reads `Instant::now()` every time instead, for callers who prefer exactness
// to speed.

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How often the ticker thread advances the shared time: the clock's resolution.
const TICK: Duration = Duration::from_millis(1);

/// The time source a cache reads deadlines against. Cheap to clone.
///
/// - [`Clock::ticking`] (the default): millisecond ticks kept by one shared background thread;
///   reading it costs an atomic load. The thread starts when a clock is first read and stops
///   when no clock uses it any more.
/// - [`Clock::precise`]: reads [`Instant::now`] on every operation; no thread, about 20 ns more
///   per operation on an expiring cache.
/// - [`Clock::mock`]: a [`MockClock`] that only moves when told to, for deterministic tests.
///
/// ```
/// use std::time::Duration;
/// use cachet::{Cache, Clock, MockClock};
///
/// // In production: the default ticking clock, or `Clock::precise()` for exact milliseconds.
/// let sessions: Cache<u64, String> = Cache::builder()
///     .max_capacity(1_000)
///     .time_to_live(Duration::from_secs(60))
///     .clock(Clock::precise())
///     .build()
///     .unwrap();
/// sessions.insert(1, "alice".into());
/// assert!(sessions.contains_key(&1));
///
/// // In a test: time moves only when the test says so.
/// let time = MockClock::new();
/// let tokens: Cache<u64, String> = Cache::builder()
///     .max_capacity(1_000)
///     .time_to_live(Duration::from_secs(60))
///     .clock(Clock::mock(&time))
///     .build()
///     .unwrap();
/// tokens.insert(1, "t0k3n".into());
/// time.advance(Duration::from_secs(59));
/// assert!(tokens.contains_key(&1));
/// time.advance(Duration::from_secs(1));
/// assert!(!tokens.contains_key(&1));
/// ```
pub struct Clock {
    kind: Kind,
    /// Set once a ticking clock is registered with a running ticker: then a read is this load
    /// and one of `TICKS` (a hit of an expiring cache reads the time; matching on `kind` and
    /// checking the `OnceLock` cost it 6 more instructions).
    ticks: AtomicBool,
}

enum Kind {
    /// Registered with the ticker on first read, so that caches that never read the time never
    /// start the thread. `Err` if the thread could not be spawned: then `Instant::now()`.
    Ticking(OnceLock<Result<TickerUse, ()>>),
    Precise(Instant),
    Mock(MockClock),
}

impl Clone for Clock {
    fn clone(&self) -> Self {
        let kind = match &self.kind {
            Kind::Ticking(_) => Kind::Ticking(OnceLock::new()),
            Kind::Precise(epoch) => Kind::Precise(*epoch),
            Kind::Mock(m) => Kind::Mock(m.clone()),
        };
        Clock::of(kind)
    }
}

impl Clock {
    fn of(kind: Kind) -> Clock {
        Clock {
            kind,
            ticks: AtomicBool::new(false),
        }
    }

    /// The default: millisecond ticks kept by a shared background thread.
    pub fn ticking() -> Clock {
        Clock::of(Kind::Ticking(OnceLock::new()))
    }

    /// Reads [`Instant::now`] on every operation: exact to the millisecond, no background thread.
    pub fn precise() -> Clock {
        Clock::of(Kind::Precise(Instant::now()))
    }

    /// A clock driven by `mock`: time stands still until [`MockClock::advance`] moves it.
    pub fn mock(mock: &MockClock) -> Clock {
        Clock::of(Kind::Mock(mock.clone()))
    }

    /// Milliseconds since this clock's epoch.
    #[inline]
    pub(crate) fn now_ticks(&self) -> u64 {
        // Acquire pairs with the store below, so `TICKS` is read no older than at registration.
        if self.ticks.load(Ordering::Acquire) {
            return TICKS.load(Ordering::Relaxed);
        }
        self.read_kind()
    }

    #[cold]
    fn read_kind(&self) -> u64 {
        match &self.kind {
            Kind::Ticking(once) => match once.get_or_init(TickerUse::start) {
                Ok(_) => {
                    self.ticks.store(true, Ordering::Release);
                    TICKS.load(Ordering::Relaxed)
                }
                Err(()) => millis(epoch().elapsed()),
            },
            Kind::Precise(epoch) => millis(epoch.elapsed()),
            Kind::Mock(m) => millis(Duration::from_nanos(m.nanos.load(Ordering::Acquire))),
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::ticking()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match &self.kind {
            Kind::Ticking(_) => "ticking",
            Kind::Precise(_) => "precise",
            Kind::Mock(_) => "mock",
        };
        f.debug_tuple("Clock").field(&name).finish()
    }
}

/// Whole milliseconds in `d`, saturating.
#[inline]
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A clock for tests: it starts at zero and moves only when [`advance`](Self::advance) is
/// called. Clones share the same time.
///
/// ```
/// use std::time::Duration;
/// use cachet::{Cache, Clock, MockClock};
///
/// let time = MockClock::new();
/// let cache: Cache<&str, u32> = Cache::builder()
///     .max_capacity(100)
///     .time_to_live(Duration::from_secs(60))
///     .clock(Clock::mock(&time))
///     .build()
///     .unwrap();
/// cache.insert("a", 1);
/// time.advance(Duration::from_secs(59));
/// assert_eq!(cache.get("a"), Some(1));
/// time.advance(Duration::from_secs(1));
/// assert_eq!(cache.get("a"), None); // expired exactly at its deadline
/// ```
#[derive(Clone, Default)]
pub struct MockClock {
    nanos: Arc<AtomicU64>,
}

impl MockClock {
    /// A clock at time zero.
    pub fn new() -> MockClock {
        MockClock::default()
    }

    /// Moves time forward by `by` (saturating at about 584 years).
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .nanos
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_add(by))
            });
    }

    /// Time elapsed since the clock was created, as far as the clock knows.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Acquire))
    }
}

impl fmt::Debug for MockClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockClock")
            .field("elapsed", &self.elapsed())
            .finish()
    }
}

/// Milliseconds since `epoch()`, advanced by the ticker thread while any ticking clock is in use.
static TICKS: AtomicU64 = AtomicU64::new(0);

/// The ticker's bookkeeping: how many ticking clocks use it, and whether its thread runs.
struct TickerState {
    users: usize,
    running: bool,
}

static TICKER: Mutex<TickerState> = Mutex::new(TickerState {
    users: 0,
    running: false,
});

/// The process-wide epoch of ticking clocks.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// A ticking clock's registration with the ticker thread; the thread stops when the last one
/// is dropped.
struct TickerUse(());

impl TickerUse {
    fn start() -> Result<TickerUse, ()> {
        let mut st = TICKER.lock().unwrap_or_else(|p| p.into_inner());
        let epoch = epoch();
        TICKS.fetch_max(millis(epoch.elapsed()), Ordering::Relaxed);
        if !st.running {
            let spawned = std::thread::Builder::new()
                .name("cachet-clock".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(TICK);
                        let mut st = TICKER.lock().unwrap_or_else(|p| p.into_inner());
                        if st.users == 0 {
                            st.running = false;
                            break;
                        }
                        TICKS.fetch_max(millis(epoch.elapsed()), Ordering::Relaxed);
                    }
                });
            if spawned.is_err() {
                return Err(());
            }
            st.running = true;
        }
        st.users += 1;
        Ok(TickerUse(()))
    }
}

impl Drop for TickerUse {
    fn drop(&mut self) {
        let mut st = TICKER.lock().unwrap_or_else(|p| p.into_inner());
        st.users -= 1;
    }
}

/// The time one operation sees: its cache's clock, read at most once, and only if the
/// operation needs it (an operation on a shard that keeps no deadlines never does).
pub(crate) struct Now<'a> {
    clock: &'a Clock,
    tick: Cell<Option<u64>>,
}

impl<'a> Now<'a> {
    /// The time of an operation that has not read the clock yet.
    #[inline]
    pub(crate) fn new(clock: &'a Clock) -> Self {
        Now {
            clock,
            tick: Cell::new(None),
        }
    }

    /// The time of an operation that already read the clock: `tick`.
    #[inline]
    pub(crate) fn at(clock: &'a Clock, tick: u64) -> Self {
        Now {
            clock,
            tick: Cell::new(Some(tick)),
        }
    }

    /// The current tick, read from the clock on the first call only.
    #[inline]
    pub(crate) fn tick(&self) -> u64 {
        match self.tick.get() {
            Some(tick) => tick,
            None => {
                let tick = self.clock.now_ticks();
                self.tick.set(Some(tick));
                tick
            }
        }
    }

    /// The tick, if the operation has read it already.
    #[inline]
    pub(crate) fn if_read(&self) -> Option<u64> {
        self.tick.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mock_moves_only_when_advanced() {
        let m = MockClock::new();
        let c = Clock::mock(&m);
        assert_eq!(c.now_ticks(), 0);
        m.advance(Duration::from_micros(1500));
        assert_eq!(c.now_ticks(), 1);
        m.advance(Duration::from_micros(500));
        assert_eq!(c.now_ticks(), 2);
        m.advance(Duration::MAX);
        assert_eq!(m.elapsed(), Duration::from_nanos(u64::MAX));
    }

    #[test]
    fn ticking_clock_is_shared_and_monotonic() {
        let a = Clock::ticking();
        let b = a.clone();
        let x = a.now_ticks();
        let y = b.now_ticks();
        assert!(y >= x);
        // Both now read through the fast path, and still agree with the shared ticks.
        assert!(a.ticks.load(Ordering::Relaxed) && b.ticks.load(Ordering::Relaxed));
        let z = a.now_ticks();
        assert!(z >= y && z <= TICKS.load(Ordering::Relaxed));
    }
}
