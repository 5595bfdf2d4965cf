//! The address each listener writes into Via and Record-Route (DESIGN §6):
//! every instance of a cluster names itself, so responses and in-dialog
//! requests come back to the instance that owns the transaction or dialog.
//!
//! A listener bound to a specific IP advertises that address. One bound to
//! `0.0.0.0` or `[::]` cannot: `Via: SIP/2.0/UDP 0.0.0.0:5060` reaches
//! nobody. It advertises `[server] advertise` (or `VIADUCT_ADVERTISE`) when
//! that is set for its address family, else the address this host would
//! send from towards the outside (a route lookup; no packet is sent), else
//! the proxy refuses to start. `advertise` also covers NAT: a listener on
//! `10.0.0.5:5060` behind `203.0.113.5:5080` sets `advertise = "203.0.113.5:5080"`.
//!
//! Not here: which listener a message leaves from (the proxy core picks by
//! transport and family, `viaduct_proxy::Proxy`), and the sockets themselves.

use anyhow::{bail, Context as _, Result};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use viaduct_proxy::Listener;

/// `[server] advertise`, parsed: an IP, and a port that replaces the bound one when given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advertise {
    /// Written instead of the bound IP by listeners of its family.
    pub ip: IpAddr,
    /// Written instead of the bound port, when set.
    pub port: Option<u16>,
}

impl std::str::FromStr for Advertise {
    type Err = anyhow::Error;
    /// `203.0.113.5`, `203.0.113.5:5080`, `2001:db8::5` or `[2001:db8::5]:5080`.
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        let parsed = if let Ok(ip) = s.parse::<IpAddr>() {
            Advertise { ip, port: None }
        } else if let Ok(addr) = s.parse::<SocketAddr>() {
            Advertise {
                ip: addr.ip(),
                port: Some(addr.port()),
            }
        } else if let Some(ip) = s
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .and_then(|r| r.parse::<Ipv6Addr>().ok())
        {
            Advertise {
                ip: IpAddr::V6(ip),
                port: None,
            }
        } else {
            bail!("server.advertise {s:?}: expected IP or IP:PORT (IPv6 as [2001:db8::5]:5060)");
        };
        if parsed.ip.is_unspecified() || parsed.ip.is_multicast() || parsed.port == Some(0) {
            bail!("server.advertise {s:?}: an address others can send to is needed (not 0.0.0.0, ::, multicast or port 0)");
        }
        Ok(parsed)
    }
}

/// The listeners the proxy core gets, from the bound ones: first what each
/// advertises (the core writes the first listener of a transport and family
/// into Via and Record-Route), then each bound address that differs, so a
/// Route or Request-URI naming the bound address (`127.0.0.1` for a socket
/// on `0.0.0.0`, the private side of a NAT) is still recognised as ours.
/// `detect` gives the outbound address of a family, for unspecified binds.
pub fn listeners(
    bound: &[Listener],
    advertise: Option<Advertise>,
    detect: impl Fn(bool) -> Option<IpAddr>,
) -> Result<Vec<Listener>> {
    let mut out = Vec::with_capacity(bound.len() * 2);
    for l in bound {
        let mine = advertise.filter(|a| a.ip.is_ipv4() == l.addr.is_ipv4());
        let ip = match mine {
            Some(a) => a.ip,
            None if l.addr.ip().is_unspecified() => {
                detect(l.addr.is_ipv4()).with_context(|| {
                    format!(
                        "listening on {}:{}: no address to write in Via and Record-Route \
                     (no route to pick one from); set server.advertise",
                        l.transport.uri_param(),
                        l.addr
                    )
                })?
            }
            None => l.addr.ip(),
        };
        let port = mine.and_then(|a| a.port).unwrap_or(l.addr.port());
        out.push(Listener {
            transport: l.transport,
            addr: SocketAddr::new(ip, port),
        });
    }
    for l in bound {
        if !out.contains(l) {
            out.push(*l);
        }
    }
    Ok(out)
}

