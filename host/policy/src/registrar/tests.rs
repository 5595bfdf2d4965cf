//! The registrar on a fake clock over [`MemoryState`] (whose own TTL runs on
//! real time and is never reached here: expiry is the `expires_at` filter).

use super::*;
use crate::state::{Down, MemoryState};
use std::sync::{Barrier, Mutex};
use viaduct_sip::Framing;

const T0: u64 = 1_700_000_000_000;
const UA: &str = "192.0.2.7:5062";

fn udp() -> Source {
    Source {
        addr: UA.parse().unwrap(),
        transport: "udp",
        flow_route: None,
    }
}

/// A REGISTER for `to` with these extra header lines.
fn register_bytes(to: &str, call_id: &str, cseq: u32, headers: &[&str]) -> Vec<u8> {
    let mut m = format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bK-{cseq}\r\n\
         Max-Forwards: 70\r\n\
         From: <{to}>;tag=f1\r\n\
         To: <{to}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} REGISTER\r\n"
    );
    for h in headers {
        m.push_str(h);
        m.push_str("\r\n");
    }
    m.push_str("Content-Length: 0\r\n\r\n");
    m.into_bytes()
}

fn registrar() -> Registrar {
    Registrar::new(
        Arc::new(MemoryState::default()),
        RegistrarSettings::default(),
    )
}

fn send(r: &Registrar, cseq: u32, headers: &[&str], now: u64) -> Outcome {
    send_as(r, "sip:bob@example.com", "c1", cseq, headers, &udp(), now)
}

fn send_as(
    r: &Registrar,
    to: &str,
    call_id: &str,
    cseq: u32,
    headers: &[&str],
    source: &Source,
    now: u64,
) -> Outcome {
    let bytes = register_bytes(to, call_id, cseq, headers);
    let msg = Message::parse(&bytes, Framing::Datagram).unwrap();
    r.register(&msg, source, now)
}

fn contacts(outcome: &Outcome) -> Vec<String> {
    match outcome {
        Outcome::Ok { contacts, .. } => contacts.clone(),
        other => panic!("not a 200: {other:?}"),
    }
}

fn uris(r: &Registrar, aor: &str, now: u64) -> Vec<String> {
    r.lookup(aor, now)
        .unwrap()
        .into_iter()
        .map(|c| c.uri)
        .collect()
}

fn rejected(outcome: &Outcome) -> (u16, &str, &[String]) {
    match outcome {
        Outcome::Reject {
            code,
            reason,
            headers,
        } => (*code, reason.as_str(), headers.as_slice()),
        other => panic!("not a refusal: {other:?}"),
    }
}

const BOB: &str = "sip:bob@example.com";

#[test]
fn register_then_lookup() {
    let r = registrar();
    let out = send(&r, 1, &["Contact: <sip:bob@192.0.2.7:5062>"], T0);
    assert_eq!(
        contacts(&out),
        vec!["<sip:bob@192.0.2.7:5062>;expires=3600"]
    );
    let found = r.lookup(BOB, T0 + 1).unwrap();
    assert_eq!(
        found,
        vec![Contact {
            uri: "sip:bob@192.0.2.7:5062".into(),
            q: None,
            expires_at_ms: T0 + 3_600_000,
            received: UA.parse().unwrap(),
            transport: "udp".into(),
            path: Vec::new(),
        }]
    );
    assert!(r.lookup("sip:alice@example.com", T0).unwrap().is_empty());
}

#[test]
fn a_query_lists_without_writing() {
    let r = registrar();
    assert_eq!(contacts(&send(&r, 1, &[], T0)), Vec::<String>::new());
    send(&r, 2, &["Contact: <sip:bob@h1>", "Expires: 600"], T0);
    // 10.5 s later: 589.5 s left, shown rounded up.
    let out = send(&r, 3, &[], T0 + 10_500);
    assert_eq!(contacts(&out), vec!["<sip:bob@h1>;expires=590"]);
}

