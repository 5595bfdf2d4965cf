//! INVITE server transaction (RFC 3261 §17.2.1, RFC 6026 §7.1 / §8.5-§8.7).

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use super::{earliest, Class, Deadline, Retransmit, Timers, TxEvent};

/// States of the INVITE server transaction (RFC 3261 Figure 7, as amended
/// by RFC 6026 Figure 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteServerState {
    Proceeding,
    Accepted,
    Completed,
    Confirmed,
    Terminated,
}

/// A sans-IO INVITE server transaction.
#[derive(Debug)]
pub struct InviteServer {
    state: InviteServerState,
    timers: Timers,
    reliable: bool,
    provisional: Option<Bytes>,
    final_response: Option<Bytes>,
    final_status: Option<u16>,
    timer_g: Retransmit,
    timer_h: Deadline,
    timer_i: Deadline,
    timer_l: Deadline,
    transmits: VecDeque<Bytes>,
    events: VecDeque<TxEvent>,
}

impl InviteServer {
    /// Creates the transaction for a newly received INVITE.
    // RFC 3261 §17.2.1: the machine starts in Proceeding; the TU sends the
    // 100 Trying itself through `send_response`.
    pub fn new(_now: Instant, timers: Timers, reliable: bool) -> Self {
        Self {
            state: InviteServerState::Proceeding,
            timers,
            reliable,
            provisional: None,
            final_response: None,
            final_status: None,
            timer_g: Retransmit::default(),
            timer_h: Deadline::default(),
            timer_i: Deadline::default(),
            timer_l: Deadline::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Feeds a retransmission of the INVITE that created this transaction.
    pub fn handle_request_retransmit(&mut self, _now: Instant) {
        match self.state {
            // RFC 3261 §17.2.1: the client has not seen our provisional yet
            // (or we have not sent one), so repeat the latest.
            InviteServerState::Proceeding => {
                if let Some(p) = &self.provisional {
                    self.transmits.push_back(p.clone());
                }
            }
            // RFC 3261 §17.2.1: the client missed the final response.
            InviteServerState::Completed => {
                if let Some(f) = &self.final_response {
                    self.transmits.push_back(f.clone());
                }
            }
            // RFC 6026 §8.7: 2xx retransmission is the TU's job, and in
            // Confirmed the ACK already proved the final arrived.
            InviteServerState::Accepted
            | InviteServerState::Confirmed
            | InviteServerState::Terminated => {}
        }
    }

    /// Sends a response from the TU through the transaction.
    pub fn send_response(&mut self, now: Instant, status: u16, response: Bytes) {
        use InviteServerState::*;
        match (self.state, Class::of(status)) {
            // RFC 3261 §17.2.1: provisionals pass straight through; keep the
            // latest to answer INVITE retransmissions.
            (Proceeding, Some(Class::Provisional)) => {
                self.transmits.push_back(response.clone());
                self.provisional = Some(response);
            }
            // RFC 6026 §8.6: stay in Accepted for Timer L so INVITE
            // retransmissions are absorbed and the ACK can be matched.
            (Proceeding, Some(Class::Success)) => {
                self.transmits.push_back(response);
                self.final_status = Some(status);
                self.state = Accepted;
                self.timer_l.arm(now, self.timers.timer_l);
            }
            // RFC 6026 §8.7: the TU retransmits its 2xx itself (and a proxy
            // forwards further forked 2xx), through this transaction.
            (Accepted, Some(Class::Success)) => {
                self.transmits.push_back(response);
            }
            // RFC 3261 §17.2.1: the transaction owns non-2xx reliability:
            // Timer G retransmits over unreliable transports and Timer H
            // bounds the wait for the ACK on any transport.
            (Proceeding, Some(Class::Failure)) => {
                self.transmits.push_back(response.clone());
                self.final_response = Some(response);
                self.final_status = Some(status);
                self.state = Completed;
                if !self.reliable {
                    self.timer_g.start(now, self.timers.t1);
                }
                self.timer_h.arm(now, self.timers.timer_h);
            }
            // RFC 3261 §17.2.1: anything else (a second final, a late
            // provisional) would contradict what the client already has.
            _ => {}
        }
    }

    /// Feeds an ACK matched to this transaction. Returns whether the TU must
    /// see it.
    pub fn handle_ack(&mut self, now: Instant) -> bool {
        match self.state {
            // RFC 3261 §17.2.1: the ACK for a non-2xx is hop-by-hop and ends
            // retransmission; Timer I absorbs stray ACKs and is zero over
            // reliable transports.
            InviteServerState::Completed => {
                self.state = InviteServerState::Confirmed;
                self.timer_g.stop();
                self.timer_h.disarm();
                if self.reliable {
                    self.terminate();
                } else {
                    self.timer_i.arm(now, self.timers.t4);
                }
                false
            }
            // RFC 6026 §8.7: the ACK for a 2xx is end-to-end, so the TU
            // forwards it.
            InviteServerState::Accepted => true,
            // RFC 3261 §17.2.1: ACK retransmissions are absorbed.
            InviteServerState::Confirmed
            | InviteServerState::Proceeding
            | InviteServerState::Terminated => false,
        }
    }

    /// Fires every timer due at `now`. Calling early is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        use InviteServerState::*;
        // Terminating timers go first so a late call does not retransmit a
        // response whose transaction has already ended.
        // RFC 3261 §17.2.1: Timer H means the ACK never came.
        if self.state == Completed && self.timer_h.is_due(now) {
            self.events.push_back(TxEvent::Timeout);
            self.terminate();
            return;
        }
        // RFC 3261 §17.2.1: Timer I bounds how long ACK retransmissions are
        // absorbed.
        if self.state == Confirmed && self.timer_i.is_due(now) {
            self.terminate();
            return;
        }
        // RFC 6026 §8.7: Timer L bounds how long the 2xx's ACK and INVITE
        // retransmissions are expected.
        if self.state == Accepted && self.timer_l.is_due(now) {
            self.terminate();
            return;
        }
        // RFC 3261 §17.2.1: Timer G doubles up to T2, like non-INVITE
        // request retransmission.
        let t2 = self.timers.t2;
        if self.state == Completed && self.timer_g.fire(now, |d| d.saturating_mul(2).min(t2)) {
            if let Some(f) = &self.final_response {
                self.transmits.push_back(f.clone());
            }
        }
    }

    /// The next message to put on the wire, if any.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmits.pop_front()
    }

