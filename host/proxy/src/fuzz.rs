//! Fuzzing entry points, shared by the cargo-fuzz targets in `fuzz/` and the
//! proptest properties in `tests/properties.rs`, so CI on stable runs the
//! same code the fuzzer does. They panic when a property fails: they are
//! oracles, and nothing else calls them.

use crate::transaction::{
    InviteClient, InviteServer, NonInviteClient, NonInviteServer, Timers, TxEvent,
};
use crate::{Incoming, Listener, Proxy, ProxyConfig, StaticRouter, Target, Transport};
use bytes::Bytes;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Status codes the transaction driver picks from (every class, the edges).
const STATUSES: [u16; 14] = [
    100, 180, 183, 199, 200, 202, 299, 300, 404, 487, 500, 503, 600, 699,
];

/// Upper bound on timer firings after the events (every machine ends well
/// within 64*T1 plus Timer D, a few dozen firings).
const MAX_FIRINGS: usize = 10_000;

enum Machine {
    InviteClient(InviteClient),
    NonInviteClient(NonInviteClient),
    InviteServer(InviteServer),
    NonInviteServer(NonInviteServer),
}

impl Machine {
    fn handle_timeout(&mut self, now: Instant) {
        match self {
            Machine::InviteClient(m) => m.handle_timeout(now),
            Machine::NonInviteClient(m) => m.handle_timeout(now),
            Machine::InviteServer(m) => m.handle_timeout(now),
            Machine::NonInviteServer(m) => m.handle_timeout(now),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Machine::InviteClient(m) => m.poll_timeout(),
            Machine::NonInviteClient(m) => m.poll_timeout(),
            Machine::InviteServer(m) => m.poll_timeout(),
            Machine::NonInviteServer(m) => m.poll_timeout(),
        }
    }

    /// Drains transmits and events; counts Terminated events.
    fn drain(&mut self) -> usize {
        let mut terminated = 0;
        loop {
            let (t, e) = match self {
                Machine::InviteClient(m) => (m.poll_transmit(), m.poll_event()),
                Machine::NonInviteClient(m) => (m.poll_transmit(), m.poll_event()),
                Machine::InviteServer(m) => (m.poll_transmit(), m.poll_event()),
                Machine::NonInviteServer(m) => (m.poll_transmit(), m.poll_event()),
            };
            if e == Some(TxEvent::Terminated) {
                terminated += 1;
            }
            if t.is_none() && e.is_none() {
                return terminated;
            }
        }
    }

    fn is_terminated(&self) -> bool {
        match self {
            Machine::InviteClient(m) => m.is_terminated(),
            Machine::NonInviteClient(m) => m.is_terminated(),
            Machine::InviteServer(m) => m.is_terminated(),
            Machine::NonInviteServer(m) => m.is_terminated(),
        }
    }

    /// Plays the transaction user's part once the events are over: a server
    /// transaction gets a final response (the proxy core always sends one:
    /// the callee's, 408 after Timer C, or 500), a ringing INVITE client
    /// gets the 487 that its CANCEL brings. Then only time passes.
    fn finish_as_tu(&mut self, now: Instant) {
        match self {
            Machine::InviteServer(m) if m.last_final_status().is_none() => {
                m.send_response(now, 500, Bytes::from_static(b"SIP/2.0 500 x\r\n\r\n"));
            }
            Machine::NonInviteServer(m) => {
                m.send_response(now, 500, Bytes::from_static(b"SIP/2.0 500 x\r\n\r\n"));
            }
            Machine::InviteClient(m) => {
                m.handle_response(now, 487, || Bytes::from_static(b"ACK"));
            }
            _ => {}
        }
    }
}

