//! The flood guard: the first look at every datagram and stream message,
//! before parsing and before the policy. It drops (never answers) messages
//! from a source over its rate, messages too big, and messages with too many
//! header lines, and counts every drop by [`DropReason`].
//!
//! Sans-IO like the protocol crates: [`FloodGuard::admit`] takes the time
//! and the bytes and returns a [`Verdict`]; no clock, no socket inside.
//!
//! # Sampling (what Kamailio's pike does, and what we chose)
//! pike counts requests per source IP in fixed slots of
//! `sampling_time_unit` (2 s) and calls a source hot when the current or the
//! previous slot reached `reqs_density_per_unit` (30); a hot source stays
//! blocked while it keeps that rate, and is forgotten `remove_latency` after
//! its last message. 30 requests per 2 s is 15/s: a trunk placing a few
//! calls a second from one IP trips it, which is why carriers get blocked.
//!
//! Here requests count (as with pike: a status line is told from a request
//! line by its first four bytes, no parsing), in fixed windows of
//! `limits.window_ms` (2 s) per source. Responses do not: a next hop that
//! answers every call from one address (a media bridge, a B2BUA, SIPp's uas
//! beside its uac) sends more of them than any caller, and one the core did
//! not ask for is dropped by transaction matching. A source that sends
//! `limits.max_messages` (10 000) requests in one window is banned for
//! `limits.ban_ms` (60 s); a ban is extended while the source keeps its rate
//! up through a whole window. 10 000 per 2 s is 5 000 requests/s: a call
//! costs a trunk 3 requests (INVITE, ACK, BYE), so the default allows about
//! 1 600 calls/s from one IP. Trusted
//! trunks belong in `limits.allow` anyway, which exempts them from the rate
//! (not from the size and header limits, which no good peer reaches).
//!
//! Each worker owns a guard for the datagrams its socket reads. SO_REUSEPORT
//! spreads datagrams by 4-tuple, so one source port always reaches one
//! worker, and a source spraying from many ports is split over the workers:
//! the rate applies per worker, at most `workers` times the limit in total.
//!
//! # Bounds and failing open
//! At most `limits.max_sources` sources are tracked (65 536 by default,
//! about 80 bytes each). A sweep once per window forgets sources idle for a
//! window and not banned. When the table is full even after a sweep, a new
//! source is admitted untracked and counted in
//! [`FloodSnapshot::untracked`]: a scanner spraying from many addresses cannot
//! grow the table or lock out sources it did not reach. A clock that goes
//! backwards restarts nothing and bans no one (saturating arithmetic).
//!
//! # Logging
//! A ban is logged at warn with the source, its rate and the knobs to change
//! (`limits.max_messages`, `limits.allow`); size and header drops at info,
//! once per source per `limits.log_interval_ms`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why the guard dropped a message: the `drop_reason` label of the drop counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The source is banned: it reached `limits.max_messages` in one window.
    FloodBanned,
    /// Larger than `limits.max_message_bytes`.
    TooBig,
    /// More than `limits.max_headers` header lines.
    TooManyHeaders,
}

impl DropReason {
    /// Every reason, in a fixed order (the index of [`FloodSnapshot::drops`]).
    pub const ALL: [DropReason; 3] = [
        DropReason::FloodBanned,
        DropReason::TooBig,
        DropReason::TooManyHeaders,
    ];

    /// The label value: `flood_banned`, `too_big`, `too_many_headers`.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::FloodBanned => "flood_banned",
            DropReason::TooBig => "too_big",
            DropReason::TooManyHeaders => "too_many_headers",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What to do with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Parse and handle it.
    Admit,
    /// Drop it without an answer.
    Drop(DropReason),
}

impl Verdict {
    /// True for [`Verdict::Admit`].
    pub fn is_admit(self) -> bool {
        self == Verdict::Admit
    }
}

