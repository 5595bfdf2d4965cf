//! What a REGISTER asks for (RFC 3261 §10.3 steps 5-7, RFC 3327 §5.3), read
//! and checked before the stored bindings are touched.

use super::aor::canonical_aor;
use super::{Outcome, RegistrarSettings};
use viaduct_sip::{HeaderName, Message, NameAddr};

/// A checked REGISTER.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RegisterRequest {
    /// The To URI in canonical form.
    pub aor: String,
    pub call_id: String,
    pub cseq: u32,
    pub contacts: Asked,
    /// Path values as received, top first.
    pub path: Vec<String>,
    /// `Supported: path`: the UA wants the Path echoed (RFC 3327 §5.3).
    pub supports_path: bool,
}

/// The Contact header field's request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Asked {
    /// No Contact: a query for the current bindings (§10.3 step 6).
    Query,
    /// `Contact: *` with `Expires: 0`: remove every binding.
    RemoveAll,
    /// These contacts, in order.
    Bindings(Vec<AskedBinding>),
}

/// One Contact value: its URI, preference and granted expiry (0: remove).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AskedBinding {
    pub uri: String,
    pub q: Option<u16>,
    pub expires: u32,
}

impl RegisterRequest {
    /// Reads a REGISTER; a request the registrar must refuse gives the
    /// refusal (400 naming the problem, or 423 with `Min-Expires`).
    pub fn read(msg: &Message<'_>, settings: &RegistrarSettings) -> Result<Self, Outcome> {
        let to = msg.to().ok_or_else(|| bad("Bad To"))?;
        let aor = canonical_aor(to.uri.raw)
            .ok_or_else(|| bad("Bad To - Address-of-Record Must Be a SIP or SIPS URI"))?;
        let call_id = msg
            .call_id()
            .filter(|c| !c.is_empty())
            .and_then(|c| std::str::from_utf8(c).ok())
            .ok_or_else(|| bad("Bad Call-ID"))?
            .to_owned();
        let cseq = msg.cseq().ok_or_else(|| bad("Bad CSeq"))?.seq;
        let expires_header = match msg.header_value(HeaderName::Expires) {
            Some(v) => Some(delta_seconds(v).ok_or_else(|| bad("Bad Expires"))?),
            None => None,
        };
        let contacts = read_contacts(msg, expires_header, settings)?;
        let path = read_path(msg)?;
        let supports_path = msg
            .values(HeaderName::Supported)
            .any(|(_, tag)| tag.eq_ignore_ascii_case(b"path"));
        Ok(RegisterRequest {
            aor,
            call_id,
            cseq,
            contacts,
            path,
            supports_path,
        })
    }
}

/// RFC 3261 §10.3 steps 6-7.
fn read_contacts(
    msg: &Message<'_>,
    expires_header: Option<u32>,
    settings: &RegistrarSettings,
) -> Result<Asked, Outcome> {
    let values: Vec<&[u8]> = msg.values(HeaderName::Contact).map(|(_, v)| v).collect();
    if values.is_empty() {
        return Ok(Asked::Query);
    }
    if values.iter().any(|v| *v == b"*") {
        // Step 6: `*` alone, and only to remove with Expires: 0.
        if values.len() > 1 {
            return Err(bad("Bad Contact - * Must Be the Only Contact"));
        }
        if expires_header != Some(0) {
            return Err(bad("Bad Contact - * Needs Expires: 0"));
        }
        return Ok(Asked::RemoveAll);
    }
    let mut asked = Vec::with_capacity(values.len());
    for value in values {
        let contact = NameAddr::parse(value).ok_or_else(|| bad("Bad Contact"))?;
        let expires = match contact.params.get("expires") {
            Some(v) => v
                .and_then(delta_seconds)
                .ok_or_else(|| bad("Bad Contact - Bad expires Parameter"))?,
            None => expires_header.unwrap_or(settings.default_expires),
        };
        // Step 7: a non-zero interval below the minimum is refused; one
        // above the maximum is shortened.
        if expires != 0 && expires < settings.min_expires {
            return Err(Outcome::reject(
                423,
                "Interval Too Brief",
                vec![format!("Min-Expires: {}", settings.min_expires)],
            ));
        }
        let q = match contact.params.get("q") {
            Some(v) => Some(
                v.and_then(qvalue)
                    .ok_or_else(|| bad("Bad Contact - Bad q Parameter"))?,
            ),
            None => None,
        };
        asked.push(AskedBinding {
            uri: contact.uri.raw.to_owned(),
            q,
            expires: expires.min(settings.max_expires),
        });
    }
    Ok(Asked::Bindings(asked))
}

