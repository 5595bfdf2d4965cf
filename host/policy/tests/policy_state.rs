//! What a policy sees when its state fails or is slow: `on_error` open and
//! closed, and `kv` time not counted against the call deadline. Runs the
//! `rate-limit` and `spin` policies through the router the workers use.
//!
//! Needs the compiled policies: run `policies/build` first.
//! `cargo test -p viaduct-policy --test policy_state`
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use viaduct_policy::state::{Down, MemoryState, OnError, State, StateError};
use viaduct_policy::{CallOutcome, FailAction, PolicyHost, PolicyRouter, PolicySettings};
use viaduct_proxy::{Decision, RouteRequest, Router, Transport};
use viaduct_sip::{Framing, Message};

const INVITE: &[u8] = b"INVITE sip:bob@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1-0\r\n\
From: sipp <sip:sipp@127.0.0.1:5070>;tag=1\r\n\
To: bob <sip:bob@127.0.0.1:5060>\r\n\
Call-ID: 1@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: sip:sipp@127.0.0.1:5070\r\n\
Max-Forwards: 70\r\n\
Content-Length: 0\r\n\r\n";

fn policy(name: &str) -> PathBuf {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/policies")
        .join(format!("{name}.wasm"));
    assert!(
        file.exists(),
        "{} is missing: run policies/build first",
        file.display()
    );
    file
}

/// A router for `policy` with `state` behind `kv`; the fail action is
/// `relay`, so that a 503 can only come from the state path.
fn router(
    name: &str,
    config: &[(&str, &str)],
    state: Arc<dyn State>,
    on_error: OnError,
) -> (Arc<PolicyHost>, PolicyRouter) {
    let settings = PolicySettings {
        file: policy(name),
        config: config
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
        deadline: Duration::from_millis(5),
        init_deadline: Duration::from_secs(1),
        memory_limit: 64 << 20,
        fail_action: FailAction::Relay,
        cache_dir: None,
    };
    let host = PolicyHost::with_state(settings, state, on_error).expect("engine");
    host.reload().expect("policy loads");
    let router = PolicyRouter::new(host.clone(), Arc::new(vec![]));
    (host, router)
}

fn route(router: &mut PolicyRouter) -> Decision {
    let msg = Message::parse(INVITE, Framing::Datagram).expect("parses");
    let mut req = RouteRequest::new(&msg, "127.0.0.1:5070".parse().unwrap(), Transport::Udp);
    router.route(&mut req)
}

fn outcomes(host: &PolicyHost, outcome: CallOutcome) -> u64 {
    host.calls()
        .iter()
        .map(|v| v.outcomes[outcome as usize])
        .sum()
}

/// Answers right, but each call takes longer than the whole call deadline.
#[derive(Debug, Default)]
struct Slow(MemoryState);

const SLOW: Duration = Duration::from_millis(20);

impl State for Slow {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        std::thread::sleep(SLOW);
        self.0.get(key)
    }
    fn set(&self, key: &[u8], value: Vec<u8>, ttl: Option<Duration>) -> Result<(), StateError> {
        std::thread::sleep(SLOW);
        self.0.set(key, value, ttl)
    }
    fn increment(&self, key: &[u8], delta: i64, ttl: Option<Duration>) -> Result<i64, StateError> {
        std::thread::sleep(SLOW);
        self.0.increment(key, delta, ttl)
    }
    fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<bool, StateError> {
        std::thread::sleep(SLOW);
        self.0.compare_and_swap(key, expected, new, ttl)
    }
    fn delete(&self, key: &[u8]) -> Result<(), StateError> {
        std::thread::sleep(SLOW);
        self.0.delete(key)
    }
}

fn is_rate_limited(d: &Decision) -> bool {
    matches!(d, Decision::Reject { code: 503, reason, .. } if reason == "Rate Limited")
}

#[test]
fn rate_limit_counts_in_the_state() {
    let limit = [("calls_per_second", "1")];
    let (_host, mut r) = router(
        "rate-limit",
        &limit,
        Arc::new(MemoryState::default()),
        OnError::Open,
    );
    let decisions: Vec<Decision> = (0..3).map(|_| route(&mut r)).collect();
    // Two calls may straddle a second; three cannot all pass.
    assert!(decisions.iter().any(is_rate_limited), "{decisions:?}");
}

#[test]
fn failing_open_lets_calls_through() {
    let limit = [("calls_per_second", "1")];
    let (host, mut r) = router(
        "rate-limit",
        &limit,
        Arc::new(Down(StateError::Timeout("down".into()))),
        OnError::Open,
    );
    for _ in 0..3 {
        assert_eq!(
            route(&mut r),
            Decision::Relay,
            "a failed increment is a fresh counter"
        );
    }
    assert_eq!(outcomes(&host, CallOutcome::Relay), 3);
}

#[test]
fn failing_closed_answers_503_with_retry_after() {
    let (host, mut r) = router(
        "rate-limit",
        &[],
        Arc::new(Down(StateError::Timeout("down".into()))),
        OnError::Closed,
    );
    for _ in 0..2 {
        assert_eq!(
            route(&mut r),
            Decision::Reject {
                code: 503,
                reason: "Service Unavailable".into(),
                headers: vec!["Retry-After: 5".into()],
            },
            "not the fail action (relay)"
        );
    }
    assert_eq!(outcomes(&host, CallOutcome::StateUnavailable), 2);
    assert_eq!(outcomes(&host, CallOutcome::Error), 0);
}

#[test]
fn time_in_kv_is_not_guest_time() {
    // One increment takes 20 ms against a 5 ms deadline: the call still decides.
    let (host, mut r) = router(
        "rate-limit",
        &[],
        Arc::new(Slow::default()),
        OnError::Closed,
    );
    assert_eq!(route(&mut r), Decision::Relay);
    assert_eq!(outcomes(&host, CallOutcome::Timeout), 0);
}

#[test]
fn a_spinning_policy_still_meets_its_deadline() {
    let (host, mut r) = router("spin", &[], Arc::new(MemoryState::default()), OnError::Open);
    let started = std::time::Instant::now();
    assert_eq!(route(&mut r), Decision::Relay, "the fail action");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(outcomes(&host, CallOutcome::Timeout), 1);
}
