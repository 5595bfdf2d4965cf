//! Requests (RFC 3261 §16.3-16.6, §16.10, §16.11).

use super::branch;
use super::context::{Attempt, Best, Branch, Context, Hop, Plan};
use super::dns::Lookup;
use super::next_hop::{self, NextHopError, Resolved};
use super::reply::reason_phrase;
use super::target_state::Filtered;
use super::{
    AuthResult, ClientEntry, ClientTx, DropReason, Incoming, Proxy, ServerEntry, ServerTx, TxId,
};
use crate::auth::AuthCheck;
use crate::router::{Decision, RouteRequest, Target, Transport};
use crate::transaction::{InviteClient, InviteServer, NonInviteClient, NonInviteServer};
use bytes::Bytes;
use std::time::Instant;
use viaduct_sip::text::push_decimal;
use viaduct_sip::{build, Editor, HeaderName, Message, Method, NameAddr, Scheme};

/// The Max-Forwards we add when a request has none (RFC 3261 §16.6 step 3).
const DEFAULT_MAX_FORWARDS: u8 = 70;

/// When to come back after a 503 of ours: a drain or a target's drain is
/// usually over in a rolling deploy's step (RFC 3261 §20.33).
const RETRY_AFTER: &str = "Retry-After: 30";

/// The answer when every target of a decision is inactive (see `target_state.rs`).
pub(super) const ALL_INACTIVE: (u16, &str, &str) = (503, "All Targets Inactive", RETRY_AFTER);

/// Logs the `n`th request refused because every target was inactive, at
/// 1, 2, 4, 8...: an operator sees that it happens without a line per call.
pub(super) fn all_inactive_logged(n: u64) {
    if n.is_power_of_two() {
        tracing::warn!(
            refused = n,
            "every target of a decision is inactive (drained): answered 503"
        );
    }
}

