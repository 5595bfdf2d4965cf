//! Kamailio's stock config runs `sanity_check("17895", "7")`: R-URI SIP
//! version (1), R-URI scheme (2), required headers (4), CSeq method (32),
//! CSeq value (64), Content-Length (128), Expires (256), URIs (1024) and the
//! first Via (16384). Each case here is one message failing one of those
//! checks, with the answer [`Message::validate`] maps it to (the 416 for an
//! unsupported R-URI scheme is the proxy core's, RFC 3261 §16.3 step 2:
//! see `host/proxy/src/proxy/tests.rs`).

use viaduct_sip::{Framing, Message, Scheme};

const GOOD: &str = "OPTIONS sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.com>;tag=1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: a1@192.0.2.1\r\n\
CSeq: 1 OPTIONS\r\n\
Contact: <sip:alice@192.0.2.1>\r\n\
Expires: 60\r\n\
Content-Length: 0\r\n\r\n";

/// `GOOD` with `from` replaced by `to` (which must occur once).
fn with(from: &str, to: &str) -> String {
    assert_eq!(GOOD.matches(from).count(), 1, "{from:?}");
    GOOD.replacen(from, to, 1)
}

/// The (status, reason) a server answers `text` with, or None when it is fine.
fn answer(text: &str) -> Option<(u16, &'static str)> {
    let e = match Message::parse(text.as_bytes(), Framing::Datagram) {
        Ok(m) => m.validate().err()?,
        Err(e) => e,
    };
    Some((e.status(), e.reason()))
}

#[test]
fn the_good_message_passes() {
    assert_eq!(answer(GOOD), None);
}

#[test]
fn kamailio_sanity_17895_each_check() {
    let cases: &[(&str, String, u16, &str)] = &[
        // 1: R-URI SIP version.
        (
            "ruri version",
            with("SIP/2.0\r\nVia", "SIP/7.0\r\nVia"),
            505,
            "Version",
        ),
        // 4: required headers (Via, From, To, Call-ID, CSeq).
        (
            "no Via",
            with("Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1\r\n", ""),
            400,
            "Via",
        ),
        (
            "no From",
            with("From: <sip:alice@example.com>;tag=1\r\n", ""),
            400,
            "From",
        ),
        (
            "no To",
            with("To: <sip:bob@example.com>\r\n", ""),
            400,
            "To",
        ),
        (
            "no Call-ID",
            with("Call-ID: a1@192.0.2.1\r\n", ""),
            400,
            "Call-ID",
        ),
        ("no CSeq", with("CSeq: 1 OPTIONS\r\n", ""), 400, "CSeq"),
        // 32: CSeq method matches the request method.
        (
            "cseq method",
            with("CSeq: 1 OPTIONS", "CSeq: 1 INVITE"),
            400,
            "CSeq",
        ),
        // 64: CSeq number is a 32-bit value below 2^31 (RFC 3261 §8.1.1.5).
        (
            "cseq value",
            with("CSeq: 1 OPTIONS", "CSeq: 4294967296 OPTIONS"),
            400,
            "CSeq",
        ),
        (
            "cseq not a number",
            with("CSeq: 1 OPTIONS", "CSeq: one OPTIONS"),
            400,
            "CSeq",
        ),
        // 128: Content-Length is a number and no larger than the body.
        (
            "content-length value",
            with("Content-Length: 0", "Content-Length: -1"),
            400,
            "Content-Length",
        ),
        (
            "content-length too big",
            with("Content-Length: 0", "Content-Length: 10"),
            400,
            "Content-Length",
        ),
        // 256: Expires is a number.
        (
            "expires",
            with("Expires: 60", "Expires: soon"),
            400,
            "Expires",
        ),
        // 1024: the URIs parse (R-URI, From, To, Contact).
        (
            "ruri",
            with(
                "OPTIONS sip:bob@example.com",
                "OPTIONS sip:bob@exa mple.com",
            ),
            400,
            "Request",
        ),
        (
            "from uri",
            with("From: <sip:alice@example.com>", "From: <sip:alice@>"),
            400,
            "From",
        ),
        (
            "to uri",
            with("To: <sip:bob@example.com>", "To: <bob@example.com"),
            400,
            "To",
        ),
        (
            "contact uri",
            with(
                "Contact: <sip:alice@192.0.2.1>",
                "Contact: <sip:alice@192.0.2.1",
            ),
            400,
            "Contact",
        ),
        // 16384: the first Via parses, SIP/2.0 and a transport.
        (
            "via",
            with(
                "Via: SIP/2.0/UDP 192.0.2.1:5060",
                "Via: SIP/2.0 192.0.2.1:5060",
            ),
            400,
            "Via",
        ),
        (
            "via version",
            with("Via: SIP/2.0/UDP", "Via: SIP/3.0/UDP"),
            400,
            "Via",
        ),
    ];
    let mut wrong = Vec::new();
    for (name, text, status, reason) in cases {
        match answer(text) {
            Some((s, r)) if s == *status && r.contains(reason) => {}
            got => wrong.push(format!(
                "{name}: expected {status} naming {reason:?}, got {got:?}"
            )),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn unsupported_ruri_schemes_are_told_apart_for_416() {
    let tel = with("OPTIONS sip:bob@example.com", "OPTIONS tel:+15551234");
    let m = Message::parse(tel.as_bytes(), Framing::Datagram).unwrap();
    assert_eq!(m.validate(), Ok(()));
    assert_eq!(m.request_uri().unwrap().scheme, Scheme::Tel);
    let urn = with("OPTIONS sip:bob@example.com", "OPTIONS urn:service:sos");
    let m = Message::parse(urn.as_bytes(), Framing::Datagram).unwrap();
    assert_eq!(m.request_uri().unwrap().scheme, Scheme::Other);
}
