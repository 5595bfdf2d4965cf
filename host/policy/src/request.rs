//! The `request` resource: an initial request as a policy sees it.
//!
//! The host keeps the received bytes (a cheap `Bytes` clone) and the header
//! spans the proxy already found, so a read is a slice lookup, not a parse.
//! Edits are recorded and handed back to the proxy core, which applies them
//! to the bytes when it forwards.

use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use viaduct_proxy::auth::{AuthCheck, Authenticator};
use viaduct_proxy::{RequestEdits, Transport, PROTECTED_HEADERS};
use viaduct_sip::{HeaderField, HeaderName, Message};

/// The host side of the WIT `request` resource.
#[derive(Debug)]
pub struct RequestView {
    data: Bytes,
    headers: Vec<HeaderField>,
    start: std::ops::Range<usize>,
    body: std::ops::Range<usize>,
    pub(crate) source: SocketAddr,
    pub(crate) transport: Transport,
    /// What the policy changed so far.
    pub(crate) edits: RequestEdits,
    authenticator: Option<Arc<Authenticator>>,
    /// The digest check, once asked for (it records the nonce count, so it runs once).
    pub(crate) auth_check: Option<(String, AuthCheck)>,
}

impl RequestView {
    /// Captures a request for a policy call. `hidden` headers (caller-supplied
    /// X-Room-ID / X-Session-ID from untrusted sources) are removed up front:
    /// the policy does not see them and they are not forwarded.
    pub fn new(
        msg: &Message<'_>,
        data: Bytes,
        source: SocketAddr,
        transport: Transport,
        hidden: &[String],
    ) -> Self {
        let mut edits = RequestEdits::default();
        for name in hidden {
            if msg.header_value_by_name(name).is_some() {
                edits.remove.push(name.clone());
            }
        }
        RequestView {
            data,
            headers: msg.headers().to_vec(),
            start: msg.start_span(),
            body: msg.body_span(),
            source,
            transport,
            edits,
            authenticator: None,
            auth_check: None,
        }
    }

    /// Lets `authenticated-user` check credentials with the proxy's authenticator.
    pub fn with_authenticator(
        mut self,
        authenticator: Option<Arc<Authenticator>>,
        checked: Option<(String, AuthCheck)>,
    ) -> Self {
        self.authenticator = authenticator;
        self.auth_check = checked;
        self
    }

    /// The user whose credentials for `realm` are valid, checked at most once.
    pub fn authenticated_user(&mut self, realm: &str) -> Option<String> {
        let auth = self.authenticator.as_ref()?;
        let msg = Message::parse(&self.data, viaduct_sip::Framing::Datagram).ok()?;
        auth.check_once(&msg, realm, &mut self.auth_check)
            .user()
            .map(str::to_owned)
    }

