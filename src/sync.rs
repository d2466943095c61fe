//! The locks of the in-flight load protocol: the shard lock (`cache/`) and a flight's mutex
//! and condition variable (`flight.rs`). A leaf.
//!
//! They are `parking_lot`'s, re-exported as they are, so a normal build pays nothing for this
//! module. Built with `RUSTFLAGS="--cfg cachet_loom"`, they are thin wrappers over `loom`'s, with the
//! same `parking_lot`-style API the code uses (guards without poisoning, `try_write` returning
//! an `Option`, `Condvar::wait` taking `&mut guard`), so that `tests/loom.rs` can explore every
//! interleaving of leaders and waiters. Only these locks are modelled: the other atomics
//! (statistics, hit stripes, the clock's ticker) take no part in the protocol and stay `std`.

#[cfg(not(cachet_loom))]
pub(crate) use parking_lot::{Condvar, Mutex, RwLock};

#[cfg(cachet_loom)]
pub(crate) use self::model::{Condvar, Mutex, RwLock};

#[cfg(cachet_loom)]
mod model {
    use std::ops::{Deref, DerefMut};
    use std::sync::{PoisonError, TryLockError};
    use std::time::Instant;

    /// `parking_lot::RwLock` over `loom::sync::RwLock`.
    #[derive(Debug)]
    pub(crate) struct RwLock<T>(loom::sync::RwLock<T>);

    impl<T> RwLock<T> {
        pub(crate) fn new(value: T) -> Self {
            RwLock(loom::sync::RwLock::new(value))
        }

        #[track_caller]
        pub(crate) fn read(&self) -> loom::sync::RwLockReadGuard<'_, T> {
            self.0.read().unwrap_or_else(PoisonError::into_inner)
        }

        #[track_caller]
        pub(crate) fn write(&self) -> loom::sync::RwLockWriteGuard<'_, T> {
            self.0.write().unwrap_or_else(PoisonError::into_inner)
        }

        #[track_caller]
        pub(crate) fn try_write(&self) -> Option<loom::sync::RwLockWriteGuard<'_, T>> {
            match self.0.try_write() {
                Ok(guard) => Some(guard),
                Err(TryLockError::WouldBlock) => None,
                Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            }
        }
    }

    /// `parking_lot::Mutex` over `loom::sync::Mutex`.
    #[derive(Debug)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    /// The guard is an `Option` only so that `Condvar::wait` can hand it to loom's `wait`
    /// (which takes it by value) through a `&mut`; it is `Some` whenever the caller sees it.
    pub(crate) struct MutexGuard<'a, T>(Option<loom::sync::MutexGuard<'a, T>>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Mutex(loom::sync::Mutex::new(value))
        }

        #[track_caller]
        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            MutexGuard(Some(self.0.lock().unwrap_or_else(PoisonError::into_inner)))
        }
    }

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;

        fn deref(&self) -> &T {
            self.0.as_deref().expect("guard held")
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.0.as_deref_mut().expect("guard held")
        }
    }

    /// `parking_lot::Condvar` over `loom::sync::Condvar`.
    #[derive(Debug)]
    pub(crate) struct Condvar(loom::sync::Condvar);

    /// What `wait_until` would return; it never does under loom (see there).
    pub(crate) struct WaitTimeoutResult(std::convert::Infallible);

    impl WaitTimeoutResult {
        pub(crate) fn timed_out(&self) -> bool {
            match self.0 {}
        }
    }

    impl Condvar {
        pub(crate) fn new() -> Self {
            Condvar(loom::sync::Condvar::new())
        }

        #[track_caller]
        pub(crate) fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
            let g = guard.0.take().expect("guard held");
            guard.0 = Some(self.0.wait(g).unwrap_or_else(PoisonError::into_inner));
        }

        /// Unsupported: loom has no clock, so a timed wait cannot be modelled (loom's own
        /// `wait_timeout` just waits, which would make a model of a timeout test an untimed wait
        /// and report a timeout's rescue as a deadlock). Models must not give a deadline
        /// (`get_or_load_timeout`); this panics if one does.
        #[track_caller]
        pub(crate) fn wait_until<T>(
            &self,
            _guard: &mut MutexGuard<'_, T>,
            _deadline: Instant,
        ) -> WaitTimeoutResult {
            panic!("timed waits cannot be modelled under loom: models must not use timeouts")
        }

        #[track_caller]
        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }
}
