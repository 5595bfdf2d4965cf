//! Calls through the real proxy, placed and answered by SIPp on 127.0.0.1.
//!
//! Every test starts its own `viaduct` and SIPp processes on fresh ports, so
//! they run in parallel. Needs `target/release/viaduct` (or `VIADUCT_BIN`)
//! and `sipp`; `./tests/run` provides both.

use std::net::UdpSocket;
use std::thread;
use std::time::{Duration, Instant};

use viaduct_e2e::{
    assert_all_calls_ok, free_port, header_value, header_values, local, recv_all, status_code,
    Sipp, SippRun, Viaduct,
};

fn targets_config(t1_ms: u64, targets: &[String]) -> String {
    let list: Vec<String> = targets.iter().map(|t| format!("{t:?}")).collect();
    format!(
        "[timers]\nt1_ms = {t1_ms}\n\n[routing]\ntargets = [{}]\n",
        list.join(", ")
    )
}

/// The built-in UAC calls the built-in UAS through the proxy over UDP:
/// 200 calls at 50 calls/s, all complete.
#[test]
fn uac_uas_200_calls() {
    let proxy = Viaduct::start("");
    let uas = Sipp::uas().calls(200).spawn();
    let uac = Sipp::uac(uas.addr())
        .rsa(proxy.udp_addr())
        .calls(200)
        .rate(50)
        .spawn();
    let caller = uac.wait();
    let callee = uas.wait();
    assert_all_calls_ok(&caller, 200);
    assert_all_calls_ok(&callee, 200);
}

/// The same calls with the caller on TCP (`-t t1`, one connection) to a
/// `tcp:` listener; the proxy relays them to the callee over UDP (the
/// Request-URI has no transport parameter). Judged by the caller's counts:
/// see PEERS.md on SIPp and TCP.
#[test]
fn uac_uas_200_calls_tcp() {
    let port = free_port();
    let proxy = Viaduct::start_with_listen(
        "",
        &[
            format!("udp:127.0.0.1:{port}"),
            format!("tcp:127.0.0.1:{port}"),
        ],
    );
    let tcp = proxy.tcp_addr().expect("tcp listener");
    let uas = Sipp::uas().calls(200).spawn();
    let uac = Sipp::uac(uas.addr())
        .rsa(tcp)
        .transport("t1")
        .calls(200)
        .rate(50)
        .spawn();
    let caller = uac.wait();
    let callee = uas.wait();
    assert_all_calls_ok(&caller, 200);
    assert!(
        callee.successful >= 199,
        "callee completed too few calls\n{}",
        callee.summary()
    );
}

/// What the callee sees on the wire: the proxy's Via on top of the caller's,
/// Max-Forwards decremented, a loose-routing Record-Route naming the proxy;
/// and the caller got 100 Trying from the proxy.
#[test]
fn proxy_headers_on_the_wire() {
    let proxy = Viaduct::start("[proxy]\nrecord_route = true\n");
    let uas = Sipp::uas().calls(1).trace_msg().spawn();
    let uac = Sipp::uac(uas.addr())
        .rsa(proxy.udp_addr())
        .calls(1)
        .trace_msg()
        .spawn();
    let caller = uac.wait();
    let callee = uas.wait();
    assert_all_calls_ok(&caller, 1);
    assert_all_calls_ok(&callee, 1);

    let proxy_hostport = proxy.udp_addr().to_string();
    let uac_hostport = caller.addr.to_string();
    let invite = &callee.first_message("INVITE ");
    let vias = header_values(invite, "via", Some("v"));
    assert_eq!(
        vias.len(),
        2,
        "expected the proxy's and the caller's Via:\n{invite}"
    );
    assert!(
        vias[0].contains(&format!("SIP/2.0/UDP {proxy_hostport}"))
            && vias[0].contains("branch=z9hG4bK"),
        "top Via is not the proxy's ({proxy_hostport}) with an RFC 3261 branch:\n{invite}"
    );
    assert!(
        vias[1].contains(&uac_hostport),
        "second Via is not the caller's ({uac_hostport}):\n{invite}"
    );
    assert_eq!(
        header_value(invite, "max-forwards", None).as_deref(),
        Some("69"),
        "Max-Forwards not decremented from 70:\n{invite}"
    );
    let rr = header_value(invite, "record-route", None)
        .unwrap_or_else(|| panic!("no Record-Route with record_route = true:\n{invite}"));
    assert!(
        rr.contains(&proxy_hostport) && rr.contains(";lr"),
        "Record-Route does not name the proxy ({proxy_hostport}) with ;lr: {rr}"
    );

    let caller_saw: Vec<u16> = caller
        .message_list()
        .iter()
        .filter_map(|m| status_code(m))
        .collect();
    assert!(
        caller_saw.contains(&100),
        "caller got no 100 Trying (got {caller_saw:?})\n{}",
        caller.messages()
    );
}

