//! The registrar across instances (RFC 3261 §10, issue #9): two Viaduct
//! instances share one Redis; a phone registers through instance A with a
//! digest password, a caller reaches it through instance B by its AOR, the
//! call completes and its BYE follows the Record-Route. When the binding
//! expires the AOR is unknown again. An instance on its own in-memory state
//! never sees A's binding: the control that shows the sharing is what
//! makes the call work.
//!
//! A browser-style agent (SIP.js over WebSocket, `tests/peers/node/agent.mjs`)
//! registers through A the same way; B cannot open a WebSocket to it, so a
//! call through B goes to A over UDP (the flow route A stored in the Path)
//! and down the agent's WebSocket.
//!
//! Peers: the phone is one SIPp that registers its own port with
//! `register_uac.xml` (MD5 digest, as Debian's SIPp does) and answers its
//! calls with SIPp's embedded uas as its out-of-call scenario (`-oocsn
//! uas`); in the forking test two SIPp UASs are registered by a third party
//! (RFC 3261 §10.2); `call_aor_uac.xml` is the caller (it counts a 404 as a
//! successful call, so the tests check the final answers themselves);
//! SIP.js 0.21.2 in Node is the agent; Debian's redis-server.

use std::io::{BufRead, BufReader, Read};
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use viaduct_e2e::{
    free_port, header_values, policy_wasm, recv_all, scenario_path, traced_messages,
    workspace_root, Json, RedisServer, Sipp, SippProcess, SippRun, Viaduct,
};

const REALM: &str = "voice.test";
const PASSWORD: &str = "bob's secret";

fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An instance running `policies/registrar` with digest on REGISTER (MD5
/// first: SIPp answers the first challenge only), bob's HA1 in `[auth]`,
/// one shared `auth.secret` (so a nonce from A is good on B) and `state`.
fn instance(state: &str, cache: &tempfile::TempDir) -> Viaduct {
    Viaduct::start(&format!(
        "[auth]\nenabled = true\nalgorithms = [\"MD5\"]\nsecret = \"{secret}\"\n\n\
         [[auth.users]]\nuser = \"bob\"\nrealm = \"{REALM}\"\nha1_md5 = \"{ha1}\"\n\n\
         [registrar]\nmin_expires = 1\n\n{state}\n\n\
         [policy]\nfile = {file:?}\ncache_dir = {cache:?}\n\n[policy.config]\nrealm = \"{REALM}\"\n",
        secret = "7".repeat(64),
        ha1 = md5_hex(&format!("bob:{REALM}:{PASSWORD}")),
        file = policy_wasm("registrar").display().to_string(),
        cache = cache.path().display().to_string(),
    ))
}

/// SIPp registering bob's `contact_port` through `proxy` for `expires`
/// seconds (register_uac.xml; MD5 digest with `password`), one REGISTER.
fn registering(proxy: &Viaduct, contact_port: u16, expires: u32, password: &str) -> Sipp {
    Sipp::uac(proxy.udp_addr())
        .scenario_file(&scenario_path("register_uac.xml"))
        .service("bob")
        .arg("-key")
        .arg("contact_port")
        .arg(&contact_port.to_string())
        .arg("-key")
        .arg("expires")
        .arg(&expires.to_string())
        .arg("-au")
        .arg("bob")
        .arg("-ap")
        .arg(password)
        .calls(1)
        .trace_msg()
}

/// bob registers `contact_port` through `proxy` for `expires` seconds.
fn register(proxy: &Viaduct, contact_port: u16, expires: u32, password: &str) -> SippRun {
    registering(proxy, contact_port, expires, password)
        .timeout(Duration::from_secs(10))
        .spawn()
        .wait()
}

/// bob's phone: one SIPp that registers its own port through `proxy` with
/// digest (register_uac.xml) and answers the calls that come to it with
/// SIPp's embedded uas as its out-of-call scenario, for up to 30 s.
/// Returns once the 200 to the REGISTER is in its trace.
fn phone(proxy: &Viaduct, expires: u32) -> SippProcess {
    let port = free_port();
    let phone = registering(proxy, port, expires, PASSWORD)
        .local_port(port)
        .arg("-oocsn")
        .arg("uas")
        .arg("-d")
        .arg("30000")
        .timeout(Duration::from_secs(40))
        .spawn();
    let started = Instant::now();
    while !phone.messages_so_far().contains("SIP/2.0 200 OK") {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the phone did not register:\n{}\n{}",
            phone.messages_so_far(),
            proxy.log_tail(30)
        );
        thread::sleep(Duration::from_millis(50));
    }
    phone
}

