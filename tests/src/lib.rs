//! End-to-end test harness: starts the real `viaduct` binary and drives it
//! with SIPp (and raw UDP) on 127.0.0.1.
//!
//! What it does: finds the release binary ([`viaduct_bin`]), hands out free
//! loopback ports ([`free_port`]), runs the proxy from a config string with
//! its log captured ([`Viaduct`]), runs SIPp as a child process and reads its
//! final counts ([`Sipp`], [`SippRun`]), runs a redis-server for shared
//! state ([`RedisServer`]), and sends a raw OPTIONS probe
//! ([`options_ping`]).
//!
//! What it does not do: build the binary (run `cargo build --release -p
//! viaduct` first, or `./tests/run`), install SIPp, or talk to anything but
//! 127.0.0.1. Every process it starts is a child stopped by its PID, also
//! when a test panics (the `Drop` guards).
//!
//! See tests/README.md for the SIPp quirks these helpers work around.

mod dnsmasq;
mod http;
mod json;
mod redis;
mod roomkit;
mod sipp;
mod viaduct;
mod wire;

use std::ffi::OsString;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub use dnsmasq::Dnsmasq;
pub use http::{http_post_json, http_request, http_request_with, HttpResponse, HTTP_BOUND};
pub use json::Json;
pub use redis::RedisServer;
pub use roomkit::roomkit_python;
pub use sipp::{
    assert_all_calls_ok, traced_messages, InviteFinal, Role, Sipp, SippProcess, SippRun,
    TracedMessage,
};
pub use viaduct::Viaduct;
pub use wire::{header_value, header_values, options_ping, recv_all, status_code};

/// How long [`Viaduct`] waits for its readiness probe to be answered.
pub const READY_BOUND: Duration = Duration::from_secs(10);
/// How often the readiness probe is retried.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(50);
/// After SIGTERM, how long a `Drop` guard waits before SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(3);
/// How long [`Viaduct::stop_gracefully`] waits for the process to exit.
pub const STOP_BOUND: Duration = Duration::from_secs(10);
/// SIPp's `-timeout` unless a test sets another.
pub const SIPP_TIMEOUT: Duration = Duration::from_secs(60);

const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Runs `tests/peers/<name>/install` once per test process (the node,
/// pjsua... peers install what they need, idempotently); panics with its
/// output when it fails. Returns what it printed on stdout.
pub fn install_peer(name: &str) -> String {
    static DONE: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());
    // Held across the run: two tests must not install the same peer at once.
    let mut done = DONE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, out)) = done.iter().find(|(n, _)| n == name) {
        return out.clone();
    }
    let script = workspace_root()
        .join("tests/peers")
        .join(name)
        .join("install");
    let out = std::process::Command::new(&script)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed ({}):\n{}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    done.push((name.to_owned(), stdout.clone()));
    stdout
}

/// A scenario file in `tests/scenarios/`.
pub fn scenario_path(file: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(file);
    assert!(path.is_file(), "no scenario {}", path.display());
    path
}

/// How long a proxy may take to answer its first probe when its policy is
/// compiled cold: componentize-py/-js components take ~10 s alone, more
/// when several tests compile at once on a small machine.
pub const COLD_COMPILE_READY_BOUND: Duration = Duration::from_secs(120);

/// One language's build of a policy, as the end-to-end tests run it.
#[derive(Debug, Clone, Copy)]
pub struct PolicyBuild {
    /// `target/policies/<artifact>.wasm`.
    pub artifact: &'static str,
    /// `[policy] deadline_ms`; `None` keeps the proxy's default (5 ms).
    pub deadline_ms: Option<u64>,
    /// Use the compiled-code cache shared by all tests,
    /// `<workspace>/target/policy-cache`, instead of the test's own. The
    /// cache is keyed by content hash and written atomically, so parallel
    /// tests may share it; the big interpreted components then compile once
    /// per run (and once per change of the file), not once per test.
    pub shared_cache: bool,
}

impl PolicyBuild {
    /// x-room-id in Rust (`policies/x-room-id`): default deadline, own cache.
    pub const X_ROOM_ID_RUST: PolicyBuild = PolicyBuild {
        artifact: "x-room-id",
        deadline_ms: None,
        shared_cache: false,
    };
    /// x-room-id in Python (componentize-py): slower per call, ~10 s to compile.
    pub const X_ROOM_ID_PYTHON: PolicyBuild = PolicyBuild {
        artifact: "x-room-id-py",
        deadline_ms: Some(50),
        shared_cache: true,
    };
    /// x-room-id in JavaScript (componentize-js): p99.9 ~4 ms on a shared
    /// 2-core machine, ~10 s to compile.
    pub const X_ROOM_ID_JAVASCRIPT: PolicyBuild = PolicyBuild {
        artifact: "x-room-id-js",
        deadline_ms: Some(50),
        shared_cache: true,
    };

