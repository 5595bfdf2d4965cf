//! The message view: one pass over the received bytes records where the start
//! line, each header and the body are; typed values are parsed on demand.

use crate::error::ParseError;
use crate::header::name_addr::Fault;
use crate::header::{CSeq, HeaderName, NameAddr, Via};
use crate::method::Method;
use crate::scan::{is_lws, is_token, is_token_str, is_word, parse_u32_max, trim, CommaSplit};
use crate::uri::Uri;
use smallvec::SmallVec;
use std::cell::OnceCell;
use std::ops::Range;

/// Header lines kept inline before the list spills to the heap. A typical
/// INVITE has 10-15; SIPp's has 10.
const INLINE_HEADERS: usize = 24;
/// Beyond this many header lines the message is refused (400): no legitimate
/// request needs more, and it bounds the work an attacker can ask for.
pub const MAX_HEADERS: usize = 256;

/// How the message arrived, which decides how its end is found (RFC 3261 §18.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// The buffer is one datagram: a missing Content-Length means "the rest";
    /// bytes past Content-Length are discarded.
    Datagram,
    /// The buffer is one framed message from a stream (see [`frame_stream`]);
    /// Content-Length is mandatory.
    Stream,
}

/// The first line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine<'a> {
    /// `METHOD Request-URI SIP/2.0`
    Request {
        /// The method.
        method: Method<'a>,
        /// The Request-URI, parsed.
        uri: Uri<'a>,
    },
    /// `SIP/2.0 code reason`
    Response {
        /// Status code, 100..=699.
        code: u16,
        /// Reason phrase bytes (may be empty, may be UTF-8).
        reason: &'a [u8],
    },
}

/// Where one header line sits in the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderField {
    /// Recognised name.
    pub name: HeaderName,
    /// The name as written.
    pub name_span: Range<usize>,
    /// The value, trimmed, folds included.
    pub value_span: Range<usize>,
    /// The whole line(s) including the final CRLF: what an editor removes.
    pub line_span: Range<usize>,
}

/// A parsed SIP message borrowing the received bytes.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    buf: &'a [u8],
    start: StartLine<'a>,
    /// The start line without its CRLF.
    start_span: Range<usize>,
    headers: SmallVec<[HeaderField; INLINE_HEADERS]>,
    /// Offset of the first header line (just past the start line's CRLF).
    headers_start: usize,
    /// Offset of the blank line that ends the headers.
    headers_end: usize,
    body: Range<usize>,
    /// A datagram whose header block ran to its end with no blank line (see [`Message::parse`]).
    unterminated: bool,
    /// The typed values the proxy reads several times per message, parsed on
    /// the first read (or by [`Message::validate`]) and kept.
    parsed: Parsed<'a>,
}

/// Values parsed at most once per [`Message`]: every transaction lookup,
/// branch hash and forwarded copy reads the top Via, From, To and CSeq again,
/// and parsing them is most of what a message costs (see `examples/bench`).
#[derive(Debug, Clone, Default)]
struct Parsed<'a> {
    top_via: OnceCell<Option<Via<'a>>>,
    from: OnceCell<Option<NameAddr<'a>>>,
    to: OnceCell<Option<NameAddr<'a>>>,
    cseq: OnceCell<Option<CSeq<'a>>>,
}