/// `[limits]` as the guard uses it.
#[derive(Debug, Clone)]
pub struct FloodSettings {
    /// Off: admit everything (counters stay at 0).
    pub enabled: bool,
    /// Length of one sampling window.
    pub window: Duration,
    /// Messages from one source in one window that get it banned; 0 = no rate limit.
    pub max_messages: u32,
    /// How long a ban lasts after the source's last window at or over the rate.
    pub ban: Duration,
    /// Largest message admitted, in bytes.
    pub max_message_bytes: usize,
    /// Most header lines admitted (folded continuation lines count); the
    /// default is the parser's own bound, [`viaduct_sip::MAX_HEADERS`].
    pub max_headers: usize,
    /// Sources tracked at most.
    pub max_sources: usize,
    /// Sources exempt from the rate limit (`limits.allow`).
    pub allow: Allowlist,
    /// At most one log line per source and reason per this interval.
    pub log_interval: Duration,
}

impl Default for FloodSettings {
    fn default() -> Self {
        FloodSettings {
            enabled: true,
            window: Duration::from_secs(2),
            max_messages: 10_000,
            ban: Duration::from_secs(60),
            max_message_bytes: 32 * 1024,
            max_headers: viaduct_sip::MAX_HEADERS,
            max_sources: 65_536,
            allow: Allowlist::default(),
            log_interval: Duration::from_secs(10),
        }
    }
}

/// Which sources are exempt from the rate limit: a predicate, so this
/// module needs no CIDR code of its own (the config builds it from
/// `limits.allow` with the policy host's CIDR matcher).
#[derive(Clone, Default)]
pub struct Allowlist(Option<Arc<dyn Fn(IpAddr) -> bool + Send + Sync>>);

impl Allowlist {
    /// Exempts the sources for which `contains` is true.
    pub fn new(contains: impl Fn(IpAddr) -> bool + Send + Sync + 'static) -> Self {
        Allowlist(Some(Arc::new(contains)))
    }

    fn contains(&self, ip: IpAddr) -> bool {
        self.0.as_ref().is_some_and(|f| f(ip))
    }
}

impl std::fmt::Debug for Allowlist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Allowlist(..)"
        } else {
            "Allowlist(none)"
        })
    }
}

/// Counters shared by every guard of the process (workers and TCP), for the
/// metrics exporter and `/status`. Only drops touch them: an admitted
/// message costs no atomic operation.
#[derive(Debug, Default)]
pub struct FloodCounters {
    drops: [AtomicU64; DropReason::ALL.len()],
    banned: AtomicU64,
    bans: AtomicU64,
    tracked: AtomicU64,
    untracked: AtomicU64,
}

/// A point-in-time copy of [`FloodCounters`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloodSnapshot {
    /// Messages dropped, by reason, in [`DropReason::ALL`] order.
    pub drops: [(DropReason, u64); DropReason::ALL.len()],
    /// Sources banned right now (a gauge).
    pub banned_sources: u64,
    /// Bans started since start-up (a counter).
    pub bans: u64,
    /// Sources tracked right now (a gauge).
    pub tracked_sources: u64,
    /// Messages admitted without tracking because the table was full.
    pub untracked: u64,
}

impl FloodCounters {
    /// Copies the counters.
    pub fn snapshot(&self) -> FloodSnapshot {
        let mut drops = [(DropReason::FloodBanned, 0); DropReason::ALL.len()];
        for (slot, reason) in drops.iter_mut().zip(DropReason::ALL) {
            *slot = (reason, self.drops[reason.index()].load(Ordering::Relaxed));
        }
        FloodSnapshot {
            drops,
            banned_sources: self.banned.load(Ordering::Relaxed),
            bans: self.bans.load(Ordering::Relaxed),
            tracked_sources: self.tracked.load(Ordering::Relaxed),
            untracked: self.untracked.load(Ordering::Relaxed),
        }
    }
}

/// A status line (RFC 3261 §7.2) rather than a request line.
fn is_response(data: &[u8]) -> bool {
    data.starts_with(b"SIP/")
}

