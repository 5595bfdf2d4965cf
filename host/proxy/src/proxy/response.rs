//! Responses (RFC 3261 §16.7) and the branch outcomes that produce them:
//! client transaction timeouts, Timer C (§16.8), failover, and the end of
//! a fork (first 2xx, 6xx, every branch failed).

use super::branch;
use super::context::Best;
use super::next_hop;
use super::reply::reason_phrase;
use super::target_state::Filtered;
use super::{ClientTx, DropReason, ForwardOutcome, Proxy, StatusClass, TxId};
use crate::router::{Decision, RouteRequest};
use bytes::Bytes;
use std::time::Instant;
use viaduct_sip::{build, Editor, Framing, HeaderName, Message};

impl Proxy {
    pub(super) fn handle_response(&mut self, now: Instant, msg: &Message<'_>) {
        let Some(code) = msg.status() else { return };
        if let Err(e) = msg.validate() {
            tracing::info!(error = %e, "invalid response dropped");
            self.stats.drop(DropReason::ParseError);
            return;
        }
        // §18.1.2 / §16.7 step 1: the top Via must be ours.
        let Some(branch_id) = msg
            .top_via()
            .and_then(|v| v.branch())
            .filter(|b| b.starts_with(branch::PREFIX.as_bytes()))
        else {
            tracing::debug!(code, "response not for us; dropped");
            self.stats.drop(DropReason::UnmatchedResponse);
            return;
        };
        tracing::trace!("response:\n{}", String::from_utf8_lossy(msg.bytes()));
        let is_cancel = msg.method() == Some(viaduct_sip::Method::Cancel);
        let key = (Bytes::copy_from_slice(branch_id), is_cancel);
        let Some(&client) = self.client_index.get(&key) else {
            // No transaction: a 2xx retransmission after it ended (§16.7), or the
            // answer to a CANCEL we forwarded without state (§16.11): follow the Via.
            if is_cancel || (200..300).contains(&code) {
                self.forward_response_stateless(msg);
            } else {
                self.stats.drop(DropReason::UnmatchedResponse);
            }
            return;
        };
        let Some(entry) = self.clients.get_mut(&client) else {
            return;
        };
        let (server, b) = (entry.server, entry.branch);
        let request = entry.request.clone();
        let pass_up = match &mut entry.tx {
            ClientTx::Invite(tx) => tx.handle_response(now, code, || ack_for(&request, msg)),
            ClientTx::NonInvite(tx) => tx.handle_response(now, code),
        };
        self.drain_client(now, client);
        if !pass_up || is_cancel {
            // §16.10: responses to our CANCEL stay here.
            return;
        }
        self.branch_response(now, server, b, code, msg);
    }

