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
