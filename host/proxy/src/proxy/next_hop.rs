//! Where a URI or a Via says to send a message (RFC 3261 §18.1.1, §18.2.2;
//! DNS per RFC 3263 is a later step: only IP literals and `localhost` resolve).

use crate::router::Transport;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use viaduct_sip::{uri::host_ip, Scheme, Uri, Via};

/// Why a next hop cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NextHopError {
    /// Not a SIP or SIPS URI.
    Scheme,
    /// A host name: DNS is not implemented yet.
    Unresolved,
    /// A transport this build does not speak (TLS, WS, SCTP...).
    Transport,
}

/// Resolves a SIP URI to an address and transport: `maddr` over host, explicit
/// port or 5060, `transport=` or UDP unless `forced`.
pub(crate) fn resolve(
    uri: &Uri<'_>,
    forced: Option<Transport>,
) -> Result<(SocketAddr, Transport), NextHopError> {
    if !matches!(uri.scheme, Scheme::Sip) {
        // sips: needs TLS (a later issue).
        return Err(if uri.scheme == Scheme::Sips {
            NextHopError::Transport
        } else {
            NextHopError::Scheme
        });
    }
    let transport = match forced {
        Some(t) => t,
        None => match uri.transport() {
            Some(t) => Transport::from_token(t).ok_or(NextHopError::Transport)?,
            None => Transport::Udp,
        },
    };
    let host = match uri.maddr() {
        Some(m) => std::str::from_utf8(m).map_err(|_| NextHopError::Unresolved)?,
        None => uri.host,
    };
    let ip = resolve_host(host).ok_or(NextHopError::Unresolved)?;
    Ok((SocketAddr::new(ip, uri.port.unwrap_or(5060)), transport))
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

    #[test]
    fn uri_resolution() {
        let u = Uri::parse(b"sip:room-1@127.0.0.1:5070;transport=tcp").unwrap();
        assert_eq!(
            resolve(&u, None),
            Ok(("127.0.0.1:5070".parse().unwrap(), Transport::Tcp))
        );
        let u = Uri::parse(b"sip:[::1]").unwrap();
        assert_eq!(
            resolve(&u, None),
            Ok(("[::1]:5060".parse().unwrap(), Transport::Udp))
        );
        let u = Uri::parse(b"sip:a@example.com;maddr=10.0.0.9").unwrap();
        assert_eq!(
            resolve(&u, None).unwrap().0,
            "10.0.0.9:5060".parse().unwrap()
        );
        let u = Uri::parse(b"sip:a@example.com").unwrap();
        assert_eq!(resolve(&u, None), Err(NextHopError::Unresolved));
        let u = Uri::parse(b"tel:+123").unwrap();
        assert_eq!(resolve(&u, None), Err(NextHopError::Scheme));
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
