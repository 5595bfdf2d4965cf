//! Latency of one state call, per backend: `increment` with a TTL (the
//! rate-limit policy's call) and `get`, 10k calls each after 1k to warm up,
//! one thread, p50 / p99 / p99.9. Redis is a redis-server of its own on
//! loopback (Debian's `redis-server` must be installed).
//!
//! Percentiles, not criterion's mean: what a tail costs is the question.
//! On the 2-core VM, quiet (with another build running, Redis took 3x):
//!
//! ```text
//! memory/increment+ttl             p50   1.0 µs  p99  10.2 µs
//! memory/get                       p50   0.14 µs p99   2.1 µs
//! redis (loopback)/increment+ttl   p50  19.1 µs  p99  31-40 µs
//! redis (loopback)/get             p50  17.2 µs  p99  25-28 µs
//! ```
//!
//! Three runs on 2026-12-06 13:55 UTC, another 2-core VM, nothing else
//! running in it (load 1.3-1.5): moka the same (increment p50 0.84-0.87 µs,
//! p99 8.2 µs), Redis ~3x slower (increment p50 60 µs, p99 92-125 µs; get
//! p50 54 µs, p99 78-96 µs): the loopback round trip is what varies.
//!
//! `cargo bench -p viaduct-policy --bench state`

#[path = "../tests/support/redis_server.rs"]
mod redis_server;

use redis_server::RedisServer;
use std::time::{Duration, Instant};
use viaduct_policy::state::{MemoryState, RedisSettings, RedisState, State};

const WARM_UP: usize = 1_000;
const CALLS: usize = 10_000;

fn percentiles(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "{name:<28} p50 {:>9.1?}  p99 {:>9.1?}  p99.9 {:>9.1?}  max {:>9.1?}",
        at(0.5),
        at(0.99),
        at(0.999),
        samples[samples.len() - 1]
    );
}

fn measure(name: &str, state: &dyn State) {
    let ttl = Some(Duration::from_secs(2));
    let mut samples = Vec::with_capacity(CALLS);
    for i in 0..WARM_UP + CALLS {
        // One key per "second" of 1000 calls, as the rate limit makes them.
        let key = format!("rl:192.0.2.1:{}", i / 1000);
        let started = Instant::now();
        let n = state.increment(key.as_bytes(), 1, ttl).expect("increment");
        let took = started.elapsed();
        std::hint::black_box(n);
        if i >= WARM_UP {
            samples.push(took);
        }
    }
    percentiles(&format!("{name}/increment+ttl"), samples);
    let mut samples = Vec::with_capacity(CALLS);
    for i in 0..WARM_UP + CALLS {
        let key = format!("rl:192.0.2.1:{}", i % 10);
        let started = Instant::now();
        let v = state.get(key.as_bytes()).expect("get");
        let took = started.elapsed();
        std::hint::black_box(v);
        if i >= WARM_UP {
            samples.push(took);
        }
    }
    percentiles(&format!("{name}/get"), samples);
}

fn main() {
    measure("memory", &MemoryState::default());
    let server = RedisServer::start();
    let redis = RedisState::open(RedisSettings {
        url: server.url(),
        timeout: Duration::from_millis(50),
        prefix: "bench:".into(),
    })
    .expect("redis URL");
    measure("redis (loopback)", &redis);
    drop(redis);
    drop(server);
}
