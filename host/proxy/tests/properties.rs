//! Properties of the transaction layer and the proxy core, run on stable in
//! CI for a bounded number of cases: the same entry points
//! (`viaduct_proxy::fuzz`) the cargo-fuzz targets in `fuzz/` run unbounded.
//!
//! * each of the four RFC 3261 §17 machines, fed any sequence of events
//!   (responses of every class, retransmissions, ACKs, transport errors,
//!   time passing) with a fake clock, never panics, ends in Terminated once
//!   the transaction user did its part and the timers ran, and reports
//!   Terminated exactly once;
//! * the proxy core fed any sequence of requests and responses (valid,
//!   mutated, or garbage) never panics and leaves no request unanswered.

use proptest::prelude::*;
use viaduct_proxy::fuzz;

const INVITE: &str = "INVITE sip:bob@127.0.0.1:5070 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-1;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@127.0.0.1>;tag=a1\r\n\
To: <sip:bob@127.0.0.1>\r\n\
Call-ID: call-1@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@127.0.0.1:5071>\r\n\
Content-Length: 0\r\n\r\n";

/// A response to the last request the proxy sent (`$BRANCH`) and to the caller.
fn response(code: u16) -> String {
    format!(
        "SIP/2.0 {code} Whatever\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5060;branch=$BRANCH\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-1;rport\r\n\
         From: <sip:alice@127.0.0.1>;tag=a1\r\n\
         To: <sip:bob@127.0.0.1>;tag=b1\r\n\
         Call-ID: call-1@127.0.0.1\r\n\
         CSeq: 1 INVITE\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn in_dialog(method: &str, cseq: u32) -> String {
    format!(
        "{method} sip:bob@127.0.0.1:5070 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-{method}{cseq};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@127.0.0.1>;tag=a1\r\n\
         To: <sip:bob@127.0.0.1>;tag=b1\r\n\
         Call-ID: call-1@127.0.0.1\r\n\
         CSeq: {cseq} {method}\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// One message of a call, in any order, sometimes with a byte changed.
fn piece() -> impl Strategy<Value = Vec<u8>> {
    let code = prop::sample::select(vec![
        100u16, 180, 183, 200, 202, 302, 404, 408, 486, 487, 500, 503, 603,
    ]);
    let m = prop_oneof![
        Just(INVITE.to_string()),
        code.prop_map(response),
        Just(in_dialog("ACK", 1)),
        Just(
            INVITE
                .replace("INVITE sip", "CANCEL sip")
                .replace("1 INVITE", "1 CANCEL")
        ),
        Just(in_dialog("BYE", 2)),
        Just(in_dialog("OPTIONS", 3)),
        "[ -~\r\n]{0,40}",
    ];
    (m, any::<prop::sample::Index>(), any::<u8>(), any::<bool>()).prop_map(|(m, at, b, flip)| {
        let mut m = m.into_bytes();
        if flip && !m.is_empty() {
            let i = at.index(m.len());
            m[i] = b;
        }
        m
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn transactions_always_terminate(ops in prop::collection::vec(any::<u8>(), 0..40)) {
        fuzz::transactions(&ops);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_proxy_core_survives_any_message_order(
        first in any::<u8>(),
        pieces in prop::collection::vec(piece(), 0..12),
    ) {
        let mut data = vec![first];
        data.extend_from_slice(b"\0\0");
        for p in pieces {
            data.extend_from_slice(&p);
            data.extend_from_slice(b"\0\0");
        }
        fuzz::proxy(&data);
    }

    #[test]
    fn the_proxy_core_survives_garbage(data in prop::collection::vec(any::<u8>(), 0..600)) {
        fuzz::proxy(&data);
    }
}