impl<'a> Message<'a> {
    /// Parses one message. Leading CRLFs are skipped (RFC 3261 §7.5).
    ///
    /// Only framing, the start line and header boundaries are checked here;
    /// [`Message::validate`] checks the headers a proxy relies on.
    ///
    /// A datagram is complete by definition: when its header lines run to its
    /// end with no blank line (RFC 4475 §3.1.2.15 baddn), the headers are kept so
    /// a 400 can be built from them, and [`Message::validate`] refuses the
    /// message ([`ParseError::Incomplete`] unless a header is worse). On a stream
    /// that is [`ParseError::Incomplete`] here.
    pub fn parse(buf: &'a [u8], framing: Framing) -> Result<Message<'a>, ParseError> {
        let mut pos = 0;
        while buf[pos..].starts_with(b"\r\n") {
            pos += 2;
        }
        let (line_end, next) = find_line_end(buf, pos).ok_or(ParseError::Incomplete)?;
        let start_span = pos..line_end;
        let start = parse_start_line(&buf[start_span.clone()])?;
        let headers_start = next;
        let mut headers = SmallVec::new();
        let mut pos = next;
        let headers_end;
        let mut unterminated = false;
        loop {
            if pos == buf.len() && framing == Framing::Datagram {
                headers_end = pos;
                unterminated = true;
                break;
            }
            let (end, next) = find_line_end(buf, pos).ok_or(ParseError::Incomplete)?;
            if end == pos {
                headers_end = pos;
                pos = next;
                break;
            }
            // Folded continuation lines (RFC 3261 §7.3.1) belong to this header.
            let (mut value_end, mut line_next) = (end, next);
            while matches!(buf.get(line_next), Some(b' ' | b'\t')) {
                let (e, n) = find_line_end(buf, line_next).ok_or(ParseError::Incomplete)?;
                value_end = e;
                line_next = n;
            }
            if headers.len() == MAX_HEADERS {
                return Err(ParseError::TooManyHeaders);
            }
            headers.push(parse_header_line(buf, pos, value_end, line_next)?);
            pos = line_next;
        }
        let available = buf.len() - pos;
        let mut lengths = headers
            .iter()
            .filter(|h: &&HeaderField| h.name == HeaderName::ContentLength);
        let first_length = lengths.next();
        if lengths.next().is_some() {
            // Two Content-Lengths leave the framing ambiguous (RFC 4475 §3.3.9 mcl01).
            return Err(ParseError::BadContentLength);
        }
        let content_length = match first_length {
            Some(h) => Some(
                parse_u32_max(trim(&buf[h.value_span.clone()]), u32::MAX)
                    .ok_or(ParseError::BadContentLength)? as usize,
            ),
            None => None,
        };
        let body_len = match (content_length, framing) {
            (Some(n), _) if n > available => return Err(ParseError::ContentLengthTooLarge),
            (Some(n), _) => n,
            (None, Framing::Datagram) => available,
            (None, Framing::Stream) => return Err(ParseError::MissingHeader("Content-Length")),
        };
        Ok(Message {
            buf,
            start,
            start_span,
            headers,
            headers_start,
            headers_end,
            body: pos..pos + body_len,
            unterminated,
            parsed: Parsed::default(),
        })
    }

    /// The bytes this message was parsed from.
    pub fn bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// The start line.
    pub fn start_line(&self) -> &StartLine<'a> {
        &self.start
    }

    /// Span of the start line (without CRLF), for editors.
    pub fn start_span(&self) -> Range<usize> {
        self.start_span.clone()
    }

    /// Offset of the first header line.
    pub fn headers_start(&self) -> usize {
        self.headers_start
    }

    /// Offset of the blank line ending the headers: where appended headers go.
    pub fn headers_end(&self) -> usize {
        self.headers_end
    }

    /// Span of the body (after Content-Length framing).
    pub fn body_span(&self) -> Range<usize> {
        self.body.clone()
    }

