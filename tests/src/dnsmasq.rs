//! Debian's dnsmasq (package `dnsmasq-base`) as a DNS server on
//! 127.0.0.1:<free port> serving the records a test gives, for RFC 3263
//! tests. Stopped by its PID when dropped. A missing dnsmasq fails the test
//! with the install hint (./tests/run installs it).

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, local};

/// How long dnsmasq may take to answer its first query.
const DNS_READY_BOUND: Duration = Duration::from_secs(10);

/// A running dnsmasq.
pub struct Dnsmasq {
    child: Child,
    addr: SocketAddr,
}

impl Dnsmasq {
    /// Starts dnsmasq with these record options (`--srv-host=...`,
    /// `--host-record=...`, `--naptr-record=...`), authoritative for `.test`
    /// and nothing else, and waits until it answers a query for `probe` (an A record it serves).
    pub fn start(records: &[String], probe: &str) -> Dnsmasq {
        let port = free_port();
        let spawned = Command::new("dnsmasq")
            .args([
                "-k",
                &format!("--port={port}"),
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
                "--conf-file=/dev/null",
                "--pid-file=",
                "--local=/test/",
                "--local-ttl=60",
                "--neg-ttl=60",
            ])
            .args(records)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(c) => c,
            Err(e) => panic!(
                "cannot run dnsmasq ({e}): install it with `apt-get install -y dnsmasq-base` (./tests/run does)"
            ),
        };
        let mut server = Dnsmasq {
            child,
            addr: local(port),
        };
        let start = Instant::now();
        while start.elapsed() < DNS_READY_BOUND {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("dnsmasq exited at start: {status}");
            }
            if server.answers(probe) {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "dnsmasq on {} did not answer within {DNS_READY_BOUND:?}",
            server.addr
        );
    }

    /// Where it listens (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends one A query for `name` and waits briefly for any answer.
    fn answers(&self, name: &str) -> bool {
        let Ok(socket) = UdpSocket::bind("127.0.0.1:0") else {
            return false;
        };
        let _ = socket.set_read_timeout(Some(Duration::from_millis(200)));
        // Header: id 0x7e57, recursion desired, one question.
        let mut q = vec![0x7e, 0x57, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]); // root, type A, class IN
        if socket.send_to(&q, self.addr).is_err() {
            return false;
        }
        let mut buf = [0u8; 512];
        matches!(socket.recv_from(&mut buf), Ok((n, _)) if n >= 12 && buf[..2] == q[..2])
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
