//! What the proxy core asks DNS (RFC 3263), sans-IO.
//!
//! A next hop named by a host name cannot be resolved inside the core (no I/O
//! here). The core asks a [`NameCache`] for an answer it already has; on a
//! miss it parks the request and hands the [`DnsQuery`] to the runtime
//! (`Proxy::poll_dns`), which resolves it (NAPTR, SRV, AAAA/A) and feeds the
//! answer back (`Proxy::handle_resolved`). The answer is an ordered list of
//! [`Destination`]s that serial failover walks like any other target list.

use crate::router::Transport;
use std::net::SocketAddr;
use std::sync::Arc;

/// A next hop named by host (RFC 3263 §4): what to look up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DnsQuery {
    /// The host (or `maddr`), lowercased, no trailing dot.
    pub host: String,
    /// A port in the URI: no NAPTR or SRV, only AAAA/A (§4.2).
    pub port: Option<u16>,
    /// A `transport=` parameter or the policy's override: no NAPTR (§4.1).
    pub transport: Option<Transport>,
    /// A `sips:` URI: only TLS-carried transports qualify (§4.1).
    pub secure: bool,
}

/// One resolved next hop, in the order to try it (SRV priority, then weight).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Destination {
    /// Where to send.
    pub addr: SocketAddr,
    /// How.
    pub transport: Transport,
}

/// Why a name gave no destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsError {
    /// The name (and every record type tried) does not exist.
    NotFound,
    /// The servers failed or timed out; the message says how.
    Failed(Arc<str>),
}

impl std::fmt::Display for DnsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DnsError::NotFound => f.write_str("no such name"),
            DnsError::Failed(why) => write!(f, "lookup failed: {why}"),
        }
    }
}

/// A DNS answer: destinations in order, or why there are none.
pub type DnsAnswer = Result<Arc<[Destination]>, DnsError>;

/// The answers the runtime already has, read synchronously on the forwarding
/// path (a cache hit costs no round trip through the runtime).
pub trait NameCache: Send + Sync {
    /// The cached answer for `query`, if one is still within its TTL.
    fn cached(&self, query: &DnsQuery) -> Option<DnsAnswer>;
}
