//! The admin HTTP port: health, metrics, status, reload, drain.
//!
//! | route | answer |
//! |---|---|
//! | `GET /health/live` | 200 while the process runs |
//! | `GET /health/ready` | 200 ready; 503 no policy loaded or draining; 429 overloaded (see `ops.rs`) |
//! | `GET /metrics` | Prometheus text format (see `metrics.rs`) |
//! | `GET /status` | JSON: version, instance id, uptime, listeners (bound and advertised), policy, what is in flight, last reload error |
//! | `GET /targets` | JSON: per next hop, its state and its forward outcomes (there are no dispatcher sets to list) |
//! | `POST /targets/<IP:PORT>/state` | body `{"state":"inactive"}` or `{"state":"active"}`: drains one next hop, or brings it back (below) |
//! | `POST /reload` | loads the policy file again; 500 with the reason when refused (the old one keeps serving) |
//! | `POST /drain` | stops taking new dialogs (503 + Retry-After); the process keeps running, not ready |
//!
//! Per-target drain, as Kamailio's `dispatcher.set_state`: an inactive next
//! hop (the address a target URI resolves to, `IP:PORT`, `[IPv6]:PORT`) is
//! skipped by new requests while their decision names another target; when
//! every target of a decision is inactive the caller gets
//! `503 All Targets Inactive` with `Retry-After: 30`, counted in
//! `viaduct_all_targets_inactive_total`. In-dialog requests and branches
//! already started keep going to it. The state lives in memory (a restart
//! makes every target active again) and is shared by every worker; see
//! `viaduct_proxy::TargetStates`.
//!
//! A bearer token (`admin.token`, or `VIADUCT_ADMIN_TOKEN`) is required on
//! every route but `/health/*` when one is set, and one must be set when the
//! port is bound anywhere but 127.0.0.1 or ::1 (`Config::check`). Probes stay
//! open: they reveal nothing and a kubelet should not need a secret.
//!
//! A few fixed routes on HTTP/1.1 with `Connection: close`, request bodies
//! of at most [`MAX_BODY`] bytes by `Content-Length`: small enough that a
//! server crate would cost more than it saves.

use crate::ops::{unix, Ops};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use viaduct_proxy::{ForwardOutcome, Stats, TargetState};

/// The largest request body read (the only one is a target's state).
pub const MAX_BODY: usize = 1024;

/// What the admin routes can see.
pub struct AdminState {
    /// The running proxy.
    pub ops: Arc<Ops>,
    /// The `/metrics` registry.
    pub registry: prometheus_client::registry::Registry,
    /// The bearer token, when one is configured.
    pub token: Option<String>,
}

/// Binds the admin port (`admin.listen`).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding admin.listen {addr}: {e}"))?;
    tracing::info!("admin on http://{addr}");
    Ok(listener)
}

