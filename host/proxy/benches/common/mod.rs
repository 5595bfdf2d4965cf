//! What the proxy-core benches share: addresses, a UDP proxy on
//! 127.0.0.1:5060 with default timers, and the callee's answer to what the
//! proxy forwarded.

use std::net::SocketAddr;
use std::time::Duration;
use viaduct_proxy::transaction::Timers;
use viaduct_proxy::{Listener, Proxy, ProxyConfig, Router, Transport};

pub fn addr(s: &str) -> SocketAddr {
    s.parse().expect("literal address")
}

/// A proxy listening on udp:127.0.0.1:5060, record-routing, default timers.
pub fn proxy(router: Box<dyn Router>) -> Proxy {
    let config = ProxyConfig {
        listeners: vec![Listener {
            transport: Transport::Udp,
            addr: addr("127.0.0.1:5060"),
        }],
        timers: Timers::default(),
        timer_c: Duration::from_secs(180),
        record_route: true,
    };
    Proxy::new(config, router)
}

/// The UAS's answer to what the proxy forwarded: the Vias and dialog
/// headers copied, a To tag added, Record-Route echoed.
pub fn answer(forwarded: &[u8], code: &str, to_tag: bool) -> String {
    let text = String::from_utf8_lossy(forwarded);
    let mut out = format!("SIP/2.0 {code}\r\n");
    for line in text.split("\r\n").skip(1) {
        if line.is_empty() {
            break;
        }
        let name = line.split(':').next().unwrap_or("");
        match name {
            "Via" | "From" | "Call-ID" | "CSeq" | "Record-Route" => {
                out.push_str(line);
                out.push_str("\r\n");
            }
            "To" if to_tag && !line.contains("tag=") => {
                out.push_str(line);
                out.push_str(";tag=uas1\r\n");
            }
            "To" => {
                out.push_str(line);
                out.push_str("\r\n");
            }
            _ => {}
        }
    }
    out.push_str("Contact: <sip:127.0.0.1:5062>\r\nContent-Length: 0\r\n\r\n");
    out
}

/// SIPp's built-in uac INVITE (with its SDP) for call `n`, to `request_uri`.
#[allow(dead_code)] // not every bench sends whole calls
pub fn sipp_invite(n: u64, request_uri: &str) -> String {
    format!(
        "INVITE {request_uri} SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-4711-{n}-0;rport\r\n\
From: sipp <sip:sipp@127.0.0.1:5061>;tag={n}SIPpTag001\r\n\
To: service <{request_uri}>\r\n\
Call-ID: {n}-4711@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: sip:sipp@127.0.0.1:5061\r\n\
Max-Forwards: 70\r\n\
Subject: Performance Test\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 129\r\n\
\r\n\
v=0\r\n\
o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 6000 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n"
    )
}
