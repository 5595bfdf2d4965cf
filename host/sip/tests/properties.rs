//! Properties of the parser, run on stable in CI for a bounded number of
//! cases: the same entry point (`viaduct_sip::fuzz::parse_and_forward`) the
//! cargo-fuzz target in `fuzz/` runs without a bound.
//!
//! * arbitrary bytes never make the parser (or any accessor) panic;
//! * a well-formed message, with or without mutations, that parses and
//!   validates, parses to the same start line, headers and body once a
//!   proxy forwarded it (a Via added, Max-Forwards decremented).

use proptest::prelude::*;
use viaduct_sip::fuzz::parse_and_forward;

/// The RFC 4475 corpus, as seeds to mutate.
fn torture() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/torture");
    let mut out = Vec::new();
    for sub in ["valid", "invalid", "other"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for e in entries.flatten() {
            if let Ok(bytes) = std::fs::read(e.path()) {
                out.push(bytes);
            }
        }
    }
    assert!(out.len() > 30, "the torture corpus is missing");
    out
}

/// A request or response built from parts a scanner, a phone or a trunk might send.
fn message() -> impl Strategy<Value = Vec<u8>> {
    let method = prop::sample::select(vec![
        "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "NOTIFY", "FOO",
    ]);
    let host = prop::sample::select(vec![
        "127.0.0.1",
        "[2001:db8::1]",
        "example.com",
        "a.b.c",
        "10.0.0.1:5070",
    ]);
    let user = "[a-zA-Z0-9+%._-]{0,12}";
    let extra = prop::collection::vec(("X-[A-Za-z]{1,8}", "[ -~]{0,30}"), 0..6);
    let body = "[ -~\r\n]{0,80}";
    (
        method,
        host,
        user,
        0u32..=u32::MAX,
        0u8..=255,
        extra,
        body,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(method, host, user, cseq, mf, extra, body, response, compact)| {
                let mut m = if response {
                    "SIP/2.0 180 Ringing\r\n".to_string()
                } else {
                    format!("{method} sip:{user}@{host};transport=udp SIP/2.0\r\n")
                };
                let (v, f, t, i, l) = if compact {
                    ("v", "f", "t", "i", "l")
                } else {
                    ("Via", "From", "To", "Call-ID", "Content-Length")
                };
                m += &format!("{v}: SIP/2.0/UDP {host};branch=z9hG4bK{cseq};rport\r\n");
                m += &format!("Max-Forwards: {mf}\r\n");
                m += &format!("{f}: \"Caller\" <sip:{user}@{host}>;tag=1928\r\n");
                m += &format!("{t}: <sip:{user}@{host}>\r\n");
                m += &format!("{i}: {cseq}@{host}\r\n");
                m += &format!("CSeq: {} {method}\r\n", cseq % (1 << 31));
                for (name, value) in extra {
                    m += &format!("{name}: {value}\r\n");
                }
                m += &format!("{l}: {}\r\n\r\n{body}", body.len());
                m.into_bytes()
            },
        )
}

/// A message with a few bytes overwritten, inserted or cut.
fn mutated(seed: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (
        seed,
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..4),
    )
        .prop_map(|(mut m, edits)| {
            for (at, byte, how) in edits {
                if m.is_empty() {
                    break;
                }
                let i = at.index(m.len());
                match how {
                    0 => m[i] = byte,
                    1 => m.insert(i, byte),
                    _ => m.truncate(i),
                }
            }
            m
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        parse_and_forward(&data);
    }

    #[test]
    fn messages_survive_forwarding(m in message()) {
        parse_and_forward(&m);
    }

    #[test]
    fn mutated_messages_never_panic_and_survive_forwarding(m in mutated(message())) {
        parse_and_forward(&m);
    }

    #[test]
    fn mutated_torture_messages_never_panic(m in mutated(prop::sample::select(torture()))) {
        parse_and_forward(&m);
    }
}

#[test]
fn the_torture_corpus_survives_forwarding() {
    for m in torture() {
        parse_and_forward(&m);
    }
}
