//! Messages the proxy writes itself: responses to a request (100, 4xx, 5xx),
//! the ACK for a non-2xx final response (RFC 3261 §17.1.1.3) and CANCEL (§9.1).
//!
//! Written straight into a byte buffer from the request's own header bytes.
//! rsip is not used here either: copying a few known lines needs no model of
//! the message, and this path allocates only the output buffer.

use crate::header::{HeaderName, Via};
use crate::message::Message;
use crate::scan::trim;
use crate::text::{push_decimal, push_ip};
use std::net::SocketAddr;

/// Writes one Via value with RFC 3581/§18.2.1 `received` and `rport` filled in
/// from the address the message came from.
pub fn write_via_received(via: &Via<'_>, source: SocketAddr, out: &mut Vec<u8>) {
    out.extend_from_slice(b"SIP/2.0/");
    out.extend_from_slice(via.transport.as_bytes());
    out.push(b' ');
    out.extend_from_slice(via.host.as_bytes());
    if let Some(p) = via.port {
        out.push(b':');
        push_decimal(out, u64::from(p));
    }
    let asked_rport = via.rport().is_some();
    for (name, value) in via.params.iter() {
        if name.eq_ignore_ascii_case(b"received") || name.eq_ignore_ascii_case(b"rport") {
            continue;
        }
        out.push(b';');
        out.extend_from_slice(name);
        if let Some(v) = value {
            out.push(b'=');
            out.extend_from_slice(v);
        }
    }
    // §18.2.1 asks for received only when sent-by differs; always adding it is
    // allowed and makes every response path independent of DNS.
    out.extend_from_slice(b";received=");
    push_ip(out, source.ip());
    if asked_rport {
        out.extend_from_slice(b";rport=");
        push_decimal(out, u64::from(source.port()));
    }
}

