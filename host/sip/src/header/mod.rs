//! Header names and the typed values a proxy reads.
//!
//! Values are parsed on demand from the spans the message parser recorded, so a
//! header nobody reads costs nothing beyond finding its line.

mod cseq;
pub(crate) mod name_addr;
mod via;

pub use cseq::CSeq;
pub use name_addr::NameAddr;
pub use via::Via;

/// The headers the proxy core reads, recognised once at parse time in long or
/// compact form (RFC 3261 §7.3.3, §20). Everything else is `Other` and passes
/// through untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeaderName {
    /// `Via` / `v`
    Via,
    /// `From` / `f`
    From,
    /// `To` / `t`
    To,
    /// `Call-ID` / `i`
    CallId,
    /// `CSeq`
    CSeq,
    /// `Max-Forwards`
    MaxForwards,
    /// `Route`
    Route,
    /// `Record-Route`
    RecordRoute,
    /// `Contact` / `m`
    Contact,
    /// `Content-Length` / `l`
    ContentLength,
    /// `Content-Type` / `c`
    ContentType,
    /// `Content-Encoding` / `e`
    ContentEncoding,
    /// `Supported` / `k`
    Supported,
    /// `Subject` / `s`
    Subject,
    /// `Require`
    Require,
    /// `Proxy-Require`
    ProxyRequire,
    /// `Expires`
    Expires,
    /// `Date`
    Date,
    /// Any other header.
    Other,
}

impl HeaderName {
    /// Recognises a header name, case-insensitively.
    pub fn from_bytes(name: &[u8]) -> HeaderName {
        // Dispatch on length first: most names are then decided by one comparison.
        let eq = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
        match name.len() {
            1 => match name[0].to_ascii_lowercase() {
                b'v' => HeaderName::Via,
                b'f' => HeaderName::From,
                b't' => HeaderName::To,
                b'i' => HeaderName::CallId,
                b'm' => HeaderName::Contact,
                b'l' => HeaderName::ContentLength,
                b'c' => HeaderName::ContentType,
                b'e' => HeaderName::ContentEncoding,
                b'k' => HeaderName::Supported,
                b's' => HeaderName::Subject,
                _ => HeaderName::Other,
            },
            2 if eq("To") => HeaderName::To,
            3 if eq("Via") => HeaderName::Via,
            4 if eq("From") => HeaderName::From,
            4 if eq("CSeq") => HeaderName::CSeq,
            4 if eq("Date") => HeaderName::Date,
            5 if eq("Route") => HeaderName::Route,
            7 if eq("Call-ID") => HeaderName::CallId,
            7 if eq("Contact") => HeaderName::Contact,
            7 if eq("Subject") => HeaderName::Subject,
            7 if eq("Require") => HeaderName::Require,
            7 if eq("Expires") => HeaderName::Expires,
            9 if eq("Supported") => HeaderName::Supported,
            12 if eq("Max-Forwards") => HeaderName::MaxForwards,
            12 if eq("Record-Route") => HeaderName::RecordRoute,
            12 if eq("Content-Type") => HeaderName::ContentType,
            13 if eq("Proxy-Require") => HeaderName::ProxyRequire,
            14 if eq("Content-Length") => HeaderName::ContentLength,
            16 if eq("Content-Encoding") => HeaderName::ContentEncoding,
            _ => HeaderName::Other,
        }
    }

    /// The long form, for messages we build and for error reasons.
    pub fn as_str(self) -> &'static str {
        match self {
            HeaderName::Via => "Via",
            HeaderName::From => "From",
            HeaderName::To => "To",
            HeaderName::CallId => "Call-ID",
            HeaderName::CSeq => "CSeq",
            HeaderName::MaxForwards => "Max-Forwards",
            HeaderName::Route => "Route",
            HeaderName::RecordRoute => "Record-Route",
            HeaderName::Contact => "Contact",
            HeaderName::ContentLength => "Content-Length",
            HeaderName::ContentType => "Content-Type",
            HeaderName::ContentEncoding => "Content-Encoding",
            HeaderName::Supported => "Supported",
            HeaderName::Subject => "Subject",
            HeaderName::Require => "Require",
            HeaderName::ProxyRequire => "Proxy-Require",
            HeaderName::Expires => "Expires",
            HeaderName::Date => "Date",
            HeaderName::Other => "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::HeaderName;

    #[test]
    fn compact_and_long_forms() {
        for (s, n) in [
            ("v", HeaderName::Via),
            ("I", HeaderName::CallId),
            ("f", HeaderName::From),
            ("t", HeaderName::To),
            ("m", HeaderName::Contact),
            ("l", HeaderName::ContentLength),
            ("c", HeaderName::ContentType),
            ("k", HeaderName::Supported),
            ("s", HeaderName::Subject),
            ("e", HeaderName::ContentEncoding),
            ("call-id", HeaderName::CallId),
            ("RECORD-route", HeaderName::RecordRoute),
            ("X-Room-ID", HeaderName::Other),
        ] {
            assert_eq!(HeaderName::from_bytes(s.as_bytes()), n, "{s}");
        }
    }
}
