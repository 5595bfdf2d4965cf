//! The Rust SDK for writing [Viaduct](https://github.com/) routing policies.
//!
//! A policy is a WebAssembly component that Viaduct calls for every initial
//! (out-of-dialog) SIP request. It reads what it needs from the [`Request`],
//! may edit it, and returns a [`Decision`]: forward to targets with failover,
//! reject, redirect, relay by plain RFC 3261 rules, or drop.
//!
//! ```no_run
//! use viaduct_guest_sdk::{export_policy, Config, Decision, Policy, Request};
//!
//! struct Backends(Vec<String>);
//!
//! impl Policy for Backends {
//!     fn init(config: &Config) -> Result<Self, String> {
//!         Ok(Backends(config.list("backends").into_iter().map(String::from).collect()))
//!     }
//!
//!     fn on_request(&self, req: &Request) -> Decision {
//!         if req.method() != "INVITE" {
//!             return Decision::relay();
//!         }
//!         req.set_header("X-Routed-By", "viaduct");
//!         Decision::forward(&self.0)
//!     }
//! }
//!
//! export_policy!(Backends);
//! # fn main() {}
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`: the
//! `cdylib` that comes out is a component of the `viaduct:policy/policy@0.3.0`
//! world, ready for `viaduct --policy`.
//!
//! What this crate does not do: it does not run anything by itself, keep state
//! across instances (use [`kv`]), or make network calls. The host functions
//! ([`log`], [`metrics`], [`kv`], [`registrar`], [`clock`]) only work inside Viaduct; on a
//! native target they compile (so `cargo test` and `cargo clippy` work on
//! policy crates) but panic when called.
#![deny(missing_docs)]

mod cidr;
pub mod clock;
mod config;
mod decision;
#[doc(hidden)]
pub mod export;
pub mod kv;
pub mod log;
pub mod metrics;
pub mod registrar;
mod request;

pub use cidr::Cidr;
pub use config::Config;
pub use decision::{Decision, Target};
pub use request::{Request, Transport};

/// A routing policy: the trait behind [`export_policy!`].
///
/// One value of the type is built by [`Policy::init`] per Wasm instance and
/// then shared by every request that instance serves, so it holds
/// configuration, not per-call state (use [`kv`] for counters that must
/// outlive a call or be shared between instances).
pub trait Policy: Sized + 'static {
    /// Builds the policy from the `[policy.config]` table of the proxy
    /// config. An `Err` refuses this policy version (the previous one keeps
    /// running on a hot reload).
    fn init(config: &Config) -> Result<Self, String>;

    /// Decides what to do with an initial request.
    fn on_request(&self, req: &Request) -> Decision;

    /// Called when a target of a [`Decision::forward`] failed with `code`
    /// (408 on timeout, 503, ...). The default, [`Decision::next`], tries the
    /// next target, or answers the best response received when none is left.
    fn on_failure(&self, _req: &Request, _code: u16) -> Decision {
        Decision::next()
    }
}

// The guide's example must keep compiling.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// The generated bindings of the `viaduct:policy/policy` world. Not part of
/// the API: use the types at the crate root.
#[doc(hidden)]
#[allow(unsafe_code, missing_docs, clippy::all)]
pub mod wit {
    wit_bindgen::generate!({
        path: "../wit",
        world: "policy",
        pub_export_macro: true,
        export_macro_name: "__export_policy_world",
        default_bindings_module: "::viaduct_guest_sdk::wit",
    });
}
