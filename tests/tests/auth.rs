//! Digest authentication end to end (RFC 3261 §22.3, RFC 8760): the real
//! proxy with the `digest-auth` policy and `[auth]` users, SIPp's
//! `[authentication]` for MD5 (all Debian's SIPp 3.6.1 computes), and a
//! SHA-256 caller of our own on a UDP socket, since no SIPp here can.
//! Judged by what a caller and an operator see: the codes, whether anything
//! reached the callee, and `viaduct_auth_total` on `/metrics`.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use md5::Md5;
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use viaduct_e2e::{
    header_value, header_values, policy_wasm, recv_all, status_code, Sipp, SippRun, Viaduct,
};

const REALM: &str = "viaduct-e2e";
const PASSWORD: &str = "correct horse";

/// Every line of a header, whole: a challenge's parameters are comma-separated.
fn header_lines(msg: &str, name: &str) -> Vec<String> {
    let head = msg.split("\r\n\r\n").next().unwrap_or(msg);
    head.lines()
        .skip(1)
        .filter_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// H(parts joined by ':') for `algorithm`, written out here from RFC 7616 §3.4
/// rather than borrowed from the proxy, so a shared mistake cannot hide.
fn h(algorithm: &str, parts: &[&str]) -> String {
    let joined = parts.join(":");
    match algorithm {
        "MD5" => hex(&Md5::digest(joined.as_bytes())),
        _ => hex(&Sha256::digest(joined.as_bytes())),
    }
}

/// A proxy running `digest-auth` for REALM, with alice's HA1s in `[auth]`,
/// offering `algorithms` (a TOML array; empty = the default, SHA-256 then MD5).
fn start_proxy(cache: &TempDir, algorithms: &str) -> Viaduct {
    let algorithms = if algorithms.is_empty() {
        String::new()
    } else {
        format!("algorithms = {algorithms}\n")
    };
    let config = format!(
        "[auth]\nenabled = true\n{algorithms}\n[[auth.users]]\nuser = \"alice\"\nrealm = \"{REALM}\"\n\
         ha1_md5 = \"{md5}\"\nha1_sha256 = \"{sha}\"\n\n\
         [policy]\nfile = {file:?}\ncache_dir = {cache:?}\n\n[policy.config]\nrealm = \"{REALM}\"\n",
        md5 = h("MD5", &["alice", REALM, PASSWORD]),
        sha = h("SHA-256", &["alice", REALM, PASSWORD]),
        file = policy_wasm("digest-auth").display().to_string(),
        cache = cache.path().display().to_string(),
    );
    Viaduct::start(&config)
}

fn cache_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("viaduct-e2e-auth-")
        .tempdir()
        .expect("temp dir")
}

