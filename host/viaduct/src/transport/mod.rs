//! Sockets: UDP (socket2-tuned), and connections over TCP and TLS
//! (Content-Length framing, RFC 3261 §18.3) and WebSocket (RFC 7118, one
//! SIP message per WebSocket message). Bytes in, bytes out; no SIP logic
//! beyond finding where a stream message ends and which worker owns a Call-ID.
//!
//! Connections are shared by every worker ([`Connections`]): each has an id
//! (the proxy core's `FlowId`) and a writer task fed by a queue. Responses
//! and in-dialog requests name the flow they belong to and go back over it
//! (RFC 3261 §18.2.2; the core's flow tokens for requests). A connection we
//! opened is also found by its remote address and transport, so the next
//! request to that next hop reuses it (RFC 5923's alias, without the `alias`
//! parameter: we never connect twice to one address while a connection is up).
//!
//! Limits: connections in total and per source IP ([`Limits`]), the
//! largest message, an idle timeout (traffic of any kind, keep-alives
//! included, restarts it), a TLS/WebSocket handshake timeout. A framing error
//! closes only that connection. A double-CRLF keep-alive gets its CRLF
//! answer (RFC 5626 §3.5.1).
//!
//! Not here: Viaduct never opens a WebSocket itself (browsers and gateways
//! connect to it; a request toward a WebSocket peer whose connection is gone
//! is dropped with a log line and its transaction times out), and RFC 3261
//! §18.1.1's switch to TCP for large requests bound for a UDP next hop (a
//! next hop that wants TCP says `;transport=tcp`).

mod stream;
mod ws;

use crate::flood::FloodGuard;
use crate::tls::Tls;
use crate::worker::Dispatcher;
use anyhow::{Context as _, Result};
use bytes::Bytes;
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use viaduct_proxy::{FlowId, Transmit, Transport};

pub use stream::accept;

/// Messages queued for one connection before sends to it are dropped (and
/// reported to their transactions). Memory is taken as messages queue, not
/// up front; one trunk connection may carry thousands of calls.
const CONNECTION_QUEUE: usize = 8192;
/// How long an outbound TCP connect (and TLS handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A UDP socket with large buffers and SO_REUSEPORT, so every worker can
/// bind its own socket to the listen address and the kernel spreads
/// datagrams over them. Blocking mode off; wrap it in the worker's runtime.
pub fn bind_udp(addr: SocketAddr, buffer: usize) -> Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // Best effort: the kernel caps these at net.core.{r,w}mem_max.
    let _ = socket.set_recv_buffer_size(buffer);
    let _ = socket.set_send_buffer_size(buffer);
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .with_context(|| format!("binding udp:{addr}"))?;
    Ok(socket.into())
}

/// A listening socket for a stream transport (TCP, TLS, WS, WSS) with SO_REUSEADDR.
pub fn bind_stream(transport: Transport, addr: SocketAddr) -> Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .with_context(|| format!("binding {}:{addr}", transport.uri_param()))?;
    socket.listen(1024)?;
    Ok(TcpListener::from_std(socket.into())?)
}

/// Bounds on connections (`[server]` settings).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open connections at most, inbound and outbound.
    pub max_connections: usize,
    /// Inbound connections from one IP address at most.
    pub max_per_ip: usize,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// How long a TLS or WebSocket handshake may take.
    pub handshake_timeout: Duration,
    /// Largest SIP message on a connection.
    pub max_message: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            max_per_ip: 256,
            idle_timeout: Duration::from_secs(600),
            handshake_timeout: Duration::from_secs(5),
            max_message: 65535,
        }
    }
}

/// Why a connection was refused or closed, for the log and `/status`.
#[derive(Debug, Default)]
pub struct ConnectionCounters {
    /// Connections accepted or opened.
    pub opened: AtomicU64,
    /// Refused at accept: over `max_connections` or `max_per_ip`.
    pub refused: AtomicU64,
    /// TLS or WebSocket handshakes that failed or timed out.
    pub handshake_failed: AtomicU64,
    /// Closed for a framing error or an oversized message.
    pub framing_errors: AtomicU64,
    /// Closed after `idle_timeout` without traffic.
    pub idle_closed: AtomicU64,
}

struct Entry {
    tx: mpsc::Sender<Bytes>,
    key: (SocketAddr, Transport),
    inbound: bool,
}

#[derive(Default)]
struct Table {
    by_id: HashMap<FlowId, Entry>,
    by_addr: HashMap<(SocketAddr, Transport), FlowId>,
    per_ip: HashMap<IpAddr, usize>,
}

/// Open connections, by id and by remote address, for replies and reuse;
/// the TLS material; the flood guard every stream message passes first.
pub struct Connections {
    next: AtomicU64,
    table: Mutex<Table>,
    /// Shared by all connections (stream traffic is light next to UDP; one lock per message).
    flood: Mutex<Option<FloodGuard>>,
    /// Certificates for TLS and WSS, when a listener or next hop needs them.
    pub tls: Option<Arc<Tls>>,
    /// The host names TLS next hops were found by (RFC 5922 §4: the name a
    /// certificate must match, and SNI), filled by the DNS resolver.
    names: Mutex<HashMap<SocketAddr, String>>,
    pub limits: Limits,
    pub counters: ConnectionCounters,
}

