//! Calls through the proxy to a real voice-AI backend nobody here wrote:
//! roomkit's `SIPVoiceBackend` (PyPI `roomkit[sip]`), behind the `x-room-id`
//! policy, on 127.0.0.1 only.
//!
//! Needs Python >= 3.12: `VIADUCT_PYTHON`, else `python3.13`/`python3.12`/
//! `python3` on the PATH, else the newest `$PYENV_ROOT/versions/3.N*` (or
//! `~/.pyenv/versions`). Without one the test fails, saying so; it never
//! skips. It keeps a venv with `tests/roomkit/requirements.txt` at
//! `<workspace>/target/roomkit-venv` (`VIADUCT_ROOMKIT_VENV` overrides),
//! built on first use and rebuilt when the requirements file or the
//! interpreter changes; that first run needs PyPI (`roomkit_python` in the
//! harness, shared with `tests/front_door.rs`).
//!
//! Also needs `target/release/viaduct` (or `VIADUCT_BIN`),
//! `target/policies/x-room-id{,-py,-js}.wasm` (`policies/build`) and `sipp`;
//! `./tests/run` provides them. The test runs once per language build of
//! the policy; the Python and JavaScript builds use the shared compiled-code
//! cache `<workspace>/target/policy-cache` and `deadline_ms = 50`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;
use viaduct_e2e::{
    free_port, header_value, roomkit_python, status_code, tail, workspace_root, Json, PolicyBuild,
    Sipp, Viaduct,
};

/// Calls placed by SIPp, one per room: `sip:room-1@...` to `sip:room-5@...`.
const CALLS: u64 = 5;
/// The Request-URI host the caller dials. Not an address of the proxy (a
/// Request-URI naming the proxy's own IP:port is answered 404 before any
/// policy runs), not resolvable (`.invalid`, RFC 2606), so only the policy's
/// `backends` can route the INVITE.
const ROOMS_DOMAIN: &str = "rooms.invalid";
/// RTP ports roomkit may take (even ones; below the ephemeral range that
/// `free_port` and the OS hand out, away from SIPp's 6000+ and 8888), one
/// range per test so that the per-language tests can run in parallel.
const RTP_PORTS_RUST: (u16, u16) = (24000, 24190);
const RTP_PORTS_PYTHON: (u16, u16) = (24200, 24390);
const RTP_PORTS_JAVASCRIPT: (u16, u16) = (24400, 24590);
/// How long the backend may take to import roomkit and bind its socket.
const BACKEND_READY: Duration = Duration::from_secs(30);

/// `tests/roomkit/backend.py` running roomkit's `SIPVoiceBackend` on
/// 127.0.0.1. Its stdout lines are collected by a thread; dropping it sends
/// SIGTERM by PID (SIGKILL after 5 s) and, when the test is failing, prints
/// the events and the tail of roomkit's log.
struct Backend {
    child: Option<Child>,
    addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<thread::JoinHandle<()>>,
    dir: TempDir,
}

