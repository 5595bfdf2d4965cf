//! Addresses-of-record in canonical form (RFC 3261 §10.3 step 5) and the
//! contact URI comparison that finds an existing binding (§19.1.4).

use std::net::Ipv6Addr;
use viaduct_sip::{NameAddr, Scheme, Uri};

/// The canonical address-of-record of a URI: the key its bindings are kept
/// under, so the To of a REGISTER and the Request-URI of a later INVITE meet.
///
/// `sip:` + user + `@` + host (or `sip:` + host when there is no user part):
///
/// * `sips:` folds to `sip:`: one user has one set of bindings whichever
///   scheme a request names, as in Kamailio's location table. RFC 5630 keeps
///   a `sips:` request on secure hops; that is the caller's filter on
///   [`Contact::uri`](super::Contact::uri), not a second AOR.
/// * The user part is case-sensitive and compared exactly, except that an
///   escape of a character the user part may carry plain (`%61` for `a`) is
///   decoded and the others get upper-case hex (§19.1.4: escaped and
///   unescaped forms are equal).
/// * The host is lower-cased; an IPv6 reference is rewritten in its
///   RFC 5952 form, brackets kept.
/// * The password, port, URI parameters and headers are dropped (§10.3 step
///   5 drops the parameters; dropping the port lets `sip:bob@host:5060` and
///   `sip:bob@host` name the same user).
///
/// Accepts a bare URI or a name-addr (`"Bob" <sip:bob@host>;tag=1`). `None`
/// for anything else, including every scheme but `sip:`/`sips:` (an AOR is a
/// SIP or SIPS URI, §10.2).
pub fn canonical_aor(uri: &str) -> Option<String> {
    let text = uri.trim().as_bytes();
    let uri = match Uri::parse(text) {
        Ok(u) => u,
        Err(_) => NameAddr::parse(text)?.uri,
    };
    if !matches!(uri.scheme, Scheme::Sip | Scheme::Sips) {
        return None;
    }
    let mut out = String::with_capacity(uri.raw.len());
    out.push_str("sip:");
    if let Some(user) = uri.user {
        push_user(&mut out, user);
        out.push('@');
    }
    push_host(&mut out, uri.host);
    Some(out)
}

/// True when two contact URIs name the same binding (RFC 3261 §19.1.4):
/// scheme, user and password exact (escapes normalised), host without case,
/// the same port or none on both; `user`, `ttl`, `method`, `maddr` and
/// `transport` must agree when either has them, other parameters only when
/// both do. Other schemes compare as text, the scheme without case.
pub(crate) fn same_contact(a: &str, b: &str) -> bool {
    let (Ok(ua), Ok(ub)) = (Uri::parse(a.as_bytes()), Uri::parse(b.as_bytes())) else {
        return a == b;
    };
    if ua.scheme != ub.scheme {
        return false;
    }
    if !matches!(ua.scheme, Scheme::Sip | Scheme::Sips) {
        let (sa, ra) = a.split_once(':').unwrap_or(("", a));
        let (sb, rb) = b.split_once(':').unwrap_or(("", b));
        return sa.eq_ignore_ascii_case(sb) && ra == rb;
    }
    let user = |u: &Uri<'_>| {
        let mut s = String::new();
        if let Some(user) = u.user {
            push_user(&mut s, user);
        }
        s
    };
    let host = |u: &Uri<'_>| {
        let mut s = String::new();
        push_host(&mut s, u.host);
        s
    };
    if user(&ua) != user(&ub)
        || ua.password != ub.password
        || host(&ua) != host(&ub)
        || ua.port != ub.port
    {
        return false;
    }
    const MUST_MATCH: [&str; 5] = ["user", "ttl", "method", "maddr", "transport"];
    for (name, va) in ua.params.iter() {
        let Ok(name) = std::str::from_utf8(name) else {
            return false;
        };
        match ub.params.get(name) {
            Some(vb) if !same_param(va, vb) => return false,
            None if MUST_MATCH.iter().any(|m| m.eq_ignore_ascii_case(name)) => return false,
            _ => {}
        }
    }
    // A must-match parameter only `b` has.
    MUST_MATCH
        .iter()
        .all(|m| ua.params.has(m) || !ub.params.has(m))
}

/// Parameter values compare without case (§19.1.4).
fn same_param(a: Option<&[u8]>, b: Option<&[u8]>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        (None, None) => true,
        _ => false,
    }
}

