//! Scenario tests of the sans-IO proxy: a caller (UAC, 127.0.0.1:5070) and a
//! callee (UAS, 127.0.0.1:5080) talk through the proxy (127.0.0.1:5060) on a
//! fake clock; every assertion is about what would be on the wire.

use super::*;
use crate::router::{Decision, RouteRequest, StaticRouter, Target};
use viaduct_sip::{Framing, HeaderName, Message, StartLine};

const PROXY: &str = "127.0.0.1:5060";
const UAC: &str = "127.0.0.1:5070";
const UAS: &str = "127.0.0.1:5080";
const BOB: &str = "sip:bob@127.0.0.1:5080";
const CONTACT: &str = "Contact: <sip:bob@127.0.0.1:5080>";
const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---- harness --------------------------------------------------------------------

struct Harness {
    proxy: Proxy,
    base: Instant,
    now: Instant,
}

impl Harness {
    fn new(router: impl Router + 'static) -> Self {
        Self::with_timers(Timers::default(), router)
    }

    fn relay() -> Self {
        Self::new(StaticRouter::new(vec![]))
    }

    fn with_timers(timers: Timers, router: impl Router + 'static) -> Self {
        let listener = |transport| Listener {
            transport,
            addr: addr(PROXY),
        };
        let config = ProxyConfig {
            listeners: vec![listener(Transport::Udp), listener(Transport::Tcp)],
            timers,
            timer_c: Duration::from_secs(10),
            record_route: true,
        };
        let base = Instant::now();
        Harness {
            proxy: Proxy::new(config, Box::new(router)),
            base,
            now: base,
        }
    }

    fn feed_on(&mut self, from: &str, transport: Transport, data: Bytes) -> Vec<Transmit> {
        let flow = (transport == Transport::Tcp).then_some(7);
        let incoming = Incoming {
            data,
            source: addr(from),
            transport,
            flow,
        };
        self.proxy.handle_incoming(self.now, incoming);
        self.drain()
    }

    fn feed(&mut self, from: &str, data: impl Into<Bytes>) -> Vec<Transmit> {
        self.feed_on(from, Transport::Udp, data.into())
    }

    fn drain(&mut self) -> Vec<Transmit> {
        std::iter::from_fn(|| self.proxy.poll_transmit()).collect()
    }

    /// Moves the clock forward by `d`, firing every timer on its due instant;
    /// returns what was sent with the time since the base.
    fn advance_log(&mut self, d: Duration) -> Vec<(Duration, Transmit)> {
        let target = self.now + d;
        let mut log = Vec::new();
        while let Some(at) = self.proxy.poll_timeout().filter(|&at| at <= target) {
            self.now = self.now.max(at);
            self.proxy.handle_timeout(self.now);
            let since = self.now - self.base;
            log.extend(self.drain().into_iter().map(|t| (since, t)));
        }
        self.now = target;
        self.proxy.handle_timeout(target);
        log.extend(self.drain().into_iter().map(|t| (d, t)));
        log
    }

    fn advance(&mut self, d: Duration) -> Vec<Transmit> {
        self.advance_log(d).into_iter().map(|(_, t)| t).collect()
    }

    /// Sends the standard INVITE and checks the 100 Trying; returns the INVITE the callee got.
    fn invite(&mut self, invite: Msg) -> Transmit {
        let out = self.feed(UAC, invite.bytes());
        assert_eq!(sigs(&out), [sig("100", UAC), sig("INVITE", UAS)]);
        out[1].clone()
    }
}

// ---- messages ----------------------------------------------------------------------

/// A message as a start line, header lines and a body; Content-Length is added last.
#[derive(Clone)]
struct Msg {
    start: String,
    headers: Vec<String>,
    body: String,
}

impl Msg {
    fn request(method: &str, uri: &str, branch: &str, cseq: u32) -> Msg {
        Msg {
            start: format!("{method} {uri} SIP/2.0"),
            headers: vec![
                format!("Via: SIP/2.0/UDP {UAC};branch={branch};rport"),
                "Max-Forwards: 70".into(),
                "From: \"Alice\" <sip:alice@127.0.0.1:5070>;tag=a1".into(),
                "To: <sip:bob@127.0.0.1:5080>".into(),
                "Call-ID: call-1@127.0.0.1".into(),
                format!("CSeq: {cseq} {method}"),
            ],
            body: String::new(),
        }
    }

    fn h(mut self, line: &str) -> Msg {
        self.headers.push(line.into());
        self
    }

    fn without(mut self, prefix: &str) -> Msg {
        self.headers.retain(|h| !h.starts_with(prefix));
        self
    }

    fn set(self, prefix: &str, line: &str) -> Msg {
        self.without(prefix).h(line)
    }

    fn with_to_tag(self, tag: &str) -> Msg {
        self.set("To:", &format!("To: <sip:bob@127.0.0.1:5080>;tag={tag}"))
    }

    fn bytes(&self) -> Bytes {
        let mut s = format!("{}\r\n", self.start);
        for h in &self.headers {
            s.push_str(h);
            s.push_str("\r\n");
        }
        s.push_str(&format!(
            "Content-Length: {}\r\n\r\n{}",
            self.body.len(),
            self.body
        ));
        Bytes::from(s)
    }
}

/// The caller's INVITE: SDP, an unknown header, a Contact.
fn invite(branch: &str) -> Msg {
    let mut m = Msg::request("INVITE", BOB, branch, 1)
        .h("Contact: <sip:alice@127.0.0.1:5070>")
        .h("X-Custom:  kept  as-is ;p=1")
        .h("Content-Type: application/sdp");
    m.body = SDP.into();
    m
}

/// An in-dialog request from the caller along the recorded route.
fn in_dialog(method: &str, branch: &str, cseq: u32) -> Msg {
    Msg::request(method, BOB, branch, cseq)
        .with_to_tag("b1")
        .h(&format!("Route: <sip:{PROXY};lr>"))
}

/// A response built the way a UAS answers: the request's Via, Record-Route, From, To,
/// Call-ID and CSeq lines copied as they are (a To tag added), then `extra`.
fn reply(req: &Transmit, code: u16, to_tag: Option<&str>, extra: &[&str]) -> Bytes {
    use HeaderName::*;
    let m = parse(req);
    let reason = match code {
        180 => "Ringing",
        486 => "Busy Here",
        _ => reason_phrase(code),
    };
    let mut s = format!("SIP/2.0 {code} {reason}\r\n");
    let copied = [Via, RecordRoute, From, To, CallId, CSeq];
    for f in m.headers().iter().filter(|f| copied.contains(&f.name)) {
        s.push_str(text(&req.data[f.line_span.clone()]).trim_end());
        if let (To, Some(tag), None) = (f.name, to_tag, m.to().and_then(|t| t.tag())) {
            s.push_str(&format!(";tag={tag}"));
        }
        s.push_str("\r\n");
    }
    for line in extra {
        s.push_str(&format!("{line}\r\n"));
    }
    Bytes::from(s + "Content-Length: 0\r\n\r\n")
}

