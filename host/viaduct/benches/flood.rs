//! What the flood guard costs per datagram, on one core:
//!
//! * `banned`: the bulk of a flood, a banned source's datagrams (the figure
//!   for "messages per second dropped");
//! * `admitted`: a legitimate source under its limit (the cost every call
//!   pays: one hash lookup, the size check, the header count);
//! * `spray`: a new source per datagram with the table full (the worst case
//!   a scanner spraying addresses can force).
//!
//!   cargo bench -p viaduct --bench flood
//!
//! The guard lives in the binary crate; the bench compiles its file directly.

#[allow(dead_code)]
#[path = "../src/flood.rs"]
mod flood;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flood::{FloodGuard, FloodSettings};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

const OPTIONS: &[u8] = b"OPTIONS sip:100@192.0.2.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-1;rport\r\n\
From: \"100\" <sip:100@192.0.2.1>;tag=a\r\n\
To: \"100\" <sip:100@192.0.2.1>\r\n\
Call-ID: 1234@198.51.100.7\r\n\
CSeq: 1 OPTIONS\r\n\
Max-Forwards: 70\r\n\
User-Agent: friendly-scanner\r\n\
Content-Length: 0\r\n\r\n";

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("flood_guard");
    group.throughput(Throughput::Elements(1));
    let now = Instant::now();

    let mut g = FloodGuard::new(
        FloodSettings {
            max_messages: 10,
            ..FloodSettings::default()
        },
        Arc::default(),
    );
    let flooder = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
    for _ in 0..10 {
        g.admit(now, flooder, OPTIONS);
    }
    group.bench_function("banned", |b| {
        b.iter(|| black_box(g.admit(now, black_box(flooder), black_box(OPTIONS))))
    });

    let mut g = FloodGuard::new(FloodSettings::default(), Arc::default());
    let trunk = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
    let mut t = now;
    group.bench_function("admitted", |b| {
        b.iter(|| {
            // 1 ms apart: 500 per window, well under the limit.
            t += Duration::from_millis(1);
            black_box(g.admit(t, black_box(trunk), black_box(OPTIONS)))
        })
    });

    let mut g = FloodGuard::new(
        FloodSettings {
            max_sources: 1024,
            ..FloodSettings::default()
        },
        Arc::default(),
    );
    let mut n: u32 = 0;
    group.bench_function("spray", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            let src = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (n & 0x00ff_ffff)));
            black_box(g.admit(now, src, black_box(OPTIONS)))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