impl Proxy {
    pub(super) fn handle_request(&mut self, now: Instant, msg: &Message<'_>, inc: &Incoming) {
        let method = msg.method().unwrap_or(Method::Other(""));
        if let Err(e) = msg.validate() {
            tracing::info!(source = %inc.source, error = %e, "invalid request");
            self.stats.drop(DropReason::ParseError);
            if method != Method::Ack {
                self.respond_stateless(msg, inc, e.status(), e.reason(), &[]);
            }
            return;
        }
        tracing::trace!(source = %inc.source, "request:\n{}", String::from_utf8_lossy(msg.bytes()));

        // §17.2.3: a request matching a server transaction is a retransmission (or the ACK of a non-2xx).
        let key = server_key(msg, method);
        if let Some(&id) = self.server_index.get(&key) {
            self.retransmission(now, id, method, msg, inc);
            return;
        }
        if method == Method::Bye {
            // The call is over for the drain's count once its BYE is here; the
            // BYE's own transaction keeps the drain waiting until it is answered.
            self.dialogs.ended(msg.call_id().unwrap_or_default());
        }
        match method {
            // The ACK of a 483/404/... we answered without a transaction stays here.
            Method::Ack if self.is_ack_of_local_answer(msg) => {
                tracing::debug!(source = %inc.source, "ACK of our own answer absorbed");
                return;
            }
            // ACK for a 2xx: its own transaction end to end (§16.11 forwards it without state).
            Method::Ack => return self.forward_stateless(now, msg, inc),
            Method::Cancel => return self.cancel(now, msg, inc),
            _ => {}
        }

        // §16.3 step 2: only SIP/SIPS URIs can be routed here.
        let Some(ruri) = msg.request_uri() else {
            return;
        };
        if !matches!(ruri.scheme, Scheme::Sip | Scheme::Sips) {
            return self.respond_stateless(msg, inc, 416, reason_phrase(416), &[]);
        }
        // §16.3 step 3.
        if msg.max_forwards() == Some(0) {
            return self.respond_stateless(msg, inc, 483, reason_phrase(483), &[]);
        }
        // §16.3 step 4.
        let hash = branch::request_hash(msg);
        if branch::is_loop(msg, hash, |h, p| self.is_ours(h, p)) {
            return self.respond_stateless(msg, inc, 482, reason_phrase(482), &[]);
        }
        // §16.3 step 5: we support no extension a proxy would need to understand.
        if let Some(required) = msg.header_value(HeaderName::ProxyRequire) {
            let unsupported = format!(
                "Unsupported: {}",
                String::from_utf8_lossy(required.trim_ascii())
            );
            return self.respond_stateless(msg, inc, 420, reason_phrase(420), &[&unsupported]);
        }

        // §16.4 Route information pre-processing.
        let (mut plan, received_routes) = self.preprocess_routes(msg);

        let in_dialog = msg.to().is_some_and(|t| t.tag().is_some());
        let is_self = self.is_ours(ruri.host, ruri.port) && plan.request_uri.is_none();
        let route_left = plan
            .routes
            .as_ref()
            .map_or(received_routes > 0, |r| !r.is_empty());
        if is_self && !route_left && method == Method::Options && ruri.user.is_none() && !in_dialog
        {
            // A keep-alive probe for the proxy itself (Kamailio's `uri == myself` check).
            // Anything else addressed to us (`sip:room-42@proxy`) goes to the router;
            // relaying it would loop, so plain relaying answers 404 below.
            return self.respond_stateless(msg, inc, 200, reason_phrase(200), &[]);
        }

        if self.draining && !in_dialog {
            count!(self.stats.drain_rejected);
            return self.respond_stateless(msg, inc, 503, "Draining", &[RETRY_AFTER]);
        }
        let mut policy_version = 0;
        // A request that came back on a registered Path's flow entry was
        // routed already (by the instance that looked the contact up): it
        // only has to go over that connection.
        let via_registered_flow = plan.flow.is_some() && received_routes > 0;
        let decision = if in_dialog || via_registered_flow {
            Decision::Relay
        } else {
            let mut req = RouteRequest {
                message: msg,
                source: inc.source,
                transport: inc.transport,
                edits: Default::default(),
                version: 0,
                authenticator: self.auth.clone(),
                auth_check: None,
            };
            let d = self.router.route(&mut req);
            if let Decision::Challenge { realm } = &d {
                return self.challenge(msg, inc, &mut req, realm);
            }
            if let Some((_, check)) = &req.auth_check {
                if check.user().is_some() {
                    self.stats.auth(AuthResult::Ok);
                    // The credentials were for us (Kamailio's consume_credentials).
                    req.edits.remove.push("Proxy-Authorization".into());
                }
            }
            // After the count above: an authenticated REGISTER is an `Ok` too.
            if d == Decision::Register {
                return self.register(msg, inc, method);
            }
            plan.edits = req.edits;
            policy_version = req.version;
            d
        };
        let fork = matches!(decision, Decision::Fork(_));
        let targets: std::collections::VecDeque<Attempt> = match decision {
            Decision::Relay | Decision::Continue => match self.relay_target(msg, &mut plan) {
                Some(t) => [t].into(),
                None => return self.respond_stateless(msg, inc, 404, reason_phrase(404), &[]),
            },
            Decision::Forward(t) | Decision::Fork(t) if !t.is_empty() => {
                match self.target_states.filter(t) {
                    Filtered::Targets(t, skipped) => {
                        count!(self.stats.targets_skipped, skipped as u64);
                        t.into_iter().map(Attempt::from).collect()
                    }
                    Filtered::AllInactive => {
                        count!(self.stats.all_targets_inactive);
                        all_inactive_logged(self.stats.all_targets_inactive);
                        let (code, reason, retry) = ALL_INACTIVE;
                        return self.respond_stateless(msg, inc, code, reason, &[retry]);
                    }
                }
            }
            Decision::Forward(_) | Decision::Fork(_) => {
                return self.respond_stateless(msg, inc, 500, "No Targets", &[]);
            }
            Decision::Reject {
                code,
                reason,
                headers,
            } => {
                let code = super::reply::final_code(code);
                let extra: Vec<&str> = headers.iter().map(String::as_str).collect();
                return self.respond_stateless(msg, inc, code, &reason, &extra);
            }
            Decision::Redirect(contacts) => {
                let extra: Vec<String> =
                    contacts.iter().map(|c| format!("Contact: <{c}>")).collect();
                let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
                return self.respond_stateless(msg, inc, 302, reason_phrase(302), &extra);
            }
            Decision::Drop => {
                self.stats.drop(DropReason::PolicyDrop);
                return;
            }
            Decision::Challenge { .. } | Decision::Register => return,
        };

        // Now stateful: a server transaction absorbs retransmissions from here on.
        let reliable = inc.transport.is_reliable();
        let tx = if method == Method::Invite {
            ServerTx::Invite(InviteServer::new(now, self.config.timers, reliable))
        } else {
            ServerTx::NonInvite(NonInviteServer::new(now, self.config.timers, reliable))
        };
        let is_invite = method == Method::Invite;
        let ctx = Context {
            request: inc.data.slice(..msg.len()),
            source: inc.source,
            transport: inc.transport,
            flow: inc.flow,
            is_invite,
            record_route: self.config.record_route
                && !in_dialog
                && matches!(method, Method::Invite | Method::Subscribe),
            hash,
            plan,
            policy_version,
            // A fork of one target is a forward (with its DNS failover).
            fork: fork && targets.len() > 1,
            targets,
            parked: Vec::new(),
            branches: Vec::new(),
            best: None,
            final_sent: false,
            cancelled: false,
        };
        let id = self.start_server(msg, inc, key, tx, Some(Box::new(ctx)));
        if is_invite {
            // §16.2: 100 Trying right away stops the caller's retransmissions.
            self.respond_local(now, id, msg, inc.source, 100, reason_phrase(100));
        }
        self.next_branch(now, id, Some(msg));
    }

