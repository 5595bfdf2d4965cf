//! RFC 3261 §17 transaction state machines, with the RFC 6026 corrections.
//!
//! Each machine is *sans-IO*, in the style of `quinn-proto`: it owns no
//! socket, spawns no task and never reads the clock. Every input carries the
//! caller's `now`, and every output is polled:
//!
//! * `poll_transmit` yields whole serialized messages (opaque [`Bytes`]) to
//!   put on the wire; the caller decides where they go.
//! * `poll_timeout` yields the earliest instant at which `handle_timeout`
//!   must be called.
//! * `poll_event` yields [`TxEvent`]s for the transaction user.
//!
//! That keeps the machines deterministic and testable with a fake clock, and
//! lets one event loop drive any number of them.
//!
//! What this layer deliberately does **not** do:
//!
//! * It does not parse SIP. Callers hand in status codes and opaque bytes.
//! * It does not know addresses or transports beyond "reliable or not",
//!   which only decides whether retransmission timers run.
//! * It does not match messages to transactions (§17.1.3 / §17.2.3). The
//!   proxy core does that by branch parameter and method, then calls the
//!   right machine.
//! * It does not generate CANCEL, and it does not run Timer C (§16.6 step
//!   11, §16.8): both belong to the proxy core, which knows about forking.
//!
//! The machines:
//!
//! * [`InviteClient`] — §17.1.1, with the RFC 6026 "Accepted" state and
//!   Timer M.
//! * [`NonInviteClient`] — §17.1.2.
//! * [`InviteServer`] — §17.2.1, with the RFC 6026 "Accepted" state and
//!   Timer L.
//! * [`NonInviteServer`] — §17.2.2.
//!
//! Where RFC 3261 gives a timer a value of zero for reliable transports
//! (D, I, J, K), the machines transition immediately instead of arming a
//! zero-length timer; the caller still sees [`TxEvent::Terminated`].

use std::time::{Duration, Instant};

#[cfg(doc)]
use bytes::Bytes;

mod invite_client;
mod invite_server;
mod non_invite_client;
mod non_invite_server;

pub use invite_client::{InviteClient, InviteClientState};
pub use invite_server::{InviteServer, InviteServerState};
pub use non_invite_client::{NonInviteClient, NonInviteClientState};
pub use non_invite_server::{NonInviteServer, NonInviteServerState};

/// RFC 3261 timer values; defaults T1=500ms, T2=4s, T4=5s; Timer B/F/H/J/L/M = 64*T1 unless overridden.
#[derive(Debug, Clone, Copy)]
pub struct Timers {
    /// RTT estimate; the initial retransmission interval (RFC 3261 §17.1.1.1).
    pub t1: Duration,
    /// Cap on the retransmission interval for non-INVITE requests and
    /// INVITE final responses.
    pub t2: Duration,
    /// Maximum time a message may linger in the network.
    pub t4: Duration,
    /// INVITE client transaction timeout.
    pub timer_b: Duration,
    /// Non-INVITE client transaction timeout.
    pub timer_f: Duration,
    /// INVITE server: wait for the ACK of a non-2xx final response.
    pub timer_h: Duration,
    /// Non-INVITE server: absorb request retransmissions after the final response.
    pub timer_j: Duration,
    /// INVITE server (RFC 6026): absorb INVITE retransmissions after a 2xx.
    pub timer_l: Duration,
    /// INVITE client (RFC 6026): let retransmitted 2xx reach the TU.
    pub timer_m: Duration,
    /// INVITE client: absorb non-2xx retransmissions (unreliable transports only).
    pub timer_d: Duration,
}

/// RFC 3261 §17.1.1.2 asks for "at least 32 seconds" of Timer D.
const TIMER_D_MIN: Duration = Duration::from_secs(32);

impl Default for Timers {
    fn default() -> Self {
        Self::from_t1(
            Duration::from_millis(500),
            Duration::from_secs(4),
            Duration::from_secs(5),
        )
    }
}

impl Timers {
    /// Derives B, F, H, J, L and M as 64*T1 (RFC 3261 Table 4, RFC 6026 §8.4
    /// and §8.6).
    ///
    /// Timer D is `max(32s, 64*T1)`: it exists to absorb final-response
    /// retransmissions, which the server keeps sending for up to Timer H, so
    /// with a larger T1 the RFC's 32 s floor would be too short.
    pub fn from_t1(t1: Duration, t2: Duration, t4: Duration) -> Self {
        let t64 = t1.saturating_mul(64);
        Self {
            t1,
            t2,
            t4,
            timer_b: t64,
            timer_f: t64,
            timer_h: t64,
            timer_j: t64,
            timer_l: t64,
            timer_m: t64,
            timer_d: t64.max(TIMER_D_MIN),
        }
    }
}

