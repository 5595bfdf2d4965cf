//! Instruction counts for whole calls through the proxy core, the way the
//! SIPp harness (`examples/bench/run`) drives it: the built-in uac and uas
//! scenario (INVITE, 180, 200, ACK, BYE, 200; ACK and BYE relayed by
//! Request-URI, as SIPp's uas does not echo Record-Route), a router that
//! forwards to the uas and adds `X-Room-ID` (what the x-room-id policy asks
//! for, without the Wasm call: that one is `host/policy`'s bench), one
//! `handle_timeout` and one `pending_requests` (what the worker publishes
//! when it goes idle) after each call on a fake clock, so the tables carry
//! the 32 s tail of RFC timers a busy proxy carries.
//!
//! The messages are recorded on a first proxy, then replayed into a second
//! one inside `replay`: only the replay is the proxy's work, so callgrind can
//! count just that (`--toggle-collect`), free of the noise of wall time.
//!
//! ```sh
//! cargo bench -p viaduct-proxy --bench calls --no-run   # prints the binary's path
//! valgrind --tool=callgrind --toggle-collect='calls::replay' \
//!   target/release/deps/calls-<hash> 12000 3
//! ```
//! (12 000 calls, one every 3 ms: 36 s of fake time, past the 32 s after
//! which the first calls' transactions end.) Instructions per call = the
//! `Ir` total / the number of calls.
//! Without valgrind (`cargo bench -p viaduct-proxy --bench calls`) it prints
//! wall time per call, which is noisy on a shared machine.

mod common;

use bytes::Bytes;
use common::{addr, answer, proxy, sipp_invite};
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use viaduct_proxy::{Decision, Incoming, Proxy, RouteRequest, Router, Target, Transport};

const UAC: &str = "127.0.0.1:5061";
const UAS: &str = "127.0.0.1:5062";

/// The router the harness runs, minus Wasm: forward to the uas, add X-Room-ID.
struct RoomRouter;

impl Router for RoomRouter {
    fn route(&mut self, req: &mut RouteRequest<'_, '_>) -> Decision {
        let user = req
            .message
            .request_uri()
            .and_then(|u| u.user)
            .unwrap_or("")
            .to_owned();
        req.edits.add.push(("X-Room-ID".into(), user));
        Decision::Forward(vec![Target::new(format!("sip:{UAS}"))])
    }
}

fn in_dialog(method: &str, n: u64, cseq: u32) -> String {
    format!(
        "{method} sip:127.0.0.1:5062 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-4711-{n}-{cseq}\r\n\
From: sipp <sip:sipp@127.0.0.1:5061>;tag={n}SIPpTag001\r\n\
To: service <sip:service@127.0.0.1:5060>;tag=uas{n}\r\n\
Call-ID: {n}-4711@127.0.0.1\r\n\
CSeq: {cseq} {method}\r\n\
Contact: sip:sipp@127.0.0.1:5061\r\n\
Max-Forwards: 70\r\n\
Subject: Performance Test\r\n\
Content-Length: 0\r\n\r\n"
    )
}

/// One input to the proxy.
enum Step {
    Message(SocketAddr, Bytes),
    /// The clock moves on and the timers due run.
    Tick(Instant),
}

fn feed(
    proxy: &mut Proxy,
    now: Instant,
    from: SocketAddr,
    data: Bytes,
) -> Vec<(SocketAddr, Bytes)> {
    proxy.handle_incoming(
        now,
        Incoming {
            data,
            source: from,
            transport: Transport::Udp,
            flow: None,
        },
    );
    std::iter::from_fn(|| proxy.poll_transmit())
        .map(|t| (t.destination, t.data))
        .collect()
}

/// Runs `calls` calls on a recording proxy from `start`, one every `gap`;
/// returns its inputs and how many messages it sent.
fn record(start: Instant, calls: u64, gap: Duration) -> (Vec<Step>, usize) {
    let (uac, uas) = (addr(UAC), addr(UAS));
    let mut p = proxy(Box::new(RoomRouter));
    let mut now = start;
    let mut steps = Vec::new();
    let (mut sent, mut ticked) = (0, 0);
    let mut send = |p: &mut Proxy, now, from, data: String, steps: &mut Vec<Step>| {
        let data = Bytes::from(data);
        steps.push(Step::Message(from, data.clone()));
        let out = feed(p, now, from, data);
        sent += out.len();
        out.into_iter()
            .find(|(d, _)| *d == uas)
            .map(|(_, b)| b)
            .unwrap_or_default()
    };
    for n in 1..=calls {
        let fwd = send(
            &mut p,
            now,
            uac,
            sipp_invite(n, "sip:service@127.0.0.1:5060"),
            &mut steps,
        );
        let ringing = answer(&fwd, "180 Ringing", true).replace("uas1", &format!("uas{n}"));
        send(&mut p, now, uas, ringing, &mut steps);
        let ok = answer(&fwd, "200 OK", true).replace("uas1", &format!("uas{n}"));
        send(&mut p, now, uas, ok, &mut steps);
        send(&mut p, now, uac, in_dialog("ACK", n, 1), &mut steps);
        let bye = send(&mut p, now, uac, in_dialog("BYE", n, 2), &mut steps);
        assert!(!bye.is_empty(), "BYE of call {n} forwarded");
        send(&mut p, now, uas, answer(&bye, "200 OK", false), &mut steps);
        now += gap;
        p.handle_timeout(now);
        steps.push(Step::Tick(now));
        ticked += std::iter::from_fn(|| p.poll_transmit()).count();
    }
    (steps, sent + ticked)
}

/// The measured part: a fresh proxy takes every recorded input.
#[inline(never)]
fn replay(start: Instant, steps: &[Step]) -> usize {
    let mut p = proxy(Box::new(RoomRouter));
    let mut now = start;
    let mut sent = 0;
    for step in steps {
        match step {
            Step::Message(from, data) => p.handle_incoming(
                now,
                Incoming {
                    data: data.clone(),
                    source: *from,
                    transport: Transport::Udp,
                    flow: None,
                },
            ),
            Step::Tick(t) => {
                now = *t;
                p.handle_timeout(now);
                // What the worker publishes each time it goes idle (about
                // once per call at 1000 calls/s: 0.65 epoll_wait per call).
                black_box(p.pending_requests());
            }
        }
        while let Some(t) = p.poll_transmit() {
            black_box(&t);
            sent += 1;
        }
    }
    sent
}

fn main() {
    // `cargo bench` passes `--bench`; the numbers are the call count and the
    // milliseconds between calls.
    let mut numbers = std::env::args().skip(1).filter_map(|a| a.parse().ok());
    let calls = numbers.next().unwrap_or(40_000u64);
    let gap = Duration::from_millis(numbers.next().unwrap_or(1));
    let start = Instant::now();
    let (steps, sent) = record(start, calls, gap);
    let started = Instant::now();
    let replayed = replay(start, &steps);
    let took = started.elapsed();
    assert_eq!(replayed, sent, "the replay sent what the recording sent");
    println!(
        "calls: {calls}, messages sent: {sent} ({:.2} per call), {:.2} µs per call (wall time)",
        sent as f64 / calls as f64,
        took.as_secs_f64() * 1e6 / calls as f64
    );
}
