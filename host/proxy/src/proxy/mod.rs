//! The stateful proxy core (RFC 3261 §16), sans-IO.
//!
//! [`Proxy`] takes received datagrams/stream messages and the time, and
//! yields [`Transmit`]s and the next instant it wants [`Proxy::handle_timeout`]
//! called. It owns the transaction tables of one worker: the runtime shards
//! messages by Call-ID so every message of a dialog reaches the same `Proxy`,
//! in order, without locks.
//!
//! One request's way (§16.3-16.6): parse and validate (400/416/420/482/483),
//! match a server transaction (retransmissions absorbed), Route
//! pre-processing (strict and loose routers), then for initial requests the
//! [`Router`] decides, and inactive (drained) next hops are taken out of its
//! `forward` lists ([`TargetStates`]); in-dialog requests (To-tag) follow
//! their Route set.
//! Forwarding edits the received bytes (Via, Record-Route, Max-Forwards,
//! Route, Request-URI; a target's own Request-URI and Route values, a
//! registered contact and Path, go on its branch only) and starts a client
//! transaction per target: one at a time for `forward` (serial failover on
//! 408/503/timeout), all at once for `fork` (parallel forking, §16.7).
//! Responses (§16.7) are matched to client transactions; provisional and
//! 2xx go upstream at once, and a 2xx cancels every other pending INVITE
//! branch (a branch without a provisional response yet is cancelled when
//! one comes, §9.1); other finals compete for the best response, which is
//! sent when no branch is pending or to come. A fork asks the router's
//! `on_failure` once, when all its branches failed; a 6xx cancels the other
//! branches and starts no new one.
//! CANCEL (§16.10) is answered 200 and propagated to pending branches.
//! Timer C (§16.8) bounds how long an INVITE branch may ring, per branch.
//!
//! State per call is bounded and short-lived. No dialog state is kept:
//! in-dialog requests are routed by the Route set this proxy's own
//! Record-Route put in the dialog, so a dialog costs nothing here (0 bytes per
//! dialog route entry). A transaction keeps the bytes it may have to
//! retransmit; the response context (received request, branches, policy
//! edits) is dropped as soon as the final answer goes out, and the
//! transactions themselves go when their RFC timers end (at most 64*T1 =
//! 32 s after the final answer, RFC 6026 Timers L/M, Timer J). Measured with
//! `examples/bench/run` (500 calls/s for 60 s, one worker): RSS rises from
//! 21 MiB idle to a plateau of about 122 MiB once the first calls' timers run
//! out (~16,000 calls in their 32 s tail: about 6 KiB per call, i.e. about
//! 1.5 KiB per transaction, four per call), and stays there (+2.4 MiB over
//! the second half of the run).
//!
//! What a message costs, and why the code is shaped this way (instruction
//! counts from `benches/calls.rs` under callgrind; the breakdown is in
//! `examples/bench/README.md`, "Where the CPU goes"):
//! - The received message is parsed once and its top Via, From, To and CSeq
//!   are kept in the [`viaduct_sip::Message`] (they are read for the
//!   transaction key, the branch hash, the loop check and the forwarded
//!   copy); the first branch is forwarded from that parse, not from a new
//!   parse of the kept bytes.
//! - Text that does not change is written once: each listener's Via prefix
//!   and Record-Route line (`Local`); numbers and addresses go through
//!   `viaduct_sip::text`, not `core::fmt`.
//! - The tables keyed by our own transaction ids hash with a multiply
//!   (`tx_map.rs`); the ones keyed by branch parameters from the wire keep
//!   the keyed SipHash.
//! - [`Proxy::pending_requests`] is a kept count, not a walk over the
//!   server transactions: the runtime asks for it every time its worker
//!   goes idle.

/// Adds to one of the proxy's counters (`count!(self.stats.branch_timeouts)`,
/// `count!(self.stats.retransmissions_sent, n)`); a no-op when the bench-only
/// `bench-no-stats` feature compiles counting out (see `stats.rs`).
macro_rules! count {
    ($counter:expr) => {
        count!($counter, 1)
    };
    ($counter:expr, $n:expr) => {
        if $crate::proxy::stats::RECORDING {
            $counter += $n;
        }
    };
}

mod branch;
mod context;
mod dialogs;
mod dns;
mod flow_token;
mod next_hop;
mod reply;
mod request;
mod response;
mod stats;
mod target_state;
mod timers;
mod tx_map;