/// Builds a response to `req` (RFC 3261 §8.2.6): Via (top one with received/rport
/// from `source`), From, To (with `to_tag` added when the request's To has none
/// and the code is above 100), Call-ID, CSeq, then `extra` header lines
/// (each `Name: value`, no CRLF), Content-Length: 0.
pub fn response(
    req: &Message<'_>,
    source: SocketAddr,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
    extra: &[&str],
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"SIP/2.0 ");
    push_decimal(out, u64::from(code));
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut first = true;
    for (_, v) in req.values(HeaderName::Via) {
        out.extend_from_slice(b"Via: ");
        match first.then(|| req.top_via()).flatten() {
            Some(via) => write_via_received(&via, source, out),
            None => out.extend_from_slice(v),
        }
        out.extend_from_slice(b"\r\n");
        first = false;
    }
    copy_line(req, HeaderName::From, out);
    if let Some(to) = req.header_value(HeaderName::To) {
        out.extend_from_slice(b"To: ");
        out.extend_from_slice(to);
        let has_tag = req.to().is_some_and(|t| t.tag().is_some());
        if let (Some(tag), false, true) = (to_tag, has_tag, code > 100) {
            out.extend_from_slice(b";tag=");
            out.extend_from_slice(tag.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    copy_line(req, HeaderName::CallId, out);
    copy_line(req, HeaderName::CSeq, out);
    for line in extra {
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Server: Viaduct\r\nContent-Length: 0\r\n\r\n");
}

/// The ACK a client transaction sends for a non-2xx final response
/// (RFC 3261 §17.1.1.3): same Request-URI, top Via, From, Call-ID, CSeq number
/// and Route as the request; To from the response.
pub fn ack_for(req: &Message<'_>, resp: &Message<'_>, out: &mut Vec<u8>) {
    request_line(req, "ACK", out);
    if let Some((_, via)) = req.values(HeaderName::Via).next() {
        out.extend_from_slice(b"Via: ");
        out.extend_from_slice(via);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Max-Forwards: 70\r\n");
    copy_line(req, HeaderName::From, out);
    match resp.header_value(HeaderName::To) {
        Some(to) => {
            out.extend_from_slice(b"To: ");
            out.extend_from_slice(to);
            out.extend_from_slice(b"\r\n");
        }
        None => copy_line(req, HeaderName::To, out),
    }
    copy_line(req, HeaderName::CallId, out);
    cseq_line(req, "ACK", out);
    copy_all(req, HeaderName::Route, out);
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
}

/// The CANCEL for a request this proxy forwarded (RFC 3261 §9.1): same
/// Request-URI, top Via (so the branch matches), From, To, Call-ID, CSeq
/// number and Route.
pub fn cancel_for(req: &Message<'_>, out: &mut Vec<u8>) {
    request_line(req, "CANCEL", out);
    if let Some((_, via)) = req.values(HeaderName::Via).next() {
        out.extend_from_slice(b"Via: ");
        out.extend_from_slice(via);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Max-Forwards: 70\r\n");
    copy_line(req, HeaderName::From, out);
    copy_line(req, HeaderName::To, out);
    copy_line(req, HeaderName::CallId, out);
    cseq_line(req, "CANCEL", out);
    copy_all(req, HeaderName::Route, out);
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
}

fn request_line(req: &Message<'_>, method: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    if let Some(uri) = req.request_uri() {
        out.extend_from_slice(uri.raw.as_bytes());
    }
    out.extend_from_slice(b" SIP/2.0\r\n");
}

fn cseq_line(req: &Message<'_>, method: &str, out: &mut Vec<u8>) {
    let seq = req.cseq().map(|c| c.seq).unwrap_or(0);
    out.extend_from_slice(b"CSeq: ");
    push_decimal(out, u64::from(seq));
    out.push(b' ');
    out.extend_from_slice(method.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn copy_line(req: &Message<'_>, name: HeaderName, out: &mut Vec<u8>) {
    if let Some(v) = req.header_value(name) {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(trim(v));
        out.extend_from_slice(b"\r\n");
    }
}

fn copy_all(req: &Message<'_>, name: HeaderName, out: &mut Vec<u8>) {
    for h in req.headers().iter().filter(|h| h.name == name) {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(req.value(h));
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Framing;

    const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK74bf9;rport\r\n\
Via: SIP/2.0/UDP other.example.com;branch=z9hG4bKold\r\n\
Max-Forwards: 70\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
Call-ID: 3848276298220188511@atlanta.example.com\r\n\
CSeq: 1 INVITE\r\n\
Route: <sip:p1.example.com;lr>\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn response_copies_and_fills_received() {
        let req = Message::parse(INVITE, Framing::Datagram).unwrap();
        let mut out = Vec::new();
        response(
            &req,
            "192.0.2.7:5099".parse().unwrap(),
            486,
            "Busy Here",
            Some("px"),
            &[],
            &mut out,
        );
        let resp = Message::parse(&out, Framing::Datagram).unwrap();
        resp.validate().unwrap();
        assert_eq!(resp.status(), Some(486));
        let via = resp.top_via().unwrap();
        assert_eq!(via.received(), Some(&b"192.0.2.7"[..]));
        assert_eq!(via.rport(), Some(Some(5099)));
        assert_eq!(via.branch(), Some(&b"z9hG4bK74bf9"[..]));
        assert_eq!(resp.via_count(), 2);
        assert_eq!(resp.to().unwrap().tag(), Some(&b"px"[..]));
        assert_eq!(resp.call_id(), req.call_id());
    }

    #[test]
    fn ack_and_cancel_match_the_request() {
        let req = Message::parse(INVITE, Framing::Datagram).unwrap();
        let resp_bytes = b"SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK74bf9\r\nFrom: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\nTo: Bob <sip:bob@biloxi.example.com>;tag=314\r\nCall-ID: 3848276298220188511@atlanta.example.com\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        let resp = Message::parse(resp_bytes, Framing::Datagram).unwrap();
        let mut out = Vec::new();
        ack_for(&req, &resp, &mut out);
        let ack = Message::parse(&out, Framing::Datagram).unwrap();
        ack.validate().unwrap();
        assert_eq!(ack.method().map(|m| m.as_str()), Some("ACK"));
        assert_eq!(ack.to().unwrap().tag(), Some(&b"314"[..]));
        assert_eq!(ack.top_via().unwrap().branch(), Some(&b"z9hG4bK74bf9"[..]));
        assert_eq!(ack.via_count(), 1);
        assert_eq!(ack.routes().count(), 1);

        out.clear();
        cancel_for(&req, &mut out);
        let cancel = Message::parse(&out, Framing::Datagram).unwrap();
        cancel.validate().unwrap();
        assert_eq!(cancel.cseq().unwrap().seq, 1);
        assert_eq!(
            cancel.request_uri().unwrap().raw,
            "sip:bob@biloxi.example.com"
        );
        assert_eq!(
            cancel.top_via().unwrap().branch(),
            Some(&b"z9hG4bK74bf9"[..])
        );
    }
}