/// A slot for a new inbound connection; given back when dropped unless the
/// connection was registered (then it goes with the connection).
pub struct Admission {
    connections: Arc<Connections>,
    ip: Option<IpAddr>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            self.connections.release_ip(ip);
        }
    }
}

impl Connections {
    /// Connections whose messages pass `flood` before they reach a worker.
    pub fn new(flood: FloodGuard, tls: Option<Arc<Tls>>, limits: Limits) -> Self {
        Connections {
            next: AtomicU64::new(0),
            table: Mutex::default(),
            flood: Mutex::new(Some(flood)),
            tls,
            names: Mutex::default(),
            limits,
            counters: ConnectionCounters::default(),
        }
    }

    /// Open connections now.
    pub fn open(&self) -> usize {
        lock(&self.table).by_id.len()
    }

    /// Takes a slot for an inbound connection from `peer`, or refuses it
    /// (over the total or per-IP cap).
    pub fn admit_connection(self: &Arc<Self>, peer: SocketAddr) -> Option<Admission> {
        let mut t = lock(&self.table);
        let from_ip = t.per_ip.get(&peer.ip()).copied().unwrap_or(0);
        if t.by_id.len() >= self.limits.max_connections || from_ip >= self.limits.max_per_ip {
            let n = self.counters.refused.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(%peer, open = t.by_id.len(), from_ip, refused = n,
                    "connection refused: over [server] max_connections or max_connections_per_ip");
            }
            return None;
        }
        *t.per_ip.entry(peer.ip()).or_default() += 1;
        Some(Admission {
            connections: self.clone(),
            ip: Some(peer.ip()),
        })
    }

    fn release_ip(&self, ip: IpAddr) {
        let mut t = lock(&self.table);
        if let Some(n) = t.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                t.per_ip.remove(&ip);
            }
        }
    }

    fn admit(&self, peer: SocketAddr, data: &[u8]) -> bool {
        match lock(&self.flood).as_mut() {
            Some(guard) => guard
                .admit(std::time::Instant::now(), peer.ip(), data)
                .is_admit(),
            None => true,
        }
    }

    /// Registers a connection and makes its queue; an inbound one keeps its
    /// admission slot until [`Connections::unregister`].
    fn new_flow(
        &self,
        peer: SocketAddr,
        transport: Transport,
        admission: Option<Admission>,
    ) -> Flow {
        let (tx, rx) = mpsc::channel::<Bytes>(CONNECTION_QUEUE);
        let id = self.register(peer, transport, tx.clone(), admission);
        Flow {
            id,
            peer,
            transport,
            tx,
            rx,
        }
    }

    fn register(
        &self,
        peer: SocketAddr,
        transport: Transport,
        tx: mpsc::Sender<Bytes>,
        admission: Option<Admission>,
    ) -> FlowId {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let inbound = admission.is_some();
        if let Some(mut a) = admission {
            a.ip = None; // released by unregister
        }
        let mut t = lock(&self.table);
        t.by_id.insert(
            id,
            Entry {
                tx,
                key: (peer, transport),
                inbound,
            },
        );
        t.by_addr.insert((peer, transport), id);
        self.counters.opened.fetch_add(1, Ordering::Relaxed);
        id
    }

    fn unregister(&self, id: FlowId) {
        let mut t = lock(&self.table);
        let Some(entry) = t.by_id.remove(&id) else {
            return;
        };
        if t.by_addr.get(&entry.key) == Some(&id) {
            t.by_addr.remove(&entry.key);
        }
        if entry.inbound {
            let ip = entry.key.0.ip();
            if let Some(n) = t.per_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    t.per_ip.remove(&ip);
                }
            }
        }
    }

    fn sender(
        &self,
        flow: Option<FlowId>,
        peer: SocketAddr,
        transport: Transport,
    ) -> Option<mpsc::Sender<Bytes>> {
        let t = lock(&self.table);
        if let Some(e) = flow.and_then(|f| t.by_id.get(&f)) {
            return Some(e.tx.clone());
        }
        let id = t.by_addr.get(&(peer, transport))?;
        t.by_id.get(id).map(|e| e.tx.clone())
    }

    /// Remembers the host name a TLS next hop's address came from (DNS).
    pub fn remember_name(&self, addr: SocketAddr, host: &str) {
        let mut names = lock(&self.names);
        if names.len() >= 4096 {
            names.clear();
        }
        names.insert(addr, host.to_owned());
    }

    fn name_of(&self, addr: SocketAddr) -> Option<String> {
        lock(&self.names).get(&addr).cloned()
    }
}

