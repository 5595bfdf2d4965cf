//! One whole call through the sans-IO proxy core, as a worker runs it:
//! INVITE (100 Trying back, INVITE forwarded), 200 OK (forwarded up), ACK and
//! BYE (forwarded in-dialog by Route), the BYE's 200 (forwarded up), then
//! `handle_timeout`. The fake clock moves 1 ms per call, so the transaction
//! tables hold the ~32 s tail of RFC timers a busy proxy carries. This is the
//! hot path the proxy's counters sit on (see `Stats`).
//!
//! Three routings of the same call: `call` relays by Request-URI (no target
//! list), `targets` forwards to `[routing] targets = [callee]`, and
//! `targets_one_inactive` to `[drained, callee]` with the first next hop
//! inactive, so the per-target drain filter runs for every INVITE (see
//! `TargetStates`).
//!
//! `cargo bench -p viaduct-proxy --bench forward`; `benches/stats-overhead`
//! runs it with the counters compiled in and out, alternated, and prints
//! the ratio (figures in `Stats`' module docs).

mod common;

use bytes::Bytes;
use common::{addr, answer, proxy, sipp_invite};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::sync::Arc;
use std::time::{Duration, Instant};
use viaduct_proxy::{
    Incoming, Proxy, StaticRouter, Target, TargetState, TargetStates, Transmit, Transport,
};
use viaduct_sip::{Framing, Message};

const UAC: &str = "127.0.0.1:5061";
const UAS: &str = "127.0.0.1:5062";

fn in_dialog(method: &str, n: u64, cseq: u32) -> String {
    format!(
        "{method} sip:127.0.0.1:5062 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-4711-{n}-{cseq}\r\n\
Route: <sip:127.0.0.1:5060;lr>\r\n\
From: sipp <sip:sipp@127.0.0.1:5061>;tag={n}SIPpTag001\r\n\
To: service <sip:service@127.0.0.1:5062>;tag=uas1\r\n\
Call-ID: {n}-4711@127.0.0.1\r\n\
CSeq: {cseq} {method}\r\n\
Max-Forwards: 70\r\n\
Content-Length: 0\r\n\r\n"
    )
}

struct Bench {
    proxy: Proxy,
    now: Instant,
    n: u64,
    out: Vec<Transmit>,
}

impl Bench {
    fn feed(&mut self, from: &str, data: String) {
        self.proxy.handle_incoming(
            self.now,
            Incoming {
                data: Bytes::from(data),
                source: addr(from),
                transport: Transport::Udp,
                flow: None,
            },
        );
        self.out.clear();
        while let Some(t) = self.proxy.poll_transmit() {
            self.out.push(t);
        }
    }

    fn to_uas(&self) -> Bytes {
        let uas = addr(UAS);
        self.out
            .iter()
            .find(|t| t.destination == uas)
            .map(|t| t.data.clone())
            .expect("forwarded to the callee")
    }

    fn call(&mut self) {
        self.n += 1;
        let n = self.n;
        self.feed(UAC, sipp_invite(n, "sip:service@127.0.0.1:5062"));
        let fwd = self.to_uas();
        self.feed(UAS, answer(&fwd, "200 OK", true));
        assert!(self.out.iter().any(|t| t.destination == addr(UAC)));
        self.feed(UAC, in_dialog("ACK", n, 1));
        self.feed(UAC, in_dialog("BYE", n, 2));
        let bye = self.to_uas();
        self.feed(UAS, answer(&bye, "200 OK", false));
        self.now += Duration::from_millis(1);
        self.proxy.handle_timeout(self.now);
    }
}

/// A next hop nothing listens on, inactive in `targets_one_inactive`.
const DRAINED: &str = "127.0.0.1:5099";

impl Bench {
    fn new(targets: &[&str], states: Arc<TargetStates>) -> Bench {
        let targets = targets
            .iter()
            .map(|t| Target::new(format!("sip:{t}")))
            .collect();
        let mut b = Bench {
            proxy: proxy(Box::new(StaticRouter::new(targets))),
            now: Instant::now(),
            n: 0,
            out: Vec::new(),
        };
        b.proxy.set_target_states(states);
        // The forwarded INVITE must parse: a sanity check outside the timing.
        b.feed(UAC, sipp_invite(0, "sip:service@127.0.0.1:5062"));
        assert!(Message::parse(&b.to_uas(), Framing::Datagram).is_ok());
        b
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("forward");
    g.throughput(Throughput::Elements(1));
    let mut relay = Bench::new(&[], Arc::default());
    g.bench_function("call", |bench| bench.iter(|| relay.call()));
    let mut targets = Bench::new(&[UAS], Arc::default());
    g.bench_function("targets", |bench| bench.iter(|| targets.call()));
    let states = Arc::new(TargetStates::default());
    states
        .set(addr(DRAINED), TargetState::Inactive)
        .expect("one inactive target");
    let mut drained = Bench::new(&[DRAINED, UAS], states);
    g.bench_function("targets_one_inactive", |bench| {
        bench.iter(|| drained.call())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