    /// The body.
    pub fn body(&self) -> &'a [u8] {
        &self.buf[self.body.clone()]
    }

    /// Total length of this message in the buffer (a datagram may carry trailing bytes).
    pub fn len(&self) -> usize {
        self.body.end
    }

    /// True when the message has no bytes (never true for a parsed message).
    pub fn is_empty(&self) -> bool {
        self.body.end == 0
    }

    /// True for requests.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The method of a request, or the CSeq method of a response.
    pub fn method(&self) -> Option<Method<'a>> {
        match self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => self.cseq().map(|c| c.method),
        }
    }

    /// The Request-URI of a request.
    pub fn request_uri(&self) -> Option<Uri<'a>> {
        match self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    /// All header lines in order.
    pub fn headers(&self) -> &[HeaderField] {
        &self.headers
    }

    /// The value bytes of a header field.
    pub fn value(&self, h: &HeaderField) -> &'a [u8] {
        &self.buf[h.value_span.clone()]
    }

    /// The first header with this recognised name.
    pub fn header(&self, name: HeaderName) -> Option<&HeaderField> {
        self.headers.iter().find(|h| h.name == name)
    }

    /// Value of the first header with this name (recognised names only).
    pub fn header_value(&self, name: HeaderName) -> Option<&'a [u8]> {
        self.header(name).map(|h| self.value(h))
    }

    /// Value of the first header whose name matches `name` case-insensitively (any header).
    pub fn header_value_by_name(&self, name: &str) -> Option<&'a [u8]> {
        let wanted = HeaderName::from_bytes(name.as_bytes());
        self.headers
            .iter()
            .find(|h| {
                h.name == wanted
                    && (wanted != HeaderName::Other
                        || self.buf[h.name_span.clone()].eq_ignore_ascii_case(name.as_bytes()))
            })
            .map(|h| self.value(h))
    }

    /// Every value of a possibly multi-valued header, across lines and commas, in order,
    /// with the header line it came from.
    pub fn values(&self, name: HeaderName) -> impl Iterator<Item = (&HeaderField, &'a [u8])> + '_ {
        let buf = self.buf;
        self.headers
            .iter()
            .filter(move |h| h.name == name)
            .flat_map(move |h| {
                CommaSplit::new(&buf[h.value_span.clone()]).map(move |v| (h, trim(v)))
            })
    }

    /// The topmost Via value.
    pub fn top_via(&self) -> Option<Via<'a>> {
        *self.parsed.top_via.get_or_init(|| {
            self.values(HeaderName::Via)
                .next()
                .and_then(|(_, v)| Via::parse(v))
        })
    }

    /// Number of Via values.
    pub fn via_count(&self) -> usize {
        self.values(HeaderName::Via).count()
    }

    /// Call-ID, trimmed.
    pub fn call_id(&self) -> Option<&'a [u8]> {
        self.header_value(HeaderName::CallId).map(trim)
    }

    /// CSeq, parsed.
    pub fn cseq(&self) -> Option<CSeq<'a>> {
        *self
            .parsed
            .cseq
            .get_or_init(|| self.header_value(HeaderName::CSeq).and_then(CSeq::parse))
    }

    /// From, parsed.
    pub fn from(&self) -> Option<NameAddr<'a>> {
        *self.parsed.from.get_or_init(|| {
            self.header_value(HeaderName::From)
                .and_then(NameAddr::parse)
        })
    }

    /// To, parsed.
    pub fn to(&self) -> Option<NameAddr<'a>> {
        *self
            .parsed
            .to
            .get_or_init(|| self.header_value(HeaderName::To).and_then(NameAddr::parse))
    }

    /// Max-Forwards, when present and valid (0..=255).
    pub fn max_forwards(&self) -> Option<u8> {
        self.header_value(HeaderName::MaxForwards)
            .and_then(|v| parse_u32_max(trim(v), 255))
            .map(|v| v as u8)
    }

    /// Route values in order (unparsable ones are skipped; [`Message::validate`] refuses them).
    pub fn routes(&self) -> impl Iterator<Item = NameAddr<'a>> + '_ {
        self.values(HeaderName::Route)
            .filter_map(|(_, v)| NameAddr::parse(v))
    }

    /// Record-Route values in order.
    pub fn record_routes(&self) -> impl Iterator<Item = NameAddr<'a>> + '_ {
        self.values(HeaderName::RecordRoute)
            .filter_map(|(_, v)| NameAddr::parse(v))
    }

    /// Contact values (a `*` Contact yields nothing).
    pub fn contacts(&self) -> impl Iterator<Item = NameAddr<'a>> + '_ {
        self.values(HeaderName::Contact)
            .filter_map(|(_, v)| NameAddr::parse(v))
    }

    /// Content-Length as framed.
    pub fn content_length(&self) -> usize {
        self.body.len()
    }

    /// Content-Type value.
    pub fn content_type(&self) -> Option<&'a [u8]> {
        self.header_value(HeaderName::ContentType).map(trim)
    }

    /// Checks the headers every transaction and proxy step relies on
    /// (RFC 3261 §8.1.1, §16.3 step 1): Via, From, To, Call-ID, CSeq present and
    /// well-formed, CSeq method matching, Max-Forwards in range, Route/Contact/
    /// Record-Route well-formed. Responses that fail are dropped by the caller;
    /// requests are answered with [`ParseError::status`].
    pub fn validate(&self) -> Result<(), ParseError> {
        let mut vias = 0;
        for (_, v) in self.values(HeaderName::Via) {
            let via = Via::parse(v).ok_or(ParseError::BadHeader("Via"))?;
            if vias == 0 {
                let _ = self.parsed.top_via.set(Some(via));
            }
            vias += 1;
        }
        if vias == 0 {
            return Err(ParseError::MissingHeader("Via"));
        }
        for (name, label, cell) in [
            (HeaderName::From, "From", &self.parsed.from),
            (HeaderName::To, "To", &self.parsed.to),
        ] {
            let mut lines = self.headers.iter().filter(|h| h.name == name);
            let h = lines.next().ok_or(ParseError::MissingHeader(label))?;
            if lines.next().is_some() {
                return Err(ParseError::BadHeader(label));
            }
            let na = NameAddr::parse_detailed(self.value(h)).map_err(|fault| match fault {
                Fault::UnterminatedQuote => ParseError::UnterminatedQuote(label),
                Fault::DisplayName => ParseError::BadDisplayName(label),
                Fault::Other => ParseError::BadHeader(label),
            })?;
            let _ = cell.set(Some(na));
        }
        // Single-valued headers a proxy keys on must appear once (RFC 4475 §3.3.8 multi01).
        for (name, label) in [
            (HeaderName::CallId, "Call-ID"),
            (HeaderName::CSeq, "CSeq"),
            (HeaderName::MaxForwards, "Max-Forwards"),
        ] {
            if self.headers.iter().filter(|h| h.name == name).count() > 1 {
                return Err(ParseError::BadHeader(label));
            }
        }
        // callid = word [ "@" word ] (RFC 3261 §25.1).
        let call_id = self.call_id().ok_or(ParseError::MissingHeader("Call-ID"))?;
        let mut words = call_id.splitn(2, |&b| b == b'@');
        if !words.all(|w| !w.is_empty() && w.iter().all(|&b| is_word(b))) {
            return Err(ParseError::BadHeader("Call-ID"));
        }
        if self.header(HeaderName::CSeq).is_none() {
            return Err(ParseError::MissingHeader("CSeq"));
        }
        let cseq = self.cseq().ok_or(ParseError::BadHeader("CSeq"))?;
        if let StartLine::Request { method, .. } = self.start {
            if cseq.method != method {
                return Err(ParseError::CSeqMethodMismatch);
            }
        }
        if self.header(HeaderName::MaxForwards).is_some() && self.max_forwards().is_none() {
            return Err(ParseError::BadHeader("Max-Forwards"));
        }
        for (name, label) in [
            (HeaderName::Route, "Route"),
            (HeaderName::RecordRoute, "Record-Route"),
        ] {
            if self.values(name).any(|(_, v)| NameAddr::parse(v).is_none()) {
                return Err(ParseError::BadHeader(label));
            }
        }
        if self
            .values(HeaderName::Contact)
            .any(|(_, v)| v != b"*" && NameAddr::parse(v).is_none())
        {
            return Err(ParseError::BadHeader("Contact"));
        }
        if let Some(v) = self.header_value(HeaderName::Expires) {
            parse_u32_max(trim(v), u32::MAX).ok_or(ParseError::BadHeader("Expires"))?;
        }
        if let Some(v) = self.header_value(HeaderName::Date) {
            // RFC 3261 §20.17: SIP-date is always GMT.
            if !trim(v).ends_with(b" GMT") {
                return Err(ParseError::BadHeader("Date"));
            }
        }
        if let Some(ct) = self.content_type() {
            let mime = ct
                .split(|&b| b == b';')
                .next()
                .map(trim)
                .unwrap_or_default();
            let mut parts = mime.splitn(2, |&b| b == b'/');
            let (t, s) = (parts.next().map(trim), parts.next().map(trim));
            if !t.is_some_and(is_token_str) || !s.is_some_and(is_token_str) {
                return Err(ParseError::BadHeader("Content-Type"));
            }
        }
        if self.unterminated {
            return Err(ParseError::Incomplete);
        }
        Ok(())
    }
}

