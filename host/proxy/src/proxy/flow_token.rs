//! Flow tokens (RFC 5626 §5.3, the way Kamailio's outbound module and
//! `add_contact_alias` solve the same problem): the Record-Route entry this
//! proxy writes toward a caller on a connection (TCP, TLS, WS, WSS) names
//! that connection in its user part. A WebSocket client's Contact is an
//! unroutable `*.invalid` host (RFC 7118 §5.2), and carriers refuse an
//! in-dialog request that arrives on a new TLS connection, so requests
//! toward the caller must go back over the connection the dialog started
//! on; the token in the Route set says which, without any dialog state here.
//!
//! `ft-<flow>-<source>-<mac>`: the runtime's connection id, the caller's
//! address (IP bytes and port, hex) and an HMAC-SHA256 (truncated to 64 bits)
//! over both, keyed per process, so a forged Route cannot steer a request
//! into someone else's connection. Tokens die with the process, as the
//! connections they name do.

use super::FlowId;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::net::{IpAddr, SocketAddr};

const PREFIX: &str = "ft-";

/// The key every worker of a process shares.
#[derive(Clone)]
pub(crate) struct FlowKey([u8; 32]);

impl std::fmt::Debug for FlowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlowKey(..)")
    }
}

impl FlowKey {
    pub(crate) fn new(key: [u8; 32]) -> Self {
        FlowKey(key)
    }

    pub(crate) fn random() -> Self {
        FlowKey(rand::random())
    }

    fn mac(&self, flow: FlowId, source: SocketAddr) -> u64 {
        let Ok(mut m) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return 0; // HMAC takes keys of any length
        };
        m.update(&flow.to_be_bytes());
        match source.ip() {
            IpAddr::V4(ip) => m.update(&ip.octets()),
            IpAddr::V6(ip) => m.update(&ip.octets()),
        }
        m.update(&source.port().to_be_bytes());
        let out = m.finalize().into_bytes();
        let mut first = [0u8; 8];
        first.copy_from_slice(&out[..8]);
        u64::from_be_bytes(first)
    }

    /// The user part naming `flow` (from `source`).
    pub(crate) fn encode(&self, flow: FlowId, source: SocketAddr) -> String {
        use std::fmt::Write as _;
        let mut s = format!("{PREFIX}{flow:x}-");
        match source.ip() {
            IpAddr::V4(ip) => ip.octets().iter().for_each(|b| {
                let _ = write!(s, "{b:02x}");
            }),
            IpAddr::V6(ip) => ip.octets().iter().for_each(|b| {
                let _ = write!(s, "{b:02x}");
            }),
        }
        let _ = write!(s, "{:04x}-{:016x}", source.port(), self.mac(flow, source));
        s
    }

    /// The flow and address a user part names, when it is a token of ours.
    pub(crate) fn decode(&self, user: &str) -> Option<(FlowId, SocketAddr)> {
        let mut parts = user.strip_prefix(PREFIX)?.split('-');
        let flow = FlowId::from_str_radix(parts.next()?, 16).ok()?;
        let addr = parts.next()?;
        let mac = u64::from_str_radix(parts.next()?, 16).ok()?;
        if parts.next().is_some() || !addr.is_ascii() || addr.len() < 4 {
            return None;
        }
        let (ip, port) = addr.split_at(addr.len() - 4);
        let port = u16::from_str_radix(port, 16).ok()?;
        let bytes: Vec<u8> = (0..ip.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(ip.get(i..i + 2)?, 16).ok())
            .collect::<Option<_>>()?;
        let ip = match bytes.len() {
            4 => IpAddr::from(<[u8; 4]>::try_from(bytes.as_slice()).ok()?),
            16 => IpAddr::from(<[u8; 16]>::try_from(bytes.as_slice()).ok()?),
            _ => return None,
        };
        let source = SocketAddr::new(ip, port);
        (self.mac(flow, source) == mac).then_some((flow, source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_v4_and_v6() {
        let key = FlowKey::new([7; 32]);
        for src in ["192.0.2.1:40000", "[2001:db8::5]:5062"] {
            let src: SocketAddr = src.parse().unwrap();
            let user = key.encode(42, src);
            assert!(user.starts_with("ft-2a-"), "{user}");
            assert_eq!(key.decode(&user), Some((42, src)));
        }
    }

    #[test]
    fn forged_or_foreign_tokens_are_refused() {
        let key = FlowKey::new([7; 32]);
        let src: SocketAddr = "192.0.2.1:40000".parse().unwrap();
        let user = key.encode(42, src);
        // Another flow id with the same MAC, another process's key, junk.
        assert_eq!(key.decode(&user.replacen("ft-2a-", "ft-2b-", 1)), None);
        assert_eq!(FlowKey::new([8; 32]).decode(&user), None);
        for junk in [
            "bob",
            "ft-",
            "ft-zz-00-00",
            "ft-1-c00002-0",
            "ft-1-c0000201-9c40-1-2",
        ] {
            assert_eq!(key.decode(junk), None, "{junk}");
        }
    }
}
