//! The proxy's counters: plain `u64`s in the [`Proxy`](super::Proxy) that owns
//! them, so counting costs an add on memory only this worker touches (no
//! atomic, no lock). The runtime copies [`Stats`] out now and then and sums the
//! workers' copies when it is scraped.
//!
//! What the counting costs, measured with `host/proxy/benches/stats-overhead`
//! (the forward bench, one whole call through the core, with the counters
//! compiled in and out by the bench-only `bench-no-stats` feature,
//! alternated round by round in one run), 2026-12-02 on the shared 2-core
//! machine with other helpers compiling (load average 4.5-5.2, then 4.5-8.0):
//! medians over the rounds, counters on/off, 3 rounds: relay 134.6/139.7 µs
//! per call (0.96), a target list 123.3/138.8 µs (0.89), a target list with
//! one inactive next hop 152.5/137.4 µs (1.11); 5 rounds: 149.0/136.2 (1.09),
//! 130.4/132.7 (0.98), 146.4/129.7 (1.13); 3 more rounds at load 3.6-4.1:
//! 133.9/135.4 (0.99), 145.2/128.7 (1.13), 134.5/159.0 (0.85). The ratio
//! falls on both sides of 1 and one build's rounds spread wider (85-169 µs),
//! so the counters are below what this machine can resolve: about 20 adds
//! on memory no other thread touches per call (plus a search of at most
//! [`MAX_TARGETS`] next hops per branch), against ~130 µs of parsing,
//! transactions and copying. These runs only rule out a large cost; rerun
//! on a quiet machine for a real figure.
//!
//! Every label a counter can carry is a fixed set here ([`METHODS`],
//! [`StatusClass`], [`DropReason`], [`ForwardOutcome`]), or a capped set
//! ([`TargetStats`]), so the exported series stay bounded whatever arrives on
//! the wire or comes back from a policy.

use std::net::SocketAddr;
use viaduct_sip::Method;

/// False only with the `bench-no-stats` feature, which compiles every count
/// out so `benches/stats-overhead` can time the forward bench without them.
/// A constant: the check costs nothing in a normal build.
pub(crate) const RECORDING: bool = !cfg!(feature = "bench-no-stats");

/// Label values of requests by method: the methods counted by name, then
/// `other` for any token a caller invents (so it cannot grow the label set).
pub const METHODS: [&str; 15] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "SUBSCRIBE",
    "NOTIFY",
    "PUBLISH",
    "REFER",
    "MESSAGE",
    "INFO",
    "UPDATE",
    "PRACK",
    "other",
];

/// The index of a method in [`METHODS`]; a match, as it runs for every request.
fn method_index(m: Method<'_>) -> usize {
    use Method::*;
    match m {
        Invite => 0,
        Ack => 1,
        Bye => 2,
        Cancel => 3,
        Options => 4,
        Register => 5,
        Subscribe => 6,
        Notify => 7,
        Publish => 8,
        Refer => 9,
        Message => 10,
        Info => 11,
        Update => 12,
        Prack => 13,
        Other(_) => 14,
    }
}

/// A status code's class, `1xx` to `6xx` (RFC 3261 §21); codes outside
/// 100-699 do not parse, so there is no seventh class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusClass(u8);

impl StatusClass {
    /// The six classes, in index order.
    pub const ALL: [StatusClass; 6] = [
        StatusClass(0),
        StatusClass(1),
        StatusClass(2),
        StatusClass(3),
        StatusClass(4),
        StatusClass(5),
    ];

    /// The class of `code` (clamped to 1xx-6xx).
    pub fn of(code: u16) -> Self {
        StatusClass((code / 100).clamp(1, 6) as u8 - 1)
    }

    /// `1xx` ... `6xx`.
    pub fn as_str(self) -> &'static str {
        ["1xx", "2xx", "3xx", "4xx", "5xx", "6xx"][usize::from(self.0)]
    }

    fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// Why a received message was not processed. The label set is this enum and
/// nothing else: a new reason is a new variant (and a line in the README's
/// metrics list), never a free-form string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// It did not parse or validate (a request may still have been answered 400/505/513).
    ParseError,
    /// The owning worker's queue was full (counted by the runtime).
    QueueFull,
    /// The policy said `drop` (silence, for scanners).
    PolicyDrop,
    /// A response that matched no transaction of ours and was not a 2xx to pass on.
    UnmatchedResponse,
}

