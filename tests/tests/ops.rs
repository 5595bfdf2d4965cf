//! Operating the real proxy: `/metrics` after SIPp calls, `/health/ready`
//! and `POST /drain` under load, per-target drain with the media-bridge
//! policy, SIGTERM with calls up, the admin token and `viaduct ctl`. SIPp on
//! 127.0.0.1, each test on its own ports.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use viaduct_e2e::{
    free_port, header_value, http_post_json, http_request, http_request_with, policy_wasm,
    viaduct_bin, HttpResponse, Sipp, SippRun, Viaduct,
};

/// The value of the sample `name` (with its labels, as written) in a
/// Prometheus text body.
fn sample(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Scrapes `/metrics` until `done` holds for it (the workers publish when
/// they go idle, so this is at once in practice), at most 3 s.
fn scrape_until(proxy: &Viaduct, done: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let answer = proxy.admin("GET", "/metrics");
        assert_eq!(answer.status, 200, "{answer:?}");
        if done(&answer.body) || started.elapsed() > Duration::from_secs(3) {
            return answer.body;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn json(answer: &HttpResponse) -> serde_json::Value {
    serde_json::from_str(&answer.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", answer.body))
}

/// 40 calls at 20/s through the proxy: the counters match what SIPp did,
/// exactly. Every call is INVITE, 100 (ours), 180, 200, ACK, BYE, 200.
#[test]
fn metrics_count_the_calls_exactly() {
    let proxy = Viaduct::start("");
    let uas = Sipp::uas().calls(40).spawn();
    let uac = Sipp::uac(uas.addr())
        .rsa(proxy.udp_addr())
        .calls(40)
        .rate(20)
        .spawn();
    let (caller, callee) = (uac.wait(), uas.wait());
    assert!(
        caller.successful == 40 && callee.successful == 40 && caller.failed == 0,
        "{}\n{}",
        caller.summary(),
        callee.summary()
    );
    let body = scrape_until(&proxy, |b| {
        sample(b, "viaduct_requests_received_total{method=\"BYE\"}") == Some(40.0)
    });
    let probes =
        sample(&body, "viaduct_requests_received_total{method=\"OPTIONS\"}").unwrap_or(0.0);
    assert!(probes >= 1.0, "the readiness probe is an OPTIONS\n{body}");
    let expect = [
        ("viaduct_requests_received_total{method=\"INVITE\"}", 40.0),
        ("viaduct_requests_received_total{method=\"ACK\"}", 40.0),
        ("viaduct_requests_received_total{method=\"BYE\"}", 40.0),
        ("viaduct_requests_received_total{method=\"other\"}", 0.0),
        // 200 to INVITE and to BYE, forwarded up, and ours to the harness's OPTIONS probes.
        ("viaduct_responses_sent_total{class=\"2xx\"}", 80.0 + probes),
        ("viaduct_responses_received_total{class=\"2xx\"}", 80.0),
        // Our 100 Trying and the callee's 180.
        ("viaduct_responses_sent_total{class=\"1xx\"}", 80.0),
        ("viaduct_responses_received_total{class=\"1xx\"}", 40.0),
        ("viaduct_responses_sent_total{class=\"4xx\"}", 0.0),
        ("viaduct_dialogs_established_total", 40.0),
        ("viaduct_dialogs", 0.0),
        ("viaduct_requests_pending", 0.0),
        (
            "viaduct_messages_dropped_total{reason=\"parse_error\"}",
            0.0,
        ),
        ("viaduct_available", 1.0),
    ];
    for (name, want) in expect {
        assert_eq!(sample(&body, name), Some(want), "{name}\n{body}");
    }
    // INVITE and BYE branches to the callee, both answered 2xx.
    let forwards = format!(
        "viaduct_forwards_total{{target=\"{}\",outcome=\"2xx\"}}",
        callee.addr
    );
    assert_eq!(sample(&body, &forwards), Some(80.0), "{forwards}\n{body}");
}

/// `POST /drain` while SIPp places 3 s calls at 10/s: readiness flips to
/// 503, new INVITEs get 503 with Retry-After, every call that was up ends
/// with its BYE answered, and the process keeps running.
#[test]
fn drain_under_load_keeps_established_calls() {
    let proxy = Viaduct::start("");
    assert_eq!(proxy.admin("GET", "/health/ready").status, 200);
    let uas = Sipp::uas().spawn();
    let uac = Sipp::uac(uas.addr())
        .rsa(proxy.udp_addr())
        .calls(40)
        .rate(10)
        .arg("-d")
        .arg("3000")
        .trace_msg()
        .spawn();
    thread::sleep(Duration::from_millis(1500));
    let drained = proxy.admin("POST", "/drain");
    assert_eq!(drained.status, 200, "{drained:?}");
    let ready = proxy.admin("GET", "/health/ready");
    assert_eq!(ready.status, 503, "{ready:?}");
    let status = json(&proxy.admin("GET", "/status"));
    assert_eq!(status["draining"], true, "{status}");
    assert!(
        status["dialogs"].as_u64().is_some_and(|n| n > 0),
        "calls should be up while draining: {status}"
    );
    let caller = uac.wait();
    let callee = uas.stop();
    let rejected: Vec<String> = caller
        .message_list()
        .into_iter()
        .filter(|m| m.starts_with("SIP/2.0 503"))
        .collect();
    assert!(
        caller.successful > 0 && caller.failed > 0,
        "expected calls before and refusals after the drain\n{}",
        caller.summary()
    );
    assert_eq!(
        caller.successful + caller.failed,
        40,
        "{}",
        caller.summary()
    );
    assert_eq!(rejected.len() as u64, caller.failed, "{}", caller.summary());
    assert!(
        rejected.iter().all(|m| m.contains("Retry-After:")),
        "503 without Retry-After: {rejected:?}"
    );
    // Every call that reached the callee before the drain completed there (BYE answered).
    assert!(
        callee.failed == 0 && callee.successful == caller.successful,
        "established calls lost:\n{}\n{}",
        caller.summary(),
        callee.summary()
    );
    let body = scrape_until(&proxy, |b| sample(b, "viaduct_dialogs") == Some(0.0));
    assert_eq!(sample(&body, "viaduct_dialogs"), Some(0.0), "{body}");
    assert_eq!(
        sample(&body, "viaduct_drain_rejected_total"),
        Some(caller.failed as f64),
        "{body}"
    );
    assert_eq!(sample(&body, "viaduct_available"), Some(0.0), "{body}");
    let mut proxy = proxy;
    assert!(proxy.is_running(), "POST /drain must not stop the process");
}

/// The Call-IDs of the INVITEs in a SIPp trace: sent (`received = false`,
/// a caller) or received (a callee).
fn invite_call_ids(run: &SippRun, received: bool) -> HashSet<String> {
    run.timed_message_list()
        .into_iter()
        .filter(|m| m.received == received && m.text.starts_with("INVITE "))
        .filter_map(|m| header_value(&m.text, "call-id", Some("i")))
        .collect()
}

/// `POST /targets/<target>/state` with `{"state": state}`; panics unless 200.
fn set_target_state(proxy: &Viaduct, target: SocketAddr, state: &str) {
    let admin = proxy.admin_addr().expect("admin port");
    let body = format!("{{\"state\":\"{state}\"}}");
    let answer = http_post_json(admin, &format!("/targets/{target}/state"), &[], &body)
        .expect("POST /targets/<addr>/state");
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(json(&answer)["state"], state, "{answer:?}");
}

/// `viaduct ctl target-state <target> <state>`; panics unless it succeeds.
fn ctl_target_state(proxy: &Viaduct, target: SocketAddr, state: &str) {
    let admin = proxy.admin_addr().expect("admin port").to_string();
    let out = Command::new(viaduct_bin())
        .args([
            "ctl",
            "--admin",
            &admin,
            "target-state",
            &target.to_string(),
            state,
        ])
        .env_remove("VIADUCT_ADMIN_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("running viaduct ctl");
    assert!(
        out.status.success(),
        "ctl target-state {target} {state}: {out:?}"
    );
}

/// Per-target drain with the media-bridge policy (it forwards every call to
/// both bridges, starting at the one its Call-ID hashes to). Bridge B is
/// drained, 4 calls of 2 s come up on A; then A is drained and B made active
/// while they are up: 10 new calls all go to B, and the 4 calls on A still
/// end there (their ACK and BYE follow the route). With both active again
/// calls reach both; with both drained the caller gets
/// `503 All Targets Inactive` with `Retry-After` and no bridge sees an INVITE.
#[test]
fn target_drain_moves_new_calls_and_keeps_calls_up() {
    let cache = tempfile::tempdir().expect("temp dir");
    let bridge_a = Sipp::uas().trace_msg().spawn();
    let bridge_b = Sipp::uas().trace_msg().spawn();
    let (a, b) = (bridge_a.addr(), bridge_b.addr());
    let proxy = Viaduct::start(&format!(
        "[policy]\nfile = {:?}\ncache_dir = {:?}\n\n[policy.config]\nbridges = [\"sip:{a}\", \"sip:{b}\"]\n",
        policy_wasm("media-bridge").display().to_string(),
        cache.path().display().to_string(),
    ));
    let call = |calls: u64, rate: u32| {
        Sipp::uac(a)
            .rsa(proxy.udp_addr())
            .calls(calls)
            .rate(rate)
            .timeout(Duration::from_secs(30))
            .trace_msg()
    };

    set_target_state(&proxy, b, "inactive");
    let held = call(4, 20).arg("-d").arg("2000").spawn();
    let started = Instant::now();
    while json(&proxy.admin("GET", "/status"))["dialogs"] != 4 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "4 calls never came up on A\n{}",
            proxy.log_tail(20)
        );
        thread::sleep(Duration::from_millis(50));
    }
    set_target_state(&proxy, a, "inactive");
    ctl_target_state(&proxy, b, "active");
    let targets = json(&proxy.admin("GET", "/targets"));
    assert_eq!(targets["inactive"][0], a.to_string(), "{targets}");
    let moved = call(10, 20).spawn().wait();
    let held = held.wait();

    ctl_target_state(&proxy, a, "active");
    let both = call(20, 40).spawn().wait();

    set_target_state(&proxy, a, "inactive");
    set_target_state(&proxy, b, "inactive");
    let refused = call(3, 20)
        .scenario("room_or_reject_uac.xml")
        .spawn()
        .wait();
    let (at_a, at_b) = (bridge_a.stop(), bridge_b.stop());

    for (run, calls) in [(&held, 4), (&moved, 10), (&both, 20)] {
        assert!(
            run.successful == calls && run.failed == 0,
            "expected {calls} completed calls\n{}",
            run.summary()
        );
    }
    let (seen_a, seen_b) = (invite_call_ids(&at_a, true), invite_call_ids(&at_b, true));
    let held_ids = invite_call_ids(&held, false);
    assert!(
        held_ids.is_subset(&seen_a) && held_ids.is_disjoint(&seen_b),
        "the 4 held calls must reach A only (B was inactive)"
    );
    // Their BYEs reached A after A was drained: 4 completed calls there.
    let byes_at_a = at_a
        .message_list()
        .iter()
        .filter(|m| {
            m.starts_with("BYE ")
                && header_value(m, "call-id", Some("i")).is_some_and(|c| held_ids.contains(&c))
        })
        .count();
    assert_eq!(
        byes_at_a, 4,
        "the held calls' BYEs must still go to drained A"
    );
    let moved_ids = invite_call_ids(&moved, false);
    assert!(
        moved_ids.len() == 10 && moved_ids.is_subset(&seen_b) && moved_ids.is_disjoint(&seen_a),
        "with A drained every new call must go to B only"
    );
    let both_ids = invite_call_ids(&both, false);
    let (to_a, to_b) = (
        both_ids.intersection(&seen_a).count(),
        both_ids.intersection(&seen_b).count(),
    );
    assert!(
        to_a > 0 && to_b > 0 && to_a + to_b == 20,
        "with both active, calls go to both: A {to_a}, B {to_b}"
    );
    let refused_ids = invite_call_ids(&refused, false);
    assert!(
        refused_ids.len() == 3
            && refused_ids.is_disjoint(&seen_a)
            && refused_ids.is_disjoint(&seen_b),
        "with both drained no INVITE may reach a bridge"
    );
    let answers: Vec<String> = refused
        .message_list()
        .into_iter()
        .filter(|m| m.starts_with("SIP/2.0 503"))
        .collect();
    assert_eq!(answers.len(), 3, "{}", refused.summary());
    for m in &answers {
        assert!(
            m.starts_with("SIP/2.0 503 All Targets Inactive\r\n")
                && header_value(m, "retry-after", None).as_deref() == Some("30"),
            "{m}"
        );
    }
    let body = scrape_until(&proxy, |b| {
        sample(b, "viaduct_all_targets_inactive_total") == Some(3.0)
    });
    assert_eq!(
        sample(&body, "viaduct_all_targets_inactive_total"),
        Some(3.0),
        "{body}"
    );
    // Every call of the held and moved runs had one inactive bridge to skip.
    assert_eq!(
        sample(&body, "viaduct_targets_skipped_total"),
        Some(14.0),
        "{body}"
    );
    for t in [a, b] {
        let gauge = format!("viaduct_target_active{{target=\"{t}\"}}");
        assert_eq!(sample(&body, &gauge), Some(0.0), "{gauge}\n{body}");
    }
    println!(
        "target drain: held 4 on A, moved 10 to B, both active {to_a}/{to_b}, both drained 3x 503"
    );
}

/// SIGTERM with 5 calls up: the proxy waits for their BYEs, then exits 0.
#[test]
fn sigterm_with_calls_up_exits_0_after_they_end() {
    let mut proxy = Viaduct::start("[proxy]\nshutdown_grace_ms = 20000\n");
    let uas = Sipp::uas().calls(5).spawn();
    let uac = Sipp::uac(uas.addr())
        .rsa(proxy.udp_addr())
        .calls(5)
        .rate(10)
        .arg("-d")
        .arg("3000")
        .spawn();
    let started = Instant::now();
    while json(&proxy.admin("GET", "/status"))["dialogs"] != 5 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "5 calls never came up"
        );
        thread::sleep(Duration::from_millis(50));
    }
    let term = Instant::now();
    proxy.send_signal(Signal::SIGTERM);
    assert!(
        proxy.wait_exit(Duration::from_millis(1000)).is_none(),
        "the proxy exited with calls up\n{}",
        proxy.log_tail(20)
    );
    let (caller, callee) = (uac.wait(), uas.wait());
    assert!(
        caller.successful == 5 && callee.successful == 5,
        "{}\n{}",
        caller.summary(),
        callee.summary()
    );
    let status = proxy
        .wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no exit after the calls ended\n{}", proxy.log_tail(20)));
    assert!(status.success(), "exit status {status}");
    println!("SIGTERM to exit: {:.1?} (calls held 3 s)", term.elapsed());
}

/// An admin port off 127.0.0.1/::1 needs a token: without one the proxy
/// refuses to start; with one, every route but `/health/*` wants it, and
/// `viaduct ctl` sends it from `VIADUCT_ADMIN_TOKEN`.
#[test]
fn admin_token_required_off_loopback() {
    let admin = format!("127.0.0.2:{}", free_port());
    let listen = [format!("udp:127.0.0.1:{}", free_port())];
    let (status, log) = Viaduct::run_expecting_exit(
        &format!("[admin]\nlisten = \"{admin}\"\n"),
        &listen,
        Duration::from_secs(10),
    );
    assert!(
        status.is_some_and(|s| !s.success()) && log.contains("admin.token"),
        "{status:?} {log}"
    );

    let proxy = Viaduct::start(&format!(
        "[admin]\nlisten = \"{admin}\"\ntoken = \"s3cret\"\n"
    ));
    let addr = admin.parse().expect("admin address");
    let open = http_request(addr, "GET", "/status").expect("GET /status");
    assert_eq!(open.status, 401, "{open:?}");
    let wrong = http_request_with(addr, "POST", "/drain", &["Authorization: Bearer nope"])
        .expect("POST /drain");
    assert_eq!(wrong.status, 401, "{wrong:?}");
    let probe = http_request(addr, "GET", "/health/ready").expect("ready");
    assert_eq!(probe.status, 200, "probes need no token: {probe:?}");
    let ok = http_request_with(addr, "GET", "/status", &["Authorization: Bearer s3cret"])
        .expect("GET /status");
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(json(&ok)["draining"], false);

    let ctl = |token: Option<&str>, action: &str| {
        let mut cmd = Command::new(viaduct_bin());
        cmd.args(["ctl", "--admin", &admin, action])
            .env_remove("VIADUCT_ADMIN_TOKEN")
            .stdin(Stdio::null());
        if let Some(t) = token {
            cmd.env("VIADUCT_ADMIN_TOKEN", t);
        }
        cmd.output().expect("running viaduct ctl")
    };
    let out = ctl(Some("s3cret"), "status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("\"uptime_seconds\""),
        "ctl status: {out:?}"
    );
    let out = ctl(Some("s3cret"), "metrics");
    assert!(
        out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains("viaduct_available 1"),
        "ctl metrics: {out:?}"
    );
    assert!(!ctl(None, "status").status.success(), "ctl without a token");
    let out = ctl(Some("s3cret"), "drain");
    assert!(out.status.success(), "ctl drain: {out:?}");
    let probe = http_request(addr, "GET", "/health/ready").expect("ready");
    assert_eq!(probe.status, 503, "{probe:?}");
    drop(proxy);
}
