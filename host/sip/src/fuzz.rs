//! Fuzzing entry points, shared by the cargo-fuzz targets in `fuzz/` and the
//! proptest properties in `tests/properties.rs`, so CI on stable runs the
//! same code the fuzzer does.
//!
//! These functions *are* oracles: they panic when a property fails, which
//! is what a fuzzer looks for. Nothing else calls them.

use crate::{frame_stream, Editor, Framing, HeaderName, Message};

/// The Via a forwarding proxy adds (RFC 3261 §16.6 step 8).
const OUR_VIA: &[u8] = b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-fuzz\r\n";

/// Headers whose values a forward must not change.
const KEPT: [HeaderName; 5] = [
    HeaderName::From,
    HeaderName::To,
    HeaderName::CallId,
    HeaderName::CSeq,
    HeaderName::ContentType,
];

/// Parses `data` both ways; every typed accessor of what parses must
/// answer without panicking; what also validates is forwarded (a Via
/// inserted, Max-Forwards decremented, by [`Editor`]) and must parse and
/// validate again with the same start line, headers and body.
pub fn parse_and_forward(data: &[u8]) {
    let _ = frame_stream(data, 65535);
    for framing in [Framing::Datagram, Framing::Stream] {
        let Ok(msg) = Message::parse(data, framing) else {
            continue;
        };
        read_everything(&msg);
        // A message at the header bound would pass it once forwarded.
        if msg.validate().is_err() || msg.headers().len() >= crate::MAX_HEADERS {
            continue;
        }
        let forwarded = forward(&msg);
        let again = match Message::parse(&forwarded, framing) {
            Ok(m) => m,
            Err(e) => panic!(
                "the forwarded message does not parse ({e}):\n{}",
                String::from_utf8_lossy(&forwarded)
            ),
        };
        if let Err(e) = again.validate() {
            panic!(
                "the forwarded message does not validate ({e}):\n{}",
                String::from_utf8_lossy(&forwarded)
            );
        }
        assert_same_fields(&msg, &again);
    }
}

/// Touches every accessor a proxy uses.
fn read_everything(msg: &Message<'_>) {
    let _ = (msg.method(), msg.request_uri(), msg.status(), msg.top_via());
    let _ = (msg.call_id(), msg.cseq(), msg.from(), msg.to());
    let _ = (msg.max_forwards(), msg.content_length(), msg.content_type());
    let _ = msg.routes().count() + msg.record_routes().count() + msg.contacts().count();
    for h in msg.headers() {
        let _ = msg.value(h);
    }
    for (_, v) in msg.values(HeaderName::Via) {
        let _ = crate::Via::parse(v);
    }
    let _ = msg.from().and_then(|f| f.tag().map(<[u8]>::len));
}

/// What a proxy does to the bytes of a request it forwards (and a response
/// it would not: responses get the same treatment here, which is harmless
/// for the property).
fn forward(msg: &Message<'_>) -> Vec<u8> {
    let mut e = Editor::new(msg.bytes());
    e.insert(msg.headers_start(), OUR_VIA);
    if let (Some(span), Some(mf)) = (
        msg.first_value_span(HeaderName::MaxForwards),
        msg.max_forwards(),
    ) {
        e.replace(span, mf.saturating_sub(1).to_string().as_bytes());
    }
    e.finish(msg.len())
}

fn assert_same_fields(before: &Message<'_>, after: &Message<'_>) {
    let show = |m: &Message<'_>| String::from_utf8_lossy(m.bytes()).into_owned();
    assert_eq!(
        before.start_line(),
        after.start_line(),
        "start line\n{}",
        show(after)
    );
    for name in KEPT {
        assert_eq!(
            before.header_value(name),
            after.header_value(name),
            "{name:?} changed\n{}",
            show(after)
        );
    }
    assert_eq!(
        before.via_count() + 1,
        after.via_count(),
        "Via count\n{}",
        show(after)
    );
    assert_eq!(before.body(), after.body(), "body\n{}", show(after));
    assert_eq!(
        before.max_forwards().map(|m| m.saturating_sub(1)),
        after.max_forwards(),
        "Max-Forwards\n{}",
        show(after)
    );
}
