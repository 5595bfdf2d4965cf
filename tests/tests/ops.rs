//! Operating the real proxy: `/metrics` after SIPp calls, `/health/ready`
//! and `POST /drain` under load, SIGTERM with calls up, the admin token and
//! `viaduct ctl`. SIPp on 127.0.0.1, each test on its own ports.

use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use viaduct_e2e::{
    free_port, http_request, http_request_with, viaduct_bin, HttpResponse, Sipp, Viaduct,
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
