//! Forwarding by editing the received bytes.
//!
//! A proxy changes a handful of places in a message (RFC 3261 §16.6: Request-URI,
//! Max-Forwards, Route, Record-Route, Via). [`Editor`] records those changes as
//! byte ranges of the original and writes the result in one pass, so every
//! header we do not touch (unknown ones, their order, folding, the body, the
//! reason phrase) leaves exactly as it came in.

use crate::header::HeaderName;
use crate::message::Message;
use crate::scan::{offset_in, trim, CommaSplit};
use smallvec::SmallVec;
use std::ops::Range;

#[derive(Debug)]
struct Edit {
    at: Range<usize>,
    text: Range<usize>,
}

/// A set of replacements over one message's bytes.
#[derive(Debug)]
pub struct Editor<'a> {
    src: &'a [u8],
    edits: SmallVec<[Edit; 8]>,
    /// Inserted text, referenced by the edits.
    scratch: Vec<u8>,
}

impl<'a> Editor<'a> {
    /// Starts editing `src`.
    pub fn new(src: &'a [u8]) -> Self {
        Editor {
            src,
            edits: SmallVec::new(),
            scratch: Vec::with_capacity(256),
        }
    }

    /// Replaces `at` with `text`. Edits must not overlap (an insertion at the
    /// start of a replaced range is fine and lands before it).
    pub fn replace(&mut self, at: Range<usize>, text: &[u8]) {
        let start = self.scratch.len();
        self.scratch.extend_from_slice(text);
        self.edits.push(Edit {
            at,
            text: start..self.scratch.len(),
        });
    }

    /// Replaces `at` with text written by `write` into the scratch buffer (no temporary allocation).
    pub fn replace_with(&mut self, at: Range<usize>, write: impl FnOnce(&mut Vec<u8>)) {
        let start = self.scratch.len();
        write(&mut self.scratch);
        self.edits.push(Edit {
            at,
            text: start..self.scratch.len(),
        });
    }

    /// Inserts `text` at `at`.
    pub fn insert(&mut self, at: usize, text: &[u8]) {
        self.replace(at..at, text);
    }

    /// Removes a range.
    pub fn remove(&mut self, at: Range<usize>) {
        self.replace(at, b"");
    }

    /// Writes the edited message, up to `end` of the source (the message's own
    /// length: bytes after it in a datagram are not forwarded).
    pub fn finish_into(mut self, end: usize, out: &mut Vec<u8>) {
        // Stable sort: equal starts keep insertion order, and an empty range sorts first.
        self.edits.sort_by_key(|e| (e.at.start, e.at.end));
        out.reserve(end + self.scratch.len());
        let mut cursor = 0;
        for e in &self.edits {
            if e.at.start < cursor || e.at.end > end {
                debug_assert!(false, "overlapping or out-of-range edit {:?}", e.at);
                continue;
            }
            out.extend_from_slice(&self.src[cursor..e.at.start]);
            out.extend_from_slice(&self.scratch[e.text.clone()]);
            cursor = e.at.end;
        }
        out.extend_from_slice(&self.src[cursor..end]);
    }

    /// [`Editor::finish_into`] a new vector.
    pub fn finish(self, end: usize) -> Vec<u8> {
        let mut out = Vec::new();
        self.finish_into(end, &mut out);
        out
    }
}

impl Message<'_> {
    /// The range to remove to drop the first value of `name`: the whole line
    /// when it holds one value, else that value and its comma (RFC 3261 §7.3.1).
    pub fn first_value_removal(&self, name: HeaderName) -> Option<Range<usize>> {
        let h = self.header(name)?;
        let value = self.value(h);
        let mut items = CommaSplit::new(value);
        items.next()?;
        match items.next() {
            Some(next) => {
                let next = trim(next);
                Some(h.value_span.start..h.value_span.start + offset_in(value, next))
            }
            None => Some(h.line_span.clone()),
        }
    }

    /// Span of the first value of `name`, trimmed (e.g. the top Via, to rewrite it).
    pub fn first_value_span(&self, name: HeaderName) -> Option<Range<usize>> {
        let h = self.header(name)?;
        let value = self.value(h);
        let first = trim(CommaSplit::new(value).next()?);
        let start = h.value_span.start + offset_in(value, first);
        Some(start..start + first.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Framing;

    const MSG: &[u8] = b"INVITE sip:bob@b.example SIP/2.0\r\n\
Via: SIP/2.0/UDP a.example;branch=z9hG4bK1\r\n\
Route: <sip:p1.example;lr>, <sip:p2.example;lr>\r\n\
X-Unknown:   keep   me  \r\n\
Max-Forwards: 70\r\n\
Content-Length: 4\r\n\
\r\n\
body";

    #[test]
    fn edits_leave_everything_else_byte_exact() {
        let m = Message::parse(MSG, Framing::Datagram).unwrap();
        let mut e = Editor::new(MSG);
        e.insert(
            m.headers_start(),
            b"Via: SIP/2.0/UDP proxy;branch=z9hG4bKp\r\n",
        );
        e.remove(m.first_value_removal(HeaderName::Route).unwrap());
        let mf = m
            .header(HeaderName::MaxForwards)
            .unwrap()
            .value_span
            .clone();
        e.replace(mf, b"69");
        let out = e.finish(m.len());
        assert_eq!(
            out,
            &b"INVITE sip:bob@b.example SIP/2.0\r\n\
Via: SIP/2.0/UDP proxy;branch=z9hG4bKp\r\n\
Via: SIP/2.0/UDP a.example;branch=z9hG4bK1\r\n\
Route: <sip:p2.example;lr>\r\n\
X-Unknown:   keep   me  \r\n\
Max-Forwards: 69\r\n\
Content-Length: 4\r\n\
\r\n\
body"[..]
        );
    }

    #[test]
    fn removing_the_last_value_removes_the_line() {
        let msg = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP p;branch=z9hG4bKp\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n";
        let m = Message::parse(msg, Framing::Datagram).unwrap();
        let mut e = Editor::new(msg);
        e.remove(m.first_value_removal(HeaderName::Via).unwrap());
        assert_eq!(
            e.finish(m.len()),
            &b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n"[..]
        );
    }
}