impl DropReason {
    /// Every reason, in index order.
    pub const ALL: [DropReason; 4] = [
        DropReason::ParseError,
        DropReason::QueueFull,
        DropReason::PolicyDrop,
        DropReason::UnmatchedResponse,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::ParseError => "parse_error",
            DropReason::QueueFull => "queue_full",
            DropReason::PolicyDrop => "policy_drop",
            DropReason::UnmatchedResponse => "unmatched_response",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What digest authentication decided for a request a policy asked about
/// (see [`crate::auth`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthResult {
    /// Valid credentials; the request went on.
    Ok,
    /// No credentials for the realm: answered 407.
    Challenged,
    /// Right digest, expired or foreign nonce: answered 407 `stale=true`.
    Stale,
    /// A nonce count that did not grow: answered 407 `stale=true`, not forwarded.
    Replay,
    /// Unknown user or wrong password: answered 403.
    Forbidden,
    /// Credentials that could not be checked: answered 400.
    BadRequest,
}

impl AuthResult {
    /// Every result, in index order.
    pub const ALL: [AuthResult; 6] = [
        AuthResult::Ok,
        AuthResult::Challenged,
        AuthResult::Stale,
        AuthResult::Replay,
        AuthResult::Forbidden,
        AuthResult::BadRequest,
    ];

    /// The `result` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthResult::Ok => "ok",
            AuthResult::Challenged => "challenged",
            AuthResult::Stale => "stale",
            AuthResult::Replay => "replay",
            AuthResult::Forbidden => "forbidden",
            AuthResult::BadRequest => "bad_request",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How one forwarded branch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardOutcome {
    /// A final response of this class came back (2xx-6xx).
    Answered(StatusClass),
    /// No final response in time (Timer B/F/C, RFC 3261 §16.7 step 2 / §16.8): a 408 of our own.
    Timeout,
    /// The transport failed (§16.9: a 503 of our own).
    TransportError,
}

impl ForwardOutcome {
    /// Every outcome, in index order.
    pub const ALL: [ForwardOutcome; 7] = [
        ForwardOutcome::Answered(StatusClass(1)),
        ForwardOutcome::Answered(StatusClass(2)),
        ForwardOutcome::Answered(StatusClass(3)),
        ForwardOutcome::Answered(StatusClass(4)),
        ForwardOutcome::Answered(StatusClass(5)),
        ForwardOutcome::Timeout,
        ForwardOutcome::TransportError,
    ];

    /// The `outcome` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ForwardOutcome::Answered(c) => c.as_str(),
            ForwardOutcome::Timeout => "timeout",
            ForwardOutcome::TransportError => "transport_error",
        }
    }

    fn index(self) -> usize {
        match self {
            // 1xx is never a branch's end; it shares the 2xx slot rather than panic.
            ForwardOutcome::Answered(c) => c.index().saturating_sub(1),
            ForwardOutcome::Timeout => 5,
            ForwardOutcome::TransportError => 6,
        }
    }
}

/// Next hops with their own series, per worker. Targets come from the config
/// and from policy decisions, which may name any address: past this many,
/// the rest are summed under `other`.
pub const MAX_TARGETS: usize = 32;

/// Forward outcomes per next hop (its address), capped at [`MAX_TARGETS`].
#[derive(Debug, Clone, Default)]
pub struct TargetStats {
    /// The first [`MAX_TARGETS`] next hops seen, with their counts.
    pub targets: Vec<(SocketAddr, [u64; 7])>,
    /// Every other next hop.
    pub other: [u64; 7],
}

impl TargetStats {
    fn record(&mut self, target: SocketAddr, outcome: ForwardOutcome) {
        let i = outcome.index();
        if let Some((_, counts)) = self.targets.iter_mut().find(|(a, _)| *a == target) {
            counts[i] += 1;
        } else if self.targets.len() < MAX_TARGETS {
            let mut counts = [0; 7];
            counts[i] = 1;
            self.targets.push((target, counts));
        } else {
            self.other[i] += 1;
        }
    }

    /// Adds another worker's counts (the `other` bucket absorbs what no longer fits).
    pub fn merge(&mut self, from: &TargetStats) {
        for (target, counts) in &from.targets {
            if let Some((_, mine)) = self.targets.iter_mut().find(|(a, _)| a == target) {
                add(mine, counts);
            } else if self.targets.len() < MAX_TARGETS {
                self.targets.push((*target, *counts));
            } else {
                add(&mut self.other, counts);
            }
        }
        add(&mut self.other, &from.other);
    }
}

fn add<const N: usize>(to: &mut [u64; N], from: &[u64; N]) {
    for (t, f) in to.iter_mut().zip(from) {
        *t += f;
    }
}

/// Counters the runtime exports (per worker, summed by the reader).
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Requests received (parsed), by method.
    pub requests: [u64; 15],
    /// Responses received (parsed), by status class.
    pub responses_received: [u64; 6],
    /// Responses sent (forwarded or our own, first transmissions), by status class.
    pub responses_sent: [u64; 6],
    /// Messages not processed, by [`DropReason`].
    pub dropped: [u64; DropReason::ALL.len()],
    /// Request retransmissions absorbed by a server transaction (RFC 3261 §17.2).
    pub retransmissions_received: u64,
    /// Retransmissions we sent: requests on Timer A/E, final responses on Timer G (§17).
    pub retransmissions_sent: u64,
    /// Answers the proxy generated itself with a failure (4xx-6xx).
    pub local_failures: u64,
    /// Branches that timed out (Timer B/F/C).
    pub branch_timeouts: u64,
    /// New requests refused with 503 while draining.
    pub drain_rejected: u64,
    /// Calls seen established (2xx to an initial INVITE) since start.
    pub dialogs_established: u64,
    /// Digest authentication results, by [`AuthResult`].
    pub auth: [u64; AuthResult::ALL.len()],
    /// Inactive (drained) targets taken out of forward decisions.
    pub targets_skipped: u64,
    /// Requests answered 503 because every target of the decision was inactive.
    pub all_targets_inactive: u64,
    /// Forward outcomes per next hop.
    pub targets: TargetStats,
}

