//! Byte-level helpers shared by the header parsers.
//!
//! Header values are spans of the received buffer. A folded value (RFC 3261
//! §7.3.1) still contains its CRLF, so every helper here treats CR and LF like
//! SP/HT: once the header boundaries are known, a fold is just whitespace.

/// RFC 3261 §25.1 `token` characters.
pub(crate) const fn is_token(b: u8) -> bool {
    matches!(b,
        b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9'
        | b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~')
}

/// Whitespace inside a header value, folds included.
pub(crate) const fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

pub(crate) fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_lws(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_lws(*last) {
            break;
        }
        s = rest;
    }
    s
}

pub(crate) fn trim_start(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_lws(*first) {
            break;
        }
        s = rest;
    }
    s
}

pub(crate) fn is_token_str(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_token(b))
}

/// RFC 3261 §25.1 `word` characters (Call-ID).
pub(crate) const fn is_word(b: u8) -> bool {
    is_token(b)
        || matches!(
            b,
            b'(' | b')'
                | b'<'
                | b'>'
                | b':'
                | b'\\'
                | b'"'
                | b'/'
                | b'['
                | b']'
                | b'?'
                | b'{'
                | b'}'
        )
}

/// Parses an unsigned decimal of at most `max`, digits only; leading zeros are
/// fine (RFC 4475 §3.1.1.1 wsinv: `Max-Forwards: 0068`, `CSeq: 0009`).
pub(crate) fn parse_u32_max(s: &[u8], max: u32) -> Option<u32> {
    let zeros = s.iter().take_while(|&&b| b == b'0').count();
    // Keep the last digit so "0" and "000" stay non-empty.
    let s = &s[zeros.min(s.len().saturating_sub(1))..];
    if s.is_empty() || s.len() > 10 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(b - b'0');
    }
    if v > u64::from(max) {
        None
    } else {
        Some(v as u32)
    }
}

/// Splits a header value on the commas that separate values (RFC 3261 §7.3.1),
/// skipping commas inside quoted strings and `<...>`.
pub(crate) struct CommaSplit<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> CommaSplit<'a> {
    pub(crate) fn new(value: &'a [u8]) -> Self {
        CommaSplit { rest: Some(value) }
    }
}

impl<'a> Iterator for CommaSplit<'a> {
    /// One value, untrimmed; `offset_in` gives its place for an editor.
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let s = self.rest?;
        let mut in_quote = false;
        let mut in_angle = false;
        let mut i = 0;
        while i < s.len() {
            match s[i] {
                b'\\' if in_quote => i += 1,
                b'"' => in_quote = !in_quote,
                b'<' if !in_quote => in_angle = true,
                b'>' if !in_quote => in_angle = false,
                b',' if !in_quote && !in_angle => {
                    self.rest = Some(&s[i + 1..]);
                    return Some(&s[..i]);
                }
                _ => {}
            }
            i += 1;
        }
        self.rest = None;
        Some(s)
    }
}

/// Index just past the closing quote of the quoted-string at the start of `s`
/// (RFC 3261 §25.1: qdtext is LWS, %x21, %x23-5B, %x5D-7E or UTF-8; quoted-pair
/// is `\\` then any ASCII byte but CR/LF). `None` when `s` does not start with a
/// quote, the quote is never closed, or a byte is not allowed.
pub(crate) fn quoted_string_end(s: &[u8]) -> Option<usize> {
    if s.first() != Some(&b'"') {
        return None;
    }
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            b'"' => return std::str::from_utf8(&s[..=i]).is_ok().then_some(i + 1),
            b'\\' => match s.get(i + 1) {
                Some(&c) if c <= 0x7f && c != b'\r' && c != b'\n' => i += 2,
                _ => return None,
            },
            b' ' | b'\t' | b'\r' | b'\n' | 0x21..=0x7e | 0x80..=0xff => i += 1,
            _ => return None,
        }
    }
    None
}

/// Splits parameters on `;`, skipping those inside quoted strings (header
/// parameter values may be quoted-strings holding `;`).
pub(crate) struct ParamSplit<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> Iterator for ParamSplit<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let s = self.rest?;
        let mut in_quote = false;
        let mut i = 0;
        while i < s.len() {
            match s[i] {
                b'\\' if in_quote => i += 1,
                b'"' => in_quote = !in_quote,
                b';' if !in_quote => {
                    self.rest = Some(&s[i + 1..]);
                    return Some(&s[..i]);
                }
                _ => {}
            }
            i += 1;
        }
        self.rest = None;
        Some(s)
    }
}