use crate::auth::Authenticator;
use crate::router::{Router, Transport};
use crate::transaction::{
    InviteClient, InviteServer, NonInviteClient, NonInviteServer, Timers, TxEvent,
};
use bytes::Bytes;
use context::Context;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use timers::{TimerHeap, TimerKey};
use tx_map::TxMap;

pub use dialogs::{DIALOG_TTL, MAX_DIALOGS};
pub use reply::reason_phrase;
pub use stats::{
    AuthResult, DropReason, ForwardOutcome, Stats, StatusClass, TargetStats, MAX_TARGETS, METHODS,
};
pub use target_state::{TargetState, TargetStateError, TargetStates, MAX_INACTIVE_TARGETS};

/// Identifies a stream connection in the runtime, so responses and in-dialog
/// requests go back over the connection a request came in on.
pub type FlowId = u64;

/// A local address the proxy listens on and writes into Via and Record-Route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    /// Transport of this listener.
    pub transport: Transport,
    /// The address as others should reach it.
    pub addr: SocketAddr,
}

/// A listener and the header text this proxy writes for it, formatted once
/// in [`Proxy::new`] rather than for every forwarded request.
#[derive(Debug)]
struct Local {
    listener: Listener,
    /// `Via: SIP/2.0/UDP 192.0.2.1:5060;branch=`: the branch follows.
    via: Vec<u8>,
    /// `Record-Route: <sip:192.0.2.1:5060;lr>` and its CRLF (RFC 3261 §16.6 step 4).
    record_route: Vec<u8>,
}

impl Local {
    fn new(listener: Listener) -> Self {
        use viaduct_sip::text::push_socket_addr;
        let mut via = b"Via: SIP/2.0/".to_vec();
        via.extend_from_slice(listener.transport.via_token().as_bytes());
        via.push(b' ');
        push_socket_addr(&mut via, listener.addr);
        if matches!(listener.transport, Transport::Tcp | Transport::Tls) {
            // RFC 5923: the next hop may send its requests to us back over
            // the connection we opened (Kamailio's tcp_accept_aliases).
            via.extend_from_slice(b";alias");
        }
        via.extend_from_slice(b";branch=");
        let mut record_route = Vec::with_capacity(64);
        push_record_route(&mut record_route, listener, None);
        Local {
            listener,
            via,
            record_route,
        }
    }
}

/// `Record-Route: <sip:[user@]addr;lr[;transport=x]>` and its CRLF (RFC 3261
/// §16.6 step 4; `transport=tls` rather than a `sips:` URI, as Kamailio
/// writes it, so a dialog that crosses to a plain transport stays routable,
/// RFC 5630 §3.1.3).
fn push_record_route(out: &mut Vec<u8>, listener: Listener, user: Option<&str>) {
    out.extend_from_slice(b"Record-Route: ");
    push_route_value(out, listener, user, "");
    out.extend_from_slice(b"\r\n");
}

/// `<sip:[user@]IP:PORT;lr{params}[;transport=t]>`: a loose-routing URI
/// naming `listener`, as our Record-Route and Path entries write it.
fn push_route_value(out: &mut Vec<u8>, listener: Listener, user: Option<&str>, params: &str) {
    out.extend_from_slice(b"<sip:");
    if let Some(user) = user {
        out.extend_from_slice(user.as_bytes());
        out.push(b'@');
    }
    viaduct_sip::text::push_socket_addr(out, listener.addr);
    out.extend_from_slice(b";lr");
    out.extend_from_slice(params.as_bytes());
    if listener.transport != Transport::Udp {
        out.extend_from_slice(b";transport=");
        out.extend_from_slice(listener.transport.uri_param().as_bytes());
    }
    out.push(b'>');
}

/// Proxy settings (the `[proxy]` and `[timers]` config sections).
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Listening addresses; at least one.
    pub listeners: Vec<Listener>,
    /// RFC 3261 timers.
    pub timers: Timers,
    /// Timer C (§16.6 step 11): how long an INVITE branch may go without a final response; > 3 min by the RFC.
    pub timer_c: Duration,
    /// Insert Record-Route on dialog-creating requests (INVITE, SUBSCRIBE).
    pub record_route: bool,
}