    /// When `handle_timeout` must next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        earliest([
            self.timer_g.at(),
            self.timer_h.at(),
            self.timer_i.at(),
            self.timer_l.at(),
        ])
    }

    /// The next event for the TU, if any.
    pub fn poll_event(&mut self) -> Option<TxEvent> {
        self.events.pop_front()
    }

    pub fn state(&self) -> InviteServerState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == InviteServerState::Terminated
    }

    /// The status of the final response sent, if one was.
    pub fn last_final_status(&self) -> Option<u16> {
        self.final_status
    }

    fn terminate(&mut self) {
        if self.state == InviteServerState::Terminated {
            return;
        }
        self.state = InviteServerState::Terminated;
        self.timer_g.stop();
        self.timer_h.disarm();
        self.timer_i.disarm();
        self.timer_l.disarm();
        self.events.push_back(TxEvent::Terminated);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ms(t0: Instant, t: Instant) -> u64 {
        (t - t0).as_millis() as u64
    }

    fn drain(tx: &mut InviteServer) -> Vec<Bytes> {
        std::iter::from_fn(|| tx.poll_transmit()).collect()
    }

    fn events(tx: &mut InviteServer) -> Vec<TxEvent> {
        std::iter::from_fn(|| tx.poll_event()).collect()
    }

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    /// Runs the fake clock from timeout to timeout until `until_ms`,
    /// returning when each transmission happened.
    fn run(tx: &mut InviteServer, t0: Instant, until_ms: u64) -> Vec<u64> {
        let mut sent = Vec::new();
        while let Some(at) = tx.poll_timeout() {
            if ms(t0, at) > until_ms {
                break;
            }
            tx.handle_timeout(at);
            sent.extend(drain(tx).iter().map(|_| ms(t0, at)));
        }
        sent
    }

    fn udp(t0: Instant) -> InviteServer {
        InviteServer::new(t0, Timers::default(), false)
    }

    #[test]
    fn retransmitted_invite_resends_latest_provisional() {
        let t0 = Instant::now();
        let mut tx = udp(t0);
        tx.handle_request_retransmit(t0);
        assert!(drain(&mut tx).is_empty());
        tx.send_response(t0, 100, b("100"));
        tx.send_response(t0, 180, b("180"));
        assert_eq!(drain(&mut tx), vec![b("100"), b("180")]);
        tx.handle_request_retransmit(t0 + Duration::from_millis(500));
        assert_eq!(drain(&mut tx), vec![b("180")]);
        assert_eq!(tx.state(), InviteServerState::Proceeding);
        assert_eq!(tx.last_final_status(), None);
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn failure_retransmits_capped_at_t2_until_timer_h() {
        let t0 = Instant::now();
        let mut tx = udp(t0);
        tx.send_response(t0, 486, b("486"));
        assert_eq!(drain(&mut tx), vec![b("486")]);
        assert_eq!(tx.state(), InviteServerState::Completed);
        assert_eq!(tx.last_final_status(), Some(486));

        let sent = run(&mut tx, t0, 60_000);
        // Intervals 0.5, 1, 2, 4, 4, ... : capped at T2, ended by Timer H at 32 s.
        assert_eq!(
            sent,
            vec![500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
        );
        assert!(tx.is_terminated());
        assert_eq!(events(&mut tx), vec![TxEvent::Timeout, TxEvent::Terminated]);
    }

    #[test]
    fn retransmitted_invite_in_completed_resends_final() {
        let t0 = Instant::now();
        let mut tx = udp(t0);
        tx.send_response(t0, 180, b("180"));
        tx.send_response(t0, 603, b("603"));
        drain(&mut tx);
        tx.handle_request_retransmit(t0 + Duration::from_millis(100));
        assert_eq!(drain(&mut tx), vec![b("603")]);
        // A second final or late provisional from the TU is dropped.
        tx.send_response(t0, 500, b("500"));
        tx.send_response(t0, 180, b("180"));
        tx.send_response(t0, 200, b("200"));
        assert!(drain(&mut tx).is_empty());
        assert_eq!(tx.last_final_status(), Some(603));
    }

    #[test]
    fn ack_confirms_and_timer_i_terminates() {
        let t0 = Instant::now();
        let mut tx = udp(t0);
        tx.send_response(t0, 486, b("486"));
        drain(&mut tx);
        assert_eq!(run(&mut tx, t0, 2000), vec![500, 1500]);

        let t = t0 + Duration::from_secs(2);
        assert!(!tx.handle_ack(t));
        assert_eq!(tx.state(), InviteServerState::Confirmed);
        assert_eq!(tx.poll_timeout(), Some(t + Duration::from_secs(5)));

        // ACK and INVITE retransmissions are absorbed; nothing more is sent.
        assert!(!tx.handle_ack(t + Duration::from_secs(1)));
        tx.handle_request_retransmit(t + Duration::from_secs(1));
        tx.handle_timeout(t + Duration::from_millis(4999));
        assert!(drain(&mut tx).is_empty());
        assert_eq!(tx.state(), InviteServerState::Confirmed);

        tx.handle_timeout(t + Duration::from_secs(5));
        assert!(tx.is_terminated());
        assert_eq!(events(&mut tx), vec![TxEvent::Terminated]);
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn timer_h_fires_without_ack_on_reliable_transport_too() {
        let t0 = Instant::now();
        let mut tx = InviteServer::new(t0, Timers::default(), true);
        tx.send_response(t0, 486, b("486"));
        assert_eq!(drain(&mut tx), vec![b("486")]);
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_secs(32)));
        assert!(run(&mut tx, t0, 60_000).is_empty());
        assert_eq!(events(&mut tx), vec![TxEvent::Timeout, TxEvent::Terminated]);
    }

    #[test]
    fn reliable_ack_terminates_immediately() {
        let t0 = Instant::now();
        let mut tx = InviteServer::new(t0, Timers::default(), true);
        tx.send_response(t0, 404, b("404"));
        assert!(!tx.handle_ack(t0 + Duration::from_millis(50)));
        assert!(tx.is_terminated());
        assert_eq!(events(&mut tx), vec![TxEvent::Terminated]);
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn success_accepts_passes_ack_up_and_timer_l_terminates() {
        let t0 = Instant::now();
        let mut tx = udp(t0);
        tx.send_response(t0, 180, b("180"));
        let t = t0 + Duration::from_secs(1);
        tx.send_response(t, 200, b("200"));
        assert_eq!(drain(&mut tx), vec![b("180"), b("200")]);
        assert_eq!(tx.state(), InviteServerState::Accepted);
        assert_eq!(tx.last_final_status(), Some(200));

        // INVITE retransmissions are absorbed; the TU's 2xx retransmissions
        // pass through; non-2xx are dropped.
        tx.handle_request_retransmit(t + Duration::from_millis(500));
        assert!(drain(&mut tx).is_empty());
        tx.send_response(t + Duration::from_millis(500), 200, b("200"));
        tx.send_response(t + Duration::from_millis(500), 486, b("486"));
        assert_eq!(drain(&mut tx), vec![b("200")]);

        assert!(tx.handle_ack(t + Duration::from_secs(1)));
        assert!(tx.handle_ack(t + Duration::from_secs(2)));
        assert_eq!(tx.state(), InviteServerState::Accepted);

        assert_eq!(tx.poll_timeout(), Some(t + Duration::from_secs(32)));
        tx.handle_timeout(t + Duration::from_secs(32));
        assert!(tx.is_terminated());
        assert_eq!(events(&mut tx), vec![TxEvent::Terminated]);
        assert!(!tx.handle_ack(t + Duration::from_secs(33)));
    }

    #[test]
    fn ack_in_proceeding_is_ignored() {
        let t0 = Instant::now();
        let mut tx = udp(t0);
        assert!(!tx.handle_ack(t0));
        assert_eq!(tx.state(), InviteServerState::Proceeding);
    }

    #[test]
    fn late_call_times_out_without_retransmitting() {
        let t0 = Instant::now();
        let mut tx = udp(t0);
        tx.send_response(t0, 500, b("500"));
        drain(&mut tx);
        tx.handle_timeout(t0 + Duration::from_secs(45));
        assert!(drain(&mut tx).is_empty());
        assert_eq!(events(&mut tx), vec![TxEvent::Timeout, TxEvent::Terminated]);
        tx.handle_timeout(t0 + Duration::from_secs(90));
        assert!(events(&mut tx).is_empty());
    }
}
