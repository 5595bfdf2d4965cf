//! Proxy workers: each owns one sans-IO [`Proxy`] and its share of the
//! transactions, on its own thread with a single-threaded runtime. Messages
//! are sharded by Call-ID, so every message of a dialog is handled by one
//! worker, in arrival order, without locks.
//!
//! Every worker binds its own SO_REUSEPORT socket per UDP listener and reads
//! it directly: a datagram costs no task hand-off when the kernel delivered
//! it to its owner (always, with one worker). Datagrams for another worker's
//! Call-ID, and messages from connections, arrive through a channel.
//!
//! DNS (RFC 3263) for next hops named by host runs on the main runtime: the
//! worker hands each query its proxy asks for to the shared [`Resolver`]
//! and gets the answer back through a channel of its own.

use crate::dns::Resolver;
use crate::transport::{Connections, Outbound};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use viaduct_proxy::dns::{DnsAnswer, DnsQuery};
use viaduct_proxy::{Incoming, Proxy, Transport};

/// Messages queued per worker before new ones are dropped (and counted).
const WORKER_QUEUE: usize = 8192;
/// Datagrams read from one socket before looking at the others.
const BATCH: usize = 64;
/// Largest UDP datagram.
const MAX_DATAGRAM: usize = 65535;

/// What reaches a worker through its channel.
#[derive(Debug)]
pub enum ToWorker {
    /// A received message (from a connection, or another worker's socket).
    Message(Incoming),
    /// A message the worker's proxy yielded that could not be sent (no
    /// connection could be opened): its transaction fails over at once.
    SendFailed(bytes::Bytes),
}

/// Hands messages to the worker owning their Call-ID.
pub struct Dispatcher {
    workers: Vec<mpsc::Sender<ToWorker>>,
    /// Messages dropped because a worker queue was full.
    pub overflow: AtomicU64,
}

impl Dispatcher {
    /// Sends a message to worker `shard`; drops it (counted, logged now and then) when the queue is full.
    pub fn send(&self, shard: usize, incoming: Incoming) {
        if self.workers[shard]
            .try_send(ToWorker::Message(incoming))
            .is_err()
        {
            let n = self.overflow.fetch_add(1, Ordering::Relaxed);
            if n.is_power_of_two() {
                tracing::warn!(dropped = n + 1, "worker queue full: messages dropped");
            }
        }
    }

    /// Messages waiting in the fullest worker queue (for readiness and metrics).
    pub fn longest_queue(&self) -> usize {
        let len = |w: &mpsc::Sender<ToWorker>| w.max_capacity() - w.capacity();
        self.workers.iter().map(len).max().unwrap_or(0)
    }

    /// Sends a message to the worker owning its Call-ID.
    pub fn dispatch(&self, incoming: Incoming) {
        let shard = shard_of(&incoming.data, self.workers.len());
        self.send(shard, incoming);
    }

    /// Tells the worker that made `data` (the one owning its Call-ID) that
    /// it could not be sent. Dropped when that worker's queue is full: its
    /// transaction then times out as it would have without the report.
    pub fn send_failed(&self, data: bytes::Bytes) {
        let shard = shard_of(&data, self.workers.len());
        let _ = self.workers[shard].try_send(ToWorker::SendFailed(data));
    }
}

/// Shared view of the workers for drain and status.
#[derive(Default)]
pub struct WorkerStatus {
    /// Set to start draining.
    pub draining: AtomicBool,
    /// Per worker: requests forwarded and not finished (updated while draining).
    pub pending: Vec<AtomicUsize>,
    /// Per worker: its counters, for `/metrics` and `/status` (see `metrics.rs`).
    pub slots: Vec<Arc<crate::metrics::WorkerSlot>>,
}

impl WorkerStatus {
    /// The status of `n` workers that have not started.
    pub fn new(n: usize) -> Self {
        WorkerStatus {
            draining: Default::default(),
            pending: (0..n).map(|_| AtomicUsize::new(0)).collect(),
            slots: (0..n).map(|_| Default::default()).collect(),
        }
    }
}

/// Creates the dispatcher and the receiving ends for `n` workers.
pub fn channels(n: usize) -> (Arc<Dispatcher>, Vec<mpsc::Receiver<ToWorker>>) {
    let (senders, receivers) = (0..n).map(|_| mpsc::channel(WORKER_QUEUE)).unzip();
    (
        Arc::new(Dispatcher {
            workers: senders,
            overflow: AtomicU64::new(0),
        }),
        receivers,
    )
}

/// One worker's inputs and outputs.
pub struct Worker {
    pub index: usize,
    pub proxy: Proxy,
    /// This worker's own sockets, one per UDP listener (std sockets, wrapped in `run`).
    pub udp: Vec<std::net::UdpSocket>,
    pub rx: mpsc::Receiver<ToWorker>,
    pub dispatcher: Arc<Dispatcher>,
    pub connections: Arc<Connections>,
    pub status: Arc<WorkerStatus>,
    /// This worker's flood guard, for the datagrams its sockets read.
    pub flood: crate::flood::FloodGuard,
    pub dns: Dns,
}