fn parse(t: &Transmit) -> Message<'_> {
    Message::parse(&t.data, Framing::Datagram).expect("proxy output parses")
}

fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap()
}

fn status(t: &Transmit) -> Option<u16> {
    parse(t).status()
}

fn method(t: &Transmit) -> String {
    parse(t).method().unwrap().as_str().to_owned()
}

fn header(t: &Transmit, name: &str) -> Option<String> {
    parse(t)
        .header_value_by_name(name)
        .map(|v| text(v).to_owned())
}

fn vias(t: &Transmit) -> Vec<String> {
    parse(t)
        .values(HeaderName::Via)
        .map(|(_, v)| text(v).to_owned())
        .collect()
}

fn branch_of(t: &Transmit) -> String {
    text(parse(t).top_via().unwrap().branch().unwrap()).to_owned()
}

/// The message without its first Via line (what §16.7 step 3 forwards).
fn without_top_via(data: &[u8]) -> Vec<u8> {
    without_line(data, "Via:")
}

/// The message without the first header line starting with `prefix`.
fn without_line(data: &[u8], prefix: &str) -> Vec<u8> {
    let s = text(data);
    let start = s.find(&format!("\r\n{prefix}")).unwrap() + 2;
    let end = start + s[start..].find("\r\n").unwrap() + 2;
    [&data[..start], &data[end..]].concat()
}

/// What was sent where, e.g. `ACK>127.0.0.1:5080` or `486>127.0.0.1:5070`.
fn sigs(out: &[Transmit]) -> Vec<String> {
    let what = |t| status(t).map_or_else(|| method(t), |c| c.to_string());
    out.iter()
        .map(|t| sig(&what(t), &t.destination.to_string()))
        .collect()
}

fn sig(what: &str, dest: &str) -> String {
    format!("{what}>{dest}")
}

#[track_caller]
fn only(out: &[Transmit]) -> &Transmit {
    assert_eq!(out.len(), 1, "expected one transmit, got {}", out.len());
    &out[0]
}

/// The caller's ACK for a non-2xx answer to its INVITE (same branch).
fn non_2xx_ack(to_tag: &str) -> Msg {
    Msg::request("ACK", BOB, "z9hG4bKc1", 1).with_to_tag(to_tag)
}

fn cancel(branch: &str) -> Msg {
    Msg::request("CANCEL", BOB, branch, 1)
}

// ---- 1-2: a call through the proxy ----------------------------------------------------

#[test]
fn invite_is_forwarded_with_this_hops_changes_only() {
    let mut h = Harness::relay();
    let sent = invite("z9hG4bKc1");
    let fwd = h.invite(sent.clone());
    let m = parse(&fwd);
    assert_eq!(m.request_uri().unwrap().raw, BOB);
    let v = vias(&fwd);
    assert!(v[0].starts_with("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKvd"));
    let caller = "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKc1;received=127.0.0.1;rport=5070";
    assert_eq!(v[1..], [caller]);
    let rr = header(&fwd, "Record-Route");
    assert_eq!(rr.as_deref(), Some("<sip:127.0.0.1:5060;lr>"));
    assert_eq!(m.max_forwards(), Some(69));
    assert!(text(&fwd.data).contains("\r\nX-Custom:  kept  as-is ;p=1\r\n"));
    assert_eq!(m.body(), SDP.as_bytes());
    assert_eq!(header(&fwd, "Content-Length"), Some(SDP.len().to_string()));
    // Nothing else changed: the whole message is the received one with exactly these edits.
    let ours = format!("Via: {}\r\nRecord-Route: <sip:{PROXY};lr>\r\n", v[0]);
    let expected = text(&sent.bytes())
        .replacen("\r\n", &format!("\r\n{ours}"), 1)
        .replacen(";rport\r\n", ";received=127.0.0.1;rport=5070\r\n", 1)
        .replacen("Max-Forwards: 70", "Max-Forwards: 69", 1);
    assert_eq!(text(&fwd.data), expected);

    // Without rport the caller's Via gets received only; no Max-Forwards -> 70.
    let mut h = Harness::relay();
    let plain = invite("z9hG4bKc2")
        .set("Via:", &format!("Via: SIP/2.0/UDP {UAC};branch=z9hG4bKc2"))
        .without("Max-Forwards:");
    let fwd = h.invite(plain);
    let caller = "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKc2;received=127.0.0.1";
    assert_eq!(vias(&fwd)[1], caller);
    assert_eq!(parse(&fwd).max_forwards(), Some(70));
}

/// Feeds a response from the callee and checks it reached the caller without our Via only.
#[track_caller]
fn passes_up(h: &mut Harness, response: Bytes) -> Transmit {
    let up = h.feed(UAS, response.clone());
    assert_eq!(only(&up).destination, addr(UAC));
    assert_eq!(text(&up[0].data), text(&without_top_via(&response)));
    up[0].clone()
}

#[test]
fn responses_go_back_byte_exact_and_the_dialog_follows_the_route() {
    let mut h = Harness::relay();
    let fwd = h.invite(invite("z9hG4bKc1"));
    let ringing = passes_up(&mut h, reply(&fwd, 180, Some("b1"), &[]));

    // A retransmitted INVITE gets the 180 again and is not forwarded.
    let again = h.feed(UAC, invite("z9hG4bKc1").bytes());
    assert_eq!(sigs(&again), [sig("180", UAC)]);
    assert_eq!(again[0].data, ringing.data);
    assert_eq!(h.proxy.stats().retransmissions_received, 1);

    let ok = reply(&fwd, 200, Some("b1"), &[CONTACT]);
    let up = passes_up(&mut h, ok.clone());
    // §16.7 step 10 / RFC 6026: a retransmitted 2xx goes up again.
    assert_eq!(only(&h.feed(UAS, ok)).data, up.data);

    // The 2xx ACK is its own transaction: forwarded statelessly, our Route popped.
    let ack = h.feed(UAC, in_dialog("ACK", "z9hG4bKack1", 1).bytes());
    assert_eq!(sigs(&ack), [sig("ACK", UAS)]);
    assert!(branch_of(&ack[0]).starts_with("z9hG4bKvd"));
    assert_ne!(branch_of(&ack[0]), branch_of(&fwd));
    assert_eq!(header(&ack[0], "Route"), None);

    let bye = h.feed(UAC, in_dialog("BYE", "z9hG4bKbye1", 2).bytes());
    assert_eq!(sigs(&bye), [sig("BYE", UAS)]);
    assert_eq!(parse(&bye[0]).request_uri().unwrap().raw, BOB);
    assert_eq!(header(&bye[0], "Route"), None);
    assert_eq!(header(&bye[0], "Record-Route"), None, "none in-dialog");
    passes_up(&mut h, reply(&bye[0], 200, None, &[]));
}