/// The source address this host would use towards the outside, by a route
/// lookup: `connect` on a UDP socket sends nothing. The destinations are
/// documentation addresses (RFC 5737, RFC 3849), never contacted.
pub fn outbound_ip(ipv4: bool) -> Option<IpAddr> {
    let (bind, probe): (SocketAddr, SocketAddr) = if ipv4 {
        (
            (Ipv4Addr::UNSPECIFIED, 0).into(),
            (Ipv4Addr::new(192, 0, 2, 1), 9).into(),
        )
    } else {
        (
            (Ipv6Addr::UNSPECIFIED, 0).into(),
            (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), 9).into(),
        )
    };
    let socket = UdpSocket::bind(bind).ok()?;
    socket.connect(probe).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use viaduct_proxy::Transport;

    fn l(transport: Transport, addr: &str) -> Listener {
        Listener {
            transport,
            addr: addr.parse().unwrap(),
        }
    }

    #[test]
    fn parses_ip_and_port_and_refuses_the_unreachable() {
        let a = |s: &str| s.parse::<Advertise>();
        assert_eq!(
            a("203.0.113.5").unwrap(),
            Advertise {
                ip: "203.0.113.5".parse().unwrap(),
                port: None
            }
        );
        assert_eq!(a("203.0.113.5:5080").unwrap().port, Some(5080));
        assert_eq!(
            a("[2001:db8::5]:5080").unwrap().ip,
            "2001:db8::5".parse::<IpAddr>().unwrap()
        );
        assert_eq!(a("[2001:db8::5]").unwrap().port, None);
        assert_eq!(a("2001:db8::5").unwrap().port, None);
        for bad in [
            "0.0.0.0",
            "[::]:5060",
            "sip.example.com",
            "224.0.0.1",
            "10.0.0.1:0",
            "",
        ] {
            let e = a(bad).unwrap_err().to_string();
            assert!(e.contains("server.advertise"), "{bad}: {e}");
        }
    }

    #[test]
    fn specific_binds_advertise_themselves() {
        let bound = [
            l(Transport::Udp, "127.0.0.1:5061"),
            l(Transport::Tcp, "[::1]:5061"),
        ];
        let got = listeners(&bound, None, |_| panic!("no lookup for a specific bind")).unwrap();
        assert_eq!(got, bound);
    }

    #[test]
    fn advertise_replaces_the_ip_of_its_family_and_the_port_when_given() {
        let bound = [
            l(Transport::Udp, "0.0.0.0:5060"),
            l(Transport::Tcp, "10.0.0.5:5060"),
            l(Transport::Udp, "[::1]:5060"),
        ];
        let adv = "203.0.113.5:5080".parse().ok();
        let got = listeners(&bound, adv, |_| None).unwrap();
        assert_eq!(
            got,
            [
                l(Transport::Udp, "203.0.113.5:5080"),
                l(Transport::Tcp, "203.0.113.5:5080"),
                l(Transport::Udp, "[::1]:5060"),
                // The bound addresses follow, still ours.
                l(Transport::Udp, "0.0.0.0:5060"),
                l(Transport::Tcp, "10.0.0.5:5060"),
            ]
        );
        let ip_only = listeners(&bound[..1], "192.0.2.7".parse().ok(), |_| None).unwrap();
        assert_eq!(ip_only[0], l(Transport::Udp, "192.0.2.7:5060"));
    }

    #[test]
    fn unspecified_binds_look_their_address_up_or_refuse() {
        let bound = [
            l(Transport::Udp, "0.0.0.0:5060"),
            l(Transport::Udp, "[::]:5060"),
        ];
        let got = listeners(&bound, None, |v4| {
            Some(
                if v4 { "192.0.2.9" } else { "2001:db8::9" }
                    .parse()
                    .unwrap(),
            )
        })
        .unwrap();
        assert_eq!(got[0], l(Transport::Udp, "192.0.2.9:5060"));
        assert_eq!(got[1], l(Transport::Udp, "[2001:db8::9]:5060"));
        let e = listeners(&bound, None, |_| None).unwrap_err().to_string();
        assert!(e.contains("set server.advertise"), "{e}");
    }
}
