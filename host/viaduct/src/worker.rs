//! Proxy workers: each owns one sans-IO [`Proxy`] and its share of the
//! transactions. Messages are sharded by Call-ID, so every message of a
//! dialog is handled by one worker, in arrival order, without locks.

use crate::transport::Outbound;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use viaduct_proxy::{Incoming, Proxy};

/// Messages queued per worker before new ones are dropped (and counted).
const WORKER_QUEUE: usize = 8192;

/// Routes received messages to workers.
pub struct Dispatcher {
    workers: Vec<mpsc::Sender<Incoming>>,
    /// Messages dropped because a worker queue was full.
    pub overflow: AtomicU64,
}

impl Dispatcher {
    /// Hands a message to the worker owning its Call-ID.
    pub fn dispatch(&self, incoming: Incoming) {
        let shard = shard_of(&incoming.data, self.workers.len());
        if self.workers[shard].try_send(incoming).is_err() {
            let n = self.overflow.fetch_add(1, Ordering::Relaxed);
            if n.is_power_of_two() {
                tracing::warn!(dropped = n + 1, "worker queue full: messages dropped");
            }
        }
    }
}

/// Shared view of the workers for drain and status.
#[derive(Default)]
pub struct WorkerStatus {
    /// Set to start draining.
    pub draining: AtomicBool,
    /// Per worker: requests forwarded and not finished (updated while draining).
    pub pending: Vec<AtomicUsize>,
}

/// Creates the dispatcher and the receiving ends for `n` workers.
pub fn channels(n: usize) -> (Arc<Dispatcher>, Vec<mpsc::Receiver<Incoming>>) {
    let (senders, receivers) = (0..n).map(|_| mpsc::channel(WORKER_QUEUE)).unzip();
    (
        Arc::new(Dispatcher {
            workers: senders,
            overflow: AtomicU64::new(0),
        }),
        receivers,
    )
}

/// Runs one worker until its channel closes.
pub async fn run(
    index: usize,
    mut proxy: Proxy,
    mut rx: mpsc::Receiver<Incoming>,
    out: Arc<Outbound>,
    status: Arc<WorkerStatus>,
) {
    let mut draining = false;
    loop {
        let deadline = proxy.poll_timeout();
        tokio::select! {
            biased;
            msg = rx.recv() => match msg {
                Some(incoming) => proxy.handle_incoming(Instant::now(), incoming),
                None => break,
            },
            _ = sleep_until(deadline), if deadline.is_some() => {}
            // Wake up now and then to notice a drain request.
            _ = tokio::time::sleep(std::time::Duration::from_millis(200)), if !draining => {}
        }
        proxy.handle_timeout(Instant::now());
        while let Some(t) = proxy.poll_transmit() {
            out.send(t).await;
        }
        if !draining && status.draining.load(Ordering::Relaxed) {
            draining = true;
            proxy.set_draining(true);
        }
        if draining {
            status.pending[index].store(proxy.pending_requests(), Ordering::Relaxed);
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(at) = deadline {
        tokio::time::sleep_until(at.into()).await;
    }
}

/// Which of `n` workers owns a message: FNV-1a of its Call-ID, or of the
/// whole head when it has none (a malformed message goes anywhere).
pub fn shard_of(data: &[u8], n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let key = call_id_of(data).unwrap_or(&data[..data.len().min(64)]);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % n as u64) as usize
}

/// The Call-ID value (long or compact form) found by scanning header lines.
fn call_id_of(data: &[u8]) -> Option<&[u8]> {
    for line in data.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if name.eq_ignore_ascii_case(b"call-id") || name.eq_ignore_ascii_case(b"i") {
            return Some(line[colon + 1..].trim_ascii());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_responses_of_a_call_share_a_worker() {
        let req = b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\nCall-ID: abc@h\r\n\r\n";
        let resp = b"SIP/2.0 200 OK\r\ni:  abc@h \r\nVia: y\r\n\r\n";
        assert_eq!(call_id_of(req), Some(&b"abc@h"[..]));
        for n in 1..8 {
            assert_eq!(shard_of(req, n), shard_of(resp, n));
        }
    }
}
