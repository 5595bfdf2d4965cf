//! Test policy `spin`: `on_request` never returns, so the host's epoch
//! deadline has to interrupt it.
#![deny(missing_docs)]

use viaduct_guest_sdk::{clock, export_policy, Config, Decision, Policy, Request};

/// Spins on every request.
pub struct Spin;

impl Policy for Spin {
    fn init(_config: &Config) -> Result<Self, String> {
        Ok(Spin)
    }

    fn on_request(&self, _req: &Request) -> Decision {
        // A host call each turn: the optimiser cannot prove the loop ends or
        // remove it.
        while clock::now_ms() != 0 {}
        Decision::relay()
    }
}

export_policy!(Spin);