#[test]
fn a_refresh_extends_the_binding() {
    let r = registrar();
    send(&r, 1, &["Contact: <sip:bob@h1>;expires=600"], T0);
    let out = send(&r, 2, &["Contact: <sip:bob@h1>;expires=600"], T0 + 300_000);
    assert_eq!(contacts(&out), vec!["<sip:bob@h1>;expires=600"]);
    let found = r.lookup(BOB, T0 + 700_000).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].expires_at_ms, T0 + 900_000);
}

#[test]
fn contacts_in_every_form_and_their_expiry() {
    let r = registrar();
    let out = send(
        &r,
        1,
        &[
            "Contact: \"Desk\" <sip:bob@h1;transport=tcp>;expires=120, sip:bob@h2",
            "m: <sip:bob@h3>;q=0.5",
            "Expires: 1800",
        ],
        T0,
    );
    assert_eq!(
        contacts(&out),
        vec![
            "<sip:bob@h1;transport=tcp>;expires=120",
            "<sip:bob@h2>;expires=1800",
            "<sip:bob@h3>;q=0.5;expires=1800",
        ]
    );
}

#[test]
fn expires_zero_removes_one_binding() {
    let r = registrar();
    send(&r, 1, &["Contact: <sip:bob@h1>, <sip:bob@h2>"], T0);
    let out = send(&r, 2, &["Contact: <sip:bob@h1>;expires=0"], T0 + 1000);
    assert_eq!(contacts(&out), vec!["<sip:bob@h2>;expires=3599"]);
    assert_eq!(uris(&r, BOB, T0 + 1000), vec!["sip:bob@h2"]);
    // Through the Expires header too, matching the URI as §19.1.4 does.
    let out = send(&r, 3, &["Contact: <sip:bob@H2>", "Expires: 0"], T0 + 2000);
    assert!(contacts(&out).is_empty());
    assert!(r.lookup(BOB, T0 + 2000).unwrap().is_empty());
    // Removing what is not there is fine.
    let out = send(&r, 4, &["Contact: <sip:bob@h9>;expires=0"], T0 + 3000);
    assert!(contacts(&out).is_empty());
}

#[test]
fn star_removes_every_binding() {
    let r = registrar();
    send(&r, 1, &["Contact: <sip:bob@h1>, <sip:bob@h2>"], T0);
    // Another device's binding, another Call-ID.
    send_as(&r, BOB, "c2", 1, &["Contact: <sip:bob@h3>"], &udp(), T0);
    let out = send(&r, 2, &["Contact: *", "Expires: 0"], T0 + 1000);
    assert!(contacts(&out).is_empty());
    assert!(r.lookup(BOB, T0 + 1000).unwrap().is_empty());
}

#[test]
fn star_only_alone_and_with_expires_zero() {
    let r = registrar();
    send(&r, 1, &["Contact: <sip:bob@h1>"], T0);
    for (headers, reason) in [
        (&["Contact: *"][..], "Bad Contact - * Needs Expires: 0"),
        (
            &["Contact: *", "Expires: 60"],
            "Bad Contact - * Needs Expires: 0",
        ),
        (
            &["Contact: *, <sip:bob@h1>", "Expires: 0"],
            "Bad Contact - * Must Be the Only Contact",
        ),
        (
            &["Contact: <sip:bob@h1>", "Contact: *", "Expires: 0"],
            "Bad Contact - * Must Be the Only Contact",
        ),
    ] {
        let out = send(&r, 2, headers, T0);
        assert_eq!(rejected(&out), (400, reason, &[][..]), "{headers:?}");
    }
    assert_eq!(uris(&r, BOB, T0), vec!["sip:bob@h1"]);
}

#[test]
fn bindings_lapse_on_the_callers_clock() {
    let r = registrar();
    send(&r, 1, &["Contact: <sip:bob@h1>;expires=60"], T0);
    send(&r, 2, &["Contact: <sip:bob@h2>;expires=120"], T0 + 1);
    assert_eq!(uris(&r, BOB, T0 + 59_999), vec!["sip:bob@h2", "sip:bob@h1"]);
    assert_eq!(uris(&r, BOB, T0 + 60_000), vec!["sip:bob@h2"]);
    assert!(r.lookup(BOB, T0 + 120_001).unwrap().is_empty());
    // A later write drops the lapsed binding from the stored value.
    send(&r, 3, &["Contact: <sip:bob@h3>"], T0 + 90_000);
    let stored = r.state.get(&key(BOB)).unwrap().unwrap();
    let record: Record = serde_json::from_slice(&stored).unwrap();
    let kept: Vec<_> = record.bindings.iter().map(|b| &b.contact.uri).collect();
    assert_eq!(kept, ["sip:bob@h2", "sip:bob@h3"]);
}

