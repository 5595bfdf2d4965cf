//! Non-INVITE client transaction (RFC 3261 §17.1.2).

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use super::{earliest, Class, Deadline, Retransmit, Timers, TxEvent};

/// States of the non-INVITE client transaction (RFC 3261 Figure 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonInviteClientState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// A sans-IO non-INVITE client transaction.
#[derive(Debug)]
pub struct NonInviteClient {
    state: NonInviteClientState,
    timers: Timers,
    reliable: bool,
    request: Bytes,
    timer_e: Retransmit,
    timer_f: Deadline,
    timer_k: Deadline,
    transmits: VecDeque<Bytes>,
    events: VecDeque<TxEvent>,
}

impl NonInviteClient {
    /// Starts the transaction and queues `request` for transmission.
    // RFC 3261 §17.1.2.2: the request goes out at once; Timer E only runs
    // over unreliable transports, Timer F always.
    pub fn new(now: Instant, timers: Timers, request: Bytes, reliable: bool) -> Self {
        let mut timer_e = Retransmit::default();
        if !reliable {
            timer_e.start(now, timers.t1);
        }
        let mut timer_f = Deadline::default();
        timer_f.arm(now, timers.timer_f);
        let mut transmits = VecDeque::with_capacity(1);
        transmits.push_back(request.clone());
        Self {
            state: NonInviteClientState::Trying,
            timers,
            reliable,
            request,
            timer_e,
            timer_f,
            timer_k: Deadline::default(),
            transmits,
            events: VecDeque::new(),
        }
    }

    /// Feeds a response matched to this transaction. Returns whether it must
    /// be passed up to the TU.
    pub fn handle_response(&mut self, now: Instant, status: u16) -> bool {
        use NonInviteClientState::*;
        match (self.state, Class::of(status)) {
            // RFC 3261 §17.1.2.2: unlike INVITE, a provisional does not stop
            // retransmission (the server may still lose state), it only
            // slows it to T2; Timer F keeps running.
            (Trying | Proceeding, Some(Class::Provisional)) => {
                self.state = Proceeding;
                true
            }
            // RFC 3261 §17.1.2.2: Timer K absorbs retransmitted finals and is
            // zero over reliable transports.
            (Trying | Proceeding, Some(Class::Success | Class::Failure)) => {
                self.state = Completed;
                self.timer_e.stop();
                self.timer_f.disarm();
                if self.reliable {
                    self.terminate();
                } else {
                    self.timer_k.arm(now, self.timers.t4);
                }
                true
            }
            // RFC 3261 §17.1.2.2: in Completed everything is a retransmission
            // the TU has already seen.
            _ => false,
        }
    }

