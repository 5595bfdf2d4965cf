//! TLS and WebSocket through the real proxy, with real clients nobody here
//! wrote (PEERS.md has their versions and gotchas):
//!
//! - TLS in: PJSIP (`pjsua2-python`, TLS 1.2 only) calls through a `tls:`
//!   listener, verifying the proxy's generated (rcgen) certificate.
//! - TLS out: the proxy forwards to Kamailio 5.6's TLS listener (verifying
//!   Kamailio's certificate against `[tls] ca_file`), which relays to SIPp.
//! - WS and WSS in: SIP.js in Node places calls to a SIPp callee over UDP;
//!   the callee hangs up, and its BYE must find the browser-style client
//!   (a `*.invalid` Contact) over its WebSocket: the flow token's job.
//! - A browser: the same SIP.js call from headless Chromium over WSS.
//!
//! The peers are installed by their own scripts (`tests/peers/*/install`,
//! idempotent; `./tests/run` runs them first). A peer that cannot be
//! installed fails the test; nothing is skipped. Loopback only; every
//! process is stopped by its PID.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use viaduct_e2e::{
    assert_all_calls_ok, free_port, header_values, options_ping, workspace_root, Json, Sipp,
    SippRun, Viaduct,
};

/// How long one peer run may take (its own `--timeout` is shorter).
const PEER_BOUND: Duration = Duration::from_secs(120);

fn peers() -> PathBuf {
    workspace_root().join("tests/peers")
}

fn install(name: &str) -> String {
    viaduct_e2e::install_peer(name)
}

