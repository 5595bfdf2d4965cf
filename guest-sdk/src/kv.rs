//! A key-value store shared by every worker of the proxy, and by every
//! instance when the host runs on Redis: small keys and values, each
//! expiring after its TTL.
//!
//! Every call can fail ([`KvError`]) when the shared store is down or slow;
//! the host has logged and counted it already, so the policy only decides
//! what the failure means. Fail open with a default:
//!
//! ```no_run
//! use std::time::Duration;
//! use viaduct_guest_sdk::kv;
//!
//! // A rate limit that lets calls through while Redis is away.
//! let calls = kv::increment("rl:192.0.2.1", 1, Duration::from_secs(2)).unwrap_or(1);
//! let _ = kv::set("last-caller", b"alice", None);
//! # let _ = calls;
//! ```
//!
//! Under `[state] on_error = "closed"` the host does not return the error:
//! it aborts the policy call and answers 503, so the policy never sees it.

use std::time::Duration;

use crate::wit::viaduct::policy::kv as raw;
use crate::wit::viaduct::policy::types::KvError as RawError;

/// Why a `kv` call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvError {
    /// The backend cannot be reached or refused the call.
    Unavailable(String),
    /// The backend did not answer within the host's `[state] timeout_ms`.
    Timeout(String),
}

impl std::fmt::Display for KvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KvError::Unavailable(m) => write!(f, "kv unavailable: {m}"),
            KvError::Timeout(m) => write!(f, "kv timed out: {m}"),
        }
    }
}

impl std::error::Error for KvError {}

impl From<RawError> for KvError {
    fn from(e: RawError) -> Self {
        match e {
            RawError::Unavailable(m) => KvError::Unavailable(m),
            RawError::Timeout(m) => KvError::Timeout(m),
        }
    }
}

fn ttl_ms(ttl: Option<Duration>) -> Option<u32> {
    ttl.map(|d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX))
}

/// The value of `key`, if present and not expired.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, KvError> {
    raw::get(key).map_err(Into::into)
}

/// Sets `key`; a `None` TTL keeps it until evicted.
pub fn set(key: &str, value: &[u8], ttl: impl Into<Option<Duration>>) -> Result<(), KvError> {
    raw::set(key, value, ttl_ms(ttl.into())).map_err(Into::into)
}

/// Adds `delta` to the decimal integer at `key` (created at 0 with `ttl`
/// when absent; an existing expiry is not moved, so this counts in a fixed
/// window) in one atomic step, and returns the new value.
pub fn increment(key: &str, delta: i64, ttl: impl Into<Option<Duration>>) -> Result<i64, KvError> {
    raw::increment(key, delta, ttl_ms(ttl.into())).map_err(Into::into)
}

/// Sets `key` to `new` (with a new `ttl`) only if its value is `expected`
/// (`None`: absent), in one atomic step; `Ok(true)` if it did.
///
/// ```no_run
/// use viaduct_guest_sdk::kv;
///
/// // Claim a room once, whichever instance sees the call first.
/// let mine = kv::compare_and_swap("room:42", None, b"instance-a", None).unwrap_or(false);
/// # let _ = mine;
/// ```
pub fn compare_and_swap(
    key: &str,
    expected: Option<&[u8]>,
    new: &[u8],
    ttl: impl Into<Option<Duration>>,
) -> Result<bool, KvError> {
    raw::compare_and_swap(key, expected, new, ttl_ms(ttl.into())).map_err(Into::into)
}

/// Removes `key` (absent is fine).
pub fn delete(key: &str) -> Result<(), KvError> {
    raw::delete(key).map_err(Into::into)
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

    #[test]
    fn errors_name_their_kind() {
        let e: KvError = RawError::Timeout("250 ms".into()).into();
        assert_eq!(e.to_string(), "kv timed out: 250 ms");
    }
}
