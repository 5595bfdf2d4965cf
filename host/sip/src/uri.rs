//! SIP and SIPS URIs (RFC 3261 §19.1, §25.1) with IPv6 references (RFC 5118).

use crate::scan::Params;
use std::net::IpAddr;

/// URI scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `sip:`
    Sip,
    /// `sips:`
    Sips,
    /// `tel:` (RFC 3966); carried opaquely.
    Tel,
    /// Any other absolute URI scheme; carried opaquely.
    Other,
}

/// A parsed URI, borrowing the message bytes.
///
/// Only `sip:`/`sips:` URIs are taken apart; other schemes keep their text in
/// [`Uri::raw`] and have an empty host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uri<'a> {
    /// The whole URI text.
    pub raw: &'a str,
    /// The scheme.
    pub scheme: Scheme,
    /// The user part (still %-escaped), if any.
    pub user: Option<&'a str>,
    /// The password part, if any (deprecated by RFC 3261 but legal).
    pub password: Option<&'a str>,
    /// Host name, IPv4 address, or IPv6 reference *with* its brackets.
    pub host: &'a str,
    /// Explicit port, if any.
    pub port: Option<u16>,
    /// URI parameters, starting with `;`.
    pub params: Params<'a>,
    /// Header part after `?`, if any.
    pub headers: Option<&'a str>,
}

/// Why a URI did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadUri;

impl<'a> Uri<'a> {
    /// Parses an absolute URI. Whitespace and `<>` anywhere are errors (RFC 4475 §3.1.2.7-8).
    pub fn parse(s: &'a [u8]) -> Result<Uri<'a>, BadUri> {
        if s.is_empty()
            || s.iter()
                .any(|&b| b <= b' ' || b >= 0x7f || matches!(b, b'<' | b'>' | b'"'))
        {
            return Err(BadUri);
        }
        // ASCII checked above.
        let raw = std::str::from_utf8(s).map_err(|_| BadUri)?;
        let colon = raw.find(':').ok_or(BadUri)?;
        let (scheme_str, rest) = (&raw[..colon], &raw[colon + 1..]);
        if scheme_str.is_empty()
            || !scheme_str
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        {
            return Err(BadUri);
        }
        let scheme = if scheme_str.eq_ignore_ascii_case("sip") {
            Scheme::Sip
        } else if scheme_str.eq_ignore_ascii_case("sips") {
            Scheme::Sips
        } else if scheme_str.eq_ignore_ascii_case("tel") {
            Scheme::Tel
        } else {
            Scheme::Other
        };
        if !matches!(scheme, Scheme::Sip | Scheme::Sips) {
            if rest.is_empty() {
                return Err(BadUri);
            }
            return Ok(Uri {
                raw,
                scheme,
                user: None,
                password: None,
                host: "",
                port: None,
                params: Params(b""),
                headers: None,
            });
        }
        Self::parse_sip(raw, scheme, rest)
    }

    fn parse_sip(raw: &'a str, scheme: Scheme, rest: &'a str) -> Result<Uri<'a>, BadUri> {
        // '@' is never legal unescaped after the host, so the first one ends the userinfo.
        let (user, password, hostpart) = match rest.find('@') {
            Some(at) => {
                let userinfo = &rest[..at];
                let (user, password) = match userinfo.find(':') {
                    Some(c) => (&userinfo[..c], Some(&userinfo[c + 1..])),
                    None => (userinfo, None),
                };
                if user.is_empty() {
                    return Err(BadUri);
                }
                (Some(user), password, &rest[at + 1..])
            }
            None => (None, None, rest),
        };
        // An IPv6 reference holds ':' but never ';' or '?', so search after its ']'.
        let from = if hostpart.starts_with('[') {
            hostpart.find(']').ok_or(BadUri)?
        } else {
            0
        };
        let (hostport, after) = match hostpart[from..].find([';', '?']) {
            Some(i) => hostpart.split_at(from + i),
            None => (hostpart, ""),
        };
        let (host, port) = split_host_port(hostport)?;
        let (params, headers) = match after.find('?') {
            Some(q) => (&after[..q], Some(&after[q + 1..])),
            None => (after, None),
        };
        let params = Params(params.as_bytes());
        if !params.well_formed_uri() {
            return Err(BadUri);
        }
        Ok(Uri {
            raw,
            scheme,
            user,
            password,
            host,
            port,
            params,
            headers,
        })
    }