/// The final answer to each INVITE the caller got (call_aor_uac.xml
/// counts a 404 as a successful call, so its counts alone prove nothing).
fn finals(caller: &SippRun) -> Vec<u16> {
    caller.invite_finals().iter().map(|f| f.code).collect()
}

/// `calls` calls to `sip:bob@<proxy>` through `proxy`.
fn call_bob(proxy: &Viaduct, calls: u64) -> SippRun {
    call_user(proxy, "bob", calls)
}

/// `calls` calls to `sip:<user>@<proxy>` through `proxy`.
fn call_user(proxy: &Viaduct, user: &str, calls: u64) -> SippRun {
    Sipp::uac(proxy.udp_addr())
        .scenario("call_aor_uac.xml")
        .service(user)
        .calls(calls)
        .rate(10)
        .timeout(Duration::from_secs(15))
        .trace_msg()
        .spawn()
        .wait()
}

#[test]
fn register_on_one_instance_call_through_the_other() {
    let redis = RedisServer::start();
    let cache = tempfile::tempdir().expect("temp dir");
    let shared = format!("[state]\nbackend = \"redis\"\nurl = \"{}\"", redis.url());
    let a = instance(&shared, &cache);
    let b = instance(&shared, &cache);
    let alone = instance("", &cache);

    // A wrong password is refused, and stores nothing.
    let refused = register(&a, free_port(), 30, "not bob's");
    assert!(
        refused.messages().contains("SIP/2.0 403"),
        "wrong password: {}",
        refused.messages()
    );

    // bob's phone registers its own address through A.
    let phone = phone(&a, 30);
    let contact = phone.addr();
    let trace = phone.messages_so_far();
    assert!(
        trace.contains("SIP/2.0 401") && trace.contains("WWW-Authenticate: Digest"),
        "the registrar challenges with 401:\n{trace}"
    );
    let want = format!("Contact: <sip:bob@{contact}>;expires=");
    assert!(
        trace.contains(&want),
        "200 lists the binding ({want}):\n{trace}"
    );

    // The phone's authenticated REGISTER replayed to B: the nonce is good
    // there too (one auth.secret), but its count was used on A, and the
    // shared state says so: 401 stale=true, nothing stored.
    let replayed = traced_messages(&trace)
        .into_iter()
        .find(|m| {
            !m.received && m.text.starts_with("REGISTER ") && m.text.contains("Authorization:")
        })
        .expect("the phone's authenticated REGISTER in its trace")
        .text;
    // The trace drops the blank line that ends the header (no body here);
    // the answer must come to us, not to the phone's Via.
    let sock = UdpSocket::bind("127.0.0.1:0").expect("udp socket");
    let me = sock.local_addr().expect("local addr");
    let replayed: String = replayed
        .trim_end()
        .split("\r\n")
        .map(|line| match line.strip_prefix("Via: SIP/2.0/UDP ") {
            Some(rest) => {
                let params = rest.find(';').map_or("", |i| &rest[i..]);
                format!("Via: SIP/2.0/UDP {me}{params}\r\n")
            }
            None => format!("{line}\r\n"),
        })
        .collect::<String>()
        + "\r\n";
    sock.send_to(replayed.as_bytes(), b.udp_addr())
        .expect("send the replay");
    let answers = recv_all(&sock, Duration::from_millis(500)).expect("recv");
    let answer = answers
        .iter()
        .map(|(_, d)| String::from_utf8_lossy(d).into_owned())
        .find(|m| m.contains("CSeq: 2 REGISTER"))
        .unwrap_or_else(|| panic!("no answer to the replay:\n{}", b.log_tail(20)));
    assert!(
        answer.starts_with("SIP/2.0 401") && answer.contains("stale=true"),
        "a nonce count used on A is a replay on B:\n{answer}"
    );

    // Through B, whose R-URI has B's port: the AOR's canonical form finds
    // the binding A stored in Redis.
    let caller = call_bob(&b, 3);
    assert_eq!(
        (caller.successful, caller.failed),
        (3, 0),
        "calls to bob through B:\n{}\n{}",
        caller.summary(),
        b.log_tail(30)
    );
    assert_eq!(finals(&caller), [200, 200, 200], "{}", caller.messages());
    let invite = ringer_invites(&phone.stop(), 3);
    assert!(
        invite.starts_with(&format!("INVITE sip:bob@{contact} SIP/2.0")),
        "the contact is the Request-URI at the phone:\n{invite}"
    );
    assert!(
        invite.contains(&format!("Record-Route: <sip:{};lr>", b.udp_addr())),
        "B records its own address, so the BYE comes back through it:\n{invite}"
    );

    // An instance with its own in-memory state knows no bob: relaying the
    // request to itself gets 404.
    let lost = call_bob(&alone, 1);
    assert_eq!(finals(&lost), [404]);
    assert!(
        lost.messages().contains("SIP/2.0 404"),
        "{}\n{}",
        lost.messages(),
        alone.log_tail(40)
    );

    // Expiry: the same contact re-registered for 1 s (a new Call-ID
    // replaces the binding) is gone 2.5 s later, on every instance; before
    // that a call would go to the contact (nobody answers there now) and
    // never get 404.
    let reg = register(&a, contact.port(), 1, PASSWORD);
    assert_eq!(reg.successful, 1, "{}", reg.summary());
    assert!(
        reg.first_message("SIP/2.0 200")
            .contains(&format!("Contact: <sip:bob@{contact}>;expires=1")),
        "{}",
        reg.messages()
    );
    thread::sleep(Duration::from_millis(2500));
    let late = call_bob(&b, 1);
    assert_eq!(finals(&late), [404]);
    assert!(
        late.messages().contains("SIP/2.0 404"),
        "{}\n{}",
        late.messages(),
        b.log_tail(30)
    );
}

