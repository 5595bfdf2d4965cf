//! `viaduct ctl`: the admin port from the command line, as `kamcmd` is used
//! with Kamailio. Each action is one HTTP request to the admin port of a
//! running proxy (address from `--admin` or the config's `admin.listen`,
//! token from `admin.token` or `VIADUCT_ADMIN_TOKEN`); the answer's body goes
//! to stdout, and a non-2xx answer exits non-zero.

use anyhow::{bail, Context as _, Result};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// What to ask.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum Action {
    /// GET /status: version, uptime, listeners, policy, what is in flight (JSON).
    Status,
    /// POST /reload: load the policy file again.
    Reload,
    /// POST /drain: stop taking new dialogs; the proxy keeps running, not ready.
    Drain,
    /// GET /metrics: the Prometheus text.
    Metrics,
    /// GET /targets: forward outcomes per next hop (JSON).
    Targets,
    /// GET /health/ready: 200 ready, 503 not loaded or draining, 429 overloaded.
    Ready,
    /// POST /targets/<ADDR>/state: drain one next hop (inactive) or bring it back (active).
    TargetState {
        /// The next hop as `GET /targets` lists it: IP:PORT or [IPv6]:PORT.
        addr: String,
        /// `inactive` (skipped by new requests while another target is left) or `active`.
        #[arg(value_parser = ["active", "inactive"])]
        state: String,
    },
}

impl Action {
    /// Method, path and body.
    fn request(&self) -> (&'static str, String, String) {
        let get = |path: &str| ("GET", path.to_owned(), String::new());
        let post = |path: &str| ("POST", path.to_owned(), String::new());
        match self {
            Action::Status => get("/status"),
            Action::Reload => post("/reload"),
            Action::Drain => post("/drain"),
            Action::Metrics => get("/metrics"),
            Action::Targets => get("/targets"),
            Action::Ready => get("/health/ready"),
            Action::TargetState { addr, state } => (
                "POST",
                format!("/targets/{addr}/state"),
                serde_json::json!({ "state": state }).to_string(),
            ),
        }
    }
}

/// Runs one action against the admin port at `admin`.
pub fn run(action: Action, admin: SocketAddr, token: Option<&str>) -> Result<()> {
    let (method, path, body) = action.request();
    let (status, body) = request(connect_addr(admin), method, &path, &body, token)?;
    print!("{body}");
    if !(200..300).contains(&status) {
        bail!("{method} {path}: HTTP {status}");
    }
    Ok(())
}

/// An admin port bound to every address is reached over loopback.
fn connect_addr(admin: SocketAddr) -> SocketAddr {
    match admin.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, admin.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, admin.port()).into(),
        _ => admin,
    }
}

fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> Result<(u16, String)> {
    let bound = Duration::from_secs(30);
    let mut stream = TcpStream::connect_timeout(&addr, bound)
        .with_context(|| format!("connecting to the admin port http://{addr}"))?;
    stream.set_read_timeout(Some(bound))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let content_type = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/json\r\n"
    };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}{content_type}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .with_context(|| format!("{method} {path}: no HTTP answer"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("{method} {path}: bad status line"))?;
    Ok((status, body.to_owned()))
}
