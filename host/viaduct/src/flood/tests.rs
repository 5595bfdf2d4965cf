//! The flood guard on a fake clock.

use super::*;

const OPTIONS: &[u8] =
    b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCall-ID: c\r\n\r\n";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn guard(max_messages: u32) -> FloodGuard {
    let settings = FloodSettings {
        max_messages,
        ..FloodSettings::default()
    };
    FloodGuard::new(settings, Arc::default())
}

fn drops(g: &FloodGuard, reason: DropReason) -> u64 {
    g.counters().snapshot().drops[reason.index()].1
}

#[test]
fn a_source_at_the_rate_is_banned_and_the_ban_expires() {
    let mut g = guard(10);
    let t0 = Instant::now();
    let src = ip("192.0.2.1");
    for i in 0..9 {
        assert!(g.admit(t0, src, OPTIONS).is_admit(), "message {i}");
    }
    assert_eq!(
        g.admit(t0, src, OPTIONS),
        Verdict::Drop(DropReason::FloodBanned)
    );
    // Another source is not affected.
    assert!(g.admit(t0, ip("192.0.2.2"), OPTIONS).is_admit());
    // Quiet after the ban: dropped during it, admitted after it.
    assert!(!g
        .admit(t0 + Duration::from_secs(59), src, OPTIONS)
        .is_admit());
    assert_eq!(g.counters().snapshot().banned_sources, 1);
    assert!(g
        .admit(t0 + Duration::from_secs(61), src, OPTIONS)
        .is_admit());
    let snap = g.counters().snapshot();
    assert_eq!(snap.banned_sources, 0);
    assert_eq!(snap.bans, 1);
    assert_eq!(drops(&g, DropReason::FloodBanned), 2);
}

#[test]
fn a_steady_rate_under_the_limit_is_never_banned() {
    // 9 messages per 2 s window for 10 minutes.
    let mut g = guard(10);
    let t0 = Instant::now();
    for i in 0..(9 * 300) {
        let now = t0 + Duration::from_millis(i * 2000 / 9);
        assert!(
            g.admit(now, ip("192.0.2.1"), OPTIONS).is_admit(),
            "message {i}"
        );
    }
}

#[test]
fn a_ban_lasts_while_the_source_keeps_flooding() {
    let mut g = guard(10);
    let t0 = Instant::now();
    let src = ip("2001:db8::1");
    let mut last = Verdict::Admit;
    // 100 messages/s for 120 s: banned after 0.1 s, still banned at the end.
    for i in 0..12_000u64 {
        last = g.admit(t0 + Duration::from_millis(i * 10), src, OPTIONS);
    }
    assert_eq!(last, Verdict::Drop(DropReason::FloodBanned));
    assert_eq!(drops(&g, DropReason::FloodBanned), 12_000 - 9);
    assert_eq!(g.counters().snapshot().bans, 1);
}

#[test]
fn allowlisted_sources_are_exempt_from_the_rate() {
    let settings = FloodSettings {
        max_messages: 10,
        allow: Allowlist::new(|ip| matches!(ip, IpAddr::V4(v4) if v4.octets()[0] == 10)),
        ..FloodSettings::default()
    };
    let mut g = FloodGuard::new(settings, Arc::default());
    let t0 = Instant::now();
    for _ in 0..1000 {
        assert!(g.admit(t0, ip("10.1.2.3"), OPTIONS).is_admit());
    }
    assert!(!g.admit(t0, ip("11.1.2.3"), &[b'x'; 40_000]).is_admit());
}

