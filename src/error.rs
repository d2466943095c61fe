//! The crate's error types: what a build can refuse. A leaf: it depends on nothing else in the
//! crate.

use std::fmt;
use std::time::Duration;

/// Why [`CacheBuilder::build`](crate::CacheBuilder::build) rejected a configuration. Its
/// `Display` names the option at fault and the reason.
///
/// ```
/// use std::time::Duration;
/// use cachet::{BuildError, Cache};
///
/// let day = Duration::from_secs(24 * 3600);
/// let refused = Cache::<u64, String>::builder()
///     .max_capacity(1_000)
///     .time_to_live(20 * day)
///     .refresh_after(15 * day)
///     .build_loading(|id: &u64| Ok::<_, std::io::Error>(id.to_string()))
///     .unwrap_err();
/// assert!(matches!(refused, BuildError::InvalidRefreshAfter { .. }));
/// // Lifetimes are capped at about 12.4 days, so the 20-day TTL is one of 12.4 days, shorter
/// // than the refresh: the message says so.
/// assert!(refused.to_string().contains("12.4 days"), "{refused}");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// No `max_capacity` was given. A cache needs a bound; an unbounded map is a `HashMap`.
    MissingCapacity,
    /// `shards(0)`: a cache needs at least one shard.
    ZeroShards,
    /// The shard count must be a power of two, so a shard is chosen with a mask.
    ShardsNotPowerOfTwo(usize),
    /// More shards than [`MAX_SHARDS`](crate::MAX_SHARDS).
    TooManyShards {
        /// The count asked for.
        requested: usize,
        /// The largest count accepted.
        max: usize,
    },
    /// `ttl_jitter` was not a fraction in `[0, 1]` (or was NaN).
    InvalidJitter,
    /// `refresh_after` or `refresh_early` was set, but `build` has no loader to refresh
    /// with: use `build_loading` or `build_async_loading`.
    RefreshNeedsLoader,
    /// `refresh_after` needs a `time_to_live` (an entry's age is read from its deadline).
    RefreshNeedsTtl,
    /// `refresh_after` was under a millisecond, or not shorter than the `time_to_live` as the
    /// cache keeps it (whole milliseconds, capped at about 12.4 days).
    InvalidRefreshAfter {
        /// The `refresh_after` given.
        refresh_after: Duration,
        /// The `time_to_live` given.
        time_to_live: Duration,
    },
    /// `refresh_early`'s factor was not a positive number.
    InvalidRefreshEarly,
    /// `refresh_threads` was 0 or above [`MAX_REFRESH_THREADS`](crate::MAX_REFRESH_THREADS).
    InvalidRefreshThreads(usize),
    /// `build_tokio_loading` was called outside a tokio runtime.
    NoTokioRuntime,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::MissingCapacity => {
                f.write_str("max_capacity is required: call CacheBuilder::max_capacity")
            }
            BuildError::ZeroShards => f.write_str("shards must be at least 1"),
            BuildError::ShardsNotPowerOfTwo(n) => {
                write!(f, "shards must be a power of two, got {n}")
            }
            BuildError::TooManyShards { requested, max } => {
                write!(f, "shards must be at most {max}, got {requested}")
            }
            BuildError::InvalidJitter => f.write_str("ttl_jitter must be a fraction in [0, 1]"),
            BuildError::RefreshNeedsLoader => f.write_str(
                "refresh_after/refresh_early need a loader: use build_loading or build_async_loading",
            ),
            BuildError::RefreshNeedsTtl => f.write_str("refresh_after needs a time_to_live"),
            BuildError::InvalidRefreshAfter {
                refresh_after,
                time_to_live,
            } => {
                let kept = crate::expiry::kept_lifetime(*time_to_live);
                if *refresh_after < Duration::from_millis(1) {
                    write!(f, "refresh_after must be at least 1 ms, got {refresh_after:?}")
                } else if kept < *time_to_live {
                    write!(
                        f,
                        "refresh_after ({refresh_after:?}) must be shorter than time_to_live, \
                         and time_to_live ({time_to_live:?}) is capped at {kept:?} (about 12.4 \
                         days: lifetimes are kept in 2^30 ms): use a refresh_after under {kept:?}"
                    )
                } else {
                    write!(
                        f,
                        "refresh_after ({refresh_after:?}) must be shorter than time_to_live \
                         ({time_to_live:?})"
                    )
                }
            }
            BuildError::InvalidRefreshEarly => {
                f.write_str("refresh_early needs a positive, finite factor")
            }
            BuildError::InvalidRefreshThreads(n) => write!(
                f,
                "refresh_threads must be in 1..={}, got {n}",
                crate::MAX_REFRESH_THREADS
            ),
            BuildError::NoTokioRuntime => {
                f.write_str("build_tokio_loading must be called within a tokio runtime")
            }
        }
    }
}

impl std::error::Error for BuildError {}
