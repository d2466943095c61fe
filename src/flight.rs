//! The in-flight load state machine: one `Flight` per load, which its leader settles once
//! (loaded, failed, missing from a batch, or abandoned) and its waiters, parked threads or async
//! tasks, wait on. A leaf: it knows nothing of caches, shards or loaders.

use std::any::Any;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
#[cfg(any(test, feature = "_test-hooks"))]
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use crate::sync::{Condvar, Mutex};

/// A loader's error, type-erased so that callers with different error types can share a
/// flight; each waiter downcasts it to its own type.
pub(crate) type SharedError = Arc<dyn Any + Send + Sync>;

/// One load in flight.
pub(crate) struct Flight<V> {
    pub(crate) generation: u64,
    state: Mutex<State<V>>,
    parked: Condvar,
    /// Callers that have joined this load (a test hook: lets tests force interleavings
    /// without sleeping).
    #[cfg(any(test, feature = "_test-hooks"))]
    waiting: AtomicUsize,
}

enum State<V> {
    Running {
        wakers: Vec<Waker>,
    },
    Done(V),
    Failed(SharedError),
    /// A batch loader did not return this key.
    Missing,
    Abandoned,
}

/// How a flight ended, as seen by a waiter.
pub(crate) enum Outcome<V> {
    Loaded(V),
    Failed(SharedError),
    /// A batch loader did not return the key: "not found" to a batch, start again to a
    /// single-key caller (whose loader must produce a value).
    Missing,
    /// Start again: lead a new load or join one.
    Abandoned,
}

impl<V> Flight<V> {
    pub(crate) fn new(generation: u64) -> Self {
        Flight {
            generation,
            state: Mutex::new(State::Running { wakers: Vec::new() }),
            parked: Condvar::new(),
            #[cfg(any(test, feature = "_test-hooks"))]
            waiting: AtomicUsize::new(0),
        }
    }

    /// Publishes the outcome and wakes every waiter. Only the first call has an effect.
    fn settle(&self, outcome: State<V>) {
        let wakers = {
            let mut state = self.state.lock();
            match &mut *state {
                State::Running { wakers } => {
                    let wakers = std::mem::take(wakers);
                    *state = outcome;
                    wakers
                }
                _ => return,
            }
        };
        self.parked.notify_all();
        for w in wakers {
            w.wake();
        }
    }

    /// How many callers have joined this load (a test hook).
    #[cfg(any(test, feature = "_test-hooks"))]
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Counts a caller that joined this load (for the test hook `waiting`; nothing otherwise).
    #[inline]
    fn joined(&self) {
        #[cfg(any(test, feature = "_test-hooks"))]
        self.waiting.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn complete(&self, value: V) {
        self.settle(State::Done(value));
    }

    pub(crate) fn fail(&self, error: SharedError) {
        self.settle(State::Failed(error));
    }

    pub(crate) fn abandon(&self) {
        self.settle(State::Abandoned);
    }

    pub(crate) fn missing(&self) {
        self.settle(State::Missing);
    }

    /// This flight's identity while it lives (its address).
    pub(crate) fn id(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    /// Whether the flight has ended (however it ended).
    pub(crate) fn is_settled(&self) -> bool {
        !matches!(*self.state.lock(), State::Running { .. })
    }
}

impl<V: Clone> Flight<V> {
    fn outcome(state: &State<V>) -> Option<Outcome<V>> {
        match state {
            State::Running { .. } => None,
            State::Done(v) => Some(Outcome::Loaded(v.clone())),
            State::Failed(e) => Some(Outcome::Failed(Arc::clone(e))),
            State::Missing => Some(Outcome::Missing),
            State::Abandoned => Some(Outcome::Abandoned),
        }
    }

    /// Parks the calling thread until the flight ends, or until `deadline` (then `None`).
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> Option<Outcome<V>> {
        let mut state = self.state.lock();
        self.joined();
        loop {
            if let Some(outcome) = Self::outcome(&state) {
                return Some(outcome);
            }
            match deadline {
                None => self.parked.wait(&mut state),
                Some(d) => {
                    if self.parked.wait_until(&mut state, d).timed_out() {
                        return Self::outcome(&state);
                    }
                }
            }
        }
    }

    /// Polls for the end of the flight, registering the task's waker while it runs.
    pub(crate) fn poll(
        &self,
        cx: &mut Context<'_>,
        registered: &mut Option<usize>,
    ) -> Poll<Outcome<V>> {
        let mut state = self.state.lock();
        match &mut *state {
            State::Running { wakers } => {
                match registered {
                    Some(i) if wakers[*i].will_wake(cx.waker()) => {}
                    Some(i) => wakers[*i] = cx.waker().clone(),
                    None => {
                        *registered = Some(wakers.len());
                        wakers.push(cx.waker().clone());
                        self.joined();
                    }
                }
                Poll::Pending
            }
            other => Poll::Ready(Self::outcome(other).expect("not running")),
        }
    }
}

/// Waits on a flight from an async task.
pub(crate) struct Wait<'a, V> {
    flight: &'a Flight<V>,
    registered: Option<usize>,
}

impl<V: Clone> Future for Wait<'_, V> {
    type Output = Outcome<V>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome<V>> {
        let this = &mut *self;
        this.flight.poll(cx, &mut this.registered)
    }
}

impl<'a, V> Wait<'a, V> {
    pub(crate) fn new(flight: &'a Flight<V>) -> Self {
        Wait {
            flight,
            registered: None,
        }
    }
}

thread_local! {
    /// The flights whose loaders run on this thread's stack, innermost last (by address). A
    /// blocking loader runs inside its leader's call, and an async leader's loader future is
    /// polled inside the leader's own poll: a load that joins one of these flights from there
    /// would wait for the very frame that has to finish it.
    static LEADING: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// The panic message of a recursive load.
const RECURSIVE_LOAD: &str = "cachet: recursive load: a loader asked its own cache for the key it \
     is loading (through a loader method, an entry or a loading cache's get), which would wait \
     for its own result forever";

/// Marks flights as led by the code that runs while it lives (on this thread).
pub(crate) struct Leading {
    marked: usize,
}

impl Leading {
    pub(crate) fn enter<'a, V: 'a>(flights: impl IntoIterator<Item = &'a Flight<V>>) -> Self {
        Self::mark(flights.into_iter().map(Flight::id))
    }

    fn mark(ids: impl Iterator<Item = usize>) -> Self {
        LEADING.with(|l| {
            let mut l = l.borrow_mut();
            let before = l.len();
            l.extend(ids);
            Leading {
                marked: l.len() - before,
            }
        })
    }

    /// Runs `fut`, polling it with the flights `ids` marked as led.
    pub(crate) async fn run<F: Future>(ids: Vec<usize>, fut: F) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        std::future::poll_fn(|cx| {
            let _leading = Self::mark(ids.iter().copied());
            fut.as_mut().poll(cx)
        })
        .await
    }
}

impl Drop for Leading {
    fn drop(&mut self) {
        LEADING.with(|l| {
            let mut l = l.borrow_mut();
            let keep = l.len() - self.marked;
            l.truncate(keep);
        });
    }
}

/// Panics if `flight` is led by a loader running on this thread's stack: joining it would
/// wait forever.
pub(crate) fn check_not_leading<V>(flight: &Flight<V>) {
    let id = flight.id();
    if LEADING.with(|l| l.borrow().contains(&id)) {
        panic!("{RECURSIVE_LOAD}");
    }
}