/// Finds the end of one message in a stream buffer (RFC 3261 §18.3): `Ok(Some(n))`
/// when the first `n` bytes are a whole message, `Ok(None)` when more bytes are
/// needed, an error when the head is complete but has no usable Content-Length.
/// Leading CRLFs (keep-alives, RFC 5626 §3.5.1) are part of the returned length.
pub fn frame_stream(buf: &[u8], max_message: usize) -> Result<Option<usize>, ParseError> {
    let mut start = 0;
    while buf[start..].starts_with(b"\r\n") {
        start += 2;
    }
    let Some(end) = memchr::memmem::find(&buf[start..], b"\r\n\r\n") else {
        if buf.len() - start > max_message {
            return Err(ParseError::TooLarge);
        }
        return Ok(None);
    };
    let head_end = start + end + 4;
    let mut content_length = None;
    for line in buf[start..head_end].split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if HeaderName::from_bytes(trim(&line[..colon])) == HeaderName::ContentLength {
            if content_length.is_some() {
                // Ambiguous framing: the stream cannot be resynchronised (RFC 4475 §3.3.9).
                return Err(ParseError::BadContentLength);
            }
            content_length = Some(
                parse_u32_max(trim(&line[colon + 1..]), u32::MAX)
                    .ok_or(ParseError::BadContentLength)? as usize,
            );
        }
    }
    let len = head_end + content_length.ok_or(ParseError::MissingHeader("Content-Length"))?;
    if len - start > max_message {
        return Err(ParseError::TooLarge);
    }
    Ok((buf.len() >= len).then_some(len))
}

