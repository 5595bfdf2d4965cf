//! name-addr / addr-spec values: From, To, Contact, Route, Record-Route (RFC 3261 §20.10).

use crate::scan::{is_lws, is_token, quoted_string_end, trim, trim_start, Params};
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

/// Why a value is not a name-addr or addr-spec, so the 400 can say so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// A display name opens a quote it never closes (RFC 4475 §3.1.2.6 quotbal).
    UnterminatedQuote,
    /// An unquoted display name holds non-token characters (§3.1.2.15 baddn),
    /// or a quoted one holds bytes a quoted-string cannot.
    DisplayName,
    /// Anything else: the URI, the brackets or the parameters.
    Other,
}

impl<'a> NameAddr<'a> {
    /// Parses one value (a single comma-separated element).
    pub fn parse(value: &'a [u8]) -> Option<NameAddr<'a>> {
        Self::parse_detailed(value).ok()
    }

    /// [`NameAddr::parse`], saying what is wrong.
    pub(crate) fn parse_detailed(value: &'a [u8]) -> Result<NameAddr<'a>, Fault> {
        let v = trim(value);
        let (display, rest) = if v.first() == Some(&b'"') {
            let end = match quoted_string_end(v) {
                Some(end) => end,
                // A closing quote that is there but preceded by a forbidden byte
                // is a bad display name; no closing quote at all is unterminated.
                None if v[1..].contains(&b'"') => return Err(Fault::DisplayName),
                None => return Err(Fault::UnterminatedQuote),
            };
            let rest = trim_start(&v[end..]);
            if rest.first() != Some(&b'<') {
                return Err(Fault::Other);
            }
            (Some(&v[..end]), rest)
        } else if let Some(lt) = v.iter().position(|&b| b == b'<') {
            let display = trim(&v[..lt]);
            // Unquoted display names are tokens separated by LWS (RFC 4475 §3.1.2.15 baddn).
            if !display.iter().all(|&b| is_token(b) || is_lws(b)) {
                return Err(Fault::DisplayName);
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
            let uri = Uri::parse(&v[..end]).map_err(|_| Fault::Other)?;
            if uri.headers.is_some() {
                // RFC 4475 §3.1.2.13 regbadct: a URI with headers needs <>.
                return Err(Fault::Other);
            }
            let params = Params(trim(&v[end..]));
            if !params.well_formed_header() {
                return Err(Fault::Other);
            }
            return Ok(NameAddr {
                display: None,
                uri,
                params,
            });
        };
        // rest starts with '<'
        let gt = rest.iter().position(|&b| b == b'>').ok_or(Fault::Other)?;
        let uri = Uri::parse(&rest[1..gt]).map_err(|_| Fault::Other)?;
        let params = Params(trim(&rest[gt + 1..]));
        if !params.well_formed_header() {
            return Err(Fault::Other);
        }
        Ok(NameAddr {
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

    #[test]
    fn faults_name_the_problem() {
        // quotbal
        assert_eq!(
            NameAddr::parse_detailed(br#""Mr. J. User <sip:j.user@example.com>"#),
            Err(Fault::UnterminatedQuote)
        );
        // baddn
        assert_eq!(
            NameAddr::parse_detailed(b"Bell, Alexander <sip:a.g.bell@example.com>;tag=43"),
            Err(Fault::DisplayName)
        );
        // a raw control byte is not qdtext
        assert_eq!(
            NameAddr::parse_detailed(b"\"a\x07b\" <sip:x@y>"),
            Err(Fault::DisplayName)
        );
        assert_eq!(
            NameAddr::parse_detailed(b"<sip:x@y>;tag=a/b"),
            Err(Fault::Other)
        );
        // intmeth: quoted-pair BEL/NUL/DEL in the display name, odd user part.
        let to = b"\"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f\" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>";
        let n = NameAddr::parse(to).unwrap();
        assert_eq!(n.display.map(<[u8]>::len), Some(22));
        assert_eq!(
            n.uri.user,
            Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
        );
        assert_eq!(n.uri.host, "example.com");
        // lwsdisp: no LWS between the display name and '<'.
        let n = NameAddr::parse(b"caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(n.display, Some(&b"caller"[..]));
        assert_eq!(n.tag(), Some(&b"323"[..]));
    }
}