/// Drives one transaction machine through the events `ops` encodes (the
/// first byte picks the machine and the transport), then lets the
/// transaction user finish and time pass. Properties: nothing panics, the
/// machine ends in Terminated, and says so exactly once.
pub fn transactions(ops: &[u8]) {
    let (&kind, ops) = ops.split_first().unwrap_or((&0, &[]));
    let reliable = kind & 4 != 0;
    let timers = Timers::default();
    let start = Instant::now();
    let mut now = start;
    let request = Bytes::from_static(b"REQUEST");
    let mut m = match kind % 4 {
        0 => Machine::InviteClient(InviteClient::new(now, timers, request, reliable)),
        1 => Machine::NonInviteClient(NonInviteClient::new(now, timers, request, reliable)),
        2 => Machine::InviteServer(InviteServer::new(now, timers, reliable)),
        _ => Machine::NonInviteServer(NonInviteServer::new(now, timers, reliable)),
    };
    let mut terminated = 0;
    for &op in ops {
        let status = STATUSES[usize::from(op >> 4) % STATUSES.len()];
        let response = || Bytes::from(format!("SIP/2.0 {status} x\r\n\r\n"));
        match op & 0x0f {
            // Time passes: 0 to 3.2 s, then whatever timers are due fire.
            0..=4 => {
                now += Duration::from_millis(u64::from(op >> 4) * 200 + u64::from(op & 3) * 7);
                m.handle_timeout(now);
            }
            5..=9 => match &mut m {
                Machine::InviteClient(c) => {
                    c.handle_response(now, status, || Bytes::from_static(b"ACK"));
                }
                Machine::NonInviteClient(c) => {
                    c.handle_response(now, status);
                }
                Machine::InviteServer(s) => s.send_response(now, status.max(101), response()),
                Machine::NonInviteServer(s) => s.send_response(now, status.max(101), response()),
            },
            10 | 11 => match &mut m {
                Machine::InviteClient(c) => c.handle_transport_error(now),
                Machine::NonInviteClient(c) => c.handle_transport_error(now),
                Machine::InviteServer(s) => s.handle_request_retransmit(now),
                Machine::NonInviteServer(s) => s.handle_request_retransmit(now),
            },
            _ => {
                if let Machine::InviteServer(s) = &mut m {
                    s.handle_ack(now);
                }
            }
        }
        terminated += m.drain();
    }
    m.finish_as_tu(now);
    terminated += m.drain();
    for _ in 0..MAX_FIRINGS {
        let Some(at) = m.poll_timeout() else { break };
        now = now.max(at);
        m.handle_timeout(now);
        terminated += m.drain();
    }
    assert!(
        m.is_terminated(),
        "not Terminated {:?} after the events and every timer",
        now - start
    );
    assert_eq!(terminated, 1, "Terminated reported {terminated} times");
}

/// The placeholder a fuzz input uses for "the branch of the last request
/// the proxy sent", so responses can match client transactions.
pub const LAST_BRANCH: &[u8] = b"$BRANCH";

/// Feeds the proxy core the messages of `data`, split at `\0\0` (one
/// datagram each, from one of three sources, one second apart; `$BRANCH` is
/// replaced by the branch of the last request the proxy sent), with a
/// static target when the first byte is even, then lets ten minutes pass.
/// Property: nothing panics, and once every timer ran no request is left
/// waiting for its final answer.
pub fn proxy(data: &[u8]) {
    let me: SocketAddr = ([127, 0, 0, 1], 5060).into();
    let targets = if data.first().is_some_and(|b| b % 2 == 0) {
        vec![Target::new("sip:127.0.0.1:5070")]
    } else {
        Vec::new()
    };
    let config = ProxyConfig {
        listeners: vec![Listener {
            transport: Transport::Udp,
            addr: me,
        }],
        timers: Timers::default(),
        timer_c: Duration::from_secs(180),
        record_route: true,
    };
    let mut proxy = Proxy::new(config, Box::new(StaticRouter::new(targets)));
    let sources: [SocketAddr; 3] = [
        ([127, 0, 0, 1], 5070).into(),
        ([127, 0, 0, 2], 5080).into(),
        ([10, 0, 0, 1], 5060).into(),
    ];
    let start = Instant::now();
    let mut now = start;
    let mut last_branch: Vec<u8> = b"z9hG4bK-none".to_vec();
    for (i, chunk) in split(data).enumerate() {
        let message = replace(chunk, LAST_BRANCH, &last_branch);
        proxy.handle_incoming(
            now,
            Incoming {
                data: Bytes::from(message),
                source: sources[i % sources.len()],
                transport: Transport::Udp,
                flow: None,
            },
        );
        proxy.handle_timeout(now);
        while let Some(t) = proxy.poll_transmit() {
            if let Some(b) = top_branch(&t.data) {
                last_branch = b;
            }
        }
        // Debug builds check the kept count against the table here.
        let _ = proxy.pending_requests();
        now += Duration::from_secs(1);
    }
    let end = now + Duration::from_secs(600);
    for _ in 0..MAX_FIRINGS {
        let Some(at) = proxy.poll_timeout() else {
            break;
        };
        if at > end {
            break;
        }
        now = now.max(at);
        proxy.handle_timeout(now);
        while proxy.poll_transmit().is_some() {}
    }
    // Timer C (180 s) and Timer B/F (32 s) answer everything well before ten minutes.
    now = now.max(end);
    proxy.handle_timeout(now);
    assert_eq!(
        proxy.pending_requests(),
        0,
        "requests still waiting for a final answer after ten minutes"
    );
}

fn split(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match rest.windows(2).position(|w| w == b"\0\0") {
            Some(i) => {
                let (chunk, tail) = rest.split_at(i);
                rest = &tail[2..];
                Some(chunk)
            }
            None => Some(std::mem::take(&mut rest)),
        }
    })
}

fn replace(data: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    out
}

fn top_branch(data: &[u8]) -> Option<Vec<u8>> {
    let msg = viaduct_sip::Message::parse(data, viaduct_sip::Framing::Datagram).ok()?;
    msg.top_via()?.branch().map(<[u8]>::to_vec)
}
