//! Debian's `redis-server` as the shared state of a cluster under test:
//! 127.0.0.1:<free port>, no persistence, stopped by its PID (SIGKILL: the
//! test wants an outage, not a clean shutdown) when dropped or on
//! [`RedisServer::kill`], and started again on the same port with
//! [`RedisServer::restart`]. A missing binary fails the test with the
//! install hint (./tests/run installs it). The same idea as
//! `host/policy/tests/support/redis_server.rs`, on the harness's ports.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, local};

/// How long a fresh server may take to answer PING.
const READY_BOUND: Duration = Duration::from_secs(10);

/// A redis-server child process on a loopback port.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
}

impl RedisServer {
    /// Starts one on a free port and waits until it answers PING.
    pub fn start() -> RedisServer {
        let mut server = RedisServer {
            child: None,
            port: free_port(),
        };
        server.restart();
        server
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/0`, for `[state] url`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills it (SIGKILL by PID) and reaps it: an outage as a crash looks.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it (again) on the same port, empty, and waits for PING.
    pub fn restart(&mut self) {
        self.kill();
        let port = self.port;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): install it with \
                     `apt-get install -y redis-server` (./tests/run does)"
                )
            });
        self.child = Some(child);
        let start = Instant::now();
        while !self.answers() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("redis-server on port {port} exited at start: {status}");
            }
            assert!(
                start.elapsed() < READY_BOUND,
                "redis-server on port {port} did not answer PING within {READY_BOUND:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// One PING, answered `+PONG` within 500 ms.
    pub fn answers(&self) -> bool {
        let addr: SocketAddr = local(self.port);
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