/// One received message.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The bytes: one datagram, or one framed stream message.
    pub data: Bytes,
    /// Where it came from.
    pub source: SocketAddr,
    /// How it came.
    pub transport: Transport,
    /// The stream connection it came on, if any.
    pub flow: Option<FlowId>,
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The bytes.
    pub data: Bytes,
    /// The destination.
    pub destination: SocketAddr,
    /// The transport.
    pub transport: Transport,
    /// Send over this connection when it is still open (responses, RFC 3261 §18.2.2).
    pub flow: Option<FlowId>,
}

type TxId = u64;

enum ServerTx {
    Invite(InviteServer),
    NonInvite(NonInviteServer),
}

struct ServerEntry {
    key: Vec<u8>,
    tx: ServerTx,
    /// Where responses go (§18.2.2).
    reply: (SocketAddr, Transport, Option<FlowId>),
    /// The response context when the request was forwarded (§16).
    ctx: Option<Box<Context>>,
    armed: Option<Instant>,
}

enum ClientTx {
    Invite(InviteClient),
    NonInvite(NonInviteClient),
}

struct ClientEntry {
    key: (Bytes, bool),
    tx: ClientTx,
    /// The server transaction whose context owns this branch.
    server: TxId,
    /// Index of the branch in that context.
    branch: usize,
    destination: context::Hop,
    /// The request as sent (shared with the transaction): the ACK for a
    /// non-2xx is built from it, even after the response context is gone.
    request: Bytes,
    armed: Option<Instant>,
    /// After our CANCEL: when to destroy this INVITE transaction if no final
    /// answer came (RFC 3261 §9.1), even when its response context is gone.
    give_up: Option<Instant>,
}

/// One worker's proxy state. See the module docs.
pub struct Proxy {
    config: ProxyConfig,
    /// `config.listeners` with their Via and Record-Route text.
    locals: Vec<Local>,
    router: Box<dyn Router>,
    /// Entries are boxed so that growing the table moves 16-byte slots, not
    /// 480-byte entries: the table holds every transaction of the last 32 s
    /// (Timer J/K), and an unboxed resize past 200,000 entries stalled the
    /// worker for hundreds of ms (the bench's p99 grew with the rate).
    servers: TxMap<Box<ServerEntry>>,
    server_index: HashMap<Vec<u8>, TxId>,
    /// Boxed for the same reason as `servers`.
    clients: TxMap<Box<ClientEntry>>,
    /// (our branch, is CANCEL) -> client transaction.
    client_index: HashMap<(Bytes, bool), TxId>,
    timers: TimerHeap,
    /// Response contexts whose final answer has not gone upstream: what
    /// [`Proxy::pending_requests`] reports without walking every server
    /// transaction (the runtime asks each time its worker goes idle, and at
    /// 1000 calls/s the table holds ~64,000 transactions in their 32 s tail).
    unanswered: usize,
    transmits: VecDeque<Transmit>,
    next_id: TxId,
    stats: Stats,
    dialogs: dialogs::LiveDialogs,
    /// Random part of the To tags this proxy writes in its own answers.
    tag_seed: u64,
    draining: bool,
    /// Digest authentication, when configured ([`crate::auth`]).
    auth: Option<Arc<Authenticator>>,
    /// Where [`Decision::Register`] goes (the policy host's, on the shared state).
    registrar: Option<Arc<dyn crate::router::Registrar>>,
    /// Drained next hops, shared with the other workers and the admin port.
    target_states: Arc<TargetStates>,
    /// Signs the flow tokens in our Record-Route (`flow_token.rs`); the same for every worker.
    flow_key: flow_token::FlowKey,
    /// DNS answers the runtime holds, and the lookups waiting on it (`dns.rs`).
    dns: dns::Lookups,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("servers", &self.servers.len())
            .field("clients", &self.clients.len())
            .finish()
    }
}

impl Proxy {
    /// A proxy with this configuration and router.
    pub fn new(config: ProxyConfig, router: Box<dyn Router>) -> Self {
        Proxy {
            locals: config.listeners.iter().copied().map(Local::new).collect(),
            config,
            router,
            servers: TxMap::default(),
            server_index: HashMap::new(),
            clients: TxMap::default(),
            client_index: HashMap::new(),
            timers: TimerHeap::default(),
            unanswered: 0,
            transmits: VecDeque::new(),
            next_id: 1,
            stats: Stats::default(),
            dialogs: Default::default(),
            tag_seed: rand::random(),
            draining: false,
            auth: None,
            registrar: None,
            target_states: Arc::default(),
            flow_key: flow_token::FlowKey::random(),
            dns: dns::Lookups::default(),
        }
    }

