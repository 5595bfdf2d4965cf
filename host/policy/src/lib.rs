//! The Wasm policy host: runs `viaduct:policy@0.3.0` components (see
//! `wit/policy.wit`) as the proxy core's [`viaduct_proxy::Router`].
//!
//! * [`PolicyHost`] owns the wasmtime engine (Cranelift, component model,
//!   epoch interruption with a ticker thread that parks when no policy runs), the linker (WASI p2 with no
//!   files, network or environment, plus our `log`, `metrics`, `kv`, `clock`
//!   imports), and the current policy version. [`PolicyHost::reload`] compiles
//!   a file (or loads its cached native code, keyed by SHA-256), links it
//!   (a component for another world is refused here), runs `init` in a fresh
//!   instance, and only then swaps it in.
//! * [`PolicyRouter`] is per worker: one long-lived instance per version, each
//!   call under an epoch deadline and a memory cap (`StoreLimits`); a trap,
//!   timeout or memory exhaustion gives the configured [`FailAction`], a log
//!   line and a counter, and the instance is replaced on the next call.
//! * [`state`] is what the `kv` import reads and writes: in memory, or a
//!   Redis shared by several instances. A failed `kv` call reads as an empty
//!   state ([`state::OnError::Open`]) or answers the request 503 with
//!   `Retry-After: 5` ([`state::OnError::Closed`]); time blocked in `kv`
//!   does not count against the call deadline (each call has the backend's
//!   own timeout).
//! * [`registrar`] keeps REGISTER bindings (RFC 3261 §10.3, RFC 3327 Path)
//!   in that same state, for the host to answer REGISTER and for a policy's
//!   `lookup`.
//!
//! Instance strategy, measured with `cargo bench -p viaduct-policy --bench
//! policy_call` (x-room-id, one `on-request` including building the request
//! handle; 2-core VM, wasmtime 48): a long-lived instance per worker costs
//! 2.0 µs per call with the 5 ms deadline and 64 MiB cap (1.9 µs without
//! them), a fresh instance plus `init` per call 43 µs. Both give the same
//! isolation between *requests* that a policy cannot break out of: the policy
//! only sees what the host hands it, and a trapped instance is thrown away.
//! Per-worker instances are the default; [`InstanceStrategy::PerCall`] is there
//! for policies that must not keep state between calls.
//!
//! Not here: watching files and signals (the binary does that and calls
//! `reload`), SIP itself (the proxy core), Prometheus export (the binary
//! renders [`PolicyHost::calls`] and [`PolicyStats`]).
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod bindings;
mod cache;
mod calls;
mod epoch;
mod host;
pub mod registrar;
mod registrar_glue;
mod request;
mod router;
pub mod state;
mod store;

pub use calls::{CallOutcome, VersionCalls, WorkerCalls, DURATION_BUCKETS, VERSION_SLOTS};
pub use host::{FailAction, LoadError, PolicyHost, PolicySettings, Version};
pub use router::{InstanceStrategy, PolicyRouter, UNTRUSTED_HEADERS};
pub use store::Shared;

use std::net::IpAddr;
use std::sync::atomic::AtomicU64;

/// Reload counters of the policy host (calls are counted per worker, see [`WorkerCalls`]).
#[derive(Debug, Default)]
pub struct PolicyStats {
    /// Versions loaded.
    pub reloads_ok: AtomicU64,
    /// Versions refused.
    pub reloads_failed: AtomicU64,
}

/// A short reason for a failed call: timeout, out of memory, or the trap.
pub(crate) fn describe_trap(e: &wasmtime::Error) -> String {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => "deadline exceeded".into(),
        Some(t) => format!("trap: {t}"),
        None => {
            let s = format!("{e:#}");
            if s.contains("memory") {
                format!("out of memory: {s}")
            } else {
                s
            }
        }
    }
}

/// Parses `10.0.0.0/8`, `::1/128` or a bare address.
pub fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, bits) = match s.split_once('/') {
        Some((ip, bits)) => (ip.parse::<IpAddr>().ok()?, bits.parse::<u8>().ok()?),
        None => {
            let ip = s.parse::<IpAddr>().ok()?;
            (ip, if ip.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((ip, bits))
}

/// True when `ip` is inside `net/bits`.
pub fn cidr_contains(net: IpAddr, bits: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(bits))
            };
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(bits))
            };
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let (n, b) = parse_cidr("10.0.0.0/8").unwrap();
        assert!(cidr_contains(n, b, "10.1.2.3".parse().unwrap()));
        assert!(!cidr_contains(n, b, "11.0.0.1".parse().unwrap()));
        let (n, b) = parse_cidr("::1").unwrap();
        assert!(cidr_contains(n, b, "::1".parse().unwrap()));
        assert!(!cidr_contains(n, b, "127.0.0.1".parse().unwrap()));
        assert!(parse_cidr("10.0.0.0/33").is_none());
    }
}
