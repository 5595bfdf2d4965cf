//! `allowlist`: lets a call through only from known networks, known callers,
//! to known numbers.
//!
//! Checked in this order, each only when its config key is set:
//! `sources` (CIDRs) else `403 Forbidden`; `callers` (patterns for the From
//! user) else `403 Forbidden`; `numbers` (patterns for the Request-URI user)
//! else `404 Not Found`. What passes is relayed, or forwarded to `next_hop`.
#![deny(missing_docs)]

mod pattern;

use pattern::{uri_user, Pattern};
use viaduct_guest_sdk::{export_policy, Cidr, Config, Decision, Policy, Request};

/// The policy: the parsed allowlists.
pub struct Allowlist {
    sources: Option<Vec<Cidr>>,
    callers: Option<Vec<Pattern>>,
    numbers: Option<Vec<Pattern>>,
    next_hop: Option<String>,
}

impl Policy for Allowlist {
    fn init(config: &Config) -> Result<Self, String> {
        let list = |key| -> Option<Vec<&str>> { config.get(key).map(|_| config.list(key)) };
        let sources = list("sources")
            .map(|l| {
                l.into_iter()
                    .map(str::parse)
                    .collect::<Result<Vec<Cidr>, _>>()
            })
            .transpose()?;
        let patterns = |key| list(key).map(|l| l.into_iter().map(Pattern::new).collect());
        Ok(Allowlist {
            sources,
            callers: patterns("callers"),
            numbers: patterns("numbers"),
            next_hop: config.get("next_hop").map(String::from),
        })
    }

    fn on_request(&self, req: &Request) -> Decision {
        if let Some(sources) = &self.sources {
            let ip = req.source_ip();
            if !ip.is_some_and(|ip| sources.iter().any(|c| c.contains(ip))) {
                return Decision::reject(403, "Forbidden");
            }
        }
        if let Some(callers) = &self.callers {
            if !matches_any(callers, uri_user(&req.from_uri())) {
                return Decision::reject(403, "Forbidden");
            }
        }
        if let Some(numbers) = &self.numbers {
            if !matches_any(numbers, req.request_uri_user().as_deref()) {
                return Decision::reject(404, "Not Found");
            }
        }
        match &self.next_hop {
            Some(hop) => Decision::forward([hop]),
            None => Decision::relay(),
        }
    }
}

export_policy!(Allowlist);

fn matches_any(patterns: &[Pattern], user: Option<&str>) -> bool {
    let user = user.map(|u| u.split(';').next().unwrap_or(u));
    user.is_some_and(|u| patterns.iter().any(|p| p.matches(u)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_user_never_matches() {
        assert!(!matches_any(&[Pattern::new("*")], None));
    }

    #[test]
    fn user_parameters_are_ignored() {
        assert!(matches_any(
            &[Pattern::new("+1555*")],
            Some("+15551234;npdi")
        ));
    }
}
