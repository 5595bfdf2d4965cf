//! The CSeq header (RFC 3261 §20.16).

use crate::method::Method;
use crate::scan::{is_lws, parse_u32_max, trim};

/// `CSeq: 4711 INVITE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// Sequence number, below 2**31 (§8.1.1.5).
    pub seq: u32,
    /// The method it numbers.
    pub method: Method<'a>,
}

impl<'a> CSeq<'a> {
    /// Parses a CSeq value.
    pub fn parse(value: &'a [u8]) -> Option<CSeq<'a>> {
        let v = trim(value);
        let sp = v.iter().position(|&b| is_lws(b))?;
        let seq = parse_u32_max(&v[..sp], (1 << 31) - 1)?;
        let method = Method::parse(trim(&v[sp..]))?;
        Some(CSeq { seq, method })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_bounds() {
        let c = CSeq::parse(b" 4711  INVITE ").unwrap();
        assert_eq!(c.seq, 4711);
        assert_eq!(c.method, Method::Invite);
        assert!(CSeq::parse(b"36893488147419103232 INVITE").is_none());
        assert!(CSeq::parse(b"2147483648 INVITE").is_none());
        assert!(CSeq::parse(b"1").is_none());
        assert_eq!(
            CSeq::parse(b"1 NEWMETHOD").unwrap().method,
            Method::Other("NEWMETHOD")
        );
    }
}
