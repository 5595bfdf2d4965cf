//! The admin HTTP port: `POST /reload`, `GET /health/live`, `GET /health/ready`,
//! `GET /status` (with the flood guard's drops by reason). A few fixed routes on HTTP/1.1 with `Connection: close`:
//! small enough that a server crate would cost more than it saves.

use crate::reload::Reloader;
use crate::worker::WorkerStatus;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the admin routes can see.
pub struct AdminState {
    pub reloader: Option<Arc<Reloader>>,
    pub workers: Arc<WorkerStatus>,
    /// The flood guards' drop counters.
    pub flood: Arc<crate::flood::FloodCounters>,
}

/// Serves the admin port until the process exits.
pub async fn serve(addr: SocketAddr, state: Arc<AdminState>) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding admin.listen {addr}: {e}"))?;
    tracing::info!("admin on http://{addr}");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let _ =
                    tokio::time::timeout(std::time::Duration::from_secs(30), handle(stream, state))
                        .await;
            });
        }
    });
    Ok(())
}

async fn handle(mut stream: TcpStream, state: Arc<AdminState>) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || buf.len() > 16 * 1024 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = buf.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let (code, body) = route(method, path, &state).await;
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    };
    let response = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

async fn route(method: &[u8], path: &[u8], state: &AdminState) -> (u16, String) {
    match (method, path) {
        (b"POST", b"/reload") => match &state.reloader {
            None => (404, "no policy configured\n".into()),
            Some(r) => match r.reload("admin").await {
                Ok(v) => (200, format!("policy version {} ({})\n", v.id, v.hash)),
                Err(e) => (500, format!("policy refused, previous version kept: {e}\n")),
            },
        },
        (b"GET", b"/health/live") => (200, "live\n".into()),
        (b"GET", b"/health/ready") => {
            if state.workers.draining.load(Ordering::Relaxed) {
                (503, "draining\n".into())
            } else {
                (200, "ready\n".into())
            }
        }
        (b"GET", b"/status") => {
            let version = state.reloader.as_ref().and_then(|r| r.host.current());
            let stats = state.reloader.as_ref().map(|r| &r.host.stats);
            let mut s = format!(
                "draining: {}\npolicy_version: {}\n",
                state.workers.draining.load(Ordering::Relaxed),
                version.map_or("none".into(), |v| format!("{} ({})", v.id, v.hash)),
            );
            let flood = state.flood.snapshot();
            for (reason, n) in flood.drops {
                s += &format!("dropped_{}: {n}\n", reason.as_str());
            }
            s += &format!(
                "flood_banned_sources: {}\nflood_bans: {}\nflood_tracked_sources: {}\nflood_untracked: {}\n",
                flood.banned_sources, flood.bans, flood.tracked_sources, flood.untracked
            );
            if let Some(st) = stats {
                s += &format!(
                    "policy_calls: {}\npolicy_failures: {}\npolicy_reloads_ok: {}\npolicy_reloads_failed: {}\n",
                    st.calls.load(Ordering::Relaxed),
                    st.failures.load(Ordering::Relaxed),
                    st.reloads_ok.load(Ordering::Relaxed),
                    st.reloads_failed.load(Ordering::Relaxed),
                );
            }
            (200, s)
        }
        (_, b"/reload" | b"/health/live" | b"/health/ready" | b"/status") => {
            (405, "method not allowed\n".into())
        }
        _ => (404, "not found\n".into()),
    }
}
