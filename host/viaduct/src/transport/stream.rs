//! Stream connections: accepting TCP, TLS, WS and WSS, and running a
//! TCP or TLS connection (Content-Length framing, RFC 3261 §18.3).

use super::{Admission, Connections, Flow};
use crate::worker::Dispatcher;
use bytes::{Bytes, BytesMut};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use viaduct_proxy::{Incoming, Transport};

/// Bytes gathered from a connection's queue into one write.
const WRITE_BATCH: usize = 64 * 1024;

/// Accepts connections on a listener of `transport` and runs each.
pub async fn accept(
    listener: TcpListener,
    transport: Transport,
    connections: Arc<Connections>,
    dispatcher: Arc<Dispatcher>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and friends: back off rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (connections, dispatcher) = (connections.clone(), dispatcher.clone());
        tokio::spawn(async move {
            let Some(admission) = connections.admit_connection(peer) else {
                return; // dropping the stream closes it
            };
            run_accepted(stream, peer, transport, &connections, dispatcher, admission).await;
        });
    }
}

async fn run_accepted(
    stream: TcpStream,
    peer: SocketAddr,
    transport: Transport,
    connections: &Arc<Connections>,
    dispatcher: Arc<Dispatcher>,
    admission: Admission,
) {
    let limit = connections.limits.handshake_timeout;
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        connections
            .counters
            .handshake_failed
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(%peer, transport = transport.via_token(), error = %e, "{what} failed; connection closed");
    };
    match transport {
        Transport::Tcp => {
            spawn(
                stream,
                peer,
                transport,
                connections.clone(),
                dispatcher,
                admission,
            );
        }
        Transport::Tls | Transport::Wss => {
            let Some(tls) = &connections.tls else {
                return;
            };
            let tls_stream = match tokio::time::timeout(limit, tls.acceptor().accept(stream)).await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return failed("TLS handshake", &e),
                Err(_) => return failed("TLS handshake", &"timed out"),
            };
            if transport == Transport::Tls {
                spawn(
                    tls_stream,
                    peer,
                    transport,
                    connections.clone(),
                    dispatcher,
                    admission,
                );
            } else if let Err(e) = super::ws::serve(
                tls_stream,
                peer,
                transport,
                connections,
                dispatcher,
                admission,
            )
            .await
            {
                failed("WebSocket handshake", &e);
            }
        }
        Transport::Ws => {
            if let Err(e) =
                super::ws::serve(stream, peer, transport, connections, dispatcher, admission).await
            {
                failed("WebSocket handshake", &e);
            }
        }
        Transport::Udp => {}
    }
}

/// Registers an accepted TCP or TLS connection and runs it.
fn spawn<S>(
    stream: S,
    peer: SocketAddr,
    transport: Transport,
    connections: Arc<Connections>,
    dispatcher: Arc<Dispatcher>,
    admission: Admission,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let flow = connections.new_flow(peer, transport, Some(admission));
    run(stream, flow, connections, dispatcher);
}

/// Runs one TCP or TLS connection: a reader that frames messages for the
/// workers and answers keep-alives, a writer fed by the flow's queue.
pub(super) fn run<S>(
    stream: S,
    flow: Flow,
    connections: Arc<Connections>,
    dispatcher: Arc<Dispatcher>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let Flow {
        id,
        peer,
        transport,
        tx: pong,
        mut rx,
    } = flow;
    let (mut read, mut write) = tokio::io::split(stream);
    let (closed_tx, mut closed_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut batch = BytesMut::with_capacity(WRITE_BATCH);
        loop {
            tokio::select! {
                data = rx.recv() => {
                    let Some(data) = data else { break };
                    // Everything queued goes out in one write (one TLS record,
                    // one syscall) rather than one per message: a trunk's one
                    // connection carries every call's messages, and per-message
                    // writes let its queue fill under load (examples/bench/README.md, TLS).
                    batch.extend_from_slice(&data);
                    while batch.len() < WRITE_BATCH {
                        match rx.try_recv() {
                            Ok(more) => batch.extend_from_slice(&more),
                            Err(_) => break,
                        }
                    }
                    let written = write.write_all(&batch).await;
                    batch.clear();
                    if let Err(e) = written {
                        tracing::debug!(%peer, error = %e, "write failed");
                        break;
                    }
                }
                // The reader ended: close our side too (TLS close_notify, FIN).
                _ = &mut closed_rx => break,
            }
        }
        let _ = write.shutdown().await;
    });
    tokio::spawn(async move {
        let limits = connections.limits;
        let mut buf = BytesMut::with_capacity(8192);
        'conn: loop {
            for _ in 0..take_keepalives(&mut buf) {
                let _ = pong.try_send(Bytes::from_static(b"\r\n"));
            }
            while !buf.is_empty() && !buf.starts_with(b"\r\n") {
                match viaduct_sip::frame_stream(&buf, limits.max_message) {
                    Ok(Some(len)) => {
                        let data = buf.split_to(len).freeze();
                        if connections.admit(peer, &data) {
                            dispatcher.dispatch(Incoming {
                                data,
                                source: peer,
                                transport,
                                flow: Some(id),
                            });
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        // A framing error poisons only this connection (RFC 3261 §18.3).
                        connections
                            .counters
                            .framing_errors
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::info!(%peer, transport = transport.via_token(), error = %e, "closing connection: bad framing");
                        break 'conn;
                    }
                }
            }
            if buf.starts_with(b"\r\n") && buf.len() >= 4 {
                continue; // keep-alives after the message just framed
            }
            match tokio::time::timeout(limits.idle_timeout, read.read_buf(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(_)) => {}
                Err(_) => {
                    connections
                        .counters
                        .idle_closed
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%peer, "closing idle connection");
                    break;
                }
            }
        }
        connections.unregister(id);
        let _ = closed_tx.send(());
    });
}

/// Takes keep-alives off the front of a stream buffer (RFC 5626 §3.5.1) and
/// returns how many pings (a double CRLF each) to answer with a CRLF. A lone
/// CRLF (a pong, or padding before a message) needs no answer. A buffer
/// that may be the start of a ping (`\r\n`, `\r\n\r`) is left for more bytes.
fn take_keepalives(buf: &mut BytesMut) -> usize {
    let mut pings = 0;
    while buf.starts_with(b"\r\n") {
        if buf.starts_with(b"\r\n\r\n") {
            let _ = buf.split_to(4);
            pings += 1;
        } else if buf.len() >= 4 || !b"\r\n\r\n".starts_with(&buf[..]) {
            let _ = buf.split_to(2);
        } else {
            break;
        }
    }
    pings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_pings_are_counted_and_pongs_skipped() {
        let mut b = BytesMut::from(&b"\r\n\r\n\r\n\r\nINVITE"[..]);
        assert_eq!(take_keepalives(&mut b), 2);
        assert_eq!(&b[..], b"INVITE");
        let mut b = BytesMut::from(&b"\r\nOPTIONS"[..]);
        assert_eq!(take_keepalives(&mut b), 0);
        assert_eq!(&b[..], b"OPTIONS");
        // Half a ping waits for the rest.
        let mut b = BytesMut::from(&b"\r\n\r"[..]);
        assert_eq!(take_keepalives(&mut b), 0);
        assert_eq!(&b[..], b"\r\n\r");
        b.extend_from_slice(b"\n");
        assert_eq!(take_keepalives(&mut b), 1);
        assert!(b.is_empty());
    }
}
