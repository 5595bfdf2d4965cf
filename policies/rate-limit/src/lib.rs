//! `rate-limit`: at most `calls_per_second` INVITEs per source IP and second;
//! the one over the limit is answered `503 Rate Limited` with
//! `Retry-After: 1`.
//!
//! The count lives in the host's key-value store (`rl:<ip>:<unix second>`,
//! kept 2 s), so every worker and instance shares it. Other methods are not
//! counted. What passes is relayed, or forwarded to `next_hop`.
#![deny(missing_docs)]

use std::time::Duration;

use viaduct_guest_sdk::{clock, export_policy, kv, metrics, Config, Decision, Policy, Request};

/// The policy: the limit and where allowed calls go.
pub struct RateLimit {
    calls_per_second: i64,
    next_hop: Option<String>,
}

impl Policy for RateLimit {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(RateLimit {
            calls_per_second: config.parse_or("calls_per_second", 10)?,
            next_hop: config.get("next_hop").map(String::from),
        })
    }

    fn on_request(&self, req: &Request) -> Decision {
        if req.method() == "INVITE" {
            let source = req
                .source_ip()
                .map_or_else(|| "unknown".into(), |ip| ip.to_string());
            // Fails open: with the shared state down (Redis), calls pass
            // uncounted rather than all being refused. Under
            // `[state] on_error = "closed"` the host answers 503 instead.
            let calls = kv::increment(&key(&source, clock::now_ms()), 1, Duration::from_secs(2))
                .unwrap_or(1);
            if calls > self.calls_per_second {
                metrics::counter("rate_limited", &[], 1);
                return Decision::reject(503, "Rate Limited").with_header("Retry-After", "1");
            }
        }
        match &self.next_hop {
            Some(hop) => Decision::forward([hop]),
            None => Decision::relay(),
        }
    }
}

export_policy!(RateLimit);

/// The counter of `source` for the second that contains `now_ms`.
fn key(source: &str, now_ms: u64) -> String {
    format!("rl:{source}:{}", now_ms / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_per_source_and_second() {
        assert_eq!(
            key("192.0.2.1", 1_700_000_000_999),
            "rl:192.0.2.1:1700000000"
        );
        assert_eq!(
            key("192.0.2.1", 1_700_000_001_000),
            "rl:192.0.2.1:1700000001"
        );
        assert_eq!(key("2001:db8::1", 5_000), "rl:2001:db8::1:5");
    }
}
