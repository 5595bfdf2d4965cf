//! A key-value store shared by every worker of the proxy: small keys and
//! values, each expiring after its TTL.
//!
//! ```no_run
//! use std::time::Duration;
//! use viaduct_guest_sdk::kv;
//!
//! let calls = kv::increment("rl:192.0.2.1", 1, Duration::from_secs(2));
//! kv::set("last-caller", b"alice", None);
//! # let _ = calls;
//! ```

use std::time::Duration;

use crate::wit::viaduct::policy::kv as raw;

fn ttl_ms(ttl: Option<Duration>) -> Option<u32> {
    ttl.map(|d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX))
}

/// The value of `key`, if present and not expired.
pub fn get(key: &str) -> Option<Vec<u8>> {
    raw::get(key)
}

/// Sets `key`; a `None` TTL keeps it until evicted.
pub fn set(key: &str, value: &[u8], ttl: impl Into<Option<Duration>>) {
    raw::set(key, value, ttl_ms(ttl.into()))
}

/// Adds `delta` to the integer at `key` (created at 0 with `ttl` when
/// absent) in one atomic step, and returns the new value.
pub fn increment(key: &str, delta: i64, ttl: impl Into<Option<Duration>>) -> i64 {
    raw::increment(key, delta, ttl_ms(ttl.into()))
}

/// Removes `key`.
pub fn delete(key: &str) {
    raw::delete(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_saturates_at_u32_millis() {
        assert_eq!(ttl_ms(Some(Duration::from_secs(2))), Some(2000));
        assert_eq!(ttl_ms(Some(Duration::from_secs(u64::MAX))), Some(u32::MAX));
        assert_eq!(ttl_ms(None), None);
    }
}