/// The `viaduct_auth_total{result=...}` sample, waiting up to 3 s for the
/// workers to publish `want`.
fn auth_metric(proxy: &Viaduct, result: &str, want: f64) -> f64 {
    let name = format!("viaduct_auth_total{{result=\"{result}\"}} ");
    let started = Instant::now();
    loop {
        let body = proxy.admin("GET", "/metrics").body;
        let value = body
            .lines()
            .find_map(|l| l.strip_prefix(&name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0);
        if value == want || started.elapsed() > Duration::from_secs(3) {
            return value;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The final codes the caller got for its second (authenticated) INVITE, per call.
fn authenticated_finals(run: &SippRun) -> Vec<u16> {
    run.timed_message_list()
        .iter()
        .filter(|m| m.received)
        .filter(|m| header_value(&m.text, "cseq", None).as_deref() == Some("2 INVITE"))
        .filter_map(|m| status_code(&m.text).filter(|c| *c >= 200))
        .collect()
}

fn md5_caller(proxy: &Viaduct, remote: SocketAddr, password: &str, calls: u64) -> SippRun {
    Sipp::uac(remote)
        .scenario("auth_uac.xml")
        .rsa(proxy.udp_addr())
        .arg("-au")
        .arg("alice")
        .arg("-ap")
        .arg(password)
        .calls(calls)
        .rate(10)
        .timeout(Duration::from_secs(30))
        .trace_msg()
        .spawn()
        .wait()
}

/// SIPp (MD5) through the proxy: each call is challenged once, the right
/// password completes it without the credentials reaching the callee, and
/// the wrong one gets 403 with nothing forwarded. SIPp 3.6.1 answers the
/// first challenge whatever its algorithm, so this proxy offers MD5 first
/// (`auth.algorithms`); with the default order SIPp gives up on SHA-256.
#[test]
fn sipp_md5_right_password_completes_wrong_password_gets_403() {
    let cache = cache_dir();
    let proxy = start_proxy(&cache, r#"["MD5", "SHA-256"]"#);

    let uas = Sipp::uas()
        .calls(3)
        .timeout(Duration::from_secs(40))
        .trace_msg()
        .spawn();
    let caller = md5_caller(&proxy, uas.addr(), PASSWORD, 3);
    let callee = uas.wait();
    assert!(
        caller.exit_code == Some(0) && caller.successful == 3 && caller.failed == 0,
        "{}",
        caller.summary()
    );
    assert_eq!(
        authenticated_finals(&caller),
        [200, 200, 200],
        "{}",
        caller.summary()
    );
    assert_eq!(callee.successful, 3, "{}", callee.summary());
    let challenges: Vec<String> = caller
        .message_list()
        .into_iter()
        .filter(|m| m.starts_with("SIP/2.0 407"))
        .collect();
    assert_eq!(challenges.len(), 3, "one 407 per call");
    let offered = header_lines(&challenges[0], "proxy-authenticate");
    assert!(
        offered.len() == 2
            && offered[0].contains("algorithm=MD5")
            && offered[1].contains("algorithm=SHA-256"),
        "the 407 must offer MD5 then SHA-256 as configured: {offered:?}"
    );
    for invite in callee
        .message_list()
        .iter()
        .filter(|m| m.starts_with("INVITE "))
    {
        assert_eq!(
            header_value(invite, "proxy-authorization", None),
            None,
            "the proxy must consume the credentials it checked:\n{invite}"
        );
    }

    // Wrong password: 403 each time, nothing reaches the next hop.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let wrong = md5_caller(&proxy, silent.local_addr().expect("addr"), "guess", 2);
    assert_eq!(
        authenticated_finals(&wrong),
        [403, 403],
        "{}",
        wrong.summary()
    );
    let leaked = recv_all(&silent, Duration::from_millis(300)).expect("recv");
    assert!(
        leaked.is_empty(),
        "{} datagrams reached the next hop",
        leaked.len()
    );

    assert_eq!(auth_metric(&proxy, "ok", 3.0), 3.0);
    assert_eq!(auth_metric(&proxy, "challenged", 5.0), 5.0);
    assert_eq!(auth_metric(&proxy, "forbidden", 2.0), 2.0);
}

/// A caller of our own that speaks SHA-256 digest over UDP.
struct Caller {
    sock: UdpSocket,
    proxy: SocketAddr,
    me: SocketAddr,
    seq: u32,
}

impl Caller {
    fn new(proxy: SocketAddr) -> Caller {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let me = sock.local_addr().expect("addr");
        Caller {
            sock,
            proxy,
            me,
            seq: 0,
        }
    }

    fn send(&self, msg: &str) {
        self.sock.send_to(msg.as_bytes(), self.proxy).expect("send");
    }

    /// The next final response for `cseq` (provisional ones skipped), within 5 s.
    fn final_for(&self, cseq: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = vec![0u8; 65_535];
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("no final response to {cseq} within 5 s"));
            self.sock.set_read_timeout(Some(left)).expect("timeout");
            let (n, _) = self.sock.recv_from(&mut buf).expect("no answer in time");
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if status_code(&text).is_some_and(|c| c >= 200)
                && header_value(&text, "cseq", None).as_deref() == Some(cseq)
            {
                return text;
            }
        }
    }

    /// An INVITE for `uri` with a fresh branch, optionally with credentials.
    fn invite(&mut self, uri: &str, call_id: &str, cseq: u32, auth: Option<&str>) -> String {
        self.seq += 1;
        let auth = auth
            .map(|a| format!("Proxy-Authorization: {a}\r\n"))
            .unwrap_or_default();
        let msg = format!(
            "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-sha-{seq};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@{me}>;tag=sha{cseq}\r\nTo: <{uri}>\r\n\
             Call-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\nContact: <sip:alice@{me}>\r\n{auth}\
             Content-Length: 0\r\n\r\n",
            me = self.me,
            seq = self.seq,
        );
        self.send(&msg);
        self.final_for(&format!("{cseq} INVITE"))
    }

    /// ACK for a non-2xx final response to the INVITE with branch number `seq`.
    fn ack_failure(&self, uri: &str, call_id: &str, cseq: u32, response: &str) {
        let to = header_value(response, "to", Some("t")).unwrap_or_default();
        self.send(&format!(
            "ACK {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-sha-{seq};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@{me}>;tag=sha{cseq}\r\nTo: {to}\r\n\
             Call-ID: {call_id}\r\nCSeq: {cseq} ACK\r\nContent-Length: 0\r\n\r\n",
            me = self.me,
            seq = self.seq,
        ));
    }

    /// ACK and BYE for a 2xx, along its Record-Route, to end the call.
    fn ack_and_bye(&mut self, call_id: &str, cseq: u32, ok: &str) {
        let to = header_value(ok, "to", Some("t")).unwrap_or_default();
        let contact = header_value(ok, "contact", Some("m")).unwrap_or_default();
        let target = contact
            .trim_start_matches('<')
            .split('>')
            .next()
            .unwrap_or_default()
            .to_owned();
        let routes: Vec<String> = header_values(ok, "record-route", None);
        let route = routes
            .iter()
            .map(|r| format!("Route: {r}\r\n"))
            .collect::<String>();
        for (method, n) in [("ACK", cseq), ("BYE", cseq + 1)] {
            self.seq += 1;
            self.send(&format!(
                "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-sha-{seq};rport\r\n\
                 Max-Forwards: 70\r\n{route}From: <sip:alice@{me}>;tag=sha{cseq}\r\nTo: {to}\r\n\
                 Call-ID: {call_id}\r\nCSeq: {n} {method}\r\nContent-Length: 0\r\n\r\n",
                me = self.me,
                seq = self.seq,
            ));
        }
        let ok = self.final_for(&format!("{} BYE", cseq + 1));
        assert_eq!(status_code(&ok), Some(200), "BYE: {ok}");
    }
}

/// The named parameter of a challenge (`nonce`, `realm`...), unquoted.
fn param(challenge: &str, name: &str) -> Option<String> {
    challenge.split(',').find_map(|p| {
        let (k, v) = p.trim().trim_start_matches("Digest ").split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"').to_owned())
    })
}

fn sha256_credentials(password: &str, nonce: &str, uri: &str, nc: u32) -> String {
    let ha1 = h("SHA-256", &["alice", REALM, password]);
    let ha2 = h("SHA-256", &["INVITE", uri]);
    let nc = format!("{nc:08x}");
    let response = h("SHA-256", &[&ha1, nonce, &nc, "0a4f113b", "auth", &ha2]);
    format!(
        "Digest username=\"alice\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{response}\", algorithm=SHA-256, qop=auth, nc={nc}, cnonce=\"0a4f113b\""
    )
}

/// SHA-256 (RFC 8760) with our own caller: challenged, then the call
/// completes; the same credentials replayed under a new transaction get a
/// stale 407 and never reach the callee; a wrong password gets 403.
#[test]
fn sha256_caller_completes_and_replays_are_refused() {
    let cache = cache_dir();
    let proxy = start_proxy(&cache, "");
    let uas = Sipp::uas()
        .calls(1)
        .timeout(Duration::from_secs(30))
        .trace_msg()
        .spawn();
    let uri = format!("sip:room-1@{}", uas.addr());
    let mut caller = Caller::new(proxy.udp_addr());

    let challenge = caller.invite(&uri, "sha-1", 1, None);
    assert_eq!(status_code(&challenge), Some(407), "{challenge}");
    caller.ack_failure(&uri, "sha-1", 1, &challenge);
    let offered = header_lines(&challenge, "proxy-authenticate");
    assert!(
        offered.len() == 2
            && offered[0].contains("algorithm=SHA-256")
            && offered[1].contains("algorithm=MD5"),
        "by default the 407 offers SHA-256 then MD5 (RFC 8760 §2.4): {offered:?}"
    );
    let sha = &offered[0];
    assert_eq!(param(sha, "realm").as_deref(), Some(REALM));
    assert_eq!(param(sha, "qop").as_deref(), Some("auth"));
    let nonce = param(sha, "nonce").expect("nonce");

    let credentials = sha256_credentials(PASSWORD, &nonce, &uri, 1);
    let ok = caller.invite(&uri, "sha-1", 2, Some(&credentials));
    assert_eq!(status_code(&ok), Some(200), "{ok}");
    caller.ack_and_bye("sha-1", 2, &ok);

    // Replay: the same Proxy-Authorization (same nonce and nc) on a new call.
    let replayed = caller.invite(&uri, "sha-2", 1, Some(&credentials));
    assert_eq!(
        status_code(&replayed),
        Some(407),
        "a replay must be challenged: {replayed}"
    );
    caller.ack_failure(&uri, "sha-2", 1, &replayed);
    assert!(
        header_lines(&replayed, "proxy-authenticate")
            .iter()
            .all(|c| c.contains("stale=true")),
        "a replayed nonce count gets stale=true: {replayed}"
    );

    // A wrong password on a fresh nonce: 403.
    let fresh = param(&header_lines(&replayed, "proxy-authenticate")[0], "nonce").expect("nonce");
    let wrong = caller.invite(
        &uri,
        "sha-3",
        1,
        Some(&sha256_credentials("guess", &fresh, &uri, 1)),
    );
    assert_eq!(status_code(&wrong), Some(403), "{wrong}");
    caller.ack_failure(&uri, "sha-3", 1, &wrong);

    let callee = uas.wait();
    assert_eq!(callee.successful, 1, "{}", callee.summary());
    let invites = callee
        .message_list()
        .into_iter()
        .filter(|m| m.starts_with("INVITE "))
        .count();
    assert_eq!(
        invites, 1,
        "only the authenticated INVITE may reach the callee"
    );
    assert_eq!(auth_metric(&proxy, "replay", 1.0), 1.0);
    assert_eq!(auth_metric(&proxy, "ok", 1.0), 1.0);
    assert_eq!(auth_metric(&proxy, "forbidden", 1.0), 1.0);
}