impl Backend {
    fn start(python: &Path, rtp_ports: (u16, u16)) -> Backend {
        let port = free_port();
        let dir = tempfile::Builder::new()
            .prefix("viaduct-e2e-roomkit-")
            .tempdir()
            .expect("temp dir");
        let script = workspace_root().join("tests/roomkit/backend.py");
        let stderr = File::create(dir.path().join("stderr.log")).expect("stderr log");
        let mut child = Command::new(python)
            .arg("-u")
            .arg(&script)
            .arg(port.to_string())
            .arg(rtp_ports.0.to_string())
            .arg(rtp_ports.1.to_string())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {} {}: {e}", python.display(), script.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let copy = dir.path().join("stdout.log");
        let reader = thread::spawn(move || {
            let mut copy = File::create(copy).ok();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(f) = copy.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        let mut backend = Backend {
            child: Some(child),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            lines,
            reader: Some(reader),
            dir,
        };
        backend.wait_ready();
        backend
    }

    fn wait_ready(&mut self) {
        let started = Instant::now();
        while started.elapsed() < BACKEND_READY {
            if !self.events("ready").is_empty() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "backend.py exited during start-up ({status})\n{}",
                    self.report()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "backend.py printed no ready event within {BACKEND_READY:?}\n{}",
            self.report()
        );
    }

    /// Every event line parsed so far (a line that is not JSON panics).
    fn all_events(&self) -> Vec<Json> {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone();
        lines
            .iter()
            .map(|l| {
                Json::parse(l).unwrap_or_else(|| panic!("backend.py printed a non-JSON line: {l}"))
            })
            .collect()
    }

    fn events(&self, kind: &str) -> Vec<Json> {
        self.all_events()
            .into_iter()
            .filter(|e| e.str("event") == Some(kind))
            .collect()
    }

    /// Polls until there are `n` events of `kind`, for at most `bound`.
    fn wait_events(&self, kind: &str, n: usize, bound: Duration) -> Vec<Json> {
        let deadline = Instant::now() + bound;
        loop {
            let found = self.events(kind);
            if found.len() >= n || Instant::now() >= deadline {
                return found;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then the exit status (SIGKILL and `None` after 5 s).
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        };
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        status
    }

    fn report(&self) -> String {
        let lines = self
            .lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n");
        format!(
            "--- backend.py events ({}) ---\n{lines}\n--- roomkit log tail ---\n{}\n--- end of backend ---",
            self.addr,
            tail(&self.dir.path().join("stderr.log"), 40)
        )
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            eprintln!("{}", self.report());
        }
    }
}

// ---------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------

/// The user part of a SIP URI (`sip:room-3@host` → `room-3`).
fn uri_user(uri: &str) -> Option<&str> {
    let rest = uri.split_once(':')?.1;
    let (user, _) = rest.split_once('@')?;
    Some(user.split(';').next().unwrap_or(user))
}

/// SIPp dials `sip:room-N@rooms.invalid` through Viaduct with a forged
/// `X-Room-ID`; the x-room-id policy sends each INVITE to roomkit with
/// `X-Room-ID: room-N`. roomkit answers without Record-Route, so the ACK and
/// BYE come back to the proxy with roomkit's Contact (no user part) as
/// Request-URI and must be relayed by it. Asserts: every call completes;
/// roomkit's `session.metadata["room_id"]` is the dialled room, never the
/// forged one; each ACK and BYE reached roomkit through the proxy and matched
/// its dialog; roomkit ended every session and SIPp got 200 for every BYE.
#[test]
fn roomkit_rooms_through_x_room_id_rust() {
    roomkit_rooms_through_x_room_id(PolicyBuild::X_ROOM_ID_RUST, RTP_PORTS_RUST);
}

/// The same with the Python build of x-room-id (`x-room-id-py`).
#[test]
fn roomkit_rooms_through_x_room_id_python() {
    roomkit_rooms_through_x_room_id(PolicyBuild::X_ROOM_ID_PYTHON, RTP_PORTS_PYTHON);
}

/// The same with the JavaScript build of x-room-id (`x-room-id-js`).
#[test]
fn roomkit_rooms_through_x_room_id_javascript() {
    roomkit_rooms_through_x_room_id(PolicyBuild::X_ROOM_ID_JAVASCRIPT, RTP_PORTS_JAVASCRIPT);
}

fn roomkit_rooms_through_x_room_id(build: PolicyBuild, rtp_ports: (u16, u16)) {
    let started = Instant::now();
    let python = roomkit_python();
    let venv_ready = started.elapsed();

    let mut backend = Backend::start(&python, rtp_ports);
    let ready = backend.events("ready").remove(0);
    eprintln!(
        "roomkit {} (aiosipua {}, Python {}) on {}",
        ready.str("roomkit").unwrap_or("?"),
        ready.str("aiosipua").unwrap_or("?"),
        ready.str("python").unwrap_or("?"),
        backend.addr
    );

    let cache = tempfile::tempdir().expect("temp dir");
    let config = format!(
        "[policy]\n{}\n[policy.config]\nbackends = [\"sip:{}\"]\n",
        build.policy_lines(cache.path()),
        backend.addr
    );
    let proxy = Viaduct::start_within(&config, build.ready_bound());

    // Sipp::scenario() looks in tests/scenarios/; this one lives in tests/roomkit/.
    let uac = Sipp::uac(proxy.udp_addr())
        .scenario("../roomkit/room_call_uac.xml")
        .rsa(proxy.udp_addr())
        .arg("-key")
        .arg("rooms_domain")
        .arg(ROOMS_DOMAIN)
        .calls(CALLS)
        .rate(10)
        .timeout(Duration::from_secs(30))
        .trace_msg()
        .spawn();
    let caller = uac.wait();
    let n = usize::try_from(CALLS).expect("small");
    let ended = backend.wait_events("ended", n, Duration::from_secs(5));
    let events = backend.all_events();

    let context = || format!("{}\n{}", caller.summary(), backend.report());
    assert!(
        caller.exit_code == Some(0) && caller.successful == CALLS && caller.failed == 0,
        "expected SIPp exit 0 with {CALLS} successful and 0 failed calls\n{}",
        context()
    );

    // Which room each Call-ID dialled, from the INVITEs SIPp sent.
    let messages = caller.timed_message_list();
    let mut dialled: BTreeMap<String, String> = BTreeMap::new();
    for m in messages.iter().filter(|m| !m.received) {
        let Some(rest) = m.text.strip_prefix("INVITE ") else {
            continue;
        };
        let ruri = rest.split(' ').next().unwrap_or_default();
        let room = uri_user(ruri).unwrap_or_default().to_owned();
        let call_id = header_value(&m.text, "call-id", Some("i")).unwrap_or_default();
        dialled.insert(call_id, room);
    }
    assert_eq!(
        dialled.len(),
        n,
        "SIPp's trace has {} INVITEs, expected {n}\n{}",
        dialled.len(),
        context()
    );
    let expected_rooms: Vec<String> = (1..=CALLS).map(|i| format!("room-{i}")).collect();
    let mut rooms: Vec<String> = dialled.values().cloned().collect();
    rooms.sort();
    assert_eq!(rooms, expected_rooms, "rooms dialled by SIPp");

    // The sessions roomkit created: one per call, room_id = the dialled room.
    let sessions = backend.events("session");
    assert_eq!(
        sessions.len(),
        n,
        "roomkit created {} sessions, expected {n}\n{}",
        sessions.len(),
        context()
    );
    for s in &sessions {
        let call_id = s.str("call_id").unwrap_or_default();
        let room_id = s.str("room_id");
        let want = dialled.get(call_id).map(String::as_str);
        assert!(
            want.is_some() && room_id == want,
            "session for Call-ID {call_id}: roomkit's session.metadata[\"room_id\"] is {room_id:?}, \
             the call dialled {want:?} (a forged X-Room-ID must never get through)\n{}",
            context()
        );
        let session_id = s.str("session_id").unwrap_or_default();
        assert!(
            session_id.len() == 32 && session_id.bytes().all(|b| b.is_ascii_hexdigit()),
            "roomkit's session id {session_id:?} is not the policy's 32-hex X-Session-ID\n{}",
            context()
        );
    }
    // On the wire: each INVITE reached roomkit from the proxy with exactly
    // one X-Room-ID, the dialled room (the caller's forged one is gone).
    let invites = backend.events("invite");
    assert!(
        invites.len() >= n,
        "{} INVITEs reached roomkit, expected {n}\n{}",
        invites.len(),
        context()
    );
    for inv in &invites {
        let call_id = inv.str("call_id").unwrap_or_default();
        let want = dialled.get(call_id).cloned().map(Json::Str);
        assert!(
            want.is_some() && inv.get("x_room_ids") == Some(&Json::Arr(Vec::from_iter(want))),
            "INVITE {call_id} reached roomkit with X-Room-ID {:?}, expected only the dialled \
             room {:?}\n{}",
            inv.get("x_room_ids"),
            dialled.get(call_id),
            context()
        );
        assert_eq!(
            inv.str("source"),
            Some(proxy.udp_addr().to_string().as_str()),
            "INVITE {call_id} did not come from the proxy\n{}",
            context()
        );
    }
    assert!(
        !events.iter().any(|e| e.str("room_id") == Some("forged")),
        "the forged X-Room-ID reached roomkit\n{}",
        context()
    );

    // ACK and BYE: sent by SIPp to the proxy with roomkit's Contact as
    // Request-URI, relayed by it, accepted by roomkit's dialog.
    for method in ["ack", "bye"] {
        let seen = backend.events(method);
        let mut call_ids: Vec<&str> = seen.iter().filter_map(|e| e.str("call_id")).collect();
        call_ids.sort_unstable();
        call_ids.dedup();
        let want: Vec<&str> = dialled.keys().map(String::as_str).collect();
        assert_eq!(
            call_ids,
            want,
            "the {} of every call must reach roomkit\n{}",
            method.to_uppercase(),
            context()
        );
        for e in &seen {
            assert!(
                e.get("matched") == Some(&Json::Bool(true)),
                "roomkit did not match this {} to its dialog: {e:?}\n{}",
                method.to_uppercase(),
                context()
            );
            assert_eq!(
                e.str("source"),
                Some(proxy.udp_addr().to_string().as_str()),
                "the {} did not come through the proxy\n{}",
                method.to_uppercase(),
                context()
            );
            let r_uri = e.str("r_uri").unwrap_or_default();
            assert!(
                r_uri.starts_with("sip:") && uri_user(r_uri).is_none(),
                "expected roomkit's Contact (no user part) as the {}'s Request-URI, got {r_uri}",
                method.to_uppercase()
            );
        }
    }
    assert_eq!(
        ended.len(),
        n,
        "roomkit ended {} sessions after the BYEs, expected {n}\n{}",
        ended.len(),
        context()
    );

    // What SIPp sent and got back for the in-dialog requests.
    let backend_hostport = backend.addr.to_string();
    for method in ["ACK", "BYE"] {
        let sent = messages
            .iter()
            .filter(|m| !m.received && m.text.starts_with(&format!("{method} sip:")))
            .filter(|m| {
                let ruri = m.text.split(' ').nth(1).unwrap_or_default();
                ruri.contains(&backend_hostport) && uri_user(ruri).is_none()
            })
            .count();
        assert!(
            sent >= n,
            "SIPp sent {sent} {method}s with roomkit's Contact ({backend_hostport}) as \
             Request-URI, expected {n}\n{}",
            context()
        );
    }
    let bye_200: Vec<&str> = messages
        .iter()
        .filter(|m| m.received && status_code(&m.text) == Some(200))
        .filter(|m| header_value(&m.text, "cseq", None).is_some_and(|c| c.ends_with("BYE")))
        .filter_map(|m| header_value(&m.text, "call-id", Some("i")))
        .map(|c| dialled.get_key_value(&c).map_or("", |(k, _)| k.as_str()))
        .collect();
    let mut bye_200_calls = bye_200.clone();
    bye_200_calls.sort_unstable();
    bye_200_calls.dedup();
    assert_eq!(
        bye_200_calls,
        dialled.keys().map(String::as_str).collect::<Vec<_>>(),
        "SIPp did not get 200 for every BYE\n{}",
        context()
    );

    let status = backend.stop();
    assert!(
        status.is_some_and(|s| s.success()),
        "backend.py did not exit 0 on SIGTERM ({status:?})\n{}",
        backend.report()
    );
    eprintln!(
        "roomkit ({}): venv {:.1} s, whole test {:.1} s",
        build.artifact,
        venv_ready.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
