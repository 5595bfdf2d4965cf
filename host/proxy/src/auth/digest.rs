//! Digest credentials on the wire (RFC 7616 §3.4, RFC 8760 for SHA-256 in
//! SIP, RFC 3261 §22.4): parsing a `Proxy-Authorization` value and computing
//! the response a user agent that knows the password would send.

use md5::Md5;
use sha2::{Digest as _, Sha256};

/// A digest hash algorithm (RFC 8760 §2.1; SHA-512-256 and the `-sess`
/// variants are not offered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `MD5`, RFC 3261's default and what most SIP phones (and SIPp) still speak.
    Md5,
    /// `SHA-256` (RFC 8760): offered first.
    Sha256,
}

impl Algorithm {
    /// Both, in the order the challenge offers them (RFC 8760 §2.4: most preferred first).
    pub const OFFERED: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Md5];

    /// The `algorithm=` token.
    pub fn token(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Parses an `algorithm=` token (case-insensitive).
    pub fn from_token(t: &str) -> Option<Algorithm> {
        if t.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if t.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    /// The lowercase hex digest of the parts joined by `:`.
    pub fn hex(self, parts: &[&[u8]]) -> String {
        fn run<D: sha2::Digest>(mut d: D, parts: &[&[u8]]) -> String {
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    d.update(b":");
                }
                d.update(p);
            }
            to_hex(&d.finalize())
        }
        match self {
            Algorithm::Md5 => run(Md5::new(), parts),
            Algorithm::Sha256 => run(Sha256::new(), parts),
        }
    }

    /// HA1 = H(username:realm:password) (RFC 7616 §3.4.2), what the config stores.
    pub fn ha1(self, user: &str, realm: &str, password: &str) -> String {
        self.hex(&[user.as_bytes(), realm.as_bytes(), password.as_bytes()])
    }
}

/// Lowercase hex.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// Exactly `2 * N` hex digits (either case) as bytes.
pub fn from_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.as_bytes();
    if s.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = digit(s[2 * i])? << 4 | digit(s[2 * i + 1])?;
    }
    Some(out)
}

/// Equality in time independent of where the inputs differ, for MACs and responses.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The fields of one `Digest` credentials value that verification needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// `username`.
    pub username: String,
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `uri` (the digest-uri; must match the Request-URI).
    pub uri: String,
    /// `response`, lowercase hex as sent.
    pub response: String,
    /// `algorithm`, as sent (absent means MD5).
    pub algorithm: Option<String>,
    /// `qop` (only `auth` is offered).
    pub qop: Option<String>,
    /// `nc`, 8 hex digits.
    pub nc: Option<String>,
    /// `cnonce`.
    pub cnonce: Option<String>,
}

impl Credentials {
    /// Parses `Digest username="alice", realm="x", ...`. `None` when the
    /// scheme is not Digest or the parameter list is broken.
    pub fn parse(value: &str) -> Option<Credentials> {
        let value = value.trim();
        let (scheme, rest) = value.split_once(|c: char| c.is_ascii_whitespace())?;
        if !scheme.eq_ignore_ascii_case("Digest") {
            return None;
        }
        let mut c = Credentials::default();
        for (name, val) in AuthParams(rest.as_bytes()) {
            let name = std::str::from_utf8(name).ok()?;
            let field = match name.to_ascii_lowercase().as_str() {
                "username" => &mut c.username,
                "realm" => &mut c.realm,
                "nonce" => &mut c.nonce,
                "uri" => &mut c.uri,
                "response" => &mut c.response,
                "algorithm" => c.algorithm.get_or_insert_with(String::new),
                "qop" => c.qop.get_or_insert_with(String::new),
                "nc" => c.nc.get_or_insert_with(String::new),
                "cnonce" => c.cnonce.get_or_insert_with(String::new),
                _ => continue,
            };
            *field = val?;
        }
        Some(c)
    }

    /// The `response` a client with this HA1 computes for `method`
    /// (RFC 7616 §3.4.1; without `qop`, the RFC 2069 form RFC 3261 §22.4 keeps).
    pub fn expected_response(&self, algorithm: Algorithm, ha1: &str, method: &str) -> String {
        let ha2 = algorithm.hex(&[method.as_bytes(), self.uri.as_bytes()]);
        match (&self.qop, &self.nc, &self.cnonce) {
            (Some(qop), Some(nc), Some(cnonce)) => algorithm.hex(&[
                ha1.as_bytes(),
                self.nonce.as_bytes(),
                nc.as_bytes(),
                cnonce.as_bytes(),
                qop.as_bytes(),
                ha2.as_bytes(),
            ]),
            _ => algorithm.hex(&[ha1.as_bytes(), self.nonce.as_bytes(), ha2.as_bytes()]),
        }
    }
}

