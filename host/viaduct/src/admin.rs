//! The admin HTTP port: health, metrics, status, reload, drain.
//!
//! | route | answer |
//! |---|---|
//! | `GET /health/live` | 200 while the process runs |
//! | `GET /health/ready` | 200 ready; 503 no policy loaded or draining; 429 overloaded (see `ops.rs`) |
//! | `GET /metrics` | Prometheus text format (see `metrics.rs`) |
//! | `GET /status` | JSON: version, uptime, listeners, policy, what is in flight, last reload error |
//! | `GET /targets` | JSON: forward outcomes per next hop (there are no dispatcher sets to list) |
//! | `POST /reload` | loads the policy file again; 500 with the reason when refused (the old one keeps serving) |
//! | `POST /drain` | stops taking new dialogs (503 + Retry-After); the process keeps running, not ready |
//!
//! A bearer token (`admin.token`, or `VIADUCT_ADMIN_TOKEN`) is required on
//! every route but `/health/*` when one is set, and one must be set when the
//! port is bound anywhere but 127.0.0.1 or ::1 (`Config::check`). Probes stay
//! open: they reveal nothing and a kubelet should not need a secret.
//!
//! A few fixed routes on HTTP/1.1 with `Connection: close`, no request
//! bodies: small enough that a server crate would cost more than it saves.

use crate::ops::{unix, Ops};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use viaduct_proxy::{ForwardOutcome, Stats};

/// What the admin routes can see.
pub struct AdminState {
    /// The running proxy.
    pub ops: Arc<Ops>,
    /// The `/metrics` registry.
    pub registry: prometheus_client::registry::Registry,
    /// The bearer token, when one is configured.
    pub token: Option<String>,
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

/// One answer: status, content type, body.
struct Answer(u16, &'static str, String);

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";

fn text(code: u16, body: impl Into<String>) -> Answer {
    Answer(code, TEXT, body.into())
}

fn json(code: u16, v: serde_json::Value) -> Answer {
    Answer(code, JSON, format!("{v:#}\n"))
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
    let head = String::from_utf8_lossy(&buf);
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let bearer = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("authorization"))
        .and_then(|(_, v)| v.trim().strip_prefix("Bearer ").map(str::trim));
    let answer = if path.starts_with("/health/") || authorized(state.token.as_deref(), bearer) {
        route(method, path, &state).await
    } else {
        text(401, "a bearer token is required (admin.token)\n")
    };
    let Answer(code, content_type, body) = answer;
    let reason = match code {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    };
    let mut response = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if code == 401 {
        response.push_str("WWW-Authenticate: Bearer\r\n");
    }
    response.push_str("\r\n");
    response.push_str(&body);
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// True when no token is configured or the request carries it. Compares in
/// constant time so the answer's timing does not leak the token.
fn authorized(token: Option<&str>, bearer: Option<&str>) -> bool {
    let Some(token) = token else { return true };
    let Some(given) = bearer else { return false };
    let (a, b) = (token.as_bytes(), given.as_bytes());
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

async fn route(method: &str, path: &str, state: &AdminState) -> Answer {
    let ops = &state.ops;
    match (method, path) {
        ("POST", "/reload") => match &ops.reloader {
            None => json(404, json!({"ok": false, "error": "no policy configured"})),
            Some(r) => match r.reload("admin").await {
                Ok(v) => json(200, json!({"ok": true, "version": v.id, "hash": v.hash})),
                Err(e) => json(
                    500,
                    json!({"ok": false, "error": format!("policy refused, previous version kept: {e}")}),
                ),
            },
        },
        ("POST", "/drain") => {
            if !ops.is_draining() {
                tracing::info!("POST /drain: draining (new dialogs get 503)");
            }
            ops.set_draining();
            let left = ops.left();
            json(
                200,
                json!({"draining": true, "requests_pending": left.pending, "dialogs": left.dialogs}),
            )
        }
        ("GET", "/health/live") => text(200, "live\n"),
        ("GET", "/health/ready") => {
            let r = ops.readiness();
            text(r.http_status(), format!("{}\n", r.describe()))
        }
        ("GET", "/metrics") => Answer(
            200,
            crate::metrics::CONTENT_TYPE,
            crate::metrics::render(&state.registry),
        ),
        ("GET", "/status") => json(200, status(ops)),
        ("GET", "/targets") => json(200, targets(ops)),
        (
            _,
            "/reload" | "/drain" | "/health/live" | "/health/ready" | "/metrics" | "/status"
            | "/targets",
        ) => text(405, "method not allowed\n"),
        _ => text(404, "not found\n"),
    }
}

/// `GET /status`.
pub fn status(ops: &Ops) -> serde_json::Value {
    let t = crate::metrics::totals(&ops.slots);
    let readiness = ops.readiness();
    let policy = ops.reloader.as_ref().map(|r| {
        let host = &r.host;
        let current = host.current();
        let calls = host.calls();
        json!({
            "name": host.name(),
            "version": current.as_ref().map(|v| v.id),
            "hash": current.as_ref().map(|v| v.hash.clone()),
            "loaded_at": current.as_ref().map(|v| unix(v.loaded_at)),
            "calls": calls.iter().map(|c| c.count()).sum::<u64>(),
            "failures": calls.iter().map(|c| c.failures()).sum::<u64>(),
            "reloads_ok": host.stats.reloads_ok.load(Ordering::Relaxed),
            "reloads_failed": host.stats.reloads_failed.load(Ordering::Relaxed),
            "last_reload_error": host.last_error(),
        })
    });
    let workers: Vec<_> = ops
        .slots
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let s = s.get();
            json!({
                "worker": i,
                "server_transactions": s.transactions.0,
                "client_transactions": s.transactions.1,
                "requests_pending": s.pending,
                "dialogs": s.dialogs,
            })
        })
        .collect();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": ops.uptime().as_secs(),
        "started_at": ops.started_unix(),
        "listeners": ops.listeners,
        "ready": readiness.is_ready(),
        "readiness": readiness.describe(),
        "draining": ops.is_draining(),
        "policy": policy,
        "server_transactions": t.transactions.0,
        "client_transactions": t.transactions.1,
        "requests_pending": t.pending,
        "dialogs": t.dialogs,
        "workers": workers,
        "flood": flood(&ops.flood.snapshot()),
    })
}