    fn message(&self) -> Option<Message<'_>> {
        Message::parse(&self.data, viaduct_sip::Framing::Datagram).ok()
    }

    fn start_line(&self) -> &str {
        std::str::from_utf8(&self.data[self.start.clone()]).unwrap_or("")
    }

    /// The method token.
    pub fn method(&self) -> String {
        self.start_line().split(' ').next().unwrap_or("").to_owned()
    }

    /// The Request-URI, with the policy's own rewrite if any.
    pub fn request_uri(&self) -> String {
        if let Some(u) = &self.edits.request_uri {
            return u.clone();
        }
        let line = self.start_line();
        let first = line.find(' ').map_or(0, |i| i + 1);
        let last = line.rfind(' ').unwrap_or(line.len());
        line.get(first..last).unwrap_or("").to_owned()
    }

    /// Parts of the (possibly rewritten) Request-URI: (user, host, port).
    pub fn request_uri_parts(&self) -> (Option<String>, String, Option<u16>) {
        let uri = self.request_uri();
        match viaduct_sip::Uri::parse(uri.as_bytes()) {
            Ok(u) => (u.user.map(str::to_owned), u.host.to_owned(), u.port),
            Err(_) => (None, String::new(), None),
        }
    }

    fn name_addr(&self, name: HeaderName) -> (String, Option<String>) {
        let Some(msg) = self.message() else {
            return (String::new(), None);
        };
        let na = match name {
            HeaderName::From => msg.from(),
            _ => msg.to(),
        };
        match na {
            Some(na) => (
                na.uri.raw.to_owned(),
                na.tag().map(|t| String::from_utf8_lossy(t).into_owned()),
            ),
            None => (String::new(), None),
        }
    }

    /// From URI and tag.
    pub fn from(&self) -> (String, Option<String>) {
        self.name_addr(HeaderName::From)
    }

    /// To URI and tag.
    pub fn to(&self) -> (String, Option<String>) {
        self.name_addr(HeaderName::To)
    }

    /// Call-ID.
    pub fn call_id(&self) -> String {
        self.header(HeaderName::CallId.as_str()).unwrap_or_default()
    }

    fn is_removed(&self, name: &str) -> bool {
        let wanted = HeaderName::from_bytes(name.as_bytes());
        self.edits.remove.iter().any(|r| same_name(r, name, wanted))
    }

    /// Every value of a header as the forwarded request will carry it.
    pub fn headers(&self, name: &str) -> Vec<String> {
        let wanted = HeaderName::from_bytes(name.as_bytes());
        let mut out = Vec::new();
        if !self.is_removed(name) {
            for h in &self.headers {
                let matches = if wanted == HeaderName::Other {
                    self.data[h.name_span.clone()].eq_ignore_ascii_case(name.as_bytes())
                } else {
                    h.name == wanted
                };
                if matches {
                    out.push(
                        String::from_utf8_lossy(&self.data[h.value_span.clone()]).into_owned(),
                    );
                }
            }
        }
        out.extend(
            self.edits
                .add
                .iter()
                .filter(|(n, _)| same_name(n, name, wanted))
                .map(|(_, v)| v.clone()),
        );
        out
    }

    /// The name of every header line the forwarded request will carry, in
    /// order: the received ones as spelled on the wire, then the added ones.
    pub fn header_names(&self) -> Vec<String> {
        let received = self
            .headers
            .iter()
            .map(|h| String::from_utf8_lossy(&self.data[h.name_span.clone()]).into_owned())
            .filter(|name| !self.is_removed(name));
        received
            .chain(self.edits.add.iter().map(|(n, _)| n.clone()))
            .collect()
    }

    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers(name).into_iter().next()
    }

    /// The body.
    pub fn body(&self) -> Vec<u8> {
        self.data
            .get(self.body.clone())
            .unwrap_or_default()
            .to_vec()
    }

    /// Appends a header line; refuses names and values that would break the message.
    pub fn add_header(&mut self, name: String, value: String) -> bool {
        if !valid_header(&name, &value)
            || PROTECTED_HEADERS.contains(&HeaderName::from_bytes(name.as_bytes()))
        {
            return false;
        }
        self.edits.add.push((name, value));
        true
    }

    /// Removes every line of a header (protected ones stay).
    pub fn remove_header(&mut self, name: String) {
        let wanted = HeaderName::from_bytes(name.as_bytes());
        if PROTECTED_HEADERS.contains(&wanted) {
            return;
        }
        self.edits.add.retain(|(n, _)| !same_name(n, &name, wanted));
        if !self
            .edits
            .remove
            .iter()
            .any(|r| same_name(r, &name, wanted))
        {
            self.edits.remove.push(name);
        }
    }

    /// Replaces a header with one line.
    pub fn set_header(&mut self, name: String, value: String) -> bool {
        if !valid_header(&name, &value)
            || PROTECTED_HEADERS.contains(&HeaderName::from_bytes(name.as_bytes()))
        {
            return false;
        }
        self.remove_header(name.clone());
        self.add_header(name, value)
    }

    /// Sets the Request-URI.
    pub fn set_request_uri(&mut self, uri: String) -> Result<(), String> {
        match viaduct_sip::Uri::parse(uri.as_bytes()) {
            Ok(u)
                if matches!(
                    u.scheme,
                    viaduct_sip::Scheme::Sip | viaduct_sip::Scheme::Sips
                ) =>
            {
                self.edits.request_uri = Some(uri);
                Ok(())
            }
            _ => Err(format!("not a SIP URI: {uri:?}")),
        }
    }
}