/// Byte offset of `inner` inside `outer`; `inner` must be a subslice of `outer`.
pub(crate) fn offset_in(outer: &[u8], inner: &[u8]) -> usize {
    (inner.as_ptr() as usize).saturating_sub(outer.as_ptr() as usize)
}

/// `;name[=value]` parameters after a URI or header value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Params<'a>(pub(crate) &'a [u8]);

impl<'a> Params<'a> {
    /// The raw text, starting with `;` (or empty).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }

    /// Iterates `(name, value)`; a valueless parameter has an empty value.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> + 'a {
        ParamSplit { rest: Some(self.0) }.filter_map(split_param)
    }

    /// `Some(value)` when present (`Some(None)` for a flag like `;lr`), case-insensitive name.
    pub fn get(&self, name: &str) -> Option<Option<&'a [u8]>> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// True when the parameter is present, with or without a value.
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// URI parameters (RFC 3261 §19.1.1, §25.1 uri-parameters): every one is
    /// `pname[=pvalue]`, both made of paramchar (unreserved, `[]/:&+$`, `%HH`).
    pub(crate) fn well_formed_uri(&self) -> bool {
        self.each(|name, value| is_paramchars(name) && value.is_none_or(is_paramchars))
    }

    /// Header parameters (RFC 3261 §25.1 generic-param, via-params): every one
    /// is `token [= gen-value]` with LWS allowed around `;` and `=`, where
    /// gen-value is a token, a host (IPv6 with or without brackets, as Via
    /// `received` carries it) or a quoted-string.
    pub(crate) fn well_formed_header(&self) -> bool {
        self.each(|name, value| {
            is_token_str(name)
                && value.is_none_or(|v| {
                    is_token_str(v) || quoted_string_end(v) == Some(v.len()) || is_ipv6_host(v)
                })
        })
    }

    /// Empty, or `;` then non-empty parameters each accepted by `ok(name, value)`.
    fn each(&self, ok: impl Fn(&[u8], Option<&[u8]>) -> bool) -> bool {
        let s = self.0;
        if s.is_empty() {
            return true;
        }
        if s[0] != b';' {
            return false;
        }
        ParamSplit {
            rest: Some(&s[1..]),
        }
        .all(|p| split_param(p).is_some_and(|(name, value)| ok(name, value)))
    }
}

/// `name[=value]`, trimmed; `None` for an empty parameter.
fn split_param(p: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    let p = trim(p);
    if p.is_empty() {
        return None;
    }
    Some(match p.iter().position(|&b| b == b'=') {
        Some(eq) => (trim(&p[..eq]), Some(trim(&p[eq + 1..]))),
        None => (p, None),
    })
}

/// 1*paramchar: unreserved, param-unreserved or an `%HH` escape (RFC 3261 §25.1).
fn is_paramchars(s: &[u8]) -> bool {
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' if s.len() > i + 2
                && s[i + 1].is_ascii_hexdigit()
                && s[i + 2].is_ascii_hexdigit() =>
            {
                i += 3
            }
            b if crate::uri::is_unreserved(b)
                || matches!(b, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$') =>
            {
                i += 1
            }
            _ => return false,
        }
    }
    !s.is_empty()
}

