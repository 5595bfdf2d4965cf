//! Next hops named by host (RFC 3263) in the sans-IO core.
//!
//! A target whose host is a name is looked up in the runtime's
//! [`NameCache`]. On a hit its answer (addresses in SRV priority and weight
//! order) becomes that many attempts in the target list, so serial failover
//! walks them like any other targets. On a miss the request waits: its query
//! goes out through [`Proxy::poll_dns`] (once, however many requests wait on
//! it) and [`Proxy::handle_resolved`] brings the answer back.
//!
//! An address whose branch timed out or failed to send is put last in later
//! answers for [`DOWN_FOR`] (as Kamailio's destination blacklist does), so
//! when the SRV target of priority 10 dies only the first call waits for its
//! timeout, and the next calls go straight to priority 20. This memory is
//! per worker and forgets after `DOWN_FOR`.
//!
//! A fork's targets (parallel branches) do not queue behind one another: a
//! target that waits for DNS is parked under its own query while the others'
//! branches start, and its branch goes to the first address of the answer
//! (the other addresses are not tried after it: the fork's other branches
//! are its alternatives).

use super::context::{Attempt, Hop};
use super::{Proxy, TxId};
use crate::dns::{Destination, DnsAnswer, DnsQuery, NameCache};
use crate::router::Target;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long an address that failed goes last in DNS answers.
pub(crate) const DOWN_FOR: Duration = Duration::from_secs(30);

/// Addresses remembered as down at most (a table an attacker cannot grow).
const MAX_DOWN: usize = 1024;

#[derive(Default)]
pub(super) struct Lookups {
    pub(super) cache: Option<Arc<dyn NameCache>>,
    /// Requests waiting for an answer, by query.
    waiting: HashMap<DnsQuery, Vec<TxId>>,
    /// Queries for the runtime, each once.
    wanted: VecDeque<DnsQuery>,
    /// Addresses that failed recently, and until when they go last.
    down: HashMap<SocketAddr, Instant>,
}

/// What a target's host gives.
pub(super) enum Lookup {
    /// The first hop and the others to try after it.
    Hops(Hop, Vec<Hop>),
    /// Asked DNS: come back when it answers.
    Wait,
}

impl Lookups {
    /// Remembers that a branch to `addr` failed.
    pub(super) fn mark_down(&mut self, addr: SocketAddr, now: Instant) {
        if self.down.len() >= MAX_DOWN {
            self.down.retain(|_, until| *until > now);
            if self.down.len() >= MAX_DOWN {
                return;
            }
        }
        self.down.insert(addr, now + DOWN_FOR);
    }

    /// The hops of an answer, those down last (all of them when all are down).
    pub(super) fn hops(&self, answer: &DnsAnswer, now: Instant) -> Option<(Hop, Vec<Hop>)> {
        let list = answer.as_ref().ok()?;
        let is_down = |a: &SocketAddr| self.down.get(a).is_some_and(|until| *until > now);
        let (up, down): (Vec<&Destination>, Vec<&Destination>) =
            list.iter().partition(|d| !is_down(&d.addr));
        let mut hops = up.into_iter().chain(down).map(|d| Hop {
            addr: d.addr,
            transport: d.transport,
            flow: None,
        });
        let first = hops.next()?;
        Some((first, hops.collect()))
    }

    /// Looks a query up in the cache; on a miss, asks for it and parks `server`.
    pub(super) fn lookup(
        &mut self,
        query: DnsQuery,
        server: TxId,
        now: Instant,
    ) -> Result<Lookup, String> {
        let Some(cache) = &self.cache else {
            return Err(format!("{}: no DNS resolver configured", query.host));
        };
        match cache.cached(&query) {
            Some(answer) => match self.hops(&answer, now) {
                Some((first, rest)) => Ok(Lookup::Hops(first, rest)),
                None => Err(match answer {
                    Err(e) => format!("{}: {e}", query.host),
                    Ok(_) => format!("{}: no usable address", query.host),
                }),
            },
            None => {
                self.park(query, server);
                Ok(Lookup::Wait)
            }
        }
    }

    fn park(&mut self, query: DnsQuery, server: TxId) {
        match self.waiting.get_mut(&query) {
            Some(ids) => ids.push(server),
            None => {
                self.wanted.push_back(query.clone());
                self.waiting.insert(query, vec![server]);
            }
        }
    }

    /// Asks for a query without parking anything (a stateless forward that
    /// found no answer: the next retransmission will).
    pub(super) fn want(&mut self, query: DnsQuery) {
        if !self.waiting.contains_key(&query) {
            self.wanted.push_back(query.clone());
            self.waiting.insert(query, Vec::new());
        }
    }
}

impl Proxy {
    /// The next name to resolve (RFC 3263), for the runtime. Answer it with
    /// [`Proxy::handle_resolved`], also when the lookup failed.
    pub fn poll_dns(&mut self) -> Option<DnsQuery> {
        self.dns.wanted.pop_front()
    }

    /// The answer to a query from [`Proxy::poll_dns`]: the requests that
    /// waited for it go on (or fail over, when it has no address).
    pub fn handle_resolved(&mut self, now: Instant, query: &DnsQuery, answer: DnsAnswer) {
        let Some(servers) = self.dns.waiting.remove(query) else {
            return;
        };
        if let Err(e) = &answer {
            tracing::info!(host = %query.host, error = %e, "next hop did not resolve");
        }
        let hops = self.dns.hops(&answer, now);
        for server in servers {
            let Some(ctx) = self.servers.get_mut(&server).and_then(|e| e.ctx.as_mut()) else {
                continue;
            };
            if ctx.fork {
                let first = hops.as_ref().map(|(first, _)| *first);
                self.resolved_fork(now, server, query, first);
                continue;
            }
            // The waiting target is first, unless a CANCEL cleared the list.
            if ctx.targets.front().is_some_and(|a| a.hop.is_none()) {
                let target = ctx.targets.pop_front().map(|a| a.target);
                if let (Some(target), Some((first, rest))) = (target, &hops) {
                    expand(&mut ctx.targets, &target, *first, rest);
                } else {
                    ctx.record(super::context::Best::Local(503));
                }
            }
            self.next_branch(now, server, None);
        }
    }
}

impl Proxy {
    /// The fork targets of `server` parked on `query` get their branches
    /// (to the answer's first address), or count as 503 without one.
    fn resolved_fork(&mut self, now: Instant, server: TxId, query: &DnsQuery, first: Option<Hop>) {
        let Some(ctx) = self.context_mut(server) else {
            return;
        };
        let (waited, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut ctx.parked)
            .into_iter()
            .partition(|(q, _)| q == query);
        ctx.parked = rest;
        for (_, target) in waited {
            let started = match first {
                Some(hop) => self.start_branch(now, server, &target, hop, None),
                None => Err(super::next_hop::NextHopError::Unresolved),
            };
            if let Err(e) = started {
                self.target_unusable(server, &target, e);
            }
        }
        if self.context(server).is_some_and(|c| !c.fork_open()) {
            self.send_best(now, server);
        }
    }
}

/// Puts a resolved target's hops at the front of the list, in order.
pub(super) fn expand(targets: &mut VecDeque<Attempt>, target: &Target, first: Hop, rest: &[Hop]) {
    for hop in rest.iter().rev().chain(std::iter::once(&first)) {
        targets.push_front(Attempt {
            target: target.clone(),
            hop: Some(*hop),
        });
    }
}
