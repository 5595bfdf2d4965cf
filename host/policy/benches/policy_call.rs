//! One `on-request` call of the x-room-id policy, through the same
//! `PolicyRouter` the proxy workers use.
//!
//! Needs the compiled policy: run `policies/build` first.
//! `cargo bench -p viaduct-policy --bench policy_call`

use criterion::{criterion_group, criterion_main, Criterion};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use viaduct_policy::{FailAction, InstanceStrategy, PolicyHost, PolicyRouter, PolicySettings};
use viaduct_proxy::{RouteRequest, Router, Transport};
use viaduct_sip::{Framing, Message};

const INVITE: &[u8] = b"INVITE sip:room-42@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1-0\r\n\
From: sipp <sip:sipp@127.0.0.1:5070>;tag=1SIPpTag001\r\n\
To: room <sip:room-42@127.0.0.1:5060>\r\n\
Call-ID: 1-4242@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: sip:sipp@127.0.0.1:5070\r\n\
Max-Forwards: 70\r\n\
X-Room-ID: forged\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 0\r\n\r\n";

fn host(deadline: Duration, memory: usize) -> Arc<PolicyHost> {
    let file =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/policies/x-room-id.wasm");
    assert!(
        file.exists(),
        "{} is missing: run policies/build first",
        file.display()
    );
    let settings = PolicySettings {
        file,
        config: vec![("backends".into(), "sip:127.0.0.1:5080".into())],
        deadline,
        init_deadline: Duration::from_secs(1),
        memory_limit: memory,
        fail_action: FailAction::Reject,
        cache_dir: None,
    };
    let host = PolicyHost::new(settings).expect("engine");
    host.reload().expect("policy loads");
    host
}

fn bench(c: &mut Criterion) {
    let msg = Message::parse(INVITE, Framing::Datagram).expect("parses");
    let source = "127.0.0.1:5070".parse().expect("addr");
    let mut group = c.benchmark_group("policy");
    for (name, deadline, memory, strategy) in [
        (
            "on_request/per_worker",
            Duration::from_millis(5),
            64 << 20,
            InstanceStrategy::PerWorker,
        ),
        (
            "on_request/per_worker_no_limits",
            Duration::from_secs(3600),
            usize::MAX,
            InstanceStrategy::PerWorker,
        ),
        (
            "on_request/fresh_instance_per_call",
            Duration::from_millis(5),
            64 << 20,
            InstanceStrategy::PerCall,
        ),
    ] {
        let mut router =
            PolicyRouter::new(host(deadline, memory), Arc::new(vec![])).with_strategy(strategy);
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut req = RouteRequest::new(&msg, source, Transport::Udp);
                router.route(&mut req)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