/// Something the transaction tells its user (the proxy core).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxEvent {
    /// Timer B / F fired: no final response (client), or Timer H fired: no ACK (server)
    Timeout,
    /// The transport reported a failure sending the request (RFC 3261 §17.1.4).
    TransportError,
    /// The transaction reached Terminated and can be removed
    Terminated,
}

/// One transaction timer: either disarmed or due at an instant.
#[derive(Debug, Clone, Copy, Default)]
struct Deadline(Option<Instant>);

impl Deadline {
    /// An overflowing deadline is as good as "never", so it disarms rather
    /// than panics.
    fn arm(&mut self, now: Instant, after: Duration) {
        self.0 = now.checked_add(after);
    }

    fn disarm(&mut self) {
        self.0 = None;
    }

    fn at(self) -> Option<Instant> {
        self.0
    }

    fn is_due(self, now: Instant) -> bool {
        self.0.is_some_and(|at| at <= now)
    }
}

/// A retransmission timer (A, E, G): a deadline plus the interval that was
/// used to reach it.
#[derive(Debug, Clone, Copy, Default)]
struct Retransmit {
    deadline: Deadline,
    interval: Duration,
}

impl Retransmit {
    fn start(&mut self, now: Instant, interval: Duration) {
        self.interval = interval;
        // A zero interval would retransmit forever within one call.
        if interval.is_zero() {
            self.deadline.disarm();
        } else {
            self.deadline.arm(now, interval);
        }
    }

    fn stop(&mut self) {
        self.deadline.disarm();
    }

    fn at(self) -> Option<Instant> {
        self.deadline.at()
    }

    /// Returns whether a retransmission is due, and if so moves the deadline
    /// past `now` using `next` to derive each following interval.
    ///
    /// The schedule stays anchored to the original deadlines so a late
    /// caller does not drift, but a late caller gets only one retransmission:
    /// a burst of identical copies would add nothing on the wire.
    fn fire(&mut self, now: Instant, next: impl Fn(Duration) -> Duration) -> bool {
        let Some(mut at) = self.deadline.at() else {
            return false;
        };
        if at > now {
            return false;
        }
        while at <= now {
            self.interval = next(self.interval);
            match at.checked_add(self.interval) {
                Some(later) if !self.interval.is_zero() => at = later,
                _ => {
                    self.deadline.disarm();
                    return true;
                }
            }
        }
        self.deadline.0 = Some(at);
        true
    }
}

/// The earliest of a set of optional deadlines.
fn earliest(deadlines: impl IntoIterator<Item = Option<Instant>>) -> Option<Instant> {
    deadlines.into_iter().flatten().min()
}

/// Classifies a status code the way §17 does: provisional, 2xx, or another final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Provisional,
    Success,
    Failure,
}

impl Class {
    /// Status codes outside 100-699 are not SIP responses and match no rule.
    fn of(status: u16) -> Option<Self> {
        match status {
            100..=199 => Some(Self::Provisional),
            200..=299 => Some(Self::Success),
            300..=699 => Some(Self::Failure),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_rfc_3261_table_4() {
        let t = Timers::default();
        assert_eq!(t.t1, Duration::from_millis(500));
        assert_eq!(t.t2, Duration::from_secs(4));
        assert_eq!(t.t4, Duration::from_secs(5));
        for d in [
            t.timer_b, t.timer_f, t.timer_h, t.timer_j, t.timer_l, t.timer_m, t.timer_d,
        ] {
            assert_eq!(d, Duration::from_secs(32));
        }
    }

    #[test]
    fn from_t1_scales_the_64_t1_timers() {
        let t = Timers::from_t1(
            Duration::from_millis(100),
            Duration::from_secs(4),
            Duration::from_secs(5),
        );
        assert_eq!(t.timer_b, Duration::from_millis(6400));
        assert_eq!(t.timer_l, Duration::from_millis(6400));
        assert_eq!(t.timer_d, Duration::from_secs(32));

        let slow = Timers::from_t1(
            Duration::from_secs(1),
            Duration::from_secs(4),
            Duration::from_secs(5),
        );
        assert_eq!(slow.timer_d, Duration::from_secs(64));
    }

    #[test]
    fn late_retransmit_fires_once_and_stays_on_schedule() {
        let t0 = Instant::now();
        let mut r = Retransmit::default();
        r.start(t0, Duration::from_millis(500));
        assert!(!r.fire(t0 + Duration::from_millis(499), |d| d * 2));
        // Due at 0.5, 1.5, 3.5; a call at 4 s fires once and lands on 7.5.
        assert!(r.fire(t0 + Duration::from_secs(4), |d| d * 2));
        assert_eq!(r.at(), Some(t0 + Duration::from_millis(7500)));
    }

    #[test]
    fn zero_interval_never_arms() {
        let t0 = Instant::now();
        let mut r = Retransmit::default();
        r.start(t0, Duration::ZERO);
        assert_eq!(r.at(), None);
        assert!(!r.fire(t0, |d| d));
    }
}