fn is_ipv6_host(v: &[u8]) -> bool {
    let inner = v
        .strip_prefix(b"[")
        .and_then(|v| v.strip_suffix(b"]"))
        .unwrap_or(v);
    std::str::from_utf8(inner).is_ok_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comma_split_respects_quotes_and_angles() {
        let v = br#""a, b" <sip:x@y;p=1,2>, <sip:z>"#;
        let items: Vec<_> = CommaSplit::new(v).map(trim).collect();
        assert_eq!(items, vec![&br#""a, b" <sip:x@y;p=1,2>"#[..], b"<sip:z>"]);
    }

    #[test]
    fn params_lookup() {
        let p = Params(b";branch=z9hG4bK1;rport;received=1.2.3.4");
        assert_eq!(p.get("BRANCH"), Some(Some(&b"z9hG4bK1"[..])));
        assert_eq!(p.get("rport"), Some(None));
        assert_eq!(p.get("maddr"), None);
        assert!(p.well_formed_header());
        assert!(!Params(b";;").well_formed_header());
    }

    #[test]
    fn header_params_are_token_host_or_quoted() {
        // RFC 4475 §3.1.1.2 intmeth: token name, UTF-8 quoted-string value.
        let intmeth = ";fromParam''~+*_!.-%=\"\u{440}\u{430}\u{431}\u{43e}\u{442}\u{430}\u{44e}\u{449}\u{438}\u{439}\";tag=_token~1'+`*%!-.";
        let p = Params(intmeth.as_bytes());
        assert!(p.well_formed_header());
        assert_eq!(p.get("tag"), Some(Some(&b"_token~1'+`*%!-."[..])));
        // A quoted value may hold ';' and '=' (it is one parameter).
        let p = Params(br#";a="x;y=z" ; q = 0.5"#);
        assert!(p.well_formed_header());
        assert_eq!(p.get("a"), Some(Some(&br#""x;y=z""#[..])));
        assert_eq!(p.get("q"), Some(Some(&b"0.5"[..])));
        // Via received/maddr with IPv6 (RFC 5118).
        assert!(Params(b";received=2001:db8::9:255;maddr=[2001:db8::1]").well_formed_header());
        // Not token, host or quoted-string.
        assert!(!Params(b";a=x/y").well_formed_header());
        assert!(!Params(b";a=b@c").well_formed_header());
        assert!(!Params(br#";a="x"y""#).well_formed_header());
        assert!(!Params(br#";a="open"#).well_formed_header());
        assert!(!Params(b";a=").well_formed_header());
        assert!(!Params(b";a b=1").well_formed_header());
    }

    #[test]
    fn uri_params_are_paramchars() {
        // RFC 4475 §3.1.1.3 esc01: escaped names and values.
        assert!(Params(b";%6C%72;n%61me=v%61lue%25%34%31").well_formed_uri());
        assert!(Params(b";lr;transport=tcp;maddr=[2001:db8::1];x=a&b+c$d").well_formed_uri());
        assert!(!Params(b";x=%4").well_formed_uri());
        assert!(!Params(b";x=%zz").well_formed_uri());
        assert!(!Params(b";x=a@b").well_formed_uri());
        assert!(!Params(b";x=a`b").well_formed_uri());
        assert!(!Params(b";lr;").well_formed_uri());
    }

    #[test]
    fn quoted_strings() {
        // RFC 4475 §3.1.1.2 intmeth: quoted-pair BEL, NUL, DEL.
        let s = b"\"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f\" <sip:x@y>";
        assert_eq!(quoted_string_end(s), Some(22));
        assert_eq!(quoted_string_end(br#""a\"b" rest"#), Some(6));
        assert_eq!(quoted_string_end(br#""unterminated"#), None);
        assert_eq!(quoted_string_end(b"\"raw\x07ctl\""), None);
        assert_eq!(quoted_string_end(b"\"bad \xff utf8\""), None);
        assert_eq!(quoted_string_end(b"no quote"), None);
    }

    #[test]
    fn call_id_words() {
        // RFC 4475 §3.1.1.2 intmeth's Call-ID is all word characters.
        assert!(br#"intmeth.word%ZK-!.*_+'@word`~)(><:\/"][?}{"#
            .iter()
            .all(|&b| b == b'@' || is_word(b)));
        assert!(!is_word(b' ') && !is_word(b';') && !is_word(b',') && !is_word(b'@'));
    }

    #[test]
    fn u32_bounds() {
        assert_eq!(parse_u32_max(b"70", 255), Some(70));
        assert_eq!(parse_u32_max(b"300", 255), None);
        assert_eq!(parse_u32_max(b"36893488147419103232", u32::MAX), None);
        assert_eq!(parse_u32_max(b"-1", 10), None);
        // Leading zeros do not count against the ten digits (RFC 4475 wsinv).
        assert_eq!(parse_u32_max(b"0068", 255), Some(68));
        assert_eq!(parse_u32_max(b"000000000000000068", 255), Some(68));
        assert_eq!(parse_u32_max(b"0000", 255), Some(0));
        assert_eq!(parse_u32_max(b"0", 255), Some(0));
        assert_eq!(parse_u32_max(b"", 255), None);
        assert_eq!(parse_u32_max(b"00004294967296", u32::MAX), None);
    }
}