    /// The host as an IP address when it is a literal (IPv6 without brackets).
    pub fn host_ip(&self) -> Option<IpAddr> {
        host_ip(self.host)
    }

    /// True for a loose-routing URI (`;lr`, RFC 3261 §16.4).
    pub fn is_loose_route(&self) -> bool {
        self.params.has("lr")
    }

    /// The `transport` parameter, if any.
    pub fn transport(&self) -> Option<&'a [u8]> {
        self.params.get("transport").flatten()
    }

    /// The `maddr` parameter, if any.
    pub fn maddr(&self) -> Option<&'a [u8]> {
        self.params.get("maddr").flatten()
    }
}

/// RFC 3261 §25.1 `unreserved`: alphanumerics and the marks `-_.!~*'()`,
/// which every part of a URI carries without escaping.
pub fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

/// Parses an IP literal host; IPv6 references keep their brackets in the URI text.
pub fn host_ip(host: &str) -> Option<IpAddr> {
    let h = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    h.parse().ok()
}

/// Splits `host[:port]`, checking the host's characters (RFC 3261 §25.1 hostport).
pub(crate) fn split_host_port(s: &str) -> Result<(&str, Option<u16>), BadUri> {
    let (host, port) = if s.starts_with('[') {
        let end = s.find(']').ok_or(BadUri)?;
        let inner = &s[1..end];
        if inner.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(BadUri);
        }
        let tail = &s[end + 1..];
        match tail.strip_prefix(':') {
            Some(p) => (&s[..=end], Some(p)),
            None if tail.is_empty() => (&s[..=end], None),
            None => return Err(BadUri),
        }
    } else {
        match s.find(':') {
            Some(c) => (&s[..c], Some(&s[c + 1..])),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err(BadUri);
    }
    if !host.starts_with('[')
        && !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(BadUri);
    }
    let port = match port {
        Some(p) => {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(BadUri);
            }
            Some(p.parse::<u16>().map_err(|_| BadUri)?)
        }
        None => None,
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_sip_uri() {
        let u = Uri::parse(b"sip:alice:pw@atlanta.com:5061;transport=tcp;lr?subject=x").unwrap();
        assert_eq!(u.scheme, Scheme::Sip);
        assert_eq!(u.user, Some("alice"));
        assert_eq!(u.password, Some("pw"));
        assert_eq!(u.host, "atlanta.com");
        assert_eq!(u.port, Some(5061));
        assert!(u.is_loose_route());
        assert_eq!(u.transport(), Some(&b"tcp"[..]));
        assert_eq!(u.headers, Some("subject=x"));
    }

    #[test]
    fn semicolon_in_user_part() {
        // RFC 4475 §3.1.1.9 semiuri
        let u = Uri::parse(b"sip:user;par=u%40example.net@example.com").unwrap();
        assert_eq!(u.user, Some("user;par=u%40example.net"));
        assert_eq!(u.host, "example.com");
    }

    #[test]
    fn ipv6_references() {
        // RFC 5118 §4.1
        let u = Uri::parse(b"sip:[2001:db8::10]:5070;transport=udp").unwrap();
        assert_eq!(u.host, "[2001:db8::10]");
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.host_ip(), Some("2001:db8::10".parse().unwrap()));
        let u = Uri::parse(b"sip:[2001:db8::10]").unwrap();
        assert_eq!(u.port, None);
        assert!(Uri::parse(b"sip:[2001:db8::10:5070").is_err());
        assert!(Uri::parse(b"sip:2001:db8::10").is_err());
    }

    #[test]
    fn rejects_whitespace_and_brackets() {
        assert!(Uri::parse(b"<sip:user@example.com>").is_err());
        assert!(Uri::parse(b"sip:user@example.com; lr").is_err());
        assert!(Uri::parse(b"sip:@example.com").is_err());
        assert!(Uri::parse(b"sip:host:99999").is_err());
    }

    #[test]
    fn other_schemes_are_opaque() {
        let u = Uri::parse(b"tel:+1-201-555-0123").unwrap();
        assert_eq!(u.scheme, Scheme::Tel);
        assert_eq!(u.host, "");
    }
}