/// What the guard remembers about one source IP.
#[derive(Debug, Clone)]
struct Source {
    window_start: Instant,
    /// Messages in the current window.
    count: u32,
    banned_until: Option<Instant>,
    /// Messages dropped during the current ban (for the log line when it ends).
    dropped: u64,
    last_log: Option<Instant>,
}

/// One guard: a worker's (owned, no lock) or the stream transports' (behind a mutex).
#[derive(Debug)]
pub struct FloodGuard {
    settings: FloodSettings,
    sources: HashMap<IpAddr, Source>,
    next_sweep: Option<Instant>,
    counters: Arc<FloodCounters>,
    /// Last log line for allowlisted sources' size/header drops (they are not tracked).
    last_untracked_log: Option<Instant>,
}

impl FloodGuard {
    /// A guard reporting into `counters` (share one `Arc` between all guards).
    pub fn new(settings: FloodSettings, counters: Arc<FloodCounters>) -> Self {
        FloodGuard {
            settings,
            sources: HashMap::new(),
            next_sweep: None,
            counters,
            last_untracked_log: None,
        }
    }

    /// The shared counters.
    #[cfg(test)]
    pub fn counters(&self) -> &Arc<FloodCounters> {
        &self.counters
    }

    /// Looks at one message of `data` from `source` at `now`.
    pub fn admit(&mut self, now: Instant, source: IpAddr, data: &[u8]) -> Verdict {
        if !self.settings.enabled {
            return Verdict::Admit;
        }
        let allowed = self.settings.allow.contains(source);
        // Only requests count toward the rate, as with pike: a next hop that
        // answers every call from one address (a media bridge, a B2BUA)
        // sends more responses than any caller, and a response the core did
        // not ask for is dropped by transaction matching anyway (counted as
        // unmatched_response). Responses still get the shape checks.
        // Banned sources first: the cheapest answer for the bulk of a flood.
        let verdict = if allowed || is_response(data) {
            self.check_shape(data)
        } else {
            self.check_rate(now, source)
                .unwrap_or_else(|| self.check_shape(data))
        };
        if let Verdict::Drop(reason) = verdict {
            self.counters.drops[reason.index()].fetch_add(1, Ordering::Relaxed);
            if reason != DropReason::FloodBanned {
                self.log_shape_drop(now, source, allowed, reason, data);
            }
        }
        verdict
    }

    /// Size and header count, without parsing.
    fn check_shape(&self, data: &[u8]) -> Verdict {
        if data.len() > self.settings.max_message_bytes {
            return Verdict::Drop(DropReason::TooBig);
        }
        if header_lines(data, self.settings.max_headers) > self.settings.max_headers {
            return Verdict::Drop(DropReason::TooManyHeaders);
        }
        Verdict::Admit
    }

