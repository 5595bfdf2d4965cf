//! Several Viaduct instances as one cluster (DESIGN §6): real binaries,
//! SIPp callers and callees, and a redis-server of the test's own on a free
//! loopback port, stopped by PID. Each instance writes its own address in
//! Via and Record-Route; the rate-limit policy's counters are shared through
//! Redis (a global limit), degrade by `[state] on_error` while Redis is
//! down, and come back with it; one instance dying takes only its own calls.
//! Every load is bounded (`-m`, `-timeout`).
//!
//! The rate-limit policy counts INVITEs per source IP per wall-clock second
//! (`rl:<ip>:<unix second>`); every SIPp here calls from 127.0.0.1, so all
//! callers share one counter per second.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::process::{Command, Stdio};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;
use viaduct_e2e::{
    free_port, header_value, header_values, policy_wasm, tail, viaduct_bin, workspace_root,
    InviteFinal, RedisServer, Sipp, SippProcess, SippRun, Viaduct,
};

/// A caller's global bound (`-timeout`): no run may hang.
const CALL_TIMEOUT: Duration = Duration::from_secs(40);

/// `[state]` and the rate-limit policy at `calls_per_second`, its compiled
/// code cached in `dir` (shared by the instances of one test).
fn rate_limit_config(dir: &Path, state: &str, calls_per_second: u32) -> String {
    format!(
        "[state]\n{state}\n\n[policy]\nfile = {file:?}\ncache_dir = {cache:?}\n\n\
         [policy.config]\ncalls_per_second = {calls_per_second}\n",
        file = policy_wasm("rate-limit").display().to_string(),
        cache = dir.join("cache").display().to_string(),
    )
}

/// `[state]` lines for a shared Redis; one prefix per test keeps tests apart.
fn redis_state(redis: &RedisServer, on_error: &str) -> String {
    format!(
        "backend = \"redis\"\nurl = {:?}\nprefix = \"cluster-{}:\"\non_error = {on_error:?}",
        redis.url(),
        redis.port()
    )
}

/// A `udp:127.0.0.1:<free port>` listen list.
fn fresh_listen() -> Vec<String> {
    vec![format!("udp:127.0.0.1:{}", free_port())]
}

/// A caller through `proxy` to `callee` that takes a 200 or a rejection
/// (`room_or_reject_uac.xml`), with its messages traced.
fn caller(proxy: &Viaduct, callee: std::net::SocketAddr, calls: u64, rate: u32) -> Sipp {
    Sipp::uac(callee)
        .scenario("room_or_reject_uac.xml")
        .rsa(proxy.udp_addr())
        .calls(calls)
        .rate(rate)
        .timeout(CALL_TIMEOUT)
        .trace_msg()
}

/// The built-in UAS, tracing, for as many calls as come (stopped with SIGUSR1).
fn callee() -> SippProcess {
    Sipp::uas()
        .timeout(Duration::from_secs(90))
        .timeout_error(false)
        .trace_msg()
        .spawn()
}

/// One call's INVITE send time and final answer.
struct Call {
    sent: SystemTime,
    answer: InviteFinal,
}

/// Every call of a caller, with its send time and final answer; asserts
/// that each call got a final answer (none timed out) and SIPp failed none.
fn calls_of(run: &SippRun, expected: u64) -> Vec<Call> {
    let sent = run.invite_sent_at();
    let calls: Vec<Call> = run
        .invite_finals()
        .into_iter()
        .filter_map(|f| {
            Some(Call {
                sent: *sent.get(&f.call_id)?,
                answer: f,
            })
        })
        .collect();
    assert!(
        calls.len() as u64 == expected && run.failed == 0,
        "expected {expected} calls each with a final answer and none failed, got {} answers\n{}",
        calls.len(),
        run.summary()
    );
    calls
}