/// The Path values, top first, each a well-formed name-addr (RFC 3327 §4).
/// Path has no compact form and is not one of the names the parser knows.
fn read_path(msg: &Message<'_>) -> Result<Vec<String>, Outcome> {
    let mut path = Vec::new();
    for h in msg.headers() {
        if h.name != HeaderName::Other
            || !msg.bytes()[h.name_span.clone()].eq_ignore_ascii_case(b"Path")
        {
            continue;
        }
        for value in split_commas(msg.value(h)) {
            let value = value.trim_ascii();
            let ok = NameAddr::parse(value).is_some();
            let text = std::str::from_utf8(value).ok().filter(|_| ok);
            let text = text.ok_or_else(|| bad("Bad Path"))?;
            // A folded value keeps its CRLF; it will be a Route value later.
            path.push(text.split_ascii_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    Ok(path)
}

/// Splits on the commas between values, not those in quotes or `<...>`.
fn split_commas(s: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let s = rest?;
        let (mut quoted, mut angle, mut escaped) = (false, false, false);
        for (i, &b) in s.iter().enumerate() {
            match b {
                _ if escaped => escaped = false,
                b'\\' if quoted => escaped = true,
                b'"' => quoted = !quoted,
                b'<' if !quoted => angle = true,
                b'>' if !quoted => angle = false,
                b',' if !quoted && !angle => {
                    rest = Some(&s[i + 1..]);
                    return Some(&s[..i]);
                }
                _ => {}
            }
        }
        rest = None;
        Some(s)
    })
}

/// delta-seconds (RFC 3261 §25.1); values past 2^32-1 read as 2^32-1 (§20.19).
fn delta_seconds(v: &[u8]) -> Option<u32> {
    let v = v.trim_ascii();
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u32, |acc, &d| {
        acc.saturating_mul(10).saturating_add(u32::from(d - b'0'))
    }))
}

/// A qvalue (RFC 3261 §25.1: `0[.ddd]` or `1[.000]`) in thousandths.
fn qvalue(v: &[u8]) -> Option<u16> {
    let (int, frac) = match v.iter().position(|&b| b == b'.') {
        Some(dot) => (&v[..dot], &v[dot + 1..]),
        None => (v, &b""[..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for i in 0..3 {
        let digit = frac.get(i).map_or(0, |d| u16::from(d - b'0'));
        thousandths = thousandths * 10 + digit;
    }
    match int {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

fn bad(reason: &str) -> Outcome {
    Outcome::reject(400, reason, Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qvalues() {
        assert_eq!(qvalue(b"1"), Some(1000));
        assert_eq!(qvalue(b"1.000"), Some(1000));
        assert_eq!(qvalue(b"1."), Some(1000));
        assert_eq!(qvalue(b"0"), Some(0));
        assert_eq!(qvalue(b"0.5"), Some(500));
        assert_eq!(qvalue(b"0.05"), Some(50));
        assert_eq!(qvalue(b"0.123"), Some(123));
        for bad in [
            &b"1.5"[..],
            b"0.1234",
            b"2",
            b".5",
            b"",
            b"0.x",
            b"-0.1",
            b"01",
        ] {
            assert_eq!(qvalue(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn delta_seconds_saturate() {
        assert_eq!(delta_seconds(b" 3600 "), Some(3600));
        assert_eq!(delta_seconds(b"0"), Some(0));
        assert_eq!(delta_seconds(b"99999999999999"), Some(u32::MAX));
        assert_eq!(delta_seconds(b"-1"), None);
        assert_eq!(delta_seconds(b""), None);
        assert_eq!(delta_seconds(b"1h"), None);
    }

    #[test]
    fn commas_in_quotes_and_angles_do_not_split() {
        let v = br#""a, \"b" <sip:p1@x;lr>, <sip:p2@y;x=1,2>"#;
        let parts: Vec<_> = split_commas(v).map(<[u8]>::trim_ascii).collect();
        assert_eq!(
            parts,
            vec![&br#""a, \"b" <sip:p1@x;lr>"#[..], b"<sip:p2@y;x=1,2>"]
        );
    }
}