    /// The answer to a `challenge` decision (RFC 3261 §22.3), statelessly
    /// like any other local answer: a retransmitted request is asked again.
    fn challenge(
        &mut self,
        msg: &Message<'_>,
        inc: &Incoming,
        req: &mut RouteRequest<'_, '_>,
        realm: &str,
    ) {
        let Some(auth) = self.auth.clone() else {
            tracing::error!(
                realm,
                "the policy asked for a challenge but [auth] is not configured; answering 500"
            );
            return self.respond_stateless(msg, inc, 500, "Authentication Not Configured", &[]);
        };
        let check = req
            .authenticate(realm)
            .cloned()
            .unwrap_or(AuthCheck::Missing);
        let stale = match check {
            AuthCheck::Missing => {
                self.stats.auth(AuthResult::Challenged);
                false
            }
            AuthCheck::Stale { replay } => {
                if replay {
                    tracing::info!(source = %inc.source, realm, "digest: replayed nonce count refused");
                }
                self.stats.auth(if replay {
                    AuthResult::Replay
                } else {
                    AuthResult::Stale
                });
                true
            }
            AuthCheck::Wrong { user } => {
                // The user name helps whoever reads this at 3 a.m.; the password never reaches us.
                tracing::info!(source = %inc.source, realm, user = %user, "digest: wrong credentials; answering 403");
                self.stats.auth(AuthResult::Forbidden);
                return self.respond_stateless(msg, inc, 403, reason_phrase(403), &[]);
            }
            AuthCheck::Valid { user, .. } => {
                // Valid, yet the policy still said challenge: this user may not pass.
                tracing::info!(source = %inc.source, realm, user = %user, "digest: user refused by the policy; answering 403");
                self.stats.auth(AuthResult::Forbidden);
                return self.respond_stateless(msg, inc, 403, reason_phrase(403), &[]);
            }
            AuthCheck::Malformed(why) => {
                tracing::info!(source = %inc.source, realm, reason = why, "digest: unusable credentials; answering 400");
                self.stats.auth(AuthResult::BadRequest);
                return self.respond_stateless(msg, inc, 400, why, &[]);
            }
        };
        // A REGISTER is ours to answer as the registrar: 401 (§22.2), not 407.
        let how = crate::auth::Challenge::of(msg);
        let lines = auth.challenge_in(
            how.header,
            realm,
            stale,
            crate::auth::unix_now(),
            rand::random(),
        );
        let code = how.code;
        let extra: Vec<&str> = lines.iter().map(String::as_str).collect();
        self.respond_stateless(msg, inc, code, reason_phrase(code), &extra);
    }

    /// [`Decision::Register`]: the registrar stores the bindings and says
    /// what to answer. Answered without a transaction, as rejects are: a
    /// retransmitted REGISTER is registered again, which leaves the same
    /// bindings (same Call-ID and CSeq, §10.3 step 7).
    fn register(&mut self, msg: &Message<'_>, inc: &Incoming, method: Method) {
        let Some(registrar) = self
            .registrar
            .clone()
            .filter(|_| method == Method::Register)
        else {
            tracing::error!(
                method = method.as_str(),
                "the policy returned register for a request the registrar cannot take; answering 500"
            );
            let why = if method == Method::Register {
                "Registrar Not Configured"
            } else {
                "Register Needs REGISTER"
            };
            return self.respond_stateless(msg, inc, 500, why, &[]);
        };
        // The Path entry names the flow (token) and where the other
        // instances reach this one: our UDP listener of the family when we
        // have one (another instance opens no WebSocket to us), else the
        // listener the REGISTER came on. `vd-flow` keeps the flow's own
        // transport, which the URI's `transport` no longer says.
        let flow_route = match (inc.flow, inc.transport.is_reliable()) {
            (Some(flow), true) => self
                .listener_for(Transport::Udp, inc.source)
                .or_else(|| self.listener_for(inc.transport, inc.source))
                .map(|l| {
                    let token = self.flow_key.encode(flow, inc.source);
                    let params = format!(";ob;vd-flow={}", inc.transport.uri_param());
                    let mut v = Vec::with_capacity(112);
                    super::push_route_value(&mut v, l.listener, Some(&token), &params);
                    String::from_utf8_lossy(&v).into_owned()
                }),
            _ => None,
        };
        let answer = registrar.register(&crate::router::Registration {
            message: msg,
            source: inc.source,
            transport: inc.transport,
            flow_route,
        });
        if !(200..=699).contains(&answer.code) {
            tracing::error!(
                code = answer.code,
                "the registrar answered a non-final code; answering 500"
            );
            return self.respond_stateless(msg, inc, 500, reason_phrase(500), &[]);
        }
        let extra: Vec<&str> = answer.headers.iter().map(String::as_str).collect();
        self.respond_stateless(msg, inc, answer.code, &answer.reason, &extra);
    }

    fn retransmission(
        &mut self,
        now: Instant,
        id: TxId,
        method: Method<'_>,
        msg: &Message<'_>,
        inc: &Incoming,
    ) {
        let Some(entry) = self.servers.get_mut(&id) else {
            return;
        };
        let mut pass_ack = false;
        match (&mut entry.tx, method) {
            (ServerTx::Invite(tx), Method::Ack) => pass_ack = tx.handle_ack(now),
            (ServerTx::Invite(tx), _) => tx.handle_request_retransmit(now),
            (ServerTx::NonInvite(tx), _) => tx.handle_request_retransmit(now),
        }
        if method != Method::Ack {
            count!(self.stats.retransmissions_received);
        }
        self.drain_server(id);
        if pass_ack {
            // RFC 2543-style UA reusing the INVITE branch for the 2xx ACK.
            self.forward_stateless(now, msg, inc);
        }
    }