#[test]
fn tcp_caller_gets_a_record_route_per_side_and_its_flow_back() {
    let mut h = Harness::relay();
    let via = format!("Via: SIP/2.0/TCP {UAC};branch=z9hG4bKt1");
    let out = h.feed_on(
        UAC,
        Transport::Tcp,
        invite("z9hG4bKt1").set("Via:", &via).bytes(),
    );
    assert_eq!(sigs(&out), [sig("100", UAC), sig("INVITE", UAS)]);
    assert_eq!((out[0].transport, out[0].flow), (Transport::Tcp, Some(7)));
    assert_eq!((out[1].transport, out[1].flow), (Transport::Udp, None));
    let rr: Vec<String> = parse(&out[1])
        .record_routes()
        .map(|r| r.uri.raw.into())
        .collect();
    assert_eq!(rr.len(), 2, "{rr:?}");
    assert_eq!(rr[0], "sip:127.0.0.1:5060;lr");
    // The caller's side names its connection (RFC 5626 §5.3 flow token).
    let token = rr[1]
        .strip_prefix("sip:")
        .and_then(|r| r.strip_suffix("@127.0.0.1:5060;lr;transport=tcp"))
        .unwrap_or_else(|| panic!("flow token entry: {}", rr[1]));
    assert!(token.starts_with("ft-7-"), "{token}");

    // The callee's BYE (Route set = Record-Route as received) goes back over
    // the caller's connection, whatever its Request-URI (a WebSocket
    // client's Contact is an unroutable *.invalid host).
    let bye = Msg::request("BYE", "sip:alice@x7f.invalid;transport=ws", "z9hG4bKub1", 1)
        .with_to_tag("b1")
        .h(&format!("Route: <{}>, <{}>", rr[0], rr[1]));
    let out = h.feed(UAS, bye.bytes());
    assert_eq!(sigs(&out), [sig("BYE", UAC)]);
    assert_eq!((out[0].transport, out[0].flow), (Transport::Tcp, Some(7)));
    assert_eq!(header(&out[0], "Route"), None);

    // The caller's own BYE, on that connection, has the token first: it goes
    // to the callee by its Request-URI.
    let bye = in_dialog("BYE", "z9hG4bKcb1", 2)
        .set("Via:", &format!("Via: SIP/2.0/TCP {UAC};branch=z9hG4bKcb1"))
        .set("Route:", &format!("Route: <{}>, <{}>", rr[1], rr[0]));
    let out = h.feed_on(UAC, Transport::Tcp, bye.bytes());
    assert_eq!(sigs(&out), [sig("BYE", UAS)]);
    assert_eq!((out[0].transport, out[0].flow), (Transport::Udp, None));

    // A forged token (another flow, the same MAC) is just our address: the
    // request follows its Request-URI instead of entering connection 8.
    let forged = rr[1].replacen("ft-7-", "ft-8-", 1);
    let bye = Msg::request("BYE", BOB, "z9hG4bKfb1", 3)
        .with_to_tag("b1")
        .h(&format!("Route: <{}>, <{forged}>", rr[0]));
    let out = h.feed(UAS, bye.bytes());
    assert_eq!(sigs(&out), [sig("BYE", UAS)]);
    assert_eq!(out[0].flow, None);
}

// ---- 3-6: failures, CANCEL, Timer C ----------------------------------------------------

#[test]
fn busy_is_acked_by_the_proxy_and_forwarded_once() {
    let mut h = Harness::relay();
    let fwd = h.invite(invite("z9hG4bKc1"));
    let busy = reply(&fwd, 486, Some("b1"), &[]);
    let out = h.feed(UAS, busy.clone());
    assert_eq!(sigs(&out), [sig("ACK", UAS), sig("486", UAC)]);
    let ack = parse(&out[0]);
    assert_eq!(ack.request_uri().unwrap().raw, BOB);
    assert_eq!(branch_of(&out[0]), branch_of(&fwd));
    assert_eq!(ack.to().unwrap().tag(), Some(&b"b1"[..]));
    assert_eq!(header(&out[0], "CSeq").as_deref(), Some("1 ACK"));
    assert_eq!(text(&out[1].data), text(&without_top_via(&busy)));

    // The callee missed our ACK: it gets it again; the caller gets no second 486.
    assert_eq!(sigs(&h.feed(UAS, busy)), [sig("ACK", UAS)]);
    // Without the caller's ACK the 486 is retransmitted (Timer G, T1 = 0.5 s)...
    assert_eq!(sigs(&h.advance(ms(500))), [sig("486", UAC)]);
    // ...the caller's ACK (same branch as its INVITE) ends at the proxy and stops them.
    assert!(h.feed(UAC, non_2xx_ack("b1").bytes()).is_empty());
    assert!(h.advance(Duration::from_secs(40)).is_empty());
}

#[test]
fn cancel_after_ringing() {
    let mut h = Harness::relay();
    let fwd = h.invite(invite("z9hG4bKc1"));
    h.feed(UAS, reply(&fwd, 180, Some("b1"), &[]));
    let out = h.feed(UAC, cancel("z9hG4bKc1").bytes());
    assert_eq!(sigs(&out), [sig("200", UAC), sig("CANCEL", UAS)]);
    assert_eq!(header(&out[0], "CSeq").as_deref(), Some("1 CANCEL"));
    let down = out[1].clone();
    assert_eq!(branch_of(&down), branch_of(&fwd));
    assert_eq!(header(&down, "CSeq").as_deref(), Some("1 CANCEL"));

    assert!(h.feed(UAS, reply(&down, 200, None, &[])).is_empty());
    let terminated = reply(&fwd, 487, Some("b1"), &[]);
    let out = h.feed(UAS, terminated.clone());
    assert_eq!(sigs(&out), [sig("ACK", UAS), sig("487", UAC)]);
    assert_eq!(branch_of(&out[0]), branch_of(&fwd));
    assert_eq!(text(&out[1].data), text(&without_top_via(&terminated)));
}

