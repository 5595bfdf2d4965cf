//! The in-memory backend: a moka cache with a per-entry TTL, shared by all
//! workers of this process. It never fails.
//!
//! `increment` and `compare_and_swap` are atomic through moka's entry API,
//! which runs one closure at a time per key.

use super::{parse_counter, State, StateError};
use moka::ops::compute::Op;
use moka::sync::Cache;
use moka::Expiry;
use std::time::{Duration, Instant};

/// Entries kept at most; past it moka evicts the least useful ones.
const MAX_ENTRIES: u64 = 1_000_000;

#[derive(Debug, Clone)]
struct Entry {
    value: Vec<u8>,
    expiry: NewExpiry,
}

/// What a write does to the entry's expiry.
#[derive(Debug, Clone, Copy)]
enum NewExpiry {
    /// `set`, `compare_and_swap`, a new counter: this TTL, or none.
    Replace(Option<Duration>),
    /// An increment of an existing counter: keep its expiry; one without
    /// gets this TTL (Redis' `PEXPIRE … NX`).
    KeepOrSet(Option<Duration>),
}

struct PerEntryTtl;

impl Expiry<Vec<u8>, Entry> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &Vec<u8>,
        value: &Entry,
        _now: Instant,
    ) -> Option<Duration> {
        match value.expiry {
            NewExpiry::Replace(ttl) | NewExpiry::KeepOrSet(ttl) => ttl,
        }
    }
    fn expire_after_update(
        &self,
        _key: &Vec<u8>,
        value: &Entry,
        _now: Instant,
        current: Option<Duration>,
    ) -> Option<Duration> {
        match value.expiry {
            NewExpiry::Replace(ttl) => ttl,
            NewExpiry::KeepOrSet(ttl) => current.or(ttl),
        }
    }
}

/// The embedded state: this process only.
#[derive(Debug)]
pub struct MemoryState {
    cache: Cache<Vec<u8>, Entry>,
}

impl Default for MemoryState {
    fn default() -> Self {
        MemoryState {
            cache: Cache::builder()
                .max_capacity(MAX_ENTRIES)
                .expire_after(PerEntryTtl)
                .build(),
        }
    }
}

/// A TTL as the cache keeps it (at least 1 ms, as Redis has it).
fn ttl(ttl: Option<Duration>) -> Option<Duration> {
    ttl.map(|t| Duration::from_millis(super::ttl_ms(t)))
}

impl State for MemoryState {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.cache.get(key).map(|e| e.value))
    }

    fn set(&self, key: &[u8], value: Vec<u8>, ttl_: Option<Duration>) -> Result<(), StateError> {
        let expiry = NewExpiry::Replace(ttl(ttl_));
        self.cache.insert(key.to_vec(), Entry { value, expiry });
        Ok(())
    }

    fn increment(&self, key: &[u8], delta: i64, ttl_: Option<Duration>) -> Result<i64, StateError> {
        let ttl = ttl(ttl_);
        let mut result = delta;
        self.cache.entry_by_ref(key).and_upsert_with(|old| {
            let sum = old
                .as_ref()
                .and_then(|e| parse_counter(&e.value().value))
                .and_then(|current| current.checked_add(delta));
            let expiry = match sum {
                Some(_) => NewExpiry::KeepOrSet(ttl),
                // Absent, not an integer, or past i64: a fresh counter.
                None => NewExpiry::Replace(ttl),
            };
            result = sum.unwrap_or(delta);
            Entry {
                value: result.to_string().into_bytes(),
                expiry,
            }
        });
        Ok(result)
    }

    fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
        ttl_: Option<Duration>,
    ) -> Result<bool, StateError> {
        let mut swapped = false;
        self.cache.entry_by_ref(key).and_compute_with(|current| {
            if current.as_ref().map(|e| &e.value().value) != expected.as_ref() {
                return Op::Nop;
            }
            swapped = true;
            Op::Put(Entry {
                value: new,
                expiry: NewExpiry::Replace(ttl(ttl_)),
            })
        });
        Ok(swapped)
    }

    fn delete(&self, key: &[u8]) -> Result<(), StateError> {
        self.cache.invalidate(key);
        Ok(())
    }
}
