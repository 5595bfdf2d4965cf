//! name-addr / addr-spec values: From, To, Contact, Route, Record-Route (RFC 3261 §20.10).

use crate::scan::{is_lws, is_token, trim, trim_start, Params};
use crate::uri::Uri;

/// `"Display" <sip:uri>;tag=x` or `sip:uri;tag=x`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// Display name as written (quotes kept), if any.
    pub display: Option<&'a [u8]>,
    /// The URI.
    pub uri: Uri<'a>,
    /// Header parameters after the URI (not the URI's own), starting with `;`.
    pub params: Params<'a>,
}

impl<'a> NameAddr<'a> {
    /// Parses one value (a single comma-separated element).
    pub fn parse(value: &'a [u8]) -> Option<NameAddr<'a>> {
        let v = trim(value);
        let (display, rest) = if v.first() == Some(&b'"') {
            let end = quoted_end(v)?;
            let rest = trim_start(&v[end..]);
            if rest.first() != Some(&b'<') {
                return None;
            }
            (Some(&v[..end]), rest)
        } else if let Some(lt) = v.iter().position(|&b| b == b'<') {
            let display = trim(&v[..lt]);
            // Unquoted display names are tokens separated by LWS (RFC 4475 §3.1.2.15 baddn).
            if !display.iter().all(|&b| is_token(b) || is_lws(b)) {
                return None;
            }
            (
                if display.is_empty() {
                    None
                } else {
                    Some(display)
                },
                &v[lt..],
            )
        } else {
            // addr-spec: the URI cannot hold ';', ',' or '?' here (§20.10), so ';' starts the header params.
            let end = v
                .iter()
                .position(|&b| b == b';' || is_lws(b))
                .unwrap_or(v.len());
            let uri = Uri::parse(&v[..end]).ok()?;
            if uri.headers.is_some() {
                // RFC 4475 §3.1.2.13 regbadct: a URI with headers needs <>.
                return None;
            }
            let params = Params(trim(&v[end..]));
            return params.well_formed().then_some(NameAddr {
                display: None,
                uri,
                params,
            });
        };
        // rest starts with '<'
        let gt = rest.iter().position(|&b| b == b'>')?;
        let uri = Uri::parse(&rest[1..gt]).ok()?;
        let params = Params(trim(&rest[gt + 1..]));
        params.well_formed().then_some(NameAddr {
            display,
            uri,
            params,
        })
    }

    /// The `tag` parameter (From/To).
    pub fn tag(&self) -> Option<&'a [u8]> {
        self.params.get("tag").flatten()
    }
}

/// Index just past the closing quote of a quoted-string starting at `s[0]`.
fn quoted_end(s: &[u8]) -> Option<usize> {
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse(br#" "Bob \"B\"" <sip:bob@biloxi.com>;tag=a6c85cf"#).unwrap();
        assert_eq!(n.display, Some(&br#""Bob \"B\"""#[..]));
        assert_eq!(n.uri.user, Some("bob"));
        assert_eq!(n.tag(), Some(&b"a6c85cf"[..]));

        let n = NameAddr::parse(b"Bob Smith <sip:bob@biloxi.com>").unwrap();
        assert_eq!(n.display, Some(&b"Bob Smith"[..]));
        assert_eq!(n.tag(), None);

        let n = NameAddr::parse(b"sip:carol@chicago.com;tag=887s").unwrap();
        assert_eq!(n.uri.host, "chicago.com");
        assert_eq!(n.tag(), Some(&b"887s"[..]));

        let n = NameAddr::parse(b"<sip:p1.example.com;lr>").unwrap();
        assert!(n.uri.is_loose_route());
    }

    #[test]
    fn torture_shapes_are_refused() {
        // quotbal: unterminated quote
        assert!(NameAddr::parse(br#""Mr. J. User <sip:j.user@example.com>"#).is_none());
        // baddn: comma in an unquoted display name
        assert!(NameAddr::parse(b"Bell, Alexander <sip:a.g.bell@bell-tel.com>;tag=43").is_none());
        // regbadct: headers in an addr-spec
        assert!(NameAddr::parse(b"sip:user@example.com?Route=%3Csip:sip.example.com%3E").is_none());
        // badaspec: whitespace inside <>
        assert!(NameAddr::parse(b"<sip:user@example.com; lr>").is_none());
    }
}