/// The caller cancels a ringing call: the proxy answers the CANCEL 200,
/// forwards a CANCEL to the callee, and the callee's 487 reaches the caller.
#[test]
fn cancel_487_end_to_end() {
    let proxy = Viaduct::start("");
    let uas = Sipp::uas()
        .scenario("cancel_uas.xml")
        .calls(5)
        .trace_msg()
        .spawn();
    let uac = Sipp::uac(uas.addr())
        .scenario("cancel_uac.xml")
        .rsa(proxy.udp_addr())
        .calls(5)
        .rate(10)
        .trace_msg()
        .spawn();
    let caller = uac.wait();
    let callee = uas.wait();
    // cancel_uac.xml succeeds only on 200 (CSeq CANCEL) then 487 (CSeq INVITE).
    assert_all_calls_ok(&caller, 5);
    assert_all_calls_ok(&callee, 5);
    let cancels = callee
        .message_list()
        .iter()
        .filter(|m| m.starts_with("CANCEL sip:"))
        .count();
    assert!(
        cancels >= 5,
        "callee saw {cancels} CANCEL requests, expected one per call\n{}",
        callee.summary()
    );
    let caller_487 = caller
        .message_list()
        .iter()
        .filter(|m| status_code(m) == Some(487))
        .count();
    assert!(
        caller_487 >= 5,
        "caller got {caller_487} 487s\n{}",
        caller.summary()
    );
}

/// The callee rings and never answers: Timer C (3 s here) fires, the proxy
/// CANCELs the callee's branch and the caller gets 408.
#[test]
fn no_answer_gives_408() {
    let proxy = Viaduct::start("[timers]\nt1_ms = 50\ntimer_c_ms = 3000\n");
    let uas = Sipp::uas()
        .scenario("ring_forever_uas.xml")
        .calls(1)
        .timeout(Duration::from_secs(30))
        .trace_msg()
        .spawn();
    let uac = Sipp::uac(uas.addr())
        .scenario("expect_408_uac.xml")
        .rsa(proxy.udp_addr())
        .calls(1)
        .timeout(Duration::from_secs(30))
        .trace_msg()
        .spawn();
    let caller = uac.wait();
    let callee = uas.wait();
    assert_all_calls_ok(&caller, 1);
    assert!(
        caller.elapsed < Duration::from_secs(10),
        "408 took {:.1?}, Timer C is 3 s\n{}",
        caller.elapsed,
        caller.summary()
    );
    assert!(
        caller.elapsed >= Duration::from_millis(2500),
        "408 after {:.1?}: too early for a 3 s Timer C\n{}",
        caller.elapsed,
        caller.summary()
    );
    assert!(
        callee.messages().contains("CANCEL sip:"),
        "callee saw no CANCEL from the proxy\n{}",
        callee.summary()
    );
    assert_all_calls_ok(&callee, 1);
}

