//! INVITE client transaction (RFC 3261 §17.1.1, RFC 6026 §7.2 / §8.4).

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use super::{earliest, Class, Deadline, Retransmit, Timers, TxEvent};

/// States of the INVITE client transaction (RFC 3261 Figure 5, as amended
/// by RFC 6026 Figure 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteClientState {
    Calling,
    Proceeding,
    Accepted,
    Completed,
    Terminated,
}

/// A sans-IO INVITE client transaction.
#[derive(Debug)]
pub struct InviteClient {
    state: InviteClientState,
    timers: Timers,
    reliable: bool,
    request: Bytes,
    ack: Option<Bytes>,
    timer_a: Retransmit,
    timer_b: Deadline,
    timer_d: Deadline,
    timer_m: Deadline,
    transmits: VecDeque<Bytes>,
    events: VecDeque<TxEvent>,
}

impl InviteClient {
    /// Starts the transaction and queues `request` for transmission.
    // RFC 3261 §17.1.1.2: the request goes out at once; Timer A only runs
    // over unreliable transports, Timer B always.
    pub fn new(now: Instant, timers: Timers, request: Bytes, reliable: bool) -> Self {
        let mut timer_a = Retransmit::default();
        if !reliable {
            timer_a.start(now, timers.t1);
        }
        let mut timer_b = Deadline::default();
        timer_b.arm(now, timers.timer_b);
        let mut transmits = VecDeque::with_capacity(1);
        transmits.push_back(request.clone());
        Self {
            state: InviteClientState::Calling,
            timers,
            reliable,
            request,
            ack: None,
            timer_a,
            timer_b,
            timer_d: Deadline::default(),
            timer_m: Deadline::default(),
            transmits,
            events: VecDeque::new(),
        }
    }

    /// Feeds a response matched to this transaction. Returns whether it must
    /// be passed up to the TU.
    ///
    /// `make_ack` is called at most once, for the first non-2xx final
    /// response; the ACK it builds is reused for every retransmission.
    pub fn handle_response<F: FnOnce() -> Bytes>(
        &mut self,
        now: Instant,
        status: u16,
        make_ack: F,
    ) -> bool {
        use InviteClientState::*;
        match (self.state, Class::of(status)) {
            // RFC 3261 §17.1.1.2: a provisional response shows the server has
            // the request, so retransmitting it is pointless. Timer B only
            // guards Calling; from here on Timer C (proxy core) takes over.
            (Calling | Proceeding, Some(Class::Provisional)) => {
                self.state = Proceeding;
                self.timer_a.stop();
                self.timer_b.disarm();
                true
            }
            // RFC 6026 §8.4: stay around in Accepted so that 2xx
            // retransmissions (and forked 2xx) still find a transaction
            // instead of being treated as stray responses.
            (Calling | Proceeding, Some(Class::Success)) => {
                self.state = Accepted;
                self.timer_a.stop();
                self.timer_b.disarm();
                self.timer_m.arm(now, self.timers.timer_m);
                true
            }
            // RFC 6026 §8.4: the ACK for 2xx is end-to-end, so the TU must see
            // every retransmitted 2xx to re-send it.
            (Accepted, Some(Class::Success)) => true,
            // RFC 3261 §17.1.1.2, §17.1.1.3: the ACK for a non-2xx final is
            // the transaction's own business; Timer D absorbs retransmissions
            // of the final response, and is zero over reliable transports.
            (Calling | Proceeding, Some(Class::Failure)) => {
                self.state = Completed;
                self.timer_a.stop();
                self.timer_b.disarm();
                let ack = make_ack();
                self.transmits.push_back(ack.clone());
                self.ack = Some(ack);
                if self.reliable {
                    self.terminate();
                } else {
                    self.timer_d.arm(now, self.timers.timer_d);
                }
                true
            }
            // RFC 3261 §17.1.1.2: a retransmitted final means our ACK was
            // lost; answer it, but the TU has already seen this response.
            (Completed, Some(Class::Failure)) => {
                if let Some(ack) = &self.ack {
                    self.transmits.push_back(ack.clone());
                }
                false
            }
            _ => false,
        }
    }

