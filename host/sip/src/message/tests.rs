use super::*;

const INVITE: &[u8] = b"INVITE sip:room-42@proxy.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-1;rport\r\n\
v: SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bK-0\r\n\
Max-Forwards: 70\r\n\
f: \"Alice\" <sip:alice@example.com>;tag=abc\r\n\
t: <sip:room-42@proxy.example.com>\r\n\
i: call-1@10.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
m: <sip:alice@10.0.0.1:5060>\r\n\
Subject: folded\r\n  across lines\r\n\
X-Custom: kept\r\n\
c: application/sdp\r\n\
l: 4\r\n\
\r\n\
v=0\r\ntrailing";

#[test]
fn request_fields() {
    let m = Message::parse(INVITE, Framing::Datagram).unwrap();
    m.validate().unwrap();
    assert_eq!(m.method(), Some(Method::Invite));
    let uri = m.request_uri().unwrap();
    assert_eq!(uri.user, Some("room-42"));
    assert_eq!(m.via_count(), 2);
    assert_eq!(m.top_via().unwrap().branch(), Some(&b"z9hG4bK-1"[..]));
    assert_eq!(m.max_forwards(), Some(70));
    assert_eq!(m.from().unwrap().tag(), Some(&b"abc"[..]));
    assert_eq!(m.to().unwrap().tag(), None);
    assert_eq!(m.call_id(), Some(&b"call-1@10.0.0.1"[..]));
    assert_eq!(m.cseq().unwrap().seq, 1);
    assert_eq!(m.contacts().count(), 1);
    assert_eq!(m.content_type(), Some(&b"application/sdp"[..]));
    assert_eq!(
        m.header_value(HeaderName::Subject),
        Some(&b"folded\r\n  across lines"[..])
    );
    assert_eq!(m.header_value_by_name("x-custom"), Some(&b"kept"[..]));
    // Content-Length frames the body; trailing bytes are not part of the message.
    assert_eq!(m.body(), b"v=0\r");
}

#[test]
fn response_fields() {
    let r = b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nFrom: <sip:a@a>;tag=1\r\nTo: <sip:b@b>;tag=2\r\nCall-ID: x\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n";
    let m = Message::parse(r, Framing::Datagram).unwrap();
    m.validate().unwrap();
    assert_eq!(m.status(), Some(180));
    assert_eq!(m.method(), Some(Method::Invite));
    assert!(matches!(
        m.start_line(),
        StartLine::Response {
            reason: b"Ringing",
            ..
        }
    ));
}

#[test]
fn status_line_errors() {
    let bad = |s: &[u8]| Message::parse(s, Framing::Datagram).err();
    assert_eq!(
        bad(b"SIP/2.0 4294967301 Huge\r\n\r\n"),
        Some(ParseError::BadStatusCode)
    );
    assert_eq!(
        bad(b"SIP/2.0 99 Low\r\n\r\n"),
        Some(ParseError::BadStatusCode)
    );
    assert_eq!(
        bad(b"SIP/7.0 200 OK\r\n\r\n"),
        Some(ParseError::UnsupportedVersion)
    );
    assert!(Message::parse(b"SIP/2.0 100 \r\n\r\n", Framing::Datagram).is_ok());
}

#[test]
fn request_line_errors() {
    let bad = |s: &[u8]| Message::parse(s, Framing::Datagram).err();
    assert_eq!(
        bad(b"INVITE  sip:a@b SIP/2.0\r\n\r\n"),
        Some(ParseError::BadStartLine)
    );
    assert_eq!(
        bad(b"INVITE sip:a@b SIP/2.0 \r\n\r\n"),
        Some(ParseError::BadStartLine)
    );
    assert_eq!(
        bad(b"INVITE <sip:a@b> SIP/2.0\r\n\r\n"),
        Some(ParseError::BadRequestUri)
    );
    assert_eq!(
        bad(b"INVITE sip:a@b SIP/7.0\r\n\r\n"),
        Some(ParseError::UnsupportedVersion)
    );
    assert_eq!(
        bad(b"INVITE sip:a@b SIP/2.0\r\nVia"),
        Some(ParseError::Incomplete)
    );
    assert_eq!(
        bad(b"INVITE sip:a@b SIP/2.0\r\nNo colon here\r\n\r\n"),
        Some(ParseError::BadHeaderLine)
    );
}

#[test]
fn content_length_framing() {
    let head = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 10\r\n\r\nshort";
    assert_eq!(
        Message::parse(head, Framing::Datagram).err(),
        Some(ParseError::ContentLengthTooLarge)
    );
    let neg = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n";
    assert_eq!(
        Message::parse(neg, Framing::Datagram).err(),
        Some(ParseError::BadContentLength)
    );
    let none = b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\nabc";
    assert_eq!(
        Message::parse(none, Framing::Datagram).unwrap().body(),
        b"abc"
    );
    assert!(Message::parse(none, Framing::Stream).is_err());
}

#[test]
fn validate_errors() {
    let base = "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n";
    let check = |extra: &str, drop: &str| {
        let s = format!("{}{}\r\n", base.replace(drop, ""), extra);
        Message::parse(s.as_bytes(), Framing::Datagram)
            .unwrap()
            .validate()
            .err()
    };
    assert_eq!(check("", "NONE"), None);
    assert_eq!(
        check("", "Call-ID: c\r\n"),
        Some(ParseError::MissingHeader("Call-ID"))
    );
    assert_eq!(
        check("", "Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"),
        Some(ParseError::MissingHeader("Via"))
    );
    assert_eq!(
        check("Max-Forwards: 300\r\n", "Max-Forwards: 70\r\n"),
        Some(ParseError::BadHeader("Max-Forwards"))
    );
    assert_eq!(
        check("CSeq: 1 BYE\r\n", "CSeq: 1 INVITE\r\n"),
        Some(ParseError::CSeqMethodMismatch)
    );
    assert_eq!(
        check("Route: sip:bad uri\r\n", "NONE"),
        Some(ParseError::BadHeader("Route"))
    );
    assert_eq!(
        check("Date: Fri, 01 Jan 2010 16:00:00 EST\r\n", "NONE"),
        Some(ParseError::BadHeader("Date"))
    );
}

#[test]
fn stream_framing() {
    let msg = b"\r\n\r\nOPTIONS sip:a@b SIP/2.0\r\nl: 3\r\n\r\nabcNEXT";
    assert_eq!(frame_stream(msg, 65535), Ok(Some(msg.len() - 4)));
    assert_eq!(frame_stream(&msg[..20], 65535), Ok(None));
    assert_eq!(
        frame_stream(b"OPTIONS sip:a@b SIP/2.0\r\n\r\n", 65535),
        Err(ParseError::MissingHeader("Content-Length"))
    );
    assert_eq!(frame_stream(msg, 10), Err(ParseError::TooLarge));
}

#[test]
fn never_panics_on_prefixes() {
    for end in 0..INVITE.len() {
        let _ = Message::parse(&INVITE[..end], Framing::Datagram).map(|m| m.validate());
        let _ = frame_stream(&INVITE[..end], 65535);
    }
}