    /// Sets the key that signs flow tokens: every worker of a process must
    /// share it, since any of them may see the Route a token came back in.
    pub fn set_flow_key(&mut self, key: [u8; 32]) {
        self.flow_key = flow_token::FlowKey::new(key);
    }

    /// Lets next hops be named by host (RFC 3263): `cache` answers what it
    /// holds; the rest is asked through [`Proxy::poll_dns`]. Without one,
    /// a host name is a target that fails (503 for that branch).
    pub fn set_name_cache(&mut self, cache: Arc<dyn crate::dns::NameCache>) {
        self.dns.cache = Some(cache);
    }

    /// Turns on digest authentication: policies can then answer `challenge`
    /// and read the credentials' user ([`RouteRequest::authenticate`](crate::RouteRequest::authenticate)).
    pub fn set_authenticator(&mut self, auth: Arc<Authenticator>) {
        self.auth = Some(auth);
    }

    /// The registrar that answers REGISTERs the router returns
    /// [`Decision::Register`] for.
    pub fn set_registrar(&mut self, registrar: Arc<dyn crate::router::Registrar>) {
        self.registrar = Some(registrar);
    }

    /// Replaces the router; transactions in flight keep going (their failover
    /// asks the new router).
    pub fn set_router(&mut self, router: Box<dyn Router>) {
        self.router = router;
    }

    /// Handles one received message.
    pub fn handle_incoming(&mut self, now: Instant, incoming: Incoming) {
        let framing = incoming.transport.framing();
        let data = incoming.data.clone();
        match viaduct_sip::Message::parse(&data, framing) {
            Ok(msg) if msg.is_request() => {
                self.stats
                    .request(msg.method().unwrap_or(viaduct_sip::Method::Other("")));
                self.handle_request(now, &msg, &incoming);
            }
            Ok(msg) => {
                if let Some(code) = msg.status() {
                    self.stats.response_received(code);
                }
                self.handle_response(now, &msg);
            }
            Err(e) => self.answer_unparsable(&incoming, e),
        }
    }