fn unix_second(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// How many rate-limit windows (wall-clock seconds) the calls can have been
/// counted in. The policy reads the clock between the caller sending the
/// INVITE and the caller receiving the final answer, so every window lies
/// in [first send's second, last answer's second]: the number of seconds
/// in that range bounds the windows, partial first and last ones included.
fn windows(calls: &[&Call]) -> u64 {
    let first = calls.iter().map(|c| unix_second(c.sent)).min();
    let last = calls.iter().map(|c| unix_second(c.answer.at)).max();
    match (first, last) {
        (Some(f), Some(l)) => l - f + 1,
        _ => 0,
    }
}

/// `503 Rate Limited` (the policy), as opposed to the host's fail-closed 503.
fn rate_limited(c: &Call) -> bool {
    c.answer.message.starts_with("SIP/2.0 503 Rate Limited")
}

/// The value of a metric's samples summed (every label set) in `/metrics`.
fn metric_sum(proxy: &Viaduct, name: &str) -> f64 {
    let body = proxy.admin("GET", "/metrics").body;
    body.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Two instances, each with its own caller, on one callee. Returns the
/// calls of both callers, the INVITEs the callee received and the windows.
fn two_instances_over_the_limit(state: &str, dir: &Path) -> (Vec<Call>, usize, u64) {
    const PER_CALLER: u64 = 90;
    let config = rate_limit_config(dir, state, LIMIT);
    let a = Viaduct::start_with_listen(&config, &fresh_listen());
    let b = Viaduct::start_with_listen(&config, &fresh_listen());
    let uas = callee();
    let ua = caller(&a, uas.addr(), PER_CALLER, RATE).spawn();
    let ub = caller(&b, uas.addr(), PER_CALLER, RATE).spawn();
    let (ra, rb) = (ua.wait(), ub.wait());
    let received = uas
        .stop()
        .timed_message_list()
        .into_iter()
        .filter(|m| m.received && m.text.starts_with("INVITE "))
        .count();
    let mut calls = calls_of(&ra, PER_CALLER);
    calls.extend(calls_of(&rb, PER_CALLER));
    let all: Vec<&Call> = calls.iter().collect();
    let w = windows(&all);
    (calls, received, w)
}

/// The global limit of the shared-state tests.
const LIMIT: u32 = 20;
/// Each caller's rate: under [`LIMIT`] alone, over it together (2 × 18 = 36/s).
const RATE: u32 = 18;

/// Two instances sharing one Redis enforce one limit: two callers at 18
/// calls/s each (under the limit of 20 alone, 36/s together) for 5 s get
/// at most 20 calls per window admitted in all, the rest `503 Rate
/// Limited`. Bound: admitted ≤ 20 × W, where W counts the wall-clock
/// seconds from the first INVITE sent to the last final answer received
/// (see [`windows`]: the partial first and last seconds are windows too).
/// And ≥ 20 × (W − 2): every window but the first and the last is offered
/// 36 calls, so it fills. Then the control: the same with
/// `backend = "memory"` admits more than 20 × W (each instance counts
/// alone, and 18/s never reaches 20 in one), so the bound can fail.
#[test]
fn shared_redis_enforces_one_global_rate_limit() {
    let dir = TempDir::new().expect("temp dir");
    let redis = RedisServer::start();
    let (calls, received, w) =
        two_instances_over_the_limit(&redis_state(&redis, "open"), dir.path());
    let admitted = calls.iter().filter(|c| c.answer.code == 200).count() as u64;
    let limited = calls.iter().filter(|c| rate_limited(c)).count() as u64;
    println!(
        "redis: {admitted} admitted, {limited} rate limited of {} over {w} windows \
         (bound {} .. {})",
        calls.len(),
        u64::from(LIMIT) * w.saturating_sub(2),
        u64::from(LIMIT) * w
    );
    assert_eq!(
        admitted + limited,
        calls.len() as u64,
        "every call is admitted or 503 Rate Limited"
    );
    assert!(
        admitted <= u64::from(LIMIT) * w,
        "{admitted} admitted in {w} windows at {LIMIT} per window: the limit is not global"
    );
    assert!(
        admitted >= u64::from(LIMIT) * w.saturating_sub(2),
        "{admitted} admitted in {w} windows: full windows must admit {LIMIT} each"
    );
    assert_eq!(
        received as u64, admitted,
        "the callee sees exactly the admitted calls"
    );

    let (calls, received, w) = two_instances_over_the_limit("backend = \"memory\"", dir.path());
    let admitted = calls.iter().filter(|c| c.answer.code == 200).count() as u64;
    println!(
        "memory (control): {admitted} admitted of {} over {w} windows (global bound {})",
        calls.len(),
        u64::from(LIMIT) * w
    );
    assert!(
        admitted > u64::from(LIMIT) * w,
        "the control must break the global bound: {admitted} admitted in {w} windows"
    );
    assert_eq!(received as u64, admitted);
}

/// When, relative to the caller runs, Redis was killed and restarted.
struct Outage {
    killed: SystemTime,
    restarted: SystemTime,
}

impl Outage {
    /// Waits `before`, kills Redis, waits `down`, starts it again on the same port.
    fn run(redis: &mut RedisServer, before: Duration, down: Duration) -> Outage {
        thread::sleep(before);
        let killed = SystemTime::now();
        redis.kill();
        thread::sleep(down);
        let restarted = SystemTime::now();
        redis.restart();
        Outage { killed, restarted }
    }

    /// Sent well before the kill.
    fn before(&self, c: &Call) -> bool {
        c.sent + Duration::from_millis(100) < self.killed
    }

    /// Sent while Redis was certainly down (the kill took effect; not yet restarted).
    fn down(&self, c: &Call) -> bool {
        c.sent > self.killed + Duration::from_millis(300)
            && c.sent + Duration::from_millis(100) < self.restarted
    }

    /// Sent after the proxies had time to reconnect: the reconnect thread
    /// backs off to 1 s between attempts (`viaduct_policy::state` redis.rs).
    fn after(&self, c: &Call) -> bool {
        c.sent > self.restarted + Duration::from_millis(1500)
    }
}

/// Failing open: two instances, two callers at 18/s (over the shared limit
/// of 20 together) for 10 s; Redis is killed after 3 s and started again on
/// the same port 3.5 s later. Before: some calls are rate limited. While
/// down: every call completes (the policy sees fresh counters) and both
/// instances count state errors. After the restart, without restarting
/// Viaduct: calls are rate limited again, which only a shared counter can
/// do at 18/s per instance. No call fails at any point.
#[test]
fn redis_outage_fails_open_then_shared_limits_resume() {
    const PER_CALLER: u64 = 180;
    let dir = TempDir::new().expect("temp dir");
    let mut redis = RedisServer::start();
    let config = rate_limit_config(dir.path(), &redis_state(&redis, "open"), LIMIT);
    let a = Viaduct::start_with_listen(&config, &fresh_listen());
    let b = Viaduct::start_with_listen(&config, &fresh_listen());
    let uas = callee();
    let ua = caller(&a, uas.addr(), PER_CALLER, RATE).spawn();
    let ub = caller(&b, uas.addr(), PER_CALLER, RATE).spawn();
    let outage = Outage::run(
        &mut redis,
        Duration::from_secs(3),
        Duration::from_millis(3500),
    );
    let (ra, rb) = (ua.wait(), ub.wait());
    drop(uas.stop());
    let mut calls = calls_of(&ra, PER_CALLER);
    calls.extend(calls_of(&rb, PER_CALLER));
    let phase = |f: &dyn Fn(&Call) -> bool| -> (usize, usize) {
        let in_phase: Vec<&Call> = calls.iter().filter(|c| f(c)).collect();
        let limited = in_phase.iter().filter(|c| rate_limited(c)).count();
        (in_phase.len(), limited)
    };
    let (before, before_limited) = phase(&|c| outage.before(c));
    let (down, down_limited) = phase(&|c| outage.down(c));
    let (after, after_limited) = phase(&|c| outage.after(c));
    let errors = (
        metric_sum(&a, "viaduct_state_errors_total"),
        metric_sum(&b, "viaduct_state_errors_total"),
    );
    println!(
        "fail open: before {before_limited}/{before} limited, down {down_limited}/{down} limited, \
         after restart {after_limited}/{after} limited; state errors A {} B {}",
        errors.0, errors.1
    );
    assert!(
        calls
            .iter()
            .all(|c| c.answer.code == 200 || rate_limited(c)),
        "only 200 and 503 Rate Limited when failing open"
    );
    assert!(
        before > 0 && before_limited > 0,
        "limited before the outage"
    );
    assert!(
        down > 0 && down_limited == 0,
        "while Redis is down every call goes through: {down_limited} of {down} limited"
    );
    assert!(
        after > 0 && after_limited > 0,
        "after the restart the shared counters limit again: {after_limited} of {after}"
    );
    assert!(
        errors.0 > 0.0 && errors.1 > 0.0,
        "both instances count state errors: {errors:?}"
    );
}

/// Failing closed: one instance, a limit nothing reaches (1000), a caller at
/// 20/s for 10 s; Redis is killed after 3 s and restarted 3 s later. Every
/// call sent while it is down gets the host's `503 Service Unavailable`
/// with `Retry-After: 5`; every call well before and well after completes.
#[test]
fn redis_outage_fails_closed_then_calls_complete() {
    const CALLS: u64 = 200;
    let dir = TempDir::new().expect("temp dir");
    let mut redis = RedisServer::start();
    let config = rate_limit_config(dir.path(), &redis_state(&redis, "closed"), 1000);
    let proxy = Viaduct::start_with_listen(&config, &fresh_listen());
    let uas = callee();
    let uac = caller(&proxy, uas.addr(), CALLS, 20).spawn();
    let outage = Outage::run(&mut redis, Duration::from_secs(3), Duration::from_secs(3));
    let run = uac.wait();
    drop(uas.stop());
    let calls = calls_of(&run, CALLS);
    let closed = |c: &Call| {
        c.answer
            .message
            .starts_with("SIP/2.0 503 Service Unavailable")
            && header_value(&c.answer.message, "retry-after", None).as_deref() == Some("5")
    };
    let down: Vec<&Call> = calls.iter().filter(|c| outage.down(c)).collect();
    let rejected = calls.iter().filter(|c| closed(c)).count();
    let before_ok = calls
        .iter()
        .filter(|c| outage.before(c))
        .all(|c| c.answer.code == 200);
    let after: Vec<&Call> = calls.iter().filter(|c| outage.after(c)).collect();
    println!(
        "fail closed: {rejected} calls got 503 Retry-After: 5 ({} sent while Redis was down), \
         {} of {} after the restart completed",
        down.len(),
        after.iter().filter(|c| c.answer.code == 200).count(),
        after.len()
    );
    assert!(before_ok, "calls before the outage complete");
    assert!(
        !down.is_empty() && down.iter().all(|c| closed(c)),
        "every call sent while Redis is down gets 503 with Retry-After: 5"
    );
    // The other 503s were sent at the edges: within 100 ms before the kill
    // or before the reconnect (at most 1.5 s after the restart).
    assert!(
        calls
            .iter()
            .filter(|c| closed(c))
            .all(|c| !outage.before(c) && !outage.after(c)),
        "a 503 outside the outage"
    );
    assert!(
        !after.is_empty() && after.iter().all(|c| c.answer.code == 200),
        "calls after the restart complete"
    );
    assert!(metric_sum(&proxy, "viaduct_state_errors_total") > 0.0);
}

/// Two instances, each writing its own address: calls through A carry A's
/// port in the top Via and the Record-Route the callee sees, calls through
/// B carry B's. And `[server] advertise` replaces the address written (the
/// third instance is bound to 127.0.0.1 and advertises 127.0.0.2 with its
/// own port): what a proxy bound to 0.0.0.0 or behind NAT needs.
#[test]
fn each_instance_writes_its_own_address() {
    let a = Viaduct::start_with_listen("", &fresh_listen());
    let b = Viaduct::start_with_listen("", &fresh_listen());
    let c = Viaduct::start_with_listen(
        "[server]\nadvertise = \"127.0.0.2\"\ninstance_id = \"vd-c\"\n",
        &fresh_listen(),
    );
    let uas = callee();
    for (proxy, user) in [(&a, "via-a"), (&b, "via-b"), (&c, "via-c")] {
        let run = Sipp::uac(uas.addr())
            .rsa(proxy.udp_addr())
            .service(user)
            .calls(3)
            .timeout(CALL_TIMEOUT)
            .spawn()
            .wait();
        if user != "via-c" {
            viaduct_e2e::assert_all_calls_ok(&run, 3);
        }
    }
    let callee = uas.stop();
    let invites: Vec<String> = callee
        .timed_message_list()
        .into_iter()
        .filter(|m| m.received && m.text.starts_with("INVITE "))
        .map(|m| m.text)
        .collect();
    let c_addr = format!("127.0.0.2:{}", c.udp_addr().port());
    for (user, own) in [
        ("via-a", a.udp_addr().to_string()),
        ("via-b", b.udp_addr().to_string()),
        ("via-c", c_addr),
    ] {
        let mine: Vec<&String> = invites
            .iter()
            .filter(|m| m.starts_with(&format!("INVITE sip:{user}@")))
            .collect();
        assert!(
            mine.len() >= 3,
            "{user}: {} INVITEs at the callee",
            mine.len()
        );
        for m in mine {
            let vias = header_values(m, "via", Some("v"));
            let rr = header_values(m, "record-route", None);
            assert!(
                vias.first()
                    .is_some_and(|v| v.starts_with(&format!("SIP/2.0/UDP {own};"))),
                "{user}: top Via must name {own}:\n{m}"
            );
            assert_eq!(
                rr.first().map(String::as_str),
                Some(format!("<sip:{own};lr>").as_str()),
                "{user}: Record-Route must name {own}:\n{m}"
            );
        }
    }
    let status = c.admin("GET", "/status").body;
    assert!(
        status.contains("\"instance_id\": \"vd-c\"")
            && status.contains(&format!("udp:127.0.0.2:{}", c.udp_addr().port())),
        "{status}"
    );
    let metrics = c.admin("GET", "/metrics").body;
    assert!(
        metrics
            .lines()
            .any(|l| l == "viaduct_instance_info{instance_id=\"vd-c\"} 1"),
        "{metrics}"
    );
    // One event, one timestamp at the start of its first line and the id at
    // the end of its last (SIP dumps at debug level span several lines).
    let log = c.log();
    let events = log.lines().filter(|l| l.starts_with("20")).count();
    let stamped = log
        .lines()
        .filter(|l| l.ends_with(" instance_id=vd-c"))
        .count();
    assert!(
        events > 0 && stamped == events,
        "every log line names the instance ({stamped} of {events}):\n{}",
        c.log_tail(20)
    );
}

/// One instance killed mid-run: callers A and B at 10/s, 60 calls each,
/// every call held 2 s (`-d 2000`), each through its own instance to its
/// own callee. A is SIGKILLed (by PID) after 3 s. B's caller loses nothing;
/// A's calls in progress lose their BYE path and the rest cannot start:
/// reported (A's caller is stopped 1 s after B's finishes), not asserted.
#[test]
fn killing_one_instance_leaves_the_other_s_calls_alone() {
    const CALLS: u64 = 60;
    let mut a = Viaduct::start_with_listen("", &fresh_listen());
    let b = Viaduct::start_with_listen("", &fresh_listen());
    let (uas_a, uas_b) = (callee(), callee());
    let held = |proxy: &Viaduct, uas: &SippProcess| {
        Sipp::uac(uas.addr())
            .rsa(proxy.udp_addr())
            .calls(CALLS)
            .rate(10)
            .arg("-d")
            .arg("2000")
            .timeout(CALL_TIMEOUT)
            .spawn()
    };
    let ua = held(&a, &uas_a);
    let ub = held(&b, &uas_b);
    thread::sleep(Duration::from_secs(3));
    let pid = a.pid().expect("A runs");
    let killed_at = Instant::now();
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("SIGKILL A");
    assert!(a.wait_exit(Duration::from_secs(5)).is_some(), "A is gone");
    let rb = ub.wait();
    let b_done = killed_at.elapsed();
    // A's caller waits for answers that cannot come; what it counted so far is its result.
    thread::sleep(Duration::from_secs(1));
    let ra = ua.kill();
    // The callees' counts are not asserted: A's wait for BYEs that never come.
    drop((uas_a, uas_b));
    println!(
        "A killed after 3 s: A's caller completed {} of {CALLS}, so {} lost (in progress at the \
         kill or placed after it; SIPp counted {} failed, exit {:?}, killed {}); \
         B's caller {} completed, {} failed, done {b_done:?} after the kill",
        ra.successful,
        CALLS - ra.successful,
        ra.failed,
        ra.exit_code,
        ra.killed,
        rb.successful,
        rb.failed,
    );
    viaduct_e2e::assert_all_calls_ok(&rb, CALLS);
    assert!(
        ra.successful < CALLS,
        "A's caller cannot have completed every call through a dead proxy"
    );
}

/// `examples/cluster/run --check`, the command its README ends with, on
/// free ports: Redis, two instances, dnsmasq's SRV record, and two callers
/// that together go over the shared limit. Exits 0 when both completed and
/// rate-limited calls were seen; everything it started is gone afterwards.
#[test]
fn example_cluster_runs() {
    policy_wasm("rate-limit"); // panics with the policies/build hint
    let out = TempDir::new().expect("temp dir");
    let script = workspace_root().join("examples/cluster/run");
    let mut cmd = Command::new(&script);
    for var in [
        "PORT_A",
        "PORT_B",
        "ADMIN_A",
        "ADMIN_B",
        "REDIS_PORT",
        "DNS_PORT",
        "UAS_PORT",
    ] {
        cmd.env(var, free_port().to_string());
    }
    let run = cmd
        .arg("--check")
        .env("VIADUCT_BIN", viaduct_bin())
        .env("CLUSTER_OUT", out.path())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&run.stdout);
    println!("{stdout}");
    assert!(
        run.status.success() && stdout.contains("viaduct_instance_info{instance_id=\"a\"} 1"),
        "examples/cluster/run --check failed ({})\n{stdout}{}\n--- a.log ---\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr),
        tail(&out.path().join("a.log"), 30)
    );
}