/// Characters a user part carries unescaped (RFC 3261 §25.1 unreserved and
/// user-unreserved): an escape of one of them is decoded.
fn plain_in_user(b: u8) -> bool {
    viaduct_sip::uri::is_unreserved(b)
        || matches!(b, b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/')
}

fn push_user(out: &mut String, user: &str) {
    let b = user.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| char::from(c).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                // Two hex digits: below 256.
                let v = (h * 16 + l) as u8;
                if plain_in_user(v) {
                    out.push(char::from(v));
                } else {
                    out.push('%');
                    out.push(char::from(b[i + 1].to_ascii_uppercase()));
                    out.push(char::from(b[i + 2].to_ascii_uppercase()));
                }
                i += 3;
                continue;
            }
        }
        out.push(char::from(b[i]));
        i += 1;
    }
}

fn push_host(out: &mut String, host: &str) {
    if let Some(ip) = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse::<Ipv6Addr>().ok())
    {
        out.push('[');
        out.push_str(&ip.to_string());
        out.push(']');
    } else {
        out.extend(host.chars().map(|c| c.to_ascii_lowercase()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aor(s: &str) -> Option<String> {
        canonical_aor(s)
    }

    #[test]
    fn port_params_and_headers_are_dropped() {
        let want = Some("sip:bob@127.0.0.1".to_string());
        assert_eq!(aor("sip:bob@127.0.0.1:5060;transport=udp"), want);
        assert_eq!(aor("sip:bob@127.0.0.1"), want);
        assert_eq!(aor("<sip:bob@127.0.0.1:5070;lr?subject=x>"), want);
        assert_eq!(aor("\"Bob\" <sip:bob:secret@127.0.0.1>;tag=9"), want);
        assert_eq!(aor(" sip:bob@127.0.0.1;user=phone "), want);
    }

    #[test]
    fn host_folds_case_user_does_not() {
        assert_eq!(
            aor("sip:Bob@Example.COM"),
            Some("sip:Bob@example.com".into())
        );
        assert_ne!(aor("sip:Bob@example.com"), aor("sip:bob@example.com"));
    }

    #[test]
    fn sips_folds_to_sip() {
        assert_eq!(aor("sips:bob@example.com"), aor("SIP:bob@example.com"));
        assert_eq!(
            aor("sips:bob@example.com"),
            Some("sip:bob@example.com".into())
        );
    }

    #[test]
    fn escapes_are_normalised() {
        // RFC 3261 §19.1.4: sip:%61lice@atlanta.com is sip:alice@atlanta.com.
        assert_eq!(aor("sip:%61lice@atlanta.com"), aor("sip:alice@atlanta.com"));
        // An escape that must stay escaped keeps it, hex upper-cased.
        assert_eq!(
            aor("sip:a%2fb%40c@atlanta.com"),
            Some("sip:a/b%40c@atlanta.com".into())
        );
        assert_eq!(aor("sip:a%5bc@x"), Some("sip:a%5Bc@x".into()));
    }

    #[test]
    fn ipv6_and_host_only() {
        assert_eq!(aor("sip:bob@[::1]:5060"), Some("sip:bob@[::1]".into()));
        assert_eq!(aor("sip:bob@[0:0::1]"), Some("sip:bob@[::1]".into()));
        assert_eq!(
            aor("sip:[2001:DB8::10];transport=tcp"),
            Some("sip:[2001:db8::10]".into())
        );
        assert_eq!(aor("sip:Example.com:5060"), Some("sip:example.com".into()));
    }

    #[test]
    fn only_sip_and_sips() {
        assert_eq!(aor("tel:+1-201-555-0123"), None);
        assert_eq!(aor("mailto:bob@example.com"), None);
        assert_eq!(aor("not a uri"), None);
        assert_eq!(aor(""), None);
    }

    #[test]
    fn contacts_compare_as_rfc_3261_says() {
        assert!(same_contact("sip:bob@Host:5060", "sip:bob@host:5060"));
        assert!(same_contact("sip:%61lice@h", "sip:alice@h"));
        // The port is significant for a contact: no port is not 5060.
        assert!(!same_contact("sip:bob@host", "sip:bob@host:5060"));
        assert!(!same_contact("sip:bob@host", "sips:bob@host"));
        assert!(!same_contact("sip:Bob@host", "sip:bob@host"));
        // transport must agree when either has it; others only when both do.
        assert!(!same_contact("sip:bob@host;transport=tcp", "sip:bob@host"));
        assert!(!same_contact("sip:bob@host", "sip:bob@host;transport=tcp"));
        assert!(same_contact(
            "sip:bob@host;transport=TCP;x=1",
            "sip:bob@host;transport=tcp"
        ));
        assert!(!same_contact("sip:bob@host;x=1", "sip:bob@host;x=2"));
        assert!(same_contact("tel:+123", "TEL:+123"));
        assert!(!same_contact("tel:+123", "tel:+124"));
    }
}
