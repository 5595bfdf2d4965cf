//! `registrar`: the proxy as registrar for the agents and softphones
//! behind it, and calls to them.
//!
//! * REGISTER is stored by the host (`Decision::register`): bindings with
//!   their expiry, `Path` and the connection they came on, in the shared
//!   state, so every instance that shares it finds them. With `realm` set,
//!   the REGISTER must first prove a password for that realm (401 with a
//!   digest challenge), and the authenticated user must be the user of the
//!   To AOR (RFC 3261 §10.3 step 6: 403 otherwise). Off by default.
//! * Any other initial request whose Request-URI is a registered AOR goes
//!   to its contacts: all at once (`fork = "parallel"`, the default: the
//!   first 2xx wins, the other branches are cancelled) or one after the
//!   other by q-value (`fork = "serial"`).
//! * Anything else is relayed (or forwarded to `next_hop`).
//!
//! When the shared state is down the lookup fails and the request gets
//! `503` with `Retry-After: 5`: the contacts cannot be known.
#![deny(missing_docs)]

use viaduct_guest_sdk::{
    export_policy, log, metrics, registrar, Config, Decision, Policy, Request,
};

/// How several contacts of one AOR are tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fork {
    Parallel,
    Serial,
}

/// The policy: digest realm (if any), fork mode, where the rest goes.
pub struct Registrar {
    realm: Option<String>,
    fork: Fork,
    next_hop: Option<String>,
}

impl Policy for Registrar {
    fn init(config: &Config) -> Result<Self, String> {
        let fork = match config.get("fork").unwrap_or("parallel") {
            "parallel" => Fork::Parallel,
            "serial" => Fork::Serial,
            other => {
                return Err(format!(
                    "registrar: fork = {other:?}; use \"parallel\" or \"serial\""
                ))
            }
        };
        Ok(Registrar {
            realm: config
                .get("realm")
                .filter(|r| !r.is_empty())
                .map(String::from),
            fork,
            next_hop: config.get("next_hop").map(String::from),
        })
    }

    fn on_request(&self, req: &Request) -> Decision {
        if req.method() == "REGISTER" {
            return self.register(req);
        }
        match registrar::lookup(&req.request_uri()) {
            Ok(contacts) if !contacts.is_empty() => {
                metrics::counter("registered_calls", &[], 1);
                match self.fork {
                    Fork::Parallel => Decision::fork(contacts),
                    Fork::Serial => Decision::forward_targets(contacts),
                }
            }
            Ok(_) => match &self.next_hop {
                Some(hop) => Decision::forward([hop]),
                None => Decision::relay(),
            },
            Err(e) => {
                log::warn(&format!("registrar lookup failed: {e}; answering 503"));
                Decision::reject(503, "Registrar Unavailable").with_header("Retry-After", "5")
            }
        }
    }
}

impl Registrar {
    fn register(&self, req: &Request) -> Decision {
        let Some(realm) = &self.realm else {
            return Decision::register();
        };
        match req.authenticated_user(realm) {
            None => Decision::challenge(realm),
            Some(user) if Some(user.as_str()) == uri_user(&req.to_uri()) => Decision::register(),
            Some(user) => {
                log::info(&format!(
                    "{user} may not register {}; answering 403",
                    req.to_uri()
                ));
                Decision::reject(403, "Forbidden")
            }
        }
    }
}

export_policy!(Registrar);

/// The user part of a SIP URI (`bob` in `sip:bob@example.com:5060`).
fn uri_user(uri: &str) -> Option<&str> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))?;
    let (user, _) = rest.split_once('@')?;
    Some(user.split_once(':').map_or(user, |(u, _)| u))
}

#[cfg(test)]
mod tests {
    use super::uri_user;

    #[test]
    fn user_of_an_aor() {
        assert_eq!(uri_user("sip:bob@127.0.0.1"), Some("bob"));
        assert_eq!(uri_user("sips:bob:secret@example.com:5061"), Some("bob"));
        assert_eq!(uri_user("sip:example.com"), None);
        assert_eq!(uri_user("tel:+15551234"), None);
    }
}
