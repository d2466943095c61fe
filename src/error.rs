//! The crate's error types.

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
        }
    }
}

impl std::error::Error for BuildError {}
