//! The routing seam: what the proxy core asks about each initial request.
//!
//! The core calls [`Router::route`] once for every out-of-dialog request that
//! passed §16.3 validation, and [`Router::on_failure`] when a forwarded target
//! failed (serial failover, like Kamailio's `failure_route`), or when every
//! branch of a fork failed. In-dialog
//! requests (To-tag present) never reach the router: they follow their Route
//! set. The Wasm policy host implements this trait; [`StaticRouter`] is the
//! built-in default.

use crate::auth::{AuthCheck, Authenticator};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use viaduct_sip::{HeaderName, Message};

/// Headers a router may not add, replace or remove: the proxy core and the
/// transaction layer depend on them (RFC 3261 §16.6 edits them itself).
pub const PROTECTED_HEADERS: &[HeaderName] = &[
    HeaderName::Via,
    HeaderName::From,
    HeaderName::To,
    HeaderName::CallId,
    HeaderName::CSeq,
    HeaderName::MaxForwards,
    HeaderName::Route,
    HeaderName::RecordRoute,
    HeaderName::ContentLength,
];

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP (RFC 3261 §18).
    Udp,
    /// TCP with Content-Length framing (RFC 3261 §18.3).
    Tcp,
    /// TLS over TCP (RFC 3261 §26.2), Content-Length framing like TCP.
    Tls,
    /// SIP over WebSocket (RFC 7118): one SIP message per WebSocket message.
    Ws,
    /// SIP over secure WebSocket (RFC 7118).
    Wss,
}

impl Transport {
    /// Every transport, for tables indexed by transport.
    pub const ALL: [Transport; 5] = [
        Transport::Udp,
        Transport::Tcp,
        Transport::Tls,
        Transport::Ws,
        Transport::Wss,
    ];

    /// The Via transport token (RFC 3261 §20.42, RFC 7118 §5.2).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
        }
    }

    /// The URI `transport=` value (and the `--listen` prefix).
    pub fn uri_param(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
    }

    /// Reliable transports switch off retransmission timers (RFC 3261 §17).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// Carried over TLS (RFC 3261 §26: what a `sips:` URI asks for).
    pub fn is_secure(self) -> bool {
        matches!(self, Transport::Tls | Transport::Wss)
    }

    /// One SIP message per datagram or WebSocket message; TCP and TLS are
    /// byte streams framed by Content-Length.
    pub fn framing(self) -> viaduct_sip::Framing {
        match self {
            Transport::Udp | Transport::Ws | Transport::Wss => viaduct_sip::Framing::Datagram,
            Transport::Tcp | Transport::Tls => viaduct_sip::Framing::Stream,
        }
    }

    /// Parses a `transport=` value or Via token, case-insensitively.
    pub fn from_token(t: &[u8]) -> Option<Transport> {
        Transport::ALL
            .into_iter()
            .find(|tr| t.eq_ignore_ascii_case(tr.uri_param().as_bytes()))
    }
}

/// One place to send a request: the next hop's URI (its host, port, `transport`
/// and `maddr` decide where the packet goes; the Request-URI is left as is, like
/// Kamailio's `$du`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `sip:host[:port][;transport=tcp]`.
    pub uri: String,
    /// Overrides the URI's transport.
    pub transport: Option<Transport>,
    /// How long to wait for a final response before failing over (defaults to Timer C / Timer F).
    pub timeout: Option<Duration>,
    /// The Request-URI of this branch (a registered contact, §16.6 step 2);
    /// `None` keeps the request's (after the router's edits). It must be a
    /// `sip:`/`sips:` URI: otherwise the target is unusable (a 503 from it).
    pub request_uri: Option<String>,
    /// Route values (`<sip:host;lr>`, one per entry) this branch carries
    /// ahead of the received ones, or of the Route set left after our own
    /// entries came off (a registered Path, RFC 3327 §5.3). When `uri` is
    /// empty the branch goes where the first of them points; when that is
    /// this instance's own flow route ([`Registration::flow_route`]), it
    /// comes off and the branch goes straight over the connection. They are taken
    /// as loose routes: a first value without `;lr` is not given the
    /// strict-routing rewrite of §16.6 step 6. A value that is not a SIP
    /// name-addr makes the target unusable (a 503 from it).
    pub route: Vec<String>,
}