    /// The component file (panics when it was not built).
    pub fn wasm(&self) -> PathBuf {
        policy_wasm(self.artifact)
    }

    /// The `[policy]` lines for this build: `file`, `cache_dir` (the shared
    /// cache, else `own_cache`) and `deadline_ms` when set.
    pub fn policy_lines(&self, own_cache: &Path) -> String {
        let cache = if self.shared_cache {
            workspace_root().join("target/policy-cache")
        } else {
            own_cache.to_path_buf()
        };
        let mut lines = format!(
            "file = {:?}\ncache_dir = {:?}\n",
            self.wasm().display().to_string(),
            cache.display().to_string()
        );
        if let Some(ms) = self.deadline_ms {
            lines.push_str(&format!("deadline_ms = {ms}\n"));
        }
        lines
    }

    /// How long to wait for a proxy running this build to become ready.
    pub fn ready_bound(&self) -> Duration {
        if self.shared_cache {
            COLD_COMPILE_READY_BOUND
        } else {
            READY_BOUND
        }
    }
}

/// A built policy component, `<workspace>/target/policies/<name>.wasm`.
/// Panics when it is missing: build them first with `policies/build`.
pub fn policy_wasm(name: &str) -> PathBuf {
    let path = workspace_root()
        .join("target/policies")
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "policy {} not found: build the policies first: policies/build",
        path.display()
    );
    path
}

/// The binary under test: `$VIADUCT_BIN` (relative paths are taken from the
/// workspace root) or `<workspace>/target/release/viaduct`. Panics when it
/// does not exist: the tests never build it themselves.
pub fn viaduct_bin() -> PathBuf {
    let path = match std::env::var_os("VIADUCT_BIN") {
        Some(p) if !p.is_empty() => workspace_root().join(PathBuf::from(p)),
        _ => workspace_root().join("target/release/viaduct"),
    };
    assert!(
        path.is_file(),
        "viaduct binary not found at {}: build it first: cargo build --release -p viaduct \
         (or point VIADUCT_BIN at it)",
        path.display()
    );
    path
}

/// The SIPp executable: `$SIPP_BIN` or `sipp` on the PATH. Panics with the
/// install hint when it is missing (a missing peer fails, it never skips).
pub fn sipp_bin() -> OsString {
    let bin = std::env::var_os("SIPP_BIN")
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| OsString::from("sipp"));
    let found = Command::new(&bin)
        .arg("-v")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "SIPp not found ({}): install it with `apt-get install -y sip-tester` (./tests/run does)",
        bin.to_string_lossy()
    );
    bin
}

/// Ports already handed out by this test process, so that tests running in
/// parallel never get the same one.
static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// A port on 127.0.0.1 that is free for both UDP and TCP right now and has
/// not been handed out before in this process.
pub fn free_port() -> u16 {
    for _ in 0..500 {
        let Ok(udp) = UdpSocket::bind((LOCALHOST, 0)) else {
            continue;
        };
        let Ok(addr) = udp.local_addr() else {
            continue;
        };
        let port = addr.port();
        if TcpListener::bind((LOCALHOST, port)).is_err() {
            continue;
        }
        let mut handed = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if !handed.contains(&port) {
            handed.push(port);
            return port;
        }
    }
    panic!("no free UDP+TCP port on 127.0.0.1 after 500 tries");
}

/// Same as [`free_port`] (the port is free for TCP too).
pub fn free_udp_port() -> u16 {
    free_port()
}

/// `127.0.0.1:port`.
pub fn local(port: u16) -> SocketAddr {
    SocketAddr::from((LOCALHOST, port))
}

/// The last `n` lines of a file, or a note that it cannot be read.
pub fn tail(path: &Path, n: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("({}: {e})", path.display()),
    }
}

pub(crate) fn signal(child: &Child, sig: Signal) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

/// Waits for the child to exit, polling, for at most `bound`.
pub(crate) fn wait_bounded(child: &mut Child, bound: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + bound;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => return None,
        }
    }
}

/// SIGTERM, then SIGKILL after [`KILL_GRACE`]: the `Drop` path.
pub(crate) fn terminate(child: &mut Child) {
    if matches!(child.try_wait(), Ok(None)) {
        signal(child, Signal::SIGTERM);
        if wait_bounded(child, KILL_GRACE).is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct() {
        let a = free_port();
        let b = free_port();
        assert_ne!(a, b);
    }
}
