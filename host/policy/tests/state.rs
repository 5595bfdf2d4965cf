//! The state contract (see `viaduct_policy::state`), one suite run against
//! every backend: [`contract`] takes a `&dyn State`.
//!
//! `cargo test -p viaduct-policy --test state`
#![allow(clippy::unwrap_used)]

mod support {
    pub mod redis_server;
}

use std::time::{Duration, Instant};
use support::redis_server::RedisServer;
use viaduct_policy::state::{ErrorKind, MemoryState, RedisSettings, RedisState, State, StateError};

/// Longest wait for an expiry we expect (the TTLs here are 100-300 ms).
const EXPIRY_BOUND: Duration = Duration::from_secs(3);

/// Every rule of the contract, on keys under `ns`.
fn contract(state: &dyn State, ns: &str) {
    let key = |name: &str| format!("{ns}:{name}").into_bytes();
    get_set_overwrite_delete(state, &key("a"));
    binary_keys_and_values(state, ns);
    ttl_expiry(state, &key("ttl"));
    increment_creates_and_counts(state, &key("counter"));
    increment_keeps_its_window(state, &key("window"));
    increment_restarts_what_is_not_a_counter(state, &key("odd"));
    increment_is_atomic(state, &key("hot"));
    compare_and_swap(state, &key("cas"));
    compare_and_swap_is_atomic(state, &key("cas-hot"));
}

fn get_set_overwrite_delete(state: &dyn State, k: &[u8]) {
    assert_eq!(state.get(k).unwrap(), None, "absent");
    state.set(k, b"one".to_vec(), None).unwrap();
    assert_eq!(state.get(k).unwrap().as_deref(), Some(&b"one"[..]));
    state.set(k, b"two".to_vec(), None).unwrap();
    assert_eq!(
        state.get(k).unwrap().as_deref(),
        Some(&b"two"[..]),
        "overwritten"
    );
    state.set(k, Vec::new(), None).unwrap();
    assert_eq!(
        state.get(k).unwrap(),
        Some(Vec::new()),
        "empty is not absent"
    );
    state.delete(k).unwrap();
    assert_eq!(state.get(k).unwrap(), None, "deleted");
    state.delete(k).unwrap();
}

fn binary_keys_and_values(state: &dyn State, ns: &str) {
    let mut k = format!("{ns}:bin:").into_bytes();
    k.extend_from_slice(&[0, 0xff, b'\r', b'\n', 0x80]);
    let value: Vec<u8> = (0..=255u8).chain([0, 0, 0xff]).collect();
    state.set(&k, value.clone(), None).unwrap();
    assert_eq!(state.get(&k).unwrap(), Some(value.clone()));
    let mut other = k.clone();
    *other.last_mut().unwrap() = 0x81;
    assert_eq!(
        state.get(&other).unwrap(),
        None,
        "keys differ in their last byte"
    );
    assert!(state
        .compare_and_swap(&k, Some(value), b"\0".to_vec(), None)
        .unwrap());
    assert_eq!(state.get(&k).unwrap().as_deref(), Some(&b"\0"[..]));
    state.delete(&k).unwrap();
}

