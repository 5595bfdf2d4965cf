//! Sans-IO SIP transaction layer (RFC 3261 §17) and stateful proxy core (§16).
//!
//! Nothing here opens a socket or reads the clock: callers feed received
//! bytes and `now`, then poll what to send and when to call back (the shape
//! of quinn-proto). The runtime in `host/viaduct` is the thin async shell.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

#[doc(hidden)]
pub mod auth;
pub mod dns;
pub mod fuzz;
pub mod proxy;
pub mod router;
pub mod transaction;

pub use proxy::{
    AuthResult, DropReason, FlowId, ForwardOutcome, Incoming, Listener, Proxy, ProxyConfig, Stats,
    StatusClass, TargetState, TargetStateError, TargetStates, Transmit, MAX_INACTIVE_TARGETS,
    METHODS,
};
pub use router::{
    Decision, Registrar, RegistrarAnswer, Registration, RequestEdits, RouteRequest, Router,
    StaticRouter, Target, Transport, PROTECTED_HEADERS,
};