#[test]
fn too_big_and_too_many_headers_are_dropped_and_counted() {
    let mut g = guard(0);
    let now = Instant::now();
    let src = ip("192.0.2.9");
    let big = vec![b'a'; 32 * 1024 + 1];
    assert_eq!(g.admit(now, src, &big), Verdict::Drop(DropReason::TooBig));
    let mut many = b"OPTIONS sip:a@b SIP/2.0\r\n".to_vec();
    for i in 0..257 {
        many.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(
        g.admit(now, src, &many),
        Verdict::Drop(DropReason::TooManyHeaders)
    );
    // 256 headers plus a body full of newlines is fine.
    let mut ok = b"OPTIONS sip:a@b SIP/2.0\r\n".to_vec();
    for i in 0..256 {
        ok.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    ok.extend_from_slice(b"\r\n");
    ok.extend_from_slice(&[b'\n'; 500]);
    assert!(g.admit(now, src, &ok).is_admit());
    assert_eq!(drops(&g, DropReason::TooBig), 1);
    assert_eq!(drops(&g, DropReason::TooManyHeaders), 1);
}

#[test]
fn the_table_is_bounded_and_fails_open() {
    let settings = FloodSettings {
        max_messages: 5,
        max_sources: 100,
        ..FloodSettings::default()
    };
    let mut g = FloodGuard::new(settings, Arc::default());
    let t0 = Instant::now();
    // A spray from 10 000 addresses within one window.
    for i in 0..10_000u32 {
        let src = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
        assert!(g.admit(t0, src, OPTIONS).is_admit());
    }
    let snap = g.counters().snapshot();
    assert_eq!(snap.tracked_sources, 100);
    assert_eq!(snap.untracked, 9_900);
    // Two windows later the idle ones are swept and new sources are tracked again.
    let later = t0 + Duration::from_secs(5);
    assert!(g.admit(later, ip("192.0.2.1"), OPTIONS).is_admit());
    assert_eq!(g.counters().snapshot().tracked_sources, 1);
}

#[test]
fn an_expired_ban_of_a_silent_source_is_swept() {
    let mut g = guard(2);
    let t0 = Instant::now();
    let src = ip("192.0.2.1");
    g.admit(t0, src, OPTIONS);
    g.admit(t0, src, OPTIONS);
    assert_eq!(g.counters().snapshot().banned_sources, 1);
    g.admit(t0 + Duration::from_secs(30), ip("192.0.2.2"), OPTIONS);
    g.admit(t0 + Duration::from_secs(90), ip("192.0.2.2"), OPTIONS);
    let snap = g.counters().snapshot();
    assert_eq!((snap.banned_sources, snap.tracked_sources), (0, 1));
}

#[test]
fn a_clock_going_backwards_bans_no_one() {
    let mut g = guard(10);
    let t0 = Instant::now() + Duration::from_secs(100);
    for i in 0..9u64 {
        assert!(g
            .admit(t0 - Duration::from_secs(i * 3), ip("192.0.2.1"), OPTIONS)
            .is_admit());
    }
}

#[test]
fn header_lines_stop_at_the_blank_line() {
    assert_eq!(header_lines(b"A\r\nB: 1\r\nC: 2\r\n\r\nD: 3\r\n", 10), 2);
    assert_eq!(header_lines(b"A\nB: 1\n\nC\n", 10), 1);
    assert_eq!(header_lines(b"", 10), 0);
    assert_eq!(header_lines(b"garbage without newline", 10), 0);
}

#[test]
fn disabled_admits_everything() {
    let settings = FloodSettings {
        enabled: false,
        max_messages: 1,
        ..FloodSettings::default()
    };
    let mut g = FloodGuard::new(settings, Arc::default());
    for _ in 0..10 {
        assert!(g
            .admit(Instant::now(), ip("192.0.2.1"), &[b'a'; 70_000])
            .is_admit());
    }
}

/// A next hop answering every call from one address must never be banned:
/// only requests count toward the rate (as with pike). Found by the bench:
/// SIPp's uac and uas on one IP at 1000 calls/s got the uas banned.
#[test]
fn responses_do_not_count_toward_the_rate() {
    let mut g = guard(10);
    let t0 = Instant::now();
    let src = ip("192.0.2.1");
    let ok = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK1\r\n\r\n";
    for i in 0..100 {
        assert!(g.admit(t0, src, ok).is_admit(), "response {i}");
    }
    // Its requests are still counted from zero.
    for i in 0..9 {
        assert!(g.admit(t0, src, OPTIONS).is_admit(), "request {i}");
    }
    assert_eq!(
        g.admit(t0, src, OPTIONS),
        Verdict::Drop(DropReason::FloodBanned)
    );
}
