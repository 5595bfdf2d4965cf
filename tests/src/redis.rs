//! Debian's `redis-server` as the shared state of a cluster under test:
//! 127.0.0.1 on a port from [`free_port`], no persistence, killed by its
//! PID (SIGKILL: the tests want an outage as a crash looks) on
//! [`RedisServer::kill`] or when dropped, and started again on the same port
//! with [`RedisServer::restart`]. A missing binary fails the test with the
//! install hint (./tests/run installs it).
//!
//! The process handling is the state contract tests' own
//! (`host/policy/tests/support/redis_server.rs`), compiled in here so both
//! suites start Redis one way; this adds the harness's port allocation.

#[allow(dead_code)]
#[path = "../../host/policy/tests/support/redis_server.rs"]
mod support;

use crate::free_port;

/// A redis-server child process on a loopback port.
pub struct RedisServer {
    server: Option<support::RedisServer>,
    port: u16,
}

impl RedisServer {
    /// Starts one on a free port and waits until it answers PING.
    pub fn start() -> RedisServer {
        let port = free_port();
        RedisServer {
            server: Some(support::RedisServer::start_on(port)),
            port,
        }
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
        self.server.as_ref().map(support::RedisServer::pid)
    }

    /// Kills it (SIGKILL by PID) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.kill();
        }
    }

    /// Starts it again on the same port, empty, and waits for PING.
    pub fn restart(&mut self) {
        self.kill();
        self.server = Some(support::RedisServer::start_on(self.port));
    }
}