#[test]
fn intervals_below_the_minimum_are_refused_above_the_maximum_shortened() {
    let r = registrar();
    let out = send(&r, 1, &["Contact: <sip:bob@h1>;expires=30"], T0);
    assert_eq!(
        rejected(&out),
        (
            423,
            "Interval Too Brief",
            &["Min-Expires: 60".to_string()][..]
        )
    );
    let out = send(&r, 2, &["Contact: <sip:bob@h1>", "Expires: 59"], T0);
    assert_eq!(rejected(&out).0, 423);
    // One bad contact refuses the whole request.
    let out = send(
        &r,
        3,
        &["Contact: <sip:bob@h1>, <sip:bob@h2>;expires=1"],
        T0,
    );
    assert_eq!(rejected(&out).0, 423);
    assert!(r.lookup(BOB, T0).unwrap().is_empty());
    let out = send(&r, 4, &["Contact: <sip:bob@h1>;expires=86400"], T0);
    assert_eq!(contacts(&out), vec!["<sip:bob@h1>;expires=3600"]);
    let out = send(&r, 5, &["Contact: <sip:bob@h1>;expires=60"], T0);
    assert_eq!(contacts(&out), vec!["<sip:bob@h1>;expires=60"]);
}

#[test]
fn lookup_orders_by_q_then_most_recent() {
    let r = registrar();
    send(&r, 1, &["Contact: <sip:bob@low>;q=0.1"], T0);
    send(&r, 2, &["Contact: <sip:bob@old>;q=0.7"], T0 + 1);
    send(&r, 3, &["Contact: <sip:bob@new>;q=0.7"], T0 + 2);
    send(&r, 4, &["Contact: <sip:bob@none>"], T0 + 3);
    send(&r, 5, &["Contact: <sip:bob@top>;q=1.0"], T0 + 4);
    assert_eq!(
        uris(&r, BOB, T0 + 5),
        vec![
            "sip:bob@top",
            "sip:bob@none",
            "sip:bob@new",
            "sip:bob@old",
            "sip:bob@low"
        ]
    );
    let found = r.lookup(BOB, T0 + 5).unwrap();
    assert_eq!(found[0].q, Some(1000));
    assert_eq!(found[4].q, Some(100));
    // Refreshing the old one makes it the newest of its q.
    send(&r, 6, &["Contact: <sip:bob@old>;q=0.7"], T0 + 6);
    assert_eq!(uris(&r, BOB, T0 + 7)[2], "sip:bob@old");
}

#[test]
fn path_is_stored_after_the_flow_route_and_echoed_on_request() {
    let r = registrar();
    let flow = "<sip:ft-abc@10.0.0.1:5060;lr>";
    let tcp = Source {
        addr: "198.51.100.2:41000".parse().unwrap(),
        transport: "tcp",
        flow_route: Some(flow.into()),
    };
    // P2 (nearest the registrar) added its value on top of P1's.
    let headers = [
        "Contact: <sip:bob@192.168.1.5:5060;transport=tcp>",
        "Path: <sip:p2@edge2.example.com;lr>",
        "Path: \"P1\" <sip:p1@edge1.example.com;lr>",
        "Supported: path, outbound",
    ];
    let out = send_as(&r, BOB, "c1", 1, &headers, &tcp, T0);
    let Outcome::Ok { path, .. } = &out else {
        panic!("{out:?}")
    };
    assert_eq!(
        path,
        &[
            "<sip:p2@edge2.example.com;lr>",
            "\"P1\" <sip:p1@edge1.example.com;lr>"
        ]
    );
    let found = r.lookup(BOB, T0).unwrap();
    assert_eq!(
        found[0].path,
        [
            flow,
            "<sip:p2@edge2.example.com;lr>",
            "\"P1\" <sip:p1@edge1.example.com;lr>"
        ]
    );
    assert_eq!(found[0].transport, "tcp");
    assert_eq!(found[0].received, tcp.addr);

    // Without Supported: path the 200 carries none, but the route is kept.
    let headers = [
        "Contact: <sip:bob@192.168.1.5:5060;transport=tcp>",
        "Path: <sip:p2@edge2.example.com;lr>, <sip:p1@edge1.example.com;lr>",
    ];
    let out = send_as(&r, BOB, "c1", 2, &headers, &tcp, T0);
    assert!(matches!(&out, Outcome::Ok { path, .. } if path.is_empty()));
    assert_eq!(r.lookup(BOB, T0).unwrap()[0].path.len(), 3);

    // A refresh over UDP with no Path replaces the route.
    send_as(&r, BOB, "c1", 3, &[headers[0]], &udp(), T0);
    assert!(r.lookup(BOB, T0).unwrap()[0].path.is_empty());

    let out = send(&r, 4, &[headers[0], "Path: sip:p1@edge1 lr>"], T0);
    assert_eq!(rejected(&out), (400, "Bad Path", &[][..]));
}