impl Target {
    /// A target with defaults.
    pub fn new(uri: impl Into<String>) -> Self {
        Target {
            uri: uri.into(),
            transport: None,
            timeout: None,
            request_uri: None,
            route: Vec::new(),
        }
    }
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Plain RFC 3261 routing: the Route set, else the Request-URI.
    Relay,
    /// Try these targets in order; the next is tried on 408, 503 or timeout
    /// (or when [`Router::on_failure`] says so).
    Forward(Vec<Target>),
    /// Try these targets at once (parallel forking, §16.7): one branch per
    /// target, each with its own branch id and timeout (Timer C).
    /// Provisional responses and every 2xx go upstream; the first 2xx
    /// cancels the other pending INVITE branches (a branch that has not
    /// answered yet gets its CANCEL with its first provisional response,
    /// §9.1; a non-INVITE's other branches just run out). A 6xx cancels the
    /// others and no branch starts after it. When every branch ended without
    /// a 2xx, [`Router::on_failure`] is asked once, with the best status so
    /// far (not after a 6xx), and the best final response goes upstream
    /// unless it decides otherwise. A fork of one target is a `Forward`. A
    /// target named by host waits for DNS without holding the others, and
    /// its branch goes to the first address of the answer only (no failover
    /// inside a fork target).
    Fork(Vec<Target>),
    /// Answer with this status (3xx-6xx), reason and extra header lines (`Name: value`).
    Reject {
        /// Status code.
        code: u16,
        /// Reason phrase.
        reason: String,
        /// Extra header lines, without CRLF.
        headers: Vec<String>,
    },
    /// Answer 302 with these Contact URIs.
    Redirect(Vec<String>),
    /// Send nothing back (for scanners). Never used for ACK-less INVITE answers.
    Drop,
    /// From `on_failure` only: go on with the next target of the current list,
    /// or send the best response when none is left.
    Continue,
    /// Ask for digest credentials of this realm: the proxy answers 407 with
    /// fresh nonces (or 403 / 400 / a stale 407, depending on what the request
    /// carried; see [`crate::auth`]).
    Challenge {
        /// The realm named in `Proxy-Authenticate`.
        realm: String,
    },
    /// REGISTER only: hand the request to the [`Registrar`] set with
    /// `Proxy::set_registrar` and send its answer (500 without one).
    Register,
}

/// A REGISTER the router accepted, as [`Registrar::register`] sees it.
#[derive(Debug)]
pub struct Registration<'m, 'a> {
    /// The parsed REGISTER.
    pub message: &'m Message<'a>,
    /// Where it came from.
    pub source: SocketAddr,
    /// How it came.
    pub transport: Transport,
    /// For a REGISTER that came on a connection (TCP, TLS, WS, WSS): a Route
    /// value naming this instance and that connection,
    /// `<sip:ft-…@IP:PORT;lr;ob;vd-flow=ws>`. Stored at the top of the
    /// binding's Path, it brings requests for the contact (from any
    /// instance) back here and onto the connection (RFC 5626 §5.3, the
    /// `ob` parameter marking an edge's flow). IP:PORT is this instance's
    /// UDP listener when it has one (other instances do not open WebSocket
    /// connections), and `vd-flow` keeps the connection's transport.
    pub flow_route: Option<String>,
}

/// The final answer to a REGISTER: 200 with the bindings, or a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrarAnswer {
    /// Status code.
    pub code: u16,
    /// Reason phrase.
    pub reason: String,
    /// Header lines, `Name: value`, without CRLF (`Contact`, `Min-Expires`...).
    pub headers: Vec<String>,
}