/// `name=value` pairs of an auth-param list (RFC 7235 §2.1): values are
/// tokens or quoted strings with `\` escapes. Yields `None` as the value of a
/// pair whose quoted string is not valid UTF-8 or does not end.
struct AuthParams<'a>(&'a [u8]);

impl<'a> Iterator for AuthParams<'a> {
    type Item = (&'a [u8], Option<String>);

    fn next(&mut self) -> Option<Self::Item> {
        let s = self.0;
        let mut i = 0;
        while i < s.len() && (s[i] == b',' || s[i].is_ascii_whitespace()) {
            i += 1;
        }
        let name_start = i;
        while i < s.len() && s[i] != b'=' && s[i] != b',' && !s[i].is_ascii_whitespace() {
            i += 1;
        }
        let name = &s[name_start..i];
        if name.is_empty() {
            return None;
        }
        while i < s.len() && s[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= s.len() || s[i] != b'=' {
            // A bare token: no value; skip it.
            self.0 = &s[i..];
            return Some((name, Some(String::new())));
        }
        i += 1;
        while i < s.len() && s[i].is_ascii_whitespace() {
            i += 1;
        }
        let value = if i < s.len() && s[i] == b'"' {
            i += 1;
            let mut out = Vec::new();
            let mut closed = false;
            while i < s.len() {
                match s[i] {
                    b'\\' if i + 1 < s.len() => {
                        out.push(s[i + 1]);
                        i += 2;
                    }
                    b'"' => {
                        closed = true;
                        i += 1;
                        break;
                    }
                    b => {
                        out.push(b);
                        i += 1;
                    }
                }
            }
            if closed {
                String::from_utf8(out).ok()
            } else {
                None
            }
        } else {
            let start = i;
            while i < s.len() && s[i] != b',' && !s[i].is_ascii_whitespace() {
                i += 1;
            }
            std::str::from_utf8(&s[start..i]).ok().map(str::to_owned)
        };
        self.0 = &s[i..];
        Some((name, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_7616_section_3_9_1_examples() {
        // RFC 7616 §3.9.1: Mufasa / "Circle of Life", both algorithms.
        let base = |alg: &str, response: &str| {
            format!(
                "Digest username=\"Mufasa\", realm=\"http-auth@example.org\", uri=\"/dir/index.html\", \
                 algorithm={alg}, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", nc=00000001, \
                 cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\", qop=auth, \
                 response=\"{response}\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
            )
        };
        for (alg, algorithm, response) in [
            ("MD5", Algorithm::Md5, "8ca523f5e9506fed4657c9700eebdbec"),
            (
                "SHA-256",
                Algorithm::Sha256,
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
        ] {
            let c = Credentials::parse(&base(alg, response)).unwrap();
            assert_eq!(c.username, "Mufasa");
            assert_eq!(
                Algorithm::from_token(c.algorithm.as_deref().unwrap()),
                Some(algorithm)
            );
            let ha1 = algorithm.ha1("Mufasa", "http-auth@example.org", "Circle of Life");
            assert_eq!(
                c.expected_response(algorithm, &ha1, "GET"),
                response,
                "{alg}"
            );
        }
    }

    #[test]
    fn quoted_strings_commas_and_escapes() {
        let c = Credentials::parse(
            r#"digest  realm="a,b", username = "al\"ice" ,nonce="n",uri="sip:x",response="r""#,
        )
        .unwrap();
        assert_eq!(c.realm, "a,b");
        assert_eq!(c.username, "al\"ice");
        assert_eq!(c.uri, "sip:x");
        assert_eq!(c.algorithm, None);
    }

    #[test]
    fn other_schemes_and_broken_lists_are_not_digest() {
        assert_eq!(Credentials::parse("Basic YWxhZGRpbjpvcGVuc2VzYW1l"), None);
        assert_eq!(Credentials::parse("Digest username=\"unterminated"), None);
        assert_eq!(Credentials::parse("Digest"), None);
        assert_eq!(Credentials::parse(""), None);
    }
}