/// The first INVITE the ringer received, after checking it got `calls` of them.
fn ringer_invites(run: &SippRun, calls: usize) -> String {
    let invites: Vec<String> = run
        .message_list()
        .into_iter()
        .filter(|m| m.starts_with("INVITE "))
        .collect();
    assert_eq!(invites.len(), calls, "{}", run.summary());
    invites[0].clone()
}

/// Two phones of one user (RFC 3261 §16.7): the desk phone rings until
/// cancelled, the softphone answers at once. The call forks to both; the
/// softphone's 200 reaches the caller and the desk phone gets CANCEL (and
/// answers 487, which the caller never sees).
#[test]
fn both_phones_ring_and_the_first_answer_wins() {
    let cache = tempfile::tempdir().expect("temp dir");
    let proxy = instance("", &cache);
    let soft = Sipp::uas().trace_msg().spawn();
    let desk = Sipp::uas()
        .scenario("cancel_uas.xml")
        .calls(1)
        .timeout(Duration::from_secs(15))
        .trace_msg()
        .spawn();
    for phone in [soft.addr(), desk.addr()] {
        let reg = register(&proxy, phone.port(), 60, PASSWORD);
        assert_eq!(reg.successful, 1, "{}", reg.summary());
    }

    let caller = call_bob(&proxy, 1);
    assert_eq!(finals(&caller), [200], "{}", caller.messages());
    assert!(
        caller
            .first_message("SIP/2.0 200")
            .contains("CSeq: 1 INVITE"),
        "the softphone's answer reaches the caller:\n{}",
        caller.messages()
    );
    assert!(
        !caller.messages().contains("SIP/2.0 487"),
        "the cancelled branch's 487 stays in the proxy:\n{}",
        caller.messages()
    );
    let desk = desk.wait();
    assert_eq!(
        desk.successful,
        1,
        "the desk phone rang and was cancelled:\n{}\n{}",
        desk.summary(),
        proxy.log_tail(40)
    );
    assert!(
        desk.messages().contains("CANCEL sip:bob@"),
        "{}",
        desk.messages()
    );
    let soft = soft.stop();
    assert!(
        soft.messages().contains("BYE sip:"),
        "the call ended on the softphone:\n{}",
        soft.messages()
    );
}

