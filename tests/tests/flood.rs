//! The flood guard under a real flood: SIPp places calls at 50 calls/s from
//! 127.0.0.1 while a sender of our own on 127.0.0.2 sprays garbage and
//! valid OPTIONS at 2000 datagrams/s (40 times the call rate) for 10 s.
//! What a user checks: no legitimate call fails, the flooder is banned (the
//! log line names it and the knob; `/status` counts the drops), and the
//! proxy's memory stays bounded.
//!
//! The proxy runs with `limits.max_messages = 1500` per 2 s window, well
//! above what the SIPp pair sends from 127.0.0.1 (about 6 messages a call:
//! 600 per window) and well below the flooder's 4000 per window. The
//! defaults (10 000 per window) would let 2000/s through: they are sized so
//! that a carrier trunk is never banned, see `host/viaduct/src/flood.rs`.

use std::fs;
use std::net::UdpSocket;
use std::thread;
use std::time::{Duration, Instant};

use viaduct_e2e::{Sipp, Viaduct};

const CALL_RATE: u32 = 50;
const CALLS: u64 = 600;
const FLOOD_RATE: u64 = 2000;
const FLOOD_FOR: Duration = Duration::from_secs(10);

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// What the flooder saw.
struct Flood {
    sent: u64,
    answered: u64,
}

/// Sends alternately a garbage datagram and a valid OPTIONS addressed to the
/// proxy (answered 200 while admitted), paced at `FLOOD_RATE`, for `FLOOD_FOR`.
fn flood(proxy: std::net::SocketAddr) -> Flood {
    let sock = UdpSocket::bind("127.0.0.2:0").expect("binding 127.0.0.2 (loopback /8)");
    sock.set_nonblocking(true).expect("nonblocking");
    let me = sock.local_addr().expect("addr");
    let started = Instant::now();
    let (mut sent, mut answered) = (0u64, 0u64);
    let mut buf = [0u8; 4096];
    while started.elapsed() < FLOOD_FOR {
        // Pace: as many as are due by now, in small bursts.
        let due = started.elapsed().as_micros() as u64 * FLOOD_RATE / 1_000_000;
        while sent < due {
            let msg = if sent % 2 == 0 {
                format!("\x16\x03\x01garbage {sent} \u{0}\r\n\r\n{:x}", sent * 7919)
            } else {
                format!(
                    "OPTIONS sip:{proxy} SIP/2.0\r\n\
                     Via: SIP/2.0/UDP {me};branch=z9hG4bK-flood-{sent}\r\n\
                     Max-Forwards: 70\r\n\
                     From: <sip:flood@{me}>;tag=f{sent}\r\n\
                     To: <sip:{proxy}>\r\n\
                     Call-ID: flood-{sent}@127.0.0.2\r\n\
                     CSeq: 1 OPTIONS\r\n\
                     Content-Length: 0\r\n\r\n"
                )
            };
            // A full socket buffer is the flooder's problem, not the test's.
            let _ = sock.send_to(msg.as_bytes(), proxy);
            sent += 1;
        }
        while sock.recv_from(&mut buf).is_ok() {
            answered += 1;
        }
        thread::sleep(Duration::from_millis(1));
    }
    thread::sleep(Duration::from_millis(200));
    while sock.recv_from(&mut buf).is_ok() {
        answered += 1;
    }
    Flood { sent, answered }
}

#[test]
fn a_flooder_is_banned_and_calls_from_others_all_complete() {
    let proxy = Viaduct::start("[limits]\nwindow_ms = 2000\nmax_messages = 1500\nban_ms = 60000\n");
    let pid = proxy.pid().expect("pid");
    let rss_start = rss_kib(pid).expect("VmRSS");
    let uas = Sipp::uas()
        .calls(CALLS)
        .timeout(Duration::from_secs(60))
        .spawn();
    let uac = Sipp::uac(uas.addr())
        .rsa(proxy.udp_addr())
        .calls(CALLS)
        .rate(CALL_RATE)
        .timeout(Duration::from_secs(60))
        .spawn();
    // Let the calls start, then flood while sampling the proxy's memory.
    thread::sleep(Duration::from_secs(1));
    let target = proxy.udp_addr();
    let flooder = thread::spawn(move || flood(target));
    let mut rss_peak = rss_start;
    while !flooder.is_finished() {
        rss_peak = rss_peak.max(rss_kib(pid).unwrap_or(0));
        thread::sleep(Duration::from_millis(100));
    }
    let flood = flooder.join().expect("flooder thread");
    let caller = uac.wait();
    let callee = uas.wait();
    rss_peak = rss_peak.max(rss_kib(pid).unwrap_or(0));

    assert!(
        caller.exit_code == Some(0) && caller.successful == CALLS && caller.failed == 0,
        "every legitimate call must complete during the flood\n{}\n--- proxy log ---\n{}",
        caller.summary(),
        proxy.log_tail(40)
    );
    assert_eq!(callee.failed, 0, "{}", callee.summary());

    // Banned, once, by name, with the knobs in the line; 127.0.0.1 never.
    let log = proxy.log();
    let bans: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("source banned"))
        .collect();
    assert!(
        bans.len() == 1 && bans[0].contains("127.0.0.2") && bans[0].contains("limits.allow"),
        "expected one ban line for 127.0.0.2 naming limits.allow, got {bans:#?}"
    );
    let status = proxy.admin("GET", "/status");
    let v: serde_json::Value = serde_json::from_str(&status.body)
        .unwrap_or_else(|e| panic!("/status is not JSON ({e}): {}", status.body));
    let flood_status = &v["flood"];
    let dropped = flood_status["dropped"]["flood_banned"]
        .as_u64()
        .unwrap_or_else(|| panic!("no flood.dropped.flood_banned in /status: {}", status.body));
    assert_eq!(flood_status["bans"], 1, "{}", status.body);
    assert_eq!(flood_status["banned_sources"], 1, "{}", status.body);
    let metrics = proxy.admin("GET", "/metrics").body;
    let line = format!("viaduct_messages_dropped_total{{reason=\"flood_banned\"}} {dropped}");
    assert!(
        metrics.lines().any(|l| l == line)
            && metrics
                .lines()
                .any(|l| l == "viaduct_flood_banned_sources 1"),
        "/metrics should show {line:?} and one banned source:\n{metrics}"
    );
    // Everything after the first 1500 in its window was dropped unanswered:
    // at most 1500 admitted, so at most 750 OPTIONS answered.
    assert!(
        dropped + 1500 >= flood.sent && flood.answered <= 750,
        "sent {}, answered {}, dropped {dropped}",
        flood.sent,
        flood.answered
    );
    let grown_mib = rss_peak.saturating_sub(rss_start) / 1024;
    assert!(
        grown_mib < 64,
        "RSS grew by {grown_mib} MiB during the flood ({rss_start} KiB -> {rss_peak} KiB)"
    );
    println!(
        "flood: sent {} datagrams from 127.0.0.2 in {FLOOD_FOR:?}, {} answered, {dropped} dropped as flood_banned; \
         {} calls at {CALL_RATE}/s all completed; RSS {rss_start} KiB -> peak {rss_peak} KiB",
        flood.sent, flood.answered, caller.successful
    );
}
