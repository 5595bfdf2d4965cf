//! Answers the proxy writes itself.

use super::{Incoming, Proxy, TxId};
use bytes::Bytes;
use std::io::Write;
use std::time::Instant;
use viaduct_sip::{build, Message, ParseError};

/// The reason phrase we use for a status code we generate (RFC 3261 §21).
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        200 => "OK",
        302 => "Moved Temporarily",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        423 => "Interval Too Brief",
        430 => "Flow Failed",
        480 => "Temporarily Unavailable",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        487 => "Request Terminated",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        _ => "Unknown",
    }
}

/// A router's answer code: a final non-2xx status, or 500 for anything else.
pub(super) fn final_code(code: u16) -> u16 {
    if (300..=699).contains(&code) {
        code
    } else {
        500
    }
}

impl Proxy {
    /// The To tag for answers this proxy generates to `msg`: stable for the
    /// request, so a retransmitted request gets the same answer.
    ///
    /// It covers only what the ACK of that answer repeats (Call-ID, From tag,
    /// CSeq number), so the ACK can be recognised and absorbed without any
    /// state (RFC 3261 §16.11; Kamailio's sl module does the same).
    pub(super) fn local_tag(&self, msg: &Message<'_>) -> String {
        format!("vd{:x}", self.tag_seed ^ super::branch::dialog_hash(msg))
    }

    /// True for the ACK of a non-2xx answer this proxy generated itself.
    pub(super) fn is_ack_of_local_answer(&self, msg: &Message<'_>) -> bool {
        let tag = msg.to().and_then(|t| t.tag()).unwrap_or_default();
        tag.starts_with(b"vd") && tag == self.local_tag(msg).as_bytes()
    }

    /// Builds a response to `msg`; `extra` are header lines without CRLF.
    pub(super) fn build_response(
        &self,
        msg: &Message<'_>,
        source: std::net::SocketAddr,
        code: u16,
        reason: &str,
        extra: &[&str],
    ) -> Bytes {
        // A 100 gets no To tag (RFC 3261 §8.2.6.2), so it needs none made.
        let tag = (code > 100).then(|| self.local_tag(msg));
        let mut out = Vec::with_capacity(msg.len().min(1024) + 128);
        build::response(msg, source, code, reason, tag.as_deref(), extra, &mut out);
        Bytes::from(out)
    }

    /// Answers through a server transaction (absorbing retransmissions of the request).
    pub(super) fn respond_local(
        &mut self,
        now: Instant,
        id: TxId,
        msg: &Message<'_>,
        source: std::net::SocketAddr,
        code: u16,
        reason: &str,
    ) {
        if code >= 300 {
            count!(self.stats.local_failures);
        }
        let data = self.build_response(msg, source, code, reason, &[]);
        self.respond(now, id, code, data);
    }

    /// Answers without a transaction: for requests that fail validation, where
    /// a retransmission simply gets the same answer again.
    pub(super) fn respond_stateless(
        &mut self,
        msg: &Message<'_>,
        inc: &Incoming,
        code: u16,
        reason: &str,
        extra: &[&str],
    ) {
        if code >= 300 {
            count!(self.stats.local_failures);
        }
        tracing::debug!(source = %inc.source, code, reason, "answering without forwarding");
        self.stats.response_sent(code);
        let data = self.build_response(msg, inc.source, code, reason, extra);
        let dest = msg
            .top_via()
            .map(|v| super::next_hop::response_destination(&v, inc.source))
            .unwrap_or(inc.source);
        self.send(data, dest, inc.transport, inc.flow);
    }

    /// A message that did not parse: requests get 400 (or 505/513) with the
    /// problem in the reason phrase when enough of the headers can be read to
    /// address an answer (RFC 4475 §3.1.2); responses and garbage are dropped.
    pub(super) fn answer_unparsable(&mut self, incoming: &Incoming, err: ParseError) {
        let data = &incoming.data[..];
        let trimmed = data.trim_ascii_start();
        if trimmed.is_empty() {
            // CRLF keep-alive (RFC 5626 §3.5.1) or an empty datagram.
            return;
        }
        tracing::info!(source = %incoming.source, error = %err, "malformed message");
        self.stats.drop(super::DropReason::ParseError);
        if trimmed.len() >= 4 && trimmed[..4].eq_ignore_ascii_case(b"SIP/") {
            return;
        }
        let mut out = Vec::with_capacity(512);
        if answer_from_raw_headers(data, err.status(), err.reason(), &mut out) {
            count!(self.stats.local_failures);
            self.stats.response_sent(err.status());
            let out = Bytes::from(out);
            self.send(out, incoming.source, incoming.transport, incoming.flow);
        }
    }
}

/// Writes a response from the Via, From, To, Call-ID and CSeq lines of a
/// request whose start line or framing is broken. Returns false when one of
/// them is missing (nothing to address the answer with).
fn answer_from_raw_headers(data: &[u8], code: u16, reason: &str, out: &mut Vec<u8>) -> bool {
    let head_end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(data.len());
    let head = &data[..head_end];
    let mut found = [false; 5];
    let mut header_lines: Vec<&[u8]> = Vec::new();
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = viaduct_sip::HeaderName::from_bytes(line[..colon].trim_ascii());
        let slot = match name {
            viaduct_sip::HeaderName::Via => 0,
            viaduct_sip::HeaderName::From => 1,
            viaduct_sip::HeaderName::To => 2,
            viaduct_sip::HeaderName::CallId => 3,
            viaduct_sip::HeaderName::CSeq => 4,
            _ => continue,
        };
        found[slot] = true;
        header_lines.push(line);
    }
    if found.iter().any(|f| !f) {
        return false;
    }
    let _ = write!(out, "SIP/2.0 {code} {reason}\r\n");
    for line in header_lines {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    let _ = write!(out, "Server: Viaduct\r\nContent-Length: 0\r\n\r\n");
    true
}
