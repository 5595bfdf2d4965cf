//! `x-room-id`: tags each INVITE with the room it is for and a fresh session
//! id, then forwards to the configured backends, in order (failover).
//!
//! `INVITE sip:room-42@host` leaves with `X-Room-ID: room-42` and
//! `X-Session-ID: <32 hex digits>`. Other methods take the same route without
//! the headers; a Request-URI without a user part is relayed untouched.
#![deny(missing_docs)]

use viaduct_guest_sdk::clock::random_u64;
use viaduct_guest_sdk::{export_policy, Config, Decision, Policy, Request};

/// The policy: the `backends` of the config, tried in order.
pub struct XRoomId {
    backends: Vec<String>,
}

impl Policy for XRoomId {
    fn init(config: &Config) -> Result<Self, String> {
        let backends = config
            .list("backends")
            .into_iter()
            .map(String::from)
            .collect();
        Ok(XRoomId { backends })
    }

    fn on_request(&self, req: &Request) -> Decision {
        let Some(room) = req.request_uri_user().filter(|user| !user.is_empty()) else {
            return Decision::relay();
        };
        if req.method() == "INVITE" {
            req.set_header("X-Room-ID", &room);
            req.set_header("X-Session-ID", &session_id(random_u64(), random_u64()));
        }
        if self.backends.is_empty() {
            Decision::relay()
        } else {
            Decision::forward(&self.backends)
        }
    }
}

export_policy!(XRoomId);

/// A session id: 128 random bits as 32 lowercase hex digits.
fn session_id(high: u64, low: u64) -> String {
    format!("{high:016x}{low:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_id_is_32_hex_digits() {
        assert_eq!(session_id(0, 1), "00000000000000000000000000000001");
        assert_eq!(session_id(u64::MAX, 0xab).len(), 32);
    }
}