#[test]
fn cancel_waits_for_a_provisional_response() {
    let mut h = Harness::relay();
    let fwd = h.invite(invite("z9hG4bKc1"));
    let out = h.feed(UAC, cancel("z9hG4bKc1").bytes());
    assert_eq!(sigs(&out), [sig("200", UAC)], "nothing to the callee yet");
    let out = h.feed(UAS, reply(&fwd, 100, None, &[]));
    assert_eq!(sigs(&out), [sig("CANCEL", UAS)]);
    assert_eq!(branch_of(&out[0]), branch_of(&fwd));
}

#[test]
fn timer_c_cancels_a_ringing_branch() {
    let mut h = Harness::relay();
    let fwd = h.invite(invite("z9hG4bKc1"));
    h.feed(UAS, reply(&fwd, 180, Some("b1"), &[]));
    assert!(h.advance(Duration::from_secs(8)).is_empty());
    // §16.7 step 2: a provisional response restarts Timer C.
    let out = h.feed(UAS, reply(&fwd, 183, Some("b1"), &[]));
    assert_eq!(sigs(&out), [sig("183", UAC)]);
    assert!(h.advance(ms(9_999)).is_empty());
    let out = h.advance(ms(1));
    assert_eq!(sigs(&out), [sig("CANCEL", UAS), sig("408", UAC)]);
    assert_eq!(branch_of(&out[0]), branch_of(&fwd));

    assert!(h.feed(UAS, reply(&out[0], 200, None, &[])).is_empty());
    let out = h.feed(UAS, reply(&fwd, 487, Some("b1"), &[]));
    assert_eq!(
        sigs(&out),
        [sig("ACK", UAS)],
        "the 487 is ACKed, not forwarded"
    );
}

#[test]
fn late_2xx_after_timer_c_still_reaches_the_caller() {
    let mut h = Harness::relay();
    let fwd = h.invite(invite("z9hG4bKc1"));
    h.feed(UAS, reply(&fwd, 180, Some("b1"), &[]));
    let out = h.advance(Duration::from_secs(10));
    assert_eq!(sigs(&out), [sig("CANCEL", UAS), sig("408", UAC)]);
    // The callee answered just as the CANCEL left: its 200 must not vanish.
    passes_up(&mut h, reply(&fwd, 200, Some("b1"), &[CONTACT]));
}

/// After a CANCEL the callee answers 200 (CANCEL) but never 487. Once the caller has
/// its answer and every timer ran out, no transaction should be left.
fn cancelled_branch_without_487(by_timer_c: bool) -> (usize, usize) {
    let mut h = Harness::relay();
    let fwd = h.invite(invite("z9hG4bKc1"));
    h.feed(UAS, reply(&fwd, 180, Some("b1"), &[]));
    let out = if by_timer_c {
        h.advance(Duration::from_secs(10))
    } else {
        h.feed(UAC, cancel("z9hG4bKc1").bytes())
    };
    let down = out.iter().find(|t| t.destination == addr(UAS)).unwrap();
    h.feed(UAS, reply(down, 200, None, &[]));
    let later = h.advance(Duration::from_secs(40));
    if !by_timer_c {
        // §9.1: no 487 within 64*T1: the branch counts as cancelled.
        assert_eq!(sigs(&later[..1]), [sig("487", UAC)]);
    }
    h.feed(UAC, non_2xx_ack("x").bytes());
    h.advance(Duration::from_secs(200));
    h.proxy.transactions()
}

#[test]
fn cancelled_branch_without_487_is_cleaned_up() {
    assert_eq!(cancelled_branch_without_487(false), (0, 0));
}

#[test]
fn timer_c_branch_without_487_is_cleaned_up() {
    assert_eq!(cancelled_branch_without_487(true), (0, 0));
}

// ---- 7-8: timeouts and serial failover -------------------------------------------------

/// Milliseconds since the start at which something went to `dest`, and what.
fn timeline(log: &[(Duration, Transmit)], dest: &str) -> Vec<(u128, String)> {
    let to: Vec<_> = log
        .iter()
        .filter(|(_, t)| t.destination == addr(dest))
        .collect();
    let what = sigs(&to.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>());
    to.iter()
        .zip(what)
        .map(|((at, _), w)| (at.as_millis(), w))
        .collect()
}

#[test]
fn unanswered_invite_is_retransmitted_then_408() {
    let mut h = Harness::relay();
    h.proxy.config.timer_c = Duration::from_secs(180);
    h.invite(invite("z9hG4bKc1"));
    let log = h.advance_log(ms(32_400));
    // Timer A: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s; Timer B at 32 s.
    let invites = [500, 1_500, 3_500, 7_500, 15_500, 31_500].map(|at| (at, sig("INVITE", UAS)));
    assert_eq!(timeline(&log, UAS), invites);
    assert_eq!(timeline(&log, UAC), [(32_000, sig("408", UAC))]);

    // Timer C (10 s) shorter than Timer B ends the silent branch first (§16.8: as if 408).
    let mut h = Harness::relay();
    h.invite(invite("z9hG4bKc1"));
    let log = h.advance_log(ms(32_400));
    assert_eq!(timeline(&log, UAS), invites[..4]);
    assert_eq!(timeline(&log, UAC)[0], (10_000, sig("408", UAC)));
}

const SILENT: &str = "127.0.0.1:5090";

fn two_targets() -> StaticRouter {
    StaticRouter::new(
        [SILENT, UAS]
            .map(|t| Target::new(format!("sip:{t}")))
            .to_vec(),
    )
}

#[test]
fn silent_target_fails_over_to_the_next() {
    let timers = Timers::from_t1(ms(10), ms(40), ms(50));
    let mut h = Harness::with_timers(timers, two_targets());
    let out = h.feed(UAC, invite("z9hG4bKc1").bytes());
    assert_eq!(sigs(&out), [sig("100", UAC), sig("INVITE", SILENT)]);
    let first = branch_of(&out[1]);
    let log = h.advance(ms(640));
    // Timer A retransmissions to the first target, then the second target at Timer B.
    assert_eq!(sigs(&log).last(), Some(&sig("INVITE", UAS)));
    assert!(
        log.iter().all(|t| t.destination != addr(UAC)),
        "no answer yet"
    );
    let second = log.last().unwrap().clone();
    let hash = first.strip_suffix(".0").unwrap();
    assert_eq!(branch_of(&second), format!("{hash}.1"));
    passes_up(&mut h, reply(&second, 200, Some("b1"), &[]));
}