/// Serves the admin API on a listener from [`bind`] until the process
/// exits; connections that arrived in between wait in its backlog.
pub fn serve(listener: TcpListener, state: Arc<AdminState>) {
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
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(buf.len(), |i| i + 4);
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let length = header(&head, "content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    if length > MAX_BODY {
        return write_answer(&mut stream, text(413, "request body too large\n")).await;
    }
    let mut body = buf[end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    let line = head.split("\r\n").next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let bearer = header(&head, "authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let answer = if path.starts_with("/health/") || authorized(state.token.as_deref(), bearer) {
        route(method, path, &body, &state).await
    } else {
        text(401, "a bearer token is required (admin.token)\n")
    };
    write_answer(&mut stream, answer).await
}

/// The value of the first header line called `name` (case-insensitive).
fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.split("\r\n")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

async fn write_answer(stream: &mut TcpStream, answer: Answer) -> std::io::Result<()> {
    let Answer(code, content_type, body) = answer;
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        413 => "Payload Too Large",
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

async fn route(method: &str, path: &str, body: &[u8], state: &AdminState) -> Answer {
    let ops = &state.ops;
    if let Some(target) = path
        .strip_prefix("/targets/")
        .and_then(|p| p.strip_suffix("/state"))
    {
        return match method {
            "POST" => set_target_state(ops, target, body),
            _ => text(405, "method not allowed\n"),
        };
    }
    match (method, path) {
        ("POST", "/reload") => {
            // Certificates first: a refused policy must not hide a certificate reload.
            let tls = ops.tls.as_ref().map(|t| {
                crate::reload::reload_tls(t, "admin")
                    .map(|()| t.fingerprint())
                    .map_err(|e| format!("{e:#}"))
            });
            if let Some(Err(e)) = &tls {
                return json(
                    500,
                    json!({"ok": false, "error": format!("certificate refused, previous one kept: {e}")}),
                );
            }
            let fingerprint = tls.and_then(Result::ok);
            match &ops.reloader {
                None if fingerprint.is_some() => {
                    json(200, json!({"ok": true, "tls_fingerprint": fingerprint}))
                }
                None => json(404, json!({"ok": false, "error": "no policy configured"})),
                Some(r) => match r.reload("admin").await {
                    Ok(v) => json(
                        200,
                        json!({"ok": true, "version": v.id, "hash": v.hash, "tls_fingerprint": fingerprint}),
                    ),
                    Err(e) => json(
                        500,
                        json!({"ok": false, "error": format!("policy refused, previous version kept: {e}")}),
                    ),
                },
            }
        }
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
        "instance_id": ops.instance_id,
        "uptime_seconds": ops.uptime().as_secs(),
        "started_at": ops.started_unix(),
        "listeners": ops.listeners,
        "advertised": ops.advertised,
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

/// `POST /targets/<IP:PORT>/state`: sets one next hop's state (see the module docs).
fn set_target_state(ops: &Ops, target: &str, body: &[u8]) -> Answer {
    let bad = |why: String| json(400, json!({"ok": false, "error": why}));
    let target = percent_decoded(target);
    let Ok(addr) = target.parse::<SocketAddr>() else {
        return bad(format!(
            "{target:?} is not IP:PORT or [IPv6]:PORT (the address a target resolves to, as GET /targets lists it)"
        ));
    };
    let wanted = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("state")?.as_str().and_then(TargetState::parse));
    let Some(wanted) = wanted else {
        return bad(r#"the body must be {"state":"active"} or {"state":"inactive"}"#.into());
    };
    match ops.targets.set(addr, wanted) {
        Ok(was) => {
            if was != wanted {
                tracing::info!(
                    target = %addr,
                    state = wanted.as_str(),
                    "target state set (inactive: skipped by new requests)"
                );
            }
            json(
                200,
                json!({"ok": true, "target": addr.to_string(), "state": wanted.as_str(), "previous": was.as_str()}),
            )
        }
        Err(e) => bad(e.to_string()),
    }
}

/// `%5B::1%5D:5080` as `[::1]:5080`: clients may escape the brackets of an IPv6 address.
fn percent_decoded(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex: Vec<u8> = bytes.by_ref().take(2).collect();
            let decoded = std::str::from_utf8(&hex)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match decoded {
                Some(d) => out.push(d),
                None => {
                    out.push(b);
                    out.extend_from_slice(&hex);
                }
            }
        } else {
            out.push(b);
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `GET /targets`: the next hops calls were forwarded to, each with its
/// state and how its branches ended, and the inactive ones that no call
/// reached. Targets come from the config or the policy's decisions; Viaduct
/// has no dispatcher sets, so a state is kept per address.
fn targets(ops: &Ops) -> serde_json::Value {
    let t = crate::metrics::totals(&ops.slots);
    let outcomes = |counts: &[u64; 7]| {
        let mut m = serde_json::Map::new();
        for o in ForwardOutcome::ALL {
            m.insert(o.as_str().into(), counts[Stats::outcome_index(o)].into());
        }
        serde_json::Value::Object(m)
    };
    let inactive = ops.targets.inactive();
    let state = |a: &SocketAddr| {
        if inactive.contains(a) {
            TargetState::Inactive
        } else {
            TargetState::Active
        }
    };
    let seen = &t.stats.targets.targets;
    let mut list: Vec<_> = seen
        .iter()
        .map(|(a, c)| json!({"target": a.to_string(), "state": state(a).as_str(), "outcomes": outcomes(c)}))
        .collect();
    list.extend(
        inactive
            .iter()
            .filter(|a| !seen.iter().any(|(s, _)| s == *a))
            .map(|a| json!({"target": a.to_string(), "state": "inactive", "outcomes": outcomes(&[0; 7])})),
    );
    json!({
        "targets": list,
        "other": outcomes(&t.stats.targets.other),
        "inactive": inactive.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "targets_skipped": t.stats.targets_skipped,
        "all_targets_inactive": t.stats.all_targets_inactive,
    })
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
    fn target_state_is_set_by_address_and_listed() {
        let ops = Ops::for_tests(1);
        let Answer(code, _, body) =
            set_target_state(&ops, "127.0.0.1:5080", br#"{"state":"inactive"}"#);
        assert_eq!(code, 200, "{body}");
        assert!(body.contains(r#""previous": "active""#), "{body}");
        let Answer(code, _, _) =
            set_target_state(&ops, "%5B::1%5D:5080", br#"{"state":"inactive"}"#);
        assert_eq!(code, 200);
        let v = targets(&ops);
        assert_eq!(v["inactive"][0], "127.0.0.1:5080", "{v}");
        assert_eq!(v["inactive"][1], "[::1]:5080", "{v}");
        assert_eq!(v["targets"][0]["state"], "inactive", "{v}");
        for (target, body) in [
            ("localhost:5080", &br#"{"state":"inactive"}"#[..]),
            ("127.0.0.1:5080", br#"{"state":"disabled"}"#),
            ("127.0.0.1:5080", b"inactive"),
        ] {
            let Answer(code, _, body) = set_target_state(&ops, target, body);
            assert_eq!(code, 400, "{target} {body}");
        }
        let Answer(code, _, _) = set_target_state(&ops, "127.0.0.1:5080", br#"{"state":"active"}"#);
        assert_eq!(code, 200);
        assert_eq!(targets(&ops)["inactive"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn status_names_what_is_left() {
        let ops = Ops::for_tests(2);
        let v = status(&ops);
        assert_eq!(v["ready"], true);
        assert_eq!(v["workers"].as_array().map(Vec::len), Some(2));
        assert_eq!(v["dialogs"], 0);
        assert_eq!(v["listeners"][0], "udp:127.0.0.1:5060");
        assert_eq!(v["advertised"][0], "udp:192.0.2.1:5060");
        assert_eq!(v["instance_id"], "test-1");
    }
}
