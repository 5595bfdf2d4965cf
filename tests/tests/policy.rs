//! The Wasm routing policies, end to end: the real proxy with a policy
//! component, calls placed and answered by SIPp on 127.0.0.1, judged by what
//! a user would check: the codes the caller got, the headers the callee saw,
//! the calls that completed, the admin port's answers.
//!
//! Every test starts its own `viaduct` and SIPp processes on fresh ports,
//! with its own compiled-policy cache (`cache_dir`) and, when it replaces the
//! policy file, its own copy of it, so they run in parallel. The x-room-id
//! tests run once per language build (Rust, Python, JavaScript); the Python
//! and JavaScript builds share `<workspace>/target/policy-cache` (keyed by
//! content hash, written atomically) so their ~10 s compile happens once. Needs
//! `target/release/viaduct`, `target/policies/*.wasm` (`policies/build`) and
//! `sipp`; `./tests/run` provides all three.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;
use tempfile::TempDir;
use viaduct_e2e::{
    assert_all_calls_ok, free_port, header_value, header_values, local, policy_wasm, recv_all,
    InviteFinal, PolicyBuild, Sipp, SippProcess, SippRun, TracedMessage, Viaduct,
};

/// A UAC run's bound: no test may hang.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A per-test directory: the compiled-policy cache and, when the test
/// replaces it, the policy file.
struct PolicyDir {
    dir: TempDir,
}