/// Polls until `key` is gone, at most [`EXPIRY_BOUND`]; when it went (the
/// time just before the read that found it gone).
fn gone_at(state: &dyn State, key: &[u8]) -> Instant {
    let start = Instant::now();
    loop {
        let before = Instant::now();
        if state.get(key).unwrap().is_none() {
            return before;
        }
        assert!(
            start.elapsed() < EXPIRY_BOUND,
            "{:?} did not expire within {EXPIRY_BOUND:?}",
            String::from_utf8_lossy(key)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn ttl_expiry(state: &dyn State, k: &[u8]) {
    let set_at = Instant::now();
    state
        .set(k, b"v".to_vec(), Some(Duration::from_millis(150)))
        .unwrap();
    assert!(state.get(k).unwrap().is_some(), "present before its TTL");
    let gone = gone_at(state, k);
    assert!(
        gone >= set_at + Duration::from_millis(150),
        "not before its TTL"
    );
    // A set without a TTL clears the previous one.
    state
        .set(k, b"v".to_vec(), Some(Duration::from_millis(100)))
        .unwrap();
    state.set(k, b"w".to_vec(), None).unwrap();
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(
        state.get(k).unwrap().as_deref(),
        Some(&b"w"[..]),
        "no TTL any more"
    );
    // A zero TTL is the shortest one, not an error.
    state.set(k, b"x".to_vec(), Some(Duration::ZERO)).unwrap();
    gone_at(state, k);
}

fn increment_creates_and_counts(state: &dyn State, k: &[u8]) {
    assert_eq!(state.increment(k, 1, None).unwrap(), 1, "created at 0");
    assert_eq!(state.increment(k, 41, None).unwrap(), 42);
    assert_eq!(
        state.get(k).unwrap().as_deref(),
        Some(&b"42"[..]),
        "decimal"
    );
    assert_eq!(state.increment(k, -50, None).unwrap(), -8);
    assert_eq!(state.increment(k, 0, None).unwrap(), -8);
    state.delete(k).unwrap();
    assert_eq!(
        state.increment(k, 5, None).unwrap(),
        5,
        "deleted: from 0 again"
    );
    // A counter without a TTL gets one from the first increment that has one.
    assert_eq!(
        state
            .increment(k, 1, Some(Duration::from_millis(100)))
            .unwrap(),
        6
    );
    gone_at(state, k);
    // A counter set by hand counts on.
    state.set(k, b"10".to_vec(), None).unwrap();
    assert_eq!(state.increment(k, 1, None).unwrap(), 11);
    state.delete(k).unwrap();
}

/// The TTL of a counter is a fixed window from its creation: later
/// increments do not move it.
fn increment_keeps_its_window(state: &dyn State, k: &[u8]) {
    let ttl = Duration::from_millis(300);
    let created = Instant::now();
    assert_eq!(state.increment(k, 1, Some(ttl)).unwrap(), 1);
    std::thread::sleep(Duration::from_millis(150));
    let second = Instant::now();
    assert_eq!(state.increment(k, 1, Some(ttl)).unwrap(), 2);
    let gone = gone_at(state, k);
    assert!(gone >= created + ttl, "not before the window ends");
    assert!(
        gone < second + ttl,
        "gone {:?} after creation: the second increment must not extend the window to {:?}",
        gone - created,
        second + ttl - created
    );
    assert_eq!(state.increment(k, 1, Some(ttl)).unwrap(), 1, "a new window");
    state.delete(k).unwrap();
}

fn increment_restarts_what_is_not_a_counter(state: &dyn State, k: &[u8]) {
    for odd in [&b"abc"[..], b"1.5", b"", b"\xff\x00", b"+1", b"007"] {
        state.set(k, odd.to_vec(), None).unwrap();
        assert_eq!(state.increment(k, 3, None).unwrap(), 3, "{odd:?}");
    }
    state
        .set(k, i64::MAX.to_string().into_bytes(), None)
        .unwrap();
    assert_eq!(state.increment(k, 1, None).unwrap(), 1, "past i64::MAX");
    // The restarted counter takes the TTL, like a new one.
    state.set(k, b"abc".to_vec(), None).unwrap();
    assert_eq!(
        state
            .increment(k, 2, Some(Duration::from_millis(100)))
            .unwrap(),
        2
    );
    gone_at(state, k);
}

fn increment_is_atomic(state: &dyn State, k: &[u8]) {
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..1000 {
                    state
                        .increment(k, 1, Some(Duration::from_secs(60)))
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(state.get(k).unwrap().as_deref(), Some(&b"8000"[..]));
    state.delete(k).unwrap();
}

fn compare_and_swap(state: &dyn State, k: &[u8]) {
    let cas = |expected: Option<&[u8]>, new: &[u8]| {
        state
            .compare_and_swap(k, expected.map(<[u8]>::to_vec), new.to_vec(), None)
            .unwrap()
    };
    assert!(!cas(Some(b"x"), b"y"), "absent is not x");
    assert_eq!(state.get(k).unwrap(), None, "a failed swap writes nothing");
    assert!(cas(None, b"first"), "absent, as expected");
    assert!(!cas(None, b"second"), "no longer absent");
    assert!(!cas(Some(b"firs"), b"second"), "a prefix is not equal");
    assert!(!cas(Some(b""), b"second"));
    assert_eq!(state.get(k).unwrap().as_deref(), Some(&b"first"[..]));
    assert!(cas(Some(b"first"), b"second"));
    assert_eq!(state.get(k).unwrap().as_deref(), Some(&b"second"[..]));
    // A counter compares as its decimal text.
    state.delete(k).unwrap();
    state.increment(k, 7, None).unwrap();
    assert!(cas(Some(b"7"), b"8"));
    // A successful swap sets the TTL it was given.
    assert!(state
        .compare_and_swap(
            k,
            Some(b"8".to_vec()),
            b"9".to_vec(),
            Some(Duration::from_millis(100))
        )
        .unwrap());
    gone_at(state, k);
    assert!(cas(None, b"after expiry"), "expired is absent");
    state.delete(k).unwrap();
}

/// Read, add one, swap; retry on a lost race. 4 threads x 100 give 400.
fn compare_and_swap_is_atomic(state: &dyn State, k: &[u8]) {
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..100 {
                    for attempt in 0.. {
                        assert!(attempt < 10_000, "no progress");
                        let current = state.get(k).unwrap();
                        let n: u64 = current
                            .as_deref()
                            .map_or(0, |v| std::str::from_utf8(v).unwrap().parse().unwrap());
                        let next = (n + 1).to_string().into_bytes();
                        if state.compare_and_swap(k, current, next, None).unwrap() {
                            break;
                        }
                    }
                }
            });
        }
    });
    assert_eq!(state.get(k).unwrap().as_deref(), Some(&b"400"[..]));
    state.delete(k).unwrap();
}

