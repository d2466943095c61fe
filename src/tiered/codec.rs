//! How keys and values cross the network: [`RedisKey`] names a key in Redis and reads it back
//! from an invalidation message; a [`Codec`] turns values into bytes and back.

use std::error::Error;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a value could not be encoded or decoded.
pub type CodecError = Box<dyn Error + Send + Sync>;

/// Turns values into the bytes stored in Redis, and back.
///
/// A value that fails to decode (written by another service in another format, say) is never
/// served: the read runs the loader instead, and the value in Redis is left as it is.
pub trait Codec<V>: Send + Sync + 'static {
    /// The bytes to store for `value`.
    ///
    /// # Errors
    ///
    /// When the value cannot be represented; the write that needed it then reaches neither
    /// Redis nor the in-process tier.
    fn encode(&self, value: &V) -> Result<Vec<u8>, CodecError>;

    /// The value that `bytes` (read from Redis) stand for.
    ///
    /// # Errors
    ///
    /// When `bytes` are not a valid encoding of a `V`.
    fn decode(&self, bytes: Vec<u8>) -> Result<V, CodecError>;
}

/// The default codec: any serde type as [MessagePack](https://msgpack.org), with struct fields
/// written by name (`rmp_serde::to_vec_named`).
///
/// MessagePack is compact (a small integer is one byte, a string carries a one-byte length),
/// and, unlike Rust-only formats such as postcard or bincode, it describes itself and has
/// maintained implementations in every language a neighbouring service is likely to be
/// written in, so a Python or Go service can read the same keys without knowing the Rust
/// types. Fields written by name cost a few bytes each but let either side add a field
/// (with `#[serde(default)]`) without breaking the other.
///
/// ```
/// use cachet::tiered::{Codec, MsgPack};
///
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// struct Price { cents: u64, currency: String }
///
/// let price = Price { cents: 1999, currency: "EUR".into() };
/// let bytes = MsgPack.encode(&price).unwrap();
/// assert_eq!(MsgPack.decode(bytes).ok(), Some(price));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct MsgPack;

impl<V: Serialize + DeserializeOwned> Codec<V> for MsgPack {
    fn encode(&self, value: &V) -> Result<Vec<u8>, CodecError> {
        Ok(rmp_serde::to_vec_named(value)?)
    }

    fn decode(&self, bytes: Vec<u8>) -> Result<V, CodecError> {
        Ok(rmp_serde::from_slice(&bytes)?)
    }
}

/// No codec: the value's bytes are stored as they are (`Vec<u8>`, `bytes::Bytes`, or a
/// `String` as its UTF-8, which fails to decode if Redis holds other bytes).
#[derive(Clone, Copy, Debug, Default)]
pub struct Raw;

impl Codec<Vec<u8>> for Raw {
    fn encode(&self, value: &Vec<u8>) -> Result<Vec<u8>, CodecError> {
        Ok(value.clone())
    }

    fn decode(&self, bytes: Vec<u8>) -> Result<Vec<u8>, CodecError> {
        Ok(bytes)
    }
}

impl Codec<bytes::Bytes> for Raw {
    fn encode(&self, value: &bytes::Bytes) -> Result<Vec<u8>, CodecError> {
        Ok(value.to_vec())
    }

    fn decode(&self, bytes: Vec<u8>) -> Result<bytes::Bytes, CodecError> {
        Ok(bytes.into())
    }
}

impl Codec<String> for Raw {
    fn encode(&self, value: &String) -> Result<Vec<u8>, CodecError> {
        Ok(value.as_bytes().to_vec())
    }

    fn decode(&self, bytes: Vec<u8>) -> Result<String, CodecError> {
        Ok(String::from_utf8(bytes)?)
    }
}

/// A key's name in Redis (after the cache's prefix), and the way back from a name found in an
/// invalidation message to the key.
///
/// `read_key` must be the exact inverse of `write_key`: it returns `None` for bytes that no key
/// writes (`"042"` for an integer key, which writes `"42"`), so that a change to a Redis key
/// that no key of the cache is named by invalidates nothing.
///
/// ```
/// use cachet::tiered::RedisKey;
///
/// let mut name = Vec::new();
/// 42u64.write_key(&mut name);
/// assert_eq!(name, b"42");
/// assert_eq!(u64::read_key(b"42"), Some(42));
/// assert_eq!(u64::read_key(b"042"), None);
/// ```
pub trait RedisKey: Sized {
    /// Appends the key's name to `out`.
    fn write_key(&self, out: &mut Vec<u8>);

    /// The key whose name is `bytes`, if any.
    fn read_key(bytes: &[u8]) -> Option<Self>;
}

impl RedisKey for String {
    fn write_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }

    fn read_key(bytes: &[u8]) -> Option<Self> {
        std::str::from_utf8(bytes).ok().map(str::to_owned)
    }
}

impl RedisKey for Arc<str> {
    fn write_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }

    fn read_key(bytes: &[u8]) -> Option<Self> {
        std::str::from_utf8(bytes).ok().map(Arc::from)
    }
}

impl RedisKey for Vec<u8> {
    fn write_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }

    fn read_key(bytes: &[u8]) -> Option<Self> {
        Some(bytes.to_vec())
    }
}

macro_rules! integer_keys {
    ($($t:ty),*) => {$(
        impl RedisKey for $t {
            fn write_key(&self, out: &mut Vec<u8>) {
                use std::io::Write as _;
                // Writing to a Vec cannot fail.
                let _ = write!(out, "{self}");
            }

            fn read_key(bytes: &[u8]) -> Option<Self> {
                let text = std::str::from_utf8(bytes).ok()?;
                let key: $t = text.parse().ok()?;
                // Only the canonical spelling: "+7" and "007" are other Redis keys.
                let mut canonical = Vec::with_capacity(bytes.len());
                key.write_key(&mut canonical);
                (canonical == bytes).then_some(key)
            }
        }
    )*};
}

integer_keys!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_keys_read_back_only_their_own_spelling() {
        for k in [0i64, 7, -7, i64::MAX, i64::MIN] {
            let mut name = Vec::new();
            k.write_key(&mut name);
            assert_eq!(i64::read_key(&name), Some(k));
        }
        for other in [&b"+7"[..], b"007", b"-0", b" 7", b"7 ", b"", b"x"] {
            assert_eq!(i64::read_key(other), None, "{other:?}");
        }
        assert_eq!(u8::read_key(b"256"), None);
    }

    #[test]
    fn string_keys_read_back_any_utf8() {
        assert_eq!(String::read_key(b"caf\xc3\xa9").as_deref(), Some("café"));
        assert_eq!(String::read_key(b"\xff"), None);
        assert_eq!(Vec::<u8>::read_key(b"\xff"), Some(vec![0xff]));
    }

    #[test]
    fn raw_string_refuses_other_bytes() {
        assert!(Codec::<String>::decode(&Raw, vec![0xff]).is_err());
        assert_eq!(Codec::<String>::decode(&Raw, b"ok".to_vec()).unwrap(), "ok");
    }

    #[test]
    fn msgpack_writes_fields_by_name() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Price {
            cents: u64,
        }
        let bytes = MsgPack.encode(&Price { cents: 5 }).unwrap();
        // A one-entry map {"cents": 5}: readable without the Rust type.
        assert_eq!(bytes, b"\x81\xa5cents\x05");
    }
}
