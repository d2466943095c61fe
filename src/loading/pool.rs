//! The blocking refresh threads of a `LoadingCache`: a small pool started on demand, with a
//! bounded queue.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// Refresh jobs a blocking loading cache queues at most; past this, refreshes are skipped.
const MAX_QUEUED: usize = 1024;

/// How long an idle refresh thread waits for work before it ends.
const IDLE: Duration = Duration::from_secs(10);

pub(super) type Job = Box<dyn FnOnce() + Send>;

/// The blocking refresh threads of one loading cache: at most `max` threads, started when
/// work arrives and none is idle, ended after `IDLE` without work.
pub(super) struct Pool {
    shared: Arc<PoolShared>,
}

struct PoolShared {
    state: Mutex<PoolState>,
    ready: Condvar,
    max: usize,
}

struct PoolState {
    jobs: VecDeque<Job>,
    threads: usize,
    idle: usize,
}

impl Pool {
    pub(super) fn new(max: usize) -> Self {
        Pool {
            shared: Arc::new(PoolShared {
                state: Mutex::new(PoolState {
                    jobs: VecDeque::new(),
                    threads: 0,
                    idle: 0,
                }),
                ready: Condvar::new(),
                max: max.max(1),
            }),
        }
    }

    /// Queues `job`; drops it (which abandons its refresh) if the queue is full.
    pub(super) fn execute(&self, job: Job) {
        let mut state = self.shared.state.lock();
        if state.jobs.len() >= MAX_QUEUED {
            drop(state);
            drop(job);
            return;
        }
        state.jobs.push_back(job);
        if state.idle > 0 {
            self.shared.ready.notify_one();
        } else if state.threads < self.shared.max {
            state.threads += 1;
            let shared = Arc::clone(&self.shared);
            let spawned = std::thread::Builder::new()
                .name("cachet-refresh".into())
                .spawn(move || work(&shared));
            if spawned.is_err() {
                // No thread: the job waits for a running one, or is dropped with the pool.
                state.threads -= 1;
            }
        }
    }
}

fn work(shared: &PoolShared) {
    let mut state = shared.state.lock();
    loop {
        match state.jobs.pop_front() {
            Some(job) => {
                drop(state);
                // A panicking loader only abandons its own refresh (the job's guard).
                let _ = catch_unwind(AssertUnwindSafe(job));
                state = shared.state.lock();
            }
            None => {
                state.idle += 1;
                let timed_out = shared.ready.wait_for(&mut state, IDLE).timed_out();
                state.idle -= 1;
                if timed_out && state.jobs.is_empty() {
                    state.threads -= 1;
                    return;
                }
            }
        }
    }
}