#[test]
fn memory_contract() {
    contract(&MemoryState::default(), "memory");
}

fn redis(server: &RedisServer, prefix: &str, timeout: Duration) -> RedisState {
    RedisState::open(RedisSettings {
        url: server.url(),
        timeout,
        prefix: prefix.into(),
    })
    .expect("a valid URL")
}

#[test]
fn redis_contract() {
    let server = RedisServer::start();
    // A generous timeout: this test is about semantics, on a busy CI machine.
    let state = redis(&server, "viaduct-test:", Duration::from_secs(2));
    contract(&state, "redis");
    assert_eq!(state.errors().total(), 0);
    // Keys live under the prefix, and only there.
    state.set(b"k", b"v".to_vec(), None).unwrap();
    let raw = redis(&server, "", Duration::from_secs(2));
    assert_eq!(
        raw.get(b"viaduct-test:k").unwrap().as_deref(),
        Some(&b"v"[..])
    );
    assert_eq!(raw.get(b"k").unwrap(), None);
}

/// Polls `state` until a call succeeds, at most `bound`; how long it took.
fn until_served(state: &dyn State, bound: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if state.get(b"probe").is_ok() {
            return start.elapsed();
        }
        assert!(start.elapsed() < bound, "no call served within {bound:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A call that fails must fail within the timeout (plus scheduling slack),
/// never hang; the same State serves again once Redis is back.
#[test]
fn redis_killed_mid_test_fails_fast_then_reconnects() {
    let timeout = Duration::from_millis(100);
    let bound = timeout + Duration::from_millis(400);
    let mut server = RedisServer::start();
    let port = server.port;
    let state = redis(&server, "kill:", timeout);
    assert_eq!(state.increment(b"n", 1, None).unwrap(), 1);
    server.kill();
    for i in 0..20 {
        let started = Instant::now();
        let result = state.increment(b"n", 1, None);
        let took = started.elapsed();
        assert!(result.is_err(), "call {i} after the kill: {result:?}");
        assert!(took < bound, "call {i} took {took:?}, more than {bound:?}");
    }
    assert!(
        state.is_down(),
        "a refused connection marks the server down"
    );
    assert!(state.errors().total() >= 20);
    let restarted = RedisServer::start_on(port);
    let took = until_served(&state, Duration::from_secs(5));
    eprintln!("served again {took:?} after the restart");
    // A fresh server (no persistence): the counter starts again.
    assert_eq!(state.increment(b"n", 1, None).unwrap(), 1);
    drop(restarted);
}

#[test]
fn redis_down_at_start_does_not_stop_the_caller() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let started = Instant::now();
    let state = RedisState::open(RedisSettings {
        url: format!("redis://127.0.0.1:{port}/0"),
        timeout: Duration::from_millis(50),
        prefix: "late:".into(),
    })
    .expect("down is not an error at start");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(state.is_down());
    let started = Instant::now();
    let err = state.set(b"k", b"v".to_vec(), None).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "fails at once while down"
    );
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    let _server = RedisServer::start_on(port);
    until_served(&state, Duration::from_secs(5));
    state.set(b"k", b"v".to_vec(), None).unwrap();
    assert_eq!(state.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
}

/// A server that accepts but does not answer (stopped with SIGSTOP): each
/// call times out at `timeout`; after three in a row calls fail at once;
/// once it answers again (SIGCONT) the State serves again.
#[test]
fn redis_hung_times_out_then_fails_fast_then_recovers() {
    let timeout = Duration::from_millis(100);
    let server = RedisServer::start();
    let state = redis(&server, "hung:", timeout);
    state.set(b"k", b"v".to_vec(), None).unwrap();
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &server.pid().to_string()])
            .status()
            .map(|s| s.success());
        assert!(matches!(ok, Ok(true)), "kill {sig} {}", server.pid());
    };
    signal("-STOP");
    for i in 0..3 {
        let started = Instant::now();
        let err = state.get(b"k").unwrap_err();
        let took = started.elapsed();
        assert!(matches!(err, StateError::Timeout(_)), "call {i}: {err}");
        assert!(
            took >= timeout && took < timeout * 2 + Duration::from_millis(400),
            "call {i} took {took:?}"
        );
    }
    let started = Instant::now();
    let err = state.get(b"k").unwrap_err();
    assert!(matches!(err, StateError::Unavailable(_)), "{err}");
    assert!(
        started.elapsed() < Duration::from_millis(20),
        "down: at once"
    );
    let counts = state.errors();
    assert_eq!(counts.0[0][ErrorKind::Timeout as usize], 3);
    signal("-CONT");
    until_served(&state, Duration::from_secs(5));
    assert_eq!(state.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
}
