//! Raw SIP over UDP: the OPTIONS probe and the little header reading the
//! tests need (no parser: these read what our peers and the proxy send).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::LOCALHOST;

static PROBE_SEQ: AtomicU64 = AtomicU64::new(1);

/// Sends one `OPTIONS sip:IP:PORT` (no user part: addressed to the proxy
/// itself) over UDP from a fresh socket and waits up to `wait` for an
/// answer with the same Call-ID. Returns the answer's status line, e.g.
/// `SIP/2.0 200 OK`, or `None` when nothing came back in time.
pub fn options_ping(proxy: SocketAddr, wait: Duration) -> Option<String> {
    let sock = UdpSocket::bind((LOCALHOST, 0)).ok()?;
    let me = sock.local_addr().ok()?;
    let n = PROBE_SEQ.fetch_add(1, Ordering::Relaxed);
    let call_id = format!("probe-{}-{n}@127.0.0.1", std::process::id());
    let msg = format!(
        "OPTIONS sip:{ip}:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bK-probe-{pid}-{n};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@{me}>;tag=probe{n}\r\n\
         To: <sip:{ip}:{port}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {n} OPTIONS\r\n\
         Content-Length: 0\r\n\r\n",
        ip = proxy.ip(),
        port = proxy.port(),
        pid = std::process::id(),
    );
    sock.send_to(msg.as_bytes(), proxy).ok()?;
    let deadline = Instant::now() + wait;
    let mut buf = vec![0u8; 65_535];
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .ok()?;
        let Ok((len, _)) = sock.recv_from(&mut buf) else {
            return None;
        };
        let text = String::from_utf8_lossy(&buf[..len]);
        if header_value(&text, "call-id", Some("i")).as_deref() == Some(call_id.as_str()) {
            return text.lines().next().map(str::to_owned);
        }
    }
}

/// The first value of a header in a SIP message's text (long name and
/// optional compact form, case-insensitive), trimmed. Folded lines are not
/// joined: good enough for the messages our peers send.
pub fn header_value(msg: &str, name: &str, compact: Option<&str>) -> Option<String> {
    let head = msg.split("\r\n\r\n").next().unwrap_or(msg);
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        let n = n.trim();
        let hit =
            n.eq_ignore_ascii_case(name) || compact.is_some_and(|c| n.eq_ignore_ascii_case(c));
        hit.then(|| v.trim().to_owned())
    })
}

/// Every value of a header (long name and optional compact form,
/// case-insensitive), from all its lines, split at commas: for Via, one entry
/// per hop whether the hops share a line or not.
pub fn header_values(msg: &str, name: &str, compact: Option<&str>) -> Vec<String> {
    let head = msg.split("\r\n\r\n").next().unwrap_or(msg);
    head.lines()
        .skip(1)
        .filter_map(|line| {
            let (n, v) = line.split_once(':')?;
            let n = n.trim();
            let hit =
                n.eq_ignore_ascii_case(name) || compact.is_some_and(|c| n.eq_ignore_ascii_case(c));
            hit.then_some(v)
        })
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect()
}

/// The status code of a response's status line (`SIP/2.0 487 ...` → 487).
pub fn status_code(msg: &str) -> Option<u16> {
    let first = msg.lines().next()?;
    let rest = first.strip_prefix("SIP/2.0 ")?;
    rest.split(' ').next()?.parse().ok()
}

/// Reads datagrams on `sock` until `wait` passes; returns them with their
/// sources. Used for black-hole next hops and raw exchanges.
pub fn recv_all(sock: &UdpSocket, wait: Duration) -> io::Result<Vec<(SocketAddr, Vec<u8>)>> {
    let deadline = Instant::now() + wait;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65_535];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        match sock.recv_from(&mut buf) {
            Ok((len, from)) => out.push((from, buf[..len].to_vec())),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_headers_and_status() {
        let msg = "SIP/2.0 483 Too Many Hops\r\nVia: SIP/2.0/UDP a, SIP/2.0/UDP b\r\nv: SIP/2.0/UDP c\r\ni: abc@x\r\n\r\nbody: no";
        assert_eq!(status_code(msg), Some(483));
        assert_eq!(
            header_value(msg, "call-id", Some("i")).as_deref(),
            Some("abc@x")
        );
        assert_eq!(header_value(msg, "body", None), None);
        assert_eq!(
            header_values(msg, "via", Some("v")),
            ["SIP/2.0/UDP a", "SIP/2.0/UDP b", "SIP/2.0/UDP c"]
        );
    }
}
