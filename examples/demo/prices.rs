//! Price changes while the service runs (the SQLite catalog itself is read-only): each
//! product's current price and its version, applied to every page the loader renders, and,
//! per product, the newest version whose change had reached every cache when it was confirmed.
//! The load generator checks each page it receives against the latter: a page whose version is
//! older than one confirmed before the request was sent is a stale read.

// Only the Redis scenarios change prices.
#![cfg_attr(not(feature = "redis"), allow(dead_code))]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use crate::db::ProductPage;

/// Cheap to clone: clones share the prices.
#[derive(Clone, Default)]
pub struct Prices {
    changes: Arc<Mutex<HashMap<u64, Change>>>,
}

#[derive(Clone, Copy)]
struct Change {
    /// Added to the catalog's price.
    delta_cents: i64,
    version: u64,
    /// The newest version that had reached every cache, and when that was known.
    confirmed: Option<(u64, Instant)>,
}

impl Prices {
    /// Sets the page's price and version to the current ones (version 0: never changed).
    pub fn apply(&self, page: &mut ProductPage) {
        if let Some(c) = self.changes.lock().get(&page.id) {
            page.price_cents += c.delta_cents;
            page.price_version = c.version;
        }
    }

    /// Changes product `id`'s price (one cent up); returns the new version.
    pub fn change(&self, id: u64) -> u64 {
        let mut changes = self.changes.lock();
        let c = changes.entry(id).or_insert(Change {
            delta_cents: 0,
            version: 0,
            confirmed: None,
        });
        c.delta_cents += 1;
        c.version += 1;
        c.version
    }

    /// Version `version` of `id` has reached every cache.
    pub fn confirm(&self, id: u64, version: u64) {
        if let Some(c) = self.changes.lock().get_mut(&id) {
            if c.confirmed.is_none_or(|(v, _)| v < version) {
                c.confirmed = Some((version, Instant::now()));
            }
        }
    }

    /// Whether a page of `id` at `version`, asked for at `sent`, is older than a version
    /// confirmed before it was asked for.
    pub fn is_stale(&self, id: u64, version: u64, sent: Instant) -> bool {
        match self.changes.lock().get(&id).and_then(|c| c.confirmed) {
            Some((confirmed, at)) => at < sent && version < confirmed,
            None => false,
        }
    }
}

/// The `price_version` of a page's JSON.
pub fn version_of(json: &[u8]) -> Option<u64> {
    const FIELD: &[u8] = br#""price_version":"#;
    let at = json.windows(FIELD.len()).position(|w| w == FIELD)? + FIELD.len();
    let digits = json[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&json[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn versions_and_staleness() {
        let prices = Prices::default();
        let before = Instant::now();
        assert_eq!((prices.change(7), prices.change(7)), (1, 2));
        assert!(
            !prices.is_stale(7, 0, Instant::now()),
            "nothing confirmed yet"
        );
        prices.confirm(7, 2);
        let after = Instant::now() + Duration::from_millis(1);
        assert!(prices.is_stale(7, 1, after));
        assert!(!prices.is_stale(7, 2, after));
        assert!(
            !prices.is_stale(7, 1, before),
            "asked for before the confirmation"
        );
        assert!(!prices.is_stale(8, 0, after));
    }

    #[test]
    fn version_from_json() {
        assert_eq!(
            version_of(br#"{"id":1,"price_cents":5,"price_version":12,"x":1}"#),
            Some(12)
        );
        assert_eq!(version_of(br#"{"id":1}"#), None);
    }
}