/// Where a worker's DNS lookups run.
pub struct Dns {
    pub resolver: Arc<Resolver>,
    /// The main runtime (the resolver's sockets live there, not on a worker's thread).
    pub runtime: tokio::runtime::Handle,
}

impl Dns {
    /// Resolves `query` on the main runtime and sends the answer to `back`.
    /// The host names of TLS next hops are remembered for SNI and
    /// certificate checks (RFC 5922 §4: the name the URI gave, not the SRV target).
    fn ask(
        &self,
        query: DnsQuery,
        back: mpsc::UnboundedSender<(DnsQuery, DnsAnswer)>,
        connections: Arc<Connections>,
    ) {
        let resolver = self.resolver.clone();
        self.runtime.spawn(async move {
            let answer = resolver.resolve(&query).await;
            if let Ok(list) = &answer {
                for d in list.iter().filter(|d| d.transport.is_secure()) {
                    connections.remember_name(d.addr, &query.host);
                }
            }
            let _ = back.send((query, answer));
        });
    }
}

/// Runs a worker on the current (single-threaded) runtime until its channel closes.
pub async fn run(w: Worker) -> anyhow::Result<()> {
    let Worker {
        index,
        mut proxy,
        udp,
        mut rx,
        dispatcher,
        connections,
        status,
        mut flood,
        dns,
    } = w;
    let (dns_tx, mut dns_rx) = mpsc::unbounded_channel::<(DnsQuery, DnsAnswer)>();
    let mut sockets: Vec<(SocketAddr, Arc<UdpSocket>)> = Vec::new();
    for s in udp {
        let s = UdpSocket::from_std(s)?;
        sockets.push((s.local_addr()?, Arc::new(s)));
    }
    let out = Outbound::new(sockets.clone(), connections.clone(), dispatcher.clone());
    let shards = status.pending.len();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut draining = false;
    let mut publisher = crate::metrics::Publisher::new(&status.slots, index);
    let sleep = tokio::time::sleep_until(tokio::time::Instant::now());
    tokio::pin!(sleep);
    loop {
        if !draining && status.draining.load(Ordering::Relaxed) {
            draining = true;
            proxy.set_draining(true);
        }
        // Take everything that is ready, then act on it, then wait.
        let mut progressed = false;
        for (_, socket) in &sockets {
            for _ in 0..BATCH {
                match socket.try_recv_from(&mut buf) {
                    Ok((n, source)) => {
                        progressed = true;
                        if !flood
                            .admit(Instant::now(), source.ip(), &buf[..n])
                            .is_admit()
                        {
                            continue;
                        }
                        let data = bytes::Bytes::copy_from_slice(&buf[..n]);
                        let incoming = Incoming {
                            data,
                            source,
                            transport: Transport::Udp,
                            flow: None,
                        };
                        let shard = shard_of(&incoming.data, shards);
                        if shard == index {
                            proxy.handle_incoming(Instant::now(), incoming);
                        } else {
                            dispatcher.send(shard, incoming);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    // ICMP errors surface here; they concern one peer, not the socket.
                    Err(e) => {
                        tracing::debug!(error = %e, "udp receive error");
                        break;
                    }
                }
            }
        }
        while let Ok(msg) = rx.try_recv() {
            progressed = true;
            handle(&mut proxy, msg);
        }
        while let Ok((query, answer)) = dns_rx.try_recv() {
            progressed = true;
            proxy.handle_resolved(Instant::now(), &query, answer);
        }
        proxy.handle_timeout(Instant::now());
        while let Some(query) = proxy.poll_dns() {
            dns.ask(query, dns_tx.clone(), connections.clone());
        }
        while let Some(t) = proxy.poll_transmit() {
            out.send(t).await;
        }
        if draining {
            status.pending[index].store(proxy.pending_requests(), Ordering::Relaxed);
        }
        publisher.publish(&proxy, progressed);
        if progressed {
            continue;
        }
        let deadline = proxy.poll_timeout();
        if let Some(at) = deadline {
            let at = tokio::time::Instant::from_std(at);
            if sleep.deadline() != at {
                sleep.as_mut().reset(at);
            }
        }
        tokio::select! {
            _ = readable(&sockets) => {}
            msg = rx.recv() => match msg {
                Some(msg) => handle(&mut proxy, msg),
                None => return Ok(()),
            },
            Some((query, answer)) = dns_rx.recv() => proxy.handle_resolved(Instant::now(), &query, answer),
            _ = &mut sleep, if deadline.is_some() => {}
            // Idle workers look at the drain flag now and then.
            _ = tokio::time::sleep(std::time::Duration::from_millis(250)), if !draining && deadline.is_none() => {}
        }
    }
}

fn handle(proxy: &mut Proxy, msg: ToWorker) {
    match msg {
        ToWorker::Message(incoming) => proxy.handle_incoming(Instant::now(), incoming),
        ToWorker::SendFailed(data) => proxy.handle_send_failure(Instant::now(), &data),
    }
}

/// Resolves when any of the sockets has a datagram to read.
async fn readable(sockets: &[(SocketAddr, Arc<UdpSocket>)]) {
    poll_fn(|cx| {
        for (_, s) in sockets {
            if s.poll_recv_ready(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    })
    .await
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