impl PolicyDir {
    fn new() -> PolicyDir {
        PolicyDir {
            dir: tempfile::Builder::new()
                .prefix("viaduct-e2e-policy-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Copies `target/policies/<name>.wasm` to `policy.wasm` here.
    fn copy_policy(&self, name: &str) -> PathBuf {
        let file = self.path("policy.wasm");
        fs::copy(policy_wasm(name), &file).expect("copying the policy");
        file
    }

    /// Replaces `file` the way deploy tools do: write a temp file in the same
    /// directory, then rename it over the old one (atomic for readers).
    fn replace_by_rename(&self, file: &Path, bytes: &[u8]) {
        let tmp = self.path(".policy.wasm.tmp");
        fs::write(&tmp, bytes).expect("writing the new policy");
        fs::rename(&tmp, file).expect("renaming the new policy into place");
    }

    /// A proxy config: `top` (other tables) first, then `[policy]` with
    /// `file`, this directory's cache and `policy` lines, then
    /// `[policy.config]` with `table` lines.
    /// A proxy config running `build` (see [`PolicyBuild::policy_lines`]:
    /// this directory's cache unless the build shares one), with
    /// `[policy.config]` `table` lines.
    fn build_config(&self, build: PolicyBuild, table: &str) -> String {
        format!(
            "[policy]\n{}\n[policy.config]\n{table}\n",
            build.policy_lines(&self.path("cache"))
        )
    }

    fn config(&self, top: &str, file: &Path, policy: &str, table: &str) -> String {
        format!(
            "{top}\n[policy]\nfile = {file:?}\ncache_dir = {cache:?}\n{policy}\n\n[policy.config]\n{table}\n",
            file = file.display().to_string(),
            cache = self.path("cache").display().to_string(),
        )
    }
}

/// The caller, `room_uac.xml` (expects 200), calling `remote` through the proxy.
fn room_caller(proxy: &Viaduct, remote: std::net::SocketAddr) -> Sipp {
    Sipp::uac(remote)
        .scenario("room_uac.xml")
        .rsa(proxy.udp_addr())
        .timeout(CALL_TIMEOUT)
}

/// The caller, `room_or_reject_uac.xml` (200, or 403/404/500/503 ACKed).
fn rejectable_caller(proxy: &Viaduct, remote: std::net::SocketAddr) -> Sipp {
    Sipp::uac(remote)
        .scenario("room_or_reject_uac.xml")
        .rsa(proxy.udp_addr())
        .timeout(CALL_TIMEOUT)
        .trace_msg()
}

/// The built-in UAS, tracing messages, for `calls` calls.
fn callee(calls: u64) -> SippProcess {
    Sipp::uas()
        .calls(calls)
        .timeout(Duration::from_secs(40))
        .trace_msg()
        .spawn()
}

/// The INVITEs a callee received, in order (retransmissions included).
fn invites_received(run: &SippRun) -> Vec<TracedMessage> {
    run.timed_message_list()
        .into_iter()
        .filter(|m| m.received && m.text.starts_with("INVITE "))
        .collect()
}

/// The user part of an INVITE's Request-URI (`room-7` in `INVITE sip:room-7@...`).
fn ruri_user(invite: &str) -> Option<&str> {
    let uri = invite.split(' ').nth(1)?;
    let rest = uri.strip_prefix("sip:")?;
    rest.split_once('@').map(|(user, _)| user)
}

/// The `X-Policy-Stamp` values of the INVITEs a callee received, in order;
/// panics unless every INVITE has exactly one.
fn stamps(callee: &SippRun) -> Vec<(String, SystemTime)> {
    invites_received(callee)
        .into_iter()
        .map(|m| {
            let v = header_values(&m.text, "x-policy-stamp", None);
            assert_eq!(
                v.len(),
                1,
                "an INVITE without exactly one X-Policy-Stamp:\n{}",
                m.text
            );
            (v[0].clone(), m.at)
        })
        .collect()
}

/// The `X-Policy-Stamp` of each call the callee received, in order of the
/// calls (a retransmitted INVITE counts once).
fn stamps_per_call(callee: &SippRun) -> Vec<String> {
    let mut seen = HashSet::new();
    invites_received(callee)
        .into_iter()
        .filter(|m| seen.insert(header_value(&m.text, "call-id", Some("i"))))
        .map(|m| header_value(&m.text, "x-policy-stamp", None).unwrap_or_default())
        .collect()
}

/// Runs of equal values: `[v1, v1, v2, v1]` → `[v1, v2, v1]`.
fn runs(values: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in values {
        if out.last() != Some(v) {
            out.push(v.clone());
        }
    }
    out
}

/// One call with `room_uac.xml` to `uas` through `proxy`; asserts it completed.
fn one_call(proxy: &Viaduct, uas: std::net::SocketAddr) -> SippRun {
    let run = room_caller(proxy, uas).calls(1).trace_msg().spawn().wait();
    assert_all_calls_ok(&run, 1);
    run
}

/// A number in the `policy` object of `GET /status` (JSON).
fn status_number(body: &str, name: &str) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v["policy"][name].as_u64()
}

/// x-room-id relaying by Request-URI: 500 calls at 100 calls/s to
/// `room-1`..`room-500`, each with a forged X-Room-ID and X-Session-ID. All
/// complete; every INVITE the callee saw has exactly one X-Room-ID, its own
/// room, and one fresh 32-hex-digit X-Session-ID; the in-dialog ACK and BYE
/// reach it without either header (they never go through the policy).
#[test]
fn x_room_id_500_calls_at_100_per_second_rust() {
    x_room_id_calls_at_100_per_second(PolicyBuild::X_ROOM_ID_RUST, 500);
}

/// The same with the Python build. 200 calls instead of 500 (2 s of load
/// at the same rate) keeps the suite's time reasonable: the interpreted
/// builds are slower per call, and the header checks are the same.
#[test]
fn x_room_id_500_calls_at_100_per_second_python() {
    x_room_id_calls_at_100_per_second(PolicyBuild::X_ROOM_ID_PYTHON, 200);
}

/// The same with the JavaScript build; 200 calls, as for Python.
#[test]
fn x_room_id_500_calls_at_100_per_second_javascript() {
    x_room_id_calls_at_100_per_second(PolicyBuild::X_ROOM_ID_JAVASCRIPT, 200);
}

/// `calls` calls at 100 calls/s through `build` of x-room-id, relayed by
/// Request-URI; see [`x_room_id_500_calls_at_100_per_second_rust`].
fn x_room_id_calls_at_100_per_second(build: PolicyBuild, calls: u64) {
    let dir = PolicyDir::new();
    let proxy = Viaduct::start_within(&dir.build_config(build, ""), build.ready_bound());
    let uas = callee(calls);
    let caller = room_caller(&proxy, uas.addr())
        .calls(calls)
        .rate(100)
        .spawn()
        .wait();
    let callee = uas.wait();
    assert_all_calls_ok(&caller, calls);
    assert_all_calls_ok(&callee, calls);

    let mut rooms = BTreeSet::new();
    let mut sessions: HashMap<String, String> = HashMap::new();
    let invites = invites_received(&callee);
    for m in &invites {
        let invite = &m.text;
        let call_id = header_value(invite, "call-id", Some("i")).unwrap_or_default();
        let room_ids = header_values(invite, "x-room-id", None);
        let user = ruri_user(invite).unwrap_or_default();
        assert_eq!(
            room_ids,
            vec![user.to_owned()],
            "the callee's INVITE must carry exactly one X-Room-ID, its room {user:?}:\n{invite}"
        );
        assert!(user.starts_with("room-"), "unexpected R-URI:\n{invite}");
        let session_ids = header_values(invite, "x-session-id", None);
        assert!(
            session_ids.len() == 1
                && session_ids[0].len() == 32
                && session_ids[0]
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
            "expected one X-Session-ID of 32 lowercase hex digits:\n{invite}"
        );
        // A retransmission of the same INVITE carries the same id.
        let previous = sessions.insert(call_id.clone(), session_ids[0].clone());
        assert!(
            previous.is_none_or(|p| p == session_ids[0]),
            "one INVITE forwarded with two session ids ({call_id})"
        );
        rooms.insert(user.to_owned());
    }
    let expected: BTreeSet<String> = (1..=calls).map(|n| format!("room-{n}")).collect();
    assert_eq!(
        rooms, expected,
        "the callee did not see room-1..room-{calls}"
    );
    let distinct: HashSet<&String> = sessions.values().collect();
    let n = usize::try_from(calls).expect("small");
    assert_eq!(
        (sessions.len(), distinct.len()),
        (n, n),
        "expected {calls} calls with {calls} distinct X-Session-IDs"
    );

    let in_dialog: Vec<String> = callee
        .timed_message_list()
        .into_iter()
        .filter(|m| m.received && (m.text.starts_with("ACK ") || m.text.starts_with("BYE ")))
        .map(|m| m.text)
        .collect();
    let byes = in_dialog.iter().filter(|m| m.starts_with("BYE ")).count();
    assert_eq!(byes, n, "callee saw {byes} BYEs");
    for m in &in_dialog {
        assert!(
            header_value(m, "x-room-id", None).is_none()
                && header_value(m, "x-session-id", None).is_none(),
            "an in-dialog request reached the callee with a room header:\n{m}"
        );
    }
}

/// `backends` from `[policy.config]`: the Request-URI names a port where
/// nothing listens, the call still reaches the backend (the callee) and
/// completes; the Request-URI is not rewritten.
#[test]
fn x_room_id_backends_from_config_rust() {
    x_room_id_backends_from_config(PolicyBuild::X_ROOM_ID_RUST);
}

/// The same with the Python build.
#[test]
fn x_room_id_backends_from_config_python() {
    x_room_id_backends_from_config(PolicyBuild::X_ROOM_ID_PYTHON);
}

/// The same with the JavaScript build.
#[test]
fn x_room_id_backends_from_config_javascript() {
    x_room_id_backends_from_config(PolicyBuild::X_ROOM_ID_JAVASCRIPT);
}

fn x_room_id_backends_from_config(build: PolicyBuild) {
    let dir = PolicyDir::new();
    let uas = callee(1);
    let nowhere = local(free_port());
    let proxy = Viaduct::start_within(
        &dir.build_config(build, &format!("backends = [\"sip:{}\"]", uas.addr())),
        build.ready_bound(),
    );
    let caller = room_caller(&proxy, nowhere).calls(1).spawn().wait();
    let callee = uas.wait();
    assert_all_calls_ok(&caller, 1);
    assert_all_calls_ok(&callee, 1);
    let invites = invites_received(&callee);
    let invite = &invites.first().expect("callee saw no INVITE").text;
    assert!(
        invite.starts_with(&format!("INVITE sip:room-1@{nowhere} ")),
        "the Request-URI was changed:\n{invite}"
    );
    assert_eq!(
        header_values(invite, "x-room-id", None),
        vec!["room-1".to_owned()],
        "{invite}"
    );
}

/// `trusted_sources`: with stamp-v1 (which never touches X-Room-ID), a
/// caller from a trusted network keeps its own X-Room-ID/X-Session-ID; from
/// any other source they are stripped before the policy and the callee see them.
#[test]
fn trusted_source_keeps_caller_room_id() {
    let dir = PolicyDir::new();
    let stamp = policy_wasm("stamp-v1");
    let trusting =
        Viaduct::start(&dir.config("", &stamp, "trusted_sources = [\"127.0.0.1/32\"]", ""));
    let strict = Viaduct::start(&dir.config("", &stamp, "", ""));
    let uas_a = callee(1);
    let uas_b = callee(1);
    let run_a = room_caller(&trusting, uas_a.addr()).calls(1).spawn();
    let run_b = room_caller(&strict, uas_b.addr()).calls(1).spawn();
    let (run_a, run_b) = (run_a.wait(), run_b.wait());
    let (callee_a, callee_b) = (uas_a.wait(), uas_b.wait());
    for run in [&run_a, &run_b, &callee_a, &callee_b] {
        assert_all_calls_ok(run, 1);
    }

    let invites = invites_received(&callee_a);
    let trusted = &invites.first().expect("callee saw no INVITE").text;
    assert_eq!(
        (
            header_values(trusted, "x-room-id", None),
            header_values(trusted, "x-session-id", None),
            header_value(trusted, "x-policy-stamp", None),
        ),
        (
            vec!["forged".to_owned()],
            vec!["forged".to_owned()],
            Some("v1".to_owned())
        ),
        "trusted source: the caller's headers must reach the callee:\n{trusted}"
    );
    let invites = invites_received(&callee_b);
    let untrusted = &invites.first().expect("callee saw no INVITE").text;
    assert_eq!(
        (
            header_values(untrusted, "x-room-id", None),
            header_values(untrusted, "x-session-id", None),
            header_value(untrusted, "x-policy-stamp", None),
        ),
        (vec![], vec![], Some("v1".to_owned())),
        "untrusted source: the caller's X-Room-ID/X-Session-ID must be stripped:\n{untrusted}"
    );
}

/// media-bridge: bridges = [nothing listening, a bridge answering 503, the
/// callee]. Each call starts at the bridge its Call-ID hashes to and fails
/// over in order (timeout with `t1_ms = 50`, then 503), so all calls complete
/// and the 503 never reaches the caller. When every bridge answers 503 the
/// caller gets `503 All Media Bridges Down` with `Retry-After: 30`.
#[test]
fn media_bridge_fails_over_and_reports_all_down() {
    let dir = PolicyDir::new();
    let media_bridge = policy_wasm("media-bridge");
    let dead = local(free_port());
    let busy = Sipp::uas()
        .scenario("reject_503_uas.xml")
        .calls(1000)
        .timeout(CALL_TIMEOUT)
        .trace_msg()
        .spawn();
    let uas = callee(9);
    let proxy = Viaduct::start(&dir.config(
        "[timers]\nt1_ms = 50\n",
        &media_bridge,
        "",
        &format!(
            "bridges = [\"sip:{dead}\", \"sip:{}\", \"sip:{}\"]",
            busy.addr(),
            uas.addr()
        ),
    ));
    let caller = rejectable_caller(&proxy, uas.addr())
        .calls(9)
        .rate(10)
        .spawn()
        .wait();
    let callee = uas.wait();
    let busy = busy.stop();
    assert_all_calls_ok(&caller, 9);
    let codes: Vec<u16> = caller.invite_finals().iter().map(|f| f.code).collect();
    assert_eq!(
        codes,
        vec![200; 9],
        "every call must complete through the failover\n{}",
        caller.summary()
    );
    assert_all_calls_ok(&callee, 9);
    let tried_busy = invites_received(&busy).len();
    assert!(
        tried_busy >= 1,
        "no call was tried on the 503 bridge first: the failover was not exercised\n{}",
        busy.summary()
    );
    println!(
        "media-bridge failover: 9/9 calls completed, {tried_busy} INVITEs answered 503 on the way"
    );

    // Every bridge down.
    let busy_a = Sipp::uas()
        .scenario("reject_503_uas.xml")
        .calls(1000)
        .timeout(CALL_TIMEOUT)
        .spawn();
    let busy_b = Sipp::uas()
        .scenario("reject_503_uas.xml")
        .calls(1000)
        .timeout(CALL_TIMEOUT)
        .spawn();
    let all_down = Viaduct::start(&dir.config(
        "",
        &media_bridge,
        "",
        &format!(
            "bridges = [\"sip:{}\", \"sip:{}\"]",
            busy_a.addr(),
            busy_b.addr()
        ),
    ));
    let caller = rejectable_caller(&all_down, busy_a.addr())
        .calls(2)
        .rate(10)
        .spawn()
        .wait();
    let (_a, _b) = (busy_a.stop(), busy_b.stop());
    let finals = caller.invite_finals();
    assert_eq!(
        finals.len(),
        2,
        "expected a final answer to each of 2 calls\n{}",
        caller.summary()
    );
    for f in &finals {
        assert!(
            f.code == 503
                && f.message.starts_with("SIP/2.0 503 All Media Bridges Down")
                && header_value(&f.message, "retry-after", None).as_deref() == Some("30"),
            "all bridges down: expected 503 All Media Bridges Down with Retry-After: 30, got:\n{}",
            f.message
        );
    }
}

/// allowlist: a source outside `sources` gets 403 and nothing is forwarded;
/// with the source allowed and `numbers = ["room-1"]`, room-1 completes and
/// room-2 gets 404.
#[test]
fn allowlist_rejects() {
    let dir = PolicyDir::new();
    let allowlist = policy_wasm("allowlist");

    // Not from an allowed network: 403, nothing reaches the next hop.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let next_hop = silent.local_addr().expect("addr");
    let closed = Viaduct::start(&dir.config("", &allowlist, "", "sources = [\"10.0.0.0/8\"]"));
    let caller = rejectable_caller(&closed, next_hop).calls(1).spawn().wait();
    let finals = caller.invite_finals();
    assert!(
        finals.len() == 1 && finals[0].code == 403,
        "expected 403 for a source outside 10.0.0.0/8\n{}",
        caller.summary()
    );
    let leaked = recv_all(&silent, Duration::from_millis(300)).expect("recv");
    assert!(
        leaked.is_empty(),
        "a refused call was forwarded: {} datagrams reached the next hop",
        leaked.len()
    );

    // Allowed network, one allowed number.
    let uas = callee(1);
    let open = Viaduct::start(&dir.config(
        "",
        &allowlist,
        "",
        "sources = [\"10.0.0.0/8\", \"127.0.0.1\"]\nnumbers = [\"room-1\"]",
    ));
    // Call 1 is room-1 (allowed), call 2 is room-2 (not in numbers).
    let caller = rejectable_caller(&open, uas.addr())
        .calls(2)
        .rate(2)
        .spawn()
        .wait();
    let callee = uas.wait();
    let finals = caller.invite_finals();
    let by_room: Vec<(String, u16)> = finals
        .iter()
        .map(|f| {
            let to = header_value(&f.message, "to", Some("t")).unwrap_or_default();
            let room = if to.contains("sip:room-1@") {
                "room-1"
            } else {
                "room-2"
            };
            (room.to_owned(), f.code)
        })
        .collect();
    assert_eq!(
        by_room,
        vec![("room-1".to_owned(), 200), ("room-2".to_owned(), 404)],
        "expected room-1 to complete and room-2 to get 404\n{}",
        caller.summary()
    );
    assert_eq!(caller.failed, 0, "{}", caller.summary());
    assert_all_calls_ok(&callee, 1);
    assert_eq!(
        invites_received(&callee).len(),
        1,
        "the callee must see room-1 only"
    );
}

/// rate-limit with `calls_per_second = 5`, SIPp at 30 calls/s for about 2 s:
/// some calls complete, the others get `503 Rate Limited` with Retry-After
/// (answers, not timeouts), and no more than 5 a second get through.
#[test]
fn rate_limit_rejects_over_the_limit() {
    let dir = PolicyDir::new();
    let uas = callee(1000);
    let proxy =
        Viaduct::start(&dir.config("", &policy_wasm("rate-limit"), "", "calls_per_second = 5"));
    let caller = rejectable_caller(&proxy, uas.addr())
        .calls(60)
        .rate(30)
        .spawn()
        .wait();
    let callee = uas.stop();
    let finals = caller.invite_finals();
    let completed = finals.iter().filter(|f| f.code == 200).count();
    let limited: Vec<&InviteFinal> = finals.iter().filter(|f| f.code == 503).collect();
    assert_eq!(
        (finals.len(), caller.failed),
        (60, 0),
        "every call must get a final answer (no timeouts)\n{}",
        caller.summary()
    );
    assert!(
        completed > 0 && !limited.is_empty() && completed + limited.len() == 60,
        "expected some 200s and some 503s and nothing else: {completed} completed, {} limited, codes {:?}\n{}",
        limited.len(),
        finals.iter().map(|f| f.code).collect::<Vec<_>>(),
        caller.summary()
    );
    for f in &limited {
        assert!(
            f.message.starts_with("SIP/2.0 503 Rate Limited")
                && header_value(&f.message, "retry-after", None).is_some(),
            "expected 503 Rate Limited with Retry-After:\n{}",
            f.message
        );
    }
    // The window is one wall-clock second per source: at most 5 per second
    // the INVITEs were sent in (one spare second for a window boundary).
    let sent = caller.invite_sent_at();
    let seconds: HashSet<u64> = sent
        .values()
        .filter_map(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .collect();
    assert!(
        completed <= 5 * (seconds.len() + 1),
        "{completed} calls got through in {} seconds at 5 calls/s",
        seconds.len()
    );
    assert_eq!(
        invites_received(&callee).len(),
        completed,
        "the callee must see exactly the calls that were let through"
    );
    println!(
        "rate-limit: {completed} completed, {} got 503 Rate Limited, over {} seconds",
        limited.len(),
        seconds.len()
    );
}

/// Hot swap under load: SIPp places 1000 calls at 50 calls/s while the policy
/// file changes from stamp-v1 to stamp-v2 (temp file + rename) after ~6 s
/// and back to stamp-v1 (plain overwrite) after ~12 s. No call fails; the
/// callee's INVITEs carry exactly one stamp each, v1 then v2 then v1 in
/// order. Prints the swap latencies (copy → "policy loaded" in the log, and
/// copy → first INVITE with the new stamp at the callee).
#[test]
fn hot_swap_under_load() {
    let dir = PolicyDir::new();
    let file = dir.copy_policy("stamp-v1");
    let proxy = Viaduct::start(&dir.config("", &file, "", ""));
    let loaded = "policy loaded";
    assert_eq!(proxy.log_count(loaded), 1, "{}", proxy.log_tail(20));
    let uas = callee(1000);
    let started = Instant::now();
    let uac = Sipp::uac(uas.addr())
        .rsa(proxy.udp_addr())
        .calls(1000)
        .rate(50)
        .timeout(Duration::from_secs(40))
        .spawn();

    thread::sleep(Duration::from_secs(6).saturating_sub(started.elapsed()));
    let v2 = fs::read(policy_wasm("stamp-v2")).expect("stamp-v2");
    let first_copy = SystemTime::now();
    dir.replace_by_rename(&file, &v2);
    let first_loaded = proxy.wait_for_log(loaded, 2, Duration::from_secs(5));

    thread::sleep(Duration::from_secs(12).saturating_sub(started.elapsed()));
    let second_copy = SystemTime::now();
    // A plain overwrite: truncate and write in place (what `cp` does).
    fs::copy(policy_wasm("stamp-v1"), &file).expect("overwriting the policy");
    let second_loaded = proxy.wait_for_log(loaded, 3, Duration::from_secs(5));

    let caller = uac.wait();
    let callee = uas.wait();
    println!(
        "hot swap under load: caller {} successful, {} failed; callee {} successful, {} failed",
        caller.successful, caller.failed, callee.successful, callee.failed
    );
    let stamped = stamps(&callee);
    let values: Vec<String> = stamped.iter().map(|(v, _)| v.clone()).collect();
    let first_v2 = stamped.iter().position(|(v, _)| v == "v2");
    let back_to_v1 = first_v2.and_then(|i| {
        stamped[i..]
            .iter()
            .position(|(v, _)| v == "v1")
            .map(|j| i + j)
    });
    let latency = |copy: SystemTime, idx: Option<usize>| {
        idx.and_then(|i| stamped[i].1.duration_since(copy).ok())
    };
    let trace_first = latency(first_copy, first_v2);
    let trace_second = latency(second_copy, back_to_v1);
    println!(
        "hot swap latency, v1 -> v2 (rename): {:?} until \"policy loaded\", {:?} until the first v2 INVITE at the callee",
        first_loaded, trace_first
    );
    println!(
        "hot swap latency, v2 -> v1 (overwrite): {:?} until \"policy loaded\", {:?} until the first v1 INVITE at the callee",
        second_loaded, trace_second
    );
    println!(
        "reloads: {} loaded, {} refused (a refusal during the overwrite is a half-written file)",
        proxy.log_count(loaded),
        proxy.log_count("policy refused")
    );
    assert_all_calls_ok(&caller, 1000);
    assert_eq!(
        runs(&values),
        vec!["v1", "v2", "v1"],
        "the callee's stamps, in order, must go v1, v2, v1 ({} INVITEs)",
        values.len()
    );
    for (what, d) in [("rename", first_loaded), ("overwrite", second_loaded)] {
        assert!(
            d.is_some(),
            "no \"policy loaded\" within 5 s of the {what}\n{}",
            proxy.log_tail(30)
        );
    }
    for (what, d) in [("rename", trace_first), ("overwrite", trace_second)] {
        let d = d.unwrap_or_else(|| panic!("no INVITE with the new stamp after the {what}"));
        assert!(
            d < Duration::from_secs(3),
            "the new policy reached the callee {d:?} after the {what}"
        );
    }
}

/// A broken file never replaces a working policy: garbage bytes and a
/// component of another world are refused by the watcher and by
/// `POST /reload` (500 with the reason), calls keep getting stamp v1, and
/// `GET /status` counts the refusals. Starting with a garbage file fails.
#[test]
fn broken_policy_is_refused_and_old_keeps_serving() {
    let dir = PolicyDir::new();
    let file = dir.copy_policy("stamp-v1");
    let proxy = Viaduct::start(&dir.config("", &file, "", ""));
    let uas = callee(2);
    let refused = "policy refused";

    // Garbage bytes.
    let garbage = b"this is not a WebAssembly component\n".repeat(100);
    dir.replace_by_rename(&file, &garbage);
    assert!(
        proxy
            .wait_for_log(refused, 1, Duration::from_secs(5))
            .is_some(),
        "the watcher did not refuse the garbage file\n{}",
        proxy.log_tail(20)
    );
    let answer = proxy.admin("POST", "/reload");
    println!(
        "POST /reload with garbage: {} {}",
        answer.status,
        answer.body.trim()
    );
    assert!(
        answer.status == 500 && answer.body.contains("policy refused") && answer.body.len() > 40,
        "expected 500 with the reason: {answer:?}"
    );
    one_call(&proxy, uas.addr());

    // A component for another world.
    let watcher_refusals = proxy.log_count(refused);
    dir.replace_by_rename(
        &file,
        &fs::read(policy_wasm("bad-world")).expect("bad-world"),
    );
    assert!(
        proxy
            .wait_for_log(refused, watcher_refusals + 1, Duration::from_secs(5))
            .is_some(),
        "the watcher did not refuse bad-world.wasm\n{}",
        proxy.log_tail(20)
    );
    let answer = proxy.admin("POST", "/reload");
    println!(
        "POST /reload with bad-world: {} {}",
        answer.status,
        answer.body.trim()
    );
    assert!(
        answer.status == 500 && answer.body.contains("not a viaduct:policy"),
        "expected 500 naming the wrong world: {answer:?}"
    );
    one_call(&proxy, uas.addr());

    let callee = uas.wait();
    assert_all_calls_ok(&callee, 2);
    let values = stamps_per_call(&callee);
    assert!(
        values == ["v1", "v1"],
        "the old policy must keep serving: stamps {values:?}"
    );

    let status = proxy.admin("GET", "/status");
    println!("GET /status:\n{}", status.body.trim_end());
    assert_eq!(status.status, 200, "{status:?}");
    let failed = status_number(&status.body, "reloads_failed");
    assert!(
        failed.is_some_and(|n| n >= 2),
        "expected policy_reloads_failed >= 2:\n{}",
        status.body
    );
    assert!(
        status_number(&status.body, "version") == Some(1),
        "the first version must still be serving:\n{}",
        status.body
    );

    // Starting with a garbage policy fails with a message naming the file.
    let broken = dir.path("garbage.wasm");
    fs::write(&broken, &garbage).expect("writing garbage");
    let port = free_port();
    let (exit, output) = Viaduct::run_expecting_exit(
        &dir.config("[admin]\nlisten = \"\"\n", &broken, "", ""),
        &[format!("udp:127.0.0.1:{port}")],
        Duration::from_secs(10),
    );
    println!(
        "start with a garbage policy: {exit:?}\n{}",
        output.trim_end()
    );
    assert!(
        exit.is_some_and(|s| !s.success()),
        "viaduct must refuse to start with a broken policy (exit {exit:?}):\n{output}"
    );
    // The error (the binary's `viaduct: ...` line) names the file and the problem.
    let error = output
        .lines()
        .find(|l| l.starts_with("viaduct: ") && l.contains(&broken.display().to_string()));
    assert!(
        error.is_some_and(|l| l.contains("WebAssembly")),
        "expected a `viaduct: <file>: ... WebAssembly ...` error:\n{output}"
    );
}

/// Policies that never return or eat memory get the fail action: with
/// `spin` (deadline 20 ms) and `grow` (16 MiB cap) each call gets 500 within
/// a second, the proxy still answers OPTIONS, and the next call is handled
/// the same way; with `fail_action = "relay"` a spinning policy's calls
/// complete.
#[test]
fn runaway_policies_get_the_fail_action() {
    let dir = PolicyDir::new();
    let cases = [
        ("spin", "deadline_ms = 20"),
        ("grow", "memory_mb = 16\ndeadline_ms = 1000"),
    ];
    for (name, settings) in cases {
        let proxy = Viaduct::start(&dir.config("", &policy_wasm(name), settings, ""));
        let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let next_hop = silent.local_addr().expect("addr");
        for attempt in 1..=2 {
            let caller = rejectable_caller(&proxy, next_hop).calls(1).spawn().wait();
            let finals = caller.invite_finals();
            let sent = caller.invite_sent_at();
            let f = finals
                .first()
                .unwrap_or_else(|| panic!("{name}: no final answer\n{}", caller.summary()));
            let took = sent
                .get(&f.call_id)
                .and_then(|t| f.at.duration_since(*t).ok())
                .unwrap_or(Duration::MAX);
            println!("{name}, call {attempt}: {} after {took:?}", f.code);
            assert!(
                f.code == 500 && took < Duration::from_secs(1),
                "{name}, call {attempt}: expected 500 within 1 s, got {} after {took:?}\n{}\n{}",
                f.code,
                f.message,
                proxy.log_tail(20)
            );
            assert!(
                proxy.answers_probe(Duration::from_secs(2)),
                "{name}: the proxy no longer answers OPTIONS\n{}",
                proxy.log_tail(20)
            );
        }
        let leaked = recv_all(&silent, Duration::from_millis(100)).expect("recv");
        assert!(leaked.is_empty(), "{name}: a rejected call was forwarded");
        let log = proxy.log();
        let why = log
            .lines()
            .find(|l| l.contains("applying the fail action"))
            .unwrap_or_else(|| {
                panic!(
                    "{name}: no fail-action line in the log\n{}",
                    proxy.log_tail(20)
                )
            });
        println!("{name}: {why}");
        let status = proxy.admin("GET", "/status");
        assert!(
            status_number(&status.body, "failures").is_some_and(|n| n >= 2),
            "{name}: expected policy_failures >= 2:\n{}",
            status.body
        );
    }

    // fail_action = "relay": the runaway policy's calls are relayed.
    let proxy = Viaduct::start(&dir.config(
        "",
        &policy_wasm("spin"),
        "deadline_ms = 20\nfail_action = \"relay\"",
        "",
    ));
    let uas = callee(2);
    let caller = room_caller(&proxy, uas.addr())
        .calls(2)
        .rate(5)
        .spawn()
        .wait();
    let callee = uas.wait();
    assert_all_calls_ok(&caller, 2);
    assert_all_calls_ok(&callee, 2);
}

/// With `watch = false` a changed file is not picked up until SIGHUP; after
/// it the next call carries the new stamp.
#[test]
fn sighup_reloads() {
    let dir = PolicyDir::new();
    let file = dir.copy_policy("stamp-v1");
    let proxy = Viaduct::start(&dir.config("", &file, "watch = false", ""));
    let uas = callee(3);
    one_call(&proxy, uas.addr());

    dir.replace_by_rename(&file, &fs::read(policy_wasm("stamp-v2")).expect("stamp-v2"));
    thread::sleep(Duration::from_millis(1000));
    one_call(&proxy, uas.addr());

    proxy.send_signal(Signal::SIGHUP);
    let took = proxy.wait_for_log("policy loaded", 2, Duration::from_secs(5));
    println!("SIGHUP -> policy loaded after {took:?}");
    assert!(
        took.is_some(),
        "no \"policy loaded\" after SIGHUP\n{}",
        proxy.log_tail(20)
    );
    one_call(&proxy, uas.addr());

    let callee = uas.wait();
    assert_all_calls_ok(&callee, 3);
    assert_eq!(
        stamps_per_call(&callee),
        ["v1", "v1", "v2"],
        "expected v1, v1 (file changed, watch = false, no SIGHUP), then v2 after SIGHUP"
    );
}

/// scanner-block: a request whose User-Agent names a scanner gets no answer
/// and reaches no one; the same request from a phone is forwarded, and a
/// SIPp call through the policy completes.
#[test]
fn scanner_block_drops_scanners_silently() {
    let dir = PolicyDir::new();
    let next_hop = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let hop = next_hop.local_addr().expect("addr");
    let proxy = Viaduct::start(&dir.config("", &policy_wasm("scanner-block"), "", ""));
    let scanner = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let me = scanner.local_addr().expect("addr");
    // svmap/svwar-style probes: an OPTIONS and a REGISTER for an extension.
    let request = |method: &str, n: u32, user_agent: &str| {
        format!(
            "{method} sip:100@{hop} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {me};branch=z9hG4bK-scan-{n};rport\r\n\
             Max-Forwards: 70\r\n\
             From: \"100\" <sip:100@{hop}>;tag=scan{n}\r\n\
             To: \"100\" <sip:100@{hop}>\r\n\
             Call-ID: scan-{n}@{me}\r\n\
             CSeq: 1 {method}\r\n\
             Contact: <sip:100@{me}>\r\n\
             User-Agent: {user_agent}\r\n\
             Accept: application/sdp\r\n\
             Content-Length: 0\r\n\r\n"
        )
    };
    let scanners = [
        ("OPTIONS", "friendly-scanner"),
        ("REGISTER", "friendly-scanner"),
        ("OPTIONS", "SIPVicious/0.3.4"),
        ("INVITE", "sipcli/v1.8"),
    ];
    for (n, (method, ua)) in scanners.iter().enumerate() {
        let msg = request(method, n as u32, ua);
        scanner
            .send_to(msg.as_bytes(), proxy.udp_addr())
            .expect("send");
    }
    let answers = recv_all(&scanner, Duration::from_millis(500)).expect("recv");
    let leaked = recv_all(&next_hop, Duration::from_millis(100)).expect("recv");
    assert!(
        answers.is_empty() && leaked.is_empty(),
        "scanners must get silence: {} answers, {} forwarded\n{:?}",
        answers.len(),
        leaked.len(),
        answers
            .iter()
            .map(|(_, m)| String::from_utf8_lossy(m)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned())
            .collect::<Vec<_>>()
    );
    // The same OPTIONS from a phone is relayed to the Request-URI.
    let phone = request("OPTIONS", 99, "Linphone/5.2.0 (belle-sip/5.2.0)");
    scanner
        .send_to(phone.as_bytes(), proxy.udp_addr())
        .expect("send");
    let forwarded = recv_all(&next_hop, Duration::from_millis(500)).expect("recv");
    assert!(
        forwarded
            .iter()
            .any(|(_, m)| String::from_utf8_lossy(m).starts_with("OPTIONS sip:100@")),
        "a phone's OPTIONS must be relayed; the next hop got {} datagrams",
        forwarded.len()
    );
    // And a call placed by SIPp (User-Agent-less) completes.
    let uas = callee(5);
    let caller = room_caller(&proxy, uas.addr())
        .calls(5)
        .rate(10)
        .spawn()
        .wait();
    assert_all_calls_ok(&caller, 5);
    assert_all_calls_ok(&uas.wait(), 5);
}
