//! Stream connections and TLS certificates through the real proxy: keep-alives,
//! framing errors, size, per-IP and idle limits on `tcp:` listeners, and the
//! certificate of `tls:` listeners (reloaded while connections are up, and
//! the self-signed one served over TLS 1.2 and 1.3).
//!
//! Every test starts its own `viaduct` on fresh ports (`udp:` for the
//! harness's readiness probe, and the stream listener under test on the same
//! port number) and talks to it with std `TcpStream`s or `openssl s_client`
//! children, so they run in parallel. Needs `target/release/viaduct` (or
//! `VIADUCT_BIN`) and `openssl` on the PATH. TLS tests keep their
//! certificates, and the proxy's `data_dir`, in their own temp dir.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use viaduct_e2e::{free_port, header_value, status_code, Viaduct};

/// How long an answer, a pong or a close may take on a shared, noisy machine.
const BOUND: Duration = Duration::from_secs(5);

/// The log line of a connection closed for its framing (`transport/stream.rs`).
const BAD_FRAMING: &str = "closing connection: bad framing";

// ---- SIP over a stream --------------------------------------------------------

static SEQ: AtomicU64 = AtomicU64::new(1);

/// A fresh Call-ID, unique in this test process.
fn call_id() -> String {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("conn-{}-{n}@127.0.0.1", std::process::id())
}

