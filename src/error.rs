//! The crate's error types: what a build can refuse. A leaf: it depends on nothing else in the
//! crate.

use std::fmt;

/// Why [`CacheBuilder::build`](crate::CacheBuilder::build) rejected a configuration.
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
    /// `refresh_after` was zero or not shorter than the `time_to_live` (in whole
    /// milliseconds), or `refresh_early`'s factor was not a positive number.
    InvalidRefresh,
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
            BuildError::InvalidRefresh => f.write_str(
                "refresh_after must be at least 1 ms and shorter than time_to_live; \
                 refresh_early needs a positive factor",
            ),
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