    /// §16.10: CANCEL answers 200 at once when it matches a response context,
    /// and is then sent to every pending branch; otherwise it is forwarded without state.
    fn cancel(&mut self, now: Instant, msg: &Message<'_>, inc: &Incoming) {
        let invite_key = server_key(msg, Method::Invite);
        let Some(&invite_id) = self.server_index.get(&invite_key) else {
            return self.forward_stateless(now, msg, inc);
        };
        let tx = ServerTx::NonInvite(NonInviteServer::new(
            now,
            self.config.timers,
            inc.transport.is_reliable(),
        ));
        let id = self.start_server(msg, inc, server_key(msg, Method::Cancel), tx, None);
        self.respond_local(now, id, msg, inc.source, 200, reason_phrase(200));

        let Some(ctx) = self
            .servers
            .get_mut(&invite_id)
            .and_then(|e| e.ctx.as_mut())
        else {
            return;
        };
        if ctx.final_sent {
            return;
        }
        ctx.cancelled = true;
        ctx.targets.clear();
        ctx.parked.clear();
        if !ctx.pending() {
            // Nothing started yet (waiting for DNS): nothing to cancel downstream.
            ctx.record(Best::Local(487));
            return self.send_best(now, invite_id);
        }
        for b in 0..ctx.branches.len() {
            self.cancel_branch(now, invite_id, b);
        }
    }

    /// Sends CANCEL on one branch if it is still pending (§9.1: only after a provisional response).
    pub(super) fn cancel_branch(&mut self, now: Instant, server: TxId, b: usize) {
        let timers = self.config.timers;
        let Some(ctx) = self.servers.get_mut(&server).and_then(|e| e.ctx.as_mut()) else {
            return;
        };
        let Some(branch) = ctx.branches.get_mut(b) else {
            return;
        };
        if branch.status.is_some() || branch.cancelled {
            return;
        }
        if !branch.provisional {
            branch.cancel_pending = true;
            return;
        }
        branch.cancelled = true;
        branch.cancel_pending = false;
        // Give the callee 64*T1 to answer 487 before giving up on the branch.
        let deadline = now + timers.timer_b;
        branch.deadline = Some(deadline);
        let Ok(fwd) = Message::parse(&branch.request, viaduct_sip::Framing::Datagram) else {
            return;
        };
        let mut out = Vec::with_capacity(512);
        build::cancel_for(&fwd, &mut out);
        let (id_bytes, destination, invite) =
            (branch.id.clone(), branch.destination, branch.client);
        self.timers
            .push(deadline, super::TimerKey::Branch(server, b));
        if let Some(entry) = invite.and_then(|c| self.clients.get_mut(&c)) {
            entry.give_up = Some(deadline);
        }
        if let Some(invite) = invite {
            self.timers.push(deadline, super::TimerKey::Client(invite));
        }
        let client = self.alloc_id();
        let cancel = Bytes::from(out);
        let tx = NonInviteClient::new(
            now,
            timers,
            cancel.clone(),
            destination.transport.is_reliable(),
        );
        let key = (id_bytes, true);
        let entry = ClientEntry {
            key,
            tx: ClientTx::NonInvite(tx),
            server,
            branch: b,
            destination,
            request: cancel,
            armed: None,
            give_up: None,
        };
        self.start_client(now, client, entry);
    }

    /// Registers a server transaction under its key; responses go where
    /// RFC 3261 §18.2.2 says for the request's top Via and source.
    fn start_server(
        &mut self,
        msg: &Message<'_>,
        inc: &Incoming,
        key: Vec<u8>,
        tx: ServerTx,
        ctx: Option<Box<Context>>,
    ) -> TxId {
        let id = self.alloc_id();
        let reply_to = msg
            .top_via()
            .map(|v| next_hop::response_destination(&v, inc.source))
            .unwrap_or(inc.source);
        if ctx.as_ref().is_some_and(|c| !c.final_sent) {
            self.unanswered += 1;
        }
        let entry = ServerEntry {
            key: key.clone(),
            tx,
            reply: (reply_to, inc.transport, inc.flow),
            ctx,
            armed: None,
        };
        self.servers.insert(id, Box::new(entry));
        self.server_index.insert(key, id);
        id
    }

    /// Registers a client transaction under its branch and sends its first message.
    fn start_client(&mut self, now: Instant, id: TxId, entry: ClientEntry) {
        self.client_index.insert(entry.key.clone(), id);
        self.clients.insert(id, Box::new(entry));
        self.drain_client(now, id);
    }

    /// RFC 3261 §16.4: when our own Record-Route URI came back as the
    /// Request-URI (the previous hop is a strict router), the real one is the
    /// last Route value; then our own entries come off the top of the Route set.
    /// Returns the plan and how many Route values the request carried.
    fn preprocess_routes(&self, msg: &Message<'_>) -> (Plan, usize) {
        let mut plan = Plan::default();
        let mut routes: Vec<NameAddr<'_>> = msg.routes().collect();
        let received = routes.len();
        if let Some(ruri) = msg.request_uri() {
            if self.is_ours(ruri.host, ruri.port) && !routes.is_empty() {
                plan.request_uri = routes.pop().map(|r| r.uri.raw.to_owned());
                plan.routes = Some(Vec::new());
            }
        }
        let ours = routes
            .iter()
            .take_while(|r| self.is_ours(r.uri.host, r.uri.port))
            .count();
        // A flow token in one of our entries names the caller's connection.
        // Its entry is the first of ours in a request from that caller (its
        // Route set is our Record-Route reversed) and the last in a request
        // toward it, which must go over that connection (`flow_token.rs`).
        // An entry with `ob` came from a registered Path (`register`): it
        // always points toward the registered UA's connection.
        plan.flow = routes[..ours].iter().enumerate().find_map(|(i, r)| {
            if i == 0 && !r.uri.params.has("ob") {
                return None;
            }
            self.flow_hop(r)
        });
        if ours > 0 || plan.routes.is_some() {
            plan.routes = Some(routes[ours..].iter().map(route_text).collect());
        }
        (plan, received)
    }

