//! Parse and forward costs for the messages a proxy sees most: an INVITE with
//! SDP as SIPp's `uac` scenario sends it, and the 200 OK coming back.
//!
//! `cargo bench -p viaduct-sip --bench parse`

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::io::Write;
use std::net::SocketAddr;
use viaduct_sip::{build, Editor, Framing, HeaderName, Message};

/// SIPp `uac` INVITE (one Via, SDP body), about 700 bytes.
const INVITE: &[u8] = b"INVITE sip:service@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-4711-1-0;rport\r\n\
From: sipp <sip:sipp@127.0.0.1:5061>;tag=4711SIPpTag001\r\n\
To: service <sip:service@127.0.0.1:5060>\r\n\
Call-ID: 1-4711@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: sip:sipp@127.0.0.1:5061\r\n\
Max-Forwards: 70\r\n\
Subject: Performance Test\r\n\
User-Agent: SIPp benchmark\r\n\
Content-Type: application/sdp\r\n\
Content-Length:   276\r\n\
\r\n\
v=0\r\n\
o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 6000 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n\
a=maxptime:150\r\n\
a=label:main-audio-stream\r\n";

/// The UAS's 200 OK as it reaches the proxy: the proxy's Via on top, Record-Route, SDP.
const OK200: &[u8] = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-px-1a2b3c\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-4711-1-0;rport=5061;received=127.0.0.1\r\n\
Record-Route: <sip:127.0.0.1:5060;lr>\r\n\
From: sipp <sip:sipp@127.0.0.1:5061>;tag=4711SIPpTag001\r\n\
To: service <sip:service@127.0.0.1:5060>;tag=9876SIPpTag012\r\n\
Call-ID: 1-4711@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:127.0.0.1:5062;transport=UDP>\r\n\
Content-Type: application/sdp\r\n\
Content-Length:   129\r\n\
\r\n\
v=0\r\n\
o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 6002 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";

const SOURCE: &str = "127.0.0.1:5061";

/// What the proxy does to a request it forwards (RFC 3261 §16.6): its own Via
/// on top, Record-Route, Max-Forwards decremented, received/rport on the old top Via.
fn forward_invite(msg: &Message<'_>, source: SocketAddr, out: &mut Vec<u8>) {
    let bytes = msg.bytes();
    let mut e = Editor::new(bytes);
    e.replace_with(msg.headers_start()..msg.headers_start(), |w| {
        w.extend_from_slice(b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK");
        let _ = write!(w, "{:016x}", 0x5eed_u64);
        w.extend_from_slice(b"\r\nRecord-Route: <sip:127.0.0.1:5060;lr>\r\n");
    });
    let mf = msg
        .header(HeaderName::MaxForwards)
        .expect("Max-Forwards")
        .value_span
        .clone();
    let hops = msg.max_forwards().expect("valid Max-Forwards");
    e.replace_with(mf, |w| {
        let _ = write!(w, "{}", hops - 1);
    });
    let via = msg.top_via().expect("top Via");
    let span = msg.first_value_span(HeaderName::Via).expect("Via span");
    e.replace_with(span, |w| build::write_via_received(&via, source, w));
    out.clear();
    e.finish_into(msg.len(), out);
}

fn benches(c: &mut Criterion) {
    let source: SocketAddr = SOURCE.parse().expect("address");
    // Sanity: both messages are valid and the edit produces a valid message.
    let m = Message::parse(INVITE, Framing::Datagram).expect("INVITE parses");
    m.validate().expect("INVITE validates");
    let mut out = Vec::with_capacity(2048);
    forward_invite(&m, source, &mut out);
    let fwd = Message::parse(&out, Framing::Datagram).expect("forwarded parses");
    fwd.validate().expect("forwarded validates");
    assert_eq!(fwd.via_count(), 2);
    assert_eq!(fwd.max_forwards(), Some(69));
    assert_eq!(fwd.body(), m.body());
    Message::parse(OK200, Framing::Datagram)
        .expect("200 parses")
        .validate()
        .expect("200 validates");
    eprintln!(
        "INVITE {} bytes, 200 OK {} bytes",
        INVITE.len(),
        OK200.len()
    );

    let mut g = c.benchmark_group("parse");
    g.bench_function("invite", |b| {
        b.iter(|| {
            let m = Message::parse(black_box(INVITE), Framing::Datagram).expect("parse");
            m.validate().expect("valid");
            black_box(m.len())
        })
    });
    g.bench_function("200ok", |b| {
        b.iter(|| {
            let m = Message::parse(black_box(OK200), Framing::Datagram).expect("parse");
            m.validate().expect("valid");
            black_box(m.len())
        })
    });
    g.finish();

    let mut g = c.benchmark_group("forward");
    g.bench_function("invite", |b| {
        let mut out = Vec::with_capacity(2048);
        b.iter(|| {
            let m = Message::parse(black_box(INVITE), Framing::Datagram).expect("parse");
            m.validate().expect("valid");
            forward_invite(&m, source, &mut out);
            black_box(out.len())
        })
    });
    g.bench_function("200ok", |b| {
        let mut out = Vec::with_capacity(2048);
        b.iter(|| {
            let m = Message::parse(black_box(OK200), Framing::Datagram).expect("parse");
            let mut e = Editor::new(OK200);
            e.remove(m.first_value_removal(HeaderName::Via).expect("top Via"));
            out.clear();
            e.finish_into(m.len(), &mut out);
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(parse, benches);
criterion_main!(parse);
