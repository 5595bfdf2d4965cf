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

#[test]
fn request_line_names_the_bad_part() {
    let bad = |s: &[u8]| Message::parse(s, Framing::Datagram).err();
    // RFC 4475 §3.1.2.8 lwsruri: LWS inside the URI is a bad Request-URI.
    assert_eq!(
        bad(b"INVITE sip:user@example.com; lr SIP/2.0\r\n\r\n"),
        Some(ParseError::BadRequestUri)
    );
    // §3.1.2.9 lwsstart and §3.1.2.10 trws: extra SP is a bad Request-Line.
    assert_eq!(
        bad(b"INVITE  sip:user@example.com  SIP/2.0\r\n\r\n"),
        Some(ParseError::BadStartLine)
    );
    assert_eq!(
        bad(b"OPTIONS sip:remote-target@example.com SIP/2.0  \r\n\r\n"),
        Some(ParseError::BadStartLine)
    );
    assert_eq!(
        bad(b"INVITE sip:a@b\r\n\r\n"),
        Some(ParseError::BadStartLine)
    );
    // §3.1.2.11 escruri: no headers in a Request-URI.
    assert_eq!(
        bad(b"INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0\r\n\r\n"),
        Some(ParseError::BadRequestUri)
    );
}

#[test]
fn datagram_without_blank_line_is_refused_by_validate() {
    // RFC 4475 §3.1.2.15 baddn ends its headers without the blank line.
    let head = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nl: 0\r\n";
    let m = Message::parse(head.as_bytes(), Framing::Datagram).unwrap();
    assert_eq!(m.headers_end(), head.len());
    assert!(m.body().is_empty());
    assert_eq!(m.validate(), Err(ParseError::Incomplete));
    // A worse header problem is named first, so the 400 says what to fix.
    let baddn = head.replace("<sip:x@y>", "Bell, Alexander <sip:x@y>");
    let m = Message::parse(baddn.as_bytes(), Framing::Datagram).unwrap();
    assert_eq!(m.validate(), Err(ParseError::BadDisplayName("From")));
    // On a stream more bytes may come.
    assert_eq!(
        Message::parse(head.as_bytes(), Framing::Stream).err(),
        Some(ParseError::Incomplete)
    );
    // With the blank line it is fine.
    let whole = format!("{head}\r\n");
    let m = Message::parse(whole.as_bytes(), Framing::Datagram).unwrap();
    assert_eq!(m.validate(), Ok(()));
}

#[test]
fn two_content_lengths_are_refused() {
    // RFC 4475 §3.3.9 mcl01
    let msg = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 13\r\nl: 5\r\n\r\n0123456789abc";
    assert_eq!(
        Message::parse(msg, Framing::Datagram).err(),
        Some(ParseError::BadContentLength)
    );
    assert_eq!(frame_stream(msg, 65535), Err(ParseError::BadContentLength));
}

#[test]
fn validate_names_header_faults() {
    let base = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c@h\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 0068\r\n";
    let check = |from: &str, to: &str| {
        let s = format!("{}\r\n", base.replacen(from, to, 1));
        Message::parse(s.as_bytes(), Framing::Datagram)
            .unwrap()
            .validate()
            .err()
    };
    assert_eq!(check("", ""), None);
    // RFC 4475 §3.1.2.6 quotbal
    assert_eq!(
        check("To: <sip:a@b>", "To: \"Mr. J. User <sip:a@b>"),
        Some(ParseError::UnterminatedQuote("To"))
    );
    // §3.1.2.15 baddn
    assert_eq!(
        check("To: <sip:a@b>", "To: Watson, Thomas <sip:a@b>"),
        Some(ParseError::BadDisplayName("To"))
    );
    // §3.3.8 multi01: single-valued headers twice.
    for dup in [
        "Call-ID: c@h\r\n",
        "CSeq: 1 OPTIONS\r\n",
        "Max-Forwards: 0068\r\n",
    ] {
        let label = dup.split(':').next().unwrap();
        assert_eq!(
            check(dup, &format!("{dup}{dup}")),
            Some(ParseError::BadHeader(label)),
            "{label}"
        );
    }
    // callid = word [ "@" word ]
    for bad in ["c@h@i", "@h", "c@", "c;x", "c,d"] {
        assert_eq!(
            check("Call-ID: c@h", &format!("Call-ID: {bad}")),
            Some(ParseError::BadHeader("Call-ID")),
            "{bad}"
        );
    }
    assert_eq!(
        check(
            "Call-ID: c@h",
            r#"Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\/"][?}{"#
        ),
        None
    );
}