    /// Fires every timer due at `now`. Calling early is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        use InviteClientState::*;
        // Terminating timers go first so a late call does not retransmit a
        // request whose transaction has already timed out.
        // RFC 3261 §17.1.1.2: Timer B means no response at all arrived.
        if self.state == Calling && self.timer_b.is_due(now) {
            self.events.push_back(TxEvent::Timeout);
            self.terminate();
            return;
        }
        // RFC 3261 §17.1.1.2: Timer D bounds how long non-2xx
        // retransmissions are absorbed.
        if self.state == Completed && self.timer_d.is_due(now) {
            self.terminate();
            return;
        }
        // RFC 6026 §8.4: Timer M bounds how long 2xx retransmissions are
        // expected.
        if self.state == Accepted && self.timer_m.is_due(now) {
            self.terminate();
            return;
        }
        // RFC 3261 §17.1.1.2: Timer A doubles without a cap, since Timer B
        // ends the transaction after seven retransmissions anyway.
        if self.state == Calling && self.timer_a.fire(now, |d| d.saturating_mul(2)) {
            self.transmits.push_back(self.request.clone());
        }
    }

    /// Reports that the transport failed to send the request.
    // RFC 3261 §17.1.4: a request that cannot be sent will never be
    // answered, so report it and terminate rather than waiting for Timer B.
    pub fn handle_transport_error(&mut self, _now: Instant) {
        if self.state == InviteClientState::Calling {
            self.events.push_back(TxEvent::TransportError);
            self.terminate();
        }
    }

    /// The next message to put on the wire, if any.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmits.pop_front()
    }

    /// When `handle_timeout` must next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        earliest([
            self.timer_a.at(),
            self.timer_b.at(),
            self.timer_d.at(),
            self.timer_m.at(),
        ])
    }

    /// The next event for the TU, if any.
    pub fn poll_event(&mut self) -> Option<TxEvent> {
        self.events.pop_front()
    }

    pub fn state(&self) -> InviteClientState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == InviteClientState::Terminated
    }

    /// Whether the TU may send a CANCEL for this INVITE now.
    // RFC 3261 §9.1: before a provisional response the CANCEL could overtake
    // the INVITE; after a final response there is nothing left to cancel.
    pub fn cancel_allowed(&self) -> bool {
        self.state == InviteClientState::Proceeding
    }

    fn terminate(&mut self) {
        if self.state == InviteClientState::Terminated {
            return;
        }
        self.state = InviteClientState::Terminated;
        self.timer_a.stop();
        self.timer_b.disarm();
        self.timer_d.disarm();
        self.timer_m.disarm();
        self.events.push_back(TxEvent::Terminated);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const INVITE: &[u8] = b"INVITE";
    const ACK: &[u8] = b"ACK";

    fn ms(t0: Instant, t: Instant) -> u64 {
        (t - t0).as_millis() as u64
    }

    fn drain(tx: &mut InviteClient) -> Vec<Bytes> {
        std::iter::from_fn(|| tx.poll_transmit()).collect()
    }

    fn events(tx: &mut InviteClient) -> Vec<TxEvent> {
        std::iter::from_fn(|| tx.poll_event()).collect()
    }

    fn ack() -> Bytes {
        Bytes::from_static(ACK)
    }

    /// Runs the fake clock from timeout to timeout until `until_ms`,
    /// returning when each transmission happened.
    fn run(tx: &mut InviteClient, t0: Instant, until_ms: u64) -> Vec<u64> {
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

    fn udp(t0: Instant) -> InviteClient {
        InviteClient::new(t0, Timers::default(), Bytes::from_static(INVITE), false)
    }

    #[test]
    fn udp_retransmits_with_doubling_then_times_out_at_32s() {
        let t0 = Instant::now();
        let mut tx = udp(t0);
        assert_eq!(drain(&mut tx), vec![Bytes::from_static(INVITE)]);
        assert_eq!(tx.state(), InviteClientState::Calling);
        assert!(!tx.cancel_allowed());

        let sent = run(&mut tx, t0, 60_000);
        assert_eq!(sent, vec![500, 1500, 3500, 7500, 15500, 31500]);
        assert!(tx.is_terminated());
        assert_eq!(events(&mut tx), vec![TxEvent::Timeout, TxEvent::Terminated]);
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn timer_b_fires_exactly_at_32s() {
        let t0 = Instant::now();
        let mut tx = udp(t0);
        tx.handle_timeout(t0 + Duration::from_millis(31_999));
        assert_eq!(tx.state(), InviteClientState::Calling);
        tx.handle_timeout(t0 + Duration::from_secs(32));
        assert!(tx.is_terminated());
    }

    #[test]
    fn reliable_never_retransmits() {
        let t0 = Instant::now();
        let mut tx = InviteClient::new(t0, Timers::default(), Bytes::from_static(INVITE), true);
        assert_eq!(drain(&mut tx).len(), 1);
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_secs(32)));
        assert!(run(&mut tx, t0, 60_000).is_empty());
        assert_eq!(events(&mut tx), vec![TxEvent::Timeout, TxEvent::Terminated]);
    }

    #[test]
    fn provisional_stops_retransmission_and_timer_b() {
        let t0 = Instant::now();
        let mut tx = udp(t0);
        drain(&mut tx);
        assert!(run(&mut tx, t0, 1000) == vec![500]);
        assert!(tx.handle_response(t0 + Duration::from_millis(1000), 180, ack));
        assert_eq!(tx.state(), InviteClientState::Proceeding);
        assert!(tx.cancel_allowed());
        assert_eq!(tx.poll_timeout(), None);
        tx.handle_timeout(t0 + Duration::from_secs(100));
        assert!(drain(&mut tx).is_empty());
        assert_eq!(tx.state(), InviteClientState::Proceeding);
        assert!(events(&mut tx).is_empty());
        // Further provisionals keep being passed up.
        assert!(tx.handle_response(t0 + Duration::from_secs(101), 183, ack));
    }

    #[test]
    fn failure_acks_once_and_absorbs_retransmissions() {
        let t0 = Instant::now();
        let mut tx = udp(t0);
        drain(&mut tx);
        let t = t0 + Duration::from_millis(200);
        let mut built = 0;
        assert!(tx.handle_response(t, 486, || {
            built += 1;
            ack()
        }));
        assert_eq!(tx.state(), InviteClientState::Completed);
        assert!(!tx.cancel_allowed());
        assert_eq!(drain(&mut tx), vec![ack()]);

        let t = t0 + Duration::from_millis(700);
        assert!(!tx.handle_response(t, 486, || {
            built += 1;
            ack()
        }));
        assert_eq!(built, 1);
        assert_eq!(drain(&mut tx), vec![ack()]);
        // A 2xx or 1xx after a failure is stray.
        assert!(!tx.handle_response(t, 200, ack));
        assert!(!tx.handle_response(t, 180, ack));
        assert!(drain(&mut tx).is_empty());
    }

    #[test]
    fn timer_d_terminates() {
        let t0 = Instant::now();
        let mut tx = udp(t0);
        let t = t0 + Duration::from_millis(200);
        tx.handle_response(t, 503, ack);
        assert_eq!(tx.poll_timeout(), Some(t + Duration::from_secs(32)));
        tx.handle_timeout(t + Duration::from_millis(31_999));
        assert_eq!(tx.state(), InviteClientState::Completed);
        tx.handle_timeout(t + Duration::from_secs(32));
        assert!(tx.is_terminated());
        assert_eq!(events(&mut tx), vec![TxEvent::Terminated]);
        assert_eq!(drain(&mut tx), vec![Bytes::from_static(INVITE), ack()]);
    }

    #[test]
    fn reliable_failure_terminates_immediately_but_still_acks() {
        let t0 = Instant::now();
        let mut tx = InviteClient::new(t0, Timers::default(), Bytes::from_static(INVITE), true);
        drain(&mut tx);
        assert!(tx.handle_response(t0, 404, ack));
        assert!(tx.is_terminated());
        assert_eq!(drain(&mut tx), vec![ack()]);
        assert_eq!(events(&mut tx), vec![TxEvent::Terminated]);
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn success_enters_accepted_and_timer_m_terminates() {
        let t0 = Instant::now();
        let mut tx = udp(t0);
        drain(&mut tx);
        assert!(tx.handle_response(t0 + Duration::from_millis(100), 180, ack));
        let t = t0 + Duration::from_secs(2);
        assert!(tx.handle_response(t, 200, || panic!("no ACK for 2xx")));
        assert_eq!(tx.state(), InviteClientState::Accepted);
        assert!(drain(&mut tx).is_empty());

        // Retransmitted (or forked) 2xx reach the TU; provisionals do not.
        assert!(tx.handle_response(t + Duration::from_secs(1), 200, ack));
        assert!(!tx.handle_response(t + Duration::from_secs(1), 180, ack));
        assert!(!tx.handle_response(t + Duration::from_secs(1), 486, ack));
        assert!(drain(&mut tx).is_empty());

        assert_eq!(tx.poll_timeout(), Some(t + Duration::from_secs(32)));
        tx.handle_timeout(t + Duration::from_secs(32));
        assert!(tx.is_terminated());
        assert_eq!(events(&mut tx), vec![TxEvent::Terminated]);
        assert!(!tx.handle_response(t + Duration::from_secs(33), 200, ack));
    }

    #[test]
    fn success_in_calling_stops_retransmission() {
        let t0 = Instant::now();
        let mut tx = udp(t0);
        drain(&mut tx);
        assert!(tx.handle_response(t0 + Duration::from_millis(100), 200, ack));
        assert_eq!(
            tx.poll_timeout(),
            Some(t0 + Duration::from_millis(100) + Duration::from_secs(32))
        );
    }

    #[test]
    fn transport_error_in_calling_terminates() {
        let t0 = Instant::now();
        let mut tx = udp(t0);
        tx.handle_transport_error(t0);
        assert!(tx.is_terminated());
        assert_eq!(
            events(&mut tx),
            vec![TxEvent::TransportError, TxEvent::Terminated]
        );
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn transport_error_after_provisional_is_ignored() {
        let t0 = Instant::now();
        let mut tx = udp(t0);
        tx.handle_response(t0, 100, ack);
        tx.handle_transport_error(t0);
        assert_eq!(tx.state(), InviteClientState::Proceeding);
        assert!(events(&mut tx).is_empty());
    }

    #[test]
    fn late_call_times_out_without_retransmitting() {
        let t0 = Instant::now();
        let mut tx = udp(t0);
        drain(&mut tx);
        tx.handle_timeout(t0 + Duration::from_secs(40));
        assert!(drain(&mut tx).is_empty());
        assert_eq!(events(&mut tx), vec![TxEvent::Timeout, TxEvent::Terminated]);
        // Terminated is reported once.
        tx.handle_timeout(t0 + Duration::from_secs(80));
        tx.handle_transport_error(t0 + Duration::from_secs(80));
        assert!(events(&mut tx).is_empty());
    }

    #[test]
    fn invalid_status_is_ignored() {
        let t0 = Instant::now();
        let mut tx = udp(t0);
        assert!(!tx.handle_response(t0, 99, ack));
        assert!(!tx.handle_response(t0, 700, ack));
        assert_eq!(tx.state(), InviteClientState::Calling);
    }
}