/// The registrar behind [`Decision::Register`] (RFC 3261 §10.3). The
/// policy host implements it on the shared state, so bindings stored by
/// one instance are found by all.
pub trait Registrar: Send + Sync {
    /// Stores the bindings of one REGISTER and says what to answer.
    fn register(&self, registration: &Registration<'_, '_>) -> RegistrarAnswer;
}

/// Edits the router asks for on the forwarded request; applied to the bytes
/// when the request is forwarded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestEdits {
    /// New Request-URI.
    pub request_uri: Option<String>,
    /// Header names to remove (case-insensitive; every line of that name).
    pub remove: Vec<String>,
    /// Header lines to append, as `(name, value)`.
    pub add: Vec<(String, String)>,
}

/// An initial request as the router sees it.
#[derive(Debug)]
pub struct RouteRequest<'m, 'a> {
    /// The parsed request.
    pub message: &'m Message<'a>,
    /// Where it came from.
    pub source: SocketAddr,
    /// How it came.
    pub transport: Transport,
    /// Edits to apply when forwarding.
    pub edits: RequestEdits,
    /// Which version of the router decided: set by [`Router::route`], kept with
    /// the transaction, and given back to [`Router::on_failure`] so failover
    /// runs on the version that made the decision (a hot-swapped policy
    /// serves new requests only).
    pub version: u64,
    /// The proxy's digest authenticator, when `[auth]` is configured.
    pub authenticator: Option<Arc<Authenticator>>,
    /// The outcome of checking this request's credentials, and the realm it
    /// was checked for, once a router asked ([`RouteRequest::authenticate`]).
    /// Checking records the nonce count, so it happens at most once.
    pub auth_check: Option<(String, AuthCheck)>,
}

impl<'m, 'a> RouteRequest<'m, 'a> {
    /// A request with no edits, version 0 and no authenticator.
    pub fn new(message: &'m Message<'a>, source: SocketAddr, transport: Transport) -> Self {
        RouteRequest {
            message,
            source,
            transport,
            edits: RequestEdits::default(),
            version: 0,
            authenticator: None,
            auth_check: None,
        }
    }

    /// Checks the request's digest credentials for `realm` (at most once per
    /// request and realm). `None` when the proxy has no authenticator.
    pub fn authenticate(&mut self, realm: &str) -> Option<&AuthCheck> {
        let auth = self.authenticator.as_ref()?;
        Some(auth.check_once(self.message, realm, &mut self.auth_check))
    }
}

/// Decides where initial requests go. Implementations must not block for long:
/// they run on a proxy worker.
pub trait Router: Send {
    /// Called once per initial request.
    fn route(&mut self, req: &mut RouteRequest<'_, '_>) -> Decision;

    /// Called when a forwarded target failed with `status` (408 on timeout),
    /// or, for a [`Decision::Fork`], once when all its branches failed, with
    /// the best of their statuses. The default goes on with the next target.
    /// A `forward` or `fork` answer starts those targets (serially or in
    /// parallel) in the same response context.
    fn on_failure(&mut self, _req: &mut RouteRequest<'_, '_>, _status: u16) -> Decision {
        Decision::Continue
    }
}

/// The built-in router: a fixed target list (serial failover), or plain
/// relaying when the list is empty.
#[derive(Debug, Clone, Default)]
pub struct StaticRouter {
    targets: Vec<Target>,
}

impl StaticRouter {
    /// A router forwarding to `targets` in order; empty means relay.
    pub fn new(targets: Vec<Target>) -> Self {
        StaticRouter { targets }
    }
}

impl Router for StaticRouter {
    fn route(&mut self, _req: &mut RouteRequest<'_, '_>) -> Decision {
        if self.targets.is_empty() {
            Decision::Relay
        } else {
            Decision::Forward(self.targets.clone())
        }
    }
}
