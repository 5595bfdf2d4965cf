//! What a policy answers: forward, fork, reject, redirect, relay, drop,
//! next, challenge, register.

use crate::request::Transport;
use crate::wit::viaduct::policy::types as raw;

/// One next hop of a [`Decision::forward_targets`].
///
/// ```
/// use viaduct_guest_sdk::{Decision, Target, Transport};
///
/// let d = Decision::forward_targets([
///     Target::new("sip:10.0.0.1:5070").timeout_ms(2000),
///     Target::new("sip:10.0.0.2:5070").transport(Transport::Tcp),
/// ]);
/// # let _ = d;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    uri: String,
    transport: Option<Transport>,
    timeout_ms: Option<u32>,
    request_uri: Option<String>,
    route: Vec<String>,
}

impl Target {
    /// A target at this SIP URI (`sip:10.0.0.5:5070`). The Request-URI is not
    /// changed by a target (like Kamailio's `$du`).
    pub fn new(uri: impl Into<String>) -> Self {
        Target {
            uri: uri.into(),
            transport: None,
            timeout_ms: None,
            request_uri: None,
            route: Vec::new(),
        }
    }

    /// The Request-URI this branch carries (a contact from
    /// [`registrar::lookup`](crate::registrar::lookup) has it set already);
    /// by default the request's own.
    pub fn request_uri(mut self, uri: impl Into<String>) -> Self {
        self.request_uri = Some(uri.into());
        self
    }

    /// Adds a Route value (`<sip:10.0.0.7;lr>`) this branch carries ahead of
    /// the received ones. With an empty target URI the branch goes where the
    /// first Route points.
    pub fn route(mut self, value: impl Into<String>) -> Self {
        self.route.push(value.into());
        self
    }

    /// The Request-URI of this branch, if set.
    pub fn branch_request_uri(&self) -> Option<&str> {
        self.request_uri.as_deref()
    }

    /// The Route values of this branch.
    pub fn routes(&self) -> &[String] {
        &self.route
    }

    pub(crate) fn from_raw(t: raw::Target) -> Self {
        Target {
            uri: t.uri,
            transport: t.transport.map(Transport::from_raw),
            timeout_ms: t.timeout_ms,
            request_uri: t.request_uri,
            route: t.route,
        }
    }

    /// Overrides the URI's `transport` parameter.
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = Some(transport);
        self
    }

    /// How long to wait for a final response before trying the next target
    /// (default: Timer C for INVITE, Timer F otherwise).
    pub fn timeout_ms(mut self, ms: u32) -> Self {
        self.timeout_ms = Some(ms);
        self
    }

    /// The URI.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    fn into_raw(self) -> raw::Target {
        raw::Target {
            uri: self.uri,
            transport: self.transport.map(Transport::into_raw),
            timeout_ms: self.timeout_ms,
            request_uri: self.request_uri,
            route: self.route,
        }
    }
}

/// What to do with a request.
///
/// ```
/// use viaduct_guest_sdk::Decision;
///
/// let busy = Decision::reject(503, "Service Unavailable").with_header("Retry-After", "30");
/// assert!(busy.is_reject());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision(Kind);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Forward(Vec<Target>),
    Fork(Vec<Target>),
    Reject {
        code: u16,
        reason: String,
        headers: Vec<(String, String)>,
    },
    Redirect(Vec<String>),
    Relay,
    Drop,
    Next,
    Challenge(String),
    Register,
}

impl Decision {
    /// Tries these URIs in order; the next one is tried when one fails with
    /// 408, 503 or a timeout and [`Policy::on_failure`](crate::Policy::on_failure)
    /// says [`Decision::next`].
    ///
    /// ```
    /// # use viaduct_guest_sdk::Decision;
    /// let d = Decision::forward(["sip:10.0.0.1:5070", "sip:10.0.0.2:5070"]);
    /// # let _ = d;
    /// ```
    pub fn forward<I>(uris: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Decision(Kind::Forward(
            uris.into_iter().map(|u| Target::new(u.as_ref())).collect(),
        ))
    }

    /// Tries these targets in order, each with its own transport and timeout.
    pub fn forward_targets(targets: impl IntoIterator<Item = Target>) -> Self {
        Decision(Kind::Forward(targets.into_iter().collect()))
    }

    /// Tries these targets at once (parallel forking, RFC 3261 §16.7): the
    /// first 2xx goes back to the caller and the other branches are
    /// cancelled; when every branch fails, the best final response does.
    ///
    /// ```no_run
    /// use viaduct_guest_sdk::{registrar, Decision};
    ///
    /// // Ring every phone of the user at once.
    /// let d = match registrar::lookup("sip:bob@example.com") {
    ///     Ok(contacts) if !contacts.is_empty() => Decision::fork(contacts),
    ///     Ok(_) => Decision::reject(480, "Temporarily Unavailable"),
    ///     Err(_) => Decision::reject(503, "Service Unavailable"),
    /// };
    /// # let _ = d;
    /// ```
    pub fn fork(targets: impl IntoIterator<Item = Target>) -> Self {
        Decision(Kind::Fork(targets.into_iter().collect()))
    }