#[test]
fn service_unavailable_fails_over_at_once_and_becomes_500() {
    let mut h = Harness::new(two_targets());
    let out = h.feed(UAC, invite("z9hG4bKc1").bytes());
    let out = h.feed(SILENT, reply(&out[1], 503, Some("x"), &[]));
    assert_eq!(sigs(&out), [sig("ACK", SILENT), sig("INVITE", UAS)]);
    // §16.7 step 6: when every target said 503, the caller gets 500.
    let out = h.feed(UAS, reply(&out[1], 503, Some("y"), &[]));
    assert_eq!(sigs(&out), [sig("ACK", UAS), sig("500", UAC)]);
}

// ---- 9: validation --------------------------------------------------------------------

/// Feeds `msg` from the caller and returns the one answer, checking it went back to the
/// caller and nothing was forwarded.
#[track_caller]
fn answered(h: &mut Harness, msg: &Msg) -> Transmit {
    let out = h.feed(UAC, msg.bytes());
    assert_eq!(only(&out).destination, addr(UAC));
    out[0].clone()
}

#[test]
fn requests_failing_section_16_3_are_answered_not_forwarded() {
    let mut h = Harness::relay();
    let m = invite("z9hG4bKm1").set("Max-Forwards:", "Max-Forwards: 0");
    assert_eq!(status(&answered(&mut h, &m)), Some(483));

    let t = answered(&mut h, &invite("z9hG4bKm2").h("Proxy-Require: foo"));
    assert_eq!(status(&t), Some(420));
    assert_eq!(header(&t, "Unsupported").as_deref(), Some("foo"));

    let mut m = invite("z9hG4bKm3");
    m.start = "INVITE tel:+15551234 SIP/2.0".into();
    assert_eq!(status(&answered(&mut h, &m)), Some(416));

    m.start = format!("INVITE  {BOB} SIP/2.0");
    assert_eq!(status(&answered(&mut h, &m)), Some(400));

    let m = Msg::request("OPTIONS", &format!("sip:{PROXY}"), "z9hG4bKo1", 1);
    assert_eq!(status(&answered(&mut h, &m)), Some(200));
    assert_eq!(h.proxy.transactions(), (0, 0), "all stateless");
}

#[test]
fn looped_request_gets_482() {
    let mut h = Harness::relay();
    let fwd = h.invite(invite("z9hG4bKc1"));
    let out = h.feed(UAS, fwd.data.clone());
    // Answered along the top Via, which is ours...
    assert_eq!(sigs(&out), [sig("482", PROXY)]);
    // ...so it comes back as the answer of the original branch: ACKed and sent up.
    let out = h.feed(PROXY, out[0].data.clone());
    assert_eq!(sigs(&out), [sig("ACK", UAS), sig("482", UAC)]);
}

#[test]
fn malformed_responses_are_dropped() {
    let mut h = Harness::relay();
    let fwd = h.invite(invite("z9hG4bKc1"));
    let good = reply(&fwd, 180, Some("b1"), &[]);
    let bad_code: Bytes = text(&good).replacen("180 Ringing", "18 Ringing", 1).into();
    let no_cseq: Bytes = without_line(&good, "CSeq:").into();
    for bad in [bad_code, no_cseq] {
        assert!(h.feed(UAS, bad).is_empty());
    }
    assert_eq!(h.proxy.stats().dropped_of(DropReason::ParseError), 2);
}

// ---- 10-12: routing, router decisions, draining -----------------------------------------

#[test]
fn strict_next_hop_gets_the_route_as_request_uri() {
    let mut h = Harness::relay();
    let route = format!("Route: <sip:{PROXY};lr>, <sip:127.0.0.1:5099>");
    let out = h.feed(UAC, invite("z9hG4bKc1").h(&route).bytes());
    assert_eq!(
        sigs(&out),
        [sig("100", UAC), sig("INVITE", "127.0.0.1:5099")]
    );
    let m = parse(&out[1]);
    assert_eq!(m.request_uri().unwrap().raw, "sip:127.0.0.1:5099");
    assert_eq!(m.routes().map(|r| r.uri.raw).collect::<Vec<_>>(), [BOB]);
}

#[test]
fn strict_previous_hop_restores_the_request_uri() {
    // §16.4: our Record-Route URI came back as Request-URI; the real one is the last Route.
    let mut h = Harness::relay();
    let mut m = in_dialog("BYE", "z9hG4bKs1", 2).set("Route:", &format!("Route: <{BOB}>"));
    m.start = format!("BYE sip:{PROXY};lr SIP/2.0");
    let out = h.feed(UAC, m.bytes());
    assert_eq!(sigs(&out), [sig("BYE", UAS)]);
    assert_eq!(parse(&out[0]).request_uri().unwrap().raw, BOB);
    assert_eq!(header(&out[0], "Route"), None);
}

#[test]
fn answer_to_a_stateless_cancel_goes_back() {
    let mut h = Harness::relay();
    let down = h.feed(UAC, cancel("z9hG4bKnone").bytes());
    assert_eq!(sigs(&down), [sig("CANCEL", UAS)]);
    passes_up(&mut h, reply(&down[0], 481, None, &[]));
}

/// Replaces the caller's X-Room-ID with its own, or answers with a fixed decision.
struct TestRouter(Option<Decision>);

impl Router for TestRouter {
    fn route(&mut self, req: &mut RouteRequest<'_, '_>) -> Decision {
        if let Some(d) = &self.0 {
            return d.clone();
        }
        req.edits.remove.push("x-room-id".into());
        req.edits.add.push(("X-Room-ID".into(), "room-42".into()));
        Decision::Relay
    }
}

#[test]
fn router_edits_and_decisions() {
    let mut h = Harness::new(TestRouter(None));
    let fwd = h.invite(invite("z9hG4bKc1").h("X-Room-ID: spoofed"));
    let fwd = text(&fwd.data);
    assert_eq!(fwd.matches("X-Room-ID").count(), 1, "{fwd}");
    assert!(fwd.contains("\r\nX-Room-ID: room-42\r\n"));
    assert!(fwd.contains("\r\nX-Custom:  kept  as-is ;p=1\r\n"));

    let (code, reason, headers) = (403, "Forbidden".into(), vec![]);
    let mut h = Harness::new(TestRouter(Some(Decision::Reject {
        code,
        reason,
        headers,
    })));
    let t = answered(&mut h, &invite("z9hG4bKc1"));
    assert_eq!(status(&t), Some(403));
    assert!(parse(&t).to().unwrap().tag().is_some());

    let mut h = Harness::new(TestRouter(Some(Decision::Drop)));
    assert!(h.feed(UAC, invite("z9hG4bKc1").bytes()).is_empty());
    assert!(h.advance(Duration::from_secs(60)).is_empty());
}

