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

/// Parses an unsigned decimal of at most `max`, digits only.
pub(crate) fn parse_u32_max(s: &[u8], max: u32) -> Option<u32> {
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
        self.0.split(|&b| b == b';').filter_map(|p| {
            let p = trim(p);
            if p.is_empty() {
                return None;
            }
            match p.iter().position(|&b| b == b'=') {
                Some(eq) => Some((trim(&p[..eq]), Some(trim(&p[eq + 1..])))),
                None => Some((p, None)),
            }
        })
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

    /// Checks that every parameter is `token[=value]` with a non-empty name.
    pub(crate) fn well_formed(&self) -> bool {
        let s = self.0;
        if s.is_empty() {
            return true;
        }
        if s[0] != b';' {
            return false;
        }
        s[1..].split(|&b| b == b';').all(|p| {
            let p = trim(p);
            let (name, value) = match p.iter().position(|&b| b == b'=') {
                Some(eq) => (trim(&p[..eq]), Some(trim(&p[eq + 1..]))),
                None => (p, None),
            };
            is_token_str(name)
                && value.is_none_or(|v| {
                    !v.is_empty() && (is_quoted(v) || v.iter().all(|&b| is_param_value(b)))
                })
        })
    }
}

fn is_quoted(v: &[u8]) -> bool {
    v.len() >= 2 && v[0] == b'"' && v[v.len() - 1] == b'"'
}

// token, IPv6 references and URI param characters (RFC 3261 §25.1 gen-value, paramchar).
fn is_param_value(b: u8) -> bool {
    is_token(b)
        || matches!(
            b,
            b'[' | b']' | b':' | b'&' | b'$' | b'/' | b'(' | b')' | b'@' | b'=' | b'?'
        )
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
        assert!(p.well_formed());
        assert!(!Params(b";;").well_formed());
    }

    #[test]
    fn u32_bounds() {
        assert_eq!(parse_u32_max(b"70", 255), Some(70));
        assert_eq!(parse_u32_max(b"300", 255), None);
        assert_eq!(parse_u32_max(b"36893488147419103232", u32::MAX), None);
        assert_eq!(parse_u32_max(b"-1", 10), None);
    }
}
