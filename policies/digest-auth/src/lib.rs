//! `digest-auth`: only callers who prove a password get through.
//!
//! Requests whose method is in `methods` (default `INVITE, REGISTER,
//! MESSAGE, SUBSCRIBE, REFER`) must carry digest credentials for `realm`
//! that the host verified; the rest (OPTIONS keep-alives, ACK, ...) pass
//! as they are. Without credentials the host answers 407 (SHA-256 and MD5
//! offered), with a wrong password 403. What passes is relayed, or
//! forwarded to `next_hop`. Users and their HA1s live in the proxy's
//! `[auth]` config (or its kv), not here: the policy never sees a password.
#![deny(missing_docs)]

use viaduct_guest_sdk::{export_policy, Config, Decision, Policy, Request};

/// The methods challenged when `methods` is not set: the ones that start
/// something a stranger should not (CANCEL and ACK cannot be challenged,
/// RFC 3261 §22.1; they never reach a policy anyway).
const DEFAULT_METHODS: [&str; 5] = ["INVITE", "REGISTER", "MESSAGE", "SUBSCRIBE", "REFER"];

/// The policy: the realm, the challenged methods and where to send what passes.
pub struct DigestAuth {
    realm: String,
    methods: Vec<String>,
    next_hop: Option<String>,
}

impl Policy for DigestAuth {
    fn init(config: &Config) -> Result<Self, String> {
        let realm = config
            .get("realm")
            .filter(|r| !r.is_empty())
            .ok_or("digest-auth: set realm (the name callers' credentials are for)")?
            .to_owned();
        let methods = match config.get("methods") {
            Some(_) => config
                .list("methods")
                .into_iter()
                .map(str::to_ascii_uppercase)
                .collect(),
            None => DEFAULT_METHODS.iter().map(|m| (*m).to_owned()).collect(),
        };
        Ok(DigestAuth {
            realm,
            methods,
            next_hop: config.get("next_hop").map(String::from),
        })
    }

    fn on_request(&self, req: &Request) -> Decision {
        if self.methods.contains(&req.method()) && req.authenticated_user(&self.realm).is_none() {
            return Decision::challenge(&self.realm);
        }
        match &self.next_hop {
            Some(hop) => Decision::forward([hop]),
            None => Decision::relay(),
        }
    }
}

export_policy!(DigestAuth);