#[test]
fn draining_refuses_new_calls_but_not_dialogs() {
    let mut h = Harness::relay();
    h.proxy.set_draining(true);
    let t = answered(&mut h, &invite("z9hG4bKc1"));
    assert_eq!(status(&t), Some(503));
    assert!(header(&t, "Retry-After").is_some());
    let bye = h.feed(UAC, in_dialog("BYE", "z9hG4bKbye1", 2).bytes());
    assert_eq!(sigs(&bye), [sig("BYE", UAS)]);
}

#[test]
fn counters_follow_a_call_and_its_drain() {
    use crate::proxy::stats::StatusClass as C;
    let mut h = Harness::relay();
    let fwd = h.invite(invite("z9hG4bKc1"));
    h.feed(UAS, reply(&fwd, 180, Some("b1"), &[]));
    passes_up(&mut h, reply(&fwd, 200, Some("b1"), &[CONTACT]));
    h.feed(UAC, in_dialog("ACK", "z9hG4bKack1", 1).bytes());
    assert_eq!(h.proxy.live_dialogs(), 1, "the call is up");
    h.proxy.set_draining(true);
    let refused = answered(&mut h, &invite("z9hG4bKc2").set("Call-ID:", "Call-ID: c2"));
    assert_eq!(status(&refused), Some(503));
    let bye = h.feed(UAC, in_dialog("BYE", "z9hG4bKbye1", 2).bytes());
    assert_eq!(h.proxy.live_dialogs(), 0, "its BYE ends it");
    passes_up(&mut h, reply(&bye[0], 200, None, &[]));
    let s = h.proxy.stats();
    assert_eq!(
        ["INVITE", "ACK", "BYE"].map(|m| s.requests_of(m)),
        [2, 1, 1]
    );
    // 100 Trying and 180 up; 200 to INVITE and BYE up; the drain's 503.
    assert_eq!(
        [C::of(100), C::of(200), C::of(503)].map(|c| s.sent_of(c)),
        [2, 2, 1]
    );
    assert_eq!([C::of(180), C::of(200)].map(|c| s.received_of(c)), [1, 2]);
    assert_eq!((s.drain_rejected, s.dialogs_established), (1, 1));
    let to_uas: SocketAddr = addr(UAS);
    let (target, counts) = &s.targets.targets[0];
    assert_eq!(*target, to_uas);
    assert_eq!(
        counts[Stats::outcome_index(ForwardOutcome::Answered(C::of(200)))],
        2
    );
}

#[test]
fn timer_retransmissions_are_counted() {
    let mut h = Harness::relay();
    h.invite(invite("z9hG4bKc1"));
    // Timer A: the INVITE again at T1 and 2*T1 (RFC 3261 §17.1.1.2).
    h.advance(ms(1600));
    assert_eq!(h.proxy.stats().retransmissions_sent, 2);
}

// ---- 13: cleanup ---------------------------------------------------------------------

#[test]
fn a_finished_call_leaves_no_state() {
    let mut h = Harness::relay();
    let fwd = h.invite(invite("z9hG4bKc1"));
    h.feed(UAS, reply(&fwd, 180, Some("b1"), &[]));
    passes_up(&mut h, reply(&fwd, 200, Some("b1"), &[CONTACT]));
    let ack = h.feed(UAC, in_dialog("ACK", "z9hG4bKack1", 1).bytes());
    assert_eq!(sigs(&ack), [sig("ACK", UAS)]);
    let bye = h.feed(UAC, in_dialog("BYE", "z9hG4bKbye1", 2).bytes());
    passes_up(&mut h, reply(&bye[0], 200, None, &[]));
    assert_eq!(h.proxy.pending_requests(), 0);
    assert_ne!(h.proxy.transactions(), (0, 0));
    // Answered: the transactions wait out their timers, but the response
    // contexts (requests, branches) are already gone.
    assert!(h.proxy.servers.values().all(|e| e.ctx.is_none()));
    h.advance(Duration::from_secs(32) + ms(100));
    assert_eq!(h.proxy.transactions(), (0, 0));
    assert_eq!(h.proxy.pending_requests(), 0);
}

/// A failover router in the style of the media-bridge policy: counts failures
/// and answers for itself when every target is down.
struct AllDown {
    failures: Vec<u16>,
}

impl Router for AllDown {
    fn route(&mut self, req: &mut RouteRequest<'_, '_>) -> Decision {
        req.version = 7;
        Decision::Forward(
            [SILENT, UAS]
                .map(|t| Target::new(format!("sip:{t}")))
                .to_vec(),
        )
    }

    fn on_failure(&mut self, req: &mut RouteRequest<'_, '_>, status: u16) -> Decision {
        assert_eq!(req.version, 7, "failover runs on the version that decided");
        self.failures.push(status);
        if self.failures.len() < 2 {
            return Decision::Continue;
        }
        Decision::Reject {
            code: 503,
            reason: "All Media Bridges Down".into(),
            headers: vec!["Retry-After: 30".into()],
        }
    }
}

#[test]
fn on_failure_sees_every_failure_and_its_answer_goes_out_as_is() {
    let mut h = Harness::new(AllDown { failures: vec![] });
    let out = h.feed(UAC, invite("z9hG4bKc1").bytes());
    let out = h.feed(SILENT, reply(&out[1], 503, Some("x"), &[]));
    assert_eq!(sigs(&out), [sig("ACK", SILENT), sig("INVITE", UAS)]);
    let out = h.feed(UAS, reply(&out[1], 486, Some("y"), &[]));
    assert_eq!(sigs(&out), [sig("ACK", UAS), sig("503", UAC)]);
    let answer = Message::parse(&out[1].data, Framing::Datagram).unwrap();
    assert!(matches!(
        answer.start_line(),
        StartLine::Response {
            reason: b"All Media Bridges Down",
            ..
        }
    ));
    assert_eq!(answer.header_value_by_name("Retry-After"), Some(&b"30"[..]));
}

