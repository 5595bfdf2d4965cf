//! SIP over WebSocket (RFC 7118), server side: the `sip` subprotocol is
//! required (§4.1: a handshake without it gets 400), every WebSocket
//! message carries exactly one SIP message (§5.1; no Content-Length needed),
//! text or binary. The proxy writes text frames when the message is UTF-8,
//! binary otherwise (§5.1 allows both).
//!
//! Why tokio-tungstenite and not fastwebsockets (measured 2026-12-06 on
//! the shared 2-core box, same server shape as this file, 908-byte
//! requests answered with 402-byte responses, one load client, three
//! alternating rounds): server CPU per message fastwebsockets/tungstenite
//! 0.96-1.00 with pipelined traffic and 0.95 one message at a time, once
//! tungstenite's read buffer is 8 KiB instead of 128 KiB (with 128 KiB:
//! 0.75 one at a time, and 135 KiB per idle connection against 15 KiB).
//! The WebSocket library is a few percent of the CPU; the kernel is ~74%.
//! fastwebsockets would also need hyper for the upgrade, and it accepted
//! unmasked client frames (RFC 6455 §5.1) and unbounded fragmented
//! messages; tungstenite refuses both.
//!
//! Keep-alive: the proxy pings an idle connection every half idle timeout;
//! a browser's automatic pong counts as traffic, so only a dead peer reaches
//! the idle timeout. A text message of CRLFs is answered like a stream
//! keep-alive (RFC 5626 §3.5.1).

use super::{Admission, Connections, Flow};
use crate::worker::Dispatcher;
use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use viaduct_proxy::{Incoming, Transport};

/// Read buffer per connection: a SIP message or a few.
const READ_BUFFER: usize = 8 * 1024;

/// RFC 7118 §4.1: the subprotocol a SIP WebSocket client must offer.
const SUBPROTOCOL: &str = "sip";

/// Does the handshake (the `sip` subprotocol or 400), then runs the connection until it closes.
pub(super) async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    transport: Transport,
    connections: &Arc<Connections>,
    dispatcher: Arc<Dispatcher>,
    admission: Admission,
) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let limits = connections.limits;
    let mut config = WebSocketConfig::default();
    // tungstenite's default 128 KiB read buffer is zeroed on every read and
    // kept per connection: 135 KiB per idle connection and ~25% more CPU
    // per message when messages come one at a time (module docs).
    config.read_buffer_size = READ_BUFFER;
    config.max_message_size = Some(limits.max_message);
    config.max_frame_size = Some(limits.max_message);
    let handshake = tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        |req: &Request, mut resp: Response| {
            if !offers_sip(req) {
                let mut refusal = ErrorResponse::new(Some(
                    "RFC 7118: the 'sip' WebSocket subprotocol is required".into(),
                ));
                *refusal.status_mut() = StatusCode::BAD_REQUEST;
                return Err(refusal);
            }
            resp.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                HeaderValue::from_static(SUBPROTOCOL),
            );
            Ok(resp)
        },
        Some(config),
    );
    let ws = tokio::time::timeout(limits.handshake_timeout, handshake)
        .await
        .map_err(|_| anyhow::anyhow!("timed out"))??;

    let Flow { id, tx, mut rx, .. } = connections.new_flow(peer, transport, Some(admission));
    let (mut sink, mut source) = ws.split();
    let ping_every = limits.idle_timeout / 2;
    let writer = tokio::spawn(async move {
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
        loop {
            let first = tokio::select! {
                data = rx.recv() => match data {
                    Some(data) => frame(data),
                    None => break,
                },
                _ = ping.tick() => Message::Ping(Bytes::new()),
            };
            // Queue every frame waiting, then flush once (as stream.rs batches writes).
            let mut sent = sink.feed(first).await;
            while sent.is_ok() {
                match rx.try_recv() {
                    Ok(data) => sent = sink.feed(frame(data)).await,
                    Err(_) => break,
                }
            }
            if let Err(e) = sent.and(sink.flush().await) {
                tracing::debug!(%peer, error = %e, "websocket write failed");
                break;
            }
        }
        let _ = sink.close().await;
    });
    loop {
        let next = tokio::time::timeout(limits.idle_timeout, source.next()).await;
        let msg = match next {
            Err(_) => {
                connections
                    .counters
                    .idle_closed
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, "closing idle websocket");
                break;
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                // Oversized or malformed frames end this connection only.
                connections
                    .counters
                    .framing_errors
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(%peer, transport = transport.via_token(), error = %e, "closing websocket");
                break;
            }
            Ok(Some(Ok(msg))) => msg,
        };
        let data: Bytes = match msg {
            Message::Text(t) => Bytes::from(t),
            Message::Binary(b) => b,
            Message::Close(_) => break,
            // Pongs are answered by tungstenite; both count as traffic for the idle timeout.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
        };
        if !data.is_empty() && data.iter().all(|&b| b == b'\r' || b == b'\n') {
            if data.windows(4).any(|w| w == b"\r\n\r\n") {
                let _ = tx.try_send(Bytes::from_static(b"\r\n"));
            }
            continue;
        }
        if connections.admit(peer, &data) {
            dispatcher.dispatch(Incoming {
                data,
                source: peer,
                transport,
                flow: Some(id),
            });
        }
    }
    connections.unregister(id);
    // The writer ends (closing the WebSocket) once the last queue handle is gone.
    drop(tx);
    drop(writer);
    Ok(())
}

fn offers_sip(req: &Request) -> bool {
    req.headers()
        .get_all("Sec-WebSocket-Protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case(SUBPROTOCOL))
}

/// A text frame for a UTF-8 message, a binary frame otherwise (RFC 7118 §5.1).
fn frame(data: Bytes) -> Message {
    match tokio_tungstenite::tungstenite::Utf8Bytes::try_from(data.clone()) {
        Ok(text) => Message::Text(text),
        Err(_) => Message::Binary(data),
    }
}
