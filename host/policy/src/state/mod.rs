//! The shared state of DESIGN §6: one narrow interface ([`State`]: get, set
//! with a TTL, increment with a TTL, compare-and-swap, delete) and two
//! backends behind it.
//!
//! * [`MemoryState`]: a moka cache in this process, the embedded default
//!   (nothing to install, nothing shared between instances, never fails).
//! * [`RedisState`]: one Redis shared by several Viaduct instances, the way
//!   LiveKit SIP and Kamailio's `ndb_redis` share theirs. Every call is
//!   bounded by a timeout and fails with a [`StateError`] instead of hanging;
//!   the proxy starts, and keeps serving, while Redis is down.
//!
//! Keys and values are bytes. Both backends keep the same contract, which
//! `tests/state.rs` runs against each:
//!
//! * a TTL of `None` keeps a key until it is deleted (or, in memory, evicted);
//!   `set` and a successful `compare_and_swap` start a new TTL (or none);
//! * `increment` treats the value as a decimal integer (a counter reads back
//!   as `b"42"`, as Redis stores it). An absent key starts at 0 with the TTL;
//!   an increment never moves an existing expiry, so `increment(k, 1, 2 s)`
//!   counts in a fixed window of 2 s. A counter that has no expiry gets the
//!   TTL (Redis' `PEXPIRE … NX`). A value that is not an integer, or a sum
//!   past `i64`, restarts the counter at `delta` with the TTL;
//! * a zero TTL counts as 1 ms (Redis refuses `PX 0`).
//!
//! What the caller does with an error is its choice: the policy host applies
//! [`OnError`]. Errors are counted ([`State::errors`]) and logged at most once
//! per [`LOG_INTERVAL`] and kind, with the number seen since the last line.
//!
//! Not here: the policy-facing `kv` import (`bindings.rs` maps it onto
//! [`State`]), Prometheus export (the binary renders [`ErrorCounts`]).

mod errors;
mod memory;
mod redis;

pub use self::redis::{OpenError, RedisSettings, RedisState};
pub use errors::{ErrorCounts, ErrorKind, ErrorLog, LOG_INTERVAL};
pub use memory::MemoryState;

use std::sync::Arc;
use std::time::Duration;

/// Why a state call failed. The message names the backend's reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The backend cannot be reached, refused the call, or is reconnecting.
    #[error("state unavailable: {0}")]
    Unavailable(String),
    /// The backend did not answer within the timeout.
    #[error("state timed out: {0}")]
    Timeout(String),
}

impl StateError {
    /// The kind, for counters and log limiting.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StateError::Unavailable(_) => ErrorKind::Unavailable,
            StateError::Timeout(_) => ErrorKind::Timeout,
        }
    }
}

/// A state operation, for counters and log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateOp {
    /// [`State::get`]
    Get,
    /// [`State::set`]
    Set,
    /// [`State::increment`]
    Increment,
    /// [`State::compare_and_swap`]
    CompareAndSwap,
    /// [`State::delete`]
    Delete,
}

impl StateOp {
    /// Every operation, in index order.
    pub const ALL: [StateOp; 5] = [
        StateOp::Get,
        StateOp::Set,
        StateOp::Increment,
        StateOp::CompareAndSwap,
        StateOp::Delete,
    ];

    /// The `op` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            StateOp::Get => "get",
            StateOp::Set => "set",
            StateOp::Increment => "increment",
            StateOp::CompareAndSwap => "compare_and_swap",
            StateOp::Delete => "delete",
        }
    }
}

/// The shared state: synchronous calls (policy imports run on the worker
/// threads, outside any async runtime), each bounded by the backend.
pub trait State: Send + Sync + std::fmt::Debug {
    /// The value, if present and not expired.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;

    /// Sets a value with a new TTL (`None`: no expiry).
    fn set(&self, key: &[u8], value: Vec<u8>, ttl: Option<Duration>) -> Result<(), StateError>;