    /// §16.7 steps 2-10 for a response that reached the branch's context.
    fn branch_response(
        &mut self,
        now: Instant,
        server: TxId,
        b: usize,
        code: u16,
        msg: &Message<'_>,
    ) {
        let timer_c = self.config.timer_c;
        let Some(ctx) = self.servers.get_mut(&server).and_then(|e| e.ctx.as_mut()) else {
            if (200..300).contains(&code) {
                self.forward_response_stateless(msg);
            }
            return;
        };
        let Some(branch) = ctx.branches.get_mut(b) else {
            return;
        };
        if branch.status.is_some() && !(200..300).contains(&code) {
            // The branch already ended (Timer C gave up on it): late answers stay here.
            return;
        }
        if code < 200 {
            branch.provisional = true;
            if code > 100 && !branch.cancelled {
                // §16.7 step 2: a provisional response restarts Timer C.
                let at = now + timer_c;
                branch.deadline = Some(at);
                self.timers.push(at, super::TimerKey::Branch(server, b));
            }
            if branch.cancel_pending {
                self.cancel_branch(now, server, b);
            }
            // §16.7 step 5: 100 stays here; other provisionals go up unless a final went.
            if code > 100 && !ctx_final_sent(self, server) {
                let data = strip_top_via(msg);
                self.respond(now, server, code, data);
            }
            return;
        }
        let first_final = branch.status.is_none();
        branch.status = Some(code);
        branch.deadline = None;
        if first_final {
            let class = StatusClass::of(code);
            self.stats
                .forward_outcome(branch.destination.addr, ForwardOutcome::Answered(class));
        }
        if (200..300).contains(&code) {
            if !ctx.is_invite && ctx.final_sent {
                // A forked non-INVITE has one answer (the first); §16.7 step 5
                // forwards later 2xx for INVITE only.
                return self.forget_if_done(server);
            }
            if first_final && ctx.is_invite && ctx.record_route {
                // A call is up; its BYE will come back through us (we Record-Routed it).
                count!(self.stats.dialogs_established);
                self.dialogs
                    .established(now, msg.call_id().unwrap_or_default());
            }
            // §16.7 step 9: every 2xx goes up at once; no more failover.
            if !ctx.final_sent {
                ctx.final_sent = true;
                self.unanswered -= 1;
            }
            ctx.targets.clear();
            ctx.parked.clear();
            let others = if ctx.is_invite { ctx.branches.len() } else { 0 };
            if self.server_takes_2xx(server) {
                let data = strip_top_via(msg);
                self.respond(now, server, code, data);
            } else {
                // A 2xx that crossed our CANCEL after a 408/487 went up: the
                // server transaction is Completed, but §16.7 step 9 still
                // forwards every 2xx so the caller can ACK and BYE it.
                self.forward_response_stateless(msg);
            }
            // §16.7 step 10: a final response went up, so every other pending
            // INVITE branch is cancelled (one without a provisional response
            // yet once it has one, §9.1). A non-INVITE has no CANCEL: its
            // other branches run out and their answers stay here.
            for other in (0..others).filter(|&o| o != b) {
                self.cancel_branch(now, server, other);
            }
            return;
        }
        ctx.record(Best::Received(code, strip_top_via(msg)));
        if code >= 600 {
            // §16.7 step 5: a 6xx ends every other branch, and no new one starts.
            ctx.targets.clear();
            ctx.parked.clear();
            for other in 0..ctx.branches.len() {
                self.cancel_branch(now, server, other);
            }
        }
        self.after_branch_final(now, server, code);
    }

    /// A branch ended without a response (timeout 408, transport error 503).
    pub(super) fn branch_failed(&mut self, now: Instant, server: TxId, b: usize, code: u16) {
        let Some(ctx) = self.servers.get_mut(&server).and_then(|e| e.ctx.as_mut()) else {
            return;
        };
        let Some(branch) = ctx.branches.get_mut(b) else {
            return;
        };
        if branch.status.is_some() {
            return;
        }
        // RFC 5626 §5.3: the connection a flow token named is gone (the
        // phone closed its WebSocket): 430 Flow Failed, which tells whoever
        // looked the binding up that it is stale, rather than a 503 that
        // reads as this proxy being in trouble.
        let code = if code == 503 && branch.destination.flow.is_some() {
            430
        } else {
            code
        };
        branch.status = Some(code);
        let outcome = match code {
            503 | 430 => ForwardOutcome::TransportError,
            _ => ForwardOutcome::Timeout,
        };
        self.stats.forward_outcome(branch.destination.addr, outcome);
        if !branch.cancelled {
            // Later DNS answers try this address last for a while (`dns.rs`).
            self.dns.mark_down(branch.destination.addr, now);
        }
        let cancelled = branch.cancelled;
        if !cancelled {
            branch.deadline = None;
        }
        // After the caller's CANCEL, a branch that never sent 487 is reported as terminated.
        let code = if ctx.cancelled && cancelled {
            487
        } else {
            code
        };
        ctx.record(Best::Local(code));
        self.after_branch_final(now, server, code);
    }

    /// Timer C, a target's timeout, or the wait for a final answer after our CANCEL.
    pub(super) fn branch_timeout(&mut self, now: Instant, server: TxId, b: usize) {
        let Some(ctx) = self.servers.get_mut(&server).and_then(|e| e.ctx.as_mut()) else {
            return;
        };
        let Some(branch) = ctx.branches.get_mut(b) else {
            return;
        };
        match branch.deadline {
            Some(at) if at <= now => branch.deadline = None,
            _ => return,
        }
        let (provisional, cancelled, client, done) = (
            branch.provisional,
            branch.cancelled,
            branch.client,
            branch.status.is_some(),
        );
        if cancelled {
            // RFC 3261 §9.1: 64*T1 after our CANCEL with no final answer, the
            // original transaction counts as cancelled and is destroyed.
            if let Some(client) = client {
                self.drop_client(client);
            }
            if !done {
                self.branch_failed(now, server, b, 408);
            }
            return;
        }
        if done {
            return;
        }
        count!(self.stats.branch_timeouts);
        tracing::debug!(server, branch = b, "branch timer fired");
        if provisional {
            // §16.8: a ringing branch gets a CANCEL; the caller gets 408 now
            // (as Kamailio's fr_inv_timer does) and the 487 stays here.
            self.cancel_branch(now, server, b);
        } else if let Some(client) = client {
            // No provisional yet: §16.8 says behave as if it received 408, and stop it.
            self.drop_client(client);
        }
        self.branch_failed(now, server, b, 408);
    }

