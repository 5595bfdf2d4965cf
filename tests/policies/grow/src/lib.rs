//! Test policy `grow`: `on_request` allocates and writes memory without
//! bound, so the host's memory cap has to stop it (the failed allocation
//! aborts: a trap).
#![deny(missing_docs)]

use std::hint::black_box;

use viaduct_guest_sdk::{export_policy, Config, Decision, Policy, Request};

/// Grows on every request.
pub struct Grow;

impl Policy for Grow {
    fn init(_config: &Config) -> Result<Self, String> {
        Ok(Grow)
    }

    fn on_request(&self, _req: &Request) -> Decision {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            // 1 MiB, every page written: memory really grows.
            hoard.push(black_box(vec![0xa5; 1 << 20]));
            black_box(&hoard);
        }
    }
}

export_policy!(Grow);