    /// The connection a flow token in one of our Route entries names, when
    /// the token is ours and unforged.
    fn flow_hop(&self, r: &NameAddr<'_>) -> Option<Hop> {
        let (flow, addr) = self.flow_key.decode(r.uri.user?)?;
        // A registered Path entry says the flow's transport in `vd-flow`
        // (its URI names the listener other instances reach); our
        // Record-Route entries in `transport`.
        let named = r.uri.params.get("vd-flow").flatten();
        let transport = Transport::from_token(named.or_else(|| r.uri.transport())?)?;
        Some(Hop {
            addr,
            transport,
            flow: Some(flow),
        })
    }

    /// A target reached through a Path whose first entry is this instance's
    /// own registered flow (`register`): the entry comes off and the branch
    /// goes over the connection, rather than to our own address and back.
    fn own_flow(&self, target: &mut Target) -> Option<Hop> {
        if !target.uri.is_empty() {
            return None;
        }
        let first = NameAddr::parse(target.route.first()?.as_bytes())?;
        if !first.uri.params.has("ob") || !self.is_ours(first.uri.host, first.uri.port) {
            return None;
        }
        let hop = self.flow_hop(&first)?;
        target.route.remove(0);
        Some(hop)
    }

    /// Where plain RFC routing sends the request: a flow token's connection,
    /// the first Route (loose or strict), else the Request-URI.
    fn relay_target(&self, msg: &Message<'_>, plan: &mut Plan) -> Option<Attempt> {
        if let Some(hop) = plan.flow {
            let uri = msg.request_uri().map(|u| u.raw).unwrap_or_default();
            return Some(Attempt {
                target: Target::new(uri),
                hop: Some(hop),
            });
        }
        self.route_target(msg, plan).map(Attempt::from)
    }

    fn route_target(&self, msg: &Message<'_>, plan: &mut Plan) -> Option<Target> {
        let received: Vec<String>;
        let routes: &[String] = match &plan.routes {
            Some(r) => r,
            None => {
                received = msg.routes().map(|r| route_text(&r)).collect();
                &received
            }
        };
        if let Some(top) = routes.first() {
            let na = NameAddr::parse(top.as_bytes())?;
            if na.uri.is_loose_route() {
                return Some(Target::new(na.uri.raw));
            }
            // §16.6 step 6: a strict router next; it gets the route as Request-URI and
            // the old Request-URI goes to the end of the Route set.
            let old = plan
                .request_uri
                .clone()
                .or_else(|| msg.request_uri().map(|u| u.raw.to_owned()))?;
            let mut rest: Vec<String> = routes[1..].to_vec();
            rest.push(format!("<{old}>"));
            let target = na.uri.raw.to_owned();
            plan.request_uri = Some(target.clone());
            plan.routes = Some(rest);
            return Some(Target::new(target));
        }
        let uri = plan
            .request_uri
            .clone()
            .or_else(|| msg.request_uri().map(|u| u.raw.to_owned()))?;
        let parsed = viaduct_sip::Uri::parse(uri.as_bytes()).ok()?;
        if self.is_ours(parsed.host, parsed.port) {
            return None;
        }
        Some(Target::new(uri))
    }

    /// Starts the next target of a context (every target left, when
    /// forking), or sends the best response when none is left.
    /// `received` is the request as parsed on arrival, when the caller has it
    /// (the context keeps the same bytes): parsing it again costs as much as
    /// everything else on a forward.
    pub(super) fn next_branch(
        &mut self,
        now: Instant,
        server: TxId,
        received: Option<&Message<'_>>,
    ) {
        loop {
            let Some(entry) = self.servers.get_mut(&server) else {
                return;
            };
            let Some(ctx) = entry.ctx.as_mut() else {
                return;
            };
            if ctx.fork {
                return self.fork_branches(now, server, received);
            }
            let Some(attempt) = ctx.targets.pop_front() else {
                if !ctx.pending() {
                    self.send_best(now, server);
                }
                return;
            };
            let mut target = attempt.target;
            let hop = match attempt.hop.or_else(|| self.own_flow(&mut target)) {
                Some(hop) => Ok(Some(hop)),
                None => self.hop_for(now, server, &target),
            };
            let started = match hop {
                Ok(Some(hop)) => self.start_branch(now, server, &target, hop, received),
                // Parked until DNS answers (`dns.rs`).
                Ok(None) => return,
                Err(e) => Err(e),
            };
            match started {
                Ok(()) => return,
                Err(e) => self.target_unusable(server, &target, e),
            }
        }
    }