#[test]
fn lookups_match_the_canonical_aor() {
    let r = registrar();
    send_as(
        &r,
        "sips:Bob@EXAMPLE.com",
        "c1",
        1,
        &["Contact: <sips:bob@h1>"],
        &udp(),
        T0,
    );
    for aor in [
        "sip:Bob@example.com:5060;transport=udp",
        "sips:Bob@example.com",
        "<sip:Bob@example.com;user=phone>",
        "sip:%42ob@example.com",
    ] {
        assert_eq!(uris(&r, aor, T0), vec!["sips:bob@h1"], "{aor}");
    }
    assert!(r.lookup("sip:bob@example.com", T0).unwrap().is_empty());
    assert!(r.lookup("tel:+15551234", T0).unwrap().is_empty());
    assert!(r.lookup("garbage", T0).unwrap().is_empty());
}

#[test]
fn out_of_order_requests_fail_and_change_nothing() {
    let r = registrar();
    send(&r, 5, &["Contact: <sip:bob@h1>;expires=600"], T0);
    for cseq in [4, 3] {
        let out = send(&r, cseq, &["Contact: <sip:bob@h1>;expires=0"], T0);
        assert_eq!(rejected(&out), (500, "Out-of-Order REGISTER", &[][..]));
        let out = send(&r, cseq, &["Contact: *", "Expires: 0"], T0);
        assert_eq!(rejected(&out).0, 500);
    }
    // The same CSeq again is the first REGISTER retransmitted: it gets the
    // bindings and changes nothing (here: does not remove h1).
    let out = send(&r, 5, &["Contact: <sip:bob@h1>;expires=0"], T0);
    assert_eq!(contacts(&out), vec!["<sip:bob@h1>;expires=600"]);
    // All or nothing: a new contact beside a stale one is not added.
    let out = send(&r, 4, &["Contact: <sip:bob@h2>, <sip:bob@h1>"], T0);
    assert_eq!(rejected(&out).0, 500);
    assert_eq!(uris(&r, BOB, T0), vec!["sip:bob@h1"]);
    // Another Call-ID (a rebooted UA) may start low.
    let out = send_as(
        &r,
        BOB,
        "c2",
        1,
        &["Contact: <sip:bob@h1>;expires=120"],
        &udp(),
        T0,
    );
    assert_eq!(contacts(&out), vec!["<sip:bob@h1>;expires=120"]);
    // The same contact twice in one request: the later one wins.
    let out = send_as(
        &r,
        BOB,
        "c2",
        2,
        &["Contact: <sip:bob@h1>;expires=300, <sip:bob@h1>;expires=900"],
        &udp(),
        T0,
    );
    assert_eq!(contacts(&out), vec!["<sip:bob@h1>;expires=900"]);
}