/// A registered connection: its id (the core's `FlowId`), where it goes,
/// and its send queue (both ends: the writer takes `rx`, keep-alive answers use `tx`).
struct Flow {
    id: FlowId,
    peer: SocketAddr,
    transport: Transport,
    tx: mpsc::Sender<Bytes>,
    rx: mpsc::Receiver<Bytes>,
}

/// A byte stream a connection runs on: TCP, or TLS over it.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these maps cannot leave them inconsistent; keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where one worker's messages leave: its own UDP socket per listener, the
/// shared connections by flow or peer.
pub struct Outbound {
    udp: Vec<(SocketAddr, Arc<UdpSocket>)>,
    connections: Arc<Connections>,
    dispatcher: Arc<Dispatcher>,
}

impl Outbound {
    /// Builds the outbound side.
    pub fn new(
        udp: Vec<(SocketAddr, Arc<UdpSocket>)>,
        connections: Arc<Connections>,
        dispatcher: Arc<Dispatcher>,
    ) -> Self {
        Outbound {
            udp,
            connections,
            dispatcher,
        }
    }

    /// Sends one message. A stream message with no connection to go on
    /// opens one in the background (later messages to that address queue
    /// behind its handshake); when that fails, the messages are reported to
    /// their worker ([`Dispatcher::send_failed`]), whose transaction fails
    /// over at once. The worker never waits for a connect.
    pub async fn send(&self, t: Transmit) {
        if t.transport == Transport::Udp {
            return self.send_udp(t).await;
        }
        let c = &self.connections;
        let tx = match c.sender(t.flow, t.destination, t.transport) {
            Some(tx) => tx,
            None if matches!(t.transport, Transport::Ws | Transport::Wss) => {
                tracing::info!(to = %t.destination, transport = t.transport.via_token(), "the WebSocket peer's connection is gone (it must connect to us); message not sent");
                return self.dispatcher.send_failed(t.data);
            }
            None if c.open() >= c.limits.max_connections => {
                tracing::warn!(to = %t.destination, "over [server] max_connections: no new connection; message not sent");
                return self.dispatcher.send_failed(t.data);
            }
            None => c.connect(t.destination, t.transport, self.dispatcher.clone()),
        };
        if let Err(e) = tx.try_send(t.data) {
            tracing::warn!(to = %t.destination, "connection queue full or closed; message not sent");
            self.dispatcher.send_failed(e.into_inner());
        }
    }

    async fn send_udp(&self, t: Transmit) {
        let socket = self
            .udp
            .iter()
            .find(|(local, _)| local.is_ipv4() == t.destination.is_ipv4())
            .or(self.udp.first());
        let Some((_, socket)) = socket else {
            tracing::warn!(to = %t.destination, "no UDP listener to send from");
            return;
        };
        // Most sends complete at once; wait for room only when the socket buffer is full.
        let sent = match socket.try_send_to(&t.data, t.destination) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                socket.send_to(&t.data, t.destination).await
            }
            other => other,
        };
        if let Err(e) = sent {
            tracing::debug!(to = %t.destination, error = %e, "udp send failed");
        }
    }
}

impl Connections {
    /// Registers an outbound connection to `peer` now and opens it in the
    /// background (TCP connect, then the TLS handshake for TLS); returns its
    /// queue. On failure every queued message goes back to its worker.
    fn connect(
        self: &Arc<Self>,
        peer: SocketAddr,
        transport: Transport,
        dispatcher: Arc<Dispatcher>,
    ) -> mpsc::Sender<Bytes> {
        let mut flow = self.new_flow(peer, transport, None);
        let tx = flow.tx.clone();
        let connections = self.clone();
        tokio::spawn(async move {
            match connections.open_stream(peer, transport).await {
                Ok(stream) => stream::run(stream, flow, connections, dispatcher),
                Err(e) => {
                    connections.unregister(flow.id);
                    let rx = &mut flow.rx;
                    rx.close();
                    let mut failed = 0;
                    while let Ok(data) = rx.try_recv() {
                        failed += 1;
                        dispatcher.send_failed(data);
                    }
                    tracing::info!(to = %peer, transport = transport.via_token(), error = %format!("{e:#}"), failed, "no connection to the next hop; its requests fail over");
                }
            }
        });
        tx
    }

    async fn open_stream(&self, peer: SocketAddr, transport: Transport) -> Result<Box<dyn Io>> {
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(peer))
            .await
            .context("connect timed out")??;
        let _ = tcp.set_nodelay(true);
        if transport == Transport::Tcp {
            return Ok(Box::new(tcp));
        }
        let tls = self
            .tls
            .as_ref()
            .context("a TLS next hop, but TLS is not configured")?;
        let host = self.name_of(peer).unwrap_or_else(|| peer.ip().to_string());
        let name = Tls::server_name(&host)?;
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, tls.connector().connect(name, tcp))
            .await
            .context("TLS handshake timed out")?
            .with_context(|| format!("TLS handshake with {host}"))?;
        Ok(Box::new(stream))
    }
}
