//! The state contract (see `viaduct_policy::state`), one suite run against
//! every backend: [`contract`] takes a `&dyn State`.
//!
//! `cargo test -p viaduct-policy --test state`
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};
use viaduct_policy::state::{MemoryState, State};

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
