//! Where a URI or a Via says to send a message (RFC 3261 §18.1.1, §18.2.2,
//! RFC 3263 §4). IP literals and `localhost` resolve here; a host name
//! becomes a [`DnsQuery`] that the runtime answers (see `crate::dns`).

use crate::dns::DnsQuery;
use crate::router::{Target, Transport};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use viaduct_sip::{uri::host_ip, NameAddr, Scheme, Uri, Via};

/// The URI that says where a target's branch goes: the target's own, else
/// (an empty `uri`, as a registered Path gives) its first Route value's
/// (loose routing, RFC 3261 §16.6 step 7). A first Route without `;lr` is
/// taken as a loose route too: the branch keeps its Request-URI rather
/// than getting the strict-routing rewrite of §16.6 step 6.
pub(crate) fn target_uri(target: &Target) -> Option<&str> {
    if !target.uri.is_empty() {
        return Some(&target.uri);
    }
    let first = target.route.first()?;
    NameAddr::parse(first.as_bytes()).map(|na| na.uri.raw)
}

/// True when a target's own Request-URI and Route values can be written
/// into a request as they are: SIP or SIPS URIs, nothing that would end a
/// header line. They come from a policy (a registrar's contacts and Paths,
/// which came from the wire), so they are checked before they are sent.
pub(crate) fn target_fields_valid(target: &Target) -> bool {
    let sip = |uri: &Uri<'_>| matches!(uri.scheme, Scheme::Sip | Scheme::Sips);
    let line_safe = |s: &str| !s.contains(['\r', '\n']);
    let ruri_ok = target.request_uri.as_deref().is_none_or(|u| {
        line_safe(u) && !u.contains(' ') && Uri::parse(u.as_bytes()).is_ok_and(|uri| sip(&uri))
    });
    ruri_ok
        && target
            .route
            .iter()
            .all(|r| line_safe(r) && NameAddr::parse(r.as_bytes()).is_some_and(|na| sip(&na.uri)))
}

/// Why a next hop cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NextHopError {
    /// Not a SIP or SIPS URI.
    Scheme,
    /// A host name DNS did not resolve, or an unusable host.
    Unresolved,
    /// A transport this proxy has no listener for, or `sips:` over a plain one.
    Transport,
    /// A target's own Request-URI or Route values do not parse.
    Malformed,
}

impl std::fmt::Display for NextHopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NextHopError::Scheme => "not a sip: or sips: URI",
            NextHopError::Unresolved => "its host does not resolve",
            NextHopError::Transport => {
                "no listener for its transport (a tls/ws/wss next hop needs a listener \
                 of that transport to write in Via and Record-Route; sips: needs TLS)"
            }
            NextHopError::Malformed => "its request_uri or route values are not SIP URIs",
        })
    }
}

/// Where a URI points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resolved {
    /// An address, known without DNS.
    Addr(SocketAddr, Transport),
    /// A host name: RFC 3263 lookups decide.
    Name(DnsQuery),
}

/// Resolves a SIP URI (RFC 3263 §4.1, §4.2): `maddr` over host; the
/// transport from `forced`, `transport=`, else UDP (TLS for `sips:`); the
/// URI's port, else 5060 (5061 over TLS). A host name is left to DNS, which
/// also picks the transport and port when the URI names none.
pub(crate) fn resolve(uri: &Uri<'_>, forced: Option<Transport>) -> Result<Resolved, NextHopError> {
    let secure = match uri.scheme {
        Scheme::Sip => false,
        Scheme::Sips => true,
        _ => return Err(NextHopError::Scheme),
    };
    let explicit = match forced {
        Some(t) => Some(t),
        None => match uri.transport() {
            Some(t) => Some(Transport::from_token(t).ok_or(NextHopError::Transport)?),
            None => None,
        },
    };
    // RFC 3261 §26.2.2 / RFC 5630: a SIPS URI is reached over TLS only.
    if secure && explicit.is_some_and(|t| !t.is_secure()) {
        return Err(NextHopError::Transport);
    }
    let host = match uri.maddr() {
        Some(m) => std::str::from_utf8(m).map_err(|_| NextHopError::Unresolved)?,
        None => uri.host,
    };
    match resolve_host(host) {
        Some(ip) => {
            let transport = explicit.unwrap_or(if secure {
                Transport::Tls
            } else {
                Transport::Udp
            });
            let port = uri.port.unwrap_or_else(|| default_port(transport));
            Ok(Resolved::Addr(SocketAddr::new(ip, port), transport))
        }
        None if is_host_name(host) => Ok(Resolved::Name(DnsQuery {
            host: host.trim_end_matches('.').to_ascii_lowercase(),
            port: uri.port,
            transport: explicit,
            secure,
        })),
        None => Err(NextHopError::Unresolved),
    }
}

/// The port a transport uses when a URI names none (RFC 3261 §19.1.2, RFC 7118 §5.3 keeps 5060/5061).
pub(crate) fn default_port(transport: Transport) -> u16 {
    if transport.is_secure() {
        5061
    } else {
        5060
    }
}