    /// REGISTER only: the host acts as the registrar (RFC 3261 §10.3),
    /// stores the Contact bindings of the To AOR in the shared state and
    /// answers 200 with the current bindings. Authenticate first with
    /// [`Decision::challenge`] (a REGISTER is challenged with 401).
    pub fn register() -> Self {
        Decision(Kind::Register)
    }

    /// Whether this is a register.
    pub fn is_register(&self) -> bool {
        matches!(self.0, Kind::Register)
    }

    /// Answers with this status (3xx-6xx; anything else becomes 500) and
    /// reason phrase. Add header fields with [`Decision::with_header`].
    pub fn reject(code: u16, reason: impl Into<String>) -> Self {
        Decision(Kind::Reject {
            code,
            reason: reason.into(),
            headers: Vec::new(),
        })
    }

    /// Answers 302 Moved Temporarily with these Contact URIs.
    pub fn redirect<I>(contacts: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        Decision(Kind::Redirect(
            contacts.into_iter().map(Into::into).collect(),
        ))
    }

    /// Plain RFC 3261 routing: the Route set, else the Request-URI.
    pub fn relay() -> Self {
        Decision(Kind::Relay)
    }

    /// Sends nothing back: for scanners and floods.
    pub fn drop() -> Self {
        Decision(Kind::Drop)
    }

    /// From `on_failure`: go on with the next target of the forward list, or
    /// answer with the best response received when none is left. From
    /// `on_request` the host treats it as an error (500).
    pub fn next() -> Self {
        Decision(Kind::Next)
    }

    /// Asks for digest credentials of `realm` (RFC 3261 §22.3): the host
    /// answers 407 with SHA-256 and MD5 challenges, or 403 when the request
    /// carried a wrong password. Pair it with
    /// [`Request::authenticated_user`](crate::Request::authenticated_user):
    ///
    /// ```
    /// # use viaduct_guest_sdk::Decision;
    /// fn route(user: Option<String>) -> Decision {
    ///     match user {
    ///         Some(_) => Decision::relay(),
    ///         None => Decision::challenge("voice.example.com"),
    ///     }
    /// }
    /// assert!(route(None).is_challenge());
    /// ```
    ///
    /// The host needs `[auth]` in its config (credentials), else it answers 500.
    pub fn challenge(realm: impl Into<String>) -> Self {
        Decision(Kind::Challenge(realm.into()))
    }

    /// Whether this is a challenge.
    pub fn is_challenge(&self) -> bool {
        matches!(self.0, Kind::Challenge(_))
    }

    /// Adds a header field to a [`Decision::reject`] answer (`Retry-After`,
    /// `Warning`...). Other decisions carry no headers: it does nothing there.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        if let Kind::Reject { headers, .. } = &mut self.0 {
            headers.push((name.into(), value.into()));
        }
        self
    }

    /// The targets, if this is a forward or a fork.
    pub fn targets(&self) -> Option<&[Target]> {
        match &self.0 {
            Kind::Forward(t) | Kind::Fork(t) => Some(t),
            _ => None,
        }
    }

    /// Whether this is a fork.
    pub fn is_fork(&self) -> bool {
        matches!(self.0, Kind::Fork(_))
    }

    /// The status code, if this is a reject.
    pub fn reject_code(&self) -> Option<u16> {
        match &self.0 {
            Kind::Reject { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The value of a header added with [`Decision::with_header`], if this is
    /// a reject that has it.
    pub fn reject_header(&self, name: &str) -> Option<&str> {
        match &self.0 {
            Kind::Reject { headers, .. } => headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str()),
            _ => None,
        }
    }

    /// Whether this is a reject.
    pub fn is_reject(&self) -> bool {
        matches!(self.0, Kind::Reject { .. })
    }

    /// Whether this is a relay.
    pub fn is_relay(&self) -> bool {
        matches!(self.0, Kind::Relay)
    }

    /// Whether this is a next (continue).
    pub fn is_next(&self) -> bool {
        matches!(self.0, Kind::Next)
    }

    #[doc(hidden)]
    pub fn __into_raw(self) -> raw::Decision {
        match self.0 {
            Kind::Forward(t) => {
                raw::Decision::Forward(t.into_iter().map(Target::into_raw).collect())
            }
            Kind::Fork(t) => raw::Decision::Fork(t.into_iter().map(Target::into_raw).collect()),
            Kind::Reject {
                code,
                reason,
                headers,
            } => raw::Decision::Reject(raw::Rejection {
                code,
                reason,
                headers,
            }),
            Kind::Redirect(c) => raw::Decision::Redirect(c),
            Kind::Relay => raw::Decision::Relay,
            Kind::Drop => raw::Decision::Drop,
            Kind::Next => raw::Decision::Continue,
            Kind::Challenge(realm) => raw::Decision::Challenge(realm),
            Kind::Register => raw::Decision::Register,
        }
    }
}