    /// §16.7 parallel forking: a branch for every target at once, each with
    /// its own branch id and Timer C. A target that waits for DNS is parked
    /// under its query and gets its branch when the answer comes
    /// (`dns.rs`); the others do not wait for it. The best response goes up
    /// once no branch is pending or to come.
    fn fork_branches(&mut self, now: Instant, server: TxId, received: Option<&Message<'_>>) {
        // One at a time off the list, so a branch that fails while the
        // others start sees them still to come (`Context::fork_open`).
        while let Some(attempt) = self
            .context_mut(server)
            .and_then(|ctx| ctx.targets.pop_front())
        {
            let mut target = attempt.target;
            let hop = match attempt.hop.or_else(|| self.own_flow(&mut target)) {
                Some(hop) => Ok(Some(hop)),
                None => self.hop_for(now, server, &target),
            };
            let started = match hop {
                Ok(Some(hop)) => self.start_branch(now, server, &target, hop, received),
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            };
            if let Err(e) = started {
                self.target_unusable(server, &target, e);
            }
        }
        if self.context(server).is_some_and(|c| !c.fork_open()) {
            self.send_best(now, server);
        }
    }

    /// A target whose branch could not start counts as a 503 from it (§16.9).
    pub(super) fn target_unusable(&mut self, server: TxId, target: &Target, e: NextHopError) {
        let uri = next_hop::target_uri(target).unwrap_or_default();
        tracing::warn!(target = %uri, "target unusable: {e}");
        if let Some(ctx) = self.context_mut(server) {
            ctx.record(Best::Local(503));
        }
    }

    /// Where a target goes: its address, or the first of its DNS answer
    /// (the others are queued after it); `None` when the request now waits
    /// for DNS, with the target back at the front of its list.
    fn hop_for(
        &mut self,
        now: Instant,
        server: TxId,
        target: &Target,
    ) -> Result<Option<Hop>, NextHopError> {
        let uri = next_hop::target_uri(target)
            .and_then(|u| viaduct_sip::Uri::parse(u.as_bytes()).ok())
            .ok_or(NextHopError::Scheme)?;
        let query = match next_hop::resolve(&uri, target.transport)? {
            Resolved::Addr(addr, transport) => {
                return Ok(Some(Hop {
                    addr,
                    transport,
                    flow: None,
                }))
            }
            Resolved::Name(query) => query,
        };
        // A fork target parks under its own query; a serial one at the list's front.
        let fork_query = self
            .context(server)
            .is_some_and(|c| c.fork)
            .then(|| query.clone());
        let lookup = self.dns.lookup(query, server, now).map_err(|why| {
            tracing::info!(target = %uri.raw, "{why}");
            NextHopError::Unresolved
        })?;
        let Some(ctx) = self.context_mut(server) else {
            return Ok(None);
        };
        match (lookup, fork_query) {
            // A fork target's branch goes to the best address; the others
            // are not tried after it (failover is the other branches' job).
            (Lookup::Hops(first, _), Some(_)) => Ok(Some(first)),
            (Lookup::Hops(first, rest), None) => {
                super::dns::expand(&mut ctx.targets, target, first, &rest);
                Ok(ctx.targets.pop_front().and_then(|a| a.hop))
            }
            (Lookup::Wait, Some(query)) => {
                ctx.parked.push((query, target.clone()));
                Ok(None)
            }
            (Lookup::Wait, None) => {
                ctx.targets.push_front(Attempt::from(target.clone()));
                Ok(None)
            }
        }
    }

