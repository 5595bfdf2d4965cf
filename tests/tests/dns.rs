//! RFC 3263 through the real proxy: next hops named by host, resolved by
//! Debian's dnsmasq on 127.0.0.1:<free port> (`[dns] servers`).
//!
//! Loopback only; dnsmasq and every SIPp are stopped by PID.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use std::net::UdpSocket;

use viaduct_e2e::{
    assert_all_calls_ok, free_port, recv_all, status_code, workspace_root, Dnsmasq, Sipp, Viaduct,
};

/// NAPTR -> SRV (priority 10 and 20) -> A: the priority-10 callee answers
/// until it stops (it exits after its 10th call), then the proxy fails over
/// to priority 20 after one Timer B and, having noted the dead address,
/// sends the next calls straight there: the caller sees 0 failed calls.
#[test]
fn srv_failover_when_the_first_target_stops() {
    let (p1, p2) = (free_port(), free_port());
    let dns = Dnsmasq::start(
        &[
            format!("--srv-host=_sip._udp.bridge.test,b1.bridge.test,{p1},10,50"),
            format!("--srv-host=_sip._udp.bridge.test,b2.bridge.test,{p2},20,50"),
            "--host-record=b1.bridge.test,127.0.0.1".into(),
            "--host-record=b2.bridge.test,127.0.0.1".into(),
            "--naptr-record=bridge.test,10,50,s,SIP+D2U,,_sip._udp.bridge.test".into(),
        ],
        "b1.bridge.test",
    );
    // t1 = 20 ms: Timer B (64*T1) is 1.28 s, so the failover is quick.
    let config = format!(
        "[dns]\nservers = [\"{}\"]\n[routing]\ntargets = [\"sip:bridge.test\"]\n[timers]\nt1_ms = 20\n",
        dns.addr()
    );
    let proxy = Viaduct::start(&config);
    // Callees that echo Record-Route and a caller that follows it, so ACK and
    // BYE reach whichever callee answered (through the proxy, by its Contact).
    let uas = workspace_root().join("tests/peers/pjsua/uas_rr.xml");
    let first = Sipp::uas()
        .scenario_file(&uas)
        .local_port(p1)
        .calls(10)
        .spawn();
    let second = Sipp::uas()
        .scenario_file(&uas)
        .local_port(p2)
        .calls(30)
        .spawn();
    // The R-URI names a port where nothing listens: only the target routes.
    let caller = Sipp::uac(viaduct_e2e::local(free_port()))
        .scenario("room_uac.xml")
        .rsa(proxy.udp_addr())
        .calls(40)
        .rate(4)
        .timeout(Duration::from_secs(60))
        .spawn()
        .wait();
    let first = first.wait();
    let second = second.wait();
    assert_all_calls_ok(&caller, 40);
    assert_eq!(
        first.successful,
        10,
        "priority 10 first\n{}",
        first.summary()
    );
    assert_all_calls_ok(&second, 30);
    // Only the calls placed within the first Timer B after the stop wait for
    // b1 (4/s x 1.28 s, and each worker learns on its own); every later
    // call goes straight to b2. Without that memory all 30 would time out.
    // (Metrics are published every 100 ms.)
    std::thread::sleep(Duration::from_millis(300));
    let metrics = proxy.admin("GET", "/metrics").body;
    let timeouts: u64 = metrics
        .lines()
        .find(|l| l.starts_with("viaduct_branch_timeouts_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(u64::MAX, |v| v as u64);
    println!(
        "srv failover: caller {}/40 ok in {:?}; b1 {}, b2 {}; {timeouts} branch timeouts",
        caller.successful, caller.elapsed, first.successful, second.successful
    );
    assert!(
        (1..=10).contains(&timeouts),
        "b1 is skipped after its first timeout, not tried by every call: {timeouts} timeouts\n{metrics}"
    );
    drop(proxy);
}

/// No NAPTR and no SRV for the name: its A record, on port 5060 (RFC 3263
/// §4.2). The callee listens on 127.0.0.3:5060, which nothing else uses; a
/// name that does not exist gets an answer, not silence.
#[test]
fn no_naptr_or_srv_falls_back_to_the_a_record() {
    let callee_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
    let dns = Dnsmasq::start(&["--host-record=plain.test,127.0.0.3".into()], "plain.test");
    let config = format!(
        "[dns]\nservers = [\"{}\"]\n[routing]\ntargets = [\"sip:plain.test\"]\n",
        dns.addr()
    );
    let proxy = Viaduct::start(&config);
    let callee = Sipp::uas()
        .scenario_file(&workspace_root().join("tests/peers/pjsua/uas_rr.xml"))
        .local_ip(callee_ip)
        .local_port(5060)
        .calls(5)
        .spawn();
    let caller = Sipp::uac(viaduct_e2e::local(free_port()))
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

    let config = format!(
        "[dns]\nservers = [\"{}\"]\n[routing]\ntargets = [\"sip:missing.test\"]\n",
        dns.addr()
    );
    let proxy = Viaduct::start(&config);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = sock.local_addr().unwrap();
    let options = format!(
        "OPTIONS sip:room@127.0.0.1:9 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bK-missing-1;rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:t@{me}>;tag=m1\r\n\
         To: <sip:room@127.0.0.1:9>\r\n\
         Call-ID: missing-1@127.0.0.1\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    );
    sock.send_to(options.as_bytes(), proxy.udp_addr()).unwrap();
    let answers = recv_all(&sock, Duration::from_secs(5)).unwrap();
    let codes: Vec<Option<u16>> = answers
        .iter()
        .map(|(_, m)| status_code(&String::from_utf8_lossy(m)))
        .collect();
    // RFC 3263 §4.3 / RFC 3261 §16.9: no server for the name is a transport
    // failure, i.e. a 503 from that branch, sent upstream as 500.
    assert_eq!(codes, [Some(500)], "one final answer for an unknown name");
    assert!(
        proxy.log_count("next hop did not resolve") >= 1,
        "the proxy logs the name that did not resolve\n{}",
        proxy.log_tail(20)
    );
}