// ---- A browser-style agent over WebSocket -----------------------------------------

/// An instance running `policies/registrar` with no realm (REGISTER needs
/// no password), `state`, and these `--listen` values.
fn open_instance(state: &str, cache: &tempfile::TempDir, listen: &[String]) -> Viaduct {
    Viaduct::start_with_listen(
        &format!(
            "[registrar]\nmin_expires = 1\n\n{state}\n\n\
             [policy]\nfile = {file:?}\ncache_dir = {cache:?}\n\n[policy.config]\n",
            file = policy_wasm("registrar").display().to_string(),
            cache = cache.path().display().to_string(),
        ),
        listen,
    )
}

/// How long the agent may take to say `REGISTERED`.
const REGISTER_BOUND: Duration = Duration::from_secs(15);
/// How long the agent may run in all (its own `--timeout-ms` is shorter).
const AGENT_BOUND: Duration = Duration::from_secs(60);

fn install_node_peers() {
    viaduct_e2e::install_peer("node");
}

/// `agent.mjs` running: registered, answering calls. Killed by its PID on
/// drop if it is still running.
struct Agent {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Agent {
    /// Starts the agent for `aor` against the WebSocket server `server` and
    /// returns once it printed `REGISTERED` (panics with its stderr if it
    /// does not within [`REGISTER_BOUND`]).
    fn register(server: &str, aor: &str, answer: u64) -> Agent {
        install_node_peers();
        let mut child = Command::new("node")
            .current_dir(workspace_root().join("tests/peers/node"))
            .arg("agent.mjs")
            .args(["--server", server, "--aor", aor, "--expires", "60"])
            .args(["--answer", &answer.to_string(), "--timeout-ms", "45000"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning node agent.mjs: {e}"));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (registered, wait) = mpsc::channel();
        let pipe = child.stderr.take().expect("piped stderr");
        let text = Arc::clone(&stderr);
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if line == "REGISTERED" {
                    let _ = registered.send(());
                }
                let mut t = text.lock().unwrap_or_else(|e| e.into_inner());
                t.push_str(&line);
                t.push('\n');
            }
        });
        let agent = Agent { child, stderr };
        if wait.recv_timeout(REGISTER_BOUND).is_err() {
            panic!(
                "the agent did not register within {REGISTER_BOUND:?}:\n{}",
                agent.stderr()
            );
        }
        agent
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits (within [`AGENT_BOUND`]) for the agent to finish and returns
    /// whether it exited 0, its JSON verdict and its stderr.
    fn finish(mut self) -> (bool, Json, String) {
        let start = Instant::now();
        while self.child.try_wait().ok().flatten().is_none() {
            if start.elapsed() > AGENT_BOUND {
                let _ = self.child.kill();
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let status = self.child.wait().expect("agent status");
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            let _ = out.read_to_string(&mut stdout);
        }
        thread::sleep(Duration::from_millis(50)); // the stderr reader's last lines
        let stderr = self.stderr();
        let verdict = stdout
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .and_then(Json::parse)
            .unwrap_or_else(|| {
                panic!("agent.mjs printed no JSON verdict ({status}):\n{stdout}\n{stderr}")
            });
        (status.success(), verdict, stderr)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A SIP.js agent registers `sip:alice@127.0.0.1` over WebSocket to A; a
/// SIPp caller reaches it through B, which has no WebSocket listener: B
/// sends the INVITE over UDP to A (the flow route in the binding's Path
/// names A's UDP listener), and A sends it down the agent's WebSocket. All
/// 3 calls are answered and hung up by the caller, and the 200's
/// Record-Route shows the path: A's WebSocket side, A's UDP side, B. An
/// instance with its own memory state answers 404; once the agent has
/// unregistered, so does B.
#[test]
fn agent_registered_over_websocket_on_one_instance_answers_calls_through_the_other() {
    let redis = RedisServer::start();
    let cache = tempfile::tempdir().expect("temp dir");
    let shared = format!("[state]\nbackend = \"redis\"\nurl = \"{}\"", redis.url());
    let (a_udp, a_ws, b_udp) = (free_port(), free_port(), free_port());
    let a = open_instance(
        &shared,
        &cache,
        &[
            format!("udp:127.0.0.1:{a_udp}"),
            format!("ws:127.0.0.1:{a_ws}"),
        ],
    );
    let b = open_instance(&shared, &cache, &[format!("udp:127.0.0.1:{b_udp}")]);
    let alone = open_instance("", &cache, &[format!("udp:127.0.0.1:{}", free_port())]);

    let agent = Agent::register(&format!("ws://127.0.0.1:{a_ws}"), "sip:alice@127.0.0.1", 3);
    let caller = call_user(&b, "alice", 3);
    let (exited_ok, verdict, agent_log) = agent.finish();
    assert_eq!(
        (caller.successful, caller.failed),
        (3, 0),
        "calls to alice through B:\n{}\n--- agent ---\n{agent_log}\n--- B ---\n{}\n--- A ---\n{}",
        caller.summary(),
        b.log_tail(30),
        a.log_tail(30)
    );
    let finals: Vec<String> = caller
        .message_list()
        .into_iter()
        .filter(|m| m.starts_with("SIP/2.0 ") && m.contains("CSeq: 1 INVITE"))
        .filter(|m| !m.starts_with("SIP/2.0 1"))
        .collect();
    assert!(
        finals.len() >= 3 && finals.iter().all(|m| m.starts_with("SIP/2.0 200")),
        "every INVITE was answered 200 (a 404 also counts as a successful SIPp call):\n{}",
        caller.messages()
    );
    assert!(
        exited_ok
            && verdict.get("registered") == Some(&Json::Bool(true))
            && verdict.get("ok") == Some(&Json::Bool(true))
            && verdict.u64("answered") == Some(3)
            && verdict.u64("byes") == Some(3),
        "the agent answered 3 calls and got their BYEs: {verdict:?}\n{agent_log}"
    );

    // B → A (UDP) → agent (WebSocket): the agent's side on top, naming its
    // connection on A's WebSocket listener; then A's UDP side; then B.
    let rr = header_values(
        &caller.first_message("SIP/2.0 200"),
        "record-route",
        Some("r"),
    );
    assert_eq!(rr.len(), 3, "three Record-Route entries: {rr:?}");
    assert!(
        rr[0].starts_with("<sip:ft-")
            && rr[0].contains(&format!("@127.0.0.1:{a_ws};"))
            && rr[0].contains("transport=ws"),
        "A's WebSocket side, naming the agent's connection: {rr:?}"
    );
    assert!(
        rr[1].starts_with(&format!("<sip:127.0.0.1:{a_udp};")) && !rr[1].contains("transport="),
        "A's UDP side, facing B: {rr:?}"
    );
    assert_eq!(rr[2], format!("<sip:127.0.0.1:{b_udp};lr>"), "B: {rr:?}");
    // B's INVITEs (in its debug log) are routed by the binding's Path: A's
    // flow route, naming A's UDP listener and the flow's transport.
    let flow_route = format!("@127.0.0.1:{a_udp};lr;ob;vd-flow=ws>");
    let routed = b
        .log()
        .lines()
        .filter(|l| l.starts_with("Route: <sip:ft-") && l.ends_with(&flow_route))
        .count();
    assert!(
        routed >= 3,
        "B sends each INVITE to A's flow route (…{flow_route}):\n{}",
        b.log_tail(60)
    );

    // Control: an instance on its own memory state has no alice.
    let lost = call_user(&alone, "alice", 1);
    assert!(
        lost.messages().contains("SIP/2.0 404"),
        "{}\n{}",
        lost.messages(),
        alone.log_tail(40)
    );
    // The agent unregistered before it exited: B has no alice either now.
    assert_eq!(
        verdict.get("unregistered"),
        Some(&Json::Bool(true)),
        "{verdict:?}"
    );
    let gone = call_user(&b, "alice", 1);
    assert!(
        gone.messages().contains("SIP/2.0 404"),
        "{}\n{}",
        gone.messages(),
        b.log_tail(40)
    );
}