/// A DNS name worth asking about: letters, digits, `-` and dots (RFC 1123),
/// not an `.invalid` host (RFC 6761 §6.4: WebSocket clients' Contacts use it).
fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !host
            .trim_end_matches('.')
            .to_ascii_lowercase()
            .ends_with(".invalid")
}

fn resolve_host(host: &str) -> Option<IpAddr> {
    if host.eq_ignore_ascii_case("localhost") {
        return Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    host_ip(host)
}

/// Where to send a response for a request whose top Via is `via` and which
/// arrived from `source` (RFC 3261 §18.2.2, RFC 3581 §4): the source IP, and the
/// source port when `rport` was asked for, else the sent-by port.
pub(crate) fn response_destination(via: &Via<'_>, source: SocketAddr) -> SocketAddr {
    if via.rport().is_some() || via.is_reliable() {
        return source;
    }
    SocketAddr::new(source.ip(), via.port.unwrap_or(5060))
}

/// Where a response goes when it is forwarded without a transaction: the
/// `received`/`rport` the previous hop's Via carries, else its sent-by.
pub(crate) fn via_destination(via: &Via<'_>) -> Option<(SocketAddr, Transport)> {
    let transport = Transport::from_token(via.transport.as_bytes())?;
    let ip = via
        .received()
        .and_then(|r| std::str::from_utf8(r).ok())
        .and_then(host_ip)
        .or_else(|| resolve_host(via.host))?;
    let port = via.rport().flatten().or(via.port).unwrap_or(5060);
    Some((SocketAddr::new(ip, port), transport))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str, t: Transport) -> Result<Resolved, NextHopError> {
        Ok(Resolved::Addr(s.parse().unwrap(), t))
    }

    #[test]
    fn uri_resolution() {
        let u = Uri::parse(b"sip:room-1@127.0.0.1:5070;transport=tcp").unwrap();
        assert_eq!(resolve(&u, None), addr("127.0.0.1:5070", Transport::Tcp));
        let u = Uri::parse(b"sip:[::1]").unwrap();
        assert_eq!(resolve(&u, None), addr("[::1]:5060", Transport::Udp));
        let u = Uri::parse(b"sip:a@example.com;maddr=10.0.0.9").unwrap();
        assert_eq!(resolve(&u, None), addr("10.0.0.9:5060", Transport::Udp));
        let u = Uri::parse(b"tel:+123").unwrap();
        assert_eq!(resolve(&u, None), Err(NextHopError::Scheme));
    }

    #[test]
    fn sips_means_tls_on_5061() {
        let u = Uri::parse(b"sips:bob@192.0.2.4").unwrap();
        assert_eq!(resolve(&u, None), addr("192.0.2.4:5061", Transport::Tls));
        let u = Uri::parse(b"sip:192.0.2.4;transport=wss").unwrap();
        assert_eq!(resolve(&u, None), addr("192.0.2.4:5061", Transport::Wss));
        let u = Uri::parse(b"sips:bob@192.0.2.4;transport=udp").unwrap();
        assert_eq!(resolve(&u, None), Err(NextHopError::Transport));
        let u = Uri::parse(b"sip:192.0.2.4;transport=sctp").unwrap();
        assert_eq!(resolve(&u, None), Err(NextHopError::Transport));
    }

    #[test]
    fn host_names_go_to_dns() {
        let u = Uri::parse(b"sips:a@Bridge.Example.COM.").unwrap();
        assert_eq!(
            resolve(&u, None),
            Ok(Resolved::Name(DnsQuery {
                host: "bridge.example.com".into(),
                port: None,
                transport: None,
                secure: true,
            }))
        );
        let u = Uri::parse(b"sip:a@bridge.test:5070").unwrap();
        assert_eq!(
            resolve(&u, Some(Transport::Tcp)),
            Ok(Resolved::Name(DnsQuery {
                host: "bridge.test".into(),
                port: Some(5070),
                transport: Some(Transport::Tcp),
                secure: false,
            }))
        );
        // A WebSocket client's Contact is never looked up (RFC 7118 §5.2).
        let u = Uri::parse(b"sip:x@df7jal23ls0d.invalid;transport=ws").unwrap();
        assert_eq!(resolve(&u, None), Err(NextHopError::Unresolved));
    }

    #[test]
    fn response_routing() {
        let src: SocketAddr = "192.0.2.1:40000".parse().unwrap();
        let v = Via::parse(b"SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bK1").unwrap();
        assert_eq!(
            response_destination(&v, src),
            "192.0.2.1:5062".parse().unwrap()
        );
        let v = Via::parse(b"SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bK1;rport").unwrap();
        assert_eq!(response_destination(&v, src), src);
        let v = Via::parse(b"SIP/2.0/UDP h:5062;branch=z9hG4bK1;received=192.0.2.9;rport=7000")
            .unwrap();
        assert_eq!(
            via_destination(&v),
            Some(("192.0.2.9:7000".parse().unwrap(), Transport::Udp))
        );
    }
}