    /// After a branch's final non-2xx: fail over to the next target, or send the best response.
    fn after_branch_final(&mut self, now: Instant, server: TxId, code: u16) {
        let Some(ctx) = self.servers.get_mut(&server).and_then(|e| e.ctx.as_mut()) else {
            return;
        };
        if ctx.final_sent {
            // A late final (the 487 of a branch cancelled after a 2xx) stays here.
            return self.forget_if_done(server);
        }
        if ctx.cancelled {
            if !ctx.pending() {
                self.send_best(now, server);
            }
            return;
        }
        let code = if ctx.fork {
            // A fork waits for all its branches, then asks the router once
            // with the best status so far; after a 6xx it does not ask
            // (§16.7 step 5: no new branches in this context).
            if ctx.fork_open() {
                return;
            }
            match ctx.best.as_ref().map_or(code, Best::status) {
                best if best >= 600 => return self.send_best(now, server),
                best => best,
            }
        } else {
            code
        };
        // Every failed branch (every failed fork) goes to the router (like
        // Kamailio's failure_route), on the version that made the first decision.
        let request = ctx.request.clone();
        let (source, transport, version) = (ctx.source, ctx.transport, ctx.policy_version);
        let (decision, edits) = match Message::parse(&request, Framing::Datagram) {
            Ok(msg) => {
                let mut req = RouteRequest {
                    message: &msg,
                    source,
                    transport,
                    edits: Default::default(),
                    version,
                    authenticator: None,
                    auth_check: None,
                };
                let d = self.router.on_failure(&mut req, code);
                (d, req.edits)
            }
            Err(_) => (Decision::Continue, Default::default()),
        };
        let Some(ctx) = self.servers.get_mut(&server).and_then(|e| e.ctx.as_mut()) else {
            return;
        };
        // Edits made in on_failure apply to the next targets on top of the first ones.
        let plan = &mut ctx.plan.edits;
        plan.remove.extend(edits.remove);
        plan.add.extend(edits.add);
        if edits.request_uri.is_some() {
            plan.request_uri = edits.request_uri;
        }
        let fork = matches!(decision, Decision::Fork(_));
        match decision {
            // Serial failover goes on only for failures another target may not have.
            Decision::Continue | Decision::Relay if matches!(code, 408 | 503) => {}
            Decision::Continue | Decision::Relay => ctx.targets.clear(),
            Decision::Forward(t) | Decision::Fork(t) => match self.target_states.filter(t) {
                Filtered::Targets(t, skipped) => {
                    count!(self.stats.targets_skipped, skipped as u64);
                    ctx.fork = fork && t.len() > 1;
                    ctx.targets = t.into_iter().map(super::context::Attempt::from).collect();
                }
                Filtered::AllInactive => {
                    count!(self.stats.all_targets_inactive);
                    super::request::all_inactive_logged(self.stats.all_targets_inactive);
                    let (code, reason, retry) = super::request::ALL_INACTIVE;
                    // As the router's own answer would: the caller should come back later.
                    ctx.targets.clear();
                    ctx.best = Some(Best::Reject {
                        code,
                        reason: reason.into(),
                        headers: vec![retry.into()],
                    });
                }
            },
            Decision::Reject {
                code,
                reason,
                headers,
            } => {
                ctx.targets.clear();
                ctx.best = Some(Best::Reject {
                    code,
                    reason,
                    headers,
                });
            }
            Decision::Redirect(contacts) => {
                ctx.targets.clear();
                let headers = contacts.iter().map(|c| format!("Contact: <{c}>")).collect();
                ctx.best = Some(Best::Reject {
                    code: 302,
                    reason: reason_phrase(302).into(),
                    headers,
                });
            }
            Decision::Drop => ctx.targets.clear(),
            // The request was let through already; a challenge now is a policy bug.
            Decision::Challenge { .. } | Decision::Register => {
                tracing::warn!(
                    "policy answered challenge or register from on-failure; ending the failover"
                );
                ctx.targets.clear();
            }
        }
        if ctx.targets.is_empty() && !ctx.pending() {
            return self.send_best(now, server);
        }
        self.next_branch(now, server, None);
    }

