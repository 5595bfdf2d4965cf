//! `front-door`: the route block of `../kamailio.cfg`, as a Viaduct policy.
//!
//! Calls from the SIP trunks in `trunks` (CIDRs) go to the first media
//! bridge in `bridges`, then to the next one when a bridge fails (408, 503,
//! no answer within `bridge_timeout_ms`), with every `X-` header the caller
//! sent removed and `X-Room-ID` set to the dialled number. Anything else is
//! turned away. `../README.md` maps each line to its Kamailio counterpart.
#![deny(missing_docs)]

use viaduct_guest_sdk::{export_policy, log, Cidr, Config, Decision, Policy, Request, Target};

/// The trunks we take calls from and the media bridges in front of the agents.
pub struct FrontDoor {
    trunks: Vec<Cidr>,
    bridges: Vec<Target>,
}

impl Policy for FrontDoor {
    fn init(config: &Config) -> Result<Self, String> {
        let timeout_ms = config.parse_or("bridge_timeout_ms", 2000)?;
        let bridge = |uri: &str| Target::new(uri).timeout_ms(timeout_ms);
        let trunks = config.list("trunks").into_iter().map(str::parse);
        Ok(FrontDoor {
            trunks: trunks.collect::<Result<_, _>>()?,
            bridges: config.list("bridges").into_iter().map(bridge).collect(),
        })
    }

    fn on_request(&self, req: &Request) -> Decision {
        if !self.is_trunk(req) {
            return Decision::reject(403, "Forbidden");
        }
        if req.method() != "INVITE" {
            return Decision::reject(405, "Method Not Allowed").with_header("Allow", "INVITE");
        }
        let Some(number) = req.request_uri_user() else {
            return Decision::reject(404, "Not Found"); // no dialled number
        };
        req.remove_headers_starting_with("X-"); // the caller's X- headers are not ours
        req.set_header("X-Room-ID", &number);
        Decision::forward_targets(self.bridges.clone())
    }

    fn on_failure(&self, req: &Request, code: u16) -> Decision {
        log::warn!("media bridge failed with {code} for {}", req.call_id());
        Decision::next()
    }
}

impl FrontDoor {
    /// Whether the request comes from one of our SIP trunks (by source address).
    fn is_trunk(&self, req: &Request) -> bool {
        let from = req.source_ip();
        from.is_some_and(|ip| self.trunks.iter().any(|t| t.contains(ip)))
    }
}

export_policy!(FrontDoor);
