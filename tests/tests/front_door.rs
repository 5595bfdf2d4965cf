//! The voice-AI front door walk-through, `examples/voice-ai-front-door/`:
//! runs the command its README ends with, `examples/voice-ai-front-door/run`
//! (roomkit's `SIPVoiceBackend` behind Viaduct and the `front-door` policy,
//! SIPp as the trunk and as a stranger), on free ports, and checks in the
//! files it leaves what a user checks.
//!
//! The dead media bridge is a socket of this test that never answers (the
//! README's has nothing listening; the proxy sees the same silence), so the
//! test also sees what the policy sent it.
//!
//! Needs what `tests/roomkit.rs` needs: Python >= 3.12 (the shared roomkit
//! venv, [`roomkit_python`]), `target/release/viaduct` (or `VIADUCT_BIN`),
//! `target/policies/front-door.wasm` (`policies/build`) and `sipp`.

use std::fs;
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use viaduct_e2e::{
    free_port, header_value, header_values, local, policy_wasm, roomkit_python, status_code, tail,
    traced_messages, viaduct_bin, workspace_root, Json, TracedMessage,
};

/// The number the trunk dials, and so the room (`examples/.../run`).
const NUMBER: &str = "+15550100";
/// `bridge_timeout_ms` of the example's viaduct.toml.
const BRIDGE_TIMEOUT: Duration = Duration::from_millis(1000);
/// RTP ports for roomkit, clear of `tests/roomkit.rs`'s ranges.
const RTP_PORTS: &str = "24600 24790";

/// What a bridge that never answers received, one datagram per entry.
fn silent_bridge(port: u16) -> Arc<Mutex<Vec<String>>> {
    let socket = UdpSocket::bind(local(port)).expect("bind the dead bridge's port");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    // Detached: it blocks in recv until the test process exits.
    thread::spawn(move || {
        let mut buf = vec![0u8; 65535];
        while let Ok(n) = socket.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            sink.lock().unwrap_or_else(|e| e.into_inner()).push(text);
        }
    });
    seen
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The final status of the INVITE in a caller's trace, and how long after
/// the INVITE it came.
fn invite_outcome(trace: &[TracedMessage]) -> (Option<u16>, Option<Duration>) {
    let sent = trace
        .iter()
        .find(|m| !m.received && m.text.starts_with("INVITE "));
    let last_final = trace.iter().find(|m| {
        m.received
            && status_code(&m.text).is_some_and(|c| c >= 200)
            && header_value(&m.text, "cseq", None).is_some_and(|c| c.ends_with("INVITE"))
    });
    let code = last_final.and_then(|m| status_code(&m.text));
    let took = sent
        .zip(last_final)
        .and_then(|(s, f)| f.at.duration_since(s.at).ok());
    (code, took)
}

fn call_id(trace: &[TracedMessage]) -> String {
    trace
        .iter()
        .find(|m| !m.received && m.text.starts_with("INVITE "))
        .and_then(|m| header_value(&m.text, "call-id", Some("i")))
        .unwrap_or_default()
}

