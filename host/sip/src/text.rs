//! Numbers and addresses written into message bytes.
//!
//! Every forwarded message gets a few: the Max-Forwards value, the
//! `received`/`rport` of the previous hop's Via (RFC 3261 §18.2.1, RFC 3581),
//! the branch's hex hash, a Content-Length. `write!` into a `Vec` goes
//! through `core::fmt` (a `Formatter`, padding checks, a `dyn Write` call
//! per piece): about 300-500 instructions for an address against about 50
//! here, on a path that runs for every message.

use std::net::{IpAddr, SocketAddr};

/// Appends `v` in decimal.
pub fn push_decimal(out: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// `v` as 16 lowercase hex digits (`format!("{v:016x}")`).
pub fn hex64(v: u64) -> [u8; 16] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    for (i, d) in digits.iter_mut().enumerate() {
        *d = HEX[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
    digits
}

/// Appends an IP address as `Display` writes it (IPv6 without brackets).
pub fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_decimal(out, u64::from(octet));
            }
        }
        // Rare on this path, and its shortest form (RFC 5952) is not worth redoing.
        IpAddr::V6(v6) => {
            use std::io::Write;
            let _ = write!(out, "{v6}");
        }
    }
}

/// Appends `ip:port`, with brackets around an IPv6 address, as `Display` writes it.
pub fn push_socket_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(v4) => {
            push_ip(out, IpAddr::V4(*v4.ip()));
            out.push(b':');
            push_decimal(out, u64::from(v4.port()));
        }
        // Brackets, a zone (`%eth0`) when there is one: Display knows them.
        SocketAddr::V6(v6) => {
            use std::io::Write;
            let _ = write!(out, "{v6}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn numbers_as_display_writes_them() {
        for v in [0u64, 7, 10, 69, 255, 5060, 65535, u64::MAX] {
            assert_eq!(text(|o| push_decimal(o, v)), v.to_string());
            assert_eq!(hex64(v), format!("{v:016x}").as_bytes());
        }
    }

    #[test]
    fn addresses_as_display_writes_them() {
        for a in [
            "127.0.0.1:5060",
            "0.0.0.0:0",
            "192.168.100.255:65535",
            "[::1]:5060",
            "[2001:db8::10]:5070",
        ] {
            let addr: SocketAddr = a.parse().unwrap();
            assert_eq!(text(|o| push_socket_addr(o, addr)), addr.to_string());
            assert_eq!(text(|o| push_ip(o, addr.ip())), addr.ip().to_string());
        }
    }
}