/// Runs a peer client to completion within [`PEER_BOUND`] and returns its
/// output; the JSON line it prints last is its verdict.
fn run_peer(cmd: &mut Command) -> (Output, Json) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {:?}: {e}", cmd.get_program()));
    let start = Instant::now();
    while child.try_wait().ok().flatten().is_none() {
        if start.elapsed() > PEER_BOUND {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("peer output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().rev().find(|l| l.starts_with('{'));
    let json = line.and_then(Json::parse).unwrap_or_else(|| {
        panic!(
            "{:?} printed no JSON verdict ({}):\nstdout:\n{stdout}\nstderr:\n{}",
            cmd.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, json)
}

fn count(json: &Json, key: &str) -> u64 {
    json.u64(key).unwrap_or(u64::MAX)
}

/// A proxy with the given extra listeners (`tls`, `ws`, `wss`), its data
/// directory private to the test; returns the proxy, the ports by listener
/// (in the order given) and the generated certificate's path.
fn proxy_with(kinds: &[&str], extra_config: &str) -> (Viaduct, Vec<u16>, tempfile::TempDir) {
    let data = tempfile::tempdir().expect("data dir");
    let mut listen = vec![format!("udp:127.0.0.1:{}", free_port())];
    let ports: Vec<u16> = kinds.iter().map(|_| free_port()).collect();
    for (kind, port) in kinds.iter().zip(&ports) {
        listen.push(format!("{kind}:127.0.0.1:{port}"));
    }
    let config = format!(
        "[server]\ndata_dir = \"{}\"\n{extra_config}",
        data.path().display()
    );
    (Viaduct::start_with_listen(&config, &listen), ports, data)
}

fn generated_cert(data: &tempfile::TempDir) -> PathBuf {
    let cert = data.path().join("tls/cert.pem");
    assert!(
        cert.is_file(),
        "no generated certificate at {}",
        cert.display()
    );
    cert
}

/// The Record-Route values the callee saw on the first INVITE.
fn record_routes(callee: &SippRun) -> Vec<String> {
    header_values(&callee.first_message("INVITE "), "record-route", None)
}

/// RFC 5658: a caller on a connection and a callee on UDP give two entries:
/// the UDP side on top, then the caller's side with the flow token naming
/// its connection (`ft-...@`) and its transport.
fn assert_two_sided_record_route(rr: &[String], caller_transport: &str, caller_port: u16) {
    assert_eq!(rr.len(), 2, "two Record-Route entries: {rr:?}");
    assert!(
        rr[0].starts_with("<sip:127.0.0.1:") && rr[0].ends_with(";lr>"),
        "the callee's side is UDP: {rr:?}"
    );
    let caller_side = &rr[1];
    assert!(
        caller_side.starts_with("<sip:ft-")
            && caller_side.contains(&format!("@127.0.0.1:{caller_port};lr"))
            && caller_side.ends_with(&format!("transport={caller_transport}>")),
        "the caller's side names its {caller_transport} connection: {rr:?}"
    );
}

// ---- TLS in: PJSIP -----------------------------------------------------------------

/// PJSIP over TLS 1.2, verifying the generated certificate, places 10 calls
/// through a `tls:` listener to a SIPp callee on UDP (one that echoes
/// Record-Route, so ACK and BYE come back through the proxy over the same
/// TLS connection): all 10 are confirmed; the callee saw 10 calls and two
/// Record-Route entries.
#[test]
fn tls_in_pjsip_calls_verify_the_generated_certificate() {
    let python = install("pjsua");
    let (proxy, ports, data) = proxy_with(&["tls"], "");
    let cert = generated_cert(&data);
    let callee = Sipp::uas()
        .scenario_file(&peers().join("pjsua/uas_rr.xml"))
        .calls(10)
        .trace_msg()
        .spawn();
    let (out, verdict) = run_peer(
        Command::new(&python)
            .arg(peers().join("pjsua/tls_call.py"))
            .args(["--proxy", &format!("127.0.0.1:{}", ports[0])])
            .args(["--target", &format!("sip:bob@{}", callee.addr())])
            .args(["--calls", "10", "--hold-ms", "200", "--timeout-s", "90"])
            .arg("--ca")
            .arg(&cert),
    );
    let callee = callee.wait();
    assert!(
        out.status.success() && count(&verdict, "confirmed") == 10,
        "pjsua over TLS: {verdict:?}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        proxy.log_tail(30)
    );
    assert_all_calls_ok(&callee, 10);
    assert_two_sided_record_route(&record_routes(&callee), "tls", ports[0]);
}

// ---- TLS out: Kamailio ---------------------------------------------------------------

/// Kamailio 5.6 in the foreground with the TLS relay config of
/// `tests/peers/kamailio-tls`; stopped by its PID on drop.
struct Kamailio {
    child: Child,
    _dir: tempfile::TempDir,
    log: PathBuf,
}

impl Kamailio {
    /// `client_ca`: require a client certificate that chains to it (mutual TLS).
    fn start(
        tls_port: u16,
        udp_port: u16,
        next_hop: &str,
        (cert, key): (&Path, &Path),
        client_ca: Option<&Path>,
    ) -> Kamailio {
        let dir = tempfile::tempdir().expect("kamailio dir");
        let log = dir.path().join("kamailio.log");
        let out = std::fs::File::create(&log).expect("kamailio log");
        let d = dir.path().display().to_string();
        let mut cmd = Command::new("kamailio");
        if let Some(ca) = client_ca {
            cmd.args(["-A", &format!("CLIENT_CA=\"{}\"", ca.display())]);
        }
        let child = cmd
            .arg("-f")
            .arg(peers().join("kamailio-tls/kamailio.cfg"))
            .args(["-DD", "-E", "-Y", &d, "-P", &format!("{d}/k.pid"), "-w", &d])
            .args(["-A", &format!("TLS_PORT={tls_port}")])
            .args(["-A", &format!("UDP_PORT={udp_port}")])
            .args(["-A", &format!("NEXT_HOP=\"{next_hop}\"")])
            .args(["-A", &format!("TLS_CERT=\"{}\"", cert.display())])
            .args(["-A", &format!("TLS_KEY=\"{}\"", key.display())])
            .args(["-A", "LOG_REQUESTS"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("kamailio ({e}): apt-get install -y kamailio kamailio-tls-modules (./tests/run does)")
            });
        let mut k = Kamailio {
            child,
            _dir: dir,
            log,
        };
        let start = Instant::now();
        while options_ping(viaduct_e2e::local(udp_port), Duration::from_millis(200)).is_none() {
            if let Ok(Some(status)) = k.child.try_wait() {
                panic!("kamailio exited at start ({status}):\n{}", k.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "kamailio not ready:\n{}",
                k.log()
            );
        }
        k
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let start = Instant::now();
        while self.child.try_wait().ok().flatten().is_none() {
            if start.elapsed() > Duration::from_secs(3) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A self-signed certificate for 127.0.0.1 (not a CA), made by openssl.
fn openssl_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-sha256", "-days", "2", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success(), "openssl req failed");
    (cert, key)
}

/// A SIPp caller on UDP whose target is Kamailio's TLS listener: the proxy
/// opens one TLS connection, verifies Kamailio's certificate against
/// `[tls] ca_file` (by IP SAN), and sends the INVITE, ACK and BYE of all
/// 20 calls over it (the caller and callee follow the Record-Route set):
/// every call completes, and Kamailio saw every request arrive over TLS.
#[test]
fn tls_out_to_kamailio_reuses_one_verified_connection() {
    let certs = tempfile::tempdir().expect("cert dir");
    let (cert, key) = openssl_cert(certs.path());
    let callee = Sipp::uas()
        .scenario_file(&peers().join("pjsua/uas_rr.xml"))
        .calls(20)
        .spawn();
    let (k_tls, k_udp) = (free_port(), free_port());
    let kamailio = Kamailio::start(
        k_tls,
        k_udp,
        &format!("sip:{}", callee.addr()),
        (&cert, &key),
        None,
    );
    let extra = format!(
        "[tls]\nca_file = \"{}\"\n[routing]\ntargets = [\"sip:127.0.0.1:{k_tls};transport=tls\"]\n",
        cert.display()
    );
    let (proxy, _ports, _data) = proxy_with(&["tls"], &extra);
    let caller = Sipp::uac(callee.addr())
        .scenario("room_uac.xml")
        .rsa(proxy.udp_addr())
        .calls(20)
        .rate(10)
        .spawn()
        .wait();
    let callee = callee.wait();
    assert_all_calls_ok(&caller, 20);
    assert_all_calls_ok(&callee, 20);
    let log = kamailio.log();
    for method in ["INVITE", "ACK", "BYE"] {
        let over_tls = log
            .lines()
            .filter(|l| l.contains(&format!("kamailio-tls: {method} ")) && l.contains("proto=tls"))
            .count();
        assert_eq!(over_tls, 20, "{method}s over TLS at Kamailio:\n{log}");
    }
    let sources: std::collections::HashSet<&str> = log
        .lines()
        .filter(|l| l.contains("proto=tls"))
        .filter_map(|l| l.split("src=").nth(1))
        .filter_map(|s| s.split_whitespace().next())
        .collect();
    assert_eq!(
        sources.len(),
        1,
        "one TLS connection for every request: {sources:?}"
    );
}

/// Mutual TLS, as trunk providers ask: Kamailio requires a client
/// certificate signed by a CA it trusts. With `[tls] client_cert_file` the
/// proxy presents one and 5 calls complete; without it the handshake is
/// refused and the caller gets a final error (408 or 503), never silence.
#[test]
fn tls_out_presents_a_client_certificate_when_the_next_hop_requires_one() {
    let certs = tempfile::tempdir().expect("cert dir");
    let server = certs.path().join("server");
    let client = certs.path().join("client");
    std::fs::create_dir_all(&server).unwrap();
    std::fs::create_dir_all(&client).unwrap();
    let (cert, key) = openssl_cert(&server);
    let (client_cert, client_key) = openssl_cert(&client);
    let callee = Sipp::uas()
        .scenario_file(&peers().join("pjsua/uas_rr.xml"))
        .calls(5)
        .spawn();
    let (k_tls, k_udp) = (free_port(), free_port());
    let kamailio = Kamailio::start(
        k_tls,
        k_udp,
        &format!("sip:{}", callee.addr()),
        (&cert, &key),
        Some(&client_cert),
    );
    let target = format!("[routing]\ntargets = [\"sip:127.0.0.1:{k_tls};transport=tls\"]\n");
    let with_cert = format!(
        "[tls]\nca_file = \"{}\"\nclient_cert_file = \"{}\"\nclient_key_file = \"{}\"\n{target}",
        cert.display(),
        client_cert.display(),
        client_key.display()
    );
    let (proxy, _ports, _data) = proxy_with(&["tls"], &with_cert);
    let caller = Sipp::uac(callee.addr())
        .scenario("room_uac.xml")
        .rsa(proxy.udp_addr())
        .calls(5)
        .rate(5)
        .spawn()
        .wait();
    let callee = callee.wait();
    assert_all_calls_ok(&caller, 5);
    assert_all_calls_ok(&callee, 5);
    drop(proxy);

    // The same without a client certificate: Kamailio refuses the handshake.
    let without = format!(
        "[tls]\nca_file = \"{}\"\n[timers]\nt1_ms = 50\n{target}",
        cert.display()
    );
    let (proxy, _ports, _data) = proxy_with(&["tls"], &without);
    let refused = Sipp::uac(viaduct_e2e::local(free_port()))
        .scenario("expect_408_or_503_uac.xml")
        .rsa(proxy.udp_addr())
        .calls(1)
        .timeout(Duration::from_secs(30))
        .spawn()
        .wait();
    // (Over TLS 1.3 the refusal comes after our handshake ends, at the first
    // read, so the branch times out rather than failing at connect.)
    assert_all_calls_ok(&refused, 1);
    drop(kamailio);
}

// ---- WebSocket in: SIP.js and Chromium ---------------------------------------------------

/// SIP.js over `ws:` or `wss:` places `calls` calls to a SIPp callee over
/// UDP that hangs up itself; returns the peer's verdict and the callee's run.
fn sipjs_calls(script: &str, scheme: &str, calls: u64) -> (Json, SippRun, u16) {
    let node_dir = peers().join("node");
    install("node");
    let (proxy, ports, data) = proxy_with(&[scheme], "");
    let callee = Sipp::uas()
        .scenario_file(&node_dir.join("uas_bye.xml"))
        .calls(calls)
        .arg("-d")
        .arg("300")
        .trace_msg()
        .spawn();
    let mut cmd = Command::new("node");
    cmd.current_dir(&node_dir)
        .arg(script)
        .args(["--server", &format!("{scheme}://127.0.0.1:{}", ports[0])])
        .args(["--target", &format!("sip:bob@{}", callee.addr())])
        .args(["--calls", &calls.to_string(), "--expect-remote-bye"])
        .args(["--timeout-ms", "60000"]);
    if scheme == "wss" {
        cmd.arg("--ca").arg(generated_cert(&data));
    }
    let (out, verdict) = run_peer(&mut cmd);
    let callee = callee.wait();
    assert!(
        out.status.success(),
        "{script} over {scheme}: {verdict:?}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        proxy.log_tail(40)
    );
    (verdict, callee, ports[0])
}

fn assert_calls_with_remote_bye(
    scheme: &str,
    verdict: &Json,
    callee: &SippRun,
    calls: u64,
    port: u16,
) {
    assert_eq!(count(verdict, "established"), calls, "{verdict:?}");
    assert_eq!(count(verdict, "failed"), 0, "{verdict:?}");
    // The callee's BYEs reached the client over its WebSocket.
    assert_eq!(count(verdict, "remote_byes"), calls, "{verdict:?}");
    assert_all_calls_ok(callee, calls);
    assert_two_sided_record_route(&record_routes(callee), scheme, port);
}

/// SIP.js in Node over `ws:`: 5 calls, each hung up by the callee.
#[test]
fn ws_calls_and_the_callees_bye_comes_back_over_the_websocket() {
    let (verdict, callee, port) = sipjs_calls("call.mjs", "ws", 5);
    assert_calls_with_remote_bye("ws", &verdict, &callee, 5, port);
}

/// The same over `wss:`, SIP.js verifying the generated certificate.
#[test]
fn wss_calls_and_the_callees_bye_comes_back_over_the_websocket() {
    let (verdict, callee, port) = sipjs_calls("call.mjs", "wss", 5);
    assert_calls_with_remote_bye("wss", &verdict, &callee, 5, port);
}

/// Headless Chromium (Debian's, driven by playwright-core) runs SIP.js in a
/// page and calls over `wss:` with the generated certificate: 2 calls, each
/// hung up by the callee.
#[test]
fn browser_calls_over_wss() {
    let (verdict, callee, port) = sipjs_calls("browser.mjs", "wss", 2);
    assert!(
        verdict
            .str("browser")
            .is_some_and(|b| b.contains("HeadlessChrome")),
        "{verdict:?}"
    );
    assert_calls_with_remote_bye("wss", &verdict, &callee, 2, port);
}

/// A WebSocket handshake without the `sip` subprotocol is refused (RFC 7118 §4.1).
#[test]
fn websocket_without_the_sip_subprotocol_is_refused() {
    use std::io::{Read, Write};
    let (proxy, ports, _data) = proxy_with(&["ws"], "");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", ports[0])).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let req = format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        ports[0]
    );
    s.write_all(req.as_bytes()).expect("write");
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap_or(0);
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(
        answer.starts_with("HTTP/1.1 400"),
        "no sip subprotocol must get 400, got:\n{answer}\n{}",
        proxy.log_tail(10)
    );
}
