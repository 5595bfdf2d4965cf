//! Sockets: UDP (socket2-tuned) and TCP with Content-Length framing (RFC 3261
//! §18.3). Bytes in, bytes out; no SIP logic beyond finding where a stream
//! message ends and which worker owns a Call-ID.
//!
//! Not yet: RFC 3261 §18.1.1's switch to TCP for requests over 1300 bytes
//! bound for a UDP next hop. It needs the fallback the RFC pairs with it
//! (retry over UDP when the TCP connection is refused), which means feeding
//! connect failures back into the client transaction; it comes with the
//! stream-transport work (TLS, WebSocket, connection reuse). Until then a
//! large request goes over UDP (IP fragmentation on a real network), and a
//! next hop that wants TCP says so with `;transport=tcp`.

use crate::flood::FloodGuard;
use crate::worker::Dispatcher;
use anyhow::{Context as _, Result};
use bytes::{Bytes, BytesMut};
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use viaduct_proxy::{FlowId, Incoming, Transmit, Transport};

/// Messages queued for one TCP connection before sends to it are dropped.
const CONNECTION_QUEUE: usize = 1024;

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

/// A TCP listener with SO_REUSEADDR.
pub fn bind_tcp(addr: SocketAddr) -> Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .with_context(|| format!("binding tcp:{addr}"))?;
    socket.listen(1024)?;
    Ok(TcpListener::from_std(socket.into())?)
}

/// Open stream connections, by id and by remote address, for replies and
/// reuse, and the flood guard every stream message passes first.
#[derive(Default)]
pub struct Connections {
    next: AtomicU64,
    by_id: Mutex<HashMap<FlowId, mpsc::Sender<Bytes>>>,
    by_addr: Mutex<HashMap<SocketAddr, FlowId>>,
    /// Shared by all connections (stream traffic is light next to UDP; one lock per message).
    flood: Mutex<Option<FloodGuard>>,
}

impl Connections {
    /// Connections whose messages pass `flood` before they reach a worker.
    pub fn with_flood_guard(flood: FloodGuard) -> Self {
        Connections {
            flood: Mutex::new(Some(flood)),
            ..Connections::default()
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

    fn register(&self, peer: SocketAddr, tx: mpsc::Sender<Bytes>) -> FlowId {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        lock(&self.by_id).insert(id, tx);
        lock(&self.by_addr).insert(peer, id);
        id
    }

    fn unregister(&self, id: FlowId, peer: SocketAddr) {
        lock(&self.by_id).remove(&id);
        let mut by_addr = lock(&self.by_addr);
        if by_addr.get(&peer) == Some(&id) {
            by_addr.remove(&peer);
        }
    }

    fn sender(&self, flow: Option<FlowId>, peer: SocketAddr) -> Option<mpsc::Sender<Bytes>> {
        let by_id = lock(&self.by_id);
        if let Some(tx) = flow.and_then(|f| by_id.get(&f)) {
            return Some(tx.clone());
        }
        let id = *lock(&self.by_addr).get(&peer)?;
        by_id.get(&id).cloned()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these maps cannot leave them inconsistent; keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where one worker's messages leave: its own UDP socket per listener, the
/// shared TCP connections by flow or peer.
pub struct Outbound {
    udp: Vec<(SocketAddr, Arc<UdpSocket>)>,
    connections: Arc<Connections>,
    dispatcher: Arc<Dispatcher>,
    max_message: usize,
}

impl Outbound {
    /// Builds the outbound side.
    pub fn new(
        udp: Vec<(SocketAddr, Arc<UdpSocket>)>,
        connections: Arc<Connections>,
        dispatcher: Arc<Dispatcher>,
        max_message: usize,
    ) -> Self {
        Outbound {
            udp,
            connections,
            dispatcher,
            max_message,
        }
    }

    /// Sends one message; failures are logged (the transaction layer retransmits or times out).
    pub async fn send(&self, t: Transmit) {
        match t.transport {
            Transport::Udp => {
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
            Transport::Tcp => {
                let tx = match self.connections.sender(t.flow, t.destination) {
                    Some(tx) => tx,
                    None => match self.connect(t.destination).await {
                        Ok(tx) => tx,
                        Err(e) => {
                            tracing::info!(to = %t.destination, error = %e, "tcp connect failed");
                            return;
                        }
                    },
                };
                if tx.try_send(t.data).is_err() {
                    tracing::warn!(to = %t.destination, "tcp connection queue full or closed; message dropped");
                }
            }
        }
    }

    async fn connect(&self, peer: SocketAddr) -> Result<mpsc::Sender<Bytes>> {
        let stream =
            tokio::time::timeout(std::time::Duration::from_secs(2), TcpStream::connect(peer))
                .await
                .context("connect timed out")??;
        let _ = stream.set_nodelay(true);
        Ok(spawn_connection(
            stream,
            peer,
            self.connections.clone(),
            self.dispatcher.clone(),
            self.max_message,
        ))
    }
}

/// Accepts TCP connections.
pub async fn tcp_accept(
    listener: TcpListener,
    connections: Arc<Connections>,
    dispatcher: Arc<Dispatcher>,
    max_message: usize,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                spawn_connection(
                    stream,
                    peer,
                    connections.clone(),
                    dispatcher.clone(),
                    max_message,
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "tcp accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Runs one connection: a reader that frames messages for the workers, a writer fed by a queue.
fn spawn_connection(
    stream: TcpStream,
    peer: SocketAddr,
    connections: Arc<Connections>,
    dispatcher: Arc<Dispatcher>,
    max_message: usize,
) -> mpsc::Sender<Bytes> {
    let (tx, mut rx) = mpsc::channel::<Bytes>(CONNECTION_QUEUE);
    let id = connections.register(peer, tx.clone());
    let (mut read, mut write) = stream.into_split();
    tokio::spawn(async move {
        while let Some(data) = rx.recv().await {
            if let Err(e) = write.write_all(&data).await {
                tracing::debug!(%peer, error = %e, "tcp write failed");
                break;
            }
        }
    });
    tokio::spawn(async move {
        let mut buf = BytesMut::with_capacity(8192);
        loop {
            match viaduct_sip::frame_stream(&buf, max_message) {
                Ok(Some(len)) => {
                    let data = buf.split_to(len).freeze();
                    if !connections.admit(peer, &data) {
                        continue;
                    }
                    dispatcher.dispatch(Incoming {
                        data,
                        source: peer,
                        transport: Transport::Tcp,
                        flow: Some(id),
                    });
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    // A framing error poisons only this connection (RFC 3261 §18.3).
                    tracing::info!(%peer, error = %e, "closing tcp connection: bad framing");
                    break;
                }
            }
            // Keep-alive CRLFs alone (RFC 5626 §3.5.1) are consumed by the framer with the next message.
            match read.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        connections.unregister(id, peer);
    });
    tx
}