/// The flood guard's part of `GET /status`: drops by reason and its bans.
fn flood(f: &crate::flood::FloodSnapshot) -> serde_json::Value {
    let dropped: serde_json::Map<_, _> = f
        .drops
        .iter()
        .map(|(reason, n)| (reason.as_str().to_owned(), (*n).into()))
        .collect();
    json!({
        "dropped": dropped,
        "banned_sources": f.banned_sources,
        "bans": f.bans,
        "tracked_sources": f.tracked_sources,
        "untracked": f.untracked,
    })
}

/// `GET /targets`: the next hops calls were forwarded to and how those
/// branches ended. Targets come from the config or the policy's decisions;
/// Viaduct has no dispatcher sets (nothing probes or drains a target), so
/// there is no state to set here.
fn targets(ops: &Ops) -> serde_json::Value {
    let t = crate::metrics::totals(&ops.slots);
    let outcomes = |counts: &[u64; 7]| {
        let mut m = serde_json::Map::new();
        for o in ForwardOutcome::ALL {
            m.insert(o.as_str().into(), counts[Stats::outcome_index(o)].into());
        }
        serde_json::Value::Object(m)
    };
    let list: Vec<_> = t
        .stats
        .targets
        .targets
        .iter()
        .map(|(a, c)| json!({"target": a.to_string(), "outcomes": outcomes(c)}))
        .collect();
    json!({"targets": list, "other": outcomes(&t.stats.targets.other)})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_must_match_exactly() {
        assert!(authorized(None, None));
        assert!(!authorized(Some("s3cret"), None));
        assert!(!authorized(Some("s3cret"), Some("s3cre")));
        assert!(!authorized(Some("s3cret"), Some("s3cret!")));
        assert!(authorized(Some("s3cret"), Some("s3cret")));
    }

    #[test]
    fn status_names_what_is_left() {
        let ops = Ops::for_tests(2);
        let v = status(&ops);
        assert_eq!(v["ready"], true);
        assert_eq!(v["workers"].as_array().map(Vec::len), Some(2));
        assert_eq!(v["dialogs"], 0);
        assert_eq!(v["listeners"][0], "udp:127.0.0.1:5060");
    }
}