    /// The runtime could not send `data` (a message this proxy yielded): no
    /// connection could be opened or the one named is gone. A request's
    /// client transaction gets a transport error (RFC 3261 §17.1.1.2,
    /// §17.1.2.2), which the proxy core treats as a 503 from that branch
    /// (§16.9): failover goes on at once instead of waiting for Timer B/F.
    /// Anything else (a response, an ACK) is dropped here as on the wire.
    pub fn handle_send_failure(&mut self, now: Instant, data: &[u8]) {
        let Ok(msg) = viaduct_sip::Message::parse(data, viaduct_sip::Framing::Datagram) else {
            return;
        };
        if !msg.is_request() {
            return;
        }
        let Some(branch) = msg.top_via().and_then(|v| v.branch()) else {
            return;
        };
        let is_cancel = msg.method() == Some(viaduct_sip::Method::Cancel);
        let key = (Bytes::copy_from_slice(branch), is_cancel);
        let Some(&id) = self.client_index.get(&key) else {
            return;
        };
        if let Some(entry) = self.clients.get_mut(&id) {
            match &mut entry.tx {
                ClientTx::Invite(tx) => tx.handle_transport_error(now),
                ClientTx::NonInvite(tx) => tx.handle_transport_error(now),
            }
        }
        self.drain_client(now, id);
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.dialogs.sweep(now);
        while let Some(key) = self.timers.pop_due(now) {
            match key {
                TimerKey::Server(id) => self.server_timeout(now, id),
                TimerKey::Client(id) => self.client_timeout(now, id),
                TimerKey::Branch(id, branch) => self.branch_timeout(now, id, branch),
            }
        }
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// When [`Proxy::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Counters so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Calls up: established through us (2xx to an initial INVITE) and not
    /// yet ended by a BYE. What a drain waits for besides [`Proxy::pending_requests`].
    pub fn live_dialogs(&self) -> usize {
        self.dialogs.len()
    }

    /// Stops taking new dialogs and out-of-dialog requests (503 with
    /// Retry-After); in-dialog requests and transactions in flight go on.
    pub fn set_draining(&mut self, draining: bool) {
        self.draining = draining;
    }

    /// Shares the next hops' states (see `target_state.rs`) with whoever
    /// sets them: every worker's proxy gets the same `Arc`.
    pub fn set_target_states(&mut self, states: Arc<TargetStates>) {
        self.target_states = states;
    }

    /// Requests forwarded that have no final response yet: what a drain waits for.
    pub fn pending_requests(&self) -> usize {
        debug_assert_eq!(
            self.unanswered,
            self.servers
                .values()
                .filter(|e| e.ctx.as_ref().is_some_and(|c| !c.final_sent))
                .count(),
            "the count of unanswered requests matches the table"
        );
        self.unanswered
    }

    /// Server and client transactions alive (for drain and metrics).
    pub fn transactions(&self) -> (usize, usize) {
        (self.servers.len(), self.clients.len())
    }

    /// The response context of a server transaction, while it has one.
    fn context(&self, server: TxId) -> Option<&Context> {
        self.servers.get(&server).and_then(|e| e.ctx.as_deref())
    }

    fn context_mut(&mut self, server: TxId) -> Option<&mut Context> {
        self.servers
            .get_mut(&server)
            .and_then(|e| e.ctx.as_deref_mut())
    }

    fn alloc_id(&mut self) -> TxId {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn is_ours(&self, host: &str, port: Option<u16>) -> bool {
        let Some(ip) = viaduct_sip::uri::host_ip(host) else {
            return false;
        };
        self.config.listeners.iter().any(|l| {
            let lip = l.addr.ip();
            (lip == ip || (lip.is_unspecified() && ip.is_loopback()))
                && port.unwrap_or(5060) == l.addr.port()
        })
    }

    /// The listener to send from (and to write in Via/Record-Route) for a transport and family.
    fn listener_for(&self, transport: Transport, dest: SocketAddr) -> Option<&Local> {
        let same = |l: &&Local| l.listener.transport == transport;
        let family = |l: &&Local| l.listener.addr.is_ipv4() == dest.is_ipv4();
        self.locals
            .iter()
            .filter(same)
            .find(family)
            .or_else(|| self.locals.iter().find(same))
    }

    fn send(
        &mut self,
        data: Bytes,
        destination: SocketAddr,
        transport: Transport,
        flow: Option<FlowId>,
    ) {
        self.transmits.push_back(Transmit {
            data,
            destination,
            transport,
            flow,
        });
    }

    // ---- server transactions -------------------------------------------------

    /// Queues what a server transaction has to send; returns how many messages.
    fn flush_server(&mut self, id: TxId) -> u64 {
        let Some(entry) = self.servers.get_mut(&id) else {
            return 0;
        };
        let (dest, transport, flow) = entry.reply;
        let mut sent = 0;
        loop {
            let data = match &mut entry.tx {
                ServerTx::Invite(tx) => tx.poll_transmit(),
                ServerTx::NonInvite(tx) => tx.poll_transmit(),
            };
            let Some(data) = data else { break };
            sent += 1;
            self.transmits.push_back(Transmit {
                data,
                destination: dest,
                transport,
                flow,
            });
        }
        sent
    }

    fn drain_server(&mut self, id: TxId) {
        self.flush_server(id);
        let Some(entry) = self.servers.get_mut(&id) else {
            return;
        };
        let mut terminated = false;
        loop {
            let ev = match &mut entry.tx {
                ServerTx::Invite(tx) => tx.poll_event(),
                ServerTx::NonInvite(tx) => tx.poll_event(),
            };
            match ev {
                Some(TxEvent::Terminated) => terminated = true,
                Some(TxEvent::Timeout) => {
                    tracing::debug!(server = id, "no ACK for a final response (Timer H)");
                }
                Some(TxEvent::TransportError) | None => {}
            }
            if ev.is_none() {
                break;
            }
        }
        if terminated {
            if let Some(entry) = self.servers.remove(&id) {
                self.server_index.remove(&entry.key);
                if entry.ctx.is_some_and(|c| !c.final_sent) {
                    self.unanswered -= 1;
                }
            }
            return;
        }
        let next = match &entry.tx {
            ServerTx::Invite(tx) => tx.poll_timeout(),
            ServerTx::NonInvite(tx) => tx.poll_timeout(),
        };
        if let Some(at) = next {
            if entry.armed != Some(at) {
                entry.armed = Some(at);
                self.timers.push(at, TimerKey::Server(id));
            }
        }
    }

    fn server_timeout(&mut self, now: Instant, id: TxId) {
        let Some(entry) = self.servers.get_mut(&id) else {
            return;
        };
        entry.armed = None;
        match &mut entry.tx {
            ServerTx::Invite(tx) => tx.handle_timeout(now),
            ServerTx::NonInvite(tx) => tx.handle_timeout(now),
        }
        // What a timer makes a server transaction send is a retransmission (Timer G).
        let sent = self.flush_server(id);
        count!(self.stats.retransmissions_sent, sent);
        self.drain_server(id);
    }

    /// Sends a response through the server transaction (which keeps it for retransmission).
    fn respond(&mut self, now: Instant, id: TxId, status: u16, data: Bytes) {
        let Some(entry) = self.servers.get_mut(&id) else {
            return;
        };
        match &mut entry.tx {
            ServerTx::Invite(tx) => tx.send_response(now, status, data),
            ServerTx::NonInvite(tx) => tx.send_response(now, status, data),
        }
        self.stats.response_sent(status);
        // Once the answer is final and no branch is pending, the response
        // context (the request, its branches) has no further use: the
        // transactions live on for retransmissions (up to 64*T1) without it,
        // and late 2xx are forwarded along the Via (§16.7 step 9).
        if entry
            .ctx
            .as_ref()
            .is_some_and(|c| c.final_sent && !c.pending())
        {
            entry.ctx = None;
        }
        self.drain_server(id);
    }

    // ---- client transactions -------------------------------------------------

    /// Queues what a client transaction has to send; returns how many messages.
    fn flush_client(&mut self, id: TxId) -> u64 {
        let Some(entry) = self.clients.get_mut(&id) else {
            return 0;
        };
        let hop = entry.destination;
        let mut sent = 0;
        loop {
            let data = match &mut entry.tx {
                ClientTx::Invite(tx) => tx.poll_transmit(),
                ClientTx::NonInvite(tx) => tx.poll_transmit(),
            };
            let Some(data) = data else { break };
            sent += 1;
            self.transmits.push_back(Transmit {
                data,
                destination: hop.addr,
                transport: hop.transport,
                flow: hop.flow,
            });
        }
        sent
    }

    fn drain_client(&mut self, now: Instant, id: TxId) {
        self.flush_client(id);
        let Some(entry) = self.clients.get_mut(&id) else {
            return;
        };
        let mut failed = None;
        let mut terminated = false;
        loop {
            let ev = match &mut entry.tx {
                ClientTx::Invite(tx) => tx.poll_event(),
                ClientTx::NonInvite(tx) => tx.poll_event(),
            };
            match ev {
                Some(TxEvent::Terminated) => terminated = true,
                // §16.7: a client transaction timeout counts as a 408 from that branch;
                // a transport error as a 503 (§16.9).
                Some(TxEvent::Timeout) => failed = Some(408),
                Some(TxEvent::TransportError) => failed = Some(503),
                None => break,
            }
        }
        let next = match &entry.tx {
            ClientTx::Invite(tx) => tx.poll_timeout(),
            ClientTx::NonInvite(tx) => tx.poll_timeout(),
        };
        let (server, branch, is_cancel) = (entry.server, entry.branch, entry.key.1);
        if terminated {
            if let Some(entry) = self.clients.remove(&id) {
                self.client_index.remove(&entry.key);
            }
        } else if let Some(at) = next {
            if entry.armed != Some(at) {
                entry.armed = Some(at);
                self.timers.push(at, TimerKey::Client(id));
            }
        }
        if let (Some(code), false) = (failed, is_cancel) {
            count!(self.stats.branch_timeouts);
            self.branch_failed(now, server, branch, code);
        }
    }

    fn client_timeout(&mut self, now: Instant, id: TxId) {
        let Some(entry) = self.clients.get_mut(&id) else {
            return;
        };
        if entry.give_up.is_some_and(|at| at <= now) {
            return self.drop_client(id);
        }
        entry.armed = None;
        match &mut entry.tx {
            ClientTx::Invite(tx) => tx.handle_timeout(now),
            ClientTx::NonInvite(tx) => tx.handle_timeout(now),
        }
        // What a timer makes a client transaction send is a retransmission (Timer A/E).
        let sent = self.flush_client(id);
        count!(self.stats.retransmissions_sent, sent);
        self.drain_client(now, id);
    }

    /// Forgets a client transaction (Timer C, or no answer to our CANCEL).
    fn drop_client(&mut self, id: TxId) {
        if let Some(entry) = self.clients.remove(&id) {
            self.client_index.remove(&entry.key);
        }
    }
}

#[cfg(test)]
mod tests;
