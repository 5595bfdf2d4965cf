//! Test policies `stamp-v1` and `stamp-v2` (one source, two packages): add
//! `X-Policy-Stamp: v1` (or `v2`) and relay, so a test can tell which version
//! of a hot-reloaded policy served a request.
#![deny(missing_docs)]

use viaduct_guest_sdk::{export_policy, Config, Decision, Policy, Request};

/// `v1` or `v2`, from the package name.
const STAMP: &str = match env!("CARGO_PKG_NAME").as_bytes() {
    b"stamp-v2" => "v2",
    _ => "v1",
};

/// Stamps every request.
pub struct Stamp;

impl Policy for Stamp {
    fn init(_config: &Config) -> Result<Self, String> {
        Ok(Stamp)
    }

    fn on_request(&self, req: &Request) -> Decision {
        req.set_header("X-Policy-Stamp", STAMP);
        Decision::relay()
    }
}

export_policy!(Stamp);