/// A known trunk's call reaches roomkit in the dialled room after the dead
/// bridge failed, without the caller's X- headers; a stranger's gets 403
/// and reaches nothing.
#[test]
fn front_door_walk_through() {
    let python = roomkit_python();
    policy_wasm("front-door"); // panics with the policies/build hint
    let (proxy_port, roomkit_port, dead_port) = (free_port(), free_port(), free_port());
    let dead_bridge = silent_bridge(dead_port);
    let out = tempfile::Builder::new()
        .prefix("viaduct-e2e-front-door-")
        .tempdir()
        .expect("temp dir");
    let script = workspace_root().join("examples/voice-ai-front-door/run");
    let run = Command::new(&script)
        .env("ROOMKIT_PYTHON", &python)
        .env("VIADUCT_BIN", viaduct_bin())
        .env("PROXY_PORT", proxy_port.to_string())
        .env("ROOMKIT_PORT", roomkit_port.to_string())
        .env("DEAD_BRIDGE_PORT", dead_port.to_string())
        .env("ROOMKIT_RTP_PORTS", RTP_PORTS)
        .env("FRONT_DOOR_OUT", out.path())
        .env("TZ", "UTC") // SIPp's trace times, read as UTC
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let dir = out.path();
    let context = || {
        format!(
            "--- run: {} ---\n{}{}\n--- viaduct.log (tail) ---\n{}\n--- roomkit.jsonl ---\n{}\n\
             --- roomkit.log (tail) ---\n{}\n--- dead bridge got ---\n{:?}",
            run.status,
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr),
            tail(&dir.join("viaduct.log"), 40),
            tail(&dir.join("roomkit.jsonl"), 40),
            tail(&dir.join("roomkit.log"), 20),
            dead_bridge.lock().unwrap_or_else(|e| e.into_inner()),
        )
    };
    eprintln!("{}", String::from_utf8_lossy(&run.stdout));
    assert!(
        run.status.success(),
        "the walk-through failed\n{}",
        context()
    );

    let events: Vec<Json> = read(&dir.join("roomkit.jsonl"))
        .lines()
        .map(|l| Json::parse(l).unwrap_or_else(|| panic!("not JSON: {l}\n{}", context())))
        .collect();
    let of = |kind: &str, id: &str| -> Vec<Json> {
        events
            .iter()
            .filter(|e| e.str("event") == Some(kind) && e.str("call_id") == Some(id))
            .cloned()
            .collect()
    };
    let proxy = local(proxy_port).to_string();

    // The trunk's call: 200, after the dead bridge's timeout.
    let trunk = traced_messages(&read(&dir.join("trunk.msg")));
    let trunk_id = call_id(&trunk);
    let (code, took) = invite_outcome(&trunk);
    assert_eq!(code, Some(200), "the trunk's call\n{}", context());
    assert!(
        took.is_some_and(|t| t >= BRIDGE_TIMEOUT),
        "the 200 came {took:?} after the INVITE: the dead bridge was not tried first for \
         {BRIDGE_TIMEOUT:?}\n{}",
        context()
    );
    assert!(
        trunk.iter().any(|m| m.received
            && m.text.starts_with("SIP/2.0 200")
            && header_value(&m.text, "cseq", None).is_some_and(|c| c.ends_with("BYE"))),
        "the trunk's BYE was not answered 200\n{}",
        context()
    );

    // The dead bridge got the INVITE first, already edited by the policy.
    let to_dead: Vec<String> = dead_bridge
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|m| m.starts_with("INVITE ") && m.contains(&trunk_id))
        .cloned()
        .collect();
    assert!(
        !to_dead.is_empty(),
        "the dead bridge got no INVITE\n{}",
        context()
    );
    for m in &to_dead {
        assert_eq!(header_values(m, "x-room-id", None), [NUMBER], "{m}");
        assert!(
            !m.contains("forged"),
            "a forged header reached a bridge: {m}"
        );
    }
    let log = read(&dir.join("viaduct.log"));
    assert!(
        log.lines()
            .any(|l| l.contains("media bridge failed with 408") && l.contains(&trunk_id)),
        "the policy logged no failover for {trunk_id}\n{}",
        context()
    );

    // roomkit: the INVITE came from the proxy with X-Room-ID = the number
    // only; the session is in that room and saw no caller-made X- header.
    let invites = of("invite", &trunk_id);
    assert!(!invites.is_empty(), "roomkit got no INVITE\n{}", context());
    for inv in &invites {
        assert_eq!(inv.str("source"), Some(proxy.as_str()), "{inv:?}");
        assert_eq!(
            inv.get("x_room_ids"),
            Some(&Json::Arr(vec![Json::Str(NUMBER.into())])),
            "X-Room-ID at roomkit\n{}",
            context()
        );
    }
    let sessions = of("session", &trunk_id);
    assert_eq!(sessions.len(), 1, "roomkit sessions\n{}", context());
    let session = &sessions[0];
    assert_eq!(session.str("room_id"), Some(NUMBER), "{session:?}");
    if let Some(Json::Obj(x_headers)) = session.get("x_headers") {
        for name in x_headers.keys() {
            assert!(
                name.eq_ignore_ascii_case("x-room-id"),
                "roomkit saw the X- header {name}, which the caller made up\n{}",
                context()
            );
        }
    }
    assert!(
        !events.iter().any(|e| format!("{e:?}").contains("forged")),
        "a forged value reached roomkit\n{}",
        context()
    );
    let byes = of("bye", &trunk_id);
    assert!(
        byes.iter()
            .any(|b| b.get("matched") == Some(&Json::Bool(true))),
        "roomkit did not get the BYE of its dialog\n{}",
        context()
    );

    // The stranger (127.0.0.2, not a trunk): 403, and nothing anywhere.
    let stranger = traced_messages(&read(&dir.join("stranger.msg")));
    let stranger_id = call_id(&stranger);
    assert!(!stranger_id.is_empty(), "no stranger INVITE\n{}", context());
    assert_eq!(invite_outcome(&stranger).0, Some(403), "{}", context());
    assert!(
        !events
            .iter()
            .any(|e| e.str("call_id") == Some(stranger_id.as_str())),
        "the stranger's call reached roomkit\n{}",
        context()
    );
    assert!(
        !dead_bridge
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|m| m.contains(&stranger_id)),
        "the stranger's call reached a bridge\n{}",
        context()
    );
}