    /// Adds `delta` to a counter in one atomic step and returns the new value
    /// (see the module doc for absent keys, TTLs and non-integers).
    fn increment(&self, key: &[u8], delta: i64, ttl: Option<Duration>) -> Result<i64, StateError>;

    /// Sets `key` to `new` (with a new TTL) only if its value is `expected`,
    /// `None` meaning absent; true if it did. One atomic step.
    fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<bool, StateError>;

    /// Removes a key (absent is fine).
    fn delete(&self, key: &[u8]) -> Result<(), StateError>;

    /// Errors so far, by operation and kind.
    fn errors(&self) -> ErrorCounts {
        ErrorCounts::default()
    }
}

/// A backend that answers every call with the same error: what a Redis
/// that stays down looks like, for tests of the failure paths (the
/// registrar's 503, the policy's `kv-error`, digest replay checks).
#[derive(Debug, Clone)]
pub struct Down(pub StateError);

impl State for Down {
    fn get(&self, _: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Err(self.0.clone())
    }
    fn set(&self, _: &[u8], _: Vec<u8>, _: Option<Duration>) -> Result<(), StateError> {
        Err(self.0.clone())
    }
    fn increment(&self, _: &[u8], _: i64, _: Option<Duration>) -> Result<i64, StateError> {
        Err(self.0.clone())
    }
    fn compare_and_swap(
        &self,
        _: &[u8],
        _: Option<Vec<u8>>,
        _: Vec<u8>,
        _: Option<Duration>,
    ) -> Result<bool, StateError> {
        Err(self.0.clone())
    }
    fn delete(&self, _: &[u8]) -> Result<(), StateError> {
        Err(self.0.clone())
    }
}

/// What a failed state call means for the request that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// Carry on as if the state were empty: get finds nothing, set and
    /// delete do nothing, increment returns `delta` (a fresh counter), so a
    /// rate limit lets calls through.
    #[default]
    Open,
    /// Abort the policy call; the request gets `503 Service Unavailable`
    /// with `Retry-After: 5`.
    Closed,
}

/// Which backend, and how to reach it.
#[derive(Debug, Clone, Default)]
pub enum Backend {
    /// In this process.
    #[default]
    Memory,
    /// A Redis server.
    Redis(RedisSettings),
}

/// Opens a backend. Redis is not required to be up: a refused first
/// connection is logged and retried in the background. Only a URL that
/// cannot be used at all is an error.
pub fn open(backend: &Backend) -> Result<Arc<dyn State>, OpenError> {
    Ok(match backend {
        Backend::Memory => Arc::new(MemoryState::default()),
        Backend::Redis(settings) => Arc::new(RedisState::open(settings.clone())?),
    })
}

/// A TTL as whole milliseconds, at least 1 (see the module doc).
pub(crate) fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Parses a counter as Redis does (`string2ll`): `0`, or an optional `-`
/// and decimal digits without a leading zero.
pub(crate) fn parse_counter(value: &[u8]) -> Option<i64> {
    if value == b"0" {
        return Some(0);
    }
    let digits = value.strip_prefix(b"-").unwrap_or(value);
    if digits.is_empty() || digits[0] == b'0' || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_parse_as_redis_parses_them() {
        assert_eq!(parse_counter(b"42"), Some(42));
        assert_eq!(parse_counter(b"-7"), Some(-7));
        assert_eq!(parse_counter(b"0"), Some(0));
        assert_eq!(parse_counter(b"9223372036854775807"), Some(i64::MAX));
        for bad in [
            &b""[..],
            b"+1",
            b"007",
            b"-0",
            b" 1",
            b"1.0",
            b"abc",
            b"9223372036854775808",
        ] {
            assert_eq!(
                parse_counter(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(ttl_ms(Duration::ZERO), 1);
        assert_eq!(ttl_ms(Duration::from_micros(2500)), 2);
    }
}