    /// §16.7 step 6-7: the best final response goes up; a received or
    /// downstream 503 becomes 500; a router's own answer goes as it is.
    pub(super) fn send_best(&mut self, now: Instant, server: TxId) {
        let Some(ctx) = self.servers.get_mut(&server).and_then(|e| e.ctx.as_mut()) else {
            return;
        };
        if ctx.final_sent {
            return;
        }
        ctx.final_sent = true;
        self.unanswered -= 1;
        let best = ctx.best.take().unwrap_or(Best::Local(500));
        let request = ctx.request.clone();
        let source = ctx.source;
        let Ok(msg) = Message::parse(&request, Framing::Datagram) else {
            return;
        };
        match best {
            Best::Received(code, data) if code != 503 => self.respond(now, server, code, data),
            Best::Reject {
                code,
                reason,
                headers,
            } => {
                let code = super::reply::final_code(code);
                let extra: Vec<&str> = headers.iter().map(String::as_str).collect();
                count!(self.stats.local_failures);
                let data = self.build_response(&msg, source, code, &reason, &extra);
                self.respond(now, server, code, data);
            }
            best => {
                // §16.7 step 6: a 503 is not passed upstream; 500 instead.
                let (code, reason) = match best.status() {
                    503 => (500, "Service Unavailable Downstream"),
                    c => (c, reason_phrase(c)),
                };
                self.respond_local(now, server, &msg, source, code, reason);
            }
        }
    }

    /// Drops a response context whose final answer went up and whose last
    /// branch just ended (a fork's other branches after its 2xx): the
    /// transactions stay for retransmissions, as after `respond`.
    fn forget_if_done(&mut self, server: TxId) {
        if let Some(entry) = self.servers.get_mut(&server) {
            if entry
                .ctx
                .as_ref()
                .is_some_and(|c| c.final_sent && !c.pending())
            {
                entry.ctx = None;
            }
        }
    }

    /// A response with no transaction left: our Via comes off and it follows the next Via.
    fn forward_response_stateless(&mut self, msg: &Message<'_>) {
        let Some((_, next)) = msg.values(HeaderName::Via).nth(1) else {
            return;
        };
        let Some(via) = viaduct_sip::Via::parse(next) else {
            return;
        };
        let Some((dest, transport)) = next_hop::via_destination(&via) else {
            return;
        };
        let data = strip_top_via(msg);
        if let Some(code) = msg.status() {
            self.stats.response_sent(code);
        }
        self.send(data, dest, transport, None);
    }
}

impl Proxy {
    /// True while the INVITE server transaction still sends 2xx responses
    /// (Proceeding, or Accepted per RFC 6026).
    fn server_takes_2xx(&self, server: TxId) -> bool {
        use crate::transaction::InviteServerState;
        match self.servers.get(&server).map(|e| &e.tx) {
            Some(super::ServerTx::Invite(tx)) => {
                matches!(
                    tx.state(),
                    InviteServerState::Proceeding | InviteServerState::Accepted
                )
            }
            Some(super::ServerTx::NonInvite(_)) => true,
            None => false,
        }
    }
}

fn ctx_final_sent(proxy: &Proxy, server: TxId) -> bool {
    proxy
        .servers
        .get(&server)
        .and_then(|e| e.ctx.as_ref())
        .is_some_and(|c| c.final_sent)
}

/// §16.7 step 3: the response without our Via, everything else byte-exact.
fn strip_top_via(msg: &Message<'_>) -> Bytes {
    let mut e = Editor::new(msg.bytes());
    if let Some(r) = msg.first_value_removal(HeaderName::Via) {
        e.remove(r);
    }
    Bytes::from(e.finish(msg.len()))
}

fn ack_for(request: &[u8], resp: &Message<'_>) -> Bytes {
    let mut out = Vec::with_capacity(512);
    if let Ok(req) = Message::parse(request, Framing::Datagram) {
        build::ack_for(&req, resp, &mut out);
    }
    Bytes::from(out)
}