/// The only target has nothing listening: the caller gets 408 (Timer B =
/// 3.2 s here) or 503, within 10 s, and the proxy stays up.
#[test]
fn dead_next_hop_gives_408_or_503() {
    let dead = local(free_port());
    let proxy = Viaduct::start(&targets_config(50, &[format!("sip:{dead}")]));
    let uac = Sipp::uac(dead)
        .scenario("expect_408_or_503_uac.xml")
        .rsa(proxy.udp_addr())
        .calls(1)
        .timeout(Duration::from_secs(20))
        .trace_msg()
        .spawn();
    let caller = uac.wait();
    assert_all_calls_ok(&caller, 1);
    assert!(
        caller.elapsed < Duration::from_secs(10),
        "final response took {:.1?}\n{}",
        caller.elapsed,
        caller.summary()
    );
    let finals: Vec<u16> = caller
        .message_list()
        .iter()
        .filter_map(|m| status_code(m))
        .filter(|c| *c >= 200)
        .collect();
    eprintln!(
        "dead next hop: caller got {finals:?} after {:.1?}",
        caller.elapsed
    );
    assert!(
        finals.iter().all(|c| *c == 408 || *c == 503) && !finals.is_empty(),
        "caller's final responses: {finals:?}\n{}",
        caller.summary()
    );
    assert!(
        proxy.answers_probe(Duration::from_secs(2)),
        "proxy stopped answering"
    );
}

/// targets = [dead, callee]: every call fails over to the second target
/// and completes.
#[test]
fn failover_to_second_target() {
    let dead = local(free_port());
    let uas = Sipp::uas().calls(3).spawn();
    let proxy = Viaduct::start(&targets_config(
        50,
        &[format!("sip:{dead}"), format!("sip:{}", uas.addr())],
    ));
    let uac = Sipp::uac(uas.addr())
        .rsa(proxy.udp_addr())
        .calls(3)
        .rate(10)
        .timeout(Duration::from_secs(30))
        .spawn();
    let caller = uac.wait();
    let callee = uas.wait();
    assert_all_calls_ok(&caller, 3);
    assert_all_calls_ok(&callee, 3);
    assert!(
        caller.elapsed < Duration::from_secs(20),
        "failover took {:.1?}\n{}",
        caller.elapsed,
        caller.summary()
    );
}

/// targets = [silent, callee], where the silent target is a socket of ours
/// that never answers: the proxy tries it first (we see its INVITE), times
/// out (Timer B) and completes the call on the second target.
#[test]
fn failover_after_silent_target() {
    let silent = UdpSocket::bind(local(0)).expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    let watcher = thread::spawn(move || recv_all(&silent, Duration::from_secs(8)));
    let uas = Sipp::uas().calls(1).spawn();
    let proxy = Viaduct::start(&targets_config(
        50,
        &[format!("sip:{silent_addr}"), format!("sip:{}", uas.addr())],
    ));
    let started = Instant::now();
    let uac = Sipp::uac(uas.addr())
        .rsa(proxy.udp_addr())
        .calls(1)
        .timeout(Duration::from_secs(30))
        .spawn();
    let caller = uac.wait();
    let callee = uas.wait();
    assert_all_calls_ok(&caller, 1);
    assert_all_calls_ok(&callee, 1);
    assert!(
        started.elapsed() >= Duration::from_millis(2500),
        "call completed in {:.1?}: too fast to have waited for Timer B (3.2 s) on the silent target",
        started.elapsed()
    );
    let got = watcher.join().expect("watcher").expect("recv");
    let invites = got
        .iter()
        .filter(|(_, d)| d.starts_with(b"INVITE "))
        .count();
    assert!(
        invites >= 1,
        "the first target never got the INVITE (it got {} datagrams)",
        got.len()
    );
}