    pub(super) fn start_branch(
        &mut self,
        now: Instant,
        server: TxId,
        target: &Target,
        destination: Hop,
        received: Option<&Message<'_>>,
    ) -> Result<(), NextHopError> {
        let timers = self.config.timers;
        let timer_c = self.config.timer_c;
        if (target.request_uri.is_some() || !target.route.is_empty())
            && !next_hop::target_fields_valid(target)
        {
            return Err(NextHopError::Malformed);
        }
        let out = self
            .listener_for(destination.transport, destination.addr)
            .ok_or(NextHopError::Transport)?;
        let Some(entry) = self.servers.get(&server) else {
            return Ok(());
        };
        let Some(ctx) = entry.ctx.as_ref() else {
            return Ok(());
        };
        let inbound = self.listener_for(ctx.transport, ctx.source).unwrap_or(out);
        let n = ctx.branches.len();
        let mut head = Vec::with_capacity(160);
        head.extend_from_slice(&out.via);
        let id_at = head.len();
        branch::push_branch(&mut head, ctx.hash, n);
        let id = Bytes::copy_from_slice(&head[id_at..]);
        head.extend_from_slice(b"\r\n");
        if ctx.record_route {
            // RFC 5658: crossing transports or address families needs one
            // entry per side. A caller on a connection gets its own entry,
            // carrying the flow token, even on the same listener: the
            // token's place in a Route set then says which way a request goes.
            // The same goes for a callee reached over its connection (a
            // registered flow): in-dialog requests toward it find the
            // token second in their Route set (`preprocess_routes`), and its
            // Contact may well be unroutable.
            match destination
                .flow
                .filter(|_| destination.transport.is_reliable())
            {
                Some(flow) => {
                    let token = self.flow_key.encode(flow, destination.addr);
                    super::push_record_route(&mut head, out.listener, Some(&token));
                }
                None => head.extend_from_slice(&out.record_route),
            }
            let flow = ctx.flow.filter(|_| ctx.transport.is_reliable());
            match flow {
                Some(flow) => {
                    let token = self.flow_key.encode(flow, ctx.source);
                    super::push_record_route(&mut head, inbound.listener, Some(&token));
                }
                None if inbound.listener != out.listener => {
                    head.extend_from_slice(&inbound.record_route);
                }
                None => {}
            }
        }
        let forwarded = match received {
            Some(msg) => forwarded_request(msg, ctx.source, &ctx.plan, Some(target), &head),
            None => match Message::parse(&ctx.request, viaduct_sip::Framing::Datagram) {
                Ok(msg) => forwarded_request(&msg, ctx.source, &ctx.plan, Some(target), &head),
                Err(_) => return Ok(()),
            },
        };
        let is_invite = ctx.is_invite;
        let deadline = if is_invite {
            Some(now + target.timeout.unwrap_or(timer_c))
        } else {
            target.timeout.map(|t| now + t)
        };
        tracing::debug!(branch = %String::from_utf8_lossy(&id), to = %destination.addr, transport = destination.transport.via_token(), "forwarding:\n{}", String::from_utf8_lossy(&forwarded));

        let client = self.alloc_id();
        let reliable = destination.transport.is_reliable();
        let tx = if is_invite {
            ClientTx::Invite(InviteClient::new(now, timers, forwarded.clone(), reliable))
        } else {
            ClientTx::NonInvite(NonInviteClient::new(
                now,
                timers,
                forwarded.clone(),
                reliable,
            ))
        };
        let key = (id, false);
        if let Some(ctx) = self.servers.get_mut(&server).and_then(|e| e.ctx.as_mut()) {
            ctx.branches.push(Branch {
                id: key.0.clone(),
                request: forwarded.clone(),
                destination,
                client: Some(client),
                provisional: false,
                status: None,
                cancel_pending: false,
                cancelled: false,
                deadline,
            });
        }
        if let Some(at) = deadline {
            self.timers.push(at, super::TimerKey::Branch(server, n));
        }
        let entry = ClientEntry {
            key,
            tx,
            server,
            branch: n,
            destination,
            request: forwarded,
            armed: None,
            give_up: None,
        };
        self.start_client(now, client, entry);
        Ok(())
    }

    /// ACK for 2xx, and CANCEL with no response context: forwarded without a
    /// transaction, routed like any in-dialog request.
    fn forward_stateless(&mut self, now: Instant, msg: &Message<'_>, inc: &Incoming) {
        let (mut plan, _) = self.preprocess_routes(msg);
        if msg.max_forwards() == Some(0) {
            return;
        }
        let Some(attempt) = self.relay_target(msg, &mut plan) else {
            tracing::debug!(source = %inc.source, "stateless request addressed to us; dropped");
            return;
        };
        let hop = match attempt.hop {
            Some(hop) => hop,
            None => {
                let Ok(uri) = viaduct_sip::Uri::parse(attempt.target.uri.as_bytes()) else {
                    return;
                };
                match next_hop::resolve(&uri, None) {
                    Ok(Resolved::Addr(addr, transport)) => Hop {
                        addr,
                        transport,
                        flow: None,
                    },
                    Ok(Resolved::Name(query)) => {
                        let answer = self.dns.cache.as_ref().and_then(|c| c.cached(&query));
                        match answer.and_then(|a| self.dns.hops(&a, now)) {
                            Some((hop, _)) => hop,
                            None => {
                                // The sender retransmits (an ACK with each 2xx retransmission).
                                tracing::debug!(host = %query.host, "stateless forward waits for DNS");
                                self.dns.want(query);
                                return;
                            }
                        }
                    }
                    Err(_) => return,
                }
            }
        };
        let (dest, transport) = (hop.addr, hop.transport);
        let Some(out) = self.listener_for(transport, dest) else {
            return;
        };
        let mut head = Vec::with_capacity(128);
        head.extend_from_slice(&out.via);
        branch::push_branch(&mut head, branch::stateless_hash(msg), 0);
        head.extend_from_slice(b"\r\n");
        let data = forwarded_request(msg, inc.source, &plan, None, &head);
        tracing::debug!(to = %dest, "forwarding without a transaction:\n{}", String::from_utf8_lossy(&data));
        self.send(data, dest, transport, hop.flow);
    }
}

/// A Route value as written (name-addr form).
fn route_text(r: &NameAddr<'_>) -> String {
    let mut s = String::with_capacity(r.uri.raw.len() + 2 + r.params.as_bytes().len());
    s.push('<');
    s.push_str(r.uri.raw);
    s.push('>');
    s.push_str(&String::from_utf8_lossy(r.params.as_bytes()));
    s
}