fn same_name(candidate: &str, name: &str, wanted: HeaderName) -> bool {
    if wanted == HeaderName::Other {
        candidate.eq_ignore_ascii_case(name)
    } else {
        HeaderName::from_bytes(candidate.as_bytes()) == wanted
    }
}

fn valid_header(name: &str, value: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
        && !value.contains(['\r', '\n'])
}

#[cfg(test)]
mod tests {
    use super::*;
    use viaduct_sip::Framing;

    const INVITE: &[u8] = b"INVITE sip:room-42@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n\
From: <sip:alice@example.com>;tag=a1\r\n\
To: <sip:room-42@127.0.0.1>\r\n\
Call-ID: c1@h\r\n\
CSeq: 1 INVITE\r\n\
X-Room-ID: forged\r\n\
Content-Length: 0\r\n\r\n";

    fn view() -> RequestView {
        let msg = Message::parse(INVITE, Framing::Datagram).unwrap();
        let hidden = vec!["X-Room-ID".to_owned(), "X-Session-ID".to_owned()];
        RequestView::new(
            &msg,
            Bytes::from_static(INVITE),
            "127.0.0.1:5070".parse().unwrap(),
            Transport::Udp,
            &hidden,
        )
    }

    #[test]
    fn reads_and_hides_untrusted_headers() {
        let v = view();
        assert_eq!(v.method(), "INVITE");
        assert_eq!(v.request_uri(), "sip:room-42@127.0.0.1:5060");
        assert_eq!(
            v.request_uri_parts(),
            (Some("room-42".into()), "127.0.0.1".into(), Some(5060))
        );
        assert_eq!(
            v.from(),
            ("sip:alice@example.com".into(), Some("a1".into()))
        );
        assert_eq!(v.call_id(), "c1@h");
        assert_eq!(v.header("x-room-id"), None);
        assert_eq!(v.edits.remove, vec!["X-Room-ID".to_owned()]);
    }

    #[test]
    fn edits_show_in_reads_and_protect_core_headers() {
        let mut v = view();
        assert!(v.set_header("X-Room-ID".into(), "room-42".into()));
        assert_eq!(v.headers("x-room-id"), vec!["room-42".to_owned()]);
        assert!(!v.add_header("Via".into(), "x".into()));
        assert!(!v.add_header("X-Bad".into(), "a\r\nInjected: 1".into()));
        v.remove_header("Call-ID".into());
        assert_eq!(v.call_id(), "c1@h");
        assert!(v.set_request_uri("tel:+1".into()).is_err());
        assert!(v.set_request_uri("sip:bob@10.0.0.1".into()).is_ok());
        assert_eq!(v.request_uri_parts().0.as_deref(), Some("bob"));
    }

    #[test]
    fn header_names_follow_the_edits() {
        let mut v = view();
        let names = v.header_names();
        assert!(names.contains(&"Call-ID".to_owned()));
        // Hidden before the policy runs: never listed.
        assert!(!names.iter().any(|n| n.eq_ignore_ascii_case("x-room-id")));
        v.remove_header("call-id".into()); // protected: stays
        v.remove_header("content-length".into()); // protected: stays
        assert!(v.add_header("X-Tag".into(), "1".into()));
        assert!(v.set_header("X-Room-ID".into(), "room-42".into()));
        let names = v.header_names();
        assert_eq!(names.iter().filter(|n| *n == "Call-ID").count(), 1);
        assert_eq!(&names[names.len() - 2..], ["X-Tag", "X-Room-ID"]);
        v.remove_header("x-tag".into());
        assert!(!v.header_names().contains(&"X-Tag".to_owned()));
    }
}