#[test]
fn bad_requests_name_the_problem() {
    let r = registrar();
    for (headers, reason) in [
        (&["Contact: <sip:bob@h1"][..], "Bad Contact"),
        (&["Contact: <sip:bob@h1>, "], "Bad Contact"),
        (
            &["Contact: <sip:bob@h1>;expires=soon"],
            "Bad Contact - Bad expires Parameter",
        ),
        (
            &["Contact: <sip:bob@h1>;expires"],
            "Bad Contact - Bad expires Parameter",
        ),
        (
            &["Contact: <sip:bob@h1>;q=1.5"],
            "Bad Contact - Bad q Parameter",
        ),
        (&["Contact: <sip:bob@h1>", "Expires: -1"], "Bad Expires"),
    ] {
        let out = send(&r, 1, headers, T0);
        assert_eq!(rejected(&out), (400, reason, &[][..]), "{headers:?}");
    }
    let out = send_as(&r, "tel:+15551234", "c1", 1, &[], &udp(), T0);
    assert_eq!(
        rejected(&out),
        (
            400,
            "Bad To - Address-of-Record Must Be a SIP or SIPS URI",
            &[][..]
        )
    );
    assert!(r.lookup(BOB, T0).unwrap().is_empty());
}

#[test]
fn max_contacts_refuses_new_bindings_only() {
    let settings = RegistrarSettings {
        max_contacts: 2,
        ..RegistrarSettings::default()
    };
    let r = Registrar::new(Arc::new(MemoryState::default()), settings);
    let out = send(
        &r,
        1,
        &["Contact: <sip:bob@h1>, <sip:bob@h2>, <sip:bob@h3>"],
        T0,
    );
    assert_eq!(
        rejected(&out),
        (403, "Too Many Registered Contacts", &[][..])
    );
    send(&r, 2, &["Contact: <sip:bob@h1>, <sip:bob@h2>"], T0);
    let out = send(&r, 3, &["Contact: <sip:bob@h3>"], T0);
    assert_eq!(rejected(&out).0, 403);
    // Refreshing, or swapping one for another, is fine.
    send(&r, 4, &["Contact: <sip:bob@h1>"], T0);
    let out = send(
        &r,
        5,
        &["Contact: <sip:bob@h1>;expires=0, <sip:bob@h3>"],
        T0,
    );
    assert_eq!(contacts(&out).len(), 2);
}

#[test]
fn an_unreadable_stored_value_counts_as_empty() {
    let r = registrar();
    r.state.set(&key(BOB), b"{not json".to_vec(), None).unwrap();
    assert!(r.lookup(BOB, T0).unwrap().is_empty());
    send(&r, 1, &["Contact: <sip:bob@h1>"], T0);
    assert_eq!(uris(&r, BOB, T0), vec!["sip:bob@h1"]);
}

#[test]
fn bindings_in_a_newer_format_are_not_overwritten() {
    let r = registrar();
    let newer = br#"{"v":2,"bindings":[],"more":1}"#.to_vec();
    r.state.set(&key(BOB), newer.clone(), None).unwrap();
    let out = send(&r, 1, &["Contact: <sip:bob@h1>"], T0);
    assert_eq!(rejected(&out).0, 503);
    assert_eq!(r.state.get(&key(BOB)).unwrap(), Some(newer));
    assert!(r.lookup(BOB, T0).unwrap().is_empty());
    // Even when the rest of it is not what this version expects.
    let newer = br#"{"v":3,"bindings":{"sip:bob@h1":{}}}"#.to_vec();
    r.state.set(&key(BOB), newer.clone(), None).unwrap();
    assert_eq!(
        rejected(&send(&r, 1, &["Contact: <sip:bob@h1>"], T0)).0,
        503
    );
    assert_eq!(r.state.get(&key(BOB)).unwrap(), Some(newer));
}

/// Around a [`MemoryState`]: another instance's REGISTER, if queued, runs
/// inside the next `get` after the value is read (so the caller holds a stale
/// value); `delay` holds each `get` back so threads overlap; with `swaps`
/// false every compare-and-swap loses.
#[derive(Debug)]
struct Racing {
    inner: Arc<MemoryState>,
    other: Mutex<Option<Vec<u8>>>,
    delay: Duration,
    swaps: bool,
}

