//! The response context of one forwarded request (RFC 3261 §16): its
//! targets, its branches (one at a time, or all at once when forking) and
//! the best final response so far.

use super::FlowId;
use crate::dns::DnsQuery;
use crate::router::{RequestEdits, Target, Transport};
use bytes::Bytes;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

/// How the forwarded request differs from the received one, beyond the Via,
/// Record-Route and Max-Forwards every forwarded request gets.
#[derive(Debug, Default, Clone)]
pub(super) struct Plan {
    /// The Route set to write instead of the received one (None: leave the Route lines as they are).
    pub(super) routes: Option<Vec<String>>,
    /// Router edits (header adds/removes, Request-URI); its Request-URI wins over `request_uri`.
    pub(super) edits: RequestEdits,
    /// Request-URI set by Route processing (strict routers, §16.4 and §16.6 step 6).
    pub(super) request_uri: Option<String>,
    /// The caller's connection named by a flow token in our Route entry
    /// (`flow_token.rs`): in-dialog requests toward that caller go over it.
    pub(super) flow: Option<Hop>,
}

/// Where one branch goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Hop {
    pub(super) addr: SocketAddr,
    pub(super) transport: Transport,
    /// The connection to send over (a flow token's), else any to `addr`.
    pub(super) flow: Option<FlowId>,
}

/// A target not tried yet, and where it goes when that is known already
/// (the next address of a DNS answer, a flow token's connection).
#[derive(Debug, Clone)]
pub(super) struct Attempt {
    pub(super) target: Target,
    pub(super) hop: Option<Hop>,
}

impl From<Target> for Attempt {
    fn from(target: Target) -> Self {
        Attempt { target, hop: None }
    }
}

/// One attempt to reach one target (§16.6).
#[derive(Debug)]
pub(super) struct Branch {
    /// Our branch parameter.
    pub(super) id: Bytes,
    /// The request as forwarded on this branch (for CANCEL and ACK).
    pub(super) request: Bytes,
    pub(super) destination: Hop,
    /// The client transaction, while it lives.
    pub(super) client: Option<super::TxId>,
    /// A provisional response arrived: CANCEL may be sent (§9.1).
    pub(super) provisional: bool,
    /// Final status of this branch, once known.
    pub(super) status: Option<u16>,
    /// A CANCEL is owed as soon as a provisional response arrives.
    pub(super) cancel_pending: bool,
    /// A CANCEL went out.
    pub(super) cancelled: bool,
    /// Timer C, a per-target timeout, or the wait for 487 after CANCEL.
    pub(super) deadline: Option<Instant>,
}

/// The best final response so far (§16.7 step 6).
#[derive(Debug)]
pub(super) enum Best {
    /// A response received from a branch, with our Via already removed.
    Received(u16, Bytes),
    /// A response we must generate (timeout: 408; unreachable: 503).
    Local(u16),
    /// The router's own answer from `on_failure`, sent as it is.
    Reject {
        /// Status code.
        code: u16,
        /// Reason phrase.
        reason: String,
        /// Header lines (`Name: value`).
        headers: Vec<String>,
    },
}

impl Best {
    pub(super) fn status(&self) -> u16 {
        match self {
            Best::Received(c, _) | Best::Local(c) | Best::Reject { code: c, .. } => *c,
        }
    }
}

/// §16.7 step 6: a 6xx beats everything, otherwise the lowest class wins and
/// within a class the first received stays.
pub(super) fn better(new: u16, old: u16) -> bool {
    match (new / 100, old / 100) {
        (6, 6) => false,
        (6, _) => true,
        (_, 6) => false,
        (n, o) => n < o,
    }
}

#[derive(Debug)]
pub(super) struct Context {
    /// The request as received.
    pub(super) request: Bytes,
    pub(super) source: SocketAddr,
    pub(super) transport: Transport,
    /// The connection the request came on (stream transports).
    pub(super) flow: Option<FlowId>,
    pub(super) is_invite: bool,
    /// Dialog-creating request that gets Record-Route.
    pub(super) record_route: bool,
    /// Hash of the request for our branch ids.
    pub(super) hash: u64,
    /// What Route pre-processing changed (§16.4).
    pub(super) plan: Plan,
    /// The router version that decided; failover asks the same one.
    pub(super) policy_version: u64,
    /// Targets not tried yet (serial failover); the first may wait for DNS.
    /// When forking, the targets whose branches are being started.
    pub(super) targets: VecDeque<Attempt>,
    /// Parallel forking (§16.7): every target gets its branch at once, and
    /// the router's `on_failure` is asked once, when every branch failed.
    pub(super) fork: bool,
    /// Forking: targets waiting for DNS, each under its query (`dns.rs`).
    pub(super) parked: Vec<(DnsQuery, Target)>,
    pub(super) branches: Vec<Branch>,
    pub(super) best: Option<Best>,
    /// A final response went upstream (for INVITE, 2xx may still follow).
    pub(super) final_sent: bool,
    /// The caller cancelled (§16.10).
    pub(super) cancelled: bool,
}

impl Context {
    pub(super) fn pending(&self) -> bool {
        self.branches.iter().any(|b| b.status.is_none())
    }

    /// A fork still has branches running or to come: its best response waits.
    pub(super) fn fork_open(&self) -> bool {
        self.pending() || !self.parked.is_empty() || !self.targets.is_empty()
    }

    pub(super) fn record(&mut self, best: Best) {
        let replace = match &self.best {
            None => true,
            Some(old) => better(best.status(), old.status()),
        };
        if replace {
            self.best = Some(best);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::better;

    #[test]
    fn best_response_rules() {
        assert!(better(600, 486));
        assert!(!better(486, 603));
        assert!(better(302, 486));
        assert!(better(404, 503));
        assert!(!better(486, 404));
        assert!(!better(603, 600));
    }
}