    /// Counts the message; `Some(drop)` while the source is banned.
    fn check_rate(&mut self, now: Instant, source: IpAddr) -> Option<Verdict> {
        let max = self.settings.max_messages;
        if max == 0 {
            return None;
        }
        self.sweep(now);
        let window = self.settings.window;
        if !self.sources.contains_key(&source) {
            if self.sources.len() >= self.settings.max_sources {
                self.counters.untracked.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            self.counters.tracked.fetch_add(1, Ordering::Relaxed);
        }
        let s = self.sources.entry(source).or_insert(Source {
            window_start: now,
            count: 0,
            banned_until: None,
            dropped: 0,
            last_log: None,
        });
        let age = now.saturating_duration_since(s.window_start);
        if age >= window {
            // A banned source still at its rate through the window that just
            // ended stays banned; a silent window in between breaks the run.
            if let Some(until) = s.banned_until {
                if s.count >= max && age < window * 2 {
                    s.banned_until = Some(until.max(now + self.settings.ban));
                }
            }
            s.window_start = now;
            s.count = 0;
        }
        s.count = s.count.saturating_add(1);
        if let Some(until) = s.banned_until {
            if now < until {
                s.dropped += 1;
                return Some(Verdict::Drop(DropReason::FloodBanned));
            }
            s.banned_until = None;
            self.counters.banned.fetch_sub(1, Ordering::Relaxed);
            tracing::info!(
                %source,
                dropped = s.dropped,
                "flood ban lifted"
            );
            s.dropped = 0;
        }
        if s.count >= max {
            s.banned_until = Some(now + self.settings.ban);
            s.dropped = 1;
            self.counters.banned.fetch_add(1, Ordering::Relaxed);
            self.counters.bans.fetch_add(1, Ordering::Relaxed);
            let elapsed = now.saturating_duration_since(s.window_start).as_secs_f64();
            let rate = f64::from(s.count) / elapsed.max(0.001);
            tracing::warn!(
                %source,
                messages = s.count,
                window_ms = window.as_millis() as u64,
                rate_per_s = rate.round() as u64,
                ban_s = self.settings.ban.as_secs(),
                "flood: source banned (raise limits.max_messages, or add the source to limits.allow if it is a trusted trunk)"
            );
            return Some(Verdict::Drop(DropReason::FloodBanned));
        }
        None
    }

    /// Once per window: forget sources idle for a whole window and not banned.
    fn sweep(&mut self, now: Instant) {
        match self.next_sweep {
            Some(at) if now < at => return,
            _ => self.next_sweep = Some(now + self.settings.window),
        }
        let window = self.settings.window;
        let before = self.sources.len();
        let mut lifted = 0u64;
        self.sources.retain(|_, s| {
            let keep = s.banned_until.is_some_and(|u| now < u)
                || now.saturating_duration_since(s.window_start) < window;
            // A ban that expired without another message from the source ends here.
            if !keep && s.banned_until.is_some() {
                lifted += 1;
            }
            keep
        });
        let removed = (before - self.sources.len()) as u64;
        if removed > 0 {
            self.counters.tracked.fetch_sub(removed, Ordering::Relaxed);
        }
        if lifted > 0 {
            self.counters.banned.fetch_sub(lifted, Ordering::Relaxed);
        }
    }

    fn log_shape_drop(
        &mut self,
        now: Instant,
        source: IpAddr,
        allowed: bool,
        reason: DropReason,
        data: &[u8],
    ) {
        let interval = self.settings.log_interval;
        let due = |last: &mut Option<Instant>| {
            let due = last.is_none_or(|l| now.saturating_duration_since(l) >= interval);
            if due {
                *last = Some(now);
            }
            due
        };
        let due = if allowed {
            due(&mut self.last_untracked_log)
        } else {
            match self.sources.get_mut(&source) {
                Some(s) => due(&mut s.last_log),
                None => due(&mut self.last_untracked_log),
            }
        };
        if due {
            tracing::info!(
                %source,
                reason = reason.as_str(),
                bytes = data.len(),
                max_bytes = self.settings.max_message_bytes,
                max_headers = self.settings.max_headers,
                "message dropped (limits.max_message_bytes / limits.max_headers)"
            );
        }
    }
}

/// Header lines before the blank line (the start line not counted), counting at most `cap + 1`.
fn header_lines(data: &[u8], cap: usize) -> usize {
    let mut lines = 0;
    let mut last = 0;
    for nl in memchr::memchr_iter(b'\n', data) {
        // An empty line (CRLF or bare LF) ends the head (RFC 3261 §7).
        let line = &data[last..nl];
        if line.is_empty() || line == b"\r" {
            break;
        }
        last = nl + 1;
        lines += 1;
        // The start line plus one header past the cap is enough to decide.
        if lines > cap.saturating_add(1) {
            break;
        }
    }
    // The start line is not a header.
    lines.saturating_sub(1)
}

// An explicit path, so benches/flood.rs (which compiles this file by path) resolves it too.
#[cfg(test)]
#[path = "flood/tests.rs"]
mod tests;