impl Racing {
    fn new() -> Self {
        Racing {
            inner: Arc::new(MemoryState::default()),
            other: Mutex::new(None),
            delay: Duration::ZERO,
            swaps: true,
        }
    }
}

impl State for Racing {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let value = self.inner.get(key);
        std::thread::sleep(self.delay);
        let other = self.other.lock().unwrap().take();
        if let Some(bytes) = other {
            let theirs = Registrar::new(self.inner.clone(), RegistrarSettings::default());
            let msg = Message::parse(&bytes, Framing::Datagram).unwrap();
            assert!(matches!(
                theirs.register(&msg, &udp(), T0),
                Outcome::Ok { .. }
            ));
        }
        value
    }
    fn set(&self, key: &[u8], value: Vec<u8>, ttl: Option<Duration>) -> Result<(), StateError> {
        self.inner.set(key, value, ttl)
    }
    fn increment(&self, key: &[u8], delta: i64, ttl: Option<Duration>) -> Result<i64, StateError> {
        self.inner.increment(key, delta, ttl)
    }
    fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<bool, StateError> {
        if !self.swaps {
            return Ok(false);
        }
        self.inner.compare_and_swap(key, expected, new, ttl)
    }
    fn delete(&self, key: &[u8]) -> Result<(), StateError> {
        self.inner.delete(key)
    }
}

#[test]
fn a_failing_state_answers_503_retry_after() {
    let r = Registrar::new(
        Arc::new(Down(StateError::Unavailable("down".into()))),
        RegistrarSettings::default(),
    );
    let want = (
        503,
        "Service Unavailable",
        &["Retry-After: 5".to_string()][..],
    );
    assert_eq!(rejected(&send(&r, 1, &["Contact: <sip:bob@h1>"], T0)), want);
    assert_eq!(rejected(&send(&r, 1, &[], T0)), want);
    assert!(r.lookup(BOB, T0).is_err());
    // The request is checked before the state is asked.
    assert_eq!(rejected(&send(&r, 1, &["Contact: <sip:bob@h1"], T0)).0, 400);
}

#[test]
fn a_write_lost_to_another_instance_is_retried_on_fresh_bindings() {
    let racing = Arc::new(Racing::new());
    *racing.other.lock().unwrap() = Some(register_bytes(
        BOB,
        "other-ua",
        1,
        &["Contact: <sip:bob@theirs>"],
    ));
    let r = Registrar::new(racing.clone(), RegistrarSettings::default());
    let out = send(&r, 1, &["Contact: <sip:bob@ours>"], T0);
    assert_eq!(contacts(&out).len(), 2, "{out:?}");
    let mut stored = uris(&r, BOB, T0);
    stored.sort();
    assert_eq!(stored, ["sip:bob@ours", "sip:bob@theirs"]);
}

#[test]
fn endless_contention_gives_up_with_503() {
    let racing = Racing {
        swaps: false,
        ..Racing::new()
    };
    let r = Registrar::new(Arc::new(racing), RegistrarSettings::default());
    let out = send(&r, 1, &["Contact: <sip:bob@h1>"], T0);
    assert_eq!(rejected(&out).0, 503);
}

#[test]
fn two_threads_registering_one_aor_both_land() {
    let racing = Arc::new(Racing {
        delay: Duration::from_millis(5),
        ..Racing::new()
    });
    let r = Registrar::new(racing, RegistrarSettings::default());
    for round in 0..4 {
        let aor = format!("sip:user{round}@example.com");
        let barrier = Barrier::new(2);
        std::thread::scope(|s| {
            for device in ["a", "b"] {
                let (r, aor, barrier) = (&r, &aor, &barrier);
                s.spawn(move || {
                    let contact = format!("Contact: <sip:{device}@192.0.2.{round}>");
                    barrier.wait();
                    let out = send_as(r, aor, device, 1, &[&contact], &udp(), T0);
                    assert!(matches!(out, Outcome::Ok { .. }), "{out:?}");
                });
            }
        });
        let mut found = uris(&r, &aor, T0);
        found.sort();
        assert_eq!(
            found,
            [
                format!("sip:a@192.0.2.{round}"),
                format!("sip:b@192.0.2.{round}")
            ]
        );
    }
}