#[test]
fn ack_of_a_local_answer_is_absorbed() {
    let mut h = Harness::relay();
    let mut inv = invite("z9hG4bKmf");
    inv.headers.retain(|l| !l.starts_with("Max-Forwards"));
    inv.headers.push("Max-Forwards: 0".into());
    let out = h.feed(UAC, inv.bytes());
    assert_eq!(sigs(&out), [sig("483", UAC)]);
    let answer = Message::parse(&out[0].data, Framing::Datagram).unwrap();
    let tag = String::from_utf8(answer.to().unwrap().tag().unwrap().to_vec()).unwrap();
    let out = h.feed(
        UAC,
        Msg::request("ACK", BOB, "z9hG4bKmf", 1)
            .with_to_tag(&tag)
            .bytes(),
    );
    assert!(
        out.is_empty(),
        "the ACK of our own 483 must not be forwarded: {:?}",
        sigs(&out)
    );
}

#[test]
fn requests_to_the_proxy_itself_go_to_the_router() {
    // sip:room-42@<proxy>: the voice-AI front door case; the router decides.
    let mut h = Harness::new(TestRouter(Some(Decision::Forward(vec![Target::new(
        format!("sip:{UAS}"),
    )]))));
    let out = h.feed(
        UAC,
        Msg::request("INVITE", &format!("sip:room-42@{PROXY}"), "z9hG4bKself", 1).bytes(),
    );
    assert_eq!(sigs(&out), [sig("100", UAC), sig("INVITE", UAS)]);
    // With plain relaying there is nowhere to send it: 404, not a loop.
    let mut h = Harness::relay();
    let out = h.feed(
        UAC,
        Msg::request("INVITE", &format!("sip:room-42@{PROXY}"), "z9hG4bKself", 1).bytes(),
    );
    assert_eq!(sigs(&out), [sig("404", UAC)]);
}

// ---- digest authentication (RFC 3261 §22.3) -----------------------------------------

mod challenge {
    use super::*;
    use crate::auth::{Algorithm, AuthCheck, Authenticator, DigestStore};
    use std::sync::Mutex;

    /// alice / "secret" in realm "viaduct", counts in a map.
    #[derive(Default)]
    pub(super) struct Store(Mutex<HashMap<u128, u32>>);

    impl DigestStore for Store {
        fn ha1(&self, a: Algorithm, realm: &str, user: &str) -> Option<String> {
            (realm == "viaduct" && user == "alice").then(|| a.ha1(user, realm, "secret"))
        }
        fn advance_nonce_count(&self, id: u128, nc: u32, _: Duration) -> bool {
            let mut m = self.0.lock().unwrap();
            let last = m.entry(id).or_insert(0);
            std::mem::replace(last, nc.max(*last)) < nc
        }
    }

    /// Lets authenticated requests through to the callee, challenges the rest.
    struct AuthRouter;

    impl Router for AuthRouter {
        fn route(&mut self, req: &mut RouteRequest<'_, '_>) -> Decision {
            match req.authenticate("viaduct") {
                Some(AuthCheck::Valid { .. }) => {
                    Decision::Forward(vec![Target::new(format!("sip:{UAS}"))])
                }
                _ => Decision::Challenge {
                    realm: "viaduct".into(),
                },
            }
        }
    }

    fn harness() -> Harness {
        let mut h = Harness::new(AuthRouter);
        let auth = Authenticator::new(
            [1; 32],
            Duration::from_secs(300),
            Arc::new(Store::default()),
        );
        h.proxy.set_authenticator(Arc::new(auth));
        h
    }

    /// The SHA-256 challenge's nonce.
    fn nonce(t: &Transmit) -> String {
        nonce_in(t, "Proxy-Authenticate")
    }

    /// The nonce of the SHA-256 challenge in the `header` lines (one per algorithm).
    pub(super) fn nonce_in(t: &Transmit, header: &str) -> String {
        let m = parse(t);
        let lines: Vec<&str> = m
            .headers()
            .iter()
            .filter(|f| text(&t.data[f.name_span.clone()]) == header)
            .map(|f| text(&t.data[f.value_span.clone()]))
            .collect();
        assert_eq!(lines.len(), 2, "one challenge per algorithm: {lines:?}");
        assert!(lines[0].contains("algorithm=SHA-256") && lines[1].contains("algorithm=MD5"));
        let v = lines[0];
        let start = v.find("nonce=\"").unwrap() + 7;
        v[start..start + v[start..].find('"').unwrap()].to_owned()
    }

    fn authorization(password: &str, nonce: &str, nc: u32) -> String {
        credentials("Proxy-Authorization", "INVITE", BOB, password, nonce, nc)
    }

    /// alice's SHA-256 `header` line for `method` to `uri` (RFC 7616 §3.4.1).
    pub(super) fn credentials(
        header: &str,
        method: &str,
        uri: &str,
        password: &str,
        nonce: &str,
        nc: u32,
    ) -> String {
        let a = Algorithm::Sha256;
        let ha1 = a.ha1("alice", "viaduct", password);
        let ha2 = a.hex(&[method.as_bytes(), uri.as_bytes()]);
        let nc = format!("{nc:08x}");
        let r = a.hex(&[
            ha1.as_bytes(),
            nonce.as_bytes(),
            nc.as_bytes(),
            b"x",
            b"auth",
            ha2.as_bytes(),
        ]);
        format!(
            "{header}: Digest username=\"alice\", realm=\"viaduct\", nonce=\"{nonce}\", \
             uri=\"{uri}\", response=\"{r}\", algorithm=SHA-256, qop=auth, nc={nc}, cnonce=\"x\""
        )
    }

    #[test]
    fn challenge_then_credentials_then_replay_then_wrong_password() {
        let mut h = harness();
        let out = h.feed(UAC, invite("z9hG4bKc1").bytes());
        let challenge = only(&out);
        assert_eq!(status(challenge), Some(407));
        let n = nonce(challenge);
        // The ACK of the 407 stays with the proxy.
        let tag = text(parse(challenge).to().unwrap().tag().unwrap()).to_owned();
        assert!(h.feed(UAC, non_2xx_ack(&tag).bytes()).is_empty());

        // Second INVITE with credentials: forwarded, without them.
        let with = invite("z9hG4bKc2").h(&authorization("secret", &n, 1));
        let forwarded = h.invite(with.clone());
        assert_eq!(header(&forwarded, "Proxy-Authorization"), None);
        assert_eq!(h.proxy.stats().auth_of(AuthResult::Ok), 1);

        // The same credentials under a new branch: a replay, challenged again as stale.
        let replay = with.set(
            "Via:",
            &format!("Via: SIP/2.0/UDP {UAC};branch=z9hG4bKc3;rport"),
        );
        let out = h.feed(UAC, replay.bytes());
        assert_eq!(status(only(&out)), Some(407));
        assert!(header(only(&out), "Proxy-Authenticate")
            .unwrap()
            .ends_with("stale=true"));
        assert_eq!(h.proxy.stats().auth_of(AuthResult::Replay), 1);

        // A wrong password: 403, nothing forwarded.
        let out = h.feed(
            UAC,
            invite("z9hG4bKc4")
                .h(&authorization("guess", &n, 2))
                .bytes(),
        );
        assert_eq!(sigs(&out), [sig("403", UAC)]);
        assert_eq!(h.proxy.stats().auth_of(AuthResult::Forbidden), 1);
        assert_eq!(h.proxy.stats().auth_of(AuthResult::Challenged), 1);
    }

