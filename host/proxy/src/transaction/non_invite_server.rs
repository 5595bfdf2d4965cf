//! Non-INVITE server transaction (RFC 3261 §17.2.2).

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use super::{Class, Deadline, Timers, TxEvent};

/// States of the non-INVITE server transaction (RFC 3261 Figure 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonInviteServerState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// A sans-IO non-INVITE server transaction.
#[derive(Debug)]
pub struct NonInviteServer {
    state: NonInviteServerState,
    timers: Timers,
    reliable: bool,
    provisional: Option<Bytes>,
    final_response: Option<Bytes>,
    timer_j: Deadline,
    transmits: VecDeque<Bytes>,
    events: VecDeque<TxEvent>,
}

impl NonInviteServer {
    /// Creates the transaction for a newly received non-INVITE request.
    // RFC 3261 §17.2.2: the machine starts in Trying with no timer running;
    // the client drives retransmission.
    pub fn new(_now: Instant, timers: Timers, reliable: bool) -> Self {
        Self {
            state: NonInviteServerState::Trying,
            timers,
            reliable,
            provisional: None,
            final_response: None,
            timer_j: Deadline::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Feeds a retransmission of the request that created this transaction.
    pub fn handle_request_retransmit(&mut self, _now: Instant) {
        let resend = match self.state {
            // RFC 3261 §17.2.2: the TU has nothing to say yet.
            NonInviteServerState::Trying | NonInviteServerState::Terminated => None,
            // RFC 3261 §17.2.2: the client missed our provisional.
            NonInviteServerState::Proceeding => self.provisional.as_ref(),
            // RFC 3261 §17.2.2: the client missed our final response.
            NonInviteServerState::Completed => self.final_response.as_ref(),
        };
        if let Some(r) = resend {
            self.transmits.push_back(r.clone());
        }
    }

    /// Sends a response from the TU through the transaction.
    pub fn send_response(&mut self, now: Instant, status: u16, response: Bytes) {
        use NonInviteServerState::*;
        match (self.state, Class::of(status)) {
            // RFC 3261 §17.2.2: keep the latest provisional to answer request
            // retransmissions.
            (Trying | Proceeding, Some(Class::Provisional)) => {
                self.transmits.push_back(response.clone());
                self.provisional = Some(response);
                self.state = Proceeding;
            }
            // RFC 3261 §17.2.2: Timer J absorbs request retransmissions for
            // as long as the client may send them; zero over reliable
            // transports, where the client does not retransmit.
            (Trying | Proceeding, Some(Class::Success | Class::Failure)) => {
                self.transmits.push_back(response.clone());
                self.final_response = Some(response);
                self.state = Completed;
                if self.reliable {
                    self.terminate();
                } else {
                    self.timer_j.arm(now, self.timers.timer_j);
                }
            }
            // RFC 3261 §17.2.2: any other response from the TU after the
            // final one is discarded.
            _ => {}
        }
    }

    /// Fires every timer due at `now`. Calling early is harmless.
    // RFC 3261 §17.2.2: Timer J ends the absorption period.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == NonInviteServerState::Completed && self.timer_j.is_due(now) {
            self.terminate();
        }
    }

    /// The next message to put on the wire, if any.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmits.pop_front()
    }

    /// When `handle_timeout` must next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer_j.at()
    }

    /// The next event for the TU, if any.
    pub fn poll_event(&mut self) -> Option<TxEvent> {
        self.events.pop_front()
    }

    pub fn state(&self) -> NonInviteServerState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == NonInviteServerState::Terminated
    }

    fn terminate(&mut self) {
        if self.state == NonInviteServerState::Terminated {
            return;
        }
        self.state = NonInviteServerState::Terminated;
        self.timer_j.disarm();
        self.events.push_back(TxEvent::Terminated);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn drain(tx: &mut NonInviteServer) -> Vec<Bytes> {
        std::iter::from_fn(|| tx.poll_transmit()).collect()
    }

    fn events(tx: &mut NonInviteServer) -> Vec<TxEvent> {
        std::iter::from_fn(|| tx.poll_event()).collect()
    }

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    fn udp(t0: Instant) -> NonInviteServer {
        NonInviteServer::new(t0, Timers::default(), false)
    }

    #[test]
    fn retransmit_absorbed_in_trying() {
        let t0 = Instant::now();
        let mut tx = udp(t0);
        tx.handle_request_retransmit(t0 + Duration::from_millis(500));
        assert!(drain(&mut tx).is_empty());
        assert_eq!(tx.state(), NonInviteServerState::Trying);
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn retransmit_in_proceeding_resends_latest_provisional() {
        let t0 = Instant::now();
        let mut tx = udp(t0);
        tx.send_response(t0, 100, b("100"));
        assert_eq!(tx.state(), NonInviteServerState::Proceeding);
        tx.send_response(t0, 183, b("183"));
        assert_eq!(drain(&mut tx), vec![b("100"), b("183")]);
        tx.handle_request_retransmit(t0 + Duration::from_millis(500));
        assert_eq!(drain(&mut tx), vec![b("183")]);
    }

    #[test]
    fn final_resent_in_completed_and_timer_j_terminates() {
        let t0 = Instant::now();
        let mut tx = udp(t0);
        tx.send_response(t0, 100, b("100"));
        let t = t0 + Duration::from_millis(300);
        tx.send_response(t, 200, b("200"));
        assert_eq!(drain(&mut tx), vec![b("100"), b("200")]);
        assert_eq!(tx.state(), NonInviteServerState::Completed);

        tx.handle_request_retransmit(t + Duration::from_secs(1));
        assert_eq!(drain(&mut tx), vec![b("200")]);
        // Later responses from the TU are discarded.
        tx.send_response(t + Duration::from_secs(1), 500, b("500"));
        tx.send_response(t + Duration::from_secs(1), 180, b("180"));
        assert!(drain(&mut tx).is_empty());

        assert_eq!(tx.poll_timeout(), Some(t + Duration::from_secs(32)));
        tx.handle_timeout(t + Duration::from_millis(31_999));
        assert_eq!(tx.state(), NonInviteServerState::Completed);
        tx.handle_timeout(t + Duration::from_secs(32));
        assert!(tx.is_terminated());
        assert_eq!(events(&mut tx), vec![TxEvent::Terminated]);
        assert_eq!(tx.poll_timeout(), None);

        tx.handle_request_retransmit(t + Duration::from_secs(33));
        tx.handle_timeout(t + Duration::from_secs(64));
        assert!(drain(&mut tx).is_empty());
        assert!(events(&mut tx).is_empty());
    }

    #[test]
    fn reliable_final_terminates_immediately() {
        let t0 = Instant::now();
        let mut tx = NonInviteServer::new(t0, Timers::default(), true);
        tx.send_response(t0, 404, b("404"));
        assert_eq!(drain(&mut tx), vec![b("404")]);
        assert!(tx.is_terminated());
        assert_eq!(events(&mut tx), vec![TxEvent::Terminated]);
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn invalid_status_is_ignored() {
        let t0 = Instant::now();
        let mut tx = udp(t0);
        tx.send_response(t0, 42, b("junk"));
        assert!(drain(&mut tx).is_empty());
        assert_eq!(tx.state(), NonInviteServerState::Trying);
    }
}
