//! IPv6 through the real proxy: SIPp pairs on `::1` over UDP and TCP, and a
//! caller on 127.0.0.1 reaching a callee on `::1` (RFC 5658 double
//! Record-Route, so in-dialog requests cross back the right way).
//!
//! Loopback only. PEERS.md: SIPp 3.6.1 works on `::1` (`-i ::1`); it will
//! not pair a v4 local address with a v6 remote, so the crossing test routes
//! with a `[routing]` target instead of SIPp's remote.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use viaduct_e2e::{assert_all_calls_ok, free_port, header_value, header_values, Sipp, Viaduct};

const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// A proxy with a v4 UDP listener (for the readiness probe) and `udp:[::1]`
/// (plus `tcp:[::1]` when asked) on one port; returns it and `[::1]:port`.
fn dual_stack_proxy(config: &str, tcp: bool) -> (Viaduct, SocketAddr) {
    let port = free_port();
    let mut listen = vec![format!("udp:127.0.0.1:{port}"), format!("udp:[::1]:{port}")];
    if tcp {
        listen.push(format!("tcp:[::1]:{port}"));
    }
    let proxy = Viaduct::start_with_listen(config, &listen);
    (proxy, SocketAddr::new(V6, port))
}

/// SIPp's built-in UAC and UAS on `::1`, through `udp:[::1]`: 20 calls
/// complete on both sides, and the callee sees the proxy's Via with the
/// bracketed IPv6 address.
#[test]
fn udp_calls_over_ipv6() {
    let (proxy, v6) = dual_stack_proxy("", false);
    let uas = Sipp::uas().local_ip(V6).calls(20).trace_msg().spawn();
    let uac = Sipp::uac(uas.addr())
        .local_ip(V6)
        .rsa(v6)
        .calls(20)
        .rate(50)
        .spawn();
    let caller = uac.wait();
    let callee = uas.wait();
    assert_all_calls_ok(&caller, 20);
    assert_all_calls_ok(&callee, 20);
    let invite = &callee.first_message("INVITE ");
    let top_via = header_value(invite, "via", Some("v")).unwrap_or_default();
    assert!(
        top_via.starts_with(&format!("SIP/2.0/UDP {v6}")),
        "top Via is not the proxy's {v6}:\n{invite}"
    );
    drop(proxy);
}

/// The caller over TCP to `tcp:[::1]` (one connection), relayed to the
/// callee over UDP on `::1`. Judged by the caller's counts (PEERS.md: SIPp's
/// TCP UAS may count one call as failed when the caller closes first).
#[test]
fn tcp_calls_over_ipv6() {
    let (proxy, v6) = dual_stack_proxy("", true);
    let uas = Sipp::uas().local_ip(V6).calls(20).spawn();
    let uac = Sipp::uac(uas.addr())
        .local_ip(V6)
        .rsa(v6)
        .transport("t1")
        .calls(20)
        .rate(50)
        .spawn();
    let caller = uac.wait();
    let callee = uas.wait();
    assert_all_calls_ok(&caller, 20);
    assert!(
        callee.successful >= 19,
        "callee completed too few calls\n{}",
        callee.summary()
    );
    drop(proxy);
}

/// A caller on 127.0.0.1 and a callee on `::1`: the proxy leaves on its v6
/// listener, so the callee sees two Record-Route entries, the v6 one on top
/// (RFC 5658 §3.2), and the caller's ACK and BYE (sent along the route set,
/// `room_uac.xml`) reach the callee over IPv6.
#[test]
fn v4_caller_reaches_v6_callee() {
    let uas = Sipp::uas().local_ip(V6).calls(3).trace_msg().spawn();
    let config = format!(
        "[proxy]\nrecord_route = true\n\n[routing]\ntargets = [\"sip:{}\"]\n",
        uas.addr()
    );
    let (proxy, v6) = dual_stack_proxy(&config, false);
    let v4 = proxy.udp_addr();
    // SIPp's remote only names the Request-URI here (v4, like its local
    // address); the `[routing]` target is what sends the call to `::1`.
    let uac = Sipp::uac(SocketAddr::new(v4.ip(), uas.addr().port()))
        .scenario("room_uac.xml")
        .rsa(v4)
        .calls(3)
        .rate(10)
        .spawn();
    let caller = uac.wait();
    // The built-in UAS can count these calls as failed ("unexpected message
    // while pausing", seen by hand); what it received is the check here.
    let callee = uas.wait();
    assert_all_calls_ok(&caller, 3);

    let invite = &callee.first_message("INVITE ");
    let messages = callee.message_list();
    let routes = header_values(invite, "record-route", None);
    assert_eq!(
        routes,
        vec![format!("<sip:{v6};lr>"), format!("<sip:{v4};lr>")],
        "expected the proxy's v6 then v4 Record-Route:\n{invite}"
    );
    let call_ids = |method: &str| -> HashSet<String> {
        messages
            .iter()
            .filter(|m| m.starts_with(&format!("{method} ")))
            .filter_map(|m| header_value(m, "call-id", Some("i")))
            .collect()
    };
    assert_eq!(
        call_ids("ACK").len(),
        3,
        "ACKs at the callee:\n{}",
        callee.messages()
    );
    assert_eq!(
        call_ids("BYE").len(),
        3,
        "BYEs at the callee:\n{}",
        callee.messages()
    );
}
