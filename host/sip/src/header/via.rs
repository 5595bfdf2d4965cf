//! The Via header (RFC 3261 §20.42, §18.2.1 received/rport per RFC 3581).

use crate::scan::{is_lws, is_token_str, trim, trim_start, Params};
use crate::uri::split_host_port;

#[allow(dead_code)]
/// The magic cookie every RFC 3261 branch starts with (§8.1.1.7).
pub const BRANCH_COOKIE: &str = "z9hG4bK";

/// One Via value: `SIP/2.0/UDP host:port;branch=...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    /// Transport token as sent (`UDP`, `TCP`, `TLS`, `WS`, ...).
    pub transport: &'a str,
    /// sent-by host (IPv6 keeps its brackets).
    pub host: &'a str,
    /// sent-by port, if any.
    pub port: Option<u16>,
    /// Parameters, starting with `;`.
    pub params: Params<'a>,
}

impl<'a> Via<'a> {
    /// Parses one Via value (a single comma-separated element).
    pub fn parse(value: &'a [u8]) -> Option<Via<'a>> {
        let v = trim(value);
        // sent-protocol = protocol-name SLASH protocol-version SLASH transport, LWS allowed around SLASH.
        let (name, rest) = split_slash(v)?;
        let (version, rest) = split_slash(rest)?;
        if !name.eq_ignore_ascii_case(b"SIP") || version != b"2.0" {
            return None;
        }
        let rest = trim_start(rest);
        let t_end = rest.iter().position(|&b| is_lws(b))?;
        let transport = &rest[..t_end];
        if !is_token_str(transport) {
            return None;
        }
        let rest = trim_start(&rest[t_end..]);
        let sb_end = rest
            .iter()
            .position(|&b| b == b';' || is_lws(b))
            .unwrap_or(rest.len());
        let sent_by = std::str::from_utf8(&rest[..sb_end]).ok()?;
        let (host, port) = split_host_port(sent_by).ok()?;
        let params = Params(trim(&rest[sb_end..]));
        if !params.well_formed_header() {
            return None;
        }
        Some(Via {
            transport: std::str::from_utf8(transport).ok()?,
            host,
            port,
            params,
        })
    }

    /// The branch parameter.
    pub fn branch(&self) -> Option<&'a [u8]> {
        self.params.get("branch").flatten()
    }

    /// The `received` parameter.
    pub fn received(&self) -> Option<&'a [u8]> {
        self.params.get("received").flatten()
    }

    /// `None`: no rport; `Some(None)`: `;rport` asked for (RFC 3581); `Some(Some(p))`: filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get("rport")
            .map(|v| v.and_then(|p| std::str::from_utf8(p).ok()?.parse().ok()))
    }

    /// True for reliable transports (everything but UDP).
    pub fn is_reliable(&self) -> bool {
        !self.transport.eq_ignore_ascii_case("UDP")
    }
}

fn split_slash(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let s = trim_start(s);
    let slash = s.iter().position(|&b| b == b'/')?;
    let token = trim(&s[..slash]);
    if !is_token_str(token) {
        return None;
    }
    Some((token, &s[slash + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_via() {
        let v = Via::parse(b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776;rport").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, "192.0.2.1");
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.branch(), Some(&b"z9hG4bK776"[..]));
        assert_eq!(v.rport(), Some(None));
        assert!(!v.is_reliable());
    }

    #[test]
    fn lws_everywhere_and_folding() {
        let v = Via::parse(b"SIP  /  2.0 /\r\n TCP   host.example.com ;\r\n\tbranch = z9hG4bKx")
            .unwrap();
        assert_eq!(v.transport, "TCP");
        assert_eq!(v.host, "host.example.com");
        assert_eq!(v.branch(), Some(&b"z9hG4bKx"[..]));
    }

    #[test]
    fn ipv6_sent_by_and_received() {
        let v = Via::parse(
            b"SIP/2.0/UDP [2001:db8::9:1]:5070;branch=z9hG4bKas3;received=2001:db8::9:255",
        )
        .unwrap();
        assert_eq!(v.host, "[2001:db8::9:1]");
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.received(), Some(&b"2001:db8::9:255"[..]));
    }

    #[test]
    fn rejects_extraneous_separators() {
        // RFC 4475 §3.1.2.1 badinv01
        assert!(Via::parse(b"SIP/2.0/UDP 192.0.2.15;;").is_none());
        assert!(Via::parse(b"SIP/2.0/UDP").is_none());
        assert!(Via::parse(b"SIP/3.0/UDP host").is_none());
    }
}
