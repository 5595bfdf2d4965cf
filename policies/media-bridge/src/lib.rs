//! `media-bridge`: sends each call to one of the configured media bridges,
//! sticky by Call-ID, failing over to the others in turn; when every bridge
//! has failed, answers `503 All Media Bridges Down` with `Retry-After`.
//!
//! The first bridge is `FNV-1a(Call-ID) mod n`, so every request of a call
//! (and a re-sent INVITE) lands on the same bridge while it is up. The
//! forward list is the rotation starting there; the host fails over on 408,
//! 503 and timeouts. Instances are shared by many calls, so the count of
//! failed bridges for one request lives in the host's key-value store.
#![deny(missing_docs)]

use std::time::Duration;

use viaduct_guest_sdk::{export_policy, kv, Config, Decision, Policy, Request};

/// How long a request's failure count is kept: longer than a failover over a
/// few bridges lasts (each waits at most its timeout, Timer C by default).
const FAILURE_COUNT_TTL: Duration = Duration::from_secs(600);

/// The policy: the bridges, and the `Retry-After` of the all-down answer.
pub struct MediaBridge {
    bridges: Vec<String>,
    retry_after: u32,
}

impl Policy for MediaBridge {
    fn init(config: &Config) -> Result<Self, String> {
        let bridges: Vec<String> = config
            .list("bridges")
            .into_iter()
            .map(String::from)
            .collect();
        if bridges.is_empty() {
            return Err("config `bridges` lists no bridge".into());
        }
        let retry_after = config.parse_or("retry_after", 30)?;
        Ok(MediaBridge {
            bridges,
            retry_after,
        })
    }

    fn on_request(&self, req: &Request) -> Decision {
        let first = pick(&req.call_id(), self.bridges.len());
        Decision::forward(rotation(&self.bridges, first))
    }

    fn on_failure(&self, req: &Request, _code: u16) -> Decision {
        let key = format!(
            "mb:{}:{}",
            req.call_id(),
            req.header("CSeq").unwrap_or_default()
        );
        // With the state down, every failure counts as the first: go on
        // through the list, which is bounded anyway.
        let failed = kv::increment(&key, 1, FAILURE_COUNT_TTL).unwrap_or(1);
        if failed < self.bridges.len() as i64 {
            return Decision::next();
        }
        Decision::reject(503, "All Media Bridges Down")
            .with_header("Retry-After", self.retry_after.to_string())
    }
}

export_policy!(MediaBridge);

/// FNV-1a (64 bits) of `s`.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The index of the sticky bridge for this Call-ID among `n`.
fn pick(call_id: &str, n: usize) -> usize {
    (fnv1a(call_id) % n as u64) as usize
}

/// All of `items`, starting at `first` and wrapping around.
fn rotation<T>(items: &[T], first: usize) -> impl Iterator<Item = &T> {
    items[first..].iter().chain(&items[..first])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a("foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn the_same_call_id_picks_the_same_bridge() {
        let n = 3;
        assert_eq!(
            pick("a84b4c76e66710@pc33", n),
            pick("a84b4c76e66710@pc33", n)
        );
        let spread: std::collections::HashSet<usize> =
            (0..100).map(|i| pick(&format!("call-{i}"), n)).collect();
        assert_eq!(spread.len(), n, "100 calls should reach every bridge");
    }

    #[test]
    fn rotation_starts_at_the_chosen_bridge_and_wraps() {
        let b = ["a", "b", "c"];
        assert_eq!(
            rotation(&b, 0).copied().collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        assert_eq!(
            rotation(&b, 2).copied().collect::<Vec<_>>(),
            ["c", "a", "b"]
        );
    }
}
