//! The SIP request a policy is asked about.

use std::net::IpAddr;

use crate::wit::viaduct::policy::types as raw;

/// How a message travels (RFC 3261 §18, RFC 7118 for WebSocket).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
    /// WebSocket.
    Ws,
    /// Secure WebSocket.
    Wss,
}

impl Transport {
    pub(crate) fn from_raw(t: raw::Transport) -> Self {
        match t {
            raw::Transport::Udp => Transport::Udp,
            raw::Transport::Tcp => Transport::Tcp,
            raw::Transport::Tls => Transport::Tls,
            raw::Transport::Ws => Transport::Ws,
            raw::Transport::Wss => Transport::Wss,
        }
    }

    pub(crate) fn into_raw(self) -> raw::Transport {
        match self {
            Transport::Udp => raw::Transport::Udp,
            Transport::Tcp => raw::Transport::Tcp,
            Transport::Tls => raw::Transport::Tls,
            Transport::Ws => raw::Transport::Ws,
            Transport::Wss => raw::Transport::Wss,
        }
    }
}

/// An initial SIP request, owned by Viaduct.
///
/// Every read asks the host for one value and returns a copy; nothing else
/// of the message crosses into the policy. Edits (`set_header`,
/// `set_request_uri`, ...) are applied when the request is forwarded, and
/// later reads see them.
///
/// ```no_run
/// # use viaduct_guest_sdk::{Decision, Request};
/// fn route(req: &Request) -> Decision {
///     match req.request_uri_user() {
///         Some(user) if user.starts_with("room-") => {
///             req.set_header("X-Room-ID", &user);
///             Decision::forward(["sip:10.0.0.1:5070"])
///         }
///         _ => Decision::relay(),
///     }
/// }
/// ```
pub struct Request<'a> {
    raw: &'a raw::Request,
}

impl<'a> Request<'a> {
    #[doc(hidden)]
    pub fn __from_raw(raw: &'a raw::Request) -> Self {
        Request { raw }
    }

    /// The method, e.g. `INVITE`.
    pub fn method(&self) -> String {
        self.raw.method()
    }

    /// The Request-URI as received (or as last set).
    pub fn request_uri(&self) -> String {
        self.raw.request_uri()
    }

    /// The user part of the Request-URI (`room-42` in `sip:room-42@host`),
    /// still %-escaped as on the wire; `None` when it has none.
    pub fn request_uri_user(&self) -> Option<String> {
        self.raw.request_uri_user()
    }

    /// The host part of the Request-URI (IPv6 with brackets).
    pub fn request_uri_host(&self) -> String {
        self.raw.request_uri_host()
    }

    /// The explicit port of the Request-URI, if any.
    pub fn request_uri_port(&self) -> Option<u16> {
        self.raw.request_uri_port()
    }

    /// The From URI.
    pub fn from_uri(&self) -> String {
        self.raw.from_uri()
    }

    /// The From tag.
    pub fn from_tag(&self) -> Option<String> {
        self.raw.from_tag()
    }

    /// The To URI.
    pub fn to_uri(&self) -> String {
        self.raw.to_uri()
    }

    /// The To tag (absent on initial requests).
    pub fn to_tag(&self) -> Option<String> {
        self.raw.to_tag()
    }

    /// The Call-ID.
    pub fn call_id(&self) -> String {
        self.raw.call_id()
    }

    /// The address the request came from (the transport source, not a
    /// header); `None` only if the host sent something that is not an IP.
    pub fn source_ip(&self) -> Option<IpAddr> {
        let ip = self.raw.source_ip();
        let ip = ip.trim_start_matches('[').trim_end_matches(']');
        ip.parse().ok()
    }

    /// The port the request came from.
    pub fn source_port(&self) -> u16 {
        self.raw.source_port()
    }

    /// The transport it came on.
    pub fn transport(&self) -> Transport {
        Transport::from_raw(self.raw.transport())
    }

    /// The first value of a header (name case-insensitive, compact forms
    /// work), as received plus this policy's edits.
    pub fn header(&self, name: &str) -> Option<String> {
        self.raw.header(name)
    }

    /// Every value of a header, one per header line.
    pub fn headers(&self, name: &str) -> Vec<String> {
        self.raw.headers(name)
    }

    /// The name of every header line, in order, as spelled on the wire, then
    /// the lines this policy added; one entry per line.
    pub fn header_names(&self) -> Vec<String> {
        self.raw.header_names()
    }

    /// Removes every header whose name starts with `prefix` (ASCII case
    /// ignored), like Kamailio's `remove_hf_re("^X-")`: a front door drops
    /// whatever `X-` headers a caller made up before it adds its own.
    ///
    /// ```no_run
    /// # use viaduct_guest_sdk::Request;
    /// fn strip(req: &Request) {
    ///     req.remove_headers_starting_with("X-");
    ///     req.set_header("X-Room-ID", "room-42"); // ours, added after
    /// }
    /// ```
    pub fn remove_headers_starting_with(&self, prefix: &str) {
        for name in self.header_names() {
            let starts = name
                .get(..prefix.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(prefix));
            if starts {
                self.remove_header(&name);
            }
        }
    }

    /// The body.
    pub fn body(&self) -> Vec<u8> {
        self.raw.body()
    }

    /// Replaces every line of a header with one `name: value` line.
    pub fn set_header(&self, name: &str, value: &str) {
        self.raw.set_header(name, value)
    }

    /// Appends a `name: value` header line.
    pub fn add_header(&self, name: &str, value: &str) {
        self.raw.add_header(name, value)
    }

    /// Removes every line of a header. Via, From, To, Call-ID, CSeq,
    /// Max-Forwards, Route, Record-Route and Content-Length are kept.
    pub fn remove_header(&self, name: &str) {
        self.raw.remove_header(name)
    }

    /// Sets the Request-URI; `Err` when `uri` is not a SIP URI.
    pub fn set_request_uri(&self, uri: &str) -> Result<(), String> {
        self.raw.set_request_uri(uri)
    }

    /// The user whose digest credentials for `realm` the host verified
    /// (right password, fresh nonce, no replay), or `None`; answer
    /// [`Decision::challenge`](crate::Decision::challenge) then. Checked once
    /// per request; the host removes the credentials before forwarding.
    pub fn authenticated_user(&self, realm: &str) -> Option<String> {
        self.raw.authenticated_user(realm)
    }
}