/// The transaction key of a request (§17.2.3): branch, sent-by and method, with
/// ACK matching its INVITE. Pre-RFC 3261 requests (no magic cookie) fall back
/// to the RFC 2543 identifiers.
fn server_key(msg: &Message<'_>, method: Method<'_>) -> Vec<u8> {
    let method = if method == Method::Ack {
        Method::Invite
    } else {
        method
    };
    let mut key = Vec::with_capacity(96);
    let via = msg.top_via();
    match via
        .as_ref()
        .and_then(|v| v.branch())
        .filter(|b| b.starts_with(b"z9hG4bK"))
    {
        Some(branch) => {
            key.extend_from_slice(branch);
            key.push(0);
            if let Some(v) = &via {
                key.extend_from_slice(v.host.as_bytes());
                key.extend_from_slice(&v.port.unwrap_or(0).to_le_bytes());
            }
        }
        None => {
            key.extend_from_slice(b"2543\0");
            key.extend_from_slice(msg.call_id().unwrap_or_default());
            key.push(0);
            key.extend_from_slice(msg.from().and_then(|f| f.tag()).unwrap_or_default());
            key.push(0);
            key.extend_from_slice(&msg.cseq().map(|c| c.seq).unwrap_or(0).to_le_bytes());
            key.extend_from_slice(msg.request_uri().map(|u| u.raw).unwrap_or("").as_bytes());
        }
    }
    key.push(0);
    key.extend_from_slice(method.as_str().as_bytes());
    key
}

/// The received request with this hop's changes (§16.6): `head` (our Via and
/// Record-Route) first, the previous hop's Via given received/rport (§18.2.1),
/// Max-Forwards decremented or added, the Route set and Request-URI as planned,
/// router edits, Content-Length added when the datagram had none. A branch's
/// own `target` (when it has one) overrides the Request-URI and puts its Route
/// values ahead of the planned ones (§16.6 step 2, RFC 3327 §5.3).
fn forwarded_request(
    msg: &Message<'_>,
    source: std::net::SocketAddr,
    plan: &Plan,
    target: Option<&Target>,
    head: &[u8],
) -> Bytes {
    let buf = msg.bytes();
    let mut e = Editor::new(buf);
    let (target_uri, target_routes) = match target {
        Some(t) => (t.request_uri.as_deref(), t.route.as_slice()),
        None => (None, &[][..]),
    };
    if let Some(uri) = target_uri
        .or(plan.edits.request_uri.as_deref())
        .or(plan.request_uri.as_deref())
    {
        if let Some(old) = msg.request_uri() {
            let start = old.raw.as_ptr() as usize - buf.as_ptr() as usize;
            e.replace(start..start + old.raw.len(), uri.as_bytes());
        }
    }
    e.insert(msg.headers_start(), head);
    if let (Some(span), Some(via)) = (msg.first_value_span(HeaderName::Via), msg.top_via()) {
        e.replace_with(span, |o| build::write_via_received(&via, source, o));
    }
    match msg.header(HeaderName::MaxForwards) {
        Some(h) => {
            let mf = msg
                .max_forwards()
                .unwrap_or(DEFAULT_MAX_FORWARDS)
                .saturating_sub(1);
            e.replace_with(h.value_span.clone(), |o| push_decimal(o, u64::from(mf)));
        }
        None => e.insert(msg.headers_end(), b"Max-Forwards: 70\r\n"),
    }
    if plan.routes.is_some() || !target_routes.is_empty() {
        // The planned set replaces the received Route lines; without one they
        // stay, and the target's values go in one line ahead of them.
        let mut first = None;
        for h in msg.headers().iter().filter(|h| h.name == HeaderName::Route) {
            first.get_or_insert(h.line_span.start);
            if plan.routes.is_some() {
                e.remove(h.line_span.clone());
            }
        }
        let planned = plan.routes.as_deref().unwrap_or_default();
        if !planned.is_empty() || !target_routes.is_empty() {
            let at = first.unwrap_or(msg.headers_end());
            e.replace_with(at..at, |o| {
                o.extend_from_slice(b"Route: ");
                for (i, r) in target_routes.iter().chain(planned).enumerate() {
                    if i > 0 {
                        o.extend_from_slice(b", ");
                    }
                    o.extend_from_slice(r.as_bytes());
                }
                o.extend_from_slice(b"\r\n");
            });
        }
    }
    if !plan.edits.remove.is_empty() {
        for h in msg.headers() {
            if crate::router::PROTECTED_HEADERS.contains(&h.name) {
                continue;
            }
            let name = &buf[h.name_span.clone()];
            if plan.edits.remove.iter().any(|r| {
                let wanted = HeaderName::from_bytes(r.as_bytes());
                if wanted == HeaderName::Other {
                    name.eq_ignore_ascii_case(r.as_bytes())
                } else {
                    wanted == h.name
                }
            }) {
                e.remove(h.line_span.clone());
            }
        }
    }
    let end = msg.headers_end();
    for (name, value) in &plan.edits.add {
        if value.contains(['\r', '\n']) || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
        {
            tracing::warn!(header = %name, "router added an invalid header; skipped");
            continue;
        }
        e.replace_with(end..end, |o| {
            o.extend_from_slice(name.as_bytes());
            o.extend_from_slice(b": ");
            o.extend_from_slice(value.as_bytes());
            o.extend_from_slice(b"\r\n");
        });
    }
    if msg.header(HeaderName::ContentLength).is_none() {
        let len = msg.body().len();
        e.replace_with(end..end, |o| {
            o.extend_from_slice(b"Content-Length: ");
            push_decimal(o, len as u64);
            o.extend_from_slice(b"\r\n");
        });
    }
    Bytes::from(e.finish(msg.len()))
}
