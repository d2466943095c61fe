//! [`Loaded`]: the shapes a loader's result may take, and what a loading call returns for each.
//! A leaf: it knows nothing of the cache.

use std::convert::Infallible;
use std::sync::Arc;

/// What a loader returns, which decides what the loading call returns: one family of loader
/// methods ([`get_or_load`](crate::Cache::get_or_load) and its async and bounded forms, and a
/// [`LoadingCache`](crate::LoadingCache)'s loader) for every kind of loader.
///
/// | the loader returns | the call returns | |
/// |---|---|---|
/// | `V` | `V` | a loader that always finds a value |
/// | `Option<V>` | `Option<V>` | `None`: "not found", which is not stored |
/// | `Result<V, E>` | `Result<V, Arc<E>>` | the error is shared by every caller of that load |
/// | `Result<Option<V>, E>` | `Result<Option<V>, Arc<E>>` | both |
///
/// A `None` or an error is not stored, unless
/// [`negative_ttl`](crate::CacheBuilder::negative_ttl) asks the cache to remember it for a
/// while (then the callers of the key meanwhile get it without loading). A caller whose loader
/// cannot say "not found" (or fail with that error type) never receives another caller's
/// `None` (or error): it runs its own loader instead.
///
/// ```
/// use cachet::Cache;
///
/// let users: Cache<u64, String> = Cache::new(1_000);
/// let name: String = users.get_or_load(&1, || "Ada".to_string());
/// let missing: Option<String> = users.get_or_load(&2, || None); // not stored
/// let failed: Result<String, _> = users.get_or_load(&3, || Err::<String, _>("db down"));
/// assert_eq!((name.as_str(), missing), ("Ada", None));
/// assert_eq!(*failed.unwrap_err(), "db down");
/// assert_eq!(users.len(), 1);
/// ```
pub trait Loaded<V>: sealed::Sealed<V> + Sized {
    /// What the loading call returns.
    type Output;
    /// The loader's error type (`Infallible` when it cannot fail).
    type Error: Send + Sync + 'static;
    /// Whether the caller can be told "no value".
    #[doc(hidden)]
    const ABSENT: bool;
    /// The loader's result in one form: a value, no value, or an error.
    #[doc(hidden)]
    fn split(self) -> Result<Option<V>, Self::Error>;
    /// What the call returns for an outcome in that form ("no value" reaches only callers for
    /// which `ABSENT` holds).
    #[doc(hidden)]
    fn join(outcome: Result<Option<V>, Arc<Self::Error>>) -> Self::Output;
    /// The loader's result for a value found elsewhere (another tier).
    #[doc(hidden)]
    fn found(value: V) -> Self;
    /// The value in the loader's result, if any.
    #[doc(hidden)]
    fn value(&self) -> Option<&V>;
}

/// Only the shapes below are [`Loaded`].
mod sealed {
    pub trait Sealed<V> {}
    impl<V> Sealed<V> for V {}
    impl<V> Sealed<V> for Option<V> {}
    impl<V, E> Sealed<V> for Result<V, E> {}
    impl<V, E> Sealed<V> for Result<Option<V>, E> {}
}

/// Unreachable: a caller whose shape cannot say "not found" is never handed "not found".
fn unreachable_absent() -> ! {
    unreachable!("a caller that cannot take \"not found\" was given it")
}

impl<V> Loaded<V> for V {
    type Output = V;
    type Error = Infallible;
    const ABSENT: bool = false;

    fn split(self) -> Result<Option<V>, Infallible> {
        Ok(Some(self))
    }

    fn join(outcome: Result<Option<V>, Arc<Infallible>>) -> V {
        match outcome {
            Ok(Some(v)) => v,
            Ok(None) => unreachable_absent(),
            Err(e) => match *e {},
        }
    }

    fn found(value: V) -> Self {
        value
    }

    fn value(&self) -> Option<&V> {
        Some(self)
    }
}

impl<V> Loaded<V> for Option<V> {
    type Output = Option<V>;
    type Error = Infallible;
    const ABSENT: bool = true;

    fn split(self) -> Result<Option<V>, Infallible> {
        Ok(self)
    }

    fn join(outcome: Result<Option<V>, Arc<Infallible>>) -> Option<V> {
        match outcome {
            Ok(v) => v,
            Err(e) => match *e {},
        }
    }

    fn found(value: V) -> Self {
        Some(value)
    }

    fn value(&self) -> Option<&V> {
        self.as_ref()
    }
}

impl<V, E: Send + Sync + 'static> Loaded<V> for Result<V, E> {
    type Output = Result<V, Arc<E>>;
    type Error = E;
    const ABSENT: bool = false;

    fn split(self) -> Result<Option<V>, E> {
        self.map(Some)
    }

    fn join(outcome: Result<Option<V>, Arc<E>>) -> Result<V, Arc<E>> {
        outcome.map(|v| v.unwrap_or_else(|| unreachable_absent()))
    }

    fn found(value: V) -> Self {
        Ok(value)
    }

    fn value(&self) -> Option<&V> {
        self.as_ref().ok()
    }
}

impl<V, E: Send + Sync + 'static> Loaded<V> for Result<Option<V>, E> {
    type Output = Result<Option<V>, Arc<E>>;
    type Error = E;
    const ABSENT: bool = true;

    fn split(self) -> Result<Option<V>, E> {
        self
    }

    fn join(outcome: Result<Option<V>, Arc<E>>) -> Result<Option<V>, Arc<E>> {
        outcome
    }

    fn found(value: V) -> Self {
        Ok(Some(value))
    }

    fn value(&self) -> Option<&V> {
        self.as_ref().ok().and_then(Option::as_ref)
    }
}
