//! Time and randomness from the host (no WASI needed).

use crate::wit::viaduct::policy::clock as raw;

/// Wall-clock time, milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    raw::now_ms()
}

/// 64 random bits from the host's generator (for session ids).
///
/// ```no_run
/// let id = format!("{:016x}{:016x}", viaduct_guest_sdk::clock::random_u64(), viaduct_guest_sdk::clock::random_u64());
/// # let _ = id;
/// ```
pub fn random_u64() -> u64 {
    raw::random_u64()
}