/// targets = [callee answering 503, callee answering 200]: the 503 is not
/// relayed, the call fails over and completes.
#[test]
fn failover_on_503() {
    let busy = Sipp::uas()
        .scenario("reject_503_uas.xml")
        .calls(1)
        .timeout(Duration::from_secs(30))
        .spawn();
    let uas = Sipp::uas()
        .calls(1)
        .timeout(Duration::from_secs(30))
        .spawn();
    let proxy = Viaduct::start(&targets_config(
        50,
        &[
            format!("sip:{}", busy.addr()),
            format!("sip:{}", uas.addr()),
        ],
    ));
    let uac = Sipp::uac(uas.addr())
        .rsa(proxy.udp_addr())
        .calls(1)
        .timeout(Duration::from_secs(30))
        .trace_msg()
        .spawn();
    let caller = uac.wait();
    let callee = uas.wait();
    let rejecter = busy.wait();
    assert_all_calls_ok(&caller, 1);
    assert_all_calls_ok(&callee, 1);
    assert_all_calls_ok(&rejecter, 1);
    assert!(
        !caller.messages().contains("SIP/2.0 503"),
        "the 503 of the first target reached the caller\n{}",
        caller.summary()
    );
}

/// Sends an INVITE with Max-Forwards: 0 (then the ACK of the answer)
/// through the proxy towards a socket of ours; returns the caller's run and
/// the first line of every datagram that reached that socket (and the proxy,
/// kept alive so that a failing assertion prints its log).
fn call_with_max_forwards_zero() -> (Viaduct, SippRun, Vec<String>) {
    let nobody = UdpSocket::bind(local(0)).expect("bind");
    let nobody_addr = nobody.local_addr().expect("addr");
    let proxy = Viaduct::start("");
    let uac = Sipp::uac(nobody_addr)
        .scenario("maxfwd0_uac.xml")
        .rsa(proxy.udp_addr())
        .calls(1)
        .timeout(Duration::from_secs(20))
        .trace_msg()
        .spawn();
    let caller = uac.wait();
    let forwarded = recv_all(&nobody, Duration::from_millis(300)).expect("recv");
    let lines = forwarded
        .iter()
        .map(|(_, d)| {
            String::from_utf8_lossy(d)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    (proxy, caller, lines)
}

/// An INVITE with Max-Forwards: 0 is answered 483 Too Many Hops by the
/// proxy itself and not forwarded.
#[test]
fn max_forwards_zero_gives_483() {
    let (_proxy, caller, forwarded) = call_with_max_forwards_zero();
    assert_all_calls_ok(&caller, 1);
    let status_line = caller
        .message_list()
        .iter()
        .find(|m| status_code(m) == Some(483))
        .and_then(|m| m.lines().next().map(str::to_owned))
        .unwrap_or_default();
    assert!(
        status_line.to_ascii_lowercase().contains("too many hops"),
        "483 status line: {status_line:?}"
    );
    assert!(
        !forwarded.iter().any(|l| l.starts_with("INVITE ")),
        "the INVITE with Max-Forwards: 0 was forwarded: {forwarded:?}"
    );
}

/// The ACK for a final response the proxy generated itself (here its 483)
/// ends at the proxy (RFC 3261 section 17.2.1): nothing reaches the next hop.
#[test]
fn ack_of_proxy_generated_483_is_absorbed() {
    let (_proxy, caller, forwarded) = call_with_max_forwards_zero();
    assert_all_calls_ok(&caller, 1);
    assert!(
        forwarded.is_empty(),
        "the proxy forwarded {} datagrams after answering 483 itself: {forwarded:?}",
        forwarded.len()
    );
}

/// SIGTERM stops an idle proxy with exit status 0, promptly, and frees its port.
#[test]
fn sigterm_exits_cleanly() {
    let mut proxy = Viaduct::start("[proxy]\nshutdown_grace_ms = 1000\n");
    let addr = proxy.udp_addr();
    let started = Instant::now();
    let status = proxy.stop_gracefully();
    let took = started.elapsed();
    assert!(
        status.success(),
        "exit status after SIGTERM: {status}\n{}",
        proxy.log_tail(40)
    );
    assert!(took < Duration::from_secs(5), "exit took {took:.1?}");
    assert!(
        UdpSocket::bind(addr).is_ok(),
        "{addr} still bound after exit"
    );
}
