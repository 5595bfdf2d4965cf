//! Branch parameters this proxy writes in its Via (RFC 3261 §16.6 step 8) and
//! the loop check that reads them back (§16.3 step 4).
//!
//! A branch is `z9hG4bKvd<hash>.<n>`: the hash covers what identifies the
//! request at this hop (method, Request-URI as received, Call-ID, From tag,
//! To tag, CSeq number), so the same request coming back to us carries a Via
//! of ours with the same hash (a loop), while a spiral (same request with a
//! new Request-URI) hashes differently. `n` numbers the branches of one
//! request in the order they start, serial or forked.

use viaduct_sip::{HeaderName, Message};

/// Every branch we write starts with this: the RFC 3261 cookie plus our mark.
pub(crate) const PREFIX: &str = "z9hG4bKvd";

/// 64-bit FNV-1a: fast, deterministic across restarts, good enough to tell requests apart.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Field separator so ("ab","c") and ("a","bc") differ.
        self.0 = (self.0 ^ 0xff).wrapping_mul(0x0000_0100_0000_01b3);
    }
}

/// The hash part of the branch for a request as received.
pub(crate) fn request_hash(msg: &Message<'_>) -> u64 {
    let mut h = Fnv::new();
    h.write(msg.method().map(|m| m.as_str()).unwrap_or("").as_bytes());
    h.write(msg.request_uri().map(|u| u.raw).unwrap_or("").as_bytes());
    h.write(msg.call_id().unwrap_or_default());
    h.write(msg.from().and_then(|f| f.tag()).unwrap_or_default());
    h.write(msg.to().and_then(|t| t.tag()).unwrap_or_default());
    h.write(&msg.cseq().map(|c| c.seq).unwrap_or(0).to_le_bytes());
    h.0
}

/// What a request and the ACK of its answer share: Call-ID, From tag, CSeq number.
pub(crate) fn dialog_hash(msg: &Message<'_>) -> u64 {
    let mut h = Fnv::new();
    h.write(msg.call_id().unwrap_or_default());
    h.write(msg.from().and_then(|f| f.tag()).unwrap_or_default());
    h.write(&msg.cseq().map(|c| c.seq).unwrap_or(0).to_le_bytes());
    h.0
}

/// The Call-ID alone: the key of a call up (see `dialogs.rs`).
pub(crate) fn call_id_hash(call_id: &[u8]) -> u64 {
    let mut h = Fnv::new();
    h.write(call_id);
    h.0
}

/// The hash for a request forwarded without a transaction (ACK for 2xx, CANCEL
/// with no context): also covers the previous hop's branch so retransmissions
/// get the same branch and distinct ACKs do not.
pub(crate) fn stateless_hash(msg: &Message<'_>) -> u64 {
    let mut h = Fnv(request_hash(msg));
    h.write(msg.top_via().and_then(|v| v.branch()).unwrap_or_default());
    h.0
}

/// Appends `z9hG4bKvd<hash>.<n>`.
pub(crate) fn push_branch(out: &mut Vec<u8>, hash: u64, n: usize) {
    out.extend_from_slice(&mark(hash));
    viaduct_sip::text::push_decimal(out, n as u64);
}

/// `z9hG4bKvd<hash>.`: what every branch of one request starts with.
fn mark(hash: u64) -> [u8; PREFIX.len() + 17] {
    let mut mark = [b'.'; PREFIX.len() + 17];
    mark[..PREFIX.len()].copy_from_slice(PREFIX.as_bytes());
    mark[PREFIX.len()..PREFIX.len() + 16].copy_from_slice(&viaduct_sip::text::hex64(hash));
    mark
}

/// True when one of the request's Via values is ours (sent-by matches `is_ours`)
/// and carries this request's hash: the request has looped (482).
pub(crate) fn is_loop(
    msg: &Message<'_>,
    hash: u64,
    is_ours: impl Fn(&str, Option<u16>) -> bool,
) -> bool {
    let mark = mark(hash);
    msg.values(HeaderName::Via).any(|(_, v)| {
        // A value without the mark cannot carry it as its branch: skip its parse.
        v.windows(mark.len()).any(|w| w == mark)
            && viaduct_sip::Via::parse(v).is_some_and(|via| {
                is_ours(via.host, via.port) && via.branch().is_some_and(|b| b.starts_with(&mark))
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use viaduct_sip::Framing;

    fn branch(hash: u64, n: usize) -> String {
        let mut out = Vec::new();
        push_branch(&mut out, hash, n);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn branch_text() {
        assert_eq!(branch(0xab, 3), "z9hG4bKvd00000000000000ab.3");
        assert_eq!(branch(u64::MAX, 12), "z9hG4bKvdffffffffffffffff.12");
    }

    fn msg(uri: &str, vias: &str) -> Vec<u8> {
        format!(
            "INVITE {uri} SIP/2.0\r\n{vias}From: <sip:a@a>;tag=1\r\nTo: <sip:b@b>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn loop_and_spiral() {
        let first = msg(
            "sip:b@10.0.0.2",
            "Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n",
        );
        let m = Message::parse(&first, Framing::Datagram).unwrap();
        let h = request_hash(&m);
        let ours = |host: &str, port: Option<u16>| host == "127.0.0.1" && port == Some(5060);
        let via = format!(
            "Via: SIP/2.0/UDP 10.0.0.3;branch=z9hG4bKx\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch={}\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n",
            branch(h, 0)
        );
        let looped = msg("sip:b@10.0.0.2", &via);
        let m = Message::parse(&looped, Framing::Datagram).unwrap();
        assert!(is_loop(&m, request_hash(&m), ours));
        // The same request with a new Request-URI is a spiral, not a loop.
        let spiral = msg("sip:b@10.0.0.4", &via);
        let m = Message::parse(&spiral, Framing::Datagram).unwrap();
        assert!(!is_loop(&m, request_hash(&m), ours));
        // Another proxy's Via with the same hash is not ours.
        let m = Message::parse(&looped, Framing::Datagram).unwrap();
        assert!(!is_loop(&m, h, |_, _| false));
    }
}