/// `OPTIONS sip:PROXY` (no user part: addressed to the proxy itself, which
/// answers 200) sent over `transport` (`TCP`, `TLS`) from `from`, with
/// `body` and the Content-Length that frames it.
fn options(
    proxy: SocketAddr,
    from: SocketAddr,
    transport: &str,
    call_id: &str,
    cseq: u32,
    body: &str,
) -> String {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let content_type = if body.is_empty() {
        ""
    } else {
        "Content-Type: text/plain\r\n"
    };
    format!(
        "OPTIONS sip:{proxy} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {from};branch=z9hG4bK-conn-{n};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:conn@{from}>;tag=c{n}\r\n\
         To: <sip:{proxy}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} OPTIONS\r\n\
         {content_type}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The length of the first whole message in `buf` (head, blank line and
/// Content-Length bytes of body), if it is all there.
fn complete_message(buf: &[u8]) -> Option<usize> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]);
    let body: usize = header_value(&head, "content-length", Some("l"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (buf.len() >= end + body).then_some(end + body)
}

/// What one bounded read gave.
enum Fill {
    Data,
    /// EOF, or the connection reset: either way the peer closed it.
    Closed(String),
    TimedOut,
}

/// A TCP connection to the proxy with what was read and not yet consumed.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect_timeout(&addr, BOUND)
            .unwrap_or_else(|e| panic!("connecting to tcp:{addr}: {e}"));
        stream
            .set_write_timeout(Some(BOUND))
            .expect("write timeout");
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    fn local(&self) -> SocketAddr {
        self.stream.local_addr().expect("local address")
    }

    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        self.stream.write_all(data)
    }

    /// One read into the buffer, waiting until `deadline` at most.
    fn fill(&mut self, deadline: Instant) -> Fill {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return Fill::TimedOut;
        };
        let left = left.max(Duration::from_millis(1));
        self.stream
            .set_read_timeout(Some(left))
            .expect("read timeout");
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => Fill::Closed("EOF".into()),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Fill::Data
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Fill::TimedOut
            }
            Err(e) => Fill::Closed(format!("{:?}: {e}", e.kind())),
        }
    }

    /// Exactly `n` bytes, within `bound`.
    fn read_exact(&mut self, n: usize, bound: Duration) -> Result<Vec<u8>, String> {
        let deadline = Instant::now() + bound;
        while self.buf.len() < n {
            match self.fill(deadline) {
                Fill::Data => {}
                Fill::Closed(how) => return Err(format!("closed ({how}) after {:?}", self.buf)),
                Fill::TimedOut => return Err(format!("only {:?} within {bound:?}", self.buf)),
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// The next whole SIP message, within `bound`.
    fn read_message(&mut self, bound: Duration) -> Result<String, String> {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(len) = complete_message(&self.buf) {
                let msg: Vec<u8> = self.buf.drain(..len).collect();
                return Ok(String::from_utf8_lossy(&msg).into_owned());
            }
            match self.fill(deadline) {
                Fill::Data => {}
                Fill::Closed(how) => {
                    return Err(format!(
                        "connection closed ({how}) with {:?} unread",
                        String::from_utf8_lossy(&self.buf)
                    ))
                }
                Fill::TimedOut => {
                    return Err(format!(
                        "no whole message within {bound:?}; read {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ))
                }
            }
        }
    }

    /// Sends an OPTIONS to the proxy and returns its answer (checked to be
    /// for this request), or why there was none.
    fn ask(&mut self, proxy: SocketAddr) -> Result<String, String> {
        let id = call_id();
        let request = options(proxy, self.local(), "TCP", &id, 1, "");
        self.send(request.as_bytes())
            .map_err(|e| format!("sending the OPTIONS: {e}"))?;
        let answer = self.read_message(BOUND)?;
        match header_value(&answer, "call-id", Some("i")) {
            Some(got) if got == id => Ok(answer),
            _ => Err(format!("answer for another request:\n{answer}")),
        }
    }

    /// Panics unless the proxy answers an OPTIONS on this connection with 200.
    fn assert_answered(&mut self, proxy: SocketAddr, what: &str) {
        match self.ask(proxy) {
            Ok(answer) => assert_eq!(
                status_code(&answer),
                Some(200),
                "{what}: OPTIONS not answered 200: {answer:?}"
            ),
            Err(e) => panic!("{what}: OPTIONS not answered: {e}"),
        }
    }

    /// Reads until the proxy closes the connection (EOF or reset), within
    /// `bound`; returns how long that took. Bytes read meanwhile stay in `buf`.
    fn wait_closed(&mut self, bound: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        let deadline = started + bound;
        loop {
            match self.fill(deadline) {
                Fill::Data => {}
                Fill::Closed(_) => return Ok(started.elapsed()),
                Fill::TimedOut => {
                    return Err(format!(
                        "still open after {bound:?}; read {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ))
                }
            }
        }
    }
}

/// A proxy with `config` listening on `udp:` and `tcp:` 127.0.0.1 on one
/// port; returns it and the TCP address.
fn tcp_proxy(config: &str) -> (Viaduct, SocketAddr) {
    let port = free_port();
    let proxy = Viaduct::start_with_listen(
        config,
        &[
            format!("udp:127.0.0.1:{port}"),
            format!("tcp:127.0.0.1:{port}"),
        ],
    );
    let tcp = proxy.tcp_addr().expect("tcp listener");
    (proxy, tcp)
}

// ---- TCP ----------------------------------------------------------------------

/// A double-CRLF keep-alive ping gets exactly one CRLF pong (RFC 5626
/// §3.5.1), also when the ping comes in two halves, and the connection stays
/// usable: an OPTIONS on it gets 200 with nothing before the status line.
#[test]
fn crlf_keepalive_is_answered() {
    let (proxy, tcp) = tcp_proxy("");
    let mut conn = Conn::open(tcp);

    conn.send(b"\r\n\r\n").expect("sending the ping");
    let pong = conn
        .read_exact(2, BOUND)
        .unwrap_or_else(|e| panic!("no CRLF pong to a double-CRLF ping: {e}"));
    assert_eq!(pong, b"\r\n");

    // Half a ping waits for its other half, then gets one pong.
    conn.send(b"\r\n").expect("sending half a ping");
    thread::sleep(Duration::from_millis(100));
    conn.send(b"\r\n").expect("sending the other half");
    let pong = conn
        .read_exact(2, BOUND)
        .unwrap_or_else(|e| panic!("no CRLF pong to a ping sent in two halves: {e}"));
    assert_eq!(pong, b"\r\n");

    // A second pong (or anything else) would come before the status line here.
    conn.assert_answered(tcp, "after the keep-alives");
    assert_eq!(
        proxy.log_count(BAD_FRAMING),
        0,
        "a keep-alive was taken for bad framing"
    );
}

/// Two different Content-Lengths, a non-numeric one, or none at all (a
/// stream needs it, RFC 3261 §18.3) leave the stream unframeable: the proxy
/// closes that connection without answering, and logs it. Another
/// connection, open all along, still gets its OPTIONS answered, and so does a
/// new one.
#[test]
fn framing_error_closes_only_that_connection() {
    let (proxy, tcp) = tcp_proxy("");
    let mut good = Conn::open(tcp);
    good.assert_answered(tcp, "the good connection, before");

    let bad_heads = [
        (
            "two different Content-Lengths",
            "Content-Length: 0\r\nContent-Length: 5\r\n",
        ),
        ("a non-numeric Content-Length", "Content-Length: five\r\n"),
        ("no Content-Length", ""),
    ];
    for (what, framing) in bad_heads {
        let mut bad = Conn::open(tcp);
        let me = bad.local();
        let request = format!(
            "OPTIONS sip:{tcp} SIP/2.0\r\n\
             Via: SIP/2.0/TCP {me};branch=z9hG4bK-bad-{n};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:bad@{me}>;tag=b{n}\r\n\
             To: <sip:{tcp}>\r\n\
             Call-ID: {id}\r\n\
             CSeq: 1 OPTIONS\r\n\
             {framing}\r\nhello",
            n = SEQ.fetch_add(1, Ordering::Relaxed),
            id = call_id(),
        );
        bad.send(request.as_bytes())
            .expect("sending the bad message");
        if let Err(e) = bad.wait_closed(BOUND) {
            panic!("{what}: the connection was not closed: {e}");
        }
        assert!(
            bad.buf.is_empty(),
            "{what}: the proxy answered before closing: {:?}",
            String::from_utf8_lossy(&bad.buf)
        );
    }
    assert!(
        proxy.wait_for_log(BAD_FRAMING, 3, BOUND).is_some(),
        "expected 3 '{BAD_FRAMING}' log lines, found {}",
        proxy.log_count(BAD_FRAMING)
    );

    good.assert_answered(tcp, "the good connection, after three were closed");
    Conn::open(tcp).assert_answered(tcp, "a new connection");
}

/// Two size limits apply to stream messages, `[server] max_message_size`
/// (2000 here) and the flood guard's `[limits] max_message_bytes` (1000
/// here); the lower one is enforced while framing. A message past it closes
/// its connection unanswered: a 1500-byte OPTIONS, a 5000-byte head with no
/// end, a 4000-byte body announced. Other connections are not affected.
#[test]
fn oversized_message_closes_the_connection() {
    let (proxy, tcp) =
        tcp_proxy("[server]\nmax_message_size = 2000\n\n[limits]\nmax_message_bytes = 1000\n");

    // Over [limits] max_message_bytes, under max_message_size: the lower
    // limit closes the connection too (a sender waiting for an answer the
    // flood guard would drop learns at once), and nothing is answered.
    let mut conn = Conn::open(tcp);
    let id = call_id();
    let big = options(tcp, conn.local(), "TCP", &id, 1, &"x".repeat(1200));
    assert!((1000..2000).contains(&big.len()), "{} bytes", big.len());
    let small = options(tcp, conn.local(), "TCP", &id, 2, "");
    let _ = conn.send(format!("{big}{small}").as_bytes());
    if let Err(e) = conn.wait_closed(BOUND) {
        panic!("a 1500-byte message over max_message_bytes did not close the connection: {e}");
    }
    assert!(
        !String::from_utf8_lossy(&conn.buf).contains("SIP/2.0"),
        "a message on the closed connection was answered: {:?}",
        String::from_utf8_lossy(&conn.buf)
    );

    // A head past max_message_size with no blank line yet.
    let mut endless = Conn::open(tcp);
    let mut head = format!("OPTIONS sip:{tcp} SIP/2.0\r\n");
    while head.len() < 5000 {
        head.push_str("X-Padding: 0123456789012345678901234567890123456789\r\n");
    }
    endless
        .send(head.as_bytes())
        .expect("sending the long head");
    if let Err(e) = endless.wait_closed(BOUND) {
        panic!("a 5000-byte head did not close the connection: {e}");
    }

    // A whole message whose body takes it past max_message_size. The proxy may
    // close before reading the body, so a failed write is fine.
    let mut long_body = Conn::open(tcp);
    let id = call_id();
    let request = options(tcp, long_body.local(), "TCP", &id, 1, &"y".repeat(4000));
    let _ = long_body.send(request.as_bytes());
    if let Err(e) = long_body.wait_closed(BOUND) {
        panic!("a 4000-byte body did not close the connection: {e}");
    }
    assert!(
        !String::from_utf8_lossy(&long_body.buf).contains("SIP/2.0"),
        "the oversized message was answered: {:?}",
        String::from_utf8_lossy(&long_body.buf)
    );
    assert!(
        proxy.wait_for_log(BAD_FRAMING, 3, BOUND).is_some(),
        "expected 3 '{BAD_FRAMING}' log lines, found {}",
        proxy.log_count(BAD_FRAMING)
    );
    Conn::open(tcp).assert_answered(tcp, "a new connection");
}

/// `[server] max_connections_per_ip = 3`: three connections from 127.0.0.1
/// are served; a fourth is closed at once without an answer (and logged);
/// when one of the three goes away, a new connection is served again.
#[test]
fn connections_per_ip_are_capped() {
    let (proxy, tcp) = tcp_proxy("[server]\nmax_connections_per_ip = 3\n");
    let mut three: Vec<Conn> = (0..3).map(|_| Conn::open(tcp)).collect();
    for (i, conn) in three.iter_mut().enumerate() {
        conn.assert_answered(tcp, &format!("connection {}", i + 1));
    }

    let mut fourth = Conn::open(tcp);
    // The proxy may already have closed it: a failed write is fine.
    let request = options(tcp, fourth.local(), "TCP", &call_id(), 1, "");
    let _ = fourth.send(request.as_bytes());
    if let Err(e) = fourth.wait_closed(BOUND) {
        panic!("the 4th connection from one IP was not closed: {e}");
    }
    assert!(
        fourth.buf.is_empty(),
        "the 4th connection got an answer: {:?}",
        String::from_utf8_lossy(&fourth.buf)
    );
    assert!(
        proxy.wait_for_log("connection refused", 1, BOUND).is_some(),
        "no 'connection refused' log line"
    );

    // The proxy frees the slot when it sees the close: retry for a while.
    drop(three.remove(0));
    let started = Instant::now();
    let mut tries = Vec::new();
    let served = loop {
        let mut conn = Conn::open(tcp);
        match conn.ask(tcp) {
            Ok(answer) => break Some(answer),
            Err(e) => tries.push(e),
        }
        if started.elapsed() > BOUND || tries.len() >= 50 {
            break None;
        }
        thread::sleep(Duration::from_millis(100));
    };
    let answer = served.unwrap_or_else(|| {
        panic!(
            "no new connection served within {BOUND:?} of closing one ({} tries; last: {:?})",
            tries.len(),
            tries.last()
        )
    });
    assert_eq!(status_code(&answer), Some(200), "{answer}");
    for (i, conn) in three.iter_mut().enumerate() {
        conn.assert_answered(tcp, &format!("connection {} (still open)", i + 2));
    }
}

/// `[server] idle_timeout_s = 1`: a connection that sends nothing is closed
/// by the proxy (not at once: after the second); one that sends a keep-alive
/// every 300 ms for 3 s stays open and still gets its OPTIONS answered.
#[test]
fn idle_connections_are_closed() {
    let (_proxy, tcp) = tcp_proxy("[server]\nidle_timeout_s = 1\n");
    let connected = Instant::now();
    let mut silent = Conn::open(tcp);
    let mut chatty = Conn::open(tcp);

    let closed = thread::scope(|s| {
        let waiter = s.spawn(move || {
            silent
                .wait_closed(Duration::from_secs(10))
                .map(|_| connected.elapsed())
        });
        let kept_alive = Instant::now();
        let mut pings = 0;
        while kept_alive.elapsed() < Duration::from_secs(3) && pings < 20 {
            chatty.send(b"\r\n\r\n").expect("sending a keep-alive");
            let pong = chatty
                .read_exact(2, BOUND)
                .unwrap_or_else(|e| panic!("keep-alive {} not answered: {e}", pings + 1));
            assert_eq!(pong, b"\r\n");
            pings += 1;
            thread::sleep(Duration::from_millis(300));
        }
        chatty.assert_answered(tcp, "after 3 s of keep-alives with idle_timeout_s = 1");
        waiter.join().expect("waiter thread")
    });
    let after = closed.unwrap_or_else(|e| panic!("the silent connection was not closed: {e}"));
    assert!(
        after >= Duration::from_millis(900),
        "the silent connection was closed after {after:?}, before idle_timeout_s = 1"
    );
}

// ---- TLS ----------------------------------------------------------------------

/// `openssl` with these arguments; panics with its stderr unless it succeeds.
fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running openssl (is it installed?): {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A self-signed P-256 certificate for IP 127.0.0.1, not a CA (webpki
/// refuses a CA certificate as a server's): `dir/NAME.pem` and `dir/NAME.key`.
fn make_cert(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    let subject = format!("/CN={name}");
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-subj",
        &subject,
        "-addext",
        "subjectAltName=IP:127.0.0.1",
        "-addext",
        "basicConstraints=critical,CA:FALSE",
        "-keyout",
        path_str(&key),
        "-out",
        path_str(&cert),
    ]);
    (cert, key)
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// SHA-256 fingerprint of a PEM certificate, `AB:CD:...` (as the proxy logs it).
fn fingerprint(cert: &Path) -> String {
    let out = openssl(&[
        "x509",
        "-noout",
        "-fingerprint",
        "-sha256",
        "-in",
        path_str(cert),
    ]);
    out.trim()
        .split_once('=')
        .map(|(_, fp)| fp.to_ascii_uppercase())
        .unwrap_or_else(|| panic!("no fingerprint in {out:?}"))
}

/// Replaces `path` by a file with `content` the way certbot and editors do:
/// write a temp file next to it, rename it over.
fn replace_file(path: &Path, content: &[u8]) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, content).expect("writing the temp file");
    fs::rename(&tmp, path).expect("renaming over");
}

/// The first whole SIP response in `text` with this Call-ID.
fn response_in(text: &str, id: &str) -> Option<String> {
    let mut rest = text;
    while let Some(at) = rest.find("SIP/2.0 ") {
        let candidate = &rest[at..];
        if let Some(len) = complete_message(candidate.as_bytes()) {
            let msg = &candidate[..len];
            if header_value(msg, "call-id", Some("i")).as_deref() == Some(id) {
                return Some(msg.to_owned());
            }
        }
        rest = &candidate[8..];
    }
    None
}

/// `openssl s_client` to a `tls:` listener as a child process, its stdin a
/// pipe and its stdout and stderr collected by threads. Killed by PID when
/// dropped. Server name checking: `-verify_ip 127.0.0.1`.
struct SClient {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
    addr: SocketAddr,
}

fn collect(mut from: impl Read + Send + 'static) -> Arc<Mutex<Vec<u8>>> {
    let into = Arc::new(Mutex::new(Vec::new()));
    let sink = into.clone();
    thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        while let Ok(n) = from.read(&mut chunk) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(&chunk[..n]);
        }
    });
    into
}

impl SClient {
    fn spawn(addr: SocketAddr, ca: &Path, extra: &[&str]) -> SClient {
        let mut child = Command::new("openssl")
            .args(["s_client", "-connect", &addr.to_string(), "-CAfile"])
            .arg(ca)
            .args(["-verify_ip", "127.0.0.1", "-nocommands"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running openssl s_client (is it installed?): {e}"));
        let stdin = child.stdin.take();
        let out = collect(child.stdout.take().expect("stdout piped"));
        let err = collect(child.stderr.take().expect("stderr piped"));
        SClient {
            child,
            stdin,
            out,
            err,
            addr,
        }
    }

    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.err.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends an OPTIONS over the TLS connection and waits for its answer
    /// (the whole response), or returns why there was none.
    fn ask(&mut self) -> Result<String, String> {
        let id = call_id();
        // s_client does not tell us its local port; the proxy answers over
        // the connection (and adds received/rport) whatever the Via says.
        let from: SocketAddr = "127.0.0.1:5061".parse().expect("address");
        let request = options(self.addr, from, "TLS", &id, 1, "");
        let stdin = self.stdin.as_mut().ok_or("stdin already closed")?;
        stdin
            .write_all(request.as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("writing to s_client: {e}\n{}", self.stderr()))?;
        let deadline = Instant::now() + BOUND;
        loop {
            if let Some(answer) = response_in(&self.stdout(), &id) {
                return Ok(answer);
            }
            if self.exited() || Instant::now() > deadline {
                // One more look: the collector may have been behind the exit.
                thread::sleep(Duration::from_millis(50));
                return response_in(&self.stdout(), &id).ok_or_else(|| {
                    format!(
                        "no answer within {BOUND:?} (s_client exited: {}); stdout:\n{}\nstderr:\n{}",
                        self.exited(),
                        self.stdout(),
                        self.stderr()
                    )
                });
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Closes its stdin (s_client then closes the connection and exits) and
    /// waits for it, killing it after [`BOUND`].
    fn finish(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + BOUND;
        while !self.exited() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        thread::sleep(Duration::from_millis(20)); // let the collectors see EOF
    }
}

impl Drop for SClient {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one short TLS session showed: s_client's verification result, the
/// protocol it negotiated, and the proxy's answer to an OPTIONS.
struct Handshake {
    verify: Option<i32>,
    protocol: Option<String>,
    answer: Result<String, String>,
    output: String,
}

/// Connects with `openssl s_client` trusting only `ca` (and the extra
/// arguments, e.g. `-tls1_2`), sends one OPTIONS, closes. s_client does not
/// stop on a failed verification, so the result is read from its output.
fn handshake(addr: SocketAddr, ca: &Path, extra: &[&str]) -> Handshake {
    let mut client = SClient::spawn(addr, ca, extra);
    let answer = client.ask();
    client.finish();
    let output = format!("{}\n--- stderr ---\n{}", client.stdout(), client.stderr());
    let verify = output.lines().find_map(|l| {
        l.trim()
            .strip_prefix("Verify return code: ")?
            .split(' ')
            .next()?
            .parse()
            .ok()
    });
    // "New, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384"
    let protocol = output.lines().find_map(|l| {
        let rest = l.strip_prefix("New, ")?;
        rest.split(',').next().map(str::to_owned)
    });
    Handshake {
        verify,
        protocol,
        answer,
        output,
    }
}

/// A proxy with `config` listening on `udp:` and `tls:` 127.0.0.1 on one
/// port; returns it and the TLS address.
fn tls_proxy(config: &str) -> (Viaduct, SocketAddr) {
    let port = free_port();
    let proxy = Viaduct::start_with_listen(
        config,
        &[
            format!("udp:127.0.0.1:{port}"),
            format!("tls:127.0.0.1:{port}"),
        ],
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    (proxy, addr)
}

/// Polls the proxy's log every 10 ms until a line satisfies `hit`, for at
/// most `bound`; returns how long that took.
fn wait_for_line(proxy: &Viaduct, hit: impl Fn(&str) -> bool, bound: Duration) -> Option<Duration> {
    let started = Instant::now();
    loop {
        if proxy.log().lines().any(&hit) {
            return Some(started.elapsed());
        }
        if started.elapsed() >= bound {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"))
}

/// `[tls] cert_file`/`key_file` replaced while a TLS connection is up (by
/// rename, as certbot does): the watcher reloads them, new handshakes get
/// the new certificate (they verify against B, not A), and the connection
/// opened before keeps working on the keys it negotiated. `POST /reload`
/// (no policy configured) reloads them too and returns the fingerprint.
/// A garbage certificate file is refused by the watcher and by `POST
/// /reload` (500 naming the file), and B keeps serving.
#[test]
fn tls_certificate_reload_keeps_open_connections() {
    let dir = TempDir::new().expect("temp dir");
    let keys = dir.path().join("keys");
    let live = dir.path().join("live");
    fs::create_dir_all(&keys).expect("mkdir");
    fs::create_dir_all(&live).expect("mkdir");
    let (cert_a, key_a) = make_cert(&keys, "a");
    let (cert_b, key_b) = make_cert(&keys, "b");
    let (fp_a, fp_b) = (fingerprint(&cert_a), fingerprint(&cert_b));
    assert_ne!(fp_a, fp_b);
    let (cert, key) = (live.join("cert.pem"), live.join("key.pem"));
    fs::copy(&cert_a, &cert).expect("copy");
    fs::copy(&key_a, &key).expect("copy");

    let config = format!(
        "[server]\ndata_dir = {:?}\n\n[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
        path_str(&dir.path().join("data")),
        path_str(&cert),
        path_str(&key),
    );
    let (proxy, addr) = tls_proxy(&config);
    assert!(
        proxy.log().contains(&fp_a),
        "the start-up log does not show certificate A's fingerprint {fp_a}"
    );

    // The long-lived connection, verified against A.
    let mut old = SClient::spawn(addr, &cert_a, &["-quiet", "-verify_return_error"]);
    let answer = old
        .ask()
        .unwrap_or_else(|e| panic!("first OPTIONS over TLS (certificate A): {e}"));
    assert_eq!(status_code(&answer), Some(200), "{answer}");

    // Key first: a reload between the two renames is refused (key B does not
    // match certificate A) and the one after the second succeeds.
    replace_file(&key, &fs::read(&key_b).expect("read"));
    replace_file(&cert, &fs::read(&cert_b).expect("read"));
    let reloaded = |l: &str| l.contains("TLS: certificate reloaded") && l.contains(&fp_b);
    let took = wait_for_line(&proxy, reloaded, Duration::from_secs(10));
    assert!(
        took.is_some(),
        "no 'TLS: certificate reloaded' with B's fingerprint {fp_b} within 10 s of the rename"
    );
    eprintln!("certificate reloaded {took:?} after the rename");

    let new_b = handshake(addr, &cert_b, &[]);
    assert_eq!(
        new_b.verify,
        Some(0),
        "a new handshake does not verify against certificate B:\n{}",
        new_b.output
    );
    let answer = new_b
        .answer
        .unwrap_or_else(|e| panic!("OPTIONS over a new connection (certificate B): {e}"));
    assert_eq!(status_code(&answer), Some(200), "{answer}");
    let new_a = handshake(addr, &cert_a, &[]);
    assert!(
        new_a.verify.is_some_and(|code| code != 0),
        "a new handshake still verifies against certificate A (or s_client said nothing):\n{}",
        new_a.output
    );

    let answer = old.ask().unwrap_or_else(|e| {
        panic!("second OPTIONS on the connection opened before the reload: {e}")
    });
    assert_eq!(status_code(&answer), Some(200), "{answer}");

    // The admin port reloads the certificate too (there is no policy to reload).
    let reload = proxy.admin("POST", "/reload");
    assert_eq!(reload.status, 200, "POST /reload: {reload:?}");
    assert_eq!(
        json(&reload.body)["tls_fingerprint"].as_str(),
        Some(fp_b.as_str()),
        "POST /reload: {reload:?}"
    );

    // Garbage: refused by the watcher and by POST /reload; B keeps serving.
    let refused = "TLS: reload refused";
    let before = proxy.log_count(refused);
    replace_file(&cert, b"not a certificate\n");
    assert!(
        proxy
            .wait_for_log(refused, before + 1, Duration::from_secs(10))
            .is_some(),
        "no '{refused}' log line within 10 s of writing garbage into the certificate"
    );
    let reload = proxy.admin("POST", "/reload");
    assert_eq!(
        reload.status, 500,
        "POST /reload with a garbage certificate: {reload:?}"
    );
    assert!(
        reload.body.contains("certificate refused") && reload.body.contains("cert.pem"),
        "POST /reload does not say which certificate file it refused: {reload:?}"
    );
    let still_b = handshake(addr, &cert_b, &[]);
    assert_eq!(
        still_b.verify,
        Some(0),
        "after the refused reload, a new handshake does not verify against B:\n{}",
        still_b.output
    );
    let answer = old.ask().unwrap_or_else(|e| {
        panic!("third OPTIONS on the connection opened before the reloads: {e}")
    });
    assert_eq!(status_code(&answer), Some(200), "{answer}");
}

/// With no `[tls]` files the proxy generates a self-signed certificate at
/// `<data_dir>/tls/cert.pem` and logs its path and fingerprint (the ones
/// `openssl x509 -fingerprint -sha256` shows). Clients that trust that file
/// verify the listener over TLS 1.2 (softphones on old OpenSSL) and TLS 1.3,
/// and get their OPTIONS answered over either.
#[test]
fn tls_listener_serves_tls12_and_tls13() {
    let dir = TempDir::new().expect("temp dir");
    let config = format!("[server]\ndata_dir = {:?}\n", path_str(dir.path()));
    let (proxy, addr) = tls_proxy(&config);
    let cert = dir.path().join("tls/cert.pem");
    assert!(
        cert.is_file(),
        "no generated certificate at {}",
        cert.display()
    );
    let fp = fingerprint(&cert);
    let log = proxy.log();
    let listening = log
        .lines()
        .find(|l| l.contains(&format!("listening on tls:{addr}")))
        .unwrap_or_else(|| panic!("no 'listening on tls:{addr}' log line"));
    assert!(
        listening.contains(path_str(&cert)) && listening.contains(&fp),
        "the listening line does not name {} and its fingerprint {fp}: {listening}",
        cert.display()
    );

    for (flag, version) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let h = handshake(addr, &cert, &[flag]);
        assert_eq!(
            h.protocol.as_deref(),
            Some(version),
            "{flag}: not negotiated:\n{}",
            h.output
        );
        assert_eq!(
            h.verify,
            Some(0),
            "{flag}: the generated certificate does not verify:\n{}",
            h.output
        );
        let answer = h
            .answer
            .unwrap_or_else(|e| panic!("{flag}: OPTIONS over TLS: {e}"));
        assert_eq!(status_code(&answer), Some(200), "{flag}: {answer}");
    }
}
