//! Transaction lookup: what one message costs when the worker already holds
//! `n` live calls (each an INVITE server transaction and its client branch).
//! A flat line across `n` means lookup and timers stay O(1) / O(log n) per
//! message, so the latency growth with the call rate is not in the core.
//!
//! - `response/n`: a 180 for one of the calls (client lookup by our branch,
//!   server lookup, forward upstream).
//! - `retransmission/n`: the caller's INVITE again (server lookup by its
//!   branch; absorbed, the last provisional is resent).
//!
//! `cargo bench -p viaduct-proxy --bench transaction_lookup`

mod common;

use bytes::Bytes;
use common::{addr, answer, proxy};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use std::time::Instant;
use viaduct_proxy::{Incoming, Proxy, StaticRouter, Target, Transport};

const UAC: &str = "127.0.0.1:5061";
const UAS: &str = "127.0.0.1:5070";

fn invite(i: usize) -> Bytes {
    Bytes::from(format!(
        "INVITE sip:service@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-4711-{i}-0;rport\r\n\
         From: sipp <sip:sipp@127.0.0.1:5061>;tag=4711SIPpTag00{i}\r\n\
         To: service <sip:service@127.0.0.1:5060>\r\n\
         Call-ID: {i}-4711@127.0.0.1\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: sip:sipp@127.0.0.1:5061\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    ))
}

/// A proxy holding `n` calls in Proceeding, and the 180 for the last one.
fn loaded(n: usize, now: Instant) -> (Proxy, Bytes) {
    let router = StaticRouter::new(vec![Target::new(format!("sip:{UAS}"))]);
    let mut proxy = proxy(Box::new(router));
    let mut last = Bytes::new();
    for i in 0..n {
        proxy.handle_incoming(now, udp(invite(i)));
        while let Some(t) = proxy.poll_transmit() {
            if t.destination == addr(UAS) {
                last = t.data;
            }
        }
    }
    let response = Bytes::from(answer(&last, "180 Ringing", true));
    // The first 180 moves the call to Proceeding; every later one is handled alike.
    proxy.handle_incoming(
        now,
        Incoming {
            source: addr(UAS),
            ..udp(response.clone())
        },
    );
    while proxy.poll_transmit().is_some() {}
    (proxy, response)
}

fn udp(data: Bytes) -> Incoming {
    Incoming {
        data,
        source: addr(UAC),
        transport: Transport::Udp,
        flow: None,
    }
}

fn lookup(c: &mut Criterion) {
    let now = Instant::now();
    let mut g = c.benchmark_group("transaction_lookup");
    for n in [1usize, 10_000, 100_000] {
        let (mut proxy, response) = loaded(n, now);
        g.bench_with_input(BenchmarkId::new("response", n), &response, |b, r| {
            b.iter(|| {
                proxy.handle_incoming(
                    now,
                    Incoming {
                        source: addr(UAS),
                        ..udp(r.clone())
                    },
                );
                while let Some(t) = proxy.poll_transmit() {
                    black_box(t);
                }
            })
        });
        let again = invite(n - 1);
        g.bench_with_input(BenchmarkId::new("retransmission", n), &again, |b, m| {
            b.iter(|| {
                proxy.handle_incoming(now, udp(m.clone()));
                while let Some(t) = proxy.poll_transmit() {
                    black_box(t);
                }
            })
        });
        assert_eq!(proxy.transactions().0, n, "every call still live");
    }
    g.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
