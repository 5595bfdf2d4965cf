//! The in-memory `kv` backend: a moka cache with a per-entry TTL.
//!
//! Shared by all workers; `increment` is atomic through moka's entry API.

use moka::sync::Cache;
use moka::Expiry;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
struct Entry {
    value: Vec<u8>,
    ttl: Option<Duration>,
}

struct PerEntryTtl;

impl Expiry<String, Entry> for PerEntryTtl {
    fn expire_after_create(&self, _key: &String, value: &Entry, _now: Instant) -> Option<Duration> {
        value.ttl
    }
    fn expire_after_update(
        &self,
        _key: &String,
        value: &Entry,
        _now: Instant,
        current: Option<Duration>,
    ) -> Option<Duration> {
        // An increment keeps the window it started with; a set starts a new one.
        value.ttl.or(current)
    }
}

/// Policy key-value store.
#[derive(Debug)]
pub struct Kv {
    cache: Cache<String, Entry>,
}

impl Default for Kv {
    fn default() -> Self {
        Kv {
            cache: Cache::builder()
                .max_capacity(1_000_000)
                .expire_after(PerEntryTtl)
                .build(),
        }
    }
}

impl Kv {
    /// The value, if present.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.cache.get(key).map(|e| e.value)
    }

    /// Sets a value.
    pub fn set(&self, key: String, value: Vec<u8>, ttl_ms: Option<u32>) {
        self.cache.insert(
            key,
            Entry {
                value,
                ttl: ttl_ms.map(|t| Duration::from_millis(u64::from(t))),
            },
        );
    }

    /// Adds to an integer stored as 8 little-endian bytes; one atomic step.
    pub fn increment(&self, key: String, delta: i64, ttl_ms: Option<u32>) -> i64 {
        let ttl = ttl_ms.map(|t| Duration::from_millis(u64::from(t)));
        let entry = self.cache.entry(key).and_upsert_with(|old| {
            let current = old
                .as_ref()
                .and_then(|e| <[u8; 8]>::try_from(e.value().value.as_slice()).ok())
                .map(i64::from_le_bytes)
                .unwrap_or(0);
            let ttl = if old.is_some() { None } else { ttl };
            Entry {
                value: current.saturating_add(delta).to_le_bytes().to_vec(),
                ttl,
            }
        });
        <[u8; 8]>::try_from(entry.value().value.as_slice())
            .map(i64::from_le_bytes)
            .unwrap_or(0)
    }

    /// Removes a key.
    pub fn delete(&self, key: &str) {
        self.cache.invalidate(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increment_is_counted_and_expires() {
        let kv = Kv::default();
        assert_eq!(kv.increment("a".into(), 1, Some(50)), 1);
        assert_eq!(kv.increment("a".into(), 2, Some(50)), 3);
        kv.set("b".into(), b"x".to_vec(), None);
        assert_eq!(kv.get("b"), Some(b"x".to_vec()));
        kv.delete("b");
        assert_eq!(kv.get("b"), None);
        std::thread::sleep(Duration::from_millis(120));
        kv.cache.run_pending_tasks();
        assert_eq!(kv.get("a"), None);
    }
}