    /// Fires every timer due at `now`. Calling early is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        use NonInviteClientState::*;
        // Terminating timers go first so a late call does not retransmit a
        // request whose transaction has already timed out.
        // RFC 3261 §17.1.2.2: Timer F means no final response arrived.
        if matches!(self.state, Trying | Proceeding) && self.timer_f.is_due(now) {
            self.events.push_back(TxEvent::Timeout);
            self.terminate();
            return;
        }
        // RFC 3261 §17.1.2.2: Timer K bounds how long final-response
        // retransmissions are absorbed.
        if self.state == Completed && self.timer_k.is_due(now) {
            self.terminate();
            return;
        }
        // RFC 3261 §17.1.2.2: Timer E doubles up to T2 in Trying; once the
        // server has answered provisionally it is reset to T2 each time.
        let t2 = self.timers.t2;
        let proceeding = self.state == Proceeding;
        let next = |d: std::time::Duration| {
            if proceeding {
                t2
            } else {
                d.saturating_mul(2).min(t2)
            }
        };
        if matches!(self.state, Trying | Proceeding) && self.timer_e.fire(now, next) {
            self.transmits.push_back(self.request.clone());
        }
    }

    /// Reports that the transport failed to send the request.
    // RFC 3261 §17.1.4: a request that cannot be sent will never be
    // answered, so report it and terminate rather than waiting for Timer F.
    pub fn handle_transport_error(&mut self, _now: Instant) {
        use NonInviteClientState::*;
        if matches!(self.state, Trying | Proceeding) {
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
        earliest([self.timer_e.at(), self.timer_f.at(), self.timer_k.at()])
    }

    /// The next event for the TU, if any.
    pub fn poll_event(&mut self) -> Option<TxEvent> {
        self.events.pop_front()
    }

    pub fn state(&self) -> NonInviteClientState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == NonInviteClientState::Terminated
    }

    fn terminate(&mut self) {
        if self.state == NonInviteClientState::Terminated {
            return;
        }
        self.state = NonInviteClientState::Terminated;
        self.timer_e.stop();
        self.timer_f.disarm();
        self.timer_k.disarm();
        self.events.push_back(TxEvent::Terminated);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const REQ: &[u8] = b"OPTIONS";

    fn ms(t0: Instant, t: Instant) -> u64 {
        (t - t0).as_millis() as u64
    }

    fn drain(tx: &mut NonInviteClient) -> Vec<Bytes> {
        std::iter::from_fn(|| tx.poll_transmit()).collect()
    }

    fn events(tx: &mut NonInviteClient) -> Vec<TxEvent> {
        std::iter::from_fn(|| tx.poll_event()).collect()
    }

    /// Runs the fake clock from timeout to timeout until `until_ms`,
    /// returning when each transmission happened.
    fn run(tx: &mut NonInviteClient, t0: Instant, until_ms: u64) -> Vec<u64> {
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

    fn udp(t0: Instant) -> NonInviteClient {
        NonInviteClient::new(t0, Timers::default(), Bytes::from_static(REQ), false)
    }

    #[test]
    fn timer_e_doubles_capped_at_t2_then_timer_f_times_out() {
        let t0 = Instant::now();
        let mut tx = udp(t0);
        assert_eq!(drain(&mut tx), vec![Bytes::from_static(REQ)]);
        let sent = run(&mut tx, t0, 60_000);
        // Intervals 0.5, 1, 2, 4, 4, 4, ...
        assert_eq!(
            sent,
            vec![500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
        );
        assert!(tx.is_terminated());
        assert_eq!(events(&mut tx), vec![TxEvent::Timeout, TxEvent::Terminated]);
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn timer_f_fires_exactly_at_32s() {
        let t0 = Instant::now();
        let mut tx = udp(t0);
        tx.handle_timeout(t0 + Duration::from_millis(31_999));
        assert!(!tx.is_terminated());
        tx.handle_timeout(t0 + Duration::from_secs(32));
        assert!(tx.is_terminated());
    }

    #[test]
    fn provisional_slows_retransmission_to_t2() {
        let t0 = Instant::now();
        let mut tx = udp(t0);
        drain(&mut tx);
        assert!(tx.handle_response(t0 + Duration::from_millis(200), 100));
        assert_eq!(tx.state(), NonInviteClientState::Proceeding);
        let sent = run(&mut tx, t0, 60_000);
        // The already-armed 0.5 s deadline stands, then every T2 until F.
        assert_eq!(
            sent,
            vec![500, 4500, 8500, 12500, 16500, 20500, 24500, 28500]
        );
        assert_eq!(events(&mut tx), vec![TxEvent::Timeout, TxEvent::Terminated]);
    }

    #[test]
    fn final_completes_and_timer_k_terminates() {
        let t0 = Instant::now();
        let mut tx = udp(t0);
        drain(&mut tx);
        assert!(tx.handle_response(t0 + Duration::from_millis(100), 180));
        let t = t0 + Duration::from_millis(800);
        assert!(tx.handle_response(t, 200));
        assert_eq!(tx.state(), NonInviteClientState::Completed);
        assert_eq!(tx.poll_timeout(), Some(t + Duration::from_secs(5)));

        // Retransmissions are absorbed and nothing is sent.
        assert!(!tx.handle_response(t + Duration::from_secs(1), 200));
        assert!(!tx.handle_response(t + Duration::from_secs(1), 180));
        tx.handle_timeout(t + Duration::from_millis(4999));
        assert!(drain(&mut tx).is_empty());
        assert_eq!(tx.state(), NonInviteClientState::Completed);

        tx.handle_timeout(t + Duration::from_secs(5));
        assert!(tx.is_terminated());
        assert_eq!(events(&mut tx), vec![TxEvent::Terminated]);
    }

    #[test]
    fn reliable_never_retransmits_and_final_terminates_immediately() {
        let t0 = Instant::now();
        let mut tx = NonInviteClient::new(t0, Timers::default(), Bytes::from_static(REQ), true);
        assert_eq!(drain(&mut tx).len(), 1);
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_secs(32)));
        assert!(tx.handle_response(t0 + Duration::from_secs(1), 404));
        assert!(tx.is_terminated());
        assert_eq!(events(&mut tx), vec![TxEvent::Terminated]);
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn reliable_times_out_without_retransmitting() {
        let t0 = Instant::now();
        let mut tx = NonInviteClient::new(t0, Timers::default(), Bytes::from_static(REQ), true);
        drain(&mut tx);
        assert!(run(&mut tx, t0, 60_000).is_empty());
        assert_eq!(events(&mut tx), vec![TxEvent::Timeout, TxEvent::Terminated]);
    }

    #[test]
    fn transport_error_terminates() {
        let t0 = Instant::now();
        let mut tx = udp(t0);
        tx.handle_response(t0, 100);
        tx.handle_transport_error(t0 + Duration::from_secs(1));
        assert!(tx.is_terminated());
        assert_eq!(
            events(&mut tx),
            vec![TxEvent::TransportError, TxEvent::Terminated]
        );
        tx.handle_transport_error(t0 + Duration::from_secs(2));
        assert!(events(&mut tx).is_empty());
    }

    #[test]
    fn invalid_status_is_ignored() {
        let t0 = Instant::now();
        let mut tx = udp(t0);
        assert!(!tx.handle_response(t0, 0));
        assert!(!tx.handle_response(t0, 999));
        assert_eq!(tx.state(), NonInviteClientState::Trying);
    }
}