impl Stats {
    /// Requests received with this method (a [`METHODS`] value).
    pub fn requests_of(&self, method: &str) -> u64 {
        METHODS
            .iter()
            .position(|m| *m == method)
            .map_or(0, |i| self.requests[i])
    }

    /// Responses received of this class.
    pub fn received_of(&self, c: StatusClass) -> u64 {
        self.responses_received[c.index()]
    }

    /// Responses sent of this class.
    pub fn sent_of(&self, c: StatusClass) -> u64 {
        self.responses_sent[c.index()]
    }

    /// Messages dropped for this reason.
    pub fn dropped_of(&self, r: DropReason) -> u64 {
        self.dropped[r.index()]
    }

    /// Authentication results of this kind.
    pub fn auth_of(&self, r: AuthResult) -> u64 {
        self.auth[r.index()]
    }

    /// Forward outcome counts indexed like [`ForwardOutcome::ALL`].
    pub fn outcome_index(o: ForwardOutcome) -> usize {
        o.index()
    }

    pub(super) fn request(&mut self, m: Method<'_>) {
        if !RECORDING {
            return;
        }
        self.requests[method_index(m)] += 1;
    }

    pub(super) fn response_received(&mut self, code: u16) {
        if !RECORDING {
            return;
        }
        self.responses_received[StatusClass::of(code).index()] += 1;
    }

    pub(super) fn response_sent(&mut self, code: u16) {
        if !RECORDING {
            return;
        }
        self.responses_sent[StatusClass::of(code).index()] += 1;
    }

    pub(super) fn drop(&mut self, r: DropReason) {
        if !RECORDING {
            return;
        }
        self.dropped[r.index()] += 1;
    }

    pub(super) fn auth(&mut self, r: AuthResult) {
        self.auth[r.index()] += 1;
    }

    pub(super) fn forward_outcome(&mut self, target: SocketAddr, o: ForwardOutcome) {
        if !RECORDING {
            return;
        }
        self.targets.record(target, o);
    }

    /// Adds another worker's counters to these.
    pub fn merge(&mut self, o: &Stats) {
        add(&mut self.requests, &o.requests);
        add(&mut self.responses_received, &o.responses_received);
        add(&mut self.responses_sent, &o.responses_sent);
        add(&mut self.dropped, &o.dropped);
        add(&mut self.auth, &o.auth);
        self.retransmissions_received += o.retransmissions_received;
        self.retransmissions_sent += o.retransmissions_sent;
        self.local_failures += o.local_failures;
        self.branch_timeouts += o.branch_timeouts;
        self.drain_rejected += o.drain_rejected;
        self.dialogs_established += o.dialogs_established;
        self.targets_skipped += o.targets_skipped;
        self.all_targets_inactive += o.all_targets_inactive;
        self.targets.merge(&o.targets);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded() {
        assert_eq!(METHODS[method_index(Method::Other("FOO"))], "other");
        for (i, name) in METHODS.iter().enumerate().take(14) {
            let m = Method::parse(name.as_bytes()).unwrap();
            assert_eq!(method_index(m), i, "{name}");
        }
        assert_eq!(StatusClass::of(183).as_str(), "1xx");
        assert_eq!(StatusClass::of(699).as_str(), "6xx");
        assert_eq!(StatusClass::of(42).as_str(), "1xx");
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        for (i, r) in AuthResult::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        for (i, o) in ForwardOutcome::ALL.iter().enumerate() {
            assert_eq!(o.index(), i, "{}", o.as_str());
        }
    }

    #[test]
    fn targets_past_the_cap_are_summed_as_other() {
        let mut s = Stats::default();
        for port in 0..(MAX_TARGETS as u16 + 10) {
            let a = SocketAddr::from(([10, 0, 0, 1], 5000 + port));
            s.forward_outcome(a, ForwardOutcome::Timeout);
        }
        assert_eq!(s.targets.targets.len(), MAX_TARGETS);
        assert_eq!(s.targets.other[5], 10);
        let mut total = Stats::default();
        total.merge(&s);
        total.merge(&s);
        assert_eq!(total.targets.targets.len(), MAX_TARGETS);
        assert_eq!(total.targets.targets[0].1[5], 2);
        assert_eq!(total.targets.other[5], 20);
    }
}
