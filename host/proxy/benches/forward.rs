//! One whole call through the sans-IO proxy core, as a worker runs it:
//! INVITE (100 Trying back, INVITE forwarded), 200 OK (forwarded up), ACK and
//! BYE (forwarded in-dialog by Route), the BYE's 200 (forwarded up), then
//! `handle_timeout`. The fake clock moves 1 ms per call, so the transaction
//! tables hold the ~32 s tail of RFC timers a busy proxy carries. This is the
//! hot path the proxy's counters sit on (see `Stats`).
//!
//! Measured 2026-12-02 on the shared 2-core VM (load average 5-8, other
//! helpers compiling), one run each: 166.9 µs per call before the counters
//! (commit 1d862a6), 172.1 µs after (median estimates, ratio 1.03; the
//! confidence intervals, 153-186 and 162-184 µs, overlap). Too noisy to
//! call; rerun both on a quiet machine.
//!
//! `cargo bench -p viaduct-proxy --bench forward`

mod common;

use bytes::Bytes;
use common::{addr, answer, proxy, sipp_invite};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::{Duration, Instant};
use viaduct_proxy::{Incoming, Proxy, StaticRouter, Transmit, Transport};
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

fn bench(c: &mut Criterion) {
    let mut b = Bench {
        proxy: proxy(Box::new(StaticRouter::new(vec![]))),
        now: Instant::now(),
        n: 0,
        out: Vec::new(),
    };
    // The forwarded INVITE must parse: a sanity check outside the timing.
    b.feed(UAC, sipp_invite(0, "sip:service@127.0.0.1:5062"));
    assert!(Message::parse(&b.to_uas(), Framing::Datagram).is_ok());
    let mut g = c.benchmark_group("forward");
    g.throughput(Throughput::Elements(1));
    g.bench_function("call", |bench| bench.iter(|| b.call()));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