/// `(end of line content, start of next line)`; accepts bare LF as well as CRLF.
fn find_line_end(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    let lf = from + memchr::memchr(b'\n', &buf[from..])?;
    let end = if lf > from && buf[lf - 1] == b'\r' {
        lf - 1
    } else {
        lf
    };
    Some((end, lf + 1))
}

fn parse_header_line(
    buf: &[u8],
    start: usize,
    value_end: usize,
    line_end: usize,
) -> Result<HeaderField, ParseError> {
    let line = &buf[start..value_end];
    let colon = memchr::memchr(b':', line).ok_or(ParseError::BadHeaderLine)?;
    // HCOLON allows SP/HT between the name and the colon.
    let mut name_end = colon;
    while name_end > 0 && matches!(line[name_end - 1], b' ' | b'\t') {
        name_end -= 1;
    }
    let name = &line[..name_end];
    if name.is_empty() || !name.iter().all(|&b| is_token(b)) {
        return Err(ParseError::BadHeaderLine);
    }
    let mut v_start = colon + 1;
    while v_start < line.len() && is_lws(line[v_start]) {
        v_start += 1;
    }
    let mut v_end = line.len();
    while v_end > v_start && is_lws(line[v_end - 1]) {
        v_end -= 1;
    }
    Ok(HeaderField {
        name: HeaderName::from_bytes(name),
        name_span: start..start + name_end,
        value_span: start + v_start..start + v_end,
        line_span: start..line_end,
    })
}

fn parse_start_line(line: &[u8]) -> Result<StartLine<'_>, ParseError> {
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        return parse_status_line(line);
    }
    // Request-Line = Method SP Request-URI SP SIP-Version: exactly one SP each
    // (RFC 4475 §3.1.2.9 lwsstart, §3.1.2.10 trws). Between the first and the
    // last SP is the Request-URI, so LWS inside it (§3.1.2.8 lwsruri) is a bad URI.
    let (Some(first), Some(last)) = (memchr::memchr(b' ', line), memchr::memrchr(b' ', line))
    else {
        return Err(ParseError::BadStartLine);
    };
    let (m, u, v) = (
        &line[..first],
        &line[first + 1..last.max(first + 1)],
        &line[last + 1..],
    );
    if first == last || u.is_empty() || u[0] == b' ' || u[u.len() - 1] == b' ' {
        return Err(ParseError::BadStartLine);
    }
    let method = Method::parse(m).ok_or(ParseError::BadStartLine)?;
    check_version(v)?;
    let uri = Uri::parse(u).map_err(|_| ParseError::BadRequestUri)?;
    if uri.headers.is_some() {
        // Headers are not allowed in a Request-URI (RFC 3261 §19.1.5 table; RFC 4475 §3.1.2.11).
        return Err(ParseError::BadRequestUri);
    }
    Ok(StartLine::Request { method, uri })
}

fn parse_status_line(line: &[u8]) -> Result<StartLine<'_>, ParseError> {
    let sp = memchr::memchr(b' ', line).ok_or(ParseError::BadStartLine)?;
    check_version(&line[..sp])?;
    let rest = &line[sp + 1..];
    let code_end = memchr::memchr(b' ', rest).unwrap_or(rest.len());
    if code_end != 3 {
        return Err(ParseError::BadStatusCode);
    }
    let code = parse_u32_max(&rest[..3], 699).ok_or(ParseError::BadStatusCode)?;
    if code < 100 {
        return Err(ParseError::BadStatusCode);
    }
    let reason = rest.get(code_end + 1..).unwrap_or_default();
    Ok(StartLine::Response {
        code: code as u16,
        reason,
    })
}

/// SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT; only 2.0 is spoken (505 otherwise).
fn check_version(v: &[u8]) -> Result<(), ParseError> {
    if v.len() < 4 || !v[..4].eq_ignore_ascii_case(b"SIP/") {
        return Err(ParseError::BadStartLine);
    }
    let num = &v[4..];
    let Some(dot) = num.iter().position(|&b| b == b'.') else {
        return Err(ParseError::BadStartLine);
    };
    let (major, minor) = (&num[..dot], &num[dot + 1..]);
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    if !digits(major) || !digits(minor) {
        return Err(ParseError::BadStartLine);
    }
    if major != b"2" || minor != b"0" {
        return Err(ParseError::UnsupportedVersion);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