    #[test]
    fn a_challenge_without_an_authenticator_is_a_500() {
        let mut h = Harness::new(AuthRouter);
        let out = h.feed(UAC, invite("z9hG4bKc9").bytes());
        assert_eq!(status(only(&out)), Some(500));
    }
}

mod fork;
mod per_target;
mod registrar;
mod target_state;

// ---- RFC 3263: next hops named by host --------------------------------------------------

/// The runtime's DNS cache, as the core sees it.
#[derive(Default)]
struct FakeNames(std::sync::Mutex<Vec<(crate::dns::DnsQuery, crate::dns::DnsAnswer)>>);

impl crate::dns::NameCache for FakeNames {
    fn cached(&self, q: &crate::dns::DnsQuery) -> Option<crate::dns::DnsAnswer> {
        let known = self.0.lock().unwrap();
        known.iter().find(|(k, _)| k == q).map(|(_, a)| a.clone())
    }
}

fn srv_answer(addrs: &[&str]) -> crate::dns::DnsAnswer {
    Ok(addrs
        .iter()
        .map(|a| crate::dns::Destination {
            addr: addr(a),
            transport: Transport::Udp,
        })
        .collect())
}

#[test]
fn host_name_target_waits_for_dns_then_walks_the_answer_in_order() {
    let timers = Timers::from_t1(ms(10), ms(40), ms(50));
    let router = StaticRouter::new(vec![Target::new("sip:Bridge.Test")]);
    let mut h = Harness::with_timers(timers, router);
    let names = std::sync::Arc::new(FakeNames::default());
    h.proxy.set_name_cache(names.clone());

    // A miss: the caller gets 100 Trying, nothing is forwarded, DNS is asked once.
    let out = h.feed(UAC, invite("z9hG4bKd1").bytes());
    assert_eq!(sigs(&out), [sig("100", UAC)]);
    let out = h.feed(
        UAC,
        invite("z9hG4bKd2").set("Call-ID:", "Call-ID: d2").bytes(),
    );
    assert_eq!(sigs(&out), [sig("100", UAC)]);
    let query = h.proxy.poll_dns().expect("a query for the runtime");
    assert_eq!(query.host, "bridge.test");
    assert_eq!(
        (query.port, query.transport, query.secure),
        (None, None, false)
    );
    assert!(h.proxy.poll_dns().is_none(), "asked once for both requests");

    // The answer (priority 10 first) releases both requests toward SILENT.
    let answer = srv_answer(&[SILENT, UAS]);
    names
        .0
        .lock()
        .unwrap()
        .push((query.clone(), answer.clone()));
    h.proxy.handle_resolved(h.now, &query, answer);
    let out = h.drain();
    assert_eq!(sigs(&out), [sig("INVITE", SILENT), sig("INVITE", SILENT)]);

    // SILENT never answers: Timer B fails both over to the next address.
    let log = h.advance(ms(640));
    let to_uas: Vec<&Transmit> = log.iter().filter(|t| t.destination == addr(UAS)).collect();
    assert_eq!(to_uas.len(), 2, "{:?}", sigs(&log));
    for fwd in to_uas {
        passes_up(&mut h, reply(fwd, 200, Some("b1"), &[]));
    }

    // The next call finds the answer cached and SILENT down: straight to UAS.
    let out = h.feed(
        UAC,
        invite("z9hG4bKd3").set("Call-ID:", "Call-ID: d3").bytes(),
    );
    assert_eq!(sigs(&out), [sig("100", UAC), sig("INVITE", UAS)]);
    assert!(h.proxy.poll_dns().is_none());
}

#[test]
fn unresolvable_host_gets_an_answer_not_silence() {
    let router = StaticRouter::new(vec![Target::new("sip:nowhere.test")]);
    let mut h = Harness::new(router);
    h.proxy
        .set_name_cache(std::sync::Arc::new(FakeNames::default()));
    let out = h.feed(UAC, invite("z9hG4bKn1").bytes());
    assert_eq!(sigs(&out), [sig("100", UAC)]);
    let query = h.proxy.poll_dns().unwrap();
    h.proxy
        .handle_resolved(h.now, &query, Err(crate::dns::DnsError::NotFound));
    let out = h.drain();
    assert_eq!(sigs(&out), [sig("500", UAC)]);

    // Without a resolver a host name is a target that fails at once.
    let mut h = Harness::new(StaticRouter::new(vec![Target::new("sip:nowhere.test")]));
    let out = h.feed(UAC, invite("z9hG4bKn2").bytes());
    assert_eq!(sigs(&out), [sig("100", UAC), sig("500", UAC)]);
}

#[test]
fn a_send_failure_fails_over_at_once() {
    let router = StaticRouter::new(vec![
        Target::new(format!("sip:{SILENT};transport=tcp")),
        Target::new(format!("sip:{UAS}")),
    ]);
    let mut h = Harness::new(router);
    let out = h.feed(UAC, invite("z9hG4bKsf1").bytes());
    assert_eq!(sigs(&out), [sig("100", UAC), sig("INVITE", SILENT)]);
    assert_eq!(out[1].transport, Transport::Tcp);
    let via = &vias(&out[1])[0];
    assert!(
        via.starts_with("SIP/2.0/TCP 127.0.0.1:5060;alias;branch="),
        "RFC 5923 alias: {via}"
    );
    // The runtime could not connect: the next target now, not after Timer B.
    h.proxy.handle_send_failure(h.now, &out[1].data);
    let out = h.drain();
    assert_eq!(sigs(&out), [sig("INVITE", UAS)]);
    passes_up(&mut h, reply(&out[0], 200, Some("b1"), &[]));
    // A failure report for something that is not a pending request changes nothing.
    h.proxy
        .handle_send_failure(h.now, b"SIP/2.0 200 OK\r\n\r\n");
    h.proxy.handle_send_failure(h.now, b"garbage");
    assert!(h.drain().is_empty());
}
